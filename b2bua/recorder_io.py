"""The asyncio adapter that drives every call's ``CallRecorder`` from the relay's taps.

One task for all calls: every ``interval`` (20 ms) it drains each recorder's
``BoundedTap``, feeds the packets in and ticks the recorder with ``loop.time()`` - the
same clock the relay stamps ``TapPacket.arrival`` with. Recording work (decoding,
mixing, DTMF muting, encryption, file writes) thus runs batched, once per tick, and
never inside the relay's read callbacks that forward packets.

Ticks are scheduled on a fixed grid (``start + n * interval``) so they do not drift;
when the loop falls behind, the next tick runs at once and the mixer simply hands out
more audio. A recorder that raises anything but the write errors it handles itself is
a bug: it is logged, dropped from the ticker, and the other calls go on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from b2bua.recorder import CallRecorder, RecorderState, RecordingResult
from rtp.relay import BoundedTap

__all__ = ["RecorderTicker"]

log = logging.getLogger("b2bua.recorder")


class RecorderTicker:
    """Feeds and ticks all active recorders every ``interval`` seconds on one task."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop | None = None, *, interval: float = 0.02
    ) -> None:
        if interval <= 0:
            raise ValueError("interval must be positive")
        self.loop = loop if loop is not None else asyncio.get_running_loop()
        self.interval = interval
        self.ticks = 0
        self.late_ticks = 0  # ticks that ran more than one interval after their slot
        self._recorders: dict[CallRecorder, BoundedTap] = {}
        self._task: asyncio.Task[None] | None = None

    def __len__(self) -> int:
        return len(self._recorders)

    def add(self, recorder: CallRecorder, tap: BoundedTap) -> None:
        """Drive ``recorder`` from ``tap`` (the tap set on the call's relay legs)."""
        self._recorders[recorder] = tap

    def remove(self, recorder: CallRecorder) -> None:
        """Stop driving ``recorder``, after feeding it what its tap still holds."""
        tap = self._recorders.pop(recorder, None)
        if tap is not None:
            for packets in tap.drain_all().values():
                recorder.feed(packets)

    def finish(self, recorder: CallRecorder) -> RecordingResult | None:
        """End of the call: last packets in, file sealed; None if it never recorded."""
        self.remove(recorder)
        if recorder.result is not None:
            return recorder.result
        if recorder.state is RecorderState.IDLE:
            return None
        return recorder.stop(self.loop.time())

    def tick_once(self) -> None:
        """One batch: every recorder gets its packets and the current time."""
        self.ticks += 1
        now = self.loop.time()
        for recorder, tap in list(self._recorders.items()):
            try:
                for packets in tap.drain_all().values():
                    recorder.feed(packets)
                recorder.tick(now)
            except Exception:
                log.exception("event=recorder_error call=%s", recorder.call_id)
                self._recorders.pop(recorder, None)

    def start(self) -> None:
        if self._task is None:
            self._task = self.loop.create_task(self._run(), name="recorder-ticker")

    async def _run(self) -> None:
        loop = self.loop
        due = loop.time()
        while True:
            self.tick_once()
            due += self.interval
            now = loop.time()
            if now > due + self.interval:
                self.late_ticks += 1
                due = now  # behind: do not try to catch up with a burst of ticks
            await asyncio.sleep(max(0.0, due - now))

    async def aclose(self) -> None:
        """Stop the task (recorders are left as they are; finish them first)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
