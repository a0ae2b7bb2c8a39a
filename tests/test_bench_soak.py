"""The soak harness (bench/soak.py) checks its own verdict on synthetic samples, and the
serve-side allocation dump (b2bua/memtrace.py) writes its report on SIGUSR1."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent.parent / "bench"
sys.path.insert(0, str(BENCH))

import soak  # noqa: E402


def samples(rss_per_h: float, fds_idle: int) -> tuple[list[dict[str, Any]], Any, Any]:
    rows = []
    for i in range(61):  # one hour, one sample a minute
        t = 60.0 * i
        rows.append({"t_s": t, "phase": "load", "rss_kib": 100_000 + rss_per_h * t / 3600,
                     "fds": 60 + (i % 3), "threads": 7, "active_calls": 20,
                     "calls_ended": 10 * i})  # fmt: skip
    base = {"rss_kib": 90_000, "fds": 20, "threads": 7, "active_calls": 0}
    idle = {**base, "fds": fds_idle, "rss_kib": rows[-1]["rss_kib"]}
    return rows, base, idle


def test_flat_run_passes_and_growth_or_leaked_fds_fail() -> None:
    args = soak.parse_args(["--duration", "3600", "--warmup-s", "600"])
    rows, base, idle = samples(rss_per_h=1000, fds_idle=22)
    flat = soak.verdict(rows, base, idle, args)
    assert flat["pass"] and flat["samples_in_fit"] == 51
    assert abs(flat["rss_growth_kib_per_h"] - 1000) < 1
    assert abs(flat["rss_kib_per_ended_call"] - 1000 * (5 / 6) / 500) < 0.01

    rows, base, idle = samples(rss_per_h=10_000, fds_idle=20)  # 10 % of 100 MB an hour
    assert not soak.verdict(rows, base, idle, args)["rss_ok"]

    rows, base, idle = samples(rss_per_h=0, fds_idle=26)  # six descriptors not given back
    leaked = soak.verdict(rows, base, idle, args)
    assert leaked["rss_ok"] and not leaked["fds_ok"] and not leaked["pass"]


def test_duration_is_bounded() -> None:
    import pytest

    with pytest.raises(SystemExit):
        soak.parse_args(["--duration", str(25 * 3600)])
    assert soak.parse_args(["--duration", "120", "--max-s", "15"]).warmup_s == 15


def test_memtrace_dumps_growth_by_line_on_sigusr1(tmp_path: Path) -> None:
    import tracemalloc

    from b2bua.memtrace import install

    out = tmp_path / "trace.txt"
    loop = asyncio.new_event_loop()
    kept: list[bytes] = []
    try:
        install(loop, str(out))
        kept.extend(bytes(1000) for _ in range(2000))  # about 2 MB held by this line

        async def poke() -> None:
            os.kill(os.getpid(), signal.SIGUSR1)
            for _ in range(50):  # bounded: 0.5 s for the handler to run
                if out.exists():
                    return
                await asyncio.sleep(0.01)

        loop.run_until_complete(poke())
    finally:
        loop.remove_signal_handler(signal.SIGUSR1)
        loop.close()
        tracemalloc.stop()
    text = out.read_text()
    assert "dump 1" in text and "test_bench_soak.py" in text
    assert len(kept) == 2000
