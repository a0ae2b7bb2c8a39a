"""Recordings as the portal hands them out: decrypted in memory, exact WAV sizes, ranges.

Decryption reads the `.wav.age` file and keeps the plaintext in a bytes object only; no
decrypted byte is ever written to disk (no temporary file, no spooling). A small LRU cache
(bounded in bytes and in age) keeps recently played recordings in memory, because a
browser asks for the same file several times while seeking; access rights are checked
by the caller before every lookup, the cache only saves the decryption.

A truncated file (the recorder crashed) plays as far as it was authenticated, like
`b2bua decrypt` does; a tampered file or a wrong identity is an error, nothing is served.

`parse_range` implements single byte ranges of RFC 9110, section 14 (bytes=a-b, a-,
-suffix); several ranges are answered with the whole file (section 14.2 lets a server
ignore Range), an unsatisfiable one with 416.

`timeline_svg` draws both channels' envelopes (min/max per column), a time axis and the
paused spans: enough to see who spoke when without sending the audio to a script.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from media.agefile import AgeError, AgeTruncated, decrypt_stream, parse_identities
from media.writer import fix_wav_sizes, parse_wav_layout, streaming_wav_header

__all__ = [
    "DecryptError",
    "DecryptedCache",
    "PlainRecording",
    "decrypt_recording",
    "load_identities",
    "parse_range",
    "timeline_svg",
]


class DecryptError(Exception):
    """The file can not be opened: missing, wrong key, or tampered."""

    def __init__(self, detail: str, *, missing: bool = False) -> None:
        super().__init__(detail)
        self.missing = missing  # the file is gone (else: it is there but will not open)


@dataclass(frozen=True)
class PlainRecording:
    wav: bytes  # exact RIFF/data sizes
    truncated: bool
    sample_rate: int
    channels: int
    data_offset: int

    @property
    def frames(self) -> int:
        return (len(self.wav) - self.data_offset) // (2 * self.channels)

    @property
    def duration_s(self) -> float:
        return self.frames / self.sample_rate if self.sample_rate else 0.0


def load_identities(path: Path) -> list[str]:
    return parse_identities(Path(path).read_text(encoding="utf-8"))


def decrypt_recording(path: Path, identities: Sequence[str]) -> PlainRecording:
    """Decrypt one recording into memory and give it exact WAV sizes."""
    parts: list[bytes] = []
    truncated = False
    try:
        with open(path, "rb") as f:
            try:
                for piece in decrypt_stream(f, identities):
                    parts.append(piece)
            except AgeTruncated:
                truncated = True
    except FileNotFoundError:
        raise DecryptError("the recording file is missing", missing=True) from None
    except AgeError as exc:
        raise DecryptError(f"can not decrypt: {exc}") from None
    except OSError as exc:
        raise DecryptError(f"can not read the file: {exc.strerror}") from None
    plain = b"".join(parts)
    try:
        wav = fix_wav_sizes(plain)
    except ValueError:
        if not truncated:
            raise DecryptError("the decrypted recording is not a WAV file") from None
        # Cut inside the header: an empty recording in the recorder's format.
        wav = fix_wav_sizes(streaming_wav_header(8000, 2))
    layout = parse_wav_layout(wav)
    return PlainRecording(wav, truncated, layout.sample_rate, layout.channels, layout.data_offset)


class DecryptedCache:
    """LRU of decrypted recordings, bounded in total bytes and in age (thread-safe)."""

    def __init__(self, max_bytes: int = 256 << 20, max_age_s: float = 300.0) -> None:
        self.max_bytes = max_bytes
        self.max_age_s = max_age_s
        self._items: OrderedDict[tuple[str, str], tuple[float, PlainRecording]] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()

    def get(
        self, record_id: str, version: str, path: Path, identities: Sequence[str]
    ) -> PlainRecording:
        """The plaintext of a recording; `version` (e.g. its sha256) keys the cache."""
        key = (record_id, version)
        now = time.monotonic()
        with self._lock:
            hit = self._items.get(key)
            if hit is not None and now - hit[0] <= self.max_age_s:
                self._items.move_to_end(key)
                return hit[1]
        plain = decrypt_recording(path, identities)
        with self._lock:
            self._drop_key(key)
            if len(plain.wav) <= self.max_bytes:
                self._items[key] = (now, plain)
                self._size += len(plain.wav)
                while self._size > self.max_bytes:
                    old_key = next(iter(self._items))
                    self._drop_key(old_key)
        return plain

    def forget(self, record_id: str) -> None:
        with self._lock:
            for key in [k for k in self._items if k[0] == record_id]:
                self._drop_key(key)

    def _drop_key(self, key: tuple[str, str]) -> None:
        old = self._items.pop(key, None)
        if old is not None:
            self._size -= len(old[1].wav)


def parse_range(header: str | None, size: int) -> tuple[int, int] | str | None:
    """(first, last) inclusive for one satisfiable range; None: send everything;
    "unsatisfiable": answer 416."""
    if header is None:
        return None
    unit, _, spec = header.strip().partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first_text, dash, last_text = spec.strip().partition("-")
    first_text, last_text = first_text.strip(), last_text.strip()
    if not dash or not (first_text.isdigit() or first_text == ""):
        return None
    if last_text and not last_text.isdigit():
        return None
    if first_text == "":
        if not last_text:
            return None
        suffix = int(last_text)
        if suffix == 0 or size == 0:
            return "unsatisfiable"
        return max(0, size - suffix), size - 1
    first = int(first_text)
    if first >= size:
        return "unsatisfiable"
    last = size - 1 if not last_text else min(int(last_text), size - 1)
    if last < first:
        return None  # invalid range: ignore the header (RFC 9110, 14.1.1)
    return first, last


# ----------------------------------------------------------------- timeline picture

_WIDTH = 900
_LANE = 70
_TOP = 8
_AXIS = 22
_COLUMNS = 450


def _envelope(samples: np.ndarray, columns: int) -> tuple[np.ndarray, np.ndarray]:
    """Per column: min and max of the samples, scaled to -1..1."""
    n = samples.shape[0]
    if n == 0:
        zero = np.zeros(columns)
        return zero, zero
    edges = np.linspace(0, n, columns + 1).astype(np.int64)
    lo = np.empty(columns)
    hi = np.empty(columns)
    for i in range(columns):
        a, b = edges[i], max(edges[i + 1], edges[i] + 1)
        seg = samples[a : min(b, n)]
        lo[i], hi[i] = (seg.min(), seg.max()) if seg.size else (0, 0)
    return lo / 32768.0, hi / 32768.0


def _tick_step(duration: float) -> float:
    for step in (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600):
        if duration / step <= 10:
            return float(step)
    return 7200.0


def _label(seconds: float) -> str:
    s = round(seconds)
    return f"{s // 60}:{s % 60:02d}"


def timeline_svg(
    plain: PlainRecording,
    labels: Sequence[str] = ("external party", "office party"),
    pauses: Sequence[Sequence[float]] = (),
    sides: Sequence[str] = ("left", "right"),
) -> str:
    """An SVG picture of both channels over time (no user text in it; `labels` and
    `sides` are the portal's words for the lanes, in the page's language)."""
    data = np.frombuffer(plain.wav, dtype="<i2", offset=plain.data_offset)
    data = data[: plain.frames * plain.channels].reshape(-1, plain.channels)
    duration = plain.duration_s
    lanes = min(plain.channels, 2)
    height = _TOP + lanes * (_LANE + 10) + _AXIS
    colours = ("#2166ac", "#b2182b")
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_WIDTH}" height="{height}" '
        f'viewBox="0 0 {_WIDTH} {height}" role="img">',
        f'<rect width="{_WIDTH}" height="{height}" fill="#fafafa"/>',
    ]
    # Room for the longest lane name (about 6.6 px a character at 12 px sans-serif), as
    # the names' length depends on the language.
    longest = max(
        (len(f"{labels[i]} ({sides[min(i, len(sides) - 1)]})") for i in range(lanes)
         if i < len(labels) and sides),
        default=14,
    )  # fmt: skip
    plot_x = max(110, min(300, round(longest * 6.6) + 12))
    plot_w = _WIDTH - plot_x - 10
    for span in pauses:
        if len(span) == 2 and duration > 0:
            x0 = plot_x + plot_w * max(0.0, float(span[0])) / duration
            x1 = plot_x + plot_w * min(duration, float(span[1])) / duration
            out.append(
                f'<rect x="{x0:.1f}" y="{_TOP}" width="{max(1.0, x1 - x0):.1f}" '
                f'height="{lanes * (_LANE + 10)}" fill="#eeeeee"/>'
            )
    for lane in range(lanes):
        y_mid = _TOP + lane * (_LANE + 10) + _LANE / 2
        lo, hi = _envelope(data[:, lane], _COLUMNS)
        step = plot_w / _COLUMNS
        path = []
        for i in range(_COLUMNS):
            x = plot_x + (i + 0.5) * step
            top = y_mid - max(hi[i], 0.004) * _LANE / 2
            bottom = y_mid - min(lo[i], -0.004) * _LANE / 2
            path.append(f"M{x:.1f} {top:.1f}V{bottom:.1f}")
        out.append(
            f'<path d="{"".join(path)}" stroke="{colours[lane]}" '
            f'stroke-width="{step:.2f}" fill="none"/>'
        )
        out.append(
            f'<line x1="{plot_x}" x2="{plot_x + plot_w}" y1="{y_mid:.1f}" y2="{y_mid:.1f}" '
            'stroke="#999" stroke-width="0.5"/>'
        )
        name = labels[lane] if lane < len(labels) else f"channel {lane + 1}"
        side = sides[min(lane, len(sides) - 1)] if sides else ""
        out.append(
            f'<text x="4" y="{y_mid + 4:.1f}" font-family="sans-serif" font-size="12" '
            f'fill="{colours[lane]}">{_xml(name)} ({_xml(side)})</text>'
        )
    axis_y = _TOP + lanes * (_LANE + 10) + 4
    out.append(
        f'<line x1="{plot_x}" x2="{plot_x + plot_w}" y1="{axis_y}" y2="{axis_y}" stroke="#333"/>'
    )
    if duration > 0:
        step_s = _tick_step(duration)
        t = 0.0
        for _ in range(100):
            if t > duration + 1e-9:
                break
            x = plot_x + plot_w * t / duration
            out.append(
                f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{axis_y}" y2="{axis_y + 4}" stroke="#333"/>'
                f'<text x="{x:.1f}" y="{axis_y + 16}" font-family="sans-serif" font-size="11" '
                f'text-anchor="middle">{_label(t)}</text>'
            )
            t += step_s
    out.append("</svg>")
    return "".join(out)


def _xml(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
