"""Streaming encrypted WAV writer and `b2bua decrypt`: real `age`, soundfile, a killed writer."""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
import soundfile as sf

from b2bua.archive.keys import decrypt_file
from media.agefile import CHUNK_SIZE, ENCRYPTED_CHUNK_SIZE, AgeTruncated, decrypt_bytes
from media.agefile import generate_identity as new_identity
from media.writer import (
    STREAMING_SIZE,
    EncryptedWavWriter,
    fix_wav_file,
    fix_wav_sizes,
    parse_wav_layout,
    streaming_wav_header,
)

HEADER_LEN = 44  # plain 16-bit PCM header without metadata
FRAME = 4  # bytes per stereo int16 frame
REPO = Path(__file__).resolve().parent.parent


def _frames(n: int, seed: int = 0) -> npt.NDArray[np.int16]:
    rng = np.random.default_rng(seed)
    return rng.integers(-32768, 32767, size=(n, 2), dtype=np.int16)


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Path, str]:
    identity, recipient = new_identity()
    key = tmp_path / "key.txt"
    key.write_text(f"# test key\n{identity}\n")
    return key, recipient


def _identity(key: Path) -> list[str]:
    return [key.read_text().splitlines()[-1]]


def _write(path: Path, recipient: str, frames: npt.NDArray[np.int16], batch: int = 160) -> None:
    with EncryptedWavWriter(path, [recipient]) as w:
        for start in range(0, len(frames), batch):
            w.write_frames(frames[start : start + batch])


# --- WAV header ---


def test_streaming_header_sizes_and_soundfile_reads_it(tmp_path: Path) -> None:
    header = streaming_wav_header(8000, 2)
    assert len(header) == HEADER_LEN
    assert struct.unpack_from("<I", header, 4)[0] == STREAMING_SIZE
    assert struct.unpack_from("<I", header, 40)[0] == STREAMING_SIZE
    frames = _frames(1234)
    wav = tmp_path / "s.wav"
    wav.write_bytes(header + frames.tobytes())
    data, rate = sf.read(str(wav), dtype="int16")
    assert rate == 8000
    np.testing.assert_array_equal(data, frames)


def test_metadata_chunk_before_data(tmp_path: Path) -> None:
    meta = {"consent": {"result": "granted", "digit": "1"}, "caller": "Jürgen"}
    header = streaming_wav_header(8000, 2, meta)
    layout = parse_wav_layout(header)
    assert layout.data_offset == len(header)
    assert layout.metadata is not None
    assert json.loads(layout.metadata.rstrip(b"\x00")) == meta
    assert header.index(b"cnsT") < header.index(b"data")
    frames = _frames(500)
    wav = tmp_path / "m.wav"
    wav.write_bytes(header + frames.tobytes())
    data, _ = sf.read(str(wav), dtype="int16")
    np.testing.assert_array_equal(data, frames)


def test_fix_wav_sizes_floors_to_whole_frames() -> None:
    frames = _frames(100)
    streamed = streaming_wav_header(8000, 2) + frames.tobytes() + b"\x01\x02\x03"
    fixed = fix_wav_sizes(streamed)
    assert len(fixed) == HEADER_LEN + 400
    assert struct.unpack_from("<I", fixed, 4)[0] == len(fixed) - 8
    assert struct.unpack_from("<I", fixed, 40)[0] == 400
    data, _ = sf.read(io.BytesIO(fixed), dtype="int16")
    np.testing.assert_array_equal(data, frames)
    buf = io.BytesIO(streamed)
    assert fix_wav_file(buf) == 100
    assert buf.getvalue() == fixed


# --- writer ---


@pytest.mark.agetool
def test_writer_output_opens_with_age_and_soundfile(tmp_path: Path, keys: tuple[Path, str]) -> None:
    key, recipient = keys
    frames = _frames(8000 * 30)  # 30 s, about 1 MB, 15 chunks
    path = tmp_path / "rec.wav.age"
    w = EncryptedWavWriter(path, [recipient], metadata={"id": 7})
    for start in range(0, len(frames), 160):
        w.write_frames(frames[start : start + 160])
    assert w.part_path.exists()
    assert not path.exists()
    result = w.close()
    assert not w.part_path.exists()
    assert result.path == path
    assert result.samples_written == len(frames)
    assert not result.truncated
    raw = path.read_bytes()
    assert result.bytes_written == len(raw)
    assert result.sha256 == hashlib.sha256(raw).hexdigest()
    plain = subprocess.run(
        ["age", "-d", "-i", str(key), str(path)], check=True, capture_output=True, timeout=30
    ).stdout
    header = streaming_wav_header(8000, 2, {"id": 7})
    assert plain == header + frames.tobytes()
    streamed = tmp_path / "streamed.wav"  # sizes still 0xFFFFFFFF
    streamed.write_bytes(plain)
    data, rate = sf.read(str(streamed), dtype="int16")
    assert rate == 8000
    np.testing.assert_array_equal(data, frames)


