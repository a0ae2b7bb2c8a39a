"""SIPVicious (svmap, svwar, svcrack from PyPI) against a running `b2bua serve`.

The attacker binds 127.0.0.9 (`-b`), so the ban it earns never hits the trunk
(127.0.0.2) or the phone (127.0.0.3). Every tool run is bounded by its own options and by
a subprocess timeout. Afterwards a real call (SIPp trunk -> B2BUA -> SIPp phone) must
still work.
"""

from __future__ import annotations

import asyncio
import logging
import re
import socket
import sys
from pathlib import Path

import pytest

from b2bua.serve import Server
from tests.conftest import free_port, write_office
from tests.sipp_harness import answered_call, phone_answers, run_serving, trunk_calls_in

pytestmark = pytest.mark.sipp

ATTACKER = "127.0.0.9"
BIN = Path(sys.executable).parent


# sipvicious 0.3.8's svcrack accepts -b but never hands it to its scanner (svcrack.py
# main() omits bindingip=), so it would send from 127.0.0.1. This runs the unmodified
# tool with only that argument supplied.
_SVCRACK = """
import sys
from sipvicious import svcrack
_init = svcrack.ASipOfRedWine.__init__
def _bound(self, *args, **kwargs):
    kwargs.setdefault("bindingip", sys.argv[sys.argv.index("-b") + 1])
    _init(self, *args, **kwargs)
svcrack.ASipOfRedWine.__init__ = _bound
svcrack.main()
"""


