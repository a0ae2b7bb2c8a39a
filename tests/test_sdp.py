"""Tests for b2bua.sdp: parsing, round trips, anchoring and offer/answer.

Named examples are from RFC 4317 ("SDP Offer/Answer Examples", Johnston & Sparks, 2005)
and the SDP body of RFC 4475 section 3.1.1.10 (sdp01, shipped in tests/data/rfc4475).
RFC 4317 notes that its s= lines hold a single space; they are kept that way here.
"""

from __future__ import annotations

from collections.abc import Callable
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path

import pytest

# pyVoIP.SIP imported first hits a circular import inside pyVoIP; its package first works.
import pyVoIP.VoIP  # noqa: F401
from hypothesis import given, settings
from hypothesis import strategies as st
from pyVoIP.SIP import SIPMessage

from b2bua.errors import SipError
from b2bua.sdp import (
    Codec,
    Connection,
    MediaDescription,
    Origin,
    Rtcp,
    SessionDescription,
    anchor,
    answer,
    direction,
    find_format,
    fmtp,
    offer,
    parse_sdp,
    ptime,
    rtcp,
    rtpmap,
    with_direction,
)


def crlf(text: str) -> bytes:
    return text.strip("\n").replace("\n", "\r\n").encode() + b"\r\n"


# RFC 4317 section 2.1, Audio and Video 1: the offer.
RFC4317_2_1_OFFER = crlf("""
v=0
o=alice 2890844526 2890844526 IN IP4 host.atlanta.example.com
s= \n\
c=IN IP4 host.atlanta.example.com
t=0 0
m=audio 49170 RTP/AVP 0 8 97
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:97 iLBC/8000
m=video 51372 RTP/AVP 31 32
a=rtpmap:31 H261/90000
a=rtpmap:32 MPV/90000
""")

# RFC 4317 section 2.6, Audio Only 1: two audio streams, Bob takes the second.
RFC4317_2_6_OFFER = crlf("""
v=0
o=alice 2890844526 2890844526 IN IP4 host.atlanta.example.com
s= \n\
c=IN IP4 host.atlanta.example.com
t=0 0
m=audio 49170 RTP/AVP 0
a=rtpmap:0 PCMU/8000
m=audio 51372 RTP/AVP 97 101
a=rtpmap:97 iLBC/8000
a=rtpmap:101 telephone-event/8000
""")
RFC4317_2_6_ANSWER = crlf("""
v=0
o=bob 2808844564 2808844564 IN IP4 host.biloxi.example.com
s= \n\
c=IN IP4 host.biloxi.example.com
t=0 0
m=audio 0 RTP/AVP 0
a=rtpmap:0 PCMU/8000
m=audio 49170 RTP/AVP 97 101
a=rtpmap:97 iLBC/8000
a=rtpmap:101 telephone-event/8000
""")

# RFC 4317 section 2.8, Audio and Video 6: the answer has a media-level c= line.
RFC4317_2_8_ANSWER = crlf("""
v=0
o=bob 2808844564 2808844564 IN IP4 host.biloxi.example.com
s= \n\
c=IN IP4 host.biloxi.example.com
t=0 0
m=audio 49174 RTP/AVP 0
a=rtpmap:0 PCMU/8000
m=video 49172 RTP/AVP 32
c=IN IP4 otherhost.biloxi.example.com
a=rtpmap:32 MPV/90000
""")

# RFC 4317 section 3.2, Hold with Two Streams: Bob's second offer holds the audio.
RFC4317_3_2_SECOND_OFFER = crlf("""
v=0
o=bob 2808844564 2808844565 IN IP4 host.biloxi.example.com
s= \n\
c=IN IP4 host.biloxi.example.com
t=0 0
m=audio 49172 RTP/AVP 97
a=rtpmap:97 iLBC/8000
a=sendonly
m=audio 49174 RTP/AVP 98
a=rtpmap:98 telephone-event/8000
a=recvonly
""")

