"""One harness for the end-to-end tests that put SIPp around a running B2BUA.

The tests play the same roles again and again: a trunk calling in, a desk phone
answering, a carrier answering an outbound call, a desk phone dialling out. This module
builds SIPp's argument lists for them, runs `b2bua serve` in-process around a test body
(`serving`, `run_serving`), runs "answerers first, then the caller" (`answered_call`) and
checks SIPp's exit codes with the tails of its output (`assert_sipp_ok`).

Addresses (loopback only): the B2BUA on 127.0.0.1, the trunk 127.0.0.2, the desk phones
127.0.0.3. A bare scenario name is a file in tests/sipp/; a Path is used as it is.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt
import pytest
import soundfile as sf

from b2bua import metrics
from b2bua.archive.catalog import Catalog
from b2bua.archive.keys import decrypt_file, keygen
from b2bua.config import load_config
from b2bua.serve import Server, start_server
from rtp.relay import LegCounters, MediaFormat
from tests.conftest import (
    SIPP_DIR,
    communicate_bounded,
    free_port,
    run_async,
    run_sipp,
    write_office,
)

T = TypeVar("T")
Addr = tuple[str, int]
Result = subprocess.CompletedProcess[str]

TRUNK_IP = "127.0.0.2"
PHONE_IP = "127.0.0.3"
# SIPp's answering scenarios listen before the caller dials: this head start is enough
# on a loaded 2-core machine (SIPp binds in a few milliseconds).
LISTEN_S = 0.3


def scenario_path(scenario: str | Path) -> Path:
    """`SIPP_DIR / name` for a shipped scenario; an absolute Path stays as it is."""
    return SIPP_DIR / scenario


# ------------------------------------------------------------------ argument lists


def sipp_uac(
    scenario: str | Path,
    service: str,
    ip: str,
    port: int,
    target: Addr,
    *,
    auth: tuple[str, str] | None = None,
    media: bool = True,
    media_port: int | None = None,
    rtp_echo: bool = False,
    extra: Sequence[str] = (),
) -> list[str]:
    """SIPp placing one call to `service` at `target` from `ip:port`.

    `auth` is (user, password) for a digest challenge; `media` gives SIPp a media port
    (a free one unless `media_port`); `extra` goes in before `-m 1`."""
    args = ["-sf", str(scenario_path(scenario)), "-s", service]
    if auth is not None:
        args += ["-au", auth[0], "-ap", auth[1]]
    args += ["-i", ip, "-p", str(port)]
    if media:
        args += ["-mp", str(media_port if media_port is not None else free_port(ip))]
    if rtp_echo:
        args.append("-rtp_echo")
    return [*args, *extra, "-m", "1", f"{target[0]}:{target[1]}"]


def sipp_uas(
    scenario: str | Path,
    ip: str,
    port: int,
    *,
    rtp_echo: bool = True,
    media: bool = True,
    media_port: int | None = None,
    calls: int = 1,
    extra: Sequence[str] = (),
) -> list[str]:
    """SIPp answering on `ip:port` (`calls` calls, then it exits), echoing RTP unless
    told not to."""
    args = ["-sf", str(scenario_path(scenario)), "-i", ip, "-p", str(port)]
    if media:
        args += ["-mp", str(media_port if media_port is not None else free_port(ip))]
    if rtp_echo:
        args.append("-rtp_echo")
    return [*args, *extra, "-m", str(calls)]


def trunk_calls_in(
    target: Server | Addr,
    port: int,
    scenario: str | Path = "trunk_uac.xml",
    *,
    service: str = "1000",
    extra: Sequence[str] = (),
) -> list[str]:
    """The trunk (127.0.0.2:`port`) calling `service` at the B2BUA."""
    return sipp_uac(scenario, service, TRUNK_IP, port, _address(target), extra=extra)


def phone_calls_out(
    target: Server | Addr,
    port: int,
    number: str = "+4989123456",
    scenario: str | Path = "phone_uac_auth.xml",
    *,
    user: str = "1000",
    password: str = "pw1000",
    rtp_echo: bool = False,
) -> list[str]:
    """Desk phone `user` (127.0.0.3:`port`) dialling `number`, answering one challenge."""
    return sipp_uac(
        scenario,
        number,
        PHONE_IP,
        port,
        _address(target),
        auth=(user, password),
        rtp_echo=rtp_echo,
    )


def phone_answers(
    port: int, scenario: str | Path = "phone_uas.xml", *, media_port: int | None = None
) -> list[str]:
    """A desk phone (127.0.0.3:`port`) that answers and echoes the media."""
    return sipp_uas(scenario, PHONE_IP, port, media_port=media_port)


def carrier_answers(
    port: int, scenario: str | Path = "phone_uas.xml", *, rtp_echo: bool = True
) -> list[str]:
    """The carrier on the trunk address (127.0.0.2:`port`) answering an outbound call
    (by default SIPp's answering phone scenario plays it)."""
    return sipp_uas(scenario, TRUNK_IP, port, rtp_echo=rtp_echo)


def _address(target: Server | Addr) -> Addr:
    return target.sip_address if isinstance(target, Server) else target


def expect_status_scenario(path: Path, status: str, *, sdp: tuple[str, str] = ("", "")) -> Path:
    """tests/sipp/trunk_expect_status.xml.in for `status`, written to `path`; `sdp`
    optionally replaces one line of its offer (old, new)."""
    text = (SIPP_DIR / "trunk_expect_status.xml.in").read_text()
    text = text.replace("EXPECTED_STATUS", status)
    if sdp[0]:
        assert sdp[0] in text
        text = text.replace(*sdp)
    path.write_text(text)
    return path


# ------------------------------------------------------------------ running peers


async def answered_call(
    answering: Sequence[list[str]],
    calling: list[str],
    *,
    timeout: float = 30.0,
    wait: float | None = None,
) -> tuple[Result, list[Result]]:
    """The answering SIPps start and listen, then the calling one runs to its end; then
    the answerers' results (each waited for at most `wait` seconds more, when given).
    `timeout` bounds every SIPp run."""
    tasks = [asyncio.create_task(run_sipp(args, timeout=timeout)) for args in answering]
    try:
        await asyncio.sleep(LISTEN_S)
        caller = await run_sipp(calling, timeout=timeout)
        answered = [await (asyncio.wait_for(t, wait) if wait is not None else t) for t in tasks]
    finally:
        for task in tasks:  # a failure above: end the peers still running
            task.cancel()
    return caller, answered


@contextlib.asynccontextmanager
async def serving(config: Path) -> AsyncIterator[Server]:
    """`b2bua serve` of `config` in this event loop, closed on the way out."""
    server = await start_server(load_config(config))
    try:
        yield server
    finally:
        await server.close()


def run_serving(
    config: Path, body: Callable[[Server], Awaitable[T]], *, timeout: float = 60.0
) -> T:
    """Runs `body(server)` against a fresh server of `config`, bounded by `timeout`."""

    async def main() -> T:
        async with serving(config) as server:
            return await body(server)

    return run_async(main, timeout=timeout)


def baresip_binary() -> str:
    path = shutil.which("baresip")
    if path is None:
        pytest.fail("baresip not found: install the Debian package baresip")  # never a skip
    return path


async def run_baresip(conf: Path, seconds: int, *commands: str) -> tuple[int, str]:
    """Headless baresip with config directory `conf`: runs `commands` (`-e`, e.g. a
    /dial) and quits after `seconds` (`-t`, with a BYE when a call is up). Returns its
    exit code and its output (stdout and stderr together)."""
    args = [baresip_binary(), "-f", str(conf), "-t", str(seconds)]
    for command in commands:
        args += ["-e", command]
    proc = await asyncio.create_subprocess_exec(
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await communicate_bounded(proc, seconds + 10)
    assert proc.returncode is not None
    return proc.returncode, out.decode(errors="replace")


# ------------------------------------------------------------------ checks


def sipp_tail(result: Result, out: int = 3000, err: int = 2000) -> str:
    """What a failed SIPp said: the scenario, then the ends of stdout and stderr."""
    args = [str(a) for a in result.args]
    scenario = args[args.index("-sf") + 1] if "-sf" in args else "?"
    head = f"sipp {Path(scenario).name} exited {result.returncode}\n"
    return head + result.stdout[-out:] + result.stderr[-err:]


def assert_sipp_ok(*results: Result) -> None:
    """Each SIPp run ended with exit code 0 (its scenario passed), in the order given."""
    for result in results:
        assert result.returncode == 0, sipp_tail(result)


# ------------------------------------------------------------------ offices


def phone_contact(port: int, number: str = "1000", ip: str = PHONE_IP) -> str:
    return f"sip:{number}@{ip}:{port}"


def consent_office(
    tmp_path: Path,
    trunk_port: int,
    phone_port: int,
    *,
    recording: dict[str, str] | None = None,
    employee_consent: bool = True,
    sip_extra: str = "",
    extra: str = "",
) -> Path:
    """A keypress office whose extension 1000 (a static contact on 127.0.0.3) consented
    in writing: English prompts, recordings encrypted to a fresh key in `tmp_path`, a 3 s
    consent timeout. `recording` overrides or adds [recording] keys (TOML values);
    `extra` is more [recording] lines."""
    keygen(tmp_path / "recorder.key")
    keys = {
        "language": '"en"',
        "directory": '"recordings"',
        "public_key": '"recorder.key.pub"',
        "consent_timeout_s": "3",
    }
    keys.update(recording or {})
    config = write_office(
        tmp_path,
        trunk=(TRUNK_IP, trunk_port),
        phones={"1000": phone_contact(phone_port)},
        mode="keypress",
        extra="\n".join([*(f"{k} = {v}" for k, v in keys.items()), extra]),
        sip_extra=sip_extra,
    )
    if employee_consent:
        text = config.read_text()
        config.write_text(
            text.replace('password = "pw1000"', 'password = "pw1000"\nemployee_consent = true')
        )
    return config


def media_leg_count(server: Server) -> int:
    """Open RTP relay legs, in the server's process or in its media workers."""
    if server.relay is not None:
        return len(server.relay.legs)
    assert server.workers is not None
    return server.workers.leg_count


def rtp_totals(server: Server) -> LegCounters:
    """The relay's counters summed over every leg it opened, live and closed (what
    /metrics shows), in either mode; with media workers as of their last report (once a
    second: `fresh_rtp_totals` waits for the next one)."""
    return metrics.rtp_totals(server)


async def fresh_rtp_totals(server: Server, timeout: float = 3.0) -> LegCounters:
    """`rtp_totals` that includes every packet relayed before this call: with media
    workers, waits (bounded) until each live worker has sent a report made after it."""
    pool = server.workers
    if pool is not None:
        # A worker's every report replaces its stats dict: another object is a newer one
        # (the old ones are held here, so their identities can not be reused meanwhile).
        before = {w.index: w.stats for w in pool.workers if w.alive}
        for _ in range(int(timeout / 0.05) + 1):
            if all(w.stats is not before.get(w.index) for w in pool.workers if w.alive):
                break
            await asyncio.sleep(0.05)
        else:
            pytest.fail(f"no counters from the media workers in {timeout} s")
    return rtp_totals(server)


def leg_counters(server: Server) -> dict[str, LegCounters] | None:
    """Per open leg (by leg id) its counters, when the media runs in the server's process;
    None with media workers (they report totals only: see `rtp_totals`)."""
    if server.relay is None:
        return None
    return {leg_id: leg.counters for leg_id, leg in server.relay.legs.items()}


@dataclass(frozen=True)
class LegSeen:
    """One relay leg as the test can see it. `peer`: in one process the address the leg
    latched; with media workers the address the SDP gave it (the latch is in the
    worker). `received`/`forwarded`: None with media workers."""

    peer: Addr | None
    fmt: MediaFormat | None
    received: int | None
    forwarded: int | None


def legs_seen(server: Server) -> dict[str, LegSeen]:
    """Every open leg, by leg id, in either media mode."""
    if server.relay is not None:
        return {
            leg_id: LegSeen(
                leg.latch.latched, leg.fmt, leg.counters.received, leg.counters.forwarded
            )
            for leg_id, leg in server.relay.legs.items()
        }
    assert server.workers is not None
    return {
        leg_id: LegSeen(leg.remote, leg.fmt, None, None)
        for worker in server.workers.workers
        for leg_id, leg in worker.legs.items()
    }


@dataclass
class MediaSeen:
    """What a call's media did, watched while it is up (`watch`) in either mode: every
    leg's last `LegSeen` and the most legs open at once; `totals` (`fresh_rtp_totals`)
    after `finish`. `in_process`: per-leg counters are known."""

    legs: dict[str, LegSeen] = field(default_factory=dict)
    most_legs: int = 0
    in_process: bool = True
    totals: LegCounters = field(default_factory=LegCounters)

    async def watch(self, server: Server, seconds: float = 10.0) -> None:
        """Samples every 50 ms for at most `seconds` (cancel it when the call is over)."""
        for _ in range(int(seconds / 0.05)):
            self.sample(server)
            await asyncio.sleep(0.05)

    def sample(self, server: Server) -> None:
        self.in_process = server.relay is not None
        seen = legs_seen(server)
        self.legs.update(seen)
        self.most_legs = max(self.most_legs, len(seen))

    async def finish(self, server: Server) -> None:
        self.sample(server)
        self.totals = await fresh_rtp_totals(server)

    def leg(self, suffix: str) -> LegSeen:
        """The one leg whose id ends with `suffix` ("-a", "-b")."""
        (leg,) = [v for k, v in self.legs.items() if k.endswith(suffix)]
        return leg

    def assert_both_ways(self, minimum: int) -> None:
        """A two-leg call relayed more than `minimum` packets each way: in one process per
        leg (the -a leg received and forwarded, and the -b leg); with media workers, two
        legs were open and the totals are above twice `minimum` (the workers report no
        per-leg counters)."""
        a, b = self.leg("-a"), self.leg("-b")
        if self.in_process:
            assert a.received is not None and a.forwarded is not None
            assert b.received is not None and b.forwarded is not None
            assert a.received > minimum and a.forwarded > minimum, self.legs
            assert b.received > minimum and b.forwarded > minimum, self.legs
        else:
            assert self.most_legs == 2, self.most_legs
            assert self.totals.received > 2 * minimum, self.totals
            assert self.totals.forwarded > 2 * minimum, self.totals


def catalog_rows(directory: Path) -> list[dict[str, Any]]:
    """The recordings listing of the catalog in `directory`, newest first."""
    with Catalog.open(directory) as catalog:
        return catalog.list()


def decrypted_wav(tmp_path: Path, row: dict[str, Any]) -> tuple[npt.NDArray[np.int16], int]:
    """A catalog row's recording, decrypted with `tmp_path`/recorder.key (which must
    succeed) to `tmp_path`/call.wav: its samples (frames x channels) and rate."""
    out = tmp_path / "call.wav"
    assert decrypt_file(tmp_path / "recorder.key", Path(row["path"]), out) == 0
    data, rate = sf.read(out, dtype="int16")
    return np.asarray(data, dtype=np.int16), int(rate)


def rms(samples: npt.NDArray[np.int16]) -> float:
    """Root mean square of int16 samples, as a float (no overflow)."""
    return float(np.sqrt(np.mean(samples.astype(float) ** 2)))
