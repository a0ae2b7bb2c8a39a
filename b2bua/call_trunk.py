"""A call's INVITE toward the trunk tried again: digest credentials for the carrier's
challenge, and the next trunk server after a timeout, 408 or 503.

Theory of operation: both resend B's INVITE as a new transaction (new branch, next
CSeq, RFC 3261 section 8.1.3.5) with the same body. A challenge is answered once per
nonce (a second challenge with the same nonce means the credentials are wrong); an
outbound INVITE goes at most once to the next live trunk server (trunk_monitor.py).
Functions of the call, as in reinvite.py; no I/O.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import replace
from typing import TYPE_CHECKING

from b2bua.auth import answer_challenge, parse_auth_params, pick_challenge
from b2bua.call_state import CallState, Side
from b2bua.errors import SipError
from b2bua.message import Request, Response

if TYPE_CHECKING:  # call.py imports this module
    from b2bua.call import Call

log = logging.getLogger("b2bua.call")


def retry_with_credentials(call: Call, response: Response, now: float) -> bool:
    """Answers the trunk's digest challenge once per nonce (a second challenge with
    the same nonce means the credentials are wrong: then it is a failure)."""
    if call.target.credentials is None or call.b_invite is None:
        return False
    if call.state not in (CallState.CALLING, CallState.EARLY):
        return False
    header = "WWW-Authenticate" if response.status == 401 else "Proxy-Authenticate"
    challenge = pick_challenge(response.headers.get_all(header))
    if challenge is None:
        return False
    try:
        _, params = parse_auth_params(challenge)
    except SipError:
        return False
    nonce = params.get("nonce")
    if nonce is None or nonce in call.b_nonces_answered:
        return False
    call.b_nonces_answered.add(nonce)
    user, password = call.target.credentials
    value = answer_challenge(
        challenge,
        method="INVITE",
        uri=str(call.b_invite.uri),
        username=user,
        password=password,
        cnonce=secrets.token_hex(8),
    )
    name = "Authorization" if response.status == 401 else "Proxy-Authorization"
    resend_b_invite(call, now, (name, value))
    return True


def next_trunk(call: Call, status: int | None, now: float) -> bool:
    """An outbound INVITE that timed out or got 408/503 goes once to the next live
    trunk server (trunk_monitor.py); False when there is none or it was tried."""
    if call.direction != "outbound" or call.state is not CallState.CALLING:
        return False
    if call.b_trunk_retried or call.b_invite is None:
        return False
    old = call.target.destination
    alternative = call.services.trunk_alternative([old], status, now)
    if alternative is None:
        return False
    call.b_trunk_retried = True
    uri = call.target.uri
    if uri.host.strip("[]") == old[0]:
        uri = replace(uri, host=alternative[0], port=alternative[1])
    call.target = replace(call.target, uri=uri, destination=alternative)
    call.b_invite = replace(call.b_invite, uri=uri)
    log.info("event=trunk_failover call=%s to=%s:%d", call.id, *alternative)
    resend_b_invite(call, now)
    return True


def resend_b_invite(call: Call, now: float, *extra: tuple[str, str]) -> None:
    """B's INVITE again as a new transaction: new branch, next CSeq (RFC 3261 8.1.3.5)."""
    assert call.b_invite is not None
    headers = call.b_invite.headers.set("Via", str(call.via(call.target.transport))).set(
        "CSeq", f"{call.b_invite.cseq[0] + 1} INVITE"
    )
    for name, value in extra:
        headers = headers.set(name, value)
    call.b_invite = Request("INVITE", call.b_invite.uri, headers, call.b_invite.body)
    call.b.peer = call.target.destination
    call.b_invite_key = call.services.send_request(
        call, Side.B, call.b_invite, call.target.destination, call.target.transport, now
    )
