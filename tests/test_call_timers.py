"""Session timers (RFC 4028) on both legs of a call, with simulated time: the call logic
with stand-ins for the switch and the relay (tests/test_srtp_negotiation.py)."""

from __future__ import annotations

import pytest

from b2bua.call import Call, CallState, Side
from b2bua.headers import Headers
from b2bua.message import Request, make_response
from b2bua.validate import RequestRejectedError
from tests.test_srtp_negotiation import (
    FakeServices,
    a_invite,
    b_offer,
    final_to_a,
    phone_answer,
    plain_offer,
    start,
    target,
)


def plain_start() -> tuple[Call, FakeServices]:
    return start(plain_offer().to_bytes(), "off", "off")


def answer_b(call: Call, services: FakeServices, *extra: tuple[str, str]) -> None:
    assert call.b_invite is not None
    response = make_response(
        call.b_invite,
        200,
        to_tag="phone1",
        headers=[
            ("Contact", "<sip:phone@127.0.0.3:5070>"),
            ("Content-Type", "application/sdp"),
            *extra,
        ],
        body=phone_answer(b_offer(call)).to_bytes(),
    )
    call.on_b_response(response, call.b_invite_key, 1.0)
    call.on_a_ack(1.1)


def start_with_timer(value: str, supported: bool = True) -> tuple[Call, FakeServices]:
    invite = a_invite(plain_offer().to_bytes())
    fields = list(invite.headers)
    fields.append(("Session-Expires", value))
    if supported:
        fields.append(("Supported", "timer"))
    invite = Request("INVITE", invite.uri, Headers(tuple(fields)), invite.body)
    services = FakeServices()
    call = Call.start(
        services, invite, "a-key", ("127.0.0.2", 5080), "UDP", target(), "inbound", 0.0
    )
    return call, services


def test_b_invite_offers_timers_and_a_small_interval_from_a_gets_422() -> None:
    call, _ = plain_start()
    assert call.b_invite is not None
    assert call.b_invite.headers.get("Session-Expires") == "1800"
    assert "timer" in call.b_invite.headers.get_all("Supported")
    with pytest.raises(RequestRejectedError) as info:
        start_with_timer("30")
    assert info.value.status == 422
    assert ("Min-SE", "90") in info.value.headers


def test_we_refresh_leg_a_at_half_the_interval_with_the_same_sdp() -> None:
    call, services = start_with_timer("120;refresher=uas")
    answer_b(call, services)
    ok = final_to_a(services)
    assert ok.headers.get("Session-Expires") == "120;refresher=uas"
    assert call.state is CallState.CONFIRMED
    deadline = call.get_timer()
    assert deadline == pytest.approx(1.0 + 60)
    before = len(services.requests)
    call.on_timer(deadline)  # type: ignore[arg-type]
    side, refresh, key = services.requests[before]
    assert side is Side.A
    assert refresh.method == "INVITE"
    assert refresh.body == ok.body  # unchanged SDP: a refresh, not a new offer
    assert refresh.headers.get("Session-Expires") == "120;refresher=uac"  # RFC 4028 7.4
    call.on_a_response(make_response(refresh, 200, body=ok.body), key, 61.0)
    assert services.acks[-1].method == "ACK"
    assert call.get_timer() == pytest.approx(61.0 + 60)


def test_peer_refresher_missing_ends_the_call_with_bye() -> None:
    call, services = start_with_timer("120;refresher=uac")
    answer_b(call, services)
    ok = final_to_a(services)
    assert ok.headers.get("Require") == "timer"
    expiry = call.get_timer()
    assert expiry == pytest.approx(1.0 + 120 - 32)
    call.on_timer(expiry)  # type: ignore[arg-type]
    byes = [r for _, r, _ in services.requests if r.method == "BYE"]
    assert len(byes) == 2  # both legs
    assert call.end_reason == "session timer expired"


def test_b_leg_timer_from_its_2xx_and_refresh_failure_ends_the_call() -> None:
    call, services = plain_start()
    answer_b(call, services, ("Session-Expires", "100;refresher=uac"), ("Require", "timer"))
    deadline = call.get_timer()
    assert deadline == pytest.approx(1.0 + 50)
    call.on_timer(deadline)  # type: ignore[arg-type]
    side, refresh, key = services.requests[-1]
    assert side is Side.B
    assert refresh.method == "INVITE"
    call.on_b_response(make_response(refresh, 481), key, 52.0)
    assert call.end_reason == "session refresh failed"


def peer_reinvite(call: Call, session_expires: str | None) -> Request:
    """The trunk (leg A) re-INVITEs in its dialog, with or without Session-Expires."""
    leg = call.leg(Side.A)
    assert leg.dialog is not None
    headers = [("Supported", "timer")]
    if session_expires is not None:
        headers.append(("Session-Expires", session_expires))
    ours = leg.dialog.create_request("INVITE", body=plain_offer().to_bytes())
    fields = [
        ("Via", "SIP/2.0/UDP 127.0.0.2:5080;branch=z9hG4bKpeer1"),
        ("From", ours.headers.get("To") or ""),
        ("To", ours.headers.get("From") or ""),
        ("Call-ID", ours.call_id),
        ("CSeq", "7 INVITE"),
        ("Contact", "<sip:trunk@127.0.0.2:5080>"),
        ("Content-Type", "application/sdp"),
        *headers,
    ]
    return Request("INVITE", ours.uri, Headers.of(*fields), ours.body)


