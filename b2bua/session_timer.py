"""Session timers (RFC 4028), sans-I/O: parse, negotiate, and say when to act.

Theory of operation: a SIP session has no built-in liveness check, so a dialog whose
far end vanished (a crash, a lost BYE) can hold a call, its relay ports and a
recording open for ever. RFC 4028 lets the two sides agree on a session interval:
the *refresher* re-INVITEs (or UPDATEs) before half of it has passed, and the other
side sends BYE if no refresh came before it ran out.

This module is the decision logic only, for a call to use on each leg:

- `parse_session_expires` / `parse_min_se` read the headers (bad values are a
  SipParseError with status 400);
- `uas_negotiate(request, ...)` is our UAS answer to an INVITE (leg A, or a re-INVITE):
  an interval below our minimum is refused with 422 and `Min-SE` (RFC 4028 section 9,
  a RequestRejectedError carrying the header); otherwise it returns the `SessionTimer`
  agreed: interval, who refreshes, and the headers for our 2xx (`Session-Expires`,
  plus `Require: timer` when the UAC refreshes or supports timers, section 9);
- `uac_headers` and `uac_negotiate(response, ...)` are the same for leg B, where we
  send the INVITE: what to ask for, and what the 2xx (or its absence of
  Session-Expires) means; `retry_interval_after_422` reads the 422's Min-SE;
- `SessionTimer.refresh_at(start)` and `.expires_at(start)` give the deadlines:
  the refresher refreshes at half the interval (section 10 recommends it), the other
  side ends the session at `interval - min(32, interval / 3)` (section 10) when no
  refresh came.

Nothing here reads a clock: `start` is the `now` of the 2xx that (re)started the timer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from b2bua.errors import SipParseError
from b2bua.message import Request, Response
from b2bua.validate import RequestRejectedError

Refresher = Literal["uac", "uas"]

ABSOLUTE_MIN_SE = 90  # RFC 4028 section 4: no Min-SE may be below 90 seconds
DEFAULT_MIN_SE = 90
DEFAULT_INTERVAL = 1800  # RFC 4028 section 4 recommends 30 minutes
MAX_DELTA = 2**32 - 1  # delta-seconds larger than this are capped (RFC 3261 25.1)


@dataclass(frozen=True)
class SessionExpires:
    interval: int
    refresher: Refresher | None = None

    def __str__(self) -> str:
        return str(self.interval) + (f";refresher={self.refresher}" if self.refresher else "")


@dataclass(frozen=True)
class SessionTimer:
    """An agreed session timer on one leg, seen from our side of it."""

    interval: int
    refresher: Refresher
    we_are: Refresher  # our role on this leg: "uas" for leg A, "uac" for leg B

    @property
    def we_refresh(self) -> bool:
        return self.refresher == self.we_are

    def refresh_at(self, start: float) -> float:
        """When we refresh (only meaningful if `we_refresh`): half the interval."""
        return start + self.interval / 2

    def expires_at(self, start: float) -> float:
        """When the non-refresher gives up and sends BYE without a refresh."""
        return start + self.interval - min(32.0, self.interval / 3)

    def deadline(self, start: float) -> float:
        """Our next action: refresh when we refresh, else the BYE."""
        return self.refresh_at(start) if self.we_refresh else self.expires_at(start)

    def response_headers(self, *, uac_supports: bool = False) -> tuple[tuple[str, str], ...]:
        """Headers for our 2xx as UAS: Session-Expires, and Require: timer when the UAC
        must refresh, or when we refresh and the UAC supports timers (RFC 4028 section 9:
        a MUST and a SHOULD; it makes the UAC act on the timer we chose)."""
        headers = [("Session-Expires", str(SessionExpires(self.interval, self.refresher)))]
        if self.refresher == "uac" or uac_supports:
            headers.append(("Require", "timer"))
        return tuple(headers)


def _delta_seconds(text: str, what: str) -> int:
    text = text.strip()
    if not text or not text.isascii() or not text.isdigit():
        raise SipParseError(f"{what}: not delta-seconds: {text!r}")
    return min(int(text[:12]), MAX_DELTA)  # a huge number is capped, never a crash


def parse_session_expires(value: str) -> SessionExpires:
    """ "1800;refresher=uac" -> SessionExpires(1800, "uac"); unknown params are ignored."""
    head, *params = value.split(";")
    interval = _delta_seconds(head, "Session-Expires")
    if interval == 0:
        raise SipParseError("Session-Expires: must not be 0")
    refresher: Refresher | None = None
    for param in params:
        name, _, raw = param.partition("=")
        if name.strip().lower() != "refresher":
            continue
        role = raw.strip().lower()
        if role == "uac":
            refresher = "uac"
        elif role == "uas":
            refresher = "uas"
        else:
            raise SipParseError(f"Session-Expires: refresher must be uac or uas: {raw!r}")
    return SessionExpires(interval, refresher)


def parse_min_se(value: str) -> int:
    """ "90" -> 90 (extension params after ';' are ignored)."""
    return _delta_seconds(value.split(";", 1)[0], "Min-SE")


def _option_tags(message: Request | Response, header: str) -> set[str]:
    return {
        tag.strip().lower()
        for value in message.headers.get_all(header)
        for tag in value.split(",")
        if tag.strip()
    }


def supports_timer(message: Request | Response) -> bool:
    return "timer" in _option_tags(message, "Supported") | _option_tags(message, "Require")


def uas_negotiate(
    request: Request,
    *,
    min_se: int = DEFAULT_MIN_SE,
    interval: int = DEFAULT_INTERVAL,
    refresher: Refresher = "uas",
) -> SessionTimer | None:
    """Our answer, as UAS, to the session timer an INVITE asks for.

    Raises RequestRejectedError 422 (with our Min-SE) when its Session-Expires is below
    `min_se`. Returns None when the request has no Session-Expires and the UAC does not
    support timers either (then no timer runs on this leg: RFC 4028 lets the UAS add
    one only as refresher, and we leave that to media inactivity instead). `refresher`
    is our choice when the request leaves it open and the UAC could refresh."""
    header = request.headers.get("Session-Expires")
    min_header = request.headers.get("Min-SE")
    their_min = parse_min_se(min_header) if min_header is not None else ABSOLUTE_MIN_SE
    uac_supports = supports_timer(request)
    floor = max(min_se, their_min, ABSOLUTE_MIN_SE)
    if header is None:
        if not uac_supports:
            return None
        # Section 9: the UAS may start a timer the UAC supports but did not ask for.
        return SessionTimer(max(interval, floor), refresher, "uas")
    asked = parse_session_expires(header)
    if asked.interval < min_se:
        raise RequestRejectedError(
            422,
            "Session Interval Too Small",
            f"Session-Expires {asked.interval} below our minimum {min_se}",
            headers=(("Min-SE", str(min_se)),),
        )
    # We may shorten the interval toward ours, but never below either side's minimum.
    agreed = max(min(asked.interval, interval), floor)
    if not uac_supports:
        chosen: Refresher = "uas"  # a UAC without timer support can not refresh
    else:
        chosen = asked.refresher or refresher
    return SessionTimer(agreed, chosen, "uas")


def uac_headers(
    *, min_se: int = DEFAULT_MIN_SE, interval: int = DEFAULT_INTERVAL
) -> tuple[tuple[str, str], ...]:
    """What our INVITE (leg B) carries: we support timers and propose an interval; the
    UAS picks the refresher (section 7.1 allows leaving it open)."""
    return (
        ("Supported", "timer"),
        ("Session-Expires", str(max(interval, min_se))),
        ("Min-SE", str(min_se)),
    )


def uac_negotiate(response: Response) -> SessionTimer | None:
    """The timer a 2xx to our INVITE agreed to, or None when the UAS left it out (and
    no proxy added it): then no session timer runs on that leg (section 7.2)."""
    header = response.headers.get("Session-Expires")
    if header is None:
        return None
    agreed = parse_session_expires(header)
    # Section 7.2: a 2xx without a refresher leaves the refreshing to us.
    return SessionTimer(agreed.interval, agreed.refresher or "uac", "uac")


def retry_interval_after_422(response: Response, asked: int) -> int | None:
    """The interval to ask for after a 422 (its Min-SE), or None when the 422 is
    unusable (no Min-SE, or not larger than what we asked: retrying would loop)."""
    value = response.headers.get("Min-SE")
    if value is None:
        return None
    try:
        wanted = parse_min_se(value)
    except SipParseError:
        return None
    return wanted if wanted > asked else None
