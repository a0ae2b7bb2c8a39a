"""Benchmark: SIP call setups per second through `b2bua serve`, SIPp on both sides.

No media (recording mode "off"): SIPp plays the trunk (bench/sipp/cps_uac.xml: INVITE,
ACK, hold --hold-ms, BYE) and the desk phone (cps_uas.xml, answers at once). The rate
steps up (--rates) for --step-s seconds each until a step has failed calls (or SIPp
could not keep the rate); each step reports successful/failed calls, the achieved rate,
SIPp's retransmissions, INVITE->200 response time and the B2BUA's CPU per call.
Prints one JSON document. Example (about a minute):
  .venv/bin/python bench/sip_cps.py --rates 50,100,200,300,400 --step-s 10
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from load import B2BUA, free_port, one_cpu_s, proc_cpu_s, proc_mem_kib, tree_pids  # noqa: E402

SIPP_DIR = ROOT / "bench" / "sipp"


def config(
    directory: Path, sip_port: int, trunk_port: int, phone_port: int, workers: int = 0
) -> Path:
    text = "\n".join(
        [
            "[sip]",
            f'listen = "127.0.0.1:{sip_port}"',
            "[rtp]",
            'ports = "47000-59999"',
            f"workers = {workers}",
            "[trunk]",
            f'host = "127.0.0.2:{trunk_port}"',
            'inbound_extension = "1000"',
            "[[extension]]",
            'number = "1000"',
            'password = "bench1000"',
            f'contact = "sip:1000@127.0.0.3:{phone_port}"',
            "[recording]",
            'mode = "off"',
            "[security]",
            "max_calls = 10000",
            "drain_s = 2",
        ]
    )
    path = directory / "office.toml"
    path.write_text(text + "\n")
    return path


def last_stats(path: Path) -> dict[str, str]:
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    head = lines[0].rstrip(";").split(";")
    values = lines[-1].rstrip(";").split(";")
    return dict(zip(head, values, strict=False))


def response_ms(text: str) -> float | None:
    """SIPp's 'hh:mm:ss:uuuuuu' (or with ms) duration -> milliseconds."""
    try:
        h, m, s, frac = text.split(":")
    except ValueError:
        return None
    scale = 1000.0 if len(frac) == 6 else 1.0
    return round((int(h) * 3600 + int(m) * 60 + int(s)) * 1000 + int(frac) / scale, 3)


def step(
    work: Path, rate: int, seconds: float, hold_ms: int, target: str, trunk_port: int, pid: int
) -> dict[str, Any]:
    scenario = work / "cps_uac.xml"
    scenario.write_text((SIPP_DIR / "cps_uac.xml").read_text().replace("HOLD_MS", str(hold_ms)))
    total = int(rate * seconds)
    stat = work / f"uac-{rate}.csv"
    by_pid0 = {p: one_cpu_s(p) for p in tree_pids(pid)}
    cpu0, t0 = proc_cpu_s(pid), time.monotonic()
    proc = subprocess.run(
        ["sipp", "-sf", str(scenario), "-s", "1000", "-i", "127.0.0.2",
         "-p", str(trunk_port), "-mp", str(free_port("127.0.0.2")),
         "-r", str(rate), "-m", str(total), "-l", str(max(100, rate * 4)),
         "-trace_stat", "-stf", str(stat), "-fd", "1", "-nostdin",
         "-timeout", f"{int(seconds) + 40}s", "-timeout_error", target],
        cwd=work, capture_output=True, text=True, timeout=seconds + 60, check=False,
    )  # fmt: skip
    elapsed = time.monotonic() - t0
    cpu = proc_cpu_s(pid) - cpu0
    by_pid = [one_cpu_s(p) - by_pid0.get(p, 0.0) for p in tree_pids(pid)]
    stats = last_stats(stat)
    ok = int(stats.get("SuccessfulCall(C)", 0))
    failed = int(stats.get("FailedCall(C)", 0))
    return {
        "rate_requested": rate,
        "calls": total,
        "successful": ok,
        "failed": failed,
        "sipp_exit": proc.returncode,
        "achieved_cps": round(ok / max(1e-9, elapsed - hold_ms / 1000), 1),
        "retransmissions": int(stats.get("Retransmissions(C)", 0)),
        "invite_to_200_ms_mean": response_ms(stats.get("ResponseTime1(C)", "")),
        "b2bua_cpu_ms_per_call": round(cpu / max(1, ok) * 1000, 3),
        # the SIP process first, then the media workers (if any)
        "cpu_ms_per_call_by_process": [round(c / max(1, ok) * 1000, 3) for c in by_pid],
        "b2bua_cpu_share": round(cpu / elapsed, 3),
        "b2bua_rss_kib": proc_mem_kib(pid)["VmRSS"],
    }


