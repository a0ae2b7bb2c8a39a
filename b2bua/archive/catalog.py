"""The recordings catalog: SQLite at `<directory>/catalog.sqlite3`.

One row per call attempt, created by `new_call` and completed as the call goes on
(consent, recording started/finished or not recorded, call ended). The listing (`list`,
`get`) renders rows in the JSON shape of the external contract (DESIGN.md, "Recordings
listing"); rows still `pending` (the call never reached the consent step) are kept for the
operator but left out of the listing unless asked for.

Storage choices:
- WAL mode and a busy timeout, because the recorder, the portal and the CLI open the same
  file from different processes. Every write runs in BEGIN IMMEDIATE, together with the
  audit entry that records it (see audit.py), so a change and its log entry land together.
- Times are REAL seconds since the epoch (UTC) and are rendered as ISO 8601 with
  milliseconds and Z. Recording paths are stored relative to the directory when they
  live in it, so the portal can read the directory under another mount point.
- The schema is versioned (`schema_version`); `MIGRATIONS` upgrades older files in order.
- Deleting a recording leaves a tombstone: id, call id, direction, extension, times and
  the sha256 of the removed file stay; numbers, consent and path are cleared.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import sqlite3
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from b2bua.archive.audit import SCHEMA_SQL as AUDIT_SQL
from b2bua.archive.audit import AuditLog, format_time, immediate
from b2bua.archive.retention import RetentionPolicy

__all__ = [
    "CATALOG_NAME",
    "DIRECTIONS",
    "STATUSES",
    "Catalog",
    "CatalogError",
    "ListFilter",
    "e164_or_none",
    "new_id",
]

CATALOG_NAME = "catalog.sqlite3"
FILE_SUFFIX = ".wav.age"
PART_SUFFIX = ".wav.age.part"
DIRECTIONS = ("inbound", "outbound", "internal")
STATUSES = ("recording", "complete", "truncated", "not_recorded", "deleted")
PENDING = "pending"  # internal: the call has not reached the consent step (not listed)
CONSENT_KEYS = (
    "mode",
    "result",
    "digit",
    "method",
    "at",
    "prompt_sha256",
    "language",
    "withdrawn_at",  # consent withdrawn mid-call: the recording stopped then
    "note",
)
SCHEMA_VERSION = 2

_CALLS_SQL = """
CREATE TABLE calls (
    id TEXT PRIMARY KEY,
    call_id TEXT,
    direction TEXT,
    caller TEXT,
    caller_e164 TEXT,
    callee TEXT,
    callee_e164 TEXT,
    extension TEXT,
    started_at REAL NOT NULL,
    ended_at REAL,
    duration_s REAL,
    consent TEXT,
    path TEXT,
    expires_at REAL,
    status TEXT NOT NULL,
    reason TEXT,
    codec TEXT,
    gaps TEXT,
    pauses TEXT,
    size_bytes INTEGER,
    sha256 TEXT,
    legal_hold INTEGER NOT NULL DEFAULT 0,
    deleted_at REAL
);
CREATE INDEX calls_started ON calls (started_at);
CREATE INDEX calls_expires ON calls (expires_at) WHERE status != 'deleted';
CREATE INDEX calls_caller ON calls (caller);
CREATE INDEX calls_callee ON calls (callee);
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

_USERS_SQL = """
CREATE TABLE users (
    name TEXT PRIMARY KEY,
    role TEXT NOT NULL CHECK (role IN ('admin', 'supervisor', 'agent')),
    extensions TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
"""

# (version reached, script); applied in order, each in its own transaction.
MIGRATIONS: tuple[tuple[int, str], ...] = (
    (1, _CALLS_SQL + AUDIT_SQL),
    (2, _USERS_SQL),
)


class CatalogError(Exception):
    """A catalog operation that can not be done (unknown id, wrong state, bad file)."""


