"""HD voice with real peers: Debian's baresip (with its g722 module) is a wideband desk
phone that registers to `b2bua serve`; SIPp plays a G.711 (PCMA) trunk, with SIPp's
A-law capture as its audio. The phone is offered G.722, the trunk only ever sees
G.711, and the relay transcodes between them (b2bua/codec_policy.py, rtp/relay.py).

baresip runs headless as in tests/test_srtp_baresip.py: a config directory written at
test time, audio from a WAV (aufile), no player, `answermode=auto` to pick up, `-t` to
quit (with a BYE when a call is up). The SIP messages are read where the recorder
sends and receives them (its transport), the payload types per leg from the relay's
own taps and counters."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from b2bua.archive.keys import keygen
from b2bua.message import Message, Request, Response, parse_message
from b2bua.sdp import parse_sdp, rtpmap
from b2bua.serve import Server
from rtp.relay import BoundedTap
from tests.conftest import free_port, rtp_workers, run_async, run_sipp
from tests.sipp_harness import (
    MediaSeen,
    assert_sipp_ok,
    carrier_answers,
    catalog_rows,
    decrypted_wav,
    legs_seen,
    rms,
    run_baresip,
    serving,
    trunk_calls_in,
)

pytestmark = pytest.mark.sipp
PHONE_IP, TRUNK_IP = "127.0.0.3", "127.0.0.2"
# baresip names G.722 by its audio rate (16 kHz), although its RTP clock is 8000.
HD_CODECS = "G722/16000/1,PCMA,PCMU"


def office(tmp_path: Path, trunk_port: int, *, wideband: bool, recorded: bool = False) -> Path:
    lines = [
        "[sip]",
        'listen = "127.0.0.1:0"',
        'digest_algorithms = ["MD5"]',  # baresip 1.0 answers MD5 challenges
        "[rtp]",
        'ports = "34200-34299"',  # a range of its own, away from other tests at once
        rtp_workers(),
        "[trunk]",
        f'host = "{TRUNK_IP}:{trunk_port}"',
        'inbound_extension = "1000"',
        "[[extension]]",
        'number = "1000"',
        'password = "pw1000"',
        f"wideband = {'true' if wideband else 'false'}",
        f"employee_consent = {'true' if recorded else 'false'}",
        "[recording]",
    ]
    if recorded:
        keygen(tmp_path / "recorder.key")
        # A short announcement of our own keeps the call short (the shipped one is 6 s).
        t = np.arange(4000) / 8000
        sf.write(
            tmp_path / "hello.wav", (6000 * np.sin(2 * np.pi * 700 * t)).astype(np.int16), 8000
        )
        lines += [
            'mode = "announce"',
            'announcement = "hello.wav"',
            'directory = "recordings"',
            'public_key = "recorder.key.pub"',
        ]
    else:
        lines.append('mode = "off"')
    path = tmp_path / "office.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def baresip_config(tmp_path: Path, sip_port: int, *, codecs: str) -> Path:
    """A headless baresip registering as extension 1000 and answering by itself."""
    speech = tmp_path / "tone.wav"
    t = np.arange(8000 * 30) / 8000  # longer than any call here
    sf.write(speech, (8000 * np.sin(2 * np.pi * 440 * t)).astype(np.int16), 8000)
    conf = tmp_path / "baresip"
    conf.mkdir()
    (conf / "accounts").write_text(
        f"<sip:1000@127.0.0.1:{sip_port}>;auth_pass=pw1000;regint=60;"
        f"answermode=auto;audio_codecs={codecs}\n"
    )
    (conf / "config").write_text(
        "\n".join(
            [
                "poll_method epoll",
                f"sip_listen {PHONE_IP}:{free_port(PHONE_IP)}",
                f"audio_source aufile,{speech}",
                # aufile reads at the file's rate only; baresip resamples to the codec's.
                "ausrc_srate 8000",
                f"net_interface {PHONE_IP}",
                "module_path /usr/lib/baresip/modules",
                "module g711.so",
                "module g722.so",
                "module aufile.so",
                "module account.so",
                "module menu.so",
                "",
            ]
        )
    )
    return conf


@dataclass
class Wire:
    """SIP messages as the recorder sent and received them, with the peer's address."""

    sent: list[tuple[Message, tuple[str, int]]] = field(default_factory=list)
    received: list[tuple[Message, tuple[str, int]]] = field(default_factory=list)

    def attach(self, server: Server) -> None:
        transport = server.runner.transport
        send, deliver = transport.send, transport.on_message

        def sending(data: bytes, dest: tuple[str, int], transport: str = "UDP") -> None:
            self.sent.append((parse_message(data), dest))
            send(data, dest, transport)

        def receiving(message: Message, source: tuple[str, int], kind: str) -> None:
            self.received.append((message, source))
            deliver(message, source, kind)

        transport.send = sending  # type: ignore[method-assign]
        transport.on_message = receiving

    def invites_to(self, ip: str) -> list[Request]:
        return [
            m
            for m, dest in self.sent
            if isinstance(m, Request) and m.method == "INVITE" and dest[0] == ip and m.body
        ]

    def invite_ok(self, messages: list[tuple[Message, tuple[str, int]]], ip: str) -> Response:
        (ok,) = {
            m.body: m
            for m, peer in messages
            if isinstance(m, Response)
            and m.status == 200
            and m.cseq[1] == "INVITE"
            and peer[0] == ip
            and m.body
        }.values()
        return ok


