"""Crash recovery: a writer killed mid-recording leaves a .part that start-up seals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from b2bua.archive.catalog import Catalog
from b2bua.archive.commands import main_for_tests
from b2bua.archive.recovery import estimate_chunks, recover
from tests.test_archive_support import CONSENT, T0, add_call, make_keys, write_config

ROOT = Path(__file__).resolve().parent.parent

WRITER = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    from pathlib import Path
    from b2bua.archive.catalog import Catalog
    from media.writer import EncryptedWavWriter
    from tests.test_archive_support import CONSENT

    directory, recipient, t0 = Path(sys.argv[1]), sys.argv[2], float(sys.argv[3])
    cat = Catalog.open(directory)
    rid = cat.new_call("crash@trunk", "inbound", "+4930123456", "1000", "1000", t0)
    cat.set_consent(rid, CONSENT)
    path = cat.path_for(rid)
    cat.recording_started(rid, path, at=t0 + 6)
    writer = EncryptedWavWriter(path, [recipient])
    frame = np.full((160, 2), 1000, dtype=np.int16)  # 20 ms
    for i in range(100_000):  # bounded: the parent kills us long before
        writer.write_frames(frame)
        if i == 2000:  # 40 s of audio: 4 whole 64 KiB chunks are on disk
            print(rid, flush=True)
        if i > 2000:
            time.sleep(0.001)
    """
)


def _killed_writer(directory: Path, recipient: str) -> str:
    with subprocess.Popen(
        [sys.executable, "-c", WRITER, str(directory), recipient, str(T0)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    ) as proc:
        try:
            assert proc.stdout is not None
            rid = proc.stdout.readline().strip()  # bounded by the pytest timeout
            assert rid, "writer did not start"
            time.sleep(0.05)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL
    return rid


@pytest.mark.timeout(60)
def test_killed_writer_is_recovered_listed_truncated_and_decrypts_with_exit_3(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key, recipient = make_keys(tmp_path)
    config = write_config(tmp_path, tmp_path / "recorder.key.pub", key)
    directory = tmp_path / "rec"
    rid = _killed_writer(directory, recipient)
    part = directory / f"{rid}.wav.age.part"
    assert part.exists()
    chunks, partial = estimate_chunks(part)
    assert chunks >= 4
    size_before = part.stat().st_size

    with Catalog.open(directory) as cat:
        assert cat.get(rid)["status"] == "recording"  # type: ignore[index]
        (item,) = recover(cat, T0 + 100)
        assert item.id == rid
        assert item.action == "sealed part"
        assert item.whole_chunks == chunks and item.partial_bytes == partial
        assert item.estimated_duration_s == pytest.approx(chunks * 65536 / 32000, abs=0.01)
        final = directory / f"{rid}.wav.age"
        assert not part.exists() and final.exists()
        assert final.stat().st_size == size_before  # nothing cut, nothing dropped
        assert cat.audit.entries()[-1].action == "recover"
        assert recover(cat, T0 + 200) == []  # idempotent

    assert main_for_tests(["recordings", "list", "--json", "--config", str(config)]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["id"] == rid
    assert row["status"] == "truncated"
    assert row["path"] == str(final)
    assert row["size_bytes"] == size_before
    assert row["consent"]["result"] == CONSENT["result"]
    assert row["expires_at"] == "2026-12-18T11:08:20.000Z"  # recovery time + 30 days

    out = tmp_path / "out.wav"
    decrypt = subprocess.run(
        [
            sys.executable,
            "-m",
            "b2bua.cli",
            "decrypt",
            "--identity",
            str(key),
            str(final),
            str(out),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert decrypt.returncode == 3, decrypt.stderr
    assert "truncated" in decrypt.stderr
    # whole chunks of audio came back: at least chunks * 64 KiB minus the WAV header
    assert out.stat().st_size >= chunks * 65536 - 200


def test_half_written_chunk_is_kept_and_counted(tmp_path: Path) -> None:
    _, recipient = make_keys(tmp_path)
    with Catalog.open(tmp_path / "rec") as cat:
        rid = cat.new_call("c", "inbound", "+4930123456", "1000", "1000", T0)
        cat.set_consent(rid, CONSENT)
        cat.recording_started(rid, cat.path_for(rid))
        # a sealed file, renamed back to .part with a torn chunk after it
        from tests.test_archive_support import write_recording

        write_recording(cat.path_for(rid), recipient, frames=40_000)
        part = cat.path_for(rid).with_name(f"{rid}.wav.age.part")
        cat.path_for(rid).rename(part)
        with open(part, "ab") as f:
            f.write(os.urandom(1000))
        (item,) = recover(cat, T0 + 60)
        assert item.whole_chunks == 2 and item.partial_bytes > 1000
        row = cat.get(rid)
        assert row is not None and row["status"] == "truncated"
        assert "bytes after them" in row["reason"]


def test_orphan_part_gets_a_row_and_lost_file_is_reported(tmp_path: Path) -> None:
    directory = tmp_path / "rec"
    with Catalog.open(directory) as cat:
        orphan = "01KA0000000000000000000000"
        (directory / f"{orphan}.wav.age.part").write_bytes(b"age-encryption.org/v1\n-> X")
        lost = cat.new_call("l", "inbound", "+4930123456", "1000", "1000", T0)
        cat.set_consent(lost, CONSENT)
        cat.recording_started(lost, cat.path_for(lost))
        items = {i.id: i for i in recover(cat, T0 + 60)}
        assert items[orphan].action == "inserted row"
        assert items[orphan].whole_chunks == 0  # header incomplete: nothing decryptable
        row = cat.get(orphan)
        assert row is not None and row["status"] == "truncated" and row["direction"] is None
        assert "no catalog row" in row["reason"]
        assert items[lost].action == "file lost"
        lost_row = cat.get(lost)
        assert lost_row is not None and lost_row["status"] == "not_recorded"
        assert lost_row["reason"] == "recording file missing after a crash"


def test_sealed_file_without_catalog_update_is_marked_truncated(tmp_path: Path) -> None:
    _, recipient = make_keys(tmp_path)
    with Catalog.open(tmp_path / "rec") as cat:
        rid = cat.new_call("c", "inbound", "+4930123456", "1000", "1000", T0)
        cat.set_consent(rid, CONSENT)
        cat.recording_started(rid, cat.path_for(rid))
        from tests.test_archive_support import write_recording

        result = write_recording(cat.path_for(rid), recipient)
        (item,) = recover(cat, T0 + 60)
        assert item.action == "marked truncated"
        row = cat.get(rid)
        assert row is not None and row["status"] == "truncated"
        assert row["sha256"] == result.sha256


def test_part_next_to_sealed_file_is_left_alone(tmp_path: Path) -> None:
    _, recipient = make_keys(tmp_path)
    with Catalog.open(tmp_path / "rec") as cat:
        rid = add_call(cat, recipient=recipient)
        final = cat.path_for(rid)
        before = final.read_bytes()
        part = final.with_name(final.name + ".part")
        part.write_bytes(b"junk")
        (item,) = recover(cat, T0 + 60)
        assert item.action == "error" and "left both untouched" in item.note
        assert final.read_bytes() == before and part.exists()