class RecordingResult(Protocol):
    """What recording_finished needs of media.writer.WriterResult."""

    @property
    def path(self) -> Path: ...
    @property
    def bytes_written(self) -> int: ...
    @property
    def sha256(self) -> str: ...
    @property
    def truncated(self) -> bool: ...


_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def recording_path(directory: Path, record_id: str) -> Path:
    """Where the sealed recording of this id goes (the writer adds `.part` while open)."""
    return directory / (record_id + FILE_SUFFIX)


def new_id(started_at: float) -> str:
    """26 characters, ULID-like: 48-bit milliseconds then 80 random bits, Crockford base32.

    Sorts by start time as text, and is safe as a file name.
    """
    value = (max(0, round(started_at * 1000)) & ((1 << 48) - 1)) << 80
    value |= secrets.randbits(80)
    return "".join(_CROCKFORD[(value >> (5 * i)) & 31] for i in range(25, -1, -1))


def id_time(record_id: str) -> float | None:
    """The start time encoded in an id from new_id, or None."""
    if len(record_id) != 26 or any(c not in _CROCKFORD for c in record_id):
        return None
    value = 0
    for c in record_id:
        value = value * 32 + _CROCKFORD.index(c)
    return (value >> 80) / 1000.0


_SEPARATORS = re.compile(r"[\s().\-/]")


def e164_or_none(number: str | None) -> str | None:
    """E.164 form when the number is already international (+..., or 00...), else None.

    Full normalisation (national numbers, dial plans) is a later feature; extensions and
    national numbers stay None rather than being guessed.
    """
    if number is None:
        return None
    text = _SEPARATORS.sub("", number)
    if text.startswith("+"):
        digits = text[1:]
    elif text.startswith("00") and not text.startswith("000"):
        digits = text[2:]
    else:
        return None
    if digits.isascii() and digits.isdigit() and digits[0] != "0" and 7 <= len(digits) <= 15:
        return "+" + digits
    return None


@dataclass(frozen=True)
class ListFilter:
    since: float | None = None  # started_at >= since
    until: float | None = None  # started_at < until
    number: str | None = None  # caller or callee, as dialled or in E.164
    extension: str | None = None
    direction: str | None = None
    consent: str | None = None  # consent.result
    status: str | None = None
    include_pending: bool = False
    limit: int | None = None


Row = dict[str, Any]
Rows = list[Row]
Ids = list[str]  # aliases: inside Catalog, `list` names the method
_COLUMNS = (
    "id, call_id, direction, caller, caller_e164, callee, callee_e164, extension, "
    "started_at, ended_at, duration_s, consent, path, expires_at, status, reason, codec, "
    "gaps, pauses, size_bytes, sha256, legal_hold, deleted_at"
)


_COLUMN_NAMES = tuple(name.strip() for name in _COLUMNS.split(","))
# The contract's fields first (DESIGN.md, "Recordings listing"), then the extras.
_LISTING_ORDER = (
    "id", "call_id", "direction", "caller", "callee", "caller_e164", "callee_e164",
    "extension", "started_at", "ended_at", "duration_s", "consent", "path", "expires_at",
    "status", "legal_hold", "reason", "codec", "size_bytes", "sha256", "gaps", "pauses",
    "deleted_at",
)  # fmt: skip


def _iso(ts: float | None) -> str | None:
    return None if ts is None else format_time(ts)


def _json_or_none(text: str | None) -> Any:
    return None if text is None else json.loads(text)


