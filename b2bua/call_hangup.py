"""Ending a call: the BYE, CANCEL and hang-up handlers of call.py's TABLE, and the
final clean-up every ending goes through.

Theory of operation: whoever ends first, the other leg gets a BYE (or, before B
answered, a CANCEL while A hears its final), and the call is finished once every BYE
we sent is answered or timed out (`bye_pending`). `finish` is the one place that
closes the media legs, tells the recording hub and the switch; it runs once. Moved
out of call.py so the state machine reads apart from the teardown; functions of the
call, as in consent_phase.py; no I/O and no clock: `now` is passed in.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from b2bua import call_invite, consent_phase, reinvite
from b2bua import hunt as hunt_steps
from b2bua.call_state import CallState, Side
from b2bua.message import Request, Response

if TYPE_CHECKING:  # call.py imports this module
    from b2bua.call import Call


def send_bye(call: Call, side: Side, now: float) -> None:
    leg = call.leg(side)
    assert leg.dialog is not None
    bye = leg.dialog.create_request("BYE", via=call_invite.via(call, leg.transport))
    leg.dialog.terminate()
    leg.bye_pending = True
    call.services.send_request(call, side, bye, leg.peer, leg.transport, now)


def finish(call: Call, now: float, reason: str) -> None:
    if call.ended_at is not None:
        return
    call.state = CallState.ENDED
    call.ended_at = now
    reinvite.give_up_relayed(call, now)
    call.end_reason = call.end_reason or reason
    if call.consent is not None:
        consent_phase.apply(call, call.consent.call_ended(now), now)
    hub = call.services.recording
    if hub is not None:
        hub.call_ended(call.id, now, call.end_reason)
    if call.transfer is not None:
        call.transfer.media.close()
        call.transfer = None
    media = call.services.media
    for leg in (call.a, call.b):
        if leg.media is not None:
            media.unbridge(leg.media)
            leg.media.close()
            leg.media = None
    call.services.call_ended(call, now)


def cancel_b(call: Call, now: float) -> None:
    """B's INVITE (every ringing member of a parallel hunt) gets its CANCEL."""
    if hunt_steps.cancel_forks(call, now):
        return  # a group ringing in parallel: every ringing member got its CANCEL
    call_invite.cancel_b_invite(call, now)


def on_bye_from(call: Call, side: Side, now: float) -> None:
    call.end_reason = call.end_reason or f"{side.value} hung up"
    reinvite.give_up_relayed(call, now)
    other = Side.B if side is Side.A else Side.A
    leg = call.leg(other)
    if leg.dialog is not None and not leg.dialog.terminated:
        send_bye(call, other, now)
    else:
        finish(call, now, call.end_reason)


# -- handlers (called through call.py's TABLE) --------------------------------------


def on_a_cancel(call: Call, now: float, msg: Request | Response | None, key: str) -> None:
    call._respond_a(487, now)
    cancel_b(call, now)


def on_cancelled_b_final(call: Call, now: float, msg: Request | Response | None, key: str) -> None:
    # B's 487 (or any final) after our CANCEL: A already has its 487.
    if isinstance(msg, Response) and 200 <= msg.status < 300:
        # The 200 crossed our CANCEL: confirm and end B at once (RFC 3261 9.1).
        _b_success_after_cancel(call, now, msg)
        return
    finish(call, now, "cancelled by caller")


def _b_success_after_cancel(call: Call, now: float, msg: Response) -> None:
    dialog = call_invite.confirm_b_dialog(call, msg)
    call.services.send_ack(
        dialog.create_ack(msg, via=call_invite.via(call, call.b.transport)),
        call.b.peer,
        call.b.transport,
    )
    call.state = CallState.ENDING
    send_bye(call, Side.B, now)


def on_a_bye(call: Call, now: float, msg: Request | Response | None, key: str) -> None:
    on_bye_from(call, Side.A, now)


def on_b_bye(call: Call, now: float, msg: Request | Response | None, key: str) -> None:
    on_bye_from(call, Side.B, now)


def on_hangup(call: Call, now: float, msg: Request | Response | None, key: str) -> None:
    sent = False
    for side in (Side.A, Side.B):
        leg = call.leg(side)
        if leg.dialog is not None and not leg.dialog.terminated:
            send_bye(call, side, now)
            sent = True
    if not sent:
        finish(call, now, call.end_reason)


def on_hangup_early(call: Call, now: float, msg: Request | Response | None, key: str) -> None:
    # Before B answered: A gets an error final, B a CANCEL.
    call._respond_a(480, now)
    cancel_b(call, now)


def on_bye_done(call: Call, now: float, msg: Request | Response | None, key: str) -> None:
    if any(leg.bye_pending for leg in (call.a, call.b)):
        call.state = CallState.ENDING
        return
    finish(call, now, call.end_reason)


def noop(call: Call, now: float, msg: Request | Response | None, key: str) -> None:
    pass  # retransmissions and crossings the table expects and needs nothing for
