"""Re-INVITEs (hold, resume, codec change) carried across the two legs of a call.

Theory of operation: a re-INVITE from one leg is answered only when the other leg has
answered our own re-INVITE: the offer is anchored to our relay port on the other leg
(with that leg's own SRTP keys, kept across re-offers), the answer comes back anchored
to the offerer's port, and each leg's relay learns the new peer address, format and
hold state from the SDP meant for it. `Call.relayed` maps our client transaction to the
offerer's server transaction meanwhile. No I/O here: requests go through the call's
services like all others.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from b2bua import call_timers, codec_policy, leg_sdp
from b2bua.codec_policy import CodecPlan
from b2bua.errors import SipError
from b2bua.media_control import media_target
from b2bua.message import Request, Response, make_response
from b2bua.sdp import SessionDescription, anchor, parse_sdp
from b2bua.sdp_crypto import offer_wants_srtp, plain_profile, secure_answer
from b2bua.validate import RequestRejectedError

if TYPE_CHECKING:
    from b2bua.call import Call, Side

log = logging.getLogger("b2bua.call")


def relay_reinvite(call: Call, side: Side, request: Request, key: str, now: float) -> None:
    """A re-INVITE (or UPDATE) from `side`: re-offered on the other leg with our own SDP."""
    from b2bua.call import CallState, Side

    other = Side.B if side is Side.A else Side.A
    other_leg = call._leg(other)
    if call.state is not CallState.CONFIRMED or other_leg.dialog is None:
        call.services.send_response(key, make_response(request, 491), now)
        return
    try:
        call_timers.check_peer_refresh(request)
    except SipError as exc:
        extra = list(exc.headers) if isinstance(exc, RequestRejectedError) else []
        call.services.send_response(key, make_response(request, exc.status, headers=extra), now)
        return
    body = b""
    if request.body:
        sdp = parse_sdp(request.body)
        leg = call._leg(side)
        try:
            # The offerer's leg keeps its own policy; its answer is built on the way back.
            offer_wants_srtp(sdp, leg.srtp_policy)
        except SipError as exc:
            call.services.send_response(key, make_response(request, exc.status), now)
            return
        plan = _codec_plan(call, side, sdp)
        remote, fmt, hold = media_target(sdp)
        here, there = leg.media, other_leg.media
        assert here is not None and there is not None
        # With a codec plan the offerer's format is the one our answer picks (later).
        here.set_remote(remote, fmt if plan is None else None)
        if hold:
            here.hold()
        else:
            here.resume()
        # Toward the other leg: our own offer, with the keys that leg already has.
        ip = call.services.media.ip
        toward = (
            anchor(sdp, ip, [there.port])
            if plan is None
            else codec_policy.offer_for_b(plan, sdp, ip, there.port)
        )
        body = leg_sdp.offer_to(other_leg, toward)
        other_leg.last_sdp = body
    out = other_leg.dialog.create_request(
        request.method,
        via=call.via(other_leg.transport),
        body=body,
        content_type="application/sdp" if body else None,
        headers=call_timers.relay_headers(other_leg),
    )
    out_key = call.services.send_request(
        call, other, out, call._peer_for(other), other_leg.transport, now
    )
    call.relayed[out_key] = (key, request, side)
    if request.body and plan is not None:
        call.reinvite_plans[out_key] = plan


def _codec_plan(call: Call, offerer: Side, sdp: SessionDescription) -> CodecPlan | None:
    """A plan (codec_policy.py) when exactly one leg is a wideband phone: the phone keeps
    G722 and the trunk sees G.711 only, as when the call was set up."""
    from b2bua.call import Side

    if call.direction == "inbound":
        office, wideband = Side.B, call.target.wideband and call.hunt is None
    elif call.direction == "outbound":
        office, wideband = Side.A, call.a_wideband
    else:
        return None
    if not wideband:
        return None
    call.sdp_version += 1
    return codec_policy.reoffer_plan(
        sdp,
        offerer_wideband=offerer is office,
        answerer_wideband=offerer is not office,
        session_id=call.sdp_session_id,
        session_version=call.sdp_version,
    )


def _answer_reinvite(
    call: Call, origin: Side, request: Request, sdp: SessionDescription, plan: CodecPlan | None
) -> bytes:
    """The other leg's answer anchored for the re-INVITE's offerer (or, with a codec
    plan, our own answer to the offer), SRTP or plain as the offerer's policy and offer
    say; its keys are set here (ours kept)."""
    from b2bua.call import Side

    here = call._leg(origin)
    assert here.media is not None
    ip = call.services.media.ip
    if not request.body:
        # An offerless re-INVITE: the other leg's offer goes on as plain RTP (the
        # answer in the ACK is not taken, so the leg keeps what it had).
        return plain_profile(anchor(sdp, ip, [here.media.port])).to_bytes()
    offer_sdp = parse_sdp(request.body)
    if plan is None:
        anchored = anchor(sdp, ip, [here.media.port])
    else:
        chosen = media_target(sdp)[1].encoding
        anchored = codec_policy.answer_for_a(plan, offer_sdp, sdp, chosen, ip, here.media.port)
        here.media.set_remote(media_target(offer_sdp)[0], media_target(anchored)[1])
    secure = offer_wants_srtp(offer_sdp, here.srtp_policy)
    if origin is Side.A:
        call.a_offer, call.a_secure = offer_sdp, secure
    if not secure:
        leg_sdp.set_keys(here, None)
        return plain_profile(anchored).to_bytes()
    ours = here.srtp.ours if here.srtp is not None else None
    secured, keys = secure_answer(anchored, offer_sdp, ours=ours)
    secured = leg_sdp.mediasec_marked(here, secured)
    leg_sdp.set_keys(here, keys)
    return secured.to_bytes()


def give_up_relayed(call: Call, now: float) -> None:
    """The dialog ends while re-INVITEs are relayed: each offerer gets 487 for its pending
    request (RFC 3261 15.1.2); the other leg's answer, when it comes, is only ACKed."""
    for key, (server_key, request, _) in call.relayed.items():
        if key not in call.relayed_given_up:
            call.relayed_given_up.add(key)
            call.services.send_response(server_key, make_response(request, 487), now)


