"""The relay's own CPU per forwarded packet against the bare forwarder, in one process.

Not a test. One uvloop process holds, side by side:

- ``forwarder``: bench/forwarder.py's ``forward`` loop (add_reader + recvfrom_into +
  sendto, nothing else), one socket pair per call;
- ``relay``: two bridged ``RelayLeg`` per call (PCMA both sides), no tap;
- ``record``: the same with one ``BoundedTap`` per call on both legs, drained every
  tick as the recording hub does (what a recorded call costs the relay);
- ``idle``: the sender alone, phone to phone, nothing forwarding: the harness overhead
  (loop wake-ups for the sender's timer) that every other variant pays as well.

Each call has two phones (127.0.0.2 and 127.0.0.3) that send one 172-byte RTP packet
(G.711 A-law, 160 bytes of payload; own SSRC, seq +1 and ts +160 per packet) each
tick (20 ms: 50 packets/s per stream, as a real call). Rounds alternate the variants
and the median of the rounds is reported.

How the sender's own cost is kept out: the sender runs in this process but
synchronously, between two ``time.process_time()`` readings, once per tick: it first
reads what the phones received (the count of forwarded packets) and then sends the
tick's packets. Loopback delivery happens inside ``sendto``, so the kernel's cost of
delivering to the relay's socket is inside that bracket too. Everything outside the
brackets (the event loop's wake-ups, the readers of the forwarder or relay, their
``sendto`` toward the phones, tap drains) is the variant's cost. ``idle`` measures
what is left outside the brackets with no forwarding at all (the timer); it is
reported, and subtracted in the ``*_net`` figures.

Prints one JSON object: microseconds of CPU per forwarded packet (= ms per 1,000)
for each variant, the ratios against the forwarder, the sender's cost, and the rounds.
``python_only`` is the Python part alone: the read callbacks driven with stand-in
sockets (no syscalls), per packet, for the forwarder's loop and the relay legs.
The collector is set as `b2bua serve` sets it (freeze, thresholds) unless --gc default.

    .venv/bin/python bench/relay_bench.py --calls 100 --rounds 7
    # the code before a change, for a side-by-side figure:
    PYTHONPATH=/tmp/relayhead .venv/bin/python bench/relay_bench.py --calls 100
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib
import importlib.util
import json
import os
import random
import socket
import statistics
import struct
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import rtp.relay
from b2bua.serve import GC_THRESHOLDS
from rtp.relay import BoundedTap, MediaFormat, MediaRelay, PortAllocator, new_event_loop

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from forwarder import forward

HEADER = struct.Struct("!BBHII")
PCMA = MediaFormat(payload_type=8, encoding="PCMA", telephone_event=101)
PAYLOAD = bytes([0xD5]) * 160  # A-law silence
VARIANTS = ("forwarder", "relay", "record", "idle")


@dataclass
class Stream:
    sock: socket.socket  # the sending phone's socket
    dest: dict[str, tuple[str, int]]  # per variant: where this phone sends
    ssrc: int
    seq: int
    ts: int
    packet: bytearray = field(default_factory=lambda: bytearray(12 + len(PAYLOAD)))

    def __post_init__(self) -> None:
        self.packet[12:] = PAYLOAD

    def send(self, variant: str) -> None:
        HEADER.pack_into(self.packet, 0, 0x80, 8, self.seq, self.ts, self.ssrc)
        self.seq = (self.seq + 1) & 0xFFFF
        self.ts = (self.ts + 160) & 0xFFFFFFFF
        self.sock.sendto(self.packet, self.dest[variant])


def _socket(host: str, port: int = 0) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((host, port))
    sock.setblocking(False)
    return sock


def _drain(socks: list[socket.socket], buf: bytearray) -> int:
    """Read what the phones got; count the RTP packets (not the relay's RTCP)."""
    got = 0
    for sock in socks:
        while True:
            try:
                size = sock.recv_into(buf)
            except BlockingIOError:
                break
            except OSError:  # ICMP from an earlier send: not a packet
                continue
            got += size == len(PAYLOAD) + 12
    return got


class Bench:
    def __init__(self, calls: int, tick: float, port_base: int, phone_base: int) -> None:
        self.tick = tick
        self.phones: list[socket.socket] = []
        self.streams: list[Stream] = []
        self.taps: list[BoundedTap] = []
        self.relay = MediaRelay(
            "127.0.0.1",
            PortAllocator(port_base, port_base + 8 * calls + 64),
            rtcp_interval=5.0,  # as in production: the legs' timers run during the rounds
            inactivity_timeout=60.0,
        )
        self._fwd_socks: list[socket.socket] = []
        rng = random.Random(9)
        for k in range(calls):
            # Each phone has an RTP port and the RTCP port above it (the relay's reports
            # go there), on addresses of their own.
            port = phone_base + 2 * k
            pa, pb = _socket("127.0.0.2", port), _socket("127.0.0.3", port)
            self.phones += [pa, pb, _socket("127.0.0.2", port + 1), _socket("127.0.0.3", port + 1)]
            fa, fb = _socket("127.0.0.1"), _socket("127.0.0.1")
            self._fwd_socks += [fa, fb]
            forward(fa, fb, pb.getsockname())
            forward(fb, fa, pa.getsockname())
            # relay: a plain pair, and a recorded pair with a tap on both legs
            legs = {}
            for variant in ("relay", "record"):
                la = self.relay.open_leg(f"{variant}{k}a", PCMA, pa.getsockname())
                lb = self.relay.open_leg(f"{variant}{k}b", PCMA, pb.getsockname())
                self.relay.bridge(la, lb)
                legs[variant] = (la, lb)
            tap = BoundedTap()
            legs["record"][0].tap = legs["record"][1].tap = tap
            self.taps.append(tap)
            for me, other, fwd, side in ((pa, pb, fa, 0), (pb, pa, fb, 1)):
                dest = {
                    "forwarder": fwd.getsockname(),
                    "relay": legs["relay"][side].address,
                    "record": legs["record"][side].address,
                    "idle": other.getsockname(),
                }
                self.streams.append(
                    Stream(me, dest, rng.getrandbits(32), rng.getrandbits(16), rng.getrandbits(32))
                )
        self._buf = bytearray(2048)

    async def round(self, variant: str, ticks: int) -> dict[str, float]:
        clock = time.process_time
        buf, phones, streams = self._buf, self.phones, self.streams
        drain_taps = variant == "record"
        sender = 0.0
        delivered = 0
        start = clock()
        for _ in range(ticks):
            t0 = clock()
            delivered += _drain(phones, buf)
            for stream in streams:
                stream.send(variant)
            sender += clock() - t0
            if drain_taps:  # the hub's drain, once per 20 ms tick: the relay's side of it
                for tap in self.taps:
                    tap.drain_all()
            await asyncio.sleep(self.tick)
        await asyncio.sleep(0.05)  # let the last tick through
        t0 = clock()
        delivered += _drain(phones, buf)
        sender += clock() - t0
        if drain_taps:
            for tap in self.taps:
                tap.drain_all()
        total = clock() - start
        sent = ticks * len(streams)
        return {
            "sent": sent,
            "delivered": delivered,
            "cpu_s": total - sender,
            "sender_cpu_s": sender,
        }

    def close(self) -> None:
        self.relay.close()
        for sock in self.phones + self._fwd_socks:
            asyncio.get_running_loop().remove_reader(sock.fileno())
            sock.close()


class _FakeSocket:
    """A leg's RTP socket without the kernel: one datagram per readable callback.

    ``recvfrom_into`` gives the stream's next packet, then raises BlockingIOError (as a
    real socket does with one datagram queued, the common case at 50 packets/s);
    ``sendto`` does nothing. The real socket stays underneath for fileno/close.
    """

    def __init__(self, real: socket.socket, source: tuple[str, int], ssrc: int) -> None:
        self.real = real
        self.source = source
        self.packet = bytearray(12 + len(PAYLOAD))
        self.packet[12:] = PAYLOAD
        self.seq = 1000
        self.ssrc = ssrc
        self.ready = False

    def recvfrom_into(self, buf: bytearray) -> tuple[int, tuple[str, int]]:
        if not self.ready:
            raise BlockingIOError(11, "Resource temporarily unavailable")
        self.ready = False
        HEADER.pack_into(buf, 0, 0x80, 8, self.seq, self.seq * 160, self.ssrc)
        buf[12:172] = PAYLOAD
        self.seq = (self.seq + 1) & 0xFFFF
        return 172, self.source

    def sendto(self, data: object, address: object) -> int:
        return 172

    def fileno(self) -> int:
        return self.real.fileno()

    def close(self) -> None:
        self.real.close()


def _nothing() -> None:
    pass


def python_only(count: int, repeats: int) -> dict[str, float]:
    """Python CPU per packet of the read callbacks with the kernel taken out (fakes)."""
    relay = MediaRelay("127.0.0.1", PortAllocator(59000, 59099), rtcp_interval=3600.0)
    phone_a, phone_b = ("127.0.0.2", 58000), ("127.0.0.3", 58000)
    callbacks: dict[str, Any] = {}
    fakes: dict[str, _FakeSocket] = {}
    for variant in ("relay", "record"):
        la = relay.open_leg(f"{variant}a", PCMA, phone_a)
        lb = relay.open_leg(f"{variant}b", PCMA, phone_b)
        fake = _FakeSocket(la._rtp_sock, phone_a, 0x1234)
        la._rtp_sock = fake  # type: ignore[assignment]
        lb._rtp_sock = _FakeSocket(lb._rtp_sock, phone_b, 0x5678)  # type: ignore[assignment]
        relay.bridge(la, lb)  # after the swap: the legs bind the partner's sendto on link
        lb.latch.accept(phone_b)  # the partner's peer is known, as in a call
        if variant == "record":
            la.tap = lb.tap = tap = BoundedTap()
        callbacks[variant] = la._on_rtp_readable
        fakes[variant] = fake
    # The forwarder's callback (bench/forwarder.py's loop, on a fake socket).
    fwd = _FakeSocket(socket.socket(socket.AF_INET, socket.SOCK_DGRAM), phone_a, 0x9ABC)
    fakes["forwarder"] = fwd
    buf = bytearray(2048)
    view = memoryview(buf)
    recv, send, dest = fwd.recvfrom_into, fwd.sendto, phone_b

    def forwarder() -> None:
        for _ in range(64):
            try:
                size, _source = recv(buf)
            except (BlockingIOError, InterruptedError):
                return
            try:  # noqa: SIM105 - as in bench/forwarder.py
                send(view[:size], dest)
            except OSError:
                pass

    callbacks["forwarder"] = forwarder
    results: dict[str, list[float]] = {v: [] for v in callbacks}
    try:
        for variant, cb in callbacks.items():  # warm up: latch, end probation
            fake = fakes[variant]
            for _ in range(10):
                fake.ready = True
                cb()
        for _ in range(repeats):
            for variant, cb in callbacks.items():
                fake = fakes[variant]
                drain = tap.drain_all if variant == "record" else _nothing
                t0 = time.process_time()
                for k in range(count):
                    fake.ready = True
                    cb()
                    if k & 1:  # the hub's drain per tick: about two packets per call
                        drain()
                results[variant].append((time.process_time() - t0) / count * 1e6)
    finally:
        relay.close()
        fwd.close()
    med = {v: statistics.median(xs) for v, xs in results.items()}
    return {
        **{f"{v}_us": round(x, 3) for v, x in med.items()},
        "relay_extra_us": round(med["relay"] - med["forwarder"], 3),
        "record_extra_us": round(med["record"] - med["forwarder"], 3),
    }


async def main(args: argparse.Namespace) -> dict[str, Any]:
    # The leg's module: rtp/leg.py since the split, rtp/relay.py in older code (HEAD runs).
    name = "rtp.leg" if importlib.util.find_spec("rtp.leg") else "rtp.relay"
    leg_module = importlib.import_module(name)
    if args.batch_reads and hasattr(leg_module, "_BURST_GAP"):
        leg_module._BURST_GAP = float("inf")  # always read until the socket would block
    python = python_only(args.python_packets, args.rounds)
    if args.python_only:
        return {"rtp_relay_module": rtp.relay.__file__, "python_only": python}
    bench = Bench(args.calls, args.tick_ms / 1000, args.port_base, args.phone_base)
    if args.gc == "serve":  # what `b2bua serve` does after start-up (b2bua.serve.tune_gc)
        gc.collect()
        gc.freeze()
        gc.set_threshold(*GC_THRESHOLDS)
    try:
        for variant in VARIANTS:  # latch the legs, end the stats' probation
            await bench.round(variant, 5)
        ticks = max(1, round(args.round_s / (args.tick_ms / 1000)))
        rounds: list[dict[str, dict[str, float]]] = []
        for r in range(args.rounds):
            order = VARIANTS if r % 2 == 0 else tuple(reversed(VARIANTS))
            rounds.append({v: await bench.round(v, ticks) for v in order})
        leg_totals = {"forwarded": 0, "received": 0}
        for leg in bench.relay.legs.values():
            leg_totals["forwarded"] += leg.counters.forwarded
            leg_totals["received"] += leg.counters.received
    finally:
        bench.close()

    def us_per_packet(res: dict[str, float], minus: float = 0.0) -> float:
        return (res["cpu_s"] - minus) / max(1, res["delivered"]) * 1e6

    out: dict[str, Any] = {
        "calls": args.calls,
        "streams": 2 * args.calls,
        "packets_per_round": rounds[0]["relay"]["sent"],
        "rounds": args.rounds,
        "rtp_relay_module": rtp.relay.__file__,
        "gc": args.gc,
        "batch_reads": args.batch_reads,
        "unit": "us of CPU per forwarded packet (= ms per 1,000 packets)",
    }
    per_round: dict[str, list[float]] = {v: [] for v in VARIANTS}
    net: dict[str, list[float]] = {v: [] for v in VARIANTS if v != "idle"}
    sender: list[float] = []
    loss: dict[str, int] = dict.fromkeys(VARIANTS, 0)
    for res in rounds:
        idle_cpu = res["idle"]["cpu_s"]
        for v in VARIANTS:
            per_round[v].append(us_per_packet(res[v]))
            loss[v] += int(res[v]["sent"] - res[v]["delivered"])
            if v != "idle":
                net[v].append(us_per_packet(res[v], idle_cpu))
        sender.append(res["relay"]["sender_cpu_s"] / res["relay"]["sent"] * 1e6)
    med = {v: statistics.median(xs) for v, xs in per_round.items()}
    med_net = {v: statistics.median(xs) for v, xs in net.items()}
    out["median"] = {v: round(x, 3) for v, x in med.items()}
    out["median_net_of_idle"] = {v: round(x, 3) for v, x in med_net.items()}
    out["ratio_vs_forwarder"] = {
        v: round(med[v] / med["forwarder"], 3) for v in ("relay", "record")
    }
    out["ratio_vs_forwarder_net"] = {
        v: round(med_net[v] / med_net["forwarder"], 3) for v in ("relay", "record")
    }
    out["ratio_per_round_record"] = [
        round(r / f, 3) for r, f in zip(per_round["record"], per_round["forwarder"], strict=True)
    ]
    out["python_only"] = python
    out["sender_us_per_packet_excluded"] = round(statistics.median(sender), 3)
    out["lost"] = loss
    out["relay_leg_counters"] = leg_totals
    out["per_round"] = {v: [round(x, 3) for x in xs] for v, xs in per_round.items()}
    return out


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--round-s", type=float, default=1.0)
    parser.add_argument("--tick-ms", type=float, default=20.0)
    parser.add_argument("--python-packets", type=int, default=20000)
    parser.add_argument(
        "--gc",
        choices=("serve", "default"),
        default="serve",
        help="serve: freeze and thresholds as `b2bua serve` sets them; default: as is",
    )
    parser.add_argument(
        "--batch-reads",
        action="store_true",
        help="relay legs always read until the socket would block (no single read)",
    )
    parser.add_argument(
        "--python-only", action="store_true", help="only the Python-only figures (no sockets)"
    )
    parser.add_argument("--port-base", type=int, default=52000, help="the relay's ports")
    parser.add_argument("--phone-base", type=int, default=56000, help="the phones' ports")
    args = parser.parse_args()
    loop = new_event_loop()
    try:
        result = loop.run_until_complete(main(args))
    finally:
        loop.close()
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    cli()
