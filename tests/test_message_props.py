"""Property tests (hypothesis): round trips, and bad bytes raise only SipError."""

from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from b2bua.errors import SipError
from b2bua.headers import Address, Headers, Via, parse_address
from b2bua.message import Request, Response, StreamParser, make_response, parse_message
from b2bua.uri import URI, parse_uri, uri_equal
from b2bua.validate import check_request

TORTURE = sorted((Path(__file__).parent / "data" / "rfc4475").glob("*.dat")) + sorted(
    (Path(__file__).parent / "data" / "rfc5118").glob("*.dat")
)
MESSAGES = [p.read_bytes() for p in TORTURE]
FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# Generating whole messages is the slow part: fewer examples keep the suite at seconds.
GEN = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])

ALNUM = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
tokens = st.text(ALNUM + "-.!%*_+`'~", min_size=1, max_size=12)
labels = st.text("abcdefghijklmnopqrstuvwxyz", min_size=1, max_size=8)
hostnames = st.lists(labels, min_size=1, max_size=3).map(".".join)
ipv4 = st.tuples(*[st.integers(0, 255)] * 4).map(lambda t: ".".join(map(str, t)))
ipv6 = st.ip_addresses(v=6).map(lambda a: f"[{a}]")
hosts = st.one_of(hostnames, ipv4, ipv6)
ports = st.none() | st.integers(0, 65535)
escaped = st.integers(0, 255).map(lambda b: f"%{b:02X}")
users = st.lists(
    st.one_of(st.text(ALNUM + "-_.!~*'()&=+$,;?/", min_size=1, max_size=4), escaped),
    min_size=1,
    max_size=4,
).map("".join)
uparams = st.lists(
    st.tuples(
        st.text(ALNUM + "-_", min_size=1, max_size=6),
        st.none() | st.text(ALNUM + "-_.", min_size=1, max_size=6),
    ),
    max_size=3,
)


@st.composite
def sip_uris(draw: st.DrawFn) -> URI:
    return URI(
        scheme=draw(st.sampled_from(["sip", "sips"])),
        user=draw(st.none() | users),
        host=draw(hosts),
        port=draw(ports),
        params=tuple(draw(uparams)),
    )


display_names = st.none() | st.text(
    st.characters(codec="utf-8", blacklist_characters="\r\n"), max_size=12
)
hparams = st.lists(st.tuples(tokens, st.none() | tokens), max_size=3).map(tuple)


@st.composite
def addresses(draw: st.DrawFn) -> Address:
    return Address(uri=draw(sip_uris()), display_name=draw(display_names), params=draw(hparams))


@st.composite
def vias(draw: st.DrawFn) -> Via:
    rport = draw(st.sampled_from([(), (("rport", None),), (("rport", "5060"),)]))
    extra = draw(
        st.lists(st.tuples(st.sampled_from(["x-a", "alias"]), st.none() | tokens), max_size=2)
    )
    params = (("branch", "z9hG4bK" + draw(tokens)), *rport, *extra)
    return Via(
        draw(st.sampled_from(["UDP", "TCP", "TLS", "SCTP"])), draw(hosts), draw(ports), params
    )


ext_values = st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=20).map(
    lambda s: s.strip(" \t\xa0")
)


@st.composite
def requests(draw: st.DrawFn) -> Request:
    method = draw(st.sampled_from(["INVITE", "BYE", "OPTIONS", "REGISTER"]) | tokens)
    fields = [("Via", str(v)) for v in draw(st.lists(vias(), min_size=1, max_size=3))]
    fields += [
        ("From", str(draw(addresses()))),
        ("To", str(draw(addresses()))),
        ("Call-ID", draw(tokens) + "@" + draw(hostnames)),
        ("CSeq", f"{draw(st.integers(0, 2**31 - 1))} {method}"),
        ("Max-Forwards", str(draw(st.integers(0, 255)))),
    ]
    fields += [("Contact", str(a)) for a in draw(st.lists(addresses(), max_size=2))]
    fields += [("X-" + draw(tokens), draw(ext_values)) for _ in range(draw(st.integers(0, 3)))]
    order = draw(st.permutations(fields))
    return Request(method, draw(sip_uris()), Headers.of(*order), draw(st.binary(max_size=40)))


@GEN
@given(requests())
def test_request_round_trip(req: Request) -> None:
    parsed = parse_message(req.to_bytes())
    assert parsed == req
    assert parsed.to_bytes() == req.to_bytes()
    assert isinstance(parsed, Request)
    assert [str(v) for v in parsed.vias] == list(req.headers.get_all("Via"))


@GEN
@given(requests(), st.integers(100, 699), st.none() | tokens)
def test_response_round_trip(req: Request, status: int, tag: str | None) -> None:
    resp = make_response(req, status, to_tag=tag, body=b"x" * (status % 7))
    parsed = parse_message(resp.to_bytes())
    assert parsed == resp
    assert isinstance(parsed, Response)
    assert parsed.vias == req.vias
    assert parsed.cseq == req.cseq


@FAST
@given(sip_uris())
def test_uri_round_trip(uri: URI) -> None:
    assert parse_uri(str(uri)) == uri
    assert uri_equal(uri, parse_uri(str(uri)))


@FAST
@given(addresses())
def test_address_round_trip(addr: Address) -> None:
    assert parse_address(str(addr)) == addr


def _exercise(data: bytes) -> None:
    """Parse and touch everything a caller might; only SipError may come out."""
    try:
        msg = parse_message(data)
    except SipError:
        return
    assert parse_message(msg.to_bytes()) == msg
    try:
        _ = msg.contacts, msg.addresses("Route"), msg.top_via, msg.expires
        if isinstance(msg, Request):
            check_request(msg)
    except SipError:
        pass


@FAST
@given(st.binary(max_size=300))
def test_random_bytes(data: bytes) -> None:
    _exercise(data)


@FAST
@given(
    st.sampled_from(MESSAGES),
    st.lists(
        st.tuples(st.integers(0, 10_000), st.integers(0, 255), st.sampled_from("rid")),
        min_size=1,
        max_size=6,
    ),
)
def test_mutated_torture_messages(data: bytes, edits: list[tuple[int, int, str]]) -> None:
    buf = bytearray(data)
    for pos, byte, kind in edits:
        i = pos % (len(buf) + 1)
        if kind == "r" and i < len(buf):
            buf[i] = byte
        elif kind == "i":
            buf.insert(i, byte)
        elif i < len(buf):
            del buf[i]
    _exercise(bytes(buf))


@FAST
@given(st.sampled_from(MESSAGES), st.integers(0, 5000))
def test_truncated_torture_messages(data: bytes, cut: int) -> None:
    _exercise(data[: cut % (len(data) + 1)])


@FAST
@given(
    st.lists(st.sampled_from(MESSAGES), min_size=1, max_size=4),
    st.lists(st.integers(1, 200), min_size=1, max_size=30),
)
def test_stream_parser_only_sip_errors(msgs: list[bytes], sizes: list[int]) -> None:
    stream = b"".join(msgs)
    parser = StreamParser()
    pos = 0
    for size in sizes * (len(stream) // sum(sizes) + 1):  # bounded: ends with the stream
        if pos >= len(stream):
            break
        try:
            out = parser.feed(stream[pos : pos + size])
        except SipError:
            return
        assert all(isinstance(m, Request | Response) for m in out)
        pos += size
