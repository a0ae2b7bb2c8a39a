"""The SIP listener takes one port number for UDP and TCP: with port 0 it draws again
when the UDP port's number is taken for TCP; a configured port that is taken fails."""

from __future__ import annotations

import asyncio
import errno
import socket
from typing import Any

import pytest

from b2bua.transport import SipTransport
from tests.conftest import run_async


def _ignore(*_: Any) -> None:
    return None


def test_a_configured_port_taken_for_tcp_fails_and_leaves_no_udp_socket() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]

        async def body() -> None:
            transport = SipTransport(_ignore)
            with pytest.raises(OSError) as caught:
                await transport.start("127.0.0.1", port)
            assert caught.value.errno == errno.EADDRINUSE
            await transport.close()

        run_async(body, timeout=10)
        # The UDP socket of the failed attempt was closed: the port is free for UDP again.
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind(("127.0.0.1", port))


def test_an_ephemeral_port_taken_for_tcp_is_drawn_again() -> None:
    # Which ephemeral port UDP gets cannot be arranged, so the first TCP bind is made to
    # fail as the kernel would (EADDRINUSE); the second draw must succeed on both.
    async def body() -> tuple[int, list[int]]:
        loop = asyncio.get_running_loop()
        real = loop.create_server
        tried: list[int] = []

        async def create_server(*args: Any, **kwargs: Any) -> asyncio.Server:
            tried.append(int(kwargs["port"]))
            if len(tried) == 1:
                raise OSError(errno.EADDRINUSE, "Address already in use")
            return await real(*args, **kwargs)

        loop.create_server = create_server  # type: ignore[method-assign]
        transport = SipTransport(_ignore)
        try:
            await transport.start("127.0.0.1", 0)
            port = transport.local[1]
            # Both listeners are really on that port.
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            await writer.wait_closed()
            await asyncio.sleep(0.1)  # the server side sees the close
            return port, tried
        finally:
            await transport.close()

    port, tried = run_async(body, timeout=10)
    assert len(tried) == 2 and tried[1] == port
