"""Consent in-line with real peers: SIPp plays the trunk (RFC 2833 digits from SIPp's own
captures), SIPp plays the echoing desk phone, the recording is decrypted and checked."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from b2bua.archive.catalog import Catalog
from b2bua.archive.keys import decrypt_file, keygen
from b2bua.config import load_config
from b2bua.serve import Server, start_server
from tests.conftest import SIPP_DIR, free_port, run_async, run_sipp, write_office

pytestmark = pytest.mark.sipp
CAPTURES = Path("/usr/share/sip-tester")


def consent_office(
    tmp_path: Path,
    trunk_port: int,
    phone_port: int,
    *,
    employee_consent: bool = True,
    extra: str = "",
) -> Path:
    key = tmp_path / "recorder.key"
    keygen(key)
    config = write_office(
        tmp_path,
        trunk=("127.0.0.2", trunk_port),
        phones={"1000": f"sip:1000@127.0.0.3:{phone_port}"},
        mode="keypress",
        extra="\n".join(
            [
                'language = "en"',
                'directory = "recordings"',
                'public_key = "recorder.key.pub"',
                "consent_timeout_s = 3",
                extra,
            ]
        ),
    )
    text = config.read_text()
    if employee_consent:
        text = text.replace('password = "pw1000"', 'password = "pw1000"\nemployee_consent = true')
    config.write_text(text)
    return config


def trunk_scenario(tmp_path: Path, digit_pcap: str, wait_ms: int = 2500) -> Path:
    path = tmp_path / "trunk_consent.xml"
    template = (SIPP_DIR / "trunk_consent.xml.in").read_text()
    path.write_text(template.replace("DIGIT_PCAP", digit_pcap).replace("WAIT_MS", str(wait_ms)))
    return path


def run_consent_call(
    tmp_path: Path,
    digit_pcap: str,
    *,
    employee_consent: bool = True,
    extra: str = "",
    wait_ms: int = 2500,
) -> tuple[Any, Any, list[dict[str, Any]]]:
    phone_port, trunk_port = free_port("127.0.0.3"), free_port("127.0.0.2")
    config_path = consent_office(
        tmp_path, trunk_port, phone_port, employee_consent=employee_consent, extra=extra
    )
    scenario_path = trunk_scenario(tmp_path, digit_pcap, wait_ms)

    async def body() -> tuple[Any, Any]:
        server: Server = await start_server(load_config(config_path))
        try:
            phone = asyncio.create_task(
                run_sipp(
                    [
                        "-sf",
                        str(SIPP_DIR / "phone_uas.xml"),
                        "-i",
                        "127.0.0.3",
                        "-p",
                        str(phone_port),
                        "-mp",
                        str(free_port("127.0.0.3")),
                        "-rtp_echo",
                        "-m",
                        "1",
                    ],
                    timeout=25,
                )
            )
            await asyncio.sleep(0.3)
            host, sip_port = server.sip_address
            trunk = await run_sipp(
                [
                    "-sf",
                    str(scenario_path),
                    "-s",
                    "1000",
                    "-i",
                    "127.0.0.2",
                    "-p",
                    str(trunk_port),
                    "-mp",
                    str(free_port("127.0.0.2")),
                    "-m",
                    "1",
                    f"{host}:{sip_port}",
                ],
                timeout=25,
            )
            if not phone.done():
                await asyncio.wait_for(phone, 10)
            return trunk, phone.result()
        finally:
            await server.close()

    trunk, phone = run_async(body, timeout=60)
    with Catalog.open(tmp_path / "recordings") as catalog:
        rows = catalog.list()
    return trunk, phone, rows


def decrypt(tmp_path: Path, row: dict[str, Any]) -> tuple[np.ndarray, int]:
    out = tmp_path / "call.wav"
    code = decrypt_file(tmp_path / "recorder.key", Path(row["path"]), out)
    assert code == 0
    data, rate = sf.read(out, dtype="int16")
    return data, rate


def test_digit_1_by_rfc2833_is_recorded_after_consent(tmp_path: Path) -> None:
    trunk, phone, rows = run_consent_call(tmp_path, str(CAPTURES / "dtmf_2833_1.pcap"))
    assert trunk.returncode == 0, trunk.stdout[-3000:] + trunk.stderr
    assert phone.returncode == 0, phone.stdout[-3000:] + phone.stderr
    assert len(rows) == 1
    row = rows[0]
    assert row["status"] == "complete"
    assert row["direction"] == "inbound"
    consent = row["consent"]
    assert consent["result"] == "accepted"
    assert consent["method"] == "rfc4733"
    assert consent["digit"] == "1"
    assert consent["language"] == "en"
    assert len(consent["prompt_sha256"]) == 64
    data, rate = decrypt(tmp_path, row)
    assert rate == 8000
    assert data.shape[1] == 2
    seconds = data.shape[0] / rate
    assert 2.0 < seconds < 8.0  # from after "thanks" to the BYE, not the whole call
    left_rms = float(np.sqrt(np.mean(data[:, 0].astype(float) ** 2)))
    right_rms = float(np.sqrt(np.mean(data[:, 1].astype(float) ** 2)))
    assert left_rms > 100  # the caller's speech (SIPp's capture)
    assert right_rms > 100  # the phone's echo of it


def test_digit_2_declines_and_nothing_is_recorded(tmp_path: Path) -> None:
    trunk, phone, rows = run_consent_call(tmp_path, str(CAPTURES / "dtmf_2833_2.pcap"))
    assert trunk.returncode == 0, trunk.stdout[-3000:] + trunk.stderr
    assert phone.returncode == 0, phone.stdout[-3000:] + phone.stderr
    (row,) = rows
    assert row["status"] == "not_recorded"
    assert row["path"] is None
    assert row["consent"]["result"] == "declined"
    assert row["consent"]["digit"] == "2"
    assert not list((tmp_path / "recordings").glob("*.age*"))


def test_extension_without_employee_consent_is_never_recorded(tmp_path: Path) -> None:
    trunk, phone, rows = run_consent_call(
        tmp_path, str(CAPTURES / "dtmf_2833_1.pcap"), employee_consent=False
    )
    assert trunk.returncode == 0, trunk.stdout[-3000:] + trunk.stderr
    assert phone.returncode == 0, phone.stdout[-3000:] + phone.stderr
    (row,) = rows
    assert row["status"] == "not_recorded"
    assert row["consent"]["result"] == "employee_no_consent"
    assert not list((tmp_path / "recordings").glob("*.age*"))
