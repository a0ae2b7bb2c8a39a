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
a socket or a clock themselves, `now` is passed in.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from b2bua import call_timers, call_trunk, codec_policy, consent_phase, leg_sdp
from b2bua import hunt as hunt_steps
from b2bua import reinvite as reinvite_steps
from b2bua import transfer as transfer_steps
from b2bua.call_state import ALLOW, CODECS, CallInput, CallState, Side
from b2bua.consent import (
    ConsentMachine,
    ConsentRecord,
)
from b2bua.dialog import Dialog
from b2bua.errors import SipError
from b2bua.headers import Address, Headers, Via
from b2bua.hunt import Hunt, Phase
from b2bua.info_dtmf import ACCEPT_HEADER, parse_info_dtmf
from b2bua.media_control import MediaControl, MediaLeg, RecordingControl, media_target
from b2bua.message import Request, Response, make_response
from b2bua.sdp import SessionDescription, anchor, parse_sdp
from b2bua.sdp_crypto import (
    SrtpKeys,
    offer_wants_srtp,
)
from b2bua.session_timer import SessionTimer, uac_headers, uas_negotiate
from b2bua.transaction import create_cancel, new_branch
from b2bua.transfer import Transfer
from b2bua.uri import URI
from rtp.srtp import SrtpKey

