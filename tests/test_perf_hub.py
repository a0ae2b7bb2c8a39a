"""RecordingHub's tick: recording steps spread over phases, work sliced with yields."""

from __future__ import annotations

import asyncio
import itertools
import time
from pathlib import Path
from typing import Any, cast

from b2bua import recording_hub
from b2bua.recorder import RecorderState
from b2bua.recording_hub import (
    FEED_EVERY,
    OVERDUE_S,
    RECORD_BATCH,
    RECORD_EVERY,
    SLICE_S,
    CallMedia,
    RecordingHub,
)
from rtp.relay import MediaFormat
from tests.conftest import run_async


class StubLeg:
    """What the hub uses of a RelayLeg when no prompt plays."""

    def __init__(self, leg_id: str) -> None:
        self.leg_id = leg_id
        self.fmt = MediaFormat(8, "PCMA", 101)
        self.tap: Any = None

    def inject(self, payload: bytes, **_: Any) -> bool:
        return True


def _hub(tmp_path: Path, calls: int) -> RecordingHub:
    hub = RecordingHub(directory=tmp_path, recipients=(), prompts={}, catalog=None)
    for k in range(calls):
        hub.open_call(
            f"c{k}",
            external=cast(Any, StubLeg(f"c{k}-a")),
            direction="inbound",
            caller="1",
            callee="2",
            extension=None,
            sip_call_id=f"sip{k}",
        )
    return hub


def test_each_call_records_once_per_period_and_the_load_is_even(tmp_path: Path) -> None:
    calls = 23
    visits: list[str] = []
    recorded: list[list[str]] = []  # per tick: the calls whose recording step ran

    async def main() -> None:
        hub = _hub(tmp_path, calls)
        hub._loop = asyncio.get_running_loop()
        for media in hub.calls.values():
            media.recorder.state = RecorderState.RECORDING  # as after consent

        def tick(media: CallMedia, now: float, *, record: bool = True) -> None:
            assert not record  # the recording step is batched, not done per call
            visits.append(media.call_id)

        def record(batch: list[CallMedia], now: float) -> None:
            assert 0 < len(batch) <= RECORD_BATCH
            recorded[-1].extend(media.call_id for media in batch)

        hub._tick = tick  # type: ignore[method-assign]
        hub._record = record  # type: ignore[method-assign]
        for _ in range(3 * RECORD_EVERY):
            recorded.append([])
            await hub.run_tick()

    run_async(main, timeout=10)
    # Every call is visited on every tick (tap drained, digits reported at 20 ms) ...
    assert len(visits) == calls * 3 * RECORD_EVERY
    # ... and records on exactly one tick of every RECORD_EVERY.
    flat = [c for tick in recorded for c in tick]
    assert sorted(set(flat)) == sorted(f"c{k}" for k in range(calls))
    assert all(flat.count(f"c{k}") == 3 for k in range(calls))
    per_tick = [len(tick) for tick in recorded[:RECORD_EVERY]]
    assert max(per_tick) - min(per_tick) <= 1  # round-robin phases: an even load
    assert recorded[:RECORD_EVERY] == recorded[RECORD_EVERY : 2 * RECORD_EVERY]


