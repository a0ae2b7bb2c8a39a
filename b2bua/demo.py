"""`b2bua demo [--dir DIR]`: a whole office on loopback, one recorded call, checked.

What runs (all on 127.0.0.0/8, nothing to set up):
- the B2BUA itself (`start_server`, the real relay and recorder) on 127.0.0.1, with a
  generated office.toml and a fresh age key pair in DIR;
- a pyVoIP desk phone, extension 1000, registering from 127.0.0.3 with a password; it
  answers and says its lines (pyVoIP is threaded: it runs in its own threads);
- the simulated trunk (b2bua/demo_trunk.py) on 127.0.0.2: calls in, hears the consent
  announcement, presses 1 as RFC 4733 events, talks, hangs up.

Then the recording is looked up in the catalog, decrypted with the key in DIR, checked
(status complete, consent accepted by RFC 4733 digit 1, audio on both channels), and
the demo prints where everything is. Exit 0 only when every check held.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from b2bua.demo_trunk import TrunkCaller
from b2bua.runner import CoreRunner

Int16Array = npt.NDArray[np.int16]

SERVER_IP, TRUNK_IP, PHONE_IP = "127.0.0.1", "127.0.0.2", "127.0.0.3"
EXTENSION = "1000"
DEMO_TIMEOUT_S = 45.0
INSTALL_HINT = "pip install -e '.[demo]'"
CALLER_TEXT = (
    "Hello, this is Alice from Example Trading. "
    "Could you please send me the invoice for order four two seven again?"
)
PHONE_TEXT = "Good morning, this is the example office, Bob speaking. How can I help you?"
STEPS = 7


def say(text: str) -> None:
    print(text, flush=True)


def step(n: int, text: str) -> None:
    say(f"[{n}/{STEPS}] {text}")


# ------------------------------------------------------------------------- set-up


def write_office(directory: Path, trunk: tuple[str, int], password: str) -> Path:
    """The demo office's config: keypress consent, English prompts, one phone."""
    text = f"""\
# Written by `b2bua demo`: a loopback office (see examples/office.toml for a real one).
[sip]
listen = "{SERVER_IP}:0"
[rtp]
ports = "36000-36999"
inactivity_timeout_s = 20
[trunk]
host = "{trunk[0]}:{trunk[1]}"
inbound_extension = "{EXTENSION}"
[[extension]]
number = "{EXTENSION}"
password = "{password}"
employee_consent = true
name = "Bob (demo phone)"
[recording]
mode = "keypress"
language = "en"
directory = "recordings"
public_key = "recorder.key.pub"
retention_days = 30
[portal]
listen = "127.0.0.1:8080"
identity = "recorder.key"
"""
    path = directory / "office.toml"
    path.write_text(text, encoding="utf-8")
    return path


def speech(text: str, voice: str, fallback: str, workdir: Path) -> tuple[Int16Array, str]:
    """`text` spoken by espeak-ng at 8 kHz, or a shipped prompt when espeak-ng is missing."""
    from media.announcement import PromptError, load_prompt, shipped_prompt

    espeak = shutil.which("espeak-ng")
    if espeak is not None:
        out = workdir / f"speech-{voice}.wav"
        try:
            subprocess.run(  # noqa: S603 - fixed arguments, no shell
                [espeak, "-v", voice, "-s", "165", "-w", str(out), text],
                check=True,
                capture_output=True,
                timeout=20,
            )
            samples = load_prompt(out).samples
            out.unlink()
            return np.asarray(samples, dtype=np.int16), "espeak-ng"
        except (OSError, subprocess.SubprocessError, PromptError):
            pass
    language, name = fallback.split("_")
    return np.asarray(load_prompt(shipped_prompt(language, name)).samples), fallback + ".wav"


def to_pyvoip(samples: Int16Array) -> bytes:
    """pyVoIP's audio format: unsigned 8-bit linear, 8 kHz (128 is silence)."""
    return bytes(((samples.astype(np.int32) >> 8) + 128).astype(np.uint8))


def rms(samples: npt.NDArray[Any]) -> float:
    return float(np.sqrt(np.mean(samples.astype(np.float64) ** 2))) if len(samples) else 0.0


# --------------------------------------------------------------------- the phone


