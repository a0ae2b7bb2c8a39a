"""The RTP relay on loopback: bridging, latching, continuity, transcoding, RTCP, tap."""

from __future__ import annotations

import asyncio
import itertools
import socket
import statistics
import struct
import time
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest

from media.g711 import (
    alaw_to_ulaw,
    decode_alaw,
    decode_ulaw,
    encode_alaw,
    encode_ulaw,
    ulaw_to_alaw,
)
from rtp.packet import (
    ReceiverReport,
    RtpPacket,
    SenderReport,
    parse_rtcp,
    parse_rtp,
    parse_telephone_event,
)
from rtp.relay import (
    BoundedTap,
    MediaFormat,
    MediaRelay,
    PortAllocator,
    PortsExhaustedError,
    RelayLeg,
    new_event_loop,
)
from rtp.session import ntp_middle32, ntp_timestamp

PCMU = MediaFormat(0, "PCMU", 101)
PCMA = MediaFormat(8, "PCMA", 101)
PCAPS = Path("/usr/share/sip-tester")
RELAY_IP = "127.0.0.1"
# A range of its own, away from other tests running at the same time.
PORTS = (47000, 47999)


def udp_payloads(path: Path) -> list[bytes]:
    """UDP payloads of an Ethernet/IPv4 classic pcap (as in test_rtp_packet, kept local)."""
    data = path.read_bytes()
    assert data[:4] == b"\xd4\xc3\xb2\xa1", "little-endian classic pcap expected"
    offset, out = 24, []
    while offset + 16 <= len(data):
        incl = struct.unpack_from("<I", data, offset + 8)[0]
        frame = data[offset + 16 : offset + 16 + incl]
        offset += 16 + incl
        if frame[12:14] == b"\x08\x00" and frame[23] == 17:
            udp = frame[14 + (frame[14] & 0x0F) * 4 :]
            out.append(udp[8 : struct.unpack_from("!H", udp, 4)[0]])
    return out


def run(test: Callable[[], Coroutine[Any, Any, None]], timeout: float = 10.0) -> None:
    """Run an async test on uvloop (the production loop), bounded in time."""
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        runner.run(asyncio.wait_for(test(), timeout))


