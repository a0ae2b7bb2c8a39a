"""Unit tests of the SIP message layer: URIs, header values, framing, responses."""

from __future__ import annotations

import pytest

from b2bua.errors import SipError, SipParseError
from b2bua.headers import (
    Address,
    Headers,
    Via,
    canonical_name,
    parse_address,
    parse_address_list,
    parse_via_list,
)
from b2bua.message import (
    Request,
    Response,
    StreamFramingError,
    StreamParser,
    error_response,
    make_response,
    parse_message,
    reason_phrase,
)
from b2bua.uri import URI, parse_uri, uri_equal
from b2bua.validate import RequestRejectedError, check_request

INVITE = (
    b"INVITE sip:bob@example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK776asdhds;rport\r\n"
    b"Max-Forwards: 70\r\n"
    b'To: "Bob" <sip:bob@example.com>\r\n'
    b"From: Alice <sip:alice@example.org>;tag=1928301774\r\n"
    b"Call-ID: a84b4c76e66710@pc33.example.org\r\n"
    b"CSeq: 314159 INVITE\r\n"
    b"Contact: <sip:alice@192.0.2.1>\r\n"
    b"Record-Route: <sip:p1.example.com;lr>, <sip:p2.example.com;lr>\r\n"
    b"Content-Type: application/sdp\r\n"
    b"Content-Length: 4\r\n"
    b"\r\n"
    b"v=0\n"
)


def invite() -> Request:
    msg = parse_message(INVITE)
    assert isinstance(msg, Request)
    return msg


# --- URIs -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "sip:alice@atlanta.com",
        "sip:alice:secretword@atlanta.com;transport=tcp",
        "sips:alice@atlanta.com?subject=project%20x&priority=urgent",
        "sip:+1-212-555-1212:1234@gateway.com;user=phone",
        "sips:1212@gateway.com",
        "sip:alice@192.0.2.4",
        "sip:atlanta.com;method=REGISTER?to=alice%40atlanta.com",
        "sip:alice;day=tuesday@atlanta.com",
        "sip:[2001:db8::1]:5070;lr",
        "tel:+1-201-555-0123",
        "urn:service:sos",
    ],
)
def test_uri_round_trip(text: str) -> None:
    assert str(parse_uri(text)) == text


def test_uri_components() -> None:
    u = parse_uri("SIP:alice:pw@Atlanta.com:5061;transport=TCP;lr?x=y")
    assert u == URI(
        "sip",
        "alice",
        "pw",
        "Atlanta.com",
        5061,
        (("transport", "TCP"), ("lr", None)),
        (("x", "y"),),
    )
    assert u.param("Transport") == "TCP"
    assert u.has_param("LR")
    assert u.param("lr") is None
    assert u.with_params(transport="udp", maddr="192.0.2.9").params == (
        ("transport", "udp"),
        ("lr", None),
        ("maddr", "192.0.2.9"),
    )
    assert u.without_param("lr").params == (("transport", "TCP"),)
    tel = parse_uri("tel:+49-30-1234")
    assert tel.opaque == "+49-30-1234"
    assert not tel.is_sip


@pytest.mark.parametrize(
    "text",
    [
        "",
        "sip:",
        "sip:user@",
        "sip:a b@c",
        "sip:host:99999",
        "sip:host:-1",
        "<sip:x@y>",
        "sip:x@y;=v",
        "sip:x@y?h",
        "1sip:x",
        "sip:x@300.1.1.1",
        "sip:x@host_name",
        "mailto:a b",
    ],
)
def test_uri_rejects(text: str) -> None:
    with pytest.raises(SipParseError):
        parse_uri(text)


