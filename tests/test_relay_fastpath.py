"""The relay's per-packet fast path does exactly what the full path does.

``RelayLeg._on_rtp_readable`` forwards the common case (plain RTP of the leg's audio
type from the latched source, the next packet of the stream it already follows)
inline, and hands everything else to ``_handle_rtp``. These tests run the same packet
sequences twice, once through ``_on_rtp_readable`` and once through the full path only
(``_read_rtp_full``), on legs whose sockets are stand-ins (so both runs read the same
datagrams at the same clock values), and compare everything the legs hold afterwards:
the bytes sent, counters, RFC 3550 statistics (jitter to the last float bit), the
outbound stream, latching, inactivity and the tap's records. Sequences cover SSRC
changes, sequence wrap, reordering, duplicates, jumps, unlatched sources, RFC 4733
events, CN, padding/extension/CSRC headers, malformed packets, format changes,
unbridging, transcoding and SRTP legs. Two loopback tests check the read batching with
real sockets.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import socket
import struct
from collections.abc import Callable, Iterator
from typing import Any

import pylibsrtp
import pytest

from rtp.relay import (
    BoundedTap,
    Bridge,
    MediaFormat,
    MediaRelay,
    PortAllocator,
    RelayLeg,
    TapPacket,
    new_event_loop,
)
from rtp.session import Inactivity, OutboundStream, ReceiveStats
from rtp.srtp import SrtpKey, SrtpLeg

PORTS = (48700, 48799)  # a range of its own, away from other tests running at once
PCMU = MediaFormat(0, "PCMU", 101)
PCMA = MediaFormat(8, "PCMA", 101)
A_SDP = ("127.0.0.2", 40100)  # the phones' SDP addresses: nothing listens there
B_SDP = ("127.0.0.3", 40100)
A_OTHER = ("127.0.0.2", 40300)  # a source the latch must refuse once latched
SUITE = "AES_CM_128_HMAC_SHA1_80"


def rtp(
    seq: int,
    ts: int,
    ssrc: int,
    pt: int = 0,
    payload: bytes = bytes(range(160)),
    *,
    marker: bool = False,
    first: int = 0x80,
    extra: bytes = b"",
) -> bytes:
    return (
        struct.pack("!BBHII", first, (0x80 if marker else 0) | pt, seq & 0xFFFF, ts, ssrc)
        + extra
        + payload
    )


class FakeSocket:
    """A leg's RTP socket without the kernel: queued datagrams in, sent ones recorded."""

    def __init__(self, real: socket.socket) -> None:
        self.real = real
        self.queue: list[tuple[bytes, tuple[str, int]]] = []
        self.sent: list[tuple[bytes, tuple[str, int]]] = []
        self.reads = 0

    def recvfrom_into(self, buf: bytearray) -> tuple[int, tuple[str, int]]:
        self.reads += 1
        if not self.queue:
            raise BlockingIOError(11, "Resource temporarily unavailable")
        data, source = self.queue.pop(0)
        size = min(len(data), len(buf))  # a longer datagram is truncated, as by the kernel
        buf[:size] = data[:size]
        return size, source

    def sendto(self, data: bytes | memoryview, address: tuple[str, int]) -> int:
        self.sent.append((bytes(data), address))
        return len(data)

    def fileno(self) -> int:
        return self.real.fileno()

    def close(self) -> None:
        self.real.close()


