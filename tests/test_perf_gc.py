"""The media hot path makes no cyclic garbage, and the collector settings of `serve`.

With 100 recorded calls a full collection stalled every call at once for 23-80 ms
(docs/performance.md, "Garbage collection"). These tests pin down what keeps the
collector's work small: relaying, tapping and recording (mixer, DTMF muting, encrypted
writer) leave nothing for the cycle collector; the mixer's waiting packets are tuples
CPython stops tracking; `tune_gc` freezes the start-up heap and sets the thresholds;
`b2bua.gctrace` (B2BUA_GCTRACE) times collections and names cyclic garbage.
"""

from __future__ import annotations

import asyncio
import gc
import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from b2bua.archive.keys import keygen
from b2bua.gctrace import GcTrace, describe
from b2bua.recorder import LEFT, RIGHT, CallRecorder, tick_recorders
from b2bua.serve import GC_THRESHOLDS, tune_gc
from media.g711 import encode_alaw
from media.mixer import StereoMixer
from rtp.relay import BoundedTap, MediaFormat, MediaRelay, PortAllocator, TapPacket, new_event_loop

PCMA = MediaFormat(payload_type=8, encoding="PCMA")


class _Node:
    def __init__(self) -> None:
        self.me = self


@pytest.fixture
def no_auto_gc() -> Iterator[None]:
    """Automatic collection off, and garbage kept for the assertion's message."""
    was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    gc.garbage.clear()
    try:
        yield
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        if was_enabled:
            gc.enable()
        gc.collect()


def _cyclic_garbage() -> list[str]:
    gc.collect()
    found = sorted({describe(obj) for obj in gc.garbage})
    gc.garbage.clear()
    return found


def _packets(leg: str, count: int, t0: float, seq0: int = 100) -> list[TapPacket]:
    tone = encode_alaw(np.zeros(160, dtype=np.int16))  # 20 ms of silence, A-law
    return [
        TapPacket(leg, t0 + k * 0.02, (seq0 + k) & 0xFFFF, 160 * k, 0x1234, 8, k == 0, tone)
        for k in range(count)
    ]


def test_recording_path_makes_no_cyclic_garbage(tmp_path: Path, no_auto_gc: None) -> None:
    recipient = keygen(tmp_path / "key")
    recorders = []
    for n in range(3):
        rec = CallRecorder(f"c{n}", batch_s=0.1)
        rec.assign_leg(f"c{n}-a", LEFT, PCMA)
        rec.assign_leg(f"c{n}-b", RIGHT, PCMA)
        rec.start(0.0, tmp_path / f"c{n}.wav.age", [recipient])
        recorders.append(rec)
    assert _cyclic_garbage() == []  # set-up aside: what follows is the steady state
    for tick in range(1, 151):  # 3 s of audio, hub-like: feed every 20 ms, record per 120
        now = tick * 0.02
        for n, rec in enumerate(recorders):
            rec.feed(_packets(f"c{n}-a", 1, now - 0.02, tick) + _packets(f"c{n}-b", 1, now, tick))
        if tick % 6 == 0:
            tick_recorders(recorders, now)
    assert _cyclic_garbage() == []
    results = [rec.stop(3.1) for rec in recorders]
    assert all(r.size > 0 and not r.truncated for r in results)  # it really recorded


def test_mixer_pending_packets_are_untracked_after_one_collection() -> None:
    mixer = StereoMixer(start=0.0)
    for k in range(5):
        mixer.push(LEFT, ssrc=1, seq=k, timestamp=160 * k, payload_type=8,
                   payload=bytes(160), arrival=0.02 * k)  # fmt: skip
    pending = mixer._legs[LEFT].pending
    assert len(pending) == 5
    gc.collect(0)  # what a young collection does to them
    assert not any(gc.is_tracked(item) for item in pending)
    assert mixer.pull(1.0).shape[0] > 0  # and they still play


def test_relay_forwarding_and_tap_make_no_cyclic_garbage(no_auto_gc: None) -> None:
    async def body() -> list[str]:
        relay = MediaRelay("127.0.0.1", PortAllocator(43100, 43199))
        a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            a.bind(("127.0.0.1", 0))
            b.bind(("127.0.0.1", 0))
            leg_a = relay.open_leg("a", PCMA, a.getsockname())
            leg_b = relay.open_leg("b", PCMA, b.getsockname())
            relay.bridge(leg_a, leg_b)
            tap = BoundedTap()
            leg_a.tap = tap
            header = bytes([0x80, 8])
            a.sendto(header + bytes(10) + bytes(160), leg_a.address)  # latch first
            for _ in range(1000):  # bounded: at most about 1 s
                if leg_a.counters.forwarded:
                    break
                await asyncio.sleep(0.001)
            tap.drain_all()
            before = _cyclic_garbage()
            for k in range(1, 201):
                seq = k.to_bytes(2, "big")
                ts = (160 * k).to_bytes(4, "big")
                a.sendto(header + seq + ts + bytes(4) + bytes(160), leg_a.address)
                if k % 20 == 0:
                    await asyncio.sleep(0.001)  # let the loop read what was sent
            got = 0
            for _ in range(400):  # bounded: each wait at most 1 ms
                got += sum(len(p) for p in tap.drain_all().values())
                if got >= 200:
                    break
                await asyncio.sleep(0.001)
            assert got == 200
            assert leg_a.counters.forwarded == 201
            return before + _cyclic_garbage()
        finally:
            relay.close()
            a.close()
            b.close()

    loop = new_event_loop()
    try:
        assert loop.run_until_complete(asyncio.wait_for(body(), 20)) == []
    finally:
        loop.close()


def test_tune_gc_freezes_and_sets_thresholds() -> None:
    assert tune_gc("default") == gc.get_threshold()  # benchmarks' "leave it alone"
    # The rest in a child interpreter: freezing is for the whole process.
    code = (
        "import gc, json\n"
        "from b2bua.serve import tune_gc\n"
        "before = gc.get_threshold()\n"
        "kept = tune_gc('default')\n"
        "frozen_default = gc.get_freeze_count()\n"
        "tuned = tune_gc(None)\n"
        "print(json.dumps([before, kept, frozen_default, tuned, gc.get_freeze_count(),\n"
        "                  tune_gc('2000,5,50')]))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    before, kept, frozen_default, tuned, frozen, custom = json.loads(out.stdout)
    assert kept == before and frozen_default == 0  # "default" leaves the collector alone
    assert tuple(tuned) == GC_THRESHOLDS
    assert frozen > 10_000  # the start-up heap: modules, classes, functions
    assert custom == [2000, 5, 50]


def test_gctrace_times_collections_and_names_garbage(tmp_path: Path) -> None:
    out = tmp_path / "gc.txt"
    trace = GcTrace(out, saveall=(0.0, 0.0))
    gc.callbacks.append(trace.callback)
    try:
        trace.poll()  # opens the garbage window
        nodes = [_Node() for _ in range(50)]
        loop: dict[str, object] = {}
        loop["self"] = loop
        del nodes, loop
        gc.collect()
        trace.poll()  # closes it and writes what the window kept
    finally:
        trace.close()
    assert trace.callback not in gc.callbacks
    text = out.read_text()
    assert "cyclic garbage of 0 s" in text
    assert "cyclic garbage of 0 s: 51 objects" in text
    assert f"     50  {__name__}._Node" in text
    assert "      1  dict keys=self" in text
    total = json.loads(text.strip().splitlines()[-1])["total"]
    full = next(g for g in total if g["gen"] == 2)
    assert full["count"] >= 3 and full["max_ms"] > 0  # the collections above were timed
