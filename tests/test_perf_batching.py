"""The batched recording paths give exactly what the one-at-a-time paths give.

The shortcuts of the recording hot path are checked against the plain computation:
the mixer's decoding of back-to-back G.711 packets as one run, the DTMF screen shared by
many detectors (``feed_detectors`` / ``feed_muters``) and its products per hop block, the
DTMF quiet gate and run test (against the screen alone and against the full analysis of
every round, with tones at the weakest accepted level), and ``tick_recorders`` for
several calls at once.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

import media.mixer
from b2bua.recorder import LEFT, RIGHT, CallRecorder, tick_recorders
from media.dtmf import DtmfDigit, InbandDtmfDetector, feed_detectors, tone
from media.dtmf_mute import DtmfMuter, feed_muters
from media.dtmf_tables import product, tables
from media.g711 import encode_alaw, encode_ulaw
from media.mixer import StereoMixer
from media.writer import WriterResult
from rtp.relay import MediaFormat, TapPacket

Int16Array = npt.NDArray[np.int16]
FRAME = 160


def _speech_like(rng: np.random.Generator, n: int) -> Int16Array:
    """Noise with tones of random digits at random places (some too short to count)."""
    out = rng.normal(0, 800, n)
    pos = 0
    while pos < n:
        pos += int(rng.integers(200, 3000))
        length = int(rng.integers(100, 900))
        if pos + length < n:
            digit = "0123456789*#ABCD"[int(rng.integers(16))]
            out[pos : pos + length] += tone(digit, length / 8000, -12.0)
        pos += length
    clipped: Int16Array = np.clip(out, -32768, 32767).astype(np.int16)
    return clipped


def _digits(found: Sequence[DtmfDigit]) -> list[tuple[str, int, float | None]]:
    return [(d.digit, d.start_sample, d.at) for d in found]


# -- mixer: G.711 runs ---------------------------------------------------------------


def _mix(
    packets: list[tuple[int, dict[str, Any]]], pulls: Sequence[float]
) -> tuple[Int16Array, Any]:
    mixer = StereoMixer(start=0.0)
    out = []
    k = 0
    for now in pulls:
        while k < len(packets) and packets[k][1]["arrival"] <= now:
            leg, fields = packets[k]
            mixer.push(leg, **fields)
            k += 1
        out.append(mixer.pull(now))
    out.append(mixer.flush())
    return np.concatenate(out), mixer.stats


@pytest.mark.parametrize("seed", range(6))
def test_mixer_runs_place_what_packet_by_packet_places(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = random.Random(seed)
    packets: list[tuple[int, dict[str, Any]]] = []
    for leg, pt, encode in ((LEFT, 0, encode_ulaw), (RIGHT, 8, encode_alaw)):
        ssrc, seq, ts = rng.getrandbits(32), rng.getrandbits(16), rng.getrandbits(32)
        for i in range(400):
            if rng.random() < 0.05:
                continue  # lost
            if rng.random() < 0.01:
                ssrc, ts = rng.getrandbits(32), rng.getrandbits(32)  # new source
            if rng.random() < 0.01:
                ts += 8000  # timestamp jump
            pcm = np.full(FRAME, (i * 37) % 2000 - 1000, dtype=np.int16)
            fields = {
                "ssrc": ssrc,
                "seq": (seq + i) & 0xFFFF,
                "timestamp": (ts + i * FRAME) & 0xFFFFFFFF,
                "payload_type": pt,
                "payload": encode(pcm)[: rng.choice((FRAME, FRAME, FRAME, 80))],
                "arrival": i * 0.02 + rng.random() * rng.choice((0.001, 0.03, 0.15)),
            }
            packets.append((leg, fields))
            if rng.random() < 0.02:
                packets.append((leg, dict(fields)))  # duplicate
    packets.sort(key=lambda item: item[1]["arrival"])
    pulls = [0.02 * k * rng.choice((1, 5)) for k in range(1, 500)]
    pulls = sorted({p for p in pulls if p < 9.0})
    runs, run_stats = _mix(packets, pulls)
    monkeypatch.setattr(media.mixer, "_ONE_SAMPLE_PER_BYTE", ())
    single, single_stats = _mix(packets, pulls)
    assert runs.shape == single.shape and runs.shape[0] > 0
    assert np.array_equal(runs, single)
    assert run_stats == single_stats


# -- DTMF: one screen for many detectors -------------------------------------------------


def test_shared_screen_finds_what_each_detector_finds_alone() -> None:
    rng = np.random.default_rng(7)
    signals = [_speech_like(rng, 8000 * 6) for _ in range(5)]
    alone = [InbandDtmfDetector() for _ in signals]
    shared = [InbandDtmfDetector() for _ in signals]
    # One detector with other thresholds: it can not share the others' screen.
    alone.append(InbandDtmfDetector(min_level_dbm0=-20.0))
    shared.append(InbandDtmfDetector(min_level_dbm0=-20.0))
    signals.append(signals[0])
    found_alone: list[list[tuple[str, int, float | None]]] = [[] for _ in signals]
    found_shared: list[list[tuple[str, int, float | None]]] = [[] for _ in signals]
    pos = 0
    step = 0
    while pos < len(signals[0]):
        size = int(rng.choice((37, 160, 800, 1200)))
        blocks = [s[pos : pos + size] for s in signals]
        for i, (det, block) in enumerate(zip(alone, blocks, strict=True)):
            found_alone[i] += _digits(det.feed(block, float(step)))
        for i, got in enumerate(feed_detectors(shared, blocks, float(step))):
            found_shared[i] += _digits(got)
        pos += size
        step += 1
    assert found_shared == found_alone
    assert sum(len(f) for f in found_alone) >= 10  # the signals do hold digits


def test_shared_muting_mutes_what_each_muter_mutes_alone() -> None:
    rng = np.random.default_rng(11)
    signals = [_speech_like(rng, 8000 * 4) for _ in range(4)]
    alone = [DtmfMuter(8000) for _ in signals]
    shared = [DtmfMuter(8000) for _ in signals]
    out_alone: list[list[Int16Array]] = [[] for _ in signals]
    out_shared: list[list[Int16Array]] = [[] for _ in signals]
    for pos in range(0, len(signals[0]), 800):
        blocks = [s[pos : pos + 800] for s in signals]
        for i, (muter, block) in enumerate(zip(alone, blocks, strict=True)):
            out_alone[i].append(muter.feed(block, 1.0)[0])
        for i, (out, _) in enumerate(feed_muters(shared, blocks, 1.0)):
            out_shared[i].append(out)
    for a, b in zip(out_alone, out_shared, strict=True):
        assert np.array_equal(np.concatenate(a), np.concatenate(b))
    muted = sum(int(np.count_nonzero(np.concatenate(a) == 0)) for a in out_alone)
    assert muted > 8000  # tones were found and muted


def test_product_in_blocks_equals_one_product() -> None:
    rng = np.random.default_rng(3)
    matrix = rng.normal(size=(160, 16))
    for rows in (1, 127, 128, 129, 1000):
        frames = rng.normal(size=(rows, 160))
        assert np.allclose(product(frames, matrix), frames @ matrix, rtol=1e-12, atol=1e-12)


def test_screen_by_hop_blocks_equals_the_window_products() -> None:
    """The screen sums four hop blocks' partial products per window (no 4x copy of the
    overlapping windows): the same filter outputs and energies as the window products
    `_classify` uses, to rounding."""
    shared = tables(8000)
    hop, window = 40, 160
    signal = _speech_like(np.random.default_rng(9), 8000).astype(np.float64) / 32768.0
    blocks = signal.reshape(-1, hop)
    n = blocks.shape[0] - 3
    frames = np.lib.stride_tricks.sliding_window_view(signal, window)[::hop]
    assert frames.shape[0] == n
    part = blocks @ shared.hop_basis
    summed = part[:n, :16] + part[1 : n + 1, 16:32] + part[2 : n + 2, 32:48] + part[3:, 48:]
    assert np.allclose(summed, frames @ shared.basis, rtol=1e-9, atol=1e-12)
    part_sq = (blocks * blocks) @ shared.hop_hann_sq
    total = part_sq[:n, 0] + part_sq[1 : n + 1, 1] + part_sq[2 : n + 2, 2] + part_sq[3:, 3]
    assert np.allclose(total, (frames**2) @ shared.hann_sq, rtol=1e-9, atol=1e-15)
    assert np.abs(summed).max() > 1.0  # the tones are in there


# -- recorder: several calls ticked at once ---------------------------------------------


class MemoryWriter:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.frames: list[Int16Array] = []

    def write_frames(self, frames: Int16Array) -> None:
        self.frames.append(frames.copy())

    def close(self) -> WriterResult:
        return WriterResult(self.path, sum(len(f) for f in self.frames), 1, "00" * 32, False)

    def abort_truncated(self) -> WriterResult:
        return self.close()


def _recorders(count: int) -> tuple[list[CallRecorder], list[MemoryWriter]]:
    writers: list[MemoryWriter] = []

    def factory(path: Path, _r: Sequence[str], _m: Mapping[str, Any] | None) -> MemoryWriter:
        writers.append(MemoryWriter(path))
        return writers[-1]

    fmt = MediaFormat(8, "PCMA", 101)
    recorders = []
    for k in range(count):
        rec = CallRecorder(f"c{k}", batch_s=0.05, writer_factory=factory)
        rec.assign_leg(f"a{k}", LEFT, fmt)
        rec.assign_leg(f"b{k}", RIGHT, fmt)
        rec.start(0.0, Path(f"c{k}.wav.age"), ())
        recorders.append(rec)
    return recorders, writers


def test_ticking_recorders_together_writes_what_ticking_each_writes() -> None:
    rng = np.random.default_rng(5)
    calls = 5
    audio = {(k, leg): _speech_like(rng, 8000 * 5) for k in range(calls) for leg in "ab"}
    apart, apart_writers = _recorders(calls)
    together, together_writers = _recorders(calls)
    for i in range(audio[(0, "a")].shape[0] // FRAME):
        t = 0.01 + i * 0.02
        for k in range(calls):
            for leg in "ab":
                payload = encode_alaw(audio[(k, leg)][i * FRAME : (i + 1) * FRAME])
                pkt = TapPacket(f"{leg}{k}", t, i, i * FRAME, 7, 8, False, payload)
                apart[k].feed([pkt])
                together[k].feed([pkt])
        if i % 5 == 4:
            for rec in apart:
                rec.tick(t + 0.001)
            tick_recorders(together, t + 0.001)
    for rec in apart + together:
        rec.stop(5.5)
    for k in range(calls):
        a = np.concatenate(apart_writers[k].frames)
        b = np.concatenate(together_writers[k].frames)
        assert a.shape[0] > 8000 * 4
        assert np.array_equal(a, b)
        assert [(d.side, d.digit, d.at) for d in apart[k].digits] == [
            (d.side, d.digit, d.at) for d in together[k].digits
        ]
    assert any(rec.digits for rec in apart)  # in-band digits were seen (and muted)


# -- DTMF: the quiet gate and the run test skip only what could not hold a digit --------


def _full_analysis(monkeypatch: pytest.MonkeyPatch, *, screen: bool) -> None:
    """Turn the shortcuts off: every block counts as loud (no quiet gate), every
    screened window as a possible start of a press (no run test) and, without
    ``screen``, every idle round goes to the full classification."""

    def all_loud(detectors: Sequence[InbandDtmfDetector], sizes: Sequence[int], _: Any) -> None:
        for d, size in zip(detectors, sizes, strict=True):
            d._loud_end = d.samples_seen + size  # called before the new block is joined

    monkeypatch.setattr(media.dtmf, "_note_loud", all_loud)
    monkeypatch.setattr(InbandDtmfDetector, "_may_report", lambda self, *_: True)
    if not screen:
        monkeypatch.setattr(
            media.dtmf, "_screen_many", lambda detectors, *_: [True] * len(detectors)
        )


def _run_muters(
    signals: Sequence[Int16Array], block: int
) -> tuple[list[Int16Array], list[list[tuple[str, int, float | None]]]]:
    """Muted outputs and the presses reported, for ``signals`` fed in ``block``s."""
    muters = [DtmfMuter(8000) for _ in signals]
    outs: list[list[Int16Array]] = [[] for _ in signals]
    found: list[list[tuple[str, int, float | None]]] = [[] for _ in signals]
    for pos in range(0, len(signals[0]), block):
        blocks = [s[pos : pos + block] for s in signals]
        for i, (out, pressed) in enumerate(feed_muters(muters, blocks, pos / 8000)):
            outs[i].append(out)
            found[i] += _digits(pressed)
    for i, m in enumerate(muters):
        outs[i].append(m.flush()[0])
    return [np.concatenate(o) for o in outs], found


def _weakest_tones(rng: np.random.Generator, *, below: float) -> Int16Array:
    """Every digit at the weakest level the detector accepts (0.3 dB above -32 dBm0 per
    tone) or ``below`` dB under it, 41-120 ms long, after silence or noise under the gate."""
    per_tone_dbfs = media.dtmf.MIN_TONE_DBM0 - media.dtmf.FULL_SCALE_SINE_DBM0
    parts: list[Int16Array] = []
    for k, digit in enumerate("0123456789*#ABCD" * 2):
        quiet = rng.normal(0, (20.0, 60.0, 0.0)[k % 3], int(rng.integers(400, 1600)))
        parts.append(np.round(quiet).astype(np.int16))
        level = per_tone_dbfs + 6.02 + (0.3 if k % 4 else -below)  # tone(): peak of the sum
        parts.append(tone(digit, float(rng.choice((0.041, 0.045, 0.06, 0.12))), level))
    parts.append(np.zeros(1600, dtype=np.int16))
    return np.concatenate(parts)


@pytest.mark.parametrize("block", [960, 37, 800])
def test_gate_and_run_test_keep_the_weakest_accepted_tones(
    block: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = np.random.default_rng(block)
    signals = [_weakest_tones(rng, below=0.5), _weakest_tones(rng, below=3.0)]
    n = min(len(s) for s in signals)
    signals = [s[:n] for s in signals]
    fast_out, fast = _run_muters(signals, block)
    with monkeypatch.context() as m:
        _full_analysis(m, screen=True)
        screened_out, screened = _run_muters(signals, block)
    with monkeypatch.context() as m:
        _full_analysis(m, screen=False)
        full_out, full = _run_muters(signals, block)
    assert fast == screened == full
    for a, b, c in zip(fast_out, screened_out, full_out, strict=True):
        assert np.array_equal(a, b) and np.array_equal(a, c)
    # The weakest accepted tones were found (3 of every 4: the 4th is under the limit).
    assert len(full[0]) >= 20 and len(full[1]) >= 20


def test_gate_and_run_test_on_speech_like_audio_with_pauses(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rng = np.random.default_rng(23)
    signals = []
    for _ in range(4):
        s = _speech_like(rng, 8000 * 5)
        for start in rng.integers(0, len(s) - 4000, 6):
            s[start : start + int(rng.integers(200, 3000))] //= 64  # pauses under the gate
        signals.append(s)
    fast_out, fast = _run_muters(signals, 960)
    _full_analysis(monkeypatch, screen=False)
    full_out, full = _run_muters(signals, 960)
    assert fast == full
    for a, b in zip(fast_out, full_out, strict=True):
        assert np.array_equal(a, b)
    assert sum(len(f) for f in full) >= 8


def test_quiet_gate_skips_silence_and_line_noise_only() -> None:
    det = InbandDtmfDetector()
    # 20 ms of 0xD5-like silence and of -60 dBFS noise stay under the gate ...
    for samples in (np.full(960, 8, dtype=np.int16), np.full(960, -8, dtype=np.int16)):
        det.feed(samples)
        assert det._quiet
    # ... the weakest accepted tone does not (its peak is ~11 dB above the gate).
    per_tone_dbfs = media.dtmf.MIN_TONE_DBM0 - media.dtmf.FULL_SCALE_SINE_DBM0
    det.feed(tone("5", 0.02, per_tone_dbfs + 6.02))
    assert not det._quiet
    assert det._gate * 32768 < 0.35 * float(np.max(np.abs(tone("5", 0.1, per_tone_dbfs + 6.02))))
