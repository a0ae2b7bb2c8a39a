"""One relay leg: the RTP/RTCP socket pair toward one peer, and its forwarding path.

rtp/relay.py opens legs (`MediaRelay`) and bridges them (`Bridge`); this module is what a
leg does with every packet.

Each ``RelayLeg`` owns an even RTP port and the RTCP port above it, taken from a
``PortAllocator``. Sockets are non-blocking and read with ``recvfrom_into`` into a
preallocated buffer that all legs of the relay share (``LegBuffers``), from
``loop.add_reader`` callbacks (uvloop or asyncio): this is the lean read path DESIGN.md
asks for, without asyncio's datagram transport and its per-packet 256 KiB read. A
forwarded packet is rewritten in that same buffer (SSRC/seq/ts/PT, and the codec when
the legs differ: G.711 law, or G.722 <-> G.711 through media.g722 with per-direction
state) and sent straight out of the partner leg's socket; nothing is queued. A send that
would block is a lost UDP packet, counted, never buffered.

SRTP (rtp/srtp.py) is per leg: a leg with an ``SrtpLeg`` unprotects what it reads right
after the latching check (a bad tag or a replay is dropped and counted in
``dropped_srtp``) and protects what it sends, RTCP included. Everything between,
rewriting, transcoding and the tap, sees plain RTP, so the recorder taps decrypted audio
whichever legs are encrypted.

The tap (for the recorder and consent detection) gets a small immutable record per
accepted packet after it was sent; ``BoundedTap`` just appends it to a per-leg list
that the recorder drains once per 20 ms tick (a leg holds its list and appends itself).

The per-packet cost is the relay's budget (issue 9: within 1.5x of a bare forwarder), so
``_on_rtp_readable`` has a fast path for the common case of a bridged call: plain RTP of
the leg's audio type from the latched source, the next packet of a stream already
followed, no SRTP or transcoding. It does inline, without a call per step, exactly what
``_handle_rtp`` with ``ReceiveStats.update`` and ``OutboundStream.rewrite`` do for such
a packet (tests/test_relay_fastpath.py compares the two on the same sequences); every
other packet takes ``_handle_rtp``. After a quiet gap a callback reads one datagram
instead of reading until the socket would block: at 50 packets/s that second read only
fails, and the level-triggered poll calls again at once when more is queued.

All protocol state lives in ``rtp.session`` (sans-I/O); this module only moves bytes
and reads the clock.
"""

from __future__ import annotations

import asyncio
import random
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from media.g722 import new_transcoder
from rtp.packet import (
    RTP_HEADER,
    ReceiverReport,
    RtpError,
    SenderReport,
    parse_rtcp,
    peek_rtp,
    rewrite_rtp_header,
    serialize_rtcp,
)
from rtp.session import (
    MAX_DROPOUT,
    Address,
    Inactivity,
    Latch,
    OutboundStream,
    ReceiveStats,
    build_rtcp_bye,
    build_rtcp_report,
)
from rtp.srtp import SrtpLeg
from rtp.tap import BoundedTap, Tap, TapPacket

if TYPE_CHECKING:
    from rtp.relay import MediaRelay

__all__ = ["LegBuffers", "LegCounters", "MediaFormat", "RelayLeg"]

_BUFFER_SIZE = 2048  # RTP over a 1500-byte MTU fits; a full buffer means truncation
_READ_BATCH = 64  # datagrams per readable callback, so one busy leg cannot starve others
# A callback sooner than this after the leg's last one reads in batches: half the usual
# 20 ms packet interval, and above the loop's iteration time under load, so a backlog
# (a burst, a stall) is read at once.
_BURST_GAP = 0.010
_unpack_header = RTP_HEADER.unpack_from  # bound once: the fast path's header read
_pack_header = RTP_HEADER.pack_into  # and its rewrite in place
# TapPacket(...) runs the NamedTuple's __new__, a Python function (0.9 us measured per
# packet); tuple.__new__ builds the same TapPacket for a quarter of that.
_new_tuple = tuple.__new__


# ------------------------------------------------------------------ formats, tap


