"""A mixer leg's state: stream and sequence tracking, epochs, counters (``media.mixer``).

One ``LegState`` per leg holds what ``StereoMixer`` keeps between packets: the ring and
its placed-mask, the packets waiting for the next pull, the RTP stream's extended
sequence numbers (RFC 3550 A.1) and duplicate table, the epochs that map timestamps to
output indices, and the counters its ``LegStats`` snapshot reports.
"""

from __future__ import annotations

import math
from array import array
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = [
    "LEFT",
    "MAX_DROPOUT",
    "NO_FLOOR",
    "RETIRE_S",
    "RIGHT",
    "SEEN_SLOTS",
    "Decoder",
    "Epoch",
    "Int16Array",
    "LegState",
    "LegStats",
    "MixerStats",
    "Pending",
    "signed32",
]

LEFT, RIGHT = 0, 1

Int16Array = npt.NDArray[np.int16]
Decoder = Callable[[bytes], Int16Array]

MAX_DROPOUT = 3000  # RFC 3550 A.1: larger forward seq jumps restart the sequence
MAX_MISORDER = 100  # RFC 3550 A.1: older packets are too late for us anyway
SEEN_SLOTS = 256  # dedup table size: > MAX_MISORDER is enough (a duplicate is never older)
RETIRED_SSRCS = 4
RETIRE_S = 2.0  # how long packets of a replaced SSRC count as stragglers
NO_FLOOR = -(2**62)


def signed32(value: int) -> int:
    value &= 0xFFFFFFFF
    return value - 0x100000000 if value >= 0x80000000 else value


@dataclass(frozen=True)
class LegStats:
    packets: int  # every push, including duplicates, events and drops
    duplicates: int
    late: int  # arrived after its slot was pulled (or too old / retired SSRC)
    lost_packets: int  # RFC 3550 expected - received, summed over SSRCs
    gaps: int  # closed gaps (audio resumed after missing samples)
    gap_seconds: float
    concealed_gaps: int  # of ``gaps``, those filled by fade-out repetition
    reanchors: int  # SSRC changes and timestamp jumps
    drift_corrections: int
    events_skipped: int  # RFC 4733 telephone-event packets
    unplayable: int  # payload type without decoder, empty or undecodable payload
    overflow: int  # would land outside the ring or pending list full
    trimmed_samples: int  # cut so that a new epoch does not overlap the old one
    settled_anchors: int = 0  # epochs moved earlier before their first write (_settle)


@dataclass(frozen=True)
class MixerStats:
    legs: tuple[LegStats, LegStats]
    samples_out: int

    @property
    def left(self) -> LegStats:
        return self.legs[LEFT]

    @property
    def right(self) -> LegStats:
        return self.legs[RIGHT]


class Epoch:
    """One RTP-timestamp -> output-index mapping, valid from ``start_seq`` on."""

    __slots__ = ("floor", "ref_idx", "ref_ts", "start_seq", "successor")

    def __init__(self, start_seq: int, ref_ts: int, ref_idx: int, floor: int) -> None:
        self.start_seq = start_seq
        self.ref_ts = ref_ts
        self.ref_idx = ref_idx
        self.floor = floor
        self.successor: Epoch | None = None


# (start index, index into the leg's ``refs``, payload type, payload). Only atomic
# values: CPython stops tracking such a tuple at the first collection it meets, so the
# packets waiting for the next pull (1,200 at 100 calls) are never promoted to the older
# generations and never walked again (docs/performance.md, "Garbage collection").
Pending = tuple[int, int, int, bytes]


