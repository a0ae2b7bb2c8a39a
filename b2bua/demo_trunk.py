"""The simulated trunk caller of `b2bua demo` (sans-I/O): dials in, presses a key, talks.

Theory of operation: `TrunkCaller` is a SipCore (see runner.py) and also owns the media
script of the call in `TrunkMedia`. `start(now)` sends an INVITE offering PCMU and
telephone-event. Its 2xx creates the dialog (ACK at once) and starts the media: silence
every 20 ms (so the relay can latch onto us), the consent key as RFC 4733 events
`digit_after_s` into the prompt, speech `speech_after_s` after the key (by then the
office phone is connected), and the BYE `hangup_after_s` after the speech has been sent.
A BYE from the B2BUA (a declined call, a shutdown) ends the call too.

Every SIP step goes through `TABLE`, `(TrunkState, TrunkInput) -> (handler, next state)`;
an input the table lacks is a protocol error: it is logged and the call fails, never
passed over. Nothing here reads a clock or touches a socket: the I/O runner (demo.py)
passes `now`, sends `datagrams_to_send()` and `TrunkMedia.packets_due(now)`, and feeds
received RTP to `TrunkMedia.receive`.
"""

from __future__ import annotations

import enum
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from b2bua.dialog import Dialog
from b2bua.errors import SipError
from b2bua.headers import Address, Headers, Via
from b2bua.media_control import media_target
from b2bua.message import Message, Request, Response, make_response
from b2bua.sdp import offer, parse_sdp
from b2bua.transaction import (
    Event,
    RequestReceived,
    ResponseReceived,
    TransactionLayer,
    TransactionTimedOut,
    new_branch,
)
from b2bua.uri import URI
from media.dtmf import EVENT_DIGITS
from media.g711 import decode_ulaw, encode_ulaw
from rtp.packet import RtpError, RtpPacket, TelephoneEvent, parse_rtp

Addr = tuple[str, int]
Int16Array = npt.NDArray[np.int16]

FRAME = 160  # samples of 20 ms at 8 kHz
FRAME_S = 0.02
EVENT_PACKETS = 8  # a 160 ms key press, then three end packets (RFC 4733 2.5.1.4)
PCMU = 0


# ------------------------------------------------------------------------------ media


