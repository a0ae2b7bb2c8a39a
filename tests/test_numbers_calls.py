"""Numbers in real calls: SIPp plays the desk phone (127.0.0.3) and the trunk (127.0.0.2).

An emergency call passes a ban and a draining server, reaches the trunk at once and is
neither announced nor recorded (mode keypress); premium and international numbers and a
second concurrent call are refused with 403; a caller on the do-not-record list is not
asked and not recorded; a withheld caller is asked and recorded as "withheld".
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

import pytest

from b2bua.serve import Server
from tests.conftest import SIPP_DIR, free_port, run_async, run_sipp
from tests.sipp_harness import (
    assert_sipp_ok,
    carrier_answers,
    catalog_rows,
    consent_office,
    phone_calls_out,
    run_serving,
    serving,
)
from tests.test_consent_calls import CAPTURES, run_inbound, trunk_scenario

pytestmark = pytest.mark.sipp


def office(
    tmp_path: Path, trunk_port: int, phone_port: int, extension: str = "", *, consent: bool = True
) -> Path:
    """Mode keypress, MD5 only (SIPp answers one MD5 challenge), `extension` lines added."""
    path = consent_office(
        tmp_path,
        trunk_port,
        phone_port,
        employee_consent=consent,
        sip_extra='digest_algorithms = ["MD5"]',
    )
    text = path.read_text().replace('password = "pw1000"', 'password = "pw1000"\n' + extension, 1)
    path.write_text(text)
    return path


def rows_of(tmp_path: Path) -> list[dict[str, Any]]:
    return catalog_rows(tmp_path / "recordings")


def test_emergency_call_passes_ban_and_drain_unprompted_unrecorded(tmp_path: Path) -> None:
    phone_port, trunk_port = free_port("127.0.0.3"), free_port("127.0.0.2")
    config = office(tmp_path, trunk_port, phone_port)

    async def body() -> tuple[Any, Any, float, Server]:
        async with serving(config) as server:
            loop = asyncio.get_running_loop()
            guard = server.switch.guard
            assert guard is not None
            for _ in range(guard.config.max_auth_failures):
                guard.auth_failed("127.0.0.3", "1000", loop.time())
            assert guard.is_banned("127.0.0.3", loop.time())
            guard.draining = True  # any other new call would get 503 now
            trunk = asyncio.create_task(run_sipp(carrier_answers(trunk_port), timeout=20))
            await asyncio.sleep(0.3)
            started = time.monotonic()
            phone = await run_sipp(phone_calls_out(server, phone_port, "112"), timeout=20)
            took = time.monotonic() - started
            return phone, await asyncio.wait_for(trunk, 10), took, server

    phone, trunk, took, server = run_async(body, timeout=60)
    assert_sipp_ok(phone, trunk)
    assert server.switch.stats.calls_started == 1
    # 2 s of media in the scenario: a prompt (plus a 3 s consent timeout) would show.
    assert took < 4.5
    (row,) = rows_of(tmp_path)
    assert (row["direction"], row["callee"], row["status"]) == ("outbound", "112", "not_recorded")
    assert row["path"] is None
    assert row["callee_e164"] is None
    consent = row["consent"]
    assert (consent["result"], consent["note"], consent["prompt_sha256"]) == (
        "not_asked",
        "emergency",
        None,
    )
    assert not list((tmp_path / "recordings").glob("*.age*"))


def test_premium_and_international_numbers_are_refused(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    phone_port, trunk_port = free_port("127.0.0.3"), free_port("127.0.0.2")
    config = office(tmp_path, trunk_port, phone_port)

    async def body(server: Server) -> tuple[list[Any], Server]:
        results = []
        for number in ("0900123456", "0044207946000"):
            refused = phone_calls_out(server, phone_port, number, "phone_uac_refused.xml")
            results.append(await run_sipp(refused, timeout=15))
        return results, server

    with caplog.at_level(logging.INFO, logger="b2bua.switch"):
        results, server = run_serving(config, body, timeout=45)
    assert_sipp_ok(*results)
    assert server.switch.stats.calls_started == 0
    assert server.switch.stats.calls_rejected == 2
    blocks = [r.getMessage() for r in caplog.records if "tollfraud_block" in r.getMessage()]
    assert blocks == [
        "event=tollfraud_block ext=1000 dialled=0900123456 rule=!+49900*",
        "event=tollfraud_block ext=1000 dialled=0044207946000 rule=no_rule",
    ]


def test_second_concurrent_call_is_refused(tmp_path: Path) -> None:
    phone_port, trunk_port = free_port("127.0.0.3"), free_port("127.0.0.2")
    # Without employee consent nobody is asked: the first call connects at once.
    config = office(tmp_path, trunk_port, phone_port, "max_outbound_calls = 1", consent=False)

    async def body(server: Server) -> tuple[Any, Any, Any, Server]:
        trunk = asyncio.create_task(run_sipp(carrier_answers(trunk_port), timeout=20))
        await asyncio.sleep(0.3)
        first = asyncio.create_task(run_sipp(phone_calls_out(server, phone_port, "030123456")))
        for _ in range(50):  # until the first call is up
            if server.switch.calls:
                break
            await asyncio.sleep(0.05)
        assert server.switch.calls
        refused = phone_calls_out(
            server, free_port("127.0.0.3"), "030654321", "phone_uac_refused.xml"
        )
        second = await run_sipp(refused, timeout=15)
        return await first, second, await asyncio.wait_for(trunk, 15), server

    first, second, trunk, server = run_serving(config, body, timeout=60)
    assert_sipp_ok(second)
    assert server.switch.stats.calls_started == 1
    assert server.switch.stats.calls_rejected == 1
    # The first call went on undisturbed.
    assert_sipp_ok(first, trunk)


def test_do_not_record_caller_is_not_asked_and_not_recorded(tmp_path: Path) -> None:
    # The trunk presents +4930123456; the list has it in national form.
    trunk, phone, rows = run_inbound(
        tmp_path, SIPP_DIR / "trunk_uac.xml", extra='do_not_record = ["030 123456"]'
    )
    assert_sipp_ok(trunk, phone)
    (row,) = rows
    assert (row["caller"], row["caller_e164"]) == ("+4930123456", "+4930123456")
    assert (row["status"], row["path"]) == ("not_recorded", None)
    assert (row["consent"]["result"], row["consent"]["note"]) == ("not_asked", "do_not_record")
    assert row["consent"]["prompt_sha256"] is None
    assert not list((tmp_path / "recordings").glob("*.age*"))


def test_withheld_caller_is_asked_and_recorded_as_withheld(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    scenario = trunk_scenario(tmp_path, str(CAPTURES / "dtmf_2833_1.pcap"))
    text = scenario.read_text()
    invite_from = text.index("From:", text.index("INVITE sip:"))
    line_end = text.index("\n", invite_from)
    # CLIR as carriers send it: the number in From, "Privacy: id" asking to hide it.
    scenario.write_text(text[: line_end + 1] + "      Privacy: id\n" + text[line_end + 1 :])
    with caplog.at_level(logging.DEBUG):
        trunk, phone, rows = run_inbound(tmp_path, scenario)
    assert_sipp_ok(trunk, phone)
    (row,) = rows
    assert (row["caller"], row["caller_e164"]) == ("withheld", None)
    assert row["consent"]["result"] == "accepted"  # asked like anyone else
    assert row["status"] == "complete"
    logged = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("b2bua"))
    assert "from=withheld" in logged
    assert "30123456" not in logged
