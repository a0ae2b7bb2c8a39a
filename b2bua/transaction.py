"""The RFC 3261 section 17 transaction layer (sans-I/O).

Theory of operation: the I/O adapter feeds parsed messages in with
:meth:`TransactionLayer.receive_message`, fires timers with
:meth:`TransactionLayer.handle_timer` when :meth:`TransactionLayer.get_timer` says so,
and sends whatever :meth:`TransactionLayer.datagrams_to_send` returns. The TU (the call
and registrar logic) starts client transactions with :meth:`send_request`, answers
server transactions with :meth:`send_response` and acts on the returned events. Every
call takes ``now``; nothing here reads a clock or touches a socket.

Matching (17.1.3 and 17.2.3): a response belongs to the client transaction with its top
Via branch and CSeq method. A request belongs to the server transaction with its top Via
branch (RFC 3261 magic cookie ``z9hG4bK``), sent-by and method, where ACK matches an
INVITE. Requests from RFC 2543 peers (no cookie) are keyed by Request-URI, Call-ID, From
tag, CSeq number, top Via and method instead. A CANCEL gets its own transaction and
names the INVITE server transaction it cancels (9.2). An ACK that matches no INVITE
server transaction acknowledges a 2xx: it goes to the TU as ``AckReceived``.

A 2xx to an INVITE sent with :meth:`send_response` starts an
:class:`Invite2xxRetransmitter` (13.3.1.4), stopped by the ACK with the same Call-ID and
CSeq number; if none arrives within 64*T1 the TU gets ``AckTimedOut`` and should BYE.

Bad input (a message lacking what matching needs, a response to nothing, an input that
a machine's table lacks) is logged and counted in :attr:`TransactionLayer.stats`; it
never raises.
"""

from __future__ import annotations

import heapq
import logging
import secrets
from typing import TypeVar

from b2bua.errors import SipError
from b2bua.headers import Headers, Via
from b2bua.message import Request, Response
from b2bua.transaction_client import (
    InviteClientTransaction,
    NonInviteClientTransaction,
    response_input,
)
from b2bua.transaction_machine import (
    AckReceived,
    AckTimedOut,
    Addr,
    CancelReceived,
    Event,
    Input,
    Machine,
    RequestReceived,
    ResponseReceived,
    State,
    StrayResponse,
    Timer,
    TimerConfig,
    TransactionStats,
    TransactionTerminated,
    TransactionTimedOut,
)
from b2bua.transaction_server import (
    Invite2xxRetransmitter,
    InviteServerTransaction,
    NonInviteServerTransaction,
    tu_response_input,
)

__all__ = [
    "AckReceived",
    "AckTimedOut",
    "CancelReceived",
    "Event",
    "Invite2xxRetransmitter",
    "RequestReceived",
    "ResponseReceived",
    "State",
    "StrayResponse",
    "TimerConfig",
    "TransactionLayer",
    "TransactionStats",
    "TransactionTerminated",
    "TransactionTimedOut",
    "client_key",
    "create_cancel",
    "new_branch",
    "server_key",
]

log = logging.getLogger("b2bua.transaction")

MAGIC_COOKIE = "z9hG4bK"
_M = TypeVar("_M", bound=Machine)
_DEFAULT_PORTS = {"TLS": 5061, "WSS": 443, "WS": 80}


def new_branch() -> str:
    """A fresh RFC 3261 branch parameter (magic cookie plus 64 random bits)."""
    return MAGIC_COOKIE + secrets.token_hex(8)


def _sent_by(via: Via) -> str:
    port = via.port if via.port is not None else _DEFAULT_PORTS.get(via.transport, 5060)
    return f"{via.host.lower()}:{port}"


def client_key(branch: str, method: str) -> str:
    """Key of a client transaction (17.1.3): branch and CSeq method."""
    return f"c|{branch}|{method}"