class LegState:
    def __init__(self, ring: int, decoders: Mapping[int, Decoder], event_pts: set[int]) -> None:
        self.buf = np.zeros(ring, dtype=np.int16)
        self.mask = np.zeros(ring, dtype=np.bool_)
        self.decoders: dict[int, Decoder] = dict(decoders)
        self.event_pts: frozenset[int] = frozenset(event_pts)
        self.pending: list[Pending] = []
        # The (epoch, decoder) pairs the pending packets use, in push order; the pending
        # tuples name them by index. Emptied with ``pending``.
        self.refs: list[tuple[Epoch, Decoder]] = []
        self.samples_per_byte: dict[int, float] = {}
        # stream / sequence state
        self.ssrc: int | None = None
        self.retired: deque[tuple[int, float]] = deque(maxlen=RETIRED_SSRCS)
        self.max_ext = 0
        self.max_raw = 0
        self.base_ext = 0
        self.received = 0
        self.lost_before = 0
        # An int64 array, not a list: a list would hold an int object (32 bytes) per
        # slot once the extended numbers pass 256, 16 KiB per leg on top of the slots.
        self.seen = array("q", [-1]) * SEEN_SLOTS
        # placement state
        self.epoch: Epoch | None = None
        self.needs_anchor = True
        self.prev: Epoch | None = None
        self.high_water = NO_FLOOR  # estimated end of everything accepted so far
        self.placed_end = 0  # true end of everything written into the ring
        self.win_min = math.inf
        self.win_n = 0
        self.prev_win_min = 0.0  # the window before: drift must show in both
        self.win_at = -math.inf  # arrival index at which the last window closed
        self.common_run = 0  # windows in a row whose offset the other leg shared
        # An epoch anchored at one packet's arrival, until the next pull settles it on
        # the earliest arrival seen meanwhile (StereoMixer._settle).
        self.settling: Epoch | None = None
        self.settle_min = 0.0
        # emission state
        self.had_audio = False
        self.gap_open = 0
        self.conceal_start = 0
        self.conceal_fill: Int16Array | None = None
        self.history: Int16Array = np.zeros(0, dtype=np.int16)
        # counters
        self.packets = self.duplicates = self.late = self.gaps = 0
        self.concealed = self.reanchors = self.drift = self.events = 0
        self.unplayable = self.overflow = self.trimmed = self.settled = 0
        self.gap_samples = 0

    def lost(self) -> int:
        if self.ssrc is None:
            return self.lost_before
        return self.lost_before + (self.max_ext - self.base_ext + 1 - self.received)

    def start_stream(self, ssrc: int, seq: int, retire_until: float) -> None:
        if self.ssrc is not None:
            self.lost_before = self.lost()
            self.retired.append((self.ssrc, retire_until))
            # Extended numbers keep increasing across streams: epochs stay ordered and
            # the dedup table can not mistake a new packet for an old one.
            self.max_ext += SEEN_SLOTS + 1
        else:
            self.max_ext = seq
        self.ssrc = ssrc
        self.max_raw = seq
        self.base_ext = self.max_ext
        self.received = 0
        self.prev = None  # packets of the old SSRC are dropped, not placed
        self.needs_anchor = True

    def extend_seq(self, seq: int) -> int | None:
        """RFC 3550 A.1 style extension; None for a packet too old to matter."""
        delta = (seq - self.max_raw) & 0xFFFF
        if delta < 0x8000:
            if delta > MAX_DROPOUT:  # sender restarted its numbering
                self.lost_before = self.lost()
                self.max_ext += 1
                self.max_raw = seq
                self.base_ext = self.max_ext
                self.received = 0
                return self.max_ext
            return self.max_ext + delta
        back = 0x10000 - delta
        if back > MAX_MISORDER:
            return None
        return self.max_ext - back

    def new_epoch(
        self, start_seq: int, ref_ts: int, ref_idx: int, floor: int, *, settle: bool = False
    ) -> Epoch:
        """The leg's next epoch; ``settle``: anchored at one packet's arrival, to be
        settled before it is written (StereoMixer._settle)."""
        epoch = Epoch(start_seq, ref_ts, ref_idx, floor)
        if settle:
            self.settling, self.settle_min = epoch, 0.0
        if self.epoch is not None:
            self.epoch.successor = epoch
        self.prev, self.epoch = self.epoch, epoch
        self.win_min, self.win_n = math.inf, 0
        return epoch

    def epoch_for(self, ext: int) -> Epoch | None:
        if self.epoch is not None and ext >= self.epoch.start_seq:
            return self.epoch
        if self.prev is not None and ext >= self.prev.start_seq:
            return self.prev
        return None

    def snapshot(self, sample_rate: int) -> LegStats:
        return LegStats(
            packets=self.packets,
            duplicates=self.duplicates,
            late=self.late,
            lost_packets=self.lost(),
            gaps=self.gaps,
            gap_seconds=self.gap_samples / sample_rate,
            concealed_gaps=self.concealed,
            reanchors=self.reanchors,
            drift_corrections=self.drift,
            events_skipped=self.events,
            unplayable=self.unplayable,
            overflow=self.overflow,
            trimmed_samples=self.trimmed,
            settled_anchors=self.settled,
        )
