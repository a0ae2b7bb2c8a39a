"""Calls with SRTP on the trunk leg, against a real SRTP peer on loopback.

The peer (`SrtpTrunk`) is a minimal SIP trunk: asyncio UDP with our own message model for
SIP, libsrtp (pylibsrtp) for SRTP, and the demo trunk's RTP script (paced PCMU frames,
RFC 4733 key presses). The office phone is SIPp echoing plain RTP.
"""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pylibsrtp
import pytest

from b2bua.config import load_config
from b2bua.demo_trunk import TrunkMedia
from b2bua.dialog import Dialog
from b2bua.headers import Address, Headers, Via
from b2bua.media_control import media_target
from b2bua.message import Request, Response, parse_message
from b2bua.sdp import SessionDescription, offer, parse_sdp
from b2bua.sdp_crypto import crypto_attributes, offer_crypto
from b2bua.serve import Server, start_server
from b2bua.uri import URI
from rtp.packet import RtpPacket
from rtp.srtp import SUITES, SrtpKey
from tests.conftest import free_port, run_async, run_sipp
from tests.sipp_harness import (
    assert_sipp_ok,
    catalog_rows,
    consent_office,
    decrypted_wav,
    fresh_rtp_totals,
    media_leg_count,
    phone_answers,
    rms,
)

pytestmark = pytest.mark.sipp

Addr = tuple[str, int]


def srtp_session(key: SrtpKey, outbound: bool) -> pylibsrtp.Session:
    kind = pylibsrtp.Policy.SSRC_ANY_OUTBOUND if outbound else pylibsrtp.Policy.SSRC_ANY_INBOUND
    return pylibsrtp.Session(pylibsrtp.Policy(key.key_salt, kind, srtp_profile=SUITES[key.suite]))


class _Inbox(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.queue: asyncio.Queue[tuple[bytes, Addr]] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: Addr) -> None:
        self.queue.put_nowait((data, addr))


