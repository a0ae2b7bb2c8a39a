"""The B2BUA's SIP core: registrar, routing and calls on one transaction layer.

Theory of operation: `Switch` is a SipCore (see runner.py), so it holds no socket and
reads no clock. Every message goes through the RFC 3261 transaction layer; the events
that come out are dispatched here:

- REGISTER goes to the registrar; OPTIONS outside a dialog is answered with our
  capabilities;
- an INVITE outside a dialog is inbound when its *socket* source IP is in
  `trunk.inbound_from`; otherwise the caller must authenticate as an extension (a 401
  challenge, with no 100 Trying before it). The router picks the target, and a `Call`
  bridges the two dialogs;
- requests inside a dialog, CANCEL, ACK and responses go to the call that owns the
  Call-ID or the client transaction.

Deadlines (transactions, registrations, maximum call length) are merged into one
`get_timer()`. The relay reports silent media legs through `media_inactive`, from the
I/O side; the adapter's `wakeup` makes the runner call `handle_timer` soon after.
"""

from __future__ import annotations

import heapq
import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TypeVar

from b2bua.call import ALLOW, Call, CallServices, Side, Target
from b2bua.codec_policy import is_wideband
from b2bua.config import Config
from b2bua.consent import ConsentMachine
from b2bua.errors import SipError
from b2bua.guard import Guard, Verdict
from b2bua.hunt import employee_consent, start_hunt
from b2bua.info_dtmf import ACCEPTED_TYPES
from b2bua.media_control import MediaControl, RecordingControl
from b2bua.message import Message, Request, Response, make_response
from b2bua.pbx import acting_extension, is_pbx, keep_dialled
from b2bua.registrar import Registrar
from b2bua.router import Route, Router
from b2bua.tollfraud import Policy, TollFraud, default_rules
from b2bua.transaction import (
    AckReceived,
    AckTimedOut,
    CancelReceived,
    Event,
    RequestReceived,
    ResponseReceived,
    TimerConfig,
    TransactionLayer,
    TransactionTimedOut,
)
from b2bua.trunk_monitor import TrunkMonitor, is_ip_literal
from b2bua.trunk_registration import TrunkRegistration, registration_for
from b2bua.uri import URI
from b2bua.validate import DEFAULT_CONTENT_TYPES, RequestRejectedError, check_request

log = logging.getLogger("b2bua.switch")
M = TypeVar("M", Request, Response)
# Option tags a peer may Require of us: session timers (RFC 4028, call_timers.py).
# 100rel (RFC 3262) is not supported: Require: 100rel gets 420 with Unsupported.
SUPPORTED_OPTIONS = frozenset({"timer"})
# INFO carries DTMF (consent digits) in these bodies; call.py parses them.
INFO_CONTENT_TYPES = DEFAULT_CONTENT_TYPES | frozenset(ACCEPTED_TYPES)

Addr = tuple[str, int]


@dataclass
class SwitchStats:
    calls_started: int = 0
    calls_ended: int = 0
    calls_rejected: int = 0
    auth_challenges: int = 0
    auth_failures: int = 0
    requests_rejected: int = 0


