"""Benchmark: N concurrent recorded calls through `b2bua serve`, against a bare forwarder.

For each N (and each recording mode) one run does, side by side:
  1. baseline: bench/rtpgen.py sends the load through bench/forwarder.py (bare uvloop);
  2. b2bua: `b2bua serve --config X` in its own process; bench/sipload.py sets the calls
     up at --cps calls/s (inbound from the trunk; mode "record" = keypress consent: the
     trunk side sends RFC 4733 "1" 0.3 s after the answer, then the office phone is
     called, bridged and recorded); the generator streams both legs for --duration s.
CPU seconds and RSS of the middlebox come from /proc/<pid>/stat and /proc/<pid>/status;
the CPU window is the steady state (all calls bridged, before the hang-ups), and its
packet count is 100 packets/s per call times the window times (1 - loss).
Recordings are decrypted (we generated the key) and the payload fields are read back
out of the A-law samples: the seq gaps per channel and the left/right alignment.

Prints one JSON document (and writes it with --out); --plot writes a PNG of loss and
latency against N. Every wait is bounded. Example (about 2 minutes):
  .venv/bin/python bench/load.py --calls 10,50,100 --duration 10 --plot /tmp/load.png
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from rtpgen import MAGIC, MARK  # noqa: E402
from sipload import CALLER_PREFIX, SipLoad  # noqa: E402

PY = sys.executable
B2BUA = str(Path(PY).with_name("b2bua"))
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024
PACKETS_PER_CALL_S = 100  # two G.711 streams of 50 packets/s each
COUNT_DELAY_S = 0.3  # after both streams run, before their packets are counted
DTMF_DELAY_S = 0.3
GEN_KEYS = ("sender_tick_lag_ms", "cpu_s", "cpu_user_s", "cpu_system_s", "other_packets")
# Only the C generator reports these (ticks it skipped after a stall of its own).
GEN_OPTIONAL_KEYS = ("skipped_ticks",)


def tree_pids(pid: int) -> list[int]:
    """`pid` and its descendants (the B2BUA and its media workers), parents first."""
    out, todo = [], [pid]
    while todo and len(out) < 64:  # bounded: a B2BUA has a handful of children
        current = todo.pop(0)
        out.append(current)
        for task in Path(f"/proc/{current}/task").glob("*/children"):
            try:
                todo += [int(child) for child in task.read_text().split()]
            except OSError:
                continue
    return out


def one_cpu_s(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime


def proc_cpu_s(pid: int) -> float:
    """CPU seconds of the B2BUA: the serve process plus its media workers."""
    return sum(one_cpu_s(p) for p in tree_pids(pid))


def proc_mem_kib(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM summed over the process tree (the workers' own RSS counts)."""
    out = {"VmRSS": 0, "VmHWM": 0}
    for member in tree_pids(pid):
        try:
            text = Path(f"/proc/{member}/status").read_text()
        except OSError:
            continue
        for line in text.splitlines():
            key, _, value = line.partition(":")
            if key in out:
                out[key] += int(value.split()[0])
    return out


def free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def build_c() -> str:
    """Compiles bench/rtpgen.c once per source version into the temp directory."""
    src = ROOT / "bench" / "rtpgen.c"
    binary = Path(tempfile.gettempdir()) / f"b2bua-bench-rtpgen-{src.stat().st_mtime_ns}"
    if not binary.exists():
        tmp = binary.with_suffix(".tmp")
        subprocess.run(["cc", "-O2", "-o", str(tmp), str(src), "-lm"], check=True, timeout=60)
        tmp.rename(binary)
    return str(binary)


