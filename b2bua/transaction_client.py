"""Client transactions of RFC 3261 17.1: INVITE (ICT, figure 5) and non-INVITE (NICT, 6).

Theory of operation: the TU hands a request to the transaction layer, which creates a
machine here. The machine sends the request at once and retransmits it over unreliable
transports on timer A (INVITE, doubling without a cap) or timer E (non-INVITE, doubling
up to T2; T2 flat once a provisional arrived). Timer B/F (64*T1) ends it with a timeout.
Responses are passed to the TU except retransmitted finals, which are absorbed. A
non-2xx final to an INVITE is acknowledged by the transaction itself (17.1.1.3) and the
ACK is resent for every retransmission of that final while timer D runs.

A 2xx to an INVITE moves the ICT to ``ACCEPTED`` (RFC 6026 fixes RFC 3261 here): for
64*T1 (timer M) retransmitted 2xx, including those of other forks, still match and go
to the TU, whose dialog sends the ACK for a 2xx (that ACK is not part of a transaction).
"""

from __future__ import annotations

from b2bua.headers import Headers
from b2bua.message import Request, Response
from b2bua.transaction_machine import (
    Backoff,
    Cancel,
    Do,
    Input,
    Machine,
    ResponseReceived,
    RestartT2,
    Start,
    State,
    Table,
    Timer,
    TransactionTimedOut,
    check_table,
)

S = State
I = Input  # noqa: E741 - short names keep the tables readable

ICT_TABLE: Table = {
    # 17.1.1.2, figure 5
    (S.CALLING, I.TIMER_A): ((Do.SEND_REQUEST, Backoff(Timer.A)), S.CALLING),
    (S.CALLING, I.TIMER_B): ((Do.REPORT_TIMEOUT,), S.TERMINATED),
    (S.CALLING, I.TRANSPORT_ERROR): ((Do.REPORT_TIMEOUT,), S.TERMINATED),
    (S.CALLING, I.RESP_1XX): (
        (Cancel(Timer.A), Cancel(Timer.B), Do.DELIVER_RESPONSE),
        S.PROCEEDING,
    ),
    (S.CALLING, I.RESP_2XX): (
        (Cancel(Timer.A), Cancel(Timer.B), Do.DELIVER_RESPONSE, Start(Timer.M)),
        S.ACCEPTED,
    ),
    (S.CALLING, I.RESP_FINAL): (
        (Cancel(Timer.A), Cancel(Timer.B), Do.DELIVER_RESPONSE, Do.SEND_ACK, Start(Timer.D)),
        S.COMPLETED,
    ),
    (S.PROCEEDING, I.RESP_1XX): ((Do.DELIVER_RESPONSE,), S.PROCEEDING),
    (S.PROCEEDING, I.RESP_2XX): ((Do.DELIVER_RESPONSE, Start(Timer.M)), S.ACCEPTED),
    (S.PROCEEDING, I.RESP_FINAL): (
        (Do.DELIVER_RESPONSE, Do.SEND_ACK, Start(Timer.D)),
        S.COMPLETED,
    ),
    (S.PROCEEDING, I.TRANSPORT_ERROR): ((Do.REPORT_TIMEOUT,), S.TERMINATED),
    # Retransmitted non-2xx final: ACK again, do not bother the TU.
    (S.COMPLETED, I.RESP_FINAL): ((Do.SEND_ACK,), S.COMPLETED),
    # A provisional overtaken by the final on the way: nothing left to do with it.
    (S.COMPLETED, I.RESP_1XX): ((Do.ABSORB,), S.COMPLETED),
    (S.COMPLETED, I.TIMER_D): ((), S.TERMINATED),
    (S.COMPLETED, I.TRANSPORT_ERROR): ((), S.TERMINATED),
    # RFC 6026 7.2: 2xx retransmissions (and other forks) go to the TU.
    (S.ACCEPTED, I.RESP_2XX): ((Do.DELIVER_RESPONSE,), S.ACCEPTED),
    (S.ACCEPTED, I.RESP_1XX): ((Do.ABSORB,), S.ACCEPTED),
    (S.ACCEPTED, I.TIMER_M): ((), S.TERMINATED),
}

