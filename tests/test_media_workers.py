"""Media worker processes (`[rtp] workers = N`): RTP and recording outside the SIP process.

Real peers: SIPp plays the trunk (RFC 2833 "1" from SIPp's own capture) and the echoing
desk phone, the B2BUA runs in-process with its media in two worker processes; the
recording is decrypted and checked as for the single-process server. A worker killed
mid-call: its call is ended, its recording recovered as `truncated`, a new worker takes
over and the next call is recorded again.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import os
import re
import socket
import time
from pathlib import Path
from typing import Any

import pytest
import soundfile as sf

from b2bua.archive.keys import decrypt_file
from b2bua.config import load_config
from b2bua.media_workers import WorkerLeg, WorkerPool, split_range
from b2bua.metrics import OpsCounters, collect, render
from b2bua.ops import call_rows
from b2bua.serve import Server
from rtp.relay import MediaFormat
from tests.conftest import free_port, run_async
from tests.sipp_harness import (
    answered_call,
    assert_sipp_ok,
    catalog_rows,
    consent_office,
    decrypted_wav,
    phone_answers,
    rms,
    run_serving,
    trunk_calls_in,
)
from tests.test_consent_calls import CAPTURES
from tests.test_consent_calls import trunk_scenario as consent_trunk


def test_split_range_gives_each_worker_whole_pairs_in_order() -> None:
    assert split_range(31000, 31999, 2) == [(31000, 31499), (31500, 31999)]
    assert split_range(31001, 31010, 3) == [(31002, 31005), (31006, 31007), (31008, 31009)]
    with pytest.raises(ValueError, match="fewer pairs"):
        split_range(31000, 31003, 3)


def workers_office(tmp_path: Path, trunk_port: int, phone_port: int, workers: int = 2) -> Path:
    path = consent_office(tmp_path, trunk_port, phone_port)
    text = re.sub(r"(?m)^workers = \d+$", f"workers = {workers}", path.read_text(), count=1)
    assert f"workers = {workers}" in text
    path.write_text(text)
    return path


def trunk_scenario(tmp_path: Path, wait_ms: int) -> Path:
    """The consent trunk of tests/test_consent_calls.py pressing "1" (RFC 2833)."""
    return consent_trunk(tmp_path, str(CAPTURES / "dtmf_2833_1.pcap"), wait_ms)


def long_call(
    server: Server, tmp_path: Path, trunk_port: int, phone_port: int
) -> asyncio.Task[Any]:
    """A consenting call from the trunk that stays up 20 s after the digit (a task)."""
    return asyncio.create_task(
        answered_call(
            [phone_answers(phone_port)],
            trunk_calls_in(server, trunk_port, trunk_scenario(tmp_path, 20000)),
            timeout=30,
            wait=5,
        )
    )


def test_recorded_call_through_two_media_workers(tmp_path: Path) -> None:
    phone_port, trunk_port = free_port("127.0.0.3"), free_port("127.0.0.2")
    config = workers_office(tmp_path, trunk_port, phone_port)
    seen: dict[str, Any] = {}

    async def body(server: Server) -> tuple[Any, list[Any]]:
        pool = server.workers
        assert pool is not None and server.relay is None and server.hub is None
        pids = {w.process.pid for w in pool.workers if w.process is not None}
        assert len(pids) == 2 and os.getpid() not in pids
        result = await answered_call(
            [phone_answers(phone_port)],
            trunk_calls_in(server, trunk_port, trunk_scenario(tmp_path, 2500)),
            timeout=25,
            wait=10,
        )
        # Bounded wait for the workers' next counter reports (one a second).
        for _ in range(40):
            if pool.recordings_written >= 1 and pool.leg_count == 0:
                break
            await asyncio.sleep(0.1)
        seen["written"] = pool.recordings_written
        seen["rtp"] = pool.rtp_totals()
        seen["consent"] = pool.consent_outcomes
        return result

    trunk, (phone,) = run_serving(config, body, timeout=60)
    assert_sipp_ok(trunk, phone)
    assert seen["written"] == 1
    assert seen["consent"] == {"accepted": 1}
    assert seen["rtp"].forwarded > 100  # both directions relayed by the worker
    (row,) = catalog_rows(tmp_path / "recordings")
    assert row["status"] == "complete"
    assert row["consent"]["result"] == "accepted"
    assert row["consent"]["method"] == "rfc4733"
    assert len(row["consent"]["prompt_sha256"]) == 64
    data, rate = decrypted_wav(tmp_path, row)
    assert rate == 8000 and data.shape[1] == 2
    assert 2.0 < data.shape[0] / rate < 8.0
    assert rms(data[:, 0]) > 100  # the caller's speech
    assert rms(data[:, 1]) > 100  # the phone's echo of it


def test_worker_crash_ends_its_call_recovers_the_file_and_is_replaced(tmp_path: Path) -> None:
    phone_port, trunk_port = free_port("127.0.0.3"), free_port("127.0.0.2")
    config = workers_office(tmp_path, trunk_port, phone_port, workers=1)
    seen: dict[str, Any] = {}

    async def body(server: Server) -> None:
        pool = server.workers
        assert pool is not None
        first_pid = pool.workers[0].process.pid  # type: ignore[union-attr]
        # A call that stays up 20 s after consent; the worker dies 3 s into recording.
        call = long_call(server, tmp_path, trunk_port, phone_port)
        deadline = time.monotonic() + 20
        while not pool.workers[0].recordings and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        seen["recording_ids"] = set(pool.workers[0].recordings.values())
        await asyncio.sleep(3)
        pool._send(pool.workers[0], ("crash",))
        deadline = time.monotonic() + 15
        while (server.switch.calls or not pool.workers[0].alive) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        seen["calls_left"] = len(server.switch.calls)
        seen["restarts"] = pool.restarts
        seen["new_pid"] = pool.workers[0].process.pid  # type: ignore[union-attr]
        seen["first_pid"] = first_pid
        seen["rows_after_crash"] = catalog_rows(tmp_path / "recordings")
        call.cancel()
        with contextlib.suppress(BaseException):
            await call
        # The replacement records the next call.
        result = await answered_call(
            [phone_answers(phone_port)],
            trunk_calls_in(server, trunk_port, trunk_scenario(tmp_path, 2500)),
            timeout=25,
            wait=10,
        )
        seen["second"] = result

    run_serving(config, body, timeout=120)
    assert len(seen["recording_ids"]) == 1
    assert seen["calls_left"] == 0  # the switch ended the call whose media died
    assert seen["restarts"] == 1 and seen["new_pid"] != seen["first_pid"]
    crashed = [r for r in seen["rows_after_crash"] if r["id"] in seen["recording_ids"]]
    assert [r["status"] for r in crashed] == ["truncated"]
    assert crashed[0]["path"] is not None and crashed[0]["path"].endswith(".wav.age")
    # The whole chunks written before the crash decrypt (exit 3: truncated); a chunk is
    # 64 KiB, about 2 s of stereo audio, and the worker died 3 s into the recording.
    out = tmp_path / "crashed.wav"
    assert decrypt_file(tmp_path / "recorder.key", Path(crashed[0]["path"]), out) == 3
    data, rate = sf.read(out, dtype="int16")
    assert rate == 8000 and data.shape[0] >= 16000
    trunk, (phone,) = seen["second"]
    assert_sipp_ok(trunk, phone)
    rows = catalog_rows(tmp_path / "recordings")
    assert sorted(r["status"] for r in rows) == ["complete", "truncated"]


def test_pool_spreads_calls_over_workers_and_their_port_slices(tmp_path: Path) -> None:
    config_path = workers_office(tmp_path, free_port("127.0.0.2"), free_port("127.0.0.3"))
    config = load_config(config_path)

    async def main() -> list[tuple[int, int]]:
        pool = WorkerPool(config, (), asyncio.get_running_loop(), count=2)
        await pool.start()
        try:
            out = []
            legs: list[WorkerLeg] = []
            for call in ("c1", "c2", "c3"):
                for side in ("a", "b"):
                    leg = pool.open_leg(f"{call}-{side}", lambda _leg: None)
                    legs.append(leg)
                    out.append((leg.worker.index, leg.port))
            # RTP through c1's bridge in its worker: a sender on each side, one packet
            # each way, received by the other.
            a, b = legs[0], legs[1]
            pool.bridge(a, b)
            peers = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(2)]
            for peer, ip in zip(peers, ("127.0.0.2", "127.0.0.3"), strict=True):
                peer.bind((ip, 0))
                peer.settimeout(3)
            a.set_remote(peers[0].getsockname(), MediaFormat(8, "PCMA", 101))
            b.set_remote(peers[1].getsockname(), MediaFormat(8, "PCMA", 101))
            await asyncio.sleep(0.3)  # the commands reach the worker
            packet = bytes([0x80, 8, 0, 1, 0, 0, 0, 160, 1, 2, 3, 4]) + b"\xd5" * 160
            peers[0].sendto(packet, ("127.0.0.1", a.port))
            data = await asyncio.to_thread(peers[1].recv, 2048)
            assert len(data) == len(packet) and data[12:] == packet[12:]
            for peer in peers:
                peer.close()
            for leg in legs:
                leg.close()
            return out
        finally:
            await pool.close()

    placed = run_async(main, timeout=40)
    workers = [w for w, _ in placed]
    assert workers == [0, 0, 1, 1, 0, 0]  # a call's legs together; least loaded first
    for worker, port in placed:
        assert (31000 <= port <= 31499) if worker == 0 else (31500 <= port <= 31999)


def test_workers_import_our_code_not_a_namesake_in_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `python -m` puts the working directory first on sys.path: a `b2bua` folder where
    # the server was started would be imported by the workers in place of ours.
    config = load_config(workers_office(tmp_path, free_port("127.0.0.2"), free_port("127.0.0.3")))
    here = tmp_path / "cwd"
    for package in ("b2bua", "media", "rtp"):
        (here / package).mkdir(parents=True)
        (here / package / "__init__.py").write_text("raise SystemExit('namesake imported')\n")
    monkeypatch.chdir(here)

    async def main() -> bool:
        pool = WorkerPool(config, (), asyncio.get_running_loop(), count=1)
        try:
            await pool.start(timeout=15)
            return all(w.alive for w in pool.workers)
        finally:
            await pool.close()

    assert run_async(main, timeout=40)


def test_metrics_status_and_shutdown_seal_with_workers(tmp_path: Path) -> None:
    """/metrics and /status read the workers' reports; stopping the server mid-call
    seals the recording in its worker (status complete, the file decrypts whole)."""
    phone_port, trunk_port = free_port("127.0.0.3"), free_port("127.0.0.2")
    config = workers_office(tmp_path, trunk_port, phone_port)
    seen: dict[str, Any] = {}

    async def body(server: Server) -> None:
        pool = server.workers
        assert pool is not None
        call = long_call(server, tmp_path, trunk_port, phone_port)
        deadline = time.monotonic() + 20
        while not pool.recording_calls() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)  # the worker reports once a second
        await asyncio.sleep(2.5)
        loop_now = asyncio.get_running_loop().time()
        seen["metrics"] = render(collect(server, OpsCounters(), loop_now))
        seen["status"] = call_rows(server, loop_now)
        call.cancel()  # the server is closed with the call up (run_serving's exit)
        with contextlib.suppress(BaseException):
            await call

    run_serving(config, body, timeout=90)
    metrics = seen["metrics"]
    assert "b2bua_rtp_legs_active 2\n" in metrics
    assert "b2bua_recordings_active 1\n" in metrics
    assert "b2bua_media_workers_alive 2\n" in metrics
    assert "b2bua_media_worker_restarts_total 0\n" in metrics
    assert 'b2bua_consent_outcomes_total{result="accepted"} 1\n' in metrics
    received = [ln for ln in metrics.splitlines() if ln.startswith("b2bua_rtp_packets_received")]
    assert received and float(received[0].split()[-1]) > 0  # the worker's counters
    (row,) = seen["status"]
    assert row["recording"] is True and row["consent"] == "accepted"
    (catalog_row,) = catalog_rows(tmp_path / "recordings")
    assert catalog_row["status"] == "complete"
    data, rate = decrypted_wav(tmp_path, catalog_row)
    assert rate == 8000 and data.shape[0] / rate > 2.0


def test_reload_sends_new_prompts_to_the_workers(tmp_path: Path) -> None:
    from b2bua.recording_hub import load_prompts
    from b2bua.reload import reload_config

    config = workers_office(tmp_path, free_port("127.0.0.2"), free_port("127.0.0.3"))
    sent: list[Any] = []

    async def body(server: Server) -> dict[str, str]:
        pool = server.workers
        assert pool is not None
        before = dict(server.switch.prompt_sha256)
        original = pool._send
        pool._send = lambda w, m, fds=None: (sent.append(m), original(w, m, fds))[1]  # type: ignore[method-assign]
        config.write_text(config.read_text().replace('language = "en"', 'language = "de"'))
        assert reload_config(server, OpsCounters())
        assert server.switch.prompt_sha256 != before
        return dict(server.switch.prompt_sha256)

    after = run_serving(config, body, timeout=40)
    german = {name: p.sha256 for name, p in load_prompts("de", None).items()}
    assert after == german
    configures = [m for m in sent if m[0] == "configure"]
    assert len(configures) == 2 and all(m[3] == "de" for m in configures)  # one per worker


# Call tests of other files, run again with their media in two workers (write_office
# reads B2BUA_TEST_WORKERS): consent by in-band tones (detected in the worker's hub),
# withdrawal mid-call, and a parallel hunt whose members' legs are opened and cancelled
# in the worker.
@pytest.mark.parametrize(
    ("module", "name"),
    [
        ("tests.test_consent_calls2", "test_inband_digit_accepted_and_kept_out_of_the_recording"),
        ("tests.test_consent_calls2", "test_external_party_withdraws_consent_mid_call"),
        (
            "tests.test_hunt_parallel_calls",
            "test_caller_cancel_while_all_ring_cancels_every_member",
        ),
    ],
)
def test_call_tests_with_media_in_workers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, module: str, name: str
) -> None:
    monkeypatch.setenv("B2BUA_TEST_WORKERS", "2")
    getattr(importlib.import_module(module), name)(tmp_path)


def test_offices_of_the_call_tests_follow_b2bua_test_workers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What makes the re-runs above real: their office configs get `workers = 2`."""
    from tests.test_g722_calls import office as g722_office
    from tests.test_hunt_calls import hunt_office

    monkeypatch.setenv("B2BUA_TEST_WORKERS", "2")
    dirs = [tmp_path / name for name in ("consent", "g722", "hunt")]
    for directory in dirs:
        directory.mkdir()
    configs = [
        consent_office(dirs[0], 5080, 5070),
        g722_office(dirs[1], 5080, wideband=True, recorded=True),
        hunt_office(dirs[2], 5080, {"1000": 5070, "1001": 5071}, 'members = ["1000", "1001"]'),
    ]
    for path in configs:
        assert load_config(path).rtp.workers == 2, path