# A desk-phone style offer: IPv6, rtcp (RFC 3605), ptime, fmtp, unknown lines and
# attributes, a session-level direction.
PHONE_OFFER_IP6 = crlf("""
v=0
o=- 1700000000 1700000001 IN IP6 2001:db8::10
s=Phone
i=desk phone
c=IN IP6 2001:db8::10
b=AS:84
t=0 0
a=sendonly
a=x-vendor:keep me
m=audio 16384 RTP/AVP 8 0 101 13
b=TIAS:64000
a=rtpmap:8 PCMA/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-16
a=ptime:20
a=rtcp:16385 IN IP6 2001:db8::10
a=candidate:1 1 UDP 2130706431 2001:db8::10 16384 typ host
a=x-unknown
""")


def sdp01_body() -> bytes:
    raw = (Path(__file__).parent / "data" / "rfc4475" / "sdp01.dat").read_bytes()
    return raw.split(b"\r\n\r\n", 1)[1]


# --- parsing -------------------------------------------------------------------------


def test_rfc4317_2_1_offer_fields() -> None:
    sdp = parse_sdp(RFC4317_2_1_OFFER)
    assert sdp.origin == Origin(
        "alice", "2890844526", 2890844526, "IN", "IP4", "host.atlanta.example.com"
    )
    assert sdp.session_name == " "
    assert sdp.connection == Connection("IN", "IP4", "host.atlanta.example.com")
    assert sdp.other_lines == (("t", "0 0"),)
    audio, video = sdp.media
    assert (audio.media, audio.port, audio.proto, audio.formats) == (
        "audio",
        49170,
        "RTP/AVP",
        ("0", "8", "97"),
    )
    assert rtpmap(audio) == {
        0: Codec("PCMU", 8000),
        8: Codec("PCMA", 8000),
        97: Codec("iLBC", 8000),
    }
    assert rtpmap(video) == {31: Codec("H261", 90000), 32: Codec("MPV", 90000)}
    assert direction(audio, sdp) == "sendrecv"


@pytest.mark.parametrize(
    "body",
    [
        RFC4317_2_1_OFFER,
        RFC4317_2_6_OFFER,
        RFC4317_2_6_ANSWER,
        RFC4317_2_8_ANSWER,
        RFC4317_3_2_SECOND_OFFER,
        PHONE_OFFER_IP6,
    ],
)
def test_named_examples_round_trip_byte_exact(body: bytes) -> None:
    assert parse_sdp(body).to_bytes() == body


def test_lf_only_line_ends_are_accepted_and_written_as_crlf() -> None:
    lf = RFC4317_2_1_OFFER.replace(b"\r\n", b"\n")
    assert parse_sdp(lf) == parse_sdp(RFC4317_2_1_OFFER)
    assert parse_sdp(lf).to_bytes() == RFC4317_2_1_OFFER


def test_rfc4475_sdp01_body_parses_and_static_types_default() -> None:
    sdp = parse_sdp(sdp01_body())
    audio, video = sdp.media
    # Payload 0 has no rtpmap line: RFC 3551 static meaning. 12 (QCELP) is unknown here.
    assert rtpmap(audio) == {0: Codec("PCMU", 8000)}
    # "a=rtpmap:31 LPC" lacks the clock rate: refused only when someone interprets it.
    with pytest.raises(SipError) as info:
        rtpmap(video)
    assert info.value.status == 488


def test_phone_offer_ip6_helpers() -> None:
    sdp = parse_sdp(PHONE_OFFER_IP6)
    (audio,) = sdp.media
    assert sdp.connection == Connection("IN", "IP6", "2001:db8::10")
    assert rtpmap(audio) == {
        8: Codec("PCMA", 8000),
        0: Codec("PCMU", 8000),
        101: Codec("telephone-event", 8000),
        13: Codec("CN", 8000),
    }
    assert fmtp(audio) == {101: "0-16"}
    assert ptime(audio) == 20.0
    assert rtcp(audio) == Rtcp(16385, Connection("IN", "IP6", "2001:db8::10"))
    assert find_format(audio, "TELEPHONE-EVENT") == 101
    assert find_format(audio, "opus") is None
    # No media-level direction: the session-level a=sendonly applies.
    assert direction(audio, sdp) == "sendonly"
    assert direction(audio) == "sendrecv"
    assert audio.attribute("x-unknown") == ""
    assert sdp.attribute("x-vendor") == "keep me"
    assert audio.other_lines == (("b", "TIAS:64000"),)
    assert sdp.other_lines == (("i", "desk phone"), ("b", "AS:84"), ("t", "0 0"))


