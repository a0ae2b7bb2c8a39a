"""`b2bua demo --dir DIR` end to end, as a newcomer runs it: a subprocess, bounded.

The demo must exit 0, leave config, key pair, catalog and one encrypted recording in DIR,
and the standard `age` tool must open that recording with the key it left.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

pytestmark = [pytest.mark.agetool, pytest.mark.slow]
B2BUA = [sys.executable, "-m", "b2bua.cli"]


def age_binary() -> str:
    path = shutil.which("age")
    if path is None:
        pytest.fail("age not found: install the Debian package age")
    return path


@pytest.mark.timeout(120)
def test_demo_leaves_a_checked_recording_that_age_opens(tmp_path: Path) -> None:
    work = tmp_path / "office"
    result = subprocess.run(
        [*B2BUA, "demo", "--dir", str(work)],
        capture_output=True,
        text=True,
        timeout=100,
        check=False,
    )
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    # Progress as it goes, in order, and the summary.
    positions = [out.index(f"[{n}/7]") for n in range(1, 8)]
    assert positions == sorted(positions)
    assert "pressed 1 (RFC 4733)" in out
    assert "consent accepted by rfc4733 digit '1'" in out

    key = work / "recorder.key"
    assert key.stat().st_mode & 0o777 == 0o600
    assert (work / "recorder.key.pub").read_text().startswith("age1")
    assert (work / "office.toml").is_file()
    assert (work / "recordings" / "catalog.sqlite3").is_file()
    (recording,) = (work / "recordings").glob("*.wav.age")
    assert not list((work / "recordings").glob("*.part"))
    assert f"age -d -i {key} {recording} > call.wav" in out

    decrypted = tmp_path / "by-age.wav"
    with decrypted.open("wb") as f:
        age = subprocess.run(
            [age_binary(), "-d", "-i", str(key), str(recording)],
            stdout=f,
            stderr=subprocess.PIPE,
            timeout=30,
            check=False,
        )
    assert age.returncode == 0, age.stderr
    data, rate = sf.read(decrypted, dtype="int16", always_2d=True)
    assert rate == 8000
    assert data.shape[1] == 2
    assert data.shape[0] / rate > 2.0
    for channel in (0, 1):  # the caller's and the phone's speech
        assert float(np.sqrt(np.mean(data[:, channel].astype(float) ** 2))) > 100
    # The demo's own decrypted copy has the same audio (exact sizes instead of 0xFFFFFFFF).
    own, _ = sf.read(work / "call.wav", dtype="int16", always_2d=True)
    assert np.array_equal(own, data)


@pytest.mark.timeout(60)
def test_demo_without_pyvoip_says_how_to_install_it(tmp_path: Path) -> None:
    code = (
        "import sys; sys.modules['pyVoIP'] = None; sys.modules['pyVoIP.VoIP'] = None\n"
        "from b2bua.cli import main\n"
        f"sys.exit(main(['demo', '--dir', {str(tmp_path / 'x')!r}]))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=50, check=False
    )
    assert result.returncode == 1
    assert "pip install -e '.[demo]'" in result.stdout
    assert not (tmp_path / "x").exists()  # nothing started, nothing written


def test_trunk_media_sends_one_rfc4733_press_then_speech() -> None:
    from b2bua.demo_trunk import EVENT_PACKETS, TrunkMedia
    from rtp.packet import parse_rtp, parse_telephone_event

    media = TrunkMedia()
    media.start(("127.0.0.1", 4000), 101, 10.0)
    media.press("1")
    media.say(np.full(480, 1000, dtype=np.int16))
    packets = [parse_rtp(p) for p in media.packets_due(10.0 + 0.02 * 15)]
    events = [p for p in packets if p.payload_type == 101]
    assert len(events) == EVENT_PACKETS + 2  # the end packet three times
    assert {p.timestamp for p in events} == {events[0].timestamp}  # one event
    assert events[0].marker
    decoded = [parse_telephone_event(p.payload) for p in events]
    assert all(d.event == 1 for d in decoded)
    assert [d.end for d in decoded] == [False] * (EVENT_PACKETS - 1) + [True] * 3
    durations = [d.duration for d in decoded]
    assert durations == sorted(durations)
    audio = [p for p in packets if p.payload_type == 0]
    assert len(audio) == 16 - EVENT_PACKETS  # 3 speech frames, then silence
    sequences = [p.sequence for p in packets]
    assert sequences == [(sequences[0] + i) & 0xFFFF for i in range(len(packets))]


def test_trunk_caller_table_refuses_an_unexpected_input() -> None:
    from b2bua.demo_trunk import TrunkCaller, TrunkInput, TrunkState

    caller = TrunkCaller(("127.0.0.2", 5080), ("127.0.0.1", 5060), 4000, np.zeros(0, np.int16))
    caller._feed(TrunkInput.BYE_ANSWERED, None, 0.0)
    assert caller.state is TrunkState.DONE
    assert not caller.ok
    assert "protocol error: bye_answered while idle" in caller.log


def test_trunk_caller_invites_with_pcmu_and_telephone_event() -> None:
    from b2bua.demo_trunk import TrunkCaller, TrunkState
    from b2bua.message import parse_message as parse

    caller = TrunkCaller(("127.0.0.2", 5080), ("127.0.0.1", 5060), 4000, np.zeros(0, np.int16))
    caller.start(0.0)
    assert caller.state is TrunkState.INVITING
    ((data, dest, transport),) = caller.datagrams_to_send()
    assert (dest, transport) == (("127.0.0.1", 5060), "UDP")
    invite = parse(data)
    body = invite.body.decode()
    assert "m=audio 4000 RTP/AVP 0 101" in body
    assert "telephone-event/8000" in body
    assert caller.get_timer() is not None  # the INVITE's retransmission timer