@dataclass
class DemoPhone:
    """pyVoIP's callCallback: answers, speaks, listens until the call ends (bounded)."""

    speech: bytes
    answered: threading.Event = field(default_factory=threading.Event)
    ended: threading.Event = field(default_factory=threading.Event)
    heard: list[bytes] = field(default_factory=list)
    max_call_s: float = 30.0

    def __call__(self, call: Any) -> None:
        from pyVoIP.VoIP import CallState

        try:
            call.answer()
            self.answered.set()
            call.write_audio(self.speech)
            deadline = time.monotonic() + self.max_call_s
            # pyVoIP forgets a call whose callback returned: stay until it has ended.
            while call.state == CallState.ANSWERED and time.monotonic() < deadline:
                self.heard.append(call.read_audio(160, blocking=False))
                time.sleep(0.02)
        finally:
            self.ended.set()

    def heard_audio(self) -> npt.NDArray[np.int16]:
        data = np.frombuffer(b"".join(self.heard), dtype=np.uint8)
        return (data.astype(np.int16) - 128) * 256


def stop_phone(phone: Any) -> None:
    """phone.stop() without racing pyVoIP's receive thread on the socket it closes."""
    sip = phone.sip
    if sip.NSD:
        sip.NSD = False  # the receive loop ends at its next turn
        for thread in threading.enumerate():
            if thread.name == "SIP Recieve":  # sic, pyVoIP's spelling
                thread.join(timeout=5)
        sip.NSD = True  # so that stop() still deregisters and closes the socket
    phone.stop()


def free_udp_port(host: str) -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def new_phone(
    server: tuple[str, int], password: str, callback: Callable[[Any], None] | None, ip: str
) -> Any:
    from pyVoIP.VoIP import VoIPPhone

    rtp_port = free_udp_port(ip)
    return VoIPPhone(
        server[0],
        server[1],
        EXTENSION,
        password,
        callCallback=callback,
        myIP=ip,
        sipPort=free_udp_port(ip),
        rtpPortLow=rtp_port,
        rtpPortHigh=rtp_port,
    )


# ----------------------------------------------------------------- the trunk's I/O


class _RtpProtocol(asyncio.DatagramProtocol):
    def __init__(self, caller: TrunkCaller) -> None:
        self.caller = caller

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.caller.media.receive(data)


async def open_trunk(
    speech: Int16Array, ip: str = TRUNK_IP, **script: Any
) -> tuple[TrunkCaller, CoreRunner, asyncio.DatagramTransport]:
    """Binds the trunk's SIP (a CoreRunner) and RTP sockets on `ip`; not yet calling."""
    loop = asyncio.get_running_loop()
    caller = TrunkCaller((ip, 0), (SERVER_IP, 0), 0, speech, **script)  # target set later
    transport, _ = await loop.create_datagram_endpoint(
        lambda: _RtpProtocol(caller), local_addr=(ip, 0)
    )
    caller.rtp_port = int(transport.get_extra_info("sockname")[1])
    runner = CoreRunner(caller)
    caller.local = await runner.start(ip, 0)
    return caller, runner, transport


async def run_trunk_call(
    caller: TrunkCaller,
    runner: CoreRunner,
    rtp: asyncio.DatagramTransport,
    target: tuple[str, int],
    timeout: float,
    progress: Callable[[str], None] = say,
) -> bool:
    """Places the call and paces its RTP until it ends or `timeout` passes."""
    caller.target = target
    caller.start(runner.now())
    runner.flush()
    shown = 0
    deadline = runner.now() + timeout
    while not caller.done and runner.now() < deadline:  # bounded by the deadline
        now = runner.now()
        remote = caller.media.remote
        for packet in caller.media.packets_due(now):
            if remote is not None:
                rtp.sendto(packet, remote)
        runner.flush_now()  # media-driven steps (speech finished -> BYE)
        for line in caller.log[shown:]:
            progress(f"      trunk: {line}")
        shown = len(caller.log)
        due = caller.media.next_due()
        await asyncio.sleep(0.02 if due is None else max(0.0, min(0.02, due - runner.now())))
    for line in caller.log[shown:]:
        progress(f"      trunk: {line}")
    return caller.done and caller.ok


# --------------------------------------------------------------------- the demo


