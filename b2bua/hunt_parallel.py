"""Parallel ringing for hunt groups (`strategy = "parallel"`): every member at once.

Theory of operation: when a parallel group's call sends its first office INVITE
(hunt.invite_sent), `fork` sends one more INVITE per other reachable member. Each of
these legs is a `Fork`: its own Call-ID, From tag and branch (as every leg of ours has),
all with the same anchored offer, i.e. all point at the relay's one office-side port.
While forks ring the call's own `b_invite_key` is "" (no single B transaction is the
call's), and hunt.late_answer hands every answer of a fork to `on_response`.

Each fork is a small table `(ForkState, ForkInput) -> (ForkAction, next ForkState)`:

    CALLING/EARLY  + provisional -> RING (the caller hears 180, once), EARLY
    CALLING/EARLY  + 2xx         -> WIN: this leg becomes the call's B leg, the others
                                    are cancelled, the call takes the 2xx as usual
    CALLING/EARLY  + failure     -> DROP (busy, declined, unreachable): DONE
    EARLY          + cancel      -> SEND_CANCEL, CANCELLED
    CALLING        + cancel      -> CANCEL_WAIT: no CANCEL before a provisional
                                    (RFC 3261 9.1); it goes out with the first one
    CANCEL_WAIT/CANCELLED + 2xx  -> ACK_BYE: the 2xx crossed our CANCEL (9.1)
    CANCEL_WAIT/CANCELLED + final-> DONE (the 487)

When every fork has failed, `on_response` says ALL_FAILED and hunt.py rings the fallback
(or gives up) exactly as in order mode; when the ring time is up, hunt.ring_timeout
cancels the forks first. When the caller cancels (or hangs up, or we do), `cancel_all`
cancels every ringing fork and the call ends once all of them are settled.

Early media: the caller gets a plain 180 without SDP, even when a member sends 183 with
SDP. All forks share one relay port; A's answer must not change between a provisional
and the 2xx (RFC 3261 13.2.1), and the member who answers may pick another codec than
the one that sent early media. Desk phones ring locally anyway.
"""

from __future__ import annotations

import enum
import logging
import secrets
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from b2bua import call_invite, leg_sdp
from b2bua.dialog import Dialog
from b2bua.message import Request, Response
from b2bua.transaction import create_cancel
from rtp.srtp import SrtpKey

if TYPE_CHECKING:  # call.py imports hunt.py, which imports this module
    from b2bua.call import Call, Target
    from b2bua.hunt import Hunt

log = logging.getLogger("b2bua.hunt")

Addr = tuple[str, int]


class ForkState(enum.Enum):
    CALLING = "calling"  # INVITE sent, nothing back yet
    EARLY = "early"  # a provisional came back
    CANCEL_WAIT = "cancel_wait"  # to be cancelled when its first provisional arrives
    CANCELLED = "cancelled"  # CANCEL sent; waiting for the 487 (or a crossing 2xx)
    WON = "won"  # answered first: it is the call's B leg now
    DONE = "done"  # failed, or its final came after the cancel


class ForkInput(enum.Enum):
    PROVISIONAL = "provisional"
    SUCCESS = "success"
    FAILURE = "failure"  # a final >= 300, or the transaction timed out
    CANCEL = "cancel"  # we give this leg up


class ForkAction(enum.Enum):
    NONE = "none"
    RING = "ring"
    WIN = "win"
    DROP = "drop"
    SEND_CANCEL = "send_cancel"
    ACK_BYE = "ack_bye"


F, In, Act = ForkState, ForkInput, ForkAction
_TABLE: dict[tuple[ForkState, ForkInput], tuple[ForkAction, ForkState]] = {
    (F.CALLING, In.PROVISIONAL): (Act.RING, F.EARLY),
    (F.EARLY, In.PROVISIONAL): (Act.RING, F.EARLY),
    (F.CALLING, In.SUCCESS): (Act.WIN, F.WON),
    (F.EARLY, In.SUCCESS): (Act.WIN, F.WON),
    (F.CALLING, In.FAILURE): (Act.DROP, F.DONE),
    (F.EARLY, In.FAILURE): (Act.DROP, F.DONE),
    (F.CALLING, In.CANCEL): (Act.NONE, F.CANCEL_WAIT),
    (F.EARLY, In.CANCEL): (Act.SEND_CANCEL, F.CANCELLED),
    (F.CANCEL_WAIT, In.PROVISIONAL): (Act.SEND_CANCEL, F.CANCELLED),
    (F.CANCEL_WAIT, In.SUCCESS): (Act.ACK_BYE, F.DONE),
    (F.CANCEL_WAIT, In.FAILURE): (Act.NONE, F.DONE),
    (F.CANCEL_WAIT, In.CANCEL): (Act.NONE, F.CANCEL_WAIT),
    (F.CANCELLED, In.PROVISIONAL): (Act.NONE, F.CANCELLED),
    (F.CANCELLED, In.SUCCESS): (Act.ACK_BYE, F.DONE),
    (F.CANCELLED, In.FAILURE): (Act.NONE, F.DONE),
    (F.CANCELLED, In.CANCEL): (Act.NONE, F.CANCELLED),
    (F.DONE, In.CANCEL): (Act.NONE, F.DONE),
    (F.DONE, In.SUCCESS): (Act.NONE, F.DONE),  # a 2xx repeated after our ACK and BYE
}
LIVE = frozenset({ForkState.CALLING, ForkState.EARLY})  # still ringing for the caller
UNSETTLED = LIVE | {ForkState.CANCEL_WAIT, ForkState.CANCELLED}  # a final still to come


