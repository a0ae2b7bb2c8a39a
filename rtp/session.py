"""Per-leg RTP stream state, sans-I/O: latching, output continuity, receive statistics.

Theory of operation
-------------------
Each relay leg owns one ``Latch`` (who may send to us), one ``ReceiveStats`` (what the
peer sent, for our RTCP reports), one ``OutboundStream`` (what we send, with our own
SSRC) and one ``Inactivity`` timer. Nothing here reads a clock or touches a socket:
callers pass ``now`` (seconds, monotonic) and arm the deadlines they are given.

Latching (symmetric RTP behind NAT): before any packet arrives the latch is WAITING.
The first packet latches its source. If the SDP-announced address later sends, the
latch moves to it (PINNED) and stays there, because the SDP address is the one the
peer vouched for in signalling. Packets from any other source are dropped and counted
(the "RTP bleed" attack injects or steals media by racing the real peer). Only a new
SDP (``relatch``) starts over. The transitions are the table ``_LATCH_TABLE``; a pair
missing from it is a protocol error (``LatchError``), never a silent pass.

Output continuity: the stream behind a leg may change (announcement, then the bridged
party; a phone that restarts its SSRC). The far end must see one stream, so each new
source is rebased: its first packet gets the next sequence number and a timestamp
advanced by the wall time elapsed since our last packet, with the marker bit set.

The relay's per-packet fast path (``rtp.relay.RelayLeg._on_rtp_readable``) does what
``ReceiveStats.update`` (in-order packet past probation), ``OutboundStream.rewrite``
(next packet of the same source) and ``Inactivity.on_packet`` do, inline on their
attributes: a change to those methods' arithmetic or state must be made there too
(tests/test_relay_fastpath.py compares both paths on the same packet sequences).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from rtp.packet import (
    SDES_CNAME,
    Bye,
    ReceiverReport,
    ReportBlock,
    RtcpPacket,
    SdesChunk,
    SenderReport,
    SourceDescription,
)

__all__ = [
    "Address",
    "Inactivity",
    "Latch",
    "LatchError",
    "LatchState",
    "OutboundStream",
    "ReceiveStats",
    "build_rtcp_bye",
    "build_rtcp_report",
    "ntp_middle32",
    "ntp_timestamp",
]

Address = tuple[str, int]

_SEQ_MOD = 1 << 16
_TS_MOD = 1 << 32
# RFC 3550 A.1 constants.
MAX_DROPOUT = 3000
MAX_MISORDER = 100
MIN_SEQUENTIAL = 2
_NTP_UNIX_OFFSET = 2_208_988_800  # seconds from 1900-01-01 to 1970-01-01


def ntp_timestamp(unix_time: float) -> int:
    """64-bit NTP timestamp (RFC 3550 4) for a Unix time."""
    return int((unix_time + _NTP_UNIX_OFFSET) * (1 << 32)) & 0xFFFF_FFFF_FFFF_FFFF


def ntp_middle32(ntp: int) -> int:
    """The middle 32 bits used as LSR (RFC 3550 6.4.1)."""
    return (ntp >> 16) & 0xFFFFFFFF


# ------------------------------------------------------------------------ latching


class LatchState(enum.Enum):
    WAITING = "waiting"  # nothing latched yet
    LEARNED = "learned"  # latched to the first source seen, not the SDP address
    PINNED = "pinned"  # latched to the SDP address; final until a new SDP


class _LatchEvent(enum.Enum):
    FROM_LATCHED = "from_latched"
    FROM_SDP = "from_sdp"
    FROM_OTHER = "from_other"
    NEW_SDP = "new_sdp"


class _LatchAction(enum.Enum):
    ACCEPT = "accept"
    LATCH = "latch"  # accept and latch this source
    DROP = "drop"
    RESET = "reset"


_LATCH_TABLE: dict[tuple[LatchState, _LatchEvent], tuple[_LatchAction, LatchState]] = {
    (LatchState.WAITING, _LatchEvent.FROM_SDP): (_LatchAction.LATCH, LatchState.PINNED),
    (LatchState.WAITING, _LatchEvent.FROM_OTHER): (_LatchAction.LATCH, LatchState.LEARNED),
    (LatchState.LEARNED, _LatchEvent.FROM_LATCHED): (_LatchAction.ACCEPT, LatchState.LEARNED),
    (LatchState.LEARNED, _LatchEvent.FROM_SDP): (_LatchAction.LATCH, LatchState.PINNED),
    (LatchState.LEARNED, _LatchEvent.FROM_OTHER): (_LatchAction.DROP, LatchState.LEARNED),
    (LatchState.PINNED, _LatchEvent.FROM_LATCHED): (_LatchAction.ACCEPT, LatchState.PINNED),
    (LatchState.PINNED, _LatchEvent.FROM_OTHER): (_LatchAction.DROP, LatchState.PINNED),
    (LatchState.WAITING, _LatchEvent.NEW_SDP): (_LatchAction.RESET, LatchState.WAITING),
    (LatchState.LEARNED, _LatchEvent.NEW_SDP): (_LatchAction.RESET, LatchState.WAITING),
    (LatchState.PINNED, _LatchEvent.NEW_SDP): (_LatchAction.RESET, LatchState.WAITING),
}


class LatchError(RuntimeError):
    """A (state, event) pair the latch table does not allow: a bug, not bad input."""


class Latch:
    """Decides which source address may send media to one leg."""

    __slots__ = ("dropped", "expected", "latched", "state")

    def __init__(self, expected: Address | None = None) -> None:
        self.expected = expected  # the address from the peer's SDP, if usable
        self.latched: Address | None = None
        self.state = LatchState.WAITING
        self.dropped = 0

    def accept(self, source: Address) -> bool:
        """True if a packet from ``source`` is to be used; False if dropped (counted)."""
        if source == self.latched:  # the per-packet fast path
            return True
        event = _LatchEvent.FROM_SDP if source == self.expected else _LatchEvent.FROM_OTHER
        action = self._step(event)
        if action is _LatchAction.LATCH:
            self.latched = source
            return True
        self.dropped += 1
        return False

    def relatch(self, expected: Address | None) -> None:
        """A new SDP arrived: forget the latched source and learn again."""
        self._step(_LatchEvent.NEW_SDP)
        self.expected = expected
        self.latched = None

    @property
    def peer(self) -> Address | None:
        """Where to send to this leg: the latched source, else the SDP address."""
        return self.latched if self.latched is not None else self.expected

    def _step(self, event: _LatchEvent) -> _LatchAction:
        try:
            action, self.state = _LATCH_TABLE[(self.state, event)]
        except KeyError:
            raise LatchError(f"latch: {event.value} not allowed in {self.state.value}") from None
        return action


# ---------------------------------------------------------------- outbound stream


class OutboundStream:
    """Our side of one leg: fixed SSRC, continuous sequence and timestamp.

    ``rewrite`` maps a packet of whatever source feeds this leg to our numbering. A
    new source (another SSRC, a sequence jump beyond RFC 3550's dropout limits, or
    ``new_source()``) is rebased so the output continues without a gap.
    """

    __slots__ = (
        "_last_out_ts",
        "_last_time",
        "_seq_offset",
        "_src_seq",
        "_src_ssrc",
        "_ts_offset",
        "_ts_step",
        "clock_rate",
        "next_seq",
        "octet_count",
        "packet_count",
        "ssrc",
    )

    def __init__(self, ssrc: int, first_seq: int, first_ts: int, clock_rate: int = 8000) -> None:
        self.ssrc = ssrc & 0xFFFFFFFF
        self.clock_rate = clock_rate
        self.next_seq = first_seq & 0xFFFF  # the sequence number the next rebase uses
        self._last_out_ts = first_ts & 0xFFFFFFFF
        self._last_time: float | None = None
        self._src_ssrc: int | None = None
        self._src_seq = 0
        self._seq_offset = 0
        self._ts_offset = 0
        self._ts_step = 160  # last seen timestamp step; 20 ms at 8 kHz until known
        self.packet_count = 0
        self.octet_count = 0

    def new_source(self) -> None:
        """Force a rebase on the next packet (the caller knows the source changed)."""
        self._src_ssrc = None

    def rewrite(
        self, src_ssrc: int, src_seq: int, src_ts: int, marker: bool, now: float, size: int = 0
    ) -> tuple[int, int, bool]:
        """Return ``(seq, ts, marker)`` to send for a source packet; ``size`` = payload octets."""
        if src_ssrc == self._src_ssrc:
            delta = (src_seq - self._src_seq) % _SEQ_MOD
            if delta < MAX_DROPOUT:  # in order, possibly with a gap
                if delta:
                    step = (src_ts + self._ts_offset - self._last_out_ts) % _TS_MOD
                    if 0 < step < self.clock_rate:  # remember a plausible frame length
                        self._ts_step = step // delta if delta > 1 else step
                    self._src_seq = src_seq
            elif delta < _SEQ_MOD - MAX_MISORDER:  # a jump: the source restarted
                self._rebase(src_ssrc, src_seq, src_ts, now)
                marker = True
            # else: a late, reordered packet keeps its place under the same offsets
        else:
            self._rebase(src_ssrc, src_seq, src_ts, now)
            marker = True
        seq = (src_seq + self._seq_offset) % _SEQ_MOD
        ts = (src_ts + self._ts_offset) % _TS_MOD
        if (seq - self.next_seq) % _SEQ_MOD < MAX_DROPOUT:
            self.next_seq = (seq + 1) % _SEQ_MOD
            self._last_out_ts = ts
            self._last_time = now
        self.packet_count += 1
        self.octet_count += size
        return seq, ts, marker

    def _rebase(self, src_ssrc: int, src_seq: int, src_ts: int, now: float) -> None:
        ts = self._last_out_ts
        if self._last_time is not None:
            # Advance by the elapsed wall time, at least one frame, so timestamps of
            # the new source never repeat or run backwards against the old ones.
            elapsed = round((now - self._last_time) * self.clock_rate)
            ts = (ts + max(elapsed, self._ts_step)) % _TS_MOD
        self._src_ssrc = src_ssrc
        self._src_seq = src_seq
        self._seq_offset = (self.next_seq - src_seq) % _SEQ_MOD
        self._ts_offset = (ts - src_ts) % _TS_MOD

    def rtp_time(self, now: float) -> int:
        """RTP timestamp matching ``now`` (for the SR sender info, RFC 3550 6.4.1)."""
        if self._last_time is None:
            return self._last_out_ts
        return (self._last_out_ts + round((now - self._last_time) * self.clock_rate)) % _TS_MOD

    @property
    def has_sent(self) -> bool:
        return self.packet_count > 0


# ---------------------------------------------------------------- receive statistics


@dataclass(slots=True)
class _SrInfo:
    lsr: int
    arrival: float


class ReceiveStats:
    """RFC 3550 A.1 (sequence validation), A.3 (loss) and A.8 (jitter) for one source."""

    __slots__ = (
        "_bad_seq",
        "_base_seq",
        "_cycles",
        "_expected_prior",
        "_jitter",
        "_last_sr",
        "_max_seq",
        "_probation",
        "_received",
        "_received_prior",
        "_transit",
        "clock_rate",
        "ssrc",
    )

    def __init__(self, clock_rate: int = 8000) -> None:
        self.clock_rate = clock_rate
        self.ssrc: int | None = None
        self._last_sr: _SrInfo | None = None
        self._reset(0)

    def _reset(self, seq: int) -> None:
        self._base_seq = seq
        self._max_seq = seq
        self._bad_seq = _SEQ_MOD + 1  # so seq == bad_seq is false
        self._cycles = 0
        self._received = 0
        self._received_prior = 0
        self._expected_prior = 0
        self._probation = MIN_SEQUENTIAL
        self._transit: int | None = None
        self._jitter = 0.0

    def update(self, ssrc: int, seq: int, ts: int, now: float) -> bool:
        """Account one packet; False while on probation or for a bad sequence number."""
        if ssrc != self.ssrc:  # a new source: start over (we report on one stream)
            self.ssrc = ssrc
            self._reset(seq)
            self._max_seq = (seq - 1) % _SEQ_MOD
            self._probation = MIN_SEQUENTIAL
        if not self._update_seq(seq):
            return False
        # A.8: interarrival jitter in timestamp units.
        arrival = int(now * self.clock_rate)
        transit = (arrival - ts) % _TS_MOD
        if self._transit is not None:
            d = abs(((transit - self._transit + (1 << 31)) % _TS_MOD) - (1 << 31))
            self._jitter += (d - self._jitter) / 16.0
        self._transit = transit
        return True

    def _update_seq(self, seq: int) -> bool:
        udelta = (seq - self._max_seq) % _SEQ_MOD
        if self._probation:
            if seq == (self._max_seq + 1) % _SEQ_MOD:
                self._probation -= 1
                self._max_seq = seq
                if self._probation == 0:
                    probation_start = (seq - MIN_SEQUENTIAL + 1) % _SEQ_MOD
                    self._init_seq(probation_start)
                    self._max_seq = seq
                    self._received = MIN_SEQUENTIAL
                    return True
            else:
                self._probation = MIN_SEQUENTIAL - 1
                self._max_seq = seq
            return False
        if udelta < MAX_DROPOUT:
            if seq < self._max_seq:
                self._cycles += _SEQ_MOD
            self._max_seq = seq
        elif udelta <= _SEQ_MOD - MAX_MISORDER:
            if seq == self._bad_seq:
                # Two sequential packets after a big jump: the source restarted.
                self._init_seq(seq)
            else:
                self._bad_seq = (seq + 1) % _SEQ_MOD
                return False
        self._received += 1
        return True

    def _init_seq(self, seq: int) -> None:
        self._base_seq = seq
        self._max_seq = seq
        self._bad_seq = _SEQ_MOD + 1
        self._cycles = 0
        self._received = 0
        self._received_prior = 0
        self._expected_prior = 0

    @property
    def valid(self) -> bool:
        return self.ssrc is not None and self._probation == 0

    @property
    def extended_max(self) -> int:
        return self._cycles + self._max_seq

    @property
    def expected(self) -> int:
        return self.extended_max - self._base_seq + 1

    @property
    def lost(self) -> int:
        """Cumulative lost (A.3), clamped to the signed 24-bit field."""
        return max(-0x800000, min(0x7FFFFF, self.expected - self._received))

    @property
    def received(self) -> int:
        return self._received

    @property
    def jitter(self) -> int:
        return int(self._jitter)

    def on_sender_report(self, ntp: int, now: float) -> None:
        """Remember the peer's last SR for LSR/DLSR in our next report block."""
        self._last_sr = _SrInfo(ntp_middle32(ntp), now)

    def report_block(self, now: float) -> ReportBlock | None:
        """The block for our next RR/SR; advances the 'since last report' interval."""
        if not self.valid or self.ssrc is None:
            return None
        expected = self.expected
        expected_interval = expected - self._expected_prior
        received_interval = self._received - self._received_prior
        self._expected_prior = expected
        self._received_prior = self._received
        lost_interval = expected_interval - received_interval
        fraction = 0
        if expected_interval > 0 and lost_interval > 0:
            fraction = min(255, (lost_interval << 8) // expected_interval)
        lsr = dlsr = 0
        if self._last_sr is not None:
            lsr = self._last_sr.lsr
            dlsr = int((now - self._last_sr.arrival) * 65536) & 0xFFFFFFFF
        return ReportBlock(
            self.ssrc, fraction, self.lost, self.extended_max & 0xFFFFFFFF, self.jitter, lsr, dlsr
        )


# ------------------------------------------------------------------- inactivity


class Inactivity:
    """RTP inactivity timer; paused while the leg is on hold or ``a=inactive``."""

    __slots__ = ("_last", "paused", "timeout")

    def __init__(self, timeout: float, now: float) -> None:
        self.timeout = timeout
        self._last = now
        self.paused = False

    def on_packet(self, now: float) -> None:
        self._last = now

    def pause(self) -> None:
        self.paused = True

    def resume(self, now: float) -> None:
        """Media is expected again; the timeout counts from now, not the last packet."""
        self.paused = False
        self._last = now

    @property
    def last_packet(self) -> float:
        return self._last

    def deadline(self) -> float | None:
        """When the leg counts as dead if nothing arrives; None while paused."""
        return None if self.paused else self._last + self.timeout

    def expired(self, now: float) -> bool:
        deadline = self.deadline()
        return deadline is not None and now >= deadline


# ------------------------------------------------------------------- RTCP reports


def build_rtcp_report(
    outbound: OutboundStream,
    stats: ReceiveStats,
    *,
    sender: bool,
    now: float,
    unix_time: float,
    cname: bytes,
) -> tuple[RtcpPacket, ...]:
    """Our compound report for one leg (RFC 3550 6.1: SR or RR first, then SDES CNAME).

    ``sender``: we sent media since the previous report, so an SR is due (6.4).
    ``now`` is the monotonic clock of the stream state, ``unix_time`` the wall clock for
    the NTP field.
    """
    block = stats.report_block(now)
    blocks = (block,) if block is not None else ()
    first: RtcpPacket
    if sender:
        first = SenderReport(
            outbound.ssrc,
            ntp_timestamp(unix_time),
            outbound.rtp_time(now),
            outbound.packet_count,
            outbound.octet_count,
            blocks,
        )
    else:
        first = ReceiverReport(outbound.ssrc, blocks)
    sdes = SourceDescription((SdesChunk(outbound.ssrc, ((SDES_CNAME, cname),)),))
    return first, sdes


def build_rtcp_bye(outbound: OutboundStream, cname: bytes) -> tuple[RtcpPacket, ...]:
    """The compound sent when a leg closes: RR, SDES, BYE (RFC 3550 6.6)."""
    sdes = SourceDescription((SdesChunk(outbound.ssrc, ((SDES_CNAME, cname),)),))
    return ReceiverReport(outbound.ssrc), sdes, Bye((outbound.ssrc,))
