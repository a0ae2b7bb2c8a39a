"""`b2bua serve` as a process: SIGHUP reload during a call, `b2bua status`, JSON logs.

SIPp plays the trunk (a call that lasts a few seconds) and the desk phone; a second SIPp
registers extension 2000 before and after its password changed. The B2BUA runs exactly as
in production: `python -m b2bua.cli serve --config office.toml`, logs on stderr.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
import time
from pathlib import Path
from typing import cast

import pytest

from tests.conftest import free_port, run_async, run_sipp, write_office
from tests.sipp_harness import phone_answers, sipp_uac, trunk_calls_in
from tests.test_ops import http_get, parse_prometheus, sample

pytestmark = pytest.mark.sipp


def _free_tcp_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _cli(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "b2bua.cli", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def _wait_for_log(log: Path, needle: str, start: int, timeout: float = 10.0) -> str:
    """The first new log line (after byte `start`) containing `needle`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in log.read_text()[start:].splitlines():
            if needle in line:
                return line
        await asyncio.sleep(0.05)
    raise AssertionError(f"{needle!r} not logged; log:\n{log.read_text()[-3000:]}")


def _register(port: int, server: tuple[str, int], user: str, password: str) -> list[str]:
    return sipp_uac(
        "ops_register.xml", user, "127.0.0.4", port, server, auth=(user, password), media=False
    )


