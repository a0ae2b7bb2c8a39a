"""Which way a new call goes: inbound from the trunk, internal, outbound, or nowhere.

Theory of operation: the decision rests on two facts established before routing and
never on header contents claiming who the caller is.
1. The socket source IP. A request whose source is in `trunk.inbound_from` is inbound,
   whatever its From, Via or port say; a From with the trunk's number from any other
   address is not. The dialled number (Request-URI user, else To user) goes through
   `trunk.inbound_target` (the number map, else `inbound_extension`), so every inbound
   call rings some configured extension.
2. The authenticated extension, which the caller of `route` got from
   `Registrar.authenticate`. From an extension: a configured extension number is an
   internal call, any other dialable number (digits with an optional leading +, and *
   and # for feature codes) goes out to the trunk. The router never decides
   authentication: a request that is neither inbound nor authenticated is rejected
   with 403 (the core should have challenged it first). A hunt group's number
   (config [[group]], hunt.py) is dialled like an extension: an internal call.

Choices:
- Calling one's own extension is 486 Busy Here: the only phone that could ring is the
  one placing the call, and phones show "busy", which is what the user sees with a real
  PBX too. (403 would suggest a permission problem.)
- An empty number (or a lone "+") is 484 Address Incomplete: the user dialled too
  little. A user part with characters no phone dials (letters ...) is 404 Not Found.
- Visual separators of RFC 3966 ("-", ".", "(", ")") are dropped before matching, so
  "+49-30-1234" and "+49301234" are the same number. `Route.dialled` is the number
  after that clean-up.
- The office's own public numbers dialled from an extension go out to the trunk (and
  come back in as an inbound call); short-circuiting them would skip the trunk's idea
  of the call and the inbound consent step.

After the decision the route is annotated (docs/operations.md, "Numbers"):
- `emergency`: an outbound call to an emergency number (numbers.emergency). The switch
  sends it at once: no toll-fraud rule, limit or ban applies, nobody is asked, and it is
  recorded only with numbers.record_emergency (announce mode only).
- `unrecorded`: why the call is never recorded and nobody is asked: "emergency", or
  "do_not_record" when the external party's number is on recording.do_not_record.
- `withheld`: the caller withheld the number (CLIR): From is anonymous, or a Privacy
  header asks for it (RFC 3323 "id", "user", "header"). The catalog, the metadata and
  the logs then say "withheld"; the caller is still asked for consent.
- `e164`: the dialled number in E.164, for the toll-fraud rules.

`presentation` decides what leg B shows as the caller: toward the trunk the calling
extension's own caller_id (its direct number, DDI), else trunk.caller_id, in From,
P-Asserted-Identity (RFC 3325) or P-Preferred-Identity, as trunk.identity_header says;
trunk.from_user, when set, is the From user instead (sipgate wants its SIP-ID there
while P-Preferred-Identity presents the number: docs/carriers.md). A withheld caller
stays anonymous in From (RFC 3325 section 9.3: "Privacy: id" asks the trunk to keep the
asserted identity to itself), except on an emergency call, where the number is always
presented. With trunk.mediasec, INVITEs to the trunk also carry the security agreement
the trunk registration learned (trunk_registration.MediasecAgreement: Security-Verify,
Require and Proxy-Require, as Asterisk's res_pjsip_rfc3329.c adds them to its calls).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, replace
from typing import Literal

from b2bua.config import Config
from b2bua.errors import SipError
from b2bua.headers import parse_address
from b2bua.message import Request
from b2bua.numbers import WITHHELD, NumberPlan
from b2bua.trunk_registration import MediasecAgreement
from b2bua.uri import URI, unescape

__all__ = [
    "Presentation",
    "Route",
    "RouteKind",
    "Router",
    "caller_withheld",
    "dialled_number",
    "number_plan",
    "presented_numbers",
]

RouteKind = Literal["inbound", "outbound", "internal", "reject"]

_VISUAL_SEPARATORS = str.maketrans("", "", "-.() ")
_DIALABLE_RE = re.compile(r"\+?[0-9*#]{1,32}")


@dataclass(frozen=True)
class Route:
    """The routing decision for one new request.

    `target_extension` is the extension to ring (inbound and internal), None otherwise;
    `status` is the SIP status to answer with for a reject, None otherwise.
    """

    kind: RouteKind
    target_extension: str | None
    dialled: str
    status: int | None
    reason: str
    emergency: bool = False
    unrecorded: str | None = None  # "emergency" | "do_not_record": never asked nor recorded
    withheld: bool = False
    e164: str | None = None  # the dialled number in E.164, where it has one
    caller_extension: str | None = None  # outbound: the authenticated extension calling


@dataclass(frozen=True)
class Presentation:
    """How leg B shows the caller, and how the catalog names the caller."""

    from_user: str
    display_name: str | None
    headers: tuple[tuple[str, str], ...]  # P-Asserted-Identity, Privacy ...
    caller_label: str  # the catalog's caller column ("withheld" when withheld)


def _user_of(uri: URI) -> str | None:
    if uri.is_sip:
        return None if uri.user is None else unescape(uri.user)
    if uri.scheme == "tel" and uri.opaque is not None:
        return unescape(uri.opaque.split(";", 1)[0])  # drop ;phone-context and friends
    return None


def dialled_number(request: Request) -> str:
    """The number the caller dialled: Request-URI user, else To user, separators out."""
    user = _user_of(request.uri)
    if not user:
        try:
            user = _user_of(request.to_addr.uri)
        except SipError:  # no usable To (only possible for hand-built requests)
            user = None
    return (user or "").translate(_VISUAL_SEPARATORS)


_PRIVACY_HIDING = frozenset({"id", "user", "header"})


def caller_withheld(request: Request) -> bool:
    """True when the caller withheld the number (see the module docstring)."""
    for value in request.headers.raw("Privacy"):
        tokens = {t.strip().lower() for t in re.split(r"[;,]", value)}
        if tokens & _PRIVACY_HIDING:
            return True
    try:
        uri = request.from_addr.uri
    except SipError:
        return True  # no usable From: nothing to present
    user = (uri.user or "").lower()
    return not user or user == "anonymous" or uri.host.lower() == "anonymous.invalid"


def presented_numbers(request: Request) -> list[str]:
    """The caller's numbers as presented: From user, then P-Asserted-Identity users."""
    out: list[str] = []
    try:
        if request.from_addr.uri.user:
            out.append(unescape(request.from_addr.uri.user))
    except SipError:
        pass
    for value in request.headers.get_all("P-Asserted-Identity"):
        try:
            user = _user_of(parse_address(value).uri)
        except SipError:
            continue
        if user:
            out.append(user)
    return out


