"""Catalog: schema and migrations, the call-layer API and the JSON listing shape."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from b2bua.archive.catalog import (
    CATALOG_NAME,
    SCHEMA_VERSION,
    Catalog,
    CatalogError,
    ListFilter,
    e164_or_none,
    id_time,
    migrate,
    new_id,
    schema_version,
)
from b2bua.archive.retention import DAY_S, RetentionPolicy
from media.writer import WriterResult
from tests.test_archive_support import CONSENT, T0, add_call

ISO_MS_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
CONTRACT_KEYS = {
    "id", "call_id", "direction", "caller", "callee", "extension", "started_at", "ended_at",
    "duration_s", "consent", "path", "expires_at", "status",
}  # fmt: skip


@pytest.fixture
def catalog(tmp_path: Path) -> Iterator[Catalog]:
    cat = Catalog.open(tmp_path / "rec", clock=lambda: T0)
    yield cat
    cat.close()


def test_open_creates_wal_catalog_with_current_schema(tmp_path: Path) -> None:
    with Catalog.open(tmp_path / "rec") as cat:
        assert (tmp_path / "rec" / CATALOG_NAME).is_file()
        assert cat.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert cat.schema_version() == SCHEMA_VERSION
    with Catalog.open(tmp_path / "rec") as cat:  # reopening migrates nothing twice
        rows = cat.conn.execute("SELECT version FROM schema_version ORDER BY version")
        assert [r[0] for r in rows] == list(range(1, SCHEMA_VERSION + 1))


def test_open_without_create_names_the_missing_file(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match=r"no catalog at .*catalog\.sqlite3"):
        Catalog.open(tmp_path / "none", create=False)
    assert not (tmp_path / "none").exists()


def test_migration_from_version_1_keeps_rows(tmp_path: Path) -> None:
    db = tmp_path / CATALOG_NAME
    conn = sqlite3.connect(db, isolation_level=None)
    assert migrate(conn, target=1) == 1
    conn.execute("INSERT INTO calls (id, started_at, status) VALUES ('OLD', ?, 'complete')", (T0,))
    conn.close()
    with Catalog.open(tmp_path) as cat:
        assert cat.schema_version() == 2
        assert cat.get("OLD") is not None
        assert cat.conn.execute("SELECT COUNT(*) FROM users").fetchone()[0] == 0


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    with Catalog.open(tmp_path):
        pass
    conn = sqlite3.connect(tmp_path / CATALOG_NAME, isolation_level=None)
    conn.execute("INSERT INTO schema_version VALUES (99, 0)")
    conn.close()
    with pytest.raises(CatalogError, match="newer than this program"):
        Catalog.open(tmp_path)
    assert schema_version(sqlite3.connect(tmp_path / CATALOG_NAME)) == 99


def test_ids_sort_by_time_and_are_unique_file_names() -> None:
    ids = [new_id(T0 + i * 0.001) for i in range(200)]
    assert ids == sorted(ids)
    assert len(set(ids)) == 200
    assert all(re.fullmatch(r"[0-9A-HJKMNP-TV-Z]{26}", i) for i in ids)
    assert id_time(ids[7]) == pytest.approx(T0 + 0.007, abs=1e-6)
    assert id_time("not-an-id") is None


@pytest.mark.parametrize(
    ("dialled", "e164"),
    [
        ("+4930123456", "+4930123456"),
        ("+49 30 123-456", "+4930123456"),
        ("004930123456", "+4930123456"),
        ("030123456", None),  # national: needs a dial plan (later issue)
        ("1000", None),  # extension
        ("+0123456789", None),
        ("+49abc", None),
        ("+1234567890123456", None),  # 16 digits: longer than E.164 allows
        (None, None),
    ],
)
def test_e164_only_when_already_international(dialled: str | None, e164: str | None) -> None:
    assert e164_or_none(dialled) == e164


def test_pending_call_is_not_listed_until_consent_step(catalog: Catalog) -> None:
    rid = catalog.new_call("c1", "inbound", "+4930123456", "1000", "1000", T0)
    assert catalog.list() == []
    assert [r["id"] for r in catalog.list(ListFilter(include_pending=True))] == [rid]
    catalog.set_consent(rid, CONSENT)
    (row,) = catalog.list()
    assert row["status"] == "not_recorded"
    assert row["consent"]["at"] == "2026-11-18T11:06:45.250Z"


def test_recorded_call_renders_the_contract_shape(catalog: Catalog, tmp_path: Path) -> None:
    rid = catalog.new_call("abc@trunk", "inbound", "004930123456", "1000", "1000", T0)
    catalog.set_consent(rid, CONSENT)
    final = catalog.path_for(rid)
    catalog.recording_started(rid, final, at=T0 + 6)
    assert catalog.get(rid)["status"] == "recording"  # type: ignore[index]
    final.write_bytes(b"x" * 100)
    result = WriterResult(final, 80_000, 100, "cd" * 32, truncated=False)
    catalog.recording_finished(rid, result, 10.0004, [[1.0, 1.2]], [], "PCMU", T0 + 16.5)
    catalog.call_ended(rid, T0 + 17)
    (row,) = catalog.list()
    assert set(row) >= CONTRACT_KEYS
    assert row["id"] == rid
    assert row["call_id"] == "abc@trunk"
    assert row["direction"] == "inbound"
    assert (row["caller"], row["caller_e164"]) == ("004930123456", "+4930123456")
    assert (row["callee"], row["callee_e164"]) == ("1000", None)
    for key in ("started_at", "ended_at", "expires_at"):
        assert ISO_MS_Z.match(row[key]), row[key]
    assert row["started_at"] == "2026-11-18T11:06:40.000Z"
    assert row["ended_at"] == "2026-11-18T11:06:57.000Z"  # the call's end (BYE)
    assert row["expires_at"] == "2026-12-18T11:06:56.500Z"  # + 30 days
    assert row["duration_s"] == 10.0
    assert row["consent"] == {
        **CONSENT,
        "at": "2026-11-18T11:06:45.250Z",
        "withdrawn_at": None,
        "note": None,
    }
    assert row["path"] == str(tmp_path / "rec" / f"{rid}.wav.age")
    assert Path(row["path"]).is_absolute()
    assert row["status"] == "complete"
    assert (row["size_bytes"], row["sha256"], row["codec"]) == (100, "cd" * 32, "PCMU")
    assert row["gaps"] == [[1.0, 1.2]]
    assert row["legal_hold"] is False
    # stored relative, so the directory can be mounted elsewhere
    stored = catalog.conn.execute("SELECT path FROM calls WHERE id = ?", (rid,)).fetchone()[0]
    assert stored == f"{rid}.wav.age"
    # the recording start is in the audit log
    (entry,) = catalog.audit.entries()
    assert (entry.action, entry.target, entry.actor) == ("create", rid, "system")


def test_truncated_result_and_not_recorded_rows(catalog: Catalog) -> None:
    a = catalog.new_call("a", "outbound", "1000", "+4930999", "1000", T0)
    catalog.set_consent(a, CONSENT)
    catalog.recording_started(a, catalog.path_for(a), at=T0)
    result = WriterResult(catalog.path_for(a), 10, 200, "ef" * 32, truncated=True)
    catalog.recording_finished(a, result, 2.0, [], [], "PCMA", T0 + 3)
    b = catalog.new_call("b", "internal", "1000", "1001", "1001", T0 + 10)
    catalog.set_consent(b, {**CONSENT, "result": "declined", "digit": "2"})
    catalog.not_recorded(b, "declined", T0 + 20)
    rows = {r["id"]: r for r in catalog.list()}
    assert rows[a]["status"] == "truncated"
    assert rows[b]["status"] == "not_recorded"
    assert rows[b]["path"] is None
    assert rows[b]["duration_s"] is None
    assert rows[b]["reason"] == "declined"
    assert rows[b]["expires_at"] == "2026-12-18T11:07:00.000Z"
    assert [r["id"] for r in catalog.list()] == [b, a]  # newest first


def test_state_errors_are_clear(catalog: Catalog) -> None:
    with pytest.raises(CatalogError, match="direction must be one of"):
        catalog.new_call("x", "sideways", None, None, None, T0)
    with pytest.raises(CatalogError, match="no recording with id NOPE"):
        catalog.call_ended("NOPE", T0)
    rid = catalog.new_call("x", "inbound", None, None, None, T0)
    with pytest.raises(CatalogError, match="unknown consent fields: colour"):
        catalog.set_consent(rid, {"colour": "red"})
    with pytest.raises(CatalogError, match="not recording"):
        catalog.recording_finished(
            rid, WriterResult(Path("x"), 0, 0, "", False), 0, [], [], None, T0
        )


def test_filters(catalog: Catalog) -> None:
    a = add_call(catalog, caller="+4930111", started=T0)
    b = add_call(catalog, caller="004930222", started=T0 + 100, extension="1001")
    c = add_call(
        catalog,
        caller="1000",
        callee="+4930111",
        started=T0 + 200,
        direction="outbound",
        consent={**CONSENT, "result": "declined"},
    )

    def ids(**kw: object) -> list[str]:
        return [r["id"] for r in catalog.list(ListFilter(**kw))]  # type: ignore[arg-type]

    assert ids() == [c, b, a]
    assert ids(number="+4930111") == [c, a]
    assert ids(number="004930111") == [c, a]  # matched through E.164
    assert ids(number="+4930222") == [b]
    assert ids(number="4930111") == []  # exact numbers only, never substrings
    assert ids(extension="1001") == [b]
    assert ids(direction="outbound") == [c]
    assert ids(consent="declined") == [c]
    assert ids(since=T0 + 100) == [c, b]
    assert ids(until=T0 + 100) == [a]
    assert ids(limit=1) == [c]
    assert catalog.ids_for_number("+4930111") == [c, a]


def test_retention_policy_sets_expiry(tmp_path: Path) -> None:
    policy = RetentionPolicy(default_days=1, by_direction={"outbound": 7})
    with Catalog.open(tmp_path, policy=policy) as cat:
        a = add_call(cat, started=T0)
        b = add_call(cat, started=T0, direction="outbound")
        ea = cat.get(a)["expires_at"]  # type: ignore[index]
        eb = cat.get(b)["expires_at"]  # type: ignore[index]
    assert ea == "2026-11-19T11:06:41.000Z"
    assert eb == "2026-11-25T11:06:41.000Z"
    assert DAY_S == 86_400
