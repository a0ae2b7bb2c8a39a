"""End to end through the real relay on loopback: phones -> relay -> tap -> recorder -> file.

No SIP: the legs are opened and bridged directly, the recorder is started at the
"consent" packet. The file is decrypted with ``decrypt_file`` and checked by signal
analysis (FFT, cross-correlation), and the crash and disk-full paths run in a separate
process (tests/recorder_proc.py) that is killed with SIGKILL or limited with
RLIMIT_FSIZE.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
import soundfile as sf

from b2bua.archive.keys import decrypt_file
from b2bua.recorder import LEFT, RecordingResult
from media.agefile import CHUNK_SIZE, generate_identity
from media.writer import parse_wav_layout
from rtp.relay import new_event_loop
from tests.recorder_proc import (
    OFFICE_HZ,
    PROMPT_HZ,
    PTIME,
    RATE,
    TRUNK_HZ,
    RecordedCall,
    TrunkPhone,
)

REPO = Path(__file__).resolve().parent.parent
PROC = Path(__file__).resolve().parent / "recorder_proc.py"
PORTS = (46000, 46999)  # a range of its own, away from other tests running at once
PROC_PORTS = "45000-45999"
MUTER_DELAY = 0.1  # CallRecorder's default in-band DTMF muter delay (leading silence)
START_N = 10  # the consent packet: 200 ms of prompt before it
RECORDED_PACKETS = 175  # 3.5 s after consent
EVENT_N = START_N + 100  # RFC 4733 digit 2.0 s into the recording...
EVENT_PACKETS = 12  # ...for 240 ms (10 updates, end sent 3 times), instead of audio
SEALED = CHUNK_SIZE + 16  # an age STREAM chunk on disk: 64 KiB plus the Poly1305 tag
FloatArray = npt.NDArray[np.float64]


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Path, str]:
    identity, recipient = generate_identity()
    key = tmp_path / "key.txt"
    key.write_text(f"# test key\n{identity}\n")
    return key, recipient


def spectrum_peak(x: FloatArray, lo: float, hi: float) -> float:
    """Frequency of the strongest bin in [lo, hi] Hz."""
    mag = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    freqs = np.fft.rfftfreq(len(x), 1 / RATE)
    band = (freqs >= lo) & (freqs <= hi)
    return float(freqs[band][np.argmax(mag[band])])


def band_power(x: FloatArray, hz: float, width: float = 20.0) -> float:
    power = np.abs(np.fft.rfft(x * np.hanning(len(x)))) ** 2
    freqs = np.fft.rfftfreq(len(x), 1 / RATE)
    return float(power[np.abs(freqs - hz) <= width].sum())


def highpass(x: FloatArray, cutoff: float) -> FloatArray:
    spec = np.fft.rfft(x)
    spec[np.fft.rfftfreq(len(x), 1 / RATE) < cutoff] = 0
    out: FloatArray = np.fft.irfft(spec, len(x))
    return out


def lag_of(left: FloatArray, right: FloatArray, max_lag: int) -> int:
    """Samples by which ``right`` lags ``left`` (peak of their cross-correlation)."""
    n = len(left) + len(right)
    corr = np.fft.irfft(np.fft.rfft(right, n) * np.conj(np.fft.rfft(left, n)), n)
    lags = np.concatenate((np.arange(0, max_lag + 1), np.arange(-max_lag, 0)))
    values = np.concatenate((corr[: max_lag + 1], corr[n - max_lag :]))
    return int(lags[np.argmax(values)])


def rms(x: FloatArray) -> float:
    return float(np.sqrt(np.mean(x**2)))


# ------------------------------------------------------------- in-process call


async def _record_call(path: Path, recipient: str) -> tuple[RecordingResult, float, float, float]:
    loop = asyncio.get_running_loop()
    trunk = TrunkPhone(seconds=10.0, events={EVENT_N: (5, EVENT_PACKETS)})
    call = await RecordedCall.open(PORTS, trunk)
    started: list[float] = []

    def hook(n: int) -> None:
        if n == START_N:
            now = loop.time()
            call.recorder.start(now, path, [recipient], {"consent": "keypress", "digit": "1"})
            trunk.consented = True
            started.append(now)

    trunk.hook = hook
    try:
        await trunk.run(call.leg_trunk.address, START_N + RECORDED_PACKETS)
        await asyncio.sleep(0.1)  # the last echoes come back
        result = call.ticker.finish(call.recorder)
        assert result is not None
        # The office phone really echoed every audio packet (events are not echoed).
        assert call.office.echoed == START_N + RECORDED_PACKETS - EVENT_PACKETS
        assert call.tap.overflow == 0
    finally:
        await call.close()
    (ev_start, ev_end) = trunk.event_times[0]
    return result, started[0], ev_start - started[0], ev_end - started[0]


def test_recorded_call_through_relay(tmp_path: Path, keys: tuple[Path, str]) -> None:
    key, recipient = keys
    path = tmp_path / "call.wav.age"
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        result, _, ev_start, ev_end = runner.run(
            asyncio.wait_for(_record_call(path, recipient), 20)
        )
    assert path.exists() and not path.with_name(path.name + ".part").exists()
    assert not result.truncated and result.error is None
    assert result.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert result.size == path.stat().st_size

    out = tmp_path / "call.wav"
    assert decrypt_file(key, path, out, stderr=io.StringIO()) == 0
    data, rate = sf.read(str(out), dtype="int16")
    assert rate == RATE and data.shape == (result.samples, 2)
    parse_wav_layout(out.read_bytes()[:4096])  # the consent record did not break the WAV

    # Duration: the file follows the relay clock from consent to stop (minus the mixer's
    # 60 ms jitter delay), plus the muter's leading delay; that is the audio sent after
    # consent plus the 100 ms the test waited for the last echoes.
    recorded = result.stopped_at - result.started_at
    assert result.duration_s == pytest.approx(recorded - 0.06 + MUTER_DELAY, abs=0.03)
    sent = RECORDED_PACKETS * PTIME
    assert abs(result.duration_s - (sent + 0.1 - 0.06 + MUTER_DELAY)) < 0.1, result.duration_s
    assert result.duration_s == data.shape[0] / RATE

    left = data[:, 0].astype(np.float64)
    right = data[:, 1].astype(np.float64)
    # A stretch before the digit: left is the external party, right the office party.
    seg = slice(round(0.3 * RATE), round(1.9 * RATE))
    assert abs(spectrum_peak(left[seg], 200, 1200) - TRUNK_HZ) <= 5
    assert abs(spectrum_peak(right[seg], 200, 1200) - OFFICE_HZ) <= 5
    assert band_power(left[seg], OFFICE_HZ) < 1e-3 * band_power(left[seg], TRUNK_HZ)
    # Nothing from before consent (the 600 Hz prompt) on the external channel.
    assert band_power(left, PROMPT_HZ, 30) < 1e-3 * band_power(left, TRUNK_HZ)

    # Alignment: the office echoes the chirps 40 ms later; only chirps pass 1.3 kHz.
    lag = lag_of(highpass(left[seg], 1300), highpass(right[seg], 1300), round(0.2 * RATE))
    assert abs(lag / RATE - 0.04) <= 0.02, lag / RATE

    # The RFC 4733 digit: reported once, never in the audio where it was sent.
    assert [(d.side, d.digit, d.method) for d in result.digits] == [(LEFT, "5", "rfc4733")]
    assert result.mixer.left.events_skipped == EVENT_PACKETS
    lo = round((ev_start + MUTER_DELAY + 0.01) * RATE)
    hi = round((ev_end + MUTER_DELAY - 0.01) * RATE)
    assert hi - lo > 0.15 * RATE
    assert rms(left[lo:hi]) < 20, rms(left[lo:hi])
    assert rms(left[lo - round(0.5 * RATE) : lo - round(0.2 * RATE)]) > 1000  # audio before


# ------------------------------------------------------------- separate process


def _start_proc(out: Path, recipient: str, *extra: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            str(PROC),
            "--out",
            str(out),
            "--recipient",
            recipient,
            "--ports",
            PROC_PORTS,
            *extra,
        ],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def _age_payload_start(part: Path) -> int | None:
    """Offset of the first STREAM chunk: after the header's MAC line and the nonce."""
    head = part.read_bytes()[:4096]
    mac = head.find(b"\n--- ")
    if mac < 0:
        return None
    eol = head.find(b"\n", mac + 1)
    return None if eol < 0 else eol + 1 + 16


