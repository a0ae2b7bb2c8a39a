"""The media side of consent and recording: prompts out, digits in, files and catalog.

Theory of operation: the switch and its calls are sans-I/O; this hub is the adapter that
does their media work off the forwarding path. One asyncio task ticks every 20 ms over
all calls (`CallMedia`): it drains the call's relay tap, feeds the recorder (which reports
RFC 4733 digits), runs an in-band DTMF detector on the external party's audio while
consent is being asked, and paces the announcement frames into the external leg.

The forwarding shares this event loop, so a tick must never hold it for long:
  * the costly recording step (mixer pull, DTMF muting, encryption, file write) runs for
    a call only on every `RECORD_EVERY`-th tick, on the call's *phase* (given round robin
    when the call opens), so each tick does that work for 1/`RECORD_EVERY` of the calls
    and each call writes `RECORD_EVERY` x 20 ms of audio at a time (the mixer places
    frames by RTP timestamp and arrival, so a later pull loses nothing); a call whose
    last step is `OVERDUE_S` ago (ticks running late on a busy loop) records on its next
    visit, so the steps keep to the loop clock, not to the tick count;
  * a call that only records (consent given, no prompt playing) is visited every
    `FEED_EVERY`-th tick: its RFC 4733 digits (a withdrawal) are reported within 40 ms
    instead of 20; while consent is asked every call is visited on every tick;
  * the calls of one tick are worked through in slices of at most `SLICE_S` (loop
    clock); between slices the task yields to the loop, so the relay's sockets are read
    and forwarded meanwhile instead of waiting for the whole tick;
  * the recording steps of up to `RECORD_BATCH` calls of a slice run together
    (`tick_recorders`): their in-band DTMF screening is one numpy pass.

Digits and "prompt finished" go back to the switch as `HubEvent`s through `on_event`,
which queues them for the switch's next timer run (the switch never sees this module's
clock: it gets `now` from its runner, which uses the same loop clock).

The catalog row of a call is written here too: created when the call reaches the
consent step, then consent, recording start and end. The recording process only holds
the public key: files are encrypted as they are written (media/writer.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from b2bua.archive.catalog import Catalog
from b2bua.archive.catalog_writer import CatalogWriter
from b2bua.consent import ConsentRecord
from b2bua.recorder import (
    LEFT,
    RIGHT,
    CallRecorder,
    DigitEvent,
    RecordingResult,
    tick_recorders,
)
from media.announcement import Prompt, PromptPlayer, load_prompt, shipped_prompt
from media.dtmf import InbandDtmfDetector
from media.g711 import decoder_for, encoder_for
from media.writer import WriterResult
from rtp.relay import BoundedTap, MediaFormat, RelayLeg

log = logging.getLogger("b2bua.recording")

PROMPT_NAMES = ("consent", "announce", "thanks", "goodbye", "stopped", "noanswer")
TICK_S = 0.02
# Ticks between a call's recording steps: 240 ms of audio per step. A step's cost is
# mostly per call (numpy calls), not per sample: 240 ms took 15-25 % less recorder CPU
# than 120 ms and 480 ms 35-55 % less (bench/recorder_bench.py, docs/performance.md);
# 240 ms keeps what a crash loses (the open chunk plus the audio not yet pulled) near
# the contract's "about 2 s" and leaves the 1 s mixer ring half a second for a late step.
RECORD_EVERY = 12
# A call whose last recording step is this long ago records on its next visit, phase or
# not: when the loop is overloaded, ticks take longer than 20 ms and twelve of them more
# than 240 ms; counted in ticks alone, the step would come later and later until the
# packets overran the mixer's 1 s ring (measured: 73,000 packets dropped as overflow at
# 200 calls per worker with a profiler attached). By time, a late step takes more audio
# at once, which costs less per second, not more.
OVERDUE_S = (RECORD_EVERY + 2) * TICK_S
FEED_EVERY = 2  # ticks between visits of a call that only records (40 ms; digits wait)
SLICE_S = 0.002  # longest run of hub work before the relay gets the loop back
RECORD_BATCH = 8  # recording steps done together (one numpy pass for their DTMF muting)


@dataclass(frozen=True)
class HubEvent:
    call_id: str
    kind: str  # digit | prompt_finished
    at: float
    digit: str = ""
    method: str = ""
    side: str = ""  # external | office


def load_prompts(language: str, announcement: Path | None) -> dict[str, Prompt]:
    """The shipped prompts of `language`; a custom announcement replaces consent/announce."""
    prompts = {name: load_prompt(shipped_prompt(language, name), name) for name in PROMPT_NAMES}
    if announcement is not None:
        custom = load_prompt(announcement)
        prompts["consent"] = custom
        prompts["announce"] = custom
    return prompts


def prompt_hashes(prompts: Mapping[str, Prompt]) -> dict[str, str]:
    """SHA-256 of each prompt's audio: what a consent record names as the prompt heard."""
    return {name: prompt.sha256 for name, prompt in prompts.items()}


