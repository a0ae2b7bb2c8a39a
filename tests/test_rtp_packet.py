"""RTP/RTCP/RFC 4733 wire formats: round trips, hostile input, real captures."""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rtp.packet import (
    RTCP_APP,
    Bye,
    ReceiverReport,
    ReportBlock,
    RtcpPacket,
    RtcpRaw,
    RtpError,
    RtpPacket,
    SdesChunk,
    SenderReport,
    SourceDescription,
    TelephoneEvent,
    is_rtcp,
    parse_rtcp,
    parse_rtp,
    parse_telephone_event,
    peek_rtp,
    rewrite_rtp_header,
    serialize_rtcp,
)

PCAPS = Path("/usr/share/sip-tester")

u8, u16, u32 = (st.integers(0, 2**n - 1) for n in (8, 16, 32))

rtp_packets = st.builds(
    RtpPacket,
    payload_type=st.integers(0, 127),
    sequence=u16,
    timestamp=u32,
    ssrc=u32,
    payload=st.binary(max_size=64),
    marker=st.booleans(),
    csrcs=st.lists(u32, max_size=15).map(tuple),
    extension_profile=st.none() | u16,
    extension_data=st.integers(0, 4).map(lambda n: bytes(range(4 * n))),
    padding=st.integers(0, 255),
)


@given(rtp_packets)
def test_rtp_round_trip(packet: RtpPacket) -> None:
    if packet.extension_profile is None:
        packet = dataclasses.replace(packet, extension_data=b"")
    wire = packet.serialize()
    assert parse_rtp(wire) == packet
    second, seq, ts, ssrc, start, end = peek_rtp(wire, len(wire))
    assert (second & 0x7F, bool(second & 0x80)) == (packet.payload_type, packet.marker)
    assert (seq, ts, ssrc) == (packet.sequence, packet.timestamp, packet.ssrc)
    assert wire[start:end] == packet.payload


@settings(max_examples=300)
@given(st.binary(max_size=80))
def test_random_bytes_raise_only_rtp_error(data: bytes) -> None:
    for parser in (parse_rtp, parse_rtcp, parse_telephone_event):
        with contextlib.suppress(RtpError):
            parser(data)
    with contextlib.suppress(RtpError):
        peek_rtp(data, len(data))


@settings(max_examples=300)
@given(st.binary(min_size=12, max_size=60))
def test_random_version2_bytes_parse_or_raise_rtp_error(data: bytes) -> None:
    # Force version 2 so the parser goes past the first check into CC/X/P handling.
    data = bytes((0x80 | (data[0] & 0x3F),)) + data[1:]
    try:
        packet = parse_rtp(data)
    except RtpError:
        return
    wire = packet.serialize()
    # Padding content is not kept (RFC 3550 only defines its count), all else is.
    assert parse_rtp(wire) == packet
    assert wire[: len(data) - packet.padding] == data[: len(data) - packet.padding]


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"\x80\x00" + bytes(9), "short"),
        (b"\x40\x00" + bytes(10), "version 1"),
        (b"\x82\x00" + bytes(14), "two CSRCs, room for one"),
        (b"\x90\x00" + bytes(10) + b"\x00\x00\x00\x02" + bytes(4), "extension overrun"),
        (b"\x90\x00" + bytes(10) + b"\x00\x00", "extension header cut"),
        (b"\xa0\x00" + bytes(10) + b"\x00\x00\x05", "padding overrun"),
        (b"\xa0\x00" + bytes(10) + b"\x01\x00", "padding zero"),
    ],
)
def test_bad_rtp_rejected(data: bytes, why: str) -> None:
    with pytest.raises(RtpError):
        parse_rtp(data)
    with pytest.raises(RtpError):
        peek_rtp(data, len(data))


def test_rtp_error_is_value_error() -> None:
    assert issubclass(RtpError, ValueError)


def test_rewrite_header_in_place_keeps_rest() -> None:
    packet = RtpPacket(0, 1, 2, 3, b"abcd", csrcs=(7,), padding=3)
    buf = bytearray(packet.serialize())
    rewrite_rtp_header(buf, True, 8, 0x1_0005, 0x1_0000_0009, 42)
    again = parse_rtp(buf)
    assert (again.payload_type, again.marker, again.sequence, again.timestamp, again.ssrc) == (
        8,
        True,
        5,
        9,
        42,
    )
    assert (again.csrcs, again.payload, again.padding) == ((7,), b"abcd", 3)


# ------------------------------------------------------------------ telephone-event


@given(st.integers(0, 255), st.booleans(), st.integers(0, 63), u16)
def test_telephone_event_round_trip(event: int, end: bool, volume: int, duration: int) -> None:
    te = TelephoneEvent(event, end, volume, duration)
    assert parse_telephone_event(te.serialize()) == te


def test_telephone_event_known_bytes() -> None:
    # RFC 4733 2.3: event 5, E bit, volume 10, duration 800 samples.
    assert TelephoneEvent(5, True, 10, 800).serialize() == bytes((5, 0x8A, 0x03, 0x20))
    with pytest.raises(RtpError):
        parse_telephone_event(b"\x05\x8a\x03")
    with pytest.raises(RtpError):
        TelephoneEvent(5, volume=64).serialize()


# -------------------------------------------------------------------------- RTCP

