"""RFC 3261 section 17 transactions driven with simulated time (no sleeping)."""

from __future__ import annotations

import itertools

import pytest

from b2bua.headers import Headers
from b2bua.message import Request, Response, make_response, parse_message
from b2bua.transaction import (
    AckReceived,
    AckTimedOut,
    CancelReceived,
    Event,
    Invite2xxRetransmitter,
    RequestReceived,
    ResponseReceived,
    State,
    StrayResponse,
    TimerConfig,
    TransactionLayer,
    TransactionTerminated,
    TransactionTimedOut,
    create_cancel,
    new_branch,
)
from b2bua.transaction_client import ICT_TABLE, NICT_TABLE
from b2bua.transaction_machine import Table
from b2bua.transaction_server import IST_TABLE, NIST_TABLE

UAC = ("192.0.2.1", 5060)
UAS = ("192.0.2.2", 5060)
_counter = itertools.count(1)


def request(
    method: str = "INVITE",
    *,
    branch: str | None = None,
    cseq: int = 1,
    call_id: str | None = None,
    extra: str = "",
) -> Request:
    branch = branch or new_branch()
    call_id = call_id or f"call-{next(_counter)}@192.0.2.1"
    text = (
        f"{method} sip:bob@192.0.2.2 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 192.0.2.1:5060;branch={branch}\r\n"
        "Max-Forwards: 70\r\n"
        f"{extra}"
        "From: <sip:alice@192.0.2.1>;tag=a1\r\n"
        "To: <sip:bob@192.0.2.2>\r\n"
        f"Call-ID: {call_id}\r\n"
        f"CSeq: {cseq} {method}\r\n"
        "Contact: <sip:alice@192.0.2.1:5060>\r\n"
        "Content-Length: 0\r\n\r\n"
    )
    msg = parse_message(text.encode())
    assert isinstance(msg, Request)
    return msg


def ack_for_2xx(resp: Response) -> Request:
    """The UAC core's ACK for a 2xx: a new branch, same Call-ID and CSeq number."""
    fields = (
        ("Via", f"SIP/2.0/UDP 192.0.2.1:5060;branch={new_branch()}"),
        ("Max-Forwards", "70"),
        ("From", resp.headers.get("From") or ""),
        ("To", resp.headers.get("To") or ""),
        ("Call-ID", resp.call_id),
        ("CSeq", f"{resp.cseq[0]} ACK"),
    )
    return Request("ACK", request().uri, Headers.of(*fields))


def sent_times(layer: TransactionLayer, until: float, start: float = 0.0) -> list[float]:
    """Steps simulated time from deadline to deadline; returns when datagrams went out."""
    times: list[float] = []
    for _ in range(200):  # bounded
        deadline = layer.get_timer()
        if deadline is None or deadline > until:
            break
        assert deadline >= start
        layer.handle_timer(deadline)
        times += [deadline] * len(layer.datagrams_to_send())
    return times


def run_until(layer: TransactionLayer, until: float) -> list[Event]:
    events: list[Event] = []
    for _ in range(200):
        deadline = layer.get_timer()
        if deadline is None or deadline > until:
            break
        events += layer.handle_timer(deadline)
    return events


def kinds(events: list[Event]) -> list[type]:
    return [type(e) for e in events]


# ---------------------------------------------------------------------------------------
# INVITE client transaction
# ---------------------------------------------------------------------------------------


def test_invite_udp_retransmits_with_timer_a_until_timer_b() -> None:
    layer = TransactionLayer()
    key = layer.send_request(request(), UAS, 0.0, reliable=False)
    first = layer.datagrams_to_send()
    assert len(first) == 1
    assert first[0][1] == UAS
    assert layer.get_timer() == pytest.approx(0.5)
    times = sent_times(layer, 31.9)
    # A starts at T1 and doubles without a cap: 0.5, 1, 2, 4, 8, 16.
    assert times == pytest.approx([0.5, 1.5, 3.5, 7.5, 15.5, 31.5])
    assert layer.stats.retransmissions == 6
    assert layer.get_timer() == pytest.approx(32.0)
    events = layer.handle_timer(32.0)
    assert events == [TransactionTimedOut(key), TransactionTerminated(key)]
    assert layer.get_timer() is None
    assert layer.state_of(key) is None
    assert len(layer) == 0


