"""Where each message the switch hands a call goes: responses of either leg,
transaction timeouts, and in-dialog requests.

Theory of operation: a response or timeout is offered first to the steps that own the
transaction (session refresh, relayed re-INVITE, hunt, trunk retry, transfer); what is
left is B's INVITE or a BYE of ours, fed to call.py's TABLE as a `CallInput`. An
in-dialog request is checked against its leg's dialog (481 without one) and answered
or relayed by method. Moved out of call.py so the state machine reads apart from the
sorting; functions of the call, as in reinvite.py; no I/O and no clock.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from b2bua import call_timers, call_trunk
from b2bua import hunt as hunt_steps
from b2bua import reinvite as reinvite_steps
from b2bua import transfer as transfer_steps
from b2bua.call_state import ALLOW, CallInput, CallState, Side
from b2bua.errors import SipError
from b2bua.info_dtmf import ACCEPT_HEADER, parse_info_dtmf
from b2bua.message import Request, Response, make_response

if TYPE_CHECKING:  # call.py imports this module
    from b2bua.call import Call


def on_b_response(call: Call, response: Response, key: str, now: float) -> None:
    if call_timers.on_response(call, Side.B, response, key, now):
        return
    if key in call.relayed:
        reinvite_steps.on_relayed_response(call, response, key, now)
        return
    if hunt_steps.late_answer(call, response, key, now):
        return
    _, method = response.cseq
    if method == "BYE":
        if response.status >= 200:
            call.b.bye_pending = False
            call.feed(CallInput.BYE_DONE, now, response)
        return
    if method != "INVITE" or key != call.b_invite_key:
        return  # CANCEL's 200 and other non-INVITE answers need nothing
    if response.status < 200:
        call.feed(CallInput.B_PROVISIONAL, now, response)
    elif response.status < 300:
        if call.state in (
            CallState.ANSWERED,
            CallState.CONFIRMED,
            CallState.ENDING,
            CallState.ANNOUNCING,
        ):
            return  # a retransmitted 2xx: the dialog re-ACKs below
        call.feed(CallInput.B_SUCCESS, now, response)
    elif response.status in (401, 407) and call_trunk.retry_with_credentials(call, response, now):
        return  # the INVITE went out again with credentials (the ICT ACKed the 401)
    elif response.status in (408, 503) and call_trunk.next_trunk(call, response.status, now):
        return  # tried at the next trunk server
    elif hunt_steps.ring_next(call, now):
        return  # busy, declined, unreachable: the hunt group's next target rings
    else:
        call.feed(CallInput.B_FAILURE, now, response)


def on_a_response(call: Call, response: Response, key: str, now: float) -> None:
    if call_timers.on_response(call, Side.A, response, key, now):
        return
    if key in call.relayed:
        reinvite_steps.on_relayed_response(call, response, key, now)
        return
    if response.cseq[1] == "BYE" and response.status >= 200:
        call.a.bye_pending = False
        call.feed(CallInput.BYE_DONE, now, response)


def on_timeout(call: Call, side: Side, key: str, now: float) -> None:
    if side is Side.C:
        transfer_steps.on_timeout(call, key, now)
        return
    if call_timers.on_timeout(call, side, key, now):
        return
    if key in call.relayed:
        server_key, request, _ = call.relayed.pop(key)
        if key in call.relayed_given_up:
            call.relayed_given_up.discard(key)  # its offerer had 487 already
        else:
            call.services.send_response(server_key, make_response(request, 408), now)
        return
    if side is Side.B and hunt_steps.leg_timed_out(call, key, now):
        return  # a parallel member, a given-up INVITE or a stray BYE of the hunt
    if side is Side.B and key == call.b_invite_key:
        if not call_trunk.next_trunk(call, None, now) and not hunt_steps.ring_next(call, now):
            call.feed(CallInput.B_FAILURE, now, None)
        return
    leg = call.leg(side)
    if leg.bye_pending:
        leg.bye_pending = False
        call.feed(CallInput.BYE_DONE, now)


def on_request(call: Call, side: Side, request: Request, key: str, now: float) -> None:
    """An in-dialog request from `side` (BYE, re-INVITE, INFO, OPTIONS ...)."""
    detached = call.detached.get(request.call_id)
    if detached is not None:
        transfer_steps.detached_request(call, detached, request, key, now)
        return
    leg = call.leg(side)
    if leg.dialog is None:
        call.services.send_response(key, make_response(request, 481), now)
        return
    try:
        leg.dialog.receive_request(request)
    except SipError as exc:
        call.services.send_response(key, make_response(request, exc.status), now)
        return
    method = request.method
    if method == "BYE":
        call.services.send_response(key, make_response(request, 200), now)
        call.feed(CallInput.A_BYE if side is Side.A else CallInput.B_BYE, now, request)
    elif method in ("INVITE", "UPDATE"):
        call_timers.refreshed(leg, now)  # any re-INVITE or UPDATE refreshes its leg
        reinvite_steps.relay_reinvite(call, side, request, key, now)
    elif method == "INFO":
        _on_info(call, side, request, key, now)
    elif method == "REFER":
        transfer_steps.start(call, side, request, key, now)
    elif method in ("OPTIONS", "NOTIFY"):
        call.services.send_response(key, make_response(request, 200), now)
    else:
        call.services.send_response(
            key, make_response(request, 501, headers=[("Allow", ALLOW)]), now
        )


def _on_info(call: Call, side: Side, request: Request, key: str, now: float) -> None:
    # DTMF by SIP INFO is consent input; it is never forwarded to the other side.
    try:
        info = parse_info_dtmf(request.headers.get("Content-Type"), request.body)
    except SipError as exc:
        accept = [("Accept", ACCEPT_HEADER)] if exc.status == 415 else []
        call.services.send_response(key, make_response(request, exc.status, headers=accept), now)
        return
    call.services.send_response(key, make_response(request, 200), now)
    if info is not None:
        external = Side.A if call.direction == "inbound" else Side.B
        call.on_digit(info.digit, "info", "external" if side is external else "office", now)
