"""Codec choices per leg when an office phone speaks wideband G.722 (HD voice).

Theory of operation: the trunk speaks G.711; a phone whose extension has `wideband =
true` is offered G.722 first. The two legs then negotiate codecs on their own and the
relay (rtp/relay.py) transcodes between them, each relay leg with the payload types of
its own SDP. A `CodecPlan` says that a call works this way: B gets our own fresh offer
(`b_offer`, never A's offer passed through) and A gets our own answer, with one codec
of A's offer (`a_answer`), once B has answered.

- Inbound (trunk -> wideband phone): the phone is offered G722 and then the G.711
  codecs of the trunk's offer; the trunk is answered with the G.711 codec the phone
  chose, or, when it chose G722, the first G.711 codec of the trunk's offer.
- Outbound (wideband phone -> trunk) with G722 in the phone's offer: the trunk is
  offered the phone's G.711 codecs only (PCMA, PCMU when it had none); the phone is
  answered with G722.
- Internal calls, hunt groups and narrowband extensions: no plan, the offer passes
  through as before (two wideband phones then keep G.722 end to end).

RFC 4733 telephone-event keeps an 8000 Hz clock on both legs: RFC 3551 section 4.5.2
gives G.722 an RTP clock rate of 8000 Hz "even though the actual sampling rate for
G.722 audio is 16,000 Hz", so events negotiated next to G722 and G.711 share that
clock. Their payload types are per leg (the relay rewrites them).

Pure functions on b2bua.sdp models: no I/O, no clock, no randomness (the session id
of our SDP is passed in).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from b2bua.config import Config
from b2bua.sdp import (
    Direction,
    MediaDescription,
    SessionDescription,
    answer,
    direction,
    offer,
    rtpmap,
    with_direction,
)

__all__ = [
    "NARROWBAND",
    "WIDEBAND",
    "CodecPlan",
    "a_answer_codec",
    "answer_for_a",
    "audio_codecs",
    "is_wideband",
    "offer_for_b",
    "office_offer_codecs",
    "plan_for_call",
    "reoffer_plan",
]

WIDEBAND = "G722"
NARROWBAND = ("PCMA", "PCMU")  # G.711 laws: what the trunk gets, and what G722 maps to
_AVP = "RTP/AVP"
_SAVP = "RTP/SAVP"


@dataclass(frozen=True)
class CodecPlan:
    """A call whose legs negotiate codecs on their own (the relay transcodes).

    `b_offer`: codec names (static payload types) of our offer to B, in order.
    `a_answer`: the names A's answer may use, best first; each is in A's offer.
    `session_id`: the o= session id of the SDP we build for this call.
    """

    b_offer: tuple[str, ...]
    a_answer: tuple[str, ...]
    session_id: int = 0
    session_version: int = 0  # re-INVITEs (reinvite.py) bump it: RFC 3264 section 8


def is_wideband(config: Config, number: str | None) -> bool:
    """Whether extension `number` takes G.722 (`wideband = true`); False for others."""
    ext = config.extension(number) if number else None
    return ext is not None and ext.wideband


def _first_audio(sdp: SessionDescription) -> MediaDescription | None:
    return next(
        (m for m in sdp.media if m.media == "audio" and m.port != 0 and m.proto in (_AVP, _SAVP)),
        None,
    )


def audio_codecs(sdp: SessionDescription) -> tuple[str, ...]:
    """Upper-case codec names of the first audio stream, in offer order, once each."""
    m = _first_audio(sdp)
    if m is None:
        return ()
    names: list[str] = []
    for codec in rtpmap(m).values():
        name = codec.name.upper()
        if codec.clock_rate == 8000 and name not in names:
            names.append(name)
    return tuple(names)


def plan_for_call(
    direction_: str,
    a_offer: SessionDescription | None,
    *,
    office_wideband: bool,
    caller_wideband: bool,
    session_id: int = 0,
) -> CodecPlan | None:
    """The plan for a new call (None: A's offer goes through to B as before).

    `office_wideband`: B is an extension with `wideband = true` (inbound calls);
    `caller_wideband`: A is one (outbound calls)."""
    if a_offer is None:
        return None
    offered = audio_codecs(a_offer)
    narrow = tuple(name for name in offered if name in NARROWBAND)
    if direction_ == "inbound" and office_wideband and narrow:
        return CodecPlan((WIDEBAND, *narrow), narrow, session_id)
    if direction_ == "outbound" and caller_wideband and WIDEBAND in offered:
        return CodecPlan(narrow or NARROWBAND, (WIDEBAND,), session_id)
    return None


def reoffer_plan(
    offer_sdp: SessionDescription,
    *,
    offerer_wideband: bool,
    answerer_wideband: bool,
    session_id: int,
    session_version: int,
) -> CodecPlan | None:
    """The plan for a re-INVITE's offer between a trunk leg and a wideband phone's leg
    (either may offer): the same choices as a new call's, so a phone that spoke G722
    keeps it across hold and resume and the trunk never sees G722. None: relay the
    offer as it is (no wideband phone on exactly one side)."""
    if answerer_wideband == offerer_wideband:
        return None
    plan = plan_for_call(
        "inbound" if answerer_wideband else "outbound",
        offer_sdp,
        office_wideband=answerer_wideband,
        caller_wideband=offerer_wideband,
        session_id=session_id,
    )
    return None if plan is None else replace(plan, session_version=session_version)


def offer_for_b(
    plan: CodecPlan, a_offer: SessionDescription, address: str, port: int
) -> SessionDescription:
    """Our fresh offer to B: the plan's codecs and telephone-event (payload type 101,
    8000 Hz, see the module doc), in the direction A offered."""
    m = _first_audio(a_offer)
    stream: Direction = "sendrecv" if m is None else direction(m, a_offer)
    return offer(
        address,
        port,
        codecs=plan.b_offer,
        stream_direction=stream,
        session_id=plan.session_id,
        session_version=plan.session_version,
    )


def a_answer_codec(plan: CodecPlan, b_encoding: str) -> str:
    """The codec A is answered with: B's own when A offered it (nothing to transcode),
    else the plan's first."""
    chosen = b_encoding.upper()
    return chosen if chosen in plan.a_answer else plan.a_answer[0]