class Catalog:
    """One open catalog file. Use `Catalog.open(directory)`; close() or `with` when done."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        directory: Path,
        policy: RetentionPolicy,
        clock: Callable[[], float],
    ) -> None:
        self.conn = conn
        self.directory = directory
        self.policy = policy
        self.clock = clock
        self.audit = AuditLog(conn, clock)
        # Number -> E.164 or None; b2bua.numbers.NumberPlan.e164 with the config's
        # country and area code where one is loaded (serve, the recordings commands).
        self.normalise: Callable[[str | None], str | None] = e164_or_none

    # ------------------------------------------------------------- opening

    @classmethod
    def open(
        cls,
        directory: Path,
        *,
        policy: RetentionPolicy | None = None,
        clock: Callable[[], float] = time.time,
        create: bool = True,
    ) -> Catalog:
        """Open (or create) `<directory>/catalog.sqlite3` and bring its schema up to date."""
        directory = Path(directory).expanduser().absolute()
        db = directory / CATALOG_NAME
        if not create and not db.exists():
            raise CatalogError(f"no catalog at {db} (has the recorder run with this directory?)")
        directory.mkdir(parents=True, exist_ok=True, mode=0o750)
        conn = sqlite3.connect(db, isolation_level=None, timeout=10.0)
        try:
            conn.execute("PRAGMA busy_timeout = 10000")
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise CatalogError(f"{db}: could not switch to WAL mode (got {mode})")
            conn.execute("PRAGMA foreign_keys = ON")
            migrate(conn)
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise CatalogError(f"{db}: {exc}") from None
        except BaseException:
            conn.close()
            raise
        return cls(conn, directory, policy or RetentionPolicy(), clock)

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Catalog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def schema_version(self) -> int:
        return schema_version(self.conn)

    # ------------------------------------------------------------- call layer API

    def path_for(self, record_id: str) -> Path:
        return recording_path(self.directory, record_id)

    def new_call(
        self,
        call_id: str | None,
        direction: str,
        caller: str | None,
        callee: str | None,
        extension: str | None,
        started_at: float,
        *,
        record_id: str | None = None,
    ) -> str:
        """A row for a call that reached the consent step; its id (made here, or given
        by the caller that made it with `new_id`, catalog_writer.py)."""
        if direction not in DIRECTIONS:
            raise CatalogError(f"direction must be one of {', '.join(DIRECTIONS)}: {direction!r}")
        record_id = record_id or new_id(started_at)
        with immediate(self.conn):
            self.conn.execute(
                "INSERT INTO calls (id, call_id, direction, caller, caller_e164, callee,"
                " callee_e164, extension, started_at, status) VALUES (?,?,?,?,?,?,?,?,?,?)",
                (
                    record_id,
                    call_id,
                    direction,
                    caller,
                    self.normalise(caller),
                    callee,
                    self.normalise(callee),
                    extension,
                    started_at,
                    PENDING,
                ),
            )
        return record_id

    def set_consent(self, record_id: str, consent: Mapping[str, Any]) -> None:
        unknown = set(consent) - set(CONSENT_KEYS)
        if unknown:
            raise CatalogError(f"unknown consent fields: {', '.join(sorted(unknown))}")
        record = {key: consent.get(key) for key in CONSENT_KEYS}
        for key in ("at", "withdrawn_at"):
            value = record[key]
            if isinstance(value, int | float) and not isinstance(value, bool):
                record[key] = format_time(float(value))
        with immediate(self.conn):
            status = self._status(record_id)
            new_status = "not_recorded" if status == PENDING else status
            self.conn.execute(
                "UPDATE calls SET consent = ?, status = ? WHERE id = ?",
                (json.dumps(record, separators=(",", ":")), new_status, record_id),
            )

    def recording_started(self, record_id: str, path: Path, *, at: float | None = None) -> None:
        """The writer opened `<path>.part`; `path` is the final .wav.age name."""
        with immediate(self.conn):
            status = self._status(record_id)
            if status not in (PENDING, "not_recorded"):
                raise CatalogError(f"{record_id}: recording can not start in status {status}")
            stored = self.store_path(Path(path))
            self.conn.execute(
                "UPDATE calls SET status = 'recording', path = ?, reason = NULL WHERE id = ?",
                (stored, record_id),
            )
            self.audit.append("system", "create", record_id, "recorder", {"path": stored}, at)

    def recording_finished(
        self,
        record_id: str,
        result: RecordingResult,
        duration_s: float,
        gaps: Any,
        pauses: Any,
        codec: str | None,
        ended_at: float,
    ) -> None:
        """The writer sealed the file: status complete or truncated, size, hash, expiry."""
        with immediate(self.conn):
            row = self.row(record_id)
            if row["status"] != "recording":
                raise CatalogError(f"{record_id}: not recording (status {row['status']})")
            expires = self.policy.expires_at(ended_at, row["direction"], row["extension"])
            self.conn.execute(
                "UPDATE calls SET status = ?, path = ?, size_bytes = ?, sha256 = ?,"
                " duration_s = ?, gaps = ?, pauses = ?, codec = ?, ended_at = ?,"
                " expires_at = ? WHERE id = ?",
                (
                    "truncated" if result.truncated else "complete",
                    self.store_path(Path(result.path)),
                    result.bytes_written,
                    result.sha256,
                    round(duration_s, 3),
                    json.dumps(gaps),
                    json.dumps(pauses),
                    codec,
                    ended_at,
                    expires,
                    record_id,
                ),
            )

    def not_recorded(self, record_id: str, reason: str, ended_at: float | None = None) -> None:
        with immediate(self.conn):
            row = self.row(record_id)
            if row["status"] not in (PENDING, "not_recorded"):
                raise CatalogError(f"{record_id}: already {row['status']}")
            self.conn.execute(
                "UPDATE calls SET status = 'not_recorded', reason = ? WHERE id = ?",
                (reason, record_id),
            )
            if ended_at is not None:
                self._end(row, ended_at)

    def call_ended(self, record_id: str, ended_at: float) -> None:
        """The call is over. Rows without a recording get their expiry now."""
        with immediate(self.conn):
            self._end(self.row(record_id), ended_at)

    def _end(self, row: Row, ended_at: float) -> None:
        if row["status"] == "deleted":
            return
        if row["status"] in ("complete", "truncated") and row["ended_at"] is not None:
            # recording_finished set the expiry; the call may have gone on after the
            # recording stopped (consent withdrawn): ended_at is the end of the call.
            self.conn.execute(
                "UPDATE calls SET ended_at = MAX(ended_at, ?) WHERE id = ?", (ended_at, row["id"])
            )
            return
        expires: float | None = None  # a recording gets it when the file is sealed
        if row["status"] != "recording":
            expires = self.policy.expires_at(ended_at, row["direction"], row["extension"])
        self.conn.execute(
            "UPDATE calls SET ended_at = ?, expires_at = COALESCE(?, expires_at) WHERE id = ?",
            (ended_at, expires, row["id"]),
        )

    # ------------------------------------------------------------- queries

    def get(self, record_id: str) -> Row | None:
        rows = self.conn.execute(
            f"SELECT {_COLUMNS} FROM calls WHERE id = ?",  # noqa: S608 - constant columns
            (record_id,),
        )
        found = rows.fetchone()
        return None if found is None else self._render(found)

    def list(self, filters: ListFilter | None = None) -> Rows:
        """Rows in the contract's JSON shape, newest first."""
        f = filters or ListFilter()
        where: list[str] = []
        params: list[Any] = []
        if not f.include_pending:
            where.append("status != ?")
            params.append(PENDING)
        if f.since is not None:
            where.append("started_at >= ?")
            params.append(f.since)
        if f.until is not None:
            where.append("started_at < ?")
            params.append(f.until)
        if f.number is not None:
            clause, values = _number_clause(f.number, self.normalise)
            where.append(clause)
            params += values
        for column, value in (
            ("extension", f.extension),
            ("direction", f.direction),
            ("status", f.status),
        ):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        if f.consent is not None:
            where.append("json_extract(consent, '$.result') = ?")
            params.append(f.consent)
        sql = f"SELECT {_COLUMNS} FROM calls"  # noqa: S608 - constants; values are bound
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY started_at DESC, id DESC LIMIT ?"
        params.append(-1 if f.limit is None else f.limit)
        return [self._render(r) for r in self.conn.execute(sql, params)]

    def ids_for_number(self, number: str) -> Ids:
        """Every row (except tombstones) where this number is the caller or the callee."""
        clause, values = _number_clause(number, self.normalise)
        rows = self.conn.execute(
            f"SELECT id FROM calls WHERE status != 'deleted' AND {clause} "  # noqa: S608
            "ORDER BY started_at DESC, id DESC",
            values,
        )
        return [str(r[0]) for r in rows]

    def expired_ids(self, now: float) -> Ids:
        """Rows whose retention ran out by `now` and that are not on legal hold."""
        rows = self.conn.execute(
            "SELECT id FROM calls WHERE status NOT IN ('deleted', 'recording')"
            " AND expires_at IS NOT NULL AND expires_at <= ? AND legal_hold = 0"
            " ORDER BY expires_at, id",
            (now,),
        )
        return [str(r[0]) for r in rows]

    def held_expired_ids(self, now: float) -> Ids:
        rows = self.conn.execute(
            "SELECT id FROM calls WHERE status != 'deleted' AND expires_at <= ?"
            " AND legal_hold = 1 ORDER BY expires_at, id",
            (now,),
        )
        return [str(r[0]) for r in rows]

    # ------------------------------------------------------------- archive mutations

    def delete(
        self,
        record_id: str,
        *,
        actor: str,
        source: str,
        reason: str,
        now: float | None = None,
        force: bool = False,
        details: Mapping[str, Any] | None = None,
    ) -> Row:
        """Remove the file and turn the row into a tombstone, logged; returns the tombstone.

        Refuses a recording on legal hold unless `force`, and one still being recorded.
        """
        when = self.clock() if now is None else now
        with immediate(self.conn):
            row = self.row(record_id)
            if row["status"] == "deleted":
                raise CatalogError(f"{record_id}: already deleted")
            if row["status"] == "recording":
                raise CatalogError(f"{record_id}: still being recorded; delete it after the call")
            if row["legal_hold"] and not force:
                raise CatalogError(
                    f"{record_id}: on legal hold; release it first "
                    f"(b2bua recordings hold --release {record_id}) or pass --force"
                )
            removed: Ids = []
            missing = False
            if row["path"] is not None:
                final = self.abs_path(row["path"])
                for candidate in (final, final.with_name(final.name + ".part")):
                    try:
                        candidate.unlink()
                        removed.append(candidate.name)
                    except FileNotFoundError:
                        pass
                missing = not removed
            if row["status"] == PENDING:
                # Never listed and no recording: nothing to keep a tombstone for.
                self.conn.execute("DELETE FROM calls WHERE id = ?", (record_id,))
            else:
                self.conn.execute(
                    "UPDATE calls SET status = 'deleted', path = NULL, caller = NULL,"
                    " caller_e164 = NULL, callee = NULL, callee_e164 = NULL, consent = NULL,"
                    " gaps = NULL, pauses = NULL, reason = ?, deleted_at = ? WHERE id = ?",
                    (reason, when, record_id),
                )
            info: dict[str, Any] = {
                "reason": reason,
                "previous_status": row["status"],
                "files_removed": removed,
                "sha256": row["sha256"],
            }
            if missing:
                info["file_missing"] = True
            if row["legal_hold"]:
                info["legal_hold_overridden"] = True
            info.update(details or {})
            self.audit.append(actor, "delete", record_id, source, info, when)
        return self.get(record_id) or {"id": record_id, "status": "deleted"}

    def set_hold(
        self,
        record_id: str,
        hold: bool,
        *,
        actor: str,
        source: str,
        reason: str | None = None,
        now: float | None = None,
    ) -> None:
        with immediate(self.conn):
            row = self.row(record_id)
            if row["status"] == "deleted":
                raise CatalogError(f"{record_id}: deleted; nothing to hold")
            self.conn.execute(
                "UPDATE calls SET legal_hold = ? WHERE id = ?", (int(hold), record_id)
            )
            self.audit.append(
                actor, "hold" if hold else "release", record_id, source, {"reason": reason}, now
            )

    # ------------------------------------------------------------- helpers

    def _status(self, record_id: str) -> str:
        return str(self.row(record_id)["status"])

    def row(self, record_id: str) -> Row:
        """The raw row (column names, stored values); CatalogError if unknown."""
        cur = self.conn.execute(
            f"SELECT {_COLUMNS} FROM calls WHERE id = ?",  # noqa: S608 - constant columns
            (record_id,),
        )
        found = cur.fetchone()
        if found is None:
            raise CatalogError(f"no recording with id {record_id}")
        names = [d[0] for d in cur.description]
        return dict(zip(names, found, strict=True))

    def store_path(self, path: Path) -> str:
        """The form a path is stored in: a name inside the directory, else absolute."""
        absolute = path.expanduser().absolute()
        if absolute.parent == self.directory:
            return absolute.name
        return str(absolute)

    def abs_path(self, stored: str) -> Path:
        return self.directory / stored if os.sep not in stored else Path(stored)

    def _render(self, r: Sequence[Any]) -> Row:
        """A row in the listing's JSON shape: ISO times, parsed JSON, absolute path."""
        c = dict(zip(_COLUMN_NAMES, r, strict=True))
        out: Row = {name: c[name] for name in _LISTING_ORDER}
        for key in ("started_at", "ended_at", "expires_at", "deleted_at"):
            out[key] = _iso(c[key])
        for key in ("consent", "gaps", "pauses"):
            out[key] = _json_or_none(c[key])
        out["path"] = None if c["path"] is None else str(self.abs_path(c["path"]))
        out["legal_hold"] = bool(c["legal_hold"])
        return out


