"""Hunt groups: one number that rings several extensions, then a fallback.

Theory of operation: a `[[group]]` (config.GroupConfig) names members and an optional
fallback (an extension, or a number that goes out to the trunk). When a call is routed
to a group, `start_hunt` resolves every step to a call.Target at once (members that are
not reachable now, e.g. not registered, are left out) and the call rings them one after
the other: the call keeps a `Hunt` and asks it for the next target whenever the current
leg fails (busy, decline, unreachable, a transaction timeout) or rings longer than
`ring_s` (the call then CANCELs that leg). The fallback rings last, for `ring_s` too.
With `strategy = "parallel"` all members ring at once (hunt_parallel.py: one leg per
member, the first 2xx wins); when all failed or `ring_s` passed, the fallback rings as
in order mode, and the phases below are the same.

The hunt is plain state without I/O and without a clock: `now` is passed in, the
deadline is read through `deadline` and the call's get_timer/on_timer. It moves through
three phases, as a table:

    (RINGING, NEXT)      -> take the next target, or EXHAUSTED when there is none
    (RINGING, EXHAUSTED) -> FAREWELL when the caller was already answered (consent
                            asked first: the "noanswer" prompt plays, then BYE), or DONE
    (FAREWELL, DONE)     -> DONE (prompt finished, or its deadline passed)

Legs given up on are remembered (`abandoned`): when such a leg's 200 crosses our CANCEL,
the call ACKs it and hangs it up at once (RFC 3261 section 9.1).

The second half of this module holds the steps a hunting call takes (`invite_sent`,
`ring_next`, `ring_timeout`, `late_answer`, `leg_timed_out`, `cancel_forks`,
`exhausted`, `farewell_over`): functions of the call, as in reinvite.py, so call.py only
decides when to take them.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from b2bua import call_hangup, call_invite, hunt_parallel, leg_sdp
from b2bua.config import Config
from b2bua.hunt_parallel import Fork, Outcome
from b2bua.message import Request, Response

if TYPE_CHECKING:  # call.py imports this module
    from b2bua.call import Call, Target

log = logging.getLogger("b2bua.hunt")

Addr = tuple[str, int]
FAREWELL_LIMIT_S = 20.0  # the "noanswer" prompt lasts about 6 s; BYE anyway after this


class Phase(enum.Enum):
    RINGING = "ringing"
    FAREWELL = "farewell"  # nobody answered; the caller hears the "noanswer" prompt
    DONE = "done"


class Step(enum.Enum):
    NEXT = "next"
    EXHAUSTED = "exhausted"
    FAREWELL = "farewell"
    DONE = "done"


_TABLE: dict[tuple[Phase, Step], Phase] = {
    (Phase.RINGING, Step.NEXT): Phase.RINGING,
    (Phase.RINGING, Step.FAREWELL): Phase.FAREWELL,
    (Phase.RINGING, Step.DONE): Phase.DONE,
    (Phase.FAREWELL, Step.DONE): Phase.DONE,
}


class HuntError(Exception):
    """An unexpected (phase, step) pair: a bug in the caller, never silently passed."""


@dataclass
class Hunt:
    """The remaining targets of a hunting call and the current leg's ring deadline."""

    label: str  # the group's number: the catalog's extension for the call
    pending: list[Target]
    ring_s: float
    # Parallel groups: members that ring together with the first (hunt_parallel.fork);
    # emptied when they are rung. Then each member's leg by its INVITE's key.
    parallel: list[Target] = field(default_factory=list)
    forks: dict[str, Fork] = field(default_factory=dict)
    phase: Phase = Phase.RINGING
    deadline: float | None = None
    tried: int = 1  # the first target is being rung when the hunt starts
    # Given-up INVITEs by client transaction key: (request, destination, transport).
    abandoned: dict[str, tuple[Request, Addr, str]] = field(default_factory=dict)
    stray_byes: set[str] = field(default_factory=set)  # BYEs to legs that answered late

    def _step(self, step: Step) -> None:
        nxt = _TABLE.get((self.phase, step))
        if nxt is None:
            raise HuntError(f"{step.value} in phase {self.phase.value}")
        self.phase = nxt

    def arm(self, now: float) -> None:
        """The current leg's INVITE went out: it may ring `ring_s` seconds."""
        self.deadline = now + self.ring_s

    def next_target(self) -> Target | None:
        """The next target to ring, or None when all were tried."""
        if self.phase is not Phase.RINGING or not self.pending:
            return None
        self._step(Step.NEXT)
        self.tried += 1
        return self.pending.pop(0)

    def give_up(self, key: str, invite: Request, dest: Addr, transport: str) -> None:
        self.abandoned[key] = (invite, dest, transport)

    def farewell(self, now: float) -> None:
        """Nobody answered and the caller is answered: the prompt plays, then BYE."""
        self._step(Step.FAREWELL)
        self.deadline = now + FAREWELL_LIMIT_S

    def done(self) -> None:
        self._step(Step.DONE)
        self.deadline = None

    def map_targets(self, change: Callable[[Target], Target]) -> None:
        """Applies `change` (the caller ID shown toward B) to the targets still pending."""
        self.pending = [change(t) for t in self.pending]
        self.parallel = [change(t) for t in self.parallel]


