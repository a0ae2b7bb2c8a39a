"""Registering the office at its SIP trunk (outbound registration), sans-I/O.

Theory of operation: many carriers only send calls to a registered account. One
`TrunkRegistration` keeps one binding alive: `start(now)` returns the first REGISTER;
each response goes to `on_response(response, now)`, which returns the next request
to send, if any. A 401/407 is answered once per nonce with digest credentials
(auth.answer_challenge; a second challenge with the same nonce means the credentials
are wrong, and we back off instead of looping). A 2xx schedules the refresh at 80 % of
the granted lifetime (the Contact's expires, else Expires, else what we asked), with a
floor so a tiny grant can not make us hammer the carrier. A failure or a timeout
retries with exponential backoff, capped. `get_timer()` gives the next deadline and
`on_timer(now)` the request due then; nothing here reads a clock or touches a socket.

States are a table `(State, Event) -> next State`; an event the table lacks is counted
in `protocol_errors` and ignored.

Carrier options (docs/carriers.md): `contact_user` puts another user part into the
Contact (easybell wants the number there; default: the account name). With a
`MediasecAgreement` (trunk.mediasec, Deutsche Telekom) every REGISTER carries
`Security-Client: sdes-srtp;mediasec`, `Require: mediasec` and `Proxy-Require:
mediasec`; a 401/407/494 that brings `Security-Server` lines teaches the agreement the
carrier's mechanisms, and every later REGISTER (the authenticated one, refreshes,
retries) echoes them as `Security-Verify`. The router reads the same agreement for
INVITEs to the trunk. Sources, named because the scheme is a carrier's, not an RFC's:
- Telekom DeutschlandLAN Cloud PBX help, "Mediasec (Manuelle Konfiguration von
  Verschlüsselung)" (the three REGISTER steps, the header values; after
  draft-dawes-sipcore-mediasec-parameter),
  https://cpbx-hilfe.deutschland-lan.de/de/ratgeber-zur-konfiguration/spezialkonfigurationen/mediasec?mode=administrator
- Asterisk 21+ (`security_negotiation = mediasec`), res/res_pjsip_outbound_registration.c
  `add_security_headers` and the 401/407/494 handling: Security-Server is remembered
  and echoed as Security-Verify; res/res_pjsip/security_agreements.c adds
  `Require: mediasec` and `Proxy-Require: mediasec` with them; res/res_pjsip_rfc3329.c
  adds Security-Verify to the calls' requests and to OPTIONS (asterisk/asterisk at
  commit f0c1c1a7).
- RFC 3329 (Security Mechanism Agreement for SIP): the Security-Client/-Server/-Verify
  headers and the 494 response.
Where they differ, Telekom's page wins: after a 494 Asterisk drops Security-Client,
Telekom's page shows it in every REGISTER, so we keep it.
"""

from __future__ import annotations

import enum
import logging
import secrets
from dataclasses import dataclass, field

from b2bua.auth import answer_challenge, parse_auth_params, pick_challenge
from b2bua.config import TrunkConfig
from b2bua.errors import SipError, SipParseError
from b2bua.headers import Address, Headers, Via, split_commas
from b2bua.message import Request, Response
from b2bua.transaction import new_branch
from b2bua.uri import URI

log = logging.getLogger("b2bua.trunk")

Addr = tuple[str, int]
REFRESH_FRACTION = 0.8
MIN_REFRESH_S = 30.0
RETRY_MIN_S = 5.0
RETRY_MAX_S = 300.0


MEDIASEC = "mediasec"  # the option tag of Require / Proxy-Require (Telekom's page)
MEDIASEC_CLIENT = "sdes-srtp;mediasec"  # our Security-Client: SDES-SRTP (Telekom's page)


def security_mechanisms(values: tuple[str, ...]) -> tuple[str, ...]:
    """Mechanisms of Security-Server header values (RFC 3329 2.2: comma lists)."""
    out: list[str] = []
    for value in values:
        try:
            items = split_commas(value)
        except SipParseError:
            items = [value]
        out.extend(" ".join(item.split()) for item in items if item.strip())
    return tuple(out)


