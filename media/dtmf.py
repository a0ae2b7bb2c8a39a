"""In-band DTMF: a streaming Goertzel-style detector and a tone generator.

Theory of operation
-------------------
Samples are analysed in windows of 20 ms (160 samples at 8 kHz, Hann weighted) that
advance by a hop of 5 ms (40 samples). For every window one matrix product gives the
complex DFT at the eight DTMF frequencies (the Goertzel filter bank, vectorised). A
window *holds* digit d when all of these hold (ITU-T Q.24 style checks):

* frequency: the strongest row and column filters are d's, and each tone's frequency,
  measured from the phase advance of its filter between consecutive windows, is within
  +-2.5 % of nominal. Q.24 asks to accept <= 1.5 % and reject >= 3.5 %; the phase
  measure is accurate to about 1 Hz, so the limit sits in the middle.
* level: each tone at least MIN_TONE_DBM0 (-32 dBm0, i.e. about -35 dBFS per tone;
  0 dBm0 is 3.17 dB below a full-scale sine, G.711).
* twist: the high tone at most 8 dB above the low one ("normal" twist) and the low tone
  at most 4 dB above the high one ("reverse" twist), the usual values.
* signal-to-noise / talk-off: the two tones carry at least 80 % of the window's energy.
  Speech spreads its energy over many harmonics and formants, so it fails here.
* stationarity: the four 5 ms sub-blocks of this window and of the previous one differ
  by less than 6 dB (the phase measure needs both). This rejects windows only partly
  covered by a tone, which makes the duration measure sharp: a tone of L ms yields
  about (L - 12.5) / 5 steady windows, one fewer holding windows.

A key press is reported once, when MIN_ON_WINDOWS (4: a 40 ms tone gives at least 4,
a 30 ms tone at most 3) consecutive windows hold the same digit. It ends after
MIN_OFF_WINDOWS (8) windows that do not hold it: a gap of about 25 ms or more (Q.24
pauses are >= 40 ms); shorter drop-outs (Q.24: interruptions up to 10 ms) are bridged.
The same digit is reported again only after such a gap. The detector is a two-state
machine, written as a table below.

Reported ``start_sample``/``end_sample`` are the bounds of the first/last window that
held the digit: within about 5 ms outside the tone. The muter (``media.dtmf_mute``)
adds a guard on top.

Cost. An idle detector (no press on) skips the full analysis of a round when no window
can start a press, by necessary conditions only, cheapest first (``feed_detectors``):
the quiet gate (every buffered sample below the level at which even a full-scale filter
response stays under the screen's floor: silence, line noise, speech pauses), then the
screen (level and energy ratio; for all detectors of a round at once, from products
per 5 ms block rather than per overlapping window), then the run test (no run of
MIN_ON_WINDOWS screened, steady windows, and the last window can not hold one).
A skipped round steps the machine with "no tone", which is what the full analysis
would do; the phase and steadiness of its last window are computed only when the next
full analysis needs them.
Everything here is sans-I/O: samples and ``now`` in, events out; no clock is read.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from media.dtmf_tables import COL_FREQS, ROW_FREQS, FloatArray, product, tables

__all__ = [
    "DIGIT_EVENTS",
    "EVENT_DIGITS",
    "DtmfDigit",
    "DtmfStateError",
    "InbandDtmfDetector",
    "feed_detectors",
    "tone",
]

# RFC 4733 section 3.2, table 3: event codes 0-15 are the DTMF digits in this order.
EVENT_DIGITS: Final[str] = "0123456789*#ABCD"
DIGIT_EVENTS: Final[dict[str, int]] = {d: i for i, d in enumerate(EVENT_DIGITS)}

KEYPAD: Final[tuple[str, ...]] = ("123A", "456B", "789C", "*0#D")
_DIGIT_FREQS: Final[dict[str, tuple[float, float]]] = {
    KEYPAD[r][c]: (ROW_FREQS[r], COL_FREQS[c]) for r in range(4) for c in range(4)
}

FULL_SCALE_SINE_DBM0: Final[float] = 3.17  # G.711 mu-law load capacity
_KEYPAD_CODES: Final = np.array(
    [EVENT_DIGITS.index(KEYPAD[r][c]) for r in range(4) for c in range(4)]
)

MIN_TONE_DBM0: Final[float] = -32.0
FREQ_TOLERANCE: Final[float] = 0.025
NORMAL_TWIST_DB: Final[float] = 8.0  # high group louder than low
REVERSE_TWIST_DB: Final[float] = 4.0  # low group louder than high
MIN_TONE_ENERGY_RATIO: Final[float] = 0.8
MAX_SUBBLOCK_SPREAD_DB: Final[float] = 6.0
MIN_ON_WINDOWS: Final[int] = 4
MIN_OFF_WINDOWS: Final[int] = 8


@dataclass(frozen=True)
class DtmfDigit:
    """One key press. ``end_sample`` is None while the tone is still on."""

    digit: str
    start_sample: int
    end_sample: int | None
    method: str = "inband"
    at: float | None = None  # the `now` of the feed call that reported it


class DtmfStateError(RuntimeError):
    """An (state, event) pair the detector's table does not allow: a bug, never input."""


