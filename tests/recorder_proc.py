"""A recorded call on loopback without SIP: relay + recorder + two simulated phones.

Used in-process by tests/test_recorded_call.py and run as a separate process by the
kill -9 and disk-full tests:

    python tests/recorder_proc.py --out REC.wav.age --recipient age1... \
        [--seconds 30] [--fsize-limit BYTES] [--linger 1.0] [--ports 45000-45999]

The process prints JSON lines on stdout: ``{"event": "started", "monotonic": ...}`` when
recording starts, ``{"event": "failed", ...}`` when the recording failed, and
``{"event": "done", ...}`` with the result at the end. With ``--fsize-limit`` the file
size limit (RLIMIT_FSIZE) is set and SIGXFSZ ignored, so writes past it fail with EFBIG
for real; the process then keeps the call going for ``--linger`` seconds and reports
how many packets the relay forwarded in that time.

The phones:
* ``TrunkPhone`` (127.0.0.2, PCMU): before consent a 600 Hz "prompt"; after it a
  440 Hz tone with a 30 ms chirp (1.5-3.5 kHz) every 500 ms, and RFC 4733 digits
  instead of audio where asked, as phones do.
* ``OfficePhone`` (127.0.0.3, PCMA): echoes each audio packet it receives (like SIPp
  ``-rtp_echo``, same sequence number and timestamp) after ``delay`` seconds, with its
  own 1000 Hz tone added. Events are not echoed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import resource
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from b2bua.recorder import LEFT, RIGHT, CallRecorder, RecorderState
from b2bua.recorder_io import RecorderTicker
from media.g711 import decode_alaw, encode_alaw, encode_ulaw
from rtp.packet import RtpPacket, TelephoneEvent, parse_rtp
from rtp.relay import BoundedTap, MediaFormat, MediaRelay, PortAllocator, RelayLeg, new_event_loop

RATE = 8000
FRAME = 160  # 20 ms
PTIME = 0.02
PCMU = MediaFormat(0, "PCMU", 101)
PCMA = MediaFormat(8, "PCMA", 101)
TRUNK_IP, OFFICE_IP, RELAY_IP = "127.0.0.2", "127.0.0.3", "127.0.0.1"
PROMPT_HZ, TRUNK_HZ, OFFICE_HZ = 600.0, 440.0, 1000.0
CHIRP_PERIOD = 4000  # samples: 500 ms
CHIRP_LEN = 240  # 30 ms
Int16Array = npt.NDArray[np.int16]


def trunk_signal(seconds: float) -> Int16Array:
    """The external party after consent: 440 Hz plus a chirp train (for alignment)."""
    n = np.arange(round(seconds * RATE))
    out = 2000.0 * np.sin(2 * np.pi * TRUNK_HZ * n / RATE)
    t = np.arange(CHIRP_LEN) / RATE
    f0, f1 = 1500.0, 3500.0
    chirp = np.sin(2 * np.pi * (f0 * t + (f1 - f0) * t**2 / (2 * t[-1])))
    chirp *= 8000.0 * np.hanning(CHIRP_LEN)
    for start in range(0, len(n) - CHIRP_LEN, CHIRP_PERIOD):
        out[start : start + CHIRP_LEN] += chirp
    return np.round(out).astype(np.int16)


def prompt_signal(seconds: float) -> Int16Array:
    n = np.arange(round(seconds * RATE))
    return np.round(3000.0 * np.sin(2 * np.pi * PROMPT_HZ * n / RATE)).astype(np.int16)


async def _endpoint(ip: str, protocol: asyncio.DatagramProtocol) -> asyncio.DatagramTransport:
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(lambda: protocol, local_addr=(ip, 0))
    return transport


@dataclass
class TrunkPhone(asyncio.DatagramProtocol):
    """Sends PCMU at 50 packets/s, paced on the loop; digits as RFC 4733 events."""

    seconds: float = 40.0
    ssrc: int = 0x7A11C0DE
    consented: bool = False
    # packet index -> (digit event code, packets): events replace audio there
    events: dict[int, tuple[int, int]] = field(default_factory=dict)
    hook: Callable[[int], None] | None = None  # called before packet n is sent
    sent: int = 0
    transport: asyncio.DatagramTransport | None = None

    def __post_init__(self) -> None:
        self._speech = trunk_signal(self.seconds)
        self._prompt = prompt_signal(self.seconds)
        self._speech_n = 0  # the speech signal starts at consent
        self.event_times: list[tuple[float, float]] = []  # loop time of first/last event

    async def open(self) -> None:
        self.transport = await _endpoint(TRUNK_IP, self)

    @property
    def address(self) -> tuple[str, int]:
        assert self.transport is not None
        host, port = self.transport.get_extra_info("sockname")[:2]
        return host, port

    def _packet(self, n: int) -> bytes:
        event_pt = PCMU.telephone_event
        assert event_pt is not None
        for first, (code, count) in self.events.items():
            if first <= n < first + count:
                i = n - first
                end = i >= count - 3  # RFC 4733 2.5.1.4: the end packet is sent 3 times
                duration = (min(i, count - 3) + 1) * FRAME
                ev = TelephoneEvent(code, end=end, volume=10, duration=duration)
                return RtpPacket(
                    event_pt, n, first * FRAME, self.ssrc, ev.serialize(), i == 0
                ).serialize()
        if self.consented:
            k = self._speech_n
            self._speech_n += FRAME
            pcm = self._speech[k % len(self._speech) :][:FRAME]
        else:
            pcm = self._prompt[(n * FRAME) % len(self._prompt) :][:FRAME]
        if len(pcm) < FRAME:
            pcm = np.zeros(FRAME, dtype=np.int16)
        return RtpPacket(0, n, n * FRAME, self.ssrc, encode_ulaw(pcm)).serialize()

    def speech_index(self) -> int:
        """Samples of the speech signal sent so far (after consent)."""
        return self._speech_n

    async def run(self, to: tuple[str, int], count: int) -> None:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        assert self.transport is not None
        for n in range(count):
            delay = t0 + n * PTIME - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            if self.hook is not None:
                self.hook(n)
            for first, (_, cnt) in self.events.items():
                if n in (first, first + cnt - 1):
                    if n == first:
                        self.event_times.append((loop.time(), loop.time()))
                    else:
                        a, _ = self.event_times[-1]
                        self.event_times[-1] = (a, loop.time())
            self.transport.sendto(self._packet(n), to)
            self.sent = n + 1

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


@dataclass
class OfficePhone(asyncio.DatagramProtocol):
    """Echoes received PCMA audio after ``delay`` seconds with its own tone added."""

    delay: float = 0.04
    ssrc: int = 0x0FF1CE
    to: tuple[str, int] | None = None
    transport: asyncio.DatagramTransport | None = None
    received: int = 0
    echoed: int = 0

    def __post_init__(self) -> None:
        self._tone_n = 0

    async def open(self) -> None:
        self.transport = await _endpoint(OFFICE_IP, self)

    @property
    def address(self) -> tuple[str, int]:
        assert self.transport is not None
        host, port = self.transport.get_extra_info("sockname")[:2]
        return host, port

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.received += 1
        packet = parse_rtp(data)
        if packet.payload_type != PCMA.payload_type or self.to is None:
            return  # telephone-events are not echoed
        n = np.arange(self._tone_n, self._tone_n + len(packet.payload))
        self._tone_n += len(packet.payload)
        own = 6000.0 * np.sin(2 * np.pi * OFFICE_HZ * n / RATE)
        mixed = decode_alaw(packet.payload).astype(np.float64) + own
        pcm = np.clip(np.round(mixed), -32768, 32767).astype(np.int16)
        out = RtpPacket(
            8, packet.sequence, packet.timestamp, self.ssrc, encode_alaw(pcm), packet.marker
        ).serialize()
        asyncio.get_running_loop().call_later(self.delay, self._send, out)

    def _send(self, data: bytes) -> None:
        if self.transport is not None and self.to is not None:
            self.transport.sendto(data, self.to)
            self.echoed += 1

    def close(self) -> None:
        self.to = None
        if self.transport is not None:
            self.transport.close()


@dataclass
class RecordedCall:
    """Relay with a bridged PCMU (trunk) / PCMA (office) leg pair, tapped for recording."""

    relay: MediaRelay
    trunk: TrunkPhone
    office: OfficePhone
    leg_trunk: RelayLeg
    leg_office: RelayLeg
    tap: BoundedTap
    recorder: CallRecorder
    ticker: RecorderTicker

    @classmethod
    async def open(
        cls,
        ports: tuple[int, int],
        trunk: TrunkPhone | None = None,
        recorder: CallRecorder | None = None,
    ) -> RecordedCall:
        loop = asyncio.get_running_loop()
        relay = MediaRelay(RELAY_IP, PortAllocator(*ports))
        trunk = trunk if trunk is not None else TrunkPhone()
        office = OfficePhone()
        await trunk.open()
        await office.open()
        leg_t = relay.open_leg("trunk", PCMU, trunk.address)
        leg_o = relay.open_leg("office", PCMA, office.address)
        relay.bridge(leg_t, leg_o)
        office.to = leg_o.address
        tap = BoundedTap()
        leg_t.tap = leg_o.tap = tap
        if recorder is None:
            recorder = CallRecorder(
                "call-1", {"trunk": LEFT, "office": RIGHT}, formats={"trunk": PCMU, "office": PCMA}
            )
        ticker = RecorderTicker(loop)
        ticker.add(recorder, tap)
        ticker.start()
        return cls(relay, trunk, office, leg_t, leg_o, tap, recorder, ticker)

    async def close(self) -> None:
        await self.ticker.aclose()
        self.relay.close()
        self.trunk.close()
        self.office.close()


def _emit(**fields: object) -> None:
    print(json.dumps(fields), flush=True)


async def _main(args: argparse.Namespace) -> int:
    loop = asyncio.get_running_loop()
    lo, hi = (int(x) for x in args.ports.split("-"))
    call = await RecordedCall.open((lo, hi), TrunkPhone(seconds=args.seconds + 5))
    out = Path(args.out)

    def hook(n: int) -> None:
        if n == 10:  # 200 ms of "prompt" before consent
            call.recorder.start(loop.time(), out, [args.recipient], {"consent": "keypress"})
            call.trunk.consented = True
            _emit(event="started", monotonic=time.monotonic(), loop_time=loop.time())

    call.trunk.hook = hook
    sender = asyncio.create_task(
        call.trunk.run(call.leg_trunk.address, round(args.seconds / PTIME))
    )
    failed_at: float | None = None
    forwarded_at_failure = 0
    deadline = loop.time() + args.seconds
    status = 0
    try:
        while loop.time() < deadline and not sender.done():
            await asyncio.sleep(0.05)
            if failed_at is None and call.recorder.state is RecorderState.FAILED:
                failed_at = loop.time()
                forwarded_at_failure = call.leg_trunk.counters.forwarded
                _emit(event="failed", speech_samples=call.trunk.speech_index())
                deadline = min(deadline, failed_at + args.linger)
        if args.fsize_limit and failed_at is None:
            status = 1  # the limit was meant to make the recording fail
        result = call.ticker.finish(call.recorder)
        _emit(
            event="done",
            state=call.recorder.state.value,
            truncated=None if result is None else result.truncated,
            error=None if result is None else result.error,
            samples=None if result is None else result.samples,
            path=None if result is None or result.path is None else str(result.path),
            sha256=None if result is None else result.sha256,
            size=None if result is None else result.size,
            forwarded_after_failure=call.leg_trunk.counters.forwarded - forwarded_at_failure
            if failed_at is not None
            else None,
            office_echoed=call.office.echoed,
        )
    finally:
        sender.cancel()
        await asyncio.gather(sender, return_exceptions=True)
        await call.close()
    return status


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--recipient", required=True)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--fsize-limit", type=int, default=0)
    parser.add_argument("--linger", type=float, default=1.0)
    parser.add_argument("--ports", default="45000-45999")
    args = parser.parse_args()
    logging.basicConfig(
        stream=sys.stderr, level=logging.INFO, format="%(levelname)s %(name)s %(message)s"
    )
    if args.fsize_limit:
        # Writes past the limit fail with EFBIG instead of killing the process.
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (args.fsize_limit, args.fsize_limit))
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        return runner.run(_main(args))


if __name__ == "__main__":
    sys.exit(main())
