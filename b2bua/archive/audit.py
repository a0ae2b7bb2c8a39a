"""Append-only, hash-chained audit log in the catalog database.

Every entry carries the SHA-256 of the entry before it (`prev_hash`) and its own hash over
a canonical JSON form of all its fields, so editing an entry or removing one from the
middle breaks the chain. A chain alone can not show that entries were cut from its end,
so the head (`seq:hash` of the newest entry) is anchored:

- in the `meta` table of the same database, updated in the same transaction as the
  entry (catches a cut made by deleting rows only);
- in every export manifest and in the output of `b2bua audit head`, to be kept outside
  the machine: `verify(anchors=...)` checks that those entries still exist unchanged
  (catches a cut even when whoever cut it also rewrote the meta row).

SQLite triggers refuse UPDATE and DELETE on the table; they stop mistakes, not someone
who owns the file, which is what the chain and the anchors are for.

Writers take the database's write lock (BEGIN IMMEDIATE) before reading the head, so the
recorder and the portal, in different processes, can append without forking the chain.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

__all__ = [
    "GENESIS_HASH",
    "AuditEntry",
    "AuditLog",
    "VerifyResult",
    "format_time",
    "immediate",
    "parse_anchor",
]

GENESIS_HASH = "0" * 64
_ENTRIES_OLDEST = (
    "SELECT seq, at, actor, action, target, source, details, prev_hash, hash"
    " FROM audit WHERE seq > ? ORDER BY seq ASC LIMIT ?"
)
_ENTRIES_NEWEST = _ENTRIES_OLDEST.replace(" ASC ", " DESC ")
HEAD_KEY = "audit_head"
CONFIG_KEY = "config_sha256"

SCHEMA_SQL = """
CREATE TABLE audit (
    seq INTEGER PRIMARY KEY,
    at TEXT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT,
    source TEXT,
    details TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;
CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;
"""


def format_time(ts: float) -> str:
    """ISO 8601 UTC with milliseconds and Z, e.g. 2026-11-22T10:04:05.678Z."""
    ms = round(ts * 1000)
    dt = datetime.fromtimestamp(ms // 1000, UTC)
    return f"{dt.strftime('%Y-%m-%dT%H:%M:%S')}.{ms % 1000:03d}Z"


@contextmanager
def immediate(conn: sqlite3.Connection) -> Iterator[None]:
    """One write transaction (BEGIN IMMEDIATE); joins an enclosing one if there is one.

    The connection must be in autocommit mode (isolation_level=None).
    """
    if conn.in_transaction:
        yield
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


@dataclass(frozen=True)
class AuditEntry:
    seq: int
    at: str
    actor: str
    action: str
    target: str | None
    source: str | None
    details: Mapping[str, Any]
    prev_hash: str
    hash: str

    def to_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "at": self.at,
            "actor": self.actor,
            "action": self.action,
            "target": self.target,
            "source": self.source,
            "details": dict(self.details),
            "prev_hash": self.prev_hash,
            "hash": self.hash,
        }


def _canonical_details(details: Mapping[str, Any] | None) -> str:
    return json.dumps(dict(details or {}), sort_keys=True, separators=(",", ":"))


def entry_hash(
    seq: int,
    at: str,
    actor: str,
    action: str,
    target: str | None,
    source: str | None,
    details_json: str,
    prev_hash: str,
) -> str:
    """SHA-256 over a canonical JSON array of every field (the stored details text as is)."""
    body = json.dumps(
        [seq, at, actor, action, target, source, details_json, prev_hash],
        separators=(",", ":"),
        ensure_ascii=True,
    )
    return hashlib.sha256(body.encode()).hexdigest()


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    entries: int
    head_seq: int
    head_hash: str
    problems: tuple[str, ...]


def parse_anchor(text: str) -> tuple[int, str]:
    """`SEQ:HASH` (as printed by `b2bua audit head` and stored in exports) -> (seq, hash)."""
    seq_text, sep, digest = text.strip().partition(":")
    if not sep or not seq_text.isdigit() or len(digest) != 64:
        raise ValueError(f"not an audit anchor (want SEQ:SHA256HEX): {text!r}")
    try:
        int(digest, 16)
    except ValueError:
        raise ValueError(f"not an audit anchor (hash is not hex): {text!r}") from None
    return int(seq_text), digest.lower()


class AuditLog:
    """The audit table of one catalog connection."""

    def __init__(self, conn: sqlite3.Connection, clock: Callable[[], float]) -> None:
        self._conn = conn
        self._clock = clock

    def head(self) -> tuple[int, str]:
        """(seq, hash) of the newest entry; (0, GENESIS_HASH) for an empty log."""
        row = self._conn.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
        if row is None:
            return 0, GENESIS_HASH
        return int(row[0]), str(row[1])

    def anchor(self) -> str:
        seq, digest = self.head()
        return f"{seq}:{digest}"

    def append(
        self,
        actor: str,
        action: str,
        target: str | None,
        source: str | None,
        details: Mapping[str, Any] | None = None,
        now: float | None = None,
    ) -> AuditEntry:
        """Append one entry (in the caller's transaction, or in its own)."""
        at = format_time(self._clock() if now is None else now)
        details_json = _canonical_details(details)
        with immediate(self._conn):
            seq, prev = self.head()
            seq += 1
            digest = entry_hash(seq, at, actor, action, target, source, details_json, prev)
            self._conn.execute(
                "INSERT INTO audit (seq, at, actor, action, target, source, details,"
                " prev_hash, hash) VALUES (?,?,?,?,?,?,?,?,?)",
                (seq, at, actor, action, target, source, details_json, prev, digest),
            )
            self._conn.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?)"
                " ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (HEAD_KEY, f"{seq}:{digest}"),
            )
        return AuditEntry(
            seq, at, actor, action, target, source, json.loads(details_json), prev, digest
        )

    def entries(
        self, *, since_seq: int = 0, limit: int | None = None, newest_first: bool = False
    ) -> list[AuditEntry]:
        sql = _ENTRIES_NEWEST if newest_first else _ENTRIES_OLDEST
        rows = self._conn.execute(sql, (since_seq, -1 if limit is None else limit)).fetchall()
        return [
            AuditEntry(r[0], r[1], r[2], r[3], r[4], r[5], json.loads(r[6]), r[7], r[8])
            for r in rows
        ]

    def verify(self, anchors: Sequence[tuple[int, str]] = ()) -> VerifyResult:
        """Walk the chain; report edits, removals, reordering and a cut tail."""
        problems: list[str] = []
        expected_seq = 1
        prev = GENESIS_HASH
        count = 0
        hashes: dict[int, str] = {}
        cursor = self._conn.execute(
            "SELECT seq, at, actor, action, target, source, details, prev_hash, hash"
            " FROM audit ORDER BY seq"
        )
        for seq, at, actor, action, target, source, details, prev_hash, digest in cursor:
            count += 1
            if seq != expected_seq:
                problems.append(
                    f"entry {seq}: expected entry {expected_seq} here (entries removed)"
                )
            if prev_hash != prev:
                problems.append(f"entry {seq}: does not follow the entry before it (chain broken)")
            actual = entry_hash(seq, at, actor, action, target, source, details, prev_hash)
            if actual != digest:
                problems.append(f"entry {seq}: content does not match its hash (edited)")
            hashes[seq] = digest
            prev = digest
            expected_seq = seq + 1
        head_seq = expected_seq - 1
        head_hash = prev
        row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (HEAD_KEY,)).fetchone()
        if row is None:
            if count:
                problems.append("head anchor missing from the catalog (meta row removed)")
        else:
            try:
                anchored_seq, anchored_hash = parse_anchor(str(row[0]))
            except ValueError:
                problems.append("head anchor in the catalog is malformed")
            else:
                if anchored_seq != head_seq or anchored_hash != head_hash:
                    problems.append(
                        f"log ends at entry {head_seq} but the catalog anchor names entry "
                        f"{anchored_seq} (entries cut from the end, or the anchor edited)"
                    )
        for seq, digest in anchors:
            if seq == 0:
                continue
            found = hashes.get(seq)
            if found is None:
                problems.append(
                    f"external anchor {seq}:{digest[:12]}...: entry {seq} is missing "
                    "(entries cut from the end)"
                )
            elif found != digest:
                problems.append(
                    f"external anchor {seq}:{digest[:12]}...: entry {seq} has another hash "
                    "(log rewritten)"
                )
        return VerifyResult(not problems, count, head_seq, head_hash, tuple(problems))

    def log_config(
        self, config_path: Path, actor: str, source: str, now: float | None = None
    ) -> AuditEntry | None:
        """Append a `config` entry when the config file's content changed since last time."""
        digest = hashlib.sha256(Path(config_path).read_bytes()).hexdigest()
        with immediate(self._conn):
            row = self._conn.execute(
                "SELECT value FROM meta WHERE key = ?", (CONFIG_KEY,)
            ).fetchone()
            if row is not None and row[0] == digest:
                return None
            self._conn.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?)"
                " ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (CONFIG_KEY, digest),
            )
            return self.append(
                actor,
                "config",
                str(config_path),
                source,
                {"sha256": digest, "previous_sha256": None if row is None else row[0]},
                now,
            )
