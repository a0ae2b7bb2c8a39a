"""Registrar for the configured extensions, and the digest gate for phones' requests.

Theory of operation: a phone REGISTERs its Contact for its address-of-record, which is
its extension number (the user part of To). `Registrar.handle_register` answers the
whole request (RFC 3261 10.3): authenticate (401 challenge, 403 on bad credentials),
check that the digest user owns the AOR (403), then apply every Contact to the AOR's
bindings all-or-nothing (per-contact `expires`, else the Expires header, else the
default; 0 removes; too short is 423 with Min-Expires; too long is shortened; `*` with
Expires: 0 removes all) and answer 200 listing every current binding with its remaining
lifetime. `Registrar.authenticate` is the same digest gate for the other requests a
phone sends us (we are its UAS, so 401 with WWW-Authenticate, never 407).

Bindings live in memory, keyed by extension. Nothing here reads the clock: expiry is a
deadline (`get_timer`) that the I/O layer arms and `handle_timer(now)` sweeps; `lookup`
also ignores what has expired by `now`, so a late sweep never routes to a dead binding.

Routing to a binding (NAT): phones behind NAT put their private address in Contact.
A binding therefore remembers the socket source address and transport of the REGISTER
that created or refreshed it. A call to the binding is sent to `Binding.source` over
`Binding.transport` (on TCP: the connection the phone opened, as long as it is open),
with the Contact URI as Request-URI, so the phone recognises the request as its own.
This is what Kamailio's fix_nated_contact/fix_nated_register and Asterisk's
`nat=force_rport,comedia` achieve; the phone's keep-alive (re-REGISTER) keeps the NAT
mapping open. A static contact from the config has no registration: its `source` is the
URI's host and port (5060, or 5061 for sips) and its transport the URI's `transport`
parameter (UDP by default).

Authentication policy (the same for REGISTER and every other request):
- No Authorization for our realm: 401 with one WWW-Authenticate per algorithm (SHA-256
  first, then MD5; all share one nonce bound to the source IP).
- A nonce that is not ours or was issued to another address (say, from before a restart,
  or after a NAT rebinding): a fresh 401. Nothing was checked, so nothing is counted.
- Right credentials with an expired nonce: 401 with stale=true.
- Anything else that fails (wrong password, unknown user, replayed nonce count, missing
  digest parameters), and a digest user that does not own the AOR: 403, and
  `on_auth_failure(source_ip, username)` is called so a ban module can count it per
  socket source address (never per header address).
- An unparseable Authorization: 400.
Unknown and known extensions get identical answers: the challenge does not depend on the
user, and `auth.verify` does the same work for an unknown user as for a wrong password.

ACK and CANCEL can not be challenged (RFC 3261 22.1) and in-dialog requests belong to
a call that was authenticated when it was set up: the core calls `authenticate` for the
requests that start something (INVITE, OPTIONS, MESSAGE, SUBSCRIBE ...) only.

No Date header in the 200: `now` may be a monotonic clock, and Date is only a SHOULD.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from b2bua.auth import NonceFactory, NonceStatus, challenge_headers, parse_auth_params, verify
from b2bua.config import ExtensionConfig
from b2bua.errors import SipError, SipParseError
from b2bua.headers import Address
from b2bua.message import Request, Response, make_response
from b2bua.uri import URI, parse_uri, unescape, uri_equal

__all__ = ["AuthOutcome", "Binding", "Registrar", "static_binding"]

Addr = tuple[str, int]
AuthFailureHook = Callable[[str, str | None], None]

_Q_RE = re.compile(r"0(?:\.[0-9]{0,3})?|1(?:\.0{0,3})?")  # RFC 3261 25.1 qvalue
_DEFAULT_Q = 1.0
_STATIC_Q = 0.0  # sorts after every registration of the same q (lookup appends it anyway)


@dataclass(frozen=True)
class Binding:
    """One contact of an extension: where and how to reach one of its phones.

    `contact` is the Contact as registered, without its `expires` parameter (the
    lifetime lives in `expires_at`, None for a static contact from the config).
    Calls go to `source` over `transport` with Request-URI `contact.uri` (see the
    module docstring on NAT).
    """

    extension: str
    contact: Address
    source: Addr
    transport: str
    expires_at: float | None
    call_id: str
    cseq: int
    q: float

    @property
    def is_static(self) -> bool:
        return self.expires_at is None

    def remaining(self, now: float) -> int:
        """Whole seconds left (rounded up, so a fresh binding shows what was granted)."""
        if self.expires_at is None:
            raise ValueError("a static binding does not expire")
        return max(0, math.ceil(self.expires_at - now - 1e-6))


@dataclass(frozen=True)
class AuthOutcome:
    """Result of the digest gate: ok with the extension, or the status to answer.

    `status` is None when ok, else 401 (challenge in `response_headers`), 403 or 400.
    When ok, `extension` (the digest user) is who calls: never the From header.
    """

    ok: bool
    extension: str | None
    status: int | None = None
    response_headers: tuple[tuple[str, str], ...] = ()
    reason: str = ""

    def response_for(self, request: Request) -> Response:
        """The rejection to send for `request` (only when not ok)."""
        if self.ok or self.status is None:
            raise ValueError("an accepted request has no rejection response")
        return make_response(request, self.status, headers=self.response_headers)


def static_binding(extension: ExtensionConfig) -> Binding | None:
    """The binding of an extension's configured static contact, None without one.

    ValueError when the configured contact is not a usable SIP URI.
    """
    if extension.contact is None:
        return None
    try:
        uri = parse_uri(extension.contact)
    except SipError as exc:
        raise ValueError(f"extension {extension.number}: bad contact: {exc.detail}") from None
    if not uri.is_sip or not uri.host:
        raise ValueError(f"extension {extension.number}: contact must be a sip: or sips: URI")
    transport = (uri.param("transport") or ("TLS" if uri.scheme == "sips" else "UDP")).upper()
    default_port = 5061 if transport == "TLS" else 5060
    host = uri.host[1:-1] if uri.host.startswith("[") else uri.host
    return Binding(
        extension=extension.number,
        contact=Address(uri=uri),
        source=(host, uri.port or default_port),
        transport=transport,
        expires_at=None,
        call_id="",
        cseq=0,
        q=_STATIC_Q,
    )


def _canonical_ip(ip: str) -> str:
    try:
        addr = ipaddress.ip_address(ip.strip("[]"))
    except ValueError:
        return ip
    mapped = getattr(addr, "ipv4_mapped", None)
    return str(mapped) if mapped is not None else addr.compressed


class Registrar:
    """REGISTER handling, bindings with expiry, and digest checks for phones."""

    def __init__(
        self,
        extensions: Sequence[ExtensionConfig],
        *,
        realm: str,
        nonces: NonceFactory,
        min_expires: int = 60,
        max_expires: int = 3600,
        default_expires: int = 3600,
        on_auth_failure: AuthFailureHook | None = None,
        max_bindings_per_extension: int = 10,
        algorithms: Sequence[str] = ("SHA-256", "MD5"),
    ) -> None:
        if not 1 <= min_expires <= default_expires <= max_expires:
            raise ValueError("need 1 <= min_expires <= default_expires <= max_expires")
        if max_bindings_per_extension < 1:
            raise ValueError("max_bindings_per_extension must be at least 1")
        self.realm = realm
        self.nonces = nonces
        self.min_expires = min_expires
        self.max_expires = max_expires
        self.default_expires = default_expires
        self.on_auth_failure = on_auth_failure
        self.max_bindings = max_bindings_per_extension
        self.algorithms = tuple(algorithms)
        self._passwords: dict[str, str] = {}
        self._static: dict[str, Binding] = {}
        self.set_extensions(extensions)
        self._bindings: dict[str, list[Binding]] = {}

    def set_extensions(self, extensions: Sequence[ExtensionConfig]) -> None:
        """Passwords and static contacts (at start and on a config reload). Live
        registrations stay; those of an extension that is gone expire unused."""
        self._passwords = {ext.number: ext.password for ext in extensions}
        static = ((ext.number, static_binding(ext)) for ext in extensions)
        self._static = {number: b for number, b in static if b is not None}

    # -- digest gate -----------------------------------------------------------------

    def authenticate(self, request: Request, source: Addr, now: float) -> AuthOutcome:
        """Check a phone's request (INVITE, OPTIONS ...) against the extensions."""
        try:
            return self._authenticate(request, _canonical_ip(source[0]), now)
        except SipError as exc:
            return AuthOutcome(False, None, exc.status, reason=exc.detail or exc.reason)

    def _challenge(self, ip: str, now: float, *, stale: bool, reason: str) -> AuthOutcome:
        values = challenge_headers(
            self.realm, self.nonces.make(ip, now), algorithms=self.algorithms, stale=stale
        )
        headers = tuple(("WWW-Authenticate", value) for value in values)
        return AuthOutcome(False, None, 401, headers, reason)

    def _forbid(self, ip: str, username: str | None, reason: str) -> AuthOutcome:
        if self.on_auth_failure is not None:
            self.on_auth_failure(ip, username)
        return AuthOutcome(False, None, 403, reason=reason)

    def _authenticate(self, request: Request, ip: str, now: float) -> AuthOutcome:
        credentials: str | None = None
        nonce: str | None = None
        for value in request.headers.raw("Authorization"):
            scheme, params = parse_auth_params(value)  # SipError(400) when unparseable
            # RFC 3261 22.4: credentials for other realms are not ours to judge.
            if scheme.lower() == "digest" and params.get("realm") == self.realm:
                credentials, nonce = value, params.get("nonce")
                break
        if credentials is None:
            return self._challenge(ip, now, stale=False, reason="no credentials")
        if nonce is not None and self.nonces.check(nonce, ip, now) is NonceStatus.INVALID:
            return self._challenge(ip, now, stale=False, reason="nonce not ours or not for this IP")
        result = verify(
            credentials,
            method=request.method,
            realm=self.realm,
            password_for=self._passwords.get,
            nonces=self.nonces,
            client_ip=ip,
            now=now,
            body=request.body,
        )
        if result.ok:
            return AuthOutcome(True, result.username, reason="ok")
        if result.stale:
            return self._challenge(ip, now, stale=True, reason=result.reason)
        return self._forbid(ip, result.username, result.reason)

    # -- REGISTER --------------------------------------------------------------------

    def handle_register(
        self, request: Request, source: Addr, transport: str, now: float
    ) -> Response:
        """The complete answer to a REGISTER (RFC 3261 10.3); bindings updated on 200."""
        if request.method != "REGISTER":
            raise ValueError(f"handle_register got a {request.method}")
        ip = _canonical_ip(source[0])
        try:
            outcome = self._authenticate(request, ip, now)
            if not outcome.ok:
                return outcome.response_for(request)
            aor = self._aor(request)
            if aor is None or aor != outcome.extension:
                # A phone may only bind its own extension; an AOR that is no extension
                # gets the same answer, so the answer reveals nothing.
                return self._forbid(ip, outcome.extension, "AOR not owned").response_for(request)
            return self._update(request, aor, source, transport.upper(), now)
        except SipError as exc:
            return make_response(request, exc.status, exc.reason)

    @staticmethod
    def _aor(request: Request) -> str | None:
        uri = request.to_addr.uri
        if not uri.is_sip or uri.user is None:
            return None
        return unescape(uri.user)

    def _expires_of(self, contact: Address, header: int | None) -> int:
        value = contact.param("expires")
        if value is not None:
            if not value.isascii() or not value.isdigit():
                raise SipParseError(f"bad Contact expires {value!r}")
            return int(value)
        return self.default_expires if header is None else header

    @staticmethod
    def _q_of(contact: Address) -> float:
        value = contact.param("q")
        if value is None:
            return _DEFAULT_Q
        if not _Q_RE.fullmatch(value):
            raise SipParseError(f"bad Contact q {value!r}")
        return float(value)

    def _update(
        self, request: Request, aor: str, source: Addr, transport: str, now: float
    ) -> Response:
        contacts = request.contacts
        header_expires = request.expires
        call_id = request.call_id
        cseq = request.cseq[0]
        current = self._live(aor, now)

        def out_of_order(binding: Binding) -> bool:
            # 10.3 step 7: same Call-ID needs a higher CSeq, else the update is aborted.
            return binding.call_id == call_id and cseq <= binding.cseq

        if any(contact.wildcard for contact in contacts):
            if len(contacts) != 1 or header_expires != 0:
                raise SipParseError("Contact: * needs Expires: 0 and no other contact")
            if any(out_of_order(b) for b in current):
                return make_response(request, 500, "Out Of Order REGISTER")
            self._bindings.pop(aor, None)
            return make_response(request, 200)

        changes: list[tuple[URI, Binding | None]] = []  # (contact URI, new binding or removal)
        for contact in contacts:
            uri = contact.uri
            if not uri.is_sip:
                raise SipParseError("Contact must be a sip: or sips: URI")
            expires = self._expires_of(contact, header_expires)
            q = self._q_of(contact)
            if any(uri_equal(b.contact.uri, uri) and out_of_order(b) for b in current):
                return make_response(request, 500, "Out Of Order REGISTER")
            if expires == 0:
                changes.append((uri, None))
                continue
            if expires < self.min_expires:
                return make_response(request, 423, headers=[("Min-Expires", str(self.min_expires))])
            granted = min(expires, self.max_expires)
            binding = Binding(
                extension=aor,
                contact=contact.without_param("expires"),
                source=source,
                transport=transport,
                expires_at=now + granted,
                call_id=call_id,
                cseq=cseq,
                q=q,
            )
            changes.append((uri, binding))

        updated = list(current)
        for uri, new in changes:
            index = next((i for i, b in enumerate(updated) if uri_equal(b.contact.uri, uri)), None)
            if new is None:
                if index is not None:
                    del updated[index]
            elif index is None:
                updated.append(new)
            else:
                updated[index] = new  # a refresh keeps its place among equal q values
        if len(updated) > self.max_bindings:
            return make_response(request, 403, "Too Many Contacts")
        if updated:
            self._bindings[aor] = updated
        else:
            self._bindings.pop(aor, None)
        listed = [
            ("Contact", str(b.contact.with_param("expires", str(b.remaining(now)))))
            for b in updated
        ]
        return make_response(request, 200, headers=listed)

    # -- bindings --------------------------------------------------------------------

    def _live(self, extension: str, now: float) -> list[Binding]:
        """The extension's registrations, dropping the expired ones from the store."""
        stored = self._bindings.get(extension)
        if not stored:
            return []
        live = [b for b in stored if b.expires_at is not None and b.expires_at > now]
        if len(live) != len(stored):
            if live:
                self._bindings[extension] = live
            else:
                del self._bindings[extension]
        return live

    def lookup(self, extension: str, now: float) -> list[Binding]:
        """Where to ring `extension`: live registrations, highest q first (ties in
        registration order), then the static contact from the config, if any."""
        out = sorted(self._live(extension, now), key=lambda b: -b.q)
        static = self._static.get(extension)
        if static is not None:
            out.append(static)
        return out

    def get_timer(self) -> float | None:
        """The next expiry, for the I/O layer to call `handle_timer` at."""
        deadlines = [
            b.expires_at
            for stored in self._bindings.values()
            for b in stored
            if b.expires_at is not None
        ]
        return min(deadlines, default=None)

    def handle_timer(self, now: float) -> None:
        """Removes every binding that has expired by `now`."""
        for extension in list(self._bindings):
            self._live(extension, now)

    def binding_count(self) -> int:
        """Stored registrations (static contacts not counted; expired ones leave at the
        next sweep or lookup)."""
        return sum(len(stored) for stored in self._bindings.values())
