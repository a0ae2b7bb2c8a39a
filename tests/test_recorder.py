"""CallRecorder (sans-I/O) with synthetic tap packets and a fake clock; RecorderTicker."""

from __future__ import annotations

import asyncio
import errno
import hashlib
import io
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
import soundfile as sf

from b2bua.archive.keys import decrypt_file
from b2bua.recorder import (
    LEFT,
    MIXER_JITTER_S,
    RIGHT,
    CallRecorder,
    DigitEvent,
    RecorderState,
    RecorderStateError,
)
from b2bua.recorder_io import RecorderTicker
from media.agefile import generate_identity
from media.dtmf import tone
from media.g711 import encode_alaw, encode_ulaw
from media.writer import WriterResult
from rtp.packet import TelephoneEvent
from rtp.relay import BoundedTap, MediaFormat, TapPacket

RATE = 8000
FRAME = 160
PCMU = MediaFormat(0, "PCMU", 101)
PCMA = MediaFormat(8, "PCMA", 101)
Int16Array = npt.NDArray[np.int16]


def sine(freq: float, seconds: float, amp: float = 4000.0) -> Int16Array:
    n = np.arange(round(seconds * RATE))
    return np.round(amp * np.sin(2 * np.pi * freq * n / RATE)).astype(np.int16)


