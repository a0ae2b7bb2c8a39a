"""In-band DTMF muting alone: CPU per channel and recording step, against a baseline copy.

What the recording hub's step does for the muting (``feed_muters`` over every channel of
a step's calls), outside the server: 34 channels (17 calls), 240 ms (1,920 samples) per
channel and step, audio ``speech`` (bench/recorder_bench.py's espeak-ng speech at about
-20 dBFS with line noise, each channel at its own offset) or ``noise`` (line noise at
about -80 dBFS, which the quiet gate passes). CPU is ``time.process_time`` around
``feed_muters`` only. Each measurement runs in its own process; the working tree and
``--head`` alternate, and the JSON gives the median per code and audio and the ratio
now / head.

    .venv/bin/python bench/muting_bench.py --head /tmp/sess4 --runs 5

``--head DIR`` is a ``git archive <rev> b2bua rtp media`` copy (PYTHONPATH).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

CHANNELS = 34
STEP = 1920  # 240 ms at 8 kHz


def _signal(kind: str) -> np.ndarray:
    if kind == "noise":
        return np.random.default_rng(1).normal(0, 3, 130_000).astype(np.int16)
    # The recorder benchmark's speech fixture, so both benchmarks measure the same audio.
    sys.path.insert(0, str(Path(__file__).parent))
    import recorder_bench

    speech: np.ndarray = recorder_bench._speech_pcm()
    return speech


def _worker(kind: str, steps: int) -> dict[str, Any]:
    try:
        from media.dtmf_mute import DtmfMuter, feed_muters
    except ImportError:  # code from before media/dtmf_mute.py
        from media.dtmf import DtmfMuter, feed_muters  # type: ignore[attr-defined,no-redef]
    raw = _signal(kind)
    looped = np.resize(raw, len(raw) * 4)
    muters = [DtmfMuter(8000, delay_s=0.1) for _ in range(CHANNELS)]
    offsets = [(k * 7919 * 160) % len(raw) for k in range(CHANNELS)]

    def blocks(step: int) -> list[np.ndarray]:
        starts = [(o + step * STEP) % len(raw) for o in offsets]
        return [looped[a : a + STEP] for a in starts]

    feed_muters(muters, blocks(0), 0.0)  # tables and first allocations outside the timing
    cpu = 0.0
    for step in range(1, steps):
        chunk = blocks(step)
        started = time.process_time()
        feed_muters(muters, chunk, step * 0.24)
        cpu += time.process_time() - started
    import media.dtmf

    return {
        "code": str(Path(media.dtmf.__file__).resolve().parent.parent),
        "kind": kind,
        "us_per_channel_step": 1e6 * cpu / ((steps - 1) * CHANNELS),
    }


def _run(code: str | None, kind: str, steps: int) -> float:
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1")
    if code is not None:
        env["PYTHONPATH"] = code
    cmd = [sys.executable, __file__, "--worker", kind, "--steps", str(steps)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True, timeout=300)
    return float(json.loads(done.stdout)["us_per_channel_step"])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--head", help="a git-archive copy to compare with (PYTHONPATH)")
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--steps", type=int, default=800)
    p.add_argument("--kinds", default="speech,noise")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        print(json.dumps(_worker(args.worker, args.steps)))
        return
    codes: dict[str, str | None] = {"now": None}
    if args.head:
        codes["head"] = args.head
    samples: dict[str, list[float]] = {}
    for _ in range(args.runs):
        for kind in args.kinds.split(","):
            for name, code in codes.items():
                samples.setdefault(f"{name}/{kind}", []).append(_run(code, kind, args.steps))
    out: dict[str, Any] = {
        "loadavg": os.getloadavg(),
        "channels": CHANNELS,
        "step_samples": STEP,
        "us_per_channel_step": {
            key: {"median": round(statistics.median(v), 1), "runs": [round(x, 1) for x in v]}
            for key, v in samples.items()
        },
    }
    if args.head:
        out["ratio_now_to_head"] = {
            kind: round(
                statistics.median(samples[f"now/{kind}"])
                / statistics.median(samples[f"head/{kind}"]),
                3,
            )
            for kind in args.kinds.split(",")
        }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