def test_sighup_reload_keeps_the_call_and_changes_passwords(tmp_path: Path) -> None:
    phone_port, trunk_port = free_port("127.0.0.3"), free_port("127.0.0.2")
    metrics = ("127.0.0.1", _free_tcp_port())
    config = write_office(
        tmp_path,
        trunk=("127.0.0.2", trunk_port),
        phones={"1000": f"sip:1000@127.0.0.3:{phone_port}", "2000": ""},
        sip_extra='digest_algorithms = ["MD5"]',  # SIPp answers only an MD5 challenge
        extra=f'[metrics]\nlisten = "{metrics[0]}:{metrics[1]}"\n[log]\nformat = "json"',
    )
    original = config.read_text()
    assert 'password = "pw2000"' in original
    log = tmp_path / "serve.log"

    async def scenario() -> dict[str, object]:
        out: dict[str, object] = {}
        with log.open("w") as err:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "b2bua.cli", "serve", "--config", str(config),
                stdout=asyncio.subprocess.PIPE, stderr=err,
            )  # fmt: skip
        try:
            assert proc.stdout is not None
            sip: tuple[str, int] | None = None
            for _ in range(10):  # the banner lines (metrics, serving)
                line = (await asyncio.wait_for(proc.stdout.readline(), 20)).decode()
                if line.startswith("b2bua serving SIP on "):
                    host, port = line.split()[4].rsplit(":", 1)
                    sip = (host, int(port))
                    break
            assert sip is not None, log.read_text()
            phone = asyncio.create_task(run_sipp(phone_answers(phone_port)))
            await asyncio.sleep(0.3)
            # A call of a few seconds (-d: SIPp's pause), up while the config reloads.
            long_call = trunk_calls_in(sip, trunk_port, "ops_trunk_call.xml", extra=["-d", "6000"])
            trunk = asyncio.create_task(run_sipp(long_call))
            calls: list[dict[str, object]] = []
            for _ in range(100):  # bounded: 5 s
                calls = json.loads((await http_get(metrics, "/status"))[2])["calls"]
                if calls and calls[0]["state"] == "confirmed":
                    break
                await asyncio.sleep(0.05)
            out["calls_before"] = calls
            out["status_text"] = await _cli("status", "--config", str(config))
            out["status_json"] = await _cli("status", "--config", str(config), "--json")

            # Before the reload the old password registers.
            out["reg_old_before"] = await run_sipp(
                _register(free_port("127.0.0.4"), sip, "2000", "pw2000"), timeout=10
            )
            mark = len(log.read_text())
            config.write_text(original.replace('password = "pw2000"', 'password = "new2000"'))
            os.kill(proc.pid, signal.SIGHUP)
            out["reload_line"] = await _wait_for_log(log, '"event":"config_reload"', mark)
            out["calls_after"] = json.loads((await http_get(metrics, "/status"))[2])["calls"]
            out["reg_new"] = await run_sipp(
                _register(free_port("127.0.0.4"), sip, "2000", "new2000"), timeout=10
            )
            out["reg_old"] = await run_sipp(
                _register(free_port("127.0.0.4"), sip, "2000", "pw2000"), timeout=10
            )
            # A broken file on SIGHUP: logged, the running config stays, serving goes on.
            mark = len(log.read_text())
            config.write_text("[sip\n")
            os.kill(proc.pid, signal.SIGHUP)
            out["broken_line"] = await _wait_for_log(log, '"event":"config_reload"', mark)
            out["health"] = await http_get(metrics, "/healthz")
            out["trunk"], out["phone"] = await trunk, await phone
            await asyncio.sleep(0.3)
            out["metrics"] = parse_prometheus((await http_get(metrics, "/metrics"))[2].decode())
        finally:
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
            out["exit"] = await asyncio.wait_for(proc.wait(), 20)
        return out

    out = run_async(scenario, timeout=90)
    logged = log.read_text()
    calls_before, calls_after = out["calls_before"], out["calls_after"]
    assert isinstance(calls_before, list) and len(calls_before) == 1, logged
    assert isinstance(calls_after, list) and len(calls_after) == 1
    call_id = calls_before[0]["id"]
    assert calls_after[0]["id"] == call_id and calls_after[0]["state"] == "confirmed"

    rc, text, err = cast(tuple[int, str, str], out["status_text"])
    assert rc == 0, err
    assert "1 active call" in text and call_id in text and "inbound" in text
    assert "+4930123456" in text and "1000" in text
    rc, text, err = cast(tuple[int, str, str], out["status_json"])
    assert rc == 0, err
    (row,) = json.loads(text)
    assert row["id"] == call_id and row["callee"] == "1000" and row["recording"] is False

    reload_line = json.loads(str(out["reload_line"]))
    assert reload_line["result"] == "ok", reload_line
    assert reload_line["changed"] == "extension[2000]"
    assert "new2000" not in logged and "pw2000" not in logged  # secrets stay out of logs
    broken = json.loads(str(out["broken_line"]))
    assert broken["result"] == "error" and broken["level"] == "error"
    assert broken["file"] == str(config) and "invalid TOML" in broken["problem"]

    for name in ("reg_old_before", "reg_new", "trunk", "phone"):
        result = out[name]
        assert result.returncode == 0, (name, result.stdout, result.stderr)  # type: ignore[attr-defined]
    assert out["reg_old"].returncode != 0  # type: ignore[attr-defined]  # 403: unexpected

    health = out["health"]
    assert isinstance(health, tuple) and health[0] == 200
    assert json.loads(health[2])["last_reload_ok"] is False
    samples = out["metrics"]
    assert isinstance(samples, dict)
    assert sample(samples, "b2bua_calls_ended_total") == 1
    assert sample(samples, "b2bua_active_calls") == 0
    assert sample(samples, "b2bua_auth_failures_total") == 1  # the old password, once
    # The registration made before the reload survived it; the new password added one
    # (another contact port); the refused one added none.
    assert sample(samples, "b2bua_registrations") == 2
    assert sample(samples, "b2bua_config_reloads_total", result="ok") == 1
    assert sample(samples, "b2bua_config_reloads_total", result="error") == 1
    assert sample(samples, "b2bua_config_last_reload_successful") == 0
    assert out["exit"] == 0

    # Every log line is one JSON object; call lines carry the call id.
    records = [json.loads(line) for line in logged.splitlines() if line.strip()]
    events = {r.get("event"): r for r in records}
    assert events["call_start"]["call"] == call_id
    assert events["call_end"]["call"] == call_id
    assert events["call_end"]["reason"] != "shutdown"  # ended by the trunk's BYE