def clean(res: dict[str, Any]) -> bool:
    """No failed call, every call done, and the rate kept (within 10 %)."""
    return (
        not res["failed"]
        and res["successful"] == res["calls"]
        and res["achieved_cps"] >= 0.9 * res["rate_requested"]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", default="50,100,200,300,400,600")
    parser.add_argument("--step-s", type=float, default=10.0)
    parser.add_argument("--hold-ms", type=int, default=1000)
    parser.add_argument("--profile", type=Path, help="py-spy raw profile of the b2bua")
    parser.add_argument("--workers", type=int, default=0, help="[rtp] workers (0: in-process)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="b2bua-cps-"))
    sip_port, trunk_port, phone_port = (
        free_port("127.0.0.1"),
        free_port("127.0.0.2"),
        free_port("127.0.0.3"),
    )
    cfg = config(work, sip_port, trunk_port, phone_port, args.workers)
    log = (work / "b2bua.log").open("wb")
    b2bua = subprocess.Popen(
        [B2BUA, "serve", "--config", str(cfg), "--log-level", "warning"],
        stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    uas = subprocess.Popen(
        ["sipp", "-sf", str(SIPP_DIR / "cps_uas.xml"), "-i", "127.0.0.3",
         "-p", str(phone_port), "-mp", str(free_port("127.0.0.3")), "-nostdin",
         "-fd", "60", "-timeout", "3600s"],
        cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    steps = []
    spy: subprocess.Popen[bytes] | None = None
    try:
        for _ in range(150):  # bounded: 15 s for start-up
            if "b2bua serving" in (work / "b2bua.log").read_text(errors="replace"):
                break
            time.sleep(0.1)
        else:
            raise RuntimeError((work / "b2bua.log").read_text(errors="replace")[-2000:])
        if args.profile is not None:
            spy = subprocess.Popen(
                [str(Path(sys.executable).with_name("py-spy")), "record", "--pid",
                 str(b2bua.pid), "--rate", "250", "--format", "raw", "--output",
                 str(args.profile), "--nonblocking", "--subprocesses"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
        for rate in (int(r) for r in args.rates.split(",")):
            res = step(
                work, rate, args.step_s, args.hold_ms, f"127.0.0.1:{sip_port}",
                trunk_port, b2bua.pid,
            )  # fmt: skip
            steps.append(res)
            print(json.dumps(res), file=sys.stderr, flush=True)
            if not clean(res):
                break
            time.sleep(args.hold_ms / 1000 + 1)
    finally:
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            spy.wait(timeout=30)
        uas.send_signal(signal.SIGTERM)
        b2bua.send_signal(signal.SIGTERM)
        for p in (uas, b2bua):
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
        log.close()
    good = [s for s in steps if clean(s)]
    doc = {
        "max_clean_rate": max((s["rate_requested"] for s in good), default=None),
        "max_clean_achieved_cps": max((s["achieved_cps"] for s in good), default=None),
        "hold_ms": args.hold_ms,
        "workers": args.workers,
        "loadavg_end": os.getloadavg(),
        "steps": steps,
        "workdir": str(work),
    }
    print(json.dumps(doc, indent=2))


if __name__ == "__main__":
    main()