class Peer(asyncio.DatagramProtocol):
    """A phone's UDP socket: everything received goes to a queue."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[tuple[bytes, tuple[str, int]]] = asyncio.Queue()
        self.transport: asyncio.DatagramTransport | None = None

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.queue.put_nowait((data, addr))

    @property
    def address(self) -> tuple[str, int]:
        assert self.transport is not None
        host, port = self.transport.get_extra_info("sockname")[:2]
        return host, port

    def send(self, data: bytes, to: tuple[str, int]) -> None:
        assert self.transport is not None
        self.transport.sendto(data, to)

    async def recv(self, count: int, timeout: float = 2.0) -> list[bytes]:
        out = []
        async with asyncio.timeout(timeout):
            for _ in range(count):
                out.append((await self.queue.get())[0])
        return out

    async def nothing(self, wait: float = 0.1) -> bool:
        await asyncio.sleep(wait)
        return self.queue.empty()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


async def peer(ip: str, port: int = 0) -> Peer:
    loop = asyncio.get_running_loop()
    # uvloop calls connection_made later (call_soon), so keep the returned transport.
    transport, protocol = await loop.create_datagram_endpoint(Peer, local_addr=(ip, port))
    protocol.transport = transport
    return protocol


class Call:
    """Two phones, two relay legs, bridged."""

    relay: MediaRelay
    a: Peer
    b: Peer
    leg_a: RelayLeg
    leg_b: RelayLeg

    @classmethod
    async def open(
        cls, fmt_a: MediaFormat = PCMU, fmt_b: MediaFormat = PCMU, **relay_args: Any
    ) -> Call:
        call = cls()
        call.relay = MediaRelay(RELAY_IP, PortAllocator(*PORTS), **relay_args)
        call.a = await peer("127.0.0.2")
        call.b = await peer("127.0.0.3")
        call.leg_a = call.relay.open_leg("a", fmt_a, call.a.address)
        call.leg_b = call.relay.open_leg("b", fmt_b, call.b.address)
        call.relay.bridge(call.leg_a, call.leg_b)
        return call

    def close(self) -> None:
        self.relay.close()
        self.a.close()
        self.b.close()


async def with_call(body: Callable[[Call], Awaitable[None]], **kwargs: Any) -> None:
    call = await Call.open(**kwargs)
    try:
        await body(call)
    finally:
        call.close()


def stream(ssrc: int, seq: int, ts: int, count: int, pt: int = 0, size: int = 160) -> list[bytes]:
    return [
        RtpPacket(pt, seq + i, ts + 160 * i, ssrc, bytes([i % 256]) * size, i == 0).serialize()
        for i in range(count)
    ]


def assert_continuous(packets: list[RtpPacket], ssrc: int) -> None:
    assert {p.ssrc for p in packets} == {ssrc}
    for before, after in itertools.pairwise(packets):
        assert after.sequence == (before.sequence + 1) % 65536
        assert 0 < (after.timestamp - before.timestamp) % 2**32 <= 8000


# ------------------------------------------------------------------------- ports


def test_port_allocator_even_pairs_reuse_and_exhaustion() -> None:
    ports = PortAllocator.from_spec("20001-20007")
    assert ports.capacity == 3  # 20002/3, 20004/5, 20006/7
    got = [ports.allocate() for _ in range(3)]
    assert got == [20002, 20004, 20006]
    with pytest.raises(PortsExhaustedError):
        ports.allocate()
    ports.release(20004)
    assert ports.allocate() == 20004
    with pytest.raises(ValueError, match="not allocated"):
        ports.release(30000)
    for bad in ("20000", "a-b", "5-5"):
        with pytest.raises(ValueError, match="range"):
            PortAllocator.from_spec(bad)


def test_open_leg_skips_ports_taken_by_others() -> None:
    async def body() -> None:
        squatter = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        squatter.bind((RELAY_IP, 0))
        port = squatter.getsockname()[1] & ~1  # its even partner pair is half taken
        squatter.close()
        squatter = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        squatter.bind((RELAY_IP, port + 1))
        try:
            relay = MediaRelay(RELAY_IP, PortAllocator(port, port + 3))
            leg = relay.open_leg("x")
            assert leg.port == port + 2  # the pair with a taken RTCP port was skipped
            assert relay.ports.available == 1
            leg.close()
            assert relay.ports.available == 2
        finally:
            squatter.close()

    run(body)


# ----------------------------------------------------------------------- bridging


def test_bridge_relays_both_ways_with_continuous_seq_ts() -> None:
    async def body(call: Call) -> None:
        sent = stream(0x1111, 65530, 2**32 - 480, 20)  # source wraps seq and ts
        for data in sent:
            call.a.send(data, call.leg_a.address)
        got = [parse_rtp(d) for d in await call.b.recv(20)]
        assert_continuous(got, call.leg_b.outbound.ssrc)
        assert [p.payload for p in got] == [parse_rtp(d).payload for d in sent]
        assert [p.payload_type for p in got] == [0] * 20
        assert [p.timestamp - got[0].timestamp for p in got] == [160 * i for i in range(20)]
        assert got[0].marker
        for data in stream(0x2222, 7, 70, 10):
            call.b.send(data, call.leg_b.address)
        back = [parse_rtp(d) for d in await call.a.recv(10)]
        assert_continuous(back, call.leg_a.outbound.ssrc)
        assert call.leg_a.counters.forwarded == 20
        assert call.leg_b.counters.forwarded == 10

    run(lambda: with_call(body))


def test_rtp_bleed_source_dropped_and_counted() -> None:
    async def body(call: Call) -> None:
        for data in stream(1, 0, 0, 3):
            call.a.send(data, call.leg_a.address)
        await call.b.recv(3)
        intruder = await peer("127.0.0.4")
        try:
            for data in stream(666, 0, 0, 5):
                intruder.send(data, call.leg_a.address)
            assert await call.b.nothing()
            assert call.leg_a.counters.dropped_unlatched == 5
            assert call.leg_a.latch.dropped == 5
            # The real phone still gets through.
            call.a.send(stream(1, 3, 480, 1)[0], call.leg_a.address)
            assert parse_rtp((await call.b.recv(1))[0]).payload == bytes(160)
        finally:
            intruder.close()

    run(lambda: with_call(body))


def test_nat_peer_latched_when_sdp_address_is_silent() -> None:
    async def body(call: Call) -> None:
        # Phone A actually sends from another address than its SDP said (NAT).
        natted = await peer("127.0.0.5")
        try:
            natted.send(stream(1, 0, 0, 1)[0], call.leg_a.address)
            await call.b.recv(1)
            call.b.send(stream(2, 0, 0, 1)[0], call.leg_b.address)
            assert len(await natted.recv(1)) == 1  # answers go to the latched source
            assert await call.a.nothing(0.05)
        finally:
            natted.close()

    run(lambda: with_call(body))


def test_source_change_behind_leg_keeps_output_continuous() -> None:
    async def body(call: Call) -> None:
        # Announcement injected into leg B first, then A's audio is bridged to it.
        for i in range(5):
            call.leg_b.inject(bytes(160), ssrc=0xA11, seq=100 + i, ts=8000 + 160 * i)
        for data in stream(0x1, 40000, 123, 5) + stream(0x2, 9, 999_999, 5):
            call.a.send(data, call.leg_a.address)
        got = [parse_rtp(d) for d in await call.b.recv(15)]
        assert_continuous(got, call.leg_b.outbound.ssrc)
        assert [i for i, p in enumerate(got) if p.marker] == [0, 5, 10]
        assert call.leg_b.counters.injected == 5

    run(lambda: with_call(body))


@pytest.mark.parametrize(("fmt_a", "fmt_b"), [(PCMU, PCMA), (PCMA, PCMU)])
def test_transcoding_bit_exact(fmt_a: MediaFormat, fmt_b: MediaFormat) -> None:
    async def body(call: Call) -> None:
        codes = bytes(range(256))
        call.a.send(
            RtpPacket(fmt_a.payload_type, 1, 0, 5, codes, csrcs=(9,)).serialize(),
            call.leg_a.address,
        )
        got = parse_rtp((await call.b.recv(1))[0])
        assert got.payload_type == fmt_b.payload_type
        assert got.csrcs == (9,)
        if fmt_a.encoding == "PCMU":
            assert got.payload == encode_alaw(decode_ulaw(codes))
        else:
            assert got.payload == encode_ulaw(decode_alaw(codes))

    run(lambda: with_call(body, fmt_a=fmt_a, fmt_b=fmt_b))


def test_g711a_capture_played_through_transcoding_bridge() -> None:
    """Real PCMA packets from sipp's capture arrive as exact PCMU on the other side."""
    payloads = udp_payloads(PCAPS / "g711a.pcap")[:60]

    async def body(call: Call) -> None:
        for data in payloads:
            call.a.send(data, call.leg_a.address)
        got = [parse_rtp(d) for d in await call.b.recv(len(payloads))]
        assert_continuous(got, call.leg_b.outbound.ssrc)
        assert [p.payload for p in got] == [alaw_to_ulaw(parse_rtp(d).payload) for d in payloads]
        assert {p.payload_type for p in got} == {0}

    run(lambda: with_call(body, fmt_a=PCMA, fmt_b=PCMU))


