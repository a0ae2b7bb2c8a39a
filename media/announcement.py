"""Announcement prompts: load a sound file as 8 kHz mono samples, and pace it as RTP frames.

Theory of operation
-------------------
``load_prompt`` reads anything soundfile reads, mixes it to mono (mean of channels) and
resamples it to 8 kHz with a polyphase windowed-sinc filter (Kaiser window) written in
numpy: for a rate change of up/down (reduced by their gcd) there are ``up`` phases of a
low-pass filter whose cut-off sits just below the lower of the two Nyquist rates. The
prompt keeps the sha256 of the file's bytes, which the consent record cites as evidence
of what the caller heard.

``PromptPlayer`` is sans-I/O: the caller passes ``now`` and gets the 20 ms frames that
are due by then, each already encoded (G.711) and numbered for ``RelayLeg.inject``. Frame
k is due at ``start + k * ptime``. A late caller gets the frames it missed, but never more
than ``max_burst`` at once: when it is further behind (a stalled loop) the rest of the
schedule slips, so the prompt is still played whole and the peer's jitter buffer sees at
most a burst of ``max_burst`` frames. RTP timestamps advance by the samples per frame
whatever the pacing, since the audio itself is continuous.
"""

from __future__ import annotations

import hashlib
import io
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt
import soundfile

__all__ = [
    "PROMPT_DIR",
    "PROMPT_LANGUAGES",
    "PROMPT_NAMES",
    "Prompt",
    "PromptError",
    "PromptFrame",
    "PromptPlayer",
    "load_prompt",
    "resample",
    "shipped_prompt",
]

SAMPLE_RATE: Final[int] = 8000
PROMPT_DIR: Final[Path] = Path(__file__).parent / "prompts"
PROMPT_LANGUAGES: Final[tuple[str, ...]] = ("de", "en")
PROMPT_NAMES: Final[tuple[str, ...]] = (
    "consent",
    "announce",
    "thanks",
    "goodbye",
    "stopped",
    "noanswer",  # a hunt group nobody answered (b2bua/hunt.py)
)

_ZERO_CROSSINGS: Final[int] = 16  # filter half-length in zero crossings of the sinc
_KAISER_BETA: Final[float] = 8.6  # about 80 dB stop-band attenuation
_ROLLOFF: Final[float] = 0.94  # cut-off as a fraction of the lower Nyquist rate
_CHUNK: Final[int] = 4096  # output samples per vectorised block (bounds memory)

Int16Array = npt.NDArray[np.int16]
FloatArray = npt.NDArray[np.float64]


class PromptError(ValueError):
    """A prompt file that can not be read as audio."""


@dataclass(frozen=True, eq=False)
class Prompt:
    """A prompt ready to play: int16 samples at 8 kHz mono (read-only array)."""

    name: str
    samples: Int16Array
    sha256: str  # of the file's bytes, as stored
    sample_rate: int = SAMPLE_RATE

    @property
    def duration(self) -> float:
        return len(self.samples) / self.sample_rate


def shipped_prompt(language: str, name: str) -> Path:
    """Path of a shipped prompt, ``media/prompts/<language>_<name>.wav``."""
    if language not in PROMPT_LANGUAGES:
        raise ValueError(f"no shipped prompts in language {language!r}: {PROMPT_LANGUAGES}")
    if name not in PROMPT_NAMES:
        raise ValueError(f"no shipped prompt named {name!r}: {PROMPT_NAMES}")
    return PROMPT_DIR / f"{language}_{name}.wav"


