"""Trunk interop over real sockets: a trunk found by DNS SRV (a dnslib server on
loopback), OPTIONS keepalive marking the dead primary down, the outbound call going to
the live second server (SIPp), and 100rel: `Require: 100rel` refused with 420, while
`Supported: 100rel` alone leaves the call working without reliable provisionals."""

from __future__ import annotations

import asyncio
import secrets
import socket
from pathlib import Path

import pytest

from b2bua.config import load_config
from b2bua.message import Response, parse_message
from b2bua.serve import Server, start_server
from b2bua.trunk_monitor import Health
from tests.conftest import free_port, run_async, run_sipp, sipp_binary, write_office
from tests.sipp_harness import (
    Result,
    assert_sipp_ok,
    phone_answers,
    phone_calls_out,
    run_serving,
    sipp_uas,
)
from tests.test_trunk_dns import LoopbackDns, trunk_zone

pytestmark = pytest.mark.sipp


def _office(
    directory: Path,
    trunk: tuple[str, int] | str,
    trunk_lines: list[str],
    phone_port: int,
    sip_extra: str = "",
) -> Path:
    return write_office(
        directory,
        trunk=trunk,
        phones={"1000": f"sip:1000@127.0.0.3:{phone_port}"},
        sip_extra="\n".join(['digest_algorithms = ["MD5"]', sip_extra]),  # SIPp: MD5 only
        rtp_ports="32000-32999",
        trunk_extra=trunk_lines,
    )


async def _wait_for(condition, timeout: float) -> bool:  # type: ignore[no-untyped-def]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:  # bounded by the deadline
        if condition():
            return True
        await asyncio.sleep(0.05)
    return bool(condition())


