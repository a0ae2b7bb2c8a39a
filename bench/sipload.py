"""Lean SIP signalling for the benchmark: a trunk UAC and a desk-phone UAS over UDP.

Built on b2bua's own message model (Request/Response serialized field by field, parsed
with parse_message) and SDP parser; no transaction layer beyond what a loopback
benchmark needs: INVITE and BYE are retransmitted every 0.5 s, at most 8 times, until a
final response; the phone's 200 OK is retransmitted until the ACK. The media port of
each side is the RTP generator's socket (shared by all calls: the relay latches per leg,
and the payload names the call). The caller number carries the call index, because only
the caller's user part crosses the B2BUA to the phone leg.
"""

from __future__ import annotations

import asyncio
import secrets
import socket
from collections.abc import Callable
from dataclasses import dataclass, field

from b2bua.headers import Address, Headers
from b2bua.message import Request, Response, make_response, parse_message
from b2bua.sdp_parse import parse_sdp
from b2bua.uri import URI

RETRANSMIT_S = 0.5
RETRANSMITS = 8
CALLER_PREFIX = "+49301"


def sdp_body(host: str, port: int) -> bytes:
    lines = [
        "v=0",
        f"o=bench {port} 1 IN IP4 {host}",
        "s=-",
        f"c=IN IP4 {host}",
        "t=0 0",
        f"m=audio {port} RTP/AVP 8 101",
        "a=rtpmap:8 PCMA/8000",
        "a=rtpmap:101 telephone-event/8000",
        "a=fmtp:101 0-15",
        "a=ptime:20",
    ]
    return ("\r\n".join(lines) + "\r\n").encode()


def media_of(body: bytes) -> tuple[str, int]:
    sdp = parse_sdp(body)
    m = sdp.media[0]
    conn = m.connection or sdp.connection
    assert conn is not None, "SDP without c="
    return conn.address, m.port


@dataclass
class CallState:
    k: int
    call_id: str
    from_tag: str
    a_media: tuple[str, int] | None = None  # B2BUA's port for the trunk leg
    b_media: tuple[str, int] | None = None  # B2BUA's port for the phone leg
    remote_target: URI | None = None
    to_tag: str | None = None
    answered: asyncio.Event = field(default_factory=asyncio.Event)
    bridged: asyncio.Event = field(default_factory=asyncio.Event)
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    failed: str | None = None


class Endpoint(asyncio.DatagramProtocol):
    def __init__(self, handle: Callable[[bytes, tuple[str, int]], None]) -> None:
        self.handle = handle
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.handle(data, addr)


