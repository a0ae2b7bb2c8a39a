"""SDES keys for SRTP in SDP (RFC 4568): `a=crypto` lines, parsed, built and negotiated.

Theory of operation: pure functions on `b2bua.sdp` models; no I/O, no clock (the keys
come from `secrets` unless the caller passes its own, for tests). An offer carries one
`a=crypto` line per acceptable suite, each with its own key; the answerer picks the
first line it supports, answers with the same tag and suite and *its own* key. Each side
then protects with its own key and unprotects with the other's (RFC 4568 6.1), which is
what `SrtpKeys` holds for the relay (rtp/srtp.py).

Accepted: AES_CM_128_HMAC_SHA1_80 and _32, one `inline:` key of 30 bytes (key+salt,
base64), an optional lifetime, no MKI, no session parameters (UNENCRYPTED_SRTP and
friends weaken the stream; a line with any is skipped, RFC 4568 6.3 lets us). The
profile is RTP/SAVP; an RTP/AVP stream with `a=crypto` lines is "best effort" SRTP
(common with carriers and phones) and is answered the same way, keeping RTP/AVP.
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from b2bua.errors import SipError
from b2bua.sdp import answer
from b2bua.sdp_parse import MediaDescription, SessionDescription
from rtp.srtp import KEY_SALT_LENGTH, SUITES, SrtpKey, SrtpLeg

__all__ = [
    "POLICIES",
    "CryptoAttribute",
    "SrtpKeys",
    "accept_answer",
    "answer_keys",
    "answer_srtp",
    "build_crypto",
    "crypto_attributes",
    "is_srtp_offer",
    "new_key",
    "offer_crypto",
    "offer_for_leg",
    "offer_wants_srtp",
    "parse_crypto",
    "plain_profile",
    "secure_answer",
]

POLICIES = ("off", "optional", "required")  # trunk.srtp, extension.srtp

SAVP = "RTP/SAVP"
AVP = "RTP/AVP"
_TAG = re.compile(r"[0-9]{1,9}")
_LIFETIME = re.compile(r"(?:2\^)?[0-9]{1,10}")


@dataclass(frozen=True)
class CryptoAttribute:
    """One usable `a=crypto` line."""

    tag: int
    key: SrtpKey
    lifetime: str | None = None


@dataclass(frozen=True)
class SrtpKeys:
    """A negotiated leg: unprotect with the peer's key, protect with ours."""

    tag: int
    peer: SrtpKey = field(repr=False)
    ours: SrtpKey = field(repr=False)

    def leg(self) -> SrtpLeg:
        """libsrtp sessions for the relay leg: unprotect with the peer's key, protect
        with ours."""
        return SrtpLeg(self.peer, self.ours)


def new_key(suite: str = "AES_CM_128_HMAC_SHA1_80") -> SrtpKey:
    return SrtpKey(suite, secrets.token_bytes(KEY_SALT_LENGTH))


def parse_crypto(value: str) -> CryptoAttribute | None:
    """The value after `a=crypto:`; None when the line is unusable (unknown suite,
    malformed key, MKI, several keys, session parameters)."""
    parts = value.split()
    if len(parts) != 3 or not _TAG.fullmatch(parts[0]) or parts[1] not in SUITES:
        return None
    method, sep, info = parts[2].partition(":")
    if method != "inline" or not sep or ";" in info:
        return None
    fields = info.split("|")
    if len(fields) > 2:
        return None  # an MKI: libsrtp streams here carry none
    lifetime = fields[1] if len(fields) == 2 else None
    if lifetime is not None and (not _LIFETIME.fullmatch(lifetime) or ":" in lifetime):
        return None
    try:
        raw = base64.b64decode(fields[0], validate=True)
    except (binascii.Error, ValueError):
        return None
    if len(raw) != KEY_SALT_LENGTH:
        return None
    return CryptoAttribute(int(parts[0]), SrtpKey(parts[1], raw), lifetime)


def build_crypto(tag: int, key: SrtpKey) -> str:
    """The attribute value (after `crypto:`): `1 AES_CM_128_HMAC_SHA1_80 inline:...`."""
    encoded = base64.b64encode(key.key_salt).decode("ascii")
    return f"{tag} {key.suite} inline:{encoded}"


def crypto_attributes(media: MediaDescription) -> list[CryptoAttribute]:
    """The usable `a=crypto` lines of one m= section, in the offerer's preference order."""
    found: list[CryptoAttribute] = []
    for name, value in media.attributes:
        if name == "crypto" and value is not None:
            parsed = parse_crypto(value)
            if parsed is not None:
                found.append(parsed)
    return found