def server_key(request: Request, method: str | None = None) -> str:
    """Key of the server transaction a request belongs to (17.2.3).

    ``method`` overrides the request's method (9.2: the INVITE a CANCEL cancels). Raises
    SipError when the request lacks the header fields matching needs.
    """
    method = method or ("INVITE" if request.method == "ACK" else request.method)
    via = request.top_via
    branch = via.branch
    if branch is not None and branch.startswith(MAGIC_COOKIE):
        # The CSeq number is not in 17.2.3, but some UACs (pyVoIP) resend a challenged
        # INVITE with credentials on the same branch: a new CSeq is a new request. The
        # ACK of a non-2xx and a CANCEL carry the INVITE's number, so they still match.
        return f"s|{branch}|{_sent_by(via)}|{method}|{request.cseq[0]}"
    # RFC 2543 peers: 17.2.3's fallback fields (the To tag check of ACK is left out).
    number = request.cseq[0]
    from_tag = request.from_addr.tag or ""
    return f"s2543|{request.uri}|{request.call_id}|{from_tag}|{number}|{via}|{method}"


def create_cancel(invite: Request) -> Request:
    """The CANCEL for a pending INVITE (RFC 3261 9.1).

    Request-URI, Call-ID, To, From, the top Via (same branch: it is matched to the
    INVITE by it) and Route come from the INVITE; CSeq has its number and method CANCEL.
    """
    old = invite.headers
    fields: list[tuple[str, str]] = [("Via", str(invite.top_via)), ("Max-Forwards", "70")]
    fields += [("Route", value) for value in old.get_all("Route")]
    for name in ("From", "To", "Call-ID"):
        value = old.get(name)
        if value is None:
            raise ValueError(f"INVITE without {name}")
        fields.append((name, value))
    fields.append(("CSeq", f"{invite.cseq[0]} CANCEL"))
    fields.append(("Content-Length", "0"))
    return Request("CANCEL", invite.uri, Headers.of(*fields))


