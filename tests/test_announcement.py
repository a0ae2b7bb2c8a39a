"""Prompts: the shipped files, loading and resampling, and the paced frame player."""

from __future__ import annotations

import hashlib
import math
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile

from media.announcement import (
    PROMPT_LANGUAGES,
    PROMPT_NAMES,
    Prompt,
    PromptError,
    PromptPlayer,
    load_prompt,
    resample,
    shipped_prompt,
)
from media.dtmf import InbandDtmfDetector
from media.g711 import decode_ulaw, encode_alaw, encode_ulaw

SHIPPED = [(lang, name) for lang in PROMPT_LANGUAGES for name in PROMPT_NAMES]


def sox(*args: str) -> None:
    subprocess.run(["sox", *args], check=True, capture_output=True, timeout=30)


def level_at(samples: np.ndarray, freq: float, rate: int = 8000) -> float:
    """Amplitude of a sine at `freq` (least squares fit on sin and cos)."""
    t = np.arange(len(samples)) / rate
    basis = np.stack((np.sin(2 * np.pi * freq * t), np.cos(2 * np.pi * freq * t)), axis=1)
    coef, *_ = np.linalg.lstsq(basis, samples.astype(np.float64), rcond=None)
    return float(np.hypot(*coef))


# ------------------------------------------------------------------ shipped prompts


@pytest.mark.parametrize(("language", "name"), SHIPPED)
def test_shipped_prompt_is_small_8khz_mono_pcm(language: str, name: str) -> None:
    path = shipped_prompt(language, name)
    assert path.name == f"{language}_{name}.wav"
    info = soundfile.info(str(path))
    assert (info.samplerate, info.channels, info.subtype) == (8000, 1, "PCM_16")
    assert 0.5 < info.duration < 10.0
    assert path.stat().st_size < 150_000
    prompt = load_prompt(path)
    assert prompt.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert prompt.samples.dtype == np.int16
    assert len(prompt.samples) == info.frames
    assert prompt.duration == pytest.approx(info.duration)
    # Normalised by the script to -3 dBFS peak: audible, not clipped.
    peak = int(np.abs(prompt.samples.astype(np.int32)).max())
    assert 16_000 < peak < 32_767


@pytest.mark.parametrize(("language", "name"), SHIPPED)
def test_shipped_prompt_causes_no_dtmf_talk_off(language: str, name: str) -> None:
    samples = load_prompt(shipped_prompt(language, name)).samples
    # Straight, and through G.711 as the caller's phone hears it (and echoes it back).
    for signal in (samples, decode_ulaw(encode_ulaw(samples))):
        detector = InbandDtmfDetector()
        pressed = detector.feed(signal) + detector.finish()
        assert pressed == []


def test_shipped_prompt_rejects_unknown_names() -> None:
    with pytest.raises(ValueError, match="language"):
        shipped_prompt("fr", "consent")
    with pytest.raises(ValueError, match="prompt named"):
        shipped_prompt("de", "hello")
    with pytest.raises(ValueError, match="prompt named"):
        shipped_prompt("de", "../../etc/passwd")


def test_make_prompts_script_is_shipped_with_the_prompts() -> None:
    script = Path(__file__).parent.parent / "scripts" / "make_prompts.sh"
    text = script.read_text()
    assert "espeak-ng" in text
    for lang, name in SHIPPED:
        assert f"say {lang} {name} " in text


# ------------------------------------------------------------------ loading, resampling


@pytest.mark.parametrize("rate", [44100, 16000, 48000, 11025])
def test_load_resamples_sox_file_to_8khz(tmp_path: Path, rate: int) -> None:
    path = tmp_path / f"tone{rate}.wav"
    # Stereo 1 kHz at -6 dBFS on both channels, 1 s.
    sox(
        "-n",
        "-r",
        str(rate),
        "-c",
        "2",
        "-b",
        "16",
        str(path),
        "synth",
        "1",
        "sine",
        "1000",
        "gain",
        "-6",
    )
    prompt = load_prompt(path)
    assert prompt.sample_rate == 8000
    assert len(prompt.samples) == 8000
    assert prompt.name == f"tone{rate}"
    middle = prompt.samples[400:-400]  # away from the filter's edge transients
    expected = 32768 * 10 ** (-6 / 20)
    assert level_at(middle, 1000.0) == pytest.approx(expected, rel=0.03)
    # Little energy anywhere but 1 kHz: the residual of the fit is 40 dB down.
    t = np.arange(len(middle)) / 8000
    basis = np.stack((np.sin(2 * np.pi * 1000 * t), np.cos(2 * np.pi * 1000 * t)), axis=1)
    coef, *_ = np.linalg.lstsq(basis, middle.astype(np.float64), rcond=None)
    residual = middle - basis @ coef
    assert np.sqrt(np.mean(residual**2)) < 0.01 * expected / math.sqrt(2)


def test_resampler_removes_what_8khz_cannot_carry() -> None:
    rate = 44100
    t = np.arange(rate) / rate
    tone = 0.5 * np.sin(2 * np.pi * 5000.0 * t)  # above the 4 kHz Nyquist of the output
    out = resample(tone, rate, 8000)
    assert len(out) == 8000
    # 5 kHz would alias to 3 kHz: it must be at least 60 dB down.
    assert level_at(out[400:-400], 3000.0) < 0.5 * 10 ** (-60 / 20)
    passband = resample(0.5 * np.sin(2 * np.pi * 300.0 * t), rate, 8000)
    assert level_at(passband[400:-400], 300.0) == pytest.approx(0.5, rel=0.01)