def is_srtp_offer(sdp: SessionDescription) -> bool:
    """Whether the first audio stream asks for SRTP (RTP/SAVP, or crypto lines on AVP)."""
    for m in sdp.media:
        if m.media == "audio" and m.port != 0:
            return m.proto == SAVP or any(name == "crypto" for name, _ in m.attributes)
    return False


def answer_srtp(
    offer: SessionDescription,
    supported: Sequence[str],
    address: str,
    port: int,
    *,
    ours: SrtpKey | None = None,
    username: str = "-",
    session_id: int = 0,
    session_version: int = 0,
    packet_ms: int | None = 20,
) -> tuple[SessionDescription, SrtpKeys]:
    """Our answer to an SRTP offer, and the keys for the leg.

    The first audio stream's first usable crypto line wins; the codec choice is
    `b2bua.sdp.answer`'s. No usable line: SipError(488), as RFC 4568 7.1.3 asks."""
    index = next((i for i, m in enumerate(offer.media) if m.media == "audio" and m.port != 0), None)
    if index is None:
        raise SipError(488, "Not Acceptable Here", "no audio stream")
    media = offer.media[index]
    offered = crypto_attributes(media)
    if not offered:
        raise SipError(488, "Not Acceptable Here", "no usable a=crypto line")
    chosen = offered[0]
    key = ours if ours is not None else new_key(chosen.key.suite)
    if key.suite != chosen.key.suite:
        raise ValueError("our key must use the offered suite")
    # sdp.answer negotiates RTP/AVP; the profile is put back afterwards.
    as_avp = replace(
        offer,
        media=tuple(
            replace(m, proto=AVP) if i == index else replace(m, port=0)
            for i, m in enumerate(offer.media)
        ),
    )
    plain = answer(
        as_avp,
        supported,
        address,
        port,
        username=username,
        session_id=session_id,
        session_version=session_version,
        packet_ms=packet_ms,
    )
    answered = tuple(
        replace(
            m,
            proto=media.proto,
            attributes=(*m.attributes, ("crypto", build_crypto(chosen.tag, key))),
        )
        if i == index
        else m  # rejected (port 0) with its offered profile
        for i, m in enumerate(plain.media)
    )
    return replace(plain, media=answered), SrtpKeys(chosen.tag, chosen.key, key)


def offer_crypto(
    sdp: SessionDescription,
    *,
    suites: Sequence[str] = ("AES_CM_128_HMAC_SHA1_80", "AES_CM_128_HMAC_SHA1_32"),
    best_effort: bool = False,
) -> tuple[SessionDescription, dict[int, SrtpKey]]:
    """Our offer with SRTP on the first audio stream: one crypto line per suite, each
    with a fresh key. RTP/SAVP, or RTP/AVP plus crypto lines when `best_effort`
    (srtp = optional). Returns the keys by tag for `accept_answer`."""
    keys = {tag: new_key(suite) for tag, suite in enumerate(suites, start=1)}
    out: list[MediaDescription] = []
    done = False
    for m in sdp.media:
        if done or m.media != "audio" or m.port == 0:
            out.append(m)
            continue
        done = True
        lines = tuple(("crypto", build_crypto(tag, key)) for tag, key in keys.items())
        out.append(
            replace(m, proto=AVP if best_effort else SAVP, attributes=(*m.attributes, *lines))
        )
    if not done:
        raise ValueError("no audio stream to protect")
    return replace(sdp, media=tuple(out)), keys


def accept_answer(answer_sdp: SessionDescription, offered: dict[int, SrtpKey]) -> SrtpKeys | None:
    """The leg's keys from the answer to `offer_crypto`; None when the answerer chose
    plain RTP (acceptable only for a best-effort offer: the caller decides).

    SipError(488) when the answer names a tag or suite we did not offer."""
    for m in answer_sdp.media:
        if m.media != "audio" or m.port == 0:
            continue
        lines = crypto_attributes(m)
        if not lines:
            if m.proto == SAVP or any(name == "crypto" for name, _ in m.attributes):
                raise SipError(488, "Not Acceptable Here", "unusable a=crypto in the answer")
            return None
        chosen = lines[0]
        ours = offered.get(chosen.tag)
        if ours is None or ours.suite != chosen.key.suite:
            raise SipError(488, "Not Acceptable Here", "answer's crypto tag was not offered")
        return SrtpKeys(chosen.tag, chosen.key, ours)
    return None


# --- per-leg policy (off | optional | required) -------------------------------------
# The call (b2bua/call.py) negotiates each leg on its own with these: the caller's
# offer against the caller's leg policy, our offer to the callee from the callee's. The
# relay anchors media per leg, so the SDP that crosses over never carries the other
# leg's keys (b2bua.sdp.anchor drops them) and the profile is set per leg here.


def _first_audio(sdp: SessionDescription) -> int | None:
    return next((i for i, m in enumerate(sdp.media) if m.media == "audio" and m.port != 0), None)


