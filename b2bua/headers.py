"""SIP header fields: the ordered field list and parsers for the values we interpret.

Grammar references are RFC 3261 section 25.1 (name-addr, addr-spec, via-parm,
generic-param) and RFC 5118 for IPv6 forms. Values are kept as written (parameters
keep their quotes and case) so a parse/serialize round trip is exact; lookups by
parameter or header name are case-insensitive.
"""

from __future__ import annotations

import dataclasses
import functools
import ipaddress
import re
from collections.abc import Iterator
from dataclasses import dataclass

from b2bua.errors import SipParseError
from b2bua.uri import URI, Params, check_host, parse_uri, split_hostport

_TOKEN_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~")
TOKEN_RE = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+")
_WS = " \t"
# gen-value = token / host / quoted-string; host adds '[' ']' ':' for IPv6 references.
_GENVALUE_CHARS = _TOKEN_CHARS | frozenset("[]:")

_COMPACT = {
    "i": "Call-ID",
    "m": "Contact",
    "f": "From",
    "t": "To",
    "v": "Via",
    "l": "Content-Length",
    "c": "Content-Type",
    "k": "Supported",
    "s": "Subject",
    "e": "Content-Encoding",
    "o": "Event",
    "r": "Refer-To",
    "u": "Allow-Events",
    "x": "Session-Expires",
    "y": "Identity",
    "a": "Accept-Contact",
    "b": "Referred-By",
    "d": "Request-Disposition",
    "j": "Reject-Contact",
    "n": "Identity-Info",
}
# Names whose conventional spelling is not plain Title-Case of the hyphenated words.
_SPECIAL = {
    name.lower(): name
    for name in (
        "Call-ID",
        "CSeq",
        "WWW-Authenticate",
        "MIME-Version",
        "RAck",
        "RSeq",
        "SIP-ETag",
        "SIP-If-Match",
        "P-Asserted-Identity",
        "P-Preferred-Identity",
        "Min-SE",  # RFC 4028 spells it so; some peers (SIPp) match names exactly
        "Identity-Info",
    )
}
# Headers whose grammar is a comma-separated list (RFC 3261 7.3.1 allows splitting).
LIST_HEADERS = frozenset(
    {
        "Via",
        "Contact",
        "Route",
        "Record-Route",
        "Path",
        "Service-Route",
        "Allow",
        "Supported",
        "Require",
        "Proxy-Require",
        "Unsupported",
        "Accept",
        "Accept-Encoding",
        "Accept-Language",
        "Content-Encoding",
        "Content-Language",
        "Allow-Events",
        "Alert-Info",
        "Call-Info",
        "Error-Info",
        "In-Reply-To",
        "Warning",
        "P-Asserted-Identity",
        "P-Preferred-Identity",
        "Min-SE",  # RFC 4028 spells it so; some peers (SIPp) match names exactly
        "Accept-Contact",
        "Reject-Contact",
        "Reason",
        "History-Info",
        "Diversion",
    }
)


@functools.lru_cache(maxsize=1024)  # bounded: names come from the network
def canonical_name(name: str) -> str:
    """Canonical spelling of a header name: compact forms expanded, case normalised."""
    low = name.lower()
    if low in _COMPACT:
        return _COMPACT[low]
    if low in _SPECIAL:
        return _SPECIAL[low]
    return "-".join(part.capitalize() for part in low.split("-"))


def is_token(text: str) -> bool:
    return bool(TOKEN_RE.fullmatch(text))


def _read_quoted(text: str, pos: int) -> int:
    """Index just past the quoted-string starting at text[pos] == '"'."""
    i = pos + 1
    n = len(text)
    while i < n:
        ch = text[i]
        if ch == "\\":
            if i + 1 >= n:
                break
            i += 2
            continue
        if ch == '"':
            return i + 1
        if ch in "\r\n":
            break
        i += 1
    raise SipParseError(f"unterminated quoted string in {text!r}")