class Gen:
    """The generator process and its command pipe."""

    def __init__(self, proc: asyncio.subprocess.Process, ports: tuple[int, int]) -> None:
        self.proc, self.ports = proc, ports

    kind = "c"  # set from --gen

    @classmethod
    async def start(cls) -> Gen:
        argv = [PY, str(ROOT / "bench" / "rtpgen.py")] if cls.kind == "python" else [build_c()]
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 10)).decode().split()
        assert line[0] == "ready", line
        return cls(proc, (int(line[1]), int(line[2])))

    def send(self, text: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(text.encode() + b"\n")

    async def finish(self) -> dict[str, Any]:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        user_s, system_s = int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK
        self.send("quit")
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), 60)
        await asyncio.wait_for(self.proc.wait(), 10)
        result: dict[str, Any] = json.loads(line)
        result["cpu_user_s"], result["cpu_system_s"] = user_s, system_s
        return result


async def steady(pid: int, calls: int, duration: float) -> dict[str, Any]:
    """CPU and memory of `pid` over the steady window, RSS sampled once a second."""
    by_pid0 = {p: one_cpu_s(p) for p in tree_pids(pid)}
    cpu0, t0 = proc_cpu_s(pid), time.monotonic()
    samples: list[tuple[float, int]] = []
    for _ in range(int(duration)):  # bounded: one sample per second
        samples.append((time.monotonic() - t0, proc_mem_kib(pid)["VmRSS"]))
        await asyncio.sleep(max(0.0, t0 + len(samples) - time.monotonic()))
    await asyncio.sleep(max(0.0, t0 + duration - time.monotonic()))
    cpu1, t1 = proc_cpu_s(pid), time.monotonic()
    samples.append((t1 - t0, proc_mem_kib(pid)["VmRSS"]))
    xs = np.array([s[0] for s in samples])
    ys = np.array([s[1] for s in samples], dtype=np.float64)
    slope = float(np.polyfit(xs, ys, 1)[0]) * 60 if len(samples) > 2 else 0.0
    # Per minute of the window (the last RSS sample of each minute): whether memory levels
    # off shows here, where one slope over a long run can not tell a plateau from a leak.
    per_minute = [rss for t, rss in samples if int(t) % 60 == 59] if duration >= 120 else []
    by_pid = [round(one_cpu_s(p) - by_pid0.get(p, 0.0), 3) for p in tree_pids(pid)]
    return {
        "window_s": round(t1 - t0, 3),
        "cpu_s": round(cpu1 - cpu0, 3),
        "cpu_s_by_process": by_pid,  # the serve process first, then its media workers
        "rss_kib_start": samples[0][1],
        "rss_kib_end": samples[-1][1],
        "rss_growth_kib_per_min": round(slope, 1),
        "rss_kib_per_minute": per_minute,
        "expected_packets": PACKETS_PER_CALL_S * calls * (t1 - t0),
    }


def cpu_per_1000(window: dict[str, Any], loss_pct: float | None) -> float | None:
    packets = window["expected_packets"] * (1 - (loss_pct or 0.0) / 100)
    return round(window["cpu_s"] / packets * 1000, 4) if packets else None


async def run_forwarder(calls: int, duration: float) -> dict[str, Any]:
    gen = await Gen.start()
    a_port, b_port = gen.ports
    fwd = await asyncio.create_subprocess_exec(
        PY, str(ROOT / "bench" / "forwarder.py"), "--count", str(calls),
        "--a-dest", f"127.0.0.3:{b_port}", "--b-dest", f"127.0.0.2:{a_port}",
        stdout=subprocess.PIPE,
    )  # fmt: skip
    try:
        assert fwd.stdout is not None
        info = json.loads(await asyncio.wait_for(fwd.stdout.readline(), 30))
        idle = proc_mem_kib(fwd.pid)["VmRSS"]
        for k, (pa, pb) in enumerate(info["ports"]):
            gen.send(f"start {k} a 127.0.0.1 {pa}")
            gen.send(f"start {k} b 127.0.0.1 {pb}")
        await asyncio.sleep(1.0)
        gen.send("count all")
        window = await steady(fwd.pid, calls, duration)
        gen.send("uncount all")
        await asyncio.sleep(0.3)
        gen.send("stop all")
        mem = proc_mem_kib(fwd.pid)
    finally:
        fwd.send_signal(signal.SIGTERM)
        await asyncio.wait_for(fwd.wait(), 10)
    stats = await gen.finish()
    return {
        "calls": calls,
        "pps_forwarded": pps(calls, stats["loss_pct"]),
        "loss_pct": stats["loss_pct"],
        "latency_ms": stats["latency_ms"],
        "jitter_ms": stats["jitter_ms"],
        "cpu_ms_per_1000_packets": _ms(cpu_per_1000(window, stats["loss_pct"])),
        "rss_kib_idle": idle,
        "rss_kib_peak": mem["VmHWM"],
        "window": window,
        "generator": {k: stats[k] for k in (*GEN_KEYS, *GEN_OPTIONAL_KEYS) if k in stats},
    }