@dataclass(frozen=True, slots=True)
class MediaFormat:
    """What one leg negotiated: its audio payload type and encoding, and RFC 4733."""

    payload_type: int = 0
    encoding: str = "PCMU"  # PCMU | PCMA | G722 (others pass only between equal legs)
    telephone_event: int | None = 101
    clock_rate: int = 8000  # the RTP clock: 8000 for G.722 too (RFC 3551 4.5.2)


@dataclass(slots=True)
class LegCounters:
    received: int = 0  # RTP datagrams read
    forwarded: int = 0  # sent out of the partner leg
    dropped_unlatched: int = 0  # from a source other than the latched one (RTP bleed)
    dropped_malformed: int = 0
    dropped_no_peer: int = 0  # partner has no address to send to yet
    dropped_unsupported: int = 0  # e.g. telephone-event the partner did not negotiate
    send_errors: int = 0  # socket full or unreachable: the packet is lost, not queued
    injected: int = 0
    rtcp_received: int = 0
    rtcp_malformed: int = 0
    rtcp_dropped_unlatched: int = 0
    rtcp_sent: int = 0
    dropped_srtp: int = 0  # SRTP tag did not verify, or a replay: never forwarded or tapped
    rtcp_dropped_srtp: int = 0


# One direction of one bridge (media.g722.new_transcoder): G.711 laws statelessly,
# G.722 <-> G.711 with codec and 16k/8k filter state, made fresh on every (re)link.
# All have an 8000 Hz RTP clock and one byte per tick (RFC 3551 4.5.2 for G.722), so
# payload length and timestamps stay and the packet is rewritten in place.
_Convert = Callable[[bytes], bytes]


# -------------------------------------------------------------------------- legs


class LegBuffers:
    """Scratch buffers that all legs of one relay (one event loop) share.

    A leg reads a datagram into them, forwards or injects it and copies whatever it keeps
    (tap payloads, RTCP, SRTP input), all within one callback: nothing holds a view past
    it, so one set per loop does. Per leg they would cost 6 KiB, 12 KiB per call.
    """

    __slots__ = ("out", "rtcp", "rtp", "view")

    def __init__(self) -> None:
        self.rtp = bytearray(_BUFFER_SIZE)
        self.view = memoryview(self.rtp)
        self.out = bytearray(_BUFFER_SIZE)
        self.rtcp = bytearray(_BUFFER_SIZE)