async def run_tool(tool: str, *args: str, timeout: float = 30.0) -> str:
    """One sipvicious tool as a subprocess; returns stdout+stderr."""
    if tool == "svcrack":
        command = [sys.executable, "-c", _SVCRACK]
    else:
        command = [str(BIN / f"sipvicious_{tool}")]
    proc = await asyncio.create_subprocess_exec(
        *command,
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        stdin=asyncio.subprocess.DEVNULL,
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        out, _ = await proc.communicate()
        pytest.fail(f"{tool} did not finish in {timeout} s: {out.decode(errors='replace')}")
    return out.decode(errors="replace")


def options_probe(target: tuple[str, int], source: str, user: str = "1000") -> bytes | None:
    """One OPTIONS from `source`; the answer, or None when nothing came back."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((source, 0))
        sock.settimeout(0.5)
        port = sock.getsockname()[1]
        msg = (
            f"OPTIONS sip:{user}@{target[0]} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {source}:{port};branch=z9hG4bK{port}probe\r\n"
            "Max-Forwards: 70\r\n"
            f"From: <sip:probe@{source}>;tag=p{port}\r\n"
            f"To: <sip:{user}@{target[0]}>\r\n"
            f"Call-ID: probe-{port}@{source}\r\n"
            "CSeq: 1 OPTIONS\r\n"
            "Content-Length: 0\r\n\r\n"
        ).encode()
        sock.sendto(msg, target)
        try:
            return sock.recv(65535)
        except TimeoutError:
            return None


def _office(tmp_path: Path, phone_port: int, trunk_port: int, security: str = "") -> Path:
    return write_office(
        tmp_path,
        trunk=("127.0.0.2", trunk_port),
        phones={"1000": f"sip:1000@127.0.0.3:{phone_port}", "1001": ""},
        extra=security,
        # svcrack 0.3.8 crashes on a SHA-256 challenge (it reads only the first one).
        sip_extra='digest_algorithms = ["MD5"]',
    )


async def _real_call(server: Server, phone_port: int, trunk_port: int) -> tuple[int, int]:
    trunk, (phone,) = await answered_call(
        [phone_answers(phone_port)], trunk_calls_in(server, trunk_port)
    )
    return trunk.returncode, phone.returncode


def test_svmap_svwar_svcrack_then_a_real_call(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="b2bua.guard")
    phone_port, trunk_port = free_port("127.0.0.3"), free_port("127.0.0.2")
    config = _office(
        tmp_path,
        phone_port,
        trunk_port,
        "[security]\nmax_auth_failures = 6\nban_s = 60",
    )

    async def scenario(server: Server) -> dict[str, object]:
        host, port = server.sip_address
        target = ["-p", str(port), host]
        out: dict[str, object] = {}
        out["svmap"] = await run_tool("svmap", "-b", ATTACKER, "-t", "0.05", *target)
        # svwar: REGISTER (default), INVITE and OPTIONS over 1000-1010, where 1000 and
        # 1001 exist. --force skips its sanity check (which would already give up).
        for method in ("REGISTER", "INVITE", "OPTIONS"):
            out[f"svwar_{method}"] = await run_tool(
                "svwar",
                "-b",
                ATTACKER,
                "-m",
                method,
                "-e1000-1010",
                "--force",
                "--maximumtime",
                "2",
                "-t",
                "0.05",
                *target,
            )
        assert not server.guard.is_banned(ATTACKER, server.runner.now())
        # svcrack with a wordlist that does not hold the password: slowed, then banned.
        words = tmp_path / "words.txt"
        words.write_text("".join(f"guess{i}\n" for i in range(40)))
        started = server.runner.now()
        out["svcrack"] = await run_tool(
            "svcrack",
            "-b",
            ATTACKER,
            "-u",
            "1000",
            "-d",
            str(words),
            "--maximumtime",
            "2",
            "-t",
            "0.02",
            *target,
        )
        out["svcrack_s"] = server.runner.now() - started
        out["banned"] = server.guard.is_banned(ATTACKER, server.runner.now())
        out["probe_attacker"] = await asyncio.to_thread(options_probe, (host, port), ATTACKER)
        out["probe_phone"] = await asyncio.to_thread(options_probe, (host, port), "127.0.0.3")
        out["call"] = await _real_call(server, phone_port, trunk_port)
        out["stats"] = server.guard.stats
        return out

    out = run_serving(config, scenario, timeout=120)
    svmap = str(out["svmap"])
    # svmap sees a SIP device but no product: no User-Agent/Server header goes out.
    assert re.search(r"127\.0\.0\.1:\d+\s*\|\s*unknown", svmap), svmap
    assert "b2bua" not in svmap.lower()
    for method in ("REGISTER", "INVITE", "OPTIONS"):
        text = str(out[f"svwar_{method}"])
        # Its table lists found extensions as "| 1000 | reqauth |"; nothing may appear.
        assert not re.search(r"\|\s*10(0\d|10)\s*\|", text), f"{method}: {text}"
    assert out["banned"] is True, out["svcrack"]
    assert "The password for" not in str(out["svcrack"])
    stats = out["stats"]
    assert stats.bans == 1  # type: ignore[attr-defined]
    assert stats.dropped_slowdown > 0  # type: ignore[attr-defined]
    assert out["probe_attacker"] is None  # banned: dropped silently
    phone_answer = out["probe_phone"]
    assert isinstance(phone_answer, bytes) and phone_answer.startswith(b"SIP/2.0 200")
    assert out["call"] == (0, 0)
    lines = [r.getMessage() for r in caplog.records]
    assert any(re.match(rf"event=ban src={re.escape(ATTACKER)} until=\S+Z ", x) for x in lines)
    assert any(x.startswith(f"event=auth_failure src={ATTACKER} user=1000 ") for x in lines)


def test_strangers_get_no_answer_when_configured(tmp_path: Path) -> None:
    phone_port, trunk_port = free_port("127.0.0.3"), free_port("127.0.0.2")
    config = _office(
        tmp_path,
        phone_port,
        trunk_port,
        '[security]\ndrop_strangers = true\ntrusted_networks = ["127.0.0.16/28"]',
    )

    async def scenario(server: Server) -> dict[str, object]:
        host, port = server.sip_address
        target = ["-p", str(port), host]
        svmap = await run_tool("svmap", "-b", ATTACKER, "-t", "0.05", *target)
        probes = {
            ip: await asyncio.to_thread(options_probe, (host, port), ip)
            for ip in (ATTACKER, "127.0.0.2", "127.0.0.3", "127.0.0.20")
        }
        return {"svmap": svmap, "probes": probes, "filtered": server.runner.transport.stats}

    out = run_serving(config, scenario, timeout=60)
    assert not re.search(r"127\.0\.0\.1:\d+\s*\|", str(out["svmap"])), out["svmap"]
    probes = out["probes"]
    assert isinstance(probes, dict)
    assert probes[ATTACKER] is None
    for known in ("127.0.0.2", "127.0.0.3", "127.0.0.20"):  # trunk, static phone, trusted
        assert probes[known] is not None and probes[known].startswith(b"SIP/2.0 "), known
    assert out["filtered"].filtered >= 2  # type: ignore[attr-defined]
