"""RFC 4733 receiver: one digit per event, with SIPp's real capture and edge cases."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from rtp.packet import TelephoneEvent, parse_rtp
from rtp.telephone_event import DigitEvent, TelephoneEventReceiver

SIPP_PCAPS = Path("/usr/share/sip-tester")


def read_pcap_udp(path: Path) -> list[tuple[float, bytes]]:
    """(capture time, UDP payload) of each IPv4/UDP packet in a classic pcap file."""
    data = path.read_bytes()
    magic = data[:4]
    endian = {b"\xd4\xc3\xb2\xa1": "<", b"\xa1\xb2\xc3\xd4": ">"}[magic]
    link_type = struct.unpack_from(endian + "I", data, 20)[0]
    assert link_type == 1  # Ethernet
    out = []
    offset = 24
    for _ in range(100_000):  # bounded: the files hold a few dozen packets
        if offset + 16 > len(data):
            break
        sec, usec, incl, _orig = struct.unpack_from(endian + "IIII", data, offset)
        frame = data[offset + 16 : offset + 16 + incl]
        offset += 16 + incl
        if frame[12:14] != b"\x08\x00" or frame[23] != 17:  # IPv4, UDP
            continue
        ihl = (frame[14] & 0x0F) * 4
        udp = frame[14 + ihl :]
        length = struct.unpack_from("!H", udp, 4)[0]
        out.append((sec + usec / 1e6, udp[8:length]))
    return out


def te(event: int, duration: int, end: bool = False) -> bytes:
    return TelephoneEvent(event, end, 10, duration).serialize()


@pytest.mark.parametrize(
    ("name", "digit"),
    [("dtmf_2833_1.pcap", "1"), ("dtmf_2833_star.pcap", "*"), ("dtmf_2833_pound.pcap", "#")],
)
def test_sipp_capture_reports_digit_exactly_once(name: str, digit: str) -> None:
    packets = read_pcap_udp(SIPP_PCAPS / name)
    assert len(packets) >= 4
    rx = TelephoneEventReceiver()
    events: list[DigitEvent] = []
    ends = 0
    for arrival, udp_payload in packets:
        rtp = parse_rtp(udp_payload)
        assert rtp.payload_type == 101
        ends += rtp.payload[1] >> 7
        events += rx.feed(rtp.timestamp, rtp.payload, arrival)
    assert ends >= 3  # the capture does repeat its end packet
    assert len(events) == 1
    ev = events[0]
    assert ev.digit == digit
    assert ev.method == "rfc4733"
    assert ev.at == packets[0][0]  # reported at the first packet: barge-in works
    assert ev.rtp_timestamp == parse_rtp(packets[0][1]).timestamp
    assert rx.malformed == rx.protocol_errors == 0


def test_all_sixteen_event_codes() -> None:
    rx = TelephoneEventReceiver()
    got = []
    for code in range(16):
        got += rx.feed(1000 * code, te(code, 0), float(code))
        got += rx.feed(1000 * code, te(code, 800, end=True), float(code))
    assert "".join(e.digit for e in got) == "0123456789*#ABCD"


def test_lost_start_first_packet_is_an_end() -> None:
    rx = TelephoneEventReceiver()
    got = rx.feed(5000, te(7, 960, end=True), 1.0)
    assert got == [DigitEvent("7", 1.0, 5000, 960)]
    assert rx.feed(5000, te(7, 960, end=True), 1.001) == []
    assert rx.feed(5000, te(7, 960, end=True), 1.002) == []


def test_same_digit_again_is_a_new_press() -> None:
    rx = TelephoneEventReceiver()
    first = rx.feed(0, te(2, 0), 0.0) + rx.feed(0, te(2, 800, True), 0.1)
    second = rx.feed(2400, te(2, 0), 0.3) + rx.feed(2400, te(2, 800, True), 0.4)
    assert [e.digit for e in first + second] == ["2", "2"]
    assert [e.rtp_timestamp for e in first + second] == [0, 2400]


def test_new_press_after_lost_end_packets() -> None:
    rx = TelephoneEventReceiver()
    assert len(rx.feed(0, te(3, 160), 0.0)) == 1
    # All end packets of the first press lost; the next press has a new timestamp.
    assert [e.digit for e in rx.feed(4000, te(3, 160), 0.5)] == ["3"]
    assert [e.digit for e in rx.feed(8000, te(4, 160), 1.0)] == ["4"]


def test_long_event_split_in_segments_is_one_press() -> None:
    # RFC 4733 section 2.5.1.3: past 0xFFFF samples (about 8 s) the sender starts a new
    # segment whose timestamp is the old one plus the old duration.
    rx = TelephoneEventReceiver()
    got = []
    ts = 10_000
    for duration in range(0, 0xFFFF, 160 * 20):
        got += rx.feed(ts, te(5, duration), 0.0)
    got += rx.feed(ts, te(5, 0xFFFF), 8.2)
    ts2 = (ts + 0xFFFF) % 2**32
    got += rx.feed(ts2, te(5, 160), 8.22)
    got += rx.feed(ts2, te(5, 800, True), 8.3)
    got += rx.feed(ts2, te(5, 800, True), 8.31)
    assert [e.digit for e in got] == ["5"]


def test_timestamp_wraps_around() -> None:
    rx = TelephoneEventReceiver()
    ts = 2**32 - 100
    got = rx.feed(ts, te(9, 65535), 0.0)
    got += rx.feed((ts + 65535) % 2**32, te(9, 160), 8.2)  # continuation across the wrap
    got += rx.feed(2**32 + 5, te(9, 160), 9.0)  # unreduced timestamps are reduced
    assert [(e.digit, e.rtp_timestamp) for e in got] == [("9", ts), ("9", 5)]


def test_late_packet_of_an_older_event_is_not_a_press() -> None:
    rx = TelephoneEventReceiver()
    rx.feed(0, te(1, 0), 0.0)
    rx.feed(0, te(1, 800, True), 0.1)
    rx.feed(4000, te(2, 0), 0.5)
    assert rx.feed(0, te(1, 800, True), 0.55) == []  # a reordered copy
    assert rx.feed(4000, te(2, 320), 0.56) == []
    assert rx.protocol_errors == 0


def test_bad_and_non_digit_payloads_are_counted() -> None:
    rx = TelephoneEventReceiver()
    assert rx.feed(0, b"\x01\x0a", 0.0) == []
    assert rx.feed(160, te(16, 0), 0.0) == []  # flash
    assert rx.feed(320, te(255, 0), 0.0) == []
    assert (rx.malformed, rx.non_digit) == (1, 2)
