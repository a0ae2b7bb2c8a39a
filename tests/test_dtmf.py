"""In-band DTMF detector: Q.24-style acceptance and rejection, talk-off with real speech.

Speech comes from espeak-ng at test time (English and German, several voices, speeds and
pitches), resampled to 8 kHz with sox. If either tool is missing the tests fail: CI
installs both, and a skipped talk-off test would prove nothing.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from media import g711
from media.dtmf import (
    DIGIT_EVENTS,
    EVENT_DIGITS,
    DtmfDigit,
    InbandDtmfDetector,
    tone,
)
from media.dtmf_mute import DtmfMuter, mute_spans

FS = 8000
I16 = npt.NDArray[np.int16]


def silence(seconds: float) -> I16:
    return np.zeros(round(seconds * FS), dtype=np.int16)


def with_noise(signal: I16, tone_power: float, snr_db: float, seed: int) -> I16:
    """Add white noise `snr_db` below `tone_power` (mean square of the tone alone)."""
    rng = np.random.default_rng(seed)
    noise = rng.normal(0.0, np.sqrt(tone_power / 10 ** (snr_db / 10)), len(signal))
    return np.clip(np.round(signal + noise), -32768, 32767).astype(np.int16)


def detect(signal: I16, block: int = 160) -> tuple[list[DtmfDigit], list[DtmfDigit]]:
    """Feed in blocks; return (presses as reported, presses with their end)."""
    det = InbandDtmfDetector(FS)
    pressed: list[DtmfDigit] = []
    for i in range(0, len(signal), block):
        pressed += det.feed(signal[i : i + block], now=i / FS)
    return pressed, det.finish()


def digits_of(presses: list[DtmfDigit]) -> str:
    return "".join(p.digit for p in presses)


def test_event_digit_mapping_is_rfc4733() -> None:
    # RFC 4733 table 3: 0-9 -> "0".."9", 10 -> "*", 11 -> "#", 12-15 -> "A".."D".
    assert len(EVENT_DIGITS) == 16
    assert EVENT_DIGITS[0] == "0"
    assert EVENT_DIGITS[9] == "9"
    assert EVENT_DIGITS[10] == "*"
    assert EVENT_DIGITS[11] == "#"
    assert EVENT_DIGITS[12:] == "ABCD"
    assert all(EVENT_DIGITS[DIGIT_EVENTS[d]] == d for d in EVENT_DIGITS)


@pytest.mark.parametrize("level", [-3.0, -10.0, -18.0, -25.0])
def test_all_digits_detected_once_in_noise(level: float) -> None:
    for n, digit in enumerate(EVENT_DIGITS):
        t = tone(digit, 0.06, level)
        power = float(np.mean(t.astype(np.float64) ** 2))
        signal = np.concatenate((silence(0.1), t, silence(0.1)))
        noisy = with_noise(signal, power, 20.0, seed=n)
        # Odd block sizes: the detector must not care how the stream is cut.
        pressed, finished = detect(noisy, block=37 + 13 * n)
        assert digits_of(pressed) == digit, (level, digit, pressed)
        assert len(finished) == 1
        press = finished[0]
        # Reported bounds within 5 ms of the true tone [800, 1280).
        assert abs(press.start_sample - 800) <= 40
        assert press.end_sample is not None
        assert abs(press.end_sample - 1280) <= 40
        assert pressed[0].end_sample is None
        assert pressed[0].method == "inband"


def test_reported_time_is_the_callers_now() -> None:
    det = InbandDtmfDetector()
    signal = np.concatenate((silence(0.05), tone("7", 0.1, -10)))
    got: list[DtmfDigit] = []
    for i in range(0, len(signal), 160):
        got += det.feed(signal[i : i + 160], now=1000.0 + i / FS)
    assert [g.digit for g in got] == ["7"]
    assert got[0].at is not None
    assert 1000.05 < got[0].at < 1000.15


@pytest.mark.parametrize("offset_samples", [0, 7, 13, 20, 29, 33, 39])
def test_minimum_duration_40ms_yes_30ms_no(offset_samples: int) -> None:
    lead = np.zeros(offset_samples, dtype=np.int16)
    for digit in "1D0#":
        long_tone = np.concatenate((lead, silence(0.05), tone(digit, 0.040, -10), silence(0.1)))
        short_tone = np.concatenate((lead, silence(0.05), tone(digit, 0.030, -10), silence(0.1)))
        assert digits_of(detect(long_tone)[0]) == digit
        assert digits_of(detect(short_tone)[0]) == ""


@pytest.mark.parametrize("offset", [-0.04, -0.035, 0.035, 0.04])
def test_off_frequency_rejected(offset: float) -> None:
    for digit in "159D*":
        signal = np.concatenate((silence(0.05), tone(digit, 0.1, -10, freq_offset=offset)))
        assert digits_of(detect(signal)[0]) == "", (digit, offset)


@pytest.mark.parametrize("offset", [-0.015, 0.0, 0.015])
def test_within_frequency_tolerance_accepted(offset: float) -> None:
    for digit in "159D*":
        signal = np.concatenate((silence(0.05), tone(digit, 0.1, -10, freq_offset=offset)))
        assert digits_of(detect(signal)[0]) == digit, (digit, offset)


@pytest.mark.parametrize(
    ("twist_db", "accepted"),
    [(0.0, True), (6.0, True), (7.5, True), (-3.0, True), (-3.5, True),
     (9.0, False), (12.0, False), (-5.0, False), (-8.0, False)],
)  # fmt: skip
def test_twist_limits(twist_db: float, accepted: bool) -> None:
    # Positive twist: high group louder (normal twist, limit 8 dB); negative: low group
    # louder (reverse twist, limit 4 dB).
    for digit in "3A*":
        signal = np.concatenate((silence(0.05), tone(digit, 0.1, -6, twist_db=twist_db)))
        assert digits_of(detect(signal)[0]) == (digit if accepted else ""), (digit, twist_db)


def test_minimum_level() -> None:
    # -25 dBFS peak = about -28 dBm0 per tone: must operate. -32 dBFS peak = about
    # -35 dBm0 per tone: below the -32 dBm0 threshold.
    loud_enough = np.concatenate((silence(0.05), tone("8", 0.1, -25)))
    too_quiet = np.concatenate((silence(0.05), tone("8", 0.1, -32)))
    assert digits_of(detect(loud_enough)[0]) == "8"
    assert digits_of(detect(too_quiet)[0]) == ""


def test_sequence_with_50ms_gaps_and_repeats() -> None:
    sequence = "1234567890*#ABCD" + "1155"
    parts = [silence(0.05)]
    for digit in sequence:
        parts += [tone(digit, 0.05, -12), silence(0.05)]
    signal = np.concatenate(parts)
    power = float(np.mean(tone("1", 0.05, -12).astype(np.float64) ** 2))
    noisy = with_noise(signal, power, 20.0, seed=99)
    pressed, finished = detect(noisy, block=160)
    assert digits_of(pressed) == sequence
    assert digits_of(finished) == sequence
    starts = [p.start_sample for p in pressed]
    assert starts == sorted(starts)


def test_long_press_reported_once_and_short_dropout_bridged() -> None:
    # A 2 s key press with a 10 ms interruption in the middle is one press (Q.24).
    press = tone("9", 2.0, -10)
    press[8000:8080] = 0
    signal = np.concatenate((silence(0.05), press, silence(0.1)))
    pressed, finished = detect(signal, block=321)
    assert digits_of(pressed) == "9"
    assert len(finished) == 1


def test_same_digit_after_real_pause_is_two_presses() -> None:
    signal = np.concatenate(
        (tone("4", 0.1, -10), silence(0.04), tone("4", 0.1, -10), silence(0.05))
    )
    assert digits_of(detect(signal)[0]) == "44"


def test_silence_and_white_noise_give_nothing() -> None:
    rng = np.random.default_rng(5)
    noise = np.clip(rng.normal(0, 3000, FS * 5), -32768, 32767).astype(np.int16)
    assert detect(np.zeros(FS * 2, dtype=np.int16))[0] == []
    assert detect(noise)[0] == []


def test_three_tone_chord_rejected() -> None:
    # Two row tones and one column tone, all at one level: not a DTMF digit.
    two = tone("1", 0.1, -10)  # 697 + 1209 Hz, each with amplitude a
    a = 32767 * 10 ** (-10 / 20) / 2
    third = a * np.sin(2 * np.pi * 770 * np.arange(len(two)) / FS)
    chord = np.round(two + third).astype(np.int16)
    signal = np.concatenate((silence(0.05), chord))
    assert digits_of(detect(signal)[0]) == ""


def test_survives_ulaw_and_alaw() -> None:
    parts = [silence(0.05)]
    for digit in "159#":
        parts += [tone(digit, 0.05, -20), silence(0.05)]
    signal = np.concatenate(parts)
    assert digits_of(detect(g711.decode_ulaw(g711.encode_ulaw(signal)))[0]) == "159#"
    assert digits_of(detect(g711.decode_alaw(g711.encode_alaw(signal)))[0]) == "159#"


# --- talk-off with real speech -----------------------------------------------------

SENTENCES = {
    "en": (
        "Hello and thank you for calling. This call may be recorded for quality and "
        "training purposes. Please press one to agree, or two to decline. "
        "Four, seven, nine. Hmm, aah, eeh, ooh, wheee, the quick brown fox jumps over "
        "the lazy dog."
    ),
    "de": (
        "Guten Tag, Sie sind mit der Firma Beispiel verbunden. Dieses Gespräch wird "
        "aufgezeichnet, wenn Sie zustimmen. Drücken Sie die Eins für Ja und die Zwei für "
        "Nein. Sechs, sieben, acht, neun. Ja, genau, ich verstehe, auf Wiederhören."
    ),
}
VOICES = [
    ("en", "en", 175, 50),
    ("en", "en-us+f3", 140, 80),
    ("en", "en+m3", 260, 20),
    ("en", "en+f4", 200, 99),
    ("de", "de", 160, 50),
    ("de", "de+f2", 220, 90),
    ("de", "de+m4", 120, 10),
]


def _tool(name: str) -> str:
    path = shutil.which(name)
    assert path is not None, f"{name} is required for the talk-off test (apt install {name})"
    return path


def speech(tmp_path: Path, lang: str, voice: str, speed: int, pitch: int) -> I16:
    wav = tmp_path / f"{voice}-{speed}.wav"
    subprocess.run(
        [_tool("espeak-ng"), "-v", voice, "-s", str(speed), "-p", str(pitch), "-w", str(wav),
         SENTENCES[lang]],
        check=True, timeout=60,
    )  # fmt: skip
    raw = subprocess.run(
        [_tool("sox"), str(wav), "-t", "raw", "-e", "signed-integer", "-b", "16",
         "-c", "1", "-r", str(FS), "-"],
        check=True, timeout=60, capture_output=True,
    ).stdout  # fmt: skip
    samples = np.frombuffer(raw, dtype="<i2").astype(np.int16)
    assert len(samples) > FS  # more than a second of speech
    return samples


def scaled(samples: I16, peak_dbfs: float) -> I16:
    peak = float(np.max(np.abs(samples.astype(np.float64))))
    gain = 32767 * 10 ** (peak_dbfs / 20) / peak
    return np.clip(np.round(samples * gain), -32768, 32767).astype(np.int16)


@pytest.mark.parametrize(("lang", "voice", "speed", "pitch"), VOICES)
def test_talk_off_speech_gives_no_digits(
    tmp_path: Path, lang: str, voice: str, speed: int, pitch: int
) -> None:
    voice_samples = speech(tmp_path, lang, voice, speed, pitch)
    # Loud (peaks at -1 dBFS) and quiet speech, linear and through PCMU; 100 ms blocks
    # keep the test fast (block size independence is tested above).
    for peak, law in ((-1.0, False), (-20.0, False), (-6.0, True)):
        talk = scaled(voice_samples, peak)
        if law:
            talk = g711.decode_ulaw(g711.encode_ulaw(talk))
        assert detect(talk, block=800)[0] == [], (voice, peak, law)


def test_digit_detected_right_after_speech(tmp_path: Path) -> None:
    # The detector must not be desensitised by the speech before the key press.
    talk = scaled(speech(tmp_path, "en", "en", 175, 50), -6)
    signal = np.concatenate((talk, silence(0.05), tone("1", 0.06, -15), silence(0.05)))
    assert digits_of(detect(g711.decode_ulaw(g711.encode_ulaw(signal)))[0]) == "1"


# --- muting ----------------------------------------------------------------------


def test_mute_spans_zeroes_tone_and_guard_only() -> None:
    t = tone("5", 0.1, -6)
    signal = np.concatenate((np.full(800, 1000, np.int16), t, np.full(800, 1000, np.int16)))
    _, finished = detect(signal)
    muted = mute_spans(signal, finished, guard_s=0.02)
    assert not np.any(muted[800:1600])  # the whole tone is silent
    assert np.all(muted[:600] == 1000)  # untouched beyond guard + 5 ms
    assert np.all(muted[1840:] == 1000)
    assert signal[900] != 0  # the input was copied, not modified
    # With an offset (the block does not start at sample 0) and an open press.
    open_press = DtmfDigit("5", 1000, None)
    part = mute_spans(signal[500:], [open_press], guard_s=0.0, offset=500)
    assert np.all(part[:500] == signal[500:1000])
    assert not np.any(part[500:])


@pytest.mark.parametrize("block", [1, 80, 160, 333])
def test_streaming_muter_never_leaks_a_tone_sample(block: int) -> None:
    rng = np.random.default_rng(block)
    carrier = np.clip(rng.normal(0, 300, FS * 2), -32768, 32767).astype(np.int16)
    signal = carrier.copy()
    tones = {"3": 3000, "#": 9000}
    for digit, at in tones.items():
        signal[at : at + 600] = tone(digit, 0.075, -6)
    muter = DtmfMuter(FS, delay_s=0.1, guard_s=0.02)
    out_parts: list[I16] = []
    pressed: list[DtmfDigit] = []
    for i in range(0, len(signal), block):
        out, got = muter.feed(signal[i : i + block])
        assert len(out) == len(signal[i : i + block])
        out_parts.append(out)
        pressed += got
    tail, _ = muter.flush()
    output = np.concatenate((*out_parts, tail))
    delay = muter.delay
    assert len(output) == len(signal) + delay
    assert not np.any(output[:delay])
    aligned = output[delay:]
    assert digits_of(pressed) == "3#"
    for at in tones.values():
        assert not np.any(aligned[at : at + 600])
    # Speech-like carrier far from the tones passes unchanged.
    assert np.array_equal(aligned[:2500], signal[:2500])
    assert np.array_equal(aligned[5000:8500], signal[5000:8500])
    assert np.array_equal(aligned[11000:], signal[11000:])


def test_muter_rejects_too_short_delay() -> None:
    with pytest.raises(ValueError, match="delay"):
        DtmfMuter(FS, delay_s=0.03)


def test_bad_sample_rate_rejected() -> None:
    with pytest.raises(ValueError, match="sample rate"):
        InbandDtmfDetector(8001)


def test_16khz_input_works() -> None:
    det = InbandDtmfDetector(16000)
    signal = np.concatenate(
        (np.zeros(800, np.int16), tone("6", 0.05, -10, 16000), np.zeros(1600, np.int16))
    )
    assert [d.digit for d in det.feed(signal)] == ["6"]