@dataclass
class DemoOutcome:
    directory: Path
    config: Path
    key: Path
    record: dict[str, Any] | None = None
    wav: Path | None = None
    problems: list[str] = field(default_factory=list)


def pyvoip_available() -> bool:
    try:
        import pyVoIP.VoIP  # the package first: pyVoIP.SIP alone hits a circular import
    except ImportError:
        return False
    return pyVoIP.VoIP is not None


async def _wait_row(directory: Path, timeout: float) -> dict[str, Any] | None:
    """The newest catalog row once it has left the `recording` state (bounded)."""
    from b2bua.archive.catalog import Catalog

    deadline = time.monotonic() + timeout
    row: dict[str, Any] | None = None
    while time.monotonic() < deadline:
        with Catalog.open(directory) as catalog:
            rows = catalog.list()
        row = dict(rows[0]) if rows else None
        if row is not None and row["status"] != "recording":
            return row
        await asyncio.sleep(0.1)
    return row


async def run_call(outcome: DemoOutcome, password: str) -> None:
    """Steps 1-5: the office up, the phone registered, the call made, the row found."""
    from b2bua.config import load_config
    from b2bua.serve import start_server

    work = outcome.directory
    caller_speech, how = speech(CALLER_TEXT, "en-us", "en_announce", work)
    phone_speech, how_phone = speech(PHONE_TEXT, "en", "en_thanks", work)
    phone = DemoPhone(to_pyvoip(phone_speech))
    caller, trunk_runner, trunk_rtp = await open_trunk(caller_speech)
    server = None
    pyvoip = None
    try:
        outcome.config = write_office(work, caller.local, password)
        server = await start_server(load_config(outcome.config))
        host, port = server.sip_address
        step(
            1,
            f"B2BUA listening on {host}:{port}; trunk {caller.local[0]}:{caller.local[1]}; "
            f"speech from {how} / {how_phone}",
        )
        pyvoip = new_phone((host, port), password, phone, PHONE_IP)
        await asyncio.wait_for(asyncio.to_thread(pyvoip.start), 15)
        step(2, f"pyVoIP phone {EXTENSION} registered from {PHONE_IP} (digest auth)")
        step(3, "the trunk calls in; the B2BUA answers and plays the consent announcement")
        ok = await run_trunk_call(caller, trunk_runner, trunk_rtp, (host, port), DEMO_TIMEOUT_S)
        heard = caller.media.heard_audio()
        say(
            f"      trunk heard {len(heard) / 8000:.1f} s from the B2BUA "
            f"(announcement and office, level {rms(heard):.0f})"
        )
        if not ok:
            outcome.problems.append("the trunk's call did not end normally")
        if not phone.answered.is_set():
            outcome.problems.append("the office phone never rang")
        await asyncio.to_thread(phone.ended.wait, 5)
        office_heard = phone.heard_audio()
        say(f"      phone heard {len(office_heard) / 8000:.1f} s (level {rms(office_heard):.0f})")
        assert server.hub is not None
        directory = server.config.recording.directory
        row = await _wait_row(directory, 10)
        outcome.record = row
        if row is None:
            outcome.problems.append("no recording in the catalog")
        else:
            step(4, f"recording {row['id']} is {row['status']}: {row['path']}")
    finally:
        if pyvoip is not None:
            await asyncio.to_thread(stop_phone, pyvoip)
        if server is not None:
            await server.close()
        trunk_rtp.close()
        await trunk_runner.close()


def check_recording(outcome: DemoOutcome) -> None:
    """Step 5-6: the catalog row's consent, then decrypt and look at both channels."""
    import soundfile

    from b2bua.archive.keys import decrypt_file

    row = outcome.record
    if row is None:
        return
    consent = row.get("consent") or {}
    for name, want, got in (
        ("status", "complete", row.get("status")),
        ("consent.result", "accepted", consent.get("result")),
        ("consent.method", "rfc4733", consent.get("method")),
        ("consent.digit", "1", consent.get("digit")),
    ):
        if got != want:
            outcome.problems.append(f"{name} is {got!r}, expected {want!r}")
    step(
        5,
        f"consent {consent.get('result')} by {consent.get('method')} digit "
        f"{consent.get('digit')!r}; {row.get('duration_s')} s recorded, expires "
        f"{row.get('expires_at')}",
    )
    if not row.get("path"):
        outcome.problems.append("the recording has no file")
        return
    wav = outcome.directory / "call.wav"
    code = decrypt_file(outcome.key, Path(row["path"]), wav)
    if code != 0:
        outcome.problems.append(f"decryption failed (exit {code})")
        return
    outcome.wav = wav
    data, rate = soundfile.read(wav, dtype="int16", always_2d=True)
    seconds = len(data) / rate
    left, right = rms(data[:, 0]), rms(data[:, 1])
    step(
        6,
        f"decrypted {wav.name}: {seconds:.1f} s, {rate} Hz, {data.shape[1]} channels; "
        f"level caller (left) {left:.0f}, office (right) {right:.0f}",
    )
    if rate != 8000 or data.shape[1] != 2:
        outcome.problems.append(f"unexpected WAV format {rate} Hz x {data.shape[1]}")
    if left < 100 or right < 100:
        outcome.problems.append("a channel of the recording is silent")


