"""Parallel hunt groups with real peers: SIPp plays the trunk and two or three desk
phones, each its own SIPp on 127.0.0.3 with its own SIP and media port, all ringing at
once (b2bua/hunt_parallel.py)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest

from b2bua.config import load_config
from b2bua.serve import Server, start_server
from tests.conftest import SIPP_DIR, free_port, run_async, run_sipp
from tests.test_hunt_calls import hunt_office, trunk

pytestmark = pytest.mark.sipp

Phone = tuple[int, int, str]  # SIP port, media port, scenario


def phone(port: int, media_port: int, scenario: str) -> list[str]:
    return [
        "-sf",
        str(SIPP_DIR / scenario),
        "-i",
        "127.0.0.3",
        "-p",
        str(port),
        "-mp",
        str(media_port),
        "-rtp_echo",
        "-m",
        "1",
    ]


def phones(n: int) -> list[tuple[int, int]]:
    return [(free_port("127.0.0.3"), free_port("127.0.0.3")) for _ in range(n)]


def run_group(
    config: Path, trunk_port: int, members: list[Phone], scenario: Path
) -> tuple[Any, list[Any], Server, dict[str, tuple[Any, int]]]:
    """Runs the call; also returns, per relay leg seen, its latched peer and the
    packets it received."""

    async def body() -> tuple[Any, list[Any], Server, dict[str, tuple[Any, int]]]:
        server = await start_server(load_config(config))
        legs: dict[str, tuple[Any, int]] = {}

        async def watch() -> None:
            for _ in range(400):
                for leg_id, leg in server.relay.legs.items():
                    legs[leg_id] = (leg.latch.latched, leg.counters.received)
                await asyncio.sleep(0.05)

        watcher = asyncio.create_task(watch())
        try:
            tasks = [
                asyncio.create_task(run_sipp(phone(p, mp, s), timeout=20)) for p, mp, s in members
            ]
            await asyncio.sleep(0.3)  # the phones listen before the trunk calls
            result = await run_sipp(trunk(server, trunk_port, scenario), timeout=20)
            done = [await asyncio.wait_for(t, 15) for t in tasks]
            return result, done, server, legs
        finally:
            watcher.cancel()
            await server.close()

    return run_async(body, timeout=60)


def _ok(*results: Any) -> None:
    for result in results:
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]


def _office(tmp_path: Path, trunk_port: int, ports: list[tuple[int, int]], group: str) -> Path:
    numbers = {f"100{i}": port for i, (port, _) in enumerate(ports)}
    return hunt_office(tmp_path, trunk_port, numbers, 'strategy = "parallel"\n' + group)


def _office_leg(legs: dict[str, tuple[Any, int]]) -> tuple[Any, int]:
    (office,) = [value for leg_id, value in legs.items() if leg_id.endswith("-b")]
    return office


def test_both_ring_second_answers_first_is_cancelled_media_to_the_answerer(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (p1, m1), (p2, m2) = ports = phones(2)
    trunk_port = free_port("127.0.0.2")
    config = _office(tmp_path, trunk_port, ports, 'members = ["1000", "1001"]')
    with caplog.at_level(logging.INFO, logger="b2bua.hunt"):
        result, done, server, legs = run_group(
            config,
            trunk_port,
            [(p1, m1, "phone_ring_cancel.xml"), (p2, m2, "hunt_parallel_answer.xml")],
            SIPP_DIR / "trunk_uac.xml",
        )
    _ok(result, *done)  # 1000 got CANCEL (200, 487, ACK); 1001 was connected, then BYE
    assert "event=hunt_parallel" in caplog.text and "to=1000,1001" in caplog.text
    assert "event=hunt_answered" in caplog.text and "to=1001" in caplog.text
    peer, received = _office_leg(legs)
    assert peer == ("127.0.0.3", m2)  # media went to the phone that answered ...
    assert received > 20  # ... and came back from it (SIPp echoes)
    assert server.switch.stats.calls_started == 1 and server.switch.stats.calls_ended == 1
    assert not server.relay.legs


def test_all_members_busy_then_the_fallback_rings(tmp_path: Path) -> None:
    (p1, m1), (p2, m2), (p3, m3) = ports = phones(3)
    trunk_port = free_port("127.0.0.2")
    config = _office(tmp_path, trunk_port, ports, 'members = ["1000", "1001"]\nfallback = "1002"')
    result, done, server, legs = run_group(
        config,
        trunk_port,
        [(p1, m1, "phone_busy.xml"), (p2, m2, "phone_busy.xml"), (p3, m3, "phone_uas.xml")],
        SIPP_DIR / "trunk_uac.xml",
    )
    _ok(result, *done)
    peer, received = _office_leg(legs)
    assert peer == ("127.0.0.3", m3) and received > 20
    assert server.switch.stats.calls_ended == 1
    assert not server.relay.legs


def test_caller_cancel_while_all_ring_cancels_every_member(tmp_path: Path) -> None:
    (p1, m1), (p2, m2), (p3, m3) = ports = phones(3)
    trunk_port = free_port("127.0.0.2")
    config = _office(tmp_path, trunk_port, ports, 'members = ["1000", "1001", "1002"]')
    # Each phone scenario expects the CANCEL (answers 200 and 487, takes the ACK).
    result, done, server, _ = run_group(
        config,
        trunk_port,
        [(p, m, "phone_ring_cancel.xml") for p, m in ((p1, m1), (p2, m2), (p3, m3))],
        SIPP_DIR / "trunk_cancel.xml",
    )
    _ok(result, *done)
    assert server.switch.stats.calls_started == 1 and server.switch.stats.calls_ended == 1
    assert not server.relay.legs


def test_two_answer_at_once_one_is_connected_the_other_acked_and_hung_up(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (p1, m1), (p2, m2) = ports = phones(2)
    trunk_port = free_port("127.0.0.2")
    config = _office(tmp_path, trunk_port, ports, 'members = ["1000", "1001"]')
    with caplog.at_level(logging.INFO, logger="b2bua.hunt"):
        result, done, server, legs = run_group(
            config,
            trunk_port,
            [(p1, m1, "hunt_parallel_answer_now.xml"), (p2, m2, "hunt_parallel_answer_now.xml")],
            SIPP_DIR / "trunk_uac.xml",
        )
    _ok(result, *done)  # both phones got ACK and BYE; the trunk got one 200
    answered = [r.getMessage() for r in caplog.records if "event=hunt_answered" in r.getMessage()]
    late = [r.getMessage() for r in caplog.records if "event=hunt_late_answer" in r.getMessage()]
    assert len(answered) == 1 and len(late) == 1
    winner = answered[0].rsplit("to=", 1)[1]
    loser = late[0].rsplit("to=", 1)[1]
    assert {winner, loser} == {"1000", "1001"}
    peer, received = _office_leg(legs)
    assert peer == ("127.0.0.3", m1 if winner == "1000" else m2) and received > 20
    assert server.switch.stats.calls_ended == 1
    assert not server.relay.legs