class Clock:
    """The legs' loop with a clock the test sets (timers still go to the real loop)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.now = 1000.0

    def time(self) -> float:
        return self.now

    def __getattr__(self, name: str) -> Any:
        return getattr(self.loop, name)


@dataclasses.dataclass
class Call:
    relay: MediaRelay
    clock: Clock
    a: RelayLeg
    b: RelayLeg
    socks: dict[str, FakeSocket]
    tap: BoundedTap
    bridge: Bridge | None
    full_calls: dict[str, int]


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = new_event_loop()
    try:
        yield loop
    finally:
        loop.close()


def open_call(
    loop: asyncio.AbstractEventLoop,
    fmt_a: MediaFormat = PCMU,
    fmt_b: MediaFormat = PCMU,
    b_remote: tuple[str, int] | None = B_SDP,
) -> Call:
    relay = MediaRelay("127.0.0.1", PortAllocator(*PORTS), rtcp_interval=3600.0, loop=loop)
    clock = Clock(loop)
    a = relay.open_leg("a", fmt_a, A_SDP)
    b = relay.open_leg("b", fmt_b, b_remote)
    socks: dict[str, FakeSocket] = {}
    full_calls = {"a": 0, "b": 0}
    for leg, ssrc in ((a, 0xA0A0A0A0), (b, 0xB0B0B0B0)):
        socks[leg.leg_id] = FakeSocket(leg._rtp_sock)
        leg._rtp_sock = socks[leg.leg_id]  # type: ignore[assignment]
        leg._loop = clock  # type: ignore[assignment]
        # Same numbering in both runs (they are random in production).
        leg.outbound = OutboundStream(ssrc, 1000, 50_000, leg.fmt.clock_rate)
        leg.inactivity = Inactivity(60.0, clock.now)
        full = leg._handle_rtp

        def counted(
            size: int, source: Any, now: float, *, _full: Any = full, _id: str = leg.leg_id
        ) -> None:
            full_calls[_id] += 1
            _full(size, source, now)

        leg._handle_rtp = counted  # type: ignore[method-assign]
    bridge = relay.bridge(a, b)  # after the swap: a leg binds its partner's sendto on link
    tap = BoundedTap(max_per_leg=40)
    a.tap = b.tap = tap
    return Call(relay, clock, a, b, socks, tap, bridge, full_calls)


def snapshot(call: Call) -> dict[str, Any]:
    """Everything the legs hold, for comparing two runs."""
    out: dict[str, Any] = {"overflow": call.tap.overflow}
    for leg in (call.a, call.b):
        out[leg.leg_id] = {
            "sent": call.socks[leg.leg_id].sent,
            "counters": dataclasses.asdict(leg.counters),
            "stats": {name: getattr(leg.stats, name) for name in ReceiveStats.__slots__},
            "outbound": {name: getattr(leg.outbound, name) for name in OutboundStream.__slots__},
            "latch": (leg.latch.state, leg.latch.latched, leg.latch.dropped),
            "inactivity": leg.inactivity.last_packet,
            "report": leg.stats.report_block(call.clock.now + 1.0),
            "tap": call.tap.drain(leg.leg_id),
        }
    return out


Event = tuple[float, str, Any]  # (time, leg or "op", datagram and source, or an operation)


def play(call: Call, events: list[Event], *, fast: bool) -> None:
    """Queue each batch (same time, same leg) and run one readable callback for it."""
    i = 0
    while i < len(events):
        now, where, item = events[i]
        call.clock.now = now
        if where == "op":
            item(call)
            i += 1
            continue
        sock = call.socks[where]
        while i < len(events) and events[i][:2] == (now, where):
            sock.queue.append(events[i][2])
            i += 1
        leg = call.a if where == "a" else call.b
        while sock.queue:  # a real loop calls again while the socket is readable
            leg._on_rtp_readable() if fast else leg._read_rtp_full()


def run_both(
    loop: asyncio.AbstractEventLoop,
    events: list[Event],
    setup: Callable[[Call], None] | None = None,
    **kwargs: Any,
) -> tuple[dict[str, Any], dict[str, Any], Call]:
    results = []
    calls = []
    for fast in (True, False):
        call = open_call(loop, **kwargs)
        try:
            if setup is not None:
                setup(call)
            play(call, events, fast=fast)
            results.append(snapshot(call))
            calls.append(call)
        finally:
            call.relay.close()
    return results[0], results[1], calls[0]


def stream(
    count: int, *, ssrc: int = 0x1234, seq: int = 100, ts: int = 8000, t0: float = 1000.0
) -> list[Event]:
    """An in-order 20 ms stream from A's SDP address with a little arrival jitter."""
    rng = random.Random(ssrc ^ seq)
    return [
        (
            t0 + 0.02 * k + rng.random() * 0.004,
            "a",
            (rtp(seq + k, (ts + 160 * k) & 0xFFFFFFFF, ssrc, marker=k == 0), A_SDP),
        )
        for k in range(count)
    ]