def _with_audio(
    sdp: SessionDescription, index: int, proto: str, extra: tuple[tuple[str, str], ...] = ()
) -> SessionDescription:
    media = list(sdp.media)
    m = media[index]
    attrs = tuple(a for a in m.attributes if a[0] != "crypto") + extra
    media[index] = replace(m, proto=proto, attributes=attrs)
    return replace(sdp, media=tuple(media))


def offer_wants_srtp(offer: SessionDescription, policy: str) -> bool:
    """Whether our answer to this offer is SRTP, under the leg's policy.

    SipError(488) when the policy and the offer can not meet: an RTP/SAVP offer on a
    leg with srtp = off, a plain offer on a leg with srtp = required, or an SRTP-only
    offer none of whose crypto lines we can use. Best-effort crypto on RTP/AVP is
    ignored when the leg is off (or its lines are unusable), and the answer is plain."""
    index = _first_audio(offer)
    if index is None:
        if policy == "required":
            raise SipError(488, "Not Acceptable Here", "SRTP required: no audio stream")
        return False
    media = offer.media[index]
    usable = bool(crypto_attributes(media))
    if media.proto == SAVP:
        if policy == "off":
            raise SipError(488, "Not Acceptable Here", "SRTP offered on a leg with srtp = off")
        if not usable:
            raise SipError(488, "Not Acceptable Here", "no usable a=crypto line")
        return True
    if policy == "off":
        return False
    if not usable:
        if policy == "required":
            raise SipError(488, "Not Acceptable Here", "SRTP required: plain RTP offered")
        return False
    return True


def secure_answer(
    answer_sdp: SessionDescription,
    offer: SessionDescription,
    *,
    ours: SrtpKey | None = None,
) -> tuple[SessionDescription, SrtpKeys]:
    """`answer_sdp` (built for this leg, e.g. the other leg's answer anchored to our
    relay) made the SRTP answer to `offer`: the offer's profile and first usable crypto
    line's tag and suite, with our key. `ours` keeps the key of an earlier answer on
    the same leg (a 183 then the 200, or a re-INVITE) when its suite still fits."""
    offered_index = _first_audio(offer)
    index = _first_audio(answer_sdp)
    if offered_index is None or index is None:
        raise SipError(488, "Not Acceptable Here", "no audio stream")
    offered = crypto_attributes(offer.media[offered_index])
    if not offered:
        raise SipError(488, "Not Acceptable Here", "no usable a=crypto line")
    chosen = offered[0]
    if ours is None or ours.suite != chosen.key.suite:
        ours = new_key(chosen.key.suite)
    line = (("crypto", build_crypto(chosen.tag, ours)),)
    proto = offer.media[offered_index].proto
    return _with_audio(answer_sdp, index, proto, line), SrtpKeys(chosen.tag, chosen.key, ours)


def plain_profile(sdp: SessionDescription) -> SessionDescription:
    """The SDP as plain RTP for a leg without SRTP: RTP/SAVP becomes RTP/AVP, crypto
    lines go (other profiles are left alone)."""
    index = _first_audio(sdp)
    if index is None:
        return sdp
    proto = sdp.media[index].proto
    return _with_audio(sdp, index, AVP if proto == SAVP else proto)


def offer_for_leg(
    sdp: SessionDescription, policy: str, current: SrtpKeys | None = None
) -> tuple[SessionDescription, dict[int, SrtpKey] | None]:
    """Our offer on a leg with `policy`: plain (off), RTP/AVP plus crypto (optional) or
    RTP/SAVP (required). A leg that already has keys (`current`, a re-INVITE) is offered
    the same tag and our same key again, so its media keeps flowing under the old keys
    until the answer comes. Returns the offered keys by tag for `answer_keys`."""
    index = _first_audio(sdp)
    if policy == "off" or index is None:
        return plain_profile(sdp), None
    if current is None:
        return offer_crypto(plain_profile(sdp), best_effort=policy == "optional")
    proto = AVP if policy == "optional" else SAVP
    line = (("crypto", build_crypto(current.tag, current.ours)),)
    return _with_audio(sdp, index, proto, line), {current.tag: current.ours}


def answer_keys(
    answer_sdp: SessionDescription, offered: dict[int, SrtpKey] | None, policy: str
) -> SrtpKeys | None:
    """The leg's keys from the answer to `offer_for_leg`'s offer, or None for plain RTP.

    SipError(488) when the answer's crypto does not match the offer, or when the leg
    requires SRTP and the answer is plain."""
    if offered is None:
        return None  # we offered plain RTP: crypto in the answer means nothing
    keys = accept_answer(answer_sdp, offered)
    if keys is None and policy == "required":
        raise SipError(488, "Not Acceptable Here", "SRTP required: the answer is plain RTP")
    return keys