def unquote(quoted: str) -> str:
    """Content of a quoted-string (with its quotes) with quoted-pairs resolved."""
    out: list[str] = []
    i = 1
    while i < len(quoted) - 1:
        if quoted[i] == "\\":
            i += 1
        out.append(quoted[i])
        i += 1
    return "".join(out)


def quote(text: str) -> str:
    """A quoted-string: '"' and '\\' and controls as quoted-pairs; CR/LF (never legal,
    even quoted) become spaces so a value can not inject header lines."""
    out = ['"']
    for ch in text:
        if ch in "\r\n":
            out.append(" ")
        elif ch in '"\\' or (ord(ch) < 32 and ch != "\t") or ch == "\x7f":
            out += ["\\", ch]
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def split_commas(text: str) -> list[str]:
    """Split a header value at commas outside quoted strings and <...>; strip items."""
    items: list[str] = []
    start = 0
    i = 0
    n = len(text)
    while i < n:
        ch = text[i]
        if ch == '"':
            i = _read_quoted(text, i)
            continue
        if ch == "<":
            end = text.find(">", i)
            if end < 0:
                raise SipParseError(f"unterminated <...> in {text!r}")
            i = end + 1
            continue
        if ch == ",":
            items.append(text[start:i].strip(_WS))
            start = i + 1
        i += 1
    items.append(text[start:].strip(_WS))
    return items


