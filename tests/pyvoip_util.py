"""Helpers for tests that drive the real server with threaded peers (pyVoIP, raw sockets).

`ServerThread` runs `start_server` on an event loop of its own thread, so that blocking
peers (pyVoIP phones, plain sockets) can run in the test's thread; read the server's
state only through `ServerThread.call`, on the loop's thread. Tone helpers build and
recognise pyVoIP's audio: 8-bit unsigned linear samples at 8 kHz (128 is silence).
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

# pyVoIP.SIP imported first hits a circular import inside pyVoIP; its package first works.
import pyVoIP.VoIP

from b2bua.config import load_config
from b2bua.demo import stop_phone
from b2bua.serve import Server, start_server
from rtp.relay import new_event_loop

__all__ = ["ServerThread", "audible", "peak_frequency", "stop_phone", "tone"]  # stop_phone: the demo's

T = TypeVar("T")
Addr = tuple[str, int]
RATE = 8000

assert pyVoIP.VoIP is not None


class ServerThread:
    """The real B2BUA (`start_server`) on an event loop in a background thread."""

    def __init__(self, config_path: Path) -> None:
        self.config = load_config(config_path)
        self.loop = new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="b2bua-test")
        self._server: Server | None = None

    @property
    def server(self) -> Server:
        assert self._server is not None
        return self._server

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 5.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=timeout)

    def call(self, fn: Callable[[], T]) -> T:
        """`fn()` on the loop's thread (the switch is not thread-safe)."""

        async def wrapped() -> T:
            return fn()

        return self.run(wrapped())

    def wait_for(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Polls `predicate` on the loop's thread until it holds or `timeout` passes."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.call(predicate):
                return True
            time.sleep(0.05)
        return self.call(predicate)

    def __enter__(self) -> ServerThread:
        self.thread.start()
        try:
            self._server = self.run(start_server(self.config))
        except BaseException:
            self._stop_loop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            if self._server is not None:
                self.run(self._server.close())
        finally:
            self._stop_loop()

    def _stop_loop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)
        if not self.thread.is_alive():
            self.loop.close()


def tone(frequency: float, seconds: float, amplitude: int = 100) -> bytes:
    """A sine in pyVoIP's format: unsigned 8-bit linear, 8 kHz."""
    t = np.arange(int(seconds * RATE)) / RATE
    samples = 128 + amplitude * np.sin(2 * math.pi * frequency * t)
    return bytes(np.clip(np.round(samples), 0, 255).astype(np.uint8))


def peak_frequency(audio: bytes) -> float:
    """The frequency (Hz) with the most energy in unsigned 8-bit 8 kHz audio."""
    samples = np.frombuffer(audio, dtype=np.uint8).astype(np.float64) - 128.0
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    spectrum[0] = 0.0  # what is left of the DC offset
    return float(np.fft.rfftfreq(len(samples), 1 / RATE)[int(np.argmax(spectrum))])


def audible(audio: bytes) -> bool:
    """True when some sample differs clearly from silence (pyVoIP pads with 0x80)."""
    samples = np.frombuffer(audio, dtype=np.uint8).astype(np.int16) - 128
    return bool(np.abs(samples).max(initial=0) > 20)
