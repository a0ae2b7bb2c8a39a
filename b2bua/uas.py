"""A minimal user agent server on the sans-I/O core: the smoke-test peer.

Theory of operation: every message goes through the RFC 3261 transaction layer; new
requests are checked by `validate.check_request` (415/416/420/483 ...) and answered
here. OPTIONS gets 200 with our capabilities; INVITE gets 180 and then 200 with an SDP
answer (the media port is announced but nothing is sent: this UAS proves the signalling,
the relay in rtp/ does media); the ACK confirms the dialog; BYE ends it; CANCEL before
the 200 ends the INVITE with 487; any other method gets 501 with Allow. It holds no
sockets and no clock: `receive` and `handle_timer` take `now`, and the runner sends what
`datagrams_to_send` returns.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field

from b2bua.errors import SipError
from b2bua.message import Message, Request, make_response
from b2bua.sdp import answer, parse_sdp
from b2bua.transaction import (
    AckReceived,
    CancelReceived,
    Event,
    RequestReceived,
    TimerConfig,
    TransactionLayer,
)
from b2bua.validate import RequestRejectedError, check_request

log = logging.getLogger("b2bua.uas")

Addr = tuple[str, int]
ALLOW = "INVITE, ACK, BYE, CANCEL, OPTIONS"
CODECS = ("PCMU", "PCMA", "telephone-event")


@dataclass
class UasStats:
    requests: dict[str, int] = field(default_factory=dict)
    calls_answered: int = 0
    calls_ended: int = 0
    calls_cancelled: int = 0
    rejected: int = 0


@dataclass
class _Call:
    invite_key: str
    invite: Request
    to_tag: str
    confirmed: bool = False


class MinimalUas:
    """Answers calls and OPTIONS; keeps only what BYE and CANCEL need."""

    def __init__(
        self,
        local: Addr,
        *,
        media_port: int = 40000,
        server_header: str | None = None,
        timers: TimerConfig | None = None,
    ) -> None:
        self.local = local
        self.media_port = media_port
        self.server_header = server_header
        self.layer = TransactionLayer(timers)
        self.stats = UasStats()
        self._calls: dict[str, _Call] = {}  # by Call-ID
        self._tcp_peers: set[Addr] = set()

    # -- SipCore interface ------------------------------------------------------------
    def receive(self, message: Message, source: Addr, transport: str, now: float) -> None:
        reliable = transport != "UDP"
        if reliable:
            self._tcp_peers.add(source)
        self._handle(self.layer.receive_message(message, source, now, reliable=reliable), now)

    def handle_timer(self, now: float) -> None:
        self._handle(self.layer.handle_timer(now), now)

    def get_timer(self) -> float | None:
        return self.layer.get_timer()

    def datagrams_to_send(self) -> list[tuple[bytes, Addr, str]]:
        return [
            (data, dest, "TCP" if dest in self._tcp_peers else "UDP")
            for data, dest in self.layer.datagrams_to_send()
        ]

    # -- request handling ------------------------------------------------------------
    def _handle(self, events: list[Event], now: float) -> None:
        for event in events:
            if isinstance(event, CancelReceived):
                self._on_cancel(event, now)
            elif isinstance(event, RequestReceived):
                self._on_request(event, now)
            elif isinstance(event, AckReceived):
                call = self._calls.get(event.request.call_id)
                if call is not None:
                    call.confirmed = True

    def _respond(
        self,
        key: str,
        request: Request,
        status: int,
        now: float,
        *,
        to_tag: str | None = None,
        headers: Sequence[tuple[str, str]] = (),
        body: bytes = b"",
    ) -> None:
        extra = list(headers)
        if self.server_header:
            extra.append(("Server", self.server_header))
        response = make_response(request, status, to_tag=to_tag, headers=extra, body=body)
        self._handle(self.layer.send_response(key, response, now), now)

    def _on_request(self, event: RequestReceived, now: float) -> None:
        request = event.request
        self.stats.requests[request.method] = self.stats.requests.get(request.method, 0) + 1
        try:
            check_request(request)
        except RequestRejectedError as exc:
            self.stats.rejected += 1
            self._respond(event.key, request, exc.status, now, headers=exc.headers)
            return
        except SipError as exc:
            self.stats.rejected += 1
            self._respond(event.key, request, exc.status, now)
            return
        handler = {
            "OPTIONS": self._on_options,
            "INVITE": self._on_invite,
            "BYE": self._on_bye,
        }.get(request.method)
        if handler is None:
            self._respond(event.key, request, 501, now, headers=[("Allow", ALLOW)])
            return
        try:
            handler(event.key, request, now)
        except SipError as exc:
            # A broken header found while handling (lazy parsing): answer with its status.
            self.stats.rejected += 1
            self._respond(event.key, request, exc.status, now)

    def _on_options(self, key: str, request: Request, now: float) -> None:
        self._respond(
            key,
            request,
            200,
            now,
            headers=[("Allow", ALLOW), ("Accept", "application/sdp"), ("Supported", "")],
        )

    def _contact(self) -> str:
        host, port = self.local
        return f"<sip:uas@{host}:{port}>"

    def _on_invite(self, key: str, request: Request, now: float) -> None:
        if request.to_addr.tag is not None:
            # A re-INVITE of a dialog we do not know (ours keep no re-INVITE state).
            known = request.call_id in self._calls
            self._respond(key, request, 488 if known else 481, now)
            return
        if not request.body:
            # No offer: the ACK would carry it; this UAS only answers offers.
            self._respond(key, request, 488, now)
            return
        offer = parse_sdp(request.body)  # SipError(400/488) is answered by the caller
        sdp = answer(
            offer,
            CODECS,
            self.local[0],
            self.media_port,
            session_id=secrets.randbelow(2**31),
        )
        to_tag = secrets.token_hex(6)
        self._calls[request.call_id] = _Call(key, request, to_tag)
        self._respond(key, request, 180, now, to_tag=to_tag, headers=[("Contact", self._contact())])
        self._respond(
            key,
            request,
            200,
            now,
            to_tag=to_tag,
            headers=[("Contact", self._contact()), ("Content-Type", "application/sdp")],
            body=sdp.to_bytes(),
        )
        self.stats.calls_answered += 1

    def _on_bye(self, key: str, request: Request, now: float) -> None:
        call = self._calls.pop(request.call_id, None)
        if call is None:
            self._respond(key, request, 481, now)
            return
        self.stats.calls_ended += 1
        self._respond(key, request, 200, now)

    def _on_cancel(self, event: CancelReceived, now: float) -> None:
        request = event.request
        self.stats.requests["CANCEL"] = self.stats.requests.get("CANCEL", 0) + 1
        if event.invite_key is None:
            self._respond(event.key, request, 481, now)
            return
        self._respond(event.key, request, 200, now)
        call = self._calls.pop(request.call_id, None)
        if call is not None and not call.confirmed:
            # Only before our 2xx: afterwards the INVITE transaction is already done and
            # the 487 is refused by the transaction layer (counted there).
            self.stats.calls_cancelled += 1
            self._respond(call.invite_key, call.invite, 487, now, to_tag=call.to_tag)
