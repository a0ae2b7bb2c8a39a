"""Real peer: pyVoIP's VoIPPhone registers with the Registrar behind a real UDP socket.

The Registrar runs inside a tiny SipCore (transaction layer + handle_register) driven by
CoreRunner on 127.0.0.1 in a thread of its own; the threaded pyVoIP phone runs in the
test's thread. Bounded to 20 s, and the phone is always stopped.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, TypeVar

import pytest

# pyVoIP.SIP imported first hits a circular import inside pyVoIP; its package first works.
import pyVoIP.VoIP
from pyVoIP.VoIP import PhoneStatus, VoIPPhone

from b2bua.auth import NonceFactory
from b2bua.config import ExtensionConfig
from b2bua.message import Message, make_response
from b2bua.registrar import Registrar
from b2bua.runner import CoreRunner
from b2bua.transaction import Event, RequestReceived, TransactionLayer
from tests.pyvoip_util import stop_phone

Addr = tuple[str, int]
T = TypeVar("T")
PHONE_IP = "127.0.0.5"


class RegistrarCore:
    """The smallest SipCore that answers REGISTER through the transaction layer."""

    def __init__(self, registrar: Registrar) -> None:
        self.registrar = registrar
        self.layer = TransactionLayer()
        self.statuses: list[int] = []

    def receive(self, message: Message, source: Addr, transport: str, now: float) -> None:
        events = self.layer.receive_message(message, source, now, reliable=transport != "UDP")
        self._handle(events, now)

    def _handle(self, events: list[Event], now: float) -> None:
        for event in events:
            if not isinstance(event, RequestReceived):
                continue
            request = event.request
            if request.method == "REGISTER":
                response = self.registrar.handle_register(request, event.source, "UDP", now)
            else:
                response = make_response(request, 501)
            self.statuses.append(response.status)
            self._handle(self.layer.send_response(event.key, response, now), now)

    def handle_timer(self, now: float) -> None:
        self._handle(self.layer.handle_timer(now), now)
        self.registrar.handle_timer(now)

    def get_timer(self) -> float | None:
        deadlines = [t for t in (self.layer.get_timer(), self.registrar.get_timer()) if t]
        return min(deadlines, default=None)

    def datagrams_to_send(self) -> list[tuple[bytes, Addr, str]]:
        return [(data, dest, "UDP") for data, dest in self.layer.datagrams_to_send()]


class ServerThread:
    """An event loop in a thread, running the core; read its state only through `call`."""

    def __init__(self, core: RegistrarCore) -> None:
        self.core = core
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="registrar-test")
        self.runner = CoreRunner(core)

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=5)

    def call(self, fn: Callable[[], T]) -> T:
        async def wrapped() -> T:
            return fn()

        return self.run(wrapped())

    def __enter__(self) -> Addr:
        self.thread.start()
        return self.run(self.runner.start("127.0.0.1", 0))

    def __exit__(self, *exc: object) -> None:
        try:
            self.run(self.runner.close())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout=5)
            self.loop.close()


def free_udp_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def server() -> Iterator[tuple[ServerThread, Addr]]:
    registrar = Registrar(
        [ExtensionConfig("1000", "secret")],
        realm="office.example",
        nonces=NonceFactory(b"pyvoip-live-test-secret-32bytes!", 30),
    )
    thread = ServerThread(RegistrarCore(registrar))
    with thread as address:
        yield thread, address


@pytest.mark.timeout(20)
def test_pyvoip_phone_registers_and_deregisters(server: tuple[ServerThread, Addr]) -> None:
    thread, (host, port) = server
    assert pyVoIP.VoIP is not None
    phone = VoIPPhone(host, port, "1000", "secret", myIP=PHONE_IP, sipPort=free_udp_port(PHONE_IP))
    try:
        phone.start()  # blocks until pyVoIP has its answer to the REGISTER
        assert phone.get_status() == PhoneStatus.REGISTERED
        bindings = thread.call(lambda: thread.core.registrar.lookup("1000", thread.runner.now()))
        assert len(bindings) == 1
        assert bindings[0].source == (PHONE_IP, phone.sip.myPort)
        assert thread.call(lambda: list(thread.core.statuses)) == [401, 200]
    finally:
        stop_phone(phone)
    # pyVoIP deregisters on stop (challenged again, then Expires: 0).
    assert phone.get_status() == PhoneStatus.INACTIVE
    assert thread.call(thread.core.registrar.binding_count) == 0
    assert thread.call(lambda: list(thread.core.statuses)) == [401, 200, 401, 200]
