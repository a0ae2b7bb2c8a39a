"""UAS-level checks of a parsed request (RFC 3261 8.2.1-8.2.3), beyond syntax.

The parser has already guaranteed the syntax; these are decisions a UAS core makes
before it acts on a request, in the RFC's order: Request-URI scheme (416), hop count
(483), Require (420), body type and encoding (415), Accept (406). A rejection raises
:class:`RequestRejectedError`, a SipError that also carries the header fields its response
must hold (Unsupported, Accept, Accept-Encoding).
"""

from __future__ import annotations

from b2bua.errors import SipError
from b2bua.message import Request

DEFAULT_CONTENT_TYPES = frozenset({"application/sdp"})
DEFAULT_SCHEMES = frozenset({"sip", "sips", "tel"})


class RequestRejectedError(SipError):
    """A request the UAS refuses; ``headers`` go into the error response."""

    def __init__(
        self, status: int, reason: str, detail: str = "", headers: tuple[tuple[str, str], ...] = ()
    ) -> None:
        super().__init__(status, reason, detail)
        self.headers = headers


def _media_type(value: str) -> str:
    return value.split(";", 1)[0].replace(" ", "").replace("\t", "").lower()


def _accepts(accept: tuple[str, ...], offered: frozenset[str]) -> bool:
    for item in accept:
        media = _media_type(item)
        if media == "*/*" or media in offered:
            return True
        if media.endswith("/*") and any(o.startswith(media[:-1]) for o in offered):
            return True
    return False


def check_request(
    req: Request,
    *,
    supported_extensions: frozenset[str] = frozenset(),
    allowed_content_types: frozenset[str] = DEFAULT_CONTENT_TYPES,
    supported_schemes: frozenset[str] = DEFAULT_SCHEMES,
) -> None:
    """Raise RequestRejectedError (a SipError) when a UAS must refuse ``req``.

    ACK is never answered, so it is never rejected here. Require is ignored in CANCEL
    (RFC 3261 8.2.2.3). Accept is judged for INVITE only, whose answer carries SDP.
    """
    if req.method == "ACK":
        return
    if req.uri.scheme not in supported_schemes:
        raise RequestRejectedError(416, "Unsupported URI Scheme", req.uri.scheme)
    if req.max_forwards == 0:
        raise RequestRejectedError(483, "Too Many Hops")
    if req.method != "CANCEL":
        supported = {ext.lower() for ext in supported_extensions}
        unknown = tuple(
            opt for opt in req.headers.get_all("Require") if opt.lower() not in supported
        )
        if unknown:
            raise RequestRejectedError(
                420, "Bad Extension", ", ".join(unknown), (("Unsupported", ", ".join(unknown)),)
            )
    allowed = frozenset(t.lower() for t in allowed_content_types)
    accept_hdr = (("Accept", ", ".join(sorted(allowed))),)
    ctype = req.headers.get("Content-Type")
    if req.body and (ctype is None or _media_type(ctype) not in allowed):
        raise RequestRejectedError(
            415, "Unsupported Media Type", ctype or "no Content-Type", accept_hdr
        )
    encodings = [e.lower() for e in req.headers.get_all("Content-Encoding")]
    if any(e != "identity" for e in encodings):
        raise RequestRejectedError(
            415,
            "Unsupported Media Type",
            "Content-Encoding " + ", ".join(encodings),
            (("Accept-Encoding", "identity"),),
        )
    accept = req.headers.get_all("Accept")
    if req.method == "INVITE" and req.headers.has("Accept") and not _accepts(accept, allowed):
        raise RequestRejectedError(406, "Not Acceptable", "Accept excludes our bodies", accept_hdr)
