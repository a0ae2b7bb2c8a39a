"""RFC 3263 resolution of the trunk's name (b2bua/trunk_dns.py) against a real DNS
server on loopback (dnslib's DNSServer, answering from a table the test controls)."""

from __future__ import annotations

import asyncio
import random
import threading
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from dnslib import AAAA, QTYPE, RCODE, RR, SRV, A
from dnslib.server import BaseResolver, DNSLogger, DNSServer

from b2bua.trunk_dns import (
    Resolution,
    SrvRecord,
    TrunkDnsError,
    keep_resolved,
    make_resolver,
    order_srv,
    resolve_trunk,
)


class TableResolver(BaseResolver):  # type: ignore[misc]
    """Answers from `records`: (name, type) -> list of (rdata, ttl); counts queries."""

    def __init__(self) -> None:
        self.records: dict[tuple[str, str], list[tuple[Any, int]]] = {}
        self.queries: Counter[tuple[str, str]] = Counter()
        self.lock = threading.Lock()

    def set(self, name: str, rtype: str, *rdata: Any, ttl: int = 60) -> None:
        with self.lock:
            self.records[(name.rstrip("."), rtype)] = [(r, ttl) for r in rdata]

    def resolve(self, request: Any, handler: Any) -> Any:
        reply = request.reply()
        name = str(request.q.qname).rstrip(".")
        rtype = QTYPE[request.q.qtype]
        with self.lock:
            self.queries[(name, rtype)] += 1
            answers = self.records.get((name, rtype))
            known = any(key[0] == name for key in self.records)
        if answers is None:
            if not known:
                reply.header.rcode = RCODE.NXDOMAIN
            return reply  # a known name without this type: NOERROR, no answer
        for rdata, ttl in answers:
            reply.add_answer(RR(name, getattr(QTYPE, rtype), rdata=rdata, ttl=ttl))
        return reply


