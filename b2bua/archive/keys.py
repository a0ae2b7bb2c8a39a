"""Key files and decryption behind `b2bua keygen OUT` and `b2bua decrypt --identity KEY IN OUT`.

Identity files look like age-keygen's (so either tool's keys work with either program):

    # created: 2026-11-22T10:04:05Z
    # public key: age1...
    AGE-SECRET-KEY-1...

`keygen` writes that file with mode 0600 (refusing to overwrite a key) and OUT.pub with the
recipient. `decrypt_file` writes the recovered WAV, with exact sizes, through a temporary
file that is renamed only when there is something trustworthy to hand out.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO, TextIO

from media.agefile import (
    AgeError,
    AgeKeyError,
    AgeTampered,
    AgeTruncated,
    AgeWrongKey,
    decrypt_stream,
    generate_identity,
    parse_identities,
    parse_recipients,
)
from media.writer import fix_wav_file, streaming_wav_header

__all__ = [
    "EXIT_ERROR",
    "EXIT_OK",
    "EXIT_TRUNCATED",
    "EXIT_USAGE",
    "decrypt_file",
    "keygen",
    "load_recipients",
]

EXIT_OK = 0
EXIT_ERROR = 1  # tampered or wrong key: nothing written
EXIT_USAGE = 2  # unreadable identity or input file
EXIT_TRUNCATED = 3  # recovered audio written, with a warning


def keygen(out: Path, *, now: datetime | None = None) -> str:
    """Write a new identity to OUT (0600) and its recipient to OUT.pub; return the recipient.

    Raises FileExistsError rather than overwrite a key that may still open recordings.
    """
    identity, recipient = generate_identity()
    created = (now or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
    text = f"# created: {created}\n# public key: {recipient}\n{identity}\n"
    out = Path(out)
    pub = out.with_name(out.name + ".pub")
    if pub.exists():
        raise FileExistsError(f"{pub} exists")
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(text)
    os.chmod(out, 0o600)  # the umask could only have narrowed it; make it exact
    pub.write_text(recipient + "\n", encoding="ascii")
    return recipient


def load_recipients(value: str, base_dir: Path | None = None) -> list[str]:
    """Recipients from a config value: one age1... string, or a file of them.

    A relative file name resolves against base_dir (the config file's directory).
    """
    stripped = value.strip()
    if stripped.startswith("age1") and "/" not in stripped and "\n" not in stripped:
        try:
            return parse_recipients(stripped)
        except AgeKeyError:
            pass  # maybe a file whose name starts with "age1"
    path = Path(stripped)
    if base_dir is not None and not path.is_absolute():
        path = base_dir / path
    text = path.read_text(encoding="utf-8")
    try:
        return parse_recipients(text)
    except AgeKeyError as exc:
        raise AgeKeyError(f"{path}: {exc}") from None


def _finish_wav(f: BinaryIO, truncated: bool, err: TextIO) -> None:
    """Give the plaintext in f exact WAV sizes (in place)."""
    try:
        fix_wav_file(f)
    except ValueError as exc:
        if truncated:
            # Cut before the WAV header was complete: hand out a valid, empty recording
            # in the recorder's format rather than a file no player opens.
            f.seek(0)
            f.truncate()
            f.write(streaming_wav_header(8000, 2))
            fix_wav_file(f)
        else:
            print(f"b2bua decrypt: note: plaintext is not a WAV ({exc}); written as is", file=err)


def decrypt_file(identity_path: Path, src: Path, dst: Path, *, stderr: TextIO | None = None) -> int:
    """Decrypt a recording to a WAV with exact sizes; return the process exit status.

    0: complete. 3: truncated, recovered audio written as a valid WAV, warning on stderr.
    1: tampered or wrong key, nothing written. 2: identity or input file unusable.
    """
    err = stderr if stderr is not None else sys.stderr
    try:
        identities = parse_identities(Path(identity_path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, AgeKeyError) as exc:
        print(f"b2bua decrypt: identity file {identity_path}: {exc}", file=err)
        return EXIT_USAGE
    dst = Path(dst)
    try:
        source = open(src, "rb")  # noqa: SIM115 - closed in the finally below
    except OSError as exc:
        print(f"b2bua decrypt: {src}: {exc}", file=err)
        return EXIT_USAGE
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dst.name}.", suffix=".tmp", dir=dst.parent)
    tmp = Path(tmp_name)
    truncated: AgeTruncated | None = None
    try:
        with source, os.fdopen(fd, "w+b") as out:
            try:
                for piece in decrypt_stream(source, identities):
                    out.write(piece)
            except AgeTruncated as exc:
                truncated = exc
            _finish_wav(out, truncated is not None, err)
        os.replace(tmp, dst)
    except AgeWrongKey as exc:
        print(f"b2bua decrypt: {src}: wrong key: {exc}; nothing written", file=err)
        return EXIT_ERROR
    except AgeTampered as exc:
        print(f"b2bua decrypt: {src}: file damaged or tampered: {exc}; nothing written", file=err)
        return EXIT_ERROR
    except (AgeError, OSError) as exc:
        print(f"b2bua decrypt: {src}: {exc}; nothing written", file=err)
        return EXIT_ERROR
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    if truncated is not None:
        print(
            f"b2bua decrypt: warning: {src} is truncated (recording did not end cleanly); "
            f"{truncated.recovered_bytes} bytes of it recovered into {dst}",
            file=err,
        )
        return EXIT_TRUNCATED
    return EXIT_OK