def test_telephone_events_pass_with_payload_type_mapped() -> None:
    """sipp's RFC 4733 capture (PT 101) passes through to a leg that uses PT 96."""
    payloads = udp_payloads(PCAPS / "dtmf_2833_1.pcap")

    async def body(call: Call) -> None:
        for data in payloads:
            call.a.send(data, call.leg_a.address)
        got = [parse_rtp(d) for d in await call.b.recv(len(payloads))]
        assert {p.payload_type for p in got} == {96}
        assert [parse_telephone_event(p.payload) for p in got] == [
            parse_telephone_event(parse_rtp(d).payload) for d in payloads
        ]
        assert len({p.timestamp for p in got}) == 1  # one event keeps one timestamp
        assert [i for i, p in enumerate(got) if p.marker] == [0]

    run(lambda: with_call(body, fmt_b=MediaFormat(0, "PCMU", 96)))


def test_telephone_event_dropped_when_other_leg_has_none() -> None:
    async def body(call: Call) -> None:
        call.a.send(stream(1, 0, 0, 1, pt=101, size=4)[0], call.leg_a.address)
        call.a.send(stream(1, 1, 160, 1)[0], call.leg_a.address)
        assert len(await call.b.recv(1)) == 1
        assert await call.b.nothing(0.05)
        assert call.leg_a.counters.dropped_unsupported == 1

    run(lambda: with_call(body, fmt_b=MediaFormat(0, "PCMU", None)))


def test_malformed_packets_dropped_and_counted() -> None:
    async def body(call: Call) -> None:
        bad = [b"hello", b"\x40" + bytes(20), b"\x8f" + bytes(20), b"\x81\xc8" + bytes(30)]
        for data in bad:
            call.a.send(data, call.leg_a.address)
        call.a.send(stream(1, 0, 0, 1)[0], call.leg_a.address)
        assert len(await call.b.recv(1)) == 1
        assert call.leg_a.counters.dropped_malformed == 4
        assert call.leg_a.counters.received == 5
        assert call.leg_a.latch.latched == call.a.address  # garbage never latches

    run(lambda: with_call(body))