__all__ = [  # the call's states and sides live in call_state.py; callers import them here
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

Addr = tuple[str, int]


@dataclass(frozen=True)
class Target:
    """Where leg B goes: Request-URI, next hop and transport, and the To user."""

    uri: URI
    destination: Addr
    transport: str
    to_user: str
    # Caller ID toward B (router.Presentation): None/empty keeps the caller's From.
    from_user: str | None = None
    from_display: str | None = None
    extra_headers: tuple[tuple[str, str], ...] = ()  # P-Asserted-Identity, Privacy
    caller_label: str | None = None  # the catalog's caller ("withheld" for CLIR)
    credentials: tuple[str, str] | None = None  # digest (user, password) for B's 401/407
    srtp: str = "off"  # SRTP policy of B's leg (trunk.srtp or extension.srtp)
    wideband: bool = False  # B is an extension offered G.722 (codec_policy.py)


class CallServices(Protocol):
    """What a call needs from the switch that owns it."""

    local: Addr  # our SIP address (Via, Contact)
    media: MediaControl
    recording: RecordingControl | None  # None: nothing is ever announced or recorded

    def send_request(
        self, call: Call, side: Side, request: Request, dest: Addr, transport: str, now: float
    ) -> str: ...

    def send_response(self, key: str, response: Response, now: float) -> None: ...

    def send_ack(self, request: Request, dest: Addr, transport: str) -> None: ...

    def call_ended(self, call: Call, now: float) -> None: ...

    def media_inactive(self, leg_id: str) -> None: ...

    def transfer_target(self, user: str, now: float) -> Target | None: ...

    def trunk_alternative(
        self, tried: Sequence[Addr], status: int | None, now: float
    ) -> Addr | None: ...

    def bind_call_id(self, call: Call, call_id: str, side: Side) -> None: ...


@dataclass
class LegState:
    dialog: Dialog | None = None
    media: MediaLeg | None = None
    peer: Addr = ("", 0)
    transport: str = "UDP"
    bye_pending: bool = False
    # SDES-SRTP of this leg alone (the other leg decides for itself): the policy, the
    # negotiated keys, and the keys of our offer still waiting for its answer.
    srtp_policy: str = "off"
    srtp: SrtpKeys | None = None
    srtp_offer: dict[int, SrtpKey] | None = None
    mediasec: bool = False  # the trunk's leg under Telekom's mediasec (leg_sdp.py)
    # RFC 4028 on this leg (call_timers.py): the agreed timer, when it was last
    # refreshed, the SDP we last sent here (a refresh repeats it), our refresh in flight.
    timer: SessionTimer | None = None
    timer_start: float = 0.0
    last_sdp: bytes = b""
    refresh_key: str | None = None


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
        call._send_b_invite(body, now)
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

    def _send_b_invite(self, body: bytes, now: float) -> None:
        self.b_invite = self._build_b_invite(body)
        self.b.last_sdp = body
        self.b.peer, self.b.transport = self.target.destination, self.target.transport
        self.b_invite_key = self.services.send_request(
            self, Side.B, self.b_invite, self.target.destination, self.target.transport, now
        )
        hunt_steps.invite_sent(self, now)  # a hunt's ring time; parallel: the others

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
        return self._via(transport)

    def contact(self) -> Address:
        return self._contact()

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

    def _contact(self) -> Address:
        host, port = self.services.local
        return Address(URI("sip", "b2bua", host=host, port=port))

    def _via(self, transport: str) -> Via:
        host, port = self.services.local
        return Via(transport, host, port, (("branch", new_branch()), ("rport", None)))

    def _build_b_invite(self, body: bytes, cseq: int = 1) -> Request:
        caller = self.a_invite.from_addr
        host, port = self.services.local
        # Only the caller's user part and display name cross over: B sees us as the peer.
        user = self.target.from_user or caller.uri.user or "anonymous"
        display = caller.display_name if self.target.from_user is None else self.target.from_display
        from_addr = Address(URI("sip", user, host=host, port=port), display).with_param(
            "tag", self.b_tag
        )
        to_addr = Address(URI("sip", self.target.to_user, host=self.target.uri.host))
        fields = [
            ("Via", str(self._via(self.target.transport))),
            ("Max-Forwards", "70"),
            ("From", str(from_addr)),
            ("To", str(to_addr)),
            ("Call-ID", self.b_call_id),
            ("CSeq", f"{cseq} INVITE"),
            ("Contact", str(self._contact())),
            ("Allow", ALLOW),
            *self.target.extra_headers,
            *uac_headers(),
        ]
        if body:
            fields.append(("Content-Type", "application/sdp"))
        return Request("INVITE", self.target.uri, Headers.of(*fields), body)

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

    # -- handlers (called through TABLE) ----------------------------------------------
    def _on_b_provisional(self, now: float, msg: Request | Response | None, key: str) -> None:
        assert isinstance(msg, Response)
        if msg.status == 100 or self.a_answered:
            return  # A answered already (consent asked first): nothing to relay
        body = b""
        if msg.body:
            try:
                body = leg_sdp.anchored_for_a(self, msg.body)
            except SipError as exc:  # early media we can not take: ring without it
                log.info("call %s: early SDP from B ignored: %s", self.id, exc)
        headers = [("Contact", str(self._contact()))]
        if body:
            headers.append(("Content-Type", "application/sdp"))
        status = msg.status if msg.status in (180, 181, 182, 183) else 180
        self._respond_a(status, now, headers=headers, body=body)

    def _confirm_b(self, msg: Response, now: float) -> None:
        assert self.b_invite is not None
        dialog = Dialog.from_uac(self.b_invite, msg, local_contact=self._contact())
        dialog.receive_response(msg)
        dialog.request_headers = self.dialog_headers(Side.B)
        self.b.dialog = dialog
        call_timers.b_answered(self, msg, now)
        ack = dialog.create_ack(msg, via=self._via(self.b.transport))
        self.services.send_ack(ack, self._b_next_hop(), self.b.transport)

    def _on_b_success(self, now: float, msg: Request | Response | None, key: str) -> None:
        assert isinstance(msg, Response)
        self._confirm_b(msg, now)
        if self.a_answered:
            # Inbound after consent: A is up; take B's answer and bridge.
            try:
                sdp = parse_sdp(msg.body) if msg.body else None
                leg_sdp.set_keys(self.b, None if sdp is None else leg_sdp.answer_keys(self.b, sdp))
            except SipError as exc:
                self._refuse_b_answer(exc, now)
                return
            remote, fmt, hold = media_target(sdp) if sdp is not None else (None, None, False)
            assert self.a.media is not None and self.b.media is not None
            self.b.media.set_remote(remote, fmt)
            if hold:
                self.b.media.hold()
            self.services.media.bridge(self.a.media, self.b.media)
            self.state = CallState.CONFIRMED
            return
        try:
            body = leg_sdp.anchored_for_a(self, msg.body) if msg.body else self._no_answer_body()
        except SipError as exc:
            self._refuse_b_answer(exc, now)
            return
        if self.consent_first:
            # Outbound: the external party hears the prompt before A is answered.
            self.a_answer_body = body
            self.state = CallState.ANNOUNCING
            assert self.consent is not None
            consent_phase.apply(self, self.consent.start(now), now)
            return
        self._answer_a(now, body)

    def _refuse_b_answer(self, exc: SipError, now: float) -> None:
        """B answered with SDP we can not take (SRTP required and a plain answer, keys
        we did not offer): B is ACKed and hung up, A hears 488 (or a BYE if answered)."""
        log.warning("call %s: callee's answer refused: %s", self.id, exc)
        self.end_reason = f"callee's answer refused ({exc.detail or exc.reason})"
        self.state = CallState.ENDING
        if not self.a_answered:
            self._respond_a(exc.status, now)
        elif self.a.dialog is not None and not self.a.dialog.terminated:
            self._send_bye(Side.A, now)
        self._send_bye(Side.B, now)

    def _no_answer_body(self) -> bytes:
        """B's 2xx without SDP (no offer was sent): nothing to check, unless B's leg
        requires SRTP."""
        if self.b.srtp_policy == "required" and self.b.srtp_offer is not None:
            raise SipError(488, "Not Acceptable Here", "SRTP required: the answer has no SDP")
        return b""

    def _answer_a(self, now: float, body: bytes) -> None:
        self.answered_at = now
        headers = [("Contact", str(self._contact())), ("Allow", ALLOW)]
        headers += call_timers.answer_headers_for_a(self, now)
        self.a.last_sdp = body
        if body:
            headers.append(("Content-Type", "application/sdp"))
        self.a.dialog = Dialog.from_uas(self.a_invite, self.a_tag, self._contact())
        self.a.dialog.request_headers = self.dialog_headers(Side.A)
        self._respond_a(200, now, headers=headers, body=body)
        self.a.dialog.confirm()
        self.a_answered = True
        if self.a.media is not None and self.b.media is not None:
            self.services.media.bridge(self.a.media, self.b.media)

    def _on_b_failure(self, now: float, msg: Request | Response | None, key: str) -> None:
        status = msg.status if isinstance(msg, Response) else 408
        if hunt_steps.exhausted(self, now):
            return
        self.end_reason = f"callee answered {status}"
        if self.a_answered:
            # The caller was answered for the announcement: end its dialog with BYE.
            self.state = CallState.ENDING
            self._send_bye(Side.A, now)
            return
        self._respond_a(map_failure(status), now)
        self._finish(now, self.end_reason)

    # -- the consent phase ---------------------------------------------------------------

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

    def _on_a_ack(self, now: float, msg: Request | Response | None, key: str) -> None:
        pass  # the 2xx retransmission is stopped by the transaction layer

    def _on_a_cancel(self, now: float, msg: Request | Response | None, key: str) -> None:
        self._respond_a(487, now)
        self._on_a_cancel_quiet(now)

    def _on_cancelled_b_final(self, now: float, msg: Request | Response | None, key: str) -> None:
        # B's 487 (or any final) after our CANCEL: A already has its 487.
        if isinstance(msg, Response) and 200 <= msg.status < 300:
            # The 200 crossed our CANCEL: confirm and end B at once (RFC 3261 9.1).
            self._on_b_success_after_cancel(now, msg)
            return
        self._finish(now, "cancelled by caller")

    def _on_b_success_after_cancel(self, now: float, msg: Response) -> None:
        assert self.b_invite is not None
        dialog = Dialog.from_uac(self.b_invite, msg, local_contact=self._contact())
        dialog.receive_response(msg)
        dialog.request_headers = self.dialog_headers(Side.B)
        self.b.dialog = dialog
        self.services.send_ack(
            dialog.create_ack(msg, via=self._via(self.b.transport)),
            self._b_next_hop(),
            self.b.transport,
        )
        self.state = CallState.ENDING
        self._send_bye(Side.B, now)

    def _on_bye_from(self, side: Side, now: float) -> None:
        self.end_reason = self.end_reason or f"{side.value} hung up"
        other = Side.B if side is Side.A else Side.A
        leg = self._leg(other)
        if leg.dialog is not None and not leg.dialog.terminated:
            self._send_bye(other, now)
        else:
            self._finish(now, self.end_reason)

    def _on_a_bye(self, now: float, msg: Request | Response | None, key: str) -> None:
        self._on_bye_from(Side.A, now)

    def _on_b_bye(self, now: float, msg: Request | Response | None, key: str) -> None:
        self._on_bye_from(Side.B, now)

    def _on_hangup(self, now: float, msg: Request | Response | None, key: str) -> None:
        sent = False
        for side in (Side.A, Side.B):
            leg = self._leg(side)
            if leg.dialog is not None and not leg.dialog.terminated:
                self._send_bye(side, now)
                sent = True
        if not sent:
            self._finish(now, self.end_reason)

    def _on_hangup_early(self, now: float, msg: Request | Response | None, key: str) -> None:
        # Before B answered: A gets an error final, B a CANCEL.
        self._respond_a(480, now)
        self._on_a_cancel_quiet(now)

    def _on_a_cancel_quiet(self, now: float) -> None:
        if hunt_steps.cancel_forks(self, now):
            return  # a group ringing in parallel: every ringing member got its CANCEL
        assert self.b_invite is not None
        self.services.send_request(
            self,
            Side.B,
            create_cancel(self.b_invite),
            self.target.destination,
            self.target.transport,
            now,
        )

    def _on_bye_done(self, now: float, msg: Request | Response | None, key: str) -> None:
        if any(leg.bye_pending for leg in (self.a, self.b)):
            self.state = CallState.ENDING
            return
        self._finish(now, self.end_reason)

    def _noop(self, now: float, msg: Request | Response | None, key: str) -> None:
        pass

    # -- helpers --------------------------------------------------------------------
    def _leg(self, side: Side) -> LegState:
        return self.a if side is Side.A else self.b

    def _b_next_hop(self) -> Addr:
        return self.b.peer

    # -- SRTP per leg (sdp_crypto.py negotiates, the relay leg encrypts) -----------------

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

    def _send_bye(self, side: Side, now: float) -> None:
        leg = self._leg(side)
        assert leg.dialog is not None
        bye = leg.dialog.create_request("BYE", via=self._via(leg.transport))
        leg.dialog.terminate()
        leg.bye_pending = True
        self.services.send_request(self, side, bye, self._peer_for(side), leg.transport, now)

    def _peer_for(self, side: Side) -> Addr:
        return self.a.peer if side is Side.A else self.b.peer

    def _finish(self, now: float, reason: str) -> None:
        if self.ended_at is not None:
            return
        self.state = CallState.ENDED
        self.ended_at = now
        self.end_reason = self.end_reason or reason
        if self.consent is not None:
            consent_phase.apply(self, self.consent.call_ended(now), now)
        hub = self.services.recording
        if hub is not None:
            hub.call_ended(self.id, now, self.end_reason)
        if self.transfer is not None:
            self.transfer.media.close()
            self.transfer = None
        media = self.services.media
        for leg in (self.a, self.b):
            if leg.media is not None:
                media.unbridge(leg.media)
                leg.media.close()
                leg.media = None
        self.services.call_ended(self, now)

    # -- entry points used by the switch -----------------------------------------------
    def on_b_response(self, response: Response, key: str, now: float) -> None:
        if call_timers.on_response(self, Side.B, response, key, now):
            return
        if key in self.relayed:
            reinvite_steps.on_relayed_response(self, response, key, now)
            return
        if hunt_steps.late_answer(self, response, key, now):
            return
        _, method = response.cseq
        if method == "BYE":
            if response.status >= 200:
                self.b.bye_pending = False
                self.feed(CallInput.BYE_DONE, now, response)
            return
        if method != "INVITE" or key != self.b_invite_key:
            return  # CANCEL's 200 and other non-INVITE answers need nothing
        if response.status < 200:
            self.feed(CallInput.B_PROVISIONAL, now, response)
        elif response.status < 300:
            if self.state in (
                CallState.ANSWERED,
                CallState.CONFIRMED,
                CallState.ENDING,
                CallState.ANNOUNCING,
            ):
                return  # a retransmitted 2xx: the dialog re-ACKs below
            self.feed(CallInput.B_SUCCESS, now, response)
        elif response.status in (401, 407) and call_trunk.retry_with_credentials(
            self, response, now
        ):
            return  # the INVITE went out again with credentials (the ICT ACKed the 401)
        elif response.status in (408, 503) and call_trunk.next_trunk(self, response.status, now):
            return  # tried at the next trunk server
        elif hunt_steps.ring_next(self, now):
            return  # busy, declined, unreachable: the hunt group's next target rings
        else:
            self.feed(CallInput.B_FAILURE, now, response)

    def on_a_response(self, response: Response, key: str, now: float) -> None:
        if call_timers.on_response(self, Side.A, response, key, now):
            return
        if key in self.relayed:
            reinvite_steps.on_relayed_response(self, response, key, now)
            return
        if response.cseq[1] == "BYE" and response.status >= 200:
            self.a.bye_pending = False
            self.feed(CallInput.BYE_DONE, now, response)

    def on_timeout(self, side: Side, key: str, now: float) -> None:
        if side is Side.C:
            transfer_steps.on_timeout(self, key, now)
            return
        if call_timers.on_timeout(self, side, key, now):
            return
        if key in self.relayed:
            server_key, request, _ = self.relayed.pop(key)
            self.services.send_response(server_key, make_response(request, 408), now)
            return
        if side is Side.B and hunt_steps.leg_timed_out(self, key, now):
            return  # a parallel member, a given-up INVITE or a stray BYE of the hunt
        if side is Side.B and key == self.b_invite_key:
            if not call_trunk.next_trunk(self, None, now) and not hunt_steps.ring_next(self, now):
                self.feed(CallInput.B_FAILURE, now, None)
            return
        leg = self._leg(side)
        if leg.bye_pending:
            leg.bye_pending = False
            self.feed(CallInput.BYE_DONE, now)

    def on_request(self, side: Side, request: Request, key: str, now: float) -> None:
        """An in-dialog request from `side` (BYE, re-INVITE, INFO, OPTIONS ...)."""
        detached = self.detached.get(request.call_id)
        if detached is not None:
            transfer_steps.detached_request(self, detached, request, key, now)
            return
        leg = self._leg(side)
        if leg.dialog is None:
            self.services.send_response(key, make_response(request, 481), now)
            return
        try:
            leg.dialog.receive_request(request)
        except SipError as exc:
            self.services.send_response(key, make_response(request, exc.status), now)
            return
        method = request.method
        if method == "BYE":
            self.services.send_response(key, make_response(request, 200), now)
            self.feed(CallInput.A_BYE if side is Side.A else CallInput.B_BYE, now, request)
        elif method in ("INVITE", "UPDATE"):
            call_timers.refreshed(leg, now)  # any re-INVITE or UPDATE refreshes its leg
            reinvite_steps.relay_reinvite(self, side, request, key, now)
        elif method == "INFO":
            # DTMF by SIP INFO is consent input; it is never forwarded to the other side.
            try:
                info = parse_info_dtmf(request.headers.get("Content-Type"), request.body)
            except SipError as exc:
                accept = [("Accept", ACCEPT_HEADER)] if exc.status == 415 else []
                self.services.send_response(
                    key, make_response(request, exc.status, headers=accept), now
                )
                return
            self.services.send_response(key, make_response(request, 200), now)
            if info is not None:
                external = Side.A if self.direction == "inbound" else Side.B
                self.on_digit(info.digit, "info", "external" if side is external else "office", now)
        elif method == "REFER":
            transfer_steps.start(self, side, request, key, now)
        elif method in ("OPTIONS", "NOTIFY"):
            self.services.send_response(key, make_response(request, 200), now)
        else:
            self.services.send_response(
                key, make_response(request, 501, headers=[("Allow", ALLOW)]), now
            )

    def on_a_ack(self, now: float) -> None:
        self.feed(CallInput.A_ACK, now)

    def on_a_cancel(self, now: float) -> None:
        self.feed(CallInput.A_CANCEL, now)

    def hangup(self, reason: str, now: float) -> None:
        self.end_reason = self.end_reason or reason
        self.feed(CallInput.HANGUP, now)


def map_failure(status: int) -> int:
    """The final status A gets when B failed: the callee's verdict, without B's auth."""
    if status in (401, 407):
        return 403  # B's challenge is for us, not for the caller
    if status == 408:
        return 480
    if 400 <= status < 700:
        return status
    return 502


Handler = Callable[[Call, float, "Request | Response | None", str], None]
S, I = CallState, CallInput  # noqa: E741 -- the table reads better short

TABLE: dict[tuple[CallState, CallInput], tuple[Handler, CallState]] = {
    (S.ANNOUNCING, I.A_ACK): (consent_phase.on_announce_ack, S.ANNOUNCING),
    (S.ANNOUNCING, I.CONNECT_OFFICE): (
        consent_phase.on_connect_office,
        S.ANNOUNCING,
    ),  # handler moves on
    (S.ANNOUNCING, I.HANGUP): (consent_phase.on_hangup_announcing, S.ENDING),
    (S.ANNOUNCING, I.A_BYE): (Call._on_a_bye, S.ENDING),
    (S.ANNOUNCING, I.B_BYE): (consent_phase.on_b_bye_announcing, S.ENDING),
    (S.ANNOUNCING, I.A_CANCEL): (consent_phase.on_a_cancel_announcing, S.ENDING),
    (S.ANNOUNCING, I.BYE_DONE): (Call._on_bye_done, S.ENDED),
    (S.CALLING, I.A_BYE): (consent_phase.on_a_bye_before_b, S.CANCELLING),
    (S.EARLY, I.A_BYE): (consent_phase.on_a_bye_before_b, S.CANCELLING),
    (S.CANCELLING, I.A_ACK): (Call._noop, S.CANCELLING),
    (S.CALLING, I.B_PROVISIONAL): (Call._on_b_provisional, S.EARLY),
    (S.EARLY, I.B_PROVISIONAL): (Call._on_b_provisional, S.EARLY),
    (S.CALLING, I.B_SUCCESS): (Call._on_b_success, S.ANSWERED),
    (S.EARLY, I.B_SUCCESS): (Call._on_b_success, S.ANSWERED),
    (S.CALLING, I.B_FAILURE): (Call._on_b_failure, S.ENDED),
    (S.EARLY, I.B_FAILURE): (Call._on_b_failure, S.ENDED),
    (S.CALLING, I.A_CANCEL): (Call._on_a_cancel, S.CANCELLING),
    (S.EARLY, I.A_CANCEL): (Call._on_a_cancel, S.CANCELLING),
    (S.CANCELLING, I.B_PROVISIONAL): (Call._noop, S.CANCELLING),
    (S.CANCELLING, I.B_FAILURE): (Call._on_cancelled_b_final, S.ENDED),
    (S.CANCELLING, I.B_SUCCESS): (Call._on_cancelled_b_final, S.ENDING),
    (S.CALLING, I.HANGUP): (Call._on_hangup_early, S.CANCELLING),
    (S.EARLY, I.HANGUP): (Call._on_hangup_early, S.CANCELLING),
    (S.ANSWERED, I.A_ACK): (Call._on_a_ack, S.CONFIRMED),
    (S.CONFIRMED, I.A_ACK): (Call._noop, S.CONFIRMED),  # a retransmitted ACK
    (S.ANSWERED, I.A_BYE): (Call._on_a_bye, S.ENDING),
    (S.CONFIRMED, I.A_BYE): (Call._on_a_bye, S.ENDING),
    (S.ANSWERED, I.B_BYE): (Call._on_b_bye, S.ENDING),
    (S.CONFIRMED, I.B_BYE): (Call._on_b_bye, S.ENDING),
    (S.ANSWERED, I.HANGUP): (Call._on_hangup, S.ENDING),
    (S.CONFIRMED, I.HANGUP): (Call._on_hangup, S.ENDING),
    (S.ENDING, I.BYE_DONE): (Call._on_bye_done, S.ENDED),
    (S.ENDING, I.A_BYE): (Call._on_a_bye, S.ENDING),  # both hung up at once
    (S.ENDING, I.B_BYE): (Call._on_b_bye, S.ENDING),
    (S.ENDING, I.HANGUP): (Call._noop, S.ENDING),
    (S.ENDING, I.A_ACK): (Call._noop, S.ENDING),
}