class Switch:
    """Registrar, router and calls of one B2BUA instance."""

    def __init__(
        self,
        config: Config,
        registrar: Registrar,
        media: MediaControl,
        local: Addr,
        *,
        timers: TimerConfig | None = None,
        recording: RecordingControl | None = None,
        prompt_sha256: dict[str, str] | None = None,
    ) -> None:
        self.config = config
        self.recording = recording
        self.prompt_sha256 = prompt_sha256 or {}
        self.registrar = registrar
        self.router = Router(config)
        self.media = media
        self.local = local
        self.layer = TransactionLayer(timers)
        self.stats = SwitchStats()
        self.wakeup: Callable[[], None] | None = None
        self.calls: dict[str, Call] = {}  # by our call id
        # Running calls per caller address (the guard's per-source limit), kept as calls
        # start and end so that screening an INVITE does not scan every call.
        self._calls_from: Counter[str] = Counter()
        self._call_source: dict[str, str] = {}
        self._by_call_id: dict[str, tuple[Call, Side]] = {}  # A's and B's Call-IDs
        self._by_key: dict[str, tuple[Call, Side]] = {}  # client transactions
        self._by_invite_key: dict[str, Call] = {}  # A's INVITE server transactions
        self._call_ids: dict[str, set[str]] = {}  # every Call-ID bound to a call
        # Each call's next deadline (its own timers, its maximum length) in a heap with
        # lazy deletion; calls that took input are re-read before the next get_timer.
        self._touched: set[str] = set()
        self._call_deadline: dict[str, float] = {}
        self._deadline_heap: list[tuple[float, str]] = []
        # Peers reached over a stream (TCP or TLS): replies go back the same way.
        self._tcp_peers: dict[Addr, str] = {}
        self._inactive_legs: list[str] = []
        self._media_events: list[tuple[str, str, float, str, str, str]] = []
        self.trunk_registration: TrunkRegistration | None = None
        self._registration_keys: set[str] = set()
        self._registration_pending = False  # waiting for DNS to name a trunk target
        # The trunk's targets and their health (OPTIONS keepalive, failover). A host
        # name's targets arrive from DNS (serve.py calls set_trunk_targets).
        trunk = config.trunk
        self.trunk_monitor = TrunkMonitor(
            trunk.host[0],
            interval_s=trunk.keepalive_s,
            transport=trunk.transport.upper(),
            failover=trunk.failover_hosts,
            # Late-bound: a SIGHUP reload replaces the router (it keeps the agreement).
            headers=lambda: self.router.trunk_request_headers(),  # noqa: PLW0108
        )
        if is_ip_literal(trunk.host[0]):
            self.trunk_monitor.set_primary([trunk.host], 0.0)
        self._probe_keys: dict[str, Addr] = {}  # OPTIONS client transactions -> target
        self._services = _Services(self)
        self.guard: Guard | None = None  # per-source limits and bans (serve.py sets it)
        self.tollfraud = TollFraud(toll_policies(config, self.router))
        # Call-IDs of emergency calls (both legs), and of emergency INVITEs still being
        # authenticated (with the time they were seen, to forget those that never start).
        self._emergency_call_ids: set[str] = set()
        self._emergency_pending: dict[str, float] = {}

    # -- SipCore ----------------------------------------------------------------------
    def receive(self, message: Message, source: Addr, transport: str, now: float) -> None:
        verdict = self._screen(message, source[0], now)
        if verdict is Verdict.DROP:
            return  # silently: a banned source or a stranger learns nothing
        reliable = transport != "UDP"
        if reliable:
            self._tcp_peers[source] = transport
        events = self.layer.receive_message(message, source, now, reliable=reliable)
        if verdict is Verdict.REJECT_503:
            for event in events:  # a retransmission gives no event: the layer re-sends
                if isinstance(event, RequestReceived):
                    busy = make_response(event.request, 503, headers=[("Retry-After", "30")])
                    self._respond(event.key, busy, now)
            return
        self._dispatch(events, source, transport, now)

    def _screen(self, message: Message, ip: str, now: float) -> Verdict:
        """The guard's verdict (b2bua/guard.py); ALLOW when no guard is set."""
        if self.guard is None:
            return Verdict.ALLOW
        method = message.method if isinstance(message, Request) else None
        new_dialog = method is not None and message.to_addr.tag is None
        call_id = message.call_id
        if call_id in self._emergency_call_ids or call_id in self._emergency_pending:
            return Verdict.ALLOW
        if (
            new_dialog
            and isinstance(message, Request)
            and self.router.is_emergency_request(message)
            and self.guard.is_known(ip, now)
        ):
            # An emergency call from an office phone (or the trunk) passes every ban and
            # limit, with all its messages (the ACK of the 401 too); it must still
            # authenticate, so a stranger gains nothing here.
            stale = [c for c, at in self._emergency_pending.items() if now - at > 64.0]
            for old in stale:
                del self._emergency_pending[old]
            if len(self._emergency_pending) < 1000:
                self._emergency_pending[call_id] = now
            return Verdict.ALLOW
        from_source = 0
        if new_dialog and method == "INVITE":
            from_source = self._calls_from[ip]
        return self.guard.screen(
            ip,
            now,
            method=method,
            new_dialog=new_dialog,
            in_call=message.call_id in self._by_call_id,
            calls_total=len(self.calls),
            calls_from_source=from_source,
        )

    def handle_timer(self, now: float) -> None:
        self._dispatch(self.layer.handle_timer(now), ("", 0), "UDP", now)
        self.registrar.handle_timer(now)
        if self.trunk_registration is not None:
            self._send_registration(self.trunk_registration.on_timer(now), now)
        self._send_probes(now)
        events, self._media_events = self._media_events, []
        for call_id, kind, at, digit, method, side in events:
            call = self.calls.get(call_id)
            if call is None:
                continue
            if kind == "digit":
                log.info(
                    "event=digit call=%s digit=%s method=%s side=%s", call_id, digit, method, side
                )
                self._touched.add(call_id)
                call.on_digit(digit, method, side, max(at, now - 1.0))
            elif kind == "prompt_finished":
                self._touched.add(call_id)
                call.on_prompt_finished(now)
        # Calls whose own deadline (consent, session timer) or maximum length is due:
        # from the heap, not a scan of every call on every timer.
        for call in self._due_calls(now):
            self._touched.add(call.id)
            if now - call.started_at >= self.config.rtp.max_call_s:
                log.info("event=max_duration call=%s", call.id)
                call.hangup("maximum call length", now)
                continue
            deadline = call.get_timer()
            if deadline is not None and deadline <= now:
                call.on_timer(now)
        inactive, self._inactive_legs = self._inactive_legs, []
        for leg_id in inactive:
            call = self.calls.get(leg_id.rsplit("-", 1)[0])
            if call is not None:
                log.info("event=media_timeout call=%s leg=%s", call.id, leg_id)
                self._touched.add(call.id)
                call.hangup("no media", now)
        for call_id in self.tollfraud.expired(now):
            call = self.calls.get(call_id)
            if call is not None:
                log.warning("event=tollfraud_minutes call=%s", call.id)
                self._touched.add(call.id)
                call.hangup("daily outbound minutes used up", now)

    def _refresh_deadlines(self) -> None:
        limit = self.config.rtp.max_call_s
        for call_id in self._touched:
            call = self.calls.get(call_id)
            if call is None:
                self._call_deadline.pop(call_id, None)
                continue
            own = call.get_timer()
            deadline = call.started_at + limit if own is None else min(own, call.started_at + limit)
            if self._call_deadline.get(call_id) != deadline:
                self._call_deadline[call_id] = deadline
                heapq.heappush(self._deadline_heap, (deadline, call_id))
        self._touched.clear()

    def _next_call_deadline(self) -> float | None:
        self._refresh_deadlines()
        heap = self._deadline_heap
        # Bounded: every round pops a stale entry or returns.
        while heap:
            deadline, call_id = heap[0]
            if self._call_deadline.get(call_id) == deadline:
                return deadline
            heapq.heappop(heap)
        return None

    def _due_calls(self, now: float) -> list[Call]:
        """Calls whose deadline has come; their entries leave the heap (a call that
        still has a deadline is re-read, being touched, before the next get_timer)."""
        self._refresh_deadlines()
        due: list[Call] = []
        heap = self._deadline_heap
        while heap and heap[0][0] <= now:
            deadline, call_id = heapq.heappop(heap)
            if self._call_deadline.get(call_id) != deadline:
                continue
            del self._call_deadline[call_id]
            call = self.calls.get(call_id)
            if call is not None:
                due.append(call)
        return due

    def get_timer(self) -> float | None:
        deadlines = [self.layer.get_timer(), self.registrar.get_timer()]
        if self._inactive_legs or self._media_events:
            return 0.0
        deadlines.append(self._next_call_deadline())
        if self.trunk_registration is not None:
            deadlines.append(self.trunk_registration.get_timer())
        deadlines.append(self.trunk_monitor.get_timer())
        deadlines.append(self.tollfraud.get_timer())
        present = [d for d in deadlines if d is not None]
        return min(present) if present else None

    def datagrams_to_send(self) -> list[tuple[bytes, Addr, str]]:
        return [
            (data, dest, self._tcp_peers.get(dest, "UDP"))
            for data, dest in self.layer.datagrams_to_send()
        ]

    def media_event(
        self,
        call_id: str,
        kind: str,
        at: float,
        digit: str = "",
        method: str = "",
        side: str = "",
    ) -> None:
        """From the recording hub (I/O side): a digit or the end of a prompt."""
        self._media_events.append((call_id, kind, at, digit, method, side))
        if self.wakeup is not None:
            self.wakeup()

    def media_inactive(self, leg_id: str) -> None:
        """From the relay (I/O side): a leg saw no RTP for the configured time."""
        self._inactive_legs.append(leg_id)
        if self.wakeup is not None:
            self.wakeup()

    # -- dispatch -----------------------------------------------------------------------
    def _dispatch(self, events: list[Event], source: Addr, transport: str, now: float) -> None:
        for event in events:
            try:
                self._dispatch_one(event, transport, now)
            except SipError as exc:
                # A header found broken while handling: answer if we can, never raise.
                self.stats.requests_rejected += 1
                if isinstance(event, RequestReceived) and event.request.method != "ACK":
                    self._respond(event.key, make_response(event.request, exc.status), now)
                log.info("event=rejected status=%d detail=%s", exc.status, exc.detail)

    def _dispatch_one(self, event: Event, transport: str, now: float) -> None:
        if isinstance(event, CancelReceived):
            self._on_cancel(event, now)
        elif isinstance(event, RequestReceived):
            self._on_request(event.request, event.source, event.key, transport, now)
        elif isinstance(event, AckReceived):
            owner = self._by_call_id.get(event.request.call_id)
            if owner is not None and owner[1] is Side.A:
                self._touched.add(owner[0].id)
                owner[0].on_a_ack(now)
        elif isinstance(event, ResponseReceived) and event.key in self._registration_keys:
            if event.response.status >= 200:
                self._registration_keys.discard(event.key)
            assert self.trunk_registration is not None
            self._send_registration(self.trunk_registration.on_response(event.response, now), now)
        elif isinstance(event, TransactionTimedOut) and event.key in self._registration_keys:
            self._registration_keys.discard(event.key)
            assert self.trunk_registration is not None
            self.trunk_registration.on_timeout(now)
        elif isinstance(event, ResponseReceived) and event.key in self._probe_keys:
            target = self._probe_keys[event.key]
            if event.response.status >= 200:
                del self._probe_keys[event.key]
            self.trunk_monitor.on_response(target, event.response, now)
        elif isinstance(event, TransactionTimedOut) and event.key in self._probe_keys:
            self.trunk_monitor.on_timeout(self._probe_keys.pop(event.key), now)
        elif isinstance(event, ResponseReceived):
            owner = self._by_key.get(event.key)
            if owner is not None:
                call, side = owner
                if event.response.status >= 200:
                    self._by_key.pop(event.key, None)
                self._touched.add(call.id)
                if side is Side.B:
                    call.on_b_response(event.response, event.key, now)
                elif side is Side.C:
                    call.on_c_response(event.response, event.key, now)
                else:
                    call.on_a_response(event.response, event.key, now)
        elif isinstance(event, TransactionTimedOut):
            owner = self._by_key.pop(event.key, None)
            if owner is not None:
                self._touched.add(owner[0].id)
                owner[0].on_timeout(owner[1], event.key, now)
        elif isinstance(event, AckTimedOut):
            owner = self._by_call_id.get(event.call_id)
            if owner is not None:
                self._touched.add(owner[0].id)
                owner[0].hangup("no ACK", now)

    def _respond(self, key: str, response: Response, now: float) -> None:
        response = self.stamp(response, "Server")
        self._dispatch(self.layer.send_response(key, response, now), ("", 0), "UDP", now)

    def stamp(self, message: M, header: str) -> M:
        """Adds Server/User-Agent only when sip.user_agent is configured (no product
        name on the wire by default: scanners learn nothing)."""
        agent = self.config.sip.user_agent
        if agent is None:
            return message
        return replace(message, headers=message.headers.set(header, agent))

    def _on_request(
        self, request: Request, source: Addr, key: str, transport: str, now: float
    ) -> None:
        try:
            types = INFO_CONTENT_TYPES if request.method == "INFO" else DEFAULT_CONTENT_TYPES
            check_request(
                request, allowed_content_types=types, supported_extensions=SUPPORTED_OPTIONS
            )
        except RequestRejectedError as exc:
            self.stats.requests_rejected += 1
            self._respond(key, make_response(request, exc.status, headers=exc.headers), now)
            return
        if request.to_addr.tag is not None:
            owner = self._by_call_id.get(request.call_id)
            if owner is None:
                self._respond(key, make_response(request, 481), now)
                return
            call, side = owner
            self._touched.add(call.id)
            call.on_request(side, request, key, now)
            return
        method = request.method
        if method == "REGISTER":
            self._respond(key, self.registrar.handle_register(request, source, transport, now), now)
        elif method == "OPTIONS":
            headers = [("Allow", ALLOW), ("Accept", "application/sdp")]
            self._respond(key, make_response(request, 200, headers=headers), now)
        elif method == "INVITE":
            self._on_invite(request, source, key, transport, now)
        elif method in ("BYE", "INFO", "UPDATE", "REFER", "NOTIFY", "PRACK"):
            self._respond(key, make_response(request, 481), now)
        else:
            self._respond(key, make_response(request, 501, headers=[("Allow", ALLOW)]), now)

    def _on_invite(
        self, request: Request, source: Addr, key: str, transport: str, now: float
    ) -> None:
        extension: str | None = None
        office_user: str | None = None  # a PBX's own extension of the caller (pbx.py)
        if not self.router.is_inbound_source(source[0]):
            outcome = self.registrar.authenticate(request, source, now)
            if not outcome.ok:
                if outcome.status == 401:
                    self.stats.auth_challenges += 1
                else:
                    self.stats.auth_failures += 1
                self._respond(key, outcome.response_for(request), now)
                return
            extension = outcome.extension
            if is_pbx(self.config, extension):
                assert extension is not None
                extension, office_user = acting_extension(self.config, extension, request)
        route = self.router.route(request, source[0], extension)
        if route.kind == "reject":
            self.stats.calls_rejected += 1
            self._respond(key, make_response(request, route.status or 403), now)
            return
        if not self._toll_ok(route, extension, now):
            self.stats.calls_rejected += 1
            self._respond(key, make_response(request, 403), now)
            return
        self._respond(key, make_response(request, 100), now)
        # A hunt group (b2bua/hunt.py) rings its members in order, then its fallback.
        hunting = start_hunt(
            self.config, route.target_extension, self._services.transfer_target, now, extension
        )
        hunt = hunting[1] if hunting is not None else None
        if hunting is not None:
            target: Target | None = hunting[0]
        else:
            target = self._target_for(route.kind, route.target_extension, route.dialled, now)
        if target is None:
            self.stats.calls_rejected += 1
            self._respond(key, make_response(request, 480), now)
            return
        if route.kind == "inbound" and is_pbx(self.config, route.target_extension):
            target = keep_dialled(target, route.dialled)  # the PBX routes on it
        shown = self.router.presentation(route, request)

        def present(t: Target) -> Target:
            headers = shown.headers
            if hunt is not None and route.kind == "inbound" and self._to_trunk(t):
                headers = (*headers, *self.router.forwarded_headers(route))
            return replace(
                t,
                from_user=shown.from_user,
                from_display=shown.display_name,
                extra_headers=headers,
                caller_label=shown.caller_label,
            )

        target = present(target)
        if hunt is not None:
            hunt.map_targets(present)
        office = route.target_extension if route.kind == "inbound" else extension
        try:
            call = Call.start(
                self._services,
                request,
                key,
                source,
                transport,
                target,
                route.kind,
                now,
                consent=self._consent_for(office, route.unrecorded),
                a_srtp=self._caller_srtp(route.kind, extension),
                hunt=hunt,
                office_extension=office_user,
                a_wideband=route.kind != "inbound" and is_wideband(self.config, extension),
                trunk_headers=self.router.trunk_request_headers(),
                mediasec=self.router.mediasec is not None,
            )
        except SipError as exc:
            self.stats.calls_rejected += 1
            extra = exc.headers if isinstance(exc, RequestRejectedError) else ()
            self._respond(key, make_response(request, exc.status, headers=extra), now)
            return
        self.stats.calls_started += 1
        self.calls[call.id] = call
        self._call_source[call.id] = source[0]
        self._calls_from[source[0]] += 1
        self._touched.add(call.id)
        self._bind(call, request.call_id, Side.A)
        self._bind(call, call.b_call_id, Side.B)
        self._by_invite_key[key] = call
        if route.kind == "outbound" and not route.emergency and extension is not None:
            self.tollfraud.call_started(call.id, extension, now)
        if route.emergency:
            self._emergency_pending.pop(request.call_id, None)
            self._emergency_call_ids.update((request.call_id, call.b_call_id))
        log.info(
            "event=call_start call=%s direction=%s from=%s to=%s%s",
            call.id,
            route.kind,
            shown.caller_label,  # "withheld" for CLIR: the number stays out of the logs
            route.dialled,
            " emergency=1" if route.emergency else "",
        )

    def _toll_ok(self, route: Route, extension: str | None, now: float) -> bool:
        """Toll-fraud rules for an outbound call from an extension (never emergency)."""
        if route.kind != "outbound" or route.emergency or extension is None:
            return True
        decision = self.tollfraud.check(extension, route.dialled, route.e164, now)
        if not decision.allowed:
            log.warning(
                "event=tollfraud_block ext=%s dialled=%s rule=%s",
                extension,
                route.dialled,
                decision.rule,
            )
        return decision.allowed

    def set_trunk_targets(self, targets: tuple[Addr, ...], now: float) -> None:
        """From DNS (I/O side): the trunk host's addresses, in RFC 3263 order."""
        self.trunk_monitor.set_primary(targets, now)
        if self._registration_pending:
            self.start_trunk_registration(now)
        if self.wakeup is not None:
            self.wakeup()

    def _send_probes(self, now: float) -> None:
        """OPTIONS keepalives that are due (b2bua/trunk_monitor.py)."""
        transport = self.config.trunk.transport.upper()
        for request, dest in self.trunk_monitor.on_timer(now, self.local):
            reliable = transport != "UDP"
            key = self.layer.send_request(
                self.stamp(request, "User-Agent"), dest, now, reliable=reliable
            )
            if reliable:
                self._tcp_peers[dest] = transport
            self._probe_keys[key] = dest

    def start_trunk_registration(self, now: float) -> None:
        """Starts the trunk's keepalive probes, and registers the office account at the
        trunk (trunk.register = true) once a target is known."""
        if not self.trunk_monitor.started:
            self.trunk_monitor.start(now)
        trunk = self.config.trunk
        if not trunk.register or trunk.username is None or trunk.password is None:
            return
        registrar = self.trunk_monitor.first()
        self._registration_pending = registrar is None
        if registrar is None:
            return  # set_trunk_targets starts it when DNS has answered
        # contact_user and mediasec (shared with the router) come with the trunk config.
        self.trunk_registration = registration_for(
            trunk, registrar, self.local, self.router.mediasec
        )
        self._send_registration(self.trunk_registration.start(now), now)

    def _send_registration(self, request: Request | None, now: float) -> None:
        if request is not None and self.trunk_registration is not None:
            # Each REGISTER goes to the first live target: after a failover, there.
            current = self.trunk_monitor.first()
            if current is not None:
                self.trunk_registration.registrar = current
            key = self.layer.send_request(
                self.stamp(request, "User-Agent"),
                self.trunk_registration.registrar,
                now,
                reliable=False,
            )
            self._registration_keys.add(key)

    def _consent_for(
        self, office_extension: str | None, unrecorded: str | None = None
    ) -> ConsentMachine | None:
        """A consent machine per call, with the office extension's employee consent.

        `unrecorded` ("emergency", "do_not_record") makes it ask nobody, record nothing,
        and note why."""
        if self.recording is None:
            return None
        rec = self.config.recording
        return ConsentMachine(
            rec.mode,
            rec.consent_digit,
            rec.decline_digit,
            rec.consent_timeout_s,
            rec.on_decline,
            rec.language,
            self.prompt_sha256,
            employee_consent=employee_consent(self.config, office_extension),
            pause_code=rec.pause_code,
            not_asked_note=unrecorded,
        )

    def _to_trunk(self, target: Target) -> bool:
        """Whether `target` leaves through the trunk (not one of our extensions)."""
        return self.config.extension(target.to_user) is None

    def _caller_srtp(self, kind: str, extension: str | None) -> str:
        """SRTP policy of the caller's leg: the trunk's inbound, the extension's else."""
        if kind == "inbound":
            return self.config.trunk.srtp
        ext = self.config.extension(extension) if extension else None
        return ext.srtp if ext is not None else "off"

    def _target_for(
        self, kind: str, extension: str | None, dialled: str, now: float
    ) -> Target | None:
        if kind == "outbound":
            trunk = self.config.trunk
            host, port = trunk.host
            destination = self.trunk_monitor.first()  # the first live target
            if destination is None:
                return None  # the trunk's name has not resolved (yet)
            # An SRV-resolved domain goes into the Request-URI without a port (RFC 3263).
            uri = URI("sip", dialled, host=host, port=None if trunk.srv_lookup else port)
            credentials = (
                (trunk.username, trunk.password)
                if trunk.username is not None and trunk.password is not None
                else None
            )
            return Target(
                uri,
                destination,
                trunk.transport.upper(),
                dialled,
                credentials=credentials,
                srtp=trunk.srtp,
            )
        if extension is None:
            return None
        bindings = self.registrar.lookup(extension, now)
        if not bindings:
            return None
        # A registered phone is reached where its REGISTER came from (NAT); a static
        # contact's source is the host and port of its URI.
        binding = bindings[0]
        transport = binding.transport
        ext = self.config.extension(extension)
        if binding.is_static and ext is not None and ext.transport is not None:
            transport = ext.transport.upper()  # extension.transport wins over the URI's
        srtp = ext.srtp if ext is not None else "off"
        wideband = ext is not None and ext.wideband  # G.722 offered (codec_policy.py)
        return Target(
            binding.contact.uri, binding.source, transport, extension, srtp=srtp, wideband=wideband
        )

    def _on_cancel(self, event: CancelReceived, now: float) -> None:
        call = self._by_invite_key.get(event.invite_key) if event.invite_key else None
        if call is None:
            self._respond(event.key, make_response(event.request, 481), now)
            return
        self._respond(event.key, make_response(event.request, 200), now)
        self._touched.add(call.id)
        call.on_a_cancel(now)

    # -- called by calls through _Services ------------------------------------------------
    def _bind(self, call: Call, call_id: str, side: Side) -> None:
        """Requests with this Call-ID belong to `side` of `call` (every leg has its own)."""
        self._by_call_id[call_id] = (call, side)
        self._call_ids.setdefault(call.id, set()).add(call_id)

    def _call_ended(self, call: Call, now: float) -> None:
        self.calls.pop(call.id, None)
        source = self._call_source.pop(call.id, None)
        if source is not None:
            self._calls_from[source] -= 1
            if self._calls_from[source] <= 0:
                del self._calls_from[source]
        for call_id in self._call_ids.pop(call.id, set()):
            owner = self._by_call_id.get(call_id)
            if owner is not None and owner[0] is call:
                del self._by_call_id[call_id]
        self._by_invite_key.pop(call.a_key, None)
        self.tollfraud.call_ended(call.id, now)
        self._emergency_call_ids.difference_update((call.a_invite.call_id, call.b_call_id))
        self.stats.calls_ended += 1
        log.info(
            "event=call_end call=%s duration_s=%.1f reason=%s",
            call.id,
            now - call.started_at,
            (call.end_reason or "ended").replace(" ", "_"),
        )