# --------------------------------------------------------------------------- tap


def test_tap_gets_each_packet_without_blocking() -> None:
    async def body(call: Call) -> None:
        tap = BoundedTap(max_per_leg=4)
        call.leg_a.tap = tap
        for data in stream(0x77, 10, 1000, 6):
            call.a.send(data, call.leg_a.address)
        await call.b.recv(6)
        assert call.leg_a.counters.forwarded == 6  # forwarding unaffected by a full tap
        assert tap.overflow == 2
        items = tap.drain("a")
        assert [(p.seq, p.ts, p.ssrc, p.payload_type) for p in items] == [
            (10 + i, 1000 + 160 * i, 0x77, 0) for i in range(4)
        ]
        assert items[0].marker
        assert items[0].leg == "a"
        assert items[1].payload == bytes([1]) * 160
        assert tap.drain("a") == []

    run(lambda: with_call(body))


def test_legs_sharing_the_relays_buffers_keep_every_packet_their_own() -> None:
    """All legs of a relay read into one set of buffers (rtp.leg.LegBuffers): packets of
    two bridges, taps and injections read in the same loop iterations stay intact."""

    async def body(call: Call) -> None:
        c, d = await peer("127.0.0.4"), await peer("127.0.0.5")
        try:
            leg_c = call.relay.open_leg("c", PCMU, c.address)
            leg_d = call.relay.open_leg("d", PCMA, d.address)  # transcoded: rewritten in place
            call.relay.bridge(leg_c, leg_d)
            injected = b"\x55" * 32
            tap = BoundedTap()
            for leg in (call.leg_a, call.leg_b, leg_c, leg_d):
                leg.tap = tap
            streams = {
                "a": (call.a, call.leg_a, stream(0xA, 1, 0, 10, size=160)),
                "b": (call.b, call.leg_b, stream(0xB, 1, 0, 10, size=80)),
                "c": (c, leg_c, stream(0xC, 1, 0, 10, size=120)),
                "d": (d, leg_d, stream(0xD, 1, 0, 10, pt=8, size=40)),
            }
            for i in range(10):  # interleaved, all queued before the relay reads any
                for sender, leg, packets in streams.values():
                    sender.send(packets[i], leg.address)
                if i == 5:
                    assert leg_c.inject(injected, ssrc=0x99, seq=1, ts=0)
            got = {
                "a": await call.b.recv(10),
                "b": await call.a.recv(10),
                "c": await d.recv(10),
                "d": await c.recv(11),  # and the injected packet, out of leg c to c
            }
            convert = {"c": ulaw_to_alaw, "d": alaw_to_ulaw}
            for name, (_, _, sent) in streams.items():
                payloads = [parse_rtp(p).payload for p in sent]
                to_wire = convert.get(name, bytes)
                received = [parse_rtp(p).payload for p in got[name]]
                assert [p for p in received if p != injected] == [to_wire(p) for p in payloads]
                # The tap holds each original payload, not a view of the shared buffer.
                assert [p.payload for p in tap.drain(name)] == payloads, name
            assert [parse_rtp(p).payload for p in got["d"]].count(injected) == 1
            assert await c.nothing() and await d.nothing()
        finally:
            c.close()
            d.close()

    run(lambda: with_call(body))


def test_tap_gets_original_law_when_transcoding() -> None:
    async def body(call: Call) -> None:
        tap = BoundedTap()
        call.leg_a.tap = tap
        call.a.send(RtpPacket(0, 1, 0, 5, bytes(range(160))).serialize(), call.leg_a.address)
        await call.b.recv(1)
        (item,) = tap.drain_all()["a"]
        assert item.payload == bytes(range(160))
        assert item.payload_type == 0

    run(lambda: with_call(body, fmt_b=PCMA))


# -------------------------------------------------------------------------- RTCP


