"""Consent in-line with real peers: SIPp plays the trunk (RFC 2833 digits from SIPp's own
captures), SIPp plays the echoing desk phone, the recording is decrypted and checked."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from b2bua.serve import Server
from tests.conftest import SIPP_DIR, free_port
from tests.sipp_harness import (
    answered_call,
    assert_sipp_ok,
    catalog_rows,
    consent_office,
    decrypted_wav,
    phone_answers,
    rms,
    run_serving,
    trunk_calls_in,
)

pytestmark = pytest.mark.sipp
CAPTURES = Path("/usr/share/sip-tester")


def trunk_scenario(tmp_path: Path, digit_pcap: str, wait_ms: int = 2500) -> Path:
    path = tmp_path / "trunk_consent.xml"
    template = (SIPP_DIR / "trunk_consent.xml.in").read_text()
    path.write_text(template.replace("DIGIT_PCAP", digit_pcap).replace("WAIT_MS", str(wait_ms)))
    return path


def run_inbound(
    tmp_path: Path, scenario: Path, *, employee_consent: bool = True, extra: str = ""
) -> tuple[Any, Any, list[dict[str, Any]]]:
    """One call from the trunk (`scenario`) to the echoing phone through a consent
    office; the SIPp results and the catalog's rows afterwards."""
    phone_port, trunk_port = free_port("127.0.0.3"), free_port("127.0.0.2")
    config_path = consent_office(
        tmp_path, trunk_port, phone_port, employee_consent=employee_consent, extra=extra
    )

    async def body(server: Server) -> tuple[Any, list[Any]]:
        return await answered_call(
            [phone_answers(phone_port)],
            trunk_calls_in(server, trunk_port, scenario),
            timeout=25,
            wait=10,
        )

    trunk, (phone,) = run_serving(config_path, body, timeout=60)
    return trunk, phone, catalog_rows(tmp_path / "recordings")


def run_consent_call(
    tmp_path: Path,
    digit_pcap: str,
    *,
    employee_consent: bool = True,
    extra: str = "",
    wait_ms: int = 2500,
) -> tuple[Any, Any, list[dict[str, Any]]]:
    """run_inbound with the trunk pressing a digit from `digit_pcap` after the prompt."""
    scenario = trunk_scenario(tmp_path, digit_pcap, wait_ms)
    return run_inbound(tmp_path, scenario, employee_consent=employee_consent, extra=extra)


def test_digit_1_by_rfc2833_is_recorded_after_consent(tmp_path: Path) -> None:
    trunk, phone, rows = run_consent_call(tmp_path, str(CAPTURES / "dtmf_2833_1.pcap"))
    assert_sipp_ok(trunk, phone)
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
    data, rate = decrypted_wav(tmp_path, row)
    assert rate == 8000
    assert data.shape[1] == 2
    seconds = data.shape[0] / rate
    assert 2.0 < seconds < 8.0  # from after "thanks" to the BYE, not the whole call
    left_rms = rms(data[:, 0])
    right_rms = rms(data[:, 1])
    assert left_rms > 100  # the caller's speech (SIPp's capture)
    assert right_rms > 100  # the phone's echo of it


def test_digit_2_declines_and_nothing_is_recorded(tmp_path: Path) -> None:
    trunk, phone, rows = run_consent_call(tmp_path, str(CAPTURES / "dtmf_2833_2.pcap"))
    assert_sipp_ok(trunk, phone)
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
    assert_sipp_ok(trunk, phone)
    (row,) = rows
    assert row["status"] == "not_recorded"
    assert row["consent"]["result"] == "employee_no_consent"
    assert not list((tmp_path / "recordings").glob("*.age*"))