def pps(calls: int, loss_pct: float | None) -> float:
    """Packets/s relayed in the steady state: offered 100/s per call, less the loss."""
    return round(PACKETS_PER_CALL_S * calls * (1 - (loss_pct or 0.0) / 100), 1)


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)


def write_config(
    directory: Path,
    sip_port: int,
    trunk: tuple[str, int],
    phone: tuple[str, int],
    mode: str,
    workers: int = 0,
) -> Path:
    from b2bua.archive.keys import keygen

    keygen(directory / "recorder.key")
    lines = [
        "[sip]",
        f'listen = "127.0.0.1:{sip_port}"',
        "[rtp]",
        'ports = "42000-46999"',
        "inactivity_timeout_s = 60",
        *([f"workers = {workers}"] if workers else []),  # older code knows no such key
        "[trunk]",
        f'host = "{trunk[0]}:{trunk[1]}"',
        'inbound_extension = "1000"',
        "[[extension]]",
        'number = "1000"',
        'password = "bench1000"',
        f'contact = "sip:1000@{phone[0]}:{phone[1]}"',
        "employee_consent = true",
        "[recording]",
        f'mode = "{"keypress" if mode == "record" else "off"}"',
        'consent_digit = "1"',
        'language = "en"',
        'directory = "recordings"',
        'public_key = "recorder.key.pub"',
        "[security]",
        "max_calls = 5000",
        "drain_s = 5",
    ]
    path = directory / "office.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


async def wait_serving(log: Path, proc: asyncio.subprocess.Process) -> None:
    for _ in range(150):  # bounded: 15 s
        if "b2bua serving" in log.read_text(errors="replace"):
            return
        if proc.returncode is not None:
            break
        await asyncio.sleep(0.1)
    raise RuntimeError(f"b2bua did not start: {log.read_text(errors='replace')[-2000:]}")