def test_invite_tcp_does_not_retransmit_but_times_out() -> None:
    layer = TransactionLayer()
    key = layer.send_request(request(), UAS, 0.0, reliable=True)
    assert len(layer.datagrams_to_send()) == 1
    assert layer.get_timer() == pytest.approx(32.0)
    assert layer.handle_timer(31.99) == []
    assert layer.datagrams_to_send() == []
    assert kinds(layer.handle_timer(32.0)) == [TransactionTimedOut, TransactionTerminated]
    assert layer.state_of(key) is None


def test_invite_provisional_stops_retransmission_and_timer_b() -> None:
    layer = TransactionLayer()
    inv = request()
    key = layer.send_request(inv, UAS, 0.0, reliable=False)
    layer.datagrams_to_send()
    ringing = make_response(inv, 180, to_tag="b1")
    events = layer.receive_message(ringing, UAS, 0.7, reliable=False)
    assert events == [ResponseReceived(ringing, key)]
    assert layer.state_of(key) is State.PROCEEDING
    # Only A was due before 0.7; after the 1xx there is nothing left to fire.
    assert layer.get_timer() is None
    assert layer.handle_timer(100.0) == []
    assert layer.datagrams_to_send() == []


def test_invite_non2xx_is_acked_by_the_transaction() -> None:
    layer = TransactionLayer()
    inv = request(extra="Route: <sip:proxy.example;lr>\r\n", cseq=7)
    key = layer.send_request(inv, UAS, 0.0, reliable=False)
    layer.datagrams_to_send()
    busy = make_response(inv, 486, to_tag="b9")
    events = layer.receive_message(busy, UAS, 0.2, reliable=False)
    assert events == [ResponseReceived(busy, key)]
    out = layer.datagrams_to_send()
    assert len(out) == 1
    ack = parse_message(out[0][0])
    assert isinstance(ack, Request)
    assert ack.method == "ACK"
    assert out[0][1] == UAS
    assert ack.branch == inv.branch  # 17.1.1.3: same branch as the INVITE
    assert ack.cseq == (7, "ACK")
    assert ack.to_addr.tag == "b9"
    assert ack.from_addr == inv.from_addr
    assert ack.uri == inv.uri
    assert ack.headers.get_all("Route") == ("<sip:proxy.example;lr>",)
    assert len(ack.vias) == 1
    # A retransmitted final is ACKed again but not shown to the TU.
    assert layer.receive_message(busy, UAS, 1.0, reliable=False) == []
    assert [parse_message(d).method for d, _ in layer.datagrams_to_send()] == ["ACK"]  # type: ignore[union-attr]
    assert layer.state_of(key) is State.COMPLETED
    # Timer D: 32 s on UDP.
    assert layer.get_timer() == pytest.approx(32.2)
    assert layer.handle_timer(32.2) == [TransactionTerminated(key)]


def test_invite_non2xx_over_tcp_terminates_at_once() -> None:
    layer = TransactionLayer()
    inv = request()
    key = layer.send_request(inv, UAS, 0.0, reliable=True)
    layer.datagrams_to_send()
    events = layer.receive_message(make_response(inv, 603), UAS, 0.1, reliable=True)
    assert kinds(events) == [ResponseReceived, TransactionTerminated]  # timer D is zero
    assert len(layer.datagrams_to_send()) == 1  # the ACK
    assert layer.state_of(key) is None
    assert layer.get_timer() is None