def test_uri_equal_rfc3261_19_1_4() -> None:
    # Equivalent pairs from RFC 3261 19.1.4.
    for a, b in [
        ("sip:%61lice@atlanta.com;transport=TCP", "sip:alice@AtLanTa.CoM;Transport=tcp"),
        ("sip:carol@chicago.com", "sip:carol@chicago.com;newparam=5"),
        ("sip:carol@chicago.com;security=on", "sip:carol@chicago.com;newparam=5"),
        (
            "sip:biloxi.com;transport=tcp;method=REGISTER?to=sip:bob%40biloxi.com",
            "sip:biloxi.com;method=REGISTER;transport=tcp?to=sip:bob%40biloxi.com",
        ),
        (
            "sip:alice@atlanta.com?subject=project%20x&priority=urgent",
            "sip:alice@atlanta.com?priority=urgent&subject=project%20x",
        ),
        ("sip:[2001:db8::1]", "sip:[2001:DB8:0::1]"),
    ]:
        assert uri_equal(parse_uri(a), parse_uri(b)), (a, b)
    # Non-equivalent pairs from the same section.
    for a, b in [
        ("SIP:ALICE@AtLanTa.CoM;Transport=udp", "sip:alice@AtLanTa.CoM;Transport=UDP"),
        ("sip:bob@biloxi.com", "sip:bob@biloxi.com:5060"),
        ("sip:bob@biloxi.com", "sip:bob@biloxi.com;transport=udp"),
        ("sip:bob@biloxi.com", "sip:bob@biloxi.com:6000;transport=tcp"),
        ("sip:carol@chicago.com", "sip:carol@chicago.com?Subject=next%20meeting"),
        ("sip:bob@phone21.boxesbybob.com", "sip:bob@192.0.2.4"),
        ("sip:carol@chicago.com;security=on", "sip:carol@chicago.com;security=off"),
        ("sip:alice@example.com", "sips:alice@example.com"),
    ]:
        assert not uri_equal(parse_uri(a), parse_uri(b)), (a, b)


# --- header values ----------------------------------------------------------------


def test_canonical_names() -> None:
    assert canonical_name("i") == "Call-ID"
    assert canonical_name("CALL-ID") == "Call-ID"
    assert canonical_name("cseq") == "CSeq"
    assert canonical_name("www-authenticate") == "WWW-Authenticate"
    assert canonical_name("V") == "Via"
    assert canonical_name("l") == "Content-Length"
    assert canonical_name("record-route") == "Record-Route"
    assert canonical_name("x-my-header") == "X-My-Header"


def test_address_forms() -> None:
    a = parse_address('"Alice \\"A\\"" <sip:alice@example.org;lr>;tag=abc;expires=60')
    assert a.display_name == 'Alice "A"'
    assert a.tag == "abc"
    assert a.param("EXPIRES") == "60"
    assert a.uri.param("lr") is None
    assert a.uri.has_param("lr")
    assert str(a) == '"Alice \\"A\\"" <sip:alice@example.org;lr>;tag=abc;expires=60'
    assert parse_address(str(a)) == a
    spec = parse_address("sip:bob@example.com;tag=x")  # addr-spec: ;tag is a header param
    assert spec.tag == "x"
    assert spec.uri.params == ()
    assert str(spec) == "<sip:bob@example.com>;tag=x"
    tokens = parse_address("Bob  Smith <sip:bob@example.com>")
    assert tokens.display_name == "Bob Smith"
    star = parse_address("*")
    assert star.wildcard
    assert str(star) == "*"
    assert a.with_param("tag", "new").tag == "new"
    assert a.without_param("tag").tag is None
    assert Address(URI("sip", host="h"), display_name="x\r\ny").__str__() == '"x  y" <sip:h>'
    quoted = parse_address('"a\\\\b" <sip:h>;q="0,5"')
    assert quoted.display_name == "a\\b"
    assert quoted.param("q") == '"0,5"'


@pytest.mark.parametrize(
    "text",
    [
        '"unterminated <sip:a@b>',
        "Bad,Name <sip:a@b>",
        "< sip:a@b>",
        "<sip:a@b>;",
        "<sip:a@b>;=x",
        "<sip:a@b>;t=",
        "sip:a@b?x=y",
        "<sip:a@b",
        "",
        "<sip:a@b> junk",
    ],
)
def test_address_rejects(text: str) -> None:
    with pytest.raises(SipParseError):
        parse_address(text)


