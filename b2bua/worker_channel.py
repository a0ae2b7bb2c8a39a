"""A message channel between the SIP process and a media worker process.

One AF_UNIX SOCK_SEQPACKET socket pair per worker: the kernel keeps message boundaries
and carries file descriptors (SCM_RIGHTS), so an RTP socket bound in the SIP process
travels with the "open" message that names its leg. Messages are pickled tuples
``(kind, *args)``; both ends are this program, started by it (never a socket anyone
else can reach), which is why pickle is acceptable here.

Sending never blocks the event loop: a message the socket cannot take now waits in a
queue that a writer callback flushes. Receiving is a reader callback that hands each
message to ``on_message``; end of file (the other process died or closed) calls
``on_closed`` once.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import pickle
import socket
from collections.abc import Callable, Sequence
from typing import Any

log = logging.getLogger("b2bua.worker")

MAX_MESSAGE = 1 << 20  # a stats snapshot of hundreds of calls fits easily
MAX_FDS = 4  # an RTP and an RTCP socket per leg
_READ_BATCH = 256  # messages per readable callback: the loop stays responsive

Message = tuple[Any, ...]


def channel_pair() -> tuple[socket.socket, socket.socket]:
    """(parent end, child end); the child end is inheritable for the worker process."""
    parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    for end in (parent, child):
        end.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 * MAX_MESSAGE)
        end.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * MAX_MESSAGE)
    child.set_inheritable(True)
    return parent, child


class Channel:
    """Non-blocking framed pickles over one SOCK_SEQPACKET socket."""

    def __init__(
        self,
        sock: socket.socket,
        loop: asyncio.AbstractEventLoop,
        on_message: Callable[[Message, list[int]], None],
        on_closed: Callable[[], None],
    ) -> None:
        sock.setblocking(False)
        self.sock = sock
        self.closed = False
        self._loop = loop
        self._on_message = on_message
        self._on_closed = on_closed
        self._queue: collections.deque[tuple[bytes, Sequence[int]]] = collections.deque()
        self._writing = False
        loop.add_reader(sock.fileno(), self._readable)

    def send(self, message: Message, fds: Sequence[int] = ()) -> None:
        """Send now or queue. The channel owns ``fds`` from here on: it closes them once
        the message left (the receiver got its own copies) or was dropped."""
        if self.closed:
            for fd in fds:
                _close_fd(fd)
            return
        data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
        if self._queue:
            self._queue.append((data, fds))
            return
        if self._try_send(data, fds):
            for fd in fds:
                _close_fd(fd)
        else:
            self._queue.append((data, fds))
            self._start_writing()

    @property
    def pending(self) -> int:
        return len(self._queue)

    def _try_send(self, data: bytes, fds: Sequence[int]) -> bool:
        try:
            if fds:
                socket.send_fds(self.sock, [data], list(fds))
            else:
                self.sock.send(data)
        except (BlockingIOError, InterruptedError):
            return False
        except OSError:
            if not self.closed:
                self._loop.call_soon(self._close)  # the peer is gone; not from inside send
            return True  # dropped
        return True

    def _start_writing(self) -> None:
        if not self._writing and not self.closed:
            self._writing = True
            self._loop.add_writer(self.sock.fileno(), self._writable)

    def _writable(self) -> None:
        while self._queue and not self.closed:
            data, fds = self._queue[0]
            if not self._try_send(data, fds):
                return
            self._queue.popleft()
            for fd in fds:
                _close_fd(fd)  # the message left: the kernel holds its own copies now
        if self._writing and not self.closed:
            self._loop.remove_writer(self.sock.fileno())
        self._writing = False

    def _readable(self) -> None:
        for _ in range(_READ_BATCH):
            try:
                data, fds, _flags, _addr = socket.recv_fds(self.sock, MAX_MESSAGE, MAX_FDS)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                self._close()
                return
            if not data:
                for fd in fds:
                    _close_fd(fd)
                self._close()
                return
            try:
                message = pickle.loads(data)  # noqa: S301 -- our own child process
            except Exception:
                log.exception("event=worker_message_unreadable size=%d", len(data))
                for fd in fds:
                    _close_fd(fd)
                continue
            try:
                self._on_message(message, fds)
            except Exception:
                # One bad message (a bug) must not stop the channel for every call.
                log.exception("event=worker_message_failed kind=%s", message[0])

    def _close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._loop.remove_reader(self.sock.fileno())
        if self._writing:
            self._loop.remove_writer(self.sock.fileno())
            self._writing = False
        for _data, fds in self._queue:
            for fd in fds:
                _close_fd(fd)
        self._queue.clear()
        self.sock.close()
        self._on_closed()

    def close(self) -> None:
        """Close without waiting for queued messages."""
        self._close()


def _close_fd(fd: int) -> None:
    with contextlib.suppress(OSError):
        os.close(fd)
