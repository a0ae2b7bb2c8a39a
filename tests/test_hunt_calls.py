"""Hunt groups with real peers: SIPp plays the trunk and several desk phones.

Each phone is its own SIPp on 127.0.0.3 with its own port; the group's members ring in
order (b2bua/hunt.py)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from b2bua.archive.keys import keygen
from b2bua.serve import Server
from tests.conftest import free_port, rtp_workers
from tests.sipp_harness import (
    answered_call,
    assert_sipp_ok,
    carrier_answers,
    expect_status_scenario,
    media_leg_count,
    phone_answers,
    run_serving,
    trunk_calls_in,
)

pytestmark = pytest.mark.sipp


def hunt_office(
    tmp_path: Path,
    trunk_port: int,
    phones: dict[str, int],
    group: str,
    *,
    consent: bool = False,
) -> Path:
    lines = [
        "[sip]",
        'listen = "127.0.0.1:0"',
        "[rtp]",
        'ports = "31000-31999"',
        rtp_workers(),
        "[trunk]",
        f'host = "127.0.0.2:{trunk_port}"',
        'inbound_extension = "600"',
    ]
    for number, port in phones.items():
        lines += [
            "[[extension]]",
            f'number = "{number}"',
            f'password = "pw{number}"',
            f'contact = "sip:{number}@127.0.0.3:{port}"',
            f"employee_consent = {'true' if consent else 'false'}",
        ]
    lines += ["[[group]]", 'number = "600"', group]
    if consent:
        keygen(tmp_path / "recorder.key")
        lines += [
            "[recording]",
            'mode = "keypress"',
            'language = "en"',
            'directory = "recordings"',
            'public_key = "recorder.key.pub"',
        ]
    else:
        lines += ["[recording]", 'mode = "off"']
    path = tmp_path / "office.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def trunk(server: Server, port: int, scenario: str | Path) -> list[str]:
    """The trunk calling the group's number 600."""
    return trunk_calls_in(server, port, scenario, service="600")


def run_hunt(
    config: Path,
    trunk_port: int,
    phones: list[tuple[int, str]],
    scenario: str | Path,
    spy: Callable[[Server], None] | None = None,
) -> tuple[Any, list[Any], Server]:
    async def body(server: Server) -> tuple[Any, list[Any], Server]:
        if spy is not None:
            spy(server)
        result, done = await answered_call(
            [phone_answers(p, s) for p, s in phones],
            trunk(server, trunk_port, scenario),
            timeout=25,
            wait=15,
        )
        return result, done, server

    return run_serving(config, body, timeout=70)


def test_busy_member_then_next_answers(tmp_path: Path) -> None:
    p1, p2, trunk_port = free_port("127.0.0.3"), free_port("127.0.0.3"), free_port("127.0.0.2")
    config = hunt_office(
        tmp_path, trunk_port, {"1000": p1, "1001": p2}, 'members = ["1000", "1001"]'
    )
    result, phones, server = run_hunt(
        config,
        trunk_port,
        [(p1, "phone_busy.xml"), (p2, "phone_uas.xml")],
        "trunk_uac.xml",
    )
    assert_sipp_ok(result, *phones)
    assert server.switch.stats.calls_started == 1
    assert server.switch.stats.calls_ended == 1
    assert not media_leg_count(server)


def test_member_that_never_answers_is_cancelled_then_next(tmp_path: Path) -> None:
    p1, p2, trunk_port = free_port("127.0.0.3"), free_port("127.0.0.3"), free_port("127.0.0.2")
    config = hunt_office(
        tmp_path,
        trunk_port,
        {"1000": p1, "1001": p2},
        'members = ["1000"]\nring_s = 1\nfallback = "1001"',
    )
    # 1000 rings, is cancelled after ring_s; the fallback 1001 answers.
    result, phones, server = run_hunt(
        config,
        trunk_port,
        [(p1, "phone_ring_cancel.xml"), (p2, "phone_uas.xml")],
        "trunk_uac.xml",
    )
    assert_sipp_ok(result, *phones)
    assert server.switch.stats.calls_ended == 1


def test_nobody_answers_without_consent_is_480(tmp_path: Path) -> None:
    p1, p2, trunk_port = free_port("127.0.0.3"), free_port("127.0.0.3"), free_port("127.0.0.2")
    config = hunt_office(
        tmp_path, trunk_port, {"1000": p1, "1001": p2}, 'members = ["1000", "1001"]'
    )
    scenario = expect_status_scenario(tmp_path / "trunk_expect.xml", "480")
    result, phones, server = run_hunt(
        config, trunk_port, [(p1, "phone_busy.xml"), (p2, "phone_busy.xml")], scenario
    )
    assert_sipp_ok(result, *phones)
    assert server.switch.stats.calls_ended == 1
    assert not media_leg_count(server)


def test_nobody_answers_in_consent_mode_plays_prompt_then_bye(tmp_path: Path) -> None:
    p1, p2, trunk_port = free_port("127.0.0.3"), free_port("127.0.0.3"), free_port("127.0.0.2")
    config = hunt_office(
        tmp_path,
        trunk_port,
        {"1000": p1, "1001": p2},
        'members = ["1000", "1001"]',
        consent=True,
    )
    played: list[str] = []

    def spy(server: Server) -> None:
        hub = server.switch.recording
        assert hub is not None
        original = hub.play

        def play(call_id: str, name: str, now: float) -> None:
            played.append(name)
            original(call_id, name, now)

        hub.play = play  # type: ignore[method-assign]

    result, phones, server = run_hunt(
        config,
        trunk_port,
        [(p1, "phone_busy.xml"), (p2, "phone_busy.xml")],
        "trunk_hunt_noanswer.xml",
        spy,
    )
    assert_sipp_ok(result, *phones)
    assert played[0] == "consent" and played[-1] == "noanswer"
    assert server.switch.stats.calls_ended == 1
    assert not media_leg_count(server)


def test_fallback_out_to_the_trunk_carries_diversion(tmp_path: Path) -> None:
    # The trunk's calls come from 127.0.0.2 (any port); its host, where the forwarded
    # call goes, is a second SIPp on 127.0.0.2 playing the carrier.
    p1, caller_port = free_port("127.0.0.3"), free_port("127.0.0.2")
    carrier_port = free_port("127.0.0.2")
    config = hunt_office(
        tmp_path,
        carrier_port,
        {"1000": p1},
        'members = ["1000"]\nring_s = 1\nfallback = "030123456"',
    )

    async def body(server: Server) -> tuple[Any, list[Any]]:
        return await answered_call(
            [
                phone_answers(p1, "phone_ring_cancel.xml"),
                carrier_answers(carrier_port, "hunt_fallback_carrier_uas.xml"),
            ],
            trunk(server, caller_port, "trunk_uac.xml"),
            timeout=25,
            wait=15,
        )

    result, (member, forwarded) = run_serving(config, body, timeout=70)
    assert_sipp_ok(result, member, forwarded)
