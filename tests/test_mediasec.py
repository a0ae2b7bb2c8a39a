"""Telekom's mediasec security agreement (trunk.mediasec): REGISTER headers, the
Security-Server -> Security-Verify echo, 494, refreshes, and INVITEs to the trunk
(b2bua/trunk_registration.py, b2bua/router.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from b2bua.config import Config, parse_config
from b2bua.headers import Headers
from b2bua.message import Request, Response, parse_message
from b2bua.router import Router
from b2bua.trunk_registration import (
    MediasecAgreement,
    RegState,
    TrunkRegistration,
    registration_for,
    security_mechanisms,
)

CARRIER = ("203.0.113.7", 5061)
LOCAL = ("192.0.2.1", 5061)
# The three Security-Server lines of Telekom's Mediasec page, step 2.
TELEKOM_SERVER = ("msrp-tls;mediasec", "sdes-srtp;mediasec", "dtls-srtp;mediasec")
CHALLENGE = 'Digest realm="tel.t-online.de", nonce="n1", algorithm=MD5, qop="auth"'


def office(**trunk: Any) -> Config:
    data: dict[str, Any] = {
        "sip": {"listen": "127.0.0.1:5060"},
        "trunk": {
            "host": "203.0.113.7:5061",
            "inbound_extension": "1000",
            "transport": "tls",
            "srtp": "required",
            "register": True,
            "username": "+4930123456",
            "password": "pw",
            "caller_id": "+4930123456",
            "identity_header": "ppi",
            "mediasec": True,
            **trunk,
        },
        "extension": [{"number": "1000", "password": "a"}],
        "recording": {"mode": "off"},
    }
    return parse_config(data, Path("/etc/b2bua/office.toml"))


def response(request: Request, status: int, *extra: str) -> Response:
    reason = {200: "OK", 401: "Unauthorized", 494: "Security Agreement Required"}[status]
    lines = [
        f"SIP/2.0 {status} {reason}",
        f"Via: {request.headers.get('Via')}",
        f"From: {request.headers.get('From')}",
        f"To: {request.headers.get('To')};tag=srv",
        f"Call-ID: {request.headers.get('Call-ID')}",
        f"CSeq: {request.headers.get('CSeq')}",
        *extra,
        "Content-Length: 0",
        "",
        "",
    ]
    message = parse_message("\r\n".join(lines).encode())
    assert isinstance(message, Response)
    return message


def state_of(reg: TrunkRegistration) -> RegState:
    return reg.state  # a call, so mypy does not keep an earlier assert's narrowing


def lines(request: Request, name: str) -> list[str]:
    return list(request.headers.raw(name))


def client() -> tuple[TrunkRegistration, MediasecAgreement]:
    agreement = MediasecAgreement()
    return registration_for(office().trunk, CARRIER, LOCAL, agreement), agreement


def server_lines(*values: str) -> tuple[str, ...]:
    return tuple(f"Security-Server: {v}" for v in values)


def test_first_register_offers_mediasec_without_verify() -> None:
    reg, agreement = client()
    first = reg.start(0.0)
    assert lines(first, "Security-Client") == ["sdes-srtp;mediasec"]
    assert lines(first, "Require") == ["mediasec"]
    assert lines(first, "Proxy-Require") == ["mediasec"]
    assert lines(first, "Security-Verify") == []
    assert agreement.server == ()


def test_401_security_server_is_echoed_in_the_authenticated_register() -> None:
    reg, agreement = client()
    first = reg.start(0.0)
    auth = reg.on_response(
        response(first, 401, f"WWW-Authenticate: {CHALLENGE}", *server_lines(*TELEKOM_SERVER)),
        0.1,
    )
    assert auth is not None
    assert auth.headers.get("Authorization") is not None
    assert agreement.server == TELEKOM_SERVER
    # Telekom's page, step 3: the first request's headers plus Security-Verify, each line.
    assert lines(auth, "Security-Client") == ["sdes-srtp;mediasec"]
    assert lines(auth, "Security-Verify") == list(TELEKOM_SERVER)
    assert lines(auth, "Require") == ["mediasec"]
    assert lines(auth, "Proxy-Require") == ["mediasec"]
    assert reg.on_response(response(auth, 200, "Expires: 600"), 0.2) is None
    assert reg.registered
    # The refresh carries the agreement from its first line on.
    deadline = reg.get_timer()
    assert deadline is not None
    refresh = reg.on_timer(deadline)
    assert refresh is not None
    assert lines(refresh, "Security-Verify") == list(TELEKOM_SERVER)
    assert lines(refresh, "Security-Client") == ["sdes-srtp;mediasec"]
    assert refresh.headers.get("Authorization") is None


def test_a_new_challenge_replaces_the_learned_mechanisms() -> None:
    reg, agreement = client()
    first = reg.start(0.0)
    # One header with a comma list (RFC 3329 2.2) counts like separate lines.
    reply = response(
        first,
        401,
        f"WWW-Authenticate: {CHALLENGE}",
        "Security-Server: sdes-srtp;mediasec , dtls-srtp;mediasec;q=0.5",
    )
    auth = reg.on_response(reply, 0.1)
    assert auth is not None
    assert agreement.server == ("sdes-srtp;mediasec", "dtls-srtp;mediasec;q=0.5")
    assert lines(auth, "Security-Verify") == ["sdes-srtp;mediasec", "dtls-srtp;mediasec;q=0.5"]
    # A challenge without Security-Server keeps what was learned.
    assert agreement.learn(response(first, 401, f"WWW-Authenticate: {CHALLENGE}")) is False
    assert agreement.server == ("sdes-srtp;mediasec", "dtls-srtp;mediasec;q=0.5")


def test_494_is_answered_once_at_once_then_backs_off() -> None:
    reg, agreement = client()
    first = reg.start(0.0)
    again = reg.on_response(response(first, 494, *server_lines(*TELEKOM_SERVER)), 0.1)
    assert again is not None
    assert again.headers.get("Authorization") is None
    assert lines(again, "Security-Verify") == list(TELEKOM_SERVER)
    assert state_of(reg) is RegState.REGISTERING
    # A second 494 in the same attempt: the carrier does not accept us; no loop.
    assert reg.on_response(response(again, 494, *server_lines(*TELEKOM_SERVER)), 0.2) is None
    assert state_of(reg) is RegState.FAILED
    assert agreement.server == TELEKOM_SERVER


def test_494_without_security_server_fails() -> None:
    reg, _ = client()
    first = reg.start(0.0)
    assert reg.on_response(response(first, 494), 0.1) is None
    assert state_of(reg) is RegState.FAILED


def test_without_mediasec_nothing_changes() -> None:
    config = office(mediasec=False)
    shared = MediasecAgreement()
    reg = registration_for(config.trunk, CARRIER, LOCAL, shared)
    assert reg.mediasec is None  # trunk.mediasec off: the agreement is not used
    first = reg.start(0.0)
    assert not any(n.startswith("Security-") or "Require" in n for n, _ in first.headers)
    # A 494 without mediasec stays a failure, as before.
    assert reg.on_response(response(first, 494, *server_lines(*TELEKOM_SERVER)), 0.1) is None
    assert state_of(reg) is RegState.FAILED
    assert Router(config).mediasec is None


def invite(ruri: str, from_user: str = "1000") -> Request:
    text = (
        f"INVITE {ruri} SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKms\r\n"
        f"From: <sip:{from_user}@office.example>;tag=f\r\n"
        f"To: <{ruri}>\r\n"
        "Call-ID: mediasec-test\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\n"
        "Content-Length: 0\r\n\r\n"
    )
    message = parse_message(text.encode())
    assert isinstance(message, Request)
    return message


def test_outbound_invites_carry_the_agreement_once_learned() -> None:
    router = Router(office())
    assert router.mediasec is not None
    request = invite("sip:030999@x")
    route = router.route(request, "192.168.1.10", "1000")
    before = dict(router.presentation(route, request).headers)
    assert "Security-Verify" not in before and "Require" not in before
    # The registration learns through the router's agreement (registration_for).
    reg = registration_for(router.trunk, CARRIER, LOCAL, router.mediasec)
    first = reg.start(0.0)
    reg.on_response(
        response(first, 401, f"WWW-Authenticate: {CHALLENGE}", *server_lines(*TELEKOM_SERVER)),
        0.1,
    )
    headers = router.presentation(route, request).headers
    assert [v for n, v in headers if n == "Security-Verify"] == list(TELEKOM_SERVER)
    assert ("Require", "mediasec") in headers and ("Proxy-Require", "mediasec") in headers
    assert ("P-Preferred-Identity", "<sip:+4930123456@203.0.113.7>") in headers
    # An inbound call's leg goes to a phone, not to the trunk: nothing added.
    inbound = invite("sip:+4930123456@x", from_user="+4917012345")
    shown = router.presentation(router.route(inbound, "203.0.113.7", None), inbound)
    assert shown.headers == ()


def test_security_mechanisms_parse_lists_and_whitespace() -> None:
    assert security_mechanisms(("sdes-srtp;mediasec,  msrp-tls;mediasec", " ")) == (
        "sdes-srtp;mediasec",
        "msrp-tls;mediasec",
    )
    assert security_mechanisms(()) == ()


def test_keepalive_options_carry_the_agreement_once_learned() -> None:
    from b2bua.trunk_monitor import TrunkMonitor

    agreement = MediasecAgreement()
    monitor = TrunkMonitor("tel.t-online.de", interval_s=30.0, headers=agreement.verify_headers)
    monitor.set_primary([("127.0.0.2", 5060)], 0.0)
    monitor.start(0.0)
    ((before, _),) = monitor.on_timer(30.0, ("127.0.0.1", 5060))
    assert before.headers.get_all("Security-Verify") == ()  # nothing learned yet
    challenge = Response(401, "Unauthorized", Headers.of(("Security-Server", "sdes-srtp;mediasec")))
    assert agreement.learn(challenge)
    monitor.on_response(("127.0.0.2", 5060), Response(200, "OK", Headers.of()), 31.0)
    ((after, _),) = monitor.on_timer(61.0, ("127.0.0.1", 5060))
    assert after.headers.get_all("Security-Verify") == ("sdes-srtp;mediasec",)
    assert after.headers.get("Proxy-Require") == "mediasec"


# ------------------------------------------------ a=3ge2ae on the trunk's SDES streams


def _call(direction: str, body: bytes, a_srtp: str, b_srtp: str, mediasec: bool) -> Any:
    from b2bua.call import Call
    from tests.test_srtp_negotiation import FakeServices, a_invite, target

    services = FakeServices(recording=None)
    call = Call.start(
        services, a_invite(body), "a-key", ("127.0.0.2", 5080), "UDP", target(b_srtp),
        direction, 0.0, a_srtp=a_srtp, mediasec=mediasec,
    )  # fmt: skip
    return call, services


def test_sdes_answer_to_the_trunk_says_3ge2ae_requested_and_the_phone_leg_does_not() -> None:
    from tests.test_srtp_negotiation import b_answer, b_offer, final_to_a, phone_answer, savp_offer

    theirs, _ = savp_offer()
    call, services = _call("inbound", theirs.to_bytes(), "required", "required", True)
    to_phone = b_offer(call)
    assert b"3ge2ae" not in call.b_invite.body  # the office leg is not the trunk's
    b_answer(call, services, phone_answer(to_phone).to_bytes())
    to_trunk = final_to_a(services)
    assert to_trunk.status == 200
    assert b"a=crypto:" in to_trunk.body and b"a=3ge2ae:requested\r\n" in to_trunk.body


def test_outbound_sdes_offer_to_the_trunk_says_3ge2ae_only_under_mediasec() -> None:
    from tests.test_srtp_negotiation import b_offer, plain_offer

    for mediasec in (True, False):
        call, _ = _call("outbound", plain_offer().to_bytes(), "off", "required", mediasec)
        body = call.b_invite.body
        assert b"a=crypto:" in body and b"RTP/SAVP" in body
        assert (b"a=3ge2ae:requested" in body) is mediasec
        assert b_offer(call).media[0].proto == "RTP/SAVP"
