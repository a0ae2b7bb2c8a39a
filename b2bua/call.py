"""One bridged call: two SIP dialogs and two media legs, as a state machine.

Theory of operation: leg A is the dialog in which we are the UAS (the caller's INVITE
came to us); leg B is the dialog we create as UAC toward the callee (a phone, or the
trunk). Each leg has its own Call-ID, tags, CSeq and Contact; nothing of A's dialog
identity is copied into B or back (only the caller's number and display name, and the
SDP, rewritten to point at our relay). Each leg also has its own relay port pair, and
the relay bridges them once B answers.

Consent (see consent.py) changes when each leg is answered. Inbound with consent asked,
we answer A ourselves (state ANNOUNCING), the prompt plays to the caller, and only the
consent machine's ConnectOffice sends B's INVITE; B's answer is then bridged to the
already answered A. Outbound, B (the external party) is answered and ACKed as usual but
A keeps ringing in ANNOUNCING until ConnectOffice answers it. Recording, prompts and
digits are delegated to `CallServices.recording` (the media side, recording_hub.py).

SRTP (SDES) is per leg: every SDP we send to a leg is made for that leg alone by
sdp_crypto.py under the leg's policy (off | optional | required): our answer to A
follows A's offer, our offer to B (or a transfer target) B's policy, each with a key of
ours; the negotiated keys go to that leg's relay leg only. Keys never cross legs.

Every input is a `CallInput` applied through `TABLE`, a dict of `(CallState, CallInput)
-> (handler, next state)`. A pair the table lacks is a protocol error: it is counted and
answered where SIP needs an answer, never passed over silently. Handlers only talk to
`CallServices` (the switch: transactions, media control, clock-free); they never touch
a socket or a clock themselves, `now` is passed in. This module holds the call, its
creation, entry points and table (its data types in call_types.py); the steps are
functions of the call in their own modules: call_invite.py (B's INVITE, our Via and
Contact), call_answer.py (B's answer reaching A), call_hangup.py (BYE, CANCEL, the
end), call_routing.py (which message goes where), and consent_phase.py, hunt.py,
reinvite.py, transfer.py, call_timers.py, call_trunk.py.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field

from b2bua import (
    call_answer,
    call_hangup,
    call_invite,
    call_routing,
    call_timers,
    codec_policy,
    consent_phase,
    leg_sdp,
)
from b2bua import hunt as hunt_steps
from b2bua import transfer as transfer_steps
from b2bua.call_answer import map_failure
from b2bua.call_state import ALLOW, CODECS, CallInput, CallState, Side
from b2bua.call_types import Addr, CallServices, LegState, Target
from b2bua.consent import ConsentMachine, ConsentRecord
from b2bua.errors import SipError
from b2bua.headers import Address, Via
from b2bua.hunt import Hunt, Phase
from b2bua.media_control import media_target
from b2bua.message import Request, Response, make_response
from b2bua.sdp import SessionDescription, anchor, parse_sdp
from b2bua.sdp_crypto import offer_wants_srtp
from b2bua.session_timer import SessionTimer, uas_negotiate
from b2bua.transfer import Transfer

__all__ = [  # states and sides live in call_state.py, data in call_types.py; import them here
    "ALLOW",
    "CODECS",
    "TABLE",
    "Call",
    "CallInput",
    "CallServices",
    "CallState",
    "LegState",
    "Side",
    "Target",
    "map_failure",
]

log = logging.getLogger("b2bua.call")


@dataclass
class Call:
    """A bridged call. Create with `Call.start(...)`."""

    services: CallServices
    a_invite: Request
    a_key: str
    a_tag: str
    b_call_id: str
    b_tag: str
    target: Target
    direction: str  # inbound | outbound | internal
    started_at: float
    id: str = field(default_factory=lambda: secrets.token_hex(8))
    state: CallState = CallState.CALLING
    a: LegState = field(default_factory=LegState)
    b: LegState = field(default_factory=LegState)
    b_invite: Request | None = None
    b_invite_key: str = ""
    a_remote: Addr | None = None  # A's RTP address from its offer
    a_offer: SessionDescription | None = None  # A's offer: our answers to A follow it
    a_secure: bool = False  # our answer to A is SRTP (A's policy and offer agreed)
    consent: ConsentMachine | None = None
    consent_first: bool = False  # the external party is asked before the office joins
    consent_record: ConsentRecord | None = None
    a_answered: bool = False  # our 2xx went to A (early when we answer for consent)
    a_answer_body: bytes = b""  # outbound with consent: A's answer, sent on connect
    b_nonces_answered: set[str] = field(default_factory=set)  # trunk digest, once each
    b_trunk_retried: bool = False  # the INVITE went to the next trunk server once
    a_session_timer: SessionTimer | None = None  # agreed with A's INVITE, runs from our 2xx
    transfer: Transfer | None = None  # a blind transfer in progress (transfer.py)
    detached: dict[str, LegState] = field(default_factory=dict)  # transferors' old dialogs
    answered_at: float | None = None
    ended_at: float | None = None
    end_reason: str = ""
    protocol_errors: int = 0
    # re-INVITEs relayed across: key of the client transaction -> (server key, request)
    relayed: dict[str, tuple[str, Request, Side]] = field(default_factory=dict)
    relayed_given_up: set[str] = field(default_factory=set)  # offerer has its 487 already
    hunt: Hunt | None = None  # a hunt group's remaining targets (hunt.py)
    b_plain_offer: SessionDescription | None = None  # B's offer before SRTP, for hunting
    office_extension: str | None = None  # a PBX's extension of the office caller (pbx.py)
    codec_plan: codec_policy.CodecPlan | None = None  # legs negotiate codecs apart
    a_wideband: bool = False  # A is an extension with wideband = true (outbound calls)
    # The o= of the SDP we build ourselves (not anchored from a peer's): one session id
    # per call, and a version that only grows (RFC 3264 section 8: a re-offer bumps it).
    sdp_session_id: int = field(default_factory=lambda: secrets.randbelow(2**31))
    sdp_version: int = 0
    reinvite_plans: dict[str, codec_policy.CodecPlan] = field(default_factory=dict)
    # Headers for every request we send in the trunk's dialog (the mediasec agreement's
    # Security-Verify, trunk_registration.py); empty for internal calls.
    trunk_headers: tuple[tuple[str, str], ...] = ()

    # -- creation -----------------------------------------------------------------
    @classmethod
    def start(
        cls,
        services: CallServices,
        invite: Request,
        key: str,
        source: Addr,
        transport: str,
        target: Target,
        direction: str,
        now: float,
        consent: ConsentMachine | None = None,
        a_srtp: str = "off",
        hunt: Hunt | None = None,
        office_extension: str | None = None,
        a_wideband: bool = False,
        trunk_headers: tuple[tuple[str, str], ...] = (),
        mediasec: bool = False,
    ) -> Call:
        """Opens the media legs and starts the call; SipError if the offer is bad.

        Inbound with consent asked: A is answered at once and the prompt starts on its
        ACK. Otherwise B's INVITE goes out now with A's offer anchored to our relay.
        `a_srtp` is the SRTP policy of A's leg (the trunk's inbound, the calling
        extension's otherwise); `target.srtp` is B's. An offer that A's policy can not
        take (SRTP on a plain leg, plain on a required one) is SipError(488).
        """
        sdp_offer = parse_sdp(invite.body) if invite.body else None
        if sdp_offer is None and a_srtp == "required":
            raise SipError(488, "Not Acceptable Here", "SRTP required: the INVITE has no offer")
        a_secure = sdp_offer is not None and offer_wants_srtp(sdp_offer, a_srtp)
        call = cls(
            services=services,
            a_invite=invite,
            a_key=key,
            a_tag=secrets.token_hex(6),
            b_call_id=secrets.token_hex(12) + "@b2bua",
            b_tag=secrets.token_hex(6),
            target=target,
            direction=direction,
            started_at=now,
            consent=consent,
            a_offer=sdp_offer,
            a_secure=a_secure,
            hunt=hunt,
            office_extension=office_extension,
            a_wideband=a_wideband,
            trunk_headers=trunk_headers if direction != "internal" else (),
        )
        call.a.srtp_policy, call.b.srtp_policy = a_srtp, target.srtp
        call.leg(call.external_side).mediasec = mediasec and direction != "internal"
        hub = services.recording
        if hub is None or direction == "internal":
            call.consent = consent = None  # internal calls have no external party to ask
        asking = consent is not None and consent.asks
        call.consent_first = asking
        # RFC 4028: a Session-Expires below our minimum is answered 422 (with Min-SE).
        call.a_session_timer = uas_negotiate(invite)
        call.a.peer, call.a.transport = source, transport
        media = services.media
        call.a.media = media.open_leg(call.id + "-a", services.media_inactive)
        if sdp_offer is not None:
            call.a_remote, fmt, _hold = media_target(sdp_offer)
            call.a.media.set_remote(call.a_remote, fmt)
        if asking and direction == "inbound":
            consent_phase.answer_a_for_consent(call, sdp_offer, now)
            return call
        call.b.media = media.open_leg(call.id + "-b", services.media_inactive)
        body = b""
        if sdp_offer is not None:
            call.codec_plan = codec_policy.plan_for_call(
                direction,
                sdp_offer,
                office_wideband=target.wideband and hunt is None,
                caller_wideband=a_wideband,
                session_id=call.sdp_session_id,
            )
            call.b_plain_offer = (
                anchor(sdp_offer, media.ip, [call.b.media.port])
                if call.codec_plan is None
                else codec_policy.offer_for_b(
                    call.codec_plan, sdp_offer, media.ip, call.b.media.port
                )
            )
            body = leg_sdp.offer_to(call.b, call.b_plain_offer)
        call_invite.send_b_invite(call, body, now)
        if hub is not None and consent is not None:
            external, office = (
                (call.a.media, call.b.media)
                if direction == "inbound"
                else (call.b.media, call.a.media)
            )
            consent_phase.open_recording(call, external, office)
            if not asking:
                # Not asked (mode off or no employee consent): documented right away.
                consent_phase.apply(call, consent.start(now), now)
        return call

    # -- what transfer.py uses ---------------------------------------------------------
    @property
    def office_side(self) -> Side:
        return Side.A if self.direction == "outbound" else Side.B

    @property
    def external_side(self) -> Side:
        return Side.B if self.direction == "outbound" else Side.A

    @property
    def external_number(self) -> str | None:
        if self.direction == "outbound":
            return self.target.to_user
        return self.a_invite.from_addr.uri.user

    def dialog_headers(self, side: Side) -> tuple[tuple[str, str], ...]:
        """The headers every request in `side`'s dialog carries: the trunk's agreement
        on the external leg of a trunk call, nothing elsewhere."""
        return self.trunk_headers if side is self.external_side else ()

    def leg(self, side: Side) -> LegState:
        return self._leg(side)

    def via(self, transport: str) -> Via:
        return call_invite.via(self, transport)

    def contact(self) -> Address:
        return call_invite.contact(self)

    def replace_leg(self, side: Side, new: LegState) -> None:
        """A transfer's new leg takes the place of the office leg."""
        if side is Side.A:
            self.a = new
        else:
            self.b = new
        assert new.dialog is not None
        self.services.bind_call_id(self, new.dialog.call_id, side)

    def on_c_response(self, response: Response, key: str, now: float) -> None:
        transfer_steps.on_response(self, response, key, now)

    # -- the table ------------------------------------------------------------------
    def feed(
        self, inp: CallInput, now: float, message: Request | Response | None = None, key: str = ""
    ) -> None:
        entry = TABLE.get((self.state, inp))
        if entry is None:
            self.protocol_errors += 1
            log.info("call %s: %s in state %s ignored", self.id, inp.value, self.state.value)
            return
        handler, next_state = entry
        self.state = next_state
        handler(self, now, message, key)

    # -- the consent phase, the hunt's ring time and the session timers -----------------
    def on_digit(self, digit: str, method: str, side: str, now: float) -> None:
        if self.consent is not None and self.state is not CallState.ENDED:
            consent_phase.apply(
                self,
                self.consent.digit(
                    digit, method, now, "office" if side == "office" else "external"
                ),
                now,
            )

    def on_prompt_finished(self, now: float) -> None:
        if self.hunt is not None and self.hunt.phase is Phase.FAREWELL:
            hunt_steps.farewell_over(self, now)
            return
        if self.consent is not None and self.state is not CallState.ENDED:
            consent_phase.apply(self, self.consent.prompt_finished(now), now)

    def get_timer(self) -> float | None:
        times = [
            t
            for t in (
                None if self.consent is None else self.consent.get_timer(),
                call_timers.deadline(self),
                self._hunt_deadline(),
            )
            if t is not None
        ]
        return min(times) if times else None

    def _hunt_deadline(self) -> float | None:
        hunt = self.hunt
        if hunt is None:
            return None
        ringing = self.state in (CallState.CALLING, CallState.EARLY)
        if hunt.phase is Phase.FAREWELL or (hunt.phase is Phase.RINGING and ringing):
            return hunt.deadline
        return None

    def on_timer(self, now: float) -> None:
        deadline = self._hunt_deadline()
        if deadline is not None and now >= deadline:
            assert self.hunt is not None
            if self.hunt.phase is Phase.FAREWELL:
                hunt_steps.farewell_over(self, now)
            else:
                hunt_steps.ring_timeout(self, now)
        if self.consent is not None:
            consent_phase.apply(self, self.consent.timer(now), now)
        if self.state is CallState.CONFIRMED:
            call_timers.on_timer(self, now)

    # -- entry points used by the switch (call_routing.py sorts the messages) ----------
    def on_b_response(self, response: Response, key: str, now: float) -> None:
        call_routing.on_b_response(self, response, key, now)

    def on_a_response(self, response: Response, key: str, now: float) -> None:
        call_routing.on_a_response(self, response, key, now)

    def on_timeout(self, side: Side, key: str, now: float) -> None:
        call_routing.on_timeout(self, side, key, now)

    def on_request(self, side: Side, request: Request, key: str, now: float) -> None:
        """An in-dialog request from `side` (BYE, re-INVITE, INFO, OPTIONS ...)."""
        call_routing.on_request(self, side, request, key, now)

    def on_a_ack(self, now: float) -> None:
        self.feed(CallInput.A_ACK, now)

    def on_a_cancel(self, now: float) -> None:
        self.feed(CallInput.A_CANCEL, now)

    def hangup(self, reason: str, now: float) -> None:
        self.end_reason = self.end_reason or reason
        self.feed(CallInput.HANGUP, now)

    # -- helpers --------------------------------------------------------------------
    def _leg(self, side: Side) -> LegState:
        return self.a if side is Side.A else self.b

    def _peer_for(self, side: Side) -> Addr:
        return self.a.peer if side is Side.A else self.b.peer

    def _respond_a(
        self,
        status: int,
        now: float,
        *,
        headers: list[tuple[str, str]] | None = None,
        body: bytes = b"",
    ) -> None:
        response = make_response(
            self.a_invite, status, to_tag=self.a_tag, headers=headers or [], body=body
        )
        self.services.send_response(self.a_key, response, now)


