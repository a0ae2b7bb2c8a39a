"""G.722 wideband audio (64 kbit/s) and the 16 kHz <-> 8 kHz bridge to G.711.

The codec itself is the ``g722`` package from PyPI (import name ``G722``, sippy's
libg722: Steve Underwood's spandsp code, public domain, bit-exact with ITU-T G.722 at
64/56/48 kbit/s according to its authors). Its ``G722(sample_rate, bit_rate)`` object
carries the ADPCM predictor and QMF state; this module wraps one such object per
direction of one stream, because G.722 is stateful: the bytes of a packet decode
correctly only after the packets before it (a lost packet costs a short glitch while
the predictors re-converge, as in any ADPCM).

Sizes at 64 kbit/s: one byte carries one 16 kHz sample pair (two sub-band codes), so
20 ms = 320 samples at 16 kHz = 160 bytes. The RTP clock of G.722 is 8000 Hz although
the audio is 16 kHz (RFC 3551 4.5.2, an error in RFC 1890 kept for compatibility), so
an RTP timestamp advances by the byte count, exactly as for G.711: a transcoder between
the two keeps timestamps and payload sizes unchanged.

Rate conversion is a polyphase FIR by two (``Decimator2``, ``Interpolator2``): one
64-tap Kaiser-windowed sinc low-pass (cut-off 3.7 kHz, beta 7, about 60 dB stop-band
attenuation from 4.3 kHz), with the filter history kept between packets so a stream
converted packet by packet equals the stream converted in one piece. It adds 2 ms of
delay (32 taps at 16 kHz) each way. ``media.announcement.resample`` is the same kind
of filter but one-shot (no state between calls), which would click at every 20 ms
packet boundary, hence a streaming one here.
"""

from __future__ import annotations

from collections.abc import Callable

import G722  # PyPI "g722": a C extension without stubs (mypy override in pyproject)
import numpy as np
import numpy.typing as npt

from media.g711 import (
    alaw_to_ulaw,
    decode_alaw,
    decode_ulaw,
    encode_alaw,
    encode_ulaw,
    ulaw_to_alaw,
)

__all__ = [
    "BIT_RATE",
    "BYTES_PER_FRAME",
    "RTP_CLOCK_RATE",
    "SAMPLES_PER_FRAME",
    "SAMPLE_RATE",
    "Decimator2",
    "G711ToG722",
    "G722Decoder",
    "G722Encoder",
    "G722ToG711",
    "Interpolator2",
    "NarrowbandG722Decoder",
    "lowpass_taps",
    "new_decoder_8k",
    "new_transcoder",
]

SAMPLE_RATE = 16000  # audio samples per second
RTP_CLOCK_RATE = 8000  # RFC 3551 4.5.2: the RTP timestamp clock of G.722
BIT_RATE = 64000  # the only mode negotiated by RTP/AVP payload type 9 (RFC 3551 4.5.2)
SAMPLES_PER_FRAME = 320  # 20 ms at 16 kHz
BYTES_PER_FRAME = 160  # 20 ms at 64 kbit/s

Int16Array = npt.NDArray[np.int16]
FloatArray = npt.NDArray[np.float64]

_TAPS = 64
_CUTOFF_HZ = 3700.0
_KAISER_BETA = 7.0


def lowpass_taps() -> FloatArray:
    """The anti-alias/anti-image low-pass at 16 kHz, unit DC gain, symmetric (linear phase)."""
    n = np.arange(_TAPS, dtype=np.float64) - (_TAPS - 1) / 2.0
    fc = _CUTOFF_HZ / SAMPLE_RATE  # cycles per sample
    taps: FloatArray = 2.0 * fc * np.sinc(2.0 * fc * n) * np.kaiser(_TAPS, _KAISER_BETA)
    normalised: FloatArray = taps / taps.sum()
    return normalised


_LOWPASS = lowpass_taps()


def _to_int16(x: FloatArray) -> Int16Array:
    """Round and saturate in place (x is a scratch array): cheaper than np.clip's copy."""
    np.rint(x, out=x)
    np.minimum(x, 32767.0, out=x)
    np.maximum(x, -32768.0, out=x)
    return x.astype(np.int16)


class Decimator2:
    """16 kHz -> 8 kHz, streaming: low-pass, then keep every second sample.

    Output sample k is the filtered input at 16 kHz index 2k, whatever the chunking.
    """

    def __init__(self) -> None:
        self._history: FloatArray = np.zeros(_TAPS - 1)
        self._offset = 0  # index in the next chunk of the next 16 kHz sample to keep

    def process(self, pcm16k: Int16Array) -> Int16Array:
        x = np.asarray(pcm16k).reshape(-1)
        if x.size == 0:
            return np.zeros(0, dtype=np.int16)
        padded = np.concatenate((self._history, x), dtype=np.float64)
        self._history = padded[-(_TAPS - 1) :]
        # Filtering all and dropping half is faster in numpy than a polyphase split at
        # 20 ms sizes (one C loop); output j of "valid" lines up with input x[j].
        out = np.convolve(padded, _LOWPASS, mode="valid")[self._offset :: 2]
        self._offset = (self._offset - x.size) % 2
        return _to_int16(out)