@dataclass
class TrunkMedia:
    """RTP of the simulated caller: paced PCMU frames, RFC 4733 key presses, a receiver.

    Sends one packet per 20 ms once `start` was called: the next speech frame if any is
    queued, a key press's event packet while one is under way, otherwise silence.
    """

    ssrc: int = field(default_factory=lambda: secrets.randbits(32))
    remote: Addr | None = None
    event_pt: int = 101
    heard: list[Int16Array] = field(default_factory=list)
    packets_received: int = 0
    packets_sent: int = 0
    events_sent: int = 0
    _seq: int = field(default_factory=lambda: secrets.randbits(16))
    _ts: int = field(default_factory=lambda: secrets.randbits(32))
    _next_at: float | None = None
    _speech: list[Int16Array] = field(default_factory=list)
    _event: tuple[int, int, int] | None = None  # (event code, start timestamp, packets sent)

    def start(self, remote: Addr, event_pt: int | None, now: float) -> None:
        self.remote = remote
        if event_pt is not None:
            self.event_pt = event_pt
        self._next_at = now

    def stop(self) -> None:
        self._next_at = None

    def press(self, digit: str) -> None:
        self._event = (EVENT_DIGITS.index(digit), self._ts, 0)

    def say(self, samples: Int16Array) -> None:
        whole = len(samples) // FRAME * FRAME
        self._speech.extend(np.split(samples[:whole], whole // FRAME) if whole else [])

    @property
    def speaking(self) -> bool:
        return bool(self._speech)

    def next_due(self) -> float | None:
        return self._next_at

    def packets_due(self, now: float) -> list[bytes]:
        """The packets whose send time has come (at most a second's worth)."""
        out: list[bytes] = []
        for _ in range(50):
            if self._next_at is None or self._next_at > now:
                break
            out.extend(self._one_packet())
            self._next_at += FRAME_S
        if self._next_at is not None and self._next_at < now - 1.0:
            self._next_at = now  # a stalled loop skips ahead instead of bursting
        return out

    def _one_packet(self) -> list[bytes]:
        if self._event is not None:
            code, start_ts, sent = self._event
            end = sent + 1 >= EVENT_PACKETS
            payload = TelephoneEvent(code, end=end, duration=(sent + 1) * FRAME).serialize()
            copies = 3 if end else 1
            # Each copy is an RTP packet of its own (next sequence number), same payload.
            packets = [
                self._packet(self.event_pt, start_ts, payload, sent == 0 and k == 0)
                for k in range(copies)
            ]
            self._event = None if end else (code, start_ts, sent + 1)
            self.events_sent += copies
            self._ts += FRAME
            return packets
        frame = self._speech.pop(0) if self._speech else np.zeros(FRAME, dtype=np.int16)
        packet = self._packet(PCMU, self._ts, encode_ulaw(frame), False)
        self._ts += FRAME
        return [packet]

    def _packet(self, pt: int, ts: int, payload: bytes, marker: bool) -> bytes:
        data = RtpPacket(pt, self._seq, ts & 0xFFFFFFFF, self.ssrc, payload, marker).serialize()
        self._seq = (self._seq + 1) & 0xFFFF
        self.packets_sent += 1
        return data

    def receive(self, data: bytes) -> None:
        """An RTP datagram from the B2BUA: PCMU audio is kept, anything else counted."""
        try:
            packet = parse_rtp(data)
        except RtpError:
            return
        self.packets_received += 1
        if packet.payload_type == PCMU:
            self.heard.append(decode_ulaw(packet.payload))

    def heard_audio(self) -> Int16Array:
        if not self.heard:
            return np.zeros(0, dtype=np.int16)
        return np.concatenate(self.heard).astype(np.int16)


# ------------------------------------------------------------------------ SIP script


class TrunkState(enum.Enum):
    IDLE = "idle"
    INVITING = "inviting"
    TALKING = "talking"
    HANGING_UP = "hanging_up"
    DONE = "done"


class TrunkInput(enum.Enum):
    START = "start"
    PROVISIONAL = "provisional"
    ANSWERED = "answered"
    REFUSED = "refused"
    TIMED_OUT = "timed_out"
    BYE_RECEIVED = "bye_received"
    BYE_ANSWERED = "bye_answered"
    HANGUP_DUE = "hangup_due"


Handler = Callable[["TrunkCaller", Message | None, float], None]


@dataclass
class TrunkCaller:
    """Calls `number` at `target` from `local`, presses `digit`, says `speech`, hangs up."""

    local: Addr
    target: Addr
    rtp_port: int
    speech: Int16Array
    number: str = "1000"
    caller_id: str = "+4930123456"
    digit: str = "1"
    digit_after_s: float = 1.0
    speech_after_s: float = 2.5
    hangup_after_s: float = 0.6
    layer: TransactionLayer = field(default_factory=TransactionLayer)
    media: TrunkMedia = field(default_factory=TrunkMedia)
    state: TrunkState = TrunkState.IDLE
    log: list[str] = field(default_factory=list)
    ok: bool = False
    _dialog: Dialog | None = None
    _invite: Request | None = None
    _invite_key: str | None = None
    _bye_key: str | None = None
    _digit_at: float | None = None
    _speech_at: float | None = None
    _hangup_at: float | None = None

    @property
    def done(self) -> bool:
        return self.state is TrunkState.DONE

    # -- SipCore ----------------------------------------------------------------------
    def receive(self, message: Message, source: Addr, transport: str, now: float) -> None:
        self._handle(self.layer.receive_message(message, source, now, reliable=False), now)

    def handle_timer(self, now: float) -> None:
        if self._digit_at is not None and now >= self._digit_at:
            self._digit_at = None
            self.media.press(self.digit)
            self.log.append(f"pressed {self.digit} (RFC 4733)")
            self._speech_at = now + self.speech_after_s
        if self._speech_at is not None and now >= self._speech_at:
            self._speech_at = None
            self.media.say(self.speech)
            self.log.append(f"talking ({len(self.speech) / 8000:.1f} s of speech)")
        if (
            self.state is TrunkState.TALKING
            and self._hangup_at is None
            and self._digit_at is None
            and self._speech_at is None
            and not self.media.speaking
        ):
            self._hangup_at = now + self.hangup_after_s
        if self._hangup_at is not None and now >= self._hangup_at:
            self._hangup_at = None
            self._feed(TrunkInput.HANGUP_DUE, None, now)
        self._handle(self.layer.handle_timer(now), now)

    def get_timer(self) -> float | None:
        deadlines = [
            t
            for t in (self.layer.get_timer(), self._digit_at, self._speech_at, self._hangup_at)
            if t is not None
        ]
        return min(deadlines) if deadlines else None

    def datagrams_to_send(self) -> list[tuple[bytes, Addr, str]]:
        return [(data, dest, "UDP") for data, dest in self.layer.datagrams_to_send()]

    def start(self, now: float) -> None:
        self._feed(TrunkInput.START, None, now)

    # -- the table --------------------------------------------------------------------
    def _feed(self, inp: TrunkInput, message: Message | None, now: float) -> None:
        entry = TABLE.get((self.state, inp))
        if entry is None:
            self.log.append(f"protocol error: {inp.value} while {self.state.value}")
            self._finish(False)
            return
        handler, next_state = entry
        self.state = next_state
        handler(self, message, now)

    def _handle(self, events: list[Event], now: float) -> None:
        for event in events:
            if isinstance(event, TransactionTimedOut):
                if event.key in (self._invite_key, self._bye_key):
                    self._feed(TrunkInput.TIMED_OUT, None, now)
            elif isinstance(event, ResponseReceived):
                self._on_response(event.key, event.response, now)
            elif isinstance(event, RequestReceived):
                self._on_request(event.key, event.request, now)

    def _on_response(self, key: str, response: Response, now: float) -> None:
        if key == self._invite_key:
            if response.status < 200:
                self._feed(TrunkInput.PROVISIONAL, response, now)
            elif response.status < 300:
                self._feed(TrunkInput.ANSWERED, response, now)
            else:
                self._feed(TrunkInput.REFUSED, response, now)
        elif key == self._bye_key and response.status >= 200:
            self._feed(TrunkInput.BYE_ANSWERED, response, now)

    def _on_request(self, key: str, request: Request, now: float) -> None:
        if request.method == "BYE" and self.state is not TrunkState.DONE:
            self._feed(TrunkInput.BYE_RECEIVED, request, now)
            status = 200
        elif request.method in ("OPTIONS", "INFO"):
            status = 200
        else:
            status = 481 if request.method == "BYE" else 501
        self._handle(self.layer.send_response(key, make_response(request, status), now), now)

    # -- handlers ---------------------------------------------------------------------
    def _send_invite(self, message: Message | None, now: float) -> None:
        host, port = self.target
        uri = URI("sip", self.number, host=host, port=port)
        sdp = offer(
            self.local[0], self.rtp_port, codecs=("PCMU",), session_id=secrets.randbelow(2**31)
        )
        host_, port_ = self.local
        me = Address(URI("sip", self.caller_id, host=host_, port=port_))
        contact = Address(URI("sip", "trunk", host=host_, port=port_))
        self._invite = Request(
            "INVITE",
            uri,
            Headers.of(
                ("Via", str(self._via())),
                ("Max-Forwards", "70"),
                ("From", str(me.with_param("tag", secrets.token_hex(4)))),
                ("To", str(Address(uri))),
                ("Call-ID", secrets.token_hex(8) + "@" + self.local[0]),
                ("CSeq", "1 INVITE"),
                ("Contact", str(contact)),
                ("Content-Type", "application/sdp"),
            ),
            sdp.to_bytes(),
        )
        self._invite_key = self.layer.send_request(self._invite, self.target, now, reliable=False)
        self.log.append(f"INVITE sip:{self.number} sent from {self.caller_id}")

    def _note_provisional(self, message: Message | None, now: float) -> None:
        if isinstance(message, Response):
            self.log.append(f"{message.status} {message.reason}")

    def _answered(self, message: Message | None, now: float) -> None:
        assert isinstance(message, Response) and self._invite is not None
        self._dialog = Dialog.from_uac(self._invite, message)
        ack = self._dialog.create_ack(message, via=self._via())
        self.layer.send_stateless(ack, self.target)
        try:
            remote, fmt, _ = media_target(parse_sdp(message.body))
        except SipError as exc:
            self.log.append(f"answer without usable SDP: {exc.detail}")
            remote, fmt = None, None
        if remote is None or fmt is None:
            self._hangup_at = now  # nothing to talk to: end the call politely
            return
        self.media.start(remote, fmt.telephone_event, now)
        self._digit_at = now + self.digit_after_s
        self.log.append(f"answered by the B2BUA; media to {remote[0]}:{remote[1]}")

    def _failed(self, message: Message | None, now: float) -> None:
        what = f"{message.status} {message.reason}" if isinstance(message, Response) else "timeout"
        self.log.append(f"call failed: {what}")
        self._finish(False)

    def _send_bye(self, message: Message | None, now: float) -> None:
        assert self._dialog is not None
        self.media.stop()
        bye = self._dialog.create_request("BYE", via=self._via())
        self._bye_key = self.layer.send_request(bye, self.target, now, reliable=False)
        self.log.append("hung up (BYE)")

    def _bye_answered(self, message: Message | None, now: float) -> None:
        ok = isinstance(message, Response) and message.status == 200
        self.log.append("call ended" if ok else "BYE refused")
        self._finish(ok)

    def _remote_bye(self, message: Message | None, now: float) -> None:
        self.media.stop()
        self.log.append("the B2BUA hung up")
        self._finish(False)

    def _finish(self, ok: bool) -> None:
        self.state = TrunkState.DONE
        self.ok = ok
        self.media.stop()
        self._digit_at = self._speech_at = self._hangup_at = None

    def _via(self) -> Via:
        return Via("UDP", self.local[0], self.local[1], (("branch", new_branch()),))


S, In = TrunkState, TrunkInput
TABLE: dict[tuple[TrunkState, TrunkInput], tuple[Handler, TrunkState]] = {
    (S.IDLE, In.START): (TrunkCaller._send_invite, S.INVITING),
    (S.INVITING, In.PROVISIONAL): (TrunkCaller._note_provisional, S.INVITING),
    (S.INVITING, In.ANSWERED): (TrunkCaller._answered, S.TALKING),
    (S.INVITING, In.REFUSED): (TrunkCaller._failed, S.DONE),
    (S.INVITING, In.TIMED_OUT): (TrunkCaller._failed, S.DONE),
    (S.TALKING, In.HANGUP_DUE): (TrunkCaller._send_bye, S.HANGING_UP),
    (S.TALKING, In.BYE_RECEIVED): (TrunkCaller._remote_bye, S.DONE),
    (S.HANGING_UP, In.BYE_ANSWERED): (TrunkCaller._bye_answered, S.DONE),
    (S.HANGING_UP, In.TIMED_OUT): (TrunkCaller._failed, S.DONE),
    # BYEs crossed on the wire: theirs ends the call as well as ours would.
    (S.HANGING_UP, In.BYE_RECEIVED): (TrunkCaller._remote_bye, S.DONE),
}
del S, In
