"""Session timers (RFC 4028) on each leg of a call: refresh, or end a dead session.

Theory of operation: a B2BUA runs one session timer per dialog. Leg A's was agreed
when its INVITE arrived (session_timer.uas_negotiate, 422 when too small) and starts
with our 2xx; leg B's comes from the 2xx to our INVITE (uac_negotiate). Each leg
remembers when it was last refreshed. When we are a leg's refresher, at half the
interval we send a re-INVITE with the SDP we last sent on that leg (unchanged, same
o= version: a refresh, not a new offer, RFC 4028 section 10) and `refresher=uac` (we
send it, and go on refreshing); its 2xx restarts the timer with the interval and
refresher it names, a 408 or 481 ends the call. When the peer is the refresher and its
refresh does not come in time, the call ends with BYE (section 10). Any re-INVITE or
UPDATE that reaches a leg refreshes that leg. No clock and no socket here: `now` comes in, requests
leave through the call's services.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from b2bua.errors import SipError
from b2bua.message import Request, Response
from b2bua.session_timer import SessionExpires, supports_timer, uac_negotiate, uas_negotiate

if TYPE_CHECKING:
    from b2bua.call import Call, LegState, Side

log = logging.getLogger("b2bua.call")


def answer_headers_for_a(call: Call, now: float) -> list[tuple[str, str]]:
    """Our 2xx to A carries the agreed timer; leg A's timer starts now."""
    timer = call.a_session_timer
    if timer is None:
        return []
    call.a.timer, call.a.timer_start = timer, now
    return list(timer.response_headers(uac_supports=supports_timer(call.a_invite)))


def b_answered(call: Call, response: Response, now: float) -> None:
    try:
        call.b.timer = uac_negotiate(response)
    except SipError:
        call.b.timer = None  # a broken Session-Expires: run without a timer on B
    call.b.timer_start = now


def refreshed(leg: LegState, now: float) -> None:
    if leg.timer is not None:
        leg.timer_start = now


def check_peer_refresh(request: Request) -> None:
    """A peer's re-INVITE or UPDATE asking for too small an interval: SipError 422
    (with our Min-SE) before anything is relayed; a malformed header: 400."""
    uas_negotiate(request)


def peer_refresh_answered(leg: LegState, request: Request, now: float) -> list[tuple[str, str]]:
    """Our 2xx to a peer's re-INVITE/UPDATE on `leg` restarts that leg's timer as the
    request asks, like the first INVITE (RFC 4028 sections 9 and 10): its headers say
    the interval and refresher. A request without Session-Expires from a UAC without
    timer support turns the leg's timer off."""
    timer = uas_negotiate(request)
    leg.timer, leg.timer_start = timer, now
    if timer is None:
        return []
    return list(timer.response_headers(uac_supports=supports_timer(request)))


def relay_headers(leg: LegState) -> list[tuple[str, str]]:
    """What a re-INVITE/UPDATE we relay onto `leg` says of that leg's timer: the same
    interval, and who refreshes, seen from this request where we are the UAC."""
    if leg.timer is None:
        return []
    expires = SessionExpires(leg.timer.interval, "uac" if leg.timer.we_refresh else "uas")
    return [("Supported", "timer"), ("Session-Expires", str(expires))]


def adopt_answer(leg: LegState, response: Response, now: float) -> None:
    """A 2xx to a re-INVITE/UPDATE we sent on `leg` sets interval and refresher anew
    (RFC 4028 sections 7.2 and 7.4; we are its UAC). Without (or with a broken)
    Session-Expires we keep ours: a refresh still finds a dead peer."""
    try:
        agreed = uac_negotiate(response)
    except SipError:
        agreed = None
    if agreed is not None:
        leg.timer = agreed
    leg.timer_start = now


def deadline(call: Call) -> float | None:
    times = [
        leg.timer.deadline(leg.timer_start)
        for leg in (call.a, call.b)
        if leg.timer is not None and leg.refresh_key is None
    ]
    return min(times) if times else None


def on_timer(call: Call, now: float) -> None:
    from b2bua.call import Side

    for side in (Side.A, Side.B):
        leg = call.leg(side)
        timer = leg.timer
        if timer is None or leg.refresh_key is not None or leg.dialog is None:
            continue
        if now < timer.deadline(leg.timer_start):
            continue
        if not timer.we_refresh:
            log.info("event=session_expired call=%s leg=%s", call.id, side.value)
            call.hangup("session timer expired", now)
            return
        _send_refresh(call, side, leg, now)


def _send_refresh(call: Call, side: Side, leg: LegState, now: float) -> None:
    assert leg.dialog is not None and leg.timer is not None
    # In this re-INVITE we are the UAC, whatever our role in the dialog's first INVITE:
    # "uac" says we go on refreshing (RFC 4028 section 7.4). Leg A's own value ("uas")
    # would hand the refreshing to the peer.
    expires = SessionExpires(leg.timer.interval, "uac")
    request = leg.dialog.create_request(
        "INVITE",
        via=call.via(leg.transport),
        body=leg.last_sdp,
        content_type="application/sdp" if leg.last_sdp else None,
        headers=[("Supported", "timer"), ("Session-Expires", str(expires))],
    )
    leg.refresh_key = call.services.send_request(call, side, request, leg.peer, leg.transport, now)


def on_response(call: Call, side: Side, response: Response, key: str, now: float) -> bool:
    """A response to our refresh on `side`; False when `key` is not one."""
    leg = call.leg(side)
    if key != leg.refresh_key or response.cseq[1] != "INVITE":
        return False
    if response.status < 200:
        return True
    leg.refresh_key = None
    if response.status < 300 and leg.dialog is not None:
        leg.dialog.receive_response(response)
        ack = leg.dialog.create_ack(response, via=call.via(leg.transport))
        call.services.send_ack(ack, leg.peer, leg.transport)
        if not leg.dialog.terminated:  # the call ended while the refresh was out
            adopt_answer(leg, response, now)
    elif response.status in (408, 481):
        call.hangup("session refresh failed", now)
    else:
        leg.timer_start = now  # e.g. 491: the session goes on; try again next interval
    return True


def on_timeout(call: Call, side: Side, key: str, now: float) -> bool:
    leg = call.leg(side)
    if key != leg.refresh_key:
        return False
    leg.refresh_key = None
    call.hangup("session refresh failed", now)
    return True
