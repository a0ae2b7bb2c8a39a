"""DTMF carried in SIP INFO bodies: ``application/dtmf-relay`` and ``application/dtmf``.

Neither format has an RFC; both are de-facto (Cisco's dtmf-relay, and the body of
draft-kaplan-dispatch-info-dtmf-package). Accepted:

* ``application/dtmf-relay``: lines ``Signal=<digit>`` (required) and ``Duration=<ms>``
  (optional), CRLF or LF separated, keys case-insensitive, blanks around ``=`` allowed.
  Some phones send the RFC 4733 event code for ``*`` and ``#`` (``Signal=10`` / ``11``);
  codes 10-15 map through the RFC 4733 table. ``Signal=hf`` / ``16`` (hook flash) is
  well-formed but not a digit: ``None``.
* ``application/dtmf``: the digit alone (``1``), or its event code.

A missing or other Content-Type is 415 (answer with ``Accept: ACCEPT_HEADER``); a body
that is not one of the above is 400. Nothing else is raised.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from b2bua.errors import SipError
from media.dtmf import EVENT_DIGITS

__all__ = ["ACCEPTED_TYPES", "ACCEPT_HEADER", "InfoDtmf", "parse_info_dtmf"]

ACCEPTED_TYPES: Final[tuple[str, ...]] = ("application/dtmf-relay", "application/dtmf")
ACCEPT_HEADER: Final[str] = ", ".join(ACCEPTED_TYPES)
_MAX_BODY: Final[int] = 1024  # a DTMF body is a few bytes; more is not one
_MAX_DURATION_MS: Final[int] = 60_000
_FLASH: Final[frozenset[str]] = frozenset({"hf", "16"})


@dataclass(frozen=True, slots=True)
class InfoDtmf:
    """One digit from a SIP INFO. ``duration_ms`` is None when the body has none."""

    digit: str
    duration_ms: int | None = None
    method: str = "info"


def _bad(detail: str) -> SipError:
    return SipError(400, "Bad Request", detail)


def _digit(text: str) -> str | None:
    """A signal value -> digit; None for hook flash; SipError 400 otherwise."""
    value = text.strip()
    if value.lower() in _FLASH:
        return None
    if len(value) == 1 and value.upper() in EVENT_DIGITS:
        return value.upper()
    if value.isdigit() and len(value) == 2 and int(value) < len(EVENT_DIGITS):
        return EVENT_DIGITS[int(value)]
    raise _bad(f"not a DTMF signal: {value[:20]!r}")


def _media_type(content_type: str | None) -> str:
    if content_type is None:
        raise SipError(415, "Unsupported Media Type", "INFO without Content-Type")
    media = content_type.split(";", 1)[0].strip().lower()
    if media not in ACCEPTED_TYPES:
        raise SipError(415, "Unsupported Media Type", f"INFO body of type {media[:60]!r}")
    return media


def _text(body: bytes) -> str:
    if len(body) > _MAX_BODY:
        raise _bad("DTMF body too long")
    try:
        return body.decode("ascii")
    except UnicodeDecodeError:
        raise _bad("DTMF body is not ASCII") from None


def parse_info_dtmf(content_type: str | None, body: bytes) -> InfoDtmf | None:
    """The digit in an INFO body; None for a well-formed non-digit (hook flash).

    Raises SipError(415) for a Content-Type other than ``ACCEPTED_TYPES`` and
    SipError(400) for a malformed body.
    """
    media = _media_type(content_type)
    text = _text(body)
    if media == "application/dtmf":
        if not text.strip():
            raise _bad("empty application/dtmf body")
        digit = _digit(text)
        return None if digit is None else InfoDtmf(digit)
    fields: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        key, sep, value = line.partition("=")
        if not sep:
            raise _bad(f"dtmf-relay line without '=': {line[:40]!r}")
        key = key.strip().lower()
        if key in fields:
            raise _bad(f"dtmf-relay key repeated: {key[:20]!r}")
        fields[key] = value.strip()
    if "signal" not in fields:
        raise _bad("dtmf-relay body without Signal")
    duration: int | None = None
    if "duration" in fields:
        value = fields["duration"]
        if not value.isdigit() or int(value) > _MAX_DURATION_MS:
            raise _bad(f"dtmf-relay Duration is not milliseconds: {value[:20]!r}")
        duration = int(value)
    digit = _digit(fields["signal"])
    return None if digit is None else InfoDtmf(digit, duration)