def test_address_list_respects_quotes_and_brackets() -> None:
    items = parse_address_list('"Doe, J" <sip:a,1@b>, <sip:c@d>;q=0.5 ,sip:e@f')
    assert [str(i.uri) for i in items] == ["sip:a,1@b", "sip:c@d", "sip:e@f"]
    assert items[0].display_name == "Doe, J"
    assert items[1].param("q") == "0.5"
    with pytest.raises(SipParseError):
        parse_address_list("<sip:a@b>,,<sip:c@d>")


def test_via() -> None:
    vias = parse_via_list(
        "SIP / 2.0 / udp  [2001:db8::1] : 5062 ; branch=z9hG4bKx;rport;received=192.0.2.9,"
        " SIP/2.0/TCP host.example.com;branch=z9hG4bKy;ttl=16;maddr=224.2.0.1"
    )
    top = vias[0]
    assert (top.transport, top.host, top.port) == ("UDP", "[2001:db8::1]", 5062)
    assert top.branch == "z9hG4bKx"
    assert top.rport == ""
    assert top.received == "192.0.2.9"
    assert vias[1].rport is None
    assert vias[1].param("TTL") == "16"
    assert str(top) == "SIP/2.0/UDP [2001:db8::1]:5062;branch=z9hG4bKx;rport;received=192.0.2.9"
    assert top.with_param("rport", "5999").rport == "5999"
    assert str(Via("TCP", "h.example.com")) == "SIP/2.0/TCP h.example.com"
    for bad in [
        "SIP/2.0/UDP",
        "SIP/2.0 host",
        "SIP/2.0/UDP host;branch",
        "SIP/2.0/UDP h;ttl=999",
        "SIP/2.0/UDP h;received=nothost",
        "SIP/2.0/UDP h:70000",
        "SIP/2.0/UDP h junk",
    ]:
        with pytest.raises(SipParseError):
            parse_via_list(bad)


def test_headers_container() -> None:
    h = Headers.of(
        ("v", "SIP/2.0/UDP a;branch=z9hG4bK1, SIP/2.0/UDP b;branch=z9hG4bK2"),
        ("Route", "<sip:r1;lr>"),
        ("WWW-Authenticate", 'Digest realm="a", nonce="b"'),
        ("Supported", ""),
        ("route", "<sip:r2;lr>"),
    )
    assert h.get("VIA") == "SIP/2.0/UDP a;branch=z9hG4bK1"
    assert len(h.get_all("v")) == 2
    assert h.get_all("WWW-Authenticate") == ('Digest realm="a", nonce="b"',)
    assert h.get("Supported") == ""
    assert h.get_all("Supported") == ()
    assert h.get("Nope") is None
    assert h.get_all("Route") == ("<sip:r1;lr>", "<sip:r2;lr>")
    h2 = h.prepend("Route", "<sip:r0;lr>")
    assert h2.get_all("Route") == ("<sip:r0;lr>", "<sip:r1;lr>", "<sip:r2;lr>")
    assert h2.fields[1] == ("Route", "<sip:r0;lr>")
    h3 = h.set("route", "<sip:only>")
    assert h3.get_all("Route") == ("<sip:only>",)
    assert h3.fields[1] == ("Route", "<sip:only>")
    assert h.remove("ROUTE").get("Route") is None
    assert len(h.remove("route")) == 3
    assert h.add("X-A", "1").fields[-1] == ("X-A", "1")
    assert Headers().prepend("Via", "x").fields == (("Via", "x"),)
    assert list(Headers().set("X-Y", "1")) == [("X-Y", "1")]
    assert list(Headers().set("a", "1")) == [("Accept-Contact", "1")]  # compact form


# --- messages ---------------------------------------------------------------------