def number_plan(config: Config) -> NumberPlan:
    """The office's number plan: [numbers], the extensions and recording.do_not_record."""
    numbers = config.numbers
    return NumberPlan(
        numbers.country,
        numbers.area_code,
        numbers.emergency,
        frozenset(ext.number for ext in config.extensions),
        config.recording.do_not_record,
    )


def _reject(dialled: str, status: int, reason: str) -> Route:
    return Route("reject", None, dialled, status, reason)


class Router:
    """Routing by socket source and authenticated extension (see the module docstring)."""

    def __init__(self, config: Config) -> None:
        self.trunk = config.trunk
        self._extensions = frozenset(ext.number for ext in config.extensions)
        self._groups = frozenset(group.number for group in config.groups)  # hunt groups
        self.plan = number_plan(config)
        self.record_emergency = config.numbers.record_emergency
        # Each extension's direct number (DDI), presented instead of trunk.caller_id.
        self._caller_ids = {
            ext.number: ext.caller_id for ext in config.extensions if ext.caller_id is not None
        }
        # Learned by the trunk registration (trunk_registration.registration_for shares it).
        self.mediasec: MediasecAgreement | None = (
            MediasecAgreement() if self.trunk.mediasec else None
        )

    def is_emergency_request(self, request: Request) -> bool:
        """A new INVITE to an emergency number (checked before authentication)."""
        return request.method == "INVITE" and self.plan.is_emergency(dialled_number(request))

    def is_inbound_source(self, ip: str) -> bool:
        """True when the socket source `ip` is in trunk.inbound_from."""
        try:
            addr = ipaddress.ip_address(ip.strip("[]"))
        except ValueError:
            return False
        mapped = getattr(addr, "ipv4_mapped", None)  # ::ffff:a.b.c.d from dual-stack sockets
        if mapped is not None:
            addr = mapped
        # Membership across IP versions is simply False, never an error.
        return any(addr in network for network in self.trunk.inbound_from)

    def route(self, request: Request, source_ip: str, authenticated_extension: str | None) -> Route:
        """Where `request` (a new INVITE, normally) goes; see the module docstring."""
        route = self._decide(request, source_ip, authenticated_extension)
        if route.kind == "reject":
            return route
        withheld = caller_withheld(request)
        emergency = route.kind == "outbound" and self.plan.is_emergency(route.dialled)
        unrecorded: str | None = None
        if emergency:
            unrecorded = None if self.record_emergency else "emergency"
        else:
            # The external party's number: the one dialled, or the caller's presented ones.
            external = [route.dialled] if route.kind == "outbound" else []
            if route.kind == "inbound":
                external = presented_numbers(request)
            if self.plan.do_not_record_match(external):
                unrecorded = "do_not_record"
        e164 = None if route.kind != "outbound" else self.plan.e164(route.dialled)
        return replace(
            route,
            emergency=emergency,
            unrecorded=unrecorded,
            withheld=withheld,
            e164=e164,
            # Only an outbound call presents the caller's number (caller_id_for).
            caller_extension=authenticated_extension if route.kind == "outbound" else None,
        )

    def caller_id_for(self, extension: str | None) -> str | None:
        """The number an outbound call from `extension` presents: its own caller_id,
        else trunk.caller_id (None: the caller's own From user)."""
        own = self._caller_ids.get(extension) if extension is not None else None
        return own or self.trunk.caller_id

    def presentation(self, route: Route, request: Request) -> Presentation:
        """Leg B's caller identity for `route` (see the module docstring)."""
        caller = request.from_addr
        user = unescape(caller.uri.user) if caller.uri.user else ""
        # Outbound, the caller is our own extension: the catalog keeps its number.
        inbound_withheld = route.withheld and route.kind == "inbound"
        label = WITHHELD if inbound_withheld else (user or "anonymous")
        withheld = route.withheld and not route.emergency
        if route.kind != "outbound":
            if withheld:
                return Presentation("anonymous", "Anonymous", (), label)
            return Presentation(user or "anonymous", caller.display_name, (), label)
        number = self.caller_id_for(route.caller_extension) or user or "anonymous"
        host = self.trunk.host[0]
        identity = str(URI("sip", number, host=host))
        headers: list[tuple[str, str]] = []
        if self.trunk.identity_header == "pai":
            headers.append(("P-Asserted-Identity", f"<{identity}>"))
        elif self.trunk.identity_header == "ppi":
            headers.append(("P-Preferred-Identity", f"<{identity}>"))
        headers.extend(self.trunk_request_headers())
        if withheld:
            # Sources are silent on trunk.from_user with CLIR: From stays anonymous.
            headers.append(("Privacy", "id"))
            return Presentation("anonymous", "Anonymous", tuple(headers), label)
        from_user = self.trunk.from_user or number
        return Presentation(from_user, caller.display_name, tuple(headers), label)

    def trunk_request_headers(self) -> tuple[tuple[str, str], ...]:
        """What every request to the trunk carries: the mediasec agreement once learned
        (Security-Verify, Require, Proxy-Require), else nothing."""
        return () if self.mediasec is None else self.mediasec.verify_headers()

    def forwarded_headers(self, route: Route) -> tuple[tuple[str, str], ...]:
        """Extra headers of an inbound call that a hunt group forwards out to the trunk
        (its fallback number): RFC 5806 Diversion naming the number the caller dialled,
        in E.164 where it can be normalised (carriers take a forwarded caller's foreign
        number when a Diversion names one of the trunk's own numbers; docs/carriers.md),
        with reason no-answer (the group did not answer), and the mediasec agreement."""
        number = self.plan.e164(route.dialled) or route.dialled
        diverting = URI("sip", number, host=self.trunk.host[0])
        headers = [("Diversion", f"<{diverting}>;reason=no-answer;counter=1")]
        headers.extend(self.trunk_request_headers())
        return tuple(headers)

    def _decide(
        self, request: Request, source_ip: str, authenticated_extension: str | None
    ) -> Route:
        dialled = dialled_number(request)
        if self.is_inbound_source(source_ip):
            target = self.trunk.inbound_target(dialled)
            return Route("inbound", target, dialled, None, "from the trunk")
        if authenticated_extension is None:
            return _reject(dialled, 403, "not from the trunk and not authenticated")
        if authenticated_extension not in self._extensions:
            # The registrar only authenticates configured extensions; a stale config
            # reload could break that, and then nothing should be routed.
            return _reject(dialled, 403, "caller is not a configured extension")
        if dialled in self._groups:
            return Route("internal", dialled, dialled, None, "extension to hunt group")
        if dialled in self._extensions:
            if dialled == authenticated_extension:
                return _reject(dialled, 486, "calling one's own extension")
            return Route("internal", dialled, dialled, None, "extension to extension")
        if dialled in ("", "+"):
            return _reject(dialled, 484, "no number dialled")
        if not _DIALABLE_RE.fullmatch(dialled):
            return _reject(dialled, 404, "not a dialable number")
        return Route("outbound", None, dialled, None, "to the trunk")
