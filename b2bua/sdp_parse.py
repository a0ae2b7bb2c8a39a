"""SDP (RFC 8866) model, parser and serializer; negotiation lives in b2bua.sdp.

`parse_sdp` turns a body into frozen dataclasses and `SessionDescription.to_bytes` writes
them back. Lines that are not interpreted (t=, b=, i=, unknown letters, unknown
attributes) are kept verbatim and in their order, so a parse/serialize round trip of a
well-formed body is byte-exact (CRLF line ends; LF-only input is accepted and written
back with CRLF).

What is interpreted is checked strictly: the origin, every c= and m= line, attribute
names and the direction attributes are validated here; rtpmap, fmtp, ptime and rtcp
values by the helper in b2bua.sdp that reads them. Status codes: 400 when the body is
not SDP at all (not UTF-8, no ``v=0``, a line that is not ``x=...``, a missing or
repeated o=/s=/c=); 488 when it is SDP with values we refuse (ports above 65535, an
address that is neither an IP literal nor a hostname, multicast, non-numeric RTP
payload types, conflicting directions).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal

from b2bua.errors import SipError

Direction = Literal["sendrecv", "sendonly", "recvonly", "inactive"]
DIRECTIONS: tuple[Direction, ...] = ("sendrecv", "sendonly", "recvonly", "inactive")
MAX_SDP_BYTES = 65536  # far above any real offer; bounds the work per packet

Attribute = tuple[str, str | None]  # a=name:value, or a=name (value None)
Line = tuple[str, str]  # (type letter, text after "=")

# RFC 8866 token (att-field, media, proto parts, fmt).
_TOKEN_RE = re.compile(r"[!#$%&'*+\-.0-9A-Z^_`a-z{|}~]+")
_PORT_RE = re.compile(r"[0-9]{1,5}")
_NUMBER_RE = re.compile(r"[0-9]{1,20}")
PAYLOAD_TYPE_RE = re.compile(r"[0-9]{1,3}")
_LABEL_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")


@dataclass(frozen=True)
class Codec:
    """One rtpmap entry: encoding name, clock rate in Hz and channel count."""

    name: str
    clock_rate: int
    channels: int = 1


# RFC 3551 table 4: static audio payload types that may appear without an rtpmap.
STATIC_PAYLOAD_TYPES: dict[int, Codec] = {
    0: Codec("PCMU", 8000),
    3: Codec("GSM", 8000),
    4: Codec("G723", 8000),
    8: Codec("PCMA", 8000),
    9: Codec("G722", 8000),
    13: Codec("CN", 8000),
    18: Codec("G729", 8000),
}


@dataclass(frozen=True)
class Origin:
    """The o= line. The session id is kept as text: only its identity matters."""

    username: str
    session_id: str
    session_version: int
    nettype: str
    addrtype: str
    address: str


@dataclass(frozen=True)
class Connection:
    """A c= line (unicast only: multicast is refused with 488)."""

    nettype: str
    addrtype: str
    address: str


@dataclass(frozen=True)
class MediaDescription:
    """One m= section. `other_lines` holds i=, b=, k= and unknown lines in order."""

    media: str
    port: int
    port_count: int | None
    proto: str
    formats: tuple[str, ...]
    connection: Connection | None = None
    attributes: tuple[Attribute, ...] = ()
    other_lines: tuple[Line, ...] = ()

    def attribute(self, name: str) -> str | None:
        """The value of the first attribute called `name` ("" for a flag), or None."""
        return _first(self.attributes, name)


@dataclass(frozen=True)
class SessionDescription:
    """A whole SDP body. `other_lines` holds i/u/e/p/b/t/r/z/k and unknown lines."""

    origin: Origin
    session_name: str
    connection: Connection | None = None
    other_lines: tuple[Line, ...] = (("t", "0 0"),)
    attributes: tuple[Attribute, ...] = ()
    media: tuple[MediaDescription, ...] = ()
    version: int = 0

    def attribute(self, name: str) -> str | None:
        """The value of the first session-level attribute `name` ("" for a flag)."""
        return _first(self.attributes, name)

    def to_bytes(self) -> bytes:
        """Serialize field by field in RFC 8866 order, CRLF line ends."""
        o = self.origin
        out = [
            _line("v", str(self.version)),
            _line(
                "o",
                f"{o.username} {o.session_id} {o.session_version} "
                f"{o.nettype} {o.addrtype} {o.address}",
            ),
            _line("s", self.session_name),
        ]
        _emit_body(out, self.connection, self.other_lines, self.attributes, "iuep")
        for m in self.media:
            count = "" if m.port_count is None else f"/{m.port_count}"
            out.append(_line("m", f"{m.media} {m.port}{count} {m.proto} {' '.join(m.formats)}"))
            _emit_body(out, m.connection, m.other_lines, m.attributes, "i")
        return "".join(out).encode("utf-8")


def _first(attributes: Sequence[Attribute], name: str) -> str | None:
    for key, value in attributes:
        if key == name:
            return "" if value is None else value
    return None


def _line(kind: str, value: str) -> str:
    # Guards against line injection from values built in code rather than parsed.
    if "\r" in value or "\n" in value or "\0" in value:
        raise ValueError(f"SDP {kind}= value contains CR, LF or NUL: {value!r}")
    return f"{kind}={value}\r\n"


def _emit_body(
    out: list[str],
    connection: Connection | None,
    other: Sequence[Line],
    attributes: Sequence[Attribute],
    before_c: str,
) -> None:
    # RFC 8866 order: the lines in `before_c` precede c=, the rest follow it, then a=.
    out.extend(_line(k, v) for k, v in other if k in before_c)
    if connection is not None:
        c = connection
        out.append(_line("c", f"{c.nettype} {c.addrtype} {c.address}"))
    out.extend(_line(k, v) for k, v in other if k not in before_c)
    out.extend(
        _line("a", name if value is None else f"{name}:{value}") for name, value in attributes
    )


# --- errors and validation ---------------------------------------------------------


def _bad(detail: str) -> SipError:
    return SipError(400, "Bad Request", "SDP: " + detail)


def refused(detail: str) -> SipError:
    """The error for SDP that parses but that we refuse: 488 Not Acceptable Here."""
    return SipError(488, "Not Acceptable Here", "SDP: " + detail)


def _is_hostname(text: str) -> bool:
    labels = text.split(".")
    if len(text) > 253 or not all(_LABEL_RE.fullmatch(label) for label in labels):
        return False
    # An all-numeric last label is a mistyped IPv4 address (192.168.0.256), not a name.
    return not labels[-1].isdigit()


def address_type(address: str) -> str:
    """ "IP4" or "IP6" for an IP literal we can put in c=; ValueError otherwise."""
    ip = ipaddress.ip_address(address)  # raises ValueError for anything else
    return "IP4" if ip.version == 4 else "IP6"


def _check_address(addrtype: str, address: str, what: str) -> None:
    if addrtype not in ("IP4", "IP6"):
        raise refused(f"{what}: unsupported address type {addrtype!r}")
    if "%" in address:  # zone ids are meaningless to the peer
        raise refused(f"{what}: scoped address {address!r}")
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        if not _is_hostname(address):
            raise refused(f"{what}: {address!r} is neither an IP address nor a hostname") from None
        return
    if ip.version != (4 if addrtype == "IP4" else 6):
        raise refused(f"{what}: {address!r} is not an {addrtype} address")
    if ip.is_multicast:
        raise refused(f"{what}: multicast {address!r} is not supported")


def parse_port(text: str, what: str) -> int:
    """A port number 0..65535 from decimal text; 488 otherwise (`what` names the field)."""
    if not _PORT_RE.fullmatch(text) or int(text) > 65535:
        raise refused(f"{what}: bad port {text!r}")
    return int(text)


def _parse_origin(value: str) -> Origin:
    parts = value.split(" ")
    if len(parts) != 6 or not all(parts):
        raise refused(f"o= needs 6 fields: {value!r}")
    user, sess_id, sess_version, nettype, addrtype, address = parts
    if not _NUMBER_RE.fullmatch(sess_id) or not _NUMBER_RE.fullmatch(sess_version):
        raise refused(f"o= session id and version must be numbers: {value!r}")
    if nettype != "IN":
        raise refused(f"o= network type {nettype!r}")
    _check_address(addrtype, address, "o=")
    return Origin(user, sess_id, int(sess_version), nettype, addrtype, address)


def parse_connection(value: str) -> Connection:
    """The value of a c= line (also the address part of a=rtcp); 488 when refused."""
    parts = value.split(" ")
    if len(parts) != 3 or not all(parts):
        raise refused(f"c= needs 3 fields: {value!r}")
    nettype, addrtype, address = parts
    if nettype != "IN":
        raise refused(f"c= network type {nettype!r}")
    if "/" in address:  # TTL or address count: multicast only
        raise refused(f"c= multicast {address!r} is not supported")
    _check_address(addrtype, address, "c=")
    return Connection(nettype, addrtype, address)


def _is_rtp(proto: str) -> bool:
    return "RTP/" in proto


def _parse_media_line(value: str) -> MediaDescription:
    parts = value.split(" ")
    if len(parts) < 4 or not all(parts):
        raise refused(f"m= needs media, port, proto and formats: {value!r}")
    media, port_text, proto, *formats = parts
    if not _TOKEN_RE.fullmatch(media):
        raise refused(f"m= media {media!r}")
    port_part, slash, count_part = port_text.partition("/")
    port = parse_port(port_part, "m=")
    count: int | None = None
    if slash:
        count = parse_port(count_part, "m= port count")
        if count == 0:
            raise refused("m= port count 0")
    if not all(_TOKEN_RE.fullmatch(p) for p in proto.split("/")):
        raise refused(f"m= proto {proto!r}")
    for fmt in formats:
        if not _TOKEN_RE.fullmatch(fmt):
            raise refused(f"m= format {fmt!r}")
        if _is_rtp(proto) and (not PAYLOAD_TYPE_RE.fullmatch(fmt) or int(fmt) > 127):
            raise refused(f"m= RTP payload type {fmt!r}")
    return MediaDescription(media, port, count, proto, tuple(formats))


def _parse_attribute(value: str) -> Attribute:
    name, colon, rest = value.partition(":")
    if not _TOKEN_RE.fullmatch(name):
        raise _bad(f"attribute name {name!r}")
    if name in DIRECTIONS and colon:
        raise _bad(f"a={name} takes no value")
    return (name, rest if colon else None)


def _check_directions(attributes: Sequence[Attribute], where: str) -> None:
    if len({name for name, _ in attributes if name in DIRECTIONS}) > 1:
        raise refused(f"conflicting direction attributes at {where}")


# --- parsing ---------------------------------------------------------------------


def _split_lines(data: bytes) -> list[Line]:
    if len(data) > MAX_SDP_BYTES:
        raise _bad(f"body of {len(data)} bytes is too large")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise _bad("not UTF-8") from None
    lines: list[Line] = []
    for raw in text.split("\n"):
        line = raw.removesuffix("\r")
        if not line:
            continue  # tolerate blank lines, e.g. a trailing empty line
        if "\r" in line or "\0" in line:
            raise _bad("stray CR or NUL inside a line")
        if len(line) < 2 or line[1] != "=" or not "a" <= line[0] <= "z":
            raise _bad(f"not a type=value line: {line[:40]!r}")
        lines.append((line[0], line[2:]))
    return lines


def parse_sdp(data: bytes) -> SessionDescription:
    """Parse an SDP body. Raises SipError(400) for non-SDP, SipError(488) for refused SDP."""
    lines = _split_lines(data)
    if not lines or lines[0] != ("v", "0"):
        raise _bad("must start with v=0")
    origin: Origin | None = None
    name: str | None = None
    conn: Connection | None = None
    other: list[Line] = []
    attrs: list[Attribute] = []
    media: list[MediaDescription] = []
    m_conn: Connection | None = None
    m_other: list[Line] = []
    m_attrs: list[Attribute] = []

    def close_media() -> None:
        if media:
            media[-1] = replace(
                media[-1], connection=m_conn, attributes=tuple(m_attrs), other_lines=tuple(m_other)
            )

    for kind, value in lines[1:]:
        if kind == "m":
            close_media()
            media.append(_parse_media_line(value))
            m_conn, m_other, m_attrs = None, [], []
        elif kind in "vos" and (media or kind == "v"):
            raise _bad(f"misplaced or repeated {kind}= line")
        elif kind == "o":
            if origin is not None:
                raise _bad("repeated o= line")
            origin = _parse_origin(value)
        elif kind == "s":
            if name is not None:
                raise _bad("repeated s= line")
            name = value
        elif kind == "c":
            if (m_conn if media else conn) is not None:
                raise _bad("repeated c= line")
            if media:
                m_conn = parse_connection(value)
            else:
                conn = parse_connection(value)
        elif kind == "a":
            (m_attrs if media else attrs).append(_parse_attribute(value))
        else:
            (m_other if media else other).append((kind, value))
    close_media()
    if origin is None or name is None:
        raise _bad("o= and s= lines are required")
    _check_directions(attrs, "session level")
    for index, m in enumerate(media):
        _check_directions(m.attributes, f"m= line {index + 1}")
        if m.port != 0 and m.connection is None and conn is None:
            raise refused(f"m= line {index + 1} has no connection address")
    return SessionDescription(
        origin=origin,
        session_name=name,
        connection=conn,
        other_lines=tuple(other),
        attributes=tuple(attrs),
        media=tuple(media),
    )
