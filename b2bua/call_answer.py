"""B's answer reaching A: ringing, the 2xx that bridges the legs, and B's failure.

Theory of operation: B's provisionals are relayed to A (with early SDP anchored to our
relay when we can take it); B's 2xx is ACKed at once, its SDP checked under B's own
SRTP policy (leg_sdp.py) and A answered with our own SDP, unless A was answered
already for consent (then the legs are just bridged) or the external party is asked
first (then A waits in ANNOUNCING). A failure of B reaches A as `map_failure` of B's
status. Moved out of call.py so the state machine reads apart from the answer path;
functions of the call, as in consent_phase.py; no I/O and no clock.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from b2bua import call_hangup, call_invite, call_timers, consent_phase, leg_sdp
from b2bua import hunt as hunt_steps
from b2bua.call_state import ALLOW, CallState, Side
from b2bua.dialog import Dialog
from b2bua.errors import SipError
from b2bua.media_control import media_target
from b2bua.message import Request, Response
from b2bua.sdp import parse_sdp

if TYPE_CHECKING:  # call.py imports this module
    from b2bua.call import Call

log = logging.getLogger("b2bua.call")


def map_failure(status: int) -> int:
    """The final status A gets when B failed: the callee's verdict, without B's auth."""
    if status in (401, 407):
        return 403  # B's challenge is for us, not for the caller
    if status == 408:
        return 480
    if 400 <= status < 700:
        return status
    return 502


def answer_a(call: Call, now: float, body: bytes) -> None:
    call.answered_at = now
    contact = call_invite.contact(call)
    headers = [("Contact", str(contact)), ("Allow", ALLOW)]
    headers += call_timers.answer_headers_for_a(call, now)
    call.a.last_sdp = body
    if body:
        headers.append(("Content-Type", "application/sdp"))
    call.a.dialog = Dialog.from_uas(call.a_invite, call.a_tag, contact)
    call.a.dialog.request_headers = call.dialog_headers(Side.A)
    call._respond_a(200, now, headers=headers, body=body)
    call.a.dialog.confirm()
    call.a_answered = True
    if call.a.media is not None and call.b.media is not None:
        call.services.media.bridge(call.a.media, call.b.media)


# -- handlers (called through call.py's TABLE) --------------------------------------


def on_b_provisional(call: Call, now: float, msg: Request | Response | None, key: str) -> None:
    assert isinstance(msg, Response)
    if msg.status == 100 or call.a_answered:
        return  # A answered already (consent asked first): nothing to relay
    body = b""
    if msg.body:
        try:
            body = leg_sdp.anchored_for_a(call, msg.body)
        except SipError as exc:  # early media we can not take: ring without it
            log.info("call %s: early SDP from B ignored: %s", call.id, exc)
    headers = [("Contact", str(call_invite.contact(call)))]
    if body:
        headers.append(("Content-Type", "application/sdp"))
    status = msg.status if msg.status in (180, 181, 182, 183) else 180
    call._respond_a(status, now, headers=headers, body=body)


def on_b_success(call: Call, now: float, msg: Request | Response | None, key: str) -> None:
    assert isinstance(msg, Response)
    _confirm_b(call, msg, now)
    if call.a_answered:
        # Inbound after consent: A is up; take B's answer and bridge.
        try:
            sdp = parse_sdp(msg.body) if msg.body else None
            leg_sdp.set_keys(call.b, None if sdp is None else leg_sdp.answer_keys(call.b, sdp))
        except SipError as exc:
            _refuse_b_answer(call, exc, now)
            return
        remote, fmt, hold = media_target(sdp) if sdp is not None else (None, None, False)
        assert call.a.media is not None and call.b.media is not None
        call.b.media.set_remote(remote, fmt)
        if hold:
            call.b.media.hold()
        call.services.media.bridge(call.a.media, call.b.media)
        call.state = CallState.CONFIRMED
        return
    try:
        body = leg_sdp.anchored_for_a(call, msg.body) if msg.body else _no_answer_body(call)
    except SipError as exc:
        _refuse_b_answer(call, exc, now)
        return
    if call.consent_first:
        # Outbound: the external party hears the prompt before A is answered.
        call.a_answer_body = body
        call.state = CallState.ANNOUNCING
        assert call.consent is not None
        consent_phase.apply(call, call.consent.start(now), now)
        return
    answer_a(call, now, body)


def on_b_failure(call: Call, now: float, msg: Request | Response | None, key: str) -> None:
    status = msg.status if isinstance(msg, Response) else 408
    if hunt_steps.exhausted(call, now):
        return
    call.end_reason = f"callee answered {status}"
    if call.a_answered:
        # The caller was answered for the announcement: end its dialog with BYE.
        call.state = CallState.ENDING
        call_hangup.send_bye(call, Side.A, now)
        return
    call._respond_a(map_failure(status), now)
    call_hangup.finish(call, now, call.end_reason)


# -- steps of the handlers above ------------------------------------------------------


def _confirm_b(call: Call, msg: Response, now: float) -> None:
    dialog = call_invite.confirm_b_dialog(call, msg)
    call_timers.b_answered(call, msg, now)
    ack = dialog.create_ack(msg, via=call_invite.via(call, call.b.transport))
    call.services.send_ack(ack, call.b.peer, call.b.transport)


def _refuse_b_answer(call: Call, exc: SipError, now: float) -> None:
    """B answered with SDP we can not take (SRTP required and a plain answer, keys
    we did not offer): B is ACKed and hung up, A hears 488 (or a BYE if answered)."""
    log.warning("call %s: callee's answer refused: %s", call.id, exc)
    call.end_reason = f"callee's answer refused ({exc.detail or exc.reason})"
    call.state = CallState.ENDING
    if not call.a_answered:
        call._respond_a(exc.status, now)
    elif call.a.dialog is not None and not call.a.dialog.terminated:
        call_hangup.send_bye(call, Side.A, now)
    call_hangup.send_bye(call, Side.B, now)


def _no_answer_body(call: Call) -> bytes:
    """B's 2xx without SDP (no offer was sent): nothing to check, unless B's leg
    requires SRTP."""
    if call.b.srtp_policy == "required" and call.b.srtp_offer is not None:
        raise SipError(488, "Not Acceptable Here", "SRTP required: the answer has no SDP")
    return b""
