"""Streaming encrypted WAV writer: int16 stereo frames in, an age file out.

The plaintext is a WAV whose RIFF and data sizes are 0xFFFFFFFF (the streaming convention
for an unknown length): the header is written once, at the start, and never rewritten,
because the encrypted stream can not be seeked back into. An optional consent record
(JSON) travels in a `cnsT` chunk before `data`.

Durability rule: a full 64 KiB chunk is sealed and written (one write system call on an
unbuffered file, optionally fsync'ed) as soon as the first byte after it exists. So the
file never ends in an empty final chunk (age forbids one after other chunks), and a crash
loses at most the unfinished chunk (about 2 s of 8 kHz stereo audio). close() seals the
pending bytes as the final chunk and renames `<path>.part` to `<path>`.

The writer holds recipients only (public keys): it can not decrypt what it wrote.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO

import numpy as np
import numpy.typing as npt

from media.agefile import CHUNK_SIZE, AgeEncryptor

__all__ = [
    "METADATA_CHUNK_ID",
    "STREAMING_SIZE",
    "EncryptedWavWriter",
    "WavLayout",
    "WriterResult",
    "fix_wav_file",
    "fix_wav_sizes",
    "parse_wav_layout",
    "streaming_wav_header",
]

STREAMING_SIZE = 0xFFFFFFFF
METADATA_CHUNK_ID = b"cnsT"  # consent record, UTF-8 JSON, before "data"
PART_SUFFIX = ".part"
_SAMPLE_BYTES = 2  # 16-bit PCM


def streaming_wav_header(
    sample_rate: int, channels: int, metadata: Mapping[str, Any] | None = None
) -> bytes:
    """RIFF/WAVE header for 16-bit PCM with RIFF and data sizes 0xFFFFFFFF.

    With metadata, a `cnsT` chunk (compact UTF-8 JSON, padded to an even length as RIFF
    requires) sits between `fmt ` and `data`; readers skip chunks they do not know.
    """
    if not 1 <= channels <= 16 or not 1 <= sample_rate <= 384_000:
        raise ValueError(f"unsupported WAV format: {sample_rate} Hz, {channels} channels")
    block_align = channels * _SAMPLE_BYTES
    fmt = struct.pack(
        "<HHIIHH", 1, channels, sample_rate, sample_rate * block_align, block_align, 16
    )
    parts = [
        b"RIFF",
        struct.pack("<I", STREAMING_SIZE),
        b"WAVE",
        b"fmt ",
        struct.pack("<I", len(fmt)),
        fmt,
    ]
    if metadata is not None:
        body = json.dumps(metadata, ensure_ascii=False, separators=(",", ":")).encode()
        parts += [METADATA_CHUNK_ID, struct.pack("<I", len(body)), body]
        if len(body) % 2:
            parts.append(b"\x00")
    parts += [b"data", struct.pack("<I", STREAMING_SIZE)]
    return b"".join(parts)


@dataclass(frozen=True)
class WavLayout:
    """Where the audio starts in a PCM WAV and how big one frame is."""

    data_offset: int
    data_size_field: int  # offset of the data chunk's size field
    block_align: int
    sample_rate: int
    channels: int
    metadata: bytes | None  # raw cnsT body (JSON), if present


def parse_wav_layout(head: bytes) -> WavLayout:
    """Parse the chunks before `data`; raises ValueError if head is not such a WAV."""
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        raise ValueError("not a RIFF/WAVE file")
    pos = 12
    fmt: tuple[int, ...] | None = None
    metadata: bytes | None = None
    while pos + 8 <= len(head):
        chunk_id = head[pos : pos + 4]
        (size,) = struct.unpack_from("<I", head, pos + 4)
        if chunk_id == b"data":
            if fmt is None:
                raise ValueError("WAV data chunk before fmt chunk")
            return WavLayout(pos + 8, pos + 4, fmt[4], fmt[2], fmt[1], metadata)
        body = head[pos + 8 : pos + 8 + size]
        if len(body) < size:
            break
        if chunk_id == b"fmt ":
            if size < 16:
                raise ValueError("WAV fmt chunk too short")
            fmt = struct.unpack_from("<HHIIHH", body)
            if fmt[4] == 0:
                raise ValueError("WAV block align is zero")
        elif chunk_id == METADATA_CHUNK_ID:
            metadata = body
        pos += 8 + size + (size % 2)
    raise ValueError("WAV header incomplete: no data chunk")


def _exact_sizes(layout: WavLayout, available: int) -> tuple[int, bytes, bytes]:
    """(data length floored to whole frames, RIFF size field, data size field)."""
    data_len = (available // layout.block_align) * layout.block_align
    riff_size = layout.data_offset - 8 + data_len + (data_len % 2)
    return data_len, struct.pack("<I", riff_size), struct.pack("<I", data_len)


def fix_wav_sizes(wav: bytes) -> bytes:
    """A streaming-size WAV (whole, in memory) with exact RIFF/data sizes.

    The data is floored to whole frames; anything after it is dropped.
    """
    layout = parse_wav_layout(wav)
    data_len, riff, data = _exact_sizes(layout, len(wav) - layout.data_offset)
    out = bytearray(wav[: layout.data_offset + data_len])
    out[4:8] = riff
    out[layout.data_size_field : layout.data_size_field + 4] = data
    if data_len % 2:
        out.append(0)
    return bytes(out)


def fix_wav_file(f: BinaryIO) -> int:
    """Give a streaming-size WAV in a seekable, writable file exact sizes, in place.

    The data is floored to whole frames (a cut can end mid-frame). Returns the number of
    frames.
    """
    f.seek(0)
    head = f.read(1 << 16)
    layout = parse_wav_layout(head)
    end = f.seek(0, os.SEEK_END)
    data_len, riff, data = _exact_sizes(layout, end - layout.data_offset)
    f.truncate(layout.data_offset + data_len)
    if data_len % 2:
        f.seek(0, os.SEEK_END)
        f.write(b"\x00")
    f.seek(4)
    f.write(riff)
    f.seek(layout.data_size_field)
    f.write(data)
    f.flush()
    return data_len // layout.block_align


@dataclass(frozen=True)
class WriterResult:
    """What a sealed recording file holds."""

    path: Path  # the final path (no .part)
    samples_written: int  # frames (one sample per channel) that reached the file
    bytes_written: int  # size of the encrypted file
    sha256: str  # hex digest of the encrypted file
    truncated: bool


class EncryptedWavWriter:
    """Writes `<path>.part` as it records; close() seals it and renames it to `<path>`.

    On a write error (e.g. disk full) the OSError propagates; call abort_truncated() to
    seal what reached the disk. Used as a context manager, leaving the block closes the
    file, or aborts it as truncated if a write had failed.
    """

    def __init__(
        self,
        path: Path,
        recipients: Sequence[str],
        *,
        sample_rate: int = 8000,
        channels: int = 2,
        fsync: bool = False,
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        self.path = Path(path)
        self.part_path = self.path.with_name(self.path.name + PART_SUFFIX)
        self._channels = channels
        self._fsync = fsync
        self._encryptor = AgeEncryptor(recipients)
        self._pending = bytearray(streaming_wav_header(sample_rate, channels, metadata))
        self._header_len = len(self._pending)
        self._frame_bytes = channels * _SAMPLE_BYTES
        self._frames_in = 0  # frames handed to us
        self._plain_sealed = 0  # plaintext bytes in chunks on disk
        self._good_len = 0  # encrypted bytes known to be on disk
        self._hash = hashlib.sha256()
        self._failed = False
        self._result: WriterResult | None = None
        # Unbuffered: each write() is one system call, nothing lingers in user space.
        # "x": never clobber an existing recording.
        self._file = open(self.part_path, "xb", buffering=0)  # noqa: SIM115
        try:
            self._write(self._encryptor.header())
        except BaseException:
            self._file.close()
            self.part_path.unlink(missing_ok=True)
            raise

    @property
    def closed(self) -> bool:
        return self._result is not None

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        try:
            while view:
                n = self._file.write(view)
                if not n:
                    raise OSError("short write")
                view = view[n:]
            if self._fsync:
                os.fsync(self._file.fileno())
        except OSError:
            self._failed = True
            raise
        self._hash.update(data)
        self._good_len += len(data)

    def write_frames(self, frames: npt.NDArray[np.int16]) -> None:
        """Append int16 frames, shape (n, channels); writes every chunk that became full."""
        if self._result is not None:
            raise ValueError("writer is closed")
        if self._failed:
            raise OSError("an earlier write failed; call abort_truncated()")
        if frames.dtype != np.int16 or frames.ndim != 2 or frames.shape[1] != self._channels:
            raise ValueError(
                f"frames must be int16 with shape (n, {self._channels}), "
                f"got {frames.dtype} {frames.shape}"
            )
        # Through a memoryview: no intermediate bytes object of the whole batch.
        self._pending += np.ascontiguousarray(frames, dtype="<i2").data
        self._frames_in += frames.shape[0]
        # Strictly greater: a full chunk goes out only once a byte after it exists, so
        # the final chunk (written by close) is never empty.
        while len(self._pending) > CHUNK_SIZE:
            with memoryview(self._pending) as view:
                chunk = bytes(view[:CHUNK_SIZE])  # the one copy encrypt_chunk needs
            self._write(self._encryptor.encrypt_chunk(chunk, False))
            # A new, small buffer for the rest, not ``del pending[:CHUNK_SIZE]``: that
            # keeps the 64 KiB allocation for the whole call. Grown as frames come, the
            # buffer holds 32 KiB on average per call instead of 64 (the chunks, and so
            # the ciphertext, are the same).
            self._pending = self._pending[CHUNK_SIZE:]
            self._plain_sealed += CHUNK_SIZE

    def _finish(self, truncated: bool) -> WriterResult:
        self._file.close()
        os.replace(self.part_path, self.path)
        if self._fsync:
            _fsync_dir(self.path.parent)
        if truncated:
            frames = max(0, self._plain_sealed - self._header_len) // self._frame_bytes
        else:
            frames = self._frames_in
        self._result = WriterResult(
            path=self.path,
            samples_written=frames,
            bytes_written=self._good_len,
            sha256=self._hash.hexdigest(),
            truncated=truncated,
        )
        return self._result

    def close(self) -> WriterResult:
        """Seal the pending bytes as the final chunk and rename to the final path.

        If that last write fails, the file is sealed as truncated instead (see the result).
        """
        if self._result is not None:
            return self._result
        if self._failed:
            return self.abort_truncated()
        try:
            self._write(self._encryptor.encrypt_chunk(bytes(self._pending), True))
        except OSError:
            # Disk full at the very end: the call is over, keep what is on disk.
            return self.abort_truncated()
        self._pending.clear()
        return self._finish(truncated=False)

    def abort_truncated(self) -> WriterResult:
        """Seal only the whole chunks already on disk (e.g. disk full), marked truncated.

        A partly written chunk is cut off, so the file is exactly the authentic prefix that
        decryption recovers (and the digest matches the file).
        """
        if self._result is not None:
            return self._result
        self._file.truncate(self._good_len)
        if self._fsync:
            os.fsync(self._file.fileno())
        self._pending.clear()
        return self._finish(truncated=True)

    def __enter__(self) -> EncryptedWavWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _fsync_dir(directory: Path) -> None:
    """Make a rename durable (POSIX: the directory entry lives in the directory)."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
