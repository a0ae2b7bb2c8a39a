"""The benchmark harness checks itself: recording analysis on a synthetic WAV, and the
generator (C and Python) through the bare forwarder on loopback for one second."""

from __future__ import annotations

import asyncio
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"
sys.path.insert(0, str(BENCH))

import load  # noqa: E402
from rtpgen import MAGIC, MARK  # noqa: E402

from media.g711 import decode_alaw, encode_alaw  # noqa: E402


def channel(k: int, side: int, seqs: list[int], t0_ns: int, lead: int) -> np.ndarray:
    """A recorded channel: `lead` samples of silence, then one 160-sample frame per seq
    at its own slot (a missing seq leaves its slot silent), stamped like rtpgen."""
    total = lead + 160 * (max(seqs) + 1)
    codes = bytearray(b"\xd5" * total)
    for seq in seqs:
        pos = lead + 160 * seq
        sent = t0_ns + seq * 20_000_000
        codes[pos : pos + MARK.size] = MARK.pack(MAGIC, k, side, seq, sent)
    return decode_alaw(bytes(codes))


def test_analyse_counts_gaps_and_measures_alignment() -> None:
    t0 = 1_700_000_000_000_000_000
    left = channel(7, 0, [s for s in range(100) if s not in (10, 11, 50)], t0, lead=0)
    # The right leg lands 80 samples (10 ms) later than the left in the file.
    right = channel(7, 1, list(range(100)), t0, lead=80)
    n = min(len(left), len(right))
    stereo = np.stack((left[:n], right[:n]), axis=1)
    result = load.analyse(stereo, 7, encode_alaw)
    assert result["gaps_left"] == 3
    assert result["gaps_right"] == 0
    assert result["frames_right"] == 100  # the cut last frame still holds its fields
    assert result["align_ms"] == pytest.approx(10.0, abs=0.01)


def test_analyse_ignores_other_calls() -> None:
    t0 = 1_700_000_000_000_000_000
    left = channel(3, 0, list(range(20)), t0, lead=0)
    stereo = np.stack((left, left), axis=1)  # right carries side-0 frames: not ours
    result = load.analyse(stereo, 4, encode_alaw)
    assert result["frames_left"] == 0
    assert result["align_ms"] is None


@pytest.mark.parametrize("kind", ["c", "python"])
def test_generator_through_forwarder(kind: str) -> None:
    if kind == "c" and shutil.which("cc") is None:
        pytest.fail("a C compiler (cc) is needed for bench/rtpgen.c")
    load.Gen.kind = kind
    result = asyncio.run(asyncio.wait_for(load.run_forwarder(3, 1.0), 30))
    assert result["loss_pct"] == 0.0
    assert result["pps_forwarded"] == 300.0
    latency = result["latency_ms"]
    assert 0 < latency["p50"] <= latency["p99"] <= latency["max"] < 1000
    assert result["cpu_ms_per_1000_packets"] is not None