def load_prompt(path: str | Path, name: str | None = None) -> Prompt:
    """Read `path` (any format soundfile reads) as an 8 kHz mono int16 prompt."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise PromptError(f"{p}: {exc.strerror or exc}") from exc
    try:
        audio, rate = soundfile.read(io.BytesIO(data), dtype="float64", always_2d=True)
    except (RuntimeError, soundfile.LibsndfileError, TypeError, ValueError) as exc:
        raise PromptError(f"{p}: not a sound file soundfile can read ({exc})") from exc
    mono: FloatArray = np.asarray(audio, dtype=np.float64).mean(axis=1)
    if int(rate) != SAMPLE_RATE:
        mono = resample(mono, int(rate), SAMPLE_RATE)
    samples = np.clip(np.round(mono * 32768.0), -32768, 32767).astype(np.int16)
    samples.setflags(write=False)
    return Prompt(name or p.stem, samples, hashlib.sha256(data).hexdigest())


def resample(x: FloatArray, rate_in: int, rate_out: int) -> FloatArray:
    """Polyphase windowed-sinc resampling of a 1-D float signal from rate_in to rate_out."""
    if rate_in <= 0 or rate_out <= 0:
        raise ValueError("sample rates must be positive")
    signal = np.asarray(x, dtype=np.float64).reshape(-1)
    if rate_in == rate_out or len(signal) == 0:
        return signal.copy()
    g = math.gcd(rate_in, rate_out)
    up, down = rate_out // g, rate_in // g
    # Work on the upsampled grid (rate_in * up): the filter's cut-off in cycles per
    # sample of that grid, and its half-length in samples of that grid.
    cutoff = _ROLLOFF * 0.5 / max(up, down)
    half = math.ceil(_ZERO_CROSSINGS * max(up, down))
    taps_per_phase = 2 * math.ceil(half / up) + 1
    # Phase p holds the taps for input offsets j - centre, upsampled-grid position
    # (j - centre) * up - p; output n sits at upsampled position n * down.
    centre = taps_per_phase // 2
    offsets = (np.arange(taps_per_phase)[None, :] - centre) * up - np.arange(up)[:, None]
    t = offsets.astype(np.float64)
    inside = np.abs(t) <= half
    window = np.where(
        inside,
        np.i0(_KAISER_BETA * np.sqrt(np.clip(1.0 - (t / half) ** 2, 0.0, 1.0))),
        0.0,
    ) / np.i0(_KAISER_BETA)
    # Gain `up` restores the level lost by zero-stuffing (2 * cutoff * up per phase).
    bank: FloatArray = 2.0 * cutoff * up * np.sinc(2.0 * cutoff * t) * window
    n_out = math.ceil(len(signal) * up / down)
    padded = np.concatenate((np.zeros(centre), signal, np.zeros(centre + 1)))
    out = np.empty(n_out, dtype=np.float64)
    taps = np.arange(taps_per_phase)
    for begin in range(0, n_out, _CHUNK):
        n = np.arange(begin, min(begin + _CHUNK, n_out))
        pos = n * down
        base, phase = pos // up, pos % up
        # Input index base + (j - centre) sits at padded index base + j.
        idx = base[:, None] + taps[None, :]
        idx = np.minimum(idx, len(padded) - 1)
        out[begin : begin + len(n)] = np.einsum("ij,ij->i", padded[idx], bank[phase])
    return out


@dataclass(frozen=True, slots=True)
class PromptFrame:
    """One 20 ms frame, numbered for ``RelayLeg.inject(payload, ssrc=, seq=, ts=, marker=)``."""

    payload: bytes
    ssrc: int
    seq: int  # 16-bit, consecutive within one player
    ts: int  # 32-bit RTP timestamp (samples at 8 kHz)
    marker: bool  # set on the first frame: the start of a talkspurt
    index: int  # frame number within the prompt, from 0


@dataclass(slots=True)
class PromptPlayer:
    """Sans-I/O pacing of a prompt as encoded frames; see the module docstring."""

    prompt: Prompt
    encoder: Callable[[np.ndarray], bytes]
    ptime_ms: int = 20
    ssrc: int = 0x5052_4F4D  # "PROM": the relay's OutboundStream rebases any source
    first_seq: int = 0
    first_ts: int = 0
    max_burst: int = 5
    _start: float | None = field(default=None, init=False)
    _next: int = field(default=0, init=False)
    _stopped: bool = field(default=False, init=False)
    _frame_samples: int = field(default=160, init=False)
    _frames: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        if self.ptime_ms <= 0 or self.max_burst < 1:
            raise ValueError("ptime_ms and max_burst must be positive")
        self._frame_samples = self.prompt.sample_rate * self.ptime_ms // 1000
        self._frames = math.ceil(len(self.prompt.samples) / self._frame_samples)

    @property
    def frame_count(self) -> int:
        return self._frames

    @property
    def started(self) -> bool:
        return self._start is not None

    @property
    def finished(self) -> bool:
        """Every frame handed out, or stopped."""
        return self._stopped or self._next >= self._frames

    @property
    def ends_at(self) -> float | None:
        """When the last frame's audio ends (the schedule, after any slip); None if idle."""
        if self._start is None:
            return None
        return self._start + self._frames * self.ptime_ms / 1000.0

    def next_due(self) -> float | None:
        """When the next frame is due: the deadline for the I/O layer's timer."""
        if self._start is None or self.finished:
            return None
        return self._start + self._next * self.ptime_ms / 1000.0

    def start(self, now: float) -> None:
        if self._start is not None:
            raise RuntimeError("prompt player already started")
        self._start = now

    def stop(self) -> None:
        """Barge-in: no more frames."""
        self._stopped = True

    def frames_due(self, now: float) -> list[PromptFrame]:
        """The frames due by `now` (at most `max_burst`); [] before start or after the end."""
        if self._start is None or self.finished:
            return []
        ptime = self.ptime_ms / 1000.0
        # Frames whose due time is <= now; a tiny epsilon absorbs float error at k*ptime.
        due = min(math.floor((now - self._start) / ptime + 1e-9) + 1, self._frames)
        if due - self._next > self.max_burst:
            # Too far behind: slip the schedule so that the last frame we send now is
            # the one due now, and play on from there in real time.
            slip = due - self._next - self.max_burst
            self._start += slip * ptime
            due = self._next + self.max_burst
        out = [self._frame(k) for k in range(self._next, due)]
        self._next = max(self._next, due)
        return out

    def _frame(self, k: int) -> PromptFrame:
        n = self._frame_samples
        chunk = self.prompt.samples[k * n : (k + 1) * n]
        if len(chunk) < n:  # pad the last frame with silence
            chunk = np.concatenate((chunk, np.zeros(n - len(chunk), dtype=np.int16)))
        return PromptFrame(
            payload=self.encoder(chunk),
            ssrc=self.ssrc,
            seq=(self.first_seq + k) & 0xFFFF,
            ts=(self.first_ts + k * n) & 0xFFFFFFFF,
            marker=k == 0,
            index=k,
        )
