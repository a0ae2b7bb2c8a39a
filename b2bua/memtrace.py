"""Allocation growth of a running `b2bua serve`, for soak tests (bench/soak.py).

With the environment variable B2BUA_TRACEMALLOC=FILE, serve calls `install`: tracemalloc
starts tracing (unless PYTHONTRACEMALLOC already started it at interpreter start), and
each SIGUSR1 appends to FILE the top allocation differences by source line against the
previous SIGUSR1 (the first one: against the moment of `install`), then the biggest
growth again with the allocating call stack. Off by default: tracing costs CPU on every
allocation and is for diagnosis only, never for production.
"""

from __future__ import annotations

import asyncio
import datetime
import linecache
import signal
import tracemalloc
from pathlib import Path

__all__ = ["install"]

FRAMES = 12
TOP_LINES = 30
TOP_STACKS = 5
_IGNORED = (
    tracemalloc.Filter(False, tracemalloc.__file__),
    # The dump's own source-line cache (formatting stacks reads the files): not ours to find.
    tracemalloc.Filter(False, linecache.__file__),
    tracemalloc.Filter(False, "<frozen importlib._bootstrap>"),
    tracemalloc.Filter(False, "<frozen importlib._bootstrap_external>"),
    tracemalloc.Filter(False, "<unknown>"),
)


class _Dumper:
    def __init__(self, out: Path) -> None:
        self.out = out
        self.previous = self._snapshot()
        self.count = 0

    @staticmethod
    def _snapshot() -> tracemalloc.Snapshot:
        return tracemalloc.take_snapshot().filter_traces(_IGNORED)

    def dump(self) -> None:
        current = self._snapshot()
        self.count += 1
        traced, peak = tracemalloc.get_traced_memory()
        now = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
        lines = [
            f"=== dump {self.count} at {now}: traced {traced // 1024} KiB, "
            f"peak {peak // 1024} KiB; growth since the previous dump, by line",
        ]
        for stat in current.compare_to(self.previous, "lineno")[:TOP_LINES]:
            lines.append(f"  {stat}")
        lines.append("--- biggest growth with its stack (innermost last)")
        for stat in current.compare_to(self.previous, "traceback")[:TOP_STACKS]:
            lines.append(f"  {stat.size_diff / 1024:+.1f} KiB, {stat.count_diff:+d} blocks")
            lines.extend(f"      {frame}" for frame in stat.traceback.format()[-2 * FRAMES :])
        with self.out.open("a", encoding="utf-8") as fh:
            fh.write("\n".join(lines) + "\n")
        self.previous = current


def install(loop: asyncio.AbstractEventLoop, out: str) -> None:
    """Start tracing and dump the growth to `out` on every SIGUSR1."""
    if not tracemalloc.is_tracing():
        tracemalloc.start(FRAMES)
    dumper = _Dumper(Path(out))
    loop.add_signal_handler(signal.SIGUSR1, dumper.dump)
