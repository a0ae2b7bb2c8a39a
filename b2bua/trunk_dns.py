"""Finding the trunk's servers in DNS, RFC 3263 style (an I/O adapter: it queries DNS).

Theory of operation: `trunk.host` may be a domain name. RFC 3263 section 4 says how a
client finds the server for it:

- an IP address is used as it is (no lookup), with the given or the default port;
- a name with an explicit port is looked up with A/AAAA only (section 4.2);
- a name without a port gets an SRV lookup for the configured transport
  (`_sip._udp`, `_sip._tcp`, `_sips._tcp`); the records are ordered by priority and,
  within one priority, by RFC 2782's weighted random selection; each SRV target is then
  resolved to addresses. Without SRV records the name itself is resolved (A/AAAA) with
  the transport's default port (5060, or 5061 for TLS).

We skip NAPTR (section 4.1): the transport is configured (`trunk.transport`), and NAPTR
only serves to pick one. The result is an ordered list of (address, port) targets and
the smallest TTL of the records used; `keep_resolved` re-resolves when that TTL runs out
and hands each new list to the sans-I/O core (the switch's trunk monitor), which never
sees DNS itself. A failed refresh keeps the last good list: a flaky resolver must not
take the trunk away.

`order_srv` is pure (records and a random source in, order out) and tested alone.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import dns.asyncresolver
import dns.exception
import dns.rdatatype
import dns.resolver

log = logging.getLogger("b2bua.trunk_dns")

Addr = tuple[str, int]

# RFC 3263 section 4.1 / RFC 3261 section 19.1.2: default ports per transport.
DEFAULT_PORT = {"udp": 5060, "tcp": 5060, "tls": 5061}
SRV_PREFIX = {"udp": "_sip._udp.", "tcp": "_sip._tcp.", "tls": "_sips._tcp."}
MIN_REFRESH_S = 5.0  # a TTL of 0 must not make us query in a tight loop
MAX_REFRESH_S = 3600.0
RETRY_S = 30.0  # after a failed lookup (the last good targets stay in use)
QUERY_LIFETIME_S = 3.0  # per query, all retries included


@dataclass(frozen=True)
class SrvRecord:
    priority: int
    weight: int
    port: int
    target: str


@dataclass(frozen=True)
class Resolution:
    """Ordered targets (first = preferred) and how long they may be used (seconds)."""

    targets: tuple[Addr, ...]
    ttl: float


class TrunkDnsError(Exception):
    """No usable answer for the trunk's name (NXDOMAIN, no records, a timeout)."""


def is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def order_srv(records: Sequence[SrvRecord], rng: random.Random) -> list[SrvRecord]:
    """RFC 2782 ordering: lowest priority first; within a priority, repeatedly pick
    a record with probability proportional to its weight (zero-weight records first in
    the running list, so they are chosen only rarely, as the RFC's algorithm does)."""
    out: list[SrvRecord] = []
    for priority in sorted({r.priority for r in records}):
        group = [r for r in records if r.priority == priority]
        # RFC 2782: "arrange all SRV RRs (that have not been ordered yet) in any order,
        # except that all those with weight 0 are placed at the beginning of the list".
        remaining = [r for r in group if r.weight == 0] + [r for r in group if r.weight > 0]
        while remaining:  # bounded: one record leaves per pass
            total = sum(r.weight for r in remaining)
            pick = rng.randint(0, total)
            running = 0
            for index, record in enumerate(remaining):
                running += record.weight
                if running >= pick:
                    out.append(remaining.pop(index))
                    break
    return out


def make_resolver(dns_server: Addr | None) -> dns.asyncresolver.Resolver:
    """The system's resolver, or one that asks only `dns_server` (tests, split DNS)."""
    if dns_server is None:
        resolver = dns.asyncresolver.Resolver()
    else:
        resolver = dns.asyncresolver.Resolver(configure=False)
        resolver.nameservers = [dns_server[0]]
        resolver.port = dns_server[1]
    resolver.lifetime = QUERY_LIFETIME_S
    return resolver