def test_request_accessors() -> None:
    req = invite()
    assert req.method == "INVITE"
    assert req.uri == parse_uri("sip:bob@example.com")
    assert req.call_id == "a84b4c76e66710@pc33.example.org"
    assert req.cseq == (314159, "INVITE")
    assert req.from_addr.tag == "1928301774"
    assert req.from_addr.display_name == "Alice"
    assert req.to_addr.tag is None
    assert req.branch == "z9hG4bK776asdhds"
    assert req.top_via.port == 5060
    assert req.max_forwards == 70
    assert req.contacts[0].uri.host == "192.0.2.1"
    assert len(req.addresses("Record-Route")) == 2
    assert req.body == b"v=0\n"
    assert not req.headers.has("Content-Length")  # framing lives in the body length
    out = req.to_bytes()
    assert out.endswith(b"Content-Length: 4\r\n\r\nv=0\n")
    assert parse_message(out) == req


def test_to_bytes_rewrites_content_length() -> None:
    req = Request(
        "OPTIONS", parse_uri("sip:a@b"), Headers.of(("Content-Length", "99"), ("X-Y", "1")), b"abc"
    )
    assert req.to_bytes() == b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 3\r\nX-Y: 1\r\n\r\nabc"


def test_framing_udp() -> None:
    # Extra octets after Content-Length are cut (RFC 3261 18.3).
    assert parse_message(INVITE + b"garbage").body == b"v=0\n"
    # No Content-Length on UDP: the body runs to the end of the datagram.
    no_cl = INVITE.replace(b"Content-Length: 4\r\n", b"")
    assert parse_message(no_cl + b"more").body == b"v=0\nmore"
    # Too short: 400.
    with pytest.raises(SipParseError):
        parse_message(INVITE[:-1])
    # Bare LF line ends, compact names and leading CRLFs are accepted.
    lf = b"\r\n\r\n" + INVITE.replace(b"\r\n", b"\n").replace(b"Call-ID:", b"i:")
    msg = parse_message(lf)
    assert msg.call_id == "a84b4c76e66710@pc33.example.org"


@pytest.mark.parametrize(
    ("old", "new", "status"),
    [
        (b"SIP/2.0\r\nVia", b"SIP/3.0\r\nVia", 505),
        (b"CSeq: 314159 INVITE", b"CSeq: 314159 BYE", 400),
        (b"CSeq: 314159 INVITE", b"CSeq: 2147483648 INVITE", 400),
        (b"Max-Forwards: 70", b"Max-Forwards: 256", 400),
        (b"Max-Forwards: 70", b"Max-Forwards: -1", 400),
        (b"Content-Length: 4", b"Content-Length: 4\r\nl: 4", 400),
        (b"Call-ID: a84b4c76e66710@pc33.example.org\r\n", b"", 400),
        (b"Call-ID: a84b4c76e66710@pc33.example.org", b"Call-ID: a b", 400),
        (b"INVITE sip:bob@example.com SIP", b"INVITE <sip:bob@example.com> SIP", 400),
        (b"Contact: <sip:alice@192.0.2.1>", b"Contact: *, <sip:a@b>", 400),
        (b"Contact: <sip:alice@192.0.2.1>", b"Contact: <sip:a@b>;expires=4294967296", 400),
        (b"Max-Forwards: 70", b"Expires: x", 400),
        (b"Max-Forwards: 70", b"Date: Sat, 13 Nov 2010 23:29:00 PST", 400),
        (b"Content-Type: application/sdp", b"Content-Type: sdp", 400),
        (b"Max-Forwards: 70", b"Broken header line", 400),
        (b"Max-Forwards: 70", b"Bad Name: x", 400),
        (b"INVITE sip", b"INV\x01TE sip", 400),
    ],
)
def test_parse_errors(old: bytes, new: bytes, status: int) -> None:
    data = INVITE.replace(old, new, 1)
    assert data != INVITE
    with pytest.raises(SipError) as info:
        parse_message(data)
    assert info.value.status == status


