"""Outbound registration to the trunk: the sans-I/O client against our own registrar
(simulated time) and against SIPp acting as the carrier's registrar."""

from __future__ import annotations

from pathlib import Path

import pytest

from b2bua.auth import NonceFactory
from b2bua.config import ExtensionConfig
from b2bua.message import Response, make_response, parse_message
from b2bua.registrar import Registrar
from b2bua.trunk_registration import MIN_REFRESH_S, RegState, TrunkRegistration

LOCAL = ("127.0.0.1", 5060)
CARRIER = ("127.0.0.2", 5080)


def carrier(password: str = "trunkpw") -> Registrar:
    # Our own registrar plays the carrier: it knows the office account "office".
    return Registrar(
        [ExtensionConfig("4930123", password)],
        realm="carrier.example",
        nonces=NonceFactory(b"k" * 32, 300.0),
    )


def client(**kw: object) -> TrunkRegistration:
    return TrunkRegistration(CARRIER, "carrier.example", "4930123", "trunkpw", LOCAL, **kw)  # type: ignore[arg-type]


def exchange(reg: TrunkRegistration, registrar: Registrar, now: float, request) -> Response:  # type: ignore[no-untyped-def]
    wire = parse_message(request.to_bytes())  # through bytes, as on the network
    return registrar.handle_register(wire, LOCAL, "UDP", now)  # type: ignore[arg-type]


def test_challenge_answered_and_refresh_scheduled() -> None:
    registrar, reg = carrier(), client(expires=600)
    first = reg.start(0.0)
    challenge = exchange(reg, registrar, 0.0, first)
    assert challenge.status == 401
    second = reg.on_response(challenge, 0.1)
    assert second is not None
    assert second.headers.get("Authorization") is not None
    assert second.cseq[0] == first.cseq[0] + 1
    assert second.call_id == first.call_id
    ok = exchange(reg, registrar, 0.1, second)
    assert ok.status == 200
    assert reg.on_response(ok, 0.2) is None
    assert reg.registered
    assert reg.get_timer() == pytest.approx(0.2 + 0.8 * 600)
    assert registrar.lookup("4930123", 1.0)[0].contact.uri.host == "127.0.0.1"
    # The refresh is due at 80 % of the lifetime: a new REGISTER, challenged again.
    assert reg.on_timer(100.0) is None
    refresh = reg.on_timer(0.2 + 0.8 * 600)
    assert refresh is not None
    assert reg.state is RegState.REGISTERING


def test_wrong_password_backs_off_instead_of_looping() -> None:
    registrar, reg = carrier(password="other"), client()
    challenge = exchange(reg, registrar, 0.0, reg.start(0.0))
    answer = reg.on_response(challenge, 0.0)
    assert answer is not None
    refused = exchange(reg, registrar, 0.0, answer)
    assert refused.status == 403
    assert reg.on_response(refused, 0.0) is None
    assert reg.state is RegState.FAILED
    assert reg.get_timer() == 5.0
    retry = reg.on_timer(5.0)
    assert retry is not None
    assert reg.on_timer(5.0) is None  # one request per deadline


def test_same_nonce_twice_means_bad_credentials() -> None:
    reg = client()
    first = reg.start(0.0)
    challenge = make_response(
        first, 401, headers=[("WWW-Authenticate", 'Digest realm="c", nonce="n1", algorithm=MD5')]
    )
    assert reg.on_response(challenge, 0.0) is not None
    again = make_response(
        first, 401, headers=[("WWW-Authenticate", 'Digest realm="c", nonce="n1", algorithm=MD5')]
    )
    assert reg.on_response(again, 0.0) is None
    assert reg.state is RegState.FAILED


def test_timeout_retries_with_growing_backoff() -> None:
    reg = client()
    reg.start(0.0)
    reg.on_timeout(32.0)
    assert reg.get_timer() == 37.0
    assert reg.on_timer(37.0) is not None
    reg.on_timeout(69.0)
    assert reg.get_timer() == 79.0  # 10 s the second time


def test_tiny_grant_does_not_hammer_the_carrier() -> None:
    reg = client(expires=3600)
    request = reg.start(0.0)
    ok = make_response(
        request, 200, headers=[("Contact", "<sip:4930123@127.0.0.1:5060>;expires=10")]
    )
    reg.on_response(ok, 0.0)
    assert reg.get_timer() == MIN_REFRESH_S