def test_srv_trunk_dead_primary_detected_and_call_goes_to_the_second(tmp_path: Path) -> None:
    port_a, port_b = free_port("127.0.0.2"), free_port("127.0.0.4")
    phone_port = free_port("127.0.0.3")
    dns = LoopbackDns()
    trunk_zone(dns, port_a, port_b)  # a = 127.0.0.2 (priority 10, nobody there), b = .4
    dns_host, dns_port = dns.address
    config = _office(
        tmp_path,
        "trunk.test",
        [
            f'dns_server = "{dns_host}:{dns_port}"',
            'inbound_from = ["127.0.0.2/32", "127.0.0.4/32"]',
            "keepalive_s = 1",
        ],
        phone_port,
        sip_extra="t1_ms = 50",  # an unanswered OPTIONS gives up after 64 * T1 = 3.2 s
    )
    a, b = ("127.0.0.2", port_a), ("127.0.0.4", port_b)

    async def body() -> tuple[bool, Result, Server, int | None]:
        # The live second server answers every call (and the monitor's OPTIONS) until the
        # test ends it; its output is not needed.
        carrier = await asyncio.create_subprocess_exec(
            sipp_binary(),
            *sipp_uas("carrier_uas.xml", "127.0.0.4", port_b, calls=100),
            "-nostdin",
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        server = await start_server(load_config(config))
        try:
            monitor = server.switch.trunk_monitor
            ready = await _wait_for(
                lambda: (
                    monitor.targets == (a, b)
                    and monitor.health(a) is Health.DOWN
                    and monitor.health(b) is Health.UP
                ),
                timeout=10,
            )
            phone = await run_sipp(phone_calls_out(server, phone_port), timeout=20)
            return ready, phone, server, carrier.returncode
        finally:
            await server.close()
            if carrier.returncode is None:
                carrier.terminate()
                try:
                    await asyncio.wait_for(carrier.wait(), 5)
                except TimeoutError:
                    carrier.kill()
                    await carrier.wait()

    try:
        ready, phone, server, carrier_rc = run_async(body, timeout=60)
    finally:
        dns.stop()
    assert ready, "the monitor did not see a down, b up"
    assert carrier_rc is None, "the carrier SIPp quit early (an unexpected message?)"
    assert_sipp_ok(phone)
    assert server.switch.stats.calls_started == 1
    assert server.switch.stats.calls_ended == 1
    assert dns.table.queries[("_sip._udp.trunk.test", "SRV")] >= 1


# -- 100rel (RFC 3262) over the wire ----------------------------------------------------


def _invite(server: Server, local: tuple[str, int], call_id: str, *extra: str) -> bytes:
    host, port = server.sip_address
    lines = [
        f"INVITE sip:1000@{host}:{port} SIP/2.0",
        f"Via: SIP/2.0/UDP {local[0]}:{local[1]};branch=z9hG4bK{secrets.token_hex(6)}",
        f"From: <sip:+4930123456@{local[0]}>;tag=trunk1",
        f"To: <sip:1000@{host}>",
        f"Call-ID: {call_id}",
        "CSeq: 1 INVITE",
        f"Contact: <sip:trunk@{local[0]}:{local[1]}>",
        "Max-Forwards: 70",
        *extra,
        "Content-Type: application/sdp",
    ]
    sdp = (
        "v=0\r\no=trunk 1 1 IN IP4 127.0.0.2\r\ns=-\r\nc=IN IP4 127.0.0.2\r\nt=0 0\r\n"
        f"m=audio {free_port('127.0.0.2')} RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\n"
    )
    head = "\r\n".join([*lines, f"Content-Length: {len(sdp)}"])
    return (head + "\r\n\r\n" + sdp).encode()


def _in_dialog(
    server: Server, method: str, ok: Response, local: tuple[str, int], cseq: int
) -> bytes:
    host, port = server.sip_address
    contact = ok.contacts[0].uri if ok.contacts else f"sip:1000@{host}:{port}"
    lines = [
        f"{method} {contact} SIP/2.0",
        f"Via: SIP/2.0/UDP {local[0]}:{local[1]};branch=z9hG4bK{secrets.token_hex(6)}",
        f"From: <sip:+4930123456@{local[0]}>;tag=trunk1",
        f"To: {ok.headers.get('To')}",
        f"Call-ID: {ok.call_id}",
        f"CSeq: {cseq} {method}",
        "Max-Forwards: 70",
        "Content-Length: 0",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _exchange(
    sock: socket.socket, data: bytes, dest: tuple[str, int], until: int
) -> list[Response]:
    """Sends `data`, collects responses until a final one >= `until` (bounded)."""
    sock.sendto(data, dest)
    got: list[Response] = []
    for _ in range(50):  # bounded: each recv waits at most the socket timeout
        message = parse_message(sock.recv(65535))
        if isinstance(message, Response):
            got.append(message)
            if message.status >= until:
                return got
    return got


def test_require_100rel_gets_420_and_supported_100rel_alone_works(tmp_path: Path) -> None:
    phone_port = free_port("127.0.0.3")
    config = _office(tmp_path, ("127.0.0.2", 5080), ["keepalive_s = 0"], phone_port)

    async def body(server: Server) -> tuple[list[Response], list[Response], list[Response], Result]:
        phone = asyncio.create_task(run_sipp(phone_answers(phone_port), timeout=20))
        await asyncio.sleep(0.3)

        def trunk_side() -> tuple[list[Response], list[Response], list[Response]]:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                sock.bind(("127.0.0.2", 0))
                sock.settimeout(5)
                local = sock.getsockname()
                dest = server.sip_address
                refused = _exchange(
                    sock,
                    _invite(server, local, "rel-1", "Require: 100rel", "Supported: 100rel"),
                    dest,
                    until=300,
                )
                call = _exchange(
                    sock, _invite(server, local, "rel-2", "Supported: 100rel"), dest, until=200
                )
                ok = call[-1]
                sock.sendto(_in_dialog(server, "ACK", ok, local, 1), dest)
                bye = _exchange(sock, _in_dialog(server, "BYE", ok, local, 2), dest, until=200)
                return refused, call, bye

        refused, call, bye = await asyncio.to_thread(trunk_side)
        return refused, call, bye, await phone

    refused, call, bye, phone = run_serving(config, body, timeout=60)
    final = refused[-1]
    assert final.status == 420
    assert final.headers.get("Unsupported") == "100rel"
    assert call[-1].status == 200, [r.status for r in call]
    assert any(r.status == 180 for r in call)  # the phone's ringing came through
    for provisional in call[:-1]:
        assert provisional.headers.get("RSeq") is None
        assert "100rel" not in (provisional.headers.get("Require") or "")
    assert bye[-1].status == 200
    assert_sipp_ok(phone)
