"""Dead calls end (GitHub issue 3): silent media and overlong calls get a BYE on both legs.

Raw UDP peers (see test_calls_negative.py) play the trunk (127.0.0.2) and desk phone
1000 (127.0.0.3) against the real server, with `rtp.inactivity_timeout_s` and
`rtp.max_call_s` set small in the config (the loader accepts any value above 0).
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Callable

import pytest

from b2bua.message import Request, make_response
from tests.sipp_harness import media_leg_count
from tests.test_calls_negative import Office, Peer, establish, make_office, rtp_target

Addr = tuple[str, int]
pytestmark = pytest.mark.timeout(30)
__all__ = ["make_office"]  # the fixture, shared with the negative tests


def send_rtp(sock: socket.socket, dest: Addr, count: int, ssrc: int) -> None:
    for seq in range(count):
        header = struct.pack("!BBHII", 0x80, 0, seq, seq * 160, ssrc)
        sock.sendto(header + b"\xff" * 160, dest)
        time.sleep(0.02)


def rtp_arrived(sock: socket.socket, wanted: int, timeout: float = 2.0) -> int:
    """RTP datagrams waiting on `sock` (read until `wanted` or `timeout` s of quiet)."""
    sock.settimeout(timeout)
    count = 0
    try:
        for _ in range(1000):  # bounded: far more than any test sends
            data = sock.recv(2048)
            if len(data) >= 12 and data[0] >> 6 == 2:
                count += 1
                if count >= wanted:
                    break
    except TimeoutError:
        pass
    return count


def answer_bye(peer: Peer, timeout: float) -> Request | None:
    bye = peer.request_in("BYE", timeout)
    if bye is not None:
        peer.send(make_response(bye, 200), peer_server(peer, bye))
    return bye


def peer_server(peer: Peer, request: Request) -> Addr:
    """Where the B2BUA sent from (its Via sent-by, with no NAT on loopback)."""
    via = request.top_via
    return via.host, via.port or 5060


def test_silent_call_is_ended_with_bye_on_both_legs(make_office: Callable[[str], Office]) -> None:
    office = make_office("inactivity_timeout_s = 1.5")
    call = establish(office, office.trunk, office.phone, None)
    try:
        ours = office.server.call(lambda: list(office.server.server.switch.calls.values()))
        assert len(ours) == 1
        senders = [
            threading.Thread(
                target=send_rtp, args=(call.caller_rtp, rtp_target(call.answer), 25, 1)
            ),
            threading.Thread(
                target=send_rtp, args=(call.callee_rtp, rtp_target(call.invite), 25, 2)
            ),
        ]
        for sender in senders:
            sender.start()
        for sender in senders:
            sender.join(timeout=5)
        stopped = time.monotonic()
        assert office.server.call(lambda: media_leg_count(office.server.server)) == 2
        # Each leg forwarded its peer's packets: counted where they arrive, the same in
        # either media mode (media workers report no per-leg counters).
        assert rtp_arrived(call.callee_rtp, 20) >= 20, "too little RTP reached the phone"
        assert rtp_arrived(call.caller_rtp, 20) >= 20, "too little RTP reached the trunk"
        # The media stopped: both legs must get a BYE from the B2BUA.
        trunk_bye = answer_bye(office.trunk, 5.0)
        phone_bye = answer_bye(office.phone, 2.0)
        assert trunk_bye is not None, "no BYE to the trunk"
        assert phone_bye is not None, "no BYE to the phone"
        assert time.monotonic() - stopped >= 1.0  # not before the timeout
        assert trunk_bye.call_id == call.call_id and phone_bye.call_id == call.invite.call_id
        assert office.server.wait_for(lambda: office.server.server.switch.stats.calls_ended == 1, 3)
        assert office.server.call(lambda: not media_leg_count(office.server.server))
        assert ours[0].end_reason == "no media"
        office.options_ok(office.trunk)
    finally:
        call.close()


def test_long_call_is_ended_at_max_call_s(make_office: Callable[[str], Office]) -> None:
    office = make_office("inactivity_timeout_s = 30\nmax_call_s = 2")
    started = time.monotonic()
    call = establish(office, office.trunk, office.phone, None)
    senders: list[threading.Thread] = []
    try:
        ours = office.server.call(lambda: list(office.server.server.switch.calls.values()))
        # Media keeps flowing (so this is not the inactivity timer) until the BYEs.
        senders += [
            threading.Thread(
                target=send_rtp, args=(call.caller_rtp, rtp_target(call.answer), 150, 1)
            ),
            threading.Thread(
                target=send_rtp, args=(call.callee_rtp, rtp_target(call.invite), 150, 2)
            ),
        ]
        for sender in senders:
            sender.start()
        trunk_bye = answer_bye(office.trunk, 5.0)
        phone_bye = answer_bye(office.phone, 2.0)
        ended = time.monotonic() - started
        assert trunk_bye is not None, "no BYE to the trunk"
        assert phone_bye is not None, "no BYE to the phone"
        assert 1.8 <= ended <= 4.5, ended
        assert office.server.wait_for(lambda: office.server.server.switch.stats.calls_ended == 1, 3)
        assert office.server.call(lambda: not media_leg_count(office.server.server))
        assert ours[0].end_reason == "maximum call length"
    finally:
        for sender in senders:  # before their sockets close, also after a failure
            sender.join(timeout=5)
        call.close()
