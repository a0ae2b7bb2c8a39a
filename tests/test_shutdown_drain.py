"""Graceful shutdown: while draining, new calls get 503; SIGTERM ends `b2bua serve`."""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from b2bua.config import load_config
from b2bua.serve import start_server
from tests.conftest import free_port, run_async, write_office


def _request(method: str, target: tuple[str, int], source: str) -> bytes | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((source, 0))
        sock.settimeout(1.0)
        port = sock.getsockname()[1]
        body = b""
        sock.sendto(
            (
                f"{method} sip:1000@{target[0]} SIP/2.0\r\n"
                f"Via: SIP/2.0/UDP {source}:{port};branch=z9hG4bK{method}{port}\r\n"
                "Max-Forwards: 70\r\n"
                f"From: <sip:+4930123@{source}>;tag=t{port}\r\n"
                f"To: <sip:1000@{target[0]}>\r\n"
                f"Call-ID: drain-{method}-{port}\r\n"
                f"CSeq: 1 {method}\r\n"
                f"Contact: <sip:+4930123@{source}:{port}>\r\n"
                f"Content-Length: {len(body)}\r\n\r\n"
            ).encode()
            + body,
            target,
        )
        try:
            return sock.recv(65535)
        except TimeoutError:
            return None


def test_draining_refuses_new_calls_with_503(tmp_path: Path) -> None:
    config = write_office(tmp_path, trunk=("127.0.0.2", free_port("127.0.0.2")))

    async def scenario() -> tuple[bool, bytes | None, bytes | None, int]:
        server = await start_server(load_config(config))
        try:
            target = server.sip_address
            drained = await server.drain(5.0)  # no calls: returns at once
            invite = await asyncio.to_thread(_request, "INVITE", target, "127.0.0.2")
            options = await asyncio.to_thread(_request, "OPTIONS", target, "127.0.0.2")
            return drained, invite, options, server.switch.stats.calls_started
        finally:
            await server.close()

    drained, invite, options, started = run_async(scenario, timeout=30)
    assert drained is True
    assert invite is not None and invite.startswith(b"SIP/2.0 503 "), invite
    assert b"\r\nRetry-After: " in invite
    assert options is not None and options.startswith(b"SIP/2.0 200 "), options
    assert started == 0


def test_sigterm_stops_serve_cleanly(tmp_path: Path) -> None:
    config = write_office(tmp_path, trunk=("127.0.0.2", free_port("127.0.0.2")))
    proc = subprocess.Popen(
        [sys.executable, "-m", "b2bua.cli", "serve", "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # "b2bua serving SIP on HOST:PORT (pid N) ..."
        assert "serving SIP on 127.0.0.1:" in line, line
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert time.monotonic() - started < 10
    assert "event=draining calls=0 timeout_s=30" in err, err
    assert "event=shutdown calls_left=0" in err, err