# ------------------------------------------------------------ targeted sequences


def test_in_order_stream_takes_the_fast_path_and_matches_the_full_path(
    loop: asyncio.AbstractEventLoop,
) -> None:
    events = stream(60)
    fast, full, call = run_both(loop, events)
    assert fast == full
    a = fast["a"]
    assert a["counters"]["forwarded"] == 60
    assert a["stats"]["_jitter"] > 0  # the arrival jitter was accounted
    assert a["sent"] == []  # A's media goes out of B's socket, to B's phone
    sent = call.socks["b"].sent
    assert sent == fast["b"]["sent"]
    assert len(sent) == 60 and all(addr == B_SDP for _, addr in sent)
    # The first three (latch, probation, outbound rebase) take the full path, no more.
    assert call.full_calls["a"] <= 3


def test_forwarded_header_and_tap_record(loop: asyncio.AbstractEventLoop) -> None:
    events = stream(5, ssrc=0x77, seq=10, ts=1000)
    fast, full, call = run_both(loop, events, fmt_b=MediaFormat(96, "PCMU", 101))
    assert fast == full
    last, addr = call.socks["b"].sent[-1]
    first, second, seq, ts, ssrc = struct.unpack_from("!BBHII", last)
    assert (first, second, ssrc, addr) == (0x80, 96, 0xB0B0B0B0, B_SDP)  # B's PT, our SSRC
    assert (seq, ts) == (1004, 50_000 + 4 * 160)
    assert last[12:] == bytes(range(160))
    records = fast["a"]["tap"]
    assert [type(r) for r in records] == [TapPacket] * 5
    assert records[-1] == TapPacket("a", events[-1][0], 14, 1640, 0x77, 0, False, bytes(range(160)))
    assert records[-1].payload_type == 0 and isinstance(records[-1].payload, bytes)


def test_ssrc_change_mid_stream(loop: asyncio.AbstractEventLoop) -> None:
    events = stream(20) + stream(20, ssrc=0x9999, seq=60000, ts=123, t0=1000.5)
    fast, full, call = run_both(loop, events)
    assert fast == full
    seqs = [struct.unpack_from("!H", d, 2)[0] for d, _ in call.socks["b"].sent]
    assert seqs == list(range(1000, 1040))  # one continuous stream for B
    markers = [d[1] & 0x80 for d, _ in call.socks["b"].sent]
    assert markers[20] == 0x80  # the new source is marked
    assert fast["a"]["stats"]["ssrc"] == 0x9999


def test_sequence_wrap(loop: asyncio.AbstractEventLoop) -> None:
    events = stream(40, seq=65520, ts=0xFFFFF000)
    fast, full, call = run_both(loop, events)
    assert fast == full
    assert fast["a"]["stats"]["_cycles"] == 0x10000
    assert call.full_calls["a"] <= 3  # the wrap itself stays on the fast path


def test_reorder_duplicate_gap_and_jump(loop: asyncio.AbstractEventLoop) -> None:
    base = stream(30)
    events = [*base[:10], base[11], base[10], *base[12:15], base[14], *base[17:25]]
    fast, full, _call = run_both(loop, events)
    assert fast == full
    # 25 expected, 24 received (two lost, one duplicate counts as received: A.3)
    assert fast["a"]["report"].cumulative_lost == 1
    t = base[24][0]
    # A jump beyond MAX_DROPOUT, twice in a row (A.1 accepts the restart), then on.
    events += [
        (t + 0.02 * k, "a", (rtp(200 + 5000 + k, 99 + 160 * k, 0x1234), A_SDP)) for k in range(6)
    ]
    fast, full, _call = run_both(loop, events)
    assert fast == full
    assert fast["a"]["stats"]["_received"] == 5 and fast["a"]["report"].highest_seq == 5205


