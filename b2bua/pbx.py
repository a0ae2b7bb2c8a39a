"""PBX mode: the office side is one existing PBX instead of individual phones.

Theory of operation: an `[[extension]]` with `pbx = true` is the account of a whole PBX,
reached like any extension (a static `contact`, or the PBX registering). Two things
differ from a desk phone:

- Inbound calls routed to the PBX account keep the number the caller dialled: it goes
  into the Request-URI user and the To user toward the PBX (`keep_dialled`), so the PBX
  can route the call on to its own extensions (one DID per employee, a switchboard ...).
- Calls from the PBX (authenticated with the account's digest credentials) carry the
  PBX's own extension of the caller in P-Asserted-Identity (RFC 3325), else in From
  (`office_user`). That number names the office party in the catalog; when it is also a
  configured (non-PBX) `[[extension]]`, that extension's rules apply to the call
  (toll-fraud limits, employee consent, SRTP), so rules stay per employee
  (`acting_extension`). The PBX authenticated, so its assertion is trusted as a proxy's
  would be (RFC 3325 trust domain); a number it names that is not configured keeps the
  PBX account's own rules.

Pure functions without I/O or clock.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from b2bua.config import Config
from b2bua.errors import SipError
from b2bua.headers import parse_address
from b2bua.message import Request
from b2bua.uri import unescape

if TYPE_CHECKING:  # call.py imports b2bua.hunt, switch.py this module
    from b2bua.call import Target

__all__ = ["acting_extension", "is_pbx", "keep_dialled", "office_user"]


def is_pbx(config: Config, number: str | None) -> bool:
    """True when `number` is the account of a PBX (extension.pbx = true)."""
    ext = config.extension(number) if number else None
    return ext is not None and ext.pbx


def office_user(request: Request) -> str | None:
    """The PBX's extension of the caller: the first P-Asserted-Identity with a user
    part (sip: user or tel: number), else the From user; None when neither has one."""
    for value in request.headers.get_all("P-Asserted-Identity"):
        try:
            uri = parse_address(value).uri
        except SipError:
            continue
        if uri.is_sip and uri.user:
            return unescape(uri.user)
        if uri.scheme == "tel" and uri.opaque:
            return unescape(uri.opaque.split(";", 1)[0])
    try:
        user = request.from_addr.uri.user
    except SipError:
        return None
    return unescape(user) if user else None


def acting_extension(config: Config, account: str, request: Request) -> tuple[str, str | None]:
    """For a call from PBX `account`: (the extension whose rules apply, the office user).

    The office user's own `[[extension]]` when it is a configured non-PBX one, else the
    PBX account; the office user is what the catalog shows (None: not named)."""
    user = office_user(request)
    ext = config.extension(user) if user else None
    if ext is not None and not ext.pbx:
        return ext.number, user
    return account, user


def keep_dialled(target: Target, dialled: str) -> Target:
    """An inbound call to the PBX: the dialled number in the Request-URI and To."""
    if not dialled or not target.uri.is_sip:
        return target
    return replace(target, uri=replace(target.uri, user=dialled), to_user=dialled)
