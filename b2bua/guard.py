"""Per-source accounting against a hostile network: bans, rate limits, call limits.

Theory of operation: the guard is sans-I/O. The transport asks `admits(ip, now)` before
it parses anything (a banned source, or a stranger while `drop_strangers` is on, costs
no parsing and gets no answer, not even a 400). The switch asks `screen(...)` for every
parsed message and gets a `Verdict`: ALLOW, DROP (silently, counted) or REJECT_503 (a
new call or registration over a limit, or any new call while draining for shutdown).
The registrar reports every failed digest check through `auth_failed(ip, user, now)`.

Source addresses are always the socket's (the caller passes them), never a header's.

Authentication failures per source are kept for `auth_failure_window_s`. From half of
`max_auth_failures` on, the source is slowed down: one request per `SLOW_INTERVAL_S`,
the rest dropped (a password guesser loses most of its rate; a phone with a mistyped
password still gets its answers). At `max_auth_failures` the source is banned for
`ban_s`: everything it sends is dropped. A slowed source that keeps sending faster than
it is answered (as many dropped requests as `max_auth_failures`) is banned as well: a
guesser that only ever gets its unauthenticated requests through would otherwise never
reach the failure count, and a phone does not hammer a server that refused it. Bans
and failures are logged as stable key=value lines (`event=auth_failure src=IP user=U failures=N`,
`event=ban src=IP until=ISO reason=R failures=N`) for fail2ban (docs/fail2ban/).

Rates are counted in fixed windows per source: requests (new transactions) per second
and REGISTERs per minute; over the limit the request is dropped (answering a flood only
amplifies it). The trunk and trusted networks are exempt from rate and per-source call
limits (a trunk legitimately carries every inbound call), never from bans.

Memory is bounded: at most `MAX_TRACKED` sources are remembered; the least recently seen
go first, and entries with nothing left to remember are swept every `SWEEP_S` seconds
(lazily on `screen`, or by `handle_timer` when the I/O layer arms `get_timer`).
"""

from __future__ import annotations

import ipaddress
import logging
import re
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum

from b2bua.config import IPNetwork, SecurityConfig

__all__ = ["Guard", "GuardStats", "Verdict", "sanitize"]

log = logging.getLogger("b2bua.guard")

SLOW_INTERVAL_S = 1.0
REGISTER_WINDOW_S = 60.0
SWEEP_S = 10.0
MAX_TRACKED = 10_000
KNOWN_CACHE_S = 1.0  # registered sources are re-read at most this often


class Verdict(Enum):
    ALLOW = "allow"
    DROP = "drop"
    REJECT_503 = "reject_503"


@dataclass
class GuardStats:
    dropped_banned: int = 0
    dropped_stranger: int = 0
    dropped_rate: int = 0
    dropped_slowdown: int = 0
    rejected_calls: int = 0
    rejected_draining: int = 0
    auth_failures: int = 0
    bans: int = 0


@dataclass
class _Source:
    failures: deque[float] = field(default_factory=deque)
    banned_until: float = 0.0
    last_slow_allow: float = float("-inf")
    slowed_drops: int = 0
    req_window: float = float("-inf")
    req_count: int = 0
    reg_window: float = float("-inf")
    reg_count: int = 0


_SAFE = re.compile(r"[^A-Za-z0-9._@+\-]")