def test_unlatched_source_and_malformed_packets(loop: asyncio.AbstractEventLoop) -> None:
    base = stream(20)
    t = base[5][0]
    noise: list[Event] = [
        (t, "a", (rtp(105, 800, 0x1234), A_OTHER)),  # RTP bleed: refused, counted
        (t, "a", (b"\x80\x00\x00", A_SDP)),  # short
        (t, "a", (b"\x40" + bytes(40), A_SDP)),  # version 1
        (t, "a", (rtp(1, 1, 1, pt=72), A_SDP)),  # RTCP on the RTP port
        (t, "a", (bytes([0x80]) + bytes(2100), A_SDP)),  # truncated by the read buffer
    ]
    events = base[:5] + noise + base[5:]
    fast, full, _call = run_both(loop, events)
    assert fast == full
    counters = fast["a"]["counters"]
    assert counters["dropped_unlatched"] == 1 and counters["dropped_malformed"] == 4
    assert counters["forwarded"] == 20


def test_header_variants_take_the_full_path(loop: asyncio.AbstractEventLoop) -> None:
    base = stream(20)
    pad = bytes(range(150)) + bytes([0, 0, 0, 4])
    events = base[:5]
    events += [
        (base[5][0], "a", (rtp(105, 8800, 0x1234, payload=pad, first=0xA0), A_SDP)),  # P
        (base[6][0], "a", (rtp(106, 8960, 0x1234, first=0x81, extra=b"\0\0\0\x05"), A_SDP)),
        (base[7][0], "a", (rtp(107, 9120, 0x1234, first=0x90, extra=b"\xbe\xde\0\x01abcd"), A_SDP)),
        (base[8][0], "a", (rtp(108, 9280, 0x1234, payload=bytes(80)), A_SDP)),  # short frame
    ]
    events += base[9:]
    fast, full, _call = run_both(loop, events)
    assert fast == full
    taps = fast["a"]["tap"]
    assert taps[5].payload == bytes(range(150))  # the padding is not audio
    assert taps[6].payload == taps[7].payload == bytes(range(160))


def test_telephone_events_and_comfort_noise(loop: asyncio.AbstractEventLoop) -> None:
    base = stream(30)
    events = []
    for k, ev in enumerate(base):
        if 10 <= k < 16:  # an RFC 4733 digit in place of audio (same clock, same seq)
            data = rtp(100 + k, 8000 + 160 * 10, 0x1234, pt=101, payload=bytes([1, 0x8A, 0, 160]))
            events.append((ev[0], "a", (data, A_SDP)))
        elif k == 20:  # CN (static PT 13) passes with its own number
            events.append(
                (ev[0], "a", (rtp(100 + k, 8000 + 160 * k, 0x1234, pt=13, payload=b"\x40"), A_SDP))
            )
        else:
            events.append(ev)
    fast, full, call = run_both(loop, events, fmt_b=MediaFormat(0, "PCMU", 96))
    assert fast == full
    pts = [d[1] & 0x7F for d, _ in call.socks["b"].sent]
    assert pts[10:16] == [96] * 6 and pts[20] == 13 and pts[25] == 0  # mapped to B's PT
    # B negotiated no telephone-event: digits are dropped, audio still flows.
    fast, full, call = run_both(loop, events, fmt_b=MediaFormat(0, "PCMU", None))
    assert fast == full
    assert fast["a"]["counters"]["dropped_unsupported"] == 6
    assert len(call.socks["b"].sent) == 24


