"""Benchmark RTP generator and sink (not a test): one process, commands on stdin.

Plays both ends of N calls: the trunk side binds one RTP socket on 127.0.0.2 and the
phone side one on 127.0.0.3 (plus an RTCP sink on the port above each). Every stream
sends G.711 A-law (PT 8) at 50 packets/s; each 160-byte payload starts with

    magic 0xB2B5 (2) | call index (2) | flags (1) | sequence (4) | send time ns (8)

and is A-law silence after that. A-law is a bijection between bytes and samples, so
the recorder's WAV can be turned back into bytes and the same fields read out of it
(gap count and leg alignment of recordings, see load.py).

Send times are CLOCK_REALTIME (time.time_ns) taken just before sendto; receive times
are the kernel's SO_TIMESTAMPNS of the arrival at our socket, so the measured transit
is the middlebox (B2BUA or bare forwarder) plus loopback, not this process's own
scheduling delay. Calls are spread over 20 phase groups (1 ms apart) so that the load
is smooth instead of one burst per 20 ms; the two streams of a call are sent back to
back in the same group (what the leg-alignment check relies on).

Commands (one per line on stdin; replies on stdout):
    start K a|b HOST PORT [DTMF_DELAY_S]   start stream a (trunk->phone) or b of call K
    count K | uncount K | count all | uncount all   measure this call's packets or not
    stop K | stop all                      stop sending
    quit                                   print one JSON line of statistics and exit
At start-up it prints ``ready TRUNK_PORT PHONE_PORT``.
Run by load.py; by hand: .venv/bin/python bench/rtpgen.py
"""

from __future__ import annotations

import array
import asyncio
import json
import os
import socket
import struct
import sys
import time
from typing import Any

import uvloop

MAGIC = 0xB2B5
PACKET = struct.Struct("!BBHIIHHBIq")  # RTP header, then magic|call|flags|seq|send ns
MARK = struct.Struct("!HHBIq")
HEADER_SIZE = 12
MARK_OFFSET = HEADER_SIZE
FRAME = 160  # 20 ms of 8 kHz G.711
PT_PCMA = 8
PT_EVENT = 101
GROUPS = 20  # phase groups, 1 ms apart
TICK_S = 0.001
FLAG_B = 0x01  # stream b (phone -> trunk); stream a is trunk -> phone
FLAG_COUNTED = 0x02
SILENCE = 0xD5  # A-law code of the smallest positive level
RCVBUF = 4 * 1024 * 1024
READ_BATCH = 256
TIMESTAMPNS = struct.Struct("qq")
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)


class Stream:
    __slots__ = ("buf", "counted", "dest", "flags", "idx", "k", "sent", "seq", "ssrc", "ts")

    def __init__(self, k: int, side: int, dest: tuple[str, int]) -> None:
        self.k = k
        self.idx = 2 * k + side
        self.flags = FLAG_B if side else 0
        self.dest = dest
        self.seq = 0
        self.ts = 0
        self.ssrc = int.from_bytes(os.urandom(4), "big")
        self.sent = 0  # counted packets sent
        self.counted = False
        self.buf = bytearray(bytes([SILENCE]) * (HEADER_SIZE + FRAME))


