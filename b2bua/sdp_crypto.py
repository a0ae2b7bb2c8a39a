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
from rtp.srtp import KEY_SALT_LENGTH, SUITES, SrtpKey

__all__ = [
    "CryptoAttribute",
    "SrtpKeys",
    "accept_answer",
    "answer_srtp",
    "build_crypto",
    "crypto_attributes",
    "is_srtp_offer",
    "new_key",
    "offer_crypto",
    "parse_crypto",
]

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