class LoopbackDns:
    def __init__(self) -> None:
        self.table = TableResolver()
        quiet = DNSLogger("-request,-reply,-truncated,-error,-recv,-send,-data")
        self.server = DNSServer(self.table, port=0, address="127.0.0.1", logger=quiet)
        # Our own thread with a short poll: stop() then takes milliseconds, not 0.5 s.
        self.thread = threading.Thread(
            target=self.server.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.server.server.server_address
        return str(host), int(port)

    def stop(self) -> None:
        self.server.server.shutdown()
        self.server.server.server_close()
        self.thread.join(timeout=5)


def trunk_zone(dns: LoopbackDns, port_a: int, port_b: int, ttl: int = 60) -> None:
    """trunk.test: SRV to a (127.0.0.2, priority 10) and b (127.0.0.4, priority 20)."""
    t = dns.table
    t.set(
        "_sip._udp.trunk.test",
        "SRV",
        SRV(priority=20, weight=0, port=port_b, target="b.trunk.test."),
        SRV(priority=10, weight=0, port=port_a, target="a.trunk.test."),
        ttl=ttl,
    )
    t.set("a.trunk.test", "A", A("127.0.0.2"), ttl=ttl)
    t.set("b.trunk.test", "A", A("127.0.0.4"), ttl=ttl)


@pytest.fixture
def dns_server() -> Iterator[LoopbackDns]:
    server = LoopbackDns()
    try:
        yield server
    finally:
        server.stop()


def _resolve(dns: LoopbackDns, host: str, port: int | None, transport: str = "udp") -> Resolution:
    async def go() -> Resolution:
        resolver = make_resolver(dns.address)
        return await resolve_trunk(host, port, transport, resolver, families=("A", "AAAA"))

    return asyncio.run(asyncio.wait_for(go(), 10))


# -- RFC 2782 ordering (pure) ---------------------------------------------------------


def test_srv_order_is_by_priority_first() -> None:
    records = [SrvRecord(20, 100, 1, "c"), SrvRecord(10, 0, 2, "a"), SrvRecord(10, 0, 3, "b")]
    ordered = order_srv(records, random.Random(1))
    assert [r.priority for r in ordered] == [10, 10, 20]
    assert {r.target for r in ordered[:2]} == {"a", "b"}
    assert ordered[2].target == "c"


def test_srv_weights_share_the_first_place_in_proportion() -> None:
    records = [SrvRecord(10, 90, 1, "heavy"), SrvRecord(10, 10, 2, "light")]
    rng = random.Random(42)
    firsts = Counter(order_srv(records, rng)[0].target for _ in range(2000))
    assert 1650 < firsts["heavy"] < 1950  # about 90 %
    assert firsts["heavy"] + firsts["light"] == 2000


def test_zero_weight_is_chosen_rarely_but_never_lost() -> None:
    records = [SrvRecord(10, 0, 1, "zero"), SrvRecord(10, 50, 2, "fifty")]
    rng = random.Random(7)
    orders = [order_srv(records, rng) for _ in range(500)]
    assert all(len(o) == 2 for o in orders)
    firsts = Counter(o[0].target for o in orders)
    assert firsts["zero"] < 50  # 1 in 51 by the RFC's running sum


# -- lookups against the loopback server ------------------------------------------------


def test_srv_targets_in_priority_order_with_their_ports(dns_server: LoopbackDns) -> None:
    trunk_zone(dns_server, 5080, 5090, ttl=42)
    result = _resolve(dns_server, "trunk.test", None)
    assert result.targets == (("127.0.0.2", 5080), ("127.0.0.4", 5090))
    assert result.ttl == 42
    assert dns_server.table.queries[("_sip._udp.trunk.test", "SRV")] == 1


def test_transport_picks_the_srv_service(dns_server: LoopbackDns) -> None:
    dns_server.table.set(
        "_sips._tcp.trunk.test", "SRV", SRV(priority=1, weight=1, port=5061, target="a.trunk.test.")
    )
    dns_server.table.set("a.trunk.test", "A", A("127.0.0.2"))
    result = _resolve(dns_server, "trunk.test", None, transport="tls")
    assert result.targets == (("127.0.0.2", 5061),)
    assert dns_server.table.queries[("_sip._udp.trunk.test", "SRV")] == 0


def test_without_srv_the_name_itself_with_the_default_port(dns_server: LoopbackDns) -> None:
    dns_server.table.set("plain.test", "A", A("127.0.0.2"), A("127.0.0.4"), ttl=30)
    result = _resolve(dns_server, "plain.test", None)
    assert result.targets == (("127.0.0.2", 5060), ("127.0.0.4", 5060))
    assert result.ttl == 30


def test_an_explicit_port_skips_srv(dns_server: LoopbackDns) -> None:
    trunk_zone(dns_server, 5080, 5090)
    dns_server.table.set("trunk.test", "A", A("127.0.0.4"))
    result = _resolve(dns_server, "trunk.test", 5070)
    assert result.targets == (("127.0.0.4", 5070),)
    assert dns_server.table.queries[("_sip._udp.trunk.test", "SRV")] == 0


def test_aaaa_records_follow_a_records(dns_server: LoopbackDns) -> None:
    dns_server.table.set("dual.test", "A", A("127.0.0.2"))
    dns_server.table.set("dual.test", "AAAA", AAAA("::1"))
    result = _resolve(dns_server, "dual.test", 5080)
    assert result.targets == (("127.0.0.2", 5080), ("::1", 5080))


def test_an_ip_address_needs_no_dns(dns_server: LoopbackDns) -> None:
    result = _resolve(dns_server, "127.0.0.2", None, transport="tls")
    assert result.targets == (("127.0.0.2", 5061),)
    assert not dns_server.table.queries


def test_unknown_name_and_refused_service_are_errors(dns_server: LoopbackDns) -> None:
    with pytest.raises(TrunkDnsError, match="no SRV record"):
        _resolve(dns_server, "nowhere.test", None)
    dns_server.table.set(
        "_sip._udp.closed.test", "SRV", SRV(priority=0, weight=0, port=0, target=".")
    )
    with pytest.raises(TrunkDnsError, match="not offered"):
        _resolve(dns_server, "closed.test", None)


def test_an_srv_target_without_address_is_skipped(dns_server: LoopbackDns) -> None:
    trunk_zone(dns_server, 5080, 5090)
    dns_server.table.records.pop(("a.trunk.test", "A"))
    result = _resolve(dns_server, "trunk.test", None)
    assert result.targets == (("127.0.0.4", 5090),)


def test_refresh_follows_the_ttl_and_reports_only_changes(dns_server: LoopbackDns) -> None:
    trunk_zone(dns_server, 5080, 5090, ttl=0)  # TTL 0: the floor (min_refresh_s) applies
    seen: list[tuple[tuple[str, int], ...]] = []

    async def go() -> None:
        task = asyncio.create_task(
            keep_resolved(
                "trunk.test",
                None,
                "udp",
                make_resolver(dns_server.address),
                seen.append,
                families=("A",),
                min_refresh_s=0.2,
                rounds=4,
            )
        )
        await asyncio.sleep(0.3)  # after the first lookup: the carrier moves server a
        dns_server.table.set("a.trunk.test", "A", A("127.0.0.5"), ttl=0)
        await task

    asyncio.run(asyncio.wait_for(go(), 15))
    assert seen == [
        (("127.0.0.2", 5080), ("127.0.0.4", 5090)),
        (("127.0.0.5", 5080), ("127.0.0.4", 5090)),
    ]
    assert dns_server.table.queries[("_sip._udp.trunk.test", "SRV")] == 4


def test_a_failed_refresh_keeps_the_last_targets(dns_server: LoopbackDns) -> None:
    trunk_zone(dns_server, 5080, 5090, ttl=0)
    seen: list[tuple[tuple[str, int], ...]] = []

    async def go() -> None:
        task = asyncio.create_task(
            keep_resolved(
                "trunk.test",
                None,
                "udp",
                make_resolver(dns_server.address),
                seen.append,
                families=("A",),
                min_refresh_s=0.2,
                retry_s=0.2,
                rounds=3,
            )
        )
        await asyncio.sleep(0.1)
        with dns_server.table.lock:
            dns_server.table.records.clear()  # NXDOMAIN from now on
        await task

    asyncio.run(asyncio.wait_for(go(), 15))
    assert seen == [(("127.0.0.2", 5080), ("127.0.0.4", 5090))]  # never emptied
