"""The consent phase of a call: answering the caller for the prompt, connecting the
office after consent, and carrying out the consent machine's actions.

Theory of operation: consent.py decides (a sans-I/O machine of its own); these are the
steps a `Call` (call.py) takes for it, as functions of the call in the manner of
reinvite.py and hunt.py: call.py's TABLE names the handlers here for the ANNOUNCING
state, and `apply` turns the machine's actions (play, record, pause, connect, hang up)
into calls on the recording hub (`CallServices.recording`). Inbound with consent asked,
`answer_a_for_consent` answers the caller ourselves so the prompt can play and the office
is rung only on ConnectOffice; outbound, the external party was answered and the office
phone keeps ringing until ConnectOffice answers it. No I/O and no clock: `now` is
passed in.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from b2bua import call_answer, call_hangup, call_invite, call_timers, codec_policy, leg_sdp
from b2bua.call_state import ALLOW, CODECS, CallInput, CallState, Side
from b2bua.consent import (
    Action,
    ConnectOffice,
    ConsentDecided,
    Hangup,
    PauseRecording,
    PlayPrompt,
    ResumeRecording,
    StartRecording,
    StopPrompt,
    StopRecording,
)
from b2bua.dialog import Dialog
from b2bua.errors import SipError
from b2bua.media_control import MediaLeg, media_target
from b2bua.message import Request, Response
from b2bua.sdp import SessionDescription, answer, offer
from b2bua.sdp_crypto import answer_srtp

if TYPE_CHECKING:  # call.py imports this module
    from b2bua.call import Call

log = logging.getLogger("b2bua.call")


def open_recording(call: Call, external: MediaLeg, office: MediaLeg | None) -> None:
    hub = call.services.recording
    assert hub is not None
    caller = call.target.caller_label or call.a_invite.from_addr.uri.user or "anonymous"
    extension = (
        call.target.to_user
        if call.direction == "inbound"
        else call.a_invite.from_addr.uri.user or caller
    )
    if call.hunt is not None and call.direction == "inbound":
        extension = call.hunt.label  # whoever answers, the call went to the group
    elif call.office_extension is not None and call.direction == "outbound":
        extension = call.office_extension  # named by the PBX placing the call
    hub.open_call(
        call.id,
        external=external,
        direction=call.direction,
        caller=caller,
        callee=call.target.to_user,
        extension=extension,
        sip_call_id=call.a_invite.call_id,
    )
    if office is not None:
        hub.set_office_leg(call.id, office)


def answer_a_for_consent(call: Call, sdp_offer: SessionDescription | None, now: float) -> None:
    """Inbound: we answer the caller ourselves so the announcement can play."""
    if sdp_offer is None:
        raise SipError(488, "Not Acceptable Here", "an offer is needed to announce")
    assert call.a.media is not None
    ip, port, session_id = call.services.media.ip, call.a.media.port, call.sdp_session_id
    if call.a_secure:
        ours, keys = answer_srtp(sdp_offer, CODECS, ip, port, session_id=session_id)
        ours = leg_sdp.mediasec_marked(call.a, ours)
        leg_sdp.set_keys(call.a, keys)
    else:
        ours = answer(sdp_offer, CODECS, ip, port, session_id=session_id)
    _, fmt, _ = media_target(ours)
    call.a.media.set_remote(call.a_remote, fmt)
    call.a.dialog = Dialog.from_uas(call.a_invite, call.a_tag, call.contact())
    call.a.dialog.request_headers = call.dialog_headers(Side.A)
    headers = [
        ("Contact", str(call.contact())),
        ("Allow", ALLOW),
        ("Content-Type", "application/sdp"),
        *call_timers.answer_headers_for_a(call, now),
    ]
    call.a.last_sdp = ours.to_bytes()
    call._respond_a(200, now, headers=headers, body=call.a.last_sdp)
    call.a.dialog.confirm()
    call.a_answered = True
    call.answered_at = now
    call.state = CallState.ANNOUNCING
    open_recording(call, call.a.media, None)


def on_announce_ack(call: Call, now: float, msg: Request | Response | None, key: str) -> None:
    assert call.consent is not None
    apply(call, call.consent.start(now), now)


def on_connect_office(call: Call, now: float, msg: Request | Response | None, key: str) -> None:
    media = call.services.media
    if call.direction == "inbound":
        call.b.media = media.open_leg(call.id + "-b", call.services.media_inactive)
        hub = call.services.recording
        if hub is not None:
            hub.set_office_leg(call.id, call.b.media)
        assert call.a.media is not None
        codec = getattr(call.a.media, "fmt", None)
        first = codec.encoding if codec is not None else "PCMU"
        codecs = codec_policy.office_offer_codecs(first, call.target.wideband and call.hunt is None)
        sdp = offer(media.ip, call.b.media.port, codecs=codecs, session_id=call.sdp_session_id)
        call.b_plain_offer = sdp
        call.state = CallState.CALLING
        call_invite.send_b_invite(call, leg_sdp.offer_to(call.b, sdp), now)
    else:
        call.state = CallState.ANSWERED
        call_answer.answer_a(call, now, call.a_answer_body)


def on_hangup_announcing(call: Call, now: float, msg: Request | Response | None, key: str) -> None:
    if call.direction == "outbound" and not call.a_answered:
        call._respond_a(603, now)  # the external party declined: the office hears why
    for side in (Side.A, Side.B):
        leg = call._leg(side)
        if leg.dialog is not None and not leg.dialog.terminated:
            call_hangup.send_bye(call, side, now)
    if not any(leg.bye_pending for leg in (call.a, call.b)):
        call_hangup.finish(call, now, call.end_reason)


def on_a_cancel_announcing(
    call: Call, now: float, msg: Request | Response | None, key: str
) -> None:
    call._respond_a(487, now)
    call.end_reason = "cancelled by caller"
    call_hangup.send_bye(call, Side.B, now)


def on_b_bye_announcing(call: Call, now: float, msg: Request | Response | None, key: str) -> None:
    call.end_reason = "external party hung up"
    if not call.a_answered:
        call._respond_a(480, now)
    call_hangup.on_bye_from(call, Side.B, now)


def on_a_bye_before_b(call: Call, now: float, msg: Request | Response | None, key: str) -> None:
    # A (answered for the announcement) hung up while B rings: cancel B.
    call.end_reason = "a hung up"
    call_hangup.cancel_b(call, now)


def apply(call: Call, actions: list[Action], now: float) -> None:
    """Carries out the consent machine's actions, in order."""
    hub = call.services.recording
    for action in actions:
        if isinstance(action, ConsentDecided):
            call.consent_record = action.record
            if hub is not None:
                hub.consent_decided(call.id, action.record)
        elif hub is None:
            continue
        elif isinstance(action, PlayPrompt):
            hub.play(call.id, action.name, now)
        elif isinstance(action, StopPrompt):
            hub.stop_prompt(call.id)
        elif isinstance(action, StartRecording):
            hub.start_recording(call.id, now, metadata(call))
        elif isinstance(action, StopRecording):
            hub.stop_recording(call.id, now)
        elif isinstance(action, PauseRecording):
            hub.pause(call.id, now)
        elif isinstance(action, ResumeRecording):
            hub.resume(call.id, now)
        elif isinstance(action, ConnectOffice):
            if call.consent_first and call.state is CallState.ANNOUNCING:
                call.feed(CallInput.CONNECT_OFFICE, now)
        elif isinstance(action, Hangup):
            call.hangup(f"consent {action.reason}", now)


def metadata(call: Call) -> dict[str, object]:
    record = call.consent_record
    return {
        "call_id": call.a_invite.call_id,
        "direction": call.direction,
        "caller": call.target.caller_label or call.a_invite.from_addr.uri.user,
        "callee": call.target.to_user,
        "consent": None
        if record is None
        else {
            "mode": record.mode,
            "result": str(record.result),
            "digit": record.digit,
            "method": record.method,
            "prompt_sha256": record.prompt_sha256,
            "language": record.language,
        },
    }