def codec_names(body: bytes) -> list[str]:
    sdp = parse_sdp(body)
    (m,) = [m for m in sdp.media if m.media == "audio"]
    return [c.name.upper() for c in rtpmap(m).values()]


@dataclass
class Legs:
    """Per relay leg ("a", "b"), seen while the call is up: its format and, when the media
    runs in this process, the payload types it received (from the relay's taps, which media
    workers keep to themselves); `media`: the legs' counters (`MediaSeen`)."""

    media: MediaSeen = field(default_factory=MediaSeen)
    payload_types: dict[str, set[int]] = field(default_factory=dict)
    formats: dict[str, tuple[int, str, int | None]] = field(default_factory=dict)

    async def watch(self, server: Server) -> None:
        taps: dict[str, BoundedTap] = {}
        for _ in range(400):  # bounded: 20 s
            self.media.sample(server)
            for leg_id, seen in legs_seen(server).items():
                side = leg_id[-1]
                if seen.fmt is not None:
                    fmt = seen.fmt
                    self.formats[side] = (fmt.payload_type, fmt.encoding, fmt.telephone_event)
            for leg_id, leg in list(server.relay.legs.items()) if server.relay else ():
                if leg.tap is None:  # recorded calls: the hub's tap feeds the recorder
                    taps[leg_id[-1]] = leg.tap = BoundedTap()
            for side, tap in taps.items():
                for packets in tap.drain_all().values():
                    self.payload_types.setdefault(side, set()).update(
                        p.payload_type for p in packets
                    )
            await asyncio.sleep(0.05)

    def assert_payload_types(self, expected: dict[str, set[int]]) -> None:
        """What each leg received, where the relay's taps can be read (one process)."""
        if self.media.in_process:
            for side, types in expected.items():
                assert self.payload_types[side] == types, self.payload_types


async def registered(server: Server, seconds: float = 5.0) -> None:
    for _ in range(int(seconds / 0.05)):
        if server.switch.registrar.lookup("1000", server.runner.now()):
            return
        await asyncio.sleep(0.05)
    pytest.fail("baresip did not register")


Scenario = Callable[[Server, Wire, Legs], Awaitable[Any]]


def with_server(config: Path, scenario: Scenario) -> tuple[Any, Wire, Legs, Server]:
    async def body() -> tuple[Any, Wire, Legs, Server]:
        wire, legs = Wire(), Legs()
        async with serving(config) as server:
            wire.attach(server)
            watcher = asyncio.create_task(legs.watch(server))
            try:
                result = await scenario(server, wire, legs)
            finally:
                watcher.cancel()
            await legs.media.finish(server)
        with contextlib.suppress(asyncio.CancelledError):
            await watcher  # a failure in the watcher fails the test
        return result, wire, legs, server

    return run_async(body, timeout=60)


def inbound_call(
    tmp_path: Path, *, wideband: bool, recorded: bool = False, codecs: str = HD_CODECS
) -> tuple[Any, Wire, Legs, Server]:
    trunk_port = free_port(TRUNK_IP)
    config = office(tmp_path, trunk_port, wideband=wideband, recorded=recorded)

    async def scenario(server: Server, wire: Wire, legs: Legs) -> Any:
        conf = baresip_config(tmp_path, server.sip_address[1], codecs=codecs)
        phone = asyncio.create_task(run_baresip(conf, 8))  # the call is over in 6 s
        await registered(server)
        trunk = await run_sipp(trunk_calls_in(server, trunk_port, "g722_trunk_uac.xml"), timeout=20)
        code, out = await phone
        return trunk, code, out

    return with_server(config, scenario)