class _Services(CallServices):
    """The switch as seen by its calls."""

    def __init__(self, switch: Switch) -> None:
        self.switch = switch
        self.media = switch.media

    @property
    def recording(self) -> RecordingControl | None:  # type: ignore[override]
        return self.switch.recording

    @property
    def local(self) -> Addr:  # type: ignore[override]
        return self.switch.local

    def send_request(
        self, call: Call, side: Side, request: Request, dest: Addr, transport: str, now: float
    ) -> str:
        sw = self.switch
        request = sw.stamp(request, "User-Agent")
        key = sw.layer.send_request(request, dest, now, reliable=transport != "UDP")
        if transport != "UDP":
            sw._tcp_peers[dest] = transport
        sw._by_key[key] = (call, side)
        return key

    def send_response(self, key: str, response: Response, now: float) -> None:
        self.switch._respond(key, response, now)

    def send_ack(self, request: Request, dest: Addr, transport: str) -> None:
        self.switch.layer.send_stateless(self.switch.stamp(request, "User-Agent"), dest)

    def call_ended(self, call: Call, now: float) -> None:
        self.switch._call_ended(call, now)

    def media_inactive(self, leg_id: str) -> None:
        self.switch.media_inactive(leg_id)

    def transfer_target(self, user: str, now: float) -> Target | None:
        """Where a blind transfer to `user` goes: an extension, else out to the trunk."""
        sw = self.switch
        if sw.config.extension(user) is not None:
            return sw._target_for("internal", user, user, now)
        return sw._target_for("outbound", None, user, now)

    def bind_call_id(self, call: Call, call_id: str, side: Side) -> None:
        self.switch._bind(call, call_id, side)

    def trunk_alternative(
        self, tried: Sequence[Addr], status: int | None, now: float
    ) -> Addr | None:
        """After an INVITE to the trunk at `tried[-1]` timed out (status None) or got
        408/503: the next live trunk target not tried yet (marking the failed one
        down), else None. See b2bua/trunk_monitor.py."""
        return self.switch.trunk_monitor.alternative(tried, status)


def toll_policies(config: Config, router: Router) -> dict[str, Policy]:
    """Each extension's toll-fraud policy (docs/configuration.md, [[extension]])."""
    numbers = config.numbers
    defaults = default_rules(numbers.country, router.plan.country_code)
    return {
        ext.number: Policy(
            ext.allowed_destinations if ext.allowed_destinations is not None else defaults,
            ext.max_outbound_calls,
            float(ext.max_outbound_minutes_per_day),
        )
        for ext in config.extensions
    }