async def run_b2bua(
    calls: int,
    duration: float,
    mode: str,
    cps: float,
    workdir: Path,
    profile: Path | None,
    workers: int = 0,
    log_level: str = "warning",
) -> dict[str, Any]:
    gen = await Gen.start()
    counting: set[int] = set()
    loop = asyncio.get_running_loop()

    def on_media(k: int, side: str, host: str, port: int) -> None:
        dtmf = f" {DTMF_DELAY_S}" if side == "a" and mode == "record" else ""
        gen.send(f"start {k} {side} {host} {port}{dtmf}")
        if side == "b":
            loop.call_later(COUNT_DELAY_S, start_counting, k)

    def start_counting(k: int) -> None:
        gen.send(f"count {k}")
        counting.add(k)

    sip = SipLoad(gen.ports, on_media)
    await sip.open()
    sip_port = free_port("127.0.0.1")
    sip.b2bua = ("127.0.0.1", sip_port)
    config = write_config(workdir, sip_port, sip.trunk_addr, sip.phone_addr, mode, workers)
    log = workdir / "b2bua.log"
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            B2BUA, "serve", "--config", str(config), "--log-level", log_level,
            stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )  # fmt: skip
    spy: subprocess.Popen[bytes] | None = None
    try:
        await wait_serving(log, proc)
        idle = proc_mem_kib(proc.pid)["VmRSS"]
        if profile is not None:  # py-spy over setup and steady state; SIGINT ends it
            spy = subprocess.Popen(
                [str(Path(PY).with_name("py-spy")), "record", "--pid", str(proc.pid),
                 "--rate", "250", "--format", "raw", "--output", str(profile),
                 "--nonblocking", "--subprocesses"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
        t_setup = time.monotonic()
        invites = []
        for k in range(calls):  # paced at cps
            invites.append(loop.create_task(sip.invite(k)))
            await asyncio.sleep(max(0.0, t_setup + (k + 1) / cps - time.monotonic()))
        await asyncio.wait_for(asyncio.gather(*invites), 30)
        for _ in range(200):  # bounded: 20 s for consent, thanks and the office leg
            states = sip.by_k.values()
            if all(st.failed or st.k in counting for st in states):
                break
            await asyncio.sleep(0.1)
        setup_s = time.monotonic() - t_setup
        bridged = len(counting)
        window = await steady(proc.pid, bridged, duration)
        gen.send("uncount all")
        if spy is not None:
            spy.send_signal(signal.SIGINT)
        await asyncio.sleep(0.3)
        gen.send("stop all")
        t_bye = time.monotonic()
        byes = []
        for i, k in enumerate(sorted(sip.by_k)):
            byes.append(loop.create_task(sip.bye(k)))
            await asyncio.sleep(max(0.0, t_bye + (i + 1) / cps - time.monotonic()))
        await asyncio.wait_for(asyncio.gather(*byes), 30)
        await asyncio.sleep(1.0)
        mem = proc_mem_kib(proc.pid)
        cpu_total = proc_cpu_s(proc.pid)
    finally:
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            spy.wait(timeout=30)
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), 60)
        except TimeoutError:  # reported as exit code -9 below
            proc.kill()
            await proc.wait()
        sip.close()
    stats = await gen.finish()
    failed = {st.k: st.failed for st in sip.by_k.values() if st.failed}
    result: dict[str, Any] = {
        "calls": calls,
        "mode": mode,
        "workers": workers,
        "bridged": bridged,
        "failed_calls": len(failed),
        "failures": dict(list(failed.items())[:5]),
        "setup_s": round(setup_s, 2),
        "b2bua_exit": proc.returncode,
        "pps_forwarded": pps(bridged, stats["loss_pct"]),
        "loss_pct": stats["loss_pct"],
        "latency_ms": stats["latency_ms"],
        "jitter_ms": stats["jitter_ms"],
        "cpu_ms_per_1000_packets": _ms(cpu_per_1000(window, stats["loss_pct"])),
        "cpu_s_total": round(cpu_total, 2),
        "rss_kib_idle": idle,
        "rss_kib_peak": mem["VmHWM"],
        "peak_rss_kib_per_call": round((mem["VmHWM"] - idle) / max(1, bridged), 1),
        "window": window,
        "generator": {k: stats[k] for k in (*GEN_KEYS, *GEN_OPTIONAL_KEYS) if k in stats},
    }
    if mode == "record":
        result["recordings"] = check_recordings(workdir, calls)
    return result