def test_statistics_and_outbound_follow_different_sources(
    loop: asyncio.AbstractEventLoop,
) -> None:
    """The receive statistics follow every accepted packet, the outbound stream only the
    forwarded ones: events B can not take (dropped) from another SSRC move the
    statistics (past probation), not the outbound stream; the next audio packet must
    reset the statistics."""
    base = stream(20)
    t = base[9][0] + 0.001
    event = bytes([1, 0x8A, 0, 160])
    intruders = [
        (t, "a", (rtp(105 + k, 0, 0x5555, pt=101, payload=event), A_SDP)) for k in range(3)
    ]
    events = [*base[:10], *intruders, *base[10:]]
    fast, full, _call = run_both(loop, events, fmt_b=MediaFormat(0, "PCMU", None))
    assert fast == full
    assert fast["a"]["stats"]["ssrc"] == 0x1234 and fast["a"]["counters"]["forwarded"] == 20


def test_frame_length_after_a_silence_gap_sets_the_next_rebase(
    loop: asyncio.AbstractEventLoop,
) -> None:
    """A timestamp leap with the next sequence number (silence suppression) is not a
    frame length: a rebase soon after advances by the last plausible step."""
    base = stream(10)
    t = base[-1][0]
    leap = (t + 0.02, "a", (rtp(110, 8000 + 160 * 9 + 16000, 0x1234), A_SDP))  # ts + 2 s
    new_source = (t + 0.021, "a", (rtp(1, 5, 0x4444), A_SDP))
    fast, full, _call = run_both(loop, [*base, leap, new_source])
    assert fast == full
    assert fast["b"]["outbound"]["_ts_step"] == 160


def test_rtcp_payload_type_numbers_never_take_the_fast_path(
    loop: asyncio.AbstractEventLoop,
) -> None:
    """A bogus negotiation of PT 72 (it collides with RTCP, RFC 5761 4): such packets are
    dropped as malformed even once events from the same stream primed the fast path."""
    fmt = MediaFormat(72, "PCMU", 101)
    event = bytes([1, 0x0A, 0, 160])
    events = [
        (
            t,
            w,
            (
                rtp(
                    100 + k,
                    160 * k,
                    9,
                    pt=101 if k < 5 else 72,
                    payload=event if k < 5 else bytes(160),
                ),
                src,
            ),
        )
        for k, (t, w, (_, src)) in enumerate(stream(10))
    ]
    fast, full, _call = run_both(loop, events, fmt_a=fmt, fmt_b=fmt)
    assert fast == full
    assert fast["a"]["counters"]["dropped_malformed"] == 5
    assert fast["a"]["counters"]["forwarded"] == 5


def test_transcoding_legs(loop: asyncio.AbstractEventLoop) -> None:
    events = stream(30)
    fast, full, call = run_both(loop, events, fmt_b=PCMA)
    assert fast == full
    assert call.full_calls["a"] == 30  # transcoding is never on the fast path
    assert call.socks["b"].sent[-1][0][12:] != bytes(range(160))  # converted to A-law
    assert fast["a"]["tap"][-1].payload == bytes(range(160))  # the tap has the original


def test_partner_without_address_and_b_direction(loop: asyncio.AbstractEventLoop) -> None:
    events = stream(10)
    fast, full, _call = run_both(loop, events, b_remote=None)
    assert fast == full
    assert fast["a"]["counters"]["dropped_no_peer"] == 10
    # Both directions at once: B's phone latches B, then both forward.
    b_events = [
        (
            t + 0.001,
            "b",
            (rtp(5000 + k, 777 + 160 * k, 0x4321, payload=bytes(160)), ("127.0.0.3", 40999)),
        )
        for k, (t, _, _) in enumerate(stream(30))
    ]
    events = sorted(stream(30) + b_events, key=lambda e: e[0])
    fast, full, call = run_both(loop, events, b_remote=None)
    assert fast == full
    assert fast["b"]["counters"]["forwarded"] == 30
    assert fast["a"]["counters"]["forwarded"] == 30 - fast["a"]["counters"]["dropped_no_peer"]
    assert call.socks["a"].sent[-1][1] == A_SDP