NICT_TABLE: Table = {
    # 17.1.2.2, figure 6
    (S.TRYING, I.TIMER_E): ((Do.SEND_REQUEST, Backoff(Timer.E)), S.TRYING),
    (S.TRYING, I.TIMER_F): ((Do.REPORT_TIMEOUT,), S.TERMINATED),
    (S.TRYING, I.TRANSPORT_ERROR): ((Do.REPORT_TIMEOUT,), S.TERMINATED),
    (S.TRYING, I.RESP_1XX): ((Do.DELIVER_RESPONSE,), S.PROCEEDING),
    (S.TRYING, I.RESP_2XX): (
        (Cancel(Timer.E), Cancel(Timer.F), Do.DELIVER_RESPONSE, Start(Timer.K)),
        S.COMPLETED,
    ),
    (S.TRYING, I.RESP_FINAL): (
        (Cancel(Timer.E), Cancel(Timer.F), Do.DELIVER_RESPONSE, Start(Timer.K)),
        S.COMPLETED,
    ),
    (S.PROCEEDING, I.TIMER_E): ((Do.SEND_REQUEST, RestartT2(Timer.E)), S.PROCEEDING),
    (S.PROCEEDING, I.TIMER_F): ((Do.REPORT_TIMEOUT,), S.TERMINATED),
    (S.PROCEEDING, I.TRANSPORT_ERROR): ((Do.REPORT_TIMEOUT,), S.TERMINATED),
    (S.PROCEEDING, I.RESP_1XX): ((Do.DELIVER_RESPONSE,), S.PROCEEDING),
    (S.PROCEEDING, I.RESP_2XX): (
        (Cancel(Timer.E), Cancel(Timer.F), Do.DELIVER_RESPONSE, Start(Timer.K)),
        S.COMPLETED,
    ),
    (S.PROCEEDING, I.RESP_FINAL): (
        (Cancel(Timer.E), Cancel(Timer.F), Do.DELIVER_RESPONSE, Start(Timer.K)),
        S.COMPLETED,
    ),
    # Timer K exists to absorb retransmitted finals (and late provisionals).
    (S.COMPLETED, I.RESP_1XX): ((Do.ABSORB,), S.COMPLETED),
    (S.COMPLETED, I.RESP_2XX): ((Do.ABSORB,), S.COMPLETED),
    (S.COMPLETED, I.RESP_FINAL): ((Do.ABSORB,), S.COMPLETED),
    (S.COMPLETED, I.TIMER_K): ((), S.TERMINATED),
}

check_table(ICT_TABLE, frozenset({S.CALLING, S.PROCEEDING, S.COMPLETED, S.ACCEPTED, S.TERMINATED}))
check_table(NICT_TABLE, frozenset({S.TRYING, S.PROCEEDING, S.COMPLETED, S.TERMINATED}))


def response_input(status: int) -> Input:
    """Classifies a received response for the tables."""
    if status < 200:
        return Input.RESP_1XX
    if status < 300:
        return Input.RESP_2XX
    return Input.RESP_FINAL


def ack_for_non2xx(request: Request, response: Response) -> Request:
    """The ACK an INVITE client transaction sends for a 300-699 final (RFC 3261 17.1.1.3).

    Request-URI, Call-ID, From and the top Via (same branch) come from the INVITE, To
    from the response (it carries the tag), CSeq is the INVITE's number with method ACK,
    and the INVITE's Route header fields are kept.
    """
    old = request.headers
    fields: list[tuple[str, str]] = [("Via", str(request.top_via))]
    fields.append(("Max-Forwards", "70"))
    fields += [("Route", value) for value in old.get_all("Route")]
    fields.append(("From", _required(old, "From")))
    fields.append(("To", _required(response.headers, "To")))
    fields.append(("Call-ID", _required(old, "Call-ID")))
    fields.append(("CSeq", f"{request.cseq[0]} ACK"))
    fields.append(("Content-Length", "0"))
    return Request("ACK", request.uri, Headers.of(*fields))


def _required(headers: Headers, name: str) -> str:
    value = headers.get(name)
    if value is None:  # the layer only builds machines for messages that have these
        raise ValueError(f"missing {name}")
    return value


class _ClientMachine(Machine):
    request: Request
    _request_bytes: bytes

    def start(self, request: Request, now: float) -> None:
        """Sends the request and arms the first timers (the table's initial step)."""
        self.request = request
        self._request_bytes = request.to_bytes()
        self._send(self._request_bytes, self.peer)
        for timer in self.FIRST_TIMERS:
            self._start(timer, now)

    FIRST_TIMERS: tuple[Timer, ...] = ()

    def _do(self, action: Do, now: float, message: Request | Response | None) -> None:
        match action:
            case Do.SEND_REQUEST:
                self.stats.retransmissions += 1
                self._send(self._request_bytes, self.peer)
            case Do.DELIVER_RESPONSE:
                assert isinstance(message, Response)
                self._emit(ResponseReceived(message, self.key))
            case Do.REPORT_TIMEOUT:
                self._emit(TransactionTimedOut(self.key))
            case Do.SEND_ACK:
                assert isinstance(message, Response)
                self._send(ack_for_non2xx(self.request, message).to_bytes(), self.peer)
            case Do.ABSORB:
                pass
            case _:
                raise AssertionError(f"{action} is not a client action")


class InviteClientTransaction(_ClientMachine):
    TABLE = ICT_TABLE
    INITIAL = State.CALLING
    FIRST_TIMERS = (Timer.A, Timer.B)


class NonInviteClientTransaction(_ClientMachine):
    TABLE = NICT_TABLE
    INITIAL = State.TRYING
    FIRST_TIMERS = (Timer.E, Timer.F)