class ForkError(Exception):
    """A (state, input) pair the fork table does not list."""


class Outcome(enum.Enum):
    HANDLED = "handled"  # nothing more for the call to do
    CALL_TAKES = "call_takes"  # the call's own response path takes it (the winner's answers)
    ALL_FAILED = "all_failed"  # the last ringing member failed: fallback or give up
    SETTLED = "settled"  # cancelled by the caller and the last fork is settled: end


@dataclass
class Fork:
    """One member's leg while the group rings in parallel."""

    target: Target
    invite: Request
    call_id: str
    tag: str  # our From tag on this leg
    body: bytes  # the offer sent (per leg: SRTP keys are the leg's own)
    srtp_offer: dict[int, SrtpKey] | None
    state: ForkState = ForkState.CALLING

    def feed(self, inp: ForkInput) -> ForkAction:
        entry = _TABLE.get((self.state, inp))
        if entry is None:
            raise ForkError(f"{inp.value} in fork state {self.state.value}")
        action, self.state = entry
        return action


def forking(hunt: Hunt) -> bool:
    """True while forks ring for the caller (no member won, not all cancelled)."""
    return any(f.state in LIVE for f in hunt.forks.values())


def fork(call: Call, now: float) -> None:
    """The first member's INVITE just went out: ring every other member too. The
    first leg becomes a fork like the others."""
    from b2bua.call import Side  # call.py imports this module (through hunt.py)

    hunt = call.hunt
    assert hunt is not None and call.b_invite is not None
    first = Fork(
        call.target,
        call.b_invite,
        call.b_call_id,
        call.b_tag,
        call.b.last_sdp,
        call.b.srtp_offer,
    )
    hunt.forks[call.b_invite_key] = first
    call.b_invite_key = ""  # no single B transaction is the call's while forks ring
    plain = call.b_plain_offer
    others, hunt.parallel = hunt.parallel, []
    for target in others:
        call.b.srtp_policy = target.srtp
        body = b"" if plain is None else leg_sdp.offer_to(call.b, plain)
        invite, call_id, tag = _invite_for(call, target, body)
        key = call.services.send_request(
            call, Side.B, invite, target.destination, target.transport, now
        )
        hunt.forks[key] = Fork(target, invite, call_id, tag, body, call.b.srtp_offer)
    hunt.tried += len(others)
    call.b.srtp_policy, call.b.srtp_offer = first.target.srtp, first.srtp_offer
    log.info(
        "event=hunt_parallel call=%s group=%s to=%s",
        call.id,
        hunt.label,
        ",".join(f.target.to_user for f in hunt.forks.values()),
    )


def _invite_for(call: Call, target: Target, body: bytes) -> tuple[Request, str, str]:
    """The call's B INVITE built for `target`, as a leg of its own: a new Call-ID and
    From tag (the Via branch is new for every request anyway)."""
    primary = call.target
    call.target = target  # _build_b_invite reads the target; put back at once
    try:
        invite = call_invite.build_b_invite(call, body)
    finally:
        call.target = primary
    call_id, tag = secrets.token_hex(12) + "@b2bua", secrets.token_hex(6)
    headers = invite.headers.set("Call-ID", call_id).set(
        "From", str(invite.from_addr.with_param("tag", tag))
    )
    return replace(invite, headers=headers), call_id, tag


def on_response(call: Call, response: Response | None, key: str, now: float) -> Outcome:
    """An answer (None: a transaction timeout) to fork `key`'s INVITE."""
    hunt = call.hunt
    assert hunt is not None
    leg = hunt.forks[key]
    if leg.state is ForkState.WON:
        return Outcome.CALL_TAKES
    if response is not None and response.cseq[1] != "INVITE":
        return Outcome.HANDLED
    if response is None or response.status >= 300:
        inp = ForkInput.FAILURE
    elif response.status >= 200:
        inp = ForkInput.SUCCESS
    else:
        inp = ForkInput.PROVISIONAL
    try:
        action = leg.feed(inp)
    except ForkError as exc:  # e.g. a stray answer after the leg was settled
        call.protocol_errors += 1
        log.info("call %s: %s", call.id, exc)
        return Outcome.HANDLED
    return _act(call, hunt, leg, key, action, response, now)