def test_format_change_unbridge_and_tap_change(loop: asyncio.AbstractEventLoop) -> None:
    def new_b_format(call: Call) -> None:
        call.b.set_remote(B_SDP, MediaFormat(97, "PCMU", 101))

    def unbridge(call: Call) -> None:
        assert call.bridge is not None
        call.bridge.unbridge()

    def rebridge(call: Call) -> None:
        call.bridge = call.relay.bridge(call.a, call.b)

    def other_tap(call: Call) -> None:
        call.a.tap = None

    def bounce(call: Call) -> None:  # unbridged and bridged again between two packets
        assert call.bridge is not None
        call.bridge.unbridge()
        call.bridge = call.relay.bridge(call.a, call.b)

    base = stream(80)
    events = [
        *base[:20],
        (base[20][0], "op", new_b_format),
        *base[20:40],
        (base[40][0], "op", unbridge),
        *base[40:50],
        (base[50][0], "op", rebridge),
        *base[50:60],
        (base[60][0], "op", bounce),
        *base[60:65],
        (base[65][0], "op", other_tap),
        *base[65:],
    ]
    fast, full, call = run_both(loop, events)
    assert fast == full
    pts = [d[1] & 0x7F for d, _ in call.socks["b"].sent]
    assert pts[:20] == [0] * 20 and set(pts[20:]) == {97}
    markers = [i for i, (d, _) in enumerate(call.socks["b"].sent) if d[1] & 0x80]
    assert markers == [0, 40, 50]  # the first packet, and after each (re)bridge: rebased
    assert len(fast["a"]["tap"]) == 40  # the tap's bound; the rest overflowed, then tap off
    assert fast["overflow"] == 25


def test_srtp_legs(loop: asyncio.AbstractEventLoop) -> None:
    a_in, a_out = SrtpKey(SUITE, bytes(range(30))), SrtpKey(SUITE, bytes(range(1, 31)))
    b_in, b_out = SrtpKey(SUITE, bytes(range(2, 32))), SrtpKey(SUITE, bytes(range(3, 33)))
    phone = pylibsrtp.Session(
        pylibsrtp.Policy(
            a_in.key_salt,
            pylibsrtp.Policy.SSRC_ANY_OUTBOUND,
            srtp_profile=pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80,
        )
    )
    events = [(t, w, (phone.protect(d), src)) for t, w, (d, src) in stream(30)]

    def keys(both: bool) -> Callable[[Call], None]:
        def setup(call: Call) -> None:
            call.a.srtp = SrtpLeg(inbound=a_in, outbound=a_out)
            if both:
                call.b.srtp = SrtpLeg(inbound=b_in, outbound=b_out)

        return setup

    for both in (False, True):
        fast, full, call = run_both(loop, events, keys(both))
        assert fast == full
        assert fast["a"]["counters"]["forwarded"] == 30
        assert call.full_calls["a"] == 30  # SRTP is never on the fast path
        assert fast["a"]["tap"][-1].payload == bytes(range(160))  # tapped in the clear
        wire = call.socks["b"].sent[-1][0]
        assert (len(wire) == 172 + 10) == both  # B's leg protects (80-bit tag)

    # Only B with keys: A's packets (plain) can not use the fast path either.
    def b_only(call: Call) -> None:
        call.b.srtp = SrtpLeg(inbound=b_in, outbound=b_out)

    fast, full, call = run_both(loop, stream(30), b_only)
    assert fast == full
    assert call.full_calls["a"] == 30


class ListTap:
    """A Tap that is not a BoundedTap: the fast path must use its put."""

    def __init__(self) -> None:
        self.items: list[TapPacket] = []

    def put(self, packet: TapPacket) -> None:
        self.items.append(packet)