@dataclass
class SrtpTrunk:
    """The trunk's side of one call: `invite`, then `run_media`, then `bye`."""

    local_ip: str
    server: Addr
    sip: asyncio.DatagramTransport
    sip_inbox: _Inbox
    rtp: asyncio.DatagramTransport
    rtp_inbox: _Inbox
    media: TrunkMedia = field(default_factory=TrunkMedia)
    invite_request: Request | None = None
    dialog: Dialog | None = None
    answer: SessionDescription | None = None
    send_srtp: pylibsrtp.Session | None = None
    recv_srtp: pylibsrtp.Session | None = None
    ours: SrtpKey | None = None
    received_srtp: int = 0  # packets that unprotected with the key we were answered
    received_bad: int = 0  # packets that did not

    @classmethod
    async def open(cls, local_ip: str, server: Addr) -> SrtpTrunk:
        loop = asyncio.get_running_loop()
        sip, sip_inbox = await loop.create_datagram_endpoint(_Inbox, local_addr=(local_ip, 0))
        rtp, rtp_inbox = await loop.create_datagram_endpoint(_Inbox, local_addr=(local_ip, 0))
        return cls(local_ip, server, sip, sip_inbox, rtp, rtp_inbox)

    @property
    def sip_port(self) -> int:
        return int(self.sip.get_extra_info("sockname")[1])

    @property
    def rtp_port(self) -> int:
        return int(self.rtp.get_extra_info("sockname")[1])

    def close(self) -> None:
        self.sip.close()
        self.rtp.close()

    def _via(self) -> Via:
        return Via(
            "UDP", self.local_ip, self.sip_port, (("branch", "z9hG4bK" + secrets.token_hex(6)),)
        )

    async def _response(self, method: str, timeout: float = 5.0) -> Response:
        """The next final response to `method` (provisionals are skipped)."""
        async with asyncio.timeout(timeout):
            while True:
                data, _ = await self.sip_inbox.queue.get()
                message = parse_message(data)
                if (
                    isinstance(message, Response)
                    and message.cseq[1] == method
                    and message.status >= 200
                ):
                    return message

    async def invite(self, sdp: SessionDescription, dialled: str = "1000") -> Response:
        host, port = self.server
        uri = URI("sip", dialled, host=host, port=port)
        me = URI("sip", "+4930123456", host=self.local_ip, port=self.sip_port)
        self.invite_request = Request(
            "INVITE",
            uri,
            Headers.of(
                ("Via", str(self._via())),
                ("Max-Forwards", "70"),
                ("From", str(Address(me).with_param("tag", secrets.token_hex(4)))),
                ("To", str(Address(uri))),
                ("Call-ID", secrets.token_hex(8) + "@trunk"),
                ("CSeq", "1 INVITE"),
                ("Contact", str(Address(me))),
                ("Content-Type", "application/sdp"),
            ),
            sdp.to_bytes(),
        )
        self.sip.sendto(self.invite_request.to_bytes(), self.server)
        response = await self._response("INVITE")
        if response.status < 300:
            self.dialog = Dialog.from_uac(self.invite_request, response)
            ack = self.dialog.create_ack(response, via=self._via())
            self.sip.sendto(ack.to_bytes(), self.server)
            self.answer = parse_sdp(response.body)
        return response

    def start_media(self, ours: SrtpKey) -> None:
        """SRTP both ways: we protect with `ours` (offered), unprotect with the answer's."""
        assert self.answer is not None
        remote, fmt, _ = media_target(self.answer)
        assert remote is not None
        audio = next(m for m in self.answer.media if m.media == "audio" and m.port)
        (theirs,) = crypto_attributes(audio)
        self.ours = ours
        self.send_srtp = srtp_session(ours, outbound=True)
        self.recv_srtp = srtp_session(theirs.key, outbound=False)
        self.media.start(remote, fmt.telephone_event, asyncio.get_running_loop().time())

    def send_bad_tag(self) -> None:
        """One SRTP packet whose authentication tag is wrong (its last byte flipped)."""
        assert self.send_srtp is not None and self.media.remote is not None
        # A session of its own, so the real stream's packet index is not disturbed.
        assert self.ours is not None
        packet = RtpPacket(0, 1, 0, self.media.ssrc ^ 1, b"\xff" * 160).serialize()
        wire = bytearray(srtp_session(self.ours, outbound=True).protect(packet))
        wire[-1] ^= 0xFF
        self.rtp.sendto(bytes(wire), self.media.remote)

    async def run_media(self, seconds: float, actions: dict[float, str] | None = None) -> None:
        """Sends paced SRTP and reads what comes back for `seconds`. `actions` maps a
        time offset to a digit to press (RFC 4733, encrypted like everything else)."""
        loop = asyncio.get_running_loop()
        assert self.send_srtp is not None and self.recv_srtp is not None
        start = loop.time()
        pending = sorted((actions or {}).items())
        for _ in range(int(seconds / 0.01) + 10):
            now = loop.time()
            if now - start >= seconds:
                break
            while pending and now - start >= pending[0][0]:
                self.media.press(pending.pop(0)[1])
            for packet in self.media.packets_due(now):
                assert self.media.remote is not None
                self.rtp.sendto(self.send_srtp.protect(packet), self.media.remote)
            while not self.rtp_inbox.queue.empty():
                data, _ = self.rtp_inbox.queue.get_nowait()
                if len(data) >= 2 and 200 <= data[1] <= 204:
                    continue  # SRTCP: not looked at here
                try:
                    plain = self.recv_srtp.unprotect(data)
                except pylibsrtp.Error:
                    self.received_bad += 1
                    continue
                self.received_srtp += 1
                self.media.receive(plain)
            await asyncio.sleep(0.01)

    async def bye(self) -> Response:
        assert self.dialog is not None
        request = self.dialog.create_request("BYE", via=self._via())
        self.sip.sendto(request.to_bytes(), self.server)
        return await self._response("BYE")


# ------------------------------------------------------------------ the calls


