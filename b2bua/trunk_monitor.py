"""Which of the trunk's servers are alive: OPTIONS keepalive and failover, sans-I/O.

Theory of operation: the trunk is an ordered list of targets (address, port): those of
`trunk.host` (the address itself, or what DNS gave, in RFC 3263 order; the I/O layer
calls `set_primary` with each new list) followed by `trunk.failover_hosts`. Every
`interval_s` (`trunk.keepalive_s`; 0 = off) each target gets an OPTIONS request;
`on_timer(now, local)` returns the probes that are due and the switch sends them as
ordinary client transactions, reporting back with `on_response` or `on_timeout`.

Health per target is a table `(Health, Probe) -> Health`:
- any final answer proves a SIP server is there, even 404, 405 or 501 (a carrier
  need not implement OPTIONS): the target is UP;
- no answer at all (the transaction timed out) or 503 (RFC 3261 21.5.4: the server
  is overloaded or in maintenance; RFC 3263 4.3: try the next one) marks it DOWN;
- a new target is UNKNOWN and counts as alive until a probe says otherwise.
An outbound INVITE that times out or gets 408/503 marks its target DOWN too
(`report_failure`), so the next call does not wait for the next probe.

`live_targets()` is the order outbound calls use: live targets first (in configured
order), then the dead ones as a last resort, since a probe can be wrong and a call
that is tried still has a chance. `alternative(...)` is the retry helper for a call
whose INVITE failed: the next live target it has not tried yet.

The first probe of a target is due one interval after it is added (start-up, or a new
DNS answer), then one interval after each answer or timeout; a target never has two
probes out. Nothing here reads a clock or touches a socket.
"""

from __future__ import annotations

import enum
import ipaddress
import logging
import secrets
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from b2bua.headers import Address, Headers, Via
from b2bua.message import Request, Response
from b2bua.transaction import new_branch
from b2bua.uri import URI

log = logging.getLogger("b2bua.trunk_monitor")

Addr = tuple[str, int]

# Answers that mean "this server can not take calls now": RFC 3263 4.3 moves on after
# 503; any other answer shows a live SIP server.
DOWN_STATUSES = frozenset({503})
# An INVITE that failed with these (or timed out) is retried once at the next target.
RETRY_STATUSES = frozenset({408, 503})


def is_ip_literal(host: str) -> bool:
    """True for an IP address (a trunk host that needs no DNS)."""
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


class Health(enum.Enum):
    UNKNOWN = "unknown"  # not probed yet: treated as alive
    UP = "up"
    DOWN = "down"


class Probe(enum.Enum):
    ANSWERED = "answered"
    FAILED = "failed"  # timeout, 503, or a failed call attempt


TABLE: dict[tuple[Health, Probe], Health] = {
    (Health.UNKNOWN, Probe.ANSWERED): Health.UP,
    (Health.UNKNOWN, Probe.FAILED): Health.DOWN,
    (Health.UP, Probe.ANSWERED): Health.UP,
    (Health.UP, Probe.FAILED): Health.DOWN,
    (Health.DOWN, Probe.ANSWERED): Health.UP,
    (Health.DOWN, Probe.FAILED): Health.DOWN,
}


@dataclass
class _Target:
    addr: Addr
    health: Health = Health.UNKNOWN
    next_probe: float | None = None  # None while a probe is out
    probing: bool = False


