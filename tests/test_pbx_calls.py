"""PBX mode with real peers: SIPp plays the office PBX (extension.pbx = true) and the
trunk. Inbound, the PBX must see the dialled number; outbound, the PBX's asserted
extension (P-Asserted-Identity) picks the per-extension rules."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

import pytest

from b2bua.config import load_config
from b2bua.message import parse_message
from b2bua.pbx import acting_extension, office_user
from b2bua.serve import Server
from tests.conftest import SIPP_DIR, free_port, run_sipp
from tests.sipp_harness import (
    answered_call,
    assert_sipp_ok,
    carrier_answers,
    phone_answers,
    phone_calls_out,
    run_serving,
    trunk_calls_in,
)

pytestmark = pytest.mark.sipp
DID = "+4930111222"


def pbx_office(tmp_path: Path, trunk_port: int, pbx_port: int) -> Path:
    text = f"""
[sip]
listen = "127.0.0.1:0"
digest_algorithms = ["MD5"]
[rtp]
ports = "31000-31999"
[trunk]
host = "127.0.0.2:{trunk_port}"
inbound_extension = "1000"
inbound_map = {{ "{DID}" = "1000" }}
[[extension]]
number = "1000"
password = "pw1000"
contact = "sip:pbx@127.0.0.3:{pbx_port}"
pbx = true
[[extension]]
number = "21"
password = "unused21"
allowed_destinations = ["!+4989*", "+49*"]
[recording]
mode = "off"
"""
    path = tmp_path / "office.toml"
    path.write_text(text)
    return path


def test_inbound_to_the_pbx_keeps_the_dialled_number(tmp_path: Path) -> None:
    trunk_port, pbx_port = free_port("127.0.0.2"), free_port("127.0.0.3")
    config = pbx_office(tmp_path, trunk_port, pbx_port)
    # The PBX: phone_uas.xml that fails unless Request-URI and To carry the DID.
    pbx_scenario = tmp_path / "pbx_uas.xml"
    checks = (
        '<recv request="INVITE" crlf="true">\n    <action>\n'
        '      <ereg regexp="^INVITE sip:\\+4930111222@" search_in="msg" check_it="true"'
        ' assign_to="1"/>\n'
        '      <ereg regexp="sip:\\+4930111222@" search_in="hdr" header="To:"'
        ' check_it="true" assign_to="2"/>\n'
        "    </action>\n  </recv>"
    )
    text = (SIPP_DIR / "phone_uas.xml").read_text()
    assert '<recv request="INVITE" crlf="true"/>' in text
    text = text.replace('<recv request="INVITE" crlf="true"/>', checks, 1)
    text = text.replace("Content-Length: 0", "X-Seen: [$1] [$2]\n      Content-Length: 0", 1)
    pbx_scenario.write_text(text)

    async def body(server: Server) -> tuple[Any, list[Any]]:
        return await answered_call(
            [phone_answers(pbx_port, pbx_scenario)],
            trunk_calls_in(server, trunk_port, service=DID),
            timeout=20,
            wait=15,
        )

    trunk, (pbx,) = run_serving(config, body)
    assert_sipp_ok(trunk, pbx)


def _asserting(tmp_path: Path, source: str, user: str) -> Path:
    """A phone scenario turned PBX: its authenticated INVITE asserts extension `user`."""
    text = (SIPP_DIR / source).read_text()
    assert text.count("[authentication]\n") == 1
    text = text.replace(
        "[authentication]\n",
        f"[authentication]\n      P-Asserted-Identity: <sip:{user}@127.0.0.3>\n",
    )
    path = tmp_path / f"pbx_{user}_{source}"
    path.write_text(text)
    return path


@pytest.mark.parametrize(("user", "allowed"), [("21", False), ("22", True)])
def test_outbound_from_the_pbx_applies_the_asserted_extensions_rules(
    tmp_path: Path, user: str, allowed: bool
) -> None:
    trunk_port, pbx_port = free_port("127.0.0.2"), free_port("127.0.0.3")
    config = pbx_office(tmp_path, trunk_port, pbx_port)
    # 21 is configured and may not call Munich (+4989...); 22 is not configured, so the
    # PBX account's (default) rules apply and the call reaches the trunk.
    scenario = _asserting(
        tmp_path, "phone_uac_auth.xml" if allowed else "phone_uac_refused.xml", user
    )

    async def body(server: Server) -> tuple[Any, Any]:
        carrier = asyncio.create_task(
            run_sipp(carrier_answers(trunk_port), timeout=8 if not allowed else 20)
        )
        await asyncio.sleep(0.3)
        pbx = await run_sipp(phone_calls_out(server, pbx_port, scenario=scenario), timeout=20)
        if not allowed:
            carrier.cancel()  # the carrier must see nothing: stop waiting for it
            with contextlib.suppress(asyncio.CancelledError):
                await carrier  # let run_sipp end the process and drain its pipes
            return pbx, None
        return pbx, await asyncio.wait_for(carrier, 15)

    pbx, carrier = run_serving(config, body)
    assert_sipp_ok(pbx)
    if allowed:
        assert_sipp_ok(carrier)


def test_office_user_prefers_p_asserted_identity(tmp_path: Path) -> None:
    def invite(extra: str) -> Any:
        raw = (
            "INVITE sip:+4989123456@127.0.0.1 SIP/2.0\r\n"
            "Via: SIP/2.0/UDP 127.0.0.3;branch=z9hG4bK1\r\n"
            "From: <sip:1000@127.0.0.1>;tag=a\r\nTo: <sip:+4989123456@127.0.0.1>\r\n"
            f"Call-ID: x\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\n{extra}"
            "Content-Length: 0\r\n\r\n"
        )
        return parse_message(raw.encode())

    assert office_user(invite("P-Asserted-Identity: <sip:21@pbx>\r\n")) == "21"
    assert office_user(invite("P-Asserted-Identity: <tel:+4930111222>\r\n")) == "+4930111222"
    assert office_user(invite("")) == "1000"
    config = load_config(pbx_office(tmp_path, 5080, 5070))
    assert acting_extension(config, "1000", invite("P-Asserted-Identity: <sip:21@x>\r\n")) == (
        "21",
        "21",
    )
    assert acting_extension(config, "1000", invite("P-Asserted-Identity: <sip:22@x>\r\n")) == (
        "1000",
        "22",
    )
