"""RFC 4475 torture messages, table-driven over tests/data/rfc4475/index.json.

Valid messages parse and round-trip; invalid ones raise SipError (never anything else)
from parse_message or from validate.check_request, with a status the RFC accepts.
Behaviour beyond a parser/validator (e.g. badbranch's transaction matching, which
response a registrar or proxy sends) belongs to the transaction and application tests.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from b2bua.errors import SipError
from b2bua.message import Request, Response, parse_message
from b2bua.validate import check_request

DATA = Path(__file__).parent / "data" / "rfc4475"
INDEX: dict[str, dict[str, Any]] = json.loads((DATA / "index.json").read_text())


def status_ok(status: int, patterns: list[str]) -> bool:
    """Does ``status`` fit the patterns? Positive ones ("400", "4xx", "*") are
    alternatives, negative ones ("!2xx") must all hold; no pattern = no answer."""

    def match(pattern: str) -> bool:
        if pattern == "*":
            return True
        if pattern.endswith("xx"):
            return str(status)[0] == pattern[0]
        return str(status) == pattern

    positive = [p for p in patterns if not p.startswith("!")]
    negative = [p[1:] for p in patterns if p.startswith("!")]
    if not patterns:
        return False
    return (not positive or any(map(match, positive))) and not any(map(match, negative))


def load(name: str) -> bytes:
    return (DATA / f"{name}.dat").read_bytes()


def outcome(data: bytes) -> tuple[Request | Response | None, SipError | None]:
    """Parse, then apply the UAS checks to requests; the first SipError wins."""
    try:
        msg = parse_message(data)
    except SipError as exc:
        return None, exc
    if isinstance(msg, Request):
        try:
            check_request(msg)
        except SipError as exc:
            return msg, exc
    return msg, None


def test_index_complete() -> None:
    assert len(INDEX) == 49
    assert {p.stem for p in DATA.glob("*.dat")} == set(INDEX)


def test_status_patterns() -> None:
    assert status_ok(400, ["400"])
    assert not status_ok(400, ["!400"])
    assert status_ok(420, ["4xx", "!400"])
    assert not status_ok(200, ["!2xx"])
    assert status_ok(505, ["505", "400"])
    assert not status_ok(404, ["505", "400"])
    assert not status_ok(400, [])
    assert status_ok(999, ["*"])


VALID = [k for k, v in INDEX.items() if v["well_formed"]]
INVALID = [k for k, v in INDEX.items() if not v["well_formed"]]


@pytest.mark.parametrize("name", VALID)
def test_valid_parses_and_round_trips(name: str) -> None:
    msg = parse_message(load(name))
    again = parse_message(msg.to_bytes())
    assert again == msg
    assert again.to_bytes() == msg.to_bytes()
    entry = INDEX[name]
    assert isinstance(msg, Request) == (entry["message"] == "request")
    if "cseq_method" in entry:
        assert msg.cseq[1] == entry["cseq_method"]


@pytest.mark.parametrize("name", VALID)
def test_valid_answer_matches_rfc(name: str) -> None:
    """A validator rejection must be an answer the RFC allows; where the RFC forbids
    every 2xx, the validator itself has to reject (routing can not fix it later)."""
    entry = INDEX[name]
    msg, err = outcome(load(name))
    assert msg is not None
    patterns: list[str] = entry["ok"]
    if err is not None:
        assert patterns, f"{name}: no answer expected, got {err.status}"
        assert status_ok(err.status, patterns), f"{name}: {err.status} vs {patterns}"
    elif patterns:
        assert status_ok(200, patterns), f"{name}: accepted, but RFC wants {patterns}"


@pytest.mark.parametrize("name", INVALID)
def test_invalid_rejected_with_expected_status(name: str) -> None:
    entry = INDEX[name]
    msg, err = outcome(load(name))
    if entry["kind"] == "transaction":
        # badbranch: "z9hG4bK" alone is a syntactically fine token; the transaction layer
        # treats it as an RFC 2543 branch. The parser must simply not break.
        assert msg is not None
        assert err is None
        assert isinstance(msg, Request)
        assert msg.branch == "z9hG4bK"
        return
    assert err is not None, f"{name} was accepted"
    if entry["ok"]:
        assert status_ok(err.status, entry["ok"]), f"{name}: {err.status} vs {entry['ok']}"
        if "prefer" in entry and name != "mismatch02":
            assert err.status in entry["prefer"]
    else:
        # A broken response: dropped (parse fails), never answered.
        assert entry["message"] == "response"


def test_specific_details() -> None:
    wsinv = parse_message(load("wsinv"))
    assert isinstance(wsinv, Request)
    assert wsinv.top_via.host == "192.0.2.2"  # folded across three lines
    assert wsinv.from_addr.display_name == 'J Rosenberg \\"'
    assert wsinv.from_addr.tag == "98asjd8"
    assert wsinv.to_addr.tag == "1918181833n"
    assert wsinv.cseq == (9, "INVITE")
    assert wsinv.max_forwards == 68

    dbl = parse_message(load("dblreq"))
    assert isinstance(dbl, Request)
    assert dbl.method == "REGISTER"
    assert dbl.body == b""

    longreq = parse_message(load("longreq"))
    assert len(longreq.vias) == 34

    esc02 = parse_message(load("esc02"))
    assert isinstance(esc02, Request)
    assert esc02.method == "RE%47IST%45R"
    assert len(esc02.contacts) == 2  # C%6Fntact is another header
    assert esc02.to_addr.display_name == "%Z%45"

    semi = parse_message(load("semiuri"))
    assert isinstance(semi, Request)
    assert semi.uri.user == "user;par=u%40example.net"
    assert semi.uri.host == "example.com"
    assert len(semi.headers.get_all("Accept")) == 6

    escnull = parse_message(load("escnull"))
    assert isinstance(escnull, Request)
    assert escnull.to_addr.uri.user == "null-%00-null"

    mpart = parse_message(load("mpart01"))
    assert b"\x00" in mpart.body

    noreason = parse_message(load("noreason"))
    assert isinstance(noreason, Response)
    assert noreason.reason == ""
    assert noreason.status == 100

    unreason = parse_message(load("unreason"))
    assert isinstance(unreason, Response)
    assert unreason.status == 200
    assert not unreason.reason.isascii()

    unk = parse_message(load("unkscm"))
    assert isinstance(unk, Request)
    assert unk.uri.scheme == "nobodyknowsthisscheme"
    assert unk.uri.opaque == "totallyopaquecontent"

    inv2543 = parse_message(load("inv2543"))
    assert inv2543.branch is None
    assert inv2543.from_addr.tag is None
    assert inv2543.body.startswith(b"v=0")

    transports = parse_message(load("transports"))
    assert [v.transport for v in transports.vias] == ["UDP", "SCTP", "TLS", "UNKNOWN", "TCP"]

    regescrt = parse_message(load("regescrt"))
    assert regescrt.contacts[0].uri.headers == (("Route", "%3Csip:sip.example.com%3E"),)


def test_bext01_lists_unsupported() -> None:
    msg = parse_message(load("bext01"))
    assert isinstance(msg, Request)
    with pytest.raises(SipError) as info:
        check_request(msg)
    assert info.value.status == 420
    headers = dict(getattr(info.value, "headers", ()))
    assert headers["Unsupported"] == "nothingSupportsThis, nothingSupportsThisEither"
    check_request(
        msg,
        supported_extensions=frozenset({"nothingsupportsthis", "NothingSupportsThisEither"}),
    )


def test_zeromf_and_invut() -> None:
    zero = parse_message(load("zeromf"))
    assert isinstance(zero, Request)
    assert zero.max_forwards == 0
    with pytest.raises(SipError, match="483"):
        check_request(zero)
    invut = parse_message(load("invut"))
    assert isinstance(invut, Request)
    with pytest.raises(SipError, match="415"):
        check_request(invut)
