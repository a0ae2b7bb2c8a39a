"""Two pyVoIP desk phones call each other through the running B2BUA (GitHub issue 3).

Real peers on loopback: the server (`start_server`, real relay) runs on an event loop in a
background thread; phones 1000 (127.0.0.3) and 1001 (127.0.0.4) register with digest
auth (no static contacts), 1000 calls 1001, each sends a known tone, and each must hear
the other's tone (FFT peak of what pyVoIP hands back). Then 1000 hangs up and the switch
must show the call ended with its relay legs released.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from pyVoIP.VoIP import CallState, PhoneStatus, VoIPCall, VoIPPhone

from tests.conftest import free_port, write_office
from tests.pyvoip_util import ServerThread, audible, peak_frequency, stop_phone, tone
from tests.sipp_harness import fresh_rtp_totals, leg_counters, media_leg_count

CALLER_IP, CALLEE_IP = "127.0.0.3", "127.0.0.4"
CALLER_TONE, CALLEE_TONE = 440.0, 1000.0


class Callee:
    """pyVoIP's callCallback: answers, then keeps its thread until the test is done."""

    def __init__(self) -> None:
        self.call: VoIPCall | None = None
        self.answered = threading.Event()
        self.done = threading.Event()

    def __call__(self, call: VoIPCall) -> None:
        call.answer()
        self.call = call
        self.answered.set()
        self.done.wait(timeout=20)  # bounded: pyVoIP forgets calls whose thread ended


def make_phone(server: tuple[str, int], number: str, ip: str, callee: Callee | None) -> VoIPPhone:
    rtp_port = free_port(ip)
    return VoIPPhone(
        server[0],
        server[1],
        number,
        f"pw{number}",  # write_office's passwords
        callCallback=callee,
        myIP=ip,
        sipPort=free_port(ip),
        rtpPortLow=rtp_port,
        rtpPortHigh=rtp_port,
    )


def wait_until(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return bool(predicate())


def bound_ips(office: ServerThread, number: str) -> list[str]:
    """Where the registrar would ring `number` (call on the server's thread)."""
    server = office.server
    return [b.source[0] for b in server.switch.registrar.lookup(number, server.runner.now())]


def call_states(office: ServerThread) -> list[str]:
    """States of the switch's calls (call on the server's thread)."""
    return [c.state.value for c in office.server.switch.calls.values()]


def collect(call: VoIPCall, seconds: float) -> bytes:
    """What pyVoIP received for `call` during `seconds` (non-blocking reads, bounded)."""
    chunks = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        chunks.append(call.read_audio(160, blocking=False))
        time.sleep(0.01)
    return b"".join(chunks)


@pytest.fixture
def office(tmp_path: Path) -> Iterator[ServerThread]:
    config = write_office(tmp_path, phones={"1000": "", "1001": ""})
    with ServerThread(config) as server:
        yield server


@pytest.mark.timeout(40)
def test_registered_pyvoip_phones_talk_both_ways_and_hang_up(office: ServerThread) -> None:
    sip = office.call(lambda: office.server.sip_address)
    callee = Callee()
    phone_b = make_phone(sip, "1001", CALLEE_IP, callee)
    phone_a = make_phone(sip, "1000", CALLER_IP, None)
    started: list[VoIPPhone] = []
    try:
        for phone in (phone_b, phone_a):
            phone.start()  # blocks until its REGISTER (challenged, then 200) is answered
            started.append(phone)
            assert phone.get_status() == PhoneStatus.REGISTERED
        assert office.call(lambda: bound_ips(office, "1000")) == [CALLER_IP]
        assert office.call(lambda: bound_ips(office, "1001")) == [CALLEE_IP]

        call_a = phone_a.call("1001")  # 401 challenge, then the INVITE with credentials
        if not callee.answered.wait(timeout=10):
            seen = office.call(lambda: vars(office.server.switch.stats))
            pytest.fail(f"the call never rang phone 1001; switch stats {seen}")
        assert wait_until(lambda: call_a.state == CallState.ANSWERED, 10), call_a.state
        call_b = callee.call
        assert call_b is not None
        stats = office.call(lambda: office.server.switch.stats)
        assert stats.auth_challenges >= 1
        assert stats.calls_started == 1
        # pyVoIP's ACK (its own To tag, the INVITE's branch) must confirm the call, else
        # the B2BUA would end it with "no ACK" after 64*T1.
        confirmed = office.wait_for(lambda: call_states(office) == ["confirmed"], 3)
        assert confirmed, office.call(lambda: call_states(office))

        call_a.write_audio(tone(CALLER_TONE, 2.0))
        call_b.write_audio(tone(CALLEE_TONE, 2.0))
        heard_by_b = collect(call_b, 1.5)
        heard_by_a = collect(call_a, 0.3)  # A's buffer kept filling meanwhile
        heard_by_a += collect(call_a, 0.2)
        assert audible(heard_by_b), "no audio reached 1001"
        assert audible(heard_by_a), "no audio reached 1000"
        assert abs(peak_frequency(heard_by_b) - CALLER_TONE) < 15
        assert abs(peak_frequency(heard_by_a) - CALLEE_TONE) < 15

        assert office.call(lambda: media_leg_count(office.server)) == 2
        legs = office.call(lambda: leg_counters(office.server))
        if legs is not None:
            assert all(leg.forwarded > 25 for leg in legs.values())
        else:  # media workers report totals only; the tones heard show both directions
            assert office.run(fresh_rtp_totals(office.server)).forwarded > 50

        call_a.hangup()  # BYE from 1000; the B2BUA must BYE 1001 and release the media
        assert office.wait_for(lambda: office.server.switch.stats.calls_ended == 1, 5)
        assert office.wait_for(lambda: not media_leg_count(office.server), 5)
        assert office.call(lambda: not office.server.switch.calls)
        assert wait_until(lambda: call_b.state == CallState.ENDED, 5), call_b.state
    finally:
        callee.done.set()
        for phone in reversed(started):
            stop_phone(phone)
