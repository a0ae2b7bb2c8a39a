"""asyncio UDP, TCP and TLS adapters: the only SIP code that touches sockets.

Theory of operation: bytes arrive from a socket, are framed (one datagram = one message
on UDP, Content-Length framing on a TCP stream) and parsed by `b2bua.message`. A parsed
message goes to the `on_message` callback together with the socket source address (never
an address taken from headers) and the transport name. A message that can not be parsed
is answered 400 when enough of it is readable to build a response (RFC 3261 needs Via,
From, To, Call-ID and CSeq for that), otherwise dropped; either way it is counted and
never affects other traffic. Sending goes through `send(data, dest, transport)`: on TCP
and TLS it reuses the connection a peer opened to us (or we opened to it), or opens one;
messages sent while that connect is under way wait for it, so a burst opens one
connection, not several.

TLS (RFC 3261 26.2, b2bua/tls.py) is the TCP stream code over an SSL transport: a
second listener (`start_tls`) with our certificate, and on the client side a verifying
context per destination (`tls_clients`, else `default_tls_client`, else the system
store with the destination host as the name to check). A certificate that does not
verify fails the connect; the queued messages are dropped, `tls_failures` counts it and
the transaction layer times out as for an unreachable host. Connections are keyed by the
peer's socket address; one we opened is also found under the address we were asked for
(a host name), so the trunk gets one connection.

Hardening (docs/security.md): `accept_source(ip)` (the guard's pre-parse gate) is asked
before anything from a source is parsed or answered, so a banned source or a dropped
stranger gets nothing back, not even a 400. A message with more than `max_headers`
header fields is treated as malformed. TCP connections are limited in total and per
source (the excess is closed at once) and closed after `tcp_idle_s` without traffic; a
CRLFCRLF keep-alive ping on TCP gets a CRLF pong (RFC 5626 3.5.1). A malformed message
that was framed correctly on TCP is answered 400 and the stream goes on; only a framing
error closes the connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from b2bua.errors import SipError, SipParseError
from b2bua.message import (
    Message,
    StreamFramingError,
    StreamParser,
    error_response,
    parse_message,
)
from b2bua.tls import TlsClient, client_context

log = logging.getLogger("b2bua.transport")

Address = tuple[str, int]
MessageHandler = Callable[[Message, Address, str], None]
_EPHEMERAL_ATTEMPTS = 20  # draws of an ephemeral port free for both UDP and TCP


@dataclass
class TransportStats:
    received: int = 0
    sent: int = 0
    malformed: int = 0
    answered_400: int = 0
    tcp_connections: int = 0
    tcp_refused: int = 0
    filtered: int = 0
    keepalive_pongs: int = 0
    send_errors: int = 0
    tls_connections: int = 0
    tls_failures: int = 0  # outbound connects whose handshake or verification failed


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
    """One stream connection; `name` is "TCP" or "TLS" (the SSL layer sits below)."""

    def __init__(self, owner: SipTransport, name: str = "TCP") -> None:
        self.owner = owner
        self.name = name
        self.aliases: list[Address] = []  # destinations this connection was opened for
        self.parser = StreamParser(max_message_size=owner.max_message_size)
        self.transport: asyncio.Transport | None = None
        self.peer: Address = ("", 0)
        self.last_activity = time.monotonic()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        host, port = transport.get_extra_info("peername")[:2]
        self.peer = (str(host), int(port))
        if not self.owner._tcp_admit(self.peer[0]):
            self.owner.stats.tcp_refused += 1
            transport.abort()  # no registration: connection_lost finds nothing to remove
            return
        self.owner._tcp_register(self)

    def data_received(self, data: bytes) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        if not self.owner._admits(self.peer[0]):
            self.transport.abort()  # banned while connected
            return
        self.last_activity = time.monotonic()
        pings = self.parser.keepalives
        messages: list[Message] = []
        # Bounded: every round consumes the malformed message it reports (StreamParser).
        for round_ in range(64):
            try:
                messages.extend(self.parser.feed(data if round_ == 0 else b""))
                break
            except StreamFramingError as exc:
                # The stream can not be re-synchronised after a framing error: deliver
                # what was framed before it, answer the broken message, close.
                self.owner.stats.malformed += 1
                log.info("tcp framing error from %s:%d: %s", *self.peer, exc)
                self._deliver_all([*messages, *exc.messages])
                self._answer_error(exc.unframed, exc)
                self.transport.close()
                return
            except SipError as exc:
                self.owner.stats.malformed += 1
                log.info("malformed SIP over TCP from %s:%d: %s", *self.peer, exc)
                self._answer_error(data, exc)
        if self.parser.keepalives > pings:
            self.transport.write(b"\r\n")  # RFC 5626 3.5.1 pong
            self.owner.stats.keepalive_pongs += 1
        self._deliver_all(messages)

    def _deliver_all(self, messages: list[Message]) -> None:
        for message in messages:
            if self.owner._too_many_headers(message, self.peer):
                continue
            self.owner._deliver(message, self.peer, self.name)

    def _answer_error(self, data: bytes, exc: SipError) -> None:
        reply = error_response(data, exc)
        if reply is not None and self.transport is not None:
            self.transport.write(reply.to_bytes())
            self.owner.stats.answered_400 += 1

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
        # Hardening knobs, set by serve.py from [security] (defaults as documented there).
        self.accept_source: Callable[[str], bool] | None = None
        self.max_headers = 200
        self.max_tcp_connections = 512
        self.max_tcp_connections_per_source = 32
        self.stats = TransportStats()
        self.local: Address = ("", 0)
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp_server: asyncio.Server | None = None
        self._tcp: dict[Address, _TcpConnection] = {}
        self._tls: dict[Address, _TcpConnection] = {}
        self._connecting: dict[tuple[str, Address], list[bytes]] = {}
        self._tls_server: asyncio.Server | None = None
        self.tls_local: Address | None = None
        # Client side of TLS: a verifying context per destination (serve.py: the trunk).
        self.tls_clients: dict[Address, TlsClient] = {}
        self.default_tls_client: TlsClient | None = None
        self.connect_timeout_s = 10.0
        self._tasks: set[asyncio.Task[None]] = set()
        self._idle_task: asyncio.Task[None] | None = None

    async def start(self, host: str, port: int) -> None:
        loop = asyncio.get_running_loop()
        # TCP on the same port as UDP. Port 0 means: whatever UDP got; that number may be
        # taken for TCP (another listener, or an outgoing connection's ephemeral port), so
        # draw again a bounded number of times. A configured port fails at once.
        for attempt in range(_EPHEMERAL_ATTEMPTS):
            udp, _ = await loop.create_datagram_endpoint(
                lambda: _UdpProtocol(self), local_addr=(host, port)
            )
            bound = udp.get_extra_info("sockname")
            try:
                self._tcp_server = await loop.create_server(
                    lambda: _TcpConnection(self), host=host, port=int(bound[1])
                )
            except OSError as exc:
                udp.close()
                if port != 0 or exc.errno != errno.EADDRINUSE:
                    raise
                if attempt == _EPHEMERAL_ATTEMPTS - 1:
                    raise
                continue
            self._udp = udp
            self.local = (str(bound[0]), int(bound[1]))
            break
        self._idle_task = asyncio.create_task(self._close_idle())

    async def start_tls(self, host: str, port: int, context: ssl.SSLContext) -> Address:
        """A TLS listener (usually port 5061) beside UDP and TCP; returns its address."""
        loop = asyncio.get_running_loop()
        self._tls_server = await loop.create_server(
            lambda: _TcpConnection(self, "TLS"),
            host=host,
            port=port,
            ssl=context,
            ssl_handshake_timeout=self.connect_timeout_s,
        )
        bound = self._tls_server.sockets[0].getsockname()
        self.tls_local = (str(bound[0]), int(bound[1]))
        return self.tls_local

    async def close(self) -> None:
        if self._idle_task is not None:
            self._idle_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._idle_task
        for task in list(self._tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for conn in {id(c): c for c in (*self._tcp.values(), *self._tls.values())}.values():
            if conn.transport is not None:
                conn.transport.close()
        for server in (self._tcp_server, self._tls_server):
            if server is not None:
                server.close()
                await server.wait_closed()
        if self._udp is not None:
            self._udp.close()

    # -- receive path -------------------------------------------------------------
    def _admits(self, ip: str) -> bool:
        if self.accept_source is None or self.accept_source(ip):
            return True
        self.stats.filtered += 1
        return False

    def _too_many_headers(self, message: Message, source: Address) -> bool:
        """Over `max_headers`: counted as malformed, answered 400 where possible."""
        if len(message.headers) <= self.max_headers:
            return False
        self.stats.malformed += 1
        exc = SipParseError(f"more than {self.max_headers} header fields")
        reply = error_response(message.to_bytes(), exc)
        if reply is not None:
            self.send(reply.to_bytes(), source, self._stream_name(source))
            self.stats.answered_400 += 1
        return True

    def _on_datagram(self, data: bytes, source: Address) -> None:
        if not data.strip(b"\r\n"):
            return  # RFC 5626 keepalive (CRLF): not a message
        if not self._admits(source[0]):
            return
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
        if self._too_many_headers(message, source):
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
        if transport in ("TCP", "TLS"):
            conn = self._streams(transport).get(dest)
            if conn is not None and conn.transport is not None and not conn.transport.is_closing():
                conn.transport.write(data)
                self.stats.sent += 1
                return
            pending = self._connecting.get((transport, dest))
            if pending is not None:
                pending.append(data)  # the connect under way takes it along
                return
            self._connecting[(transport, dest)] = [data]
            task = asyncio.get_running_loop().create_task(self._connect_and_send(transport, dest))
            self._tasks.add(task)  # a reference, so the task is not collected mid-connect
            task.add_done_callback(self._tasks.discard)
            return
        if self._udp is None:
            raise RuntimeError("transport not started")
        self._udp.sendto(data, dest)
        self.stats.sent += 1

    def _streams(self, transport: str) -> dict[Address, _TcpConnection]:
        return self._tls if transport == "TLS" else self._tcp

    def _stream_name(self, source: Address) -> str:
        """The transport a source reached us on (for replies): TLS, TCP or UDP."""
        if source in self._tls:
            return "TLS"
        return "TCP" if source in self._tcp else "UDP"

    def _tls_client_for(self, dest: Address) -> TlsClient:
        client = self.tls_clients.get(dest) or self.default_tls_client
        if client is None:
            client = self.default_tls_client = TlsClient(client_context())
        return client

    async def _connect_and_send(self, transport: str, dest: Address) -> None:
        loop = asyncio.get_running_loop()
        key = (transport, dest)
        try:
            if transport == "TLS":
                client = self._tls_client_for(dest)
                connect = loop.create_connection(
                    lambda: _TcpConnection(self, "TLS"),
                    *dest,
                    ssl=client.context,
                    server_hostname=client.server_name or dest[0],
                    ssl_handshake_timeout=self.connect_timeout_s,
                )
            else:
                connect = loop.create_connection(lambda: _TcpConnection(self), *dest)
            _, conn = await asyncio.wait_for(connect, self.connect_timeout_s)
        except (TimeoutError, OSError) as exc:
            # ssl.SSLError (wrong or untrusted certificate, old protocol) is an OSError.
            lost = self._connecting.pop(key, [])
            self.stats.send_errors += len(lost)
            if transport == "TLS":
                self.stats.tls_failures += 1
            log.warning("%s connect to %s:%d failed: %s", transport.lower(), *dest, exc)
            return
        queued = self._connecting.pop(key, [])
        if conn.transport is None or conn.transport.is_closing():
            self.stats.send_errors += len(queued)  # refused by our own connection limits
            return
        if dest != conn.peer:
            conn.aliases.append(dest)
            self._streams(transport)[dest] = conn
        for data in queued:
            conn.transport.write(data)
            self.stats.sent += 1

    def _tcp_admit(self, ip: str) -> bool:
        """TCP and TLS connections share the limits (both are stream sockets)."""
        total = len(self._tcp) + len(self._tls)
        if not self._admits(ip) or total >= self.max_tcp_connections:
            return False
        same = sum(1 for peer in (*self._tcp, *self._tls) if peer[0] == ip)
        return same < self.max_tcp_connections_per_source

    def _tcp_register(self, conn: _TcpConnection) -> None:
        if conn.name == "TLS":
            self.stats.tls_connections += 1
        else:
            self.stats.tcp_connections += 1
        self._streams(conn.name)[conn.peer] = conn

    def _tcp_unregister(self, conn: _TcpConnection) -> None:
        streams = self._streams(conn.name)
        for address in (conn.peer, *conn.aliases):
            if streams.get(address) is conn:
                del streams[address]

    async def _close_idle(self) -> None:
        while True:
            await asyncio.sleep(min(5.0, self.tcp_idle_s))
            cutoff = time.monotonic() - self.tcp_idle_s
            for conn in [*self._tcp.values(), *self._tls.values()]:
                if conn.last_activity < cutoff and conn.transport is not None:
                    conn.transport.close()
