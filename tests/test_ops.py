"""Operations: log formats, the /metrics, /healthz and /status endpoint, config reload
(in-process), and the systemd unit.

The endpoint is scraped over a real loopback TCP connection and the exposition text is
checked by a small parser of the Prometheus text format 0.0.4 written here (every
sample belongs to a family with # HELP and # TYPE, names and labels well formed).
"""

from __future__ import annotations

import asyncio
import configparser
import io
import json
import logging
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from b2bua.archive.audit import AuditEntry
from b2bua.archive.catalog import Catalog
from b2bua.archive.keys import keygen
from b2bua.config import load_config
from b2bua.logs import JsonFormatter, KvFormatter, parse_fields, setup_logging
from b2bua.metrics import OpsCounters
from b2bua.ops import OpsEndpoint, format_status, local_url
from b2bua.reload import reload_config
from b2bua.serve import start_server
from tests.conftest import free_port, run_async, run_sipp, write_office
from tests.sipp_harness import phone_answers, trunk_calls_in

ROOT = Path(__file__).resolve().parents[1]

# ------------------------------------------------------------------ helpers

_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_LABEL = r'[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*"'
_SAMPLE = re.compile(rf"^({_NAME})(?:\{{((?:{_LABEL})(?:,{_LABEL})*)?\}})? (\S+)$")
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse_prometheus(text: str) -> Samples:
    """Samples of a text exposition; AssertionError on anything malformed."""
    assert text.endswith("\n")
    types: dict[str, str] = {}
    helped: set[str] = set()
    samples: Samples = {}
    for line in text.splitlines():
        if line.startswith("# HELP "):
            helped.add(line.split(" ", 3)[2])
        elif line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert kind in ("counter", "gauge", "histogram", "summary", "untyped"), line
            assert name not in types, f"second TYPE for {name}"
            types[name] = kind
        else:
            m = _SAMPLE.match(line)
            assert m is not None, f"bad sample line {line!r}"
            name, labels, value = m.groups()
            assert name in types and name in helped, f"{name} without TYPE/HELP"
            if types[name] == "counter":
                assert name.endswith("_total"), name
            pairs = frozenset(
                (k, json.loads(v))
                for k, v in re.findall(r'([a-zA-Z_]\w*)=("(?:[^"\\]|\\.)*")', labels or "")
            )
            key = (name, pairs)
            assert key not in samples, f"duplicate sample {line!r}"
            samples[key] = float(value)
    return samples


