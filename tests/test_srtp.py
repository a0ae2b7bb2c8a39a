"""SRTP: SDES a=crypto negotiation (RFC 4568), the libsrtp wrapper, and the relay.

The SRTP peer in the relay tests is pylibsrtp itself (a libsrtp Session with the peer's
key), sending and receiving over loopback UDP against our relay legs.
"""

from __future__ import annotations

import asyncio
import base64
import socket
import struct
from collections.abc import Coroutine
from typing import Any

import pylibsrtp
import pytest

from b2bua.errors import SipError
from b2bua.sdp import parse_sdp
from b2bua.sdp_crypto import (
    accept_answer,
    answer_srtp,
    build_crypto,
    crypto_attributes,
    is_srtp_offer,
    offer_crypto,
    parse_crypto,
)
from rtp.packet import parse_rtp
from rtp.relay import BoundedTap, MediaFormat, MediaRelay, PortAllocator, new_event_loop
from rtp.srtp import SrtpKey, SrtpLeg

# RFC 4568 section 4's example key (30 bytes once decoded), here without its MKI.
RFC_KEY = "PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR"
PORTS = (47600, 47699)  # away from the other relay tests' range


def rtp(seq: int, payload: bytes, ssrc: int = 0x11223344, pt: int = 0) -> bytes:
    return struct.pack("!BBHII", 0x80, pt, seq, seq * 160, ssrc) + payload


def peer_session(key: SrtpKey, outbound: bool) -> pylibsrtp.Session:
    kind = pylibsrtp.Policy.SSRC_ANY_OUTBOUND if outbound else pylibsrtp.Policy.SSRC_ANY_INBOUND
    profile = {
        "AES_CM_128_HMAC_SHA1_80": pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80,
        "AES_CM_128_HMAC_SHA1_32": pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_32,
    }[key.suite]
    return pylibsrtp.Session(pylibsrtp.Policy(key.key_salt, kind, srtp_profile=profile))


# ---------------------------------------------------------------- a=crypto


def test_parse_crypto_accepts_rfc_example_and_refuses_what_we_can_not_do() -> None:
    parsed = parse_crypto(f"1 AES_CM_128_HMAC_SHA1_80 inline:{RFC_KEY}|2^20")
    assert parsed is not None
    assert (parsed.tag, parsed.key.suite, parsed.lifetime) == (1, "AES_CM_128_HMAC_SHA1_80", "2^20")
    assert parsed.key.key_salt == base64.b64decode(RFC_KEY)
    assert RFC_KEY not in repr(parsed)  # the key stays out of logs
    refused = [
        f"1 AES_CM_128_HMAC_SHA1_80 inline:{RFC_KEY}|2^20|1:32",  # MKI
        f"1 F8_128_HMAC_SHA1_80 inline:{RFC_KEY}",  # suite libsrtp here does not do
        "1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkp",  # short key
        f"1 AES_CM_128_HMAC_SHA1_80 inline:{RFC_KEY} UNENCRYPTED_SRTP",  # session param
        f"x AES_CM_128_HMAC_SHA1_80 inline:{RFC_KEY}",  # tag
        "1 AES_CM_128_HMAC_SHA1_80 inline:!!!notbase64!!!!!!!!!!!!!!!!!!!!!!!!!!!!",
        f"1 AES_CM_128_HMAC_SHA1_80 foo:{RFC_KEY}",
    ]
    for line in refused:
        assert parse_crypto(line) is None, line
    key = SrtpKey("AES_CM_128_HMAC_SHA1_32", bytes(range(30)))
    again = parse_crypto(build_crypto(7, key))
    assert again is not None and (again.tag, again.key) == (7, key)


OFFER = (
    "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n"
    "m=audio 4000 RTP/SAVP 8 0 101\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:0 PCMU/8000\r\n"
    "a=rtpmap:101 telephone-event/8000\r\n"
    f"a=crypto:3 F8_128_HMAC_SHA1_80 inline:{RFC_KEY}\r\n"
    f"a=crypto:4 AES_CM_128_HMAC_SHA1_32 inline:{RFC_KEY}\r\n"
    f"a=crypto:5 AES_CM_128_HMAC_SHA1_80 inline:{RFC_KEY}\r\n"
    "m=video 5000 RTP/SAVP 96\r\na=rtpmap:96 VP8/90000\r\n"
)