def test_invite_2xx_retransmissions_reach_the_tu_until_timer_m() -> None:
    layer = TransactionLayer()
    inv = request()
    key = layer.send_request(inv, UAS, 0.0, reliable=False)
    ok = make_response(inv, 200, to_tag="b2")
    assert layer.receive_message(ok, UAS, 0.1, reliable=False) == [ResponseReceived(ok, key)]
    assert layer.state_of(key) is State.ACCEPTED
    layer.datagrams_to_send()
    # The transaction sends no ACK for a 2xx; the TU's dialog does, on every copy.
    assert layer.receive_message(ok, UAS, 0.6, reliable=False) == [ResponseReceived(ok, key)]
    assert layer.datagrams_to_send() == []
    assert layer.handle_timer(32.1) == [TransactionTerminated(key)]
    late = layer.receive_message(ok, UAS, 33.0, reliable=False)
    assert late == [StrayResponse(ok, UAS)]
    assert layer.stats.stray_responses == 1


# ---------------------------------------------------------------------------------------
# non-INVITE client transaction
# ---------------------------------------------------------------------------------------


def test_non_invite_timer_e_is_capped_at_t2() -> None:
    layer = TransactionLayer()
    key = layer.send_request(request("OPTIONS"), UAS, 0.0, reliable=False)
    layer.datagrams_to_send()
    times = sent_times(layer, 31.9)
    assert times == pytest.approx([0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5])
    assert kinds(layer.handle_timer(32.0)) == [TransactionTimedOut, TransactionTerminated]
    assert layer.state_of(key) is None


def test_non_invite_proceeding_retransmits_every_t2() -> None:
    layer = TransactionLayer()
    req = request("BYE")
    key = layer.send_request(req, UAS, 0.0, reliable=False)
    layer.datagrams_to_send()
    trying = make_response(req, 100)
    assert layer.receive_message(trying, UAS, 0.2, reliable=False) == [
        ResponseReceived(trying, key)
    ]
    times = sent_times(layer, 20.0)
    # E was armed for 0.5 before the 1xx; from then on it is reset to T2 (17.1.2.2).
    assert times == pytest.approx([0.5, 4.5, 8.5, 12.5, 16.5])
    ok = make_response(req, 200)
    assert layer.receive_message(ok, UAS, 17.0, reliable=False) == [ResponseReceived(ok, key)]
    # Timer K = T4 absorbs retransmitted finals.
    assert layer.receive_message(ok, UAS, 18.0, reliable=False) == []
    assert layer.get_timer() == pytest.approx(22.0)
    assert layer.handle_timer(22.0) == [TransactionTerminated(key)]


def test_non_invite_final_over_tcp_terminates_at_once() -> None:
    layer = TransactionLayer()
    req = request("REGISTER")
    key = layer.send_request(req, UAS, 0.0, reliable=True)
    assert layer.get_timer() == pytest.approx(32.0)  # F only, no E
    events = layer.receive_message(make_response(req, 401), UAS, 0.1, reliable=True)
    assert kinds(events) == [ResponseReceived, TransactionTerminated]  # K is zero
    assert layer.state_of(key) is None


def test_configurable_timers() -> None:
    layer = TransactionLayer(TimerConfig(t1=0.1, t2=0.4, t4=1.0))
    layer.send_request(request("OPTIONS"), UAS, 0.0, reliable=False)
    layer.datagrams_to_send()
    assert sent_times(layer, 2.0) == pytest.approx([0.1, 0.3, 0.7, 1.1, 1.5, 1.9])
    assert kinds(layer.handle_timer(6.4)) == [TransactionTimedOut, TransactionTerminated]


def test_response_matching_uses_branch_and_cseq_method() -> None:
    layer = TransactionLayer()
    inv = request()
    inv_key = layer.send_request(inv, UAS, 0.0, reliable=False)
    cancel = create_cancel(inv)
    cancel_key = layer.send_request(cancel, UAS, 0.1, reliable=False)
    assert cancel_key != inv_key
    ok_cancel = make_response(cancel, 200)
    assert layer.receive_message(ok_cancel, UAS, 0.2, reliable=False) == [
        ResponseReceived(ok_cancel, cancel_key)
    ]
    assert layer.state_of(inv_key) is State.CALLING
    terminated = make_response(inv, 487)
    events = layer.receive_message(terminated, UAS, 0.3, reliable=False)
    assert events == [ResponseReceived(terminated, inv_key)]
    # Same branch, other method: no match.
    other = make_response(request("INFO", branch=inv.branch), 200)
    assert kinds(layer.receive_message(other, UAS, 0.4, reliable=False)) == [StrayResponse]