def test_resampler_upsamples_too() -> None:
    x = np.sin(2 * np.pi * 500.0 * np.arange(4000) / 4000)
    out = resample(x, 4000, 8000)
    assert len(out) == 8000
    assert level_at(out[400:-400], 500.0) == pytest.approx(1.0, rel=0.01)
    assert np.array_equal(resample(x, 8000, 8000), x)
    assert len(resample(np.zeros(0), 44100, 8000)) == 0


def test_load_mixes_channels_to_mono(tmp_path: Path) -> None:
    path = tmp_path / "left.flac"  # any format soundfile reads
    left = (0.5 * np.sin(2 * np.pi * 440 * np.arange(8000) / 8000)).astype(np.float64)
    soundfile.write(str(path), np.stack((left, np.zeros_like(left)), axis=1), 8000, "PCM_16")
    prompt = load_prompt(path)
    assert level_at(prompt.samples, 440.0) == pytest.approx(0.25 * 32768, rel=0.01)
    assert not prompt.samples.flags.writeable


def test_load_rejects_what_is_not_audio(tmp_path: Path) -> None:
    bogus = tmp_path / "notes.wav"
    bogus.write_bytes(b"RIFF but not really a sound file")
    with pytest.raises(PromptError, match=r"notes\.wav"):
        load_prompt(bogus)
    with pytest.raises(PromptError, match="missing"):
        load_prompt(tmp_path / "missing.wav")


# ------------------------------------------------------------------ the player


def prompt_of(seconds: float) -> Prompt:
    n = round(seconds * 8000)
    samples = (8000 * np.sin(2 * np.pi * 440 * np.arange(n) / 8000)).astype(np.int16)
    return Prompt("test", samples, "0" * 64)


def test_player_paces_in_real_time_without_bursts() -> None:
    prompt = prompt_of(1.01)  # 8080 samples: 51 frames, the last one padded
    player = PromptPlayer(prompt, encode_ulaw, first_seq=65530, first_ts=2**32 - 320)
    assert player.frames_due(0.0) == []  # not started
    player.start(100.0)
    assert player.ends_at == pytest.approx(100.0 + 51 * 0.02)
    frames = []
    rng = np.random.default_rng(7)
    now = 100.0
    for _ in range(200):  # bounded: far more ticks than the prompt needs
        got = player.frames_due(now)
        assert len(got) <= 2  # a tick jitter of < 20 ms never releases more than two
        for f in got:
            assert now >= 100.0 + f.index * 0.02 - 1e-9  # never early
        frames += got
        if player.finished:
            break
        now += 0.02 + float(rng.uniform(-0.008, 0.008))
    assert player.finished
    assert len(frames) == math.ceil(prompt.duration / 0.02) == player.frame_count == 51
    assert [f.index for f in frames] == list(range(51))
    assert all(len(f.payload) == 160 for f in frames)
    assert [f.seq for f in frames[:8]] == [65530, 65531, 65532, 65533, 65534, 65535, 0, 1]
    assert frames[1].ts == 2**32 - 160 and frames[2].ts == 0 and frames[3].ts == 160
    assert [f.marker for f in frames] == [True] + [False] * 50
    assert len({f.ssrc for f in frames}) == 1
    decoded = np.concatenate([decode_ulaw(f.payload) for f in frames])
    assert np.array_equal(decoded[:8080], decode_ulaw(encode_ulaw(prompt.samples)))
    assert not decoded[8080:].any()  # padding is silence
    assert player.frames_due(now + 10) == []


def test_player_catch_up_is_bounded_and_the_prompt_plays_whole() -> None:
    player = PromptPlayer(prompt_of(2.0), encode_alaw, max_burst=5)
    player.start(0.0)
    assert len(player.frames_due(0.0)) == 1
    # The loop stalls for a second: only five frames go out at once ...
    late = player.frames_due(1.0)
    assert len(late) == 5
    assert [f.index for f in late] == [1, 2, 3, 4, 5]
    # ... and then the schedule has slipped: real time again, nothing skipped.
    assert player.frames_due(1.0) == []
    assert len(player.frames_due(1.02)) == 1
    assert player.next_due() == pytest.approx(1.04)
    assert player.ends_at == pytest.approx(1.0 + (100 - 5) * 0.02)
    total = 7
    now = 1.02
    for _ in range(500):
        now += 0.02
        total += len(player.frames_due(now))
        if player.finished:
            break
    assert total == 100
    ends_at = player.ends_at
    assert ends_at is not None
    assert now == pytest.approx(ends_at - 0.02)


def test_player_stop_is_barge_in() -> None:
    player = PromptPlayer(prompt_of(1.0), encode_ulaw)
    player.start(0.0)
    assert len(player.frames_due(0.1)) == 5
    player.stop()
    assert player.finished
    assert player.frames_due(0.5) == []
    assert player.next_due() is None
    with pytest.raises(RuntimeError):
        player.start(1.0)


def test_player_frames_fit_relay_inject() -> None:
    # RelayLeg.inject(payload, *, ssrc, seq, ts, marker): the frame carries each one.
    import inspect

    from rtp.relay import RelayLeg

    params = inspect.signature(RelayLeg.inject).parameters
    player = PromptPlayer(prompt_of(0.1), encode_ulaw)
    player.start(0.0)
    frame = player.frames_due(0.0)[0]
    for name in ("payload", "ssrc", "seq", "ts", "marker"):
        assert name in params
        assert hasattr(frame, name)
