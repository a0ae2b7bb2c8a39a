"""The table-driven engine shared by the four RFC 3261 section 17 transaction machines.

Theory of operation: a transaction machine is a state (an Enum) plus a transition table
``(State, Input) -> (actions, next_state)``. Inputs are messages (a response from the
network, a request retransmission, an ACK, a response from the TU) and timer expiries.
Actions are either message work (send the request, pass a response up, send an ACK ...)
or timer work (``Start``, ``Backoff``, ``Cancel``) on named timers. A machine never reads
the clock: every input comes with ``now``, armed timers are absolute deadlines that the
owner (the transaction layer) collects and fires back as ``Input.TIMER_x`` inputs.

A pair that the table lacks is a protocol error: it is logged and counted, the input is
dropped and the state is unchanged. It never raises into the caller.

On reliable transports (TCP) the retransmission timers A, E and G are not armed and the
wait timers D, I, J and K are zero: a zero timer fires at once, inside the same call.

This module also holds the events the transaction layer hands to the TU and the timer
configuration, because the machines and the layer both need them.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import ClassVar

from b2bua.message import Request, Response

log = logging.getLogger("b2bua.transaction")

Addr = tuple[str, int]


# ---------------------------------------------------------------------------------------
# Configuration and counters
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TimerConfig:
    """RFC 3261 timer base values (table 4) in seconds.

    ``trying_100`` is how long an INVITE server transaction waits for the TU before it
    sends 100 Trying itself (17.2.1: 200 ms); None turns that off. A TU that answers in
    the same call (a 401 challenge to a phone) cancels it anyway: no 100 goes out first.
    """

    t1: float = 0.5
    t2: float = 4.0
    t4: float = 5.0
    timer_d: float = 32.0
    trying_100: float | None = 0.2


@dataclass
class TransactionStats:
    """Counters of things that are dropped rather than raised."""

    stray_responses: int = 0
    protocol_errors: int = 0
    malformed: int = 0
    retransmissions: int = 0
    absorbed_requests: int = 0


# ---------------------------------------------------------------------------------------
# Events for the TU
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RequestReceived:
    """A new request (not a retransmission); answer it with ``send_response(key, ...)``."""

    request: Request
    source: Addr
    key: str


@dataclass(frozen=True)
class CancelReceived:
    """A CANCEL; ``key`` is its own transaction (answer 200 or 481 there).

    ``invite_key`` is the INVITE server transaction it cancels (RFC 3261 9.2), or None
    when nothing matches (then answer the CANCEL 481).
    """

    request: Request
    source: Addr
    key: str
    invite_key: str | None


@dataclass(frozen=True)
class AckReceived:
    """An ACK for a 2xx: it belongs to the dialog, not to a transaction (RFC 3261 17)."""

    request: Request
    source: Addr


@dataclass(frozen=True)
class ResponseReceived:
    """A response for the client transaction ``key`` that the TU must see."""

    response: Response
    key: str


@dataclass(frozen=True)
class TransactionTimedOut:
    """Timer B, F or H fired, or the transport failed: treat as 408 (RFC 3261 8.1.3.1)."""

    key: str


@dataclass(frozen=True)
class TransactionTerminated:
    """The transaction ``key`` is gone; later messages for it no longer match."""

    key: str


@dataclass(frozen=True)
class StrayResponse:
    """A response that matches no client transaction (dropped and counted).

    A retransmitted 2xx to an INVITE after its transaction ended also arrives this
    way; the TU may answer it with an ACK from its dialog.
    """

    response: Response
    source: Addr


@dataclass(frozen=True)
class AckTimedOut:
    """A 2xx to INVITE was retransmitted for 64*T1 without an ACK (RFC 3261 13.3.1.4).

    The TU should confirm and at once terminate the dialog with a BYE.
    """

    call_id: str
    cseq: int
    response: Response


Event = (
    RequestReceived
    | CancelReceived
    | AckReceived
    | ResponseReceived
    | TransactionTimedOut
    | TransactionTerminated
    | StrayResponse
    | AckTimedOut
)


# ---------------------------------------------------------------------------------------
# Table vocabulary
# ---------------------------------------------------------------------------------------


class State(enum.Enum):
    """States of RFC 3261 figures 5-8, plus ``ACCEPTED`` from RFC 6026."""

    CALLING = "calling"
    TRYING = "trying"
    PROCEEDING = "proceeding"
    COMPLETED = "completed"
    CONFIRMED = "confirmed"
    ACCEPTED = "accepted"
    TERMINATED = "terminated"


class Timer(enum.Enum):
    A = "A"
    B = "B"
    D = "D"
    E = "E"
    F = "F"
    G = "G"
    H = "H"
    I = "I"  # noqa: E741 - the RFC's name
    J = "J"
    K = "K"
    L = "L"  # RFC 6026
    M = "M"  # RFC 6026
    TRYING_100 = "100"


class Input(enum.Enum):
    RESP_1XX = "1xx"
    RESP_2XX = "2xx"
    RESP_FINAL = "300-699"  # the non-INVITE tables treat RESP_2XX and RESP_FINAL alike
    REQUEST = "request retransmission"
    ACK = "ACK"
    TU_1XX = "TU 1xx"
    TU_2XX = "TU 2xx"
    TU_FINAL = "TU 300-699"
    TRANSPORT_ERROR = "transport error"
    TIMER_A = "timer A"
    TIMER_B = "timer B"
    TIMER_D = "timer D"
    TIMER_E = "timer E"
    TIMER_F = "timer F"
    TIMER_G = "timer G"
    TIMER_H = "timer H"
    TIMER_I = "timer I"
    TIMER_J = "timer J"
    TIMER_K = "timer K"
    TIMER_L = "timer L"
    TIMER_M = "timer M"
    TIMER_TRYING_100 = "timer 100 Trying"


TIMER_INPUT: Mapping[Timer, Input] = {t: Input["TIMER_" + t.name] for t in Timer}


class Do(enum.Enum):
    """Message actions."""

    SEND_REQUEST = "send request"
    SEND_ACK = "send ACK for a non-2xx final"
    DELIVER_RESPONSE = "pass response to TU"
    REPORT_TIMEOUT = "report timeout to TU"
    SEND_RESPONSE = "send the TU's response"
    RESEND_RESPONSE = "resend the last response"
    SEND_100 = "send 100 Trying"
    DELIVER_ACK = "pass ACK to TU"
    ABSORB = "absorb"


@dataclass(frozen=True)
class Start:
    """Arm a timer with its initial value (not at all for A/E/G on reliable transports)."""

    timer: Timer


@dataclass(frozen=True)
class Backoff:
    """Re-arm a retransmission timer with its doubled interval (E and G capped at T2)."""

    timer: Timer


@dataclass(frozen=True)
class RestartT2:
    """Re-arm a retransmission timer with T2 (timer E in Proceeding, 17.1.2.2)."""

    timer: Timer


@dataclass(frozen=True)
class Cancel:
    timer: Timer


Action = Do | Start | Backoff | RestartT2 | Cancel
Table = Mapping[tuple[State, Input], tuple[tuple[Action, ...], State]]

_RETRANSMIT_TIMERS = frozenset({Timer.A, Timer.E, Timer.G})
_CAPPED_AT_T2 = frozenset({Timer.E, Timer.G})


class Machine:
    """One transaction: a state, a table and timers. Subclasses supply the message work.

    ``emit`` receives events for the TU; ``send`` receives bytes for a destination.
    """

    TABLE: ClassVar[Table]
    INITIAL: ClassVar[State]

    def __init__(
        self,
        key: str,
        *,
        peer: Addr,
        reliable: bool,
        config: TimerConfig,
        stats: TransactionStats,
        emit: Callable[[Event], None],
        send: Callable[[bytes, Addr], None],
    ) -> None:
        self.key = key
        self.peer = peer
        self.reliable = reliable
        self.config = config
        self.stats = stats
        self._emit = emit
        self._send = send
        self.state = self.INITIAL
        self.deadlines: dict[Timer, float] = {}
        self._interval: dict[Timer, float] = {}
        # Zero timers fire in the same call; kept in order here until then.
        self._immediate: list[Timer] = []

    # -- public -------------------------------------------------------------------------

    @property
    def terminated(self) -> bool:
        return self.state is State.TERMINATED

    def next_deadline(self) -> float | None:
        return min(self.deadlines.values()) if self.deadlines else None

    def fire_timer(self, timer: Timer, now: float) -> None:
        """The owner calls this when ``deadlines[timer]`` has passed."""
        if self.deadlines.pop(timer, None) is None:
            return
        self.feed(TIMER_INPUT[timer], now)

    def feed(self, inp: Input, now: float, message: Request | Response | None = None) -> bool:
        """Runs one input through the table; False if the table has no row for it."""
        row = self.TABLE.get((self.state, inp))
        if row is None:
            self.stats.protocol_errors += 1
            log.warning(
                "%s %s: unexpected %s in state %s, dropped",
                type(self).__name__,
                self.key,
                inp.value,
                self.state.value,
            )
            return False
        actions, next_state = row
        for action in actions:
            self._perform(action, now, message)
        self.state = next_state
        if next_state is State.TERMINATED:
            self.deadlines.clear()
            self._immediate.clear()
            self._emit(TransactionTerminated(self.key))
            return True
        while self._immediate and not self.terminated:
            timer = self._immediate.pop(0)
            self.feed(TIMER_INPUT[timer], now)
        return True

    # -- actions ------------------------------------------------------------------------

    def _perform(self, action: Action, now: float, message: Request | Response | None) -> None:
        if isinstance(action, Do):
            self._do(action, now, message)
        elif isinstance(action, Start):
            self._start(action.timer, now)
        elif isinstance(action, Backoff):
            cap = self.config.t2 if action.timer in _CAPPED_AT_T2 else float("inf")
            interval = min(self._interval.get(action.timer, self.config.t1) * 2, cap)
            self._arm(action.timer, interval, now)
        elif isinstance(action, RestartT2):
            self._arm(action.timer, self.config.t2, now)
        else:
            self.deadlines.pop(action.timer, None)

    def _start(self, timer: Timer, now: float) -> None:
        cfg = self.config
        if timer in _RETRANSMIT_TIMERS:
            if not self.reliable:
                self._arm(timer, cfg.t1, now)
            return
        duration: float | None
        match timer:
            case Timer.B | Timer.F | Timer.H | Timer.L | Timer.M:
                duration = 64 * cfg.t1
            case Timer.D:
                duration = 0.0 if self.reliable else cfg.timer_d
            case Timer.I | Timer.K:
                duration = 0.0 if self.reliable else cfg.t4
            case Timer.J:
                duration = 0.0 if self.reliable else 64 * cfg.t1
            case _:
                duration = cfg.trying_100
        if duration is None:
            return
        if duration <= 0:
            self._immediate.append(timer)
        else:
            self._arm(timer, duration, now)

    def _arm(self, timer: Timer, interval: float, now: float) -> None:
        self._interval[timer] = interval
        self.deadlines[timer] = now + interval

    def _do(self, action: Do, now: float, message: Request | Response | None) -> None:
        raise NotImplementedError


def check_table(table: Table, states: frozenset[State]) -> None:
    """Import-time sanity check: every row starts and ends in the machine's states."""
    for (state, _inp), (_actions, nxt) in table.items():
        if state not in states or nxt not in states:
            raise AssertionError(
                f"table row {state} -> {nxt} outside {sorted(s.value for s in states)}"
            )