@dataclass
class MediasecAgreement:
    """Telekom's mediasec: the carrier's Security-Server mechanisms, once learned.

    Shared by the trunk registration (which learns them) and the router (which puts
    them on INVITEs to the trunk). Empty until a challenge brought Security-Server:
    like Asterisk, nothing is verified before the carrier named its mechanisms."""

    server: tuple[str, ...] = ()

    def learn(self, response: Response) -> bool:
        """Remembers the response's Security-Server mechanisms; False if it has none."""
        mechanisms = security_mechanisms(response.headers.raw("Security-Server"))
        if not mechanisms:
            return False
        self.server = mechanisms
        return True

    def verify_headers(self) -> tuple[tuple[str, str], ...]:
        """Security-Verify (one line per mechanism, as Telekom's page lists them, each as
        received) plus Require and Proxy-Require: for every request to the trunk after
        the agreement; empty before it."""
        if not self.server:
            return ()
        verify = tuple(("Security-Verify", mechanism) for mechanism in self.server)
        return (*verify, ("Require", MEDIASEC), ("Proxy-Require", MEDIASEC))

    def register_headers(self) -> tuple[tuple[str, str], ...]:
        """A REGISTER's mediasec lines: Security-Client always, Security-Verify once
        learned, Require and Proxy-Require always (Telekom's page, steps 1 and 3)."""
        verify = tuple(("Security-Verify", mechanism) for mechanism in self.server)
        return (
            ("Security-Client", MEDIASEC_CLIENT),
            *verify,
            ("Require", MEDIASEC),
            ("Proxy-Require", MEDIASEC),
        )


class RegState(enum.Enum):
    IDLE = "idle"
    REGISTERING = "registering"  # a REGISTER is out
    REGISTERED = "registered"
    FAILED = "failed"  # waiting to retry


class RegEvent(enum.Enum):
    SEND = "send"
    OK = "ok"
    CHALLENGE = "challenge"
    FAIL = "fail"
    TIMER = "timer"


TABLE: dict[tuple[RegState, RegEvent], RegState] = {
    (RegState.IDLE, RegEvent.SEND): RegState.REGISTERING,
    (RegState.REGISTERING, RegEvent.OK): RegState.REGISTERED,
    (RegState.REGISTERING, RegEvent.CHALLENGE): RegState.REGISTERING,
    (RegState.REGISTERING, RegEvent.FAIL): RegState.FAILED,
    (RegState.REGISTERED, RegEvent.TIMER): RegState.REGISTERING,
    (RegState.FAILED, RegEvent.TIMER): RegState.REGISTERING,
}


