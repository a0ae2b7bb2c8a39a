"""Fuzz the SDP parser, the media target reading and the anchoring rewrite.

    python fuzz/fuzz_sdp.py -max_total_time=60

Only SipError (488 for refused offers, 400 for unreadable ones) may come out.
"""

from __future__ import annotations

from harness import instrumented, main

with instrumented():
    from b2bua.errors import SipError
    from b2bua.media_control import media_target
    from b2bua.sdp import anchor, parse_sdp

SEEDS = [
    b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n"
    b"m=audio 49170 RTP/AVP 0 8 101\r\na=rtpmap:101 telephone-event/8000\r\n"
    b"a=fmtp:101 0-15\r\na=sendrecv\r\na=ptime:20\r\n",
    b"v=0\r\no=- 2 2 IN IP6 2001:db8::1\r\ns=-\r\nt=0 0\r\nm=audio 0 RTP/AVP 0\r\n"
    b"m=video 5000 RTP/AVP 31\r\nc=IN IP6 2001:db8::2\r\na=rtcp:5001 IN IP6 2001:db8::3\r\n",
]


def test_one_input(data: bytes) -> None:
    try:
        sdp = parse_sdp(data)
        media_target(sdp)
        anchor(sdp, "127.0.0.1", [40000] * len(sdp.media)).to_bytes()
    except SipError as exc:
        if exc.status not in (400, 488):
            raise RuntimeError(f"unexpected error: {exc!r}") from exc
    except ValueError as exc:
        # anchor's documented argument errors (e.g. no audio stream to anchor)
        if not ("anchor" in str(exc) or "stream" in str(exc)):
            raise RuntimeError(f"unexpected error: {exc!r}") from exc


if __name__ == "__main__":
    main(test_one_input, SEEDS)
