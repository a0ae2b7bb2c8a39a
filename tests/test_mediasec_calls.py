"""Telekom's mediasec on the wire, SIPp playing the carrier on 127.0.0.2.

`b2bua serve` with `trunk.mediasec = true` and `register = true` registers at
tests/sipp/mediasec_registrar.xml: mediasec headers in the first REGISTER, 401 with
Security-Server, Security-Verify in the authenticated REGISTER, digest checked by SIPp,
Contact user from trunk.contact_user. Then a desk phone (SIPp, 127.0.0.3) calls out and
tests/sipp/mediasec_carrier_uas.xml checks Security-Verify, Require and Proxy-Require on
the INVITE (the agreement the registration learned, shared with the router).

Debian's SIPp has no TLS, so the trunk runs over UDP here; the headers are the same.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import free_port, run_async, run_sipp, write_office
from tests.sipp_harness import assert_sipp_ok, carrier_answers, phone_calls_out, serving

pytestmark = pytest.mark.sipp


def mediasec_office(tmp_path: Path, trunk_port: int) -> Path:
    path = write_office(
        tmp_path, trunk=("127.0.0.2", trunk_port), sip_extra='digest_algorithms = ["MD5"]'
    )
    trunk = (
        'username = "trunkacct"\npassword = "trunkpw"\nrealm = "tel.t-online.de"\n'
        'contact_user = "+4930123456"\nmediasec = true\n'
        'caller_id = "+4930123456"\nidentity_header = "ppi"'
    )
    text = path.read_text().replace(
        'inbound_extension = "1000"', 'inbound_extension = "1000"\n' + trunk
    )
    path.write_text(text)
    return path


def carrier(scenario: str, port: int, timeout: float = 20) -> Any:
    return run_sipp(carrier_answers(port, scenario), timeout=timeout)


def test_serve_registers_with_mediasec_then_its_invite_carries_security_verify(
    tmp_path: Path,
) -> None:
    trunk_port = free_port("127.0.0.2")
    path = mediasec_office(tmp_path, trunk_port)
    path.write_text(path.read_text().replace("mediasec = true", "mediasec = true\nregister = true"))

    async def body() -> tuple[Any, bool, tuple[str, ...], Any, Any]:
        registrar = asyncio.create_task(carrier("mediasec_registrar.xml", trunk_port, 15))
        await asyncio.sleep(0.3)
        async with serving(path) as server:
            registered = await registrar
            await asyncio.sleep(0.1)
            reg = server.switch.trunk_registration
            agreement = server.switch.router.mediasec
            assert agreement is not None
            call = asyncio.create_task(carrier("mediasec_carrier_uas.xml", trunk_port))
            await asyncio.sleep(0.3)
            phone = await run_sipp(
                phone_calls_out(server, free_port("127.0.0.3"), "030999"), timeout=20
            )
            return (
                registered,
                reg is not None and reg.registered,
                agreement.server,
                await asyncio.wait_for(call, 10),
                phone,
            )

    registered, is_registered, learned, call, phone = run_async(body, timeout=90)
    assert_sipp_ok(registered)
    assert is_registered
    assert learned == ("msrp-tls;mediasec", "sdes-srtp;mediasec", "dtls-srtp;mediasec")
    assert_sipp_ok(call, phone)