def test_helpers_absent_attributes() -> None:
    audio = parse_sdp(RFC4317_2_1_OFFER).media[0]
    assert ptime(audio) is None
    assert rtcp(audio) is None
    assert fmtp(audio) == {}


def test_with_direction_replaces_in_place_and_appends() -> None:
    sdp = parse_sdp(RFC4317_3_2_SECOND_OFFER)
    held = sdp.media[0]
    resumed = with_direction(held, "sendrecv")
    assert resumed.attributes == (("rtpmap", "97 iLBC/8000"), ("sendrecv", None))
    plain = parse_sdp(RFC4317_2_1_OFFER).media[0]
    assert with_direction(plain, "inactive").attributes[-1] == ("inactive", None)
    assert direction(with_direction(plain, "inactive")) == "inactive"


BASE = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n"


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"", 400),
        (b"\xff\xfe garbage", 400),
        (b"v=1\r\n", 400),
        (b"hello world\r\n", 400),
        (b"v=0\r\ns=-\r\n", 400),  # no o=
        ((BASE + "o=- 1 1 IN IP4 192.0.2.1\r\n").encode(), 400),
        ((BASE + "c=IN IP4 192.0.2.2\r\n").encode(), 400),
        ((BASE + "a=bad name\r\n").encode(), 400),
        ((BASE + "a=sendrecv:yes\r\n").encode(), 400),
        ((BASE + "m=audio 5004 RTP/AVP 0\r\no=x\r\n").encode(), 400),
        ((BASE + "m=audio 65536 RTP/AVP 0\r\n").encode(), 488),
        ((BASE + "m=audio 99999999999 RTP/AVP 0\r\n").encode(), 488),
        ((BASE + "m=audio five RTP/AVP 0\r\n").encode(), 488),
        ((BASE + "m=audio 5004 RTP/AVP\r\n").encode(), 488),
        ((BASE + "m=audio 5004 RTP/AVP 0 x\r\n").encode(), 488),
        ((BASE + "m=audio 5004 RTP/AVP 128\r\n").encode(), 488),
        ((BASE + "m=audio 5004/0 RTP/AVP 0\r\n").encode(), 488),
        ((BASE + "m=audio  5004 RTP/AVP 0\r\n").encode(), 488),
        ((BASE + "m=audio 5004 RTP/AVP 0\r\na=sendonly\r\na=recvonly\r\n").encode(), 488),
        (BASE.replace("c=IN IP4 192.0.2.1", "c=IN IP4 192.168.0.256").encode(), 488),
        (BASE.replace("c=IN IP4 192.0.2.1", "c=IN IP4 bad_host!").encode(), 488),
        (BASE.replace("c=IN IP4 192.0.2.1", "c=IN IP4 2001:db8::1").encode(), 488),
        (BASE.replace("c=IN IP4 192.0.2.1", "c=IN IP6 192.0.2.1").encode(), 488),
        (BASE.replace("c=IN IP4 192.0.2.1", "c=IN IP4 224.2.1.1/127").encode(), 488),
        (BASE.replace("c=IN IP4 192.0.2.1", "c=IN IP4 224.2.1.1").encode(), 488),
        (BASE.replace("c=IN IP4 192.0.2.1", "c=ATM NSAP 47.0005").encode(), 488),
        (BASE.replace("c=IN IP4 192.0.2.1", "c=IN IP4 fe80::1%eth0").encode(), 488),
        (BASE.replace("o=- 1 1", "o=- one 1").encode(), 488),
        (BASE.replace("o=- 1 1", "o=- 1").encode(), 488),
        # A stream with a port but no address anywhere.
        (b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nt=0 0\r\nm=audio 5004 RTP/AVP 0\r\n", 488),
    ],
)
def test_bad_input_raises_sip_error_with_status(body: bytes, status: int) -> None:
    with pytest.raises(SipError) as info:
        parse_sdp(body)
    assert info.value.status == status


