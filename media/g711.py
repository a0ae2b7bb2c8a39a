"""G.711 mu-law (PCMU) and A-law (PCMA) codec with numpy lookup tables.

Encoding indexes a 65,536-entry uint8 table with the int16 sample viewed as uint16;
decoding indexes a 256-entry int16 table. All tables are computed once at import from
the ITU-T G.191 reference algorithm (STL ``g711.c``: ``ulaw_compress``/``ulaw_expand``,
``alaw_compress``/``alaw_expand``), vectorised here; nothing is a hard-coded blob.

Bit-exactness: the tests compare every code and every 16-bit input against the
reference written out sample by sample, and against ``audioop``.

* A-law encode and both decoders agree with ``audioop`` (the Sun ``g711.c``) for all
  inputs.
* mu-law encode differs from ``audioop``/Sun for some negative inputs. G.191 takes the
  magnitude of a negative sample as its one's complement (``~x``), Sun's code as its
  two's complement (``-x``), so Sun's decision levels for negative samples are one
  14-bit step off. The ITU reference wins here (as in spandsp); the difference is at
  most one code step at decision boundaries and inaudible. ``tests/test_g711.py`` pins
  the exact set of differing inputs.

Transcoding between the laws goes through the linear value (decode one law, encode the
other), which is what ``audioop.lin2alaw(audioop.ulaw2lin(...))`` does.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt

__all__ = [
    "ALAW_SILENCE",
    "ULAW_SILENCE",
    "alaw_to_ulaw",
    "decode_alaw",
    "decode_ulaw",
    "decoder_for",
    "encode_alaw",
    "encode_ulaw",
    "encoder_for",
    "ulaw_to_alaw",
]

# The codes a silent (all-zero) signal encodes to.
ULAW_SILENCE: int = 0xFF
ALAW_SILENCE: int = 0xD5

Int16Array = npt.NDArray[np.int16]
UInt8Array = npt.NDArray[np.uint8]
Decoder = Callable[[bytes | np.ndarray], Int16Array]
Encoder = Callable[[np.ndarray], bytes]


def _all_int16_by_uint16_index() -> npt.NDArray[np.int32]:
    """Every int16 value, placed at the index of its uint16 bit pattern."""
    return np.arange(65536, dtype=np.uint32).astype(np.uint16).view(np.int16).astype(np.int32)


def _bit_length(values: npt.NDArray[np.int32]) -> npt.NDArray[np.int32]:
    """Number of significant bits of non-negative values (0 for 0)."""
    _, exponent = np.frexp(values.astype(np.float64))
    return exponent.astype(np.int32)


def _build_ulaw_encode() -> UInt8Array:
    lin = _all_int16_by_uint16_index()
    # G.191: one's complement magnitude for negatives, 14 MSBs, then the mu-law bias
    # (33 in 14-bit units) that turns the segments into powers of two.
    absno = np.where(lin < 0, np.invert(lin), lin) >> 2
    absno = np.minimum(absno + 33, 0x1FFF)
    segno = _bit_length(absno >> 6) + 1  # 1..8
    high = 8 - segno
    low = 15 - ((absno >> segno) & 0x0F)
    code = (high << 4) | low
    code = np.where(lin >= 0, code | 0x80, code)
    table: UInt8Array = code.astype(np.uint8)
    return table


def _build_ulaw_decode() -> Int16Array:
    code = np.arange(256, dtype=np.int32)
    sign = np.where(code < 0x80, -1, 1)
    inverted = np.invert(code)
    exponent = (inverted >> 4) & 0x07
    mantissa = inverted & 0x0F
    step = 4 << (exponent + 1)
    magnitude = (0x80 << exponent) + step * mantissa + step // 2 - 4 * 33
    table: Int16Array = (sign * magnitude).astype(np.int16)
    return table


def _build_alaw_encode() -> UInt8Array:
    lin = _all_int16_by_uint16_index()
    ix = np.where(lin < 0, np.invert(lin), lin) >> 4  # 0..2047, 12 MSBs of magnitude
    # Segment 0 and 1 share the step size; above 15 the exponent is the position of
    # the leading one (bit 4 = exponent 1) and the mantissa the 4 bits below it.
    exponent = np.maximum(_bit_length(ix) - 4, 0)
    shift = np.maximum(exponent - 1, 0)
    mantissa = np.where(exponent > 0, (ix >> shift) - 16, ix)
    code = (exponent << 4) + mantissa
    code = np.where(lin >= 0, code | 0x80, code)
    table: UInt8Array = (code ^ 0x55).astype(np.uint8)
    return table


def _build_alaw_decode() -> Int16Array:
    code = np.arange(256, dtype=np.int32)
    ix = (code ^ 0x55) & 0x7F
    exponent = ix >> 4
    mantissa = ix & 0x0F
    mantissa = np.where(exponent > 0, mantissa + 16, mantissa)
    mantissa = (mantissa << 4) + 8  # left justified, plus half a step
    mantissa = np.where(exponent > 1, mantissa << np.maximum(exponent - 1, 0), mantissa)
    table: Int16Array = np.where(code > 127, mantissa, -mantissa).astype(np.int16)
    return table


_ULAW_ENCODE: UInt8Array = _build_ulaw_encode()
_ULAW_DECODE: Int16Array = _build_ulaw_decode()
_ALAW_ENCODE: UInt8Array = _build_alaw_encode()
_ALAW_DECODE: Int16Array = _build_alaw_decode()
_ULAW_TO_ALAW: UInt8Array = _ALAW_ENCODE[_ULAW_DECODE.view(np.uint16)]
_ALAW_TO_ULAW: UInt8Array = _ULAW_ENCODE[_ALAW_DECODE.view(np.uint16)]
for _table in (_ULAW_ENCODE, _ULAW_DECODE, _ALAW_ENCODE, _ALAW_DECODE):
    _table.flags.writeable = False  # shared state: nobody may patch a table by accident
_ULAW_TO_ALAW_BYTES = _ULAW_TO_ALAW.tobytes()


def _pair_table(decode: Int16Array) -> npt.NDArray[np.uint32]:
    """Two codes at a time: a little-endian uint16 of codes -> their two samples.

    Gathering half as many (wider) elements halves the cost of decoding long buffers.
    """
    index = np.arange(65536, dtype=np.uint32)
    pairs = np.empty((65536, 2), dtype=np.int16)
    pairs[:, 0] = decode[index & 0xFF]
    pairs[:, 1] = decode[index >> 8]
    table: npt.NDArray[np.uint32] = pairs.view(np.uint32).reshape(65536)
    table.flags.writeable = False
    return table


_ULAW_PAIRS = _pair_table(_ULAW_DECODE)
_ALAW_PAIRS = _pair_table(_ALAW_DECODE)
_ALAW_TO_ULAW_BYTES = _ALAW_TO_ULAW.tobytes()


def _codes(payload: bytes | bytearray | memoryview | np.ndarray) -> UInt8Array:
    if isinstance(payload, np.ndarray):
        if payload.dtype != np.uint8:
            raise TypeError(f"G.711 codes must be uint8, not {payload.dtype}")
        return payload
    return np.frombuffer(payload, dtype=np.uint8)


def _linear_index(samples: np.ndarray) -> npt.NDArray[np.uint16]:
    arr = np.asarray(samples)
    if arr.dtype == np.int16:
        pass
    elif np.issubdtype(arr.dtype, np.integer):
        # Wider integers are clipped as a saturating ADC would, not wrapped.
        arr = np.clip(arr, -32768, 32767).astype(np.int16)
    else:
        raise TypeError(f"G.711 encoders take int16 samples, not {arr.dtype}")
    # int16 -> uint16 keeps the bit pattern: that is the table index.
    return arr.astype(np.uint16)


def _decode(codes: UInt8Array, single: Int16Array, pairs: npt.NDArray[np.uint32]) -> Int16Array:
    # take() with an intp index is the fastest numpy gather; pairs of codes halve its work
    # on long buffers, while a 20 ms frame is faster with one gather and no split.
    if codes.size < 1024:
        return single.take(codes.astype(np.intp))
    even = codes.size & ~1
    out = np.empty(codes.size, dtype=np.int16)
    if even:
        index = np.ascontiguousarray(codes[:even]).view(np.uint16).astype(np.intp)
        out[:even] = pairs.take(index).view(np.int16)
    if even != codes.size:
        out[-1] = single[codes[-1]]
    return out


def decode_ulaw(payload: bytes | np.ndarray) -> Int16Array:
    """mu-law codes (bytes or uint8 array) -> int16 samples."""
    return _decode(_codes(payload), _ULAW_DECODE, _ULAW_PAIRS)


def decode_alaw(payload: bytes | np.ndarray) -> Int16Array:
    """A-law codes (bytes or uint8 array) -> int16 samples."""
    return _decode(_codes(payload), _ALAW_DECODE, _ALAW_PAIRS)


def encode_ulaw(samples: np.ndarray) -> bytes:
    """int16 samples -> mu-law codes (G.191 bit-exact)."""
    return _ULAW_ENCODE.take(_linear_index(samples)).tobytes()


def encode_alaw(samples: np.ndarray) -> bytes:
    """int16 samples -> A-law codes (G.191 bit-exact)."""
    return _ALAW_ENCODE.take(_linear_index(samples)).tobytes()


def ulaw_to_alaw(payload: bytes) -> bytes:
    """Transcode PCMU -> PCMA through the linear value, with one 256-entry table."""
    return bytes(payload).translate(_ULAW_TO_ALAW_BYTES)


def alaw_to_ulaw(payload: bytes) -> bytes:
    """Transcode PCMA -> PCMU through the linear value, with one 256-entry table."""
    return bytes(payload).translate(_ALAW_TO_ULAW_BYTES)


_DECODERS: dict[str, Decoder] = {"PCMU": decode_ulaw, "PCMA": decode_alaw}
_ENCODERS: dict[str, Encoder] = {"PCMU": encode_ulaw, "PCMA": encode_alaw}


def decoder_for(encoding_name: str) -> Decoder:
    """The decoder for an SDP/RTP encoding name ("PCMU" or "PCMA", any case)."""
    try:
        return _DECODERS[encoding_name.upper()]
    except KeyError:
        raise ValueError(f"not a G.711 encoding: {encoding_name!r}") from None


def encoder_for(encoding_name: str) -> Encoder:
    """The encoder for an SDP/RTP encoding name ("PCMU" or "PCMA", any case)."""
    try:
        return _ENCODERS[encoding_name.upper()]
    except KeyError:
        raise ValueError(f"not a G.711 encoding: {encoding_name!r}") from None