def test_create_cancel_copies_the_invite() -> None:
    inv = request(cseq=42, extra="Route: <sip:p1.example;lr>, <sip:p2.example;lr>\r\n")
    cancel = create_cancel(inv)
    assert cancel.method == "CANCEL"
    assert cancel.uri == inv.uri
    assert cancel.cseq == (42, "CANCEL")
    assert cancel.branch == inv.branch
    assert cancel.call_id == inv.call_id
    assert cancel.to_addr == inv.to_addr
    assert cancel.headers.get_all("Route") == ("<sip:p1.example;lr>", "<sip:p2.example;lr>")
    assert isinstance(parse_message(cancel.to_bytes()), Request)


def test_send_request_refuses_ack_and_missing_cookie() -> None:
    layer = TransactionLayer()
    with pytest.raises(ValueError, match="ACK"):
        layer.send_request(request("ACK"), UAS, 0.0, reliable=False)
    with pytest.raises(ValueError, match="branch"):
        layer.send_request(request(branch="old2543"), UAS, 0.0, reliable=False)
    inv = request()
    layer.send_request(inv, UAS, 0.0, reliable=False)
    with pytest.raises(ValueError, match="exists"):
        layer.send_request(inv, UAS, 0.0, reliable=False)


# ---------------------------------------------------------------------------------------
# INVITE server transaction
# ---------------------------------------------------------------------------------------


def test_ist_sends_100_trying_after_200ms_and_absorbs_retransmissions() -> None:
    layer = TransactionLayer()
    inv = request()
    events = layer.receive_message(inv, UAC, 0.0, reliable=False)
    assert len(events) == 1
    assert isinstance(events[0], RequestReceived)
    key = events[0].key
    assert layer.get_timer() == pytest.approx(0.2)
    # A retransmission before any response: absorbed, nothing to resend, no event.
    assert layer.receive_message(inv, UAC, 0.1, reliable=False) == []
    assert layer.datagrams_to_send() == []
    assert layer.handle_timer(0.2) == []
    out = layer.datagrams_to_send()
    assert len(out) == 1
    trying = parse_message(out[0][0])
    assert isinstance(trying, Response)
    assert trying.status == 100
    assert out[0][1] == UAC
    # A later retransmission gets the last response again.
    assert layer.receive_message(inv, UAC, 0.5, reliable=False) == []
    assert [d for d, _ in layer.datagrams_to_send()] == [out[0][0]]
    assert layer.stats.absorbed_requests == 2
    assert layer.state_of(key) is State.PROCEEDING


def test_ist_without_auto_100_when_turned_off() -> None:
    layer = TransactionLayer(TimerConfig(trying_100=None))
    inv = request()
    (event,) = layer.receive_message(inv, UAC, 0.0, reliable=False)
    assert isinstance(event, RequestReceived)
    assert layer.get_timer() is None
    # The TU challenges at once: the 401 is the only response on the wire.
    layer.send_response(event.key, make_response(inv, 401), 0.05)
    sent = [parse_message(d) for d, _ in layer.datagrams_to_send()]
    assert [m.status for m in sent if isinstance(m, Response)] == [401]


def test_ist_tu_answer_before_200ms_cancels_100_trying() -> None:
    layer = TransactionLayer()
    inv = request()
    (event,) = layer.receive_message(inv, UAC, 0.0, reliable=False)
    assert isinstance(event, RequestReceived)
    layer.send_response(event.key, make_response(inv, 180, to_tag="t"), 0.1)
    layer.datagrams_to_send()
    assert layer.handle_timer(0.3) == []
    assert layer.datagrams_to_send() == []


