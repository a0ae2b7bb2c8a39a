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
   with 403 (the core should have challenged it first).

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
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Literal

from b2bua.config import Config
from b2bua.errors import SipError
from b2bua.message import Request
from b2bua.uri import URI, unescape

__all__ = ["Route", "RouteKind", "Router", "dialled_number"]

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


def _reject(dialled: str, status: int, reason: str) -> Route:
    return Route("reject", None, dialled, status, reason)


class Router:
    """Routing by socket source and authenticated extension (see the module docstring)."""

    def __init__(self, config: Config) -> None:
        self.trunk = config.trunk
        self._extensions = frozenset(ext.number for ext in config.extensions)

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
        if dialled in self._extensions:
            if dialled == authenticated_extension:
                return _reject(dialled, 486, "calling one's own extension")
            return Route("internal", dialled, dialled, None, "extension to extension")
        if dialled in ("", "+"):
            return _reject(dialled, 484, "no number dialled")
        if not _DIALABLE_RE.fullmatch(dialled):
            return _reject(dialled, 404, "not a dialable number")
        return Route("outbound", None, dialled, None, "to the trunk")
