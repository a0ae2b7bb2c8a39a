"""Tests for b2bua.router: inbound by socket source only, number map, internal,
outbound and the reject cases."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest

from b2bua.config import Config, parse_config
from b2bua.headers import Headers
from b2bua.message import Request, parse_message
from b2bua.router import Route, Router, dialled_number
from b2bua.uri import parse_uri

TRUNK_IP = "203.0.113.7"
PHONE_IP = "192.168.1.10"
_branches = itertools.count(1)


def config(**trunk: Any) -> Config:
    data: dict[str, Any] = {
        "sip": {"listen": "127.0.0.1:5060"},
        "trunk": {
            "host": "203.0.113.7:5060",
            "inbound_from": ["203.0.113.0/28", "2001:db8:5::/48"],
            "inbound_extension": "1000",
            "inbound_map": {"+4930123456": "1001", "0301234567": "1002"},
            **trunk,
        },
        "extension": [
            {"number": "1000", "password": "a"},
            {"number": "1001", "password": "b"},
            {"number": "1002", "password": "c"},
        ],
        "recording": {"mode": "off"},
    }
    return parse_config(data, Path("/etc/b2bua/office.toml"))


ROUTER = Router(config())


def invite(ruri: str, *, to: str | None = None, from_user: str = "1000") -> Request:
    lines = [
        f"INVITE {ruri} SIP/2.0",
        f"Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK{next(_branches)}",
        f"From: <sip:{from_user}@office.example>;tag=f",
        f"To: <{to or ruri}>",
        "Call-ID: route-test",
        "CSeq: 1 INVITE",
        "Max-Forwards: 70",
        "Content-Length: 0",
        "",
        "",
    ]
    message = parse_message("\r\n".join(lines).encode())
    assert isinstance(message, Request)
    return message


@pytest.mark.parametrize(
    ("ip", "inbound"),
    [
        ("203.0.113.7", True),
        ("203.0.113.15", True),
        ("203.0.113.16", False),
        ("::ffff:203.0.113.1", True),  # a dual-stack socket's view of an IPv4 source
        ("2001:db8:5:1::9", True),
        ("[2001:db8:5::1]", True),
        ("2001:db8:6::1", False),
        ("127.0.0.1", False),
        ("not-an-ip", False),
        ("", False),
    ],
)
def test_inbound_source_is_the_socket_ip_in_the_networks(ip: str, inbound: bool) -> None:
    assert ROUTER.is_inbound_source(ip) is inbound


def test_default_inbound_from_is_the_trunk_host() -> None:
    data: dict[str, Any] = {
        "sip": {"listen": "127.0.0.1:5060"},
        "trunk": {"host": "127.0.0.2:5080", "inbound_extension": "1000"},
        "extension": [{"number": "1000", "password": "a"}],
        "recording": {"mode": "off"},
    }
    router = Router(parse_config(data, Path("office.toml")))
    assert router.is_inbound_source("127.0.0.2")
    assert not router.is_inbound_source("127.0.0.3")


def test_inbound_uses_the_number_map_then_the_inbound_extension() -> None:
    route = ROUTER.route(invite("sip:+4930123456@198.51.100.1"), TRUNK_IP, None)
    assert route == Route("inbound", "1001", "+4930123456", None, "from the trunk")
    mapped = ROUTER.route(invite("sip:0301234567@198.51.100.1;user=phone"), TRUNK_IP, None)
    assert (mapped.kind, mapped.target_extension) == ("inbound", "1002")
    other = ROUTER.route(invite("sip:+4930999@198.51.100.1"), TRUNK_IP, None)
    assert (other.kind, other.target_extension, other.dialled) == ("inbound", "1000", "+4930999")
    # No user in the Request-URI: the To user is the dialled number.
    to_only = ROUTER.route(
        invite("sip:198.51.100.1", to="sip:+4930123456@office.example"), TRUNK_IP, None
    )
    assert (to_only.target_extension, to_only.dialled) == ("1001", "+4930123456")
    # Even with no number at all, a trunk call rings the inbound extension.
    nothing = ROUTER.route(invite("sip:198.51.100.1"), TRUNK_IP, None)
    assert (nothing.kind, nothing.target_extension) == ("inbound", "1000")


def test_inbound_is_decided_by_source_not_headers() -> None:
    # From the trunk's number, with the trunk's Via, but from a phone's address.
    spoofed = invite("sip:+4930123456@198.51.100.1", from_user="+4930123456")
    assert ROUTER.route(spoofed, PHONE_IP, None) == Route(
        "reject", None, "+4930123456", 403, "not from the trunk and not authenticated"
    )
    # And a trunk source wins even when the caller also claims to be an extension.
    from_trunk = ROUTER.route(invite("sip:1002@198.51.100.1"), TRUNK_IP, "1000")
    assert (from_trunk.kind, from_trunk.target_extension) == ("inbound", "1000")


def test_internal_outbound_and_own_extension() -> None:
    internal = ROUTER.route(invite("sip:1001@office.example"), PHONE_IP, "1000")
    assert internal == Route("internal", "1001", "1001", None, "extension to extension")
    for number in ("+4930123456", "004930123", "110", "*21", "%2A21%23", "+49-30-12(34)56"):
        route = ROUTER.route(invite(f"sip:{number}@office.example"), PHONE_IP, "1000")
        assert (route.kind, route.target_extension, route.status) == ("outbound", None, None)
    assert ROUTER.route(invite("sip:+49-30-12(34)56@x"), PHONE_IP, "1000").dialled == "+4930123456"
    assert ROUTER.route(invite("sip:%2A21%23@x"), PHONE_IP, "1000").dialled == "*21#"
    own = ROUTER.route(invite("sip:1000@office.example"), PHONE_IP, "1000")
    assert (own.kind, own.status) == ("reject", 486)


@pytest.mark.parametrize(
    ("ruri", "status"),
    [
        ("sip:office.example", 484),
        ("sip:+@office.example", 484),
        ("sip:alice@office.example", 404),
        ("sip:12a4@office.example", 404),
        ("sip:1+2@office.example", 404),
        ("sip:" + "1" * 33 + "@office.example", 404),
    ],
)
def test_undialable_numbers_from_extensions(ruri: str, status: int) -> None:
    route = ROUTER.route(invite(ruri, to="sip:office.example"), PHONE_IP, "1001")
    assert (route.kind, route.target_extension, route.status) == ("reject", None, status)


def test_unknown_authenticated_extension_is_not_routed() -> None:
    route = ROUTER.route(invite("sip:1001@office.example"), PHONE_IP, "4711")
    assert (route.kind, route.status) == ("reject", 403)


def test_tel_request_uri() -> None:
    request = Request(
        "INVITE",
        parse_uri("tel:+4930123456;phone-context=example.com"),
        Headers.of(("To", "<tel:+4930123456>")),
    )
    assert dialled_number(request) == "+4930123456"
    route = ROUTER.route(request, PHONE_IP, "1002")
    assert (route.kind, route.dialled) == ("outbound", "+4930123456")
    assert ROUTER.route(request, TRUNK_IP, None).target_extension == "1001"


def test_request_without_usable_to_falls_back_to_nothing() -> None:
    request = Request("INVITE", parse_uri("sip:example.com"), Headers.of(("To", "<garbage")))
    assert dialled_number(request) == ""