def test_a_call_that_only_records_is_visited_every_feed_period(tmp_path: Path) -> None:
    visits: list[list[str]] = []
    recorded: list[list[str]] = []

    async def main() -> None:
        hub = _hub(tmp_path, 7)
        hub._loop = asyncio.get_running_loop()
        for media in hub.calls.values():
            media.recorder.state = RecorderState.RECORDING
            media.detector = None  # consent given: no in-band listening, no prompt
        hub.calls["c0"].player = cast(Any, object())  # c0 still plays a prompt

        def tick(media: CallMedia, now: float, *, record: bool = True) -> None:
            visits[-1].append(media.call_id)

        def record(batch: list[CallMedia], now: float) -> None:
            recorded[-1].extend(media.call_id for media in batch)

        hub._tick = tick  # type: ignore[method-assign]
        hub._record = record  # type: ignore[method-assign]
        for _ in range(2 * RECORD_EVERY):
            visits.append([])
            recorded.append([])
            await hub.run_tick()

    run_async(main, timeout=10)
    per_call = {f"c{k}": sum(f"c{k}" in v for v in visits) for k in range(7)}
    assert per_call.pop("c0") == 2 * RECORD_EVERY  # a prompt is paced on every tick
    assert set(per_call.values()) == {2 * RECORD_EVERY // FEED_EVERY}
    for k in range(7):  # the recording step falls on a visit, once per period
        ticks = [i for i, r in enumerate(recorded) if f"c{k}" in r]
        assert len(ticks) == 2 and ticks[1] - ticks[0] == RECORD_EVERY
        assert all(f"c{k}" in visits[i] for i in ticks)


def test_calls_not_recording_get_no_recording_step(tmp_path: Path) -> None:
    recorded: list[str] = []

    async def main() -> None:
        hub = _hub(tmp_path, 4)  # still asking for consent: recorders idle
        hub._loop = asyncio.get_running_loop()
        hub._record = lambda batch, now: recorded.extend(m.call_id for m in batch)  # type: ignore[method-assign]
        for _ in range(RECORD_EVERY):
            await hub.run_tick()

    run_async(main, timeout=10)
    assert recorded == []


def test_a_long_tick_yields_to_the_loop_between_slices(tmp_path: Path) -> None:
    calls = 12
    busy_s = SLICE_S * 0.6  # two calls per slice
    done: list[str] = []
    observed: list[int] = []

    async def main() -> None:
        hub = _hub(tmp_path, calls)
        hub._loop = asyncio.get_running_loop()

        def tick(media: CallMedia, now: float, *, record: bool = True) -> None:
            end = time.monotonic() + busy_s  # stands for a call's mixing and muting
            while time.monotonic() < end:
                pass
            done.append(media.call_id)

        hub._tick = tick  # type: ignore[method-assign]
        # What the relay would do: a callback that is ready while the tick runs.
        hub._loop.call_soon(lambda: observed.append(len(done)))
        await hub.run_tick()
        assert hub.slices >= calls // 3

    run_async(main, timeout=10)
    assert len(done) == calls
    assert observed and observed[0] < calls  # it ran in the middle of the tick


def test_a_call_that_ends_while_the_tick_yields_is_skipped(tmp_path: Path) -> None:
    calls = 6
    done: list[str] = []

    async def main() -> None:
        hub = _hub(tmp_path, calls)
        loop = hub._loop = asyncio.get_running_loop()

        def tick(media: CallMedia, now: float, *, record: bool = True) -> None:
            end = time.monotonic() + SLICE_S * 1.2  # every call ends a slice
            while time.monotonic() < end:
                pass
            done.append(media.call_id)

        hub._tick = tick  # type: ignore[method-assign]
        loop.call_soon(lambda: hub.call_ended("c3", loop.time(), "bye"))
        await hub.run_tick()
        assert "c3" not in hub.calls

    run_async(main, timeout=10)
    assert "c3" not in done
    assert len(done) == calls - 1


def test_slice_budget_is_well_below_a_packet_interval() -> None:
    # A packet every 20 ms per stream: a slice must be a small part of that, or the
    # relay's added latency grows with the number of calls again.
    assert recording_hub.SLICE_S <= recording_hub.TICK_S / 5


def test_recording_steps_keep_to_the_clock_when_ticks_run_late(tmp_path: Path) -> None:
    """Ticks of 60 ms instead of 20 (an overloaded loop): by the tick count alone a call
    would record every 12 x 60 = 720 ms, by the clock it records about every OVERDUE_S."""
    calls = 6
    steps: dict[str, list[float]] = {f"c{k}": [] for k in range(calls)}

    async def main() -> None:
        hub = _hub(tmp_path, calls)
        loop = asyncio.get_running_loop()
        hub._loop = loop
        for media in hub.calls.values():
            media.recorder.state = RecorderState.RECORDING  # as after consent
            media.recorded_at = loop.time()

        def tick(media: CallMedia, now: float, *, record: bool = True) -> None:
            time.sleep(0.01)  # six calls: 60 ms per tick

        def record(batch: list[CallMedia], now: float) -> None:
            for media in batch:
                steps[media.call_id].append(now)

        hub._tick = tick  # type: ignore[method-assign]
        hub._record = record  # type: ignore[method-assign]
        for _ in range(2 * RECORD_EVERY):
            await hub.run_tick()

    run_async(main, timeout=20)
    for call_id, times in steps.items():
        assert len(times) >= 4, (call_id, times)  # 24 ticks of >= 60 ms: >= 1.4 s
        spacing = max(b - a for a, b in itertools.pairwise(times))
        # Due after OVERDUE_S, taken at its next visit (every FEED_EVERY ticks); by
        # the tick count alone the spacing would be 12 ticks, at least 0.72 s.
        assert spacing < OVERDUE_S + (FEED_EVERY + 1) * 0.06 + 0.1, (call_id, times)
