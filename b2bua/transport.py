"""asyncio UDP and TCP adapters: the only SIP code that touches sockets.

Theory of operation: bytes arrive from a socket, are framed (one datagram = one message
on UDP, Content-Length framing on a TCP stream) and parsed by `b2bua.message`. A parsed
message goes to the `on_message` callback together with the socket source address (never
an address taken from headers) and the transport name. A message that can not be parsed
is answered 400 when enough of it is readable to build a response (RFC 3261 needs Via,
From, To, Call-ID and CSeq for that), otherwise dropped; either way it is counted and
never affects other traffic. Sending goes through `send(data, dest, transport)`: on TCP
it reuses the connection a peer opened to us, or opens one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from b2bua.errors import SipError
from b2bua.message import Message, StreamParser, error_response, parse_message

log = logging.getLogger("b2bua.transport")

Address = tuple[str, int]
MessageHandler = Callable[[Message, Address, str], None]


@dataclass
class TransportStats:
    received: int = 0
    sent: int = 0
    malformed: int = 0
    answered_400: int = 0
    tcp_connections: int = 0
    send_errors: int = 0


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, owner: SipTransport) -> None:
        self.owner = owner

    def datagram_received(self, data: bytes, addr: tuple[str | Any, ...]) -> None:
        # IPv6 sockets give 4-tuples; only host and port matter here.
        self.owner._on_datagram(data, (str(addr[0]), int(addr[1])))

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable and friends: the transaction layer times out on its own.
        self.owner.stats.send_errors += 1


class _TcpConnection(asyncio.Protocol):
    def __init__(self, owner: SipTransport) -> None:
        self.owner = owner
        self.parser = StreamParser(max_message_size=owner.max_message_size)
        self.transport: asyncio.Transport | None = None
        self.peer: Address = ("", 0)
        self.last_activity = time.monotonic()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        host, port = transport.get_extra_info("peername")[:2]
        self.peer = (str(host), int(port))
        self.owner._tcp_register(self)

    def data_received(self, data: bytes) -> None:
        self.last_activity = time.monotonic()
        try:
            messages = self.parser.feed(data)
        except SipError as exc:
            # The stream can not be re-synchronised after a framing error: close it.
            self.owner.stats.malformed += 1
            log.info("tcp framing error from %s:%d: %s", *self.peer, exc)
            if self.transport is not None:
                reply = error_response(data, exc)
                if reply is not None:
                    self.transport.write(reply.to_bytes())
                    self.owner.stats.answered_400 += 1
                self.transport.close()
            return
        for message in messages:
            self.owner._deliver(message, self.peer, "TCP")

    def connection_lost(self, exc: Exception | None) -> None:
        self.owner._tcp_unregister(self)


class SipTransport:
    """UDP and TCP on one listen address, feeding parsed messages to a handler."""

    def __init__(
        self,
        on_message: MessageHandler,
        *,
        max_message_size: int = 65535,
        tcp_idle_s: float = 120.0,
    ) -> None:
        self.on_message = on_message
        self.max_message_size = max_message_size
        self.tcp_idle_s = tcp_idle_s
        self.stats = TransportStats()
        self.local: Address = ("", 0)
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp_server: asyncio.Server | None = None
        self._tcp: dict[Address, _TcpConnection] = {}
        self._idle_task: asyncio.Task[None] | None = None

    async def start(self, host: str, port: int) -> None:
        loop = asyncio.get_running_loop()
        udp, _ = await loop.create_datagram_endpoint(
            lambda: _UdpProtocol(self), local_addr=(host, port)
        )
        self._udp = udp
        bound = udp.get_extra_info("sockname")
        self.local = (str(bound[0]), int(bound[1]))
        # TCP on the same port as UDP (port 0 means: whatever UDP got).
        self._tcp_server = await loop.create_server(
            lambda: _TcpConnection(self), host=host, port=self.local[1]
        )
        self._idle_task = asyncio.create_task(self._close_idle())

    async def close(self) -> None:
        if self._idle_task is not None:
            self._idle_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._idle_task
        for conn in list(self._tcp.values()):
            if conn.transport is not None:
                conn.transport.close()
        if self._tcp_server is not None:
            self._tcp_server.close()
            await self._tcp_server.wait_closed()
        if self._udp is not None:
            self._udp.close()

    # -- receive path -------------------------------------------------------------
    def _on_datagram(self, data: bytes, source: Address) -> None:
        if not data.strip(b"\r\n"):
            return  # RFC 5626 keepalive (CRLF): not a message
        if len(data) > self.max_message_size:
            self.stats.malformed += 1
            return
        try:
            message = parse_message(data)
        except SipError as exc:
            self.stats.malformed += 1
            reply = error_response(data, exc)
            if reply is not None and self._udp is not None:
                self._udp.sendto(reply.to_bytes(), source)
                self.stats.answered_400 += 1
            log.info("malformed SIP from %s:%d: %s", *source, exc)
            return
        self._deliver(message, source, "UDP")

    def _deliver(self, message: Message, source: Address, transport: str) -> None:
        self.stats.received += 1
        try:
            self.on_message(message, source, transport)
        except Exception:
            # A bug in handling one message must not take down the listener.
            log.exception("handler failed on a message from %s:%d", *source)

    # -- send path ----------------------------------------------------------------
    def send(self, data: bytes, dest: Address, transport: str = "UDP") -> None:
        if transport == "TCP":
            conn = self._tcp.get(dest)
            if conn is not None and conn.transport is not None:
                conn.transport.write(data)
                self.stats.sent += 1
                return
            asyncio.get_running_loop().create_task(self._tcp_connect_and_send(data, dest))
            return
        if self._udp is None:
            raise RuntimeError("transport not started")
        self._udp.sendto(data, dest)
        self.stats.sent += 1

    async def _tcp_connect_and_send(self, data: bytes, dest: Address) -> None:
        loop = asyncio.get_running_loop()
        try:
            transport, _ = await loop.create_connection(lambda: _TcpConnection(self), *dest)
        except OSError as exc:
            self.stats.send_errors += 1
            log.info("tcp connect to %s:%d failed: %s", *dest, exc)
            return
        transport.write(data)
        self.stats.sent += 1

    def _tcp_register(self, conn: _TcpConnection) -> None:
        self.stats.tcp_connections += 1
        self._tcp[conn.peer] = conn

    def _tcp_unregister(self, conn: _TcpConnection) -> None:
        if self._tcp.get(conn.peer) is conn:
            del self._tcp[conn.peer]

    async def _close_idle(self) -> None:
        while True:
            await asyncio.sleep(min(5.0, self.tcp_idle_s))
            cutoff = time.monotonic() - self.tcp_idle_s
            for conn in list(self._tcp.values()):
                if conn.last_activity < cutoff and conn.transport is not None:
                    conn.transport.close()
