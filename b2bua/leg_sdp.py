"""SDP and SDES-SRTP per leg of a call: what each leg is offered or answered.

Theory of operation: every SDP we send to a leg is made for that leg alone. Keys never
cross legs: `offer_to` adds our crypto to an offer as the leg's policy asks (keeping our
key on re-offers), `answer_keys` checks an answer against what we offered on that leg,
`set_keys` hands changed keys to the leg's relay (unchanged keys keep libsrtp's state),
and `answer_to_a` secures our answer to the caller when its offer was taken as SRTP.
`anchored_for_a` turns B's answer into A's: the same SDP pointed at A's relay port, or,
with a codec plan (codec_policy.py: a wideband phone), our own answer to A's offer while
the relay transcodes. Pure functions of the call's state; no I/O.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from b2bua import codec_policy
from b2bua.media_control import media_target
from b2bua.sdp import SessionDescription, anchor, parse_sdp
from b2bua.sdp_crypto import (
    SrtpKeys,
    offer_for_leg,
    plain_profile,
    secure_answer,
)
from b2bua.sdp_crypto import (
    answer_keys as negotiated_keys,
)

if TYPE_CHECKING:  # call.py imports this module
    from b2bua.call import Call, LegState

MEDIASEC_ATTRIBUTE = ("3ge2ae", "requested")


def anchored_for_a(call: Call, body: bytes) -> bytes:
    """B's SDP made to point at leg A's relay port; B's leg learns its peer."""
    sdp = parse_sdp(body)
    if call.codec_plan is not None:
        return own_answer_for_a(call, sdp)
    b_keys = answer_keys(call.b, sdp)  # SipError(488) before anything changes
    remote, fmt, hold = media_target(sdp)
    assert call.a.media is not None and call.b.media is not None
    set_keys(call.b, b_keys)
    call.b.media.set_remote(remote, fmt)
    # Both legs carry the codec B chose (the offer went through unchanged).
    call.a.media.set_remote(call.a_remote, fmt)
    if hold:
        call.b.media.hold()
    return answer_to_a(call, anchor(sdp, call.services.media.ip, [call.a.media.port]))


def own_answer_for_a(call: Call, sdp: SessionDescription) -> bytes:
    """B answered our own offer (codec_policy.py): A gets our answer to its offer,
    each relay leg its own codec and payload types; the relay transcodes."""
    assert call.codec_plan is not None and call.a_offer is not None
    b_keys = answer_keys(call.b, sdp)  # SipError(488) before anything changes
    remote, fmt, hold = media_target(sdp)
    assert call.a.media is not None and call.b.media is not None
    ours = codec_policy.answer_for_a(
        call.codec_plan,
        call.a_offer,
        sdp,
        fmt.encoding,
        call.services.media.ip,
        call.a.media.port,
    )
    set_keys(call.b, b_keys)
    call.b.media.set_remote(remote, fmt)
    call.a.media.set_remote(call.a_remote, media_target(ours)[1])
    if hold:
        call.b.media.hold()
    return answer_to_a(call, ours)


def set_keys(leg: LegState, keys: SrtpKeys | None) -> None:
    """Hands changed keys to the relay leg; unchanged keys keep libsrtp's state."""
    if keys == leg.srtp:
        return
    leg.srtp = keys
    if leg.media is not None:
        leg.media.set_srtp(None if keys is None else keys.leg())


def offer_to(leg: LegState, sdp: SessionDescription) -> bytes:
    """Our offer on `leg`, with our crypto as its policy asks (keys kept on re-offers)."""
    secured, leg.srtp_offer = offer_for_leg(sdp, leg.srtp_policy, leg.srtp)
    return mediasec_marked(leg, secured).to_bytes()


def mediasec_marked(leg: LegState, sdp: SessionDescription) -> SessionDescription:
    """On a trunk leg under Telekom's mediasec, every stream with SDES keys also says
    `a=3ge2ae:requested` (3GPP TS 24.229's end-to-access-edge indicator; Asterisk's
    res_pjsip_sdp_rtp.c adds it to each SDES stream when security_negotiation is
    mediasec). Other legs and plain streams are left as they are."""
    if not leg.mediasec:
        return sdp
    media = tuple(
        replace(m, attributes=(*m.attributes, MEDIASEC_ATTRIBUTE))
        if any(name == "crypto" for name, _ in m.attributes)
        and MEDIASEC_ATTRIBUTE not in m.attributes
        else m
        for m in sdp.media
    )
    return replace(sdp, media=media)


def answer_keys(leg: LegState, sdp: SessionDescription) -> SrtpKeys | None:
    return negotiated_keys(sdp, leg.srtp_offer, leg.srtp_policy)


def answer_to_a(call: Call, sdp: SessionDescription) -> bytes:
    """An answer for A (B's, anchored): SRTP with our key when A's offer was taken
    as SRTP, plain RTP otherwise."""
    if not call.a_secure or call.a_offer is None:
        return plain_profile(sdp).to_bytes()
    ours = call.a.srtp.ours if call.a.srtp is not None else None
    secured, keys = secure_answer(sdp, call.a_offer, ours=ours)
    set_keys(call.a, keys)
    return mediasec_marked(call.a, secured).to_bytes()
