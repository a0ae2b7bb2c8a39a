"""Server transactions of RFC 3261 17.2 (IST figure 7, NIST figure 8) and the UAS core's
2xx retransmission (13.3.1.4).

Theory of operation: the transaction layer creates a server machine for each new
request and hands the request to the TU. Retransmissions of the request match the
machine and are absorbed: it resends the last response it sent (none yet: nothing).
The TU's responses go out through the machine, which keeps the last one.

INVITE (IST): starts in Proceeding. Unless turned off, it sends 100 Trying itself when
the TU stays silent for 200 ms. A 300-699 final moves it to Completed, where timer G
resends the final (T1 doubling up to T2) until the ACK arrives (Confirmed, timer I
absorbs further ACKs) or timer H (64*T1) gives up. A 2xx moves it to ``Accepted``
(RFC 6026): retransmitted INVITEs are absorbed instead of looking like new requests,
and ACKs with the INVITE's branch go to the TU; timer L (64*T1) ends it. Retransmitting
the 2xx itself is the UAS core's job: ``Invite2xxRetransmitter`` does that until the
ACK arrives or 64*T1 passes, and reports the give-up so the TU can send BYE.

Non-INVITE (NIST): Trying -> Proceeding on a provisional -> Completed on a final, where
timer J (64*T1 on UDP, zero on TCP) keeps absorbing retransmissions.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass

from b2bua.message import Request, Response, make_response
from b2bua.transaction_machine import (
    AckReceived,
    AckTimedOut,
    Addr,
    Backoff,
    Cancel,
    Do,
    Input,
    Machine,
    Start,
    State,
    Table,
    Timer,
    TransactionStats,
    TransactionTimedOut,
    check_table,
)

log = logging.getLogger("b2bua.transaction")

S = State
I = Input  # noqa: E741 - short names keep the tables readable

IST_TABLE: Table = {
    # 17.2.1, figure 7, with RFC 6026's Accepted state
    (S.PROCEEDING, I.REQUEST): ((Do.RESEND_RESPONSE,), S.PROCEEDING),
    (S.PROCEEDING, I.TIMER_TRYING_100): ((Do.SEND_100,), S.PROCEEDING),
    (S.PROCEEDING, I.TU_1XX): ((Cancel(Timer.TRYING_100), Do.SEND_RESPONSE), S.PROCEEDING),
    (S.PROCEEDING, I.TU_2XX): (
        (Cancel(Timer.TRYING_100), Do.SEND_RESPONSE, Start(Timer.L)),
        S.ACCEPTED,
    ),
    (S.PROCEEDING, I.TU_FINAL): (
        (Cancel(Timer.TRYING_100), Do.SEND_RESPONSE, Start(Timer.G), Start(Timer.H)),
        S.COMPLETED,
    ),
    (S.PROCEEDING, I.TRANSPORT_ERROR): ((Do.REPORT_TIMEOUT,), S.TERMINATED),
    (S.COMPLETED, I.REQUEST): ((Do.RESEND_RESPONSE,), S.COMPLETED),
    (S.COMPLETED, I.TIMER_G): ((Do.RESEND_RESPONSE, Backoff(Timer.G)), S.COMPLETED),
    (S.COMPLETED, I.TIMER_H): ((Do.REPORT_TIMEOUT,), S.TERMINATED),
    (S.COMPLETED, I.TRANSPORT_ERROR): ((Do.REPORT_TIMEOUT,), S.TERMINATED),
    (S.COMPLETED, I.ACK): ((Cancel(Timer.G), Cancel(Timer.H), Start(Timer.I)), S.CONFIRMED),
    (S.CONFIRMED, I.ACK): ((Do.ABSORB,), S.CONFIRMED),
    # An INVITE retransmission overtaken by its own ACK: the final already reached it.
    (S.CONFIRMED, I.REQUEST): ((Do.ABSORB,), S.CONFIRMED),
    (S.CONFIRMED, I.TIMER_I): ((), S.TERMINATED),
    (S.ACCEPTED, I.REQUEST): ((Do.ABSORB,), S.ACCEPTED),
    (S.ACCEPTED, I.ACK): ((Do.DELIVER_ACK,), S.ACCEPTED),
    (S.ACCEPTED, I.TU_2XX): ((Do.SEND_RESPONSE,), S.ACCEPTED),
    (S.ACCEPTED, I.TIMER_L): ((), S.TERMINATED),
}

NIST_TABLE: Table = {
    # 17.2.2, figure 8
    (S.TRYING, I.REQUEST): ((Do.ABSORB,), S.TRYING),
    (S.TRYING, I.TU_1XX): ((Do.SEND_RESPONSE,), S.PROCEEDING),
    (S.TRYING, I.TU_2XX): ((Do.SEND_RESPONSE, Start(Timer.J)), S.COMPLETED),
    (S.TRYING, I.TU_FINAL): ((Do.SEND_RESPONSE, Start(Timer.J)), S.COMPLETED),
    (S.PROCEEDING, I.REQUEST): ((Do.RESEND_RESPONSE,), S.PROCEEDING),
    (S.PROCEEDING, I.TU_1XX): ((Do.SEND_RESPONSE,), S.PROCEEDING),
    (S.PROCEEDING, I.TU_2XX): ((Do.SEND_RESPONSE, Start(Timer.J)), S.COMPLETED),
    (S.PROCEEDING, I.TU_FINAL): ((Do.SEND_RESPONSE, Start(Timer.J)), S.COMPLETED),
    (S.PROCEEDING, I.TRANSPORT_ERROR): ((Do.REPORT_TIMEOUT,), S.TERMINATED),
    (S.COMPLETED, I.REQUEST): ((Do.RESEND_RESPONSE,), S.COMPLETED),
    (S.COMPLETED, I.TRANSPORT_ERROR): ((), S.TERMINATED),
    (S.COMPLETED, I.TIMER_J): ((), S.TERMINATED),
}

check_table(
    IST_TABLE, frozenset({S.PROCEEDING, S.COMPLETED, S.CONFIRMED, S.ACCEPTED, S.TERMINATED})
)
check_table(NIST_TABLE, frozenset({S.TRYING, S.PROCEEDING, S.COMPLETED, S.TERMINATED}))


def tu_response_input(status: int) -> Input:
    """Classifies a response from the TU for the tables."""
    if status < 200:
        return Input.TU_1XX
    if status < 300:
        return Input.TU_2XX
    return Input.TU_FINAL


class _ServerMachine(Machine):
    request: Request
    last_response: Response | None = None
    _last_bytes: bytes | None = None

    def start(self, request: Request, now: float) -> None:
        self.request = request
        if isinstance(self, InviteServerTransaction):
            self._start(Timer.TRYING_100, now)

    def _do(self, action: Do, now: float, message: Request | Response | None) -> None:
        match action:
            case Do.SEND_RESPONSE:
                assert isinstance(message, Response)
                self._transmit(message)
            case Do.RESEND_RESPONSE:
                if message is not None:  # a request retransmission, not timer G
                    self.stats.absorbed_requests += 1
                if self._last_bytes is not None:
                    self.stats.retransmissions += 1
                    self._send(self._last_bytes, self.peer)
            case Do.SEND_100:
                self._transmit(make_response(self.request, 100, "Trying"))
            case Do.DELIVER_ACK:
                assert isinstance(message, Request)
                # Sent to the peer's address: the source of the INVITE.
                self._emit(AckReceived(message, self.peer))
            case Do.REPORT_TIMEOUT:
                self._emit(TransactionTimedOut(self.key))
            case Do.ABSORB:
                self.stats.absorbed_requests += 1
            case _:
                raise AssertionError(f"{action} is not a server action")

    def _transmit(self, response: Response) -> None:
        self.last_response = response
        self._last_bytes = response.to_bytes()
        self._send(self._last_bytes, self.peer)


class InviteServerTransaction(_ServerMachine):
    TABLE = IST_TABLE
    INITIAL = State.PROCEEDING


class NonInviteServerTransaction(_ServerMachine):
    TABLE = NIST_TABLE
    INITIAL = State.TRYING


# ---------------------------------------------------------------------------------------
# 2xx retransmission by the UAS core (13.3.1.4)
# ---------------------------------------------------------------------------------------


class RtxState(enum.Enum):
    WAITING_ACK = "waiting for ACK"
    ACKED = "acknowledged"
    GAVE_UP = "gave up"


class RtxInput(enum.Enum):
    TIMER_RETRANSMIT = "retransmit timer"
    TIMER_GIVE_UP = "64*T1 timer"
    ACK = "ACK"


class RtxDo(enum.Enum):
    RESEND = "resend 2xx and back off"
    REPORT = "report AckTimedOut"
    NOTHING = "absorb"


RTX_TABLE: dict[tuple[RtxState, RtxInput], tuple[RtxDo, RtxState]] = {
    (RtxState.WAITING_ACK, RtxInput.TIMER_RETRANSMIT): (RtxDo.RESEND, RtxState.WAITING_ACK),
    (RtxState.WAITING_ACK, RtxInput.TIMER_GIVE_UP): (RtxDo.REPORT, RtxState.GAVE_UP),
    (RtxState.WAITING_ACK, RtxInput.ACK): (RtxDo.NOTHING, RtxState.ACKED),
    # The ACK of a 2xx may be retransmitted along with the 2xx retransmissions.
    (RtxState.ACKED, RtxInput.ACK): (RtxDo.NOTHING, RtxState.ACKED),
}


@dataclass
class Invite2xxRetransmitter:
    """Retransmits a 2xx to INVITE (T1 doubling to T2) until ACK or 64*T1 (13.3.1.4).

    The caller sends the first copy; :meth:`handle_timer` returns the bytes of each
    retransmission due and, once 64*T1 passed without an ACK, an :class:`AckTimedOut`.
    """

    response: Response
    destination: Addr
    started: float
    t1: float = 0.5
    t2: float = 4.0
    stats: TransactionStats | None = None

    def __post_init__(self) -> None:
        self.state = RtxState.WAITING_ACK
        self._bytes = self.response.to_bytes()
        self._interval = self.t1
        self._retransmit_at: float | None = self.started + self.t1
        self._give_up_at: float | None = self.started + 64 * self.t1

    @property
    def done(self) -> bool:
        return self.state is not RtxState.WAITING_ACK

    def next_deadline(self) -> float | None:
        times = [t for t in (self._retransmit_at, self._give_up_at) if t is not None]
        return min(times) if times else None

    def ack_received(self) -> None:
        self._feed(RtxInput.ACK, 0.0)

    def handle_timer(self, now: float) -> list[bytes | AckTimedOut]:
        """Fires what is due at ``now``; once 64*T1 passed, only the give-up."""
        if self._give_up_at is not None and self._give_up_at <= now:
            return self._feed(RtxInput.TIMER_GIVE_UP, now)
        if self._retransmit_at is not None and self._retransmit_at <= now:
            return self._feed(RtxInput.TIMER_RETRANSMIT, now)
        return []

    def _feed(self, inp: RtxInput, now: float) -> list[bytes | AckTimedOut]:
        row = RTX_TABLE.get((self.state, inp))
        if row is None:
            if self.stats is not None:
                self.stats.protocol_errors += 1
            log.warning("2xx retransmitter: unexpected %s in %s", inp.value, self.state.value)
            return []
        action, self.state = row
        if self.state is not RtxState.WAITING_ACK:
            self._retransmit_at = self._give_up_at = None
        match action:
            case RtxDo.RESEND:
                self._interval = min(self._interval * 2, self.t2)
                self._retransmit_at = now + self._interval
                if self.stats is not None:
                    self.stats.retransmissions += 1
                return [self._bytes]
            case RtxDo.REPORT:
                cseq = self.response.cseq[0]
                return [AckTimedOut(self.response.call_id, cseq, self.response)]
            case _:
                return []
