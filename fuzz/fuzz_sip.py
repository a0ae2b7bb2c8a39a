"""Fuzz the SIP message layer: datagram parse, UAS checks, stream framing, 400 builder.

    python fuzz/fuzz_sip.py -max_total_time=60

Only SipError (with a status to answer) may come out; seeds are the RFC 4475 messages.
"""

from __future__ import annotations

from pathlib import Path

from harness import ROOT, instrumented, main

with instrumented():
    from b2bua.errors import SipError
    from b2bua.message import Request, StreamParser, error_response, parse_message
    from b2bua.validate import check_request


def test_one_input(data: bytes) -> None:
    try:
        message = parse_message(data)
    except SipError as exc:
        if not (400 <= exc.status <= 699):
            raise RuntimeError(f"unexpected error: {exc!r}") from exc
        reply = error_response(data, exc)
        if reply is not None:
            reply.to_bytes()
        message = None
    if isinstance(message, Request):
        try:
            check_request(message)
        except SipError as exc:
            if not (400 <= exc.status <= 699):
                raise RuntimeError(f"unexpected error: {exc!r}") from exc
        message.to_bytes()
    parser = StreamParser(max_message_size=4096)
    try:
        for start in range(0, len(data), 97):  # arbitrary chunking of a stream
            parser.feed(data[start : start + 97])
    except SipError:
        pass


SEEDS = [p.read_bytes() for p in sorted(Path(ROOT, "tests/data/rfc4475").glob("*.dat"))]

if __name__ == "__main__":
    main(test_one_input, SEEDS)