Handler = Callable[[Call, float, "Request | Response | None", str], None]
S, I = CallState, CallInput  # noqa: E741 -- the table reads better short

TABLE: dict[tuple[CallState, CallInput], tuple[Handler, CallState]] = {
    (S.ANNOUNCING, I.A_ACK): (consent_phase.on_announce_ack, S.ANNOUNCING),
    (S.ANNOUNCING, I.CONNECT_OFFICE): (
        consent_phase.on_connect_office,
        S.ANNOUNCING,
    ),  # handler moves on
    (S.ANNOUNCING, I.HANGUP): (consent_phase.on_hangup_announcing, S.ENDING),
    (S.ANNOUNCING, I.A_BYE): (call_hangup.on_a_bye, S.ENDING),
    (S.ANNOUNCING, I.B_BYE): (consent_phase.on_b_bye_announcing, S.ENDING),
    (S.ANNOUNCING, I.A_CANCEL): (consent_phase.on_a_cancel_announcing, S.ENDING),
    (S.ANNOUNCING, I.BYE_DONE): (call_hangup.on_bye_done, S.ENDED),
    (S.CALLING, I.A_BYE): (consent_phase.on_a_bye_before_b, S.CANCELLING),
    (S.EARLY, I.A_BYE): (consent_phase.on_a_bye_before_b, S.CANCELLING),
    (S.CANCELLING, I.A_ACK): (call_hangup.noop, S.CANCELLING),
    (S.CALLING, I.B_PROVISIONAL): (call_answer.on_b_provisional, S.EARLY),
    (S.EARLY, I.B_PROVISIONAL): (call_answer.on_b_provisional, S.EARLY),
    (S.CALLING, I.B_SUCCESS): (call_answer.on_b_success, S.ANSWERED),
    (S.EARLY, I.B_SUCCESS): (call_answer.on_b_success, S.ANSWERED),
    (S.CALLING, I.B_FAILURE): (call_answer.on_b_failure, S.ENDED),
    (S.EARLY, I.B_FAILURE): (call_answer.on_b_failure, S.ENDED),
    (S.CALLING, I.A_CANCEL): (call_hangup.on_a_cancel, S.CANCELLING),
    (S.EARLY, I.A_CANCEL): (call_hangup.on_a_cancel, S.CANCELLING),
    (S.CANCELLING, I.B_PROVISIONAL): (call_hangup.noop, S.CANCELLING),
    (S.CANCELLING, I.B_FAILURE): (call_hangup.on_cancelled_b_final, S.ENDED),
    (S.CANCELLING, I.B_SUCCESS): (call_hangup.on_cancelled_b_final, S.ENDING),
    (S.CALLING, I.HANGUP): (call_hangup.on_hangup_early, S.CANCELLING),
    (S.EARLY, I.HANGUP): (call_hangup.on_hangup_early, S.CANCELLING),
    (S.ANSWERED, I.A_ACK): (call_hangup.noop, S.CONFIRMED),  # the transactions stop the 2xx
    (S.CONFIRMED, I.A_ACK): (call_hangup.noop, S.CONFIRMED),  # a retransmitted ACK
    (S.ANSWERED, I.A_BYE): (call_hangup.on_a_bye, S.ENDING),
    (S.CONFIRMED, I.A_BYE): (call_hangup.on_a_bye, S.ENDING),
    (S.ANSWERED, I.B_BYE): (call_hangup.on_b_bye, S.ENDING),
    (S.CONFIRMED, I.B_BYE): (call_hangup.on_b_bye, S.ENDING),
    (S.ANSWERED, I.HANGUP): (call_hangup.on_hangup, S.ENDING),
    (S.CONFIRMED, I.HANGUP): (call_hangup.on_hangup, S.ENDING),
    (S.ENDING, I.BYE_DONE): (call_hangup.on_bye_done, S.ENDED),
    (S.ENDING, I.A_BYE): (call_hangup.on_a_bye, S.ENDING),  # both hung up at once
    (S.ENDING, I.B_BYE): (call_hangup.on_b_bye, S.ENDING),
    (S.ENDING, I.HANGUP): (call_hangup.noop, S.ENDING),
    (S.ENDING, I.A_ACK): (call_hangup.noop, S.ENDING),
}
