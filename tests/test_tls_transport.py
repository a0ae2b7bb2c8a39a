"""SIP over TLS on loopback: our transport both ways, the running server, refusals.

Peers: Python's `ssl` module (a blocking client socket playing the trunk) and a second
SipTransport; certificates come from tests/test_tls_support.py, made at test time.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import time
import warnings
from pathlib import Path

import pytest

from b2bua.config import ConfigError, load_config
from b2bua.message import Message, Request, Response, parse_message
from b2bua.runner import CoreRunner
from b2bua.serve import start_server
from b2bua.tls import TlsClient, client_context, server_context, trunk_client
from b2bua.transport import Address, SipTransport
from b2bua.uas import MinimalUas
from tests.conftest import free_port, run_async
from tests.test_tls_support import Pki, make_pki


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def _options(via_host: str, port: int, call_id: str, transport: str = "TLS") -> bytes:
    return (
        f"OPTIONS sip:1000@127.0.0.1 SIP/2.0\r\n"
        f"Via: SIP/2.0/{transport} {via_host}:{port};branch=z9hG4bK{call_id}\r\n"
        "Max-Forwards: 70\r\n"
        f"From: <sip:probe@{via_host}>;tag=t{call_id}\r\n"
        "To: <sip:1000@127.0.0.1>\r\n"
        f"Call-ID: {call_id}\r\n"
        "CSeq: 1 OPTIONS\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


class _Collect:
    def __init__(self) -> None:
        self.got: list[tuple[Message, Address, str]] = []
        self.arrived = asyncio.Event()

    def __call__(self, message: Message, source: Address, transport: str) -> None:
        self.got.append((message, source, transport))
        self.arrived.set()

    async def wait_for(self, count: int, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.got) < count and time.monotonic() < deadline:
            self.arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.arrived.wait(), max(0.01, deadline - time.monotonic()))


async def _pair(
    pki: Pki, client: TlsClient, cert: tuple[Path, Path] | None = None
) -> tuple[SipTransport, _Collect, SipTransport, _Collect, Address]:
    server_seen, client_seen = _Collect(), _Collect()
    server = SipTransport(server_seen)
    await server.start("127.0.0.1", 0)
    cert_path, key_path = cert or (pki.server.cert, pki.server.key)
    tls_addr = await server.start_tls("127.0.0.1", 0, server_context(cert_path, key_path))
    us = SipTransport(client_seen)
    await us.start("127.0.0.1", 0)
    us.tls_clients[tls_addr] = client
    return server, server_seen, us, client_seen, tls_addr


def test_tls_both_ways_one_connection_reused(pki: Pki) -> None:
    async def scenario() -> tuple[list[str], list[str], int, int, int]:
        server, server_seen, us, client_seen, addr = await _pair(
            pki, TlsClient(client_context(pki.ca), "127.0.0.1")
        )
        try:
            # A burst before the handshake finished: all of it waits for one connect.
            for i in range(3):
                us.send(_options("127.0.0.1", us.local[1], f"reuse{i}"), addr, "TLS")
            await server_seen.wait_for(3)
            for message, source, transport in server_seen.got:
                assert transport == "TLS"
                assert isinstance(message, Request)
                reply = Response(200, "OK", message.headers, b"").to_bytes()
                server.send(reply, source, "TLS")  # back over the connection it came on
            await client_seen.wait_for(3)
            return (
                [t for _, _, t in server_seen.got],
                [t for _, _, t in client_seen.got],
                us.stats.tls_connections,
                server.stats.tls_connections,
                us.stats.tls_failures,
            )
        finally:
            await us.close()
            await server.close()

    at_server, at_client, ours, theirs, failures = run_async(scenario, timeout=30)
    assert at_server == ["TLS"] * 3
    assert at_client == ["TLS"] * 3
    assert (ours, theirs, failures) == (1, 1, 0)


@pytest.mark.parametrize("which", ["untrusted", "wrong_name"])
def test_client_refuses_a_certificate_that_does_not_verify(pki: Pki, which: str) -> None:
    issued = getattr(pki, which)

    async def scenario() -> tuple[int, int, int, int]:
        server, server_seen, us, _, addr = await _pair(
            pki, TlsClient(client_context(pki.ca), "127.0.0.1"), (issued.cert, issued.key)
        )
        try:
            us.send(_options("127.0.0.1", us.local[1], "refused"), addr, "TLS")
            deadline = time.monotonic() + 5
            while us.stats.tls_failures == 0 and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            await asyncio.sleep(0.1)
            return (
                us.stats.tls_failures,
                us.stats.send_errors,
                us.stats.sent,
                len(server_seen.got),
            )
        finally:
            await us.close()
            await server.close()

    failures, errors, sent, delivered = run_async(scenario, timeout=30)
    assert (failures, errors, sent, delivered) == (1, 1, 0, 0)


def _office(tmp_path: Path, pki: Pki, *, trunk_port: int, trunk_ca: Path, phone: str) -> Path:
    text = f"""