class TransactionLayer:
    """All transactions of one SIP endpoint, their timers and their outgoing bytes."""

    def __init__(self, config: TimerConfig | None = None) -> None:
        self.config = config or TimerConfig()
        self.stats = TransactionStats()
        self._clients: dict[str, Machine] = {}
        self._servers: dict[str, Machine] = {}
        self._rtx: dict[str, Invite2xxRetransmitter] = {}
        self._outbox: list[tuple[bytes, Addr]] = []
        self._events: list[Event] = []
        # (deadline, sequence, owner, timer); stale entries are skipped when popped.
        self._heap: list[tuple[float, int, str, Timer | None]] = []
        self._pushed: dict[tuple[str, Timer | None], float] = {}
        self._seq = 0

    # -- inputs -------------------------------------------------------------------------

    def receive_message(
        self, msg: Request | Response, source: Addr, now: float, *, reliable: bool
    ) -> list[Event]:
        """A message from the network; returns the events for the TU."""
        try:
            if isinstance(msg, Response):
                self._on_response(msg, source, now)
            else:
                self._on_request(msg, source, now, reliable)
        except SipError as exc:
            # The message lacks what matching needs; the transport already parsed the
            # start line, so this is a header the parser accepts lazily.
            self.stats.malformed += 1
            log.warning("dropped message from %s: %s", source, exc)
        return self._drain_events()

    def send_request(
        self, request: Request, destination: Addr, now: float, *, reliable: bool
    ) -> str:
        """Starts a client transaction and queues the request; returns its key.

        The request needs a top Via with an RFC 3261 branch (see :func:`new_branch`).
        ACK is not sent through a transaction: use :meth:`send_stateless`.
        """
        if request.method == "ACK":
            raise ValueError("ACK is not a transaction: use send_stateless")
        branch = request.branch
        if branch is None or not branch.startswith(MAGIC_COOKIE):
            raise ValueError("request needs a top Via branch starting with z9hG4bK")
        key = client_key(branch, request.method)
        if key in self._clients:
            raise ValueError(f"transaction {key} exists: use a new branch")
        cls = InviteClientTransaction if request.method == "INVITE" else NonInviteClientTransaction
        machine = self._new(cls, key, destination, reliable)
        self._clients[key] = machine
        machine.start(request, now)
        self._track(key, machine)
        return key

    def send_response(self, key: str, response: Response, now: float) -> list[Event]:
        """The TU's response for server transaction ``key``; returns resulting events.

        A 2xx to an INVITE also starts its retransmission until the ACK (13.3.1.4).
        A key that no longer exists (the transaction ended) is counted and ignored.
        """
        machine = self._servers.get(key)
        if machine is None:
            self.stats.protocol_errors += 1
            log.warning("response %d for unknown transaction %s dropped", response.status, key)
            return self._drain_events()
        fed = machine.feed(tu_response_input(response.status), now, response)
        if fed and isinstance(machine, InviteServerTransaction) and 200 <= response.status < 300:
            self._start_2xx_retransmission(response, machine.peer, now)
        self._track(key, machine)
        return self._drain_events()

    def send_stateless(self, message: Request | Response, destination: Addr) -> None:
        """Queues a message outside any transaction (the ACK for a 2xx, for instance)."""
        self._outbox.append((message.to_bytes(), destination))

    def transport_error(self, key: str, now: float) -> list[Event]:
        """The adapter could not send for transaction ``key`` (17.1.4, 17.2.4)."""
        machine = self._clients.get(key) or self._servers.get(key)
        if machine is not None:
            machine.feed(Input.TRANSPORT_ERROR, now)
            self._track(key, machine)
        return self._drain_events()

    def handle_timer(self, now: float) -> list[Event]:
        """Fires every timer due at ``now``; returns the events for the TU."""
        # Each timer fires at most once per call (re-armed ones are due after now).
        for _ in range(len(self._heap) + 1):
            entry = self._valid_top()
            if entry is None or entry[0] > now:
                break
            heapq.heappop(self._heap)
            _, _, owner, timer = entry
            self._pushed.pop((owner, timer), None)
            if timer is None:
                self._fire_rtx(owner, now)
            else:
                machine = self._clients.get(owner) or self._servers.get(owner)
                if machine is not None:
                    machine.fire_timer(timer, now)
                    self._track(owner, machine)
        return self._drain_events()

    # -- outputs ------------------------------------------------------------------------

    def get_timer(self) -> float | None:
        """The next deadline at which :meth:`handle_timer` must be called, or None."""
        entry = self._valid_top()
        return None if entry is None else entry[0]

    def datagrams_to_send(self) -> list[tuple[bytes, Addr]]:
        """Drains the queue of (bytes, destination) to send."""
        out, self._outbox = self._outbox, []
        return out

    def state_of(self, key: str) -> State | None:
        """State of transaction ``key``; None once it has terminated."""
        machine = self._clients.get(key) or self._servers.get(key)
        return None if machine is None else machine.state

    def __len__(self) -> int:
        return len(self._clients) + len(self._servers)

    # -- internals ----------------------------------------------------------------------

    def _new(self, cls: type[_M], key: str, peer: Addr, reliable: bool) -> _M:
        return cls(
            key,
            peer=peer,
            reliable=reliable,
            config=self.config,
            stats=self.stats,
            emit=self._emit,
            send=self._send,
        )

    def _send(self, data: bytes, destination: Addr) -> None:
        self._outbox.append((data, destination))

    def _emit(self, event: Event) -> None:
        if isinstance(event, TransactionTerminated):
            self._clients.pop(event.key, None)
            self._servers.pop(event.key, None)
        elif isinstance(event, AckReceived):
            ack = event.request
            rtx = self._rtx.pop(_rtx_owner(ack.call_id, ack.cseq[0]), None)
            if rtx is not None:
                rtx.ack_received()
        self._events.append(event)

    def _drain_events(self) -> list[Event]:
        out, self._events = self._events, []
        return out

    def _on_response(self, response: Response, source: Addr, now: float) -> None:
        branch = response.branch
        machine = None
        if branch is not None:
            key = client_key(branch, response.cseq[1])
            machine = self._clients.get(key)
        if machine is None:
            self.stats.stray_responses += 1
            log.info("stray %d response from %s", response.status, source)
            self._events.append(StrayResponse(response, source))
            return
        machine.feed(response_input(response.status), now, response)
        self._track(machine.key, machine)

    def _on_request(self, request: Request, source: Addr, now: float, reliable: bool) -> None:
        key = server_key(request)
        machine = self._servers.get(key)
        if request.method == "ACK":
            if isinstance(machine, InviteServerTransaction):
                machine.feed(Input.ACK, now, request)
                self._track(key, machine)
            else:
                # 17.2.3: no INVITE transaction matches, so it acknowledges a 2xx.
                self._emit(AckReceived(request, source))
            return
        if machine is not None:
            machine.feed(Input.REQUEST, now, request)
            self._track(key, machine)
            return
        # Read what events need before the machine exists, so bad input creates nothing.
        _ = request.call_id, request.cseq
        cls = InviteServerTransaction if request.method == "INVITE" else NonInviteServerTransaction
        machine = self._new(cls, key, source, reliable)
        self._servers[key] = machine
        machine.start(request, now)
        self._track(key, machine)
        if request.method == "CANCEL":
            invite_key = server_key(request, "INVITE")
            found = invite_key if invite_key in self._servers else None
            self._events.append(CancelReceived(request, source, key, found))
        else:
            self._events.append(RequestReceived(request, source, key))

    def _start_2xx_retransmission(self, response: Response, peer: Addr, now: float) -> None:
        owner = _rtx_owner(response.call_id, response.cseq[0])
        if owner in self._rtx:
            return  # the TU resent the 2xx itself; one retransmitter is enough
        # The 2xx copies go where the INVITE came from, like the IST's first copy.
        self._rtx[owner] = Invite2xxRetransmitter(
            response, peer, now, t1=self.config.t1, t2=self.config.t2, stats=self.stats
        )
        self._track_rtx(owner)

    def _fire_rtx(self, owner: str, now: float) -> None:
        rtx = self._rtx.get(owner)
        if rtx is None:
            return
        for item in rtx.handle_timer(now):
            if isinstance(item, bytes):
                self._outbox.append((item, rtx.destination))
            else:
                self._events.append(item)
        if rtx.done:
            del self._rtx[owner]
        else:
            self._track_rtx(owner)

    def _track_rtx(self, owner: str) -> None:
        deadline = self._rtx[owner].next_deadline()
        if deadline is not None:
            self._push(owner, None, deadline)

    def _track(self, key: str, machine: Machine) -> None:
        for timer, deadline in machine.deadlines.items():
            self._push(key, timer, deadline)

    def _push(self, owner: str, timer: Timer | None, deadline: float) -> None:
        if self._pushed.get((owner, timer)) == deadline:
            return
        self._pushed[(owner, timer)] = deadline
        self._seq += 1
        heapq.heappush(self._heap, (deadline, self._seq, owner, timer))

    def _valid_top(self) -> tuple[float, int, str, Timer | None] | None:
        while self._heap:
            entry = self._heap[0]
            if self._is_current(entry):
                return entry
            heapq.heappop(self._heap)
            if self._pushed.get((entry[2], entry[3])) == entry[0]:
                del self._pushed[(entry[2], entry[3])]
        return None

    def _is_current(self, entry: tuple[float, int, str, Timer | None]) -> bool:
        deadline, _, owner, timer = entry
        if timer is None:
            rtx = self._rtx.get(owner)
            return rtx is not None and rtx.next_deadline() == deadline
        machine = self._clients.get(owner) or self._servers.get(owner)
        return machine is not None and machine.deadlines.get(timer) == deadline


def _rtx_owner(call_id: str, cseq: int) -> str:
    return f"2xx|{call_id}|{cseq}"
