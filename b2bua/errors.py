"""Errors that carry the SIP status to answer with.

Protocol code raises these for bad input from the network; the adapters turn them into
a response (when one can be sent) or a counted drop. Nothing else may escape a parser.
"""

from __future__ import annotations


class SipError(Exception):
    """A protocol error with the SIP status code and reason phrase to answer with."""

    def __init__(self, status: int, reason: str, detail: str = "") -> None:
        super().__init__(f"{status} {reason}" + (f": {detail}" if detail else ""))
        self.status = status
        self.reason = reason
        self.detail = detail


class SipParseError(SipError):
    """Bytes that are not a well-formed SIP message (answer 400 when possible)."""

    def __init__(self, detail: str, status: int = 400, reason: str = "Bad Request") -> None:
        super().__init__(status, reason, detail)
