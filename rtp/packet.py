"""RTP and RTCP wire formats (RFC 3550), RFC 4733 telephone-events.

Two layers:

* Full models (``RtpPacket``, the RTCP packet classes, ``TelephoneEvent``): frozen
  dataclasses with ``parse_*`` and ``serialize()``, used by tests, the control plane
  and anything that is not per packet.
* Hot-path helpers (``peek_rtp``, ``rewrite_rtp_header``) for the relay: they read and
  write only the fixed 12-byte header in place, so forwarding allocates nothing beyond
  what the socket layer does.

Every parser raises only ``RtpError`` (a ``ValueError``) for bad input.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

__all__ = [
    "RTCP_APP",
    "RTCP_BYE",
    "RTCP_RR",
    "RTCP_SDES",
    "RTCP_SR",
    "SDES_CNAME",
    "Bye",
    "ReceiverReport",
    "ReportBlock",
    "RtcpPacket",
    "RtcpRaw",
    "RtpError",
    "RtpPacket",
    "SdesChunk",
    "SenderReport",
    "SourceDescription",
    "TelephoneEvent",
    "is_rtcp",
    "parse_rtcp",
    "parse_rtp",
    "parse_telephone_event",
    "peek_rtp",
    "rewrite_rtp_header",
    "serialize_rtcp",
]

RTP_VERSION = 2
RTP_HEADER = struct.Struct("!BBHII")  # V/P/X/CC, M/PT, sequence, timestamp, SSRC
_U16 = struct.Struct("!H")
_U32 = struct.Struct("!I")
_RTCP_HEADER = struct.Struct("!BBH")  # V/P/count, packet type, length in words - 1
_SR_INFO = struct.Struct("!IIIII")  # NTP msw, NTP lsw, RTP ts, packet count, octet count
_REPORT_BLOCK = struct.Struct("!IIIIII")
_TELEPHONE_EVENT = struct.Struct("!BBH")

# RTCP packet types (RFC 3550 section 12.1).
RTCP_SR = 200
RTCP_RR = 201
RTCP_SDES = 202
RTCP_BYE = 203
RTCP_APP = 204
SDES_CNAME = 1


class RtpError(ValueError):
    """Malformed RTP, RTCP or telephone-event data."""


# --------------------------------------------------------------------------- RTP


@dataclass(frozen=True, slots=True)
class RtpPacket:
    """One RTP packet. ``padding`` is the number of padding bytes (0: P bit clear)."""

    payload_type: int
    sequence: int
    timestamp: int
    ssrc: int
    payload: bytes = b""
    marker: bool = False
    csrcs: tuple[int, ...] = ()
    extension_profile: int | None = None  # None: X bit clear
    extension_data: bytes = b""  # a multiple of 4 bytes
    padding: int = 0
    version: int = RTP_VERSION

    def serialize(self) -> bytes:
        if self.version != RTP_VERSION:
            raise RtpError(f"cannot serialize RTP version {self.version}")
        if not 0 <= self.payload_type <= 127 or len(self.csrcs) > 15:
            raise RtpError("payload type or CSRC count out of range")
        if len(self.extension_data) % 4 or not 0 <= self.padding <= 255:
            raise RtpError("extension not word aligned or padding out of range")
        has_ext = self.extension_profile is not None
        out = bytearray(
            RTP_HEADER.pack(
                (RTP_VERSION << 6)
                | (0x20 if self.padding else 0)
                | (0x10 if has_ext else 0)
                | len(self.csrcs),
                (0x80 if self.marker else 0) | self.payload_type,
                self.sequence & 0xFFFF,
                self.timestamp & 0xFFFFFFFF,
                self.ssrc & 0xFFFFFFFF,
            )
        )
        for csrc in self.csrcs:
            out += _U32.pack(csrc & 0xFFFFFFFF)
        if self.extension_profile is not None:
            out += _U16.pack(self.extension_profile & 0xFFFF)
            out += _U16.pack(len(self.extension_data) // 4)
            out += self.extension_data
        out += self.payload
        if self.padding:
            # RFC 3550 5.1: the last padding octet counts the padding, itself included.
            out += bytes(self.padding - 1) + bytes((self.padding,))
        return bytes(out)


def _header_length(data: bytes | bytearray | memoryview, length: int) -> int:
    """Length of fixed header + CSRCs + extension; raises RtpError on overrun."""
    if length < 12:
        raise RtpError("RTP packet shorter than 12 bytes")
    first = data[0]
    if first >> 6 != RTP_VERSION:
        raise RtpError(f"RTP version {first >> 6}, expected 2")
    end = 12 + 4 * (first & 0x0F)
    if first & 0x10:
        if end + 4 > length:
            raise RtpError("RTP extension header overruns the packet")
        end += 4 + 4 * _U16.unpack_from(data, end + 2)[0]
    if end > length:
        raise RtpError("RTP CSRC list or extension overruns the packet")
    return end


def _padding_length(data: bytes | bytearray | memoryview, length: int, header_end: int) -> int:
    if not data[0] & 0x20:
        return 0
    pad = data[length - 1] if length > header_end else 0
    if pad == 0 or header_end + pad > length:
        raise RtpError("RTP padding count is zero or overruns the payload")
    return pad


def parse_rtp(data: bytes | bytearray | memoryview) -> RtpPacket:
    """Parse one RTP packet; raises RtpError for anything malformed."""
    length = len(data)
    end = _header_length(data, length)
    pad = _padding_length(data, length, end)
    first, second, seq, ts, ssrc = RTP_HEADER.unpack_from(data, 0)
    count = first & 0x0F
    csrcs = struct.unpack_from(f"!{count}I", data, 12) if count else ()
    profile: int | None = None
    ext = b""
    if first & 0x10:
        offset = 12 + 4 * count
        profile = _U16.unpack_from(data, offset)[0]
        ext = bytes(data[offset + 4 : end])
    return RtpPacket(
        payload_type=second & 0x7F,
        sequence=seq,
        timestamp=ts,
        ssrc=ssrc,
        payload=bytes(data[end : length - pad]),
        marker=bool(second & 0x80),
        csrcs=tuple(csrcs),
        extension_profile=profile,
        extension_data=ext,
        padding=pad,
    )


def peek_rtp(
    data: bytes | bytearray | memoryview, length: int
) -> tuple[int, int, int, int, int, int]:
    """Hot path: ``(second_byte, seq, ts, ssrc, payload_start, payload_end)``.

    ``second_byte`` holds marker (0x80) and payload type (0x7F). Validates exactly
    what ``parse_rtp`` validates, without building an object.
    """
    end = _header_length(data, length)
    pad = _padding_length(data, length, end)
    _first, second, seq, ts, ssrc = RTP_HEADER.unpack_from(data, 0)
    return second, seq, ts, ssrc, end, length - pad


def rewrite_rtp_header(
    buf: bytearray, marker: bool, payload_type: int, seq: int, ts: int, ssrc: int
) -> None:
    """Hot path: overwrite M/PT, sequence, timestamp and SSRC in place (V/P/X/CC kept)."""
    RTP_HEADER.pack_into(
        buf,
        0,
        buf[0],
        (0x80 if marker else 0) | payload_type,
        seq & 0xFFFF,
        ts & 0xFFFFFFFF,
        ssrc & 0xFFFFFFFF,
    )


def is_rtcp(data: bytes | bytearray | memoryview) -> bool:
    """RFC 5761 section 4 demultiplexing: RTCP packet types 192-223 in the second byte."""
    return len(data) >= 2 and 192 <= data[1] <= 223


# ------------------------------------------------------------------ telephone-event


@dataclass(frozen=True, slots=True)
class TelephoneEvent:
    """RFC 4733 section 2.3 payload: event code, end bit, volume (-dBm0), duration."""

    event: int
    end: bool = False
    volume: int = 10
    duration: int = 0

    def serialize(self) -> bytes:
        if not (0 <= self.event <= 255 and 0 <= self.volume <= 63 and 0 <= self.duration <= 0xFFFF):
            raise RtpError("telephone-event field out of range")
        return _TELEPHONE_EVENT.pack(
            self.event, (0x80 if self.end else 0) | self.volume, self.duration
        )


def parse_telephone_event(payload: bytes | bytearray | memoryview) -> TelephoneEvent:
    """Parse the first event block; redundant blocks (RFC 4733 2.5.1.4) are ignored."""
    if len(payload) < 4:
        raise RtpError("telephone-event payload shorter than 4 bytes")
    event, flags, duration = _TELEPHONE_EVENT.unpack_from(payload, 0)
    return TelephoneEvent(event, bool(flags & 0x80), flags & 0x3F, duration)


# -------------------------------------------------------------------------- RTCP


@dataclass(frozen=True, slots=True)
class ReportBlock:
    """RFC 3550 6.4.1 reception report block. ``cumulative_lost`` is signed 24 bit."""

    ssrc: int
    fraction_lost: int  # fixed point, lost / expected * 256
    cumulative_lost: int
    highest_seq: int  # extended highest sequence number received
    jitter: int  # in timestamp units
    lsr: int = 0  # middle 32 bits of the last SR's NTP timestamp
    dlsr: int = 0  # delay since that SR, in 1/65536 s

    def serialize(self) -> bytes:
        lost = self.cumulative_lost
        if not -0x800000 <= lost <= 0x7FFFFF or not 0 <= self.fraction_lost <= 255:
            raise RtpError("report block loss fields out of range")
        return _REPORT_BLOCK.pack(
            self.ssrc & 0xFFFFFFFF,
            (self.fraction_lost << 24) | (lost & 0xFFFFFF),
            self.highest_seq & 0xFFFFFFFF,
            self.jitter & 0xFFFFFFFF,
            self.lsr & 0xFFFFFFFF,
            self.dlsr & 0xFFFFFFFF,
        )


def _parse_blocks(body: bytes, offset: int, count: int) -> tuple[ReportBlock, ...]:
    if offset + 24 * count > len(body):
        raise RtpError("RTCP report blocks overrun the packet")
    blocks = []
    for i in range(count):
        ssrc, loss, highest, jitter, lsr, dlsr = _REPORT_BLOCK.unpack_from(body, offset + 24 * i)
        lost = loss & 0xFFFFFF
        if lost & 0x800000:
            lost -= 0x1000000
        blocks.append(ReportBlock(ssrc, loss >> 24, lost, highest, jitter, lsr, dlsr))
    return tuple(blocks)


def _rtcp_header(count: int, packet_type: int, body: bytes) -> bytes:
    if len(body) % 4 or count > 31:
        raise RtpError("RTCP body not word aligned or count above 31")
    return _RTCP_HEADER.pack(0x80 | count, packet_type, (len(body) + 4) // 4 - 1) + body


@dataclass(frozen=True, slots=True)
class SenderReport:
    ssrc: int
    ntp_timestamp: int  # 64-bit NTP format
    rtp_timestamp: int
    packet_count: int
    octet_count: int
    reports: tuple[ReportBlock, ...] = ()
    extension: bytes = b""  # profile-specific, kept raw

    def serialize(self) -> bytes:
        body = _U32.pack(self.ssrc & 0xFFFFFFFF) + _SR_INFO.pack(
            (self.ntp_timestamp >> 32) & 0xFFFFFFFF,
            self.ntp_timestamp & 0xFFFFFFFF,
            self.rtp_timestamp & 0xFFFFFFFF,
            self.packet_count & 0xFFFFFFFF,
            self.octet_count & 0xFFFFFFFF,
        )
        body += b"".join(block.serialize() for block in self.reports) + self.extension
        return _rtcp_header(len(self.reports), RTCP_SR, body)


@dataclass(frozen=True, slots=True)
class ReceiverReport:
    ssrc: int
    reports: tuple[ReportBlock, ...] = ()
    extension: bytes = b""

    def serialize(self) -> bytes:
        body = _U32.pack(self.ssrc & 0xFFFFFFFF)
        body += b"".join(block.serialize() for block in self.reports) + self.extension
        return _rtcp_header(len(self.reports), RTCP_RR, body)


@dataclass(frozen=True, slots=True)
class SdesChunk:
    ssrc: int
    items: tuple[tuple[int, bytes], ...]  # (item type, value), e.g. (SDES_CNAME, b"...")


@dataclass(frozen=True, slots=True)
class SourceDescription:
    chunks: tuple[SdesChunk, ...]

    def serialize(self) -> bytes:
        body = bytearray()
        for chunk in self.chunks:
            body += _U32.pack(chunk.ssrc & 0xFFFFFFFF)
            for item_type, value in chunk.items:
                if not 1 <= item_type <= 255 or len(value) > 255:
                    raise RtpError("SDES item type or length out of range")
                body += bytes((item_type, len(value))) + value
            # A null item ends the list, then pad to the next word (RFC 3550 6.5).
            body += bytes(4 - len(body) % 4)
        return _rtcp_header(len(self.chunks), RTCP_SDES, bytes(body))


@dataclass(frozen=True, slots=True)
class Bye:
    ssrcs: tuple[int, ...]
    reason: bytes = b""

    def serialize(self) -> bytes:
        body = b"".join(_U32.pack(s & 0xFFFFFFFF) for s in self.ssrcs)
        if self.reason:
            if len(self.reason) > 255:
                raise RtpError("BYE reason longer than 255 bytes")
            text = bytes((len(self.reason),)) + self.reason
            body += text + bytes(-len(text) % 4)
        return _rtcp_header(len(self.ssrcs), RTCP_BYE, body)


@dataclass(frozen=True, slots=True)
class RtcpRaw:
    """APP and unknown packet types, kept as received (header fields split out)."""

    packet_type: int
    count: int
    body: bytes = field(default=b"")

    def serialize(self) -> bytes:
        return _rtcp_header(self.count, self.packet_type, self.body)


RtcpPacket = SenderReport | ReceiverReport | SourceDescription | Bye | RtcpRaw


def _parse_sdes(body: bytes, count: int) -> SourceDescription:
    chunks = []
    offset = 0
    for _ in range(count):
        if offset + 4 > len(body):
            raise RtpError("SDES chunk overruns the packet")
        ssrc = _U32.unpack_from(body, offset)[0]
        offset += 4
        items = []
        while True:
            if offset >= len(body):
                raise RtpError("SDES item list not terminated")
            item_type = body[offset]
            if item_type == 0:
                offset = (offset + 4) & ~3  # skip the null item and padding to the word
                break
            if offset + 2 > len(body) or offset + 2 + body[offset + 1] > len(body):
                raise RtpError("SDES item overruns the packet")
            size = body[offset + 1]
            items.append((item_type, body[offset + 2 : offset + 2 + size]))
            offset += 2 + size
        chunks.append(SdesChunk(ssrc, tuple(items)))
    return SourceDescription(tuple(chunks))


def _parse_one(packet_type: int, count: int, body: bytes) -> RtcpPacket:
    if packet_type == RTCP_SR:
        if len(body) < 24:
            raise RtpError("SR shorter than its sender info")
        ssrc = _U32.unpack_from(body, 0)[0]
        msw, lsw, rtp_ts, packets, octets = _SR_INFO.unpack_from(body, 4)
        blocks = _parse_blocks(body, 24, count)
        return SenderReport(
            ssrc, (msw << 32) | lsw, rtp_ts, packets, octets, blocks, body[24 + 24 * count :]
        )
    if packet_type == RTCP_RR:
        if len(body) < 4:
            raise RtpError("RR without SSRC")
        blocks = _parse_blocks(body, 4, count)
        return ReceiverReport(_U32.unpack_from(body, 0)[0], blocks, body[4 + 24 * count :])
    if packet_type == RTCP_SDES:
        return _parse_sdes(body, count)
    if packet_type == RTCP_BYE:
        if 4 * count > len(body):
            raise RtpError("BYE SSRC list overruns the packet")
        ssrcs = struct.unpack_from(f"!{count}I", body, 0)
        reason = b""
        if len(body) > 4 * count:
            size = body[4 * count]
            if 4 * count + 1 + size > len(body):
                raise RtpError("BYE reason overruns the packet")
            reason = body[4 * count + 1 : 4 * count + 1 + size]
        return Bye(tuple(ssrcs), reason)
    return RtcpRaw(packet_type, count, body)


def parse_rtcp(data: bytes | bytearray | memoryview) -> tuple[RtcpPacket, ...]:
    """Parse a compound RTCP packet into its parts; raises RtpError on malformed input."""
    data = bytes(data)
    if len(data) < 4:
        raise RtpError("RTCP packet shorter than 4 bytes")
    packets: list[RtcpPacket] = []
    offset = 0
    while offset < len(data):
        if offset + 4 > len(data):
            raise RtpError("trailing bytes after the last RTCP packet")
        first, packet_type, words = _RTCP_HEADER.unpack_from(data, offset)
        if first >> 6 != RTP_VERSION:
            raise RtpError(f"RTCP version {first >> 6}, expected 2")
        if not 192 <= packet_type <= 223:
            raise RtpError(f"RTCP packet type {packet_type} out of range")
        end = offset + 4 * (words + 1)
        if end > len(data):
            raise RtpError("RTCP length overruns the datagram")
        body = data[offset + 4 : end]
        if first & 0x20:
            # RFC 3550 6.4.1: only the last packet of a compound may be padded.
            if end != len(data) or not body or body[-1] == 0 or body[-1] > len(body):
                raise RtpError("bad RTCP padding")
            body = body[: -body[-1]]
        packets.append(_parse_one(packet_type, first & 0x1F, body))
        offset = end
    return tuple(packets)


def serialize_rtcp(packets: tuple[RtcpPacket, ...] | list[RtcpPacket]) -> bytes:
    """Build a compound RTCP packet (first SR/RR, then SDES, ... as RFC 3550 6.1 asks)."""
    return b"".join(packet.serialize() for packet in packets)
