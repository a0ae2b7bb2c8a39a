"""Hunt groups with real peers: SIPp plays the trunk and several desk phones.

Each phone is its own SIPp on 127.0.0.3 with its own port; the group's members ring in
order (b2bua/hunt.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from b2bua.archive.keys import keygen
from b2bua.config import load_config
from b2bua.serve import Server, start_server
from tests.conftest import SIPP_DIR, free_port, run_async, run_sipp

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


def phone(port: int, scenario: str) -> list[str]:
    return [
        "-sf",
        str(SIPP_DIR / scenario),
        "-i",
        "127.0.0.3",
        "-p",
        str(port),
        "-mp",
        str(free_port("127.0.0.3")),
        "-rtp_echo",
        "-m",
        "1",
    ]


def trunk(server: Server, port: int, scenario: Path) -> list[str]:
    host, sip_port = server.sip_address
    return [
        "-sf",
        str(scenario),
        "-s",
        "600",
        "-i",
        "127.0.0.2",
        "-p",
        str(port),
        "-mp",
        str(free_port("127.0.0.2")),
        "-m",
        "1",
        f"{host}:{sip_port}",
    ]


def run_hunt(
    config: Path,
    trunk_port: int,
    phones: list[tuple[int, str]],
    scenario: Path,
    spy: Callable[[Server], None] | None = None,
) -> tuple[Any, list[Any], Server]:
    async def body() -> tuple[Any, list[Any], Server]:
        server = await start_server(load_config(config))
        try:
            if spy is not None:
                spy(server)
            tasks = [asyncio.create_task(run_sipp(phone(p, s), timeout=25)) for p, s in phones]
            await asyncio.sleep(0.3)  # the phones listen before the trunk calls
            result = await run_sipp(trunk(server, trunk_port, scenario), timeout=25)
            done = [await asyncio.wait_for(t, 15) for t in tasks]
            return result, done, server
        finally:
            await server.close()

    return run_async(body, timeout=70)


def _ok(*results: Any) -> None:
    for result in results:
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]


def test_busy_member_then_next_answers(tmp_path: Path) -> None:
    p1, p2, trunk_port = free_port("127.0.0.3"), free_port("127.0.0.3"), free_port("127.0.0.2")
    config = hunt_office(
        tmp_path, trunk_port, {"1000": p1, "1001": p2}, 'members = ["1000", "1001"]'
    )
    result, phones, server = run_hunt(
        config,
        trunk_port,
        [(p1, "phone_busy.xml"), (p2, "phone_uas.xml")],
        SIPP_DIR / "trunk_uac.xml",
    )
    _ok(result, *phones)
    assert server.switch.stats.calls_started == 1
    assert server.switch.stats.calls_ended == 1
    assert not server.relay.legs


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
        SIPP_DIR / "trunk_uac.xml",
    )
    _ok(result, *phones)
    assert server.switch.stats.calls_ended == 1


def test_nobody_answers_without_consent_is_480(tmp_path: Path) -> None:
    p1, p2, trunk_port = free_port("127.0.0.3"), free_port("127.0.0.3"), free_port("127.0.0.2")
    config = hunt_office(
        tmp_path, trunk_port, {"1000": p1, "1001": p2}, 'members = ["1000", "1001"]'
    )
    scenario = tmp_path / "trunk_expect.xml"
    template = (SIPP_DIR / "trunk_expect_status.xml.in").read_text()
    scenario.write_text(template.replace("EXPECTED_STATUS", "480"))
    result, phones, server = run_hunt(
        config, trunk_port, [(p1, "phone_busy.xml"), (p2, "phone_busy.xml")], scenario
    )
    _ok(result, *phones)
    assert server.switch.stats.calls_ended == 1
    assert not server.relay.legs


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
        SIPP_DIR / "trunk_hunt_noanswer.xml",
        spy,
    )
    _ok(result, *phones)
    assert played[0] == "consent" and played[-1] == "noanswer"
    assert server.switch.stats.calls_ended == 1
    assert not server.relay.legs


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
    carrier = [
        "-sf", str(SIPP_DIR / "hunt_fallback_carrier_uas.xml"), "-i", "127.0.0.2",
        "-p", str(carrier_port), "-mp", str(free_port("127.0.0.2")), "-rtp_echo", "-m", "1",
    ]  # fmt: skip

    async def body() -> tuple[Any, Any, Any]:
        server = await start_server(load_config(config))
        try:
            member = asyncio.create_task(run_sipp(phone(p1, "phone_ring_cancel.xml"), timeout=25))
            forwarded = asyncio.create_task(run_sipp(carrier, timeout=25))
            await asyncio.sleep(0.3)
            result = await run_sipp(
                trunk(server, caller_port, SIPP_DIR / "trunk_uac.xml"), timeout=25
            )
            return result, await asyncio.wait_for(member, 15), await asyncio.wait_for(forwarded, 15)
        finally:
            await server.close()

    _ok(*run_async(body, timeout=70))
