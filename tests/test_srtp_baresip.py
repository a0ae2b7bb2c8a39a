"""A third-party TLS and SRTP user agent against the recorder: Debian's baresip plays the
trunk, calls in over SIP/TLS with mandatory SRTP (SDES), and its audio comes from a WAV
(aufile). The office phone is SIPp echoing plain RTP. Headless: a config directory is
written at test time, the call is dialled with `-e /dial ...` and ended by `-t` (baresip
hangs up with BYE when it quits)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from b2bua.archive.keys import keygen
from b2bua.serve import Server
from tests.conftest import free_port, run_sipp
from tests.sipp_harness import (
    assert_sipp_ok,
    catalog_rows,
    decrypted_wav,
    phone_answers,
    rms,
    run_baresip,
    run_serving,
)
from tests.test_tls_support import Pki, make_pki

pytestmark = pytest.mark.sipp


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def office(tmp_path: Path, pki: Pki, tls_port: int, phone_port: int, cert: Any) -> Path:
    keygen(tmp_path / "recorder.key")
    path = tmp_path / "office.toml"
    path.write_text(
        f"""
[sip]
listen = "127.0.0.1:0"
tls_listen = "127.0.0.1:{tls_port}"
tls_cert = "{cert.cert}"
tls_key = "{cert.key}"
[rtp]
ports = "33000-33099"
[trunk]
host = "127.0.0.2:5999"
# baresip's TLS connections leave from 127.0.0.1 whatever sip_listen says
inbound_from = ["127.0.0.1/32", "127.0.0.2/32"]
inbound_extension = "1000"
srtp = "required"
[[extension]]
number = "1000"
password = "pw1000"
contact = "sip:1000@127.0.0.3:{phone_port}"
employee_consent = true
[recording]
mode = "announce"
language = "en"
directory = "recordings"
public_key = "recorder.key.pub"
"""
    )
    return path


def baresip_config(tmp_path: Path, pki: Pki) -> Path:
    """A headless baresip: no audio device (aufile source, no player), no console UI."""
    speech = tmp_path / "speech.wav"
    t = np.arange(8000 * 30) / 8000  # longer than the call: at its end baresip hangs up
    sf.write(speech, (8000 * np.sin(2 * np.pi * 440 * t)).astype(np.int16), 8000)
    conf = tmp_path / "baresip"
    conf.mkdir()
    (conf / "accounts").write_text(
        "<sip:+4930123456@127.0.0.2>;regint=0;mediaenc=srtp-mand;audio_codecs=PCMA,PCMU\n"
    )
    (conf / "config").write_text(
        "\n".join(
            [
                "poll_method epoll",
                f"sip_listen 127.0.0.2:{free_port('127.0.0.2')}",
                # Trusted CA. Debian's baresip 1.0.0 does not verify the server's certificate
                # (a certificate of another CA is accepted: tried), so refusing wrong
                # certificates is tested on our side (tests/test_tls_transport.py).
                f"sip_cafile {pki.ca}",
                f"audio_source aufile,{speech}",
                "net_interface 127.0.0.2",
                "module_path /usr/lib/baresip/modules",
                "module g711.so",
                "module aufile.so",
                "module srtp.so",
                "module account.so",
                "module menu.so",
                "",
            ]
        )
    )
    return conf


def test_baresip_calls_in_over_tls_with_srtp_and_is_recorded(tmp_path: Path, pki: Pki) -> None:
    tls_port, phone_port = free_port("127.0.0.1"), free_port("127.0.0.3")
    config = office(tmp_path, pki, tls_port, phone_port, pki.server)
    conf = baresip_config(tmp_path, pki)

    async def body(server: Server) -> tuple[Any, int, str, dict[str, int]]:
        phone = asyncio.create_task(run_sipp(phone_answers(phone_port), timeout=30))
        await asyncio.sleep(0.3)
        seen: dict[str, int] = {"unprotected": 0, "auth_failures": 0}

        async def watch() -> None:
            # The trunk leg's SRTP counters, read while the call is up.
            for _ in range(200):
                for leg in server.relay.legs.values():
                    if leg.leg_id.endswith("-a") and leg.srtp is not None:
                        seen["unprotected"] = max(seen["unprotected"], leg.srtp.stats.unprotected)
                        seen["auth_failures"] = leg.srtp.stats.auth_failures
                await asyncio.sleep(0.1)

        watcher = asyncio.create_task(watch())
        dial = f"/dial sip:1000@127.0.0.1:{tls_port};transport=tls"
        code, out = await run_baresip(conf, 13, dial)
        watcher.cancel()
        return await asyncio.wait_for(phone, 15), code, out, seen

    phone, code, out, seen = run_serving(config, body, timeout=60)
    assert code == 0, out[-3000:]
    assert "SRTP is Enabled" in out, out[-3000:]
    assert "Call established" in out, out[-3000:]
    assert_sipp_ok(phone)
    assert seen["unprotected"] > 200  # baresip's SRTP, decrypted on the trunk leg
    assert seen["auth_failures"] == 0
    (row,) = catalog_rows(tmp_path / "recordings")
    assert row["status"] == "complete"
    assert row["consent"]["result"] == "accepted"
    data, rate = decrypted_wav(tmp_path, row)
    assert rate == 8000 and data.shape[1] == 2 and data.shape[0] > 8000 * 2
    left, right = rms(data[:, 0]), rms(data[:, 1])
    assert left > 1000  # baresip's tone, decrypted from SRTP
    assert right > 1000  # the phone's plain echo of it
