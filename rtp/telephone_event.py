"""RFC 4733 telephone-event receiver: packets in, one DigitEvent per key press out.

Theory of operation
-------------------
An RFC 4733 sender sends a key press as a series of packets that all carry the RTP
timestamp of the event's start (section 2.3.1), with a growing duration; the last one
has the E bit set and is usually sent three times (section 2.5.1.4). So the RTP
timestamp names the event: the receiver reports a digit the first time it sees a
timestamp (at the start of the press, for barge-in), and stays silent for every later
packet of that timestamp, end packets and their copies included. When the start packets
were lost the first packet seen may already be an end packet: the digit is still
reported, once. A press held longer than the 16-bit duration field allows is sent in
segments (section 2.5.1.3): a new segment carries the timestamp of the previous one plus
its duration, same event, no E bit before it. Such a continuation is not a new press.
The same digit pressed again starts a new event with a new timestamp: a new report.

Per timestamp the receiver keeps a tiny record (event code, last duration, ended); the
records of the last few events are enough, since packets of an event arrive within
seconds. The receiver is a two-state machine per stream (IDLE: no press in progress,
ACTIVE: the last event has not ended), written as a table below. Sans-I/O: the caller
passes RTP timestamp, payload and ``now``; nothing reads a clock.
"""

from __future__ import annotations

import enum
from collections import OrderedDict
from dataclasses import dataclass
from typing import Final

from media.dtmf import EVENT_DIGITS
from rtp.packet import RtpError, parse_telephone_event

__all__ = ["DigitEvent", "TelephoneEventReceiver"]

_TS_MOD: Final[int] = 1 << 32
_REMEMBERED: Final[int] = 16  # recent event timestamps kept to recognise late copies
_SEGMENT_SLACK: Final[int] = 320  # samples: senders round a segment's duration to a frame


@dataclass(frozen=True, slots=True)
class DigitEvent:
    """A key press reported by RFC 4733 (at its first packet seen)."""

    digit: str
    at: float  # the `now` of the feed call that reported it
    rtp_timestamp: int
    duration: int = 0  # samples, as in the packet that reported it
    method: str = "rfc4733"


class _State(enum.Enum):
    IDLE = "no press in progress"
    ACTIVE = "last event not ended"


class _Input(enum.Enum):
    NEW_EVENT = "first packet of a new timestamp"
    NEW_EVENT_ENDED = "first packet of a new timestamp, already an end packet"
    CONTINUATION = "first packet of the next segment of a long event"
    SAME_EVENT = "another packet of a known timestamp, not an end"
    SAME_EVENT_END = "an end packet of a known timestamp"
    STALE = "a late packet of an older event"


class _Action(enum.Enum):
    REPORT = "report the digit"
    NOTHING = "nothing"


_TABLE: Final[dict[tuple[_State, _Input], tuple[_Action, _State]]] = {
    (_State.IDLE, _Input.NEW_EVENT): (_Action.REPORT, _State.ACTIVE),
    (_State.IDLE, _Input.NEW_EVENT_ENDED): (_Action.REPORT, _State.IDLE),
    (_State.IDLE, _Input.SAME_EVENT): (_Action.NOTHING, _State.IDLE),  # late packet
    (_State.IDLE, _Input.SAME_EVENT_END): (_Action.NOTHING, _State.IDLE),  # end copies
    (_State.ACTIVE, _Input.NEW_EVENT): (_Action.REPORT, _State.ACTIVE),  # end was lost
    (_State.ACTIVE, _Input.NEW_EVENT_ENDED): (_Action.REPORT, _State.IDLE),
    (_State.ACTIVE, _Input.CONTINUATION): (_Action.NOTHING, _State.ACTIVE),
    (_State.ACTIVE, _Input.SAME_EVENT): (_Action.NOTHING, _State.ACTIVE),
    (_State.ACTIVE, _Input.SAME_EVENT_END): (_Action.NOTHING, _State.IDLE),
    (_State.IDLE, _Input.STALE): (_Action.NOTHING, _State.IDLE),
    (_State.ACTIVE, _Input.STALE): (_Action.NOTHING, _State.ACTIVE),
}


@dataclass(slots=True)
class _Seen:
    event: int
    duration: int
    ended: bool


class TelephoneEventReceiver:
    """Turns the telephone-event packets of one RTP stream into DigitEvents."""

    def __init__(self) -> None:
        self._state = _State.IDLE
        self._seen: OrderedDict[int, _Seen] = OrderedDict()
        self._last_ts: int | None = None  # timestamp of the newest event
        self.malformed = 0  # payloads that are not a telephone-event
        self.non_digit = 0  # events other than 0-15 (flash, tones): ignored
        self.protocol_errors = 0  # (state, input) pairs outside the table

    def feed(self, timestamp: int, payload: bytes, now: float) -> list[DigitEvent]:
        """One telephone-event packet (RTP timestamp, payload): the digits it starts."""
        try:
            te = parse_telephone_event(payload)
        except RtpError:
            self.malformed += 1
            return []
        if te.event >= len(EVENT_DIGITS):
            self.non_digit += 1
            return []
        timestamp %= _TS_MOD
        kind = self._classify(timestamp, te.event, te.end)
        try:
            action, next_state = _TABLE[(self._state, kind)]
        except KeyError:
            self.protocol_errors += 1
            return []
        seen = self._seen.get(timestamp)
        if seen is None:
            self._remember(timestamp, _Seen(te.event, te.duration, te.end))
        else:
            seen.duration = max(seen.duration, te.duration)
            seen.ended = seen.ended or te.end
        self._state = next_state
        if action is _Action.REPORT:
            return [DigitEvent(EVENT_DIGITS[te.event], now, timestamp, te.duration)]
        return []

    def _classify(self, timestamp: int, event: int, end: bool) -> _Input:
        seen = self._seen.get(timestamp)
        if seen is not None:
            if timestamp != self._last_ts:
                return _Input.STALE
            return _Input.SAME_EVENT_END if end else _Input.SAME_EVENT
        last = self._seen.get(self._last_ts) if self._last_ts is not None else None
        if last is not None and not last.ended and last.event == event:
            assert self._last_ts is not None
            gap = (timestamp - self._last_ts - last.duration) % _TS_MOD
            if gap <= _SEGMENT_SLACK or gap >= _TS_MOD - _SEGMENT_SLACK:
                # A continuation inherits the press; its own end closes it.
                return _Input.CONTINUATION if not end else _Input.SAME_EVENT_END
        return _Input.NEW_EVENT_ENDED if end else _Input.NEW_EVENT

    def _remember(self, timestamp: int, seen: _Seen) -> None:
        self._seen[timestamp] = seen
        self._last_ts = timestamp
        while len(self._seen) > _REMEMBERED:
            self._seen.popitem(last=False)
