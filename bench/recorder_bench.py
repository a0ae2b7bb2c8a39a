"""Recorder work per call outside the server: CPU per call-second and memory per call.

Drives N ``CallRecorder``s the way ``b2bua.recording_hub`` does (not a test; prints JSON):
every 20 ms each leg gets one 20 ms A-law packet (``TapPacket``, as the relay's tap
makes them); a call is visited (``CallRecorder.feed``) every 40 ms and records every
240 ms on its phase (``tick_recorders`` in batches of up to 8 calls, as
``RECORD_BATCH``), with real age encryption to files in a temporary directory. Time is
simulated (the recorder is sans-I/O); CPU is ``time.process_time`` around the feed and
tick calls only (building the packets is not counted).

Audio kinds: ``silence`` (A-law 0xD5), ``speech`` (espeak-ng speech at about -20 dBFS
plus low noise, each leg at its own offset), ``loadgen`` (what bench/rtpgen.c sends:
a 17-byte stamp, then zero bytes).

Memory: VmRSS after the run minus VmRSS before the recorders were made (audio tables and
imports are in the baseline), and in a separate process the tracemalloc-traced heap
growth, per call.

    .venv/bin/python bench/recorder_bench.py --calls 100 --seconds 30 --rounds 3 \
        --head /tmp/rechead --out /tmp/recbench.json

``--head DIR`` runs every measurement a second time with ``PYTHONPATH=DIR`` (a
``git archive HEAD rtp media b2bua`` copy), interleaved with the working tree's runs.
``--identity-check --head DIR`` only checks that both record the same from the same
packets (audio hash, samples, gaps, mixer statistics, digits; exit 1 if not).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np

TICK_S = 0.02
FEED_EVERY = 2
RECORD_EVERY = 12
RECORD_BATCH = 8
FRAME = 160
KINDS = ("silence", "speech", "loadgen")
SPEECH_CACHE = Path(tempfile.gettempdir()) / "recorder_bench_speech_8k.raw"
SPEECH_TEXT = (
    "Guten Tag, Sie sind mit dem Buero verbunden. Dieses Gespraech wird aufgezeichnet. "
    "Good morning, this is the office, how can I help you today? I would like to ask "
    "about the invoice from last month and the delivery that has not arrived yet."
)


def _rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _speech_pcm() -> np.ndarray:
    """About 10 s of espeak-ng speech at 8 kHz, ~-20 dBFS RMS while talking, + noise."""
    if not SPEECH_CACHE.exists():
        with tempfile.TemporaryDirectory() as tmp:
            wav = Path(tmp) / "s.wav"
            subprocess.run(["espeak-ng", "-s", "150", "-w", str(wav), SPEECH_TEXT], check=True)
            raw = Path(tmp) / "s.raw"
            subprocess.run(
                ["sox", str(wav), "-r", "8000", "-c", "1", "-b", "16", "-e", "signed", str(raw)],
                check=True,
            )
            shutil.copy(raw, SPEECH_CACHE)
    pcm = np.frombuffer(SPEECH_CACHE.read_bytes(), dtype="<i2").astype(np.float64)
    talking = pcm[np.abs(pcm) > 100]
    rms = float(np.sqrt(np.mean(talking**2))) if talking.size else 1.0
    pcm *= 32768 * 10 ** (-20 / 20) / rms
    rng = np.random.default_rng(1)
    pcm += rng.normal(0, 32768 * 10 ** (-60 / 20), pcm.shape[0])  # line noise
    out: np.ndarray = np.clip(pcm, -32768, 32767).astype(np.int16)
    return out


def _payloads(kind: str) -> bytes | None:
    """A-law bytes every leg reads from at its own offset (None: loadgen stamps)."""
    from media.g711 import encode_alaw

    if kind == "silence":
        return b"\xd5" * (FRAME * 500)
    if kind == "speech":
        return bytes(encode_alaw(_speech_pcm()))
    return None


def _worker(args: argparse.Namespace) -> dict[str, Any]:
    from b2bua.recorder import LEFT, RIGHT, CallRecorder, tick_recorders
    from media.agefile import generate_identity, recipient_from_identity
    from rtp.relay import MediaFormat
    from rtp.tap import TapPacket

    kind: str = args.kind
    audio = _payloads(kind)
    fmt = MediaFormat(8, "PCMA", 101)
    recipient = recipient_from_identity(generate_identity()[0])
    calls: int = args.calls
    ticks = round(args.seconds / TICK_S)
    tmp = Path(tempfile.mkdtemp(prefix="recbench-"))
    try:
        # Warm-up outside the baseline: one recorder through a few ticks, so lazily built
        # tables (DTMF basis, codec pairs) and imports are not counted per call.
        warm = CallRecorder("warm", batch_s=RECORD_EVERY * TICK_S / 2)
        warm.assign_leg("wa", LEFT, fmt)
        warm.assign_leg("wb", RIGHT, fmt)
        warm.start(0.0, tmp / "warm.wav.age", [recipient])
        for i in range(30):
            t = 0.001 + i * TICK_S
            warm.feed(
                [TapPacket(leg, t, i, i * FRAME, 1, 8, False, b"\xd5" * FRAME) for leg in "ab"]
            )
            if i % RECORD_EVERY == 0:
                tick_recorders([warm], t)
        warm.stop(1.0)
        if args.tracemalloc:
            tracemalloc.start()
        rss0 = _rss_kib()
        traced0 = tracemalloc.get_traced_memory()[0] if args.tracemalloc else 0
        recorders = []
        for k in range(calls):
            rec = CallRecorder(f"c{k}", batch_s=RECORD_EVERY * TICK_S / 2)
            rec.assign_leg(f"a{k}", LEFT, fmt)
            rec.assign_leg(f"b{k}", RIGHT, fmt)
            # Starts spread over one chunk's time (~2 s), as calls in a server are: the
            # writers' partly filled chunks are then at all sizes, not all full at once.
            rec.start(k * 2.048 / calls, tmp / f"c{k}.wav.age", [recipient])
            recorders.append(rec)
        offsets = [(k * 7919 * FRAME, k * 104729 * FRAME) for k in range(calls)]
        pending: list[list[Any]] = [[] for _ in range(calls)]
        feed_cpu = tick_cpu = 0.0
        rss_peak = 0
        traced_samples: list[int] = []
        for tick in range(ticks):
            t = tick * TICK_S
            for k in range(calls):
                for side, leg in ((0, f"a{k}"), (1, f"b{k}")):
                    arrival = t + 0.0005 * (k % 20) + side * 0.0001
                    if audio is None:
                        stamp = struct.pack(">HHBIQ", 0xB2B5, k, side, tick, int(arrival * 1e9))
                        payload = stamp + bytes(FRAME - len(stamp))
                    else:
                        pos = (offsets[k][side] + tick * FRAME) % (len(audio) - FRAME)
                        payload = audio[pos : pos + FRAME]
                    pending[k].append(
                        TapPacket(
                            leg, arrival, tick & 0xFFFF, tick * FRAME, 1000 + k, 8, False, payload
                        )
                    )
            now = t + 0.012  # the hub's tick runs after the packets of this 20 ms arrived
            c0 = time.process_time()
            for k in range(calls):
                step = (tick - k) % RECORD_EVERY
                if step % FEED_EVERY == 0:
                    recorders[k].feed(pending[k])
                    pending[k] = []
            c1 = time.process_time()
            due = [recorders[k] for k in range(calls) if (tick - k) % RECORD_EVERY == 0]
            for i in range(0, len(due), RECORD_BATCH):
                tick_recorders(due[i : i + RECORD_BATCH], now)
            c2 = time.process_time()
            feed_cpu += c1 - c0
            tick_cpu += c2 - c1
            if tick % 250 == 0:
                rss_peak = max(rss_peak, _rss_kib())
            if args.tracemalloc and tick >= ticks // 2 and tick % 25 == 0:
                traced_samples.append(tracemalloc.get_traced_memory()[0])
        rss1 = _rss_kib()
        rss_peak = max(rss_peak, rss1)
        traced1, traced_peak = tracemalloc.get_traced_memory() if args.tracemalloc else (0, 0)
        results = [rec.stop(args.seconds + 0.2) for rec in recorders]
        audio_s = calls * args.seconds
        import b2bua.recorder as recorder_module

        out: dict[str, Any] = {
            "code": str(Path(recorder_module.__file__).resolve().parent.parent),
            "kind": kind,
            "calls": calls,
            "seconds": args.seconds,
            "cpu_us_per_call_s": 1e6 * (feed_cpu + tick_cpu) / audio_s,
            "feed_us_per_call_s": 1e6 * feed_cpu / audio_s,
            "tick_us_per_call_s": 1e6 * tick_cpu / audio_s,
            "rss_kib_per_call": (rss1 - rss0) / calls,
            "rss_peak_kib_per_call": (rss_peak - rss0) / calls,
            "recorded_s": sum(r.duration_s for r in results) / calls,
            "gaps": sum(r.gaps for r in results),
            "digits": sum(len(r.digits) for r in results),
            "sha256_first": results[0].sha256,
        }
        if args.tracemalloc:
            out["traced_kib_per_call"] = (traced1 - traced0) / 1024 / calls
            # Mean over the second half of the run (every 0.5 s): the writers' buffers
            # fill and empty every ~2 s, so one moment says little.
            mean = statistics.mean(traced_samples) if traced_samples else traced1
            out["traced_mean_kib_per_call"] = (mean - traced0) / 1024 / calls
            out["traced_peak_kib_per_call"] = (traced_peak - traced0) / 1024 / calls
        return out
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _identity(args: argparse.Namespace) -> list[Any]:
    """What the recorder makes of one fixed set of packets, for comparing two versions:
    12 calls of 20 s of speech with quiet stretches, recorded three at a time, in-band
    digits at the weakest accepted level and louder, 2 % loss, up to 30 ms of jitter; per
    call the hash of the audio handed to the writer, samples, gaps, mixer statistics and
    digits."""
    import hashlib

    from b2bua.recorder import LEFT, RIGHT, CallRecorder, tick_recorders
    from media.dtmf import tone
    from media.g711 import encode_alaw
    from media.writer import WriterResult
    from rtp.relay import MediaFormat
    from rtp.tap import TapPacket

    class HashWriter:
        def __init__(self, path: Path) -> None:
            self.path, self.hash, self.frames = path, hashlib.sha256(), 0

        def write_frames(self, frames: np.ndarray) -> None:
            self.hash.update(frames.tobytes())
            self.frames += len(frames)

        def close(self) -> WriterResult:
            return WriterResult(self.path, self.frames, 1, self.hash.hexdigest(), False)

        def abort_truncated(self) -> WriterResult:
            return self.close()

    speech = _speech_pcm()
    rng = np.random.default_rng(5)
    calls, seconds = 12, 20
    signals = {}
    for k in range(calls):
        for side in range(2):
            s = np.resize(np.roll(speech, k * 9000 + side * 31000), 8000 * seconds)
            s = s.astype(np.float64)
            s[: 8000 * seconds // 3] *= 0.02 if (k + side) % 2 else 1.0  # quiet stretches
            for j, digit in enumerate("159#*0"):
                pos = 8000 * (2 + 3 * j) + k * 500
                level = (-28.8, -20.0, -10.0)[(j + k) % 3]  # -28.8: the weakest accepted
                s[pos : pos + 480] = tone(digit, 0.06, level)
            s[8000 * 15 : 8000 * 16] = 0
            signals[(k, side)] = np.clip(s, -32768, 32767).astype(np.int16)
    fmt = MediaFormat(8, "PCMA", 101)
    recorders = []
    for k in range(calls):
        rec = CallRecorder(
            f"c{k}", batch_s=RECORD_EVERY * TICK_S / 2, writer_factory=lambda p, r, m: HashWriter(p)
        )
        rec.assign_leg(f"a{k}", LEFT, fmt)
        rec.assign_leg(f"b{k}", RIGHT, fmt)
        rec.start(0.0, Path(f"c{k}"), ["unused"])
        recorders.append(rec)
    pending: list[list[Any]] = [[] for _ in range(calls)]
    for i in range(seconds * 50):
        t = 0.001 + i * TICK_S
        for k in range(calls):
            for side, leg in ((0, "a"), (1, "b")):
                if rng.random() < 0.02:
                    continue  # lost
                arrival = t + rng.random() * 0.03
                payload = bytes(encode_alaw(signals[(k, side)][i * FRAME : (i + 1) * FRAME]))
                pending[k].append(
                    TapPacket(f"{leg}{k}", arrival, i & 0xFFFF, i * FRAME, 7 + k, 8, False, payload)
                )
        for k in range(calls):
            if (i - k) % FEED_EVERY == 0:
                recorders[k].feed(sorted(pending[k], key=lambda p: p.arrival))
                pending[k] = []
        # Three calls per recording step, as a hub's tick batches them.
        due = [recorders[k] for k in range(calls) if (i - k // 3) % RECORD_EVERY == 0]
        if due:
            tick_recorders(due, t + 0.035)
    out = []
    for rec in recorders:
        res = rec.stop(seconds + 1.0)
        digits = [(d.side, d.digit, d.at, d.method) for d in res.digits]
        out.append([res.sha256, res.samples, res.gaps, res.gap_seconds, repr(res.mixer), digits])
    return out


def _run_worker(code: str | None, kind: str, args: argparse.Namespace, traced: bool) -> Any:
    env = dict(os.environ)
    env["OPENBLAS_NUM_THREADS"] = env.get("OPENBLAS_NUM_THREADS", "1")
    if code is not None:
        env["PYTHONPATH"] = code
    seconds = args.traced_seconds if traced else args.seconds
    cmd = [
        sys.executable,
        __file__,
        "--worker",
        "--kind",
        kind,
        "--calls",
        str(args.calls),
        "--seconds",
        str(seconds),
    ]
    if traced:
        cmd.append("--tracemalloc")
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--calls", type=int, default=100)
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument("--traced-seconds", type=float, default=6.0)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--kinds", default=",".join(KINDS))
    p.add_argument("--head", help="a git-archive copy of HEAD to compare with (PYTHONPATH)")
    p.add_argument("--out", type=Path)
    p.add_argument("--no-trace", action="store_true", help="skip the tracemalloc runs")
    p.add_argument(
        "--identity-check",
        action="store_true",
        help="only compare what the working tree and --head record from the same packets",
    )
    p.add_argument("--identity", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--kind", default="silence", help=argparse.SUPPRESS)
    p.add_argument("--tracemalloc", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.identity:
        print(json.dumps(_identity(args)))
        return
    if args.worker:
        print(json.dumps(_worker(args)))
        return
    if args.identity_check:
        if not args.head:
            p.error("--identity-check needs --head")
        made = {}
        for name, code in (("new", None), ("head", args.head)):
            env = dict(os.environ, OPENBLAS_NUM_THREADS="1")
            if code is not None:
                env["PYTHONPATH"] = code
            done = subprocess.run(
                [sys.executable, __file__, "--identity"],
                env=env,
                capture_output=True,
                text=True,
                check=True,
            )
            made[name] = json.loads(done.stdout)
        same = made["new"] == made["head"]
        digits = [len(call[5]) for call in made["new"]]
        print(json.dumps({"identical": same, "digits_per_call": digits}))
        sys.exit(0 if same else 1)
    codes: list[tuple[str, str | None]] = [("new", None)]
    if args.head:
        codes.append(("head", args.head))
    kinds = args.kinds.split(",")
    runs: dict[tuple[str, str], list[Any]] = {}
    for rnd in range(args.rounds):
        for kind in kinds:
            for name, code in codes if rnd % 2 == 0 else codes[::-1]:
                r = _run_worker(code, kind, args, traced=False)
                runs.setdefault((name, kind), []).append(r)
                print(
                    f"round {rnd} {name:4} {kind:8} cpu {r['cpu_us_per_call_s']:7.1f} us/call-s "
                    f"(feed {r['feed_us_per_call_s']:.1f}, tick {r['tick_us_per_call_s']:.1f}) "
                    f"rss {r['rss_kib_per_call']:.0f} KiB/call",
                    file=sys.stderr,
                )
    traced: dict[str, Any] = {}
    if not args.no_trace:
        for name, code in codes:
            traced[name] = _run_worker(code, kinds[0], args, traced=True)
    summary: dict[str, Any] = {
        "calls": args.calls,
        "seconds": args.seconds,
        "rounds": args.rounds,
        "load": os.getloadavg(),
        "results": {},
    }
    for (name, kind), rs in runs.items():
        med = {
            key: statistics.median(r[key] for r in rs)
            for key in (
                "cpu_us_per_call_s",
                "feed_us_per_call_s",
                "tick_us_per_call_s",
                "rss_kib_per_call",
                "rss_peak_kib_per_call",
            )
        }
        med["all_cpu"] = [round(r["cpu_us_per_call_s"], 1) for r in rs]
        med["gaps"] = rs[0]["gaps"]
        med["recorded_s"] = rs[0]["recorded_s"]
        med["code"] = rs[0]["code"]
        summary["results"][f"{name}/{kind}"] = med
    summary["traced"] = {
        name: {k: v for k, v in t.items() if k.startswith("traced") or k == "kind"}
        for name, t in traced.items()
    }
    text = json.dumps(summary, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