def test_peer_refresh_is_relayed_with_the_other_legs_timer_and_answered_with_its_own() -> None:
    call, services = start_with_timer("1800;refresher=uac")
    answer_b(call, services, ("Session-Expires", "1800;refresher=uac"), ("Require", "timer"))
    assert call.state is CallState.CONFIRMED
    before = len(services.requests)
    call.on_request(Side.A, peer_reinvite(call, "1800;refresher=uac"), "peer-key", 900.0)
    (side, relayed, key) = services.requests[before]
    assert side is Side.B and relayed.method == "INVITE"
    # On B we refresh (the phone's 200 said refresher=uac, we were its UAC): still ours.
    assert relayed.headers.get("Session-Expires") == "1800;refresher=uac"
    call.on_b_response(
        make_response(
            relayed,
            200,
            headers=[
                ("Contact", "<sip:phone@127.0.0.3:5070>"),
                ("Session-Expires", "1800;refresher=uac"),
                ("Require", "timer"),
            ],
            body=phone_answer(b_offer(call)).to_bytes(),
        ),
        key,
        900.5,
    )
    ok = [r for k, r in services.responses if k == "peer-key"][-1]
    assert ok.status == 200
    # Our 2xx tells the trunk it still refreshes (RFC 4028 section 9), and both legs'
    # timers restarted: no expiry near the original 1800 - 32 s after the first 200.
    assert ok.headers.get("Session-Expires") == "1800;refresher=uac"
    assert "timer" in ok.headers.get_all("Require")
    assert call.leg(Side.A).timer_start == 900.5
    assert call.leg(Side.B).timer_start == 900.5


def test_peer_refresh_with_too_small_an_interval_gets_422_and_is_not_relayed() -> None:
    call, services = start_with_timer("1800;refresher=uac")
    answer_b(call, services)
    before = len(services.requests)
    call.on_request(Side.A, peer_reinvite(call, "30"), "peer-key", 100.0)
    assert len(services.requests) == before
    (answer,) = [r for k, r in services.responses if k == "peer-key"]
    assert answer.status == 422 and answer.headers.get("Min-SE") == "90"


def trunk_bye(call: Call, cseq: int) -> Request:
    """The trunk's BYE in leg A's dialog."""
    leg = call.leg(Side.A)
    assert leg.dialog is not None
    ours = leg.dialog.create_request("BYE")
    return Request(
        "BYE",
        ours.uri,
        Headers.of(
            ("Via", f"SIP/2.0/UDP 127.0.0.2:5080;branch=z9hG4bKbye{cseq}"),
            ("From", ours.headers.get("To") or ""),
            ("To", ours.headers.get("From") or ""),
            ("Call-ID", ours.call_id),
            ("CSeq", f"{cseq} BYE"),
        ),
    )


def test_a_refresh_answered_after_the_call_ended_is_acked_and_changes_nothing() -> None:
    # We refresh leg A; before its 200 comes the trunk hangs up. The 200 still gets its
    # ACK (RFC 3261 13.2.2.4: every 2xx to an INVITE is ACKed, or the peer retransmits
    # it for 32 s), and the ended call's dialog and media stay as they were.
    call, services = start_with_timer("120;refresher=uas")
    answer_b(call, services)
    ok = final_to_a(services)
    call.on_timer(call.get_timer())  # type: ignore[arg-type]
    _, refresh, key = services.requests[-1]
    assert refresh.method == "INVITE"
    leg = call.leg(Side.A)
    assert leg.dialog is not None
    call.on_request(Side.A, trunk_bye(call, 8), "bye-key", 62.0)
    assert leg.dialog.terminated
    errors = leg.dialog.protocol_errors
    acks = len(services.acks)
    call.on_a_response(make_response(refresh, 200, body=ok.body), key, 62.5)
    assert len(services.acks) == acks + 1
    ack = services.acks[-1]
    assert ack.method == "ACK" and ack.cseq == (refresh.cseq[0], "ACK")
    assert leg.dialog.protocol_errors == errors  # expected, not a protocol error


def test_a_relayed_reinvite_answered_after_the_hang_up_gets_acked_and_the_offerer_487() -> None:
    # The trunk re-INVITEs (we relay it to the phone), then hangs up before the phone
    # answers. Its re-INVITE gets 487 (RFC 3261 15.1.2); the phone's late 200 gets its ACK
    # and touches nothing of the ended call (its media are closed).
    call, services = start_with_timer("1800;refresher=uac")
    answer_b(call, services)
    before = len(services.requests)
    call.on_request(Side.A, peer_reinvite(call, "1800;refresher=uac"), "peer-key", 900.0)
    (side, relayed, key) = services.requests[before]
    assert side is Side.B and relayed.method == "INVITE"
    call.on_request(Side.A, trunk_bye(call, 8), "bye-key", 900.2)
    a_dialog = call.leg(Side.A).dialog
    assert a_dialog is not None and a_dialog.terminated
    acks = len(services.acks)
    late = make_response(
        relayed,
        200,
        headers=[("Contact", "<sip:phone@127.0.0.3:5070>")],
        body=phone_answer(b_offer(call)).to_bytes(),
    )
    call.on_b_response(late, key, 900.5)
    assert len(services.acks) == acks + 1 and services.acks[-1].cseq[1] == "ACK"
    answers = [r.status for k, r in services.responses if k == "peer-key"]
    assert answers == [487]
