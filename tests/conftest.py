"""Shared fixtures: running a sans-I/O core on loopback and running SIPp against it."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TypeVar

import pytest

SIPP_DIR = Path(__file__).parent / "sipp"
T = TypeVar("T")


def sipp_binary() -> str:
    path = shutil.which("sipp")
    if path is None:
        # CI installs Debian's sip-tester; a missing peer is a failure, never a skip.
        pytest.fail("sipp not found: install the Debian package sip-tester")
    return path


async def run_sipp(args: list[str], timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    """Runs sipp in the background of the running loop, bounded in time."""
    proc = await asyncio.create_subprocess_exec(
        sipp_binary(),
        *args,
        "-nostdin",
        "-timeout",
        f"{int(timeout)}s",
        "-timeout_error",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await communicate_bounded(proc, timeout + 10)
    assert proc.returncode is not None
    return subprocess.CompletedProcess(args, proc.returncode, out.decode(), err.decode())


async def communicate_bounded(
    proc: asyncio.subprocess.Process, timeout: float
) -> tuple[bytes, bytes]:
    """A peer process's whole output; killed after `timeout` seconds (its output so far
    is kept for the failure message)."""
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        out, err = await proc.communicate()
    except asyncio.CancelledError:
        # A test that no longer needs this peer: end it and drain its pipes, so no
        # transport is left for the garbage collector to warn about in a later test.
        if proc.returncode is None:
            proc.kill()
        await proc.communicate()
        raise
    return out or b"", err or b""


def run_async(factory: Callable[[], Awaitable[T]], timeout: float = 60.0) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(factory(), timeout)

    return asyncio.run(bounded())


def free_port(host: str) -> int:
    """A UDP port that is free on `host` right now (for peers that need a fixed port)."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def rtp_workers() -> str:
    """The `[rtp] workers` line of test offices: B2BUA_TEST_WORKERS=N runs the call tests
    with their media in N worker processes (default 0: in the server's process)."""
    return f"workers = {int(os.environ.get('B2BUA_TEST_WORKERS', '0'))}"


def write_office(
    directory: Path,
    *,
    trunk: tuple[str, int] | str = ("127.0.0.2", 5080),
    phones: dict[str, str] | None = None,
    mode: str = "off",
    extra: str = "",
    sip_extra: str = "",
    rtp_ports: str = "31000-31999",
    inactivity_timeout_s: float = 30,
    rtp_extra: Sequence[str] = (),
    trunk_extra: Sequence[str] = (),
) -> Path:
    """A loopback office config: the B2BUA on 127.0.0.1 (port chosen by the OS).

    `trunk` is the trunk's address, or its `host` value as written (a DNS name);
    `rtp_extra` and `trunk_extra` are more lines of those sections, `extra` of
    [recording]; `sip_extra` one more [sip] line."""
    phones = phones if phones is not None else {"1000": "sip:1000@127.0.0.3:5070"}
    host = trunk if isinstance(trunk, str) else f"{trunk[0]}:{trunk[1]}"
    lines = [
        "[sip]",
        'listen = "127.0.0.1:0"',
        sip_extra,
        "[rtp]",
        f'ports = "{rtp_ports}"',
        f"inactivity_timeout_s = {inactivity_timeout_s:g}",
        rtp_workers(),
        *rtp_extra,
        "[trunk]",
        f'host = "{host}"',
        f'inbound_extension = "{next(iter(phones))}"',
        *trunk_extra,
    ]
    for number, contact in phones.items():
        lines += ["[[extension]]", f'number = "{number}"', f'password = "pw{number}"']
        if contact:
            lines.append(f'contact = "{contact}"')
    lines += ["[recording]", f'mode = "{mode}"', extra]
    path = directory / "office.toml"
    path.write_text("\n".join(lines) + "\n")
    return path