def test_answer_srtp_picks_first_usable_line_with_our_own_key() -> None:
    offer = parse_sdp(OFFER.encode())
    assert is_srtp_offer(offer)
    answer, keys = answer_srtp(offer, ["PCMU", "PCMA", "telephone-event"], "198.51.100.1", 30000)
    audio, video = answer.media
    assert (audio.proto, audio.port, video.proto, video.port) == ("RTP/SAVP", 30000, "RTP/SAVP", 0)
    lines = crypto_attributes(audio)
    assert len(lines) == 1 and lines[0].tag == 4
    assert lines[0].key == keys.ours and keys.ours.suite == "AES_CM_128_HMAC_SHA1_32"
    assert keys.peer.key_salt == base64.b64decode(RFC_KEY)
    assert keys.ours.key_salt != keys.peer.key_salt
    reparsed = parse_sdp(answer.to_bytes())  # serialises and parses back
    assert crypto_attributes(reparsed.media[0])[0].key == keys.ours
    plain = parse_sdp(OFFER.replace("RTP/SAVP", "RTP/AVP").split("a=crypto")[0].encode())
    assert not is_srtp_offer(plain)


def test_answer_srtp_without_usable_crypto_is_488() -> None:
    offer = parse_sdp(OFFER.replace("AES_CM_128", "F8_128").encode())  # none usable
    with pytest.raises(SipError) as exc:
        answer_srtp(offer, ["PCMU"], "198.51.100.1", 30000)
    assert exc.value.status == 488


def test_offer_and_answer_agree_on_keys_both_ways() -> None:
    base = parse_sdp(
        b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n"
        b"m=audio 4000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
    )
    offer, offered = offer_crypto(base)
    assert offer.media[0].proto == "RTP/SAVP" and sorted(offered) == [1, 2]
    answer, answerer_keys = answer_srtp(parse_sdp(offer.to_bytes()), ["PCMU"], "192.0.2.9", 6000)
    offerer_keys = accept_answer(parse_sdp(answer.to_bytes()), offered)
    assert offerer_keys is not None
    assert offerer_keys.ours == answerer_keys.peer and offerer_keys.peer == answerer_keys.ours
    best_effort, _ = offer_crypto(base, best_effort=True)
    assert best_effort.media[0].proto == "RTP/AVP" and is_srtp_offer(best_effort)
    assert accept_answer(base, offered) is None  # plain answer to a best-effort offer
    forged = parse_sdp(answer.to_bytes().replace(b"crypto:1 ", b"crypto:9 "))
    with pytest.raises(SipError) as exc:
        accept_answer(forged, offered)
    assert exc.value.status == 488


# ---------------------------------------------------------------- libsrtp wrapper


@pytest.mark.parametrize("suite", ["AES_CM_128_HMAC_SHA1_80", "AES_CM_128_HMAC_SHA1_32"])
def test_srtp_leg_round_trip_tamper_and_replay(suite: str) -> None:
    a_key, b_key = SrtpKey(suite, bytes(30)), SrtpKey(suite, bytes(range(30)))
    alice, bob = SrtpLeg(inbound=b_key, outbound=a_key), SrtpLeg(inbound=a_key, outbound=b_key)
    packet = rtp(1, b"\xff" * 160)
    wire = alice.protect(packet)
    assert wire is not None and wire != packet
    assert len(wire) == len(packet) + (10 if suite.endswith("80") else 4)
    assert bob.unprotect(wire) == packet
    assert bob.unprotect(wire) is None and bob.stats.replays == 1
    second = alice.protect(rtp(2, b"\x7f" * 160))
    assert second is not None
    tampered = second[:-1] + bytes([second[-1] ^ 1])
    assert bob.unprotect(tampered) is None and bob.stats.auth_failures == 1
    # RTCP: an RR, protected and back (SRTCP tags are 80 bits for both suites).
    rr = struct.pack("!BBHI", 0x80, 201, 1, 0x11223344)
    srtcp = alice.protect_rtcp(rr)
    assert srtcp is not None and len(srtcp) == len(rr) + 4 + 10
    assert bob.unprotect_rtcp(srtcp) == rr
    assert bob.unprotect_rtcp(srtcp[:-1] + b"\x00") is None
    assert bob.stats.rtcp_auth_failures + bob.stats.rtcp_replays == 1
    assert "key" not in repr(alice).lower() or "salt" not in repr(alice)


# ---------------------------------------------------------------- relay


def run(test: Coroutine[Any, Any, None], timeout: float = 10.0) -> None:
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        runner.run(asyncio.wait_for(test, timeout))


