"""A scripted user agent client on the sans-I/O core: OPTIONS, then one call.

Theory of operation: `SmokeCaller` is a SipCore (see runner.py). `start(now)` sends an
OPTIONS; its 200 starts an INVITE with an SDP offer; the INVITE's 2xx creates the dialog,
which sends the ACK and, `hold_s` later (a deadline, not a sleep), the BYE. Every step is
appended to `log` so the demo can show progress and a test can check the order. The
outcome is `done` with `ok` True only when every answer was the expected one.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

from b2bua.dialog import Dialog
from b2bua.headers import Address, Headers, Via
from b2bua.message import Message, Request, Response
from b2bua.sdp import offer
from b2bua.transaction import (
    Event,
    ResponseReceived,
    TransactionLayer,
    TransactionTimedOut,
    new_branch,
)
from b2bua.uri import URI

Addr = tuple[str, int]


@dataclass
class SmokeCaller:
    local: Addr
    target: Addr
    hold_s: float = 0.2
    layer: TransactionLayer = field(default_factory=TransactionLayer)
    log: list[str] = field(default_factory=list)
    done: bool = False
    ok: bool = False
    _dialog: Dialog | None = None
    _invite: Request | None = None
    _bye_at: float | None = None
    _keys: dict[str, str] = field(default_factory=dict)  # transaction key -> step

    # -- SipCore ----------------------------------------------------------------------
    def receive(self, message: Message, source: Addr, transport: str, now: float) -> None:
        self._handle(self.layer.receive_message(message, source, now, reliable=False), now)

    def handle_timer(self, now: float) -> None:
        if self._bye_at is not None and now >= self._bye_at:
            self._bye_at = None
            self._send_bye(now)
        self._handle(self.layer.handle_timer(now), now)

    def get_timer(self) -> float | None:
        deadlines = [t for t in (self.layer.get_timer(), self._bye_at) if t is not None]
        return min(deadlines) if deadlines else None

    def datagrams_to_send(self) -> list[tuple[bytes, Addr, str]]:
        return [(data, dest, "UDP") for data, dest in self.layer.datagrams_to_send()]

    # -- the script -------------------------------------------------------------------
    def start(self, now: float) -> None:
        host, port = self.target
        uri = URI("sip", "1000", host=host, port=port)
        self._send(self._request("OPTIONS", uri, 1), "options", now)

    def _via(self) -> Via:
        return Via("UDP", self.local[0], self.local[1], (("branch", new_branch()),))

    def _request(self, method: str, uri: URI, cseq: int, body: bytes = b"") -> Request:
        me = Address(URI("sip", "demo", host=self.local[0], port=self.local[1]))
        fields = [
            ("Via", str(self._via())),
            ("Max-Forwards", "70"),
            ("From", str(me.with_param("tag", secrets.token_hex(4)))),
            ("To", str(Address(uri))),
            ("Call-ID", secrets.token_hex(8) + "@" + self.local[0]),
            ("CSeq", f"{cseq} {method}"),
            ("Contact", str(me)),
        ]
        if body:
            fields.append(("Content-Type", "application/sdp"))
        return Request(method, uri, Headers.of(*fields), body)

    def _send(self, request: Request, step: str, now: float) -> None:
        self.log.append(f"-> {request.method}")
        key = self.layer.send_request(request, self.target, now, reliable=False)
        self._keys[key] = step

    def _send_bye(self, now: float) -> None:
        assert self._dialog is not None
        bye = self._dialog.create_request("BYE", via=self._via())
        self._send(bye, "bye", now)

    def _finish(self, ok: bool, why: str) -> None:
        self.log.append(why)
        self.done = True
        self.ok = ok

    def _handle(self, events: list[Event], now: float) -> None:
        for event in events:
            if isinstance(event, TransactionTimedOut) and event.key in self._keys:
                self._finish(False, f"timeout waiting for {self._keys[event.key]}")
            elif isinstance(event, ResponseReceived):
                self._on_response(self._keys.get(event.key, ""), event.response, now)

    def _on_response(self, step: str, response: Response, now: float) -> None:
        self.log.append(f"<- {response.status} {response.reason} ({step})")
        if response.status < 200:
            return
        if step == "options":
            if response.status != 200:
                self._finish(False, "OPTIONS refused")
                return
            host, port = self.target
            sdp = offer(self.local[0], 40002, session_id=secrets.randbelow(2**31))
            self._invite = self._request(
                "INVITE", URI("sip", "1000", host=host, port=port), 1, sdp.to_bytes()
            )
            self._send(self._invite, "invite", now)
        elif step == "invite":
            if response.status >= 300 or self._invite is None:
                self._finish(False, "INVITE refused")
                return
            self._dialog = Dialog.from_uac(self._invite, response)
            ack = self._dialog.create_ack(response, via=self._via())
            self.layer.send_stateless(ack, self.target)
            self.log.append("-> ACK")
            self._bye_at = now + self.hold_s
        elif step == "bye":
            self._finish(response.status == 200, "call ended")