@pytest.mark.parametrize(
    ("attribute", "helper"),
    [
        ("a=rtpmap:0 PCMU", rtpmap),
        ("a=rtpmap:200 X/8000", rtpmap),
        ("a=rtpmap:96 X/0", rtpmap),
        ("a=fmtp:abc 0-15", fmtp),
        ("a=ptime:fast", ptime),
        ("a=ptime:0", ptime),
        ("a=rtcp:70000", rtcp),
        ("a=rtcp:5005 IN IP4 300.1.1.1", rtcp),
    ],
)
def test_bad_interpreted_attributes_are_488(
    attribute: str, helper: Callable[[MediaDescription], object]
) -> None:
    body = (BASE + "m=audio 5004 RTP/AVP 0 96\r\n" + attribute + "\r\n").encode()
    media = parse_sdp(body).media[0]
    with pytest.raises(SipError) as info:
        helper(media)
    assert info.value.status == 488


def test_hostname_and_port_zero_without_connection_are_accepted() -> None:
    body = (
        b"v=0\r\no=- 1 1 IN IP4 pbx.example.org\r\ns=-\r\nt=0 0\r\n"
        b"m=video 0 RTP/AVP 31\r\n"
        b"m=image 5006 udptl t38\r\nc=IN IP4 gw-1.example.org\r\n"
    )
    sdp = parse_sdp(body)
    assert sdp.media[0].port == 0
    assert sdp.media[1].formats == ("t38",)  # non-RTP formats need not be numbers
    assert sdp.to_bytes() == body


# --- anchoring -----------------------------------------------------------------------


def test_anchor_rewrites_every_address_and_port() -> None:
    sdp = parse_sdp(RFC4317_2_8_ANSWER)
    anchored = anchor(sdp, "203.0.113.5", [30000, 30002])
    assert anchored.connection == Connection("IN", "IP4", "203.0.113.5")
    assert [m.port for m in anchored.media] == [30000, 30002]
    assert anchored.media[0].connection is None  # had none: session level applies
    assert anchored.media[1].connection == Connection("IN", "IP4", "203.0.113.5")
    assert anchored.origin.address == "203.0.113.5"
    assert anchored.origin.session_version == sdp.origin.session_version + 1
    assert anchored.origin.session_id == sdp.origin.session_id
    text = anchored.to_bytes().decode()
    assert "biloxi" not in text
    # Everything else is untouched.
    assert anchored.media[1].attributes == sdp.media[1].attributes
    assert anchored.other_lines == sdp.other_lines


def test_anchor_keeps_rejected_streams_and_rewrites_rtcp_and_drops_ice() -> None:
    sdp = parse_sdp(RFC4317_2_6_ANSWER)
    anchored = anchor(sdp, "198.51.100.7", [40000, 40002], session_version_bump=False)
    assert [m.port for m in anchored.media] == [0, 40002]
    assert anchored.origin.session_version == sdp.origin.session_version

    phone = parse_sdp(PHONE_OFFER_IP6)
    moved = anchor(phone, "2001:db8::99", [20000])
    (audio,) = moved.media
    assert moved.connection == Connection("IN", "IP6", "2001:db8::99")
    assert rtcp(audio) == Rtcp(20001)
    assert audio.attribute("candidate") is None
    assert audio.attribute("x-unknown") == ""  # unknown attributes survive
    assert [name for name, _ in audio.attributes] == [
        "rtpmap",
        "rtpmap",
        "fmtp",
        "ptime",
        "rtcp",
        "x-unknown",
    ]
    assert parse_sdp(moved.to_bytes()) == moved
    # IPv6 relay address for an IPv4 offer: the address type follows the address.
    assert anchor(sdp, "::1", [1, 2]).connection == Connection("IN", "IP6", "::1")


def test_anchor_rtcp_removed_for_rejected_stream_and_own_origin() -> None:
    body = (BASE + "m=audio 0 RTP/AVP 0\r\na=rtcp:5005\r\na=x\r\n").encode()
    own = Origin("b2bua", "42", 7, "IN", "IP4", "192.0.2.9")
    anchored = anchor(parse_sdp(body), "192.0.2.9", [0], origin=own)
    assert anchored.media[0].attributes == (("x", None),)
    assert anchored.origin == own


def test_anchor_argument_errors() -> None:
    sdp = parse_sdp(RFC4317_2_1_OFFER)
    with pytest.raises(ValueError, match="ports"):
        anchor(sdp, "192.0.2.1", [1])
    with pytest.raises(ValueError):
        anchor(sdp, "relay.example.org", [1, 2])


