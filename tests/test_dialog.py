"""RFC 3261 section 12 dialogs: creation, route sets, CSeq, target refresh."""

from __future__ import annotations

import pytest

from b2bua.dialog import (
    DIALOG_TABLE,
    Dialog,
    DialogState,
    request_dialog_id,
    response_dialog_id,
)
from b2bua.errors import SipError
from b2bua.headers import parse_address, parse_via
from b2bua.message import Request, Response, make_response, parse_message
from b2bua.uri import parse_uri

ALICE_CONTACT = parse_address("<sip:alice@192.0.2.1:5060>")
BOB_CONTACT = parse_address("<sip:bob@192.0.2.2:5070>")


def invite(
    *, cseq: int = 1, record_route: str = "", contact: str = "alice@192.0.2.1:5060"
) -> Request:
    text = (
        "INVITE sip:bob@example.com SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKinv1\r\n"
        "Max-Forwards: 70\r\n"
        f"{record_route}"
        'From: "Alice" <sip:alice@example.com>;tag=a1\r\n'
        "To: <sip:bob@example.com>\r\n"
        "Call-ID: dlg-1@192.0.2.1\r\n"
        f"CSeq: {cseq} INVITE\r\n"
        f"Contact: <sip:{contact}>\r\n"
        "Content-Length: 0\r\n\r\n"
    )
    msg = parse_message(text.encode())
    assert isinstance(msg, Request)
    return msg


def response_to(
    req: Request, status: int, *, contact: str | None = "bob@192.0.2.2:5070", tag: str | None = "b1"
) -> Response:
    headers = [("Contact", f"<sip:{contact}>")] if contact else []
    resp = make_response(req, status, to_tag=tag, headers=headers)
    if tag is None:
        resp = Response(resp.status, resp.reason, resp.headers.set("To", "<sip:bob@example.com>"))
    return resp


RR = "Record-Route: <sip:p1.example.com;lr>, <sip:p2.example.com;lr>\r\n"


def in_dialog(
    method: str, cseq: int, *, contact: str | None = None, to_tag: str = "u1", from_tag: str = "a1"
) -> Request:
    text = (
        f"{method} sip:me@192.0.2.9 SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKx\r\n"
        f"From: <sip:alice@example.com>;tag={from_tag}\r\n"
        f"To: <sip:bob@example.com>;tag={to_tag}\r\n"
        "Call-ID: dlg-1@192.0.2.1\r\n"
        f"CSeq: {cseq} {method}\r\n"
        + (f"Contact: <sip:{contact}>\r\n" if contact else "")
        + "Content-Length: 0\r\n\r\n"
    )
    msg = parse_message(text.encode())
    assert isinstance(msg, Request)
    return msg


# ---------------------------------------------------------------------------------------
# UAC side
# ---------------------------------------------------------------------------------------


def test_uac_dialog_from_2xx_is_confirmed_with_reversed_route_set() -> None:
    req = invite(cseq=5, record_route=RR)
    ok = make_response(req, 200, to_tag="b1", headers=[("Contact", "<sip:bob@192.0.2.2:5070>")])
    d = Dialog.from_uac(req, ok)
    assert state(d) is DialogState.CONFIRMED
    assert d.dialog_id == ("dlg-1@192.0.2.1", "a1", "b1")
    assert d.dialog_id == response_dialog_id(ok)
    assert [str(r.uri) for r in d.route_set] == ["sip:p2.example.com;lr", "sip:p1.example.com;lr"]
    assert d.remote_target == parse_uri("sip:bob@192.0.2.2:5070")
    assert d.local_seq == 5
    assert d.remote_seq is None
    assert d.local_uri == parse_uri("sip:alice@example.com")
    assert d.remote_uri == parse_uri("sip:bob@example.com")
    assert d.local_party.display_name == "Alice"
    assert d.local_contact == ALICE_CONTACT
    assert not d.secure


