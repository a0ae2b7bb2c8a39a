"""Blind transfer: an office phone hands the external party to another target (REFER).

Theory of operation (RFC 3515, the blind case of RFC 5589): the office phone sends REFER
with Refer-To in its dialog with us. We answer 202 and report progress to it with NOTIFY
(message/sipfrag: "100 Trying", then the target's final status). Meanwhile we INVITE the
target on a new leg C with a relay port of its own and an SDP offer in the external
leg's codec. When C answers, the external leg is bridged to C instead of the old office
leg, the recording's office channel follows (the recorder is told about the new leg),
C becomes the call's office leg, and the transferor's old dialog is kept only to answer
its BYE. If C fails, the transferor hears why (NOTIFY with the status) and keeps the
call. The external party's dialog and media stream never change: its SSRC, sequence and
timestamps continue (the relay rewrites them per leg).

This module holds the state of one transfer and the steps that touch the call; it does
no I/O: requests go through the call's services like every other request.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING

from b2bua.dialog import Dialog
from b2bua.errors import SipError
from b2bua.headers import Address, Headers, parse_address
from b2bua.media_control import MediaLeg, media_target
from b2bua.message import Request, Response, make_response
from b2bua.sdp import offer, parse_sdp
from b2bua.sdp_crypto import SrtpKeys, answer_keys, offer_for_leg
from rtp.srtp import SrtpKey

if TYPE_CHECKING:
    from b2bua.call import Call, LegState, Side, Target

log = logging.getLogger("b2bua.transfer")

SIPFRAG = "message/sipfrag;version=2.0"


@dataclass
class Transfer:
    transferor: Side
    target: Target
    invite: Request
    invite_key: str
    media: MediaLeg
    srtp_offer: dict[int, SrtpKey] | None = None  # our crypto offered to the target


def start(call: Call, side: Side, request: Request, key: str, now: float) -> None:
    """REFER from `side`: 202 and the INVITE to the target, or the refusal."""
    from b2bua.call import CallState

    services = call.services
    refer_to = request.headers.get("Refer-To")
    if refer_to is None:
        services.send_response(key, make_response(request, 400, "Missing Refer-To"), now)
        return
    try:
        target_uri = parse_address(refer_to).uri
    except SipError:
        services.send_response(key, make_response(request, 400, "Bad Refer-To"), now)
        return
    if side is not call.office_side or call.state is not CallState.CONFIRMED:
        # Only the office side may transfer, and only a call that is up.
        services.send_response(key, make_response(request, 403), now)
        return
    if call.transfer is not None:
        services.send_response(key, make_response(request, 491), now)
        return
    target = services.transfer_target(target_uri.user or "", now)
    if target is None:
        services.send_response(key, make_response(request, 404), now)
        return
    services.send_response(key, make_response(request, 202), now)
    leg = call.leg(side)
    notify(call, leg, side, "SIP/2.0 100 Trying", now, final=False)
    external = call.leg(call.external_side).media
    codec = getattr(external, "fmt", None)
    first = codec.encoding if codec is not None else "PCMU"
    media = services.media.open_leg(f"{call.id}-t{secrets.token_hex(2)}", services.media_inactive)
    sdp = offer(
        services.media.ip,
        media.port,
        codecs=(first, "PCMA" if first == "PCMU" else "PCMU"),
        session_id=secrets.randbelow(2**31),
    )
    # The target's leg is SRTP or plain by its own policy (trunk.srtp, extension.srtp).
    secured, srtp_offer = offer_for_leg(sdp, target.srtp)
    invite = _invite(call, target, secured.to_bytes())
    from b2bua.call import Side as CallSide

    invite_key = services.send_request(
        call, CallSide.C, invite, target.destination, target.transport, now
    )
    services.bind_call_id(call, invite.call_id, CallSide.C)
    call.transfer = Transfer(side, target, invite, invite_key, media, srtp_offer)
    log.info("event=transfer_start call=%s to=%s", call.id, target.to_user)


def _invite(call: Call, target: Target, body: bytes) -> Request:
    """The new office leg's INVITE: our identity, the external party's number as caller."""
    host, port = call.services.local
    external_user = call.external_number or "anonymous"
    from b2bua.uri import URI

    from_addr = Address(URI("sip", external_user, host=host, port=port)).with_param(
        "tag", secrets.token_hex(6)
    )
    fields = [
        ("Via", str(call.via(target.transport))),
        ("Max-Forwards", "70"),
        ("From", str(from_addr)),
        ("To", str(Address(URI("sip", target.to_user, host=target.uri.host)))),
        ("Call-ID", secrets.token_hex(12) + "@b2bua"),
        ("CSeq", "1 INVITE"),
        ("Contact", str(call.contact())),
        ("Content-Type", "application/sdp"),
    ]
    return Request("INVITE", target.uri, Headers.of(*fields), body)


def on_response(call: Call, response: Response, key: str, now: float) -> None:
    """A response on the target's leg C."""
    transfer = call.transfer
    if transfer is None or key != transfer.invite_key or response.cseq[1] != "INVITE":
        return
    if response.status < 200:
        return
    if response.status >= 300:
        _failed(call, transfer, f"SIP/2.0 {response.status} {response.reason}", now)
        return
    _answered(call, transfer, response, now)


