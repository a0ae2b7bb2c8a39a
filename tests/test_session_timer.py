"""Session timers (RFC 4028) as b2bua/session_timer.py decides them."""

from __future__ import annotations

import pytest

from b2bua.errors import SipParseError
from b2bua.message import Request, Response, parse_message
from b2bua.session_timer import (
    SessionExpires,
    SessionTimer,
    parse_min_se,
    parse_session_expires,
    retry_interval_after_422,
    uac_headers,
    uac_negotiate,
    uas_negotiate,
)
from b2bua.validate import RequestRejectedError


def _invite(*extra: str) -> Request:
    lines = [
        "INVITE sip:1000@127.0.0.1 SIP/2.0",
        "Via: SIP/2.0/UDP 127.0.0.2:5080;branch=z9hG4bKst1",
        "From: <sip:+4930111@127.0.0.2>;tag=a",
        "To: <sip:1000@127.0.0.1>",
        "Call-ID: st-1",
        "CSeq: 1 INVITE",
        "Max-Forwards: 70",
        *extra,
        "Content-Length: 0",
        "",
        "",
    ]
    message = parse_message("\r\n".join(lines).encode())
    assert isinstance(message, Request)
    return message


def _ok(*extra: str) -> Response:
    lines = [
        "SIP/2.0 200 OK",
        "Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKst2",
        "From: <sip:1000@127.0.0.1>;tag=b",
        "To: <sip:+4930111@127.0.0.2>;tag=c",
        "Call-ID: st-2",
        "CSeq: 1 INVITE",
        *extra,
        "Content-Length: 0",
        "",
        "",
    ]
    message = parse_message("\r\n".join(lines).encode())
    assert isinstance(message, Response)
    return message


def test_parse_session_expires_and_min_se() -> None:
    assert parse_session_expires("1800") == SessionExpires(1800, None)
    assert parse_session_expires("4000 ; Refresher = UAC;x=1") == SessionExpires(4000, "uac")
    assert parse_session_expires("90;refresher=uas") == SessionExpires(90, "uas")
    assert str(SessionExpires(1800, "uas")) == "1800;refresher=uas"
    assert parse_min_se("120;ext=1") == 120
    assert parse_session_expires("99999999999999999999").interval == 2**32 - 1


@pytest.mark.parametrize("bad", ["", "abc", "-5", "0", "1800;refresher=both", "١٢٣"])
def test_bad_session_expires_is_a_400(bad: str) -> None:
    with pytest.raises(SipParseError) as info:
        parse_session_expires(bad)
    assert info.value.status == 400


def test_too_small_interval_gets_422_with_our_min_se() -> None:
    with pytest.raises(RequestRejectedError) as info:
        uas_negotiate(_invite("Supported: timer", "Session-Expires: 60"), min_se=90)
    assert info.value.status == 422
    assert info.value.headers == (("Min-SE", "90"),)
    with pytest.raises(RequestRejectedError):
        uas_negotiate(_invite("Session-Expires: 100"), min_se=120)


def test_uac_choice_of_refresher_is_kept() -> None:
    timer = uas_negotiate(_invite("Supported: timer", "Session-Expires: 600;refresher=uac"))
    assert timer == SessionTimer(600, "uac", "uas")
    assert not timer.we_refresh
    # The UAC refreshes: our 2xx must require timer (RFC 4028 section 9).
    assert timer.response_headers() == (
        ("Session-Expires", "600;refresher=uac"),
        ("Require", "timer"),
    )
    # 600 - min(32, 200): BYE 32 s before the end when no refresh came.
    assert timer.expires_at(1000.0) == 1000.0 + 568
    assert timer.deadline(1000.0) == timer.expires_at(1000.0)


def test_open_refresher_is_ours_and_we_refresh_at_half() -> None:
    timer = uas_negotiate(_invite("Supported: timer", "Session-Expires: 1200"))
    assert timer is not None
    assert (timer.refresher, timer.we_refresh) == ("uas", True)
    assert timer.refresh_at(10.0) == 610.0
    assert timer.deadline(10.0) == 610.0
    assert timer.response_headers() == (("Session-Expires", "1200;refresher=uas"),)


def test_uac_without_timer_support_can_not_refresh() -> None:
    # A proxy added Session-Expires; the UAC itself does not support timers.
    timer = uas_negotiate(_invite("Session-Expires: 900;refresher=uac"))
    assert timer is not None
    assert timer.refresher == "uas"
    assert ("Require", "timer") not in timer.response_headers()


def test_interval_is_shortened_to_ours_but_not_below_their_min_se() -> None:
    timer = uas_negotiate(_invite("Supported: timer", "Session-Expires: 7200"), interval=1800)
    assert timer is not None and timer.interval == 1800
    timer = uas_negotiate(
        _invite("Supported: timer", "Session-Expires: 7200", "Min-SE: 3600"), interval=1800
    )
    assert timer is not None and timer.interval == 3600


def test_no_session_expires() -> None:
    assert uas_negotiate(_invite()) is None
    timer = uas_negotiate(_invite("Supported: 100rel, timer"), interval=1800)
    assert timer == SessionTimer(1800, "uas", "uas")


def test_short_third_of_the_interval_before_expiry() -> None:
    # For 90 s, min(32, 30) = 30: BYE after 60 s without refresh.
    assert SessionTimer(90, "uac", "uas").expires_at(0.0) == 60.0


def test_uac_side() -> None:
    assert uac_headers(min_se=120, interval=1800) == (
        ("Supported", "timer"),
        ("Session-Expires", "1800"),
        ("Min-SE", "120"),
    )
    assert uac_negotiate(_ok()) is None
    timer = uac_negotiate(_ok("Session-Expires: 1800;refresher=uas", "Require: timer"))
    assert timer == SessionTimer(1800, "uas", "uac")
    assert not timer.we_refresh
    timer = uac_negotiate(_ok("Session-Expires: 1800"))
    assert timer is not None and timer.we_refresh  # left open: the UAC refreshes


def test_retry_after_422_uses_its_min_se_once() -> None:
    assert retry_interval_after_422(_ok("Min-SE: 1200"), asked=90) == 1200
    assert retry_interval_after_422(_ok("Min-SE: 90"), asked=90) is None  # would loop
    assert retry_interval_after_422(_ok(), asked=90) is None
    assert retry_interval_after_422(_ok("Min-SE: x"), asked=90) is None