@dataclass
class TrunkRegistration:
    """One registration of `username@domain` at the trunk's registrar."""

    registrar: Addr
    domain: str
    username: str
    password: str
    local: Addr
    expires: int = 3600
    transport: str = "UDP"
    contact_user: str | None = None  # Contact's user part (None: username)
    mediasec: MediasecAgreement | None = None  # trunk.mediasec (see the module docstring)
    state: RegState = RegState.IDLE
    registered_until: float | None = None
    protocol_errors: int = 0
    failures: int = 0
    _call_id: str = field(default_factory=lambda: secrets.token_hex(12) + "@b2bua")
    _from_tag: str = field(default_factory=lambda: secrets.token_hex(6))
    _cseq: int = 0
    _deadline: float | None = None
    _retry_s: float = RETRY_MIN_S
    _last_nonce: str | None = None
    _nc: int = 0
    _mediasec_retried: bool = False  # a 494 was answered once in this attempt

    # -- inputs ---------------------------------------------------------------------
    def start(self, now: float) -> Request:
        self._fire(RegEvent.SEND)
        return self._register()

    def on_response(self, response: Response, now: float) -> Request | None:
        if response.status < 200 or self.state is not RegState.REGISTERING:
            return None
        if self.mediasec is not None and response.status in (401, 407, 494):
            self.mediasec.learn(response)  # before the answer, so it carries Verify
        if response.status in (401, 407):
            return self._on_challenge(response, now)
        if response.status == 494 and self.mediasec is not None:
            return self._on_security_required(response, now)
        if 200 <= response.status < 300:
            self._fire(RegEvent.OK)
            granted = self._granted(response)
            self.registered_until = now + granted
            self._deadline = now + max(MIN_REFRESH_S, granted * REFRESH_FRACTION)
            self._retry_s = RETRY_MIN_S
            self.failures = 0
            log.info("event=trunk_registered expires_s=%d", granted)
            return None
        self._fail(now, f"registrar answered {response.status}")
        return None

    def on_timeout(self, now: float) -> None:
        if self.state is RegState.REGISTERING:
            self._fail(now, "no answer")

    def get_timer(self) -> float | None:
        return self._deadline if self.state in (RegState.REGISTERED, RegState.FAILED) else None

    def on_timer(self, now: float) -> Request | None:
        if self._deadline is None or now < self._deadline:
            return None
        self._deadline = None
        self._fire(RegEvent.TIMER)
        self._last_nonce = None
        self._mediasec_retried = False
        return self._register()

    @property
    def registered(self) -> bool:
        return self.state is RegState.REGISTERED

    # -- internals -------------------------------------------------------------------
    def _fire(self, event: RegEvent) -> bool:
        next_state = TABLE.get((self.state, event))
        if next_state is None:
            self.protocol_errors += 1
            return False
        self.state = next_state
        return True

    def _fail(self, now: float, why: str) -> None:
        self._fire(RegEvent.FAIL)
        self.failures += 1
        self.registered_until = None
        self._deadline = now + self._retry_s
        log.warning(
            "event=trunk_register_failed reason=%s retry_s=%.0f",
            why.replace(" ", "_"),
            self._retry_s,
        )
        self._retry_s = min(RETRY_MAX_S, self._retry_s * 2)

    def _on_challenge(self, response: Response, now: float) -> Request | None:
        header = "WWW-Authenticate" if response.status == 401 else "Proxy-Authenticate"
        challenge = pick_challenge(response.headers.get_all(header))
        if challenge is None:
            self._fail(now, "no usable digest challenge")
            return None
        nonce = _nonce_of(challenge)
        stale = "stale=true" in challenge.replace(" ", "").lower()
        if nonce == self._last_nonce and not stale:
            self._fail(now, "credentials refused")
            return None
        self._fire(RegEvent.CHALLENGE)
        self._last_nonce = nonce
        self._nc += 1
        uri = str(self._request_uri())
        value = answer_challenge(
            challenge,
            method="REGISTER",
            uri=uri,
            username=self.username,
            password=self.password,
            cnonce=secrets.token_hex(8),
            nc=self._nc,
        )
        name = "Authorization" if response.status == 401 else "Proxy-Authorization"
        return self._register((name, value))

    def _on_security_required(self, response: Response, now: float) -> Request | None:
        """494 Security Agreement Required (RFC 3329 2.3.1): send again at once with
        Security-Verify; once per attempt, so a carrier that keeps answering 494 makes
        us back off instead of looping."""
        assert self.mediasec is not None
        if self._mediasec_retried or not self.mediasec.server:
            self._fail(now, "security agreement refused")
            return None
        self._mediasec_retried = True
        self._fire(RegEvent.CHALLENGE)
        return self._register()

    def _request_uri(self) -> URI:
        return URI("sip", host=self.domain)

    def _register(self, *auth: tuple[str, str]) -> Request:
        self._cseq += 1
        host, port = self.local
        aor = Address(URI("sip", self.username, host=self.domain))
        contact = Address(URI("sip", self._contact_user, host=host, port=port))
        via = Via(self.transport, host, port, (("branch", new_branch()), ("rport", None)))
        fields = [
            ("Via", str(via)),
            ("Max-Forwards", "70"),
            ("From", str(aor.with_param("tag", self._from_tag))),
            ("To", str(aor)),
            ("Call-ID", self._call_id),
            ("CSeq", f"{self._cseq} REGISTER"),
            ("Contact", str(contact)),
            ("Expires", str(self.expires)),
            *auth,
        ]
        if self.mediasec is not None:
            fields.extend(self.mediasec.register_headers())
        return Request("REGISTER", self._request_uri(), Headers.of(*fields))

    def _granted(self, response: Response) -> int:
        host, port = self.local
        for contact in response.contacts:
            uri = contact.uri
            if uri.user == self._contact_user and uri.host == host and (uri.port or 5060) == port:
                value = contact.param("expires")
                if value is not None and value.isdigit():
                    return int(value)
        header = response.headers.get("Expires")
        if header is not None and header.strip().isdigit():
            return int(header)
        return self.expires

    @property
    def _contact_user(self) -> str:
        return self.contact_user or self.username


def registration_for(
    trunk: TrunkConfig, registrar: Addr, local: Addr, mediasec: MediasecAgreement | None
) -> TrunkRegistration:
    """The registration `[trunk]` asks for (trunk.register with username and password),
    sharing `mediasec` (the router's, Router.mediasec) when trunk.mediasec is on."""
    if trunk.username is None or trunk.password is None:
        raise ValueError("trunk.register needs trunk.username and trunk.password")
    return TrunkRegistration(
        registrar,
        trunk.realm or trunk.host[0],
        trunk.username,
        trunk.password,
        local,
        expires=trunk.register_expires_s,
        contact_user=trunk.contact_user,
        mediasec=mediasec if trunk.mediasec else None,
    )


def _nonce_of(challenge: str) -> str | None:
    try:
        _, params = parse_auth_params(challenge)
    except SipError:
        return None
    return params.get("nonce")