async def resolve_trunk(
    host: str,
    port: int | None,
    transport: str,
    resolver: dns.asyncresolver.Resolver,
    *,
    families: Sequence[str] = ("A", "AAAA"),
    rng: random.Random | None = None,
) -> Resolution:
    """The trunk's targets per RFC 3263 (see the module docstring); raises
    TrunkDnsError when nothing usable comes back."""
    transport = transport.lower()
    default = DEFAULT_PORT.get(transport, 5060)
    if is_ip(host):
        return Resolution(((host.strip("[]"), port or default),), MAX_REFRESH_S)
    if port is not None:
        addresses, ttl = await _addresses(resolver, host, families)
        return Resolution(tuple((a, port) for a in addresses), ttl)
    srv_name = SRV_PREFIX.get(transport, "_sip._udp.") + host
    srv = await _srv(resolver, srv_name)
    if srv is None:
        try:
            addresses, ttl = await _addresses(resolver, host, families)
        except TrunkDnsError as exc:
            raise TrunkDnsError(f"no SRV record {srv_name}, and {exc}") from None
        return Resolution(tuple((a, default) for a in addresses), ttl)
    records, srv_ttl = srv
    # RFC 2782: a single record with target "." means "no such service here".
    usable = [r for r in records if r.target not in ("", ".")]
    if not usable:
        raise TrunkDnsError(f"{srv_name} says the service is not offered")
    targets: list[Addr] = []
    ttl = srv_ttl
    for record in order_srv(usable, rng or random.Random()):
        try:
            addresses, a_ttl = await _addresses(resolver, record.target, families)
        except TrunkDnsError as exc:
            log.warning("event=trunk_dns_target_failed target=%s detail=%s", record.target, exc)
            continue  # another SRV target may still work
        ttl = min(ttl, a_ttl)
        targets.extend((a, record.port) for a in addresses if (a, record.port) not in targets)
    if not targets:
        raise TrunkDnsError(f"no SRV target of {srv_name} has an address")
    return Resolution(tuple(targets), ttl)


async def _srv(
    resolver: dns.asyncresolver.Resolver, name: str
) -> tuple[list[SrvRecord], float] | None:
    """SRV records of `name`, or None when there are none (NXDOMAIN, no answer)."""
    try:
        answer = await resolver.resolve(name, "SRV", raise_on_no_answer=True)
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
        return None
    except dns.exception.DNSException as exc:
        raise TrunkDnsError(f"SRV lookup of {name} failed: {exc}") from None
    records = [
        SrvRecord(
            int(r.priority), int(r.weight), int(r.port), r.target.to_text(omit_final_dot=True)
        )
        for r in answer
    ]
    ttl = float(answer.rrset.ttl) if answer.rrset is not None else MIN_REFRESH_S
    return records, ttl


async def _addresses(
    resolver: dns.asyncresolver.Resolver, name: str, families: Sequence[str]
) -> tuple[list[str], float]:
    """Addresses of `name` (A before AAAA, or as `families` orders them) and their TTL."""
    found: list[str] = []
    ttl = MAX_REFRESH_S
    errors: list[str] = []
    for family in families:
        try:
            answer = await resolver.resolve(name, family, raise_on_no_answer=True)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            continue
        except dns.exception.DNSException as exc:
            errors.append(f"{family}: {exc}")
            continue
        found.extend(r.to_text() for r in answer if r.to_text() not in found)
        if answer.rrset is not None:
            ttl = min(ttl, float(answer.rrset.ttl))
    if not found:
        raise TrunkDnsError(
            f"no address for {name}" + (f" ({'; '.join(errors)})" if errors else "")
        )
    return found, ttl


async def keep_resolved(
    host: str,
    port: int | None,
    transport: str,
    resolver: dns.asyncresolver.Resolver,
    on_targets: Callable[[tuple[Addr, ...]], None],
    *,
    families: Sequence[str] = ("A", "AAAA"),
    min_refresh_s: float = MIN_REFRESH_S,
    retry_s: float = RETRY_S,
    rounds: int | None = None,
) -> None:
    """Resolves now and again whenever the TTL runs out, calling `on_targets` with each
    new list (not with an unchanged one). Runs until cancelled, or for `rounds` lookups
    (tests). A failed lookup is logged and retried after `retry_s`; the core keeps the
    targets it has."""
    current: tuple[Addr, ...] | None = None
    done = 0
    while rounds is None or done < rounds:  # the serving task: ends by cancellation
        done += 1
        try:
            result = await resolve_trunk(host, port, transport, resolver, families=families)
        except TrunkDnsError as exc:
            log.warning("event=trunk_dns_failed host=%s detail=%s retry_s=%g", host, exc, retry_s)
            delay = retry_s
        else:
            if result.targets != current:
                current = result.targets
                log.info(
                    "event=trunk_dns host=%s targets=%s ttl_s=%g",
                    host,
                    ",".join(f"{h}:{p}" for h, p in current),
                    result.ttl,
                )
                on_targets(current)
            delay = min(MAX_REFRESH_S, max(min_refresh_s, result.ttl))
        if rounds is not None and done >= rounds:
            return
        await asyncio.sleep(delay)