[sip]
listen = "127.0.0.1:0"
tls_listen = "127.0.0.1:0"
tls_cert = "{pki.server.cert}"
tls_key = "{pki.server.key}"
[rtp]
ports = "32000-32099"
[trunk]
host = "127.0.0.2:{trunk_port}"
inbound_extension = "1000"
transport = "tls"
tls_ca = "{trunk_ca}"
[[extension]]
number = "1000"
password = "pw1000"
contact = "{phone}"
[recording]
mode = "off"
"""
    path = tmp_path / "office.toml"
    path.write_text(text)
    return path


def test_trunk_tls_ca_mismatch_is_refused(tmp_path: Path, pki: Pki) -> None:
    """trunk.tls_ca names a CA that did not sign the trunk's certificate: no connect."""
    other_ca = pki.untrusted.cert.parent / "other-ca.pem"
    config = load_config(
        _office(tmp_path, pki, trunk_port=5061, trunk_ca=other_ca, phone="sip:1000@127.0.0.3")
    )
    assert config.trunk.transport == "tls"
    client = trunk_client(config)
    assert client.server_name == "127.0.0.2"

    async def scenario() -> tuple[int, int]:
        # The "trunk" serves a certificate from the office CA, which tls_ca does not hold.
        server, server_seen, us, _, addr = await _pair(pki, TlsClient(client.context, "127.0.0.1"))
        try:
            us.send(_options("127.0.0.1", us.local[1], "ca-mismatch"), addr, "TLS")
            deadline = time.monotonic() + 5
            while us.stats.tls_failures == 0 and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            await asyncio.sleep(0.1)
            return us.stats.tls_failures, len(server_seen.got)
        finally:
            await us.close()
            await server.close()

    assert run_async(scenario, timeout=30) == (1, 0)


def test_tls_config_errors(tmp_path: Path, pki: Pki) -> None:
    path = _office(tmp_path, pki, trunk_port=5061, trunk_ca=pki.ca, phone="sip:1000@127.0.0.3")
    text = path.read_text()
    path.write_text(text.replace(f'tls_key = "{pki.server.key}"\n', ""))
    with pytest.raises(ConfigError, match=r"sip\.tls_key: required when sip\.tls_listen"):
        load_config(path)
    path.write_text(text.replace('transport = "tls"', 'transport = "sctp"'))
    with pytest.raises(ConfigError, match=r"trunk\.transport: must be one of udp, tcp, tls"):
        load_config(path)
    # A key that does not belong to the certificate: refused before anything binds.
    path.write_text(text.replace(str(pki.server.key), str(pki.untrusted.key)))

    async def start() -> None:
        server = await start_server(load_config(path))
        await server.close()

    with pytest.raises(ConfigError, match=r"sip\.tls_cert: can not load"):
        run_async(start, timeout=30)