def check_recordings(workdir: Path, calls: int) -> dict[str, Any]:
    """Catalog status of every call, then decrypt each file and read our fields back."""
    import soundfile as sf

    from b2bua.archive.catalog import Catalog
    from b2bua.archive.keys import decrypt_file
    from media.g711 import encode_alaw

    with Catalog.open(workdir / "recordings") as catalog:
        rows = catalog.list()
    statuses: dict[str, int] = {}
    gaps_catalog = 0
    measured: list[dict[str, Any]] = []
    out = workdir / "check.wav"
    for row in rows:
        statuses[row["status"]] = statuses.get(row["status"], 0) + 1
        gaps = row.get("gaps") or 0
        gaps_catalog += gaps if isinstance(gaps, int) else len(gaps)
        if row["status"] != "complete" or row["path"] is None:
            continue
        if decrypt_file(workdir / "recorder.key", Path(row["path"]), out) != 0:
            measured.append({"caller": row["caller"], "error": "decrypt failed"})
            continue
        data, _rate = sf.read(out, dtype="int16")
        k = int(str(row["caller"])[len(CALLER_PREFIX) :])
        measured.append(analyse(data, k, encode_alaw))
        out.unlink()
    complete = [m for m in measured if "error" not in m]
    aligns = [abs(m["align_ms"]) for m in complete if m["align_ms"] is not None]
    return {
        "catalog_status": statuses,
        "complete": statuses.get("complete", 0),
        "expected": calls,
        "catalog_gap_entries": gaps_catalog,
        "measured_gaps_total": sum(m["gaps_left"] + m["gaps_right"] for m in complete),
        "files_with_gaps": sum(1 for m in complete if m["gaps_left"] + m["gaps_right"]),
        "repeated_frames_total": sum(m["repeats_left"] + m["repeats_right"] for m in complete),
        "align_ms_max_abs": round(max(aligns), 3) if aligns else None,
        "align_ms_median_abs": round(float(np.median(aligns)), 3) if aligns else None,
        "recorded_s_median": round(float(np.median([m["seconds"] for m in complete])), 2)
        if complete
        else None,
        "errors": [m for m in measured if "error" in m][:5],
    }


_MAGIC = re.compile(re.escape(MAGIC.to_bytes(2, "big")))


def analyse(data: Any, k: int, encode: Any) -> dict[str, Any]:
    """Gaps and alignment from one stereo recording (left: trunk stream a, right: b).

    A frame is found by its magic; chance matches inside the send-time bytes are
    dropped when their sequence number does not fit the frame's position. Gaps are
    sequence numbers missing between the first and last recorded frame; a frame
    written twice (concealment) is counted separately.
    """
    result: dict[str, Any] = {"k": k, "seconds": round(len(data) / 8000, 2)}
    offsets = []
    for name, col, side in (("left", 0, 0), ("right", 1, 1)):
        codes = encode(np.ascontiguousarray(data[:, col]))
        found = []
        for match in _MAGIC.finditer(codes):
            pos = match.start()
            if pos + MARK.size > len(codes):
                break
            _magic, kk, flags, seq, sent_ns = MARK.unpack_from(codes, pos)
            if kk == k and flags & 1 == side:
                found.append((pos, seq, sent_ns))
        if found:
            ref = float(np.median([seq - pos / 160 for pos, seq, _ in found]))
            found = [f for f in found if abs(f[1] - f[0] / 160 - ref) < 100]
        seqs = [seq for _, seq, _ in found]
        unique = sorted(set(seqs))
        result[f"frames_{name}"] = len(unique)
        result[f"gaps_{name}"] = (unique[-1] - unique[0] + 1 - len(unique)) if unique else 0
        result[f"repeats_{name}"] = len(seqs) - len(unique)
        offs = [sent_ns / 1e9 - pos / 8000 for pos, _, sent_ns in found]
        offsets.append(float(np.median(offs)) if offs else None)
    left, right = offsets
    result["align_ms"] = None if left is None or right is None else (left - right) * 1000
    return result


