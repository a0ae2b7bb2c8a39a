"""Every script in examples/ runs here, bounded, so none of them rots.

The server is the real B2BUA (`start_server`) in a thread of this process; each example
is a subprocess, as a user would start it: the office.toml through `b2bua check-config`,
the softphone and the trunk caller together (a recorded consent call), the plot script
on an encrypted recording, and the sipvicious audit bound to 127.0.0.9.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from b2bua.archive.catalog import Catalog
from b2bua.archive.keys import keygen
from media.writer import EncryptedWavWriter
from tests.pyvoip_util import ServerThread

EXAMPLES = Path(__file__).parent.parent / "examples"
PY = sys.executable


def run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PY, *args], capture_output=True, text=True, timeout=timeout, check=False)


def office(tmp_path: Path, mode: str = "keypress") -> Path:
    keygen(tmp_path / "recorder.key")
    path = tmp_path / "office.toml"
    path.write_text(
        "\n".join(
            [
                "[sip]",
                'listen = "127.0.0.1:0"',
                "[rtp]",
                'ports = "37000-37999"',
                "[trunk]",
                'host = "127.0.0.2:5080"',
                'inbound_extension = "1000"',
                "[[extension]]",
                'number = "1000"',
                'password = "pw1000"',
                "employee_consent = true",
                "[recording]",
                f'mode = "{mode}"',
                'language = "en"',
                'public_key = "recorder.key.pub"',
            ]
        )
        + "\n"
    )
    return path


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[ServerThread, str]]:
    with ServerThread(office(tmp_path)) as thread:
        host, port = thread.call(lambda: thread.server.sip_address)
        yield thread, f"{host}:{port}"


def test_examples_readme_names_every_script() -> None:
    readme = (EXAMPLES / "README.md").read_text()
    scripts = sorted(p.name for p in EXAMPLES.glob("*.py"))
    assert scripts == [
        "plot_recording.py",
        "sipvicious_audit.py",
        "softphone.py",
        "trunk_caller.py",
    ]
    for name in [*scripts, "office.toml"]:
        assert name in readme


def test_office_toml_passes_check_config(tmp_path: Path) -> None:
    shutil.copy(EXAMPLES / "office.toml", tmp_path / "office.toml")
    keygen(tmp_path / "recorder.key")  # the file names office.toml expects
    result = run("-m", "b2bua.cli", "check-config", "--config", str(tmp_path / "office.toml"))
    assert result.returncode == 0, result.stderr
    assert "3 extensions, recording mode keypress" in result.stdout
    text = (EXAMPLES / "office.toml").read_text()
    for needle in ('language = "de"', "retention_days = 30", "register = true"):
        assert needle in text


@pytest.mark.timeout(90)
def test_softphone_answers_the_trunk_callers_consented_call(
    server: tuple[ServerThread, str], tmp_path: Path
) -> None:
    thread, address = server
    phone = subprocess.Popen(
        [
            PY,
            str(EXAMPLES / "softphone.py"),
            "--server",
            address,
            "--number",
            "1000",
            "--password",
            "pw1000",
            "--ip",
            "127.0.0.3",
            "--seconds",
            "45",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        registrar = thread.server.switch.registrar
        now = thread.server.runner.now
        assert thread.wait_for(lambda: bool(registrar.lookup("1000", now())), 15)
        trunk = run(
            str(EXAMPLES / "trunk_caller.py"),
            "--server",
            address,
            "--ip",
            "127.0.0.2",
            "--text",
            "Hello, this is the example trunk calling.",
            timeout=60,
        )
        phone_out, phone_err = phone.communicate(timeout=30)
    finally:
        if phone.poll() is None:
            phone.kill()
            phone.communicate()
    assert trunk.returncode == 0, trunk.stdout + trunk.stderr
    assert "pressed 1 (RFC 4733)" in trunk.stdout
    assert "call ended" in trunk.stdout
    assert phone.returncode == 0, phone_out + phone_err
    assert "registered 1000 from 127.0.0.3" in phone_out
    assert "1 call(s), 1 with audio; deregistered" in phone_out
    deadline = time.monotonic() + 5
    while True:  # the recording is sealed right after the BYE
        with Catalog.open(tmp_path / "recordings") as catalog:
            rows = catalog.list()
        if (rows and rows[0]["status"] != "recording") or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    (row,) = rows
    assert row["status"] == "complete"
    assert row["consent"]["result"] == "accepted"
    assert row["consent"]["method"] == "rfc4733"


@pytest.mark.timeout(60)
def test_plot_script_draws_both_channels(tmp_path: Path) -> None:
    recipient = keygen(tmp_path / "recorder.key")
    t = np.arange(16000)
    left = (np.sin(t * 2 * np.pi * 440 / 8000) * 8000).astype(np.int16)
    right = (np.sin(t * 2 * np.pi * 1000 / 8000) * 4000).astype(np.int16)
    target = tmp_path / "call.wav.age"
    with EncryptedWavWriter(target, [recipient]) as writer:
        writer.write_frames(np.column_stack([left, right]))
    png = tmp_path / "call.png"
    result = run(
        str(EXAMPLES / "plot_recording.py"),
        "--identity",
        str(tmp_path / "recorder.key"),
        str(target),
        str(png),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    head = png.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
    assert (width, height) == (1000, 450)
    # A wrong key plots nothing and says so by its exit status.
    keygen(tmp_path / "other.key")
    bad = run(
        str(EXAMPLES / "plot_recording.py"),
        "--identity",
        str(tmp_path / "other.key"),
        str(target),
        str(tmp_path / "bad.png"),
    )
    assert bad.returncode == 1
    assert not (tmp_path / "bad.png").exists()


@pytest.mark.timeout(90)
def test_sipvicious_audit_finds_nothing(server: tuple[ServerThread, str]) -> None:
    _, address = server
    result = run(
        str(EXAMPLES / "sipvicious_audit.py"),
        "--target",
        address,
        "--bind",
        "127.0.0.9",
        "--timeout",
        "40",
        timeout=85,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "| unknown" in result.stdout  # svmap got an answer without a User-Agent
    assert "FINDING" not in result.stdout
