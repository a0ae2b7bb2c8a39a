"""The switch's running-call count per caller address (the guard's per-source call
limit): kept as calls start and end, never drifting (sans-I/O, no sockets)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from b2bua.auth import NonceFactory
from b2bua.config import parse_config
from b2bua.message import Request, make_response, parse_message
from b2bua.registrar import Registrar
from b2bua.switch import Switch
from tests.test_srtp_negotiation import FakeMedia

TRUNK = ("127.0.0.2", 5080)
SDP = (
    b"v=0\r\no=t 1 1 IN IP4 127.0.0.2\r\ns=-\r\nc=IN IP4 127.0.0.2\r\nt=0 0\r\n"
    b"m=audio 40000 RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\n"
)


def switch(tmp_path: Path) -> Switch:
    data: dict[str, Any] = {
        "sip": {"listen": "127.0.0.1:5060"},
        "trunk": {"host": "127.0.0.2:5080", "inbound_extension": "1000"},
        "extension": [{"number": "1000", "password": "pw", "contact": "sip:1000@127.0.0.3"}],
        "recording": {"mode": "off"},
    }
    config = parse_config(data, tmp_path / "office.toml")
    registrar = Registrar(config.extensions, realm="b2bua", nonces=NonceFactory(b"k" * 32, 300.0))
    return Switch(config, registrar, FakeMedia(), ("127.0.0.1", 5060))  # type: ignore[arg-type]


def invite(n: int) -> bytes:
    return (
        f"INVITE sip:1000@127.0.0.1 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.2:5080;branch=z9hG4bKsrc{n}\r\n"
        f"Max-Forwards: 70\r\nFrom: <sip:+4930{n}@127.0.0.2>;tag=t{n}\r\n"
        f"To: <sip:1000@127.0.0.1>\r\nCall-ID: src-{n}@trunk\r\nCSeq: 1 INVITE\r\n"
        f"Contact: <sip:trunk@127.0.0.2:5080>\r\nContent-Type: application/sdp\r\n"
        f"Content-Length: {len(SDP)}\r\n\r\n"
    ).encode() + SDP


def office_invites(sw: Switch) -> list[Request]:
    out = []
    for data, dest, _ in sw.datagrams_to_send():
        message = parse_message(data)
        if isinstance(message, Request) and message.method == "INVITE":
            assert dest == ("127.0.0.3", 5060)
            out.append(message)
    return out


def test_calls_per_source_follow_calls_starting_and_ending(tmp_path: Path) -> None:
    sw = switch(tmp_path)
    for n in range(3):
        sw.receive(parse_message(invite(n)), TRUNK, "UDP", 1.0 + n)
    assert len(sw.calls) == 3
    assert sw._calls_from == {"127.0.0.2": 3}
    sent = office_invites(sw)
    assert len(sent) == 3
    # The phone is busy for the first two: those calls end, their count goes.
    for n, request in enumerate(sent[:2]):
        sw.receive(make_response(request, 486, to_tag=f"busy{n}"), ("127.0.0.3", 5060), "UDP", 5.0)
    assert len(sw.calls) == 1
    assert sw._calls_from == {"127.0.0.2": 1}
    sw.receive(make_response(sent[2], 486, to_tag="busy2"), ("127.0.0.3", 5060), "UDP", 6.0)
    assert sw.calls == {} and sw._calls_from == {} and sw._call_source == {}