def start_hunt(
    config: Config,
    number: str | None,
    resolve: Callable[[str, float], Target | None],
    now: float,
    skip: str | None = None,
) -> tuple[Target, Hunt] | None:
    """The first target and the hunt for group `number`; None when `number` is not a
    group or none of its steps is reachable. `skip` (the calling extension) is left out.
    A parallel group's other reachable members go to `Hunt.parallel`, its `pending`
    holds only the fallback."""
    group = config.group(number) if number else None
    if group is None:
        return None
    members = [t for t in (resolve(m, now) for m in group.members if m != skip) if t is not None]
    fallback = None
    if group.fallback is not None and group.fallback != skip:
        fallback = resolve(group.fallback, now)
    targets = members + ([fallback] if fallback is not None else [])
    if not targets:
        return None
    if group.strategy == "parallel" and members:
        rest = [fallback] if fallback is not None else []
        return members[0], Hunt(group.number, rest, group.ring_s, parallel=members[1:])
    return targets[0], Hunt(group.number, targets[1:], group.ring_s)


def employee_consent(config: Config, number: str | None) -> bool:
    """The office party's written consent for calls to `number`: an extension's own; for a
    group, only when every member and an extension fallback consented (whoever answers
    must have agreed), and never with a fallback out to the trunk."""
    if number is None:
        return False
    ext = config.extension(number)
    if ext is not None:
        return ext.employee_consent
    group = config.group(number)
    if group is None:
        return False
    steps = list(group.members) + ([group.fallback] if group.fallback else [])
    return all((e := config.extension(step)) is not None and e.employee_consent for step in steps)


# -- the steps a hunting call takes (called from call.py) ----------------------------


def invite_sent(call: Call, now: float) -> None:
    """B's first INVITE went out: it may ring `ring_s`; a parallel group rings every
    other member now too (hunt_parallel.py)."""
    if call.hunt is None:
        return
    call.hunt.arm(now)
    if call.hunt.parallel:
        hunt_parallel.fork(call, now)


def ring_next(call: Call, now: float) -> bool:
    """B's leg failed or rang too long: ring the hunt's next target (a new INVITE in
    the same B Call-ID, next CSeq). False when there is no hunt or no target left."""
    from b2bua.call import CallState, Side  # call.py imports this module

    if call.hunt is None or call.state not in (CallState.CALLING, CallState.EARLY):
        return False
    target = call.hunt.next_target()
    if target is None:
        return False
    cseq = call.b_invite.cseq[0] + 1 if call.b_invite is not None else 1
    call.target = target
    call.b.srtp_policy = target.srtp
    call.b_nonces_answered.clear()
    call.b_trunk_retried = False
    plain = call.b_plain_offer
    body = b"" if plain is None else leg_sdp.offer_to(call.b, plain)
    call.state = CallState.CALLING
    log.info("event=hunt_next call=%s group=%s to=%s", call.id, call.hunt.label, target.to_user)
    call.b_invite = call_invite.build_b_invite(call, body, cseq)
    call.b.last_sdp = body
    call.b.peer, call.b.transport = target.destination, target.transport
    call.b_invite_key = call.services.send_request(
        call, Side.B, call.b_invite, target.destination, target.transport, now
    )
    call.hunt.arm(now)
    return True


