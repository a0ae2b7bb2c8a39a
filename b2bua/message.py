"""SIP messages: immutable Request/Response, parsing from bytes, serializing to bytes.

Framing follows RFC 3261 7.5 and 18.3: on a datagram the body ends at Content-Length
(octets beyond it are discarded; a shorter body is a 400) or at the end of the packet
when Content-Length is absent; on a byte stream (:class:`StreamParser`) Content-Length
is mandatory. Parsed messages carry no Content-Length field: the body's length is the
truth and :meth:`Request.to_bytes` writes the header from it.

Header values are decoded as UTF-8 with ``surrogateescape`` so every octet survives a
round trip. Every bad input raises :class:`SipError` (mostly :class:`SipParseError`,
505 for an unknown SIP version, 513 for an oversize stream message), nothing else.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property
from typing import NoReturn

from b2bua.errors import SipError, SipParseError
from b2bua.headers import (
    Address,
    Headers,
    Via,
    canonical_name,
    is_token,
    parse_address,
    parse_address_list,
    parse_via_list,
)
from b2bua.uri import URI, parse_uri

_ENC = "utf-8"
_ERRORS = "surrogateescape"
_VERSION_RE = re.compile(r"SIP/(\d+)\.(\d+)", re.IGNORECASE)
_CALLID_RE = re.compile(
    r"[A-Za-z0-9\-.!%*_+`'~()<>:\\\"/\[\]?{}]+(?:@[A-Za-z0-9\-.!%*_+`'~()<>:\\\"/\[\]?{}]+)?"
)
_DATE_RE = re.compile(
    r"(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{2} (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)"
    r" \d{4} \d{2}:\d{2}:\d{2} GMT"
)
_MEDIA_TYPE_RE = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+[ \t]*/[ \t]*[A-Za-z0-9\-.!%*_+`'~]+")
_MAX_INT32 = 2**31 - 1
_MAX_UINT32 = 2**32 - 1
_SINGLE = ("From", "To", "Call-ID", "CSeq", "Max-Forwards", "Content-Type", "Expires")
_REQUIRED = ("Via", "From", "To", "Call-ID", "CSeq")

REASONS = {
    100: "Trying", 180: "Ringing", 181: "Call Is Being Forwarded", 182: "Queued",
    183: "Session Progress", 199: "Early Dialog Terminated", 200: "OK", 202: "Accepted",
    204: "No Notification", 300: "Multiple Choices", 301: "Moved Permanently",
    302: "Moved Temporarily", 305: "Use Proxy", 380: "Alternative Service",
    400: "Bad Request", 401: "Unauthorized", 402: "Payment Required", 403: "Forbidden",
    404: "Not Found", 405: "Method Not Allowed", 406: "Not Acceptable",
    407: "Proxy Authentication Required", 408: "Request Timeout", 410: "Gone",
    412: "Conditional Request Failed", 413: "Request Entity Too Large",
    414: "Request-URI Too Long", 415: "Unsupported Media Type",
    416: "Unsupported URI Scheme", 417: "Unknown Resource-Priority", 420: "Bad Extension",
    421: "Extension Required", 422: "Session Interval Too Small", 423: "Interval Too Brief",
    428: "Use Identity Header", 429: "Provide Referrer Identity", 433: "Anonymity Disallowed",
    439: "First Hop Lacks Outbound Support", 470: "Consent Needed",
    480: "Temporarily Unavailable", 481: "Call/Transaction Does Not Exist",
    482: "Loop Detected", 483: "Too Many Hops", 484: "Address Incomplete", 485: "Ambiguous",
    486: "Busy Here", 487: "Request Terminated", 488: "Not Acceptable Here",
    489: "Bad Event", 491: "Request Pending", 493: "Undecipherable",
    494: "Security Agreement Required", 500: "Server Internal Error", 501: "Not Implemented",
    502: "Bad Gateway", 503: "Service Unavailable", 504: "Server Time-out",
    505: "Version Not Supported", 513: "Message Too Large", 580: "Precondition Failure",
    600: "Busy Everywhere", 603: "Decline", 604: "Does Not Exist Anywhere",
    606: "Not Acceptable", 607: "Unwanted",
}  # fmt: skip


def reason_phrase(status: int) -> str:
    """Default reason phrase of RFC 3261 21 (and later RFCs); class name otherwise."""
    if status in REASONS:
        return REASONS[status]
    return {1: "Progress", 2: "OK", 3: "Redirection", 4: "Client Error", 5: "Server Error"}.get(
        status // 100, "Global Failure"
    )


class _Fields:
    """Typed accessors shared by Request and Response (parse on first use, cached)."""

    headers: Headers

    def _one(self, name: str) -> str:
        value = self.headers.get(name)
        if value is None:
            raise SipParseError(f"missing {name}")
        return value

    @cached_property
    def call_id(self) -> str:
        value = self._one("Call-ID")
        if not _CALLID_RE.fullmatch(value):
            raise SipParseError(f"bad Call-ID {value!r}")
        return value

    @cached_property
    def cseq(self) -> tuple[int, str]:
        value = self._one("CSeq")
        parts = value.split()
        if len(parts) != 2 or not parts[0].isascii() or not parts[0].isdigit():
            raise SipParseError(f"bad CSeq {value!r}")
        number = int(parts[0])
        if number > _MAX_INT32 or not is_token(parts[1]):
            raise SipParseError(f"bad CSeq {value!r}")
        return number, parts[1]

    @cached_property
    def from_addr(self) -> Address:
        return _single_address(self._one("From"))

    @cached_property
    def to_addr(self) -> Address:
        return _single_address(self._one("To"))

    @cached_property
    def vias(self) -> tuple[Via, ...]:
        out: list[Via] = []
        for value in self.headers.raw("Via"):
            out.extend(parse_via_list(value))
        if not out:
            raise SipParseError("missing Via")
        return tuple(out)

    @property
    def top_via(self) -> Via:
        return self.vias[0]

    @property
    def branch(self) -> str | None:
        return self.top_via.branch

    @cached_property
    def contacts(self) -> tuple[Address, ...]:
        out: list[Address] = []
        for value in self.headers.raw("Contact"):
            out.extend(parse_address_list(value))
        if len(out) > 1 and any(a.wildcard for a in out):
            raise SipParseError("Contact: * mixed with other contacts")
        return tuple(out)

    def addresses(self, name: str) -> tuple[Address, ...]:
        """Every address of a list header (Route, Record-Route, Path ...)."""
        out: list[Address] = []
        for value in self.headers.raw(name):
            out.extend(parse_address_list(value))
        return tuple(out)

    @cached_property
    def expires(self) -> int | None:
        value = self.headers.get("Expires")
        return None if value is None else _uint32(value, "Expires")


def _single_address(value: str) -> Address:
    addr = parse_address(value)
    if addr.wildcard:
        raise SipParseError("'*' is not an address here")
    return addr


def _uint32(value: str, what: str) -> int:
    if not value.isascii() or not value.isdigit() or int(value) > _MAX_UINT32:
        raise SipParseError(f"bad {what} {value!r}")
    return int(value)


def _encode(text: str) -> bytes:
    return text.encode(_ENC, _ERRORS)


def _serialize(start_line: str, headers: Headers, body: bytes) -> bytes:
    lines = [start_line]
    wrote_length = False
    for name, value in headers:
        if name == "Content-Length":
            if wrote_length:
                continue
            wrote_length = True
            lines.append(f"{name}: {len(body)}")
            continue
        lines.append(f"{name}: {value}")
    if not wrote_length:
        lines.append(f"Content-Length: {len(body)}")
    lines += ["", ""]
    return _encode("\r\n".join(lines)) + body


@dataclass(frozen=True)
class Request(_Fields):
    method: str
    uri: URI
    headers: Headers
    body: bytes = b""
    version: str = "SIP/2.0"

    @cached_property
    def max_forwards(self) -> int | None:
        value = self.headers.get("Max-Forwards")
        if value is None:
            return None
        if not value.isascii() or not value.isdigit() or int(value) > 255:
            raise SipParseError(f"bad Max-Forwards {value!r}")
        return int(value)

    def to_bytes(self) -> bytes:
        return _serialize(f"{self.method} {self.uri} {self.version}", self.headers, self.body)


@dataclass(frozen=True)
class Response(_Fields):
    status: int
    reason: str
    headers: Headers
    body: bytes = b""
    version: str = "SIP/2.0"

    def to_bytes(self) -> bytes:
        return _serialize(f"{self.version} {self.status} {self.reason}", self.headers, self.body)


Message = Request | Response


def _check_version(text: str) -> str:
    m = _VERSION_RE.fullmatch(text)
    if not m:
        raise SipParseError(f"bad SIP version {text!r}")
    if (int(m.group(1)), int(m.group(2))) != (2, 0):
        raise SipError(505, "Version Not Supported", text)
    return "SIP/2.0"


def _split_head(data: bytes) -> tuple[list[str], bytes]:
    """Header lines (folding undone) and the octets after the empty line."""
    data = data.lstrip(b"\r\n")  # RFC 3261 7.5: ignore CRLFs before the start line
    m = re.search(rb"\r?\n\r?\n", data)
    if not m:
        raise SipParseError("no empty line after the header fields")
    head = data[: m.start()].decode(_ENC, _ERRORS)
    lines: list[str] = []
    for line in re.split(r"\r?\n", head):
        if line[:1] in (" ", "\t"):
            if len(lines) < 2:
                raise SipParseError("continuation line without a header field")
            lines[-1] = lines[-1].rstrip(" \t") + " " + line.strip(" \t")
        else:
            lines.append(line)
    return lines, data[m.end() :]


def _parse_fields(lines: list[str]) -> tuple[tuple[str, str], ...]:
    fields: list[tuple[str, str]] = []
    for line in lines:
        name, colon, value = line.partition(":")
        name = name.rstrip(" \t")
        if not colon or not is_token(name):
            raise SipParseError(f"bad header line {line[:80]!r}")
        if "\r" in value or "\n" in value:
            raise SipParseError(f"control character in {name}")
        fields.append((canonical_name(name), value.strip(" \t")))
    return tuple(fields)


def content_length(fields: Iterable[tuple[str, str]]) -> int | None:
    """The single Content-Length value; 400 when repeated, negative or not a number."""
    values = [v for n, v in fields if n == "Content-Length"]
    if not values:
        return None
    if len(values) > 1 or "," in values[0]:
        raise SipParseError("more than one Content-Length")
    value = values[0]
    if not value.isascii() or not value.isdigit() or len(value) > 10:
        raise SipParseError(f"bad Content-Length {value!r}")
    return int(value)


def _start(line: str) -> Request | Response:
    """Message skeleton from the start line (headers filled in by the caller)."""
    if line.startswith("SIP/") or line[:4].upper() == "SIP/":
        version, _, rest = line.partition(" ")
        code, _, reason = rest.partition(" ")
        _check_version(version)
        if len(code) != 3 or not code.isascii() or not code.isdigit():
            raise SipParseError(f"bad status code {code[:20]!r}")
        status = int(code)
        if not 100 <= status <= 699:
            raise SipParseError(f"status code out of range {status}")
        if any(ord(c) < 32 and c != "\t" for c in reason):
            raise SipParseError("control character in reason phrase")
        return Response(status, reason, Headers())
    parts = line.split(" ")
    if len(parts) != 3:
        raise SipParseError(f"bad request line {line[:80]!r}")
    method, uri_text, version = parts
    _check_version(version)
    if not is_token(method):
        raise SipParseError(f"bad method {method[:40]!r}")
    uri = parse_uri(uri_text)
    if uri.headers:
        raise SipParseError("Request-URI with headers")  # RFC 3261 19.1.1 table
    return Request(method, uri, Headers())


def _validate(msg: Request | Response) -> None:
    """Check the header fields that everything else relies on (raises SipParseError)."""
    h = msg.headers
    for name in _REQUIRED:
        if not h.has(name):
            raise SipParseError(f"missing {name}")
    for name in _SINGLE:
        if len(h.raw(name)) > 1:
            raise SipParseError(f"more than one {name}")
    _ = msg.vias, msg.call_id, msg.from_addr, msg.to_addr, msg.contacts, msg.expires
    _number, method = msg.cseq
    if isinstance(msg, Request):
        _ = msg.max_forwards
        if method != msg.method:
            raise SipParseError(f"CSeq method {method} does not match {msg.method}")
    for name in ("Route", "Record-Route"):
        msg.addresses(name)
    for contact in msg.contacts:
        value = contact.param("expires")
        if value is not None:
            _uint32(value, "Contact expires")
    date = h.get("Date")
    if date is not None and not _DATE_RE.fullmatch(date):
        raise SipParseError(f"bad Date {date!r}")
    ctype = h.get("Content-Type")
    if ctype is not None and not _MEDIA_TYPE_RE.match(ctype):
        raise SipParseError(f"bad Content-Type {ctype!r}")


def _build(start: Request | Response, fields: tuple[tuple[str, str], ...], body: bytes) -> Message:
    headers = Headers(tuple(f for f in fields if f[0] != "Content-Length"))
    msg: Message
    if isinstance(start, Request):
        msg = Request(start.method, start.uri, headers, body)
    else:
        msg = Response(start.status, start.reason, headers, body)
    _validate(msg)
    return msg


def parse_message(data: bytes) -> Message:
    """Parse one UDP datagram (RFC 3261 18.3 framing); raise SipError on bad input."""
    lines, rest = _split_head(data)
    start = _start(lines[0])
    fields = _parse_fields(lines[1:])
    length = content_length(fields)
    if length is None:
        body = rest
    elif length > len(rest):
        raise SipParseError(f"Content-Length {length} exceeds the {len(rest)} octets present")
    else:
        body = rest[:length]
    return _build(start, fields, body)


class StreamFramingError(SipParseError):
    """The byte stream can not be framed any more: close the connection.

    ``messages`` holds the messages framed before the failure (deliver them first) and
    ``unframed`` the octets that failed, so an error answer copies *their* headers.
    """

    messages: list[Message]
    unframed: bytes


class StreamParser:
    """Frame SIP messages out of a TCP/TLS byte stream (Content-Length mandatory).

    ``feed`` returns the complete messages. A message that is framed but malformed is
    consumed and raises SipParseError; the messages parsed before it in that call are
    kept and returned by the next ``feed`` (``feed(b"")`` drains them). A framing error
    (no or bad Content-Length, message larger than ``max_message_size``) raises
    StreamFramingError, after which the connection should be closed. CRLF keep-alives
    (RFC 5626 3.5.1) between messages are skipped and counted in ``keepalives``.
    """

    def __init__(self, max_message_size: int = 65535) -> None:
        self.max_message_size = max_message_size
        self._buf = bytearray()
        self._ready: list[Message] = []
        self._broken = False
        self.keepalives = 0

    def feed(self, data: bytes) -> list[Message]:
        if self._broken:
            raise StreamFramingError("stream already failed")
        self._buf += data
        # Bounded: every iteration consumes octets or returns.
        while True:
            stripped = self._buf.lstrip(b"\r\n")
            if len(stripped) != len(self._buf):
                self.keepalives += (len(self._buf) - len(stripped)) // 4
                self._buf = bytearray(stripped)
            m = re.search(rb"\r?\n\r?\n", self._buf)
            if m is None:
                if len(self._buf) > self.max_message_size:
                    self._fail("header section too large", 513)
                break
            try:
                lines, _ = _split_head(bytes(self._buf[: m.end()]))
                length = content_length(_parse_fields(lines[1:]))
            except SipError as exc:
                self._fail(f"unframeable message: {exc.detail}", 400)
            if length is None:
                self._fail("Content-Length missing on a stream", 400)
            total = m.end() + length
            if total > self.max_message_size:
                self._fail(f"message of {total} octets too large", 513)
            if len(self._buf) < total:
                break
            raw = bytes(self._buf[:total])
            del self._buf[:total]
            self._ready.append(parse_message(raw))
        out, self._ready = self._ready, []
        return out

    def _fail(self, detail: str, status: int) -> NoReturn:
        self._broken = True
        reason = "Message Too Large" if status == 513 else "Bad Request"
        error = StreamFramingError(detail, status=status, reason=reason)
        error.messages, self._ready = self._ready, []
        error.unframed = bytes(self._buf)
        self._buf.clear()
        raise error


_COPIED = ("Via", "From", "To", "Call-ID", "CSeq")
_DIALOG_METHODS = frozenset({"INVITE", "SUBSCRIBE", "REFER", "NOTIFY"})


def make_response(
    request: Request,
    status: int,
    reason: str | None = None,
    *,
    to_tag: str | None = None,
    headers: Iterable[tuple[str, str]] = (),
    body: bytes = b"",
) -> Response:
    """A response per RFC 3261 8.2.6: Via(s), From, To, Call-ID, CSeq copied.

    The To tag is added when the request's To has none and status > 100: ``to_tag``
    if given, else a random one. 100 Trying copies Timestamp (8.2.6.1); responses
    101-299 to dialog-creating requests copy Record-Route (12.1.1).
    """
    if not 100 <= status <= 699:
        raise ValueError(f"status {status} out of range")
    fields: list[tuple[str, str]] = []
    copied = list(_COPIED)
    if status == 100:
        copied.append("Timestamp")
    if 101 <= status <= 299 and request.method in _DIALOG_METHODS:
        copied.append("Record-Route")
    for name, value in request.headers:
        if name in copied:
            if name == "To" and status > 100 and request.to_addr.tag is None:
                tag = to_tag if to_tag is not None else secrets.token_hex(8)
                fields.append((name, str(request.to_addr.with_param("tag", tag))))
                continue
            fields.append((name, value))
    fields.extend((canonical_name(n), v) for n, v in headers)
    return Response(
        status,
        reason if reason is not None else reason_phrase(status),
        Headers(tuple(fields)),
        body,
    )


def error_response(data: bytes, error: SipError) -> Response | None:
    """Best-effort stateless answer to a request that failed to parse.

    Copies Via, From, To, Call-ID and CSeq as written; None when the octets are a
    response, or lack what a response needs (then the request is just dropped).
    """
    try:
        lines, _ = _split_head(data)
        if lines[0][:4].upper() == "SIP/":
            return None
        fields: list[tuple[str, str]] = []
        for line in lines[1:]:
            name, colon, value = line.partition(":")
            name = canonical_name(name.strip(" \t"))
            if colon and name in _COPIED:
                fields.append((name, value.strip(" \t")))
        names = {n for n, _ in fields}
        if not names.issuperset(_COPIED):
            return None
        vias = parse_via_list(next(v for n, v in fields if n == "Via"))
    except SipError:
        return None
    if not vias:
        return None
    reason = error.reason or reason_phrase(error.status)
    return Response(error.status, reason, Headers(tuple(fields)))