class _State(enum.Enum):
    IDLE = "idle"
    ACTIVE = "active"


class _Event(enum.Enum):
    NO_TONE = "no tone"
    TONE = "tone, too short yet"
    TONE_LONG_ENOUGH = "tone held for the minimum duration"
    SAME_TONE = "the active digit still held"
    OTHER = "active digit not held"
    PAUSE_LONG_ENOUGH = "active digit not held for the minimum pause"


class _Action(enum.Enum):
    NOTHING = "nothing"
    REPORT = "report press"
    RELEASE = "release press"


_TABLE: Final[dict[tuple[_State, _Event], tuple[_Action, _State]]] = {
    (_State.IDLE, _Event.NO_TONE): (_Action.NOTHING, _State.IDLE),
    (_State.IDLE, _Event.TONE): (_Action.NOTHING, _State.IDLE),
    (_State.IDLE, _Event.TONE_LONG_ENOUGH): (_Action.REPORT, _State.ACTIVE),
    (_State.ACTIVE, _Event.SAME_TONE): (_Action.NOTHING, _State.ACTIVE),
    (_State.ACTIVE, _Event.OTHER): (_Action.NOTHING, _State.ACTIVE),
    (_State.ACTIVE, _Event.PAUSE_LONG_ENOUGH): (_Action.RELEASE, _State.IDLE),
}


def _dbfs_to_power(dbfs: float) -> float:
    """Power (mean square, full scale = 1.0) of a sine at `dbfs` re full-scale sine."""
    return 0.5 * float(np.power(10.0, dbfs / 10.0))