@dataclass
class CallMedia:
    """Per-call media work: one recorder, one tap, at most one prompt at a time."""

    call_id: str
    catalog_id: str | None
    external: RelayLeg
    office: RelayLeg | None
    recorder: CallRecorder
    tap: BoundedTap = field(default_factory=BoundedTap)
    player: PromptPlayer | None = None
    detector: InbandDtmfDetector | None = None
    recording_path: Path | None = None
    result: RecordingResult | None = None
    formats: dict[int, MediaFormat] = field(default_factory=dict)  # as assigned, per side
    phase: int = 0  # the tick (modulo RECORD_EVERY) of this call's recording step
    recorded_at: float | None = None  # loop time of the last recording step (or the start)


class RecordingHub:
    """Consent media and recordings of all calls of one B2BUA process."""

    def __init__(
        self,
        *,
        directory: Path,
        recipients: tuple[str, ...],
        prompts: Mapping[str, Prompt],
        catalog: Catalog | CatalogWriter | None,
        mute_inband_dtmf: bool = True,
        on_event: Callable[[HubEvent], None] | None = None,
    ) -> None:
        self.directory = directory
        self.recipients = recipients
        self.prompts = dict(prompts)
        self.catalog = catalog
        self.mute_inband_dtmf = mute_inband_dtmf
        self.on_event = on_event
        self.calls: dict[str, CallMedia] = {}
        self.recordings_written = 0
        # Consent results decided so far, by result ("accepted", "declined", ...): metrics.
        self.consent_outcomes: dict[str, int] = {}
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ticks = 0  # ticks run so far: which phase records on this one
        self._next_phase = 0
        self.slices = 0  # times a tick yielded to the loop between calls (metrics, tests)

    @property
    def prompt_sha256(self) -> dict[str, str]:
        return prompt_hashes(self.prompts)

    def recording_calls(self) -> set[str]:
        """The calls whose recording runs now (metrics, /status, a worker's report)."""
        return {call_id for call_id, media in self.calls.items() if media.recorder.active}

    # -- lifecycle --------------------------------------------------------------------
    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._task = self._loop.create_task(self._run())

    async def close(self, now: float) -> None:
        for call_id in list(self.calls):
            self.call_ended(call_id, now, "shutdown")
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if isinstance(self.catalog, CatalogWriter):
            # Every sealed recording's row written before the process goes (off the loop).
            await asyncio.to_thread(self.catalog.close)

    async def _run(self) -> None:
        assert self._loop is not None
        loop = self._loop
        next_tick = loop.time()
        while True:
            next_tick += TICK_S
            await asyncio.sleep(max(0.0, next_tick - loop.time()))
            if loop.time() - next_tick > 10 * TICK_S:
                next_tick = loop.time()  # fell far behind (a stall): do not burst to catch up
            await self.run_tick()

    async def run_tick(self) -> None:
        """One tick over all calls, in slices of at most `SLICE_S` (see the module doc)."""
        assert self._loop is not None
        clock = self._loop.time
        tick = self._ticks
        self._ticks += 1
        slice_end = clock() + SLICE_S
        batch: list[CallMedia] = []
        for media in list(self.calls.values()):
            if self.calls.get(media.call_id) is not media:
                continue  # ended while this tick yielded
            step = (tick - media.phase) % RECORD_EVERY
            if step % FEED_EVERY and _recording_only(media):
                continue  # nothing urgent: its packets wait in the tap for the next visit
            try:
                # A fresh time per call: a later slice must not work with a stale one.
                self._tick(media, clock(), record=False)
            except Exception:
                # One call's media bug must not stop the others' recordings.
                log.exception("event=media_tick_error call=%s", media.call_id)
            else:
                now = clock()
                if media.recorder.active and (step == 0 or _overdue(media, now)):
                    media.recorded_at = now
                    batch.append(media)
            over = clock() >= slice_end
            if batch and (over or len(batch) >= RECORD_BATCH):
                self._record(batch, clock())  # before any yield: the calls are still live
                batch = []
            if over:
                self.slices += 1
                await asyncio.sleep(0)  # let the relay read and forward what is waiting
                slice_end = clock() + SLICE_S
        if batch:
            self._record(batch, clock())

    def _record(self, batch: list[CallMedia], now: float) -> None:
        """The recording step of a few calls, their in-band DTMF screening in one pass."""
        try:
            tick_recorders([media.recorder for media in batch], now)
        except Exception:
            log.exception(
                "event=media_tick_error calls=%s", ",".join(media.call_id for media in batch)
            )

    # -- per call ---------------------------------------------------------------------
    def open_call(
        self,
        call_id: str,
        *,
        external: RelayLeg,
        direction: str,
        caller: str,
        callee: str,
        extension: str | None,
        sip_call_id: str,
    ) -> None:
        """The call reached the consent step: catalog row, tap on the external leg."""
        catalog_id = None
        if self.catalog is not None:
            catalog_id = self.catalog.new_call(
                sip_call_id, direction, caller, callee, extension, time.time()
            )
        media = CallMedia(
            call_id,
            catalog_id,
            external,
            None,
            CallRecorder(
                call_id,
                mute_inband_dtmf=self.mute_inband_dtmf,
                # The hub decides when a call records (its phase); the recorder pulls
                # whenever asked, unless asked again within half a hub period.
                batch_s=RECORD_EVERY * TICK_S / 2,
                on_digit=lambda d: self._digit(call_id, d),
            ),
            phase=self._next_phase,
        )
        self._next_phase = (self._next_phase + 1) % RECORD_EVERY  # round robin: even load
        media.recorder.assign_leg(external.leg_id, LEFT, external.fmt)
        media.formats[LEFT] = external.fmt
        external.tap = media.tap
        media.detector = InbandDtmfDetector()
        self.calls[call_id] = media

    def set_office_leg(self, call_id: str, office: RelayLeg) -> None:
        media = self.calls.get(call_id)
        if media is None:
            return
        media.office = office
        media.recorder.assign_leg(office.leg_id, RIGHT, office.fmt)
        media.formats[RIGHT] = office.fmt
        office.tap = media.tap

    def play(self, call_id: str, name: str, now: float) -> None:
        media = self.calls.get(call_id)
        if media is None:
            return
        prompt = self.prompts[name]
        player = PromptPlayer(prompt, encoder_for(media.external.fmt.encoding))
        player.start(now)
        media.player = player

    def stop_prompt(self, call_id: str) -> None:
        media = self.calls.get(call_id)
        if media is not None and media.player is not None:
            media.player.stop()
            media.player = None

    def consent_decided(self, call_id: str, record: ConsentRecord) -> None:
        result = str(record.result)
        self.consent_outcomes[result] = self.consent_outcomes.get(result, 0) + 1
        media = self.calls.get(call_id)
        if media is None:
            return
        media.detector = None  # consent asked and answered: no more in-band listening
        if self.catalog is not None and media.catalog_id is not None:
            self.catalog.set_consent(media.catalog_id, consent_json(record, self._wall))

    def start_recording(self, call_id: str, now: float, metadata: Mapping[str, Any]) -> None:
        media = self.calls.get(call_id)
        if media is None or media.recorder.active:
            return
        name = media.catalog_id or call_id
        path = (
            self.catalog.path_for(name)
            if self.catalog is not None
            else self.directory / f"{name}.wav.age"
        )
        media.recording_path = path
        media.recorded_at = now
        media.recorder.start(now, path, self.recipients, dict(metadata))
        if self.catalog is not None and media.catalog_id is not None:
            self.catalog.recording_started(media.catalog_id, path)

    def pause(self, call_id: str, now: float) -> None:
        media = self.calls.get(call_id)
        if media is not None and media.recorder.active:
            media.recorder.pause(now)

    def resume(self, call_id: str, now: float) -> None:
        media = self.calls.get(call_id)
        if media is not None and media.recorder.active:
            media.recorder.resume(now)

    def stop_recording(self, call_id: str, now: float) -> RecordingResult | None:
        media = self.calls.get(call_id)
        if media is None or not media.recorder.active:
            return None
        media.recorder.feed(_drain(media.tap))
        result = media.recorder.stop(now)
        media.result = result
        self.recordings_written += 1
        if self.catalog is not None and media.catalog_id is not None and result.path is not None:
            sealed = WriterResult(
                result.path, result.samples, result.size, result.sha256, result.truncated
            )
            self.catalog.recording_finished(
                media.catalog_id,
                sealed,
                result.duration_s,
                result.gaps,
                list(result.pauses),
                media.external.fmt.encoding,
                time.time(),
            )
        return result

    def call_ended(self, call_id: str, now: float, reason: str) -> RecordingResult | None:
        media = self.calls.get(call_id)
        if media is None:
            return None
        # Consent's own StopRecording may have sealed the file already (withdrawal).
        result = self.stop_recording(call_id, now) or media.result
        del self.calls[call_id]
        for leg in (media.external, media.office):
            if leg is not None and leg.tap is media.tap:
                leg.tap = None
        if self.catalog is not None and media.catalog_id is not None:
            if result is None or result.path is None:
                self.catalog.not_recorded(media.catalog_id, reason, time.time())
            else:
                self.catalog.call_ended(media.catalog_id, time.time())
        return result

    # -- the tick ---------------------------------------------------------------------
    def _tick(self, media: CallMedia, now: float, *, record: bool = True) -> None:
        # A leg's format is final only after its SDP answer (and may change on a
        # re-INVITE): keep the recorder's decoders in step, compared per tick.
        for side, leg in ((LEFT, media.external), (RIGHT, media.office)):
            if leg is not None and media.formats.get(side) != leg.fmt:
                media.recorder.assign_leg(leg.leg_id, side, leg.fmt)
                media.formats[side] = leg.fmt
        for leg_id, packets in media.tap.drain_all().items():
            if media.detector is not None and leg_id == media.external.leg_id:
                self._detect_inband(media, packets, now)
            media.recorder.feed(packets)
        if record:
            media.recorder.tick(now)
        player = media.player
        if player is not None:
            for frame in player.frames_due(now):
                media.external.inject(
                    frame.payload,
                    ssrc=frame.ssrc,
                    seq=frame.seq,
                    ts=frame.ts,
                    marker=frame.marker,
                )
            if player.finished:
                media.player = None
                self._emit(HubEvent(media.call_id, "prompt_finished", now))

    def _detect_inband(self, media: CallMedia, packets: list[Any], now: float) -> None:
        assert media.detector is not None
        fmt = media.external.fmt
        decode = decoder_for(fmt.encoding)
        chunks = [decode(p.payload) for p in packets if p.payload_type == fmt.payload_type]
        if not chunks:
            return
        for digit in media.detector.feed(np.concatenate(chunks), now):
            self._emit(HubEvent(media.call_id, "digit", now, digit.digit, "inband", "external"))

    def _digit(self, call_id: str, event: DigitEvent) -> None:
        media = self.calls.get(call_id)
        if media is None:
            return
        side = "external" if event.side == LEFT else "office"
        self._emit(HubEvent(call_id, "digit", event.at, event.digit, "rfc4733", side))

    def _emit(self, event: HubEvent) -> None:
        if self.on_event is not None:
            self.on_event(event)

    def _wall(self, loop_time: float) -> float:
        """Loop clock -> wall clock, for evidence times in the catalog."""
        if self._loop is None:
            return loop_time
        return time.time() - (self._loop.time() - loop_time)


def _recording_only(media: CallMedia) -> bool:
    """Recording and nothing else: no prompt to pace, no consent digit to listen for."""
    return media.player is None and media.detector is None and media.recorder.active


def _overdue(media: CallMedia, now: float) -> bool:
    """The last recording step is `OVERDUE_S` ago: the ticks are running late."""
    return media.recorded_at is not None and now - media.recorded_at >= OVERDUE_S


def _drain(tap: BoundedTap) -> list[Any]:
    return [p for packets in tap.drain_all().values() for p in packets]


def consent_json(record: ConsentRecord, wall: Callable[[float], float]) -> dict[str, Any]:
    """The catalog's consent object; times become wall-clock seconds (the catalog writes
    them as ISO 8601)."""
    withdrawn = record.withdrawn_at
    return {
        "mode": record.mode,
        "result": str(record.result),
        "digit": record.digit,
        "method": record.method,
        "at": wall(record.at),
        "prompt_sha256": record.prompt_sha256,
        "language": record.language,
        "withdrawn_at": None if withdrawn is None else wall(withdrawn),
        "note": record.note,
    }
