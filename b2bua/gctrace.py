"""Garbage-collector pauses and cyclic garbage of a running `b2bua serve`, for benchmarks.

With the environment variable B2BUA_GCTRACE=FILE, serve calls `install`: a `gc.callbacks`
hook times every collection (generation, wall and CPU pause, objects collected), and
once a minute (B2BUA_GCTRACE_EVERY_S) and at `close` one JSON line per generation goes
to FILE: count, median, p99 and max pause in ms, the largest CPU time, the objects
collected and the objects tracked; at `close` a last line with the totals of the run.
Cost: two clock reads and a list append per collection, nothing next to the collection
itself; the once-a-minute `gc.get_objects` per generation is a few ms.

Diagnosis only (both keep or walk every object):
  * B2BUA_GCTRACE_SAVEALL=START,LENGTH (seconds after `install`, e.g. "20,10") keeps the
    cyclic garbage of that window (`gc.DEBUG_SAVEALL`) and then writes what it was: a
    count by type and detail (a function's or frame's qualified name, a bound method's
    function, an owner's `__dict__`) and, when tracemalloc traces (PYTHONTRACEMALLOC=N
    or B2BUA_TRACEMALLOC), the source lines that allocated it;
  * B2BUA_GCTRACE_CENSUS=1 adds to every report the tracked objects by type with their
    total length (a container's traversal visits every item).
This is how docs/performance.md ("Garbage collection") found what the collector walks.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import gc
import json
import os
import statistics
import time
import tracemalloc
import types
from pathlib import Path
from typing import Any

__all__ = ["GcTrace", "describe", "install"]

REPORT_EVERY_S = 60.0
TOP_KINDS = 40
TOP_SITES = 25


def describe(obj: object) -> str:
    """The type of a garbage object and, where it helps find the allocation, a detail."""
    kind = type(obj).__name__
    if isinstance(obj, types.FunctionType):
        return f"function {obj.__qualname__}"
    if isinstance(obj, types.MethodType):
        return f"method {getattr(obj.__func__, '__qualname__', '?')}"
    if isinstance(obj, types.FrameType):
        return f"frame {obj.f_code.co_qualname}"
    if isinstance(obj, types.TracebackType):
        return f"traceback {obj.tb_frame.f_code.co_qualname}"
    if isinstance(obj, types.CoroutineType):
        return f"coroutine {obj.__qualname__}"
    if isinstance(obj, types.CellType):
        try:
            return f"cell of {type(obj.cell_contents).__name__}"
        except ValueError:
            return "cell (empty)"
    if isinstance(obj, BaseException):
        return f"exception {kind}"
    if isinstance(obj, dict):
        owners = [
            type(r).__name__ for r in gc.get_referrers(obj) if getattr(r, "__dict__", None) is obj
        ]
        if owners:
            return f"dict of {owners[0]}"
        keys = sorted(str(k) for k in list(obj)[:4])
        return f"dict keys={','.join(keys)}"
    if isinstance(obj, tuple | list):
        inner = ",".join(sorted({type(x).__name__ for x in obj[:6]}))
        return f"{kind}[{len(obj)}] of {inner}"
    return f"{type(obj).__module__}.{kind}"


class GcTrace:
    """The collection timer and the optional garbage window (see the module doc)."""

    def __init__(
        self,
        out: Path,
        saveall: tuple[float, float] | None = None,
        every_s: float = REPORT_EVERY_S,
    ) -> None:
        self.out = out
        self.saveall = saveall
        self.every_s = every_s
        self.with_census = False
        self.reports = 0
        self.started = time.monotonic()
        # Pauses since the last report, per generation: (wall ms, CPU ms, collected).
        self.pauses: dict[int, list[tuple[float, float, int]]] = {0: [], 1: [], 2: []}
        self.totals: dict[int, list[float]] = {0: [], 1: [], 2: []}
        self._t0 = 0.0
        self._c0 = 0.0
        self._window_open = False
        self._window_done = saveall is None

    def callback(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._t0 = time.perf_counter()
            self._c0 = time.thread_time()
            return
        # Wall time is the pause the calls see; CPU time tells the collector's own work
        # from the time the process waited for a core (a busy machine).
        ms = (time.perf_counter() - self._t0) * 1000.0
        cpu = (time.thread_time() - self._c0) * 1000.0
        self.pauses[int(info["generation"])].append((ms, cpu, int(info["collected"])))

    def report(self) -> None:
        """One JSON line per generation with its pauses since the previous report."""
        at = round(time.monotonic() - self.started, 1)
        counts = gc.get_count()
        lines = []
        for gen, items in self.pauses.items():
            ms = [p for p, _, _ in items]
            self.totals[gen].extend(ms)
            line = {
                "t_s": at,
                "gen": gen,
                **_summary(ms),
                "cpu_max_ms": round(max((c for _, c, _ in items), default=0.0), 3),
                "collected": sum(n for _, _, n in items),
                "tracked": len(gc.get_objects(gen)),
                "pending": counts[gen],  # allocations (gen 0) or collections below
            }
            lines.append(json.dumps(line))
            items.clear()
        with self.out.open("a", encoding="utf-8") as fh:
            fh.write("\n".join(lines) + "\n")

    def totals_json(self) -> list[dict[str, Any]]:
        return [{"gen": gen, **_summary(ms)} for gen, ms in self.totals.items()]

    def census(self) -> None:
        """What the collector walks: tracked objects by kind, with their total length
        (a container's traversal visits each item)."""
        count: collections.Counter[str] = collections.Counter()
        items: collections.Counter[str] = collections.Counter()
        for obj in gc.get_objects():
            kind = f"{type(obj).__module__}.{type(obj).__qualname__}"
            count[kind] += 1
            with contextlib.suppress(TypeError):
                items[kind] += len(obj)
        at = round(time.monotonic() - self.started, 1)
        lines = [f"=== census at {at} s: {sum(count.values())} tracked; kind, count, items"]
        lines.extend(f"  {n:7d} {items[k]:9d}  {k}" for k, n in count.most_common(TOP_KINDS))
        lines.append("--- by items")
        lines.extend(f"  {count[k]:7d} {n:9d}  {k}" for k, n in items.most_common(TOP_KINDS))
        with self.out.open("a", encoding="utf-8") as fh:
            fh.write("\n".join(lines) + "\n")

    def every_second(self, loop: asyncio.AbstractEventLoop) -> None:
        self.poll()
        if time.monotonic() - self.started >= self.every_s * (self.reports + 1):
            self.reports += 1
            self.report()
            if self.with_census:
                self.census()
        if self.callback in gc.callbacks:  # not closed
            loop.call_later(1.0, self.every_second, loop)

    def poll(self) -> None:
        """Opens and closes the garbage window when its time has come."""
        if self._window_done or self.saveall is None:
            return
        start, length = self.saveall
        age = time.monotonic() - self.started
        if not self._window_open and age >= start:
            gc.collect()  # what is garbage already does not belong to the window
            gc.garbage.clear()
            gc.set_debug(gc.DEBUG_SAVEALL)
            self._window_open = True
        elif self._window_open and age >= start + length:
            gc.collect()
            gc.set_debug(0)
            garbage = list(gc.garbage)
            gc.garbage.clear()
            self._window_open = False
            self._window_done = True
            self._dump_garbage(garbage, length)
            del garbage
            gc.collect()

    def _dump_garbage(self, garbage: list[Any], length: float) -> None:
        kinds = collections.Counter(describe(obj) for obj in garbage)
        lines = [f"=== cyclic garbage of {length:g} s: {len(garbage)} objects; by kind"]
        lines.extend(f"  {n:7d}  {kind}" for kind, n in kinds.most_common(TOP_KINDS))
        if tracemalloc.is_tracing():
            sites: collections.Counter[str] = collections.Counter()
            for obj in garbage:
                tb = tracemalloc.get_object_traceback(obj)
                if tb is not None:
                    frames = [f"{f.filename.rsplit('/', 2)[-1]}:{f.lineno}" for f in list(tb)[-3:]]
                    sites[f"{type(obj).__name__} <- " + " < ".join(reversed(frames))] += 1
            lines.append("--- by allocation site (innermost first)")
            lines.extend(f"  {n:7d}  {site}" for site, n in sites.most_common(TOP_SITES))
        with self.out.open("a", encoding="utf-8") as fh:
            fh.write("\n".join(lines) + "\n")

    def close(self) -> None:
        if self.callback in gc.callbacks:
            gc.callbacks.remove(self.callback)
        if self._window_open:
            gc.set_debug(0)
            gc.garbage.clear()
        self.report()
        with self.out.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps({"total": self.totals_json()}) + "\n")


def _summary(ms: list[float]) -> dict[str, Any]:
    if not ms:
        return {"count": 0, "median_ms": None, "p99_ms": None, "max_ms": None}
    ordered = sorted(ms)
    return {
        "count": len(ms),
        "median_ms": round(statistics.median(ordered), 3),
        "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], 3),
        "max_ms": round(ordered[-1], 3),
    }


def _parse_window(text: str | None) -> tuple[float, float] | None:
    if not text:
        return None
    start, _, length = text.partition(",")
    return float(start), float(length or 10)


def install(loop: asyncio.AbstractEventLoop, out: str) -> GcTrace:
    """Time every collection, report to `out` once a minute (B2BUA_GCTRACE_EVERY_S);
    the garbage window if asked."""
    trace = GcTrace(
        Path(out),
        _parse_window(os.environ.get("B2BUA_GCTRACE_SAVEALL")),
        float(os.environ.get("B2BUA_GCTRACE_EVERY_S") or REPORT_EVERY_S),
    )
    trace.with_census = bool(os.environ.get("B2BUA_GCTRACE_CENSUS"))
    gc.callbacks.append(trace.callback)
    loop.call_later(1.0, trace.every_second, loop)
    return trace
