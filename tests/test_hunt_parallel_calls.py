"""Parallel hunt groups with real peers: SIPp plays the trunk and two or three desk
phones, each its own SIPp on 127.0.0.3 with its own SIP and media port, all ringing at
once (b2bua/hunt_parallel.py)."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from b2bua.serve import Server
from tests.conftest import free_port
from tests.sipp_harness import (
    MediaSeen,
    answered_call,
    assert_sipp_ok,
    media_leg_count,
    phone_answers,
    run_serving,
)
from tests.test_hunt_calls import hunt_office, trunk

pytestmark = pytest.mark.sipp

Phone = tuple[int, int, str]  # SIP port, media port, scenario


def phones(n: int) -> list[tuple[int, int]]:
    return [(free_port("127.0.0.3"), free_port("127.0.0.3")) for _ in range(n)]


def run_group(
    config: Path, trunk_port: int, members: list[Phone], scenario: str
) -> tuple[Any, list[Any], Server, MediaSeen]:
    """Runs the call; also returns the relay legs seen (`MediaSeen`: per leg its peer
    and, with the media in this process, the packets it received)."""

    async def body(server: Server) -> tuple[Any, list[Any], Server, MediaSeen]:
        media = MediaSeen()
        watcher = asyncio.create_task(media.watch(server, seconds=20))
        try:
            result, done = await answered_call(
                [phone_answers(p, s, media_port=mp) for p, mp, s in members],
                trunk(server, trunk_port, scenario),
                timeout=20,
                wait=15,
            )
        finally:
            watcher.cancel()
        await media.finish(server)
        return result, done, server, media

    return run_serving(config, body, timeout=60)


def _office(tmp_path: Path, trunk_port: int, ports: list[tuple[int, int]], group: str) -> Path:
    numbers = {f"100{i}": port for i, (port, _) in enumerate(ports)}
    return hunt_office(tmp_path, trunk_port, numbers, 'strategy = "parallel"\n' + group)


@dataclass
class Group:
    """One call to a parallel group: the trunk's and the phones' SIPp results, the
    server, the relay legs seen and each phone's media port (in member order)."""

    trunk: Any
    phones: list[Any]
    server: Server
    legs: MediaSeen
    media_ports: list[int]


def ring_group(
    tmp_path: Path, scenarios: list[str], group: str, trunk_scenario: str = "trunk_uac.xml"
) -> Group:
    """Extensions 1000, 1001, ... answer with `scenarios`; the trunk calls the group."""
    ports = phones(len(scenarios))
    trunk_port = free_port("127.0.0.2")
    config = _office(tmp_path, trunk_port, ports, group)
    members = [(p, m, s) for (p, m), s in zip(ports, scenarios, strict=True)]
    result, done, server, legs = run_group(config, trunk_port, members, trunk_scenario)
    return Group(result, done, server, legs, [m for _, m in ports])


def _office_leg(legs: MediaSeen) -> tuple[Any, int]:
    """The office leg's peer and the packets it received; with media workers (no per-leg
    counters) the call's total received."""
    office = legs.leg("-b")
    received = office.received if office.received is not None else legs.totals.received
    return office.peer, received


def test_both_ring_second_answers_first_is_cancelled_media_to_the_answerer(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="b2bua.hunt"):
        call = ring_group(
            tmp_path,
            ["phone_ring_cancel.xml", "hunt_parallel_answer.xml"],
            'members = ["1000", "1001"]',
        )
    server, legs, (_, m2) = call.server, call.legs, call.media_ports
    # 1000 got CANCEL (200, 487, ACK); 1001 was connected, then BYE.
    assert_sipp_ok(call.trunk, *call.phones)
    assert "event=hunt_parallel" in caplog.text and "to=1000,1001" in caplog.text
    assert "event=hunt_answered" in caplog.text and "to=1001" in caplog.text
    peer, received = _office_leg(legs)
    assert peer == ("127.0.0.3", m2)  # media went to the phone that answered ...
    assert received > 20  # ... and came back from it (SIPp echoes)
    assert server.switch.stats.calls_started == 1 and server.switch.stats.calls_ended == 1
    assert not media_leg_count(server)


def test_all_members_busy_then_the_fallback_rings(tmp_path: Path) -> None:
    call = ring_group(
        tmp_path,
        ["phone_busy.xml", "phone_busy.xml", "phone_uas.xml"],
        'members = ["1000", "1001"]\nfallback = "1002"',
    )
    server, legs, (_, _, m3) = call.server, call.legs, call.media_ports
    assert_sipp_ok(call.trunk, *call.phones)
    peer, received = _office_leg(legs)
    assert peer == ("127.0.0.3", m3) and received > 20
    assert server.switch.stats.calls_ended == 1
    assert not media_leg_count(server)


def test_caller_cancel_while_all_ring_cancels_every_member(tmp_path: Path) -> None:
    # Each phone scenario expects the CANCEL (answers 200 and 487, takes the ACK).
    call = ring_group(
        tmp_path,
        ["phone_ring_cancel.xml"] * 3,
        'members = ["1000", "1001", "1002"]',
        "trunk_cancel.xml",
    )
    server = call.server
    assert_sipp_ok(call.trunk, *call.phones)
    assert server.switch.stats.calls_started == 1 and server.switch.stats.calls_ended == 1
    assert not media_leg_count(server)


@pytest.mark.parametrize(
    "loser",
    [
        # rings, then answers the INVITE right after our CANCEL: the 200 crossed it
        "hunt_parallel_answer_crossing.xml",
        # no provisional, so no CANCEL may be sent (RFC 3261 9.1); answers 1.5 s later
        "hunt_parallel_answer_late.xml",
    ],
)
def test_a_second_answer_is_acked_and_hung_up(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, loser: str
) -> None:
    with caplog.at_level(logging.INFO, logger="b2bua.hunt"):
        call = ring_group(
            tmp_path, ["hunt_parallel_answer_now.xml", loser], 'members = ["1000", "1001"]'
        )
    server, legs, (m1, _) = call.server, call.legs, call.media_ports
    # 1000 was connected; 1001's late 200 got ACK and BYE (its script requires both); the
    # trunk got one 200.
    assert_sipp_ok(call.trunk, *call.phones)
    answered = [r.getMessage() for r in caplog.records if "event=hunt_answered" in r.getMessage()]
    late = [r.getMessage() for r in caplog.records if "event=hunt_late_answer" in r.getMessage()]
    assert [m.rsplit("to=", 1)[1] for m in answered] == ["1000"]
    assert [m.rsplit("to=", 1)[1] for m in late] == ["1001"]
    peer, received = _office_leg(legs)
    assert peer == ("127.0.0.3", m1) and received > 20
    assert server.switch.stats.calls_ended == 1
    assert not media_leg_count(server)
