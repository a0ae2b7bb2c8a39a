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

from b2bua.archive.catalog import Catalog
from b2bua.config import load_config
from b2bua.serve import Server, start_server
from tests.conftest import SIPP_DIR, free_port, run_async, run_sipp
from tests.test_consent_calls import CAPTURES, consent_office, trunk_scenario

pytestmark = pytest.mark.sipp


def office(
    tmp_path: Path, trunk_port: int, phone_port: int, extension: str = "", *, consent: bool = True
) -> Path:
    """Mode keypress, MD5 only (SIPp answers one MD5 challenge), `extension` lines added."""
    path = consent_office(tmp_path, trunk_port, phone_port, employee_consent=consent)
    text = path.read_text().replace("[sip]", '[sip]\ndigest_algorithms = ["MD5"]', 1)
    text = text.replace('password = "pw1000"', 'password = "pw1000"\n' + extension, 1)
    path.write_text(text)
    return path


def phone_args(server: Server, scenario: str, number: str, port: int) -> list[str]:
    host, sip_port = server.sip_address
    return [
        "-sf",
        str(SIPP_DIR / scenario),
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


def answering_trunk(port: int) -> list[str]:
    """SIPp's answering phone scenario, playing the carrier on the trunk address."""
    return [
        "-sf",
        str(SIPP_DIR / "phone_uas.xml"),
        "-i",
        "127.0.0.2",
        "-p",
        str(port),
        "-mp",
        str(free_port("127.0.0.2")),
        "-rtp_echo",
        "-m",
        "1",
    ]


def rows_of(tmp_path: Path) -> list[dict[str, Any]]:
    with Catalog.open(tmp_path / "recordings") as catalog:
        return catalog.list()


def test_emergency_call_passes_ban_and_drain_unprompted_unrecorded(tmp_path: Path) -> None:
    phone_port, trunk_port = free_port("127.0.0.3"), free_port("127.0.0.2")
    config = office(tmp_path, trunk_port, phone_port)

    async def body() -> tuple[Any, Any, float, Server]:
        server = await start_server(load_config(config))
        try:
            loop = asyncio.get_running_loop()
            guard = server.switch.guard
            assert guard is not None
            for _ in range(guard.config.max_auth_failures):
                guard.auth_failed("127.0.0.3", "1000", loop.time())
            assert guard.is_banned("127.0.0.3", loop.time())
            guard.draining = True  # any other new call would get 503 now
            trunk = asyncio.create_task(run_sipp(answering_trunk(trunk_port), timeout=20))
            await asyncio.sleep(0.3)
            started = time.monotonic()
            phone = await run_sipp(
                phone_args(server, "phone_uac_auth.xml", "112", phone_port), timeout=20
            )
            took = time.monotonic() - started
            return phone, await asyncio.wait_for(trunk, 10), took, server
        finally:
            await server.close()

    phone, trunk, took, server = run_async(body, timeout=60)
    assert phone.returncode == 0, phone.stdout[-3000:] + phone.stderr
    assert trunk.returncode == 0, trunk.stdout[-3000:] + trunk.stderr
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

    async def body() -> tuple[list[Any], Server]:
        server = await start_server(load_config(config))
        try:
            results = []
            for number in ("0900123456", "0044207946000"):
                results.append(
                    await run_sipp(
                        phone_args(server, "phone_uac_refused.xml", number, phone_port),
                        timeout=15,
                    )
                )
            return results, server
        finally:
            await server.close()

    with caplog.at_level(logging.INFO, logger="b2bua.switch"):
        results, server = run_async(body, timeout=45)
    for result in results:
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr
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

    async def body() -> tuple[Any, Any, Any, Server]:
        server = await start_server(load_config(config))
        try:
            trunk = asyncio.create_task(run_sipp(answering_trunk(trunk_port), timeout=20))
            await asyncio.sleep(0.3)
            first = asyncio.create_task(
                run_sipp(phone_args(server, "phone_uac_auth.xml", "030123456", phone_port))
            )
            for _ in range(50):  # until the first call is up
                if server.switch.calls:
                    break
                await asyncio.sleep(0.05)
            assert server.switch.calls
            second = await run_sipp(
                phone_args(server, "phone_uac_refused.xml", "030654321", free_port("127.0.0.3")),
                timeout=15,
            )
            return await first, second, await asyncio.wait_for(trunk, 15), server
        finally:
            await server.close()

    first, second, trunk, server = run_async(body, timeout=60)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr
    assert server.switch.stats.calls_started == 1
    assert server.switch.stats.calls_rejected == 1
    # The first call went on undisturbed.
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr
    assert trunk.returncode == 0, trunk.stdout[-3000:] + trunk.stderr


def run_inbound(
    tmp_path: Path, scenario: Path, *, extra: str = ""
) -> tuple[Any, Any, list[dict[str, Any]]]:
    phone_port, trunk_port = free_port("127.0.0.3"), free_port("127.0.0.2")
    config = consent_office(tmp_path, trunk_port, phone_port, extra=extra)

    async def body() -> tuple[Any, Any]:
        server = await start_server(load_config(config))
        try:
            phone = asyncio.create_task(
                run_sipp(
                    [
                        "-sf",
                        str(SIPP_DIR / "phone_uas.xml"),
                        "-i",
                        "127.0.0.3",
                        "-p",
                        str(phone_port),
                        "-mp",
                        str(free_port("127.0.0.3")),
                        "-rtp_echo",
                        "-m",
                        "1",
                    ],
                    timeout=25,
                )
            )
            await asyncio.sleep(0.3)
            host, sip_port = server.sip_address
            trunk = await run_sipp(
                [
                    "-sf",
                    str(scenario),
                    "-s",
                    "1000",
                    "-i",
                    "127.0.0.2",
                    "-p",
                    str(trunk_port),
                    "-mp",
                    str(free_port("127.0.0.2")),
                    "-m",
                    "1",
                    f"{host}:{sip_port}",
                ],
                timeout=25,
            )
            return trunk, await asyncio.wait_for(phone, 10)
        finally:
            await server.close()

    trunk, phone = run_async(body, timeout=60)
    return trunk, phone, rows_of(tmp_path)


def test_do_not_record_caller_is_not_asked_and_not_recorded(tmp_path: Path) -> None:
    # The trunk presents +4930123456; the list has it in national form.
    trunk, phone, rows = run_inbound(
        tmp_path, SIPP_DIR / "trunk_uac.xml", extra='do_not_record = ["030 123456"]'
    )
    assert trunk.returncode == 0, trunk.stdout[-3000:] + trunk.stderr
    assert phone.returncode == 0, phone.stdout[-3000:] + phone.stderr
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
    assert trunk.returncode == 0, trunk.stdout[-3000:] + trunk.stderr
    assert phone.returncode == 0, phone.stdout[-3000:] + phone.stderr
    (row,) = rows
    assert (row["caller"], row["caller_e164"]) == ("withheld", None)
    assert row["consent"]["result"] == "accepted"  # asked like anyone else
    assert row["status"] == "complete"
    logged = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("b2bua"))
    assert "from=withheld" in logged
    assert "30123456" not in logged
