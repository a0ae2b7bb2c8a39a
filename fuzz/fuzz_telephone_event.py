"""Fuzz the RFC 4733 telephone-event payload parser and SIP INFO DTMF bodies.

    python fuzz/fuzz_telephone_event.py -max_total_time=60

Only RtpError (payload) and SipError (INFO body) may come out.
"""

from __future__ import annotations

import contextlib

from harness import instrumented, main

with instrumented():
    from b2bua.errors import SipError
    from b2bua.info_dtmf import parse_info_dtmf
    from rtp.packet import RtpError, parse_telephone_event

SEEDS = [bytes.fromhex("0a0a0320"), bytes.fromhex("0b8a0640"), b"Signal=5\r\nDuration=160\r\n"]


def test_one_input(data: bytes) -> None:
    with contextlib.suppress(RtpError):
        parse_telephone_event(data)
    for content_type in ("application/dtmf-relay", "application/dtmf"):
        with contextlib.suppress(SipError):
            parse_info_dtmf(content_type, data)


if __name__ == "__main__":
    main(test_one_input, SEEDS)
