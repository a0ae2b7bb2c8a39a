"""Session timers (RFC 4028) with real peers on loopback: SIPp plays the trunk
(127.0.0.2) and the phone (127.0.0.3) against `b2bua serve`, recording off.

- a too small interval gets 422 with Min-SE, and the trunk's retry connects;
- we refresh both legs (re-INVITE with the unchanged SDP) at half the interval;
- a refresher that never refreshes gets BYE on both legs when the interval, less
  min(32 s, a third of it), has run out.

What SIPp saw is read back from its message log (-trace_msg), so the checks are
made on the bytes on the wire, with their times."""

from __future__ import annotations

import asyncio
import subprocess
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest

from b2bua.config import load_config
from b2bua.message import Request, Response, parse_message
from b2bua.serve import Server, start_server
from tests.conftest import SIPP_DIR, free_port, run_async, run_sipp, write_office

pytestmark = pytest.mark.sipp

_SEPARATOR = "----------------------------------------------- "


@dataclass(frozen=True)
class Logged:
    at: float  # seconds since the epoch, as SIPp stamped it
    sent: bool  # sent by SIPp (else received by it)
    message: Request | Response


def read_message_log(path: Path) -> list[Logged]:
    """SIPp's -trace_msg file: a separator line with a timestamp, "UDP message sent" or
    "received", a blank line, then the message as it went over the wire."""
    found: list[Logged] = []
    text = path.read_bytes().decode("latin-1")  # keep the CRLFs
    for chunk in text.split(_SEPARATOR)[1:]:
        stamp, _, rest = chunk.partition("\n")
        title, _, raw = rest.partition("\n\n")
        if "message" not in title:
            continue  # e.g. a log line about a retransmission
        raw = raw[:-1] if raw.endswith("\n") else raw  # SIPp adds one newline
        at = datetime.strptime(stamp.strip(), "%Y-%m-%d %H:%M:%S.%f").timestamp()
        found.append(Logged(at, " sent " in title, parse_message(raw.encode("latin-1"))))
    return found


def _office(directory: Path, phone_port: int) -> Path:
    return write_office(
        directory,
        phones={"1000": f"sip:1000@127.0.0.3:{phone_port}"},
        rtp_ports="33000-33999",
        # No RTP flows in these calls: media inactivity must not end them before the
        # session timer does (its default, 60 s, is the same as test 3's expiry).
        inactivity_timeout_s=600,
        trunk_extra=["keepalive_s = 0"],
    )


def _sipp_args(scenario: str, ip: str, port: int, log: Path) -> list[str]:
    return [
        "-sf",
        str(SIPP_DIR / scenario),
        "-i",
        ip,
        "-p",
        str(port),
        "-mp",
        str(free_port(ip)),
        "-m",
        "1",
        "-trace_msg",
        "-message_file",
        str(log),
    ]


def run_call(
    tmp_path: Path, trunk_scenario: str, phone_scenario: str, timeout: float
) -> tuple[Server, subprocess.CompletedProcess[str], subprocess.CompletedProcess[str]]:
    """One call: the phone SIPp waits, the trunk SIPp calls in; both run to their end."""
    phone_port = free_port("127.0.0.3")
    config = _office(tmp_path, phone_port)

    async def body() -> tuple[
        Server, subprocess.CompletedProcess[str], subprocess.CompletedProcess[str]
    ]:
        server = await start_server(load_config(config))
        try:
            phone = asyncio.create_task(
                run_sipp(
                    _sipp_args(phone_scenario, "127.0.0.3", phone_port, tmp_path / "phone.log"),
                    timeout=timeout,
                )
            )
            await asyncio.sleep(0.3)  # the phone listens before the call comes
            host, port = server.sip_address
            trunk = await run_sipp(
                [
                    *_sipp_args(
                        trunk_scenario, "127.0.0.2", free_port("127.0.0.2"), tmp_path / "trunk.log"
                    ),
                    "-s",
                    "1000",
                    f"{host}:{port}",
                ],
                timeout=timeout,
            )
            return server, trunk, await phone
        finally:
            await server.close()

    return run_async(body, timeout=timeout + 30)


def _only(log: list[Logged], sent: bool, kind: str, cseq_method: str = "INVITE") -> list[Logged]:
    """Messages of one kind ("INVITE", "BYE", or a status such as "200") in one direction,
    retransmissions left out (same CSeq)."""
    picked: list[Logged] = []
    seen: set[tuple[int, str, str]] = set()
    for entry in log:
        message = entry.message
        if entry.sent != sent:
            continue
        if isinstance(message, Request):
            what = message.method
        else:
            what = str(message.status)
            if message.cseq[1] != cseq_method:
                continue
        if what != kind or (message.cseq[0], message.cseq[1], what) in seen:
            continue
        seen.add((message.cseq[0], message.cseq[1], what))
        picked.append(entry)
    return picked


def _o_line(body: bytes) -> str:
    return next(line for line in body.decode().splitlines() if line.startswith("o="))


