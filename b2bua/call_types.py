"""The data a call is made of and the one interface it talks through: where leg B
goes (`Target`, the router's answer), each leg's dialog, media, SRTP and session timer
(`LegState`), and what the switch does for a call (`CallServices`).

Theory of operation: plain data and a Protocol, no behaviour; apart from call.py so
that module holds the call's behaviour only. call.py re-exports every name here, so
callers keep importing them from `b2bua.call`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from b2bua.call_state import Side
from b2bua.dialog import Dialog
from b2bua.media_control import MediaControl, MediaLeg, RecordingControl
from b2bua.message import Request, Response
from b2bua.sdp_crypto import SrtpKeys
from b2bua.session_timer import SessionTimer
from b2bua.uri import URI
from rtp.srtp import SrtpKey

if TYPE_CHECKING:  # call.py imports this module
    from b2bua.call import Call

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
    """One leg of a call (A, B, or a transfer's new leg) as the call keeps it."""

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