# --- offer/answer ----------------------------------------------------------------------


def test_answer_rfc4317_2_1_picks_pcmu_and_rejects_video() -> None:
    ans = answer(
        parse_sdp(RFC4317_2_1_OFFER),
        ["PCMU", "PCMA", "telephone-event"],
        "192.0.2.50",
        20000,
        session_id=99,
    )
    audio, video = ans.media
    assert (audio.port, audio.formats) == (20000, ("0",))
    assert rtpmap(audio) == {0: Codec("PCMU", 8000)}
    assert direction(audio) == "sendrecv"
    assert ptime(audio) == 20
    assert (video.media, video.port, video.formats) == ("video", 0, ("31", "32"))
    assert ans.connection == Connection("IN", "IP4", "192.0.2.50")
    assert ans.origin == Origin("-", "99", 0, "IN", "IP4", "192.0.2.50")
    assert parse_sdp(ans.to_bytes()) == ans


def test_answer_uses_offer_order_not_ours() -> None:
    # RFC 3264 section 6.1: the offerer's order is its preference.
    body = (BASE + "m=audio 5004 RTP/AVP 8 0\r\n").encode()
    ans = answer(parse_sdp(body), ["PCMU", "PCMA"], "192.0.2.50", 20000)
    assert ans.media[0].formats == ("8",)


def test_answer_rfc4317_2_6_like_bob_when_only_ilbc_supported() -> None:
    offer_sdp = parse_sdp(RFC4317_2_6_OFFER)
    ans = answer(offer_sdp, ["iLBC", "telephone-event"], "192.0.2.50", 49170)
    bob = parse_sdp(RFC4317_2_6_ANSWER)
    # Same stream structure as Bob's answer in the RFC: first rejected, second taken.
    assert [(m.port, m.formats) for m in ans.media] == [(0, ("0",)), (49170, ("97", "101"))]
    assert rtpmap(ans.media[1]) == rtpmap(bob.media[1])
    assert fmtp(ans.media[1]) == {101: "0-15"}  # RFC 4733 default when not offered


def test_answer_rfc4317_2_6_pcmu_takes_first_stream_only() -> None:
    ans = answer(parse_sdp(RFC4317_2_6_OFFER), ["PCMU"], "192.0.2.50", 20000)
    assert [m.port for m in ans.media] == [20000, 0]


def test_answer_mirrors_hold_rfc4317_3_2() -> None:
    ans = answer(parse_sdp(RFC4317_3_2_SECOND_OFFER), ["iLBC"], "192.0.2.50", 20000)
    assert direction(ans.media[0]) == "recvonly"
    # Only one audio stream is relayed: the separate telephone-event stream is refused.
    assert ans.media[1].port == 0


def test_answer_phone_offer_telephone_event_fmtp_rtcp_and_session_direction() -> None:
    ans = answer(parse_sdp(PHONE_OFFER_IP6), ["PCMU", "telephone-event"], "2001:db8::1", 20000)
    (audio,) = ans.media
    assert audio.formats == ("0", "101")  # PCMA offered first but not supported
    assert fmtp(audio) == {101: "0-16"}
    assert rtcp(audio) == Rtcp(20001)
    assert direction(audio) == "recvonly"  # session-level sendonly mirrored
    assert ans.connection == Connection("IN", "IP6", "2001:db8::1")


def test_answer_without_telephone_event_support_omits_it() -> None:
    ans = answer(parse_sdp(PHONE_OFFER_IP6), ["PCMA"], "192.0.2.50", 20000)
    assert ans.media[0].formats == ("8",)


def test_answer_no_common_codec_is_488() -> None:
    with pytest.raises(SipError) as info:
        answer(parse_sdp(RFC4317_2_1_OFFER), ["opus"], "192.0.2.50", 20000)
    assert info.value.status == 488
    # telephone-event alone is not a codec.
    body = (BASE + "m=audio 5004 RTP/AVP 101\r\na=rtpmap:101 telephone-event/8000\r\n").encode()
    with pytest.raises(SipError) as info:
        answer(parse_sdp(body), ["PCMU", "telephone-event"], "192.0.2.50", 20000)
    assert info.value.status == 488