def test_chunk_written_only_when_next_byte_exists(tmp_path: Path, keys: tuple[Path, str]) -> None:
    _, recipient = keys
    path = tmp_path / "r.wav.age"
    w = EncryptedWavWriter(path, [recipient])
    header_size = w.part_path.stat().st_size
    per_chunk = (CHUNK_SIZE - HEADER_LEN) // FRAME  # 44 + 16373 * 4 == 65536 exactly
    w.write_frames(_frames(per_chunk))
    assert w.part_path.stat().st_size == header_size  # full, but nothing after it yet
    w.write_frames(_frames(1, seed=1))
    assert w.part_path.stat().st_size == header_size + ENCRYPTED_CHUNK_SIZE
    result = w.close()
    assert result.bytes_written == header_size + ENCRYPTED_CHUNK_SIZE + FRAME + 16


@pytest.mark.agetool
@pytest.mark.parametrize("chunks", [1, 2])
def test_plaintext_of_exact_chunk_multiples(
    tmp_path: Path, keys: tuple[Path, str], chunks: int
) -> None:
    key, recipient = keys
    frames = _frames((chunks * CHUNK_SIZE - HEADER_LEN) // FRAME)
    path = tmp_path / "r.wav.age"
    _write(path, recipient, frames, batch=1000)
    header_size = len(path.read_bytes()) - chunks * ENCRYPTED_CHUNK_SIZE
    assert path.read_bytes()[header_size - 17 : header_size - 16] == b"\n"  # header, nonce
    plain = subprocess.run(
        ["age", "-d", "-i", str(key), str(path)], check=True, capture_output=True, timeout=30
    ).stdout
    assert len(plain) == chunks * CHUNK_SIZE
    assert plain[HEADER_LEN:] == frames.tobytes()


def test_empty_recording_is_a_valid_file(tmp_path: Path, keys: tuple[Path, str]) -> None:
    key, recipient = keys
    path = tmp_path / "empty.wav.age"
    with EncryptedWavWriter(path, [recipient]) as w:
        pass
    assert w.closed
    assert decrypt_bytes(path.read_bytes(), _identity(key)) == streaming_wav_header(8000, 2)
    out = tmp_path / "empty.wav"
    assert decrypt_file(key, path, out) == 0
    data, _ = sf.read(str(out), dtype="int16")
    assert data.shape == (0, 2)


def test_writer_rejects_bad_frames_and_existing_file(
    tmp_path: Path, keys: tuple[Path, str]
) -> None:
    _, recipient = keys
    path = tmp_path / "r.wav.age"
    with EncryptedWavWriter(path, [recipient]) as w:
        with pytest.raises(ValueError, match="int16"):
            w.write_frames(np.zeros((10, 2), dtype=np.float32))
        with pytest.raises(ValueError, match="shape"):
            w.write_frames(np.zeros((10, 1), dtype=np.int16))
        with pytest.raises(FileExistsError):
            EncryptedWavWriter(path, [recipient])  # the .part is taken
    with pytest.raises(ValueError, match="closed"):
        w.write_frames(_frames(1))


def test_several_recipients_each_open_the_file(tmp_path: Path) -> None:
    (i1, r1), (i2, r2) = new_identity(), new_identity()
    frames = _frames(20_000)
    path = tmp_path / "r.wav.age"
    _write(path, r1, frames)  # warm-up path with one key, then two
    path2 = tmp_path / "r2.wav.age"
    with EncryptedWavWriter(path2, [r1, r2]) as w:
        w.write_frames(frames)
    for identity in (i1, i2):
        plain = decrypt_bytes(path2.read_bytes(), [identity])
        assert plain[HEADER_LEN:] == frames.tobytes()


class _DiskFull(io.RawIOBase):
    """A raw file that accepts `room` more bytes, then fails like a full disk."""

    def __init__(self, inner: io.FileIO, room: int) -> None:
        self.inner = inner
        self.room = room

    def write(self, b: object) -> int:
        data = bytes(b)  # type: ignore[call-overload]
        if self.room <= 0:
            raise OSError(errno.ENOSPC, "No space left on device")
        n = self.inner.write(data[: self.room]) or 0
        self.room -= n
        return n

    def truncate(self, size: int | None = None) -> int:
        return self.inner.truncate(size)

    def fileno(self) -> int:
        return self.inner.fileno()

    def close(self) -> None:
        self.inner.close()
        super().close()


def test_disk_full_seals_whole_chunks_as_truncated(tmp_path: Path, keys: tuple[Path, str]) -> None:
    key, recipient = keys
    path = tmp_path / "r.wav.age"
    w = EncryptedWavWriter(path, [recipient])
    # Room for two chunks and part of a third: the third write fails half way.
    w._file = _DiskFull(w._file, 2 * ENCRYPTED_CHUNK_SIZE + 1000)  # type: ignore[assignment]
    frames = _frames(8000 * 10)

    def feed() -> None:
        for start in range(0, len(frames), 160):
            w.write_frames(frames[start : start + 160])

    with pytest.raises(OSError, match="No space"):
        feed()
    with pytest.raises(OSError, match="earlier write failed"):
        w.write_frames(frames[:160])
    result = w.abort_truncated()
    assert result.truncated
    raw = path.read_bytes()
    assert not w.part_path.exists()
    assert result.sha256 == hashlib.sha256(raw).hexdigest()
    assert result.bytes_written == len(raw)
    with pytest.raises(AgeTruncated) as info:
        decrypt_bytes(raw, _identity(key))
    assert len(info.value.plaintext) == 2 * CHUNK_SIZE
    assert result.samples_written == (2 * CHUNK_SIZE - HEADER_LEN) // FRAME
    assert info.value.plaintext[HEADER_LEN:] == frames.tobytes()[: 2 * CHUNK_SIZE - HEADER_LEN]


# --- b2bua decrypt ---


def _wav_sizes(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:HEADER_LEN]
    return struct.unpack_from("<I", head, 4)[0], struct.unpack_from("<I", head, 40)[0]


def test_decrypt_file_complete(tmp_path: Path, keys: tuple[Path, str]) -> None:
    key, recipient = keys
    frames = _frames(50_000)
    src = tmp_path / "r.wav.age"
    _write(src, recipient, frames)
    dst = tmp_path / "out.wav"
    err = io.StringIO()
    assert decrypt_file(key, src, dst, stderr=err) == 0
    assert err.getvalue() == ""
    assert _wav_sizes(dst) == (dst.stat().st_size - 8, 50_000 * FRAME)
    data, _ = sf.read(str(dst), dtype="int16")
    np.testing.assert_array_equal(data, frames)


@pytest.mark.parametrize("cut_extra", [0, 12_345])
def test_decrypt_file_truncated(tmp_path: Path, keys: tuple[Path, str], cut_extra: int) -> None:
    key, recipient = keys
    frames = _frames(60_000)  # 240 KB: 3 full chunks and a short final one
    src = tmp_path / "r.wav.age"
    _write(src, recipient, frames)
    raw = src.read_bytes()
    final_sealed = 60_000 * FRAME + HEADER_LEN - 3 * CHUNK_SIZE + 16
    first_chunk = len(raw) - 3 * ENCRYPTED_CHUNK_SIZE - final_sealed
    src.write_bytes(raw[: first_chunk + 2 * ENCRYPTED_CHUNK_SIZE + cut_extra])
    dst = tmp_path / "out.wav"
    err = io.StringIO()
    assert decrypt_file(key, src, dst, stderr=err) == 3
    assert "truncated" in err.getvalue()
    whole = (2 * CHUNK_SIZE - HEADER_LEN) // FRAME
    assert _wav_sizes(dst) == (dst.stat().st_size - 8, whole * FRAME)
    data, _ = sf.read(str(dst), dtype="int16")
    np.testing.assert_array_equal(data, frames[:whole])


def test_decrypt_file_cut_before_wav_header_gives_empty_wav(
    tmp_path: Path, keys: tuple[Path, str]
) -> None:
    key, recipient = keys
    src = tmp_path / "r.wav.age"
    w = EncryptedWavWriter(src, [recipient])
    w.write_frames(_frames(100))
    os.replace(w.part_path, tmp_path / "copy")  # as left by a crash: header only
    w._file.close()
    dst = tmp_path / "out.wav"
    assert decrypt_file(key, tmp_path / "copy", dst, stderr=io.StringIO()) == 3
    data, rate = sf.read(str(dst), dtype="int16")
    assert (data.shape, rate) == ((0, 2), 8000)


@pytest.mark.parametrize("where", ["nonce", "middle", "last"])
def test_decrypt_file_tampered_writes_nothing(
    tmp_path: Path, keys: tuple[Path, str], where: str
) -> None:
    key, recipient = keys
    frames = _frames((3 * CHUNK_SIZE - HEADER_LEN) // FRAME)  # final chunk is full length
    src = tmp_path / "r.wav.age"
    _write(src, recipient, frames)
    raw = bytearray(src.read_bytes())
    first_chunk = len(raw) - 3 * ENCRYPTED_CHUNK_SIZE
    pos = {
        "nonce": first_chunk - 3,
        "middle": first_chunk + ENCRYPTED_CHUNK_SIZE + 999,
        "last": len(raw) - 1,
    }[where]
    raw[pos] ^= 0x80
    src.write_bytes(bytes(raw))
    dst = tmp_path / "out.wav"
    err = io.StringIO()
    assert decrypt_file(key, src, dst, stderr=err) == 1
    assert "tampered" in err.getvalue()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["key.txt", "r.wav.age"]


def test_decrypt_file_wrong_key(tmp_path: Path, keys: tuple[Path, str]) -> None:
    _, recipient = keys
    other = tmp_path / "other.txt"
    other.write_text(new_identity()[0] + "\n")
    src = tmp_path / "r.wav.age"
    _write(src, recipient, _frames(1000))
    err = io.StringIO()
    assert decrypt_file(other, src, tmp_path / "out.wav", stderr=err) == 1
    assert "wrong key" in err.getvalue()
    assert not (tmp_path / "out.wav").exists()
    assert len(list(tmp_path.iterdir())) == 3  # key.txt, other.txt, r.wav.age


def test_decrypt_file_bad_identity_file(tmp_path: Path, keys: tuple[Path, str]) -> None:
    _, recipient = keys
    bad = tmp_path / "bad.txt"
    bad.write_text("# comment\nnot a key\n")
    src = tmp_path / "r.wav.age"
    _write(src, recipient, _frames(10))
    err = io.StringIO()
    assert decrypt_file(bad, src, tmp_path / "out.wav", stderr=err) == 2
    assert "line 2" in err.getvalue()


_KILLED_WRITER = """
import sys, time
import numpy as np
from pathlib import Path
from media.writer import EncryptedWavWriter
path, recipient = Path(sys.argv[1]), sys.argv[2]
frames = np.arange(8000 * 2 * 2, dtype=np.int64).astype(np.int16).reshape(-1, 2)
w = EncryptedWavWriter(path, [recipient])
for n in range(10_000):  # 20 ms frames (160 stereo samples), well past three chunks
    start = (n * 160) % len(frames)
    w.write_frames(frames[start:start + 160])
    if n == 1300:  # about 832 KB of audio: 12 chunks on disk, one pending
        print("ready", flush=True)
        time.sleep(60)
"""


def test_writer_killed_with_sigkill_decrypts_as_truncated(
    tmp_path: Path, keys: tuple[Path, str]
) -> None:
    key, recipient = keys
    path = tmp_path / "rec.wav.age"
    proc = subprocess.Popen(
        [sys.executable, "-c", _KILLED_WRITER, str(path), recipient],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == b"ready\n"
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=10) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()
    part = path.with_name(path.name + ".part")
    assert part.exists()
    assert not path.exists()
    dst = tmp_path / "out.wav"
    err = io.StringIO()
    assert decrypt_file(key, part, dst, stderr=err) == 3
    assert "truncated" in err.getvalue()
    audio_bytes = 1301 * 160 * FRAME
    whole_chunks = (HEADER_LEN + audio_bytes - 1) // CHUNK_SIZE
    expected_frames = (whole_chunks * CHUNK_SIZE - HEADER_LEN) // FRAME
    data, _ = sf.read(str(dst), dtype="int16")
    assert data.shape == (expected_frames, 2)
    source = np.arange(8000 * 2 * 2, dtype=np.int64).astype(np.int16).reshape(-1, 2)
    np.testing.assert_array_equal(data[:1000], source[:1000])
    assert _wav_sizes(dst) == (dst.stat().st_size - 8, expected_frames * FRAME)


def test_writer_is_fast_enough(tmp_path: Path, keys: tuple[Path, str]) -> None:
    # One hour of one call is 115 MB; a 2 MB slice must take well under a second.
    _, recipient = keys
    frames = _frames(500_000)
    start = time.perf_counter()
    _write(tmp_path / "r.wav.age", recipient, frames, batch=160 * 50)
    assert time.perf_counter() - start < 2.0