SIPP_REGISTRAR = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="carrier registrar">
  <recv request="REGISTER"/>
  <send>
    <![CDATA[
      SIP/2.0 401 Unauthorized
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]SIPpTag01[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      WWW-Authenticate: Digest realm="carrier.example", nonce="47364c23432d2e131a5fb210812c"
      Content-Length: 0

    ]]>
  </send>
  <recv request="REGISTER" check_it="true">
    <action>
      <ereg regexp=".*" search_in="hdr" header="Authorization:" assign_to="junk"/>
      <verifyauth assign_to="authvalid" username="4930123" password="trunkpw"/>
    </action>
  </recv>
  <nop test="authvalid" next="goodauth"/>
  <send next="end">
    <![CDATA[
      SIP/2.0 403 Forbidden
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]SIPpTag01[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0

    ]]>
  </send>
  <label id="goodauth"/>
  <send>
    <![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]SIPpTag01[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      [last_Contact:];expires=120
      Content-Length: 0

    ]]>
  </send>
  <label id="end"/>
  <Reference variables="junk"/>
</scenario>
"""


@pytest.mark.sipp
def test_registers_at_sipp_carrier_with_digest(tmp_path: Path) -> None:
    import asyncio

    from b2bua.runner import CoreRunner
    from tests.conftest import free_port, run_async, run_sipp

    scenario = tmp_path / "carrier.xml"
    scenario.write_text(SIPP_REGISTRAR)
    port = free_port("127.0.0.2")

    class Core:
        """The registration client on the transaction layer, as the switch runs it."""

        def __init__(self, reg: TrunkRegistration) -> None:
            from b2bua.transaction import ResponseReceived, TransactionLayer

            self.reg, self.layer, self.kind = reg, TransactionLayer(), ResponseReceived

        def send(self, request, now):  # type: ignore[no-untyped-def]
            self.layer.send_request(request, self.reg.registrar, now, reliable=False)

        def receive(self, message, source, transport, now):  # type: ignore[no-untyped-def]
            for event in self.layer.receive_message(message, source, now, reliable=False):
                if isinstance(event, self.kind):
                    nxt = self.reg.on_response(event.response, now)
                    if nxt is not None:
                        self.send(nxt, now)

        def handle_timer(self, now):  # type: ignore[no-untyped-def]
            self.layer.handle_timer(now)

        def get_timer(self):  # type: ignore[no-untyped-def]
            return self.layer.get_timer()

        def datagrams_to_send(self):  # type: ignore[no-untyped-def]
            return [(d, a, "UDP") for d, a in self.layer.datagrams_to_send()]

    async def body() -> tuple[object, TrunkRegistration]:
        sipp = asyncio.create_task(
            run_sipp(
                ["-sf", str(scenario), "-i", "127.0.0.2", "-p", str(port), "-m", "1"], timeout=15
            )
        )
        await asyncio.sleep(0.3)
        reg = TrunkRegistration(
            ("127.0.0.2", port),
            "carrier.example",
            "4930123",
            "trunkpw",
            ("127.0.0.1", 0),
            expires=300,
        )
        core = Core(reg)
        runner = CoreRunner(core)  # type: ignore[arg-type]
        reg.local = await runner.start("127.0.0.1", 0)
        core.send(reg.start(runner.now()), runner.now())
        runner.flush()
        result = await sipp
        await runner.close()
        return result, reg

    result, reg = run_async(body, timeout=30)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr  # type: ignore[attr-defined]
    assert reg.registered
    assert reg.registered_until is not None


@pytest.mark.sipp
def test_serve_registers_at_the_trunk_on_start(tmp_path: Path) -> None:
    import asyncio

    from b2bua.config import load_config
    from b2bua.serve import start_server
    from tests.conftest import free_port, run_async, run_sipp, write_office

    scenario = tmp_path / "carrier.xml"
    scenario.write_text(SIPP_REGISTRAR)
    port = free_port("127.0.0.2")
    config = write_office(tmp_path, trunk=("127.0.0.2", port))
    text = config.read_text().replace(
        'inbound_extension = "1000"',
        'inbound_extension = "1000"\nusername = "4930123"\npassword = "trunkpw"\n'
        'register = true\nrealm = "carrier.example"',
    )
    config.write_text(text)

    async def body() -> tuple[object, bool]:
        sipp = asyncio.create_task(
            run_sipp(
                ["-sf", str(scenario), "-i", "127.0.0.2", "-p", str(port), "-m", "1"], timeout=15
            )
        )
        await asyncio.sleep(0.3)
        server = await start_server(load_config(config))
        try:
            result = await sipp
            await asyncio.sleep(0.1)
            reg = server.switch.trunk_registration
            return result, reg is not None and reg.registered
        finally:
            await server.close()

    result, registered = run_async(body, timeout=30)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr  # type: ignore[attr-defined]
    assert registered
