"""The fuzz targets in CI (short runs of the plain mutation fuzzer), plus hypothesis
properties of hostile input that the parser tests do not cover yet: absurd SDP ports and
addresses are refused with 488.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType

import pytest
from hypothesis import given
from hypothesis import strategies as st

from b2bua.errors import SipError
from b2bua.sdp import parse_sdp

FUZZ = Path(__file__).resolve().parents[1] / "fuzz"


def _target(name: str) -> ModuleType:
    sys.path.insert(0, str(FUZZ))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(FUZZ))


@pytest.mark.parametrize("name", ["fuzz_sip", "fuzz_sdp", "fuzz_rtp", "fuzz_telephone_event"])
def test_fuzz_target_short_run(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    module = _target(name)
    harness = _target("harness")
    monkeypatch.chdir(tmp_path)  # a finding would be written here
    seeds = list(getattr(module, "SEEDS", []))
    assert seeds
    result = harness._plain(module.test_one_input, seeds, {"runs": "400", "seed": "7"})
    assert result == 0, list(tmp_path.glob("crash-*"))


def test_plain_fuzzer_reports_a_finding(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    harness = _target("harness")
    monkeypatch.chdir(tmp_path)

    def fragile(data: bytes) -> None:
        if len(data) > 3:
            raise KeyError("boom")

    assert harness._plain(fragile, [b"abcdef"], {"runs": "10"}) == 1
    assert len(list(tmp_path.glob("crash-*"))) == 1


_SDP = (
    "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN {conn}\r\nt=0 0\r\nm=audio {port} RTP/AVP 0\r\n"
)


@given(port=st.integers(min_value=65536, max_value=10**30))
def test_sdp_absurd_port_is_488(port: int) -> None:
    with pytest.raises(SipError) as info:
        parse_sdp(_SDP.format(conn="IP4 192.0.2.1", port=port).encode())
    assert info.value.status == 488


@given(
    conn=st.sampled_from(
        [
            "IP4 224.0.0.1",  # multicast
            "IP4 2001:db8::1",  # wrong family
            "IP6 192.0.2.1",
            "IP4 fe80::1%eth0",  # scoped
            "IPX 192.0.2.1",  # unknown address type
            "IP4 300.1.1.1",
            "IP4 -",
        ]
    )
)
def test_sdp_absurd_address_is_488(conn: str) -> None:
    with pytest.raises(SipError) as info:
        parse_sdp(_SDP.format(conn=conn, port=4000).encode())
    assert info.value.status == 488
