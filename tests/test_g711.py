"""G.711 codec: every code and every 16-bit input against independent references.

Two references are written out here sample by sample, independent of the module's
vectorised table building:
* the ITU-T G.191 STL ``g711.c`` (ulaw_compress/expand, alaw_compress/expand), which
  defines bit-exactness for us;
* the Sun Microsystems ``g711.c`` (linear2ulaw etc.), which is what ``audioop`` uses.
They agree except for mu-law encoding of some negative samples (see media/g711.py);
the ITU reference wins and the difference is pinned below.
"""

from __future__ import annotations

import warnings
from types import ModuleType

import numpy as np
import pytest

from media import g711


def _audioop() -> ModuleType:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "'audioop' is deprecated", DeprecationWarning)
        import audioop
    return audioop


# --- ITU-T G.191 STL g711.c, one sample at a time ---------------------------------


def itu_ulaw_compress(lin: int) -> int:
    absno = ((~lin) >> 2) + 33 if lin < 0 else (lin >> 2) + 33
    absno = min(absno, 0x1FFF)
    i = absno >> 6
    segno = 1
    while i != 0:
        segno += 1
        i >>= 1
    high_nibble = 0x08 - segno
    low_nibble = 0x0F - ((absno >> segno) & 0x0F)
    out = (high_nibble << 4) | low_nibble
    if lin >= 0:
        out |= 0x80
    return out


