"""Calls through the running B2BUA with SIPp playing the trunk and the desk phone.

The trunk (127.0.0.2) calls in with RTP from SIPp's own A-law capture; the phone
(127.0.0.3) echoes media. Nothing here is mocked: real sockets, the real relay, peers we
did not write.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from b2bua.serve import Server
from tests.conftest import free_port, run_sipp, write_office
from tests.sipp_harness import (
    MediaSeen,
    answered_call,
    assert_sipp_ok,
    carrier_answers,
    expect_status_scenario,
    media_leg_count,
    phone_answers,
    phone_calls_out,
    phone_contact,
    run_serving,
    sipp_uas,
    trunk_calls_in,
)

pytestmark = pytest.mark.sipp


def _office(
    tmp_path: Path, trunk_port: int, phone_port: int, sip_extra: str = "", trunk_extra: str = ""
) -> Path:
    """Extension 1000 at 127.0.0.3:`phone_port`; `trunk_extra`: more [trunk] lines."""
    config = write_office(
        tmp_path,
        trunk=("127.0.0.2", trunk_port),
        phones={"1000": phone_contact(phone_port)},
        sip_extra=sip_extra,
    )
    if trunk_extra:
        text = config.read_text().replace(
            'inbound_extension = "1000"', 'inbound_extension = "1000"\n' + trunk_extra
        )
        config.write_text(text)
    return config


def _phone_then_trunk(
    config: Path, phone_port: int, phone_scenario: str, trunk_port: int, trunk_scenario: str | Path
) -> tuple[Any, Any, Server]:
    """The phone answers with `phone_scenario`, the trunk calls in with `trunk_scenario`."""

    async def body(server: Server) -> tuple[Any, Any, Server]:
        trunk, (phone,) = await answered_call(
            [phone_answers(phone_port, phone_scenario)],
            trunk_calls_in(server, trunk_port, trunk_scenario),
        )
        return trunk, phone, server

    return run_serving(config, body)


def test_inbound_call_media_both_ways_and_bye(tmp_path: Path) -> None:
    phone_port, trunk_port = free_port("127.0.0.3"), free_port("127.0.0.2")
    config = _office(tmp_path, trunk_port, phone_port)

    async def scenario(server: Server):  # type: ignore[no-untyped-def]
        media = MediaSeen()
        watcher = asyncio.create_task(media.watch(server))
        trunk, (phone_result,) = await answered_call(
            [phone_answers(phone_port)],
            trunk_calls_in(server, trunk_port),
        )
        watcher.cancel()
        await media.finish(server)
        return trunk, phone_result, media, server.switch.stats

    trunk, phone, media, stats = run_serving(config, scenario)
    assert_sipp_ok(trunk, phone)
    assert stats.calls_started == 1
    assert stats.calls_ended == 1
    # The trunk's audio reached the phone, and the phone's echo came back to the trunk.
    media.assert_both_ways(50)


@pytest.mark.parametrize(("phone_scenario", "status"), [("phone_busy.xml", "486")])
def test_busy_phone_maps_back(tmp_path: Path, phone_scenario: str, status: str) -> None:
    phone_port, trunk_port = free_port("127.0.0.3"), free_port("127.0.0.2")
    config = _office(tmp_path, trunk_port, phone_port)
    scenario_file = expect_status_scenario(tmp_path / "trunk_expect.xml", status)
    trunk, phone, server = _phone_then_trunk(
        config, phone_port, phone_scenario, trunk_port, scenario_file
    )
    assert_sipp_ok(trunk, phone)
    assert server.switch.stats.calls_ended == 1
    assert not media_leg_count(server)  # media of the failed call was released


def test_outbound_call_phone_authenticates_then_reaches_trunk(tmp_path: Path) -> None:
    phone_port, trunk_port = free_port("127.0.0.3"), free_port("127.0.0.2")
    # SIPp answers only one challenge and only knows MD5 (see docs/configuration.md).
    config = _office(tmp_path, trunk_port, phone_port, 'digest_algorithms = ["MD5"]')

    async def scenario(server: Server):  # type: ignore[no-untyped-def]
        # SIPp's phone_uas plays the carrier here: it answers on the trunk address.
        phone, (trunk,) = await answered_call(
            [carrier_answers(trunk_port)], phone_calls_out(server, phone_port)
        )
        return phone, trunk, server

    phone, trunk, server = run_serving(config, scenario)
    assert_sipp_ok(phone, trunk)
    assert server.switch.stats.auth_challenges == 1
    assert server.switch.stats.calls_started == 1
    assert server.switch.stats.calls_ended == 1


def test_cancel_while_ringing_reaches_the_phone(tmp_path: Path) -> None:
    phone_port, trunk_port = free_port("127.0.0.3"), free_port("127.0.0.2")
    config = _office(tmp_path, trunk_port, phone_port)
    trunk, phone, server = _phone_then_trunk(
        config, phone_port, "phone_ring_cancel.xml", trunk_port, "trunk_cancel.xml"
    )
    assert_sipp_ok(trunk, phone)
    assert server.switch.stats.calls_ended == 1
    assert not media_leg_count(server)


def test_unknown_number_from_trunk_and_unregistered_phone(tmp_path: Path) -> None:
    # Extension 1000 has no static contact and never registered: 480, media released.
    trunk_port = free_port("127.0.0.2")
    config = write_office(tmp_path, trunk=("127.0.0.2", trunk_port), phones={"1000": ""})
    scenario_file = expect_status_scenario(tmp_path / "trunk_expect.xml", "480")

    async def scenario(server: Server):  # type: ignore[no-untyped-def]
        return await run_sipp(trunk_calls_in(server, trunk_port, scenario_file)), server

    trunk, server = run_serving(config, scenario)
    assert_sipp_ok(trunk)
    assert server.switch.stats.calls_rejected == 1
    assert not media_leg_count(server)


def test_outbound_call_answers_the_carriers_challenge_with_trunk_credentials(
    tmp_path: Path,
) -> None:
    phone_port, trunk_port = free_port("127.0.0.3"), free_port("127.0.0.2")
    config = _office(
        tmp_path,
        trunk_port,
        phone_port,
        'digest_algorithms = ["MD5"]',
        trunk_extra='username = "4930123"\npassword = "trunkpw"',
    )

    async def scenario(server: Server):  # type: ignore[no-untyped-def]
        phone, (carrier,) = await answered_call(
            [carrier_answers(trunk_port, "trunk_uas_auth.xml")],
            phone_calls_out(server, phone_port),
        )
        return phone, carrier, server

    phone, carrier, server = run_serving(config, scenario)
    assert_sipp_ok(carrier, phone)
    assert server.switch.stats.calls_ended == 1


def test_blind_transfer_moves_the_caller_to_another_phone(tmp_path: Path) -> None:
    first_port, second_port = free_port("127.0.0.3"), free_port("127.0.0.4")
    trunk_port = free_port("127.0.0.2")
    config = write_office(
        tmp_path,
        trunk=("127.0.0.2", trunk_port),
        phones={
            "1000": phone_contact(first_port),
            "1001": phone_contact(second_port, "1001", "127.0.0.4"),
        },
    )

    async def scenario(server: Server):  # type: ignore[no-untyped-def]
        media = MediaSeen()
        watcher = asyncio.create_task(media.watch(server))
        trunk, (first, second) = await answered_call(
            [
                phone_answers(first_port, "phone_transfers.xml"),
                sipp_uas("phone_uas.xml", "127.0.0.4", second_port),
            ],
            trunk_calls_in(server, trunk_port),
        )
        watcher.cancel()
        await media.finish(server)
        return (trunk, first, second), media, server.switch.stats

    (trunk, first, second), media, stats = run_serving(config, scenario)
    assert_sipp_ok(first, second, trunk)
    assert stats.calls_started == 1
    assert stats.calls_ended == 1
    transfer_legs = [v for k, v in media.legs.items() if "-t" in k]
    assert len(transfer_legs) == 1, media.legs
    # The second phone's echo reached the caller through the new leg. Media workers report
    # no per-leg counters: there only the call's total can be checked.
    forwarded = transfer_legs[0].forwarded
    assert (forwarded if forwarded is not None else media.totals.forwarded) > 20


def test_hold_and_resume_are_carried_across(tmp_path: Path) -> None:
    phone_port, trunk_port = free_port("127.0.0.3"), free_port("127.0.0.2")
    config = _office(tmp_path, trunk_port, phone_port)
    trunk, phone, server = _phone_then_trunk(
        config, phone_port, "phone_hold.xml", trunk_port, "trunk_uac_hold.xml"
    )
    assert_sipp_ok(phone, trunk)
    assert server.switch.stats.calls_ended == 1


def test_srtp_only_offer_is_refused_with_488_not_bridged(tmp_path: Path) -> None:
    trunk_port = free_port("127.0.0.2")
    config = write_office(tmp_path, trunk=("127.0.0.2", trunk_port))
    scenario_file = expect_status_scenario(
        tmp_path / "trunk_expect.xml",
        "488",
        sdp=(
            "m=audio [media_port] RTP/AVP 8 0",
            "m=audio [media_port] RTP/SAVP 8\n      a=crypto:1 AES_CM_128_HMAC_SHA1_80 "
            "inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz",
        ),
    )

    async def scenario(server: Server):  # type: ignore[no-untyped-def]
        return await run_sipp(trunk_calls_in(server, trunk_port, scenario_file)), server

    trunk, server = run_serving(config, scenario)
    assert_sipp_ok(trunk)
    assert server.switch.stats.calls_rejected == 1
    assert not media_leg_count(server)


def test_outbound_call_fails_over_to_the_second_trunk_server_on_503(tmp_path: Path) -> None:
    phone_port = free_port("127.0.0.3")
    primary_port, second_port = free_port("127.0.0.2"), free_port("127.0.0.4")
    config = _office(
        tmp_path,
        primary_port,
        phone_port,
        'digest_algorithms = ["MD5"]',
        trunk_extra=f'keepalive_s = 0\nfailover_hosts = ["127.0.0.4:{second_port}"]',
    )

    async def scenario(server: Server):  # type: ignore[no-untyped-def]
        phone, (primary, second) = await answered_call(
            [
                sipp_uas("carrier_503.xml", "127.0.0.2", primary_port, media=False, rtp_echo=False),
                sipp_uas("phone_uas.xml", "127.0.0.4", second_port),
            ],
            phone_calls_out(server, phone_port),
        )
        return phone, primary, second, server.switch.stats

    phone, primary, second, stats = run_serving(config, scenario)
    assert_sipp_ok(primary, second, phone)
    assert stats.calls_ended == 1