def _trusting(pki: Pki) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pki.ca))
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def _read_messages(conn: ssl.SSLSocket, count: int, timeout: float = 5.0) -> list[bytes]:
    """Reads `count` SIP messages (Content-Length framed) from a TLS stream."""
    conn.settimeout(timeout)
    data = b""
    out: list[bytes] = []
    deadline = time.monotonic() + timeout
    while len(out) < count and time.monotonic() < deadline:
        head, sep, rest = data.partition(b"\r\n\r\n")
        if sep:
            length = 0
            for line in head.split(b"\r\n"):
                name, _, value = line.partition(b":")
                if name.strip().lower() in (b"content-length", b"l"):
                    length = int(value)
            if len(rest) >= length:
                out.append(head + sep + rest[:length])
                data = rest[length:]
                continue
        chunk = conn.recv(65535)
        if not chunk:
            break
        data += chunk
    return out


def _tls_connect(pki: Pki, addr: Address, source: str = "127.0.0.1") -> ssl.SSLSocket:
    raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    raw.bind((source, 0))
    raw.settimeout(5)
    raw.connect(addr)
    return _trusting(pki).wrap_socket(raw, server_hostname="127.0.0.1")


def test_server_answers_options_over_tls_and_refuses_tls_1_1(tmp_path: Path, pki: Pki) -> None:
    config = load_config(
        _office(tmp_path, pki, trunk_port=5061, trunk_ca=pki.ca, phone="sip:1000@127.0.0.3")
    )

    def probe(addr: Address) -> tuple[list[bytes], str | None]:
        with _tls_connect(pki, addr) as conn:
            port = conn.getsockname()[1]
            conn.sendall(_options("127.0.0.1", port, "tls-options"))
            replies = _read_messages(conn, 1)
            version = conn.version()
        return replies, version

    def old_client(addr: Address, newest: ssl.TLSVersion) -> str:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.load_verify_locations(cafile=str(pki.ca))
        with warnings.catch_warnings():
            # An obsolete client on purpose: Python warns about configuring one.
            warnings.simplefilter("ignore", DeprecationWarning)
            ctx.minimum_version = ssl.TLSVersion.TLSv1_1
            ctx.maximum_version = newest
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")  # OpenSSL 3 would not even offer 1.1
        with socket.create_connection(addr, timeout=5) as raw:
            try:
                with ctx.wrap_socket(raw, server_hostname="127.0.0.1"):
                    return "connected"
            except ssl.SSLError as exc:
                return f"refused: {exc.reason}"

    async def scenario() -> tuple[list[bytes], str | None, str, int]:
        server = await start_server(config)
        try:
            addr = server.runner.transport.tls_local
            assert addr is not None
            replies, version = await asyncio.to_thread(probe, addr)
            refused = await asyncio.to_thread(old_client, addr, ssl.TLSVersion.TLSv1_1)
            # Control: the same client allowed 1.2 gets in, so 1.1 was what failed.
            control = await asyncio.to_thread(old_client, addr, ssl.TLSVersion.TLSv1_2)
            assert control == "connected", control
            return replies, version, refused, server.runner.transport.stats.tls_connections
        finally:
            await server.close()

    replies, version, refused, connections = run_async(scenario, timeout=30)
    assert len(replies) == 1
    reply = parse_message(replies[0])
    assert isinstance(reply, Response) and reply.status == 200
    assert (reply.headers.get("Via") or "").startswith("SIP/2.0/TLS 127.0.0.1:")
    assert version in ("TLSv1.2", "TLSv1.3")
    # The server's protocol_version alert, or (uvloop) the connection closed unanswered.
    assert refused in (
        "refused: TLSV1_ALERT_PROTOCOL_VERSION",
        "refused: UNSUPPORTED_PROTOCOL",
        "refused: UNEXPECTED_EOF_WHILE_READING",
    ), refused
    assert connections == 2  # the probe and the 1.2 control; the 1.1 client never got in