class InbandDtmfDetector:
    """Streaming in-band DTMF detector: feed int16 samples in blocks of any size."""

    def __init__(
        self,
        sample_rate: int = 8000,
        *,
        min_level_dbm0: float = MIN_TONE_DBM0,
        freq_tolerance: float = FREQ_TOLERANCE,
        normal_twist_db: float = NORMAL_TWIST_DB,
        reverse_twist_db: float = REVERSE_TWIST_DB,
        min_energy_ratio: float = MIN_TONE_ENERGY_RATIO,
        min_on_windows: int = MIN_ON_WINDOWS,
        min_off_windows: int = MIN_OFF_WINDOWS,
    ) -> None:
        if sample_rate < 4000 or sample_rate % 200:
            raise ValueError(f"sample rate must be a multiple of 200 Hz >= 4000: {sample_rate}")
        self.sample_rate = sample_rate
        self.hop = sample_rate // 200  # 5 ms
        self.window = 4 * self.hop  # 20 ms: four sub-blocks of one hop each
        shared = tables(sample_rate)
        self._hann = shared.hann
        self._hann_sum = shared.hann_sum
        self._hann_sq = shared.hann_sq
        self._hann_sq_sum = shared.hann_sq_sum
        self._freqs = shared.freqs
        self._basis = shared.basis
        self._hop_rotation = shared.hop_rotation
        self._gain_grid = shared.gain_grid
        self._gain_table = shared.gain_table
        self._hop_basis = shared.hop_basis
        self._hop_hann_sq = shared.hop_hann_sq
        self._min_power = _dbfs_to_power(min_level_dbm0 - FULL_SCALE_SINE_DBM0)
        self._tolerance = freq_tolerance
        self._normal_twist = 10.0 ** (normal_twist_db / 10.0)
        self._reverse_twist = 10.0 ** (reverse_twist_db / 10.0)
        self._min_ratio = min_energy_ratio
        self._spread = 10.0 ** (-MAX_SUBBLOCK_SPREAD_DB / 10.0)
        self._min_on = min_on_windows
        self._min_off = min_off_windows
        # Lowest filter gain a tone inside the frequency tolerance can see: the screen
        # below divides by it, so it never rejects what the full analysis would accept.
        edge = np.array([freq_tolerance * max(COL_FREQS)])
        self._screen_gain2 = 0.99 * float(self._gain(edge)[0]) ** 2
        # Quiet gate, cheaper still than the screen (see `feed_detectors`): a filter
        # output is a weighted sum, |X| <= hann_sum * max|x|, so a window's power at any
        # filter, 2 * (|X| / hann_sum)**2, is at most 2 * max|x|**2. The screen wants
        # both tones at >= min_power * screen_gain2 ("floor"); a window whose samples all
        # stay below sqrt(floor / 2) can never pass it. The gate sits a further 1 dB
        # lower (0.8 of that power) so rounding can not matter: about -46 dBFS, 11 dB
        # below the peak of the weakest two-tone signal the level check accepts.
        self._gate = math.sqrt(0.8 * self._min_power * self._screen_gain2 / 2.0)
        self._loud_end = 0  # absolute index past the last block with a sample >= _gate
        # The last window of a round that skipped the analysis: its phase and steadiness
        # (history for the next `_classify`) are computed from it only if needed.
        self._prev_window: FloatArray | None = None

        self._buffer: FloatArray = np.zeros(0)
        self._buffer_start = 0  # absolute sample index of _buffer[0]
        self._prev_x: npt.NDArray[np.complex128] | None = None
        self._prev_steady = False
        self._state = _State.IDLE
        self._run_code = -1
        self._run_len = 0
        self._run_start = 0
        self._active: DtmfDigit | None = None
        self._off = 0
        self._last_held_end = 0
        self._finished: list[DtmfDigit] = []

    @property
    def samples_seen(self) -> int:
        return self._buffer_start + len(self._buffer)

    @property
    def active(self) -> DtmfDigit | None:
        """The press in progress (reported, tone still on), if any."""
        return self._active

    def feed(self, samples: np.ndarray, now: float | None = None) -> list[DtmfDigit]:
        """Analyse more samples; return the key presses that started being valid."""
        return feed_detectors((self,), (samples,), now)[0]

    def _may_report(self, maybe: npt.NDArray[np.bool_], steady: npt.NDArray[np.bool_]) -> bool:
        """Whether this idle detector's ready windows, of which those flagged in `maybe`
        passed the screen (and those in `steady` are steady), could change its state
        beyond "no tone".

        A window holds a digit only if it passed the screen and it and the window before
        it are steady (`_classify`, same computation). Idle, the machine only counts runs
        of windows holding one digit and reports at MIN_ON_WINDOWS; a round that is not
        stepped ends with the run reset, which is right when the last window holds
        nothing. So the round needs `_classify` only if a run of candidate windows
        (continuing the current run at the round's start) reaches the minimum, or the
        last window may hold a digit. Speech passes the screen in short runs: most of its
        rounds end here.
        """
        # The first window's predecessor is unknown here (it may be left unsettled):
        # counted as steady, so the test stays a necessary condition.
        candidate = (maybe & steady & np.concatenate(([True], steady[:-1]))).tolist()
        if candidate[-1]:
            return True
        run = self._run_len
        for flag in candidate:
            run = run + 1 if flag else 0
            if run >= self._min_on:
                return True
        return False

    @property
    def _quiet(self) -> bool:
        """No buffered sample reaches the gate: no window can pass the screen."""
        return self._loud_end <= self._buffer_start

    def _analyse(self, count: int, screened_out: bool, now: float | None) -> list[DtmfDigit]:
        """Step the machine over `count` ready windows (after the screen, if it ran)."""
        if screened_out:
            # No window can hold a tone (the usual case: speech or silence): stepping
            # the machine with "no tone" only resets the run, so do that in one go.
            self._run_code, self._run_len = -1, 0
            last = (count - 1) * self.hop
            self._prev_window = self._buffer[last : last + self.window].copy()
            self._consume(count)
            return []
        codes = self._classify(count)
        pressed: list[DtmfDigit] = []
        for i, code in enumerate(codes.tolist()):
            start = self._buffer_start + i * self.hop
            self._step(code, start, now, pressed)
        self._consume(count)
        return pressed

    def _windows(self, count: int) -> FloatArray:
        """The `count` overlapping windows as a read-only strided view of the buffer."""
        buf = self._buffer
        step = buf.strides[0]
        # np.ndarray on the buffer rather than as_strided: the same view for ~1 us
        # instead of ~9 us of Python-level work (per detector and round).
        frames: FloatArray = np.ndarray(
            (count, self.window), np.float64, buf, 0, (step * self.hop, step)
        )
        frames.flags.writeable = False
        return frames

    @property
    def _screen_key(self) -> tuple[float, ...]:
        """Detectors with equal keys can share one screening pass (`_screen_many`)."""
        return (self.sample_rate, self._min_power, self._screen_gain2, self._min_ratio)

    def _consume(self, count: int) -> None:
        consumed = count * self.hop
        # A copy of the short rest (< one window), not a view: a view would keep the
        # whole round's buffer (the block plus the rest, ~9 KiB at 120 ms) alive
        # until the next round, for every channel of every call.
        self._buffer = self._buffer[consumed:].copy()
        self._buffer_start += consumed

    def pop_finished(self) -> list[DtmfDigit]:
        """Presses whose tone has ended since the last call, with ``end_sample`` set."""
        done, self._finished = self._finished, []
        return done

    def finish(self) -> list[DtmfDigit]:
        """End of stream: close a press still on, and return all finished presses."""
        if self._active is not None:
            self._finished.append(_with_end(self._active, self._last_held_end))
            self._active = None
            self._state = _State.IDLE
        return self.pop_finished()

    # --- analysis --------------------------------------------------------------------

    def _classify(self, count: int) -> npt.NDArray[np.int64]:
        """Digit code (index into EVENT_DIGITS) held by each of `count` windows, or -1."""
        if self._prev_window is not None:
            self._settle_history(self._prev_window)
        frames = self._windows(count)
        xr = product(frames, self._basis)
        x = xr[:, :8] + 1j * xr[:, 8:]  # (count, 8) complex filter outputs
        prev = np.vstack(
            (self._prev_x if self._prev_x is not None else np.full((1, 8), np.nan), x[:-1])
        )
        self._prev_x = x[-1:].copy()
        # Frequency offset of each filter's input from its phase advance over one hop.
        advance = np.angle(x * np.conj(prev) * self._hop_rotation)
        offset_hz = advance * self.sample_rate / (2 * np.pi * self.hop)
        power = 2.0 * (np.abs(x) / self._hann_sum) ** 2  # sine power, amplitude**2 / 2
        row = np.argmax(power[:, :4], axis=1)
        col = np.argmax(power[:, 4:], axis=1) + 4
        idx = np.arange(count)
        row_off = offset_hz[idx, row]
        col_off = offset_hz[idx, col]
        row_rel = np.abs(row_off) / self._freqs[row]
        col_rel = np.abs(col_off) / self._freqs[col]
        freq_ok = (row_rel <= self._tolerance) & (col_rel <= self._tolerance)
        row_pow = power[idx, row] / self._gain(np.where(freq_ok, row_off, 0.0)) ** 2
        col_pow = power[idx, col] / self._gain(np.where(freq_ok, col_off, 0.0)) ** 2
        total = product(frames**2, self._hann_sq) / self._hann_sq_sum
        steady = self._steady(count)
        # The phase measure needs two steady windows: a window only partly covered by
        # the tone has a truncated (sharp-edged) weighting whose leakage bends the phase.
        prev_steady = np.concatenate(([self._prev_steady], steady[:-1]))
        self._prev_steady = bool(steady[-1])
        ok = (
            freq_ok
            & (row_pow >= self._min_power)
            & (col_pow >= self._min_power)
            & (col_pow <= row_pow * self._normal_twist)
            & (row_pow <= col_pow * self._reverse_twist)
            & (row_pow + col_pow >= self._min_ratio * total)
            & steady
            & prev_steady
        )
        code = _KEYPAD_CODES[row * 4 + (col - 4)]
        return np.where(ok, code, -1).astype(np.int64)

    def _steady(self, count: int) -> npt.NDArray[np.bool_]:
        """Whether each ready window's four sub-blocks are within MAX_SUBBLOCK_SPREAD_DB."""
        # Windows start on hop boundaries, so their sub-blocks are consecutive hop blocks.
        hop = self.hop
        hop_energy = (self._buffer[: (count + 3) * hop] ** 2).reshape(count + 3, hop).mean(axis=1)
        shifted = [hop_energy[k : k + count] for k in range(4)]
        steady: npt.NDArray[np.bool_] = np.minimum.reduce(
            shifted
        ) >= self._spread * np.maximum.reduce(shifted)
        return steady

    def _settle_history(self, window: FloatArray) -> None:
        """Phase and steadiness of the window before this round (skipped rounds leave
        only the samples; most never need more)."""
        self._prev_window = None
        xr = window[None, :] @ self._basis
        self._prev_x = xr[:, :8] + 1j * xr[:, 8:]
        energy = (window**2).reshape(4, self.hop).mean(axis=1)
        self._prev_steady = bool(energy.min() >= self._spread * energy.max())

    def _gain(self, offset_hz: FloatArray) -> FloatArray:
        """Hann filter magnitude response at `offset_hz` from its centre (1.0 at 0)."""
        gain: FloatArray = np.interp(offset_hz, self._gain_grid, self._gain_table)
        return gain

    # --- state machine -----------------------------------------------------------------

    def _event(self, code: int, start: int) -> _Event:
        if self._state is _State.IDLE:
            self._track_run(code, start)
            if code < 0:
                return _Event.NO_TONE
            return _Event.TONE_LONG_ENOUGH if self._run_len >= self._min_on else _Event.TONE
        assert self._active is not None
        if code == DIGIT_EVENTS[self._active.digit]:
            self._off = 0
            self._last_held_end = start + self.window
            self._run_code, self._run_len = -1, 0
            return _Event.SAME_TONE
        self._off += 1
        self._track_run(code, start)  # another digit may follow without much pause
        return _Event.PAUSE_LONG_ENOUGH if self._off >= self._min_off else _Event.OTHER

    def _track_run(self, code: int, start: int) -> None:
        if code < 0:
            self._run_code, self._run_len = -1, 0
        elif code == self._run_code:
            self._run_len += 1
        else:
            # The previous (steady) window is part of the evidence: the press starts there.
            self._run_code, self._run_len, self._run_start = code, 1, max(start - self.hop, 0)

    def _step(self, code: int, start: int, now: float | None, out: list[DtmfDigit]) -> None:
        event = self._event(code, start)
        try:
            action, next_state = _TABLE[(self._state, event)]
        except KeyError:
            raise DtmfStateError(f"no transition for {self._state} on {event}") from None
        if action is _Action.REPORT:
            digit = EVENT_DIGITS[self._run_code]
            self._active = DtmfDigit(digit, self._run_start, None, "inband", now)
            self._last_held_end = start + self.window
            self._off = 0
            self._run_code, self._run_len = -1, 0
            out.append(self._active)
        elif action is _Action.RELEASE:
            assert self._active is not None
            self._finished.append(_with_end(self._active, self._last_held_end))
            self._active = None
        self._state = next_state


