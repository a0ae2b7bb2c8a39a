"""Presented caller on real calls: SIPp plays the desk phone (127.0.0.3) dialling out and
the carrier (127.0.0.2), whose scenario (tests/sipp/identity_carrier_uas.xml) checks
the INVITE's From user and identity header on the wire."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any
from xml.sax.saxutils import quoteattr

import pytest

from b2bua.config import load_config
from b2bua.serve import Server, start_server
from tests.conftest import SIPP_DIR, free_port, run_async, run_sipp, write_office

pytestmark = pytest.mark.sipp


def phone_args(server: Server, number: str, port: int) -> list[str]:
    """The desk phone 1000 dialling `number` (tests/sipp/phone_uac_auth.xml)."""
    host, sip_port = server.sip_address
    return [
        "-sf",
        str(SIPP_DIR / "phone_uac_auth.xml"),
        "-s",
        number,
        "-au",
        "1000",
        "-ap",
        "pw1000",
        "-i",
        "127.0.0.3",
        "-p",
        str(port),
        "-mp",
        str(free_port("127.0.0.3")),
        "-m",
        "1",
        f"{host}:{sip_port}",
    ]


def identity_office(tmp_path: Path, trunk_port: int, trunk_keys: str, ext_keys: str) -> Path:
    path = write_office(
        tmp_path,
        trunk=("127.0.0.2", trunk_port),
        sip_extra='digest_algorithms = ["MD5"]',  # SIPp answers MD5 challenges
    )
    text = path.read_text()
    text = text.replace('inbound_extension = "1000"', 'inbound_extension = "1000"\n' + trunk_keys)
    text = text.replace('password = "pw1000"', 'password = "pw1000"\n' + ext_keys)
    path.write_text(text)
    return path


def carrier_scenario(tmp_path: Path, from_regexp: str, identity_regexp: str) -> Path:
    template = (SIPP_DIR / "identity_carrier_uas.xml").read_text()
    # Into an XML attribute: "<" and friends escaped, the surrounding quotes replaced.
    text = template.replace('"FROM_REGEXP"', quoteattr(from_regexp)).replace(
        '"IDENTITY_REGEXP"', quoteattr(identity_regexp)
    )
    path = tmp_path / "identity_carrier_uas.xml"
    path.write_text(text)
    return path


def call_out(tmp_path: Path, config: Path, scenario: Path, trunk_port: int) -> tuple[Any, Any]:
    phone_port = free_port("127.0.0.3")

    async def body() -> tuple[Any, Any]:
        server = await start_server(load_config(config))
        try:
            carrier = asyncio.create_task(
                run_sipp(
                    [
                        "-sf",
                        str(scenario),
                        "-i",
                        "127.0.0.2",
                        "-p",
                        str(trunk_port),
                        "-mp",
                        str(free_port("127.0.0.2")),
                        "-rtp_echo",
                        "-m",
                        "1",
                    ],
                    timeout=20,
                )
            )
            await asyncio.sleep(0.3)
            phone = await run_sipp(phone_args(server, "030999", phone_port), timeout=20)
            return phone, await asyncio.wait_for(carrier, 10)
        finally:
            await server.close()

    return run_async(body, timeout=60)


def test_extension_ddi_in_ppi_and_account_in_from(tmp_path: Path) -> None:
    trunk_port = free_port("127.0.0.2")
    config = identity_office(
        tmp_path,
        trunk_port,
        'caller_id = "49301234560"\nidentity_header = "ppi"\nfrom_user = "1234567t0"',
        'caller_id = "49301234512"',
    )
    scenario = carrier_scenario(
        tmp_path,
        r"From: <sip:1234567t0@",
        r"P-Preferred-Identity: <sip:49301234512@127\.0\.0\.2>",
    )
    phone, carrier = call_out(tmp_path, config, scenario, trunk_port)
    assert carrier.returncode == 0, carrier.stdout[-3000:] + carrier.stderr
    assert phone.returncode == 0, phone.stdout[-3000:] + phone.stderr


def test_extension_ddi_in_from_and_pai(tmp_path: Path) -> None:
    trunk_port = free_port("127.0.0.2")
    config = identity_office(
        tmp_path,
        trunk_port,
        'caller_id = "+4930123456"\nidentity_header = "pai"',
        'caller_id = "+4930123456-12"',
    )
    ddi = re.escape("+493012345612")
    scenario = carrier_scenario(
        tmp_path, rf"From: <sip:{ddi}@", rf"P-Asserted-Identity: <sip:{ddi}@127\.0\.0\.2>"
    )
    phone, carrier = call_out(tmp_path, config, scenario, trunk_port)
    assert carrier.returncode == 0, carrier.stdout[-3000:] + carrier.stderr
    assert phone.returncode == 0, phone.stdout[-3000:] + phone.stderr


def test_carrier_check_fails_on_the_trunk_number(tmp_path: Path) -> None:
    # The scenario's check is real: the trunk's number where the DDI is expected fails it.
    trunk_port = free_port("127.0.0.2")
    config = identity_office(
        tmp_path, trunk_port, 'caller_id = "+4930123456"\nidentity_header = "pai"', ""
    )
    ddi = re.escape("+493012345612")
    scenario = carrier_scenario(
        tmp_path, r"From: <sip:", rf"P-Asserted-Identity: <sip:{ddi}@127\.0\.0\.2>"
    )
    _, carrier = call_out(tmp_path, config, scenario, trunk_port)
    assert carrier.returncode != 0
    assert "regexp" in carrier.stdout + carrier.stderr  # failed on the check, not otherwise
