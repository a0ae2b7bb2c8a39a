"""Parallel hunt groups without the network: the fork table (b2bua/hunt_parallel.py)
and a call ringing several members at once, with simulated time and the in-memory
doubles of the switch and the relay from tests/test_srtp_negotiation.py."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from b2bua.call import Call, CallState, Side, Target
from b2bua.config import parse_config
from b2bua.hunt import Hunt, Phase, start_hunt
from b2bua.hunt_parallel import Fork, ForkAction, ForkError, ForkInput, ForkState
from b2bua.message import Request, Response, make_response
from b2bua.uri import URI
from tests.test_hunt import office
from tests.test_srtp_negotiation import (
    FakeHub,
    FakeServices,
    a_invite,
    consent_machine,
    phone_answer,
    plain_offer,
)


def member(user: str, host: str = "127.0.0.3") -> Target:
    return Target(URI("sip", user, host=host, port=5070), (host, 5070), "UDP", user)


@dataclass
class Services(FakeServices):
    """FakeServices that also remember the Call-IDs bound to the call."""

    bound: list[tuple[str, Side]] = field(default_factory=list)

    def bind_call_id(self, call: Any, call_id: str, side: Side) -> None:
        self.bound.append((call_id, side))


def ring(
    fallback: bool = False, ring_s: float = 5.0, consent: bool = False
) -> tuple[Call, Services]:
    """An inbound call to a parallel group of 1000, 1001, 1002 (+ fallback 1009); with
    `consent` the caller is answered and asked first, the group rings after consent."""
    hunt = Hunt(
        "600",
        [member("1009", "127.0.0.9")] if fallback else [],
        ring_s,
        parallel=[member("1001", "127.0.0.4"), member("1002", "127.0.0.5")],
    )
    services = Services(recording=FakeHub() if consent else None)
    call = Call.start(
        services,
        a_invite(plain_offer().to_bytes()),
        "a-key",
        ("127.0.0.2", 5080),
        "UDP",
        member("1000"),
        "inbound",
        0.0,
        hunt=hunt,
        consent=consent_machine() if consent else None,
    )
    if consent:
        call.on_a_ack(0.1)
        call.on_digit("1", "rfc4733", "external", 0.5)
        for t in (1.0, 2.0, 3.0):  # the "thank you" prompt ends: the office leg is called
            call.on_prompt_finished(t)
            if call.b_invite is not None:
                break
    return call, services


def invites(services: FakeServices) -> dict[str, tuple[Request, str]]:
    """Every INVITE sent toward the office by the To user: (request, key)."""
    return {
        r.to_addr.uri.user or "": (r, k) for s, r, k in services.requests if r.method == "INVITE"
    }


def sent(services: FakeServices, method: str) -> list[Request]:
    return [r for _, r, _ in services.requests if r.method == method]


def to_a(services: FakeServices) -> list[int]:
    return [r.status for k, r in services.responses if k == "a-key"]


def answer(
    call: Call, services: FakeServices, user: str, status: int, now: float, sdp: bool = False
) -> Response:
    invite, key = invites(services)[user]
    headers = [("Contact", f"<sip:{user}@127.0.0.3:5070>")]
    body = b""
    if sdp:
        headers.append(("Content-Type", "application/sdp"))
        body = phone_answer(plain_offer(), port=42000 + int(user[-1])).to_bytes()
    response = make_response(invite, status, to_tag="t" + user, headers=headers, body=body)
    call.on_b_response(response, key, now)
    return response


# ------------------------------------------------------------------ the fork table


def test_fork_table_cancels_only_after_a_provisional_and_refuses_unknown_pairs() -> None:
    leg = Fork(member("1000"), a_invite(b""), "c", "t", b"", None)
    assert leg.feed(ForkInput.CANCEL) is ForkAction.NONE  # RFC 3261 9.1: wait for a 1xx
    assert leg.state is ForkState.CANCEL_WAIT
    assert leg.feed(ForkInput.PROVISIONAL) is ForkAction.SEND_CANCEL
    assert leg.feed(ForkInput.SUCCESS) is ForkAction.ACK_BYE  # crossed our CANCEL
    assert leg.state is ForkState.DONE
    assert leg.feed(ForkInput.SUCCESS) is ForkAction.NONE  # a repeated 2xx: already BYEd
    with pytest.raises(ForkError):
        leg.feed(ForkInput.PROVISIONAL)
    first = Fork(member("1001"), a_invite(b""), "c", "t", b"", None)
    assert first.feed(ForkInput.PROVISIONAL) is ForkAction.RING
    assert first.feed(ForkInput.SUCCESS) is ForkAction.WIN and first.state is ForkState.WON


def test_config_and_start_hunt_for_a_parallel_group(tmp_path: Path) -> None:
    config = parse_config(
        office(strategy="parallel", fallback="1002", ring_s=7), tmp_path / "c.toml"
    )
    group = config.group("600")
    assert group is not None and group.strategy == "parallel"
    reach = {"1000": member("1000"), "1001": member("1001"), "1002": member("1002")}
    started = start_hunt(config, "600", lambda n, _now: reach.get(n), 0.0)
    assert started is not None
    first, hunt = started
    assert first == member("1000") and hunt.parallel == [member("1001")]
    assert hunt.pending == [member("1002")] and hunt.ring_s == 7.0
    # Only the fallback reachable: it simply rings, nothing is forked.
    started = start_hunt(config, "600", lambda n, _now: reach.get(n) if n == "1002" else None, 0)
    assert started is not None and started[0] == member("1002") and not started[1].parallel


# ------------------------------------------------------------------ a call ringing


def test_every_member_rings_at_once_as_a_leg_of_its_own() -> None:
    call, services = ring()
    sent_invites = invites(services)
    assert set(sent_invites) == {"1000", "1001", "1002"}
    requests = [r for r, _ in sent_invites.values()]
    assert len({r.call_id for r in requests}) == 3
    assert len({r.from_addr.tag for r in requests}) == 3
    assert len({r.top_via.branch for r in requests}) == 3
    assert len({r.body for r in requests}) == 1  # the same anchored offer for all
    assert b"m=audio 31002 " in requests[0].body  # the relay's office-side port
    assert {str(r.uri) for r in requests} == {
        "sip:1000@127.0.0.3:5070",
        "sip:1001@127.0.0.4:5070",
        "sip:1002@127.0.0.5:5070",
    }
    assert call.b_invite_key == "" and call.get_timer() == 5.0


def test_first_2xx_wins_others_are_cancelled_and_a_crossing_2xx_is_hung_up() -> None:
    call, services = ring()
    answer(call, services, "1000", 180, 0.1)
    answer(call, services, "1001", 183, 0.2, sdp=True)  # early media is not passed on
    assert [s for s in to_a(services) if s != 100] == [180]
    assert all(not r.body for k, r in services.responses if r.status == 180)
    answer(call, services, "1001", 200, 0.5, sdp=True)
    assert call.state is CallState.ANSWERED
    assert to_a(services)[-1] == 200
    winner, key = invites(services)["1001"]
    assert call.b_invite == winner and call.b_invite_key == key
    assert (winner.call_id, Side.B) in services.bound
    assert [a.call_id for a in services.acks] == [winner.call_id]
    # 1000 rang: CANCEL now; 1002 sent nothing yet: its CANCEL waits for a provisional.
    assert [c.to_addr.uri.user for c in sent(services, "CANCEL")] == ["1000"]
    answer(call, services, "1002", 180, 0.6)
    assert [c.to_addr.uri.user for c in sent(services, "CANCEL")] == ["1000", "1002"]
    assert [s for s in to_a(services) if s != 100] == [180, 200]  # no 180 after the answer
    # 1002's 200 crossed the CANCEL: ACKed and hung up; the caller's call is untouched.
    answer(call, services, "1002", 200, 0.7, sdp=True)
    (bye,) = sent(services, "BYE")
    assert bye.to_addr.uri.user == "1002" and services.acks[-1].call_id == bye.call_id
    bye_key = services.requests[-1][2]
    call.on_b_response(make_response(bye, 200), bye_key, 0.8)
    answer(call, services, "1000", 487, 0.8)
    call.on_a_ack(0.9)
    assert call.state is CallState.CONFIRMED and call.protocol_errors == 0


def test_members_that_fail_drop_out_and_the_fallback_rings_after_all_failed() -> None:
    call, services = ring(fallback=True)
    answer(call, services, "1000", 486, 0.1)
    answer(call, services, "1001", 603, 0.2)
    assert "1009" not in invites(services)
    first = invites(services)["1000"][0]
    call.on_timeout(Side.B, invites(services)["1002"][1], 32.0)  # 1002 unreachable
    fallback, key = invites(services)["1009"]
    assert call.b_invite_key == key and fallback.cseq[0] == 2
    assert fallback.call_id == first.call_id  # as in order mode: the same B Call-ID
    assert call.get_timer() == 37.0  # the fallback rings ring_s too
    answer(call, services, "1009", 200, 33.0, sdp=True)
    assert call.state is CallState.ANSWERED and to_a(services)[-1] == 200


def test_all_failed_without_fallback_is_480() -> None:
    call, services = ring()
    for user in ("1000", "1001", "1002"):
        answer(call, services, user, 486, 0.1)
    assert to_a(services)[-1] == 480 and call.state is CallState.ENDED
    assert call.end_reason == "nobody answered"


def test_ring_time_up_cancels_every_ringing_member_then_the_fallback_rings() -> None:
    call, services = ring(fallback=True, ring_s=5.0)
    for user in ("1000", "1001", "1002"):
        answer(call, services, user, 180, 0.1)
    call.on_timer(5.0)
    assert sorted(c.to_addr.uri.user or "" for c in sent(services, "CANCEL")) == [
        "1000",
        "1001",
        "1002",
    ]
    assert "1009" in invites(services) and call.state is CallState.CALLING
    answer(call, services, "1001", 200, 5.1, sdp=True)  # too late: ACKed and hung up
    assert sent(services, "BYE")[0].to_addr.uri.user == "1001"
    assert call.target.to_user == "1009" and call.state is CallState.CALLING


def test_caller_cancel_cancels_every_member_and_the_call_ends_when_all_settled() -> None:
    call, services = ring()
    answer(call, services, "1000", 180, 0.1)
    answer(call, services, "1001", 180, 0.1)
    call.on_a_cancel(1.0)
    assert to_a(services)[-1] == 487 and call.state is CallState.CANCELLING
    assert [c.to_addr.uri.user for c in sent(services, "CANCEL")] == ["1000", "1001"]
    answer(call, services, "1002", 180, 1.1)  # 1002's CANCEL waited for its 180
    assert len(sent(services, "CANCEL")) == 3
    answer(call, services, "1000", 487, 1.2)
    answer(call, services, "1001", 487, 1.2)
    assert call.state is CallState.CANCELLING
    answer(call, services, "1002", 487, 1.3)
    assert call.state is CallState.ENDED and call.end_reason == "cancelled by caller"


def test_a_member_that_answers_after_the_caller_cancelled_is_acked_and_hung_up() -> None:
    call, services = ring()
    for user in ("1000", "1001", "1002"):
        answer(call, services, user, 180, 0.1)
    call.on_a_cancel(1.0)
    answer(call, services, "1001", 200, 1.1, sdp=True)
    assert sent(services, "BYE")[0].to_addr.uri.user == "1001"
    assert [s for s in to_a(services) if s >= 200] == [487]  # the caller got no 200
    answer(call, services, "1000", 487, 1.2)
    answer(call, services, "1002", 487, 1.2)
    assert call.state is CallState.ENDED


def test_after_consent_the_group_rings_in_parallel_and_the_answer_is_bridged() -> None:
    call, services = ring(consent=True)
    assert set(invites(services)) == {"1000", "1001", "1002"}
    assert to_a(services) == [200]  # answered by us for the prompt; no 180 later
    answer(call, services, "1002", 180, 3.1)
    answer(call, services, "1002", 200, 3.2, sdp=True)
    assert call.state is CallState.CONFIRMED and to_a(services) == [200]
    assert call.target.to_user == "1002"
    assert not sent(services, "CANCEL")  # 1000 and 1001 sent no provisional yet
    answer(call, services, "1000", 180, 3.3)  # its CANCEL waited for this
    assert [c.to_addr.uri.user for c in sent(services, "CANCEL")] == ["1000"]


def test_after_consent_nobody_answers_the_caller_hears_the_farewell() -> None:
    call, services = ring(consent=True)
    assert call.hunt is not None
    for user in ("1000", "1001", "1002"):
        answer(call, services, user, 486, 3.1)
    assert call.hunt.phase is Phase.FAREWELL and call.state is CallState.ANNOUNCING
    call.on_prompt_finished(9.0)
    (bye,) = sent(services, "BYE")
    assert bye.call_id == "a-call@trunk" and call.end_reason == "nobody answered"