def test_uac_dialog_from_1xx_is_early_and_confirmed_by_2xx() -> None:
    req = invite(record_route=RR)
    ringing = make_response(
        req, 180, to_tag="b1", headers=[("Contact", "<sip:bob@192.0.2.2:5070>")]
    )
    d = Dialog.from_uac(req, ringing)
    assert d.state is DialogState.EARLY
    # The 2xx passes through a different proxy: 13.2.2.4 recomputes the route set.
    ok = Response(
        200,
        "OK",
        ringing.headers.set("Record-Route", "<sip:p9.example.com;lr>").set(
            "Contact", "<sip:bob@192.0.2.22>"
        ),
    )
    assert d.receive_response(ok)
    assert state(d) is DialogState.CONFIRMED
    assert [str(r.uri) for r in d.route_set] == ["sip:p9.example.com;lr"]
    assert d.remote_target == parse_uri("sip:bob@192.0.2.22")


def test_uac_early_dialog_ends_on_error_final() -> None:
    req = invite()
    d = Dialog.from_uac(req, response_to(req, 183))
    assert d.receive_response(response_to(req, 486))
    assert d.terminated


def test_uac_needs_a_to_tag_and_a_dialog_response() -> None:
    req = invite()
    with pytest.raises(SipError) as err:
        Dialog.from_uac(req, response_to(req, 180, tag=None))
    assert err.value.status == 400
    with pytest.raises(ValueError, match="no dialog"):
        Dialog.from_uac(req, response_to(req, 100))


def test_create_request_increments_cseq_and_uses_loose_routes() -> None:
    req = invite(cseq=5, record_route=RR)
    d = Dialog.from_uac(req, response_to(req, 200))
    bye = d.create_request("BYE")
    assert bye.cseq == (6, "BYE")
    assert d.local_seq == 6
    assert bye.uri == parse_uri("sip:bob@192.0.2.2:5070")  # remote target
    assert bye.headers.get_all("Route") == ("<sip:p2.example.com;lr>", "<sip:p1.example.com;lr>")
    assert bye.from_addr.tag == "a1"
    assert bye.to_addr.tag == "b1"
    assert bye.call_id == "dlg-1@192.0.2.1"
    assert bye.headers.get("Contact") is None  # BYE is no target refresh
    info = d.create_request(
        "INFO",
        via=parse_via("SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKi"),
        body=b"Signal=1\r\n",
        content_type="application/dtmf-relay",
        headers=[("X-A", "1")],
    )
    assert info.cseq == (7, "INFO")
    reinvite = d.create_request("INVITE", via=parse_via("SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKr"))
    assert reinvite.cseq == (8, "INVITE")
    assert reinvite.contacts == (ALICE_CONTACT,)
    # Serialized and parsed back, the requests are well formed.
    again = parse_message(info.to_bytes())
    assert isinstance(again, Request)
    assert again.body == b"Signal=1\r\n"
    assert again.headers.get("Content-Type") == "application/dtmf-relay"
    assert again.headers.get("X-A") == "1"
    assert parse_message(reinvite.to_bytes()).branch == "z9hG4bKr"


def test_no_route_set_sends_to_remote_target_without_route() -> None:
    req = invite()
    d = Dialog.from_uac(req, response_to(req, 200))
    bye = d.create_request("BYE")
    assert bye.uri == parse_uri("sip:bob@192.0.2.2:5070")
    assert bye.headers.get("Route") is None


def test_strict_router_goes_into_the_request_uri() -> None:
    # 12.2.1.1: the first route lacks lr; remote target is appended as the last Route.
    rr = (
        "Record-Route: <sip:p1.example.com;lr>,"
        " <sip:strict.example.com;maddr=10.0.0.1;method=INVITE>\r\n"
    )
    req = invite(record_route=rr)
    d = Dialog.from_uac(req, response_to(req, 200))
    bye = d.create_request("BYE")
    assert bye.uri == parse_uri("sip:strict.example.com;maddr=10.0.0.1")
    routes = list(bye.headers.get_all("Route"))
    assert routes == ["<sip:p1.example.com;lr>", "<sip:bob@192.0.2.2:5070>"]


