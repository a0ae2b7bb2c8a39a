"""HTTP Digest authentication for SIP (RFC 7616 via RFC 8760; RFC 2617; RFC 2069).

Works on header *values* only, so it stands apart from the message model.

Server side: `NonceFactory` issues stateless nonces (issue time, salt and an HMAC that
binds them to the client's IP address), `challenge_headers` builds one
WWW-Authenticate/Proxy-Authenticate value per algorithm (SHA-256 first, qop="auth"), and
`verify` checks an Authorization/Proxy-Authorization value. Client side:
`answer_challenge` answers a 401/407 challenge.

Deliberate choices:
- Clients that answer without qop (RFC 2069 style, as pyVoIP does) are accepted: the
  nonce is short-lived and bound to the client's address, which bounds replays.
- The digest `uri` is taken from the header and not compared with the Request-URI.
  pyVoIP signs "sip:<server>;transport=UDP", which is not its Request-URI, and proxies
  may rewrite the Request-URI on the way; the response is still bound to the method,
  our nonce (hence the client's IP and a short lifetime) and the password, which is
  what authenticates the request.
- An unknown user gets the same work (a hash with a dummy password) and the same
  answer as a wrong password, so neither timing nor reason reveals which extensions
  exist. Digests are compared with hmac.compare_digest.
- qop=auth responses are remembered per (nonce, nc) in a bounded LRU, so a captured
  response can not be replayed while its nonce is valid.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import hmac
import ipaddress
import re
import secrets
import struct
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from b2bua.errors import SipError

# Name -> (hashlib name, session variant). RFC 7616 section 6.1 registry (MD5 and
# SHA-256 and their -sess forms; SHA-512-256 is not used by SIP phones).
ALGORITHMS: dict[str, tuple[str, bool]] = {
    "MD5": ("md5", False),
    "MD5-SESS": ("md5", True),
    "SHA-256": ("sha256", False),
    "SHA-256-SESS": ("sha256", True),
}
MAX_HEADER_CHARS = 8192
_TOKEN_RE = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_NC_RE = re.compile(r"[0-9a-fA-F]{8}")
_NONCE_RE = re.compile(r"[A-Za-z0-9_-]{43}")
# Not a credential: a value no user can have (NUL bytes), hashed for unknown users.
_DUMMY_PASSWORD = "\0not-a-password\0"  # noqa: S105


def _bad(detail: str) -> SipError:
    return SipError(400, "Bad Request", "auth: " + detail)


def parse_auth_params(value: str) -> tuple[str, dict[str, str]]:
    """Split `Digest a=b, c="d"` into ("Digest", {"a": "b", "c": "d"}).

    Parameter names are lower-cased (they are case-insensitive); quoted strings are
    unescaped; empty list elements are skipped. SipError(400) for anything else,
    including repeated parameters.
    """
    if len(value) > MAX_HEADER_CHARS:
        raise _bad("header value too long")
    text = value.strip(" \t")
    match = _TOKEN_RE.match(text)
    if match is None:
        raise _bad("no authentication scheme")
    scheme = match.group()
    pos = match.end()
    if pos < len(text) and text[pos] not in " \t":
        raise _bad(f"bad scheme {text[:20]!r}")
    params: dict[str, str] = {}
    n = len(text)
    expect_comma = False
    while True:
        while pos < n and text[pos] in " \t":
            pos += 1
        if pos == n:
            break
        if text[pos] == ",":
            pos += 1
            expect_comma = False
            continue
        if expect_comma:
            raise _bad(f"expected ',' at offset {pos}")
        match = _TOKEN_RE.match(text, pos)
        if match is None:
            raise _bad(f"expected a parameter name at offset {pos}")
        name = match.group().lower()
        pos = match.end()
        while pos < n and text[pos] in " \t":
            pos += 1
        if pos == n or text[pos] != "=":
            raise _bad(f"parameter {name!r} has no value")
        pos += 1
        while pos < n and text[pos] in " \t":
            pos += 1
        if pos < n and text[pos] == '"':
            param, pos = _quoted(text, pos)
        else:
            match = _TOKEN_RE.match(text, pos)
            if match is None:
                raise _bad(f"parameter {name!r} has no value")
            param, pos = match.group(), match.end()
        if name in params:
            raise _bad(f"repeated parameter {name!r}")
        params[name] = param
        expect_comma = True
    return scheme, params


def _quoted(text: str, pos: int) -> tuple[str, int]:
    """Read the quoted-string that opens at text[pos]; return (value, next position)."""
    out: list[str] = []
    pos += 1
    while pos < len(text):
        char = text[pos]
        if char == '"':
            return "".join(out), pos + 1
        if char == "\\":  # quoted-pair: the next character stands for itself
            pos += 1
            if pos == len(text):
                break
            char = text[pos]
        if char in "\r\n\0":
            raise _bad("control character in quoted string")
        out.append(char)
        pos += 1
    raise _bad("unterminated quoted string")


def _quote(value: str) -> str:
    if any(c in value for c in "\r\n\0"):
        raise ValueError(f"CR, LF or NUL in a digest parameter: {value!r}")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


# --- nonces --------------------------------------------------------------------------


class NonceStatus(enum.Enum):
    VALID = "valid"
    STALE = "stale"  # ours and untampered, but older than the lifetime
    INVALID = "invalid"  # not ours, tampered, or issued to another address


class NonceFactory:
    """Stateless nonces: base64url(issue time in ms | 8-byte salt | HMAC-SHA256[:16]).

    The HMAC covers time, salt and the client's IP address, so a nonce is only valid
    from the address it was issued to. Only the replay memory is state.
    """

    _PACK = struct.Struct(">q8s")

    def __init__(self, secret: bytes, lifetime_s: float, *, replay_memory: int = 4096) -> None:
        if len(secret) < 16:
            raise ValueError("nonce secret must have at least 16 bytes")
        if lifetime_s <= 0:
            raise ValueError("nonce lifetime must be positive")
        self._secret = secret
        self.lifetime_s = lifetime_s
        self._seen: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._memory = replay_memory

    def _mac(self, head: bytes, client_ip: str) -> bytes:
        try:  # one spelling per address: "::1" and "0::1" are the same client
            ip = ipaddress.ip_address(client_ip).compressed
        except ValueError:
            ip = client_ip
        message = b"b2bua-nonce\0" + head + ip.encode("utf-8", "replace")
        return hmac.new(self._secret, message, hashlib.sha256).digest()[:16]

    def make(self, client_ip: str, now: float) -> str:
        head = self._PACK.pack(round(now * 1000), secrets.token_bytes(8))
        raw = head + self._mac(head, client_ip)
        return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")

    def check(self, nonce: str, client_ip: str, now: float) -> NonceStatus:
        if not _NONCE_RE.fullmatch(nonce):
            return NonceStatus.INVALID
        raw = base64.urlsafe_b64decode(nonce + "=")
        head, mac = raw[: self._PACK.size], raw[self._PACK.size :]
        if not hmac.compare_digest(mac, self._mac(head, client_ip)):
            return NonceStatus.INVALID
        issued_ms, _ = self._PACK.unpack(head)
        age = now - issued_ms / 1000
        if age < -1.0:  # from the future: another clock or a restart; not ours to honour
            return NonceStatus.INVALID
        return NonceStatus.STALE if age > self.lifetime_s else NonceStatus.VALID

    def first_use(self, nonce: str, nc: str) -> bool:
        """Record (nonce, nc); False when that pair was seen before (a replay)."""
        key = (nonce, nc.lower())
        if key in self._seen:
            self._seen.move_to_end(key)
            return False
        self._seen[key] = None
        while len(self._seen) > self._memory:
            self._seen.popitem(last=False)
        return True


# --- server side ---------------------------------------------------------------------


def challenge_headers(
    realm: str,
    nonce: str,
    *,
    algorithms: Sequence[str] = ("SHA-256", "MD5"),
    stale: bool = False,
    opaque: str | None = None,
) -> list[str]:
    """One WWW-Authenticate (or Proxy-Authenticate) value per algorithm, in the given
    order (RFC 7616 section 3.7: most preferred first). All share the nonce, so a client
    that keeps only the last header (pyVoIP) still answers a valid challenge."""
    values: list[str] = []
    for algorithm in algorithms:
        if algorithm.upper() not in ALGORITHMS:
            raise ValueError(f"unsupported digest algorithm {algorithm!r}")
        parts = [f"realm={_quote(realm)}", f"nonce={_quote(nonce)}"]
        if opaque is not None:
            parts.append(f"opaque={_quote(opaque)}")
        parts += [f"algorithm={algorithm}", 'qop="auth"']
        if stale:
            parts.append("stale=true")
        values.append("Digest " + ", ".join(parts))
    return values


@dataclass(frozen=True)
class AuthResult:
    """Outcome of `verify`. `username` is the claimed one (also when not ok)."""

    ok: bool
    username: str | None
    stale: bool
    reason: str


def _hash(algorithm: str, text: str) -> str:
    return hashlib.new(algorithm, text.encode("utf-8", "surrogatepass")).hexdigest()


def digest_response(
    *,
    algorithm: str,
    username: str,
    realm: str,
    password: str,
    method: str,
    uri: str,
    nonce: str,
    qop: str | None = None,
    nc: str = "",
    cnonce: str = "",
    body: bytes = b"",
) -> str:
    """The hex `response` of RFC 7616 section 3.4.1 (RFC 2069 form when qop is None)."""
    hash_name, session = ALGORITHMS[algorithm.upper()]
    ha1 = _hash(hash_name, f"{username}:{realm}:{password}")
    if session:
        ha1 = _hash(hash_name, f"{ha1}:{nonce}:{cnonce}")
    a2 = f"{method}:{uri}"
    if qop == "auth-int":
        a2 += ":" + hashlib.new(hash_name, body).hexdigest()
    ha2 = _hash(hash_name, a2)
    if qop is None:
        return _hash(hash_name, f"{ha1}:{nonce}:{ha2}")
    return _hash(hash_name, f"{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")


def verify(
    authorization_value: str,
    *,
    method: str,
    realm: str,
    password_for: Callable[[str], str | None],
    nonces: NonceFactory,
    client_ip: str,
    now: float,
    body: bytes = b"",
) -> AuthResult:
    """Check one Authorization/Proxy-Authorization value.

    Unparseable values raise SipError(400); every other failure is an AuthResult with
    ok=False (answer with a fresh challenge, with stale=true when `stale` is set).
    """
    scheme, p = parse_auth_params(authorization_value)
    username = p.get("username")

    def fail(reason: str, stale: bool = False) -> AuthResult:
        return AuthResult(False, username, stale, reason)

    if scheme.lower() != "digest":
        return fail(f"scheme {scheme!r} is not Digest")
    missing = [k for k in ("username", "realm", "nonce", "uri", "response") if k not in p]
    if missing or username is None:
        return fail("missing " + ", ".join(missing))
    if p["realm"] != realm:
        return fail("wrong realm")
    algorithm = p.get("algorithm", "MD5").upper()
    if algorithm not in ALGORITHMS:
        return fail(f"unsupported algorithm {algorithm!r}")
    qop = p.get("qop")
    nc, cnonce = p.get("nc", ""), p.get("cnonce", "")
    if qop is not None:
        if qop not in ("auth", "auth-int"):
            return fail(f"unsupported qop {qop!r}")
        if not _NC_RE.fullmatch(nc) or not cnonce:
            return fail("qop needs an 8-hex-digit nc and a cnonce")
    elif ALGORITHMS[algorithm][1] and not cnonce:
        return fail("-sess algorithm needs a cnonce")
    status = nonces.check(p["nonce"], client_ip, now)
    if status is NonceStatus.INVALID:
        return fail("nonce not issued by us to this address")
    password = password_for(username)
    expected = digest_response(
        algorithm=algorithm,
        username=username,
        realm=realm,
        # Same work for an unknown user; the dummy can not match (NUL is not typeable).
        password=_DUMMY_PASSWORD if password is None else password,
        method=method,
        uri=p["uri"],
        nonce=p["nonce"],
        qop=qop,
        nc=nc,
        cnonce=cnonce,
        body=body,
    )
    matches = hmac.compare_digest(
        expected.encode(), p["response"].lower().encode("utf-8", "surrogatepass")
    )
    if password is None or not matches:
        return fail("wrong credentials")
    if status is NonceStatus.STALE:
        return fail("stale nonce", stale=True)
    if qop is not None and not nonces.first_use(p["nonce"], nc):
        return fail("replayed nonce count")
    return AuthResult(True, username, False, "ok")


# --- client side ---------------------------------------------------------------------


def pick_challenge(values: Sequence[str]) -> str | None:
    """The first Digest challenge whose algorithm we support (the server's preference)."""
    for value in values:
        try:
            scheme, params = parse_auth_params(value)
        except SipError:
            continue
        if scheme.lower() == "digest" and params.get("algorithm", "MD5").upper() in ALGORITHMS:
            return value
    return None


def answer_challenge(
    challenge_value: str,
    *,
    method: str,
    uri: str,
    username: str,
    password: str,
    cnonce: str,
    nc: int = 1,
    body: bytes = b"",
) -> str:
    """The Authorization/Proxy-Authorization value answering one Digest challenge.

    Uses qop=auth when offered (else auth-int, else the RFC 2069 form). SipError(400)
    when the challenge is not a usable Digest challenge.
    """
    scheme, p = parse_auth_params(challenge_value)
    if scheme.lower() != "digest" or "realm" not in p or "nonce" not in p:
        raise _bad("not a Digest challenge with realm and nonce")
    algorithm = p.get("algorithm", "MD5")
    if algorithm.upper() not in ALGORITHMS:
        raise _bad(f"unsupported algorithm {algorithm!r}")
    offered = {q.strip() for q in p.get("qop", "").split(",")}
    qop = "auth" if "auth" in offered else "auth-int" if "auth-int" in offered else None
    nc_text = f"{nc:08x}"
    response = digest_response(
        algorithm=algorithm,
        username=username,
        realm=p["realm"],
        password=password,
        method=method,
        uri=uri,
        nonce=p["nonce"],
        qop=qop,
        nc=nc_text,
        cnonce=cnonce,
        body=body,
    )
    parts = [
        f"username={_quote(username)}",
        f"realm={_quote(p['realm'])}",
        f"nonce={_quote(p['nonce'])}",
        f"uri={_quote(uri)}",
        f"response={_quote(response)}",
        f"algorithm={algorithm}",
    ]
    if qop is not None:
        parts += [f"qop={qop}", f"nc={nc_text}", f"cnonce={_quote(cnonce)}"]
    if "opaque" in p:
        parts.append(f"opaque={_quote(p['opaque'])}")
    return "Digest " + ", ".join(parts)
