"""Audit log: hash chain, head anchor, and tampering detected."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path

import pytest

from b2bua.archive.audit import GENESIS_HASH, entry_hash, format_time, parse_anchor
from b2bua.archive.catalog import Catalog
from tests.test_archive_support import T0


@pytest.fixture
def cat(tmp_path: Path) -> Iterator[Catalog]:
    c = Catalog.open(tmp_path, clock=lambda: T0)
    for i in range(5):
        c.audit.append("alice", "listen", f"R{i}", "10.0.0.1", {"n": i}, T0 + i)
    yield c
    c.close()


def _untrigger(cat: Catalog) -> None:
    """What someone who owns the file can do: remove the append-only guard."""
    cat.conn.execute("DROP TRIGGER audit_no_update")
    cat.conn.execute("DROP TRIGGER audit_no_delete")


def test_chain_links_entries_and_anchor_tracks_head(cat: Catalog) -> None:
    entries = cat.audit.entries()
    assert [e.seq for e in entries] == [1, 2, 3, 4, 5]
    assert entries[0].prev_hash == GENESIS_HASH
    assert all(b.prev_hash == a.hash for a, b in pairwise(entries))
    assert entries[2].at == format_time(T0 + 2) == "2026-11-18T11:06:42.000Z"
    e = entries[3]
    details = '{"n":3}'
    assert e.hash == entry_hash(
        e.seq, e.at, e.actor, e.action, e.target, e.source, details, e.prev_hash
    )
    assert cat.audit.anchor() == f"5:{entries[-1].hash}"
    meta = cat.conn.execute("SELECT value FROM meta WHERE key='audit_head'").fetchone()[0]
    assert meta == cat.audit.anchor()
    result = cat.audit.verify([parse_anchor(f"3:{entries[2].hash}")])
    assert result.ok and result.entries == 5 and result.problems == ()


def test_append_only_triggers_refuse_changes(cat: Catalog) -> None:
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        cat.conn.execute("UPDATE audit SET actor = 'mallory' WHERE seq = 2")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        cat.conn.execute("DELETE FROM audit WHERE seq = 5")


def test_edited_entry_detected(cat: Catalog) -> None:
    _untrigger(cat)
    cat.conn.execute("UPDATE audit SET actor = 'mallory' WHERE seq = 2")
    result = cat.audit.verify()
    assert not result.ok
    assert result.problems == ("entry 2: content does not match its hash (edited)",)


def test_edited_details_detected(cat: Catalog) -> None:
    _untrigger(cat)
    cat.conn.execute("UPDATE audit SET details = '{\"n\":9}' WHERE seq = 4")
    assert "entry 4: content does not match its hash (edited)" in cat.audit.verify().problems


def test_removed_middle_entry_detected(cat: Catalog) -> None:
    _untrigger(cat)
    cat.conn.execute("DELETE FROM audit WHERE seq = 3")
    problems = cat.audit.verify().problems
    assert "entry 4: expected entry 3 here (entries removed)" in problems
    assert "entry 4: does not follow the entry before it (chain broken)" in problems


def test_rehashed_forgery_still_breaks_at_the_next_entry(cat: Catalog) -> None:
    """Editing an entry and fixing its own hash breaks the link from the next one."""
    _untrigger(cat)
    e = cat.audit.entries()[1]
    forged = entry_hash(
        e.seq, e.at, "mallory", e.action, e.target, e.source, '{"n":1}', e.prev_hash
    )
    cat.conn.execute("UPDATE audit SET actor='mallory', hash=? WHERE seq=2", (forged,))
    assert cat.audit.verify().problems == (
        "entry 3: does not follow the entry before it (chain broken)",
    )


def test_cut_tail_detected_by_catalog_anchor(cat: Catalog) -> None:
    _untrigger(cat)
    cat.conn.execute("DELETE FROM audit WHERE seq >= 4")
    result = cat.audit.verify()
    assert not result.ok
    assert result.head_seq == 3
    assert "catalog anchor names entry 5" in result.problems[0]


def test_cut_tail_with_rewritten_anchor_detected_by_external_anchor(cat: Catalog) -> None:
    exported = parse_anchor(cat.audit.anchor())  # e.g. from an export manifest
    _untrigger(cat)
    cat.conn.execute("DELETE FROM audit WHERE seq >= 4")
    e3 = cat.audit.entries()[-1]
    cat.conn.execute("UPDATE meta SET value = ? WHERE key = 'audit_head'", (f"3:{e3.hash}",))
    assert cat.audit.verify().ok  # the chain alone can not see it...
    result = cat.audit.verify([exported])
    assert not result.ok  # ...the anchor kept outside can
    assert "entry 5 is missing" in result.problems[0]


def test_removed_anchor_row_detected(cat: Catalog) -> None:
    cat.conn.execute("DELETE FROM meta WHERE key = 'audit_head'")
    assert cat.audit.verify().problems == (
        "head anchor missing from the catalog (meta row removed)",
    )


def test_parse_anchor_rejects_garbage() -> None:
    assert parse_anchor(f"7:{'A' * 64}") == (7, "a" * 64)
    for bad in ("7", "x:" + "a" * 64, "7:abc", "7:" + "g" * 64):
        with pytest.raises(ValueError, match="anchor"):
            parse_anchor(bad)


def test_config_changes_logged_once(tmp_path: Path, cat: Catalog) -> None:
    conf = tmp_path / "office.toml"
    conf.write_text("[sip]\n")
    first = cat.audit.log_config(conf, "system", "serve", T0)
    assert first is not None and first.action == "config"
    assert cat.audit.log_config(conf, "system", "serve", T0) is None
    conf.write_text("[sip]\nlisten = '127.0.0.1:5060'\n")
    second = cat.audit.log_config(conf, "system", "serve", T0)
    assert second is not None
    assert second.details["previous_sha256"] == first.details["sha256"]
    assert cat.audit.verify().ok