def ring_timeout(call: Call, now: float) -> None:
    """The current leg rang `ring_s`: CANCEL it (a parallel group: every member still
    ringing) and ring the next (or give up)."""
    from b2bua.call import CallInput  # call.py imports this module

    assert call.hunt is not None and call.b_invite is not None
    call.hunt.deadline = None
    if hunt_parallel.cancel_all(call, now):
        log.info("event=hunt_ring_timeout call=%s to=%s", call.id, call.hunt.label)
        if not ring_next(call, now):
            call.feed(CallInput.B_FAILURE, now, None)
        return
    old_key = call.b_invite_key
    call.hunt.give_up(old_key, call.b_invite, call.target.destination, call.target.transport)
    call_invite.cancel_b_invite(call, now)
    log.info("event=hunt_ring_timeout call=%s to=%s", call.id, call.target.to_user)
    if not ring_next(call, now):
        call.b_invite_key = ""  # the cancelled leg's 487 is no longer ours
        call.feed(CallInput.B_FAILURE, now, None)


def late_answer(call: Call, response: Response, key: str, now: float) -> bool:
    """A leg we gave up on answered anyway (its 200 crossed our CANCEL): ACK and BYE
    it (RFC 3261 9.1). Also swallows the answers to those BYEs, and takes every answer
    of a parallel group's legs (hunt_parallel.on_response) but the winner's."""
    hunt = call.hunt
    if hunt is None:
        return False
    if key in hunt.forks:
        return _fork_outcome(
            call, hunt_parallel.on_response(call, response, key, now), response, now
        )
    if key in hunt.stray_byes:
        if response.status >= 200:
            hunt.stray_byes.discard(key)
        return True
    given_up = hunt.abandoned.get(key)
    if given_up is None:
        return False
    if not 200 <= response.status < 300 or response.cseq[1] != "INVITE":
        return True  # its 487 or a provisional: nothing to do
    invite, dest, transport = given_up
    del hunt.abandoned[key]
    hunt_parallel.ack_and_bye(call, hunt, invite, response, dest, transport, now)
    return True


def leg_timed_out(call: Call, key: str, now: float) -> bool:
    """A B-side transaction of the hunt timed out: a parallel member that never
    answered drops out; given-up INVITEs and stray BYEs are forgotten. False when the
    key is none of these (the call's own B transaction)."""
    hunt = call.hunt
    if hunt is None:
        return False
    if key in hunt.forks:
        return _fork_outcome(call, hunt_parallel.on_response(call, None, key, now), None, now)
    if hunt.abandoned.pop(key, None) is not None:
        return True
    if key in hunt.stray_byes:
        hunt.stray_byes.discard(key)
        return True
    return False


def _fork_outcome(call: Call, outcome: Outcome, response: Response | None, now: float) -> bool:
    """What the call does after a parallel leg's answer; False: its own path takes it."""
    from b2bua.call import CallInput  # call.py imports this module

    if outcome is Outcome.CALL_TAKES:
        return False
    if outcome is Outcome.ALL_FAILED and not ring_next(call, now):
        call.feed(CallInput.B_FAILURE, now, response)  # nobody: 480 or the farewell
    elif outcome is Outcome.SETTLED:
        call.feed(CallInput.B_FAILURE, now, None)  # cancelled by the caller: the end
    return True


def cancel_forks(call: Call, now: float) -> bool:
    """The caller cancelled (or hung up, or we end the call) while a parallel group
    rings: every ringing member gets its CANCEL. False when no member rings in parallel
    (the call cancels its one B INVITE itself)."""
    return call.b_invite_key == "" and hunt_parallel.cancel_all(call, now)


def exhausted(call: Call, now: float) -> bool:
    """Nobody answered. Answered for consent: the "noanswer" prompt, then BYE (True);
    otherwise the caller gets 480 (True). False without a hunt."""
    from b2bua.call import CallState, Side  # call.py imports this module

    hunt = call.hunt
    if hunt is None or hunt.phase is not Phase.RINGING:
        return False
    call.end_reason = "nobody answered"
    hub = call.services.recording
    if call.a_answered and hub is not None:
        hunt.farewell(now)
        call.state = CallState.ANNOUNCING  # A is up and hears the prompt; BYE follows
        hub.play(call.id, "noanswer", now)
        return True
    hunt.done()
    if call.a_answered:
        call.state = CallState.ENDING
        call_hangup.send_bye(call, Side.A, now)
        return True
    call._respond_a(480, now)
    call_hangup.finish(call, now, call.end_reason)
    return True


def farewell_over(call: Call, now: float) -> None:
    assert call.hunt is not None
    call.hunt.done()
    call.hangup("nobody answered", now)