def srtp_office(tmp_path: Path, trunk_port: int, phone_port: int, trunk_srtp: str) -> Path:
    config = consent_office(tmp_path, trunk_port, phone_port, recording={"consent_timeout_s": "5"})
    text = config.read_text().replace("[trunk]\n", f'[trunk]\nsrtp = "{trunk_srtp}"\n')
    config.write_text(text)
    return config


def tone(seconds: float, hz: float = 440.0) -> npt.NDArray[np.int16]:
    t = np.arange(int(seconds * 8000)) / 8000
    return (8000 * np.sin(2 * np.pi * hz * t)).astype(np.int16)


def test_srtp_trunk_plain_phone_recorded_decrypted_and_bad_tag_dropped(tmp_path: Path) -> None:
    """The trunk offers RTP/SAVP; the phone leg is plain RTP (SIPp echoing). The consent
    digit arrives as SRTP-protected RFC 4733, so a recording proves decryption; what the
    trunk hears unprotects with the key we answered; a forged tag is dropped and counted."""
    phone_port = free_port("127.0.0.3")
    config_path = srtp_office(tmp_path, free_port("127.0.0.2"), phone_port, "optional")

    async def body() -> tuple[Any, SrtpTrunk, int, Response, Response]:
        server: Server = await start_server(load_config(config_path))
        trunk = await SrtpTrunk.open("127.0.0.2", server.sip_address)
        try:
            phone = asyncio.create_task(run_sipp(phone_answers(phone_port), timeout=25))
            await asyncio.sleep(0.3)
            sdp, keys = offer_crypto(
                offer("127.0.0.2", trunk.rtp_port, codecs=("PCMU",), session_id=11)
            )
            answer = await trunk.invite(sdp)
            assert answer.status == 200, answer
            trunk.start_media(keys[1])
            trunk.media.say(tone(5.0))
            await trunk.run_media(3.5, {0.8: "1"})
            trunk.send_bad_tag()
            await trunk.run_media(2.5)
            # Summed over the relay's legs (one call here), in either media mode.
            dropped = (await fresh_rtp_totals(server)).dropped_srtp
            bye = await trunk.bye()
            result = await asyncio.wait_for(phone, 15)
            return result, trunk, dropped, answer, bye
        finally:
            trunk.close()
            await server.close()

    phone, trunk, dropped, answer, bye = run_async(body, timeout=60)
    assert_sipp_ok(phone)
    assert bye.status == 200
    audio = next(m for m in parse_sdp(answer.body).media if m.media == "audio")
    assert audio.proto == "RTP/SAVP"
    # What we heard was SRTP under the answered key: the prompt, then the phone's echo.
    assert trunk.received_srtp > 100
    assert trunk.received_bad == 0
    heard = np.concatenate(trunk.media.heard)
    assert rms(heard) > 100
    assert dropped == 1
    (row,) = catalog_rows(tmp_path / "recordings")
    assert row["consent"]["result"] == "accepted"
    assert row["consent"]["method"] == "rfc4733"
    assert row["status"] == "complete"
    data, rate = decrypted_wav(tmp_path, row)
    assert rate == 8000 and data.shape[1] == 2
    left, right = rms(data[:, 0]), rms(data[:, 1])
    assert left > 500  # the trunk's tone, decrypted
    assert right > 100  # the phone's plain echo of it


def test_required_srtp_trunk_refuses_a_plain_offer_with_488(tmp_path: Path) -> None:
    config_path = srtp_office(tmp_path, free_port("127.0.0.2"), free_port("127.0.0.3"), "required")

    async def body() -> tuple[Response, int]:
        server: Server = await start_server(load_config(config_path))
        trunk = await SrtpTrunk.open("127.0.0.2", server.sip_address)
        try:
            sdp = offer("127.0.0.2", trunk.rtp_port, codecs=("PCMU",), session_id=12)
            response = await trunk.invite(sdp)
            return response, media_leg_count(server)
        finally:
            trunk.close()
            await server.close()

    response, legs = run_async(body, timeout=30)
    assert response.status == 488
    assert legs == 0
