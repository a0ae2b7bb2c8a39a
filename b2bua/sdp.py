"""SDP offer/answer (RFC 3264) for a media-anchoring B2BUA, on top of b2bua.sdp_parse.

This is the module the call code imports: it re-exports the model and `parse_sdp`, reads
the attributes we interpret (rtpmap, fmtp, ptime, direction, rtcp; a malformed value is
SipError(488) when read), and builds SDP: `anchor` rewrites every address and port to
the relay's for the leg that receives the SDP, `answer` builds our answer to an offer,
`offer` builds a fresh offer.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace

from b2bua.sdp_parse import (
    DIRECTIONS,
    MAX_SDP_BYTES,
    PAYLOAD_TYPE_RE,
    STATIC_PAYLOAD_TYPES,
    Attribute,
    Codec,
    Connection,
    Direction,
    Line,
    MediaDescription,
    Origin,
    SessionDescription,
    address_type,
    parse_connection,
    parse_port,
    parse_sdp,
    refused,
)

__all__ = [
    "DIRECTIONS",
    "ICE_ATTRIBUTES",
    "MAX_SDP_BYTES",
    "STATIC_PAYLOAD_TYPES",
    "Attribute",
    "Codec",
    "Connection",
    "Direction",
    "Line",
    "MediaDescription",
    "Origin",
    "Rtcp",
    "SessionDescription",
    "address_type",
    "anchor",
    "answer",
    "direction",
    "find_format",
    "fmtp",
    "offer",
    "parse_sdp",
    "ptime",
    "rtcp",
    "rtpmap",
    "with_direction",
]

# RFC 3264 section 6.1: the answerer mirrors the offered direction.
_MIRRORED: dict[Direction, Direction] = {
    "sendrecv": "sendrecv",
    "sendonly": "recvonly",
    "recvonly": "sendonly",
    "inactive": "inactive",
}
# ICE (RFC 8839) attributes name the peer's own addresses: stale once media is anchored.
ICE_ATTRIBUTES = frozenset(
    {"candidate", "remote-candidates", "ice-ufrag", "ice-pwd", "ice-options", "ice-lite"}
    | {"end-of-candidates", "ice-mismatch", "ice-pacing"}
)
_RTPMAP_RE = re.compile(r"([0-9]{1,3}) ([^/ ]+)/([0-9]{1,9})(?:/([0-9]{1,3}))?")
_PTIME_RE = re.compile(r"[0-9]{1,5}(?:\.[0-9]{1,3})?")


@dataclass(frozen=True)
class Rtcp:
    """An RFC 3605 a=rtcp attribute: port and optional address."""

    port: int
    connection: Connection | None = None


# --- attribute helpers -------------------------------------------------------------


def _parse_rtpmap(value: str) -> tuple[int, Codec]:
    match = _RTPMAP_RE.fullmatch(value)
    if match is None:
        raise refused(f"a=rtpmap:{value!r}")
    pt, name, rate, channels = match.groups()
    codec = Codec(name, int(rate), 1 if channels is None else int(channels))
    if int(pt) > 127 or codec.clock_rate == 0 or codec.channels == 0:
        raise refused(f"a=rtpmap:{value!r}")
    return int(pt), codec


def rtpmap(media: MediaDescription) -> dict[int, Codec]:
    """Payload type -> codec for the formats of `media`, in m= order.

    Static payload types without an rtpmap line get their RFC 3551 meaning (0 PCMU,
    8 PCMA, ...); dynamic ones without rtpmap are left out. A malformed rtpmap: 488.
    """
    mapped: dict[int, Codec] = {}
    for key, value in media.attributes:
        if key == "rtpmap":
            pt, codec = _parse_rtpmap(value or "")
            mapped.setdefault(pt, codec)
    result: dict[int, Codec] = {}
    for fmt in media.formats:
        if PAYLOAD_TYPE_RE.fullmatch(fmt):
            codec_or_none = mapped.get(int(fmt), STATIC_PAYLOAD_TYPES.get(int(fmt)))
            if codec_or_none is not None:
                result[int(fmt)] = codec_or_none
    return result


def fmtp(media: MediaDescription) -> dict[int, str]:
    """Payload type -> format parameters (text after the payload type), first one wins."""
    result: dict[int, str] = {}
    for key, value in media.attributes:
        if key == "fmtp":
            fmt, _, params = (value or "").partition(" ")
            if not PAYLOAD_TYPE_RE.fullmatch(fmt) or int(fmt) > 127:
                raise refused(f"a=fmtp:{value!r}")
            result.setdefault(int(fmt), params)
    return result


def direction(media: MediaDescription, session: SessionDescription | None = None) -> Direction:
    """The stream's direction: media level, else session level, else sendrecv."""
    for attributes in (media.attributes, () if session is None else session.attributes):
        for key, _ in attributes:
            if key in DIRECTIONS:
                return key
    return "sendrecv"


