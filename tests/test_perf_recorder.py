"""The recorder's memory savings change nothing on disk or in the audio.

Issue 9 (memory per recorded call): the writer's chunk buffer grows as frames come
instead of keeping 64 KiB per call, the mixer ring of a recording is 1 s (not 2 s) per
leg, the mixer's duplicate table holds no int objects, the DTMF detector and muter keep
no view of a whole round's array. Checked here: the ciphertext is byte for byte what
64 KiB chunking of the plaintext gives, the buffers really are smaller, a recording step
up to 0.5 s late still loses nothing, and the traced heap of a recorder is bounded.
"""

from __future__ import annotations

import itertools
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from b2bua.recorder import LEFT, MIXER_RING_S, RIGHT, CallRecorder, tick_recorders
from media.agefile import CHUNK_SIZE, AgeEncryptor, generate_identity, recipient_from_identity
from media.dtmf_mute import DtmfMuter
from media.g711 import encode_alaw
from media.writer import EncryptedWavWriter, streaming_wav_header
from rtp.relay import MediaFormat, TapPacket

FRAME = 160
FMT = MediaFormat(8, "PCMA", 101)


@pytest.fixture
def recipient() -> str:
    return recipient_from_identity(generate_identity()[0])


@pytest.fixture
def fixed_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every AgeEncryptor made in the test gets the same file key and payload nonce
    (both drawn with os.urandom; the recipient stanza's X25519 share is not)."""
    monkeypatch.setattr("media.agefile.os.urandom", lambda n: b"\x01" * n)


def test_writer_ciphertext_is_plain_64k_chunking(
    tmp_path: Path, recipient: str, fixed_keys: None
) -> None:
    rng = np.random.default_rng(9)
    frames = rng.integers(-32768, 32767, size=(8000 * 9 + 123, 2), dtype=np.int16)
    path = tmp_path / "r.wav.age"
    w = EncryptedWavWriter(path, [recipient])
    pos = 0
    for size in itertools.cycle((960, 1, 16384, 7, 4000, 32768)):  # odd batches too
        if pos >= len(frames):
            break
        w.write_frames(frames[pos : pos + size])
        pos += size
    w.close()
    # The reference: the same plaintext cut into 64 KiB chunks, with the same key.
    plain = streaming_wav_header(8000, 2) + frames.astype("<i2").tobytes()
    enc = AgeEncryptor([recipient])
    chunks = [
        enc.encrypt_chunk(plain[i : i + CHUNK_SIZE], i + CHUNK_SIZE >= len(plain))
        for i in range(0, len(plain), CHUNK_SIZE)
    ]
    written = path.read_bytes()
    body = b"".join(chunks)
    assert len(chunks) == 5
    assert written[-len(body) :] == body
    assert len(written) == len(enc.header()) + len(body)


def test_writer_buffer_holds_only_the_unsealed_rest(tmp_path: Path, recipient: str) -> None:
    w = EncryptedWavWriter(tmp_path / "r.wav.age", [recipient])
    block = np.zeros((960, 2), dtype=np.int16)  # 120 ms, as the hub writes
    sizes = []
    for _ in range(40):  # 4.8 s: two chunks sealed
        w.write_frames(block)
        sizes.append(sys.getsizeof(w._pending))
    w.close()
    # Right after a chunk is sealed the buffer is small again (it was 64 KiB for the
    # whole call before), and it never holds much more than one chunk.
    after_seal = [b for a, b in itertools.pairwise(sizes) if b < a]
    assert len(after_seal) == 2
    assert max(after_seal) < 8 * 1024
    assert max(sizes) < CHUNK_SIZE + 16 * 1024


def test_dtmf_keeps_no_view_of_a_whole_round() -> None:
    muter = DtmfMuter(8000)
    block = np.random.default_rng(1).normal(0, 3000, 960).astype(np.int16)
    muter.feed(block)
    muter.feed(block)
    # Own arrays of the short rests, not views that keep each round's array alive.
    assert muter._pending.base is None and len(muter._pending) == muter.delay
    assert muter.detector._buffer.base is None and len(muter.detector._buffer) < 160


def _packets(call: int, t: float, i: int, audio: npt.NDArray[np.int16]) -> list[TapPacket]:
    payload = bytes(encode_alaw(audio[i * FRAME : (i + 1) * FRAME]))
    return [
        TapPacket(f"{leg}{call}", t, i & 0xFFFF, i * FRAME, 1000 + call, 8, False, payload)
        for leg in "ab"
    ]


def _recorder(call: int, tmp_path: Path, recipient: str) -> CallRecorder:
    rec = CallRecorder(f"c{call}", batch_s=0.06)
    rec.assign_leg(f"a{call}", LEFT, FMT)
    rec.assign_leg(f"b{call}", RIGHT, FMT)
    rec.start(0.0, tmp_path / f"c{call}.wav.age", [recipient])
    return rec


def test_late_recording_step_within_the_ring_loses_nothing(tmp_path: Path, recipient: str) -> None:
    # The hub pulls every 120 ms; here one step comes 0.5 s late (a stalled loop):
    # the 1 s ring still holds every packet, so no gap and no overflow.
    assert MIXER_RING_S == 1.0
    audio = np.random.default_rng(2).normal(0, 2000, 8000 * 3).astype(np.int16)
    rec = _recorder(0, tmp_path, recipient)
    late_at = {25, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44}
    for i in range(3 * 50 - 5):
        t = 0.001 + i * 0.02
        rec.feed(_packets(0, t, i, audio))
        if i % 6 == 5 and i not in late_at:
            tick_recorders([rec], t + 0.01)
    result = rec.stop(3.0)
    assert result.gaps == 0
    assert result.mixer.left.overflow == result.mixer.right.overflow == 0
    assert result.mixer.left.late == 0
    assert result.duration_s > 2.8


def test_traced_heap_per_recorder_is_bounded(tmp_path: Path, recipient: str) -> None:
    calls = 10
    audio = np.random.default_rng(3).normal(0, 2000, 8000 * 4).astype(np.int16)
    warm = _recorder(99, tmp_path, recipient)  # lazily built tables are not per call
    for i in range(12):
        warm.feed(_packets(99, 0.001 + i * 0.02, i, audio))
    tick_recorders([warm], 0.25)
    warm.stop(0.3)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        recs = [_recorder(k, tmp_path, recipient) for k in range(calls)]
        for i in range(3 * 50):  # 3 s: one chunk sealed, the next half full
            t = 0.001 + i * 0.02
            for k, rec in enumerate(recs):
                rec.feed(_packets(k, t, i, audio))
            if i % 6 == 5:
                tick_recorders(recs, t + 0.01)
        per_call = (tracemalloc.get_traced_memory()[0] - before) / calls / 1024
    finally:
        tracemalloc.stop()
    for rec in recs:
        rec.stop(3.1)
    # Rings 2 x 24 KiB, the writer's ~30 KiB rest, the cipher, DTMF state, the seen
    # tables: ~110 KiB measured. HEAD (2 s rings, a 64 KiB buffer kept, int objects in
    # the seen tables, views of whole rounds) measured ~175 KiB here.
    print(f"traced heap per recorder: {per_call:.1f} KiB")
    assert 40 < per_call < 140, per_call
