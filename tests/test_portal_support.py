"""Fixtures shared by the portal tests (no tests here).

`record_call` makes a recording the way the recorder does: a catalog row through the call
layer API (new_call -> set_consent -> recording_started -> frames into an
EncryptedWavWriter -> recording_finished -> call_ended). The browser test reaches it
through `recording_for_browser`, the one function to switch to a real SIP call through
the B2BUA once the call-to-recording wiring lands.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
from argon2 import PasswordHasher

from b2bua.archive.catalog import Catalog
from b2bua.archive.keys import keygen
from b2bua.archive.users import add_user
from media.writer import EncryptedWavWriter

RATE = 8000
T0 = 1_795_000_000.0  # 2026-11-18T...Z: a fixed "now" for catalog rows
CHEAP = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)  # fast tests only
PASSWORD = "correct horse battery"


@dataclass
class Clock:
    now: float = T0 + 3600.0

    def __call__(self) -> float:
        return self.now


def make_keys(tmp: Path) -> tuple[Path, str]:
    identity = tmp / "recorder.key"
    recipient = keygen(identity)
    return identity, recipient


def write_config(
    tmp: Path,
    identity: Path | None,
    *,
    listen: str = "127.0.0.1:8080",
    tls: tuple[Path, Path] | None = None,
    idle_s: int = 900,
    language: str | None = "en",
) -> Path:
    lines = [
        "[sip]",
        'listen = "127.0.0.1:5060"',
        "[trunk]",
        'host = "127.0.0.2:5080"',
        'inbound_extension = "1000"',
        "[[extension]]",
        'number = "1000"',
        'password = "secret-1000"',
        "[[extension]]",
        'number = "1001"',
        'password = "secret-1001"',
        "[recording]",
        'directory = "rec"',
        f'public_key = "{tmp / "recorder.key.pub"}"',
        "retention_days = 30",
        "[portal]",
        f'listen = "{listen}"',
        f"session_idle_s = {idle_s}",
    ]
    if language is not None:  # the portal's default page language (the loader's is "de")
        lines.append(f'language = "{language}"')
    if identity is not None:
        lines.append(f'identity = "{identity}"')
    if tls is not None:
        lines += [f'tls_cert = "{tls[0]}"', f'tls_key = "{tls[1]}"']
    path = tmp / "office.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def conversation(seconds: float, seed: int = 1) -> npt.NDArray[np.int16]:
    """Stereo int16: the two parties talk in turns (tone bursts with soft edges)."""
    n = int(RATE * seconds)
    t = np.arange(n) / RATE
    rng = np.random.default_rng(seed)
    left = np.zeros(n)
    right = np.zeros(n)
    pos, turn = 0, 0
    for _ in range(1000):
        if pos >= n:
            break
        length = int(RATE * rng.uniform(0.4, 0.9))
        end = min(n, pos + length)
        env = np.sin(np.linspace(0, np.pi, end - pos)) ** 0.5
        wobble = 1 + 0.3 * np.sin(2 * np.pi * 3 * t[pos:end])
        if turn == 0:
            left[pos:end] = 9000 * env * wobble * np.sin(2 * np.pi * 440 * t[pos:end])
        else:
            right[pos:end] = 7000 * env * wobble * np.sin(2 * np.pi * 660 * t[pos:end])
        pos = end + int(RATE * 0.1)
        turn ^= 1
    return np.stack([left, right], axis=1).astype(np.int16)


def record_call(
    catalog: Catalog,
    recipient: str,
    *,
    extension: str = "1000",
    caller: str = "+4930123456",
    callee: str | None = None,
    direction: str = "inbound",
    seconds: float = 3.0,
    started_at: float = T0,
    consent: str = "accepted",
    truncate: bool = False,
) -> tuple[str, npt.NDArray[np.int16]]:
    """A recorded call in the catalog; returns (id, the frames written)."""
    callee = extension if callee is None else callee
    rid = catalog.new_call(
        f"call-{started_at}-{extension}@test", direction, caller, callee, extension, started_at
    )
    consent_at = started_at + 5.0
    catalog.set_consent(
        rid,
        {
            "mode": "keypress",
            "result": consent,
            "digit": "1" if consent == "accepted" else None,
            "method": "rfc4733",
            "at": consent_at,
            "prompt_sha256": "ab" * 32,
            "language": "en",
        },
    )
    frames = conversation(seconds)
    if consent != "accepted":
        catalog.not_recorded(rid, consent, consent_at + seconds)
        return rid, frames[:0]
    path = catalog.path_for(rid)
    catalog.recording_started(rid, path, at=consent_at)
    writer = EncryptedWavWriter(path, [recipient], metadata={"consent": consent})
    for start in range(0, len(frames), 160):  # 20 ms at a time, like the recorder's ticks
        writer.write_frames(frames[start : start + 160])
    result = writer.abort_truncated() if truncate else writer.close()
    catalog.recording_finished(rid, result, seconds, [], [], "PCMU", consent_at + seconds)
    catalog.call_ended(rid, consent_at + seconds)
    return rid, frames


def add_users(catalog: Catalog, hasher: PasswordHasher | None = CHEAP) -> None:
    for name, role, exts in (
        ("alice", "admin", ()),
        ("sam", "supervisor", ()),
        ("anna", "agent", ("1000",)),
        ("bert", "agent", ("1001",)),
    ):
        add_user(catalog, name, PASSWORD, role, exts, actor="test", source="test", hasher=hasher)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def recording_for_browser(
    tmp: Path, catalog: Catalog, recipient: str
) -> tuple[str, npt.NDArray[np.int16]]:
    """The recording the browser test plays: extension 1000, 3 s.

    Made through the catalog and writer API as the recorder does; replace the body with a
    real SIP call through the B2BUA (returning its catalog id and the expected frames)
    once calls write recordings.
    """
    return record_call(catalog, recipient, extension="1000", seconds=3.0, started_at=T0 + 60)