def _act(
    call: Call,
    hunt: Hunt,
    leg: Fork,
    key: str,
    action: ForkAction,
    response: Response | None,
    now: float,
) -> Outcome:
    from b2bua.call import CallInput, CallState  # call.py imports this module

    ringing = call.state in (CallState.CALLING, CallState.EARLY)
    if action is ForkAction.RING:
        assert response is not None
        if response.status > 100 and call.state is CallState.CALLING:
            # The caller hears 180 once, without early media (see the module's doc).
            ring = replace(response, status=180, reason="Ringing", body=b"")
            call.feed(CallInput.B_PROVISIONAL, now, ring, key)
        return Outcome.HANDLED
    if action is ForkAction.WIN and not ringing:
        action = ForkAction.ACK_BYE  # the call ended meanwhile: hang this leg up too
        leg.state = ForkState.DONE
    if action is ForkAction.WIN:
        _promote(call, leg, key)
        cancel_all(call, now)
        log.info("event=hunt_answered call=%s to=%s", call.id, leg.target.to_user)
        return Outcome.CALL_TAKES  # the call takes this 2xx as B's answer
    if action is ForkAction.SEND_CANCEL:
        send_cancel(call, leg, now)
    elif action is ForkAction.ACK_BYE:
        assert response is not None
        ack_and_bye(
            call, hunt, leg.invite, response, leg.target.destination, leg.target.transport, now
        )
    elif action is ForkAction.DROP:
        status = "timeout" if response is None else str(response.status)
        log.info(
            "event=hunt_member_failed call=%s to=%s status=%s", call.id, leg.target.to_user, status
        )
        if not forking(hunt) and call.b_invite_key == "" and ringing:
            return Outcome.ALL_FAILED
        return Outcome.HANDLED
    unsettled = any(f.state in UNSETTLED for f in hunt.forks.values())
    if not unsettled and call.b_invite_key == "" and call.state is CallState.CANCELLING:
        return Outcome.SETTLED
    return Outcome.HANDLED


def _promote(call: Call, leg: Fork, key: str) -> None:
    """The winner becomes the call's B leg: its INVITE, dialog identity and offer."""
    from b2bua.call import Side  # call.py imports this module

    call.b_invite, call.b_invite_key, call.target = leg.invite, key, leg.target
    call.b_call_id, call.b_tag = leg.call_id, leg.tag
    call.b.peer, call.b.transport = leg.target.destination, leg.target.transport
    call.b.srtp_policy, call.b.srtp_offer = leg.target.srtp, leg.srtp_offer
    call.b.last_sdp = leg.body
    call.services.bind_call_id(call, leg.call_id, Side.B)  # its BYE finds the call


def cancel_all(call: Call, now: float) -> bool:
    """Gives up every fork still ringing (CANCEL now, or after its first provisional).
    False when no fork was ringing."""
    hunt = call.hunt
    if hunt is None or not forking(hunt):
        return False
    for leg in hunt.forks.values():
        if leg.state in LIVE and leg.feed(ForkInput.CANCEL) is ForkAction.SEND_CANCEL:
            send_cancel(call, leg, now)
    return True


def send_cancel(call: Call, leg: Fork, now: float) -> None:
    from b2bua.call import Side  # call.py imports this module

    call.services.send_request(
        call, Side.B, create_cancel(leg.invite), leg.target.destination, leg.target.transport, now
    )


def ack_and_bye(
    call: Call,
    hunt: Hunt,
    invite: Request,
    response: Response,
    dest: Addr,
    transport: str,
    now: float,
) -> None:
    """A leg we gave up on answered anyway (its 2xx crossed our CANCEL): ACK it and
    hang it up at once (RFC 3261 9.1). The BYE's answer is swallowed (stray_byes)."""
    from b2bua.call import Side  # call.py imports this module

    dialog = Dialog.from_uac(invite, response, local_contact=call.contact())
    dialog.receive_response(response)
    call.services.send_ack(dialog.create_ack(response, via=call.via(transport)), dest, transport)
    bye = dialog.create_request("BYE", via=call.via(transport))
    dialog.terminate()
    hunt.stray_byes.add(call.services.send_request(call, Side.B, bye, dest, transport, now))
    log.info("event=hunt_late_answer call=%s to=%s", call.id, response.to_addr.uri.user)