class Interpolator2:
    """8 kHz -> 16 kHz, streaming: zero-stuff and low-pass, as two polyphase branches."""

    _EVEN = _LOWPASS[0::2] * 2.0  # gain 2 restores the level lost by zero-stuffing
    _ODD = _LOWPASS[1::2] * 2.0

    def __init__(self) -> None:
        self._history: FloatArray = np.zeros(_TAPS // 2 - 1)

    def process(self, pcm8k: Int16Array) -> Int16Array:
        x = np.asarray(pcm8k).reshape(-1)
        if x.size == 0:
            return np.zeros(0, dtype=np.int16)
        padded = np.concatenate((self._history, x), dtype=np.float64)
        self._history = padded[-(_TAPS // 2 - 1) :]
        out = np.empty(2 * x.size)
        out[0::2] = np.convolve(padded, self._EVEN, mode="valid")
        out[1::2] = np.convolve(padded, self._ODD, mode="valid")
        return _to_int16(out)


class G722Encoder:
    """One stream's encoder: 16 kHz int16 samples in, 64 kbit/s G.722 bytes out.

    An odd sample count is accepted; the last sample waits for the next call (one byte
    codes a sample pair), so packet-by-packet coding equals one-shot coding.
    """

    def __init__(self) -> None:
        self._codec = G722.G722(SAMPLE_RATE, BIT_RATE)
        self._pending: Int16Array = np.zeros(0, dtype=np.int16)

    def encode(self, pcm16k: Int16Array) -> bytes:
        x = np.asarray(pcm16k, dtype=np.int16).reshape(-1)
        if self._pending.size:
            x = np.concatenate((self._pending, x))
        even = x.size & ~1
        self._pending = x[even:].copy()
        if even == 0:
            return b""
        data = self._codec.encode(np.ascontiguousarray(x[:even]))
        return bytes(data)


class G722Decoder:
    """One stream's decoder: 64 kbit/s G.722 bytes in, 16 kHz int16 samples out (2 per byte)."""

    def __init__(self) -> None:
        self._codec = G722.G722(SAMPLE_RATE, BIT_RATE)

    def decode(self, payload: bytes) -> Int16Array:
        if not payload:
            return np.zeros(0, dtype=np.int16)
        pcm = self._codec.decode(bytes(payload))
        # array('h'), or a numpy array when the optional g722-numpy backend is installed.
        return np.asarray(pcm, dtype=np.int16).reshape(-1)


class NarrowbandG722Decoder:
    """G.722 bytes -> 8 kHz int16 (one sample per byte), e.g. for the 8 kHz recorder.

    Callable like the G.711 decoders (``bytes -> int16 array``) but stateful: use one
    per stream, never one shared by two legs.
    """

    def __init__(self) -> None:
        self._decoder = G722Decoder()
        self._down = Decimator2()

    def __call__(self, payload: bytes) -> Int16Array:
        return self._down.process(self._decoder.decode(payload))


class G722ToG711:
    """One direction of a transcoding bridge: G.722 payload -> G.711 payload, same length."""

    def __init__(self, encode_g711: Callable[[Int16Array], bytes]) -> None:
        self._decode = NarrowbandG722Decoder()
        self._encode = encode_g711

    def __call__(self, payload: bytes) -> bytes:
        return self._encode(self._decode(payload))


class G711ToG722:
    """The other direction: G.711 payload -> G.722 payload, same length (8 kHz ts clock)."""

    def __init__(self, decode_g711: Callable[[bytes], Int16Array]) -> None:
        self._decode = decode_g711
        self._up = Interpolator2()
        self._encoder = G722Encoder()

    def __call__(self, payload: bytes) -> bytes:
        return self._encoder.encode(self._up.process(self._decode(payload)))


Transcoder = Callable[[bytes], bytes]
Decoder8k = Callable[[bytes], Int16Array]
_G711_DECODE: dict[str, Callable[[bytes], Int16Array]] = {"PCMU": decode_ulaw, "PCMA": decode_alaw}
_G711_ENCODE: dict[str, Callable[[Int16Array], bytes]] = {"PCMU": encode_ulaw, "PCMA": encode_alaw}


def new_transcoder(source: str, target: str) -> Transcoder | None:
    """A converter for one direction of one bridged stream, or None if not supported.

    Encodings are SDP names (any case). Payload lengths and RTP timestamps are kept in
    every supported pair (all have an 8000 Hz RTP clock and 8 bits per RTP tick). The
    G.722 converters are stateful: call this once per direction per stream.
    """
    src, dst = source.upper(), target.upper()
    if (src, dst) == ("PCMU", "PCMA"):
        return ulaw_to_alaw
    if (src, dst) == ("PCMA", "PCMU"):
        return alaw_to_ulaw
    if src == "G722" and dst in _G711_ENCODE:
        return G722ToG711(_G711_ENCODE[dst])
    if dst == "G722" and src in _G711_DECODE:
        return G711ToG722(_G711_DECODE[src])
    return None


def new_decoder_8k(encoding: str) -> Decoder8k:
    """A payload -> 8 kHz int16 decoder for the recorder, fresh (own state) per call.

    G.711 decoders are stateless functions; G.722 gets a new ``NarrowbandG722Decoder``.
    """
    name = encoding.upper()
    if name == "G722":
        return NarrowbandG722Decoder()
    try:
        return _G711_DECODE[name]
    except KeyError:
        raise ValueError(f"no decoder for encoding {encoding!r}") from None
