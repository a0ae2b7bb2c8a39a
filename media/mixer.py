"""Two legs of RTP payloads in, one aligned 16-bit stereo timeline out (sans-I/O).

Theory of operation
-------------------
The output is one timeline of sample indices counted from the mixer's start on the
caller's monotonic arrival clock (``index = (arrival - start) * sample_rate``). Left is
the external party (``LEFT``), right the office party (``RIGHT``).

Placement. Each leg maps RTP timestamps to output indices through an *epoch*: a
reference ``(rtp_ts, index)`` plus the extended sequence number at which the epoch
begins. The first packet of a stream is placed at its arrival index; later packets at
``ref_index + signed32(ts - ref_ts)``, so reordering, loss and the 2**32 timestamp wrap
need no special cases. The reference moves forward with every in-order packet, so the
signed 32-bit difference never overflows however long the call is.

New epochs (re-anchoring) start when
  * the SSRC changes (for 2 s, stragglers of the replaced SSRC are dropped as late;
    after that the old SSRC may come back as a new stream);
  * an in-order packet's predicted index is more than ``reanchor_threshold_s`` away
    from its arrival (timestamp jump, hold without timestamp progress): the packet is
    placed at its arrival. Not so a packet that arrived that much later than predicted
    while its place is still ahead of the output: that is a stalled reader (no pull ran
    either), and it goes where its timestamp says;
  * drift: over each window of ``drift_window`` in-order packets the *minimum* of
    ``arrival - predicted`` is taken (network jitter only ever adds delay, so the
    minimum tracks the clock offset, not the jitter). If it exceeds
    ``drift_threshold_s`` and the window before showed at least half of it in the same
    direction, the mapping is shifted by it. The second condition tells drift, which
    persists, from the reading loop running late for a while, which stamps every
    packet late and then catches up.
A new epoch never overlaps output of the old one: it has a *floor* (the old epoch's end)
below which its samples are trimmed, and the old epoch's late packets are cut at that
floor. Shifting later leaves a gap (concealed or silent, like a loss).

Packets whose first sample's slot was already pulled are ``late`` and dropped; packets
that would land beyond the ring (``buffer_s`` ahead of the output cursor) are dropped
as ``overflow``. Sequence numbers are extended as in RFC 3550 A.1 and a small table of
recently seen extended numbers rejects duplicates. RFC 4733 telephone-event packets
consume sequence numbers (so they are not counted as losses) but are never decoded.

Work split. ``push`` is O(1): bookkeeping and a tuple appended to a bounded pending
list; it never decodes. ``pull`` (every ~20-100 ms) decodes the pending payloads,
writes each into a fixed ring buffer per leg by numpy slice assignment (back-to-back
G.711 packets as one run: one decode and one write for the whole batch), then emits all
samples up to ``now - jitter_s`` for both legs. Memory per call is the two rings, a
bounded pending list and a bounded dedup table; nothing grows with call length.

Gaps. Missing samples after a leg's first audio are a gap; a gap is counted (``gaps``,
``gap_seconds``) when audio resumes. A gap no longer than ``max_gap_conceal_s`` whose
end is already known when it is emitted (the jitter delay usually guarantees that) is
concealed by repeating the last 20 ms with a linear fade to zero, which avoids the
harsh clicks of hard silence in a single lost packet; longer gaps are exact silence.
Trailing silence (a leg that stopped, or never sent) is not a gap.

Muting. ``mute(leg, start, end)`` and ``pause(now)`` / ``resume(now)`` zero spans of
the output (arrival-clock times); they work for any span not yet pulled, which is what
DTMF masking and recording pauses need: the media path itself is never held back.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import numpy.typing as npt

from media.g711 import decode_alaw, decode_ulaw
from media.mixer_leg import (
    LEFT,
    MAX_DROPOUT,
    RETIRE_S,
    RIGHT,
    SEEN_SLOTS,
    Decoder,
    Epoch,
    Int16Array,
    LegState,
    LegStats,
    MixerStats,
    signed32,
)

__all__ = ["LEFT", "RIGHT", "LegStats", "MixerStats", "StereoMixer", "default_decoders"]

_FOREVER = 2**62
# Drift versus a late reader (``_is_drift``): the other leg's last window counts if it
# closed within this many seconds; an offset both legs share is not corrected for this
# many windows in a row.
_FRESH_S = 2.5
_COMMON_WINDOWS = 5

# Stateless decoders giving one sample per payload byte: consecutive packets may be
# decoded as one run (see ``_place_pending``).
_ONE_SAMPLE_PER_BYTE: tuple[Decoder, ...] = (decode_alaw, decode_ulaw)


def default_decoders() -> dict[int, Decoder]:
    """Static payload types 0 (PCMU) and 8 (PCMA), RFC 3551."""
    return {0: decode_ulaw, 8: decode_alaw}


class _Span:
    __slots__ = ("end", "leg", "start")

    def __init__(self, leg: int | None, start: int, end: int) -> None:
        self.leg = leg
        self.start = start
        self.end = end


class StereoMixer:
    """Recorder mixer: ``push`` RTP payloads per leg, ``pull`` aligned int16 (n, 2)."""

    def __init__(
        self,
        *,
        sample_rate: int = 8000,
        jitter_s: float = 0.06,
        max_gap_conceal_s: float = 0.06,
        payload_decoders: Mapping[int, Decoder] | None = None,
        event_payload_types: set[int] | None = None,
        buffer_s: float = 2.0,
        reanchor_threshold_s: float = 0.2,
        drift_threshold_s: float = 0.01,
        drift_window: int = 50,
        start: float | None = None,
    ) -> None:
        if sample_rate <= 0 or jitter_s < 0 or max_gap_conceal_s < 0 or drift_window < 1:
            raise ValueError("sample_rate, jitter_s, max_gap_conceal_s, drift_window invalid")
        self._sr = sample_rate
        self._jitter = jitter_s
        self._conceal_max = round(max_gap_conceal_s * sample_rate)
        self._ring = round(buffer_s * sample_rate)
        self._frame = max(1, sample_rate // 50)  # 20 ms: concealment source length
        if self._ring < round(jitter_s * sample_rate) + self._conceal_max + 4 * self._frame:
            raise ValueError("buffer_s too small for jitter_s and max_gap_conceal_s")
        self._jump = reanchor_threshold_s * sample_rate
        self._drift_limit = drift_threshold_s * sample_rate
        self._drift_window = drift_window
        self._max_pending = max(64, 4 * self._ring // self._frame)
        decoders = default_decoders() if payload_decoders is None else dict(payload_decoders)
        events = {101} if event_payload_types is None else set(event_payload_types)
        self._legs = (
            LegState(self._ring, decoders, events),
            LegState(self._ring, decoders, events),
        )
        self._t0 = start
        self._out = 0  # next output index to emit
        self._samples_out = 0
        self._spans: list[_Span] = []
        self._pause: _Span | None = None

    # -- configuration -------------------------------------------------------------

    def set_payload_types(
        self, leg: int, decoders: Mapping[int, Decoder], event_pts: set[int]
    ) -> None:
        """Per-leg payload table after SDP negotiation (dynamic PTs differ per leg)."""
        st = self._leg(leg)
        st.decoders = dict(decoders)
        st.event_pts = frozenset(event_pts)
        st.samples_per_byte.clear()

    # -- input ---------------------------------------------------------------------

    def push(
        self,
        leg: int,
        *,
        ssrc: int,
        seq: int,
        timestamp: int,
        payload_type: int,
        payload: bytes,
        arrival: float,
    ) -> None:
        """Account for one RTP packet of ``leg``; decoding waits for the next pull."""
        self.push_packet(leg, ssrc, seq, timestamp, payload_type, payload, arrival)

    def push_packet(
        self,
        leg: int,
        ssrc: int,
        seq: int,
        timestamp: int,
        payload_type: int,
        payload: bytes,
        arrival: float,
    ) -> None:
        """``push`` with positional arguments: the recorder's per-packet path.

        The usual case (the next sequence number of the current stream and epoch) is
        written out inline here; the helpers it skips run for everything else.
        """
        if leg not in (LEFT, RIGHT):
            self._leg(leg)  # raises
        st = self._legs[leg]
        if self._t0 is None:
            self._t0 = arrival
        st.packets += 1
        ssrc &= 0xFFFFFFFF
        seq &= 0xFFFF
        timestamp &= 0xFFFFFFFF
        new_stream = ssrc != st.ssrc
        if new_stream:
            if any(old == ssrc and arrival < until for old, until in st.retired):
                st.late += 1  # a straggler of the stream that was just replaced
                return
            st.start_stream(ssrc, seq, arrival + RETIRE_S)
            ext = st.max_ext
        else:
            delta = (seq - st.max_raw) & 0xFFFF
            if delta <= MAX_DROPOUT:  # extend_seq's first case, without the call
                ext = st.max_ext + delta
            else:
                extended = st.extend_seq(seq)
                if extended is None:
                    st.late += 1
                    return
                ext = extended
            if st.seen[ext % SEEN_SLOTS] == ext:
                st.duplicates += 1
                return
        st.seen[ext % SEEN_SLOTS] = ext
        st.received += 1
        in_order = new_stream or ext > st.max_ext
        if in_order:
            st.max_ext, st.max_raw = ext, seq
        elif ext < st.base_ext:
            st.base_ext = ext
        if payload_type in st.event_pts:
            st.events += 1
            return
        decoder = st.decoders.get(payload_type)
        if decoder is None or not payload:
            st.unplayable += 1
            return
        pos = (arrival - self._t0) * self._sr
        if st.needs_anchor or st.epoch is None:
            if st.epoch is not None:
                st.reanchors += 1
            st.needs_anchor = False
            epoch = st.new_epoch(ext, timestamp, round(pos), st.high_water, settle=True)
            start = epoch.ref_idx
        else:
            current = st.epoch
            found = current if ext >= current.start_seq else st.epoch_for(ext)
            if found is None:
                st.late += 1
                return
            epoch = found
            diff = (timestamp - epoch.ref_ts) & 0xFFFFFFFF  # signed32, inline
            start = epoch.ref_idx + (diff - 0x100000000 if diff >= 0x80000000 else diff)
            if in_order and epoch is current:
                epoch, start = self._track(st, epoch, ext, timestamp, start, pos)
        if start < self._out:
            st.late += 1
            return
        if start >= self._out + self._ring or len(st.pending) >= self._max_pending:
            st.overflow += 1
            return
        refs = st.refs
        if not refs or refs[-1][0] is not epoch or refs[-1][1] is not decoder:
            refs.append((epoch, decoder))
        st.pending.append((start, len(refs) - 1, payload_type, payload))
        est = round(len(payload) * st.samples_per_byte.get(payload_type, 1.0))
        st.high_water = max(st.high_water, start + est)

    def _track(
        self, st: LegState, epoch: Epoch, ext: int, ts: int, start: int, pos: float
    ) -> tuple[Epoch, int]:
        """Re-anchor on jumps, correct drift; advance the epoch reference."""
        offset = pos - start
        if offset > self._jump and start >= self._out:
            # Read much later than its timestamp says, but its place is not written
            # yet: a stalled loop (the pulls stalled too), not a jump. It goes there.
            epoch.ref_ts, epoch.ref_idx = ts, start
            return epoch, start
        if abs(offset) > self._jump:
            st.reanchors += 1
            epoch = st.new_epoch(ext, ts, round(pos), st.high_water, settle=True)
            return epoch, epoch.ref_idx
        if epoch is st.settling and offset < st.settle_min:
            st.settle_min = offset
        st.win_min = min(st.win_min, offset)
        st.win_n += 1
        if st.win_n >= self._drift_window:
            shift, before = st.win_min, st.prev_win_min
            st.win_min, st.win_n, st.prev_win_min, st.win_at = math.inf, 0, shift, pos
            if self._is_drift(st, shift, before, pos):
                st.drift += 1
                st.prev_win_min = 0.0  # measured against the mapping being replaced
                # The old mapping would have put this packet at ``start``: that is
                # where the old epoch ends, so the new one may not write below it.
                epoch = st.new_epoch(ext, ts, start + round(shift), start)
                return epoch, epoch.ref_idx
        epoch.ref_ts, epoch.ref_idx = ts, start
        return epoch, start

    def _is_drift(self, st: LegState, shift: float, before: float, pos: float) -> bool:
        """Whether a window's offset is a sender's clock drifting, to be corrected.

        A reader running late (the loop busy: every packet stamped late, then it
        catches up) looks like drift to one leg; each correction would cut audio going
        in and again coming out. Two tests tell them apart. Drift persists: the window
        before must already show at least half the offset, the same way. And a late
        reader delays both legs alike, where a clock is one sender's: while the other
        leg's last window (of the last 2.5 s) shows the same, it is ours, up to
        ``_COMMON_WINDOWS`` windows in a row (then both senders' clocks, or an overload
        that lasts, are followed after all).
        """
        limit = self._drift_limit
        if abs(shift) <= limit or shift * before <= 0 or 2 * abs(before) <= limit:
            st.common_run = 0
            return False
        other = self._legs[1] if st is self._legs[0] else self._legs[0]
        theirs = other.prev_win_min
        recent = pos - other.win_at <= _FRESH_S * self._sr
        if recent and theirs * shift > 0 and 2 * abs(theirs) > limit:
            st.common_run += 1
            if st.common_run <= _COMMON_WINDOWS:
                return False
        st.common_run = 0
        return True

    # -- muting --------------------------------------------------------------------

    def mute(self, leg: int | None, start: float, end: float) -> float:
        """Silence ``leg`` (None: both) from ``start`` to ``end`` (arrival clock).

        Returns the seconds of that span that had already been pulled and so could not
        be silenced (0.0 when the whole span was still ahead of the output).
        """
        if leg is not None:
            self._leg(leg)
        lo, hi = self._index(start), self._index(end)
        if hi > lo:
            missed = max(0, min(hi, self._out) - lo)
            if hi > self._out:
                self._spans.append(_Span(leg, max(lo, self._out), hi))
            return missed / self._sr
        return 0.0

    def pause(self, now: float) -> None:
        """Recording pause: both channels silent from ``now`` until ``resume``."""
        if self._pause is None:
            self._pause = _Span(None, max(self._index(now), self._out), _FOREVER)
            self._spans.append(self._pause)

    def resume(self, now: float) -> None:
        if self._pause is not None:
            self._pause.end = max(self._index(now), self._pause.start)
            self._pause = None

    @property
    def paused(self) -> bool:
        return self._pause is not None

    def time_of(self, leg: int, timestamp: int) -> float | None:
        """Arrival-clock time where ``leg``'s current stream puts RTP ``timestamp``.

        Lets the call layer mute an RFC 4733 digit by its event timestamp.
        """
        epoch = self._leg(leg).epoch
        if epoch is None or self._t0 is None:
            return None
        idx = epoch.ref_idx + signed32(timestamp - epoch.ref_ts)
        return self._t0 + idx / self._sr

    # -- output --------------------------------------------------------------------

    def pull(self, now: float) -> Int16Array:
        """All samples timed ``now - jitter_s`` or earlier not yet returned: int16 (n, 2)."""
        if self._t0 is None:
            self._t0 = now
        for st in self._legs:
            self._place_pending(st)
        end = math.floor((now - self._jitter - self._t0) * self._sr)
        return self._emit(end)

    def flush(self) -> Int16Array:
        """At the end of the call: everything still buffered."""
        for st in self._legs:
            self._place_pending(st)
        return self._emit(max(st.placed_end for st in self._legs))

    @property
    def stats(self) -> MixerStats:
        return MixerStats(
            legs=(self._legs[0].snapshot(self._sr), self._legs[1].snapshot(self._sr)),
            samples_out=self._samples_out,
        )

    def footprint(self) -> int:
        """Bytes held in buffers plus pending packets and spans (for memory checks)."""
        total = 0
        for st in self._legs:
            total += st.buf.nbytes + st.mask.nbytes + st.history.nbytes
            total += len(st.pending) + len(st.seen) + len(st.samples_per_byte)
        return total + len(self._spans)

    # -- internals -----------------------------------------------------------------

    def _leg(self, leg: int) -> LegState:
        if leg not in (LEFT, RIGHT):
            raise ValueError(f"leg must be LEFT (0) or RIGHT (1), not {leg!r}")
        return self._legs[leg]

    def _index(self, t: float) -> int:
        if self._t0 is None:
            self._t0 = t
        return round((t - self._t0) * self._sr)

    def _settle(self, st: LegState) -> None:
        """Moves a new epoch earlier by the earliest arrival seen before its first pull.

        An epoch is anchored at its first packet's arrival stamp. A packet read late (the
        loop was busy; packets read in one batch share one stamp) makes every later one
        look early by the same amount, for good. Nothing of the epoch is written yet,
        so its mapping and pending packets can still move without cutting audio; later
        the drift correction would have to trim that much (docs/performance.md).
        """
        epoch, st.settling = st.settling, None
        shift = round(st.settle_min)  # <= 0
        if epoch is None or shift >= 0 or epoch is not st.epoch:
            return
        mine = [i for i, (ep, _) in enumerate(st.refs) if ep is epoch]
        starts = [item[0] for item in st.pending if item[1] in mine]
        if not starts:
            return
        shift = max(shift, max(self._out, epoch.floor) - min(starts))
        if shift >= 0:
            return
        epoch.ref_idx += shift
        st.pending[:] = [
            (start + shift, ref, pt, payload) if ref in mine else (start, ref, pt, payload)
            for start, ref, pt, payload in st.pending
        ]
        st.high_water = max(
            st.placed_end,
            *(
                start + round(len(payload) * st.samples_per_byte.get(pt, 1.0))
                for start, _, pt, payload in st.pending
            ),
        )
        st.win_min -= shift  # offsets seen so far, against the moved mapping
        st.settled += 1

    def _place_pending(self, st: LegState) -> None:
        if st.settling is not None:
            self._settle(st)  # before anything of a new epoch is written
        pending = st.pending
        count = len(pending)
        i = 0
        refs = st.refs
        while i < count:
            start, ref, pt, payload = pending[i]
            epoch, decoder = refs[ref]
            j = i + 1
            if decoder in _ONE_SAMPLE_PER_BYTE:
                # Back-to-back G.711 packets of one epoch (the usual case) are one run:
                # decoded and written once. The same samples land where packet by
                # packet they would, and the trim bounds are the run's: same result.
                # (Equal pairs pushed back to back share one ``refs`` index.)
                end = start + len(payload)
                while j < count:
                    nxt = pending[j]
                    if nxt[0] != end or nxt[1] != ref or nxt[2] != pt:
                        break
                    end += len(nxt[3])
                    j += 1
                if j > i + 1:
                    payload = b"".join([item[3] for item in pending[i:j]])
            self._place(st, start, epoch, decoder, pt, payload)
            i = j
        pending.clear()
        refs.clear()

    def _place(
        self, st: LegState, start: int, epoch: Epoch, decoder: Decoder, pt: int, payload: bytes
    ) -> None:
        """Decode one packet (or run) and write it into the leg's ring, trimmed to bounds."""
        ring = self._ring
        try:
            pcm = decoder(payload)
            if not (isinstance(pcm, np.ndarray) and pcm.dtype == np.int16 and pcm.ndim == 1):
                pcm = np.asarray(pcm).astype(np.int16).reshape(-1)
        except (ValueError, TypeError):
            st.unplayable += 1
            return
        n = pcm.shape[0]
        if n == 0:
            st.unplayable += 1
            return
        # Learnt per payload type: lets push estimate a packet's end without decoding.
        st.samples_per_byte[pt] = n / len(payload)
        lo = max(self._out, epoch.floor)
        hi = self._out + ring
        if epoch.successor is not None:
            hi = min(hi, epoch.successor.floor)
        s, e = max(start, lo), min(start + n, hi)
        if e <= s:
            st.trimmed += n
            return
        st.trimmed += n - (e - s)
        data = pcm[s - start : e - start]
        i = s % ring
        k = min(e - s, ring - i)
        st.buf[i : i + k] = data[:k]
        st.mask[i : i + k] = True
        if k < e - s:
            st.buf[: e - s - k] = data[k:]
            st.mask[: e - s - k] = True
        st.placed_end = max(st.placed_end, e)

    def _take(self, arr: npt.NDArray[np.generic], a: int, n: int) -> npt.NDArray[np.generic]:
        """Copy of ring ``arr`` over absolute indices [a, a + n), n <= ring size."""
        i = a % self._ring
        k = min(n, self._ring - i)
        if k == n:
            return arr[i : i + n].copy()
        return np.concatenate((arr[i:], arr[: n - k]))

    def _clear(self, st: LegState, a: int, n: int) -> None:
        i = a % self._ring
        k = min(n, self._ring - i)
        st.buf[i : i + k] = 0
        st.mask[i : i + k] = False
        if k < n:
            st.buf[: n - k] = 0
            st.mask[: n - k] = False

    def _emit(self, end: int) -> Int16Array:
        a = self._out
        n = end - a
        if n <= 0:
            return np.zeros((0, 2), dtype=np.int16)
        out: Int16Array = np.empty((n, 2), dtype=np.int16)
        # Each leg's samples go straight into its column (no per-leg copy, no
        # np.column_stack): less work per pull, same samples.
        self._emit_leg(self._legs[LEFT], a, out[:, LEFT])
        self._emit_leg(self._legs[RIGHT], a, out[:, RIGHT])
        if self._spans:
            for span in self._spans:
                lo, hi = max(span.start, a) - a, min(span.end, end) - a
                if hi > lo:
                    if span.leg is None:
                        out[lo:hi] = 0
                    else:
                        out[lo:hi, span.leg] = 0
            self._spans = [s for s in self._spans if s.end > end]
        self._out = end
        self._samples_out += n
        return out

    def _emit_leg(self, st: LegState, a: int, pcm: Int16Array) -> None:
        """Fill ``pcm`` (a column of the output, n samples from ``a``) from the ring."""
        n = pcm.shape[0]
        m = min(n, self._ring)
        i = a % self._ring
        k = min(m, self._ring - i)
        pcm[:k] = st.buf[i : i + k]
        if k < m:
            pcm[k:m] = st.buf[: m - k]
        mask: npt.NDArray[np.bool_] = self._take(st.mask, a, m)  # type: ignore[assignment]
        self._clear(st, a, m)
        if m < n:
            pcm[m:] = 0
            mask = np.concatenate((mask, np.zeros(n - m, dtype=np.bool_)))
        if mask.all():
            self._close_gap(st)
            st.had_audio = True
        elif st.had_audio or mask.any():
            self._gaps(st, a, pcm, mask)
        hist = self._frame
        st.history = pcm[-hist:].copy() if n >= hist else np.concatenate((st.history, pcm))[-hist:]

    def _close_gap(self, st: LegState) -> None:
        if st.gap_open > 0:
            st.gaps += 1
            st.gap_samples += st.gap_open
            if st.conceal_fill is not None:
                st.concealed += 1
            st.gap_open = 0
            st.conceal_fill = None

    def _gaps(self, st: LegState, a: int, pcm: Int16Array, mask: npt.NDArray[np.bool_]) -> None:
        """Count gaps and conceal short ones; loops over runs, never over samples."""
        n = mask.shape[0]
        edges = np.flatnonzero(mask[1:] != mask[:-1]) + 1
        bounds = [0, *edges.tolist(), n]
        for j in range(len(bounds) - 1):
            s, e = bounds[j], bounds[j + 1]
            if mask[s]:
                self._close_gap(st)
                st.had_audio = True
                continue
            if not st.had_audio:
                continue  # before the leg's first audio: not a gap
            if st.gap_open == 0:
                self._maybe_conceal(st, a, s, e, pcm)
            if st.conceal_fill is not None:
                cs = st.conceal_start
                lo = max(a + s, cs)
                hi = min(a + e, cs + st.conceal_fill.shape[0])
                if hi > lo:
                    pcm[lo - a : hi - a] = st.conceal_fill[lo - cs : hi - cs]
            st.gap_open += e - s

    def _maybe_conceal(self, st: LegState, a: int, s: int, e: int, pcm: Int16Array) -> None:
        gap_start = a + s
        limit = gap_start + self._conceal_max
        if e < pcm.shape[0]:
            gap_end: int | None = a + e
        else:
            # Look ahead into the ring: is there audio within the concealment limit?
            b = a + pcm.shape[0]
            k = min(limit + 1 - b, self._out + self._ring - b)
            gap_end = None
            if k > 0:
                ahead = np.flatnonzero(self._take(st.mask, b, k))
                if ahead.size:
                    gap_end = b + int(ahead[0])
        if gap_end is None or gap_end - gap_start > self._conceal_max:
            return
        frame = np.concatenate((st.history, pcm[:s]))[-self._frame :]
        if frame.size == 0:
            return
        length = gap_end - gap_start
        fade = np.linspace(1.0, 0.0, length, endpoint=False, dtype=np.float32)
        st.conceal_fill = (np.resize(frame, length).astype(np.float32) * fade).astype(np.int16)
        st.conceal_start = gap_start
