"""Helpers shared by the archive tests (catalog, retention, audit, recovery, CLI)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from b2bua.archive.catalog import Catalog
from b2bua.archive.keys import keygen
from media.writer import EncryptedWavWriter, WriterResult

T0 = 1_795_000_000.0  # 2026-11-18T11:06:40Z: a fixed "now" for the fake clock
DAY = 86_400.0

CONSENT = {
    "mode": "keypress",
    "result": "granted",
    "digit": "1",
    "method": "rfc4733",
    "at": T0 + 5.25,
    "prompt_sha256": "ab" * 32,
    "language": "de",
}


def make_keys(tmp: Path) -> tuple[Path, str]:
    key = tmp / "recorder.key"
    return key, keygen(key)


def write_recording(path: Path, recipient: str, frames: int = 8000) -> WriterResult:
    """A real encrypted stereo WAV of `frames` frames (a ramp, so content is checkable)."""
    audio = (np.arange(frames * 2, dtype=np.int64) % 2000 - 1000).astype(np.int16)
    with EncryptedWavWriter(path, [recipient]) as writer:
        writer.write_frames(audio.reshape(frames, 2))
    return writer.close()


def add_call(
    catalog: Catalog,
    *,
    caller: str = "+4930123456",
    callee: str = "1000",
    started: float = T0,
    direction: str = "inbound",
    extension: str = "1000",
    recipient: str | None = None,
    seconds: float = 1.0,
    consent: dict[str, object] | None = None,
) -> str:
    """A finished call; recorded (a real file) when a recipient is given."""
    rid = catalog.new_call("cid-" + caller, direction, caller, callee, extension, started)
    catalog.set_consent(rid, consent or CONSENT)
    if recipient is None:
        catalog.not_recorded(rid, "declined", started + seconds)
        return rid
    path = catalog.path_for(rid)
    catalog.recording_started(rid, path, at=started + 6)
    result = write_recording(path, recipient, frames=int(8000 * seconds))
    catalog.recording_finished(rid, result, seconds, [], [], "PCMU", started + 6 + seconds)
    catalog.call_ended(rid, started + 6 + seconds)
    return rid


def write_config(tmp: Path, recipient_file: Path, identity: Path | None = None) -> Path:
    lines = [
        "[sip]",
        'listen = "127.0.0.1:0"',
        "[trunk]",
        'host = "127.0.0.2:5080"',
        'inbound_extension = "1000"',
        "[[extension]]",
        'number = "1000"',
        'password = "secret"',
        "[recording]",
        'directory = "rec"',
        f'public_key = "{recipient_file}"',
        "retention_days = 30",
    ]
    if identity is not None:
        lines += ["[portal]", f'identity = "{identity}"']
    path = tmp / "office.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