def on_timeout(call: Call, key: str, now: float) -> None:
    transfer = call.transfer
    if transfer is not None and key == transfer.invite_key:
        _failed(call, transfer, "SIP/2.0 408 Request Timeout", now)


def _failed(call: Call, transfer: Transfer, sipfrag: str, now: float) -> None:
    call.transfer = None
    transfer.media.close()
    leg = call.leg(transfer.transferor)
    if leg.dialog is not None and not leg.dialog.terminated:
        notify(call, leg, transfer.transferor, sipfrag, now, final=True)
    log.info("event=transfer_failed call=%s status=%s", call.id, sipfrag.split(" ", 1)[1])


def _answered(call: Call, transfer: Transfer, response: Response, now: float) -> None:
    from b2bua.call import LegState

    services = call.services
    dialog = Dialog.from_uac(transfer.invite, response, local_contact=call.contact())
    dialog.receive_response(response)
    ack = dialog.create_ack(response, via=call.via(transfer.target.transport))
    services.send_ack(ack, transfer.target.destination, transfer.target.transport)
    keys: SrtpKeys | None = None
    try:
        if response.body:
            sdp = parse_sdp(response.body)
            keys = answer_keys(sdp, transfer.srtp_offer, transfer.target.srtp)
            remote, fmt, _hold = media_target(sdp)
            transfer.media.set_remote(remote, fmt)
        elif transfer.target.srtp == "required":
            raise SipError(488, "Not Acceptable Here", "SRTP required: the answer has no SDP")
    except SipError as exc:
        # The target answered with media we can not take: hang it up, keep the call.
        log.warning("event=transfer_refused call=%s reason=%s", call.id, exc)
        bye = dialog.create_request("BYE", via=call.via(transfer.target.transport))
        dialog.terminate()
        from b2bua.call import Side as CallSide

        services.send_request(
            call, CallSide.C, bye, transfer.target.destination, transfer.target.transport, now
        )
        _failed(call, transfer, f"SIP/2.0 {exc.status} {exc.reason}", now)
        return
    if keys is not None:
        transfer.media.set_srtp(keys.leg())
    external = call.leg(call.external_side).media
    old = call.leg(transfer.transferor)
    assert external is not None and old.media is not None
    services.media.unbridge(external)
    services.media.bridge(external, transfer.media)
    old.media.close()
    old.media = None
    if services.recording is not None:
        services.recording.set_office_leg(call.id, transfer.media)
    # The transferor's dialog stays only to hear the last NOTIFY and to BYE us.
    assert old.dialog is not None
    call.detached[old.dialog.call_id] = old
    notify(call, old, transfer.transferor, "SIP/2.0 200 OK", now, final=True)
    new = LegState(
        dialog,
        transfer.media,
        transfer.target.destination,
        transfer.target.transport,
        srtp_policy=transfer.target.srtp,
        srtp=keys,
    )
    call.replace_leg(transfer.transferor, new)
    call.transfer = None
    log.info("event=transfer_done call=%s to=%s", call.id, transfer.target.to_user)


def notify(call: Call, leg: LegState, side: Side, sipfrag: str, now: float, *, final: bool) -> None:
    """Progress of the REFER to the transferor (RFC 3515 2.4.5)."""
    if leg.dialog is None:
        return
    state = "terminated;reason=noresource" if final else "active;expires=60"
    request = leg.dialog.create_request(
        "NOTIFY",
        via=call.via(leg.transport),
        body=(sipfrag + "\r\n").encode(),
        content_type=SIPFRAG,
        headers=[("Event", "refer"), ("Subscription-State", state)],
    )
    call.services.send_request(call, side, request, leg.peer, leg.transport, now)


def detached_request(call: Call, leg: LegState, request: Request, key: str, now: float) -> None:
    """A request in the transferor's old dialog: BYE ends it, nothing else is relayed."""
    services = call.services
    assert leg.dialog is not None
    try:
        leg.dialog.receive_request(request)
    except SipError as exc:
        services.send_response(key, make_response(request, exc.status), now)
        return
    services.send_response(key, make_response(request, 200), now)
    if request.method == "BYE":
        call.detached.pop(request.call_id, None)
