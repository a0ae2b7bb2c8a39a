"""Calls through the running B2BUA with SIPp playing the trunk and the desk phone.

The trunk (127.0.0.2) calls in with RTP from SIPp's own A-law capture; the phone
(127.0.0.3) echoes media. Nothing here is mocked: real sockets, the real relay, peers we
did not write.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from b2bua.config import load_config
from b2bua.serve import Server, start_server
from tests.conftest import SIPP_DIR, free_port, run_async, run_sipp, write_office

pytestmark = pytest.mark.sipp


async def _with_server(config_path: Path, body):  # type: ignore[no-untyped-def]
    server = await start_server(load_config(config_path))
    try:
        return await body(server)
    finally:
        await server.close()


def _phone_args(port: int, scenario: str, media_port: int) -> list[str]:
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


def _trunk_args(
    server: Server, port: int, scenario: Path, media_port: int, service: str = "1000"
) -> list[str]:
    host, sip_port = server.sip_address
    return [
        "-sf",
        str(scenario),
        "-s",
        service,
        "-i",
        "127.0.0.2",
        "-p",
        str(port),
        "-mp",
        str(media_port),
        "-m",
        "1",
        f"{host}:{sip_port}",
    ]


def test_inbound_call_media_both_ways_and_bye(tmp_path: Path) -> None:
    phone_port, trunk_port = free_port("127.0.0.3"), free_port("127.0.0.2")
    config = write_office(
        tmp_path,
        trunk=("127.0.0.2", trunk_port),
        phones={"1000": f"sip:1000@127.0.0.3:{phone_port}"},
    )

    async def scenario(server: Server):  # type: ignore[no-untyped-def]
        phone = asyncio.create_task(
            run_sipp(_phone_args(phone_port, "phone_uas.xml", free_port("127.0.0.3")))
        )
        await asyncio.sleep(0.3)  # the phone listens before the trunk calls
        legs_seen: dict[str, tuple[int, int]] = {}

        async def watch() -> None:
            for _ in range(200):
                for leg_id, leg in server.relay.legs.items():
                    legs_seen[leg_id] = (leg.counters.received, leg.counters.forwarded)
                await asyncio.sleep(0.05)

        watcher = asyncio.create_task(watch())
        trunk = await run_sipp(
            _trunk_args(server, trunk_port, SIPP_DIR / "trunk_uac.xml", free_port("127.0.0.2"))
        )
        phone_result = await phone
        watcher.cancel()
        return trunk, phone_result, legs_seen, server.switch.stats

    trunk, phone, legs, stats = run_async(lambda: _with_server(config, scenario))
    assert trunk.returncode == 0, trunk.stdout + trunk.stderr
    assert phone.returncode == 0, phone.stdout + phone.stderr
    assert stats.calls_started == 1
    assert stats.calls_ended == 1
    a_legs = {k: v for k, v in legs.items() if k.endswith("-a")}
    b_legs = {k: v for k, v in legs.items() if k.endswith("-b")}
    assert len(a_legs) == 1 and len(b_legs) == 1
    ((a_received, a_forwarded),) = a_legs.values()
    ((b_received, b_forwarded),) = b_legs.values()
    # The trunk's audio reached the phone, and the phone's echo came back to the trunk.
    assert a_received > 50 and a_forwarded > 50
    assert b_received > 50 and b_forwarded > 50


@pytest.mark.parametrize(("phone_scenario", "status"), [("phone_busy.xml", "486")])
def test_busy_phone_maps_back(tmp_path: Path, phone_scenario: str, status: str) -> None:
    phone_port, trunk_port = free_port("127.0.0.3"), free_port("127.0.0.2")
    config = write_office(
        tmp_path,
        trunk=("127.0.0.2", trunk_port),
        phones={"1000": f"sip:1000@127.0.0.3:{phone_port}"},
    )
    scenario_file = tmp_path / "trunk_expect.xml"
    template = (SIPP_DIR / "trunk_expect_status.xml.in").read_text()
    scenario_file.write_text(template.replace("EXPECTED_STATUS", status))

    async def scenario(server: Server):  # type: ignore[no-untyped-def]
        phone = asyncio.create_task(
            run_sipp(_phone_args(phone_port, phone_scenario, free_port("127.0.0.3")))
        )
        await asyncio.sleep(0.3)
        trunk = await run_sipp(
            _trunk_args(server, trunk_port, scenario_file, free_port("127.0.0.2"))
        )
        return trunk, await phone, server

    trunk, phone, server = run_async(lambda: _with_server(config, scenario))
    assert trunk.returncode == 0, trunk.stdout + trunk.stderr
    assert phone.returncode == 0, phone.stdout + phone.stderr
    assert server.switch.stats.calls_ended == 1
    assert not server.relay.legs  # media of the failed call was released


def test_outbound_call_phone_authenticates_then_reaches_trunk(tmp_path: Path) -> None:
    phone_port, trunk_port = free_port("127.0.0.3"), free_port("127.0.0.2")
    # SIPp answers only one challenge and only knows MD5 (see docs/configuration.md).
    config = write_office(
        tmp_path,
        trunk=("127.0.0.2", trunk_port),
        phones={"1000": f"sip:1000@127.0.0.3:{phone_port}"},
        sip_extra='digest_algorithms = ["MD5"]',
    )

    async def scenario(server: Server):  # type: ignore[no-untyped-def]
        # SIPp's phone_uas plays the carrier here: it answers on the trunk address.
        trunk = asyncio.create_task(
            run_sipp(
                [
                    "-sf",
                    str(SIPP_DIR / "phone_uas.xml"),
                    "-i",
                    "127.0.0.2",
                    "-p",
                    str(trunk_port),
                    "-mp",
                    str(free_port("127.0.0.2")),
                    "-rtp_echo",
                    "-m",
                    "1",
                ]
            )
        )
        await asyncio.sleep(0.3)
        host, sip_port = server.sip_address
        phone = await run_sipp(
            [
                "-sf",
                str(SIPP_DIR / "phone_uac_auth.xml"),
                "-s",
                "+4989123456",
                "-au",
                "1000",
                "-ap",
                "pw1000",
                "-i",
                "127.0.0.3",
                "-p",
                str(phone_port),
                "-mp",
                str(free_port("127.0.0.3")),
                "-m",
                "1",
                f"{host}:{sip_port}",
            ]
        )
        return phone, await trunk, server

    phone, trunk, server = run_async(lambda: _with_server(config, scenario))
    assert phone.returncode == 0, phone.stdout + phone.stderr
    assert trunk.returncode == 0, trunk.stdout + trunk.stderr
    assert server.switch.stats.auth_challenges == 1
    assert server.switch.stats.calls_started == 1
    assert server.switch.stats.calls_ended == 1


def test_cancel_while_ringing_reaches_the_phone(tmp_path: Path) -> None:
    phone_port, trunk_port = free_port("127.0.0.3"), free_port("127.0.0.2")
    config = write_office(
        tmp_path,
        trunk=("127.0.0.2", trunk_port),
        phones={"1000": f"sip:1000@127.0.0.3:{phone_port}"},
    )

    async def scenario(server: Server):  # type: ignore[no-untyped-def]
        phone = asyncio.create_task(
            run_sipp(_phone_args(phone_port, "phone_ring_cancel.xml", free_port("127.0.0.3")))
        )
        await asyncio.sleep(0.3)
        trunk = await run_sipp(
            _trunk_args(server, trunk_port, SIPP_DIR / "trunk_cancel.xml", free_port("127.0.0.2"))
        )
        return trunk, await phone, server

    trunk, phone, server = run_async(lambda: _with_server(config, scenario))
    assert trunk.returncode == 0, trunk.stdout + trunk.stderr
    assert phone.returncode == 0, phone.stdout + phone.stderr
    assert server.switch.stats.calls_ended == 1
    assert not server.relay.legs


def test_unknown_number_from_trunk_and_unregistered_phone(tmp_path: Path) -> None:
    # Extension 1000 has no static contact and never registered: 480, media released.
    trunk_port = free_port("127.0.0.2")
    config = write_office(tmp_path, trunk=("127.0.0.2", trunk_port), phones={"1000": ""})
    scenario_file = tmp_path / "trunk_expect.xml"
    scenario_file.write_text(
        (SIPP_DIR / "trunk_expect_status.xml.in").read_text().replace("EXPECTED_STATUS", "480")
    )

    async def scenario(server: Server):  # type: ignore[no-untyped-def]
        trunk = await run_sipp(
            _trunk_args(server, trunk_port, scenario_file, free_port("127.0.0.2"))
        )
        return trunk, server

    trunk, server = run_async(lambda: _with_server(config, scenario))
    assert trunk.returncode == 0, trunk.stdout + trunk.stderr
    assert server.switch.stats.calls_rejected == 1
    assert not server.relay.legs


def test_outbound_call_answers_the_carriers_challenge_with_trunk_credentials(
    tmp_path: Path,
) -> None:
    phone_port, trunk_port = free_port("127.0.0.3"), free_port("127.0.0.2")
    config = write_office(
        tmp_path,
        trunk=("127.0.0.2", trunk_port),
        phones={"1000": f"sip:1000@127.0.0.3:{phone_port}"},
        sip_extra='digest_algorithms = ["MD5"]',
    )
    text = config.read_text().replace(
        'inbound_extension = "1000"',
        'inbound_extension = "1000"\nusername = "4930123"\npassword = "trunkpw"',
    )
    config.write_text(text)

    async def scenario(server: Server):  # type: ignore[no-untyped-def]
        carrier = asyncio.create_task(
            run_sipp(
                [
                    "-sf",
                    str(SIPP_DIR / "trunk_uas_auth.xml"),
                    "-i",
                    "127.0.0.2",
                    "-p",
                    str(trunk_port),
                    "-mp",
                    str(free_port("127.0.0.2")),
                    "-rtp_echo",
                    "-m",
                    "1",
                ]
            )
        )
        await asyncio.sleep(0.3)
        host, sip_port = server.sip_address
        phone = await run_sipp(
            [
                "-sf",
                str(SIPP_DIR / "phone_uac_auth.xml"),
                "-s",
                "+4989123456",
                "-au",
                "1000",
                "-ap",
                "pw1000",
                "-i",
                "127.0.0.3",
                "-p",
                str(phone_port),
                "-mp",
                str(free_port("127.0.0.3")),
                "-m",
                "1",
                f"{host}:{sip_port}",
            ]
        )
        return phone, await carrier, server

    phone, carrier, server = run_async(lambda: _with_server(config, scenario))
    assert carrier.returncode == 0, carrier.stdout[-3000:] + carrier.stderr
    assert phone.returncode == 0, phone.stdout[-3000:] + phone.stderr
    assert server.switch.stats.calls_ended == 1


def test_blind_transfer_moves_the_caller_to_another_phone(tmp_path: Path) -> None:
    first_port, second_port = free_port("127.0.0.3"), free_port("127.0.0.4")
    trunk_port = free_port("127.0.0.2")
    config = write_office(
        tmp_path,
        trunk=("127.0.0.2", trunk_port),
        phones={
            "1000": f"sip:1000@127.0.0.3:{first_port}",
            "1001": f"sip:1001@127.0.0.4:{second_port}",
        },
    )

    async def scenario(server: Server):  # type: ignore[no-untyped-def]
        first = asyncio.create_task(
            run_sipp(
                [
                    "-sf",
                    str(SIPP_DIR / "phone_transfers.xml"),
                    "-i",
                    "127.0.0.3",
                    "-p",
                    str(first_port),
                    "-mp",
                    str(free_port("127.0.0.3")),
                    "-rtp_echo",
                    "-m",
                    "1",
                ]
            )
        )
        second = asyncio.create_task(
            run_sipp(
                [
                    "-sf",
                    str(SIPP_DIR / "phone_uas.xml"),
                    "-i",
                    "127.0.0.4",
                    "-p",
                    str(second_port),
                    "-mp",
                    str(free_port("127.0.0.4")),
                    "-rtp_echo",
                    "-m",
                    "1",
                ]
            )
        )
        await asyncio.sleep(0.3)
        forwarded: dict[str, int] = {}

        async def watch() -> None:
            for _ in range(200):
                for leg_id, leg in server.relay.legs.items():
                    forwarded[leg_id] = leg.counters.forwarded
                await asyncio.sleep(0.05)

        watcher = asyncio.create_task(watch())
        trunk = await run_sipp(
            _trunk_args(server, trunk_port, SIPP_DIR / "trunk_uac.xml", free_port("127.0.0.2"))
        )
        results = (trunk, await first, await second)
        watcher.cancel()
        return results, forwarded, server.switch.stats

    (trunk, first, second), forwarded, stats = run_async(lambda: _with_server(config, scenario))
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr
    assert trunk.returncode == 0, trunk.stdout[-3000:] + trunk.stderr
    assert stats.calls_started == 1
    assert stats.calls_ended == 1
    transfer_legs = {k: v for k, v in forwarded.items() if "-t" in k}
    assert len(transfer_legs) == 1
    # The second phone's echo reached the caller through the new leg.
    assert next(iter(transfer_legs.values())) > 20


def test_hold_and_resume_are_carried_across(tmp_path: Path) -> None:
    phone_port, trunk_port = free_port("127.0.0.3"), free_port("127.0.0.2")
    config = write_office(
        tmp_path,
        trunk=("127.0.0.2", trunk_port),
        phones={"1000": f"sip:1000@127.0.0.3:{phone_port}"},
    )

    async def scenario(server: Server):  # type: ignore[no-untyped-def]
        phone = asyncio.create_task(
            run_sipp(_phone_args(phone_port, "phone_hold.xml", free_port("127.0.0.3")))
        )
        await asyncio.sleep(0.3)
        trunk = await run_sipp(
            _trunk_args(server, trunk_port, SIPP_DIR / "trunk_uac_hold.xml", free_port("127.0.0.2"))
        )
        return trunk, await phone, server.switch.stats

    trunk, phone, stats = run_async(lambda: _with_server(config, scenario))
    assert phone.returncode == 0, phone.stdout[-3000:] + phone.stderr
    assert trunk.returncode == 0, trunk.stdout[-3000:] + trunk.stderr
    assert stats.calls_ended == 1


def test_srtp_only_offer_is_refused_with_488_not_bridged(tmp_path: Path) -> None:
    trunk_port = free_port("127.0.0.2")
    config = write_office(tmp_path, trunk=("127.0.0.2", trunk_port))
    scenario_file = tmp_path / "trunk_expect.xml"
    template = (SIPP_DIR / "trunk_expect_status.xml.in").read_text()
    scenario_file.write_text(
        template.replace("EXPECTED_STATUS", "488").replace(
            "m=audio [media_port] RTP/AVP 8 0",
            "m=audio [media_port] RTP/SAVP 8\n      a=crypto:1 AES_CM_128_HMAC_SHA1_80 "
            "inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz",
        )
    )

    async def scenario(server: Server):  # type: ignore[no-untyped-def]
        trunk = await run_sipp(
            _trunk_args(server, trunk_port, scenario_file, free_port("127.0.0.2"))
        )
        return trunk, server

    trunk, server = run_async(lambda: _with_server(config, scenario))
    assert trunk.returncode == 0, trunk.stdout[-3000:] + trunk.stderr
    assert server.switch.stats.calls_rejected == 1
    assert not server.relay.legs


def test_outbound_call_fails_over_to_the_second_trunk_server_on_503(tmp_path: Path) -> None:
    phone_port = free_port("127.0.0.3")
    primary_port, second_port = free_port("127.0.0.2"), free_port("127.0.0.4")
    config = write_office(
        tmp_path,
        trunk=("127.0.0.2", primary_port),
        phones={"1000": f"sip:1000@127.0.0.3:{phone_port}"},
        sip_extra='digest_algorithms = ["MD5"]',
    )
    text = config.read_text().replace(
        'inbound_extension = "1000"',
        f'inbound_extension = "1000"\nkeepalive_s = 0\nfailover_hosts = ["127.0.0.4:{second_port}"]',
    )
    config.write_text(text)

    async def scenario(server: Server):  # type: ignore[no-untyped-def]
        primary = asyncio.create_task(
            run_sipp(
                [
                    "-sf",
                    str(SIPP_DIR / "carrier_503.xml"),
                    "-i",
                    "127.0.0.2",
                    "-p",
                    str(primary_port),
                    "-m",
                    "1",
                ]
            )
        )
        second = asyncio.create_task(
            run_sipp(
                [
                    "-sf",
                    str(SIPP_DIR / "phone_uas.xml"),
                    "-i",
                    "127.0.0.4",
                    "-p",
                    str(second_port),
                    "-mp",
                    str(free_port("127.0.0.4")),
                    "-rtp_echo",
                    "-m",
                    "1",
                ]
            )
        )
        await asyncio.sleep(0.3)
        host, sip_port = server.sip_address
        phone = await run_sipp(
            [
                "-sf",
                str(SIPP_DIR / "phone_uac_auth.xml"),
                "-s",
                "+4989123456",
                "-au",
                "1000",
                "-ap",
                "pw1000",
                "-i",
                "127.0.0.3",
                "-p",
                str(phone_port),
                "-mp",
                str(free_port("127.0.0.3")),
                "-m",
                "1",
                f"{host}:{sip_port}",
            ]
        )
        return phone, await primary, await second, server.switch.stats

    phone, primary, second, stats = run_async(lambda: _with_server(config, scenario))
    assert primary.returncode == 0, primary.stdout[-3000:] + primary.stderr
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr
    assert phone.returncode == 0, phone.stdout[-3000:] + phone.stderr
    assert stats.calls_ended == 1