class RelayLeg:
    """One side of a call: an RTP/RTCP socket pair toward one peer."""

    def __init__(
        self,
        relay: MediaRelay,
        *,
        leg_id: str,
        address: Address,
        rtp_sock: socket.socket,
        rtcp_sock: socket.socket,
        fmt: MediaFormat,
        remote: Address | None,
        on_inactive: Callable[[RelayLeg], None] | None,
    ) -> None:
        loop = relay.loop
        now = loop.time()
        self.leg_id = leg_id
        self.address = address  # our (ip, RTP port), for the SDP we send
        self.fmt = fmt
        self._tap: Tap | None = None
        # The fast path's view of a ``BoundedTap``: this leg's own list in it, bound once.
        self._tap_bounded: BoundedTap | None = None
        self._tap_list: list[TapPacket] = []
        self.srtp: SrtpLeg | None = None  # set by the call when this leg negotiated SDES
        self.partner: RelayLeg | None = None
        self.counters = LegCounters()
        self.latch = Latch(remote)
        self.rtcp_latch = Latch(_rtcp_of(remote))
        self.stats = ReceiveStats(fmt.clock_rate)
        self.outbound = OutboundStream(
            random.getrandbits(32), random.getrandbits(16), random.getrandbits(32), fmt.clock_rate
        )
        self.inactivity = Inactivity(relay.inactivity_timeout, now)
        self.on_inactive = on_inactive
        self.closed = False
        self._relay = relay
        self._loop = loop
        self._rtp_sock = rtp_sock
        self._rtcp_sock = rtcp_sock
        buffers = relay.buffers
        self._buf = buffers.rtp
        self._view = buffers.view
        self._out = buffers.out  # for injected packets
        self._rtcp_buf = buffers.rtcp
        self._convert: _Convert | None = None
        # Set by _link for the fast path: our audio PT while plain forwarding of it can be
        # taken (bridged, no transcoding), else -1; the partner's PT and its sendto.
        self._fast_pt = -1
        self._fast_out_pt = 0
        self._partner_sendto: Callable[[memoryview, Address], int] | None = None
        self._last_read = float("-inf")  # loop time of the last fast-path callback
        self._sent_at_reports = (0, 0)  # packet counts at the two previous reports
        self._next_report = now + relay.rtcp_interval * random.uniform(0.5, 1.5)
        self._timer: asyncio.TimerHandle | None = None
        loop.add_reader(rtp_sock.fileno(), self._on_rtp_readable)
        loop.add_reader(rtcp_sock.fileno(), self._on_rtcp_readable)
        self._arm_timer()

    @property
    def port(self) -> int:
        return self.address[1]

    @property
    def tap(self) -> Tap | None:
        """Where accepted packets are copied for the recorder, or None."""
        return self._tap

    @tap.setter
    def tap(self, tap: Tap | None) -> None:
        self._tap = tap
        # Exactly BoundedTap (a subclass may override put): append to our list directly.
        if type(tap) is BoundedTap:
            self._tap_bounded = tap
            self._tap_list = tap.channel(self.leg_id)
        else:
            self._tap_bounded = None
            self._tap_list = []

    # ---- control plane

    def set_remote(self, remote: Address | None, fmt: MediaFormat | None = None) -> None:
        """A new SDP from this leg's peer: re-latch and maybe change the format."""
        self.latch.relatch(remote)
        self.rtcp_latch.relatch(_rtcp_of(remote))
        if fmt is not None and fmt != self.fmt:
            self.fmt = fmt
            if self.partner is not None:
                self._link(self.partner)
                self.partner._link(self)

    def set_srtp(self, srtp: SrtpLeg | None) -> None:
        """Keys negotiated (SDES) for this leg, or None for plain RTP. Called only when the
        keys change: a new `SrtpLeg` starts libsrtp's replay and rollover state anew."""
        self.srtp = srtp

    def hold(self) -> None:
        """Hold or ``a=inactive``: no media expected, the inactivity timer pauses."""
        self.inactivity.pause()

    def resume(self) -> None:
        self.inactivity.resume(self._loop.time())
        self._arm_timer()

    def _link(self, partner: RelayLeg | None) -> None:
        self.partner = partner
        self._convert = None
        self._fast_pt = -1
        self._partner_sendto = None
        if partner is None:
            return
        mine, theirs = self.fmt.encoding.upper(), partner.fmt.encoding.upper()
        if mine != theirs:
            convert = new_transcoder(mine, theirs)
            if convert is None:
                raise ValueError(f"cannot transcode {mine} to {theirs}")
            self._convert = convert
            return
        pt = self.fmt.payload_type
        if 0 <= pt <= 127 and not 72 <= pt <= 76:  # 72-76 is RTCP on the RTP port
            self._fast_pt = pt
            self._fast_out_pt = partner.fmt.payload_type
            self._partner_sendto = partner._rtp_sock.sendto

    def inject(
        self,
        payload: bytes,
        *,
        ssrc: int,
        seq: int,
        ts: int,
        marker: bool = False,
        payload_type: int | None = None,
    ) -> bool:
        """Send a packet of a local source (announcement) to this leg's peer.

        It goes through the leg's ``OutboundStream``, so the peer sees one continuous
        stream across announcement and bridged audio. The payload must already be in
        this leg's encoding. False if the leg has no peer address yet or the send failed.
        """
        peer = self.latch.peer
        if peer is None or self.closed:
            return False
        size = len(payload)
        if 12 + size > _BUFFER_SIZE:
            raise ValueError("payload too large for one RTP packet")
        out_seq, out_ts, out_marker = self.outbound.rewrite(
            ssrc, seq, ts, marker, self._loop.time(), size
        )
        pt = self.fmt.payload_type if payload_type is None else payload_type
        buf = self._out
        RTP_HEADER.pack_into(
            buf, 0, 0x80, (0x80 if out_marker else 0) | pt, out_seq, out_ts, self.outbound.ssrc
        )
        buf[12 : 12 + size] = payload
        try:
            if self.srtp is None:
                self._rtp_sock.sendto(memoryview(buf)[: 12 + size], peer)
            else:
                wire = self.srtp.protect(bytes(buf[: 12 + size]))
                if wire is None:
                    self.counters.send_errors += 1
                    return False
                self._rtp_sock.sendto(wire, peer)
        except OSError:
            self.counters.send_errors += 1
            return False
        self.counters.injected += 1
        return True

    def close(self) -> None:
        """Say BYE over RTCP, stop reading and give the ports back."""
        if self.closed:
            return
        self.closed = True
        if self.partner is not None:
            self.partner._link(None)
            self.partner.outbound.new_source()
            self._link(None)
        self._send_rtcp(serialize_rtcp(build_rtcp_bye(self.outbound, self._relay.cname)))
        if self._timer is not None:
            self._timer.cancel()
        for sock in (self._rtp_sock, self._rtcp_sock):
            self._loop.remove_reader(sock.fileno())
            sock.close()
        self._relay._leg_closed(self)

    # ---- forwarding path

    def _on_rtp_readable(self) -> None:
        partner = self.partner
        sendto = self._partner_sendto
        peer = None
        if partner is not None:  # Latch.peer without the property call
            peer = partner.latch.latched
            if peer is None:
                peer = partner.latch.expected
        if (
            partner is None
            or sendto is None
            or peer is None
            or self._fast_pt < 0
            or self.srtp is not None
            or partner.srtp is not None
        ):
            self._read_rtp_full()
            return
        # The fast path: the common case of a bridged call inline, without a call per
        # step. It takes a packet only if it is plain RTP (V=2, no padding, extension or
        # CSRCs) of our audio payload type from the latched source, and the next one
        # (seq + 1) of the stream both the receive statistics (past probation) and the
        # partner's outbound stream already follow. Then it does exactly what
        # _handle_rtp, ReceiveStats.update (RFC 3550 A.1 in-order branch, A.8 jitter)
        # and OutboundStream.rewrite (no rebase) do for such a packet; every other
        # packet goes to _handle_rtp before anything was changed. Nothing below runs
        # another callback, so what is read here stays valid for the whole batch.
        recv = self._rtp_sock.recvfrom_into
        buf = self._buf
        now = self._loop.time()
        fast_pt = self._fast_pt
        latch = self.latch
        stats = self.stats
        out = partner.outbound
        counters = self.counters
        view = self._view
        arrival = int(now * stats.clock_rate)
        # A leg gets a packet every 20 ms or so: most callbacks find one datagram, and
        # a second read would only fail (a syscall and an exception). After a quiet gap,
        # read one and return; the loop polls level-triggered, so a datagram still
        # queued calls us again at once, and that call (no gap) reads in batches.
        batch = _READ_BATCH if now - self._last_read < _BURST_GAP else 1
        self._last_read = now
        for _ in range(batch):
            try:
                size, source = recv(buf)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                counters.send_errors += 1
                continue
            if (
                buf[0] != 0x80
                or size < 12
                or size >= _BUFFER_SIZE
                or buf[1] & 0x7F != fast_pt
                or source != latch.latched
            ):
                self._handle_rtp(size, source, now)
                continue
            _first, second, seq, ts, ssrc = _unpack_header(buf)
            max_seq = stats._max_seq
            if (
                ssrc != stats.ssrc
                or ssrc != out._src_ssrc
                or seq != (out._src_seq + 1) & 0xFFFF
                or stats._probation
                or (seq - max_seq) & 0xFFFF >= MAX_DROPOUT
            ):
                self._handle_rtp(size, source, now)
                continue
            counters.received += 1
            self.inactivity._last = now
            # ReceiveStats.update, in order: A.1 sequence, then A.8 jitter.
            if seq < max_seq:
                stats._cycles += 0x10000
            stats._max_seq = seq
            stats._received += 1
            transit = (arrival - ts) & 0xFFFFFFFF
            last_transit = stats._transit
            if last_transit is not None:
                d = abs(((transit - last_transit + 0x80000000) & 0xFFFFFFFF) - 0x80000000)
                stats._jitter += (d - stats._jitter) / 16.0
            stats._transit = transit
            # OutboundStream.rewrite for the next packet of the same source.
            out_seq = (seq + out._seq_offset) & 0xFFFF
            out_ts = (ts + out._ts_offset) & 0xFFFFFFFF
            step = (out_ts - out._last_out_ts) & 0xFFFFFFFF
            if 0 < step < out.clock_rate:
                out._ts_step = step
            out._src_seq = seq
            if (out_seq - out.next_seq) & 0xFFFF < MAX_DROPOUT:
                out.next_seq = (out_seq + 1) & 0xFFFF
                out._last_out_ts = out_ts
                out._last_time = now
            out.packet_count += 1
            out.octet_count += size - 12
            marker_pt = (second & 0x80) | self._fast_out_pt
            _pack_header(buf, 0, 0x80, marker_pt, out_seq, out_ts, out.ssrc)
            try:
                sendto(view[:size], peer)
            except OSError:
                counters.send_errors += 1
            else:
                counters.forwarded += 1
            bounded = self._tap_bounded
            if bounded is not None:
                items = self._tap_list
                if len(items) < bounded.max_per_leg:
                    items.append(
                        _new_tuple(
                            TapPacket,
                            (self.leg_id, now, seq, ts, ssrc, fast_pt, second > 0x7F,
                             view[12:size].tobytes()),
                        )
                    )  # fmt: skip
                else:
                    bounded.overflow += 1
            elif self._tap is not None:
                self._tap.put(
                    TapPacket(
                        self.leg_id, now, seq, ts, ssrc, fast_pt, second > 0x7F,
                        view[12:size].tobytes(),
                    )
                )  # fmt: skip

    def _read_rtp_full(self) -> None:
        recv = self._rtp_sock.recvfrom_into
        buf = self._buf
        now = self._loop.time()
        for _ in range(_READ_BATCH):
            try:
                size, source = recv(buf)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # e.g. ICMP port unreachable from an earlier send
                self.counters.send_errors += 1
                continue
            self._handle_rtp(size, source, now)

    def _handle_rtp(self, size: int, source: Address, now: float) -> None:
        counters = self.counters
        counters.received += 1
        buf = self._buf
        try:
            if size >= _BUFFER_SIZE:
                raise RtpError("datagram truncated by the read buffer")
            second, seq, ts, ssrc, start, end = peek_rtp(buf, size)
            if 72 <= second & 0x7F <= 76:  # RTCP on the RTP port (RFC 5761 4): no mux here
                raise RtpError("RTCP packet on the RTP port")
        except RtpError:
            counters.dropped_malformed += 1
            return
        if not self.latch.accept(source):
            counters.dropped_unlatched += 1
            return
        srtp = self.srtp
        if srtp is not None:
            plain = srtp.unprotect(bytes(self._view[:size]))
            if plain is None:
                counters.dropped_srtp += 1
                return
            size = len(plain)
            buf[:size] = plain  # shorter than what was read: the tag is gone
            try:
                second, seq, ts, ssrc, start, end = peek_rtp(buf, size)
            except RtpError:
                counters.dropped_malformed += 1
                return
        self.inactivity.on_packet(now)
        self.stats.update(ssrc, seq, ts, now)
        pt = second & 0x7F
        marker = bool(second & 0x80)
        view = self._view
        payload: bytes | None = None  # the original payload, once copied
        partner = self.partner
        if partner is not None:
            # Forwarding is inline (no helper call) because it runs for every packet.
            peer = partner.latch.peer
            fmt = self.fmt
            out_pt = pt  # static types such as CN (13) keep their number
            if peer is None:
                counters.dropped_no_peer += 1
            elif pt == fmt.payload_type:
                out_pt = partner.fmt.payload_type
                convert = self._convert
                if convert is not None:
                    payload = bytes(view[start:end])
                    converted = convert(payload)
                    if len(converted) == end - start:
                        buf[start:end] = converted
                    else:  # cannot happen for the supported pairs; never resize buf
                        counters.dropped_malformed += 1
                        peer = None
            elif pt == fmt.telephone_event and fmt.telephone_event is not None:
                te = partner.fmt.telephone_event
                if te is None:
                    counters.dropped_unsupported += 1
                    peer = None
                else:
                    out_pt = te
            if peer is not None:
                out = partner.outbound
                out_seq, out_ts, out_marker = out.rewrite(ssrc, seq, ts, marker, now, end - start)
                rewrite_rtp_header(buf, out_marker, out_pt, out_seq, out_ts, out.ssrc)
                wire: bytes | memoryview | None = view[:size]
                if partner.srtp is not None:
                    wire = partner.srtp.protect(bytes(view[:size]))
                try:
                    if wire is None:
                        raise OSError("SRTP protect failed")
                    partner._rtp_sock.sendto(wire, peer)
                except OSError:
                    counters.send_errors += 1
                else:
                    counters.forwarded += 1
        tap = self._tap
        if tap is not None:
            if payload is None:
                payload = bytes(view[start:end])
            tap.put(TapPacket(self.leg_id, now, seq, ts, ssrc, pt, marker, payload))

    # ---- RTCP, terminated here

    def _on_rtcp_readable(self) -> None:
        sock = self._rtcp_sock
        buf = self._rtcp_buf
        for _ in range(_READ_BATCH):
            try:
                size, source = sock.recvfrom_into(buf)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                continue
            self._handle_rtcp(bytes(buf[:size]), source, self._loop.time())

    def _handle_rtcp(self, data: bytes, source: Address, now: float) -> None:
        counters = self.counters
        if self.srtp is not None:
            plain = self.srtp.unprotect_rtcp(data)
            if plain is None:
                counters.rtcp_dropped_srtp += 1
                return
            data = plain
        try:
            packets = parse_rtcp(data)
            if not packets or not isinstance(packets[0], SenderReport | ReceiverReport):
                raise RtpError("compound RTCP must start with SR or RR")
        except RtpError:
            counters.rtcp_malformed += 1
            return
        if not self.rtcp_latch.accept(source):
            counters.rtcp_dropped_unlatched += 1
            return
        counters.rtcp_received += 1
        for packet in packets:
            if isinstance(packet, SenderReport):
                self.stats.on_sender_report(packet.ntp_timestamp, now)

    def _rtcp_peer(self) -> Address | None:
        peer = self.rtcp_latch.peer
        if peer is None and self.latch.peer is not None:
            host, port = self.latch.peer
            peer = (host, port + 1)
        return peer

    def _send_rtcp(self, data: bytes) -> None:
        peer = self._rtcp_peer()
        if peer is None:
            return
        if self.srtp is not None:
            wire = self.srtp.protect_rtcp(data)
            if wire is None:
                self.counters.send_errors += 1
                return
            data = wire
        try:
            self._rtcp_sock.sendto(data, peer)
        except OSError:
            self.counters.send_errors += 1
        else:
            self.counters.rtcp_sent += 1

    def send_report(self) -> None:
        """Send our SR (if we sent media since the last report) or RR now."""
        # RFC 3550 6.4: an SR if we sent media since the second previous report.
        count = self.outbound.packet_count
        sender = count != self._sent_at_reports[0]
        self._sent_at_reports = (self._sent_at_reports[1], count)
        packets = build_rtcp_report(
            self.outbound,
            self.stats,
            sender=sender,
            now=self._loop.time(),
            unix_time=time.time(),
            cname=self._relay.cname,
        )
        self._send_rtcp(serialize_rtcp(packets))

    # ---- timers: one handle per leg for RTCP reports and inactivity

    def _arm_timer(self) -> None:
        if self.closed:
            return
        if self._timer is not None:
            self._timer.cancel()
        when = self._next_report
        deadline = self.inactivity.deadline()
        if deadline is not None and deadline < when:
            when = deadline
        self._timer = self._loop.call_at(when, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        now = self._loop.time()
        if now >= self._next_report:
            # RFC 3550 6.2: randomise the interval to avoid synchronised reports.
            self._next_report = now + self._relay.rtcp_interval * random.uniform(0.5, 1.5)
            self.send_report()
        if self.inactivity.expired(now):
            self.inactivity.pause()  # report once; resume() re-arms
            if self.on_inactive is not None:
                self.on_inactive(self)
        if not self.closed:
            self._arm_timer()


def _rtcp_of(remote: Address | None) -> Address | None:
    return None if remote is None else (remote[0], remote[1] + 1)