def with_direction(media: MediaDescription, value: Direction) -> MediaDescription:
    """A copy with exactly one direction attribute, in place of the first existing one."""
    attrs: list[Attribute] = []
    placed = False
    for key, old in media.attributes:
        if key in DIRECTIONS:
            if not placed:
                attrs.append((value, None))
                placed = True
        else:
            attrs.append((key, old))
    if not placed:
        attrs.append((value, None))
    return replace(media, attributes=tuple(attrs))


def ptime(media: MediaDescription) -> float | None:
    """The a=ptime packet time in milliseconds, or None when absent."""
    value = media.attribute("ptime")
    if value is None:
        return None
    if not _PTIME_RE.fullmatch(value) or float(value) <= 0:
        raise refused(f"a=ptime:{value!r}")
    return float(value)


def rtcp(media: MediaDescription) -> Rtcp | None:
    """The RFC 3605 a=rtcp attribute, or None when absent."""
    value = media.attribute("rtcp")
    if value is None:
        return None
    port_text, _, rest = value.partition(" ")
    port = parse_port(port_text, "a=rtcp")
    return Rtcp(port, parse_connection(rest) if rest else None)


def find_format(media: MediaDescription, codec_name: str) -> int | None:
    """The first payload type whose encoding name matches (case-insensitive), or None."""
    for pt, codec in rtpmap(media).items():
        if codec.name.lower() == codec_name.lower():
            return pt
    return None


# --- rewriting and building --------------------------------------------------------


def anchor(
    sdp: SessionDescription,
    address: str,
    ports: Sequence[int],
    *,
    session_version_bump: bool = True,
    origin: Origin | None = None,
    strip_ice: bool = True,
) -> SessionDescription:
    """Point every stream at the relay: `address` and one port per m= line.

    Rejected streams (port 0) stay rejected. a=rtcp becomes port+1 (the relay's RTCP
    socket) or is dropped for a rejected stream. SDES a=crypto keys are always dropped
    (they belong to one leg). ICE attributes, which name the peer's
    own addresses, are dropped unless `strip_ice` is false. The origin address becomes
    ours and its version is bumped, unless a whole `origin` is given (a B2BUA that keeps
    its own o= per leg, RFC 3264 section 8).
    """
    if len(ports) != len(sdp.media):
        raise ValueError(f"{len(ports)} ports for {len(sdp.media)} m= lines")
    conn = Connection("IN", address_type(address), address)
    new_media: list[MediaDescription] = []
    for m, port in zip(sdp.media, ports, strict=True):
        new_port = 0 if m.port == 0 else port
        if not 0 <= new_port <= 65535:
            raise ValueError(f"port {new_port} out of range")
        attrs: list[Attribute] = []
        for key, value in m.attributes:
            if strip_ice and key in ICE_ATTRIBUTES:
                continue
            if key == "crypto":
                # SDES keys belong to one leg: the relay terminates media per leg, so a
                # key must never be handed on to the other side (it would also leak it).
                continue
            if key != "rtcp":
                attrs.append((key, value))
            elif new_port != 0:
                attrs.append((key, str(new_port + 1)))
        new_media.append(
            replace(
                m,
                port=new_port,
                port_count=None,
                connection=None if m.connection is None else conn,
                attributes=tuple(attrs),
            )
        )
    session_conn: Connection | None = conn
    if sdp.connection is None and all(m.connection is not None for m in new_media):
        session_conn = None  # nothing to rewrite at session level; keep the shape
    if origin is None:
        bump = 1 if session_version_bump else 0
        origin = replace(
            sdp.origin,
            addrtype=conn.addrtype,
            address=address,
            session_version=sdp.origin.session_version + bump,
        )
    session_attrs = sdp.attributes
    if strip_ice:
        session_attrs = tuple(a for a in session_attrs if a[0] not in ICE_ATTRIBUTES)
    return replace(
        sdp,
        origin=origin,
        connection=session_conn,
        attributes=session_attrs,
        media=tuple(new_media),
    )