def feed_detectors(
    detectors: Sequence[InbandDtmfDetector],
    blocks: Sequence[np.ndarray],
    now: float | None = None,
) -> list[list[DtmfDigit]]:
    """``detector.feed(block, now)`` for each pair, with one screening pass for all.

    Same results as feeding each detector alone; what it saves is numpy's per-call
    overhead, which for a 100 ms block costs more than the arithmetic (the recorder
    feeds a call's two channels, the hub many calls, in one go). All detectors' buffers
    are built as slices of one joined array, those to screen first, each padded to
    whole hops: one strided view then holds the windows of all of them, and the screen
    is two matrix products for all (windows that straddle two detectors are computed
    and ignored).
    """
    if not detectors:
        return []
    arrays = [np.asarray(b).reshape(-1) for b in blocks]
    sizes = [a.shape[0] for a in arrays]
    # One conversion for all blocks (the values of `np.asarray(b, float64) / 32768`).
    scaled = np.concatenate(arrays).astype(np.float64) / 32768.0 if sum(sizes) else None
    counts: list[int] = []
    for d, size in zip(detectors, sizes, strict=True):
        total = d._buffer.shape[0] + size
        counts.append(0 if total < d.window else (total - d.window) // d.hop + 1)
    if scaled is not None:
        _note_loud(detectors, sizes, scaled)
    # The quiet gate first, then the screen for the rest: silence and speech pauses
    # skip both products.
    idle = [i for i, d in enumerate(detectors) if counts[i] and d._state is _State.IDLE]
    groups: dict[tuple[float, ...], list[int]] = {}
    for i in idle:
        if not detectors[i]._quiet:
            groups.setdefault(detectors[i]._screen_key, []).append(i)
    screened = [i for group in groups.values() for i in group]
    joined, offsets = _join(detectors, scaled, sizes, counts, screened)
    maybe = dict.fromkeys(idle, False)
    for group in groups.values():
        first = offsets[group[0]]
        rows = [(offsets[i] - first) // detectors[i].hop for i in group]
        region = joined[first : offsets[group[-1]] + _padded(detectors[group[-1]])]
        found = _screen_many(
            [detectors[i] for i in group], [counts[i] for i in group], region, rows
        )
        maybe.update(zip(group, found, strict=True))
    return [
        d._analyse(counts[i], not maybe.get(i, True), now) if counts[i] else []
        for i, d in enumerate(detectors)
    ]


def _padded(d: InbandDtmfDetector) -> int:
    """The length of `d`'s buffer rounded up to whole hops."""
    return int(-(-d._buffer.shape[0] // d.hop) * d.hop)


def _join(
    detectors: Sequence[InbandDtmfDetector],
    scaled: FloatArray | None,
    sizes: Sequence[int],
    counts: Sequence[int],
    screened: Sequence[int],
) -> tuple[FloatArray, dict[int, int]]:
    """Append each detector's new samples: every buffer becomes a slice of one array,
    the `screened` detectors first (in that order), each of them padded to whole hops.
    Returns the joined array and each detector's offset in it."""
    ends = np.cumsum(sizes).tolist()
    order = list(screened)
    chosen = set(order)
    order += [i for i in range(len(detectors)) if i not in chosen]
    pieces: list[FloatArray] = []
    offsets: dict[int, int] = {}
    pos = 0
    for i in order:
        d = detectors[i]
        offsets[i] = pos
        pieces.append(d._buffer)
        if sizes[i]:
            assert scaled is not None
            pieces.append(scaled[ends[i] - sizes[i] : ends[i]])
        length = d._buffer.shape[0] + sizes[i]
        pad = (-length % d.hop) if i in chosen else 0
        if pad:
            pieces.append(np.zeros(pad))
        pos += length + pad
    joined = np.concatenate(pieces) if pieces else np.zeros(0)
    for i, d in enumerate(detectors):
        length = d._buffer.shape[0] + sizes[i]
        view = joined[offsets[i] : offsets[i] + length]
        # A detector without a whole window keeps a copy: a view would keep the joined
        # array (every detector's round) alive until its next round.
        d._buffer = view if counts[i] else view.copy()
    return joined, offsets


def _note_loud(
    detectors: Sequence[InbandDtmfDetector], sizes: Sequence[int], scaled: FloatArray
) -> None:
    """Mark each detector whose new block has a sample at or above its gate."""
    nonempty = [i for i, size in enumerate(sizes) if size]
    starts = (np.cumsum(sizes) - np.asarray(sizes))[nonempty]
    peaks = np.maximum.reduceat(np.abs(scaled), starts).tolist()
    for i, peak in zip(nonempty, peaks, strict=True):
        d = detectors[i]
        if not peak < d._gate:  # "not <": a NaN counts as loud
            d._loud_end = d._buffer_start + d._buffer.shape[0] + sizes[i]


def _screen_many(
    detectors: Sequence[InbandDtmfDetector],
    counts: Sequence[int],
    region: FloatArray,
    rows: Sequence[int],
) -> list[bool]:
    """Whether any of each detector's `counts[i]` ready windows may hold a tone: the
    necessary level and energy-ratio conditions of `_classify`, for all detectors in one
    numpy pass. `region` holds their buffers one after the other, each on a hop
    boundary; detector i's windows are rows `rows[i]` onwards of its windows view.

    A detector that can hold no tone keeps its last window for the phase and steadiness
    history (`_analyse`); the others are left alone for `_classify` to run.
    """
    first = detectors[0]
    hop = first.hop
    # Products per hop block, not per window: the windows overlap four times, so a
    # windows view would have to be copied out whole (4x the data) for each product.
    # Window t is blocks t..t+3; its outputs are the sums of the blocks' partial ones.
    # Summed in another order than `_classify` does, so the last bits may differ: the
    # screen's 1 % margin (`_screen_gain2`) is far above that.
    blocks = region.reshape(-1, hop)
    n = blocks.shape[0] - 3
    part = product(blocks, first._hop_basis)
    xr = part[:n, :16] + part[1 : n + 1, 16:32] + part[2 : n + 2, 32:48] + part[3:, 48:]
    squares = blocks * blocks
    part_sq = product(squares, first._hop_hann_sq)
    total = (
        part_sq[:n, 0] + part_sq[1 : n + 1, 1] + part_sq[2 : n + 2, 2] + part_sq[3:, 3]
    ) / first._hann_sq_sum
    power = 2.0 * ((xr[:, :8] ** 2 + xr[:, 8:] ** 2) / first._hann_sum**2)
    row_max = power[:, :4].max(axis=1)
    col_max = power[:, 4:].max(axis=1)
    floor = first._min_power * first._screen_gain2
    maybe = (
        (row_max >= floor)
        & (col_max >= floor)
        & (row_max + col_max >= first._min_ratio * total * first._screen_gain2)
    )
    # Steadiness of every window (`_steady`, the same arithmetic on the same blocks).
    hop_energy = squares.mean(axis=1)
    shifted = [hop_energy[k : k + n] for k in range(4)]
    steady = np.minimum.reduce(shifted) >= first._spread * np.maximum.reduce(shifted)
    # Windows per detector from a running count: no Python loop over numpy slices.
    running = np.concatenate(([0], np.cumsum(maybe)))
    starts = np.asarray(rows)
    any_maybe = (running[starts + np.asarray(counts)] > running[starts]).tolist()
    return [
        m and d._may_report(maybe[s : s + c], steady[s : s + c])
        for d, m, s, c in zip(detectors, any_maybe, rows, counts, strict=True)
    ]


def _with_end(digit: DtmfDigit, end: int) -> DtmfDigit:
    return DtmfDigit(digit.digit, digit.start_sample, end, digit.method, digit.at)


def tone(
    digit: str,
    duration_s: float,
    level_dbfs: float,
    sample_rate: int = 8000,
    *,
    twist_db: float = 0.0,
    freq_offset: float = 0.0,
) -> npt.NDArray[np.int16]:
    """Generate a DTMF tone as int16 samples.

    ``level_dbfs`` is the peak of the two-tone sum relative to full scale, so 0 dBFS
    never clips; with no twist each tone is 6 dB below it. ``twist_db`` is the high tone's
    level minus the low tone's. ``freq_offset`` shifts both frequencies (0.04 = +4 %).
    """
    low, high = _DIGIT_FREQS[digit.upper()]
    peak = 32767.0 * 10.0 ** (level_dbfs / 20.0)
    ratio = 10.0 ** (twist_db / 20.0)  # high amplitude / low amplitude
    a_low = peak / (1.0 + ratio)
    t = np.arange(round(duration_s * sample_rate)) / sample_rate
    f = 1.0 + freq_offset
    wave = a_low * np.sin(2 * np.pi * low * f * t) + a_low * ratio * np.sin(
        2 * np.pi * high * f * t
    )
    samples: npt.NDArray[np.int16] = np.round(wave).astype(np.int16)
    return samples