def test_rtcp_terminated_and_answered_with_reports() -> None:
    async def body() -> None:
        relay = MediaRelay(RELAY_IP, PortAllocator(*PORTS), rtcp_interval=0.05)
        a_rtp = await peer("127.0.0.6", 47500)
        a_rtcp = await peer("127.0.0.6", 47501)
        b = await peer("127.0.0.3")
        try:
            leg_a = relay.open_leg("a", PCMU, a_rtp.address)
            leg_b = relay.open_leg("b", PCMU, b.address)
            relay.bridge(leg_a, leg_b)
            for data in stream(0x5, 0, 0, 3):
                a_rtp.send(data, leg_a.address)
            for data in stream(0x6, 0, 0, 2):
                b.send(data, leg_b.address)
            await a_rtp.recv(2)
            await b.recv(3)
            ntp = ntp_timestamp(time.time())
            sr = SenderReport(0x5, ntp, 480, 3, 480).serialize()
            a_rtcp.send(sr, (RELAY_IP, leg_a.port + 1))
            a_rtcp.send(b"\x80\xc8junk", (RELAY_IP, leg_a.port + 1))
            deadline = asyncio.get_running_loop().time() + 2
            reports: list[SenderReport | ReceiverReport] = []
            while asyncio.get_running_loop().time() < deadline:
                (data,) = await a_rtcp.recv(1)
                first = parse_rtcp(data)[0]
                assert isinstance(first, SenderReport | ReceiverReport)
                assert first.ssrc == leg_a.outbound.ssrc
                reports.append(first)
                if first.reports and first.reports[0].lsr:
                    break
            # We sent A two packets, so reports after that are SRs counting them.
            senders = [r for r in reports if isinstance(r, SenderReport)]
            assert senders
            assert senders[0].packet_count == 2
            report = reports[-1]
            block = report.reports[0]
            assert (block.ssrc, block.highest_seq) == (0x5, 2)
            assert block.lsr == ntp_middle32(ntp)
            assert leg_a.counters.rtcp_received == 1
            assert leg_a.counters.rtcp_malformed == 1
            assert await b.nothing(0.05)  # RTCP is never forwarded to the other leg
        finally:
            relay.close()
            for p in (a_rtp, a_rtcp, b):
                p.close()

    run(body)


def test_close_sends_rtcp_bye_and_frees_ports() -> None:
    async def body() -> None:
        relay = MediaRelay(RELAY_IP, PortAllocator(*PORTS))
        rtcp = await peer("127.0.0.7", 47601)
        try:
            leg = relay.open_leg("a", PCMU, ("127.0.0.7", 47600))
            free = relay.ports.available
            leg.close()
            parts = parse_rtcp((await rtcp.recv(1))[0])
            assert type(parts[-1]).__name__ == "Bye"
            assert relay.ports.available == free + 1
            assert relay.legs == {}
        finally:
            rtcp.close()

    run(body)


# -------------------------------------------------------------------- inactivity


def test_inactivity_reported_unless_on_hold() -> None:
    async def body() -> None:
        relay = MediaRelay(RELAY_IP, PortAllocator(*PORTS), inactivity_timeout=0.1)
        dead: list[str] = []
        try:
            idle = relay.open_leg("idle", on_inactive=lambda leg: dead.append(leg.leg_id))
            held = relay.open_leg("held", on_inactive=lambda leg: dead.append(leg.leg_id))
            held.hold()
            await asyncio.sleep(0.3)
            assert dead == ["idle"]
            assert idle.inactivity.paused
            held.resume()
            await asyncio.sleep(0.2)
            assert dead == ["idle", "held"]
        finally:
            relay.close()

    run(body)


def test_new_sdp_relatches() -> None:
    async def body(call: Call) -> None:
        call.a.send(stream(1, 0, 0, 1)[0], call.leg_a.address)
        await call.b.recv(1)
        moved = await peer("127.0.0.8")
        try:
            moved.send(stream(1, 1, 160, 1)[0], call.leg_a.address)
            assert await call.b.nothing(0.05)
            call.leg_a.set_remote(moved.address)  # re-INVITE with a new c=/m= line
            moved.send(stream(1, 2, 320, 1)[0], call.leg_a.address)
            assert len(await call.b.recv(1)) == 1
        finally:
            moved.close()

    run(lambda: with_call(body))


def test_forwarding_latency_on_loopback() -> None:
    """Median one-packet round trip through the relay; generous for a shared 2-core box."""

    async def body(call: Call) -> None:
        delays = []
        for data in stream(1, 0, 0, 50):
            start = time.perf_counter()
            call.a.send(data, call.leg_a.address)
            await call.b.recv(1)
            delays.append(time.perf_counter() - start)
        assert statistics.median(delays) < 0.005

    run(lambda: with_call(body))
