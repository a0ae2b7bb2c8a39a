"""Caller identity toward the trunk: per-extension caller_id (DDI), trunk.from_user,
trunk.contact_user (b2bua/router.py, b2bua/trunk_registration.py, b2bua/config.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from b2bua.config import Config, ConfigError, parse_config
from b2bua.message import Request, Response, parse_message
from b2bua.router import Router
from b2bua.trunk_registration import TrunkRegistration, registration_for

PHONE_IP = "192.168.1.10"
TRUNK_IP = "203.0.113.7"


def office(trunk: dict[str, Any] | None = None, **ext1000: Any) -> Config:
    data: dict[str, Any] = {
        "sip": {"listen": "127.0.0.1:5060"},
        "trunk": {
            "host": "203.0.113.7:5060",
            "inbound_extension": "1000",
            "caller_id": "+4930123456",
            **(trunk or {}),
        },
        "extension": [
            {"number": "1000", "password": "a", **ext1000},
            {"number": "1001", "password": "b"},
        ],
        "recording": {"mode": "off"},
    }
    return parse_config(data, Path("/etc/b2bua/office.toml"))


def invite(ruri: str, *, from_user: str = "1000", extra: str = "") -> Request:
    lines = [
        f"INVITE {ruri} SIP/2.0",
        "Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKident",
        f'From: "Desk" <sip:{from_user}@office.example>;tag=f',
        f"To: <{ruri}>",
        "Call-ID: identity-test",
        "CSeq: 1 INVITE",
        "Max-Forwards: 70",
        *([extra] if extra else []),
        "Content-Length: 0",
        "",
        "",
    ]
    message = parse_message("\r\n".join(lines).encode())
    assert isinstance(message, Request)
    return message


def shown_for(config: Config, extension: str, request: Request) -> tuple[str, dict[str, str]]:
    router = Router(config)
    route = router.route(request, PHONE_IP, extension)
    shown = router.presentation(route, request)
    return shown.from_user, dict(shown.headers)


# -- config ---------------------------------------------------------------------------


def test_extension_caller_id_is_validated_like_the_trunks() -> None:
    config = office(caller_id="+4930123456-12")
    assert config.extensions[0].caller_id == "+493012345612"  # separators dropped
    assert config.extensions[1].caller_id is None
    with pytest.raises(ConfigError, match=r"extension\[0\]\.caller_id"):
        office(caller_id="+49 30 ABC")
    with pytest.raises(ConfigError, match=r"extension\[0\]\.caller_id"):
        office(caller_id=4930123456)


def test_from_user_needs_an_identity_header_and_a_sip_user() -> None:
    config = office({"identity_header": "ppi", "from_user": "1234567t0"})
    assert config.trunk.from_user == "1234567t0"
    with pytest.raises(ConfigError, match=r"trunk\.from_user.*identity_header"):
        office({"from_user": "1234567t0"})  # identity_header "from": nothing presents
    with pytest.raises(ConfigError, match=r"trunk\.from_user"):
        office({"identity_header": "ppi", "from_user": "e123@evil"})
    with pytest.raises(ConfigError, match=r"trunk\.contact_user"):
        office({"contact_user": "49 30"})
    assert office({"contact_user": "+4930123456"}).trunk.contact_user == "+4930123456"
    assert office().trunk.from_user is None and office().trunk.contact_user is None


# -- presentation ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "name"),
    [("ppi", "P-Preferred-Identity"), ("pai", "P-Asserted-Identity")],
)
def test_extension_ddi_replaces_the_trunk_caller_id(header: str, name: str) -> None:
    config = office({"identity_header": header}, caller_id="+4930123456-12")
    from_user, headers = shown_for(config, "1000", invite("sip:030999@x"))
    assert from_user == "+493012345612"
    assert headers[name] == "<sip:+493012345612@203.0.113.7>"
    # The other extension has no DDI: the trunk's number, as before.
    from_user, headers = shown_for(config, "1001", invite("sip:030999@x", from_user="1001"))
    assert from_user == "+4930123456"
    assert headers[name] == "<sip:+4930123456@203.0.113.7>"


def test_extension_ddi_in_from_when_identity_header_is_from() -> None:
    config = office(caller_id="+493012345612")
    from_user, headers = shown_for(config, "1000", invite("sip:030999@x"))
    assert from_user == "+493012345612"
    assert "P-Preferred-Identity" not in headers and "P-Asserted-Identity" not in headers


def test_ddi_follows_the_authenticated_extension_not_the_from_header() -> None:
    # 1001 (no DDI) claims to be 1000 in From: the DDI of 1000 must not be presented.
    config = office(caller_id="+493012345612")
    from_user, _ = shown_for(config, "1001", invite("sip:030999@x", from_user="1000"))
    assert from_user == "+4930123456"


def test_from_user_is_the_account_while_ppi_presents_the_number() -> None:
    config = office(
        {"identity_header": "ppi", "from_user": "1234567t0", "caller_id": "49301234560"},
        caller_id="49301234512",
    )
    from_user, headers = shown_for(config, "1000", invite("sip:030999@x"))
    assert from_user == "1234567t0"
    assert headers["P-Preferred-Identity"] == "<sip:49301234512@203.0.113.7>"


def test_withheld_caller_stays_anonymous_with_from_user() -> None:
    config = office({"identity_header": "ppi", "from_user": "1234567t0"}, caller_id="+493012345612")
    request = invite("sip:030999@x", extra="Privacy: id")
    router = Router(config)
    shown = router.presentation(router.route(request, PHONE_IP, "1000"), request)
    assert (shown.from_user, shown.display_name) == ("anonymous", "Anonymous")
    headers = dict(shown.headers)
    assert headers["Privacy"] == "id"
    assert headers["P-Preferred-Identity"] == "<sip:+493012345612@203.0.113.7>"


def test_emergency_call_presents_the_extension_ddi() -> None:
    config = office({"identity_header": "pai"}, caller_id="+493012345612")
    request = invite("sip:112@x", extra="Privacy: id")
    router = Router(config)
    shown = router.presentation(router.route(request, PHONE_IP, "1000"), request)
    assert shown.from_user == "+493012345612"
    assert "Privacy" not in dict(shown.headers)


def test_inbound_and_internal_calls_are_not_touched() -> None:
    config = office({"identity_header": "ppi", "from_user": "acct"}, caller_id="+493012345612")
    router = Router(config)
    inbound = invite("sip:+4930123456@x", from_user="+4917012345")
    shown = router.presentation(router.route(inbound, TRUNK_IP, None), inbound)
    assert (shown.from_user, shown.headers) == ("+4917012345", ())
    internal = invite("sip:1001@x")
    shown = router.presentation(router.route(internal, PHONE_IP, "1000"), internal)
    assert (shown.from_user, shown.headers) == ("1000", ())


# -- REGISTER's Contact user ----------------------------------------------------------


def ok_for(request: Request, contact: str) -> Response:
    text = (
        "SIP/2.0 200 OK\r\n"
        f"Via: {request.headers.get('Via')}\r\n"
        f"From: {request.headers.get('From')}\r\n"
        f"To: {request.headers.get('To')};tag=r\r\n"
        f"Call-ID: {request.headers.get('Call-ID')}\r\n"
        f"CSeq: {request.headers.get('CSeq')}\r\n"
        f"Contact: {contact}\r\n"
        "Content-Length: 0\r\n\r\n"
    )
    message = parse_message(text.encode())
    assert isinstance(message, Response)
    return message


def test_contact_user_goes_into_register_contact_only() -> None:
    config = office(
        {"register": True, "username": "acct", "password": "pw", "contact_user": "+4930123456"}
    )
    reg = registration_for(config.trunk, ("203.0.113.7", 5060), ("192.0.2.1", 5060), None)
    request = reg.start(0.0)
    assert request.headers.get("Contact") == "<sip:+4930123456@192.0.2.1:5060>"
    assert "sip:acct@" in (request.headers.get("From") or "")
    assert "sip:acct@" in (request.headers.get("To") or "")
    # The granted lifetime is read from our own Contact: the one with the contact user.
    reg.on_response(ok_for(request, "<sip:+4930123456@192.0.2.1:5060>;expires=120"), 1.0)
    assert reg.registered and reg.registered_until == 121.0
    assert not any(name.startswith("Security-") for name, _ in request.headers)


def test_default_contact_user_is_the_username() -> None:
    reg = TrunkRegistration(("203.0.113.7", 5060), "carrier", "acct", "pw", ("192.0.2.1", 5060))
    assert reg.start(0.0).headers.get("Contact") == "<sip:acct@192.0.2.1:5060>"
    config = office()
    with pytest.raises(ValueError, match="username"):
        registration_for(config.trunk, ("203.0.113.7", 5060), ("192.0.2.1", 5060), None)