def test_answer_refuses_srtp_profile() -> None:
    body = (BASE + "m=audio 5004 RTP/SAVP 0\r\n").encode()
    with pytest.raises(SipError) as info:
        answer(parse_sdp(body), ["PCMU"], "192.0.2.50", 20000)
    assert info.value.status == 488


def test_offer_builder_is_answerable() -> None:
    ours = offer("192.0.2.50", 20000, session_id=5, session_version=1)
    (audio,) = ours.media
    assert audio.formats == ("0", "8", "101")
    assert fmtp(audio) == {101: "0-15"}
    assert parse_sdp(ours.to_bytes()) == ours
    ans = answer(ours, ["PCMA", "telephone-event"], "192.0.2.60", 30000)
    assert ans.media[0].formats == ("8", "101")
    with pytest.raises(ValueError, match="static"):
        offer("192.0.2.50", 20000, codecs=["opus"])


def test_serializer_refuses_line_injection() -> None:
    sdp = parse_sdp(RFC4317_2_1_OFFER)
    evil = SessionDescription(sdp.origin, "x\r\nm=audio 1 RTP/AVP 0")
    with pytest.raises(ValueError, match="CR"):
        evil.to_bytes()


# --- property tests --------------------------------------------------------------------

TOKENS = st.from_regex(r"[a-zA-Z0-9][a-zA-Z0-9\-.+_]{0,9}", fullmatch=True)
TEXT = st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\r\n\0"), max_size=20)


def _unicast(address: IPv4Address | IPv6Address) -> bool:
    return not address.is_multicast


def _typed(address: IPv4Address | IPv6Address) -> tuple[str, str]:
    return (f"IP{address.version}", address.compressed)


ADDRESSES: st.SearchStrategy[tuple[str, str]] = st.one_of(
    st.ip_addresses().filter(_unicast).map(_typed),
    st.sampled_from([("IP4", "host.example.com"), ("IP6", "v6.example.net")]),
)
CONNECTIONS = ADDRESSES.map(lambda a: Connection("IN", a[0], a[1]))
ATTRIBUTES = st.tuples(
    TOKENS.filter(lambda t: t not in ("sendrecv", "sendonly", "recvonly", "inactive")),
    st.none() | TEXT,
)
SESSION_OTHER = st.tuples(st.sampled_from("iuepbtrzkxy"), TEXT)
MEDIA_OTHER = st.tuples(st.sampled_from("ibkxy"), TEXT)


@st.composite
def media_descriptions(draw: st.DrawFn) -> MediaDescription:
    rtp = draw(st.booleans())
    fmt = st.integers(0, 127).map(str) if rtp else TOKENS
    return MediaDescription(
        media=draw(st.sampled_from(["audio", "video", "image", "text"])),
        port=draw(st.integers(0, 65535)),
        port_count=draw(st.none() | st.integers(1, 65535)),
        proto="RTP/AVP" if rtp else draw(st.sampled_from(["udptl", "TCP/MSRP"])),
        formats=tuple(draw(st.lists(fmt, min_size=1, max_size=5))),
        connection=draw(CONNECTIONS),
        attributes=tuple(draw(st.lists(ATTRIBUTES, max_size=5))),
        # Serialization puts i= first (RFC order): generate it that way for equality.
        other_lines=tuple(sorted(draw(st.lists(MEDIA_OTHER, max_size=3)), key=_i_first)),
    )


def _i_first(line: tuple[str, str]) -> bool:
    return line[0] != "i"


@st.composite
def session_descriptions(draw: st.DrawFn) -> SessionDescription:
    addrtype, address = draw(ADDRESSES)
    other = draw(st.lists(SESSION_OTHER, max_size=5))
    return SessionDescription(
        origin=Origin(
            draw(TOKENS),
            str(draw(st.integers(0, 2**63))),
            draw(st.integers(0, 2**63)),
            "IN",
            addrtype,
            address,
        ),
        session_name=draw(TEXT),
        connection=draw(st.none() | CONNECTIONS),
        other_lines=tuple(sorted(other, key=lambda line: line[0] not in "iuep")),
        attributes=tuple(draw(st.lists(ATTRIBUTES, max_size=5))),
        media=tuple(draw(st.lists(media_descriptions(), max_size=4))),
    )


