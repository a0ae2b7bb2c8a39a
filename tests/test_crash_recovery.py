"""kill -9 of `b2bua serve` in the middle of a recorded call: after a restart the
recording is listed as truncated and decrypts to what was written (issues 4 and 8)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import soundfile as sf

from tests.conftest import free_port, sipp_binary
from tests.sipp_harness import consent_office, phone_answers, trunk_calls_in
from tests.test_consent_calls import CAPTURES, trunk_scenario

pytestmark = pytest.mark.sipp
B2BUA = [sys.executable, "-m", "b2bua.cli"]


def start_serve(config: Path) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [*B2BUA, "serve", "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()  # "b2bua serving SIP on HOST:PORT (pid N); ..."
    proc.stdout.close()  # nothing else is printed there; logs go to stderr
    match = re.search(r"on (\S+):(\d+) ", line)
    assert match, line
    return proc, f"{match.group(1)}:{match.group(2)}"


def sipp(args: list[str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sipp_binary(), *args, "-nostdin", "-timeout", "30s"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


@contextlib.contextmanager
def long_recorded_call(
    tmp_path: Path, config_extra: str = ""
) -> Iterator[tuple[subprocess.Popen[str], Path, Path]]:
    """`b2bua serve` with a consented, recorded call of ~15 s in progress (SIPp trunk
    pressing 1, SIPp phone echoing); yields the server, the config and the recordings directory and
    always ends the peers and the server."""
    phone_port, trunk_port = free_port("127.0.0.3"), free_port("127.0.0.2")
    config = consent_office(tmp_path, trunk_port, phone_port)
    config.write_text(config.read_text() + config_extra)
    scenario = trunk_scenario(tmp_path, str(CAPTURES / "dtmf_2833_1.pcap"))
    text = scenario.read_text().replace(
        '<pause milliseconds="3500"/>', '<pause milliseconds="15000"/>'
    )
    scenario.write_text(text)
    server, address = start_serve(config)
    peers: list[subprocess.Popen[bytes]] = []
    try:
        peers.append(sipp(phone_answers(phone_port)))
        time.sleep(0.3)
        host, port = address.rsplit(":", 1)
        peers.append(sipp(trunk_calls_in((host, int(port)), trunk_port, scenario)))
        yield server, config, tmp_path / "recordings"
    finally:
        for peer in peers:
            peer.kill()
            peer.wait(timeout=10)
        if server.poll() is None:
            server.kill()
            server.wait(timeout=10)


def wait_for_part(recordings: Path, min_size: int) -> Path | None:
    """The recording in progress once it holds more than `min_size` bytes (25 s at most)."""
    deadline = time.monotonic() + 25
    while time.monotonic() < deadline:
        for part in recordings.glob("*.wav.age.part"):
            if part.stat().st_size > min_size:
                return part
        time.sleep(0.1)
    return None


def test_kill_9_mid_call_leaves_a_recoverable_recording(tmp_path: Path) -> None:
    with long_recorded_call(tmp_path) as (server, config, recordings):
        # Wait until two whole 64 KiB chunks are on disk (about 4 s of stereo audio).
        part = wait_for_part(recordings, 2 * 65552 + 300)
        assert part is not None, "the recording never grew to two chunks"
        os.kill(server.pid, signal.SIGKILL)
        server.wait(timeout=10)
    assert part.exists()  # nothing sealed it: the process died

    # Restart: start-up recovery renames the part and marks it truncated.
    restarted, _ = start_serve(config)
    restarted.send_signal(signal.SIGTERM)
    assert restarted.wait(timeout=20) == 0
    listing = subprocess.run(
        [*B2BUA, "recordings", "list", "--json", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    (row,) = json.loads(listing.stdout)
    assert row["status"] == "truncated"
    assert row["consent"]["result"] == "accepted"
    assert Path(row["path"]).exists()
    assert not list(recordings.glob("*.part"))
    out = tmp_path / "recovered.wav"
    result = subprocess.run(
        [*B2BUA, "decrypt", "--identity", str(tmp_path / "recorder.key"), row["path"], str(out)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 3, result.stderr  # truncated, audio recovered
    data, rate = sf.read(out, dtype="int16")
    assert rate == 8000
    assert data.shape[1] == 2
    assert len(data) / rate >= 3.5  # at least the two whole chunks before the kill


def test_sigterm_mid_call_seals_the_recording(tmp_path: Path) -> None:
    """Graceful shutdown: SIGTERM drains (new calls 503), then ends running calls with
    BYE and seals every recording: complete, not truncated, no .part left."""
    with long_recorded_call(tmp_path, "[security]\ndrain_s = 1\n") as (
        server,
        config,
        recordings,
    ):
        assert wait_for_part(recordings, 65552) is not None, "no recording in progress"
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=30) == 0
    assert not list(recordings.glob("*.part"))
    listing = subprocess.run(
        [*B2BUA, "recordings", "list", "--json", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    (row,) = json.loads(listing.stdout)
    assert row["status"] == "complete"
    out = tmp_path / "sealed.wav"
    result = subprocess.run(
        [*B2BUA, "decrypt", "--identity", str(tmp_path / "recorder.key"), row["path"], str(out)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    data, rate = sf.read(out, dtype="int16")
    assert len(data) / rate > 2.0