def test_create_ack_reuses_the_invite_cseq() -> None:
    req = invite(cseq=9, record_route=RR)
    ok = response_to(req, 200)
    d = Dialog.from_uac(req, ok)
    d.create_request("INFO")  # CSeq 10; the ACK still carries the INVITE's 9
    ack = d.create_ack(ok, body=b"v=0\r\n", content_type="application/sdp")
    assert ack.method == "ACK"
    assert ack.cseq == (9, "ACK")
    assert ack.uri == parse_uri("sip:bob@192.0.2.2:5070")
    assert len(ack.headers.get_all("Route")) == 2
    assert d.local_seq == 10
    with pytest.raises(ValueError, match="ACK"):
        d.create_request("ACK")
    with pytest.raises(ValueError, match="2xx"):
        d.create_ack(response_to(req, 486))


def test_reinvite_2xx_refreshes_target_but_not_routes() -> None:
    req = invite(record_route=RR)
    d = Dialog.from_uac(req, response_to(req, 200))
    routes = d.route_set
    reinvite = d.create_request("INVITE")
    ok = Response(
        200,
        "OK",
        response_to(reinvite, 200, contact="bob@198.51.100.7").headers.set(
            "Record-Route", "<sip:other.example;lr>"
        ),
    )
    assert d.receive_response(ok)
    assert d.remote_target == parse_uri("sip:bob@198.51.100.7")
    assert d.route_set == routes
    # A failed re-INVITE keeps the dialog.
    assert d.receive_response(response_to(d.create_request("INVITE"), 488))
    assert state(d) is DialogState.CONFIRMED


@pytest.mark.parametrize("status", [481, 408])
def test_481_and_408_end_the_dialog(status: int) -> None:
    req = invite()
    d = Dialog.from_uac(req, response_to(req, 200))
    assert d.receive_response(response_to(d.create_request("INFO"), status))
    assert d.terminated


def test_response_of_another_dialog_is_counted_not_applied() -> None:
    req = invite()
    d = Dialog.from_uac(req, response_to(req, 200))
    other = response_to(req, 200, tag="zz", contact="mallory@203.0.113.1")
    assert not d.receive_response(other)
    assert d.protocol_errors == 1
    assert d.remote_target == parse_uri("sip:bob@192.0.2.2:5070")


def test_bye_response_after_local_terminate_is_expected() -> None:
    req = invite()
    d = Dialog.from_uac(req, response_to(req, 200))
    bye = d.create_request("BYE")
    d.terminate()
    assert d.receive_response(response_to(bye, 200))
    assert d.terminated
    # A 2xx to a re-INVITE that was out when the dialog ended is expected (the caller
    # ACKs it) but not applied: the remote target stays.
    target = d.remote_target
    assert d.receive_response(response_to(req, 200, contact="x@203.0.113.2"))
    assert d.remote_target == target and d.terminated
    assert d.protocol_errors == 0
    # A response of another dialog is still counted.
    other = response_to(req, 200, tag="b2")  # another fork's answer
    assert not d.receive_response(other)
    assert d.protocol_errors == 1


# ---------------------------------------------------------------------------------------
# UAS side
# ---------------------------------------------------------------------------------------


def uas_dialog(*, local_seq: int | None = None, confirmed: bool = False) -> Dialog:
    req = invite(cseq=3, record_route=RR)
    return Dialog.from_uas(req, "u1", BOB_CONTACT, local_seq=local_seq, confirmed=confirmed)


def state(d: Dialog) -> DialogState:
    """Read through a call so that mypy does not keep an earlier narrowing."""
    return d.state