@settings(max_examples=100, deadline=None)
@given(session_descriptions())
def test_property_model_round_trip(sdp: SessionDescription) -> None:
    data = sdp.to_bytes()
    assert parse_sdp(data) == sdp
    assert parse_sdp(data).to_bytes() == data


def _status(call: Callable[[], object]) -> int | None:
    """Run `call`; the SipError status it raised, or None. Anything else propagates."""
    try:
        call()
    except SipError as exc:
        return exc.status
    return None


def _exercise(data: bytes) -> None:
    assert _status(lambda: parse_sdp(data)) in (None, 400, 488)
    if _status(lambda: parse_sdp(data)) is not None:
        return
    sdp = parse_sdp(data)
    assert parse_sdp(sdp.to_bytes()) == sdp
    for m in sdp.media:
        for helper in (rtpmap, fmtp, ptime, rtcp):
            assert _status(lambda h=helper, m=m: h(m)) in (None, 488)  # type: ignore[misc]
        direction(m, sdp)
    offered = ["PCMU", "PCMA", "telephone-event"]
    assert _status(lambda: answer(sdp, offered, "192.0.2.1", 20000)) in (None, 488)
    anchor(sdp, "192.0.2.1", [20000 + 2 * i for i in range(len(sdp.media))])


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_property_random_bytes_raise_only_sip_error(data: bytes) -> None:
    _exercise(data)


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from([RFC4317_2_1_OFFER, PHONE_OFFER_IP6, RFC4317_2_6_OFFER]),
    st.lists(st.tuples(st.integers(0, 10_000), st.binary(min_size=0, max_size=4)), max_size=4),
)
def test_property_mutated_examples_raise_only_sip_error(
    body: bytes, edits: list[tuple[int, bytes]]
) -> None:
    data = bytearray(body)
    for pos, replacement in edits:
        at = pos % (len(data) + 1)
        data[at : at + len(replacement)] = replacement
    _exercise(bytes(data))


# --- pyVoIP interoperability ------------------------------------------------------------

# The SDP pyVoIP 1.6.8 writes (SIPClient.gen_answer / gen_invite), as sent to us.
PYVOIP_OFFER = crlf("""
v=0
o=pyVoIP 5 7 IN IP4 127.0.0.3
s=pyVoIP 1.6.8
c=IN IP4 127.0.0.3
t=0 0
m=audio 10000 RTP/AVP 0 101
a=rtpmap:0 PCMU/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-15
a=ptime:20
a=maxptime:150
a=sendrecv
""")


def test_pyvoip_offer_round_trips_and_is_answered() -> None:
    sdp = parse_sdp(PYVOIP_OFFER)
    assert sdp.to_bytes() == PYVOIP_OFFER
    ans = answer(sdp, ["PCMA", "PCMU", "telephone-event"], "127.0.0.1", 20000)
    assert ans.media[0].formats == ("0", "101")


def test_pyvoip_parses_our_offer() -> None:
    body = offer("127.0.0.1", 20000, session_id=123, session_version=1).to_bytes()
    head = (
        "INVITE sip:1000@127.0.0.3:5070 SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKx\r\n"
        "From: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:1000@127.0.0.3>\r\nCall-ID: c\r\n"
        "CSeq: 1 INVITE\r\nContact: <sip:a@127.0.0.1>\r\nContent-Type: application/sdp\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    parsed = SIPMessage(head.encode() + body).body
    (audio,) = parsed["m"]
    assert (audio["port"], audio["methods"]) == (20000, ["0", "8", "101"])
    assert parsed["c"][0]["address"] == "127.0.0.1"
    assert parsed["a"]["ptime"] == "20"


def test_anchor_never_passes_sdes_keys_to_the_other_leg() -> None:
    offer_sdp = parse_sdp(
        b"v=0\r\no=a 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n"
        b"m=audio 4000 RTP/AVP 0\r\n"
        b"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz\r\n"
        b"a=sendrecv\r\n"
    )
    anchored = anchor(offer_sdp, "198.51.100.7", [20000])
    assert b"crypto" not in anchored.to_bytes()
    assert anchored.media[0].attributes == (("sendrecv", None),)