def test_ist_error_final_retransmitted_by_timer_g_until_timer_h() -> None:
    layer = TransactionLayer()
    inv = request()
    (event,) = layer.receive_message(inv, UAC, 0.0, reliable=False)
    assert isinstance(event, RequestReceived)
    assert layer.send_response(event.key, make_response(inv, 486, to_tag="x"), 0.1) == []
    assert len(layer.datagrams_to_send()) == 1
    times = sent_times(layer, 32.0)
    # G: T1 doubling, capped at T2.
    expected = [0.6, 1.6, 3.6, 7.6, 11.6, 15.6, 19.6, 23.6, 27.6, 31.6]
    assert times == pytest.approx(expected)
    assert layer.get_timer() == pytest.approx(32.1)
    assert layer.handle_timer(32.1) == [
        TransactionTimedOut(event.key),
        TransactionTerminated(event.key),
    ]


def test_ist_ack_for_error_final_confirms_and_timer_i_ends() -> None:
    layer = TransactionLayer()
    inv = request()
    (event,) = layer.receive_message(inv, UAC, 0.0, reliable=False)
    assert isinstance(event, RequestReceived)
    resp = make_response(inv, 486, to_tag="x")
    layer.send_response(event.key, resp, 0.1)
    layer.datagrams_to_send()
    ack = Request(
        "ACK",
        inv.uri,
        inv.headers.set("CSeq", f"{inv.cseq[0]} ACK").set("To", resp.headers.get("To") or ""),
    )
    # The ACK of a non-2xx is the transaction's own: not passed to the TU.
    assert layer.receive_message(ack, UAC, 0.3, reliable=False) == []
    assert layer.state_of(event.key) is State.CONFIRMED
    assert layer.receive_message(ack, UAC, 0.4, reliable=False) == []  # absorbed
    assert layer.datagrams_to_send() == []  # no more retransmission of the 486
    assert layer.get_timer() == pytest.approx(5.3)  # timer I = T4
    assert layer.handle_timer(5.3) == [TransactionTerminated(event.key)]


def test_ist_over_tcp_no_timer_g_and_zero_timer_i() -> None:
    layer = TransactionLayer()
    inv = request()
    (event,) = layer.receive_message(inv, UAC, 0.0, reliable=True)
    assert isinstance(event, RequestReceived)
    resp = make_response(inv, 404, to_tag="x")
    layer.send_response(event.key, resp, 0.0)
    assert layer.get_timer() == pytest.approx(32.0)  # H only
    ack = Request("ACK", inv.uri, inv.headers.set("CSeq", f"{inv.cseq[0]} ACK"))
    assert layer.receive_message(ack, UAC, 1.0, reliable=True) == [TransactionTerminated(event.key)]
    assert layer.get_timer() is None


def test_ist_2xx_is_retransmitted_until_ack() -> None:
    layer = TransactionLayer(TimerConfig(trying_100=None))
    inv = request()
    (event,) = layer.receive_message(inv, UAC, 0.0, reliable=False)
    assert isinstance(event, RequestReceived)
    ok = make_response(inv, 200, to_tag="u1")
    assert layer.send_response(event.key, ok, 1.0) == []
    assert layer.state_of(event.key) is State.ACCEPTED
    assert len(layer.datagrams_to_send()) == 1
    # RFC 6026: a retransmitted INVITE is absorbed, not a new request for the TU.
    assert layer.receive_message(inv, UAC, 1.2, reliable=False) == []
    assert layer.datagrams_to_send() == []
    times = sent_times(layer, 8.0)
    assert times == pytest.approx([1.5, 2.5, 4.5])  # T1, 2*T1, 4*T1 after 1.0
    ack = ack_for_2xx(ok)
    events = layer.receive_message(ack, UAC, 8.0, reliable=False)
    assert events == [AckReceived(ack, UAC)]
    # No more retransmissions; only timer L remains.
    assert sent_times(layer, 40.0) == []
    assert layer.state_of(event.key) is None