def answer_for_a(
    plan: CodecPlan,
    a_offer: SessionDescription,
    b_answer: SessionDescription,
    b_encoding: str,
    address: str,
    port: int,
) -> SessionDescription:
    """Our answer to A's offer once B answered: one codec of A's offer (plus A's
    telephone-event when offered), on our relay port, plain RTP/AVP (the call makes
    it SRTP when A's leg is), in the direction B answered with (B on hold: A is too)."""
    # sdp.answer takes only RTP/AVP; SRTP is added afterwards by the call per leg.
    as_avp = replace(
        a_offer,
        media=tuple(replace(m, proto=_AVP) if m.proto == _SAVP else m for m in a_offer.media),
    )
    ours = answer(
        as_avp,
        (a_answer_codec(plan, b_encoding), "telephone-event"),
        address,
        port,
        session_id=plan.session_id,
        session_version=plan.session_version,
    )
    b_media = _first_audio(b_answer)
    if b_media is None:
        return ours
    b_direction = direction(b_media, b_answer)
    return replace(
        ours,
        media=tuple(with_direction(m, b_direction) if m.port != 0 else m for m in ours.media),
    )


def office_offer_codecs(trunk_encoding: str, wideband: bool) -> tuple[str, ...]:
    """Our offer to the office phone after consent (A is answered already): the
    trunk leg's codec first and the other G.711 law, with G722 before them for a
    wideband phone."""
    first = trunk_encoding.upper()
    codecs = (first, "PCMA" if first == "PCMU" else "PCMU")
    if wideband and first in NARROWBAND:
        return (WIDEBAND, *codecs)
    return codecs