def _has_portal_command() -> bool:
    import argparse

    from b2bua.cli import build_parser

    for action in build_parser()._actions:  # argparse keeps subcommands only here
        if isinstance(action, argparse._SubParsersAction):
            return "portal" in action.choices
    return False


def portal_hint(outcome: DemoOutcome) -> list[str]:
    """How to look at the recording in a browser (only if the portal can run here)."""
    config = outcome.config
    if importlib.util.find_spec("b2bua.portal.app") is None:
        return ["the web portal is not part of this build yet"]
    if importlib.util.find_spec("uvicorn") is None:
        return ["the web portal needs its extra: pip install -e '.[portal]'"]
    from b2bua.archive.catalog import Catalog
    from b2bua.archive.users import UserError, add_user

    password = secrets.token_urlsafe(12)
    with Catalog.open(config.parent / "recordings") as catalog:
        try:
            add_user(catalog, "demo", password, "admin", actor="demo", source="b2bua demo")
        except UserError:
            from b2bua.archive.users import set_password

            set_password(catalog, "demo", password, actor="demo", source="b2bua demo")
    command = "b2bua portal" if _has_portal_command() else f"{sys.executable} -m b2bua.portal"
    return [
        f"portal:    {command} --config {config}",
        f"           then open http://127.0.0.1:8080 and log in as demo / {password}",
    ]


async def run_demo(directory: Path | None = None) -> int:
    """The whole demo; returns the exit status (0: every check held)."""
    started = time.monotonic()
    if not pyvoip_available():
        say("b2bua demo needs pyVoIP (GPLv3) to play the desk phone; install the extra:")
        say(f"    {INSTALL_HINT}")
        return 1
    from b2bua.archive.keys import keygen

    work = Path(directory) if directory is not None else Path(tempfile.mkdtemp(prefix="b2bua-"))
    work = work.expanduser().absolute()
    work.mkdir(parents=True, exist_ok=True)
    key = work / "recorder.key"
    if not key.exists():
        keygen(key)
    outcome = DemoOutcome(work, work / "office.toml", key)
    say(f"b2bua demo: a loopback office in {work}")
    try:
        await run_call(outcome, secrets.token_urlsafe(12))
    except (OSError, TimeoutError) as exc:
        outcome.problems.append(f"{type(exc).__name__}: {exc}")
    check_recording(outcome)
    elapsed = time.monotonic() - started
    if outcome.problems:
        for problem in outcome.problems:
            say(f"FAILED: {problem}")
        return 1
    row = outcome.record
    assert row is not None
    step(7, f"all checks passed in {elapsed:.0f} s. What is where:")
    say(f"  config:    {outcome.config}")
    say(f"  key:       {key} (the identity; the recorder only had {key.name}.pub)")
    say(f"  recording: {row['path']}")
    say(f"  decrypted: {outcome.wav}")
    say(f"  list:      b2bua recordings list --json --config {outcome.config}")
    say(f"  open it:   age -d -i {key} {row['path']} > call.wav")
    for line in portal_hint(outcome):
        say(f"  {line}")
    return 0


def main(directory: str | None = None) -> int:
    from rtp.relay import new_event_loop

    loop = new_event_loop()
    try:
        with contextlib.suppress(KeyboardInterrupt):
            return loop.run_until_complete(run_demo(Path(directory) if directory else None))
        return 130
    finally:
        loop.close()