def test_ist_2xx_without_ack_gives_up_after_64_t1() -> None:
    layer = TransactionLayer(TimerConfig(trying_100=None))
    inv = request()
    (event,) = layer.receive_message(inv, UAC, 0.0, reliable=False)
    assert isinstance(event, RequestReceived)
    ok = make_response(inv, 200, to_tag="u1")
    layer.send_response(event.key, ok, 0.0)
    layer.datagrams_to_send()
    events: list[Event] = []
    times: list[float] = []
    for _ in range(100):
        deadline = layer.get_timer()
        if deadline is None:
            break
        events += layer.handle_timer(deadline)
        times += [deadline] * len(layer.datagrams_to_send())
    expected = [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    assert times == pytest.approx(expected)
    gave_up = [e for e in events if isinstance(e, AckTimedOut)]
    assert gave_up == [AckTimedOut(inv.call_id, 1, ok)]
    assert TransactionTerminated(event.key) in events


def test_ist_2xx_over_tcp_is_still_retransmitted() -> None:
    # 13.3.1.4 is end to end, so the UAS core retransmits on reliable transports too.
    layer = TransactionLayer(TimerConfig(trying_100=None))
    inv = request()
    (event,) = layer.receive_message(inv, UAC, 0.0, reliable=True)
    assert isinstance(event, RequestReceived)
    layer.send_response(event.key, make_response(inv, 200, to_tag="u"), 0.0)
    layer.datagrams_to_send()
    assert sent_times(layer, 1.0) == pytest.approx([0.5])


def test_cancel_matches_the_invite_server_transaction() -> None:
    layer = TransactionLayer()
    inv = request()
    (event,) = layer.receive_message(inv, UAC, 0.0, reliable=False)
    assert isinstance(event, RequestReceived)
    cancel = create_cancel(inv)
    (cev,) = layer.receive_message(cancel, UAC, 0.1, reliable=False)
    assert isinstance(cev, CancelReceived)
    assert cev.invite_key == event.key
    assert cev.key != event.key
    layer.send_response(cev.key, make_response(cancel, 200), 0.1)
    layer.send_response(event.key, make_response(inv, 487), 0.1)
    statuses = [parse_message(d).status for d, _ in layer.datagrams_to_send()]  # type: ignore[union-attr]
    assert statuses == [200, 487]
    # A CANCEL for nothing: the TU answers 481.
    stray = create_cancel(request())
    (sev,) = layer.receive_message(stray, UAC, 0.2, reliable=False)
    assert isinstance(sev, CancelReceived)
    assert sev.invite_key is None


# ---------------------------------------------------------------------------------------
# non-INVITE server transaction
# ---------------------------------------------------------------------------------------


def test_nist_absorbs_and_resends_final_until_timer_j() -> None:
    layer = TransactionLayer()
    req = request("OPTIONS")
    (event,) = layer.receive_message(req, UAC, 0.0, reliable=False)
    assert isinstance(event, RequestReceived)
    assert layer.receive_message(req, UAC, 0.5, reliable=False) == []  # Trying: absorb
    assert layer.datagrams_to_send() == []
    layer.send_response(event.key, make_response(req, 200), 1.0)
    (first,) = layer.datagrams_to_send()
    assert layer.receive_message(req, UAC, 1.5, reliable=False) == []
    assert layer.datagrams_to_send() == [first]
    assert layer.get_timer() == pytest.approx(33.0)  # J = 64*T1
    assert layer.handle_timer(33.0) == [TransactionTerminated(event.key)]
    # After J a copy is a new request again.
    assert kinds(layer.receive_message(req, UAC, 34.0, reliable=False)) == [RequestReceived]


def test_nist_over_tcp_terminates_with_the_final() -> None:
    layer = TransactionLayer()
    req = request("REGISTER")
    (event,) = layer.receive_message(req, UAC, 0.0, reliable=True)
    assert isinstance(event, RequestReceived)
    trying = layer.send_response(event.key, make_response(req, 100), 0.0)
    assert trying == []
    assert layer.state_of(event.key) is State.PROCEEDING
    done = layer.send_response(event.key, make_response(req, 200), 0.0)
    assert done == [TransactionTerminated(event.key)]
    assert len(layer.datagrams_to_send()) == 2


# ---------------------------------------------------------------------------------------
# Errors are counted, never raised
# ---------------------------------------------------------------------------------------


def test_input_missing_from_the_table_is_counted() -> None:
    layer = TransactionLayer()
    req = request("OPTIONS")
    (event,) = layer.receive_message(req, UAC, 0.0, reliable=False)
    assert isinstance(event, RequestReceived)
    layer.send_response(event.key, make_response(req, 200), 0.0)
    # A provisional after the final is a TU error: dropped and counted.
    assert layer.send_response(event.key, make_response(req, 180), 0.1) == []
    assert layer.stats.protocol_errors == 1
    assert len(layer.datagrams_to_send()) == 1
    # A response for a transaction that ended is counted too.
    assert layer.send_response("s|nothing", make_response(req, 200), 0.2) == []
    assert layer.stats.protocol_errors == 2


def test_message_lacking_matching_fields_is_dropped() -> None:
    layer = TransactionLayer()
    bad = Request("OPTIONS", request().uri, Headers.of(("Via", "SIP/2.0/UDP h;branch=z9hG4bKx")))
    assert layer.receive_message(bad, UAC, 0.0, reliable=False) == []
    no_via = Response(200, "OK", Headers.of(("CSeq", "1 OPTIONS")))
    assert layer.receive_message(no_via, UAS, 0.0, reliable=False) == []
    assert layer.stats.malformed == 2
    assert len(layer) == 0


def test_rfc2543_requests_match_without_magic_cookie() -> None:
    layer = TransactionLayer()
    inv = request(branch="1234")
    (event,) = layer.receive_message(inv, UAC, 0.0, reliable=False)
    assert isinstance(event, RequestReceived)
    assert layer.receive_message(inv, UAC, 0.1, reliable=False) == []  # retransmission
    layer.send_response(event.key, make_response(inv, 486, to_tag="z"), 0.1)
    ack = Request("ACK", inv.uri, inv.headers.set("CSeq", f"{inv.cseq[0]} ACK"))
    layer.receive_message(ack, UAC, 0.2, reliable=False)
    assert layer.state_of(event.key) is State.CONFIRMED


def test_stray_response_is_counted() -> None:
    layer = TransactionLayer()
    resp = make_response(request("OPTIONS"), 200)
    assert layer.receive_message(resp, UAS, 0.0, reliable=False) == [StrayResponse(resp, UAS)]
    assert layer.stats.stray_responses == 1


@pytest.mark.parametrize(
    ("table", "states", "waiting_for_tu"),
    [
        (
            ICT_TABLE,
            {State.CALLING, State.PROCEEDING, State.COMPLETED, State.ACCEPTED},
            {State.PROCEEDING},
        ),
        (NICT_TABLE, {State.TRYING, State.PROCEEDING, State.COMPLETED}, set()),
        (
            IST_TABLE,
            {State.PROCEEDING, State.COMPLETED, State.CONFIRMED, State.ACCEPTED},
            {State.PROCEEDING},
        ),
        (
            NIST_TABLE,
            {State.TRYING, State.PROCEEDING, State.COMPLETED},
            {State.TRYING, State.PROCEEDING},
        ),
    ],
)
def test_only_tu_driven_states_lack_a_timer_exit(
    table: Table, states: set[State], waiting_for_tu: set[State]
) -> None:
    # A state is left by a timer, or (RFC 3261) it waits for the TU: a response to
    # send, or a CANCEL / its own timeout for a ringing INVITE.
    timed_exit = {
        state
        for (state, inp), (_, nxt) in table.items()
        if inp.name.startswith("TIMER") and nxt is not state
    }
    assert states - timed_exit == waiting_for_tu
    assert {state for state, _ in table} == states


# ---------------------------------------------------------------------------------------
# Two layers over a lossy simulated network
# ---------------------------------------------------------------------------------------


def test_invite_through_a_lossy_network() -> None:
    uac = TransactionLayer()
    uas = TransactionLayer(TimerConfig(trying_100=None))
    inv = request()
    ikey = uac.send_request(inv, UAS, 0.0, reliable=False)
    drops = {1, 3}  # the first INVITE and the first 486 are lost
    sent = 0
    now = 0.0
    uac_events: list[Event] = []
    for _ in range(100):
        for src, dst, peer in ((uac, uas, UAC), (uas, uac, UAS)):
            for data, _addr in src.datagrams_to_send():
                sent += 1
                if sent in drops:
                    continue
                msg = parse_message(data)
                for ev in dst.receive_message(msg, peer, now, reliable=False):
                    if isinstance(ev, RequestReceived):
                        req = ev.request
                        dst.send_response(ev.key, make_response(req, 486, to_tag="q"), now)
                    elif dst is uac:
                        uac_events.append(ev)
        deadlines = [d for d in (uac.get_timer(), uas.get_timer()) if d is not None]
        if not deadlines:
            break
        now = min(deadlines)
        uac_events += uac.handle_timer(now)
        uas.handle_timer(now)
    finals = [e for e in uac_events if isinstance(e, ResponseReceived)]
    assert [e.response.status for e in finals] == [486]
    assert finals[0].key == ikey
    assert TransactionTerminated(ikey) in uac_events
    assert len(uac) == 0
    assert len(uas) == 0
    # Both losses were repaired by retransmission: timer A on the UAC, G on the UAS.
    assert uac.stats.retransmissions >= 1
    assert uas.stats.retransmissions >= 1


def test_transport_error_times_the_transaction_out() -> None:
    layer = TransactionLayer()
    key = layer.send_request(request("OPTIONS"), UAS, 0.0, reliable=True)
    assert layer.transport_error(key, 0.1) == [
        TransactionTimedOut(key),
        TransactionTerminated(key),
    ]
    assert layer.get_timer() is None
    assert layer.transport_error(key, 0.2) == []  # already gone: nothing happens


def test_ack_before_any_final_is_a_counted_protocol_error() -> None:
    layer = TransactionLayer()
    inv = request()
    (event,) = layer.receive_message(inv, UAC, 0.0, reliable=False)
    assert isinstance(event, RequestReceived)
    ack = Request("ACK", inv.uri, inv.headers.set("CSeq", f"{inv.cseq[0]} ACK"))
    assert layer.receive_message(ack, UAC, 0.1, reliable=False) == []
    assert layer.stats.protocol_errors == 1
    assert layer.state_of(event.key) is State.PROCEEDING


def test_invite_2xx_retransmitter_standalone() -> None:
    inv = request()
    ok = make_response(inv, 200, to_tag="s")
    rtx = Invite2xxRetransmitter(ok, UAC, 10.0, t1=0.5, t2=4.0)
    assert rtx.next_deadline() == pytest.approx(10.5)
    assert rtx.handle_timer(10.4) == []
    assert rtx.handle_timer(10.5) == [ok.to_bytes()]
    assert rtx.next_deadline() == pytest.approx(11.5)
    rtx.ack_received()
    assert rtx.done
    assert rtx.next_deadline() is None
    assert rtx.handle_timer(100.0) == []
    # Late: called only after 64*T1, the give-up comes first and ends it.
    late = Invite2xxRetransmitter(ok, UAC, 0.0)
    assert late.handle_timer(40.0) == [AckTimedOut(inv.call_id, 1, ok)]
    assert late.done


def test_new_cseq_on_a_reused_branch_is_a_new_request() -> None:
    # pyVoIP resends a challenged INVITE with credentials on the same branch (against
    # RFC 3261 8.1.1.7); it must reach the TU, while a true retransmission does not.
    layer = TransactionLayer()
    first = request(branch="z9hG4bKsame", cseq=1)
    (event,) = layer.receive_message(first, UAC, 0.0, reliable=False)
    assert isinstance(event, RequestReceived)
    layer.send_response(event.key, make_response(first, 401), 0.01)
    again = request(branch="z9hG4bKsame", cseq=2, call_id=first.call_id)
    events = layer.receive_message(again, UAC, 0.1, reliable=False)
    assert kinds(events) == [RequestReceived]
    assert layer.receive_message(again, UAC, 0.2, reliable=False) == []  # retransmission