def _ack_2xx(call: Call, side: Side, response: Response) -> bool:
    """ACKs `side`'s 2xx to our re-INVITE in its dialog (13.2.2.4); False if it is none."""
    leg = call._leg(side)
    if not 200 <= response.status < 300 or response.cseq[1] != "INVITE" or leg.dialog is None:
        return False
    leg.dialog.receive_response(response)
    ack = leg.dialog.create_ack(response, via=call.via(leg.transport))
    call.services.send_ack(ack, call._peer_for(side), leg.transport)
    return True


def on_relayed_response(call: Call, response: Response, key: str, now: float) -> None:
    """The other leg's answer to a relayed re-INVITE, passed back to the offerer."""
    from b2bua.call import Side, map_failure

    server_key, request, origin = call.relayed[key]
    if response.status < 200:
        return
    del call.relayed[key]
    plan = call.reinvite_plans.pop(key, None)
    answering = Side.B if origin is Side.A else Side.A
    if key in call.relayed_given_up:
        # Given up when the call ended: a 2xx is ACKed and applies to nothing.
        call.relayed_given_up.discard(key)
        _ack_2xx(call, answering, response)
        return
    leg = call._leg(answering)
    body = b""
    if 200 <= response.status < 300:
        if _ack_2xx(call, answering, response):
            call_timers.adopt_answer(leg, response, now)
        if response.body:
            sdp = parse_sdp(response.body)
            try:
                keys = leg_sdp.answer_keys(leg, sdp)
                body = _answer_reinvite(call, origin, request, sdp, plan)
            except SipError as exc:
                # The answering leg keeps its old keys; the offerer hears why.
                log.warning("call %s: re-INVITE answer refused: %s", call.id, exc)
                call.services.send_response(server_key, make_response(request, exc.status), now)
                return
            leg_sdp.set_keys(leg, keys)
            remote, fmt, hold = media_target(sdp)
            assert leg.media is not None
            leg.media.set_remote(remote, fmt)
            if hold:
                leg.media.hold()
            else:
                leg.media.resume()
    headers = [("Contact", str(call.contact()))]
    if body:
        headers.append(("Content-Type", "application/sdp"))
    status = (
        response.status
        if response.status < 300 or response.status == 491
        else (map_failure(response.status))
    )
    if body:
        call._leg(origin).last_sdp = body
    if 200 <= status < 300:
        headers += call_timers.peer_refresh_answered(call._leg(origin), request, now)
    call.services.send_response(
        server_key, make_response(request, status, headers=headers, body=body), now
    )
