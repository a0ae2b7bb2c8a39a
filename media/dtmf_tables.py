"""The in-band DTMF detector's constant tables and its blocked matrix product.

Built once per sample rate and shared by every detector (read-only arrays): the Hann
window, the filter bank at the eight DTMF frequencies as one real matrix (cosine and
sine parts side by side), the same per 5 ms block for the screen (``media.dtmf``), and
the filter's gain off its centre frequency.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

__all__ = ["COL_FREQS", "ROW_FREQS", "FloatArray", "Tables", "product", "tables"]

FloatArray = npt.NDArray[np.float64]

ROW_FREQS: Final[tuple[float, ...]] = (697.0, 770.0, 852.0, 941.0)
COL_FREQS: Final[tuple[float, ...]] = (1209.0, 1336.0, 1477.0, 1633.0)


@dataclass(frozen=True)
class Tables:
    hann: FloatArray
    hann_sum: float
    hann_sq: FloatArray
    hann_sq_sum: float
    freqs: FloatArray
    basis: FloatArray
    hop_rotation: npt.NDArray[np.complex128]
    gain_grid: FloatArray
    gain_table: FloatArray
    hop_basis: FloatArray  # basis rows of sub-block b in columns 16b..16b+15 (hop x 64)
    hop_hann_sq: FloatArray  # hann_sq of sub-block b in column b (hop x 4)


_PRODUCT_ROWS: Final[int] = 128


def product(frames: FloatArray, matrix: FloatArray) -> FloatArray:
    """``frames @ matrix`` in blocks of at most ``_PRODUCT_ROWS`` rows.

    Above a size threshold OpenBLAS splits a product over worker threads that spin while
    they wait: measured here, 1,280 x 160 @ 160 x 16 took 0.86 ms of CPU that way and
    0.32 ms on one thread (and the spinning thread competes with the relay for the
    cores). Blocks this small stay on the calling thread.
    """
    if frames.shape[0] <= _PRODUCT_ROWS:
        small: FloatArray = frames @ matrix
        return small
    blocks = [
        frames[i : i + _PRODUCT_ROWS] @ matrix for i in range(0, frames.shape[0], _PRODUCT_ROWS)
    ]
    out: FloatArray = np.concatenate(blocks)
    return out


@functools.lru_cache(maxsize=4)
def tables(sample_rate: int) -> Tables:
    """The detector's constant tables, built once per sample rate (building them takes
    milliseconds: far too long to do for every call on the media event loop)."""
    hop = sample_rate // 200
    window = 4 * hop
    n = np.arange(window)
    hann: FloatArray = 0.5 - 0.5 * np.cos(2 * np.pi * n / window)
    freqs: FloatArray = np.array(ROW_FREQS + COL_FREQS)
    # Real and imaginary parts side by side: one real matrix product per batch of
    # windows (BLAS), instead of a complex one.
    angle = 2 * np.pi * np.outer(n, freqs) / sample_rate
    basis: FloatArray = np.hstack((hann[:, None] * np.cos(angle), -hann[:, None] * np.sin(angle)))
    # Phase a tone at exactly the nominal frequency advances by in one hop.
    hop_rotation = np.exp(-2j * np.pi * freqs * hop / sample_rate)
    # Hann filter magnitude response (1.0 at the centre) on a 0.25 Hz grid, to undo
    # the loss for a tone off its filter's centre (<= 1.5 dB within tolerance).
    gain_grid: FloatArray = np.arange(-100.0, 100.25, 0.25)
    probe = np.exp(2j * np.pi * np.outer(gain_grid, n) / sample_rate)
    gain_table: FloatArray = np.abs(probe @ hann) / float(hann.sum())
    for array in (hann, freqs, basis, hop_rotation, gain_grid, gain_table):
        array.flags.writeable = False  # shared by every detector
    hann_sq: FloatArray = hann**2
    hann_sq.flags.writeable = False
    # The screen's products per hop block (`_screen_many`): a window's filter output is
    # the sum of its four sub-blocks' outputs, each against its part of the basis.
    hop_basis: FloatArray = np.hstack([basis[b * hop : (b + 1) * hop] for b in range(4)])
    hop_hann_sq: FloatArray = np.ascontiguousarray(hann_sq.reshape(4, hop).T)
    for array in (hop_basis, hop_hann_sq):
        array.flags.writeable = False
    return Tables(
        hann,
        float(hann.sum()),
        hann_sq,
        float(hann_sq.sum()),
        freqs,
        basis,
        hop_rotation,
        gain_grid,
        gain_table,
        hop_basis,
        hop_hann_sq,
    )