def _skip_ws(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in _WS:
        pos += 1
    return pos


def parse_params(text: str) -> Params:
    """``*( SEMI generic-param )``; values keep quotes as written. Raises on junk."""
    out: list[tuple[str, str | None]] = []
    pos = _skip_ws(text, 0)
    n = len(text)
    while pos < n:
        if text[pos] != ";":
            raise SipParseError(f"expected ';' in parameters {text!r}")
        pos = _skip_ws(text, pos + 1)
        start = pos
        while pos < n and text[pos] in _TOKEN_CHARS:
            pos += 1
        name = text[start:pos]
        if not name:
            raise SipParseError(f"empty parameter name in {text!r}")
        pos = _skip_ws(text, pos)
        value: str | None = None
        if pos < n and text[pos] == "=":
            pos = _skip_ws(text, pos + 1)
            if pos < n and text[pos] == '"':
                end = _read_quoted(text, pos)
                value = text[pos:end]
                pos = end
            else:
                start = pos
                while pos < n and text[pos] in _GENVALUE_CHARS:
                    pos += 1
                value = text[start:pos]
                if not value:
                    raise SipParseError(f"empty parameter value in {text!r}")
            pos = _skip_ws(text, pos)
        out.append((name, value))
    return tuple(out)


def _param(params: Params, name: str) -> str | None:
    low = name.lower()
    for key, value in params:
        if key.lower() == low:
            return value
    return None


def _has_param(params: Params, name: str) -> bool:
    low = name.lower()
    return any(key.lower() == low for key, _ in params)


def _set_param(params: Params, name: str, value: str | None) -> Params:
    low = name.lower()
    out = list(params)
    for i, (key, _) in enumerate(out):
        if key.lower() == low:
            out[i] = (key, value)
            return tuple(out)
    out.append((name, value))
    return tuple(out)


def _params_str(params: Params) -> str:
    return "".join(f";{k}" if v is None else f";{k}={v}" for k, v in params)


@dataclass(frozen=True)
class Address:
    """A name-addr / addr-spec with header parameters (From, To, Contact, Route ...)."""

    uri: URI
    display_name: str | None = None
    params: Params = ()
    wildcard: bool = False

    @property
    def tag(self) -> str | None:
        return _param(self.params, "tag")

    def param(self, name: str) -> str | None:
        return _param(self.params, name)

    def has_param(self, name: str) -> bool:
        return _has_param(self.params, name)

    def with_param(self, name: str, value: str | None) -> Address:
        return dataclasses.replace(self, params=_set_param(self.params, name, value))

    def without_param(self, name: str) -> Address:
        low = name.lower()
        return dataclasses.replace(
            self, params=tuple(p for p in self.params if p[0].lower() != low)
        )

    def __str__(self) -> str:
        if self.wildcard:
            return "*" + _params_str(self.params)
        name = "" if self.display_name is None else quote(self.display_name) + " "
        return f"{name}<{self.uri}>{_params_str(self.params)}"


def parse_address(text: str) -> Address:
    """Parse one name-addr or addr-spec with parameters (or Contact's ``*``)."""
    text = text.strip(_WS)
    if not text:
        raise SipParseError("empty address")
    if text[0] == "*":
        return Address(uri=URI(scheme=""), params=parse_params(text[1:]), wildcard=True)
    display: str | None = None
    pos = 0
    if text[0] == '"':
        end = _read_quoted(text, 0)
        display = unquote(text[:end])
        pos = _skip_ws(text, end)
        if pos >= len(text) or text[pos] != "<":
            raise SipParseError(f"display name without <uri> in {text!r}")
    else:
        lt = text.find("<")
        if lt >= 0:
            words = text[:lt].split()
            if not all(is_token(w) for w in words):
                raise SipParseError(f"bad display name in {text!r}")
            display = " ".join(words) if words else None
            pos = lt
    if pos < len(text) and text[pos] == "<":
        gt = text.find(">", pos)
        if gt < 0:
            raise SipParseError(f"unterminated <...> in {text!r}")
        uri = parse_uri(text[pos + 1 : gt])
        rest = text[gt + 1 :]
    else:
        # addr-spec form: the URI ends at the first ';' and may hold no '?' or ','.
        uri_text, semi, tail = text.partition(";")
        uri_text = uri_text.rstrip(_WS)
        if any(c in uri_text for c in "?, \t"):
            raise SipParseError(f"addr-spec needs <> in {text!r}")
        uri = parse_uri(uri_text)
        rest = semi + tail
    return Address(uri=uri, display_name=display, params=parse_params(rest))


def parse_address_list(text: str) -> tuple[Address, ...]:
    """Comma-separated addresses (Contact, Route, Record-Route ...)."""
    items = split_commas(text)
    if any(not item for item in items):
        raise SipParseError(f"empty element in address list {text!r}")
    return tuple(parse_address(item) for item in items)


@dataclass(frozen=True)
class Via:
    """One via-parm. ``protocol`` is the sent-protocol name/version ("SIP/2.0")."""

    transport: str
    host: str
    port: int | None = None
    params: Params = ()
    protocol: str = "SIP/2.0"

    @property
    def branch(self) -> str | None:
        return _param(self.params, "branch")

    @property
    def received(self) -> str | None:
        return _param(self.params, "received")

    @property
    def rport(self) -> str | None:
        """None when absent, "" when present without value, else the port text."""
        if not _has_param(self.params, "rport"):
            return None
        return _param(self.params, "rport") or ""

    @property
    def sent_by(self) -> str:
        return self.host if self.port is None else f"{self.host}:{self.port}"

    def param(self, name: str) -> str | None:
        return _param(self.params, name)

    def has_param(self, name: str) -> bool:
        return _has_param(self.params, name)

    def with_param(self, name: str, value: str | None) -> Via:
        return dataclasses.replace(self, params=_set_param(self.params, name, value))

    def __str__(self) -> str:
        return f"{self.protocol}/{self.transport} {self.sent_by}{_params_str(self.params)}"


_VIA_RE = re.compile(
    r"([A-Za-z0-9\-.!%*_+`'~]+)[ \t]*/[ \t]*([A-Za-z0-9\-.!%*_+`'~]+)[ \t]*/[ \t]*"
    r"([A-Za-z0-9\-.!%*_+`'~]+)[ \t]+(\[[0-9A-Fa-f:.]*\]|[A-Za-z0-9\-.]+)"
    r"(?:[ \t]*:[ \t]*([0-9]+))?"
)


def _check_via_params(params: Params) -> None:
    for name, value in params:
        low = name.lower()
        if low == "branch" and (value is None or not is_token(value)):
            raise SipParseError("bad Via branch")
        if low == "ttl" and (value is None or not value.isdigit() or int(value) > 255):
            raise SipParseError("bad Via ttl")
        if low == "maddr":
            if value is None:
                raise SipParseError("bad Via maddr")
            check_host(value)
        if low == "received":
            addr = value[1:-1] if value and value[0] == "[" and value[-1] == "]" else value
            try:
                ipaddress.ip_address(addr or "")
            except ValueError:
                raise SipParseError(f"bad Via received {value!r}") from None
        if low == "rport" and value is not None and (not value.isdigit() or int(value) > 65535):
            raise SipParseError("bad Via rport")


def parse_via(text: str) -> Via:
    text = text.strip(_WS)
    m = _VIA_RE.match(text)
    if not m:
        raise SipParseError(f"bad Via {text!r}")
    name, version, transport, host, port_text = m.groups()
    host, port = split_hostport(host if port_text is None else f"{host}:{port_text}")
    params = parse_params(text[m.end() :])
    _check_via_params(params)
    return Via(
        transport=transport.upper(),
        host=host,
        port=port,
        params=params,
        protocol=f"{name.upper()}/{version}",
    )


def parse_via_list(text: str) -> tuple[Via, ...]:
    items = split_commas(text)
    if any(not item for item in items):
        raise SipParseError(f"empty element in Via {text!r}")
    return tuple(parse_via(item) for item in items)


@dataclass(frozen=True)
class Headers:
    """Ordered header fields as (canonical name, unfolded value)."""

    fields: tuple[tuple[str, str], ...] = ()

    @classmethod
    def of(cls, *pairs: tuple[str, str]) -> Headers:
        return cls(tuple((canonical_name(n), v) for n, v in pairs))

    def get(self, name: str) -> str | None:
        """First value (first list element for list headers); None if absent."""
        values = self.get_all(name)
        if values:
            return values[0]
        return "" if self.has(name) else None

    def has(self, name: str) -> bool:
        cname = canonical_name(name)
        return any(n == cname for n, _ in self.fields)

    def raw(self, name: str) -> tuple[str, ...]:
        """Every field value of that name as written (no comma splitting)."""
        cname = canonical_name(name)
        return tuple(v for n, v in self.fields if n == cname)

    def get_all(self, name: str) -> tuple[str, ...]:
        """Every value; list headers are split at top-level commas (empties dropped)."""
        cname = canonical_name(name)
        values = self.raw(cname)
        if cname not in LIST_HEADERS:
            return values
        out: list[str] = []
        for value in values:
            try:
                out.extend(item for item in split_commas(value) if item)
            except SipParseError:
                out.append(value)
        return tuple(out)

    def add(self, name: str, value: str) -> Headers:
        return Headers((*self.fields, (canonical_name(name), value)))

    def prepend(self, name: str, value: str) -> Headers:
        cname = canonical_name(name)
        for i, (n, _) in enumerate(self.fields):
            if n == cname:
                return Headers((*self.fields[:i], (cname, value), *self.fields[i:]))
        return Headers(((cname, value), *self.fields))

    def set(self, name: str, value: str) -> Headers:
        cname = canonical_name(name)
        out: list[tuple[str, str]] = []
        placed = False
        for n, v in self.fields:
            if n == cname:
                if not placed:
                    out.append((cname, value))
                    placed = True
            else:
                out.append((n, v))
        if not placed:
            out.append((cname, value))
        return Headers(tuple(out))

    def remove(self, name: str) -> Headers:
        cname = canonical_name(name)
        return Headers(tuple((n, v) for n, v in self.fields if n != cname))

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self.fields)

    def __len__(self) -> int:
        return len(self.fields)
