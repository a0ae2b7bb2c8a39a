"""The wire format against a peer we did not write: SIPp calls a UAS built on our core."""

from __future__ import annotations

from pathlib import Path

import pytest

from b2bua.runner import CoreRunner
from b2bua.uas import MinimalUas
from tests.conftest import SIPP_DIR, run_async, run_sipp

pytestmark = pytest.mark.sipp


async def _serve_and_run(
    sipp_args: list[str], host: str = "127.0.0.1"
) -> tuple[int, str, MinimalUas]:
    uas = MinimalUas((host, 0))
    runner = CoreRunner(uas)
    local = await runner.start(host, 0)
    uas.local = local
    try:
        result = await run_sipp([f"{local[0]}:{local[1]}", *sipp_args])
    finally:
        await runner.close()
    return result.returncode, result.stdout + result.stderr, uas


@pytest.mark.parametrize("transport", ["u1", "t1"])
def test_sipp_builtin_uac_call(transport: str, tmp_path: Path) -> None:
    # SIPp's own uac scenario: INVITE with SDP, 180/200, ACK, BYE, 200.
    code, out, uas = run_async(
        lambda: _serve_and_run(
            [
                "-sn",
                "uac",
                "-m",
                "2",
                "-l",
                "1",
                "-i",
                "127.0.0.5",
                "-p",
                "0",
                "-t",
                transport,
                "-d",
                "200",
                "-trace_err",
                "-error_file",
                str(tmp_path / "err.log"),
            ]
        )
    )
    assert code == 0, out
    assert uas.stats.calls_answered == 2
    assert uas.stats.calls_ended == 2


def test_sipp_options(tmp_path: Path) -> None:
    code, out, uas = run_async(
        lambda: _serve_and_run(
            [
                "-sf",
                str(SIPP_DIR / "options.xml"),
                "-m",
                "3",
                "-i",
                "127.0.0.5",
                "-p",
                "0",
                "-trace_err",
                "-error_file",
                str(tmp_path / "err.log"),
            ]
        )
    )
    assert code == 0, out
    assert uas.stats.requests["OPTIONS"] == 3
