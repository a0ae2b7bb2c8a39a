"""Presented caller on real calls: SIPp plays the desk phone (127.0.0.3) dialling out and
the carrier (127.0.0.2), whose scenario (tests/sipp/identity_carrier_uas.xml) checks
the INVITE's From user and identity header on the wire."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from xml.sax.saxutils import quoteattr

import pytest

from b2bua.serve import Server
from tests.conftest import SIPP_DIR, free_port, write_office
from tests.sipp_harness import (
    answered_call,
    assert_sipp_ok,
    carrier_answers,
    phone_calls_out,
    run_serving,
)

pytestmark = pytest.mark.sipp


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

    async def body(server: Server) -> tuple[Any, list[Any]]:
        return await answered_call(
            [carrier_answers(trunk_port, scenario)],
            phone_calls_out(server, phone_port, "030999"),
            timeout=20,
            wait=10,
        )

    phone, (carrier,) = run_serving(config, body, timeout=60)
    return phone, carrier


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
    assert_sipp_ok(carrier, phone)


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
    assert_sipp_ok(carrier, phone)


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
