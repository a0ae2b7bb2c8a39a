"""`b2bua keygen` key files and recipient loading, checked against the real age tools."""

from __future__ import annotations

import stat
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest

from b2bua.archive.keys import keygen, load_recipients
from media.agefile import AgeKeyError, generate_identity, parse_identities


@pytest.mark.agetool
def test_keygen_writes_age_keygen_style_files(tmp_path: Path) -> None:
    out = tmp_path / "recorder.key"
    recipient = keygen(out, now=datetime(2026, 11, 22, 10, 4, 5, tzinfo=UTC))
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    lines = out.read_text().splitlines()
    assert lines[0] == "# created: 2026-11-22T10:04:05Z"
    assert lines[1] == f"# public key: {recipient}"
    assert lines[2].startswith("AGE-SECRET-KEY-1")
    assert (tmp_path / "recorder.key.pub").read_text() == recipient + "\n"
    # The real tools accept both files.
    derived = subprocess.run(
        ["age-keygen", "-y", str(out)], check=True, capture_output=True, timeout=10
    )
    assert derived.stdout.decode().strip() == recipient
    sealed = subprocess.run(
        ["age", "-R", str(tmp_path / "recorder.key.pub")],
        input=b"hello",
        check=True,
        capture_output=True,
        timeout=10,
    ).stdout
    opened = subprocess.run(
        ["age", "-d", "-i", str(out)], input=sealed, check=True, capture_output=True, timeout=10
    )
    assert opened.stdout == b"hello"
    assert len(parse_identities(out.read_text())) == 1


def test_keygen_never_overwrites(tmp_path: Path) -> None:
    out = tmp_path / "k"
    keygen(out)
    before = out.read_bytes()
    with pytest.raises(FileExistsError):
        keygen(out)
    assert out.read_bytes() == before


def test_load_recipients_string_or_file(tmp_path: Path) -> None:
    (_, r1), (_, r2) = generate_identity(), generate_identity()
    assert load_recipients(r1) == [r1]
    (tmp_path / "rec.txt").write_text(f"# office\n{r1}\n# escrow\n{r2}\n")
    assert load_recipients("rec.txt", tmp_path) == [r1, r2]
    (tmp_path / "bad.txt").write_text(f"{r1}\nAGE-SECRET-KEY-1XYZ\n")
    with pytest.raises(AgeKeyError, match=r"bad\.txt: line 2"):
        load_recipients(str(tmp_path / "bad.txt"))