class SipLoad:
    """Trunk on 127.0.0.2, phone on 127.0.0.3; `on_media(k, side, host, port)` is called
    when a side's stream can start (trunk: on the 200 OK; phone: on the ACK)."""

    def __init__(
        self,
        media_ports: tuple[int, int],
        on_media: Callable[[int, str, str, int], None],
    ) -> None:
        self.media_ports = media_ports
        self.on_media = on_media
        self.calls: dict[str, CallState] = {}
        self.by_k: dict[int, CallState] = {}
        self.b2bua: tuple[str, int] = ("127.0.0.1", 5060)
        self.trunk: Endpoint | None = None
        self.phone: Endpoint | None = None
        self.trunk_addr = ("127.0.0.2", 0)
        self.phone_addr = ("127.0.0.3", 0)
        self.unexpected = 0
        self._phone_acked: dict[str, asyncio.Event] = {}

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        for name, host in (("trunk", "127.0.0.2"), ("phone", "127.0.0.3")):
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 21)
            sock.bind((host, 0))
            handler = self._on_trunk if name == "trunk" else self._on_phone
            _, proto = await loop.create_datagram_endpoint(lambda h=handler: Endpoint(h), sock=sock)  # type: ignore[misc]
            setattr(self, name, proto)
            setattr(self, f"{name}_addr", sock.getsockname())

    def close(self) -> None:
        for ep in (self.trunk, self.phone):
            if ep is not None and ep.transport is not None:
                ep.transport.close()

    # -- trunk (UAC)
    def _trunk_headers(self, st: CallState, method: str, cseq: int, to_tag: str | None) -> Headers:
        host, port = self.trunk_addr
        to = Address(URI("sip", "1000", host=self.b2bua[0], port=self.b2bua[1]))
        if to_tag is not None:
            to = to.with_param("tag", to_tag)
        caller = Address(URI("sip", f"{CALLER_PREFIX}{st.k:06d}", host=host, port=port))
        return Headers.of(
            ("Via", f"SIP/2.0/UDP {host}:{port};branch=z9hG4bK{secrets.token_hex(8)};rport"),
            ("From", str(caller.with_param("tag", st.from_tag))),
            ("To", str(to)),
            ("Call-ID", st.call_id),
            ("CSeq", f"{cseq} {method}"),
            ("Contact", f"<sip:trunk@{host}:{port}>"),
            ("Max-Forwards", "70"),
        )

    async def invite(self, k: int) -> CallState:
        st = CallState(k, f"bench-{k}-{secrets.token_hex(6)}", secrets.token_hex(4))
        self.calls[st.call_id] = st
        self.by_k[k] = st
        headers = self._trunk_headers(st, "INVITE", 1, None)
        headers = Headers((*headers.fields, ("Content-Type", "application/sdp")))
        uri = URI("sip", "1000", host=self.b2bua[0], port=self.b2bua[1])
        body = sdp_body(self.trunk_addr[0], self.media_ports[0])
        data = Request("INVITE", uri, headers, body).to_bytes()
        await self._send_until(self.trunk, data, st.answered)
        if not st.answered.is_set():
            st.failed = st.failed or "INVITE timed out"
        return st

    async def bye(self, k: int) -> None:
        st = self.by_k[k]
        if st.remote_target is None or st.failed:
            return
        headers = self._trunk_headers(st, "BYE", 2, st.to_tag)
        data = Request("BYE", st.remote_target, headers).to_bytes()
        await self._send_until(self.trunk, data, st.ended)
        if not st.ended.is_set():
            st.failed = "BYE timed out"

    async def _send_until(self, ep: Endpoint | None, data: bytes, done: asyncio.Event) -> None:
        assert ep is not None and ep.transport is not None
        for _ in range(RETRANSMITS):
            ep.transport.sendto(data, self.b2bua)
            try:
                await asyncio.wait_for(done.wait(), RETRANSMIT_S)
                return
            except TimeoutError:
                continue

    def _on_trunk(self, data: bytes, addr: tuple[str, int]) -> None:
        msg = parse_message(data)
        st = self.calls.get(msg.call_id)
        if isinstance(msg, Request):
            if msg.method == "BYE" or msg.method == "OPTIONS":
                self._reply(self.trunk, msg, 200, addr)
            elif msg.method != "ACK":
                self._reply(self.trunk, msg, 501, addr)
            return
        if st is None:
            self.unexpected += 1
            return
        _number, method = msg.cseq
        if method == "INVITE" and msg.status >= 200:
            if msg.status >= 300:
                st.failed = f"INVITE {msg.status}"
                st.answered.set()
                self._ack(st, msg, addr)
                return
            first = not st.answered.is_set()
            st.to_tag = msg.to_addr.tag
            st.remote_target = msg.contacts[0].uri
            self._ack(st, msg, addr)
            if first:
                st.a_media = media_of(msg.body)
                st.answered.set()
                self.on_media(st.k, "a", *st.a_media)
        elif method == "BYE" and msg.status >= 200:
            st.ended.set()

    def _ack(self, st: CallState, resp: Response, addr: tuple[str, int]) -> None:
        target = resp.contacts[0].uri if resp.status < 300 and resp.contacts else None
        uri = target or URI("sip", "1000", host=self.b2bua[0], port=self.b2bua[1])
        headers = self._trunk_headers(st, "ACK", 1, resp.to_addr.tag)
        assert self.trunk is not None and self.trunk.transport is not None
        self.trunk.transport.sendto(Request("ACK", uri, headers).to_bytes(), addr)

    # -- phone (UAS)
    def _on_phone(self, data: bytes, addr: tuple[str, int]) -> None:
        msg = parse_message(data)
        if not isinstance(msg, Request):
            return
        if msg.method == "INVITE":
            user = msg.from_addr.uri.user or ""
            k = int(user[len(CALLER_PREFIX) :]) if user.startswith(CALLER_PREFIX) else -1
            st = self.by_k.get(k)
            if st is None:
                self._reply(self.phone, msg, 404, addr)
                return
            if st.b_media is None:
                st.b_media = media_of(msg.body)
                acked = self._phone_acked[msg.call_id] = asyncio.Event()
                host, port = self.phone_addr
                resp = make_response(
                    msg,
                    200,
                    to_tag=f"ph{k}",
                    headers=[
                        ("Contact", f"<sip:phone@{host}:{port}>"),
                        ("Content-Type", "application/sdp"),
                    ],
                    body=sdp_body(host, self.media_ports[1]),
                )
                asyncio.get_running_loop().create_task(
                    self._answer(resp.to_bytes(), addr, acked, st)
                )
        elif msg.method == "ACK":
            if msg.call_id in self._phone_acked:
                self._phone_acked.pop(msg.call_id).set()
        elif msg.method in ("BYE", "OPTIONS", "CANCEL"):
            self._reply(self.phone, msg, 200, addr)
        else:
            self._reply(self.phone, msg, 501, addr)

    async def _answer(
        self, data: bytes, addr: tuple[str, int], acked: asyncio.Event, st: CallState
    ) -> None:
        assert self.phone is not None and self.phone.transport is not None
        for _ in range(RETRANSMITS):
            self.phone.transport.sendto(data, addr)
            try:
                await asyncio.wait_for(acked.wait(), RETRANSMIT_S)
                break
            except TimeoutError:
                continue
        if not acked.is_set():
            st.failed = "phone 200 OK never ACKed"
            return
        assert st.b_media is not None
        st.bridged.set()
        self.on_media(st.k, "b", *st.b_media)

    def _reply(self, ep: Endpoint | None, req: Request, status: int, addr: tuple[str, int]) -> None:
        assert ep is not None and ep.transport is not None
        ep.transport.sendto(make_response(req, status).to_bytes(), addr)
