"""Start-up recovery of recordings that a crash left open.

The recorder holds only public keys, so it can not decrypt (or even check) what a crashed
writer left behind; what it can do without a key:

- read the age header (plain text) to find where the payload starts, and count the whole
  encrypted chunks by size: each is 64 KiB of plaintext plus a 16-byte tag. That gives
  an estimate of the recorded time; decryption later tells the exact amount.
- rename `<id>.wav.age.part` to `<id>.wav.age` and record size and sha256 of the file as
  it is, status `truncated`. A trailing partial chunk is kept, not cut: it may be a
  complete final chunk written just before the crash (only a key can tell), and the
  decrypter drops a piece that does not authenticate anyway. Nothing is deleted.
- rows still `recording` whose file was already renamed are marked truncated too (the
  crash came between sealing and the catalog update); rows still `recording` with no file
  at all become `not_recorded` with the reason. A `.part` without a row gets a row.

Run this before the recorder accepts calls: then no writer is open, so every `.part` and
every `recording` row belongs to a crashed process.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

from b2bua.archive.audit import immediate
from b2bua.archive.catalog import (
    FILE_SUFFIX,
    PART_SUFFIX,
    Catalog,
    CatalogError,
    ListFilter,
    id_time,
)
from media.agefile import ENCRYPTED_CHUNK_SIZE, NONCE_SIZE, AgeError, read_header

__all__ = ["RecoveredFile", "estimate_chunks", "recover"]

_BYTES_PER_SECOND = 8000 * 2 * 2  # 8 kHz, stereo, 16-bit
_WAV_HEADER_MIN = 44  # the plaintext starts with at least a plain WAV header


@dataclass(frozen=True)
class RecoveredFile:
    id: str
    path: Path | None  # the sealed .wav.age, or None when the file was lost
    size_bytes: int
    sha256: str | None
    whole_chunks: int  # authenticatable 64 KiB chunks, counted by size
    partial_bytes: int  # bytes after them (a cut chunk, or a final chunk)
    estimated_duration_s: float  # audio in the whole chunks, at most
    action: str  # "sealed part", "inserted row", "marked truncated", "file lost", "error"
    note: str


def estimate_chunks(path: Path) -> tuple[int, int]:
    """(whole encrypted chunks, bytes after them) of an age file, without a key.

    A file whose header is incomplete has (0, its size).
    """
    size = path.stat().st_size
    with open(path, "rb") as f:
        try:
            header_len = len(read_header(f))
        except AgeError:
            return 0, size
    payload = max(0, size - header_len - NONCE_SIZE)
    return payload // ENCRYPTED_CHUNK_SIZE, payload % ENCRYPTED_CHUNK_SIZE


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _estimate_duration(chunks: int) -> float:
    return round(max(0, chunks * (1 << 16) - _WAV_HEADER_MIN) / _BYTES_PER_SECOND, 3)


def _mark_recovered(
    catalog: Catalog, record_id: str, path: Path, size: int, sha256: str, note: str, now: float
) -> None:
    """The file of a crashed recording, sealed as truncated; expiry counted from now."""
    with immediate(catalog.conn):
        row = catalog.row(record_id)
        expires = catalog.policy.expires_at(now, row["direction"], row["extension"])
        catalog.conn.execute(
            "UPDATE calls SET status = 'truncated', path = ?, size_bytes = ?, sha256 = ?,"
            " reason = ?, ended_at = COALESCE(ended_at, ?), expires_at = ? WHERE id = ?",
            (catalog.store_path(path), size, sha256, note, now, expires, record_id),
        )


def _insert_orphan(
    catalog: Catalog, record_id: str, path: Path, size: int, sha256: str, note: str, now: float
) -> None:
    """A recording file without a catalog row gets one (start time from the id)."""
    started = id_time(record_id)
    with immediate(catalog.conn):
        catalog.conn.execute(
            "INSERT INTO calls (id, started_at, ended_at, path, status, size_bytes, sha256,"
            " reason, expires_at) VALUES (?,?,?,?, 'truncated', ?,?,?,?)",
            (
                record_id,
                started if started is not None else now,
                now,
                catalog.store_path(path),
                size,
                sha256,
                note,
                catalog.policy.expires_at(now, None, None),
            ),
        )


def _mark_lost(catalog: Catalog, record_id: str, note: str, now: float) -> None:
    """A row left `recording` whose file is gone: not recorded, with the reason."""
    with immediate(catalog.conn):
        row = catalog.row(record_id)
        expires = catalog.policy.expires_at(now, row["direction"], row["extension"])
        catalog.conn.execute(
            "UPDATE calls SET status = 'not_recorded', path = NULL, reason = ?,"
            " ended_at = COALESCE(ended_at, ?), expires_at = ? WHERE id = ?",
            (note, now, expires, record_id),
        )


def recover(
    catalog: Catalog,
    now: float,
    *,
    source: str = "recovery",
    only: Collection[str] | None = None,
) -> list[RecoveredFile]:
    """Seal what crashed writers left and fix their rows; returns one entry per item.

    `only`: just these recording ids (a media worker died while other workers still
    write theirs, b2bua/media_workers.py); None: everything (start-up, no writer open).
    """
    out: list[RecoveredFile] = []
    directory = catalog.directory
    for part in sorted(directory.glob("*" + PART_SUFFIX)):
        record_id = part.name[: -len(PART_SUFFIX)]
        if only is not None and record_id not in only:
            continue
        final = directory / (record_id + FILE_SUFFIX)
        if final.exists():
            # Never overwrite a sealed file; leave both for an operator, and say so.
            note = f"{final.name} exists next to {part.name}; left both untouched"
            out.append(RecoveredFile(record_id, None, 0, None, 0, 0, 0.0, "error", note))
            catalog.audit.append("system", "recover", record_id, source, {"error": note}, now)
            continue
        chunks, partial = estimate_chunks(part)
        part.rename(final)
        size = final.stat().st_size
        digest = _sha256(final)
        note = f"recovered after a crash: {chunks} whole chunks" + (
            f", {partial} bytes after them" if partial else ""
        )
        if catalog.get(record_id) is None:
            _insert_orphan(catalog, record_id, final, size, digest, note + "; no catalog row", now)
            action = "inserted row"
        else:
            _mark_recovered(catalog, record_id, final, size, digest, note, now)
            action = "sealed part"
        duration = _estimate_duration(chunks)
        catalog.audit.append(
            "system",
            "recover",
            record_id,
            source,
            {"action": action, "size_bytes": size, "sha256": digest, "whole_chunks": chunks},
            now,
        )
        out.append(
            RecoveredFile(record_id, final, size, digest, chunks, partial, duration, action, note)
        )
    for row in catalog.list(ListFilter(status="recording")):
        record_id = row["id"]
        if only is not None and record_id not in only:
            continue
        path = Path(row["path"]) if row["path"] else catalog.path_for(record_id)
        try:
            if path.exists():
                chunks, partial = estimate_chunks(path)
                size = path.stat().st_size
                digest = _sha256(path)
                note = "sealed, but the catalog was not updated before a crash"
                _mark_recovered(catalog, record_id, path, size, digest, note, now)
                action = "marked truncated"
                item = RecoveredFile(
                    record_id,
                    path,
                    size,
                    digest,
                    chunks,
                    partial,
                    _estimate_duration(chunks),
                    action,
                    note,
                )
            else:
                note = "recording file missing after a crash"
                _mark_lost(catalog, record_id, note, now)
                action = "file lost"
                item = RecoveredFile(record_id, None, 0, None, 0, 0, 0.0, action, note)
        except (OSError, CatalogError) as exc:
            item = RecoveredFile(record_id, None, 0, None, 0, 0, 0.0, "error", str(exc))
        catalog.audit.append(
            "system", "recover", record_id, source, {"action": item.action, "note": item.note}, now
        )
        out.append(item)
    return out