class Generator:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.socks = [_udp("127.0.0.2"), _udp("127.0.0.3")]  # side a (trunk), side b (phone)
        self.sinks = [_udp("127.0.0.2", self.port(0) + 1), _udp("127.0.0.3", self.port(1) + 1)]
        self.groups: list[list[Stream]] = [[] for _ in range(GROUPS)]
        self.streams: dict[int, Stream] = {}
        self.received: dict[int, int] = {}  # idx -> counted packets received
        self.jitter: dict[int, float] = {}  # idx -> RFC 3550 J in ns (path-added jitter)
        self.last_transit: dict[int, int] = {}
        self.latency_us = array.array("i")
        self.other = 0  # packets without our marker (prompts, DTMF echoes) or uncounted
        self.tick_lag_us = array.array("i")
        self.done = asyncio.Event()
        self.t0 = time.monotonic()
        self.tick_no = 0
        for sock in self.socks:
            sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            loop.add_reader(sock.fileno(), self._on_readable, sock)
        for sink in self.sinks:
            loop.add_reader(sink.fileno(), _drain, sink)
        loop.add_reader(sys.stdin.fileno(), self._on_command)
        self._stdin = os.fdopen(sys.stdin.fileno(), "rb", buffering=0, closefd=False)
        self._pending = b""
        self.sent_stopped = 0
        loop.call_later(TICK_S, self._tick)

    def port(self, side: int) -> int:
        return int(self.socks[side].getsockname()[1])

    # -- sending
    def _tick(self) -> None:
        # time.monotonic, not loop.time(): uvloop's clock is cached per iteration in
        # whole milliseconds, which made early wake-ups spin.
        now = time.monotonic()
        due = int((now - self.t0) / TICK_S)
        if due >= self.tick_no and len(self.tick_lag_us) < 5_000_000:
            self.tick_lag_us.append(int((now - self.t0 - self.tick_no * TICK_S) * 1e6))
        # Bounded: at most one full round of groups even after a long stall.
        todo = min(due - self.tick_no + 1, GROUPS)
        for _ in range(max(0, todo)):
            self._send_group(self.groups[self.tick_no % GROUPS])
            self.tick_no += 1
        self.tick_no = max(self.tick_no, due + 1)
        delay = self.t0 + self.tick_no * TICK_S - time.monotonic()
        self.loop.call_later(max(delay, 0.0002), self._tick)

    def _send_group(self, group: list[Stream]) -> None:
        pack_into = PACKET.pack_into
        clock = time.time_ns
        socks = self.socks
        for st in group:
            st.seq += 1
            st.ts += FRAME
            flags = st.flags
            if st.counted:
                flags |= FLAG_COUNTED
                st.sent += 1
            buf = st.buf
            pack_into(
                buf, 0, 0x80, PT_PCMA, st.seq & 0xFFFF, st.ts & 0xFFFFFFFF, st.ssrc,
                MAGIC, st.k, flags, st.seq, clock(),
            )  # fmt: skip
            try:  # noqa: SIM105 - a try is cheaper than suppress() per packet
                socks[st.flags & FLAG_B].sendto(buf, st.dest)
            except OSError:
                pass  # a full socket buffer is loss, seen at the receiver

    def _send_digit(self, st: Stream) -> None:
        """RFC 4733 2.3: event "1", volume 10; three updates, then three end packets."""
        if self.streams.get(st.idx) is not st:
            return  # stopped or replaced meanwhile
        sock = self.socks[st.flags & FLAG_B]
        ts = st.ts
        for i, end in ((1, False), (2, False), (3, False), (4, True), (4, True), (4, True)):
            st.seq += 1
            second = PT_EVENT | (0x80 if i == 1 else 0)
            head = struct.pack("!BBHII", 0x80, second, st.seq & 0xFFFF, ts, st.ssrc)
            body = struct.pack("!BBH", 1, (0x80 if end else 0) | 10, i * FRAME)
            try:  # noqa: SIM105 - same shape as the audio path
                sock.sendto(head + body, st.dest)
            except OSError:
                pass

    # -- receiving
    def _on_readable(self, sock: socket.socket) -> None:
        recvmsg = sock.recvmsg
        unpack_mark = MARK.unpack_from
        unpack_ts = TIMESTAMPNS.unpack
        received = self.received
        jitter = self.jitter
        last = self.last_transit
        lat = self.latency_us
        for _ in range(READ_BATCH):
            try:
                data, anc, _flags, _addr = recvmsg(2048, 64)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                continue
            if len(data) < MARK_OFFSET + MARK.size or data[1] & 0x7F != PT_PCMA:
                self.other += 1
                continue
            magic, k, flags, _seq, sent_ns = unpack_mark(data, MARK_OFFSET)
            if magic != MAGIC or not flags & FLAG_COUNTED or not anc:
                self.other += 1
                continue
            sec, nsec = unpack_ts(anc[0][2][:16])
            transit = sec * 1_000_000_000 + nsec - sent_ns
            idx = 2 * k + (flags & FLAG_B)
            received[idx] = received.get(idx, 0) + 1
            prev = last.get(idx)
            if prev is not None:
                j = jitter.get(idx, 0.0)
                jitter[idx] = j + (abs(transit - prev) - j) / 16
            last[idx] = transit
            lat.append(transit // 1000)

    # -- control
    def _on_command(self) -> None:
        chunk = self._stdin.read(65536)
        if not chunk:
            self.done.set()
            return
        self._pending += chunk
        *lines, self._pending = self._pending.split(b"\n")
        for line in lines:
            self._command(line.decode().split())

    def _command(self, words: list[str]) -> None:
        if not words:
            return
        cmd = words[0]
        if cmd == "start":
            k, side = int(words[1]), 1 if words[2] == "b" else 0
            st = Stream(k, side, (words[3], int(words[4])))
            old = self.streams.pop(st.idx, None)
            if old is not None:
                self.groups[old.k % GROUPS].remove(old)
            self.streams[st.idx] = st
            self.groups[k % GROUPS].append(st)
            if len(words) > 5:
                self.loop.call_later(float(words[5]), self._send_digit, st)
        elif cmd in ("count", "uncount"):
            on = cmd == "count"
            for st in self._select(words[1]):
                st.counted = on
        elif cmd == "stop":
            for st in self._select(words[1]):
                self.groups[st.k % GROUPS].remove(st)
                del self.streams[st.idx]
                self.sent_stopped += st.sent
        elif cmd == "quit":
            self.done.set()

    def _select(self, which: str) -> list[Stream]:
        if which == "all":
            return list(self.streams.values())
        k = int(which)
        return [st for st in (self.streams.get(2 * k), self.streams.get(2 * k + 1)) if st]

    def report(self) -> dict[str, Any]:
        import numpy as np  # only at the end: keeps start-up light

        sent = sum(st.sent for st in self.streams.values()) + self.sent_stopped
        received = sum(self.received.values())
        lat = np.frombuffer(self.latency_us, dtype=np.int32).astype(np.float64) / 1000
        jit = np.array(list(self.jitter.values()), dtype=np.float64) / 1e6
        lag = np.frombuffer(self.tick_lag_us, dtype=np.int32).astype(np.float64) / 1000

        def pct(values: Any, q: float) -> float | None:
            return round(float(np.percentile(values, q)), 3) if len(values) else None

        return {
            "sent": sent,
            "received": received,
            "loss_pct": round(100.0 * (sent - received) / sent, 4) if sent else None,
            "latency_ms": {
                "p50": pct(lat, 50),
                "p99": pct(lat, 99),
                "max": round(float(lat.max()), 3) if len(lat) else None,
            },
            "jitter_ms": {"p50": pct(jit, 50), "p99": pct(jit, 99), "max": pct(jit, 100)},
            "other_packets": self.other,
            "sender_tick_lag_ms": {"p50": pct(lag, 50), "p99": pct(lag, 99)},
            "cpu_s": round(sum(os.times()[:2]), 3),
        }


def _udp(host: str, port: int = 0) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, RCVBUF)
    sock.bind((host, port))
    sock.setblocking(False)
    return sock


def _drain(sock: socket.socket) -> None:
    for _ in range(READ_BATCH):
        try:
            sock.recv(2048)
        except OSError:
            return


async def main() -> None:
    gen = Generator(asyncio.get_running_loop())
    print(f"ready {gen.port(0)} {gen.port(1)}", flush=True)
    await gen.done.wait()
    print(json.dumps(gen.report()), flush=True)


if __name__ == "__main__":
    uvloop.run(main())