def sanitize(text: str | None, limit: int = 64) -> str:
    """A header-derived value made safe for a log line that fail2ban parses: no spaces,
    no '=', no newlines, bounded length (so a crafted user name can not forge 'src=')."""
    if not text:
        return "-"
    return _SAFE.sub("?", text[:limit])


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_ip(ip: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        addr = ipaddress.ip_address(ip.strip("[]").split("%", 1)[0])
    except ValueError:
        return None
    mapped = getattr(addr, "ipv4_mapped", None)
    return mapped if mapped is not None else addr


class Guard:
    """Per-source-IP accounting; every method takes `now` (monotonic seconds)."""

    def __init__(
        self,
        config: SecurityConfig,
        *,
        trunk_networks: Iterable[IPNetwork] = (),
        static_hosts: Iterable[str] = (),
        registered_sources: Callable[[float], Iterable[str]] | None = None,
        wall_clock: Callable[[float], float] = lambda now: now,
    ) -> None:
        """`trunk_networks`: exempt from rate limits and never strangers.
        `static_hosts`: phones configured with a static contact (never strangers).
        `registered_sources(now)`: the source IPs of live registrations.
        `wall_clock(now)`: epoch seconds for `now`, for the ISO times in log lines."""
        self.config = config
        self.trunk_networks = tuple(trunk_networks)
        self.trusted = tuple(config.trusted_networks)
        self.static_hosts = frozenset(filter(None, (_canon(h) for h in static_hosts)))
        self.registered_sources = registered_sources
        self.wall_clock = wall_clock
        self.draining = False
        self.stats = GuardStats()
        self._sources: OrderedDict[str, _Source] = OrderedDict()
        self._known: frozenset[str] = frozenset()
        self._known_at = float("-inf")
        self._next_sweep = float("-inf")

    # -- classification -------------------------------------------------------------
    def _in(self, ip: str, networks: tuple[IPNetwork, ...]) -> bool:
        addr = _parse_ip(ip)
        return addr is not None and any(addr in net for net in networks)

    def is_trunk(self, ip: str) -> bool:
        return self._in(ip, self.trunk_networks)

    def is_trusted(self, ip: str) -> bool:
        return self._in(ip, self.trusted)

    def is_known(self, ip: str, now: float) -> bool:
        """Trunk, trusted network, static phone, or the source of a live registration."""
        canon = _canon(ip) or ip
        if canon in self.static_hosts or self.is_trunk(canon) or self.is_trusted(canon):
            return True
        if self.registered_sources is None:
            return False
        if canon not in self._known and now - self._known_at >= KNOWN_CACHE_S:
            self._known = frozenset(filter(None, map(_canon, self.registered_sources(now))))
            self._known_at = now
        return canon in self._known

    def is_banned(self, ip: str, now: float) -> bool:
        entry = self._sources.get(_canon(ip) or ip)
        return entry is not None and entry.banned_until > now

    # -- the two gates ----------------------------------------------------------------
    def admits(self, ip: str, now: float) -> bool:
        """The cheap pre-parse gate for the transport: not banned, not a dropped stranger."""
        if self.is_banned(ip, now):
            self.stats.dropped_banned += 1
            return False
        if self.config.drop_strangers and not self.is_known(ip, now):
            self.stats.dropped_stranger += 1
            return False
        return True

    def screen(
        self,
        ip: str,
        now: float,
        *,
        method: str | None,
        new_dialog: bool,
        in_call: bool = False,
        calls_total: int = 0,
        calls_from_source: int = 0,
    ) -> Verdict:
        """Judge one parsed message. `method` is None for a response; `new_dialog` is
        a request without To tag; `in_call` means it belongs to a live call (its peers
        are never strangers); the call counts are the switch's at this moment."""
        ip = _canon(ip) or ip
        if now >= self._next_sweep:
            self.handle_timer(now)
        if self.is_banned(ip, now):
            self.stats.dropped_banned += 1
            return Verdict.DROP
        if self.config.drop_strangers and not in_call and not self.is_known(ip, now):
            self.stats.dropped_stranger += 1
            return Verdict.DROP
        if method is None or method == "ACK":
            return Verdict.ALLOW  # responses and ACKs start no transaction of ours
        exempt = self.is_trunk(ip) or self.is_trusted(ip)
        entry = self._touch(ip)
        if not exempt:
            verdict = self._rates(entry, ip, now, method)
            if verdict is not Verdict.ALLOW:
                return verdict
        if method == "INVITE" and new_dialog:
            if self.draining:
                self.stats.rejected_draining += 1
                return Verdict.REJECT_503
            over_total = calls_total >= self.config.max_calls
            over_source = not exempt and calls_from_source >= self.config.max_calls_per_source
            if over_total or over_source:
                self.stats.rejected_calls += 1
                log.info(
                    "event=call_limit src=%s calls=%d from_source=%d",
                    ip,
                    calls_total,
                    calls_from_source,
                )
                return Verdict.REJECT_503
        return Verdict.ALLOW

    def _rates(self, entry: _Source, ip: str, now: float, method: str) -> Verdict:
        cfg = self.config
        if len(entry.failures) >= self._slow_after():
            self._expire_failures(entry, now)
            if len(entry.failures) >= self._slow_after():
                if now - entry.last_slow_allow < SLOW_INTERVAL_S:
                    self.stats.dropped_slowdown += 1
                    entry.slowed_drops += 1
                    if entry.slowed_drops >= cfg.max_auth_failures:
                        self._ban(ip, entry, now, "slowdown_ignored", len(entry.failures))
                    return Verdict.DROP
                entry.last_slow_allow = now
            else:
                entry.slowed_drops = 0
        if now - entry.req_window >= 1.0:
            entry.req_window, entry.req_count = now, 0
        entry.req_count += 1
        if entry.req_count > cfg.max_transactions_per_source:
            self.stats.dropped_rate += 1
            if entry.req_count == cfg.max_transactions_per_source + 1:
                log.info("event=rate_limit src=%s kind=transactions", ip)
            return Verdict.DROP
        if method == "REGISTER":
            if now - entry.reg_window >= REGISTER_WINDOW_S:
                entry.reg_window, entry.reg_count = now, 0
            entry.reg_count += 1
            if entry.reg_count > cfg.max_registrations_per_source:
                self.stats.dropped_rate += 1
                if entry.reg_count == cfg.max_registrations_per_source + 1:
                    log.info("event=rate_limit src=%s kind=registrations", ip)
                return Verdict.DROP
        return Verdict.ALLOW

    # -- authentication failures ---------------------------------------------------------
    def _slow_after(self) -> int:
        return max(1, self.config.max_auth_failures // 2)

    def _expire_failures(self, entry: _Source, now: float) -> None:
        cutoff = now - self.config.auth_failure_window_s
        while entry.failures and entry.failures[0] <= cutoff:
            entry.failures.popleft()

    def auth_failed(self, ip: str, user: str | None, now: float) -> None:
        """A digest check from `ip` failed (wrong password, unknown user, foreign AOR)."""
        ip = _canon(ip) or ip
        entry = self._touch(ip)
        self._expire_failures(entry, now)
        entry.failures.append(now)
        self.stats.auth_failures += 1
        count = len(entry.failures)
        log.warning("event=auth_failure src=%s user=%s failures=%d", ip, sanitize(user), count)
        if count >= self.config.max_auth_failures:
            self._ban(ip, entry, now, "auth_failures", count)

    def _ban(self, ip: str, entry: _Source, now: float, reason: str, failures: int) -> None:
        if entry.banned_until > now:
            return
        entry.banned_until = now + self.config.ban_s
        entry.failures.clear()  # after the ban the source starts afresh
        entry.slowed_drops = 0
        self.stats.bans += 1
        log.warning(
            "event=ban src=%s until=%s reason=%s failures=%d",
            ip,
            _iso(self.wall_clock(entry.banned_until)),
            reason,
            failures,
        )

    # -- bookkeeping ---------------------------------------------------------------------
    def _touch(self, ip: str) -> _Source:
        entry = self._sources.get(ip)
        if entry is None:
            entry = self._sources[ip] = _Source()
            while len(self._sources) > MAX_TRACKED:
                # Evict the least recently seen source that is not banned, so a flood of
                # spoofed addresses can not wash a ban out.
                victim = next(
                    (k for k, v in self._sources.items() if v.banned_until <= 0.0 and k != ip),
                    None,
                )
                if victim is None:
                    victim = next(iter(self._sources))
                del self._sources[victim]
        else:
            self._sources.move_to_end(ip)
        return entry

    def tracked(self) -> int:
        return len(self._sources)

    def banned_count(self, now: float) -> int:
        """Sources banned at `now` (for the metrics endpoint)."""
        return sum(1 for entry in self._sources.values() if entry.banned_until > now)

    def get_timer(self) -> float | None:
        """When `handle_timer` has work: the next sweep while anything is tracked."""
        return self._next_sweep if self._sources else None

    def handle_timer(self, now: float) -> None:
        """Forget sources with nothing left to remember; log bans that ended."""
        self._next_sweep = now + SWEEP_S
        for ip in list(self._sources):
            entry = self._sources[ip]
            self._expire_failures(entry, now)
            if 0.0 < entry.banned_until <= now:
                entry.banned_until = 0.0
                log.info("event=unban src=%s", ip)
            idle = now - max(entry.req_window, entry.reg_window, entry.last_slow_allow)
            if not entry.failures and entry.banned_until <= now and idle >= REGISTER_WINDOW_S:
                del self._sources[ip]


def _canon(ip: str) -> str | None:
    addr = _parse_ip(ip)
    return None if addr is None else addr.compressed
