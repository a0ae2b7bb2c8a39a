"""The `b2bua` command as a user runs it: a separate process, exit codes and output."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

from media.writer import EncryptedWavWriter

B2BUA = [sys.executable, "-m", "b2bua.cli"]


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*B2BUA, *args], capture_output=True, text=True, timeout=60, cwd=cwd, check=False
    )


def test_help_lists_commands() -> None:
    result = run("--help")
    assert result.returncode == 0
    for command in ("demo", "keygen", "decrypt", "check-config"):
        assert command in result.stdout




def test_keygen_decrypt_round_trip_with_age_tool(tmp_path: Path) -> None:
    key = tmp_path / "recorder.key"
    result = run("keygen", str(key))
    assert result.returncode == 0, result.stderr
    assert key.stat().st_mode & 0o777 == 0o600
    recipient = (tmp_path / "recorder.key.pub").read_text().strip()
    assert recipient.startswith("age1")
    assert run("keygen", str(key)).returncode == 1  # never overwrites a key

    tone = (np.sin(np.arange(16000) * 2 * np.pi * 440 / 8000) * 8000).astype(np.int16)
    frames = np.column_stack([tone, -tone])
    target = tmp_path / "call.wav.age"
    with EncryptedWavWriter(target, [recipient]) as writer:
        writer.write_frames(frames)
    out = tmp_path / "call.wav"
    result = run("decrypt", "--identity", str(key), str(target), str(out))
    assert result.returncode == 0, result.stderr
    data, rate = sf.read(out, dtype="int16")
    assert rate == 8000
    assert np.array_equal(data, frames)

    age = shutil.which("age")
    assert age is not None, "install the Debian package age"
    plain = subprocess.run(
        [age, "-d", "-i", str(key), str(target)], capture_output=True, timeout=30, check=True
    ).stdout
    assert plain[:4] == b"RIFF"


def test_check_config_names_file_and_key(tmp_path: Path) -> None:
    bad = tmp_path / "office.toml"
    bad.write_text('[sip]\nlisten = "127.0.0.1:5060"\nlisten_typo = 1\n')
    result = run("check-config", "--config", str(bad))
    assert result.returncode == 2
    assert "office.toml" in result.stderr
    assert "sip.listen_typo" in result.stderr


def test_unknown_command_is_an_error() -> None:
    result = run("frobnicate")
    assert result.returncode == 2
    assert "invalid choice" in result.stderr


def test_console_script_installed() -> None:
    script = Path(sys.executable).parent / "b2bua"
    assert script.exists(), "pip install -e . provides the b2bua command"
    result = subprocess.run(
        [str(script), "--version"], capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode == 0
    assert result.stdout.startswith("b2bua ")
