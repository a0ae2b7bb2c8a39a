"""G.722 phone leg <-> G.711 trunk leg through the real relay on loopback.

G.722's RTP clock is 8000 Hz although its audio is 16 kHz (RFC 3551 4.5.2), so 20 ms
is 160 timestamp ticks and 160 bytes on both legs: the relay keeps timestamps and
payload sizes and only converts the audio, with codec and filter state per direction.
"""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable

import numpy as np
import numpy.typing as npt

from media.g711 import decode_alaw, decode_ulaw, encode_ulaw
from media.g722 import BYTES_PER_FRAME, G722Decoder, G722Encoder
from rtp.packet import RtpPacket, parse_rtp
from rtp.relay import BoundedTap, MediaFormat, MediaRelay, PortAllocator
from tests.test_g722 import fit_tone, tone
from tests.test_rtp_relay import RELAY_IP, Call, peer, run

PORTS = (48400, 48499)  # a range of its own, away from other tests running at once
G722 = MediaFormat(9, "G722", 101)
PCMU = MediaFormat(0, "PCMU", 101)
PCMA = MediaFormat(8, "PCMA", 101)
COUNT = 50  # one second of 20 ms packets
Int16Array = npt.NDArray[np.int16]


async def open_call(fmt_a: MediaFormat, fmt_b: MediaFormat) -> Call:
    call = Call()
    call.relay = MediaRelay(RELAY_IP, PortAllocator(*PORTS))
    call.a = await peer("127.0.0.2")
    call.b = await peer("127.0.0.3")
    call.leg_a = call.relay.open_leg("a", fmt_a, call.a.address)
    call.leg_b = call.relay.open_leg("b", fmt_b, call.b.address)
    call.relay.bridge(call.leg_a, call.leg_b)
    return call


def rtp_stream(pt: int, payloads: list[bytes], ssrc: int = 77, ts0: int = 1000) -> list[bytes]:
    return [
        RtpPacket(pt, 500 + i, ts0 + 160 * i, ssrc, p, i == 0).serialize()
        for i, p in enumerate(payloads)
    ]


def g722_payloads(freq: float) -> list[bytes]:
    data = G722Encoder().encode(tone(freq, COUNT * 320, 16000))
    return [data[i : i + BYTES_PER_FRAME] for i in range(0, len(data), BYTES_PER_FRAME)]


def assert_timestamps_step_160(packets: list[RtpPacket]) -> None:
    for before, after in itertools.pairwise(packets):
        assert after.sequence == (before.sequence + 1) % 65536
        assert (after.timestamp - before.timestamp) % 2**32 == 160


def test_g722_phone_comes_out_as_pcmu_with_the_tone_and_back() -> None:
    async def body(call: Call) -> None:
        tap = BoundedTap()
        call.leg_a.tap = tap
        sent = g722_payloads(1000)
        for data in rtp_stream(9, sent):
            call.a.send(data, call.leg_a.address)
        got = [parse_rtp(d) for d in await call.b.recv(COUNT)]
        assert {p.payload_type for p in got} == {0}
        assert all(len(p.payload) == 160 for p in got)
        assert_timestamps_step_160(got)
        pcm = decode_ulaw(b"".join(p.payload for p in got))
        amp, snr = fit_tone(pcm, 1000, 8000)
        assert abs(20 * np.log10(amp / 8000.0)) < 0.3
        assert snr > 30
        # The recorder's tap sees the leg's own G.722 bytes, not the transcoded ones.
        assert [t.payload for t in tap.drain_all()["a"]] == sent

        # Back: the trunk's PCMU 440 Hz arrives at the phone as 16 kHz G.722.
        narrow = tone(440, COUNT * 160, 8000)
        payloads = [encode_ulaw(narrow[i * 160 : (i + 1) * 160]) for i in range(COUNT)]
        for data in rtp_stream(0, payloads, ssrc=88, ts0=90000):
            call.b.send(data, call.leg_b.address)
        back = [parse_rtp(d) for d in await call.a.recv(COUNT)]
        assert {p.payload_type for p in back} == {9}
        assert all(len(p.payload) == BYTES_PER_FRAME for p in back)
        assert_timestamps_step_160(back)
        wide = G722Decoder().decode(b"".join(p.payload for p in back))
        assert len(wide) == COUNT * 320  # 16 kHz audio in 8000 Hz timestamp units
        amp, snr = fit_tone(wide, 440, 16000)
        assert abs(20 * np.log10(amp / 8000.0)) < 0.3
        assert snr > 30

    run(lambda: with_call(body, G722, PCMU))


def test_pcma_trunk_and_renegotiation_to_g722() -> None:
    """A leg that changes codec on a re-INVITE gets fresh converters (set_remote)."""

    async def body(call: Call) -> None:
        for data in rtp_stream(9, g722_payloads(2000)):
            call.b.send(data, call.leg_b.address)
        got = [parse_rtp(d) for d in await call.a.recv(COUNT)]
        assert {p.payload_type for p in got} == {8}
        amp, snr = fit_tone(decode_alaw(b"".join(p.payload for p in got)), 2000, 8000)
        assert abs(20 * np.log10(amp / 8000.0)) < 0.3 and snr > 30

        call.leg_b.set_remote(call.b.address, PCMU)  # the phone falls back to PCMU
        x = tone(700, 160, 8000)
        call.b.send(RtpPacket(0, 900, 0, 99, encode_ulaw(x)).serialize(), call.leg_b.address)
        (again,) = [parse_rtp(d) for d in await call.a.recv(1)]
        assert again.payload_type == 8 and len(again.payload) == 160

    run(lambda: with_call(body, PCMA, G722))


def test_g722_to_g722_passes_bytes_unchanged() -> None:
    async def body(call: Call) -> None:
        sent = g722_payloads(1000)[:5]
        for data in rtp_stream(9, sent):
            call.a.send(data, call.leg_a.address)
        got = [parse_rtp(d) for d in await call.b.recv(5)]
        assert [p.payload for p in got] == sent
        assert {p.payload_type for p in got} == {9}

    run(lambda: with_call(body, G722, G722))


async def with_call(
    body: Callable[[Call], Awaitable[None]], fmt_a: MediaFormat, fmt_b: MediaFormat
) -> None:
    call = await open_call(fmt_a, fmt_b)
    try:
        await body(call)
    finally:
        call.close()