def plot(results: list[dict[str, Any]], path: Path) -> None:
    """Loss and p50/p99 latency against N, one colour per middlebox; runs without a
    measurement (no call bridged) are left out rather than drawn as zero."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    series: dict[str, list[dict[str, Any]]] = {}
    for run in results:
        for name, res in run.items():
            if isinstance(res, dict) and res.get("loss_pct") is not None:
                series.setdefault(name, []).append(res)
    for i, (name, runs) in enumerate(series.items()):
        colour = f"C{i}"
        xs = [r["calls"] for r in runs]
        ax1.plot(xs, [r["loss_pct"] for r in runs], marker="o", color=colour, label=name)
        ax2.plot(xs, [r["latency_ms"]["p99"] for r in runs], marker="o", color=colour,
                 label=f"{name} p99")  # fmt: skip
        ax2.plot(xs, [r["latency_ms"]["p50"] for r in runs], ls="--", marker=".",
                 color=colour, label=f"{name} p50")  # fmt: skip
    ax1.set(xlabel="concurrent calls", ylabel="loss %", title="packet loss (target < 0.01 %)")
    ax2.set(xlabel="concurrent calls", ylabel="one-way ms", title="added latency (p99 < 5 ms)")
    ax1.axhline(0.01, color="grey", lw=0.5)
    ax2.axhline(5, color="grey", lw=0.5)
    ax1.set_yscale("symlog", linthresh=0.01)  # the target (0.01 %) and collapse both show
    ax2.set_yscale("log")
    ax1.set_ylim(bottom=0)
    for ax in (ax1, ax2):
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", default="10,50,100", help="comma-separated N values")
    parser.add_argument("--duration", type=float, default=10.0, help="steady seconds per run")
    parser.add_argument(
        "--modes", default="record,off", help="record (keypress), off; none: forwarder only"
    )
    parser.add_argument("--cps", type=float, default=50.0, help="call setups per second")
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    parser.add_argument("--plot", type=Path, help="PNG of loss and latency against N")
    parser.add_argument("--profile-dir", type=Path, help="py-spy raw profiles of the b2bua")
    parser.add_argument("--keep", action="store_true", help="keep the work directories")
    parser.add_argument(
        "--log-level",
        default="warning",
        help="b2bua serve --log-level (info: every call's "
        "recording_stopped line with the mixer's gap, late and drift counters; with --keep)",
    )
    parser.add_argument(
        "--gen", choices=["c", "python"], default="c", help="RTP generator: rtpgen.c or .py"
    )
    parser.add_argument("--baseline-s", type=float, help="forwarder seconds (default: --duration)")
    parser.add_argument("--replot", type=Path, help="only plot this earlier --out JSON")
    parser.add_argument(
        "--workers", default="0", help="[rtp] workers per run, comma-separated (0: in-process)"
    )
    args = parser.parse_args()
    if args.replot is not None:
        plot(json.loads(args.replot.read_text())["runs"], args.plot or Path("load.png"))
        return
    Gen.kind = args.gen
    results = []
    for calls in (int(x) for x in args.calls.split(",")):
        run: dict[str, Any] = {"calls": calls, "load_before": os.getloadavg()}
        # A long memory run needs no long baseline: the ratio is per packet.
        baseline_s = args.baseline_s if args.baseline_s is not None else args.duration
        run["forwarder"] = await run_forwarder(calls, baseline_s)
        modes = [m for m in args.modes.split(",") if m not in ("", "none")]
        for mode, workers in [(m, int(w)) for m in modes for w in args.workers.split(",")]:
            work = Path(tempfile.mkdtemp(prefix=f"b2bua-load-{calls}-{mode}-"))
            profile = None
            if args.profile_dir is not None:
                args.profile_dir.mkdir(parents=True, exist_ok=True)
                profile = args.profile_dir / f"b2bua-{calls}-{mode}-w{workers}.txt"
            res = await run_b2bua(
                calls, args.duration, mode, args.cps, work, profile, workers, args.log_level
            )
            fwd = run["forwarder"]["cpu_ms_per_1000_packets"]
            mine = res["cpu_ms_per_1000_packets"]
            res["cpu_ratio_vs_forwarder"] = round(mine / fwd, 2) if mine and fwd else None
            res["workdir"] = str(work) if args.keep else None
            run[f"b2bua_{mode}" + (f"_w{workers}" if workers else "")] = res
            if not args.keep:
                subprocess.run(["rm", "-rf", str(work)], check=False)
        results.append(run)
        print(json.dumps(run), file=sys.stderr, flush=True)
    doc = {
        "machine": {"cpus": os.cpu_count(), "loadavg_end": os.getloadavg()},
        "generator": args.gen,
        "runs": results,
    }
    text = json.dumps(doc, indent=2)
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n")
    if args.plot is not None:
        plot(results, args.plot)


if __name__ == "__main__":
    asyncio.run(main())
