"""What call control needs from the media plane, and its adapter to the RTP relay.

Call logic only sees the `MediaControl` and `MediaLeg` protocols: open a leg (an RTP/RTCP
port pair facing one peer), tell it the peer's address and format from SDP, hold and
resume it, give it SRTP keys (or none), bridge two legs, close them.
`RelayMediaControl` maps that onto `rtp.relay.MediaRelay`; the unit tests of call.py use
an in-memory double, and the integration tests the real relay.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol

from b2bua.consent import ConsentRecord
from b2bua.sdp import SessionDescription, direction, rtpmap
from rtp.relay import Bridge, MediaFormat, MediaRelay, RelayLeg
from rtp.srtp import SrtpLeg

Addr = tuple[str, int]


class MediaLeg(Protocol):
    @property
    def port(self) -> int: ...

    def set_remote(self, remote: Addr | None, fmt: MediaFormat | None = None) -> None: ...

    def hold(self) -> None: ...

    def resume(self) -> None: ...

    def set_srtp(self, srtp: SrtpLeg | None) -> None: ...

    def close(self) -> None: ...


class MediaControl(Protocol):
    ip: str

    def open_leg(self, leg_id: str, on_inactive: Callable[[str], None]) -> MediaLeg: ...

    def bridge(self, a: MediaLeg, b: MediaLeg) -> None: ...

    def unbridge(self, a: MediaLeg) -> None: ...


class RecordingControl(Protocol):
    """The media side of consent and recording (implemented by recording_hub.py)."""

    def open_call(
        self,
        call_id: str,
        *,
        external: Any,
        direction: str,
        caller: str,
        callee: str,
        extension: str | None,
        sip_call_id: str,
    ) -> None: ...

    def set_office_leg(self, call_id: str, office: Any) -> None: ...

    def play(self, call_id: str, name: str, now: float) -> None: ...

    def stop_prompt(self, call_id: str) -> None: ...

    def consent_decided(self, call_id: str, record: ConsentRecord) -> None: ...

    def start_recording(self, call_id: str, now: float, metadata: Mapping[str, Any]) -> None: ...

    def stop_recording(self, call_id: str, now: float) -> object: ...

    def pause(self, call_id: str, now: float) -> None: ...

    def resume(self, call_id: str, now: float) -> None: ...

    def call_ended(self, call_id: str, now: float, reason: str) -> object: ...


class RelayMediaControl:
    """MediaControl on the real uvloop relay."""

    def __init__(self, relay: MediaRelay, ip: str | None = None) -> None:
        self.relay = relay
        # The address announced in SDP (a public address behind NAT), default: bound IP.
        self.ip = ip or relay.ip
        self._bridges: dict[int, Bridge] = {}

    def open_leg(self, leg_id: str, on_inactive: Callable[[str], None]) -> MediaLeg:
        return self.relay.open_leg(leg_id, on_inactive=lambda leg: on_inactive(leg.leg_id))

    def bridge(self, a: MediaLeg, b: MediaLeg) -> None:
        assert isinstance(a, RelayLeg)
        assert isinstance(b, RelayLeg)
        bridge = self.relay.bridge(a, b)
        self._bridges[id(a)] = bridge
        self._bridges[id(b)] = bridge

    def unbridge(self, a: MediaLeg) -> None:
        bridge = self._bridges.pop(id(a), None)
        if bridge is None:
            return
        self._bridges.pop(id(bridge.a), None)
        self._bridges.pop(id(bridge.b), None)
        bridge.unbridge()


_NULL_ADDRESSES = frozenset({"0.0.0.0", "::"})  # noqa: S104 -- compared, never bound


def media_target(sdp: SessionDescription) -> tuple[Addr | None, MediaFormat, bool]:
    """Peer RTP address, negotiated format and whether it is on hold, from an SDP.

    The first audio stream with a port counts (we anchor one stream per leg); a
    rejected or missing stream gives no address. The first format listed is the one the
    peer sends (RFC 3264 answers list exactly the chosen one first).
    """
    for m in sdp.media:
        if m.media != "audio" or m.port == 0:
            continue
        conn = m.connection or sdp.connection
        address = None if conn is None else conn.address
        codecs = rtpmap(m)
        audio_pt: int | None = None
        event_pt: int | None = None
        for fmt in m.formats:
            if not fmt.isdigit():
                continue
            codec = codecs.get(int(fmt))
            if codec is None:
                continue
            if codec.name.lower() == "telephone-event":
                event_pt = event_pt if event_pt is not None else int(fmt)
            elif audio_pt is None:
                audio_pt = int(fmt)
        encoding = codecs[audio_pt].name.upper() if audio_pt is not None else "PCMU"
        fmt_out = MediaFormat(
            payload_type=audio_pt if audio_pt is not None else 0,
            encoding=encoding,
            telephone_event=event_pt,
        )
        # RFC 3264 8.4: hold is sendonly/inactive; RFC 2543 style hold is c=0.0.0.0.
        null_address = address in _NULL_ADDRESSES
        on_hold = direction(m, sdp) in ("sendonly", "inactive") or null_address
        remote = None if address is None or null_address else (address, m.port)
        return remote, fmt_out, on_hold
    return None, MediaFormat(), False
