"""RFC 5118 IPv6 torture messages (tests/data/rfc5118, see its README for the source)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from b2bua.errors import SipError
from b2bua.message import Request, parse_message
from b2bua.uri import parse_uri, uri_equal

DATA = Path(__file__).parent / "data" / "rfc5118"
INDEX: dict[str, dict[str, Any]] = json.loads((DATA / "index.json").read_text())


def load(name: str) -> bytes:
    return (DATA / f"{name}.dat").read_bytes()


def test_index_complete() -> None:
    assert len(INDEX) == 12
    assert {p.stem for p in DATA.glob("*.dat")} == set(INDEX)


@pytest.mark.parametrize("name", [k for k, v in INDEX.items() if v["well_formed"]])
def test_valid_parses_and_round_trips(name: str) -> None:
    msg = parse_message(load(name))
    assert parse_message(msg.to_bytes()) == msg


@pytest.mark.parametrize("name", [k for k, v in INDEX.items() if not v["well_formed"]])
def test_invalid_rejected(name: str) -> None:
    with pytest.raises(SipError) as info:
        parse_message(load(name))
    assert str(info.value.status) in INDEX[name]["ok"]


def test_port_ambiguity() -> None:
    amb = parse_message(load("port-ambiguous"))
    assert isinstance(amb, Request)
    assert (amb.uri.host, amb.uri.port) == ("[2001:db8::10:5070]", None)
    unamb = parse_message(load("port-unambiguous"))
    assert isinstance(unamb, Request)
    assert (unamb.uri.host, unamb.uri.port) == ("[2001:db8::10]", 5070)


def test_via_received_both_forms() -> None:
    with_delim = parse_message(load("via-received-param-with-delim"))
    assert with_delim.top_via.received == "[2001:db8::9:255]"
    no_delim = parse_message(load("via-received-param-no-delim"))
    assert no_delim.top_via.received == "2001:db8::9:255"
    assert no_delim.top_via.host == "[2001:db8::9:1]"


def test_mixed_families_and_mapped() -> None:
    mult = parse_message(load("mult-ip-in-header"))
    assert [(v.host, v.port) for v in mult.vias] == [
        ("[2001:db8::9:1]", 6050),
        ("192.0.2.1", None),
        ("[2001:db8::9:255]", None),
    ]
    assert mult.vias[2].received == "192.0.2.200"
    mapped = parse_message(load("ipv4-mapped-ipv6"))
    assert mapped.top_via.sent_by == "[::ffff:192.0.2.10]:19823"
    assert mapped.contacts[0].uri.host == "[::ffff:192.0.2.2]"
    sdp = parse_message(load("ipv6-in-sdp"))
    assert b"c=IN IP6 2001:db8::20" in sdp.body


def test_three_colon_form_tolerated() -> None:
    msg = parse_message(load("ipv6-bug-abnf-3-colons"))
    assert isinstance(msg, Request)
    assert msg.uri.host == "[2001:db8:::192.0.2.1]"
    assert msg.to_addr.uri.host == msg.uri.host


def test_rfc_content_length_values() -> None:
    """The RFC's own Content-Length values (kept in index.json) are off: 268 claims more
    than the body holds, so a datagram with it is a 400; the shorter ones cut the body."""
    good = load("ipv6-in-sdp")
    bad = good.replace(b"Content-Length: 251", b"Content-Length: 268")
    assert INDEX["ipv6-in-sdp"]["rfc_content_length"] == 268
    with pytest.raises(SipError) as info:
        parse_message(bad)
    assert info.value.status == 400
    short = load("mult-ip-in-sdp").replace(b"Content-Length: 189", b"Content-Length: 181")
    assert len(parse_message(short).body) == 181


def test_ipv6_uri_equality_and_errors() -> None:
    assert uri_equal(parse_uri("sip:[2001:DB8::10]"), parse_uri("sip:[2001:db8::10]"))
    for bad in ("sip:[2001:db8::10", "sip:[2001:db8::zz]", "sip:[2001:db8::1]x", "sip:[]:5060"):
        with pytest.raises(SipError):
            parse_uri(bad)
