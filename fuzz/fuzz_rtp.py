"""Fuzz the RTP and RTCP parsers (and RTCP re-serialisation).

    python fuzz/fuzz_rtp.py -max_total_time=60

Only RtpError may come out.
"""

from __future__ import annotations

from harness import instrumented, main

with instrumented():
    from rtp.packet import RtpError, is_rtcp, parse_rtcp, parse_rtp, serialize_rtcp

SEEDS = [
    bytes.fromhex("80000001000000a0deadbeef") + b"\xd5" * 160,
    bytes.fromhex("a0e50002000001400000000100000000") + b"\x00\x00\x00\x04",
    bytes.fromhex("80c80006000000010000000000000000000000a00000000100000064"),
    bytes.fromhex("81ca0003000000010104616c696365000000"),
    bytes.fromhex("81cb000100000001"),
]


def test_one_input(data: bytes) -> None:
    try:
        if is_rtcp(data):
            packets = parse_rtcp(data)
            serialize_rtcp(packets)
        else:
            packet = parse_rtp(data)
            packet.to_bytes() if hasattr(packet, "to_bytes") else None
    except RtpError:
        pass


if __name__ == "__main__":
    main(test_one_input, SEEDS)