def test_response_parse_and_limits() -> None:
    resp = make_response(invite(), 180, to_tag="t1")
    again = parse_message(resp.to_bytes())
    assert again == resp
    assert isinstance(again, Response)
    for line in (b"SIP/2.0 99 Low", b"SIP/2.0 700 High", b"SIP/2.0 2000 X", b"SIP/2.0 abc X"):
        with pytest.raises(SipParseError):
            parse_message(resp.to_bytes().replace(b"SIP/2.0 180 Ringing", line))
    with pytest.raises(SipError) as info:
        parse_message(resp.to_bytes().replace(b"SIP/2.0 180", b"SIP/1.0 180"))
    assert info.value.status == 505
    for junk in (b"", b"\r\n\r\n", b"INVITE", b"\x00\xff\r\n\r\n", b"SIP/2.0 200 OK\r\n\r\n"):
        with pytest.raises(SipParseError):
            parse_message(junk)


def test_make_response() -> None:
    req = invite()
    ok = make_response(
        req, 200, to_tag="xyz", headers=[("contact", "<sip:b2bua@192.0.2.5>")], body=b"v=0\r\n"
    )
    assert ok.reason == "OK"
    assert ok.to_addr.tag == "xyz"
    assert ok.vias == req.vias
    assert ok.from_addr == req.from_addr
    assert ok.call_id == req.call_id
    assert ok.cseq == req.cseq
    assert ok.headers.get_all("Record-Route") == req.headers.get_all("Record-Route")
    assert ok.headers.get("Contact") == "<sip:b2bua@192.0.2.5>"
    assert ok.body == b"v=0\r\n"
    trying = make_response(req, 100)
    assert trying.to_addr.tag is None
    assert not trying.headers.has("Record-Route")
    busy = make_response(req, 486)
    assert busy.reason == "Busy Here"
    assert busy.to_addr.tag
    assert not busy.headers.has("Record-Route")
    tagged = parse_message(
        INVITE.replace(b"<sip:bob@example.com>\r\n", b"<sip:bob@example.com>;tag=keep\r\n")
    )
    assert isinstance(tagged, Request)
    assert make_response(tagged, 200, to_tag="other").to_addr.tag == "keep"
    assert make_response(req, 404, "Nobody").reason == "Nobody"
    with pytest.raises(ValueError, match="out of range"):
        make_response(req, 99)


def test_reason_phrases() -> None:
    assert reason_phrase(200) == "OK"
    assert reason_phrase(481) == "Call/Transaction Does Not Exist"
    assert reason_phrase(499) == "Client Error"
    assert reason_phrase(699) == "Global Failure"


def test_error_response() -> None:
    broken = INVITE.replace(b"CSeq: 314159 INVITE", b"CSeq: 314159 BYE")
    with pytest.raises(SipError) as info:
        parse_message(broken)
    resp = error_response(broken, info.value)
    assert resp is not None
    assert resp.status == 400
    assert resp.reason == "Bad Request"
    assert resp.headers.get("CSeq") == "314159 BYE"
    assert parse_message(resp.to_bytes()).call_id == "a84b4c76e66710@pc33.example.org"
    assert error_response(b"garbage", info.value) is None
    no_callid = broken.replace(b"Call-ID: a84b4c76e66710@pc33.example.org\r\n", b"")
    assert error_response(no_callid, info.value) is None
    assert error_response(make_response(invite(), 200).to_bytes(), info.value) is None


# --- stream framing ---------------------------------------------------------------


def test_stream_parser_fragments_and_batches() -> None:
    p = StreamParser()
    out = []
    for i in range(len(INVITE)):  # one octet at a time
        out += p.feed(INVITE[i : i + 1])
    assert out == [invite()]
    two = p.feed(b"\r\n\r\n" + INVITE + b"\r\n" + INVITE)
    assert two == [invite(), invite()]
    assert p.keepalives == 1
    assert p.feed(INVITE[:10]) == []
    assert p.feed(INVITE[10:]) == [invite()]