def _number_clause(
    number: str, normalise: Callable[[str | None], str | None] = e164_or_none
) -> tuple[str, list[Any]]:
    """Exact match on the dialled form or the E.164 form of caller or callee."""
    e164 = normalise(number)
    clause = "(caller = ? OR callee = ?"
    values: list[Any] = [number, number]
    if e164 is not None:
        clause += " OR caller_e164 = ? OR callee_e164 = ?"
        values += [e164, e164]
    return clause + ")", values


def schema_version(conn: sqlite3.Connection) -> int:
    exists = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
    ).fetchone()
    if exists is None:
        return 0
    row = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()
    return int(row[0] or 0)


def migrate(conn: sqlite3.Connection, target: int = SCHEMA_VERSION) -> int:
    """Apply the migrations above the file's version up to `target`; returns the version."""
    with immediate(conn):
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_version"
            " (version INTEGER PRIMARY KEY, applied_at REAL NOT NULL)"
        )
    current = schema_version(conn)
    if current > SCHEMA_VERSION:
        raise CatalogError(
            f"catalog schema version {current} is newer than this program ({SCHEMA_VERSION})"
        )
    for version, script in MIGRATIONS:
        if current < version <= target:
            with immediate(conn):
                # Re-check inside the lock: another process may have migrated meanwhile.
                if schema_version(conn) >= version:
                    continue
                for statement in _statements(script):
                    conn.execute(statement)
                conn.execute(
                    "INSERT INTO schema_version (version, applied_at) VALUES (?, ?)",
                    (version, time.time()),
                )
            current = version
    return schema_version(conn)


def _statements(script: str) -> list[str]:
    """Split a migration script into statements (executescript would commit on its own)."""
    out: list[str] = []
    buf = ""
    for line in script.splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            out.append(buf.strip())
            buf = ""
    if buf.strip():
        out.append(buf.strip())
    return out