blocks = st.builds(
    ReportBlock,
    ssrc=u32,
    fraction_lost=u8,
    cumulative_lost=st.integers(-0x800000, 0x7FFFFF),
    highest_seq=u32,
    jitter=u32,
    lsr=u32,
    dlsr=u32,
)
block_lists = st.lists(blocks, max_size=3).map(tuple)
words = st.integers(0, 3).map(lambda n: bytes(range(4 * n)))
sdes_items = st.lists(st.tuples(st.integers(1, 8), st.binary(max_size=20)), max_size=3).map(tuple)
rtcp_packets = st.one_of(
    st.builds(SenderReport, u32, st.integers(0, 2**64 - 1), u32, u32, u32, block_lists, words),
    st.builds(ReceiverReport, u32, block_lists, words),
    st.builds(
        SourceDescription,
        st.lists(st.builds(SdesChunk, u32, sdes_items), max_size=3).map(tuple),
    ),
    st.builds(Bye, st.lists(u32, max_size=4).map(tuple), st.binary(max_size=30)),
    st.builds(RtcpRaw, st.just(RTCP_APP), st.integers(0, 31), words),
)


@given(st.lists(rtcp_packets, min_size=1, max_size=4))
def test_rtcp_compound_round_trip(packets: list[RtcpPacket]) -> None:
    wire = serialize_rtcp(packets)
    assert parse_rtcp(wire) == tuple(packets)
    assert is_rtcp(wire)


def test_report_block_fields_on_the_wire() -> None:
    # RFC 3550 6.4.1 layout: fraction (8 bit) | cumulative lost (signed 24 bit).
    block = ReportBlock(1, 0x40, -1, 0x1_0010, 20, 0x1234_5678, 65536)
    wire = ReceiverReport(9, (block,)).serialize()
    assert wire[:4] == b"\x81\xc9\x00\x07"  # V=2 RC=1, PT=201, length 7 words
    assert wire[12:16] == b"\x40\xff\xff\xff"
    assert parse_rtcp(wire)[0] == ReceiverReport(9, (block,))


def test_rtcp_padding_and_errors() -> None:
    rr = ReceiverReport(5).serialize()
    padded = bytes((rr[0] | 0x20,)) + rr[1:3] + bytes((rr[3] + 1,)) + rr[4:] + b"\x00\x00\x00\x04"
    assert parse_rtcp(padded) == (ReceiverReport(5),)
    for bad in (
        b"\x81\xc9\x00",  # short
        b"\x41\xc9\x00\x01\x00\x00\x00\x05",  # version 1
        b"\x81\xc9\x00\x07" + bytes(8),  # length overruns
        b"\x81\x10\x00\x01\x00\x00\x00\x05",  # packet type out of range
        b"\x81\xc8\x00\x01\x00\x00\x00\x05",  # SR without sender info
        b"\x82\xc9\x00\x07" + bytes(28),  # RC=2 with one block
        b"\x81\xca\x00\x02\x00\x00\x00\x01\x01\x09abc",  # SDES item overrun
        padded + b"\x80",  # trailing garbage
    ):
        with pytest.raises(RtpError):
            parse_rtcp(bad)
    assert not is_rtcp(RtpPacket(0, 1, 2, 3).serialize())


# ------------------------------------------------------------ real captures (sipp)


def udp_payloads(path: Path) -> list[bytes]:
    """Minimal classic-pcap reader: Ethernet / IPv4 / UDP payloads."""
    data = path.read_bytes()
    magic = data[:4]
    assert magic in (b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4"), "not a classic pcap"
    endian = "<" if magic == b"\xd4\xc3\xb2\xa1" else ">"
    assert struct.unpack_from(endian + "I", data, 20)[0] == 1, "linktype is not Ethernet"
    offset, out = 24, []
    while offset + 16 <= len(data):
        incl = struct.unpack_from(endian + "I", data, offset + 8)[0]
        frame = data[offset + 16 : offset + 16 + incl]
        offset += 16 + incl
        if frame[12:14] != b"\x08\x00" or frame[23] != 17:
            continue  # only IPv4/UDP
        ihl = (frame[14] & 0x0F) * 4
        udp = frame[14 + ihl :]
        out.append(udp[8 : struct.unpack_from("!H", udp, 4)[0]])
    return out


def test_g711a_capture_parses() -> None:
    payloads = udp_payloads(PCAPS / "g711a.pcap")
    assert len(payloads) > 100
    packets = [parse_rtp(p) for p in payloads]
    assert {p.payload_type for p in packets} == {8}  # PCMA
    assert {len(p.payload) for p in packets} == {240}  # 30 ms at 8 kHz
    assert len({p.ssrc for p in packets}) == 1
    seqs = [p.sequence for p in packets]
    assert all((b - a) % 65536 == 1 for a, b in itertools.pairwise(seqs))
    assert all(p.serialize() == raw for p, raw in zip(packets, payloads, strict=True))


def test_dtmf_capture_parses_as_telephone_events() -> None:
    packets = [parse_rtp(p) for p in udp_payloads(PCAPS / "dtmf_2833_1.pcap")]
    assert packets
    events = [parse_telephone_event(p.payload) for p in packets]
    assert {e.event for e in events} == {1}  # the digit '1'
    assert events[-1].end
    durations = [e.duration for e in events]
    assert durations == sorted(durations)
    assert durations[-1] > 0
    assert len({p.timestamp for p in packets}) == 1  # one event, one timestamp (RFC 4733 2.5)