def test_inbound_wideband_phone_talks_g722_trunk_pcma(tmp_path: Path) -> None:
    (trunk, code, out), wire, legs, server = inbound_call(tmp_path, wideband=True)
    assert_sipp_ok(trunk)  # 200: PCMA, no G722
    assert code == 0, out[-3000:]
    (invite,) = wire.invites_to(PHONE_IP)
    assert codec_names(invite.body) == ["G722", "PCMA", "TELEPHONE-EVENT"]
    assert codec_names(wire.invite_ok(wire.received, PHONE_IP).body)[0] == "G722"
    assert codec_names(wire.invite_ok(wire.sent, TRUNK_IP).body) == ["PCMA", "TELEPHONE-EVENT"]
    # Each leg its own codec: the trunk's PCMA (8) in, baresip's G.722 (9) in.
    assert legs.formats["a"][:2] == (8, "PCMA") and legs.formats["b"][:2] == (9, "G722")
    legs.assert_payload_types({"a": {8}, "b": {9}})
    # trunk -> phone, transcoded to G.722; phone -> trunk, transcoded to PCMA
    legs.media.assert_both_ways(50)
    assert server.switch.stats.calls_ended == 1


def test_inbound_not_wideband_phone_is_not_offered_g722(tmp_path: Path) -> None:
    (trunk, code, out), wire, legs, _ = inbound_call(tmp_path, wideband=False)
    assert_sipp_ok(trunk)
    assert code == 0, out[-3000:]
    (invite,) = wire.invites_to(PHONE_IP)
    assert "G722" not in codec_names(invite.body)
    assert codec_names(invite.body) == ["PCMA", "TELEPHONE-EVENT"]  # the trunk's, passed on
    assert codec_names(wire.invite_ok(wire.received, PHONE_IP).body)[0] == "PCMA"
    assert legs.formats["a"][:2] == legs.formats["b"][:2] == (8, "PCMA")
    legs.assert_payload_types({"b": {8}})


def test_inbound_wideband_recorded_call_has_audio_on_both_channels(tmp_path: Path) -> None:
    (trunk, code, out), wire, legs, _ = inbound_call(tmp_path, wideband=True, recorded=True)
    assert_sipp_ok(trunk)
    assert code == 0, out[-3000:]
    (invite,) = wire.invites_to(PHONE_IP)  # after the announcement: our own offer
    assert codec_names(invite.body)[0] == "G722"
    assert codec_names(wire.invite_ok(wire.received, PHONE_IP).body)[0] == "G722"
    assert legs.formats["b"][:2] == (9, "G722")  # the hub taps this leg for the recorder
    (row,) = catalog_rows(tmp_path / "recordings")
    assert row["status"] == "complete", row
    data, rate = decrypted_wav(tmp_path, row)
    assert rate == 8000 and data.shape[1] == 2 and data.shape[0] > 8000 * 2
    left, right = rms(data[:, 0]), rms(data[:, 1])
    assert left > 300  # the trunk's A-law speech
    assert right > 1000  # baresip's 440 Hz tone, G.722 decoded to 8 kHz
    spectrum = np.abs(np.fft.rfft(data[:, 1].astype(float)))
    assert abs(float(np.argmax(spectrum)) * 8000 / len(data) - 440) < 10


def test_outbound_from_wideband_phone_trunk_sees_no_g722(tmp_path: Path) -> None:
    trunk_port = free_port(TRUNK_IP)
    config = office(tmp_path, trunk_port, wideband=True)

    async def scenario(server: Server, wire: Wire, legs: Legs) -> Any:
        carrier = asyncio.create_task(
            run_sipp(carrier_answers(trunk_port, "g722_carrier_uas.xml"), timeout=20)
        )
        conf = baresip_config(tmp_path, server.sip_address[1], codecs=HD_CODECS)
        host, port = server.sip_address
        await asyncio.sleep(0.3)  # the carrier listens before the phone dials
        code, out = await run_baresip(conf, 6, f"/dial sip:+4989123456@{host}:{port}")
        return await carrier, code, out

    (carrier, code, out), wire, legs, server = with_server(config, scenario)
    assert_sipp_ok(carrier)  # no G722
    assert code == 0, out[-3000:]
    (to_trunk,) = wire.invites_to(TRUNK_IP)
    assert codec_names(to_trunk.body) == ["PCMA", "PCMU", "TELEPHONE-EVENT"]
    (from_phone,) = [
        m
        for m, src in wire.received
        if isinstance(m, Request)
        and m.method == "INVITE"
        and m.body
        and m.headers.get("Authorization") is not None
    ]
    assert codec_names(from_phone.body)[0] == "G722"
    assert codec_names(wire.invite_ok(wire.sent, PHONE_IP).body) == ["G722", "TELEPHONE-EVENT"]
    assert legs.formats["a"][:2] == (9, "G722") and legs.formats["b"][:2] == (8, "PCMA")
    legs.assert_payload_types({"a": {9}, "b": {8}})
    legs.media.assert_both_ways(50)
    assert server.switch.stats.calls_ended == 1