def test_stream_parser_malformed_message_is_recoverable() -> None:
    p = StreamParser()
    bad = INVITE.replace(b"CSeq: 314159 INVITE", b"CSeq: 314159 BYE")
    with pytest.raises(SipParseError) as info:
        p.feed(INVITE + bad + INVITE)
    assert not isinstance(info.value, StreamFramingError)
    assert p.feed(b"") == [invite(), invite()]


@pytest.mark.parametrize(
    "data",
    [
        INVITE.replace(b"Content-Length: 4\r\n", b""),
        INVITE.replace(b"Content-Length: 4", b"Content-Length: x"),
        b"X" * 70000,
        INVITE.replace(b"Content-Length: 4", b"Content-Length: 70000"),
    ],
)
def test_stream_parser_framing_errors(data: bytes) -> None:
    p = StreamParser()
    with pytest.raises(StreamFramingError):
        p.feed(data)
    with pytest.raises(StreamFramingError):
        p.feed(INVITE)  # the stream is dead after a framing error


def test_stream_parser_size_limit() -> None:
    p = StreamParser(max_message_size=100)
    with pytest.raises(StreamFramingError) as info:
        p.feed(INVITE)
    assert info.value.status == 513


# --- UAS checks -------------------------------------------------------------------


def test_check_request() -> None:
    req = invite()
    check_request(req)
    with pytest.raises(RequestRejectedError) as info:
        check_request(req, allowed_content_types=frozenset({"text/plain"}))
    assert info.value.status == 415
    assert dict(info.value.headers)["Accept"] == "text/plain"
    enc = parse_message(INVITE.replace(b"Max-Forwards: 70", b"Content-Encoding: gzip"))
    assert isinstance(enc, Request)
    with pytest.raises(RequestRejectedError) as info:
        check_request(enc)
    assert info.value.status == 415
    assert info.value.headers == (("Accept-Encoding", "identity"),)
    tel = parse_message(INVITE.replace(b"INVITE sip:bob@example.com", b"INVITE tel:+4930123"))
    assert isinstance(tel, Request)
    check_request(tel)
    with pytest.raises(SipError, match="416"):
        check_request(tel, supported_schemes=frozenset({"sip"}))
    acc = parse_message(INVITE.replace(b"Max-Forwards: 70", b"Accept: application/*"))
    assert isinstance(acc, Request)
    check_request(acc)
    acc = parse_message(INVITE.replace(b"Max-Forwards: 70", b"Accept: text/html"))
    assert isinstance(acc, Request)
    with pytest.raises(SipError, match="406"):
        check_request(acc)
    req_opt = parse_message(INVITE.replace(b"Max-Forwards: 70", b"Require: 100rel, timer"))
    assert isinstance(req_opt, Request)
    with pytest.raises(RequestRejectedError) as info:
        check_request(req_opt, supported_extensions=frozenset({"timer"}))
    assert info.value.status == 420
    assert info.value.headers == (("Unsupported", "100rel"),)
    check_request(req_opt, supported_extensions=frozenset({"100rel", "timer"}))
    # ACK is never rejected; CANCEL ignores Require.
    ack = Request("ACK", parse_uri("foo:bar"), req_opt.headers.set("CSeq", "314159 ACK"))
    check_request(ack)
    cancel = Request("CANCEL", req.uri, req_opt.headers.set("CSeq", "314159 CANCEL"))
    check_request(cancel)


def test_stream_framing_error_keeps_the_messages_framed_before_it() -> None:
    from b2bua.message import StreamFramingError, StreamParser

    good = (
        b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\r\nFrom: <sip:x@h>;tag=1\r\n"
        b"To: <sip:a@b>\r\nCall-ID: c1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    )
    broken = b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK2\r\n\r\n"
    parser = StreamParser()
    with pytest.raises(StreamFramingError) as info:
        parser.feed(good + broken)
    assert [m.call_id for m in info.value.messages] == ["c1"]
    assert info.value.unframed == broken
