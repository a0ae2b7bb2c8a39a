"""Muting in-band DTMF in recorded audio: a streaming muter per channel.

The muter delays the audio by a fixed amount, runs ``media.dtmf``'s detector on it and
zeroes each detected key press (plus a guard) before the samples leave, so no part of a
valid press is ever written. ``feed_muters`` runs many muters (every channel of a
recording step) with one screening pass for all their detectors.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import numpy.typing as npt

from media.dtmf import DtmfDigit, InbandDtmfDetector, feed_detectors

__all__ = ["DtmfMuter", "MuterOutput", "feed_muters", "mute_spans"]


def mute_spans(
    samples: np.ndarray,
    digits: list[DtmfDigit],
    *,
    sample_rate: int = 8000,
    guard_s: float = 0.02,
    offset: int = 0,
) -> npt.NDArray[np.int16]:
    """Copy of `samples` with each digit's span (plus a guard each side) set to zero.

    ``offset`` is the absolute sample index of ``samples[0]`` (the digits carry absolute
    indexes). A digit without ``end_sample`` is muted to the end of the samples.
    """
    out = np.array(samples, dtype=np.int16, copy=True).reshape(-1)
    guard = round(guard_s * sample_rate)
    for d in digits:
        begin = max(d.start_sample - guard - offset, 0)
        end = len(out) if d.end_sample is None else d.end_sample + guard - offset
        if end > begin:
            out[begin:end] = 0
    return out


MuterOutput = tuple[npt.NDArray[np.int16], list[DtmfDigit]]


class DtmfMuter:
    """Streaming muter for the recording: delays the audio by `delay_s` and zeroes DTMF.

    The delay must exceed the detector's confirmation latency plus the guard (about
    50 ms + guard), so that no sample of a valid key press leaves before it is known.
    The output has the same length as each input block; it starts with `delay_s` of
    silence, and ``flush`` returns the held-back tail. Both legs of a call should use the
    same delay so that they stay aligned.
    """

    def __init__(
        self,
        sample_rate: int = 8000,
        *,
        delay_s: float = 0.1,
        guard_s: float = 0.02,
        detector_factory: Callable[[int], InbandDtmfDetector] = InbandDtmfDetector,
    ) -> None:
        self.detector = detector_factory(sample_rate)
        self.delay = round(delay_s * sample_rate)
        self.guard = round(guard_s * sample_rate)
        if self.delay < round(0.05 * sample_rate) + self.guard + self.detector.window:
            raise ValueError("delay too short to mute a tone before it leaves")
        self._pending: npt.NDArray[np.int16] = np.zeros(self.delay, dtype=np.int16)
        self._pending_start = -self.delay  # absolute index of _pending[0]
        self._spans: list[tuple[int, int | None]] = []

    def feed(
        self, samples: np.ndarray, now: float | None = None
    ) -> tuple[npt.NDArray[np.int16], list[DtmfDigit]]:
        """Return (delayed muted samples, same length as input; newly pressed digits)."""
        return feed_muters((self,), (samples,), now)[0]

    def flush(self) -> tuple[npt.NDArray[np.int16], list[DtmfDigit]]:
        """End of stream: the held-back samples, muted, and presses that just ended."""
        finished = self.detector.finish()
        self._collect_spans(finished)
        return self._emit(len(self._pending)), finished

    def _collect_spans(self, finished: list[DtmfDigit]) -> None:
        ended = {d.start_sample for d in finished}
        self._spans = [(s, e) for (s, e) in self._spans if not (e is None and s in ended)]
        self._spans.extend((d.start_sample, d.end_sample) for d in finished)
        active = self.detector.active
        if active is not None and (active.start_sample, None) not in self._spans:
            self._spans.append((active.start_sample, None))

    def _emit(self, count: int) -> npt.NDArray[np.int16]:
        self._collect_spans(self.detector.pop_finished())
        # `_pending` is a fresh array (`feed_muters` joins a new one each round, `flush`
        # emits it all), so its head can go out as it is; the short rest is copied, so
        # the whole round's array is not kept alive for the next round.
        out = self._pending[:count]
        first = self._pending_start
        for start, end in self._spans:
            begin = max(start - self.guard - first, 0)
            stop = count if end is None else min(end + self.guard - first, count)
            if stop > begin:
                out[begin:stop] = 0
        self._pending = self._pending[count:].copy()
        self._pending_start += count
        horizon = self._pending_start
        self._spans = [(s, e) for (s, e) in self._spans if e is None or e + self.guard > horizon]
        return out


def feed_muters(
    muters: Sequence[DtmfMuter], blocks: Sequence[np.ndarray], now: float | None = None
) -> list[MuterOutput]:
    """``muter.feed(block, now)`` for each pair, their detectors screened in one pass."""
    arrays = [np.asarray(b, dtype=np.int16).reshape(-1) for b in blocks]
    pressed = feed_detectors([m.detector for m in muters], arrays, now)
    # Each muter's held-back samples and new block as slices of one joined array (one
    # concatenation for all instead of one per muter); `_emit` copies what it keeps.
    pieces = [piece for m, a in zip(muters, arrays, strict=True) for piece in (m._pending, a)]
    joined = np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.int16)
    outputs: list[MuterOutput] = []
    pos = 0
    for m, a, p in zip(muters, arrays, pressed, strict=True):
        end = pos + m._pending.shape[0] + a.shape[0]
        m._pending = joined[pos:end]
        outputs.append((m._emit(a.shape[0]), p))
        pos = end
    return outputs
