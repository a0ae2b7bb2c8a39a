"""SIP INFO DTMF bodies: application/dtmf-relay and application/dtmf."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from b2bua.errors import SipError
from b2bua.info_dtmf import ACCEPT_HEADER, InfoDtmf, parse_info_dtmf

RELAY = "application/dtmf-relay"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"Signal=1\r\nDuration=160\r\n", InfoDtmf("1", 160)),
        (b"Signal=1\r\nDuration=160", InfoDtmf("1", 160)),
        (b"Signal= 5\nDuration= 250\n", InfoDtmf("5", 250)),
        (b"signal=*\r\n", InfoDtmf("*", None)),
        (b"SIGNAL=#\r\nDURATION=100\r\n", InfoDtmf("#", 100)),
        (b"Signal=a\r\n", InfoDtmf("A", None)),
        (b"Signal=10\r\nDuration=100\r\n", InfoDtmf("*", 100)),  # event code for *
        (b"Signal=11\r\n", InfoDtmf("#", None)),
        (b"Signal=12\r\n", InfoDtmf("A", None)),  # codes 10-15 per RFC 4733 table 3
        (b"\r\nSignal=0\r\n\r\n", InfoDtmf("0", None)),
    ],
)
def test_dtmf_relay(body: bytes, expected: InfoDtmf) -> None:
    got = parse_info_dtmf(RELAY, body)
    assert got == expected
    assert got is not None and got.method == "info"


@pytest.mark.parametrize(
    ("content_type", "body", "digit"),
    [
        ("application/dtmf", b"1", "1"),
        ("application/dtmf", b"#\r\n", "#"),
        ("Application/DTMF", b" 9 ", "9"),
        ("application/dtmf", b"11", "#"),
        ("application/dtmf-relay; charset=us-ascii", b"Signal=2", "2"),
    ],
)
def test_dtmf_and_content_type_parameters(content_type: str, body: bytes, digit: str) -> None:
    got = parse_info_dtmf(content_type, body)
    assert got is not None and got.digit == digit


def test_hook_flash_is_well_formed_but_not_a_digit() -> None:
    assert parse_info_dtmf(RELAY, b"Signal=hf\r\nDuration=100\r\n") is None
    assert parse_info_dtmf("application/dtmf", b"16") is None


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/sdp", ""])
def test_other_content_types_are_415(content_type: str | None) -> None:
    with pytest.raises(SipError) as info:
        parse_info_dtmf(content_type, b"Signal=1")
    assert info.value.status == 415
    assert "application/dtmf-relay" in ACCEPT_HEADER


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        (RELAY, b""),
        (RELAY, b"Duration=160\r\n"),
        (RELAY, b"Signal=\r\n"),
        (RELAY, b"Signal=17\r\n"),  # not an event code of a digit
        (RELAY, b"Signal=99\r\n"),
        (RELAY, b"Signal=E\r\n"),
        (RELAY, b"Signal 1\r\n"),
        (RELAY, b"Signal=1\r\nSignal=2\r\n"),
        (RELAY, b"Signal=1\r\nDuration=-5\r\n"),
        (RELAY, b"Signal=1\r\nDuration=lots\r\n"),
        (RELAY, b"Signal=\xc3\xa9\r\n"),
        (RELAY, b"Signal=1\r\n" + b"X=y\r\n" * 200),
        ("application/dtmf", b""),
        ("application/dtmf", b"123"),
        ("application/dtmf", b"Signal=1"),
    ],
)
def test_malformed_bodies_are_400(content_type: str, body: bytes) -> None:
    with pytest.raises(SipError) as info:
        parse_info_dtmf(content_type, body)
    assert info.value.status == 400


@given(st.binary(max_size=64), st.sampled_from([RELAY, "application/dtmf", "x/y", None]))
def test_any_input_gives_a_digit_none_or_sip_error(body: bytes, content_type: str | None) -> None:
    status = 0
    got: InfoDtmf | None = None
    try:
        got = parse_info_dtmf(content_type, body)
    except SipError as exc:
        status = exc.status
    assert status in (0, 400, 415)
    assert got is None or got.digit in "0123456789*#ABCD"
