"""Benchmark: media.g711 lookup tables against audioop (not a test).

Two workloads for each law, encode and decode: one 20 ms RTP frame (160 samples,
the per-packet cost in the relay) and one minute of audio (480,000 samples, the
recording batch cost). Prints one JSON object: per-call medians over timeit repeats in
microseconds, and ratio = ours / audioop (below 1 means we are faster).
Run: .venv/bin/python bench/g711_bench.py   (about 10 s; the loop counts are fixed)
"""

from __future__ import annotations

import json
import platform
import statistics
import sys
import timeit
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from media import g711

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", "'audioop' is deprecated", DeprecationWarning)
    import audioop

REPEAT = 7
FRAME_LOOPS = 2000
MINUTE_LOOPS = 3


def median_us(func: Callable[[], object], loops: int) -> float:
    times = timeit.repeat(func, number=loops, repeat=REPEAT)
    return statistics.median(times) / loops * 1e6


Case = tuple[Callable[[], object], Callable[[], object]]


def make_cases(pcm: np.ndarray, pcm_bytes: bytes, ulaw: bytes, alaw: bytes) -> dict[str, Case]:
    """(ours, audioop) pairs. Our encoders take an array, audioop takes bytes: each gets
    its native input, as the relay would hold it."""
    return {
        "ulaw_encode": (lambda: g711.encode_ulaw(pcm), lambda: audioop.lin2ulaw(pcm_bytes, 2)),
        "alaw_encode": (lambda: g711.encode_alaw(pcm), lambda: audioop.lin2alaw(pcm_bytes, 2)),
        "ulaw_decode": (lambda: g711.decode_ulaw(ulaw), lambda: audioop.ulaw2lin(ulaw, 2)),
        "alaw_decode": (lambda: g711.decode_alaw(alaw), lambda: audioop.alaw2lin(alaw, 2)),
        "ulaw_to_alaw": (
            lambda: g711.ulaw_to_alaw(ulaw),
            lambda: audioop.lin2alaw(audioop.ulaw2lin(ulaw, 2), 2),
        ),
    }


def main() -> None:
    rng = np.random.default_rng(1)
    workloads = {"frame_20ms": (160, FRAME_LOOPS), "minute": (8000 * 60, MINUTE_LOOPS)}
    results: dict[str, dict[str, float]] = {}
    for wname, (n, loops) in workloads.items():
        pcm = (rng.normal(0, 3000, n)).clip(-32768, 32767).astype(np.int16)
        pcm_bytes = pcm.tobytes()
        ulaw = g711.encode_ulaw(pcm)
        alaw = g711.encode_alaw(pcm)
        cases = make_cases(pcm, pcm_bytes, ulaw, alaw)
        for cname, (ours, theirs) in cases.items():
            ours_us = median_us(ours, loops)
            theirs_us = median_us(theirs, loops)
            results[f"{wname}/{cname}"] = {
                "ours_us": round(ours_us, 3),
                "audioop_us": round(theirs_us, 3),
                "ratio": round(ours_us / theirs_us, 3),
            }
    print(
        json.dumps(
            {
                "python": platform.python_version(),
                "numpy": np.__version__,
                "repeat": REPEAT,
                "samples": {k: v[0] for k, v in workloads.items()},
                "results": results,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