def test_sigkill_keeps_every_whole_chunk(tmp_path: Path, keys: tuple[Path, str]) -> None:
    key, recipient = keys
    out = tmp_path / "killed.wav.age"
    part = out.with_name(out.name + ".part")
    proc = _start_proc(out, recipient, "--seconds", "30")
    try:
        assert proc.stdout is not None
        started = json.loads(proc.stdout.readline())
        assert started["event"] == "started", started
        deadline = time.monotonic() + 30
        chunks = 0
        while chunks < 3:  # bounded by the deadline
            assert time.monotonic() < deadline, "the .part file did not grow to 3 chunks"
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else b""
            time.sleep(0.05)
            start = _age_payload_start(part) if part.exists() else None
            if start is not None:
                chunks = (part.stat().st_size - start) // SEALED
        time.sleep(0.7)  # kill in the middle of the next chunk: that part is lost
        assert proc.poll() is None
        killed_at = time.monotonic()
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=10) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
    assert not out.exists()  # never sealed: recovery at start-up would rename it
    start = _age_payload_start(part)
    assert start is not None
    size = part.stat().st_size
    whole = (size - start) // SEALED
    assert whole >= 3 and (size - start) % SEALED == 0  # whole chunks only: one write each

    wav = tmp_path / "killed.wav"
    err = io.StringIO()
    assert decrypt_file(key, part, wav, stderr=err) == 3
    assert "truncated" in err.getvalue()
    data, rate = sf.read(str(wav), dtype="int16")
    layout = parse_wav_layout(wav.read_bytes()[:4096])
    assert rate == RATE and data.shape == ((whole * CHUNK_SIZE - layout.data_offset) // 4, 2)
    # All audio up to the last whole chunk: the lost tail is at most one chunk (2.048 s)
    # plus what was still in the pipeline (60 ms jitter delay, a 100 ms batch, a tick)
    # and the 50 ms this test polls at; the muter's 100 ms of leading silence counts.
    sent = killed_at - started["monotonic"]
    recovered = data.shape[0] / RATE
    assert sent - 2.35 <= recovered <= sent - 0.5, (sent, recovered)
    body = data[round(0.3 * RATE) :, 0].astype(np.float64)
    assert abs(spectrum_peak(body, 200, 1200) - TRUNK_HZ) <= 5


def test_disk_full_ends_recording_not_call(tmp_path: Path, keys: tuple[Path, str]) -> None:
    """RLIMIT_FSIZE makes the second chunk's write fail with EFBIG, for real."""
    key, recipient = keys
    out = tmp_path / "full.wav.age"
    limit = 100_000  # the age header and one sealed chunk fit, the second does not
    proc = _start_proc(
        out, recipient, "--seconds", "20", "--fsize-limit", str(limit), "--linger", "1.0"
    )
    try:
        stdout, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    events = [json.loads(line) for line in stdout.decode().splitlines()]
    log = stderr.decode()
    assert proc.returncode == 0, log
    assert [e["event"] for e in events] == ["started", "failed", "done"], events
    done = events[-1]
    assert "event=recording_failed call=call-1 error=EFBIG" in log, log
    assert "ERROR b2bua.recorder" in log
    assert done["truncated"] is True and done["error"] == "EFBIG"
    # The call went on: the relay kept forwarding for the second after the failure.
    assert done["forwarded_after_failure"] >= 30, done
    assert done["state"] == "stopped"

    assert out.exists() and not out.with_name(out.name + ".part").exists()
    assert out.stat().st_size == done["size"] <= limit
    assert hashlib.sha256(out.read_bytes()).hexdigest() == done["sha256"]
    wav = tmp_path / "full.wav"
    assert decrypt_file(key, out, wav, stderr=io.StringIO()) == 3
    data, rate = sf.read(str(wav), dtype="int16")
    layout = parse_wav_layout(wav.read_bytes()[:4096])
    assert rate == RATE
    assert data.shape == ((CHUNK_SIZE - layout.data_offset) // 4, 2)
    assert data.shape[0] == done["samples"]
    body = data[round(0.3 * RATE) :, 0].astype(np.float64)
    assert abs(spectrum_peak(body, 200, 1200) - TRUNK_HZ) <= 5