def test_call_signalled_over_tls_from_the_trunk(tmp_path: Path, pki: Pki) -> None:
    """The trunk (127.0.0.2) calls in over TLS; the phone leg is UDP; BYE over TLS."""
    phone_port = free_port("127.0.0.3")
    config = load_config(
        _office(
            tmp_path,
            pki,
            trunk_port=5061,
            trunk_ca=pki.ca,
            phone=f"sip:1000@127.0.0.3:{phone_port}",
        )
    )
    sdp = (
        b"v=0\r\no=trunk 1 1 IN IP4 127.0.0.2\r\ns=-\r\nc=IN IP4 127.0.0.2\r\nt=0 0\r\n"
        b"m=audio 40000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n"
        b"a=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n"
    )

    def trunk(addr: Address) -> tuple[list[int], int | None]:
        statuses: list[int] = []
        with _tls_connect(pki, addr, source="127.0.0.2") as conn:
            port = conn.getsockname()[1]
            common = (
                f"From: <sip:+4930555@127.0.0.2>;tag=trk\r\n"
                f"Call-ID: tls-call-{port}\r\n"
                f"Contact: <sip:+4930555@127.0.0.2:{port};transport=tls>\r\n"
                "Max-Forwards: 70\r\n"
            )
            conn.sendall(
                (
                    "INVITE sip:1000@127.0.0.1 SIP/2.0\r\n"
                    f"Via: SIP/2.0/TLS 127.0.0.2:{port};branch=z9hG4bKinv{port}\r\n"
                    f"{common}To: <sip:1000@127.0.0.1>\r\nCSeq: 1 INVITE\r\n"
                    f"Content-Type: application/sdp\r\nContent-Length: {len(sdp)}\r\n\r\n"
                ).encode()
                + sdp
            )
            final: Response | None = None
            deadline = time.monotonic() + 10
            while final is None and time.monotonic() < deadline:
                for raw in _read_messages(conn, 1):
                    msg = parse_message(raw)
                    assert isinstance(msg, Response)
                    statuses.append(msg.status)
                    if msg.status >= 200:
                        final = msg
            if final is None or final.status != 200:
                return statuses, None
            to = final.headers.get("To") or ""
            conn.sendall(
                (
                    "ACK sip:1000@127.0.0.1 SIP/2.0\r\n"
                    f"Via: SIP/2.0/TLS 127.0.0.2:{port};branch=z9hG4bKack{port}\r\n"
                    f"{common}To: {to}\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n"
                ).encode()
            )
            time.sleep(0.3)
            conn.sendall(
                (
                    "BYE sip:1000@127.0.0.1 SIP/2.0\r\n"
                    f"Via: SIP/2.0/TLS 127.0.0.2:{port};branch=z9hG4bKbye{port}\r\n"
                    f"{common}To: {to}\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n"
                ).encode()
            )
            bye = _read_messages(conn, 1)
            bye_status = None
            if bye:
                msg = parse_message(bye[0])
                bye_status = msg.status if isinstance(msg, Response) else None
        return statuses, bye_status

    async def scenario() -> tuple[list[int], int | None, int, int, int]:
        server = await start_server(config)
        phone = MinimalUas(("127.0.0.3", phone_port))
        phone_runner = CoreRunner(phone)
        await phone_runner.start("127.0.0.3", phone_port)
        try:
            addr = server.runner.transport.tls_local
            assert addr is not None
            statuses, bye_status = await asyncio.to_thread(trunk, addr)
            deadline = time.monotonic() + 5
            while server.switch.stats.calls_ended < 1 and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            stats = server.switch.stats
            return (
                statuses,
                bye_status,
                stats.calls_started,
                stats.calls_ended,
                phone.stats.calls_answered,
            )
        finally:
            await phone_runner.close()
            await server.close()

    statuses, bye_status, started, ended, answered = run_async(scenario, timeout=40)
    assert statuses[-1] == 200, statuses
    assert bye_status == 200
    assert (started, ended, answered) == (1, 1, 1)