def _socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    return sock


async def _recv(sock: socket.socket, timeout: float = 2.0) -> bytes:
    loop = asyncio.get_running_loop()
    return await asyncio.wait_for(loop.sock_recv(sock, 4096), timeout)


def test_relay_unprotects_srtp_leg_forwards_plain_and_taps_plaintext() -> None:
    async def scenario() -> None:
        relay = MediaRelay("127.0.0.1", PortAllocator(*PORTS))
        trunk, phone = _socket(), _socket()  # the SRTP trunk and the plain-RTP phone
        try:
            fmt = MediaFormat(0, "PCMU", 101)
            a = relay.open_leg("c1-a", fmt, trunk.getsockname())
            b = relay.open_leg("c1-b", fmt, phone.getsockname())
            tap = BoundedTap()
            a.tap = b.tap = tap
            trunk_key = SrtpKey("AES_CM_128_HMAC_SHA1_80", bytes(range(30)))
            our_key = SrtpKey("AES_CM_128_HMAC_SHA1_80", bytes(range(100, 130)))
            a.srtp = SrtpLeg(inbound=trunk_key, outbound=our_key)
            relay.bridge(a, b)
            to_trunk = peer_session(trunk_key, outbound=True)
            from_trunk = peer_session(our_key, outbound=False)

            # Trunk -> relay (SRTP) -> phone (plain), and the tap sees plaintext.
            voice = bytes(range(160))
            trunk.sendto(to_trunk.protect(rtp(1, voice)), a.address)
            plain = parse_rtp(await _recv(phone))
            assert plain.payload == voice
            # A bad tag: dropped and counted, not forwarded, not tapped.
            good = to_trunk.protect(rtp(2, b"\x55" * 160))
            trunk.sendto(good[:-1] + bytes([good[-1] ^ 0x80]), a.address)
            with pytest.raises(TimeoutError):
                await _recv(phone, timeout=0.3)
            assert a.counters.dropped_srtp == 1 and a.srtp.stats.auth_failures == 1
            tapped = tap.drain("c1-a")
            assert [p.payload for p in tapped] == [voice]

            # Phone (plain) -> relay -> trunk (SRTP): the trunk's libsrtp authenticates it.
            reply = bytes(reversed(range(160)))
            phone.sendto(rtp(7, reply, ssrc=0x99), b.address)
            wire = await _recv(trunk)
            assert reply not in wire  # encrypted on the wire
            assert parse_rtp(from_trunk.unprotect(wire)).payload == reply
            assert [p.payload for p in tap.drain("c1-b")] == [reply]
            # Announcements injected toward the SRTP leg are protected too.
            assert a.inject(b"\x7f" * 160, ssrc=5, seq=1, ts=0)
            assert parse_rtp(from_trunk.unprotect(await _recv(trunk))).payload == b"\x7f" * 160
            assert (a.counters.forwarded, b.counters.forwarded) == (1, 1)
        finally:
            relay.close()
            trunk.close()
            phone.close()

    run(scenario())


def test_relay_both_legs_srtp_with_their_own_keys() -> None:
    async def scenario() -> None:
        relay = MediaRelay("127.0.0.1", PortAllocator(*PORTS))
        trunk, phone = _socket(), _socket()
        try:
            fmt = MediaFormat(0, "PCMU", 101)
            a = relay.open_leg("c2-a", fmt, trunk.getsockname())
            b = relay.open_leg("c2-b", fmt, phone.getsockname())
            keys = [SrtpKey("AES_CM_128_HMAC_SHA1_32", bytes([i]) * 30) for i in range(4)]
            a.srtp = SrtpLeg(inbound=keys[0], outbound=keys[1])
            b.srtp = SrtpLeg(inbound=keys[2], outbound=keys[3])
            relay.bridge(a, b)
            voice = b"\x01\x02" * 80
            trunk.sendto(peer_session(keys[0], True).protect(rtp(1, voice)), a.address)
            wire = await _recv(phone)
            assert parse_rtp(peer_session(keys[3], False).unprotect(wire)).payload == voice
            # The phone's key is not the trunk's: a packet under the wrong key is refused.
            phone.sendto(peer_session(keys[0], True).protect(rtp(2, voice)), b.address)
            with pytest.raises(TimeoutError):
                await _recv(trunk, timeout=0.3)
            assert b.counters.dropped_srtp == 1
        finally:
            relay.close()
            trunk.close()
            phone.close()

    run(scenario())