def test_small_interval_gets_422_and_the_retry_connects(tmp_path: Path) -> None:
    server, trunk, phone = run_call(tmp_path, "st_trunk_422.xml", "phone_uas.xml", timeout=20)
    assert trunk.returncode == 0, trunk.stdout + trunk.stderr
    assert phone.returncode == 0, phone.stdout + phone.stderr
    log = read_message_log(tmp_path / "trunk.log")
    (refused,) = _only(log, sent=False, kind="422")
    assert isinstance(refused.message, Response)
    assert refused.message.cseq == (1, "INVITE")
    assert refused.message.headers.get("Min-SE") == "90"
    (ok,) = _only(log, sent=False, kind="200")
    answer = ok.message
    assert isinstance(answer, Response)
    assert answer.cseq == (2, "INVITE")  # the retry, in the same call
    expires = answer.headers.get("Session-Expires") or ""
    assert expires in ("90;refresher=uac", "90;refresher=uas"), expires
    # RFC 4028 section 9: the UAC supports timers, so the 2xx requires them (a MUST
    # for refresher=uac, a SHOULD for refresher=uas).
    assert "timer" in answer.headers.get_all("Require"), answer.headers.get_all("Require")
    # Our INVITE to the phone proposes its own interval (not below our Min-SE).
    (invite,) = _only(read_message_log(tmp_path / "phone.log"), sent=False, kind="INVITE")
    assert isinstance(invite.message, Request)
    assert invite.message.headers.get("Session-Expires") == "1800"
    assert invite.message.headers.get("Min-SE") == "90"
    assert server.switch.stats.calls_started == 1
    assert server.switch.stats.calls_ended == 1


def test_broken_session_expires_from_the_phone_leaves_the_call_up(tmp_path: Path) -> None:
    # The phone's 200 says "Session-Expires: soon": the call connects without a timer
    # on the phone's leg (it used to raise in the middle of taking the 200: no ACK).
    server, trunk, phone = run_call(tmp_path, "st_trunk_422.xml", "st_phone_bad_se.xml", 20)
    assert trunk.returncode == 0, trunk.stdout + trunk.stderr
    assert phone.returncode == 0, phone.stdout + phone.stderr
    phone_log = read_message_log(tmp_path / "phone.log")
    assert _only(phone_log, sent=False, kind="ACK")
    assert _only(phone_log, sent=False, kind="BYE")
    assert server.switch.stats.calls_ended == 1


@pytest.mark.slow
def test_we_refresh_both_legs_at_half_the_interval(tmp_path: Path) -> None:
    # About 46 s: the trunk leaves the refreshing to us (refresher=uas in its INVITE),
    # the phone too (refresher=uac in its 200): both get our re-INVITE after 45 s.
    server, trunk, phone = run_call(
        tmp_path, "st_trunk_refresh.xml", "st_phone_refresh.xml", timeout=80
    )
    assert trunk.returncode == 0, trunk.stdout + trunk.stderr
    assert phone.returncode == 0, phone.stdout + phone.stderr

    trunk_log = read_message_log(tmp_path / "trunk.log")
    (answer,) = _only(trunk_log, sent=False, kind="200")
    assert isinstance(answer.message, Response)
    assert answer.message.headers.get("Session-Expires") == "90;refresher=uas"
    assert "timer" in answer.message.headers.get_all("Require")
    (refresh_a,) = _only(trunk_log, sent=False, kind="INVITE")
    assert isinstance(refresh_a.message, Request)
    assert 43.0 <= refresh_a.at - answer.at <= 50.0, refresh_a.at - answer.at
    # The SDP of our 200, byte for byte: a refresh, not a new offer (RFC 4028 section 10).
    assert refresh_a.message.body == answer.message.body
    assert _o_line(refresh_a.message.body) == _o_line(answer.message.body)
    # We send it, and we go on refreshing: refresher=uac in our request (section 7.4).
    assert refresh_a.message.headers.get("Session-Expires") == "90;refresher=uac"
    assert "timer" in refresh_a.message.headers.get_all("Supported")

    phone_log = read_message_log(tmp_path / "phone.log")
    invite_b, refresh_b = _only(phone_log, sent=False, kind="INVITE")
    ok_b = _only(phone_log, sent=True, kind="200")[0]  # to our INVITE; then the refresh's
    assert isinstance(ok_b.message, Response)
    assert ok_b.message.cseq == invite_b.message.cseq
    assert isinstance(invite_b.message, Request) and isinstance(refresh_b.message, Request)
    assert refresh_b.message.cseq[0] > invite_b.message.cseq[0]
    assert 43.0 <= refresh_b.at - ok_b.at <= 50.0, refresh_b.at - ok_b.at
    assert refresh_b.message.body == invite_b.message.body
    assert refresh_b.message.headers.get("Session-Expires") == "90;refresher=uac"
    assert len(_only(phone_log, sent=False, kind="ACK")) == 2  # the 200 and the refresh's
    assert len(_only(trunk_log, sent=False, kind="ACK")) == 1  # the refresh's 200
    assert server.switch.stats.calls_ended == 1


@pytest.mark.slow
def test_missing_refresh_ends_both_legs_after_the_interval_less_a_third(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # About 61 s: 90 - min(32, 90 / 3) = 60 s after our 200 (RFC 4028 section 10), the
    # smallest interval anyone may ask for (Min-SE is never below 90, section 4).
    caplog.set_level("INFO", logger="b2bua.call")
    server, trunk, phone = run_call(tmp_path, "st_trunk_expiry.xml", "phone_uas.xml", 100)
    assert trunk.returncode == 0, trunk.stdout + trunk.stderr
    assert phone.returncode == 0, phone.stdout + phone.stderr
    trunk_log = read_message_log(tmp_path / "trunk.log")
    (answer,) = _only(trunk_log, sent=False, kind="200")
    assert isinstance(answer.message, Response)
    assert answer.message.headers.get("Session-Expires") == "90;refresher=uac"
    assert "timer" in answer.message.headers.get_all("Require")  # a MUST for uac
    (bye_a,) = _only(trunk_log, sent=False, kind="BYE")
    assert 59.0 <= bye_a.at - answer.at <= 63.0, bye_a.at - answer.at
    (bye_b,) = _only(read_message_log(tmp_path / "phone.log"), sent=False, kind="BYE")
    assert abs(bye_b.at - bye_a.at) < 2.0  # both legs at once
    assert "event=session_expired" in caplog.text
    assert server.switch.stats.calls_ended == 1