class TrunkMonitor:
    """Health of the trunk's targets and the order outbound calls try them in."""

    def __init__(
        self,
        domain: str,
        *,
        interval_s: float,
        transport: str = "UDP",
        failover: Sequence[Addr] = (),
        headers: Callable[[], Sequence[tuple[str, str]]] = tuple,
    ) -> None:
        self.domain = domain  # Request-URI host of the probes (the trunk's name)
        # Extra headers of each probe, asked for when it is built: the mediasec
        # agreement's Security-Verify once learned (Asterisk sends it on OPTIONS too).
        self._headers = headers
        self.interval_s = interval_s
        self.transport = transport.upper()
        self._primary: tuple[Addr, ...] = ()
        self._failover = tuple(failover)
        self._targets: dict[Addr, _Target] = {}
        self._started = False  # probes are scheduled only once started
        self.protocol_errors = 0  # a probe answer for a target without a probe out
        self._from_tag = secrets.token_hex(6)
        self._cseq = 0

    # -- targets ------------------------------------------------------------------------
    def start(self, now: float) -> None:
        """Schedules the first probes (one interval from now)."""
        self._started = True
        self._sync(now)
        if self.interval_s > 0:
            for target in self._targets.values():
                if target.next_probe is None and not target.probing:
                    target.next_probe = now + self.interval_s

    @property
    def started(self) -> bool:
        return self._started

    def set_primary(self, targets: Sequence[Addr], now: float) -> None:
        """New targets for `trunk.host` (from DNS); known targets keep their health."""
        self._primary = tuple(targets)
        self._sync(now)

    @property
    def targets(self) -> tuple[Addr, ...]:
        """All targets in configured order, without duplicates."""
        return tuple(dict.fromkeys((*self._primary, *self._failover)))

    def health(self, addr: Addr) -> Health | None:
        target = self._targets.get(addr)
        return target.health if target is not None else None

    def is_live(self, addr: Addr) -> bool:
        target = self._targets.get(addr)
        return target is not None and target.health is not Health.DOWN

    def live_targets(self) -> list[Addr]:
        """Targets in the order calls should try them: live ones, then the dead ones."""
        order = self.targets
        return [a for a in order if self.is_live(a)] + [a for a in order if not self.is_live(a)]

    def first(self) -> Addr | None:
        order = self.live_targets()
        return order[0] if order else None

    def alternative(self, tried: Iterable[Addr], status: int | None) -> Addr | None:
        """Where a call goes next after its INVITE to the last of `tried` failed with
        `status` (None: no answer): another live target for 408, 503 or a timeout, else
        None. The failed target is marked down."""
        tried = list(tried)
        if status is not None and status not in RETRY_STATUSES:
            return None
        if tried:
            self.report_failure(tried[-1])
        for addr in self.targets:
            if addr not in tried and self.is_live(addr):
                return addr
        return None

    def report_failure(self, addr: Addr) -> None:
        """A call attempt to `addr` failed (timeout, 408, 503): treat it as down."""
        target = self._targets.get(addr)
        if target is not None:
            self._fire(target, Probe.FAILED, "call failed")

    # -- probes -------------------------------------------------------------------------
    def get_timer(self) -> float | None:
        if self.interval_s <= 0:
            return None
        due = [t.next_probe for t in self._targets.values() if t.next_probe is not None]
        return min(due) if due else None

    def on_timer(self, now: float, local: Addr) -> list[tuple[Request, Addr]]:
        """The OPTIONS probes due at `now`, each with its destination."""
        if self.interval_s <= 0:
            return []
        out: list[tuple[Request, Addr]] = []
        for target in self._targets.values():
            if target.next_probe is not None and target.next_probe <= now:
                target.next_probe = None
                target.probing = True
                out.append((self._options(target.addr, local), target.addr))
        return out

    def on_response(self, addr: Addr, response: Response, now: float) -> None:
        if response.status < 200:
            return  # provisional: the final answer (or the timeout) decides
        target = self._probe_done(addr, now)
        if target is None:
            return
        failed = response.status in DOWN_STATUSES
        self._fire(target, Probe.FAILED if failed else Probe.ANSWERED, str(response.status))

    def on_timeout(self, addr: Addr, now: float) -> None:
        target = self._probe_done(addr, now)
        if target is not None:
            self._fire(target, Probe.FAILED, "no answer")

    # -- internals ----------------------------------------------------------------------
    def _sync(self, now: float) -> None:
        wanted = self.targets
        for addr in list(self._targets):
            if addr not in wanted:
                del self._targets[addr]
        for addr in wanted:
            if addr not in self._targets:
                probing = self._started and self.interval_s > 0
                first = now + self.interval_s if probing else None
                self._targets[addr] = _Target(addr, next_probe=first)

    def _probe_done(self, addr: Addr, now: float) -> _Target | None:
        target = self._targets.get(addr)
        if target is None or not target.probing:
            # A target DNS dropped while its probe was out, or a stray answer.
            self.protocol_errors += 1
            return None
        target.probing = False
        target.next_probe = now + self.interval_s
        return target

    def _fire(self, target: _Target, probe: Probe, why: str) -> None:
        before = target.health
        target.health = TABLE[(before, probe)]
        if target.health is not before and target.health is not Health.UNKNOWN:
            level = logging.WARNING if target.health is Health.DOWN else logging.INFO
            log.log(
                level,
                "event=trunk_target_%s target=%s:%d reason=%s",
                target.health.value,
                target.addr[0],
                target.addr[1],
                why.replace(" ", "_"),
            )

    def _options(self, dest: Addr, local: Addr) -> Request:
        self._cseq += 1
        host, port = local
        via = Via(self.transport, host, port, (("branch", new_branch()), ("rport", None)))
        ours = Address(URI("sip", "b2bua", host=host, port=port))
        theirs = Address(URI("sip", host=self.domain))
        fields = [
            ("Via", str(via)),
            ("Max-Forwards", "70"),
            ("From", str(ours.with_param("tag", self._from_tag))),
            ("To", str(theirs)),
            ("Call-ID", secrets.token_hex(12) + "@b2bua"),
            ("CSeq", f"{self._cseq} OPTIONS"),
            ("Accept", "application/sdp"),
            *self._headers(),
        ]
        # The Request-URI names the server probed, so a carrier that hosts many
        # domains on one address can still tell which one we mean by the To header.
        uri = URI("sip", host=dest[0], port=dest[1])
        return Request("OPTIONS", uri, Headers.of(*fields))