def packets(
    leg: str,
    pcm: Int16Array,
    t0: float,
    *,
    pt: int = 0,
    ssrc: int = 1,
    seq0: int = 100,
    ts0: int = 1000,
) -> list[TapPacket]:
    """20 ms packets of ``pcm`` arriving every 20 ms from ``t0`` (the leg's own law)."""
    encode = encode_alaw if pt == 8 else encode_ulaw
    return [
        TapPacket(
            leg,
            t0 + i * 0.02,
            (seq0 + i) & 0xFFFF,
            (ts0 + i * FRAME) & 0xFFFFFFFF,
            ssrc,
            pt,
            i == 0,
            encode(pcm[i * FRAME : (i + 1) * FRAME]),
        )
        for i in range(len(pcm) // FRAME)
    ]


def event_packets(
    leg: str, t0: float, code: int, count: int, *, seq0: int, ts: int, ssrc: int = 1
) -> list[TapPacket]:
    """An RFC 4733 event: ``count`` updates every 20 ms, the last sent three times."""
    out = []
    for i in range(count + 2):
        end = i >= count - 1
        ev = TelephoneEvent(code, end=end, duration=min(i + 1, count) * FRAME)
        out.append(TapPacket(leg, t0 + i * 0.02, seq0 + i, ts, ssrc, 101, i == 0, ev.serialize()))
    return out


@dataclass
class MemoryWriter:
    """Collects frames; raises ``fail_with`` on write number ``fail_at`` (1-based)."""

    path: Path
    fail_at: int | None = None
    fail_with: int = errno.ENOSPC
    writes: int = 0
    frames: list[Int16Array] = field(default_factory=list)
    metadata: Any = None
    result: WriterResult | None = None

    def write_frames(self, frames: Int16Array) -> None:
        self.writes += 1
        if self.fail_at is not None and self.writes >= self.fail_at:
            raise OSError(self.fail_with, "simulated")
        assert frames.dtype == np.int16 and frames.shape[1] == 2
        self.frames.append(frames.copy())

    def audio(self) -> Int16Array:
        if not self.frames:
            return np.zeros((0, 2), dtype=np.int16)
        return np.concatenate(self.frames)

    def close(self) -> WriterResult:
        self.result = WriterResult(self.path, len(self.audio()), 1234, "ab" * 32, False)
        return self.result

    def abort_truncated(self) -> WriterResult:
        self.result = WriterResult(self.path, len(self.audio()), 99, "cd" * 32, True)
        return self.result


class Harness:
    """A recorder with a MemoryWriter, driven on a fake clock in 20 ms ticks."""

    def __init__(self, **kwargs: Any) -> None:
        self.writer: MemoryWriter | None = None
        self.fail_at: int | None = kwargs.pop("fail_at", None)
        self.fail_with: int = kwargs.pop("fail_with", errno.ENOSPC)
        kwargs.setdefault("formats", {"ext": PCMU, "office": PCMA})
        self.rec = CallRecorder(
            "c1", {"ext": LEFT, "office": RIGHT}, writer_factory=self._make, **kwargs
        )
        self.now = 0.0
        self.queue: list[TapPacket] = []

    def _make(self, path: Path, recipients: Sequence[str], metadata: Any) -> MemoryWriter:
        assert list(recipients) == ["age1test"]
        self.writer = MemoryWriter(path, self.fail_at, self.fail_with, metadata=metadata)
        return self.writer

    def add(self, items: list[TapPacket]) -> None:
        self.queue.extend(items)
        self.queue.sort(key=lambda p: p.arrival)

    def run_until(self, until: float) -> None:
        while self.now < until - 1e-9:
            self.now = round(self.now + 0.02, 6)
            due = [p for p in self.queue if p.arrival <= self.now]
            self.queue = self.queue[len(due) :]
            self.rec.feed(due)
            self.rec.tick(self.now)

    def start(self) -> None:
        self.rec.start(self.now, Path("/nonexistent/x.wav.age"), ["age1test"], {"m": 1})

    def audio(self) -> Int16Array:
        assert self.writer is not None
        return self.writer.audio()


def peak_hz(x: Int16Array) -> float:
    mag = np.abs(np.fft.rfft(x.astype(np.float64) * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / RATE)[np.argmax(mag)])


def rms(x: Int16Array) -> float:
    return float(np.sqrt(np.mean(x.astype(np.float64) ** 2)))


def file_index(t: float, start: float, delay: float = 0.1) -> int:
    """Sample index in the file of relay time ``t`` (muter delay at the front)."""
    return round((t - start + delay) * RATE)


# ------------------------------------------------------------------------ tests


def test_nothing_before_consent_and_sides_by_leg() -> None:
    h = Harness()
    # Ringback/prompt before consent on both legs, then the parties' own tones.
    h.add(packets("ext", sine(2000, 1.0), 0.0, ssrc=1))
    h.add(packets("office", sine(2000, 1.0), 0.005, pt=8, ssrc=2))
    h.run_until(1.0)
    assert h.writer is None and h.rec.state is RecorderState.IDLE
    h.start()
    h.add(packets("ext", sine(440, 2.0), 1.0, ssrc=1, seq0=150, ts0=1000 + 50 * FRAME))
    h.add(packets("office", sine(1000, 2.0), 1.005, pt=8, ssrc=2, seq0=150, ts0=9000))
    h.run_until(3.2)
    result = h.rec.stop(h.now)
    audio = h.audio()
    assert result.samples == len(audio) and result.duration_s == len(audio) / RATE
    # The file follows the clock: from start to stop minus the jitter delay, or to the
    # end of the last audio (the office's, at 3.005 s) if that is later: the drain at stop
    # writes everything placed; plus the muter's leading delay.
    end = max(3.2 - MIXER_JITTER_S, 1.005 + 2.0)
    assert result.duration_s == pytest.approx(end - 1.0 + 0.1, abs=0.002)
    assert peak_hz(audio[:, LEFT]) == pytest.approx(440, abs=5)
    assert peak_hz(audio[:, RIGHT]) == pytest.approx(1000, abs=5)
    assert h.rec.discarded == 100  # the prompt packets of both legs
    assert result.mixer.left.packets == 100 and result.mixer.right.packets == 100
    assert not result.truncated and result.error is None and result.pauses == ()
    assert h.writer is not None and h.writer.metadata == {"m": 1}


def test_packets_stamped_before_start_are_dropped_even_if_fed_later() -> None:
    h = Harness()
    h.now = 1.0
    h.start()
    # The tap still held prompt packets that arrived before the consent moment.
    early = packets("ext", sine(2000, 0.2), 0.8)
    h.rec.feed(early)
    h.add(packets("ext", sine(440, 1.0), 1.0, seq0=110, ts0=1000 + 10 * FRAME))
    h.run_until(2.2)
    h.rec.stop(h.now)
    assert h.rec.discarded == len(early)
    assert peak_hz(h.audio()[:, LEFT]) == pytest.approx(440, abs=5)


def test_rfc4733_digits_reported_once_and_muted_in_audio() -> None:
    seen: list[DigitEvent] = []
    h = Harness(on_digit=seen.append)
    # A consent digit before recording: reported, nothing written.
    h.add(event_packets("ext", 0.1, 1, 5, seq0=100, ts=1000))
    h.run_until(0.5)
    assert [(d.side, d.digit, d.method) for d in seen] == [(LEFT, "1", "rfc4733")]
    h.start()
    # Audio goes on while RFC 4733 packets for digit 7 cover 1.0 s to 1.2 s (some phones
    # keep sending, with or without an in-band copy): that span is muted in the file.
    pcm = sine(440, 2.0)
    h.add(packets("ext", pcm, 0.5, seq0=200, ts0=50_000))
    h.add(event_packets("ext", 1.0, 7, 10, seq0=300, ts=50_000 + round(0.5 * RATE)))
    h.run_until(2.7)
    result = h.rec.stop(h.now)
    assert [(d.side, d.digit, d.method) for d in seen][:2] == [
        (LEFT, "1", "rfc4733"),
        (LEFT, "7", "rfc4733"),
    ]
    assert result.digits[:2] == tuple(seen[:2])
    left = h.audio()[:, LEFT]
    start = 0.5  # recording started at the 0.5 s tick
    assert rms(left[file_index(1.0, start) : file_index(1.2, start)]) == 0
    assert rms(left[file_index(0.6, start) : file_index(0.9, start)]) > 2000
    assert rms(left[file_index(1.3, start) : file_index(2.4, start)]) > 2000


def test_inband_dtmf_on_office_channel_is_muted_and_reported() -> None:
    seen: list[DigitEvent] = []
    h = Harness(on_digit=seen.append)
    h.start()
    pcm = sine(1000, 2.0)
    pcm[round(0.8 * RATE) : round(0.9 * RATE)] = tone("#", 0.1, -6)
    h.add(packets("office", pcm, 0.0, pt=8))
    h.run_until(2.2)
    h.rec.stop(h.now)
    assert [(d.side, d.digit, d.method) for d in seen] == [(RIGHT, "#", "inband")]
    right = h.audio()[:, RIGHT]
    assert rms(right[file_index(0.8, 0) : file_index(0.9, 0)]) == 0
    assert rms(right[file_index(0.3, 0) : file_index(0.7, 0)]) > 2000


def test_inband_muting_can_be_turned_off() -> None:
    h = Harness(mute_inband_dtmf=False)
    h.start()
    pcm = tone("5", 1.0, -6)
    h.add(packets("office", pcm, 0.0, pt=8))
    h.run_until(1.2)
    result = h.rec.stop(h.now)
    assert result.digits == ()
    right = h.audio()[:, RIGHT]
    # No muter: no leading delay; the file runs to the stop minus the jitter delay.
    assert result.duration_s == pytest.approx(1.2 - MIXER_JITTER_S, abs=0.002)
    assert rms(right[800:7000]) > 3000


def test_pause_resume_leaves_silence_and_lists_the_span() -> None:
    h = Harness()
    h.start()
    h.add(packets("ext", sine(440, 3.0), 0.0))
    h.run_until(1.0)
    h.rec.pause(1.0)
    h.run_until(1.5)
    h.rec.resume(1.5)
    h.run_until(2.0)
    h.rec.pause(2.0)  # paused at the end of the call: the span ends at stop
    h.run_until(2.5)
    result = h.rec.stop(2.5)
    # File seconds: relay time minus the start, plus the muter's 0.1 s delay.
    assert np.allclose(result.pauses, [(1.1, 1.6), (2.1, 2.6)])
    left = h.audio()[:, LEFT]
    assert rms(left[file_index(1.0, 0) : file_index(1.5, 0)]) == 0
    assert rms(left[file_index(1.55, 0) : file_index(1.95, 0)]) > 2000
    assert rms(left[file_index(2.0, 0) :]) == 0


def test_write_failure_ends_recording_not_call(caplog: pytest.LogCaptureFixture) -> None:
    seen: list[DigitEvent] = []
    h = Harness(fail_at=5, fail_with=errno.ENOSPC, on_digit=seen.append)
    h.start()
    h.add(packets("ext", sine(440, 2.0), 0.0))
    with caplog.at_level(logging.ERROR, logger="b2bua.recorder"):
        h.run_until(1.0)
    assert h.rec.state is RecorderState.FAILED and not h.rec.active
    assert h.writer is not None and h.writer.result is not None and h.writer.result.truncated
    alarms = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(alarms) == 1
    assert alarms[0].getMessage().startswith("event=recording_failed call=c1 error=ENOSPC ")
    writes = h.writer.writes
    h.run_until(1.5)  # later ticks are no-ops
    h.rec.pause(1.5)  # hold/unhold still allowed: the call goes on
    h.rec.resume(1.6)
    h.add(event_packets("ext", 1.6, 9, 3, seq0=500, ts=99))
    h.run_until(1.8)
    assert h.writer.writes == writes
    assert [d.digit for d in seen] == ["9"]  # digits still reach the call
    result = h.rec.stop(2.0)
    assert result.truncated and result.error == "ENOSPC"
    assert result.samples == len(h.audio()) > 0
    assert result.size == 99 and result.sha256 == "cd" * 32
    with pytest.raises(RecorderStateError):
        h.rec.stop(2.1)


def test_failure_when_creating_the_file(caplog: pytest.LogCaptureFixture) -> None:
    def refuse(path: Path, recipients: Sequence[str], metadata: Any) -> MemoryWriter:
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    rec = CallRecorder("c2", {"a": LEFT}, writer_factory=refuse)
    with caplog.at_level(logging.ERROR, logger="b2bua.recorder"):
        rec.start(0.0, Path("x.wav.age"), ["age1test"])
    assert rec.state is RecorderState.FAILED
    assert "event=recording_failed call=c2 error=EACCES" in caplog.text
    rec.tick(0.5)
    result = rec.stop(1.0)
    assert result.path is None and result.truncated and result.samples == 0
    assert result.error == "EACCES"


def test_final_chunk_failure_marks_truncated(caplog: pytest.LogCaptureFixture) -> None:
    h = Harness()
    h.start()
    h.add(packets("ext", sine(440, 1.0), 0.0))
    h.run_until(1.0)
    assert h.writer is not None
    writer = h.writer

    def close() -> WriterResult:
        return writer.abort_truncated()  # what EncryptedWavWriter.close does on ENOSPC

    writer.close = close  # type: ignore[method-assign]
    with caplog.at_level(logging.ERROR, logger="b2bua.recorder"):
        result = h.rec.stop(1.1)
    assert result.truncated and result.error == "final_write_failed"
    assert "event=recording_failed call=c1 error=final_write_failed" in caplog.text


def test_state_table_rejects_caller_bugs() -> None:
    h = Harness()
    with pytest.raises(RecorderStateError):
        h.rec.stop(0.0)
    with pytest.raises(RecorderStateError):
        h.rec.pause(0.0)
    h.start()
    with pytest.raises(RecorderStateError):
        h.start()
    with pytest.raises(RecorderStateError):
        h.rec.resume(0.1)
    h.rec.pause(0.1)
    with pytest.raises(RecorderStateError):
        h.rec.pause(0.2)
    h.rec.stop(0.3)
    assert h.rec.state is RecorderState.STOPPED
    h.rec.feed(packets("ext", sine(440, 0.1), 0.3))  # after the end: ignored
    h.rec.tick(0.5)


def test_leg_assignment() -> None:
    rec = CallRecorder("c3")
    with pytest.raises(ValueError, match="side"):
        rec.assign_leg("x", 2)
    with pytest.raises(ValueError, match="G729"):
        rec.assign_leg("x", LEFT, MediaFormat(18, "G729", None))
    rec.assign_leg("x", LEFT, MediaFormat(9, "G722", None))  # decoded to 8 kHz
    rec.assign_leg("trunk", LEFT, PCMU)
    rec.assign_leg("phone-1", RIGHT, PCMA)
    rec.assign_leg("phone-2", RIGHT, PCMU)  # transfer: a new office leg replaces the old
    rec.feed(packets("phone-1", sine(440, 0.1), 0.0) + packets("other", sine(440, 0.1), 0.0))
    assert rec.unassigned == 10


def test_real_writer_file_decrypts(tmp_path: Path) -> None:
    identity, recipient = generate_identity()
    key = tmp_path / "key"
    key.write_text(identity + "\n")
    rec = CallRecorder("c4", {"a": LEFT, "b": RIGHT}, formats={"a": PCMU, "b": PCMA})
    path = tmp_path / "r.wav.age"
    rec.start(0.0, path, [recipient], {"consent": "announce"})
    assert path.with_name("r.wav.age.part").exists()
    stream = sorted(
        packets("a", sine(440, 3.0), 0.0) + packets("b", sine(1000, 3.0), 0.003, pt=8),
        key=lambda p: p.arrival,
    )
    now = 0.0
    for step in range(1, 156):
        now = step * 0.02
        rec.feed([p for p in stream if now - 0.02 < p.arrival <= now])
        rec.tick(now)
    result = rec.stop(now)
    assert result.path == path and path.exists()
    assert result.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert result.size == path.stat().st_size
    out = tmp_path / "r.wav"
    assert decrypt_file(key, path, out, stderr=io.StringIO()) == 0
    data, rate = sf.read(str(out), dtype="int16")
    assert rate == RATE and data.shape == (result.samples, 2)
    assert abs(result.duration_s - 3.1) < 0.05
    assert peak_hz(data[:, LEFT]) == pytest.approx(440, abs=5)
    assert peak_hz(data[:, RIGHT]) == pytest.approx(1000, abs=5)


# ---------------------------------------------------------------------- ticker


class Exploding(CallRecorder):
    def tick(self, now: float) -> None:
        raise RuntimeError("bug")


def test_ticker_feeds_ticks_and_isolates_a_broken_recorder(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def body() -> None:
        loop = asyncio.get_running_loop()
        ticker = RecorderTicker(loop, interval=0.01)
        h = Harness()
        tap = BoundedTap()
        broken = Exploding("bad", {"z": LEFT})
        ticker.add(h.rec, tap)
        ticker.add(broken, BoundedTap())
        assert len(ticker) == 2
        h.rec.start(loop.time(), Path("/nonexistent/t.wav.age"), ["age1test"])
        t0 = loop.time()
        for p in packets("ext", sine(440, 0.4), t0):
            tap.put(p)
        ticker.start()
        with caplog.at_level(logging.ERROR, logger="b2bua.recorder"):
            await asyncio.sleep(0.15)
        assert len(ticker) == 1  # the broken one was dropped, the other goes on
        assert "event=recorder_error call=bad" in caplog.text
        assert ticker.ticks >= 5
        await asyncio.sleep(0.35)
        tap.put(packets("ext", sine(440, 0.04), t0 + 0.4, seq0=120, ts0=1000 + 20 * FRAME)[0])
        result = ticker.finish(h.rec)  # the last packet still in the tap goes in too
        assert result is not None and len(ticker) == 0
        assert result.mixer.left.packets == 21
        assert ticker.finish(h.rec) is result
        assert ticker.finish(CallRecorder("idle")) is None
        await ticker.aclose()

    asyncio.run(asyncio.wait_for(body(), 5))
