"""SIP, SIPS and other URIs (RFC 3261 section 19.1, 25.1; RFC 5118 for IPv6).

A parsed URI keeps every component as written on the wire (escapes included), so
``str(parse_uri(text)) == text`` for every well-formed input. Comparison that follows
RFC 3261 19.1.4 (escapes decoded, host case-insensitive, selected parameters) is
:func:`uri_equal`; dataclass equality stays exact-textual on purpose.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from dataclasses import dataclass

from b2bua.errors import SipParseError

Params = tuple[tuple[str, str | None], ...]

# RFC 3261 25.1 character classes.
_UNRESERVED = r"A-Za-z0-9\-_.!~*'()"
_ESCAPED = r"%[0-9A-Fa-f]{2}"
_SCHEME_RE = re.compile(r"[A-Za-z][A-Za-z0-9+\-.]*")
_USER_RE = re.compile(rf"(?:[{_UNRESERVED}&=+$,;?/]|{_ESCAPED})+")
_PASSWORD_RE = re.compile(rf"(?:[{_UNRESERVED}&=+$,]|{_ESCAPED})*")
_PARAMCHAR_RE = re.compile(rf"(?:[{_UNRESERVED}\[\]/:&+$]|{_ESCAPED})+")
_HNV_RE = re.compile(rf"(?:[{_UNRESERVED}\[\]/?:+$]|{_ESCAPED})*")
_HNAME_RE = re.compile(rf"(?:[{_UNRESERVED}\[\]/?:+$]|{_ESCAPED})+")
_HOSTNAME_RE = re.compile(
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?\.)*"
    r"[A-Za-z](?:[A-Za-z0-9\-]*[A-Za-z0-9])?\.?"
)
_IPV4_RE = re.compile(r"\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}")
# absoluteURI (RFC 2396 as used by RFC 3261): printable, no space, quote or angle bracket.
_OPAQUE_RE = re.compile(r"[!#-;=?-~]+")
_ESC_ANY_RE = re.compile(r"%([0-9A-Fa-f]{2})")

_SIP_SCHEMES = frozenset({"sip", "sips"})


def _fail(detail: str) -> SipParseError:
    return SipParseError(detail)


def check_host(host: str) -> str:
    """Validate a host (hostname, IPv4address or IPv6reference); return it unchanged."""
    if host.startswith("["):
        if not host.endswith("]"):
            raise _fail(f"bad IPv6 reference {host!r}")
        # RFC 5118 4.10: RFC 3261's ABNF admits "2001:db8:::192.0.2.1"; tolerate it.
        addr = host[1:-1].replace(":::", "::", 1)
        try:
            ipaddress.IPv6Address(addr)
        except ValueError:
            raise _fail(f"bad IPv6 reference {host!r}") from None
        return host
    if _IPV4_RE.fullmatch(host):
        if any(int(part) > 255 for part in host.split(".")):
            raise _fail(f"bad IPv4 address {host!r}")
        return host
    if not _HOSTNAME_RE.fullmatch(host):
        raise _fail(f"bad host {host!r}")
    return host


def split_hostport(text: str) -> tuple[str, int | None]:
    """Split ``host[:port]`` (IPv6 references in brackets) and validate both parts."""
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise _fail(f"unterminated IPv6 reference in {text!r}")
        host, rest = text[: end + 1], text[end + 1 :]
        if rest and not rest.startswith(":"):
            raise _fail(f"junk after IPv6 reference in {text!r}")
        port_text = rest[1:] if rest else None
    else:
        host, sep, port_text_raw = text.partition(":")
        port_text = port_text_raw if sep else None
    check_host(host)
    port: int | None = None
    if port_text is not None:
        if not port_text.isascii() or not port_text.isdigit() or len(port_text) > 5:
            raise _fail(f"bad port in {text!r}")
        port = int(port_text)
        if port > 65535:
            raise _fail(f"port out of range in {text!r}")
    return host, port


def _parse_params(text: str) -> Params:
    """``;name[=value]`` items of a SIP URI (text starts after the first ';')."""
    out: list[tuple[str, str | None]] = []
    for item in text.split(";"):
        name, sep, value = item.partition("=")
        if not _PARAMCHAR_RE.fullmatch(name):
            raise _fail(f"bad URI parameter {item!r}")
        if sep:
            if not _PARAMCHAR_RE.fullmatch(value):
                raise _fail(f"bad URI parameter value {item!r}")
            out.append((name, value))
        else:
            out.append((name, None))
    return tuple(out)


def _parse_headers(text: str) -> tuple[tuple[str, str], ...]:
    out: list[tuple[str, str]] = []
    for item in text.split("&"):
        name, sep, value = item.partition("=")
        if not sep or not _HNAME_RE.fullmatch(name) or not _HNV_RE.fullmatch(value):
            raise _fail(f"bad URI header {item!r}")
        out.append((name, value))
    return tuple(out)


@dataclass(frozen=True)
class URI:
    """A URI; sip/sips split into components, other schemes kept opaque."""

    scheme: str
    user: str | None = None
    password: str | None = None
    host: str = ""
    port: int | None = None
    params: Params = ()
    headers: tuple[tuple[str, str], ...] = ()
    opaque: str | None = None

    def param(self, name: str) -> str | None:
        """Value of a URI parameter (name case-insensitive); None if absent or valueless."""
        low = name.lower()
        for key, value in self.params:
            if key.lower() == low:
                return value
        return None

    def has_param(self, name: str) -> bool:
        low = name.lower()
        return any(key.lower() == low for key, _ in self.params)

    def with_params(self, **kv: str | None) -> URI:
        """Copy with parameters set (replaced in place, or appended); None = flag param."""
        params = list(self.params)
        for name, value in kv.items():
            low = name.lower()
            for i, (key, _) in enumerate(params):
                if key.lower() == low:
                    params[i] = (key, value)
                    break
            else:
                params.append((name, value))
        return dataclasses.replace(self, params=tuple(params))

    def without_param(self, name: str) -> URI:
        low = name.lower()
        return dataclasses.replace(
            self, params=tuple(p for p in self.params if p[0].lower() != low)
        )

    @property
    def is_sip(self) -> bool:
        return self.scheme in _SIP_SCHEMES

    @property
    def hostport(self) -> str:
        return self.host if self.port is None else f"{self.host}:{self.port}"

    def __str__(self) -> str:
        if self.opaque is not None:
            return f"{self.scheme}:{self.opaque}"
        parts = [self.scheme, ":"]
        if self.user is not None:
            parts.append(self.user)
            if self.password is not None:
                parts += [":", self.password]
            parts.append("@")
        parts.append(self.hostport)
        for name, value in self.params:
            parts += [";", name] if value is None else [";", name, "=", value]
        if self.headers:
            parts += ["?", "&".join(f"{n}={v}" for n, v in self.headers)]
        return "".join(parts)


def parse_uri(text: str) -> URI:
    """Parse a URI (no surrounding whitespace or angle brackets); raise SipParseError."""
    scheme, sep, rest = text.partition(":")
    if not sep or not _SCHEME_RE.fullmatch(scheme):
        raise _fail(f"bad URI {text!r}")
    scheme = scheme.lower()
    if scheme not in _SIP_SCHEMES:
        if not _OPAQUE_RE.fullmatch(rest):
            raise _fail(f"bad URI {text!r}")
        return URI(scheme=scheme, opaque=rest)
    user: str | None = None
    password: str | None = None
    # '@' is never legal unescaped after the userinfo, so the first one ends it.
    userinfo, at, hostpart = rest.partition("@")
    if not at:
        userinfo, hostpart = "", rest
    else:
        user, colon, pw = userinfo.partition(":")
        if not _USER_RE.fullmatch(user):
            raise _fail(f"bad user part in {text!r}")
        if colon:
            if not _PASSWORD_RE.fullmatch(pw):
                raise _fail(f"bad password in {text!r}")
            password = pw
    hostpart, qmark, header_text = hostpart.partition("?")
    hostport, semi, param_text = hostpart.partition(";")
    host, port = split_hostport(hostport)
    params = _parse_params(param_text) if semi else ()
    headers = _parse_headers(header_text) if qmark else ()
    return URI(scheme, user, password, host, port, params, headers)


def unescape(text: str) -> str:
    """Decode %HH escapes (as Latin-1 code points, so any octet survives)."""
    return _ESC_ANY_RE.sub(lambda m: chr(int(m.group(1), 16)), text)


def _host_key(host: str) -> str:
    """Host for comparison: case folded, IPv6 references in canonical text form."""
    if host.startswith("["):
        try:
            return str(ipaddress.IPv6Address(host[1:-1].replace(":::", "::", 1)))
        except ValueError:
            return host.lower()
    return host.lower()


# Parameters that make two SIP URIs differ when only one of them has it (19.1.4).
_SIGNIFICANT = ("user", "ttl", "method", "maddr", "transport")


def uri_equal(a: URI, b: URI) -> bool:
    """URI equivalence of RFC 3261 19.1.4."""
    if a.scheme != b.scheme:
        return False
    if not a.is_sip:
        return (a.opaque or "") == (b.opaque or "")
    if (a.user is None) != (b.user is None):
        return False
    if a.user is not None and b.user is not None and unescape(a.user) != unescape(b.user):
        return False
    if unescape(a.password or "") != unescape(b.password or ""):
        return False
    if _host_key(a.host) != _host_key(b.host) or a.port != b.port:
        return False
    pa = {unescape(k).lower(): unescape(v or "").lower() for k, v in a.params}
    pb = {unescape(k).lower(): unescape(v or "").lower() for k, v in b.params}
    for name in _SIGNIFICANT:
        if (name in pa) != (name in pb):
            return False
    for name in pa.keys() & pb.keys():
        if pa[name] != pb[name]:
            return False
    ha = {(unescape(k).lower(), unescape(v)) for k, v in a.headers}
    hb = {(unescape(k).lower(), unescape(v)) for k, v in b.headers}
    return ha == hb
