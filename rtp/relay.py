"""The media-plane adapter: open relay legs on a port range, bridge them, one event loop.

A `RelayLeg` (rtp/leg.py) owns an even RTP port and the RTCP port above it and forwards
to its partner leg; `MediaRelay` opens legs with ports from a `PortAllocator` (binding
is tried again on another port when one is taken by another program) and keeps the
counters of closed legs; a `Bridge` links two legs both ways. Media worker processes
(b2bua/media_worker.py) build legs on sockets bound by the SIP process instead.

All protocol state lives in ``rtp.session`` (sans-I/O); the legs move bytes and read the
clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable

from rtp.leg import LegBuffers, LegCounters, MediaFormat, RelayLeg
from rtp.ports import PortAllocator, PortsExhaustedError
from rtp.session import Address
from rtp.tap import BoundedTap, Tap, TapPacket

__all__ = [
    "BoundedTap",
    "Bridge",
    "LegCounters",
    "MediaFormat",
    "MediaRelay",
    "PortAllocator",
    "PortsExhaustedError",
    "RelayLeg",
    "Tap",
    "TapPacket",
    "new_event_loop",
]

_BIND_ATTEMPTS = 16


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop when installed (the media plane's measured choice), else stdlib asyncio."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a Linux dependency
        return asyncio.new_event_loop()
    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    return loop


# ------------------------------------------------------------------ relay, bridge


class Bridge:
    """Connects two legs: media in on one goes out of the other, both ways."""

    def __init__(self, a: RelayLeg, b: RelayLeg) -> None:
        if a is b or a.closed or b.closed:
            raise ValueError("a bridge needs two distinct open legs")
        if a.partner is not None or b.partner is not None:
            raise ValueError("a leg is already bridged")
        a._link(b)
        try:
            b._link(a)
        except ValueError:
            a._link(None)
            raise
        self.a, self.b = a, b

    def unbridge(self) -> None:
        """Stop forwarding; each leg's next outbound source is rebased."""
        for leg in (self.a, self.b):
            if leg.partner is not None:
                leg._link(None)
                leg.outbound.new_source()


class MediaRelay:
    """Opens legs on one local address with ports from the allocator."""

    def __init__(
        self,
        ip: str,
        ports: PortAllocator,
        *,
        rtcp_interval: float = 5.0,
        inactivity_timeout: float = 60.0,
        cname: bytes = b"b2bua",
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self.ip = ip
        self.ports = ports
        self.rtcp_interval = rtcp_interval
        self.inactivity_timeout = inactivity_timeout
        self.cname = cname
        self.loop = loop if loop is not None else asyncio.get_running_loop()
        self.legs: dict[str, RelayLeg] = {}
        self.buffers = LegBuffers()
        # Counters of the legs that have closed, summed (for totals over the process's
        # life, e.g. the metrics endpoint): live legs' counters plus these.
        self.closed_totals = LegCounters()

    def open_leg(
        self,
        leg_id: str,
        fmt: MediaFormat | None = None,
        remote: Address | None = None,
        *,
        on_inactive: Callable[[RelayLeg], None] | None = None,
    ) -> RelayLeg:
        """Bind a new RTP/RTCP pair; ports taken by other programs are skipped."""
        if leg_id in self.legs:
            raise ValueError(f"leg {leg_id!r} already open")
        port, rtp_sock, rtcp_sock = bind_pair(self.ip, self.ports)
        leg = RelayLeg(
            self,
            leg_id=leg_id,
            address=(self.ip, port),
            rtp_sock=rtp_sock,
            rtcp_sock=rtcp_sock,
            fmt=fmt if fmt is not None else MediaFormat(),
            remote=remote,
            on_inactive=on_inactive,
        )
        self.legs[leg_id] = leg
        return leg

    def totals(self) -> LegCounters:
        """Counters of every leg this relay opened: live legs' plus the closed ones'."""
        totals = LegCounters()
        sources = [self.closed_totals, *(leg.counters for leg in self.legs.values())]
        for name in LegCounters.__slots__:
            setattr(totals, name, sum(getattr(c, name) for c in sources))
        return totals

    def bridge(self, a: RelayLeg, b: RelayLeg) -> Bridge:
        return Bridge(a, b)

    def _leg_closed(self, leg: RelayLeg) -> None:
        if self.legs.get(leg.leg_id) is leg:
            del self.legs[leg.leg_id]
            self.ports.release(leg.port)
            totals, counters = self.closed_totals, leg.counters
            for name in LegCounters.__slots__:
                setattr(totals, name, getattr(totals, name) + getattr(counters, name))

    def close(self) -> None:
        for leg in list(self.legs.values()):
            leg.close()


def bind_pair(ip: str, ports: PortAllocator) -> tuple[int, socket.socket, socket.socket]:
    """An even RTP port from `ports` and the RTCP port above it, both bound on `ip`;
    a port another program holds is released and the next one tried."""
    for _ in range(_BIND_ATTEMPTS):
        port = ports.allocate()
        try:
            rtp_sock = bind_udp(ip, port)
        except OSError:
            ports.release(port)
            continue
        try:
            rtcp_sock = bind_udp(ip, port + 1)
        except OSError:
            rtp_sock.close()
            ports.release(port)
            continue
        return port, rtp_sock, rtcp_sock
    raise PortsExhaustedError(f"no bindable RTP port pair after {_BIND_ATTEMPTS} attempts")


def bind_udp(ip: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in ip else socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        sock.bind((ip, port))
    except OSError:
        with contextlib.suppress(OSError):
            sock.close()
        raise
    return sock