def sample(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


async def http_get(
    address: tuple[str, int], path: str, method: str = "GET"
) -> tuple[int, dict[str, str], bytes]:
    reader, writer = await asyncio.wait_for(asyncio.open_connection(*address), 5)
    writer.write(f"{method} {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    data = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {k.lower(): v.strip() for k, v in (h.split(":", 1) for h in lines[1:])}
    assert (
        int(headers["content-length"]) == (len(body) if method != "HEAD" else 0) or method == "HEAD"
    )
    return status, headers, body


# ------------------------------------------------------------------ logs


def _record(
    msg: str,
    *args: object,
    exc: bool = False,
    level: int = logging.INFO,
    name: str = "b2bua.switch",
) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise ValueError("boom\nsecond line")
        except ValueError:
            exc_info = sys.exc_info()
    return logging.LogRecord(name, level, __file__, 1, msg, args, exc_info)


def test_kv_format_keeps_fields_and_quotes_free_text() -> None:
    fmt = KvFormatter()
    line = fmt.format(_record("event=call_start call=%s direction=%s", "4f1c", "inbound"))
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO b2bua\.switch "
        r"event=call_start call=4f1c direction=inbound",
        line,
    ), line
    free = fmt.format(_record("retention sweep failed; retrying in %d s", 60, exc=True))
    assert "\n" not in free
    assert 'msg="retention sweep failed; retrying in 60 s"' in free
    assert "exc=" in free and "ValueError: boom\\nsecond line" in free


def test_json_format_one_object_per_line_with_parsed_fields() -> None:
    fmt = JsonFormatter()
    line = fmt.format(
        _record(
            'event=call_end call=%s duration_s=%.1f reason=%s level=x note="a b"',
            "ab12",
            3.25,
            "a_hung_up",
        )
    )
    assert "\n" not in line
    obj = json.loads(line)
    assert obj["level"] == "info" and obj["logger"] == "b2bua.switch"
    assert obj["event"] == "call_end" and obj["call"] == "ab12"
    assert obj["duration_s"] == "3.2" and obj["reason"] == "a_hung_up"
    assert obj["note"] == "a b"
    assert obj["field_level"] == "x"  # a message field never overwrites the framing
    assert obj["message"].startswith("event=call_end call=ab12")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", obj["ts"])
    with_exc = json.loads(fmt.format(_record("event=oops", exc=True)))
    assert "ValueError: boom" in with_exc["exc"]
    assert parse_fields("no fields here") == {}
    # Free-text call lines still carry their call id as a field.
    early = _record("call %s: early SDP from B ignored: %s", "9f2c4e1a", "bad m= line")
    assert json.loads(fmt.format(early))["call"] == "9f2c4e1a"
    assert (
        KvFormatter()
        .format(early)
        .endswith(
            ' INFO b2bua.switch call=9f2c4e1a msg="call 9f2c4e1a: early SDP from B ignored: bad m= line"'
        )
    )


def test_setup_logging_installs_one_handler() -> None:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    stream = io.StringIO()
    try:
        setup_logging("json", "warning", stream)
        setup_logging("json", "warning", stream)  # twice: still one handler
        logging.getLogger("b2bua.test").info("event=hidden")
        logging.getLogger("b2bua.test").warning("event=shown call=c1")
    finally:
        for handler in root.handlers[:]:
            root.removeHandler(handler)
        for handler in saved[0]:
            root.addHandler(handler)
        root.setLevel(saved[1])
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1
    assert json.loads(lines[0])["call"] == "c1"


def test_fail2ban_filter_matches_kv_lines() -> None:
    """The default log format keeps the prefix docs/fail2ban/b2bua.conf expects."""
    conf = (ROOT / "docs/fail2ban/b2bua.conf").read_text()
    block = conf.split("failregex =", 1)[1].split("ignoreregex", 1)[0]
    patterns = [
        re.compile(line.strip().replace("<HOST>", r"(?P<host>\S+)"))
        for line in block.splitlines()
        if line.strip()
    ]
    fmt = KvFormatter()
    warn = {"level": logging.WARNING, "name": "b2bua.guard"}
    lines = [
        fmt.format(_record("event=auth_failure src=%s user=%s failures=%d", "192.0.2.66", "1000",
                           1, **warn)),  # type: ignore[arg-type]
        fmt.format(_record("event=ban src=%s until=%s reason=%s failures=%d", "192.0.2.66",
                           "2026-11-22T21:18:44Z", "auth_failures", 10, **warn)),  # type: ignore[arg-type]
    ]  # fmt: skip
    hosts = [m.group("host") for line in lines for p in patterns if (m := p.match(line))]
    assert hosts == ["192.0.2.66", "192.0.2.66"], lines


# ------------------------------------------------------------------ endpoint


def test_metrics_healthz_and_status_around_a_real_call(tmp_path: Path) -> None:
    phone_port, trunk_port = free_port("127.0.0.3"), free_port("127.0.0.2")
    config_path = write_office(
        tmp_path,
        trunk=("127.0.0.2", trunk_port),
        phones={"1000": f"sip:1000@127.0.0.3:{phone_port}"},
    )

    async def scenario() -> dict[str, object]:
        server = await start_server(load_config(config_path))
        endpoint = OpsEndpoint(server, OpsCounters())
        address = await endpoint.start("127.0.0.1", 0)
        out: dict[str, object] = {}
        try:
            _, headers, body = await http_get(address, "/metrics")
            out["before"] = parse_prometheus(body.decode())
            assert headers["content-type"].startswith("text/plain; version=0.0.4")
            phone = asyncio.create_task(run_sipp(phone_answers(phone_port)))
            await asyncio.sleep(0.3)
            call = trunk_calls_in(server, trunk_port, "ops_trunk_call.xml", extra=["-d", "2000"])
            trunk = asyncio.create_task(run_sipp(call))
            for _ in range(100):  # bounded: 5 s
                _, _, body = await http_get(address, "/status")
                state = json.loads(body)
                if state["calls"] and state["calls"][0]["state"] == "confirmed":
                    break
                await asyncio.sleep(0.05)
            out["status"] = state
            await asyncio.sleep(0.5)  # some media through the relay
            out["during"] = parse_prometheus((await http_get(address, "/metrics"))[2].decode())
            out["trunk"], out["phone"] = await trunk, await phone
            for _ in range(40):  # the B leg's BYE transaction may still be finishing
                if not server.switch.calls:
                    break
                await asyncio.sleep(0.05)
            out["after"] = parse_prometheus((await http_get(address, "/metrics"))[2].decode())
            out["health"] = await http_get(address, "/healthz")
            out["head"] = await http_get(address, "/healthz", "HEAD")
            out["missing"] = await http_get(address, "/nope")
            out["post"] = await http_get(address, "/metrics", "POST")
            out["remote_status"] = endpoint._answer(b"GET /status HTTP/1.1\r\n\r\n", "192.0.2.7")
            server.guard.draining = True
            out["draining"] = await http_get(address, "/healthz")
        finally:
            await endpoint.close()
            await server.close()
        return out

    out = run_async(scenario)
    trunk, phone = out["trunk"], out["phone"]
    assert isinstance(trunk, subprocess.CompletedProcess)
    assert isinstance(phone, subprocess.CompletedProcess)
    assert trunk.returncode == 0, trunk.stdout + trunk.stderr
    assert phone.returncode == 0, phone.stdout + phone.stderr

    before, during, after = out["before"], out["during"], out["after"]
    assert isinstance(before, dict) and isinstance(during, dict) and isinstance(after, dict)
    assert sample(before, "b2bua_active_calls") == 0
    assert sample(during, "b2bua_active_calls") == 1
    assert sample(during, "b2bua_rtp_legs_active") == 2
    assert sample(during, "b2bua_rtp_packets_relayed_total") > 10
    assert sample(after, "b2bua_active_calls") == 0
    assert sample(after, "b2bua_rtp_legs_active") == 0
    assert sample(after, "b2bua_calls_started_total") == 1
    assert sample(after, "b2bua_calls_ended_total") == 1
    # Totals survive the legs: closed legs' counters were folded in, never lost.
    relayed = sample(after, "b2bua_rtp_packets_relayed_total")
    assert relayed >= sample(during, "b2bua_rtp_packets_relayed_total") and relayed > 50
    for reason in ("unlatched", "malformed", "srtp", "no_peer", "unsupported", "send_error"):
        assert sample(after, "b2bua_rtp_packets_dropped_total", reason=reason) >= 0
    assert sample(after, "b2bua_consent_outcomes_total", result="accepted") == 0
    assert sample(after, "b2bua_recordings_written_total") == 0
    assert sample(after, "b2bua_auth_failures_total") == 0
    assert sample(after, "b2bua_bans_active") == 0
    assert sample(after, "b2bua_registrations") == 0

    status = out["status"]
    assert isinstance(status, dict)
    (row,) = status["calls"]
    assert row["direction"] == "inbound" and row["callee"] == "1000"
    assert row["caller"] == "+4930123456" and row["state"] == "confirmed"
    assert row["recording"] is False and row["duration_s"] >= 0
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", row["started_at"])
    table = format_status(status)
    assert "1 active call" in table and row["id"] in table and "+4930123456" in table

    health = out["health"]
    assert isinstance(health, tuple)
    assert health[0] == 200 and json.loads(health[2])["status"] == "ok"
    assert json.loads(health[2])["calls"] == 0
    head = out["head"]
    assert isinstance(head, tuple) and head[0] == 200 and head[2] == b""
    draining = out["draining"]
    assert isinstance(draining, tuple)
    assert draining[0] == 503 and json.loads(draining[2])["status"] == "draining"
    assert isinstance(out["missing"], tuple) and out["missing"][0] == 404
    assert isinstance(out["post"], tuple) and out["post"][0] == 405
    assert isinstance(out["remote_status"], tuple) and out["remote_status"][0] == 403


def test_local_url_reaches_wildcard_binds_over_loopback() -> None:
    assert local_url(("0.0.0.0", 9090), "/status") == "http://127.0.0.1:9090/status"
    assert local_url(("::", 9090), "/status") == "http://[::1]:9090/status"
    assert local_url(("127.0.0.5", 1), "/x") == "http://127.0.0.5:1/x"
    assert format_status({"calls": [], "draining": True}).startswith("0 active calls (draining")


# ------------------------------------------------------------------ reload (in-process)


def _recording_office(tmp_path: Path, *, retention: int, language: str, password: str,
                      sip_port: int, max_calls: int) -> Path:  # fmt: skip
    pub = tmp_path / "recorder.key.pub"
    if not pub.exists():
        keygen(tmp_path / "recorder.key")
    path = tmp_path / "office.toml"
    path.write_text(
        f"""
[sip]
listen = "127.0.0.1:{sip_port}"
[rtp]
ports = "32000-32099"
[trunk]
host = "127.0.0.2:5080"
inbound_extension = "1000"
[[extension]]
number = "1000"
password = "{password}"
contact = "sip:1000@127.0.0.3:5070"
employee_consent = true
[recording]
mode = "keypress"
public_key = "recorder.key.pub"
directory = "rec"
retention_days = {retention}
language = "{language}"
[security]
max_calls = {max_calls}
"""
    )
    return path


def config_entries(catalog: Catalog) -> list[AuditEntry]:
    return [e for e in catalog.audit.entries() if e.action == "config"]


def test_reload_applies_runtime_keys_keeps_restart_keys_and_audits(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    port = free_port("127.0.0.1")
    path = _recording_office(tmp_path, retention=30, language="de", password="old",
                             sip_port=port, max_calls=1000)  # fmt: skip

    async def scenario() -> None:
        server = await start_server(load_config(path))
        counters = OpsCounters()
        try:
            assert server.hub is not None and server.catalog is not None
            hub, catalog = server.hub, server.catalog
            de_sha = hub.prompt_sha256["consent"]
            sweeper = next(t for t in server.background if t.get_name() == "retention-sweeper")
            with caplog.at_level(logging.INFO, logger="b2bua.reload"):
                # Unchanged file: applied, nothing to say, no audit entry.
                # (The sweeper may write audit entries of its own meanwhile: count ours.)
                entries = len(config_entries(catalog))
                assert reload_config(server, counters)
                assert len(config_entries(catalog)) == entries

                _recording_office(tmp_path, retention=7, language="en", password="new",
                                  sip_port=port + 1, max_calls=50)  # fmt: skip
                assert reload_config(server, counters)
            config = server.config
            assert config.recording.retention_days == 7
            assert catalog.policy.default_days == 7
            assert hub.prompt_sha256["consent"] != de_sha
            assert server.switch.prompt_sha256 == hub.prompt_sha256
            assert server.guard.config.max_calls == 50
            assert server.switch.config is config
            assert config.extension("1000") is not None
            assert config.extension("1000").password == "new"  # type: ignore[union-attr]
            # sip.listen needs a restart: the running value stays.
            assert config.sip.listen == ("127.0.0.1", port)
            assert server.sip_address[1] == port
            assert sweeper.cancelling() or sweeper.done()  # the old sweeper is stopped
            new_sweeper = [t for t in server.background if t.get_name() == "retention-sweeper"]
            assert len(new_sweeper) == 1 and new_sweeper[0] is not sweeper
            last = config_entries(catalog)[-1]
            assert (last.actor, last.source, last.target) == ("system", "reload", str(path))
            assert len(config_entries(catalog)) == entries + 1
            text = caplog.text
            assert "event=config_reload result=ok" in text
            assert "extension[1000]" in text and "recording.retention_days" in text
            assert "restart_needed=sip.listen" in text
            assert "new" not in re.findall(r"changed=(\S+)", text)[-1].split(",")  # no secrets

            # A broken file: logged with file, key and problem; the old config stays.
            caplog.clear()
            text_before = path.read_text()
            path.write_text(text_before.replace('mode = "keypress"', 'mode = "always"'))
            with caplog.at_level(logging.INFO, logger="b2bua.reload"):
                assert not reload_config(server, counters)
            assert server.config is config
            assert "result=error" in caplog.text and "key=recording.mode" in caplog.text
            assert str(path) in caplog.text
            path.write_text("[sip\n")
            assert not reload_config(server, counters)
            assert server.config is config
            assert (counters.reloads_ok, counters.reloads_failed) == (2, 2)
            assert not counters.last_reload_ok
        finally:
            await server.close()

    run_async(scenario)


# ------------------------------------------------------------------ systemd unit

UNIT = ROOT / "deploy" / "b2bua.service"
REQUIRED = {
    "Unit": ["Description", "After"],
    "Service": [
        "ExecStart",
        "ExecReload",
        "User",
        "Restart",
        "NoNewPrivileges",
        "ProtectSystem",
        "ReadWritePaths",
        "TimeoutStopSec",
    ],
    "Install": ["WantedBy"],
}


def test_systemd_unit_has_the_required_settings() -> None:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(UNIT.read_text())
    for section, keys in REQUIRED.items():
        for key in keys:
            assert parser.has_option(section, key), f"[{section}] {key}"
    service = parser["Service"]
    assert service["User"] == "b2bua"
    assert service["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert service["ProtectSystem"] == "strict"
    assert service["NoNewPrivileges"] == "yes"
    assert service["Restart"] == "on-failure"
    assert service["ExecStart"].endswith("serve --config /etc/b2bua/office.toml")
    assert "/var/lib/b2bua/recordings" in service["ReadWritePaths"]
    # The stop timeout leaves room for the default 30 s drain.
    assert int(service["TimeoutStopSec"]) > 30


def test_systemd_analyze_verify_accepts_the_unit(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.fail("systemd-analyze not found (Debian package systemd)")
    # verify checks that ExecStart exists: point it at this checkout's b2bua.
    b2bua = shutil.which("b2bua") or str(Path(sys.executable).parent / "b2bua")
    unit = tmp_path / "b2bua.service"
    unit.write_text(UNIT.read_text().replace("/opt/b2bua/bin/b2bua", b2bua))
    result = subprocess.run(
        [analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    # Unknown or misspelt settings are only warnings ("Unknown key ..., ignoring").
    assert "ignoring" not in result.stderr and "Unknown" not in result.stderr, result.stderr