def itu_ulaw_expand(log: int) -> int:
    sign = -1 if log < 0x80 else 1
    mantissa = ~log
    exponent = (mantissa >> 4) & 0x07
    segment = exponent + 1
    mantissa &= 0x0F
    step = 4 << segment
    return sign * ((0x80 << exponent) + step * mantissa + step // 2 - 4 * 33)


def itu_alaw_compress(lin: int) -> int:
    ix = (~lin) >> 4 if lin < 0 else lin >> 4
    if ix > 15:
        iexp = 1
        while ix > 16 + 15:
            ix >>= 1
            iexp += 1
        ix -= 16
        ix += iexp << 4
    if lin >= 0:
        ix |= 0x80
    return ix ^ 0x55


def itu_alaw_expand(log: int) -> int:
    ix = (log ^ 0x55) & 0x7F
    iexp = ix >> 4
    mant = ix & 0x0F
    if iexp > 0:
        mant += 16
    mant = (mant << 4) + 0x08
    if iexp > 1:
        mant <<= iexp - 1
    return mant if log > 127 else -mant


# --- Sun Microsystems g711.c (the audioop algorithm) -------------------------------

_SEG_UEND = (0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF)
_SEG_AEND = (0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF)


def _search(val: int, table: tuple[int, ...]) -> int:
    for i, end in enumerate(table):
        if val <= end:
            return i
    return len(table)


def sun_linear2ulaw(pcm: int) -> int:
    pcm >>= 2
    if pcm < 0:
        pcm, mask = -pcm, 0x7F
    else:
        mask = 0xFF
    pcm = min(pcm, 8159) + (0x84 >> 2)
    seg = _search(pcm, _SEG_UEND)
    if seg >= 8:
        return 0x7F ^ mask
    return ((seg << 4) | ((pcm >> (seg + 1)) & 0x0F)) ^ mask


def sun_linear2alaw(pcm: int) -> int:
    pcm >>= 3
    if pcm >= 0:
        mask = 0xD5
    else:
        mask, pcm = 0x55, -pcm - 1
    seg = _search(pcm, _SEG_AEND)
    if seg >= 8:
        return 0x7F ^ mask
    aval = seg << 4
    aval |= (pcm >> 1) & 0x0F if seg < 2 else (pcm >> seg) & 0x0F
    return aval ^ mask


ALL_LINEAR = np.arange(-32768, 32768, dtype=np.int16)
ALL_CODES = bytes(range(256))


def test_decode_all_256_codes_match_itu() -> None:
    ulaw = g711.decode_ulaw(ALL_CODES)
    alaw = g711.decode_alaw(ALL_CODES)
    assert ulaw.dtype == np.int16
    assert alaw.dtype == np.int16
    assert ulaw.tolist() == [itu_ulaw_expand(c) for c in range(256)]
    assert alaw.tolist() == [itu_alaw_expand(c) for c in range(256)]


def test_decode_all_256_codes_match_audioop() -> None:
    audioop = _audioop()
    assert g711.decode_ulaw(ALL_CODES).tobytes() == audioop.ulaw2lin(ALL_CODES, 2)
    assert g711.decode_alaw(ALL_CODES).tobytes() == audioop.alaw2lin(ALL_CODES, 2)


def test_encode_all_65536_inputs_match_itu() -> None:
    ulaw = g711.encode_ulaw(ALL_LINEAR)
    alaw = g711.encode_alaw(ALL_LINEAR)
    assert len(ulaw) == len(alaw) == 65536
    assert list(ulaw) == [itu_ulaw_compress(x) for x in range(-32768, 32768)]
    assert list(alaw) == [itu_alaw_compress(x) for x in range(-32768, 32768)]


def test_sun_reference_is_what_audioop_does() -> None:
    # Validates the Sun transcription above, so the pinned difference below is real.
    audioop = _audioop()
    pcm = ALL_LINEAR.tobytes()
    assert list(audioop.lin2ulaw(pcm, 2)) == [sun_linear2ulaw(x) for x in range(-32768, 32768)]
    assert list(audioop.lin2alaw(pcm, 2)) == [sun_linear2alaw(x) for x in range(-32768, 32768)]


def test_alaw_encode_matches_audioop_everywhere() -> None:
    audioop = _audioop()
    assert g711.encode_alaw(ALL_LINEAR) == audioop.lin2alaw(ALL_LINEAR.tobytes(), 2)


def test_ulaw_encode_differs_from_audioop_only_as_documented() -> None:
    audioop = _audioop()
    ours = np.frombuffer(g711.encode_ulaw(ALL_LINEAR), dtype=np.uint8)
    theirs = np.frombuffer(audioop.lin2ulaw(ALL_LINEAR.tobytes(), 2), dtype=np.uint8)
    differ = ALL_LINEAR[ours != theirs].astype(np.int64)
    # Identical for every non-negative sample ...
    assert differ.size > 0
    assert (differ < 0).all()
    # ... and for negatives exactly where one's and two's complement magnitudes
    # (G.191 vs Sun) fall on different sides of a 14-bit decision level.
    expected = [x for x in range(-32768, 0) if itu_ulaw_compress(x) != sun_linear2ulaw(x)]
    assert differ.tolist() == expected
    # Never more than one quantisation step apart, never a sign change.
    step = np.abs(ours[ours != theirs].astype(np.int16) - theirs[ours != theirs].astype(np.int16))
    assert (step == 1).all()


def test_round_trip_is_identity_on_codes() -> None:
    codes = np.arange(256, dtype=np.uint8)
    # Both "zero" codes decode to 0 and re-encode to the positive zero.
    ulaw_back = np.frombuffer(g711.encode_ulaw(g711.decode_ulaw(codes)), dtype=np.uint8)
    alaw_back = np.frombuffer(g711.encode_alaw(g711.decode_alaw(codes)), dtype=np.uint8)
    assert (alaw_back == codes).all()
    assert ulaw_back[0x7F] == 0xFF
    mask = codes != 0x7F
    assert (ulaw_back[mask] == codes[mask]).all()


def test_silence_constants() -> None:
    zeros = np.zeros(4, dtype=np.int16)
    assert g711.encode_ulaw(zeros) == bytes([g711.ULAW_SILENCE]) * 4
    assert g711.encode_alaw(zeros) == bytes([g711.ALAW_SILENCE]) * 4
    assert g711.decode_ulaw(bytes([g711.ULAW_SILENCE])).tolist() == [0]
    assert g711.decode_alaw(bytes([g711.ALAW_SILENCE])).tolist() == [8]


def test_transcoding_matches_audioop_via_linear() -> None:
    audioop = _audioop()
    assert g711.ulaw_to_alaw(ALL_CODES) == audioop.lin2alaw(audioop.ulaw2lin(ALL_CODES, 2), 2)
    assert g711.alaw_to_ulaw(ALL_CODES) == audioop.lin2ulaw(audioop.alaw2lin(ALL_CODES, 2), 2)
    # Also equal to decode + encode with our own codec (the ITU encoder).
    assert g711.alaw_to_ulaw(ALL_CODES) == g711.encode_ulaw(g711.decode_alaw(ALL_CODES))
    assert g711.ulaw_to_alaw(ALL_CODES) == g711.encode_alaw(g711.decode_ulaw(ALL_CODES))
    assert g711.ulaw_to_alaw(b"") == b""


def test_accepts_uint8_arrays_and_strided_input() -> None:
    codes = np.array([0, 0x7F, 0x80, 0xFF], dtype=np.uint8)
    assert g711.decode_ulaw(codes).tolist() == g711.decode_ulaw(codes.tobytes()).tolist()
    stereo = np.array([[100, -100], [2000, -2000]], dtype=np.int16)
    assert g711.encode_ulaw(stereo[:, 0]) == g711.encode_ulaw(np.array([100, 2000], np.int16))


def test_wide_integers_are_clipped_floats_rejected() -> None:
    wide = np.array([40000, -40000], dtype=np.int32)
    assert g711.encode_ulaw(wide) == g711.encode_ulaw(np.array([32767, -32768], np.int16))
    with pytest.raises(TypeError):
        g711.encode_alaw(np.zeros(3, dtype=np.float32))
    with pytest.raises(TypeError):
        g711.decode_ulaw(np.zeros(3, dtype=np.int16))


@pytest.mark.parametrize("name", ["PCMU", "pcmu", "Pcmu"])
def test_codec_lookup_ulaw(name: str) -> None:
    assert g711.decoder_for(name) is g711.decode_ulaw
    assert g711.encoder_for(name) is g711.encode_ulaw


@pytest.mark.parametrize("name", ["PCMA", "pcma"])
def test_codec_lookup_alaw(name: str) -> None:
    assert g711.decoder_for(name) is g711.decode_alaw
    assert g711.encoder_for(name) is g711.encode_alaw


@pytest.mark.parametrize("name", ["G722", "", "telephone-event", "PCM"])
def test_codec_lookup_rejects_others(name: str) -> None:
    with pytest.raises(ValueError, match=r"G\.711"):
        g711.decoder_for(name)
    with pytest.raises(ValueError, match=r"G\.711"):
        g711.encoder_for(name)


def test_tables_are_read_only() -> None:
    out = g711.decode_ulaw(b"\x00\x01")
    out[0] = 1  # the result is a fresh array ...
    assert g711.decode_ulaw(b"\x00").tolist() == [itu_ulaw_expand(0)]  # ... not the table


@pytest.mark.parametrize("length", [1024, 4097, 48001])
def test_long_buffers_decode_like_single_codes(length: int) -> None:
    # Long buffers take the two-codes-at-a-time table; it must agree code by code,
    # odd lengths included.
    rng = np.random.default_rng(length)
    codes = rng.integers(0, 256, length, dtype=np.uint8)
    single_u = np.array([g711.decode_ulaw(bytes([c]))[0] for c in range(256)], dtype=np.int16)
    single_a = np.array([g711.decode_alaw(bytes([c]))[0] for c in range(256)], dtype=np.int16)
    assert np.array_equal(g711.decode_ulaw(codes.tobytes()), single_u[codes])
    assert np.array_equal(g711.decode_alaw(codes), single_a[codes])