def test_uas_dialog_keeps_record_route_order() -> None:
    d = uas_dialog()
    assert d.state is DialogState.EARLY
    assert d.dialog_id == ("dlg-1@192.0.2.1", "u1", "a1")
    assert d.dialog_id == request_dialog_id(in_dialog("BYE", 4))
    assert [str(r.uri) for r in d.route_set] == ["sip:p1.example.com;lr", "sip:p2.example.com;lr"]
    assert d.remote_target == parse_uri("sip:alice@192.0.2.1:5060")
    assert d.remote_seq == 3
    assert d.local_seq is None
    assert d.local_uri == parse_uri("sip:bob@example.com")
    d.confirm()
    assert state(d) is DialogState.CONFIRMED


def test_uas_first_request_picks_a_cseq_below_2_31() -> None:
    d = uas_dialog()
    bye = d.create_request("BYE")
    assert 1 <= bye.cseq[0] < 2**31
    assert bye.from_addr.tag == "u1"
    assert bye.to_addr.tag == "a1"
    assert bye.uri == parse_uri("sip:alice@192.0.2.1:5060")  # loose routes: remote target
    assert bye.headers.get_all("Route")[0] == "<sip:p1.example.com;lr>"
    d2 = uas_dialog(local_seq=100)
    assert d2.create_request("BYE").cseq == (101, "BYE")


def test_uas_requires_contact() -> None:
    req = parse_message(
        invite().to_bytes().replace(b"Contact: <sip:alice@192.0.2.1:5060>\r\n", b"")
    )
    assert isinstance(req, Request)
    with pytest.raises(SipError) as err:
        Dialog.from_uas(req, "u1", BOB_CONTACT)
    assert err.value.status == 400


def test_lower_cseq_is_rejected_with_500() -> None:
    d = uas_dialog(confirmed=True)
    d.receive_request(in_dialog("INFO", 4))
    assert d.remote_seq == 4
    with pytest.raises(SipError) as err:
        d.receive_request(in_dialog("INFO", 2))
    assert err.value.status == 500
    assert d.remote_seq == 4
    # ACK and CANCEL carry the INVITE's number: not out of order.
    d.receive_request(in_dialog("ACK", 3))
    assert d.remote_seq == 4


def test_reinvite_refreshes_the_remote_target() -> None:
    d = uas_dialog(confirmed=True)
    d.receive_request(in_dialog("INVITE", 10, contact="alice@198.51.100.1:5062"))
    assert d.remote_target == parse_uri("sip:alice@198.51.100.1:5062")
    d.receive_request(in_dialog("UPDATE", 11, contact="alice@198.51.100.2"))
    assert d.remote_target == parse_uri("sip:alice@198.51.100.2")
    d.receive_request(in_dialog("INFO", 12, contact="alice@203.0.113.66"))
    assert d.remote_target == parse_uri("sip:alice@198.51.100.2")  # INFO refreshes nothing
    assert d.create_request("BYE").uri == parse_uri("sip:alice@198.51.100.2")


def test_bye_terminates_and_later_requests_get_481() -> None:
    d = uas_dialog(confirmed=True)
    d.receive_request(in_dialog("BYE", 4))
    assert d.terminated
    with pytest.raises(SipError) as err:
        d.receive_request(in_dialog("INFO", 5))
    assert err.value.status == 481


def test_request_of_another_dialog_gets_481() -> None:
    d = uas_dialog(confirmed=True)
    with pytest.raises(SipError) as err:
        d.receive_request(in_dialog("BYE", 4, to_tag="other"))
    assert err.value.status == 481
    assert not d.terminated


def test_sips_dialog_is_secure() -> None:
    raw = invite().to_bytes().replace(b"INVITE sip:bob@example.com", b"INVITE sips:bob@example.com")
    req = parse_message(raw)
    assert isinstance(req, Request)
    assert Dialog.from_uas(req, "u1", BOB_CONTACT).secure


def test_table_has_no_exit_from_terminated() -> None:
    for (state, _inp), (_actions, nxt) in DIALOG_TABLE.items():
        if state is DialogState.TERMINATED:
            assert nxt is DialogState.TERMINATED
