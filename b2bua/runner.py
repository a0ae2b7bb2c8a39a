"""Drives a sans-I/O SIP core with asyncio: the glue between transport, clock and core.

Theory of operation: the core never reads the clock and never touches a socket. This
runner feeds it every parsed message with `now` from the loop's monotonic clock, sends
what it queued, and keeps exactly one loop timer armed at the core's next deadline
(`get_timer()`), calling `handle_timer(now)` when it fires. After every input it flushes
and re-arms, so a deadline that moved earlier is honoured.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from b2bua.message import Message
from b2bua.transport import Address, SipTransport

log = logging.getLogger("b2bua.runner")


class SipCore(Protocol):
    """What the runner needs from a core (a UAS, the B2BUA, a test peer)."""

    def receive(self, message: Message, source: Address, transport: str, now: float) -> None: ...

    def handle_timer(self, now: float) -> None: ...

    def get_timer(self) -> float | None: ...

    def datagrams_to_send(self) -> list[tuple[bytes, Address, str]]: ...


class CoreRunner:
    """Owns the transport and the single timer of one core."""

    def __init__(self, core: SipCore, *, max_message_size: int = 65535) -> None:
        self.core = core
        self.transport = SipTransport(self._on_message, max_message_size=max_message_size)
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def start(self, host: str, port: int) -> Address:
        self._loop = asyncio.get_running_loop()
        await self.transport.start(host, port)
        return self.transport.local

    async def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        await self.transport.close()

    def now(self) -> float:
        assert self._loop is not None
        return self._loop.time()

    def _on_message(self, message: Message, source: Address, transport: str) -> None:
        self.core.receive(message, source, transport, self.now())
        self.flush()

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        self.core.handle_timer(self.now())
        self.flush()

    def flush_now(self) -> None:
        """Runs the core's timers at once: an I/O callback (e.g. the relay) queued work."""
        self.core.handle_timer(self.now())
        self.flush()

    def flush(self) -> None:
        """Sends what the core queued and re-arms the timer at its next deadline."""
        for data, dest, transport in self.core.datagrams_to_send():
            try:
                self.transport.send(data, dest, transport)
            except OSError as exc:
                self.transport.stats.send_errors += 1
                log.info("send to %s:%d failed: %s", dest[0], dest[1], exc)
        deadline = self.core.get_timer()
        if deadline == self._timer_at:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_at = deadline
        if deadline is not None and self._loop is not None:
            self._timer = self._loop.call_at(deadline, self._on_timer)