class CountingTap(BoundedTap):
    """A BoundedTap subclass may override put: the fast path must call it."""

    def __init__(self) -> None:
        super().__init__()
        self.puts = 0

    def put(self, packet: TapPacket) -> None:
        self.puts += 1
        super().put(packet)


def test_other_taps_get_their_put_called(loop: asyncio.AbstractEventLoop) -> None:
    for make in (ListTap, CountingTap):
        got = []
        for fast in (True, False):
            call = open_call(loop)
            try:
                tap = make()
                call.a.tap = tap
                assert call.a.tap is tap
                play(call, stream(20), fast=fast)
                got.append(tap.items if isinstance(tap, ListTap) else tap.drain("a"))
                if isinstance(tap, CountingTap):
                    assert tap.puts == 20
            finally:
                call.relay.close()
        assert got[0] == got[1] and len(got[0]) == 20


# ---------------------------------------------------------------- random sequences


def random_events(seed: int) -> list[Event]:
    rng = random.Random(seed)
    t = 1000.0
    ssrc, seq, ts = (
        rng.getrandbits(32),
        rng.choice((rng.getrandbits(16), 65500)),
        rng.getrandbits(32),
    )
    b_seq = 0
    events: list[Event] = []
    sources = [A_SDP] * 12 + [A_OTHER, ("127.0.0.9", 4000)]
    for _ in range(300):
        t += rng.choice((0.0, 0.0, 0.001, 0.02, 0.02, 0.02, 0.03, 0.1))
        roll = rng.random()
        if roll < 0.03:
            ssrc, ts = rng.getrandbits(32), rng.getrandbits(32)
        elif roll < 0.05:
            seq += rng.choice((2, 5, 3001, 40000))  # loss, or a jump
        elif roll < 0.08:
            seq -= rng.choice((1, 2, 5, 150))  # duplicate or late
        seq &= 0xFFFF
        ts = (ts + 160) & 0xFFFFFFFF
        kind = rng.random()
        pt, payload, first, extra = 0, bytes([seq & 0xFF]) * rng.choice((160, 160, 80)), 0x80, b""
        if kind < 0.05:
            pt, payload = 101, bytes([5, 0x0A, 0, 160])
        elif kind < 0.07:
            pt, payload = 13, b"\x30"
        elif kind < 0.09:
            first, extra = 0x90, b"\x10\x00\x00\x01wxyz"
        elif kind < 0.1:
            first, payload = 0xA0, payload + b"\x00\x02"
        elif kind < 0.11:
            pt = rng.choice((8, 72, 96))
        data = rtp(seq, ts, ssrc, pt, payload, marker=rng.random() < 0.05, first=first, extra=extra)
        if rng.random() < 0.01:
            data = data[: rng.randrange(12)]
        events.append((t, "a", (data, rng.choice(sources))))
        seq += 1
        if rng.random() < 0.3:  # some media the other way
            b_seq += 1
            events.append((t, "b", (rtp(b_seq, 160 * b_seq, 0xBEEF), ("127.0.0.3", 40999))))
        if rng.random() < 0.005:
            events.append((t, "op", lambda call: call.a.set_remote(A_SDP)))  # re-INVITE: relatch
        if rng.random() < 0.02:  # a prompt to B between A's packets: B's stream changes source
            k = rng.randrange(1000)
            events.append(
                (t, "op", lambda call, k=k: call.b.inject(bytes(160), ssrc=7, seq=k, ts=160 * k))
            )
    return events


@pytest.mark.parametrize("seed", range(40))
def test_random_sequences_match_the_full_path(loop: asyncio.AbstractEventLoop, seed: int) -> None:
    events = random_events(seed)
    fast, full, call = run_both(loop, events)
    assert fast == full
    assert fast["a"]["counters"]["received"] == sum(1 for e in events if e[1] == "a")
    assert call.full_calls["a"] < len([e for e in events if e[1] == "a"])  # fast path used


