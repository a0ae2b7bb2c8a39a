"""The hub's catalog writes on a thread of their own (b2bua/archive/catalog_writer.py):
in order, never waiting for the disk on the caller's side, a failed write logged and
passed over, everything written by drain/close."""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from b2bua.archive.catalog import Catalog, CatalogError
from b2bua.archive.catalog_writer import CatalogWriter
from media.writer import WriterResult


def writer(directory: Path) -> CatalogWriter:
    return CatalogWriter(lambda: Catalog.open(directory), directory)


def test_a_calls_rows_are_written_in_order_and_visible_after_drain(tmp_path: Path) -> None:
    w = writer(tmp_path)
    record_id = w.new_call("c1@trunk", "inbound", "+4930123", "1000", "1000", 1000.0)
    path = w.path_for(record_id)
    assert path == tmp_path / f"{record_id}.wav.age"
    w.set_consent(record_id, {"mode": "keypress", "result": "accepted", "digit": "1"})
    w.recording_started(record_id, path)
    sealed = WriterResult(path, 8000, 1234, "ab" * 32, False)
    w.recording_finished(record_id, sealed, 1.0, [], [], "PCMA", 1010.0)
    w.call_ended(record_id, 1011.0)
    assert w.drain(10.0)
    with Catalog.open(tmp_path) as reader:
        row = reader.row(record_id)
    assert row["status"] == "complete"
    assert row["size_bytes"] == 1234 and row["ended_at"] == 1011.0
    assert '"digit":"1"' in row["consent"]
    assert w.failures == 0
    w.close()


def test_writes_do_not_wait_for_a_locked_database(tmp_path: Path) -> None:
    w = writer(tmp_path)
    blocker = sqlite3.connect(
        tmp_path / "catalog.sqlite3", isolation_level=None, check_same_thread=False
    )
    blocker.execute("BEGIN IMMEDIATE")  # the writer's transactions must wait for this
    released = threading.Timer(1.5, blocker.rollback)
    released.start()
    try:
        begun = time.monotonic()
        ids = [
            w.new_call(f"c{n}", "outbound", "1000", "030123", "1000", 2000.0 + n) for n in range(20)
        ]
        handed_over = time.monotonic() - begun
        assert handed_over < 1.0  # the caller did not wait for the lock (held 1.5 s)
        assert w.drain(15.0)
    finally:
        released.join()
        blocker.close()
    with Catalog.open(tmp_path) as reader:
        assert [reader.row(i)["call_id"] for i in ids] == [f"c{n}" for n in range(20)]
    w.close()


def test_a_failed_write_is_logged_and_the_next_ones_still_run(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    w = writer(tmp_path)
    caplog.set_level(logging.ERROR, logger="b2bua.catalog")
    w.set_consent("no-such-id", {"mode": "keypress"})
    record_id = w.new_call("c2", "internal", "1000", "1001", "1001", 3000.0)
    w.close()  # drains first
    assert w.failures == 1
    assert "event=catalog_write_failed op=set_consent" in caplog.text
    with Catalog.open(tmp_path) as reader:
        assert reader.row(record_id)["call_id"] == "c2"


def test_a_catalog_that_can_not_open_fails_at_construction(tmp_path: Path) -> None:
    def broken() -> Catalog:
        raise CatalogError("no catalog here")

    with pytest.raises(CatalogError, match="no catalog here"):
        CatalogWriter(broken, tmp_path)
