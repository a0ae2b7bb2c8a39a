"""B's INVITE (built, sent, cancelled, its dialog confirmed), and our Via and Contact.

Theory of operation: leg B is a dialog of our own (RFC 3261 section 8.1.1), so its
INVITE is built here from scratch: our Call-ID and tag, our Via and Contact, and of the
caller only the user part and display name (or the router's presentation, `Target`).
Moved out of call.py so the call's state machine and the wire format of its first
request stay apart; functions of the call, as in call_trunk.py; no I/O.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from b2bua import hunt as hunt_steps
from b2bua.call_state import ALLOW, Side
from b2bua.dialog import Dialog
from b2bua.headers import Address, Headers, Via
from b2bua.message import Request, Response
from b2bua.session_timer import uac_headers
from b2bua.transaction import create_cancel, new_branch
from b2bua.uri import URI

if TYPE_CHECKING:  # call.py imports this module
    from b2bua.call import Call


def contact(call: Call) -> Address:
    host, port = call.services.local
    return Address(URI("sip", "b2bua", host=host, port=port))


def via(call: Call, transport: str) -> Via:
    host, port = call.services.local
    return Via(transport, host, port, (("branch", new_branch()), ("rport", None)))


def build_b_invite(call: Call, body: bytes, cseq: int = 1) -> Request:
    caller = call.a_invite.from_addr
    target = call.target
    host, port = call.services.local
    # Only the caller's user part and display name cross over: B sees us as the peer.
    user = target.from_user or caller.uri.user or "anonymous"
    display = caller.display_name if target.from_user is None else target.from_display
    from_addr = Address(URI("sip", user, host=host, port=port), display).with_param(
        "tag", call.b_tag
    )
    to_addr = Address(URI("sip", target.to_user, host=target.uri.host))
    fields = [
        ("Via", str(via(call, target.transport))),
        ("Max-Forwards", "70"),
        ("From", str(from_addr)),
        ("To", str(to_addr)),
        ("Call-ID", call.b_call_id),
        ("CSeq", f"{cseq} INVITE"),
        ("Contact", str(contact(call))),
        ("Allow", ALLOW),
        *target.extra_headers,
        *uac_headers(),
    ]
    if body:
        fields.append(("Content-Type", "application/sdp"))
    return Request("INVITE", target.uri, Headers.of(*fields), body)


def send_b_invite(call: Call, body: bytes, now: float) -> None:
    call.b_invite = build_b_invite(call, body)
    call.b.last_sdp = body
    call.b.peer, call.b.transport = call.target.destination, call.target.transport
    call.b_invite_key = call.services.send_request(
        call, Side.B, call.b_invite, call.target.destination, call.target.transport, now
    )
    hunt_steps.invite_sent(call, now)  # a hunt's ring time; parallel: the others


def cancel_b_invite(call: Call, now: float) -> None:
    """CANCEL B's INVITE, to where the INVITE went."""
    assert call.b_invite is not None
    call.services.send_request(
        call,
        Side.B,
        create_cancel(call.b_invite),
        call.target.destination,
        call.target.transport,
        now,
    )


def confirm_b_dialog(call: Call, answer: Response) -> Dialog:
    """B's dialog from its 2xx to our INVITE, with the call's dialog headers; the caller
    ACKs it."""
    assert call.b_invite is not None
    dialog = Dialog.from_uac(call.b_invite, answer, local_contact=contact(call))
    dialog.receive_response(answer)
    dialog.request_headers = call.dialog_headers(Side.B)
    call.b.dialog = dialog
    return dialog