def test_one_read_after_a_quiet_gap_then_batches(loop: asyncio.AbstractEventLoop) -> None:
    """A 50 packets/s leg finds one datagram per callback: it reads once, not twice (the
    second read would only fail). A callback soon after the last one reads in batches."""
    call = open_call(loop)
    try:
        sock = call.socks["a"]
        events = stream(10)
        play(call, events[:5], fast=True)  # latched, past probation, fast from here
        for now, _, item in events[5:8]:  # 20 ms apart: one read each
            call.clock.now = now
            sock.queue.append(item)
            reads = sock.reads
            call.a._on_rtp_readable()
            assert sock.reads - reads == 1
        call.clock.now += 0.02
        sock.queue += [item for _, _, item in events[8:]]
        call.a._on_rtp_readable()  # after a gap: one read, one datagram left queued
        assert len(sock.queue) == 1
        call.clock.now += 0.0001
        reads = sock.reads
        call.a._on_rtp_readable()  # called again at once (the socket is still readable)
        assert sock.queue == [] and sock.reads - reads == 2  # the datagram, then the end
        assert call.a.counters.forwarded == 10
    finally:
        call.relay.close()


# -------------------------------------------------------------------- the tap


def test_bounded_tap_channel_is_stable_and_drains_copy() -> None:
    tap = BoundedTap(max_per_leg=2)
    channel = tap.channel("a")
    assert tap.channel("a") is channel
    record = TapPacket("a", 1.0, 1, 160, 7, 0, False, b"x")
    tap.put(record)
    channel.append(record._replace(seq=2))  # what a leg's fast path does
    tap.put(record._replace(seq=3))  # full: dropped and counted
    assert tap.overflow == 1
    drained = tap.drain_all()
    assert drained == {"a": [record, record._replace(seq=2)]}
    assert channel == [] and tap.channel("a") is channel  # emptied in place, kept
    assert tap.drain_all() == {}  # legs with nothing are left out
    tap.put(record)
    items = tap.drain("a")
    assert items == [record] and items is not channel
    assert tap.drain("a") == [] and tap.drain("nobody") == []


# ---------------------------------------------------------- loopback, real sockets


def test_loopback_burst_after_a_quiet_gap_is_read_whole() -> None:
    """One read per callback after a gap; a burst is still read, in order, at once."""

    async def body() -> None:
        relay = MediaRelay("127.0.0.1", PortAllocator(*PORTS))
        a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            a.bind(("127.0.0.2", 0))
            b.bind(("127.0.0.3", 0))
            b.setblocking(False)
            leg_a = relay.open_leg("a", PCMU, a.getsockname())
            leg_b = relay.open_leg("b", PCMU, b.getsockname())
            relay.bridge(leg_a, leg_b)
            tap = BoundedTap()
            leg_a.tap = tap
            sent = 0
            for k in range(5):  # a paced start: latch, probation, then the fast path
                a.sendto(rtp(100 + k, 160 * k, 0x55), leg_a.address)
                sent += 1
                await asyncio.sleep(0.02)
            for k in range(5, 45):  # a burst, faster than any read
                a.sendto(rtp(100 + k, 160 * k, 0x55), leg_a.address)
                sent += 1
            got: list[bytes] = []
            for _ in range(500):  # bounded: at most about 2.5 s
                while True:
                    try:
                        got.append(b.recv(2048))
                    except BlockingIOError:
                        break
                if len(got) >= sent:
                    break
                await asyncio.sleep(0.005)
            assert len(got) == sent
            seqs = [struct.unpack_from("!H", d, 2)[0] for d in got]
            assert seqs == sorted(seqs) and len(set(seqs)) == sent
            assert leg_a.counters.forwarded == sent and leg_a.stats.received == sent
            assert [p.seq for p in tap.drain("a")] == [100 + k for k in range(sent)]
        finally:
            relay.close()
            a.close()
            b.close()

    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        runner.run(asyncio.wait_for(body(), 20))