def _new_session(
    address: str,
    media: Sequence[MediaDescription],
    username: str,
    session_id: int,
    session_version: int,
) -> SessionDescription:
    addrtype = address_type(address)
    return SessionDescription(
        origin=Origin(username, str(session_id), session_version, "IN", addrtype, address),
        session_name="-",
        connection=Connection("IN", addrtype, address),
        other_lines=(("t", "0 0"),),
        media=tuple(media),
    )


def _audio_attributes(
    chosen: Sequence[tuple[int, Codec, str | None]], packet_ms: int | None
) -> list[Attribute]:
    attrs: list[Attribute] = []
    for pt, codec, _ in chosen:
        channels = "" if codec.channels == 1 else f"/{codec.channels}"
        attrs.append(("rtpmap", f"{pt} {codec.name}/{codec.clock_rate}{channels}"))
    attrs.extend(("fmtp", f"{pt} {params}") for pt, _, params in chosen if params is not None)
    if packet_ms is not None:
        attrs.append(("ptime", str(packet_ms)))
    return attrs


def answer(
    offer: SessionDescription,
    supported: Sequence[str],
    address: str,
    port: int,
    *,
    username: str = "-",
    session_id: int = 0,
    session_version: int = 0,
    packet_ms: int | None = 20,
) -> SessionDescription:
    """Our RFC 3264 answer: one audio stream on `address`:`port`, the rest rejected.

    The first RTP/AVP audio stream with a common codec is accepted with the first codec
    of `supported` names in the offer's order, plus telephone-event (same clock rate)
    when offered and listed in `supported`. The direction is mirrored. Every other m=
    line is answered with port 0. No acceptable stream: SipError(488).
    """
    wanted = {name.lower() for name in supported}
    media: list[MediaDescription] = []
    accepted = False
    for m in offer.media:
        chosen = None if accepted else _choose(m, wanted)
        if chosen is None:
            media.append(MediaDescription(m.media, 0, None, m.proto, m.formats))
            continue
        accepted = True
        attrs = _audio_attributes(chosen, packet_ms)
        if rtcp(m) is not None:
            attrs.append(("rtcp", str(port + 1)))
        attrs.append((_MIRRORED[direction(m, offer)], None))
        formats = tuple(str(pt) for pt, _, _ in chosen)
        media.append(MediaDescription("audio", port, None, m.proto, formats, None, tuple(attrs)))
    if not accepted:
        raise refused("no common codec")
    return _new_session(address, media, username, session_id, session_version)


def _choose(m: MediaDescription, wanted: set[str]) -> list[tuple[int, Codec, str | None]] | None:
    if m.port == 0 or m.media != "audio" or m.proto != "RTP/AVP":
        return None
    codecs = rtpmap(m)
    params = fmtp(m)
    main = next(
        (
            (pt, c)
            for pt, c in codecs.items()
            if c.name.lower() in wanted and c.name.lower() != "telephone-event"
        ),
        None,
    )
    if main is None:
        return None
    chosen: list[tuple[int, Codec, str | None]] = [(main[0], main[1], params.get(main[0]))]
    if "telephone-event" in wanted:
        for pt, c in codecs.items():
            if c.name.lower() == "telephone-event" and c.clock_rate == main[1].clock_rate:
                # RFC 4733 section 2.4.1: no fmtp means events 0-15.
                chosen.append((pt, c, params.get(pt, "0-15")))
                break
    return chosen


def offer(
    address: str,
    port: int,
    *,
    codecs: Sequence[str] = ("PCMU", "PCMA"),
    telephone_event_pt: int | None = 101,
    packet_ms: int | None = 20,
    stream_direction: Direction = "sendrecv",
    username: str = "-",
    session_id: int = 0,
    session_version: int = 0,
) -> SessionDescription:
    """A fresh audio offer of static-payload codecs (by name) plus telephone-event."""
    by_name = {c.name.lower(): pt for pt, c in STATIC_PAYLOAD_TYPES.items()}
    chosen: list[tuple[int, Codec, str | None]] = []
    for name in codecs:
        pt = by_name.get(name.lower())
        if pt is None:
            raise ValueError(f"{name!r} has no static payload type")
        chosen.append((pt, STATIC_PAYLOAD_TYPES[pt], None))
    if telephone_event_pt is not None:
        chosen.append((telephone_event_pt, Codec("telephone-event", 8000), "0-15"))
    attrs = _audio_attributes(chosen, packet_ms)
    attrs.append((stream_direction, None))
    formats = tuple(str(pt) for pt, _, _ in chosen)
    media = MediaDescription("audio", port, None, "RTP/AVP", formats, None, tuple(attrs))
    return _new_session(address, [media], username, session_id, session_version)
