"""Sans-I/O stream state: latching, output continuity, RFC 3550 statistics, inactivity."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rtp.packet import ReceiverReport, SenderReport, SourceDescription, parse_rtcp
from rtp.packet import serialize_rtcp as wire
from rtp.session import (
    Inactivity,
    Latch,
    LatchState,
    OutboundStream,
    ReceiveStats,
    build_rtcp_bye,
    build_rtcp_report,
    ntp_middle32,
    ntp_timestamp,
)

SDP = ("192.0.2.10", 4000)
NAT = ("198.51.100.7", 31000)
EVIL = ("203.0.113.66", 5555)

# ------------------------------------------------------------------------ latching


def test_latch_learns_first_source_and_drops_others() -> None:
    latch = Latch(SDP)
    assert latch.peer == SDP  # before any packet we send to the SDP address
    assert latch.accept(NAT)
    assert latch.state is LatchState.LEARNED
    assert latch.peer == NAT
    assert not latch.accept(EVIL)
    assert not latch.accept(EVIL)
    assert latch.dropped == 2
    assert latch.accept(NAT)


def test_latch_prefers_sdp_address_then_pins() -> None:
    latch = Latch(SDP)
    assert latch.accept(EVIL)  # a racing attacker wins the first packet ...
    assert latch.accept(SDP)  # ... but the SDP address takes over when it sends
    assert latch.state is LatchState.PINNED
    assert not latch.accept(EVIL)
    assert not latch.accept(NAT)
    assert latch.peer == SDP
    assert latch.dropped == 2


def test_relatch_only_after_new_sdp() -> None:
    latch = Latch(SDP)
    assert latch.accept(SDP)
    assert not latch.accept(NAT)
    latch.relatch(("192.0.2.11", 4002))
    assert latch.state is LatchState.WAITING
    assert latch.accept(NAT)
    assert latch.peer == NAT


def test_latch_without_sdp_address() -> None:
    latch = Latch(None)
    assert latch.peer is None
    assert latch.accept(NAT)
    assert not latch.accept(SDP)


# ---------------------------------------------------------------- outbound stream


def test_outbound_keeps_continuity_across_source_change() -> None:
    out = OutboundStream(ssrc=0xABC, first_seq=65534, first_ts=2**32 - 160)
    got = [out.rewrite(1, 100 + i, 5000 + 160 * i, i == 0, 0.02 * i) for i in range(5)]
    assert [g[0] for g in got] == [65534, 65535, 0, 1, 2]  # wraps
    assert [g[1] for g in got] == [(2**32 - 160 + 160 * i) % 2**32 for i in range(5)]
    assert got[0][2]
    assert not any(g[2] for g in got[1:])
    # A new source (announcement done, bridged party starts) 20 ms later.
    seq, ts, marker = out.rewrite(2, 9, 777, False, 0.1)
    assert seq == 3
    assert ts == (got[-1][1] + 160) % 2**32
    assert marker
    seq2, ts2, marker2 = out.rewrite(2, 10, 937, False, 0.12)
    assert (seq2, ts2, marker2) == (4, ts + 160, False)


def test_outbound_rebase_uses_elapsed_time() -> None:
    out = OutboundStream(ssrc=1, first_seq=0, first_ts=0)
    out.rewrite(1, 0, 0, False, 10.0)
    seq, ts, marker = out.rewrite(2, 500, 123456, False, 12.5)  # 2.5 s of silence
    assert (seq, ts, marker) == (1, 20000, True)


def test_outbound_sequence_jump_same_ssrc_is_rebased() -> None:
    out = OutboundStream(ssrc=1, first_seq=10, first_ts=0)
    out.rewrite(7, 100, 0, False, 0.0)
    out.rewrite(7, 101, 160, False, 0.02)
    seq, ts, marker = out.rewrite(7, 40000, 999999, False, 0.04)
    assert (seq, ts, marker) == (12, 320, True)


def test_outbound_gap_and_reorder_keep_offsets() -> None:
    out = OutboundStream(ssrc=1, first_seq=0, first_ts=0)
    out.rewrite(7, 100, 1000, False, 0.0)
    assert out.rewrite(7, 103, 1480, False, 0.06)[:2] == (3, 480)  # loss stays visible
    assert out.rewrite(7, 102, 1320, False, 0.061)[:2] == (2, 320)  # late one in place
    assert out.rewrite(7, 104, 1640, False, 0.08)[:2] == (4, 640)
    assert out.next_seq == 5


def test_outbound_new_source_forced_and_counts() -> None:
    out = OutboundStream(ssrc=1, first_seq=0, first_ts=0)
    out.rewrite(7, 1, 0, False, 0.0, size=160)
    out.new_source()
    seq, _ts, marker = out.rewrite(7, 2, 160, False, 0.02, size=160)
    assert (seq, marker) == (1, True)
    assert (out.packet_count, out.octet_count) == (2, 320)
    assert out.rtp_time(0.04) == 320


@given(
    st.lists(
        st.tuples(st.integers(0, 2**16 - 1), st.integers(0, 2**32 - 1)),
        min_size=1,
        max_size=40,
    )
)
def test_outbound_in_order_output_is_always_continuous(
    sources: list[tuple[int, int]],
) -> None:
    """Whatever number space each new source uses, the output goes on seq+1, ts rising."""
    out = OutboundStream(ssrc=1, first_seq=500, first_ts=1000)
    now = 0.0
    prev: tuple[int, int] | None = None
    for ssrc, (seq0, ts0) in enumerate(sources):
        for i in range(3):
            now += 0.02
            seq, ts, _ = out.rewrite(ssrc, (seq0 + i) % 2**16, (ts0 + 160 * i) % 2**32, False, now)
            if prev is not None:
                assert seq == (prev[0] + 1) % 2**16
                assert 0 < (ts - prev[1]) % 2**32 <= 160 * 3
            prev = (seq, ts)


# ---------------------------------------------------------------- receive statistics


def feed(stats: ReceiveStats, seqs: list[int], ssrc: int = 9) -> list[bool]:
    return [stats.update(ssrc, s % 2**16, 160 * i, 0.02 * i) for i, s in enumerate(seqs)]


def test_stats_probation_then_counts() -> None:
    stats = ReceiveStats()
    assert feed(stats, [10, 11, 12]) == [False, True, True]
    assert stats.valid
    assert (stats.received, stats.expected, stats.lost) == (3, 3, 0)


def test_stats_loss_wrap_and_fraction() -> None:
    stats = ReceiveStats()
    feed(stats, [65533, 65534, 65535, 0, 3, 4])  # 1 and 2 lost across the wrap
    assert stats.extended_max == 65536 + 4
    assert (stats.expected, stats.received, stats.lost) == (8, 6, 2)
    block = stats.report_block(1.0)
    assert block is not None
    assert block.fraction_lost == (2 << 8) // 8
    assert block.cumulative_lost == 2
    assert block.highest_seq == 65540
    # Next interval without loss: fraction back to 0, cumulative stays.
    for s in range(5, 9):
        stats.update(9, s, 160 * s, 0.02 * s)
    block = stats.report_block(2.0)
    assert block is not None
    assert (block.fraction_lost, block.cumulative_lost) == (0, 2)


def test_stats_big_jump_needs_two_sequential_packets() -> None:
    stats = ReceiveStats()
    feed(stats, [1, 2, 3])
    assert not stats.update(9, 30000, 0, 1.0)
    assert stats.update(9, 30001, 160, 1.02)  # restart confirmed: counting from 30001
    assert stats.extended_max == 30001
    assert stats.lost == 0


def test_stats_duplicates_counted_lost_may_go_negative() -> None:
    stats = ReceiveStats()
    feed(stats, [1, 2, 3, 3, 3])
    assert stats.lost == -2  # RFC 3550 6.4.1: duplicates make it negative


def test_stats_jitter_per_a8() -> None:
    stats = ReceiveStats()
    arrivals = [0.0, 0.020, 0.045, 0.060, 0.080]  # second packet 5 ms late
    for i, t in enumerate(arrivals):
        stats.update(9, i, 160 * i, t)
    # Transit differences in samples: (after probation) 40, 40, 0 -> J += (|D| - J)/16.
    expected = 0.0
    for d in (40, 40, 0):
        expected += (d - expected) / 16
    assert stats.jitter == int(expected)
    assert stats.jitter > 0


def test_stats_lsr_dlsr() -> None:
    stats = ReceiveStats()
    feed(stats, [1, 2])
    ntp = ntp_timestamp(1_700_000_000.25)
    stats.on_sender_report(ntp, 5.0)
    block = stats.report_block(5.5)
    assert block is not None
    assert block.lsr == ntp_middle32(ntp)
    assert block.dlsr == 32768  # 0.5 s in 1/65536 s


def test_stats_new_ssrc_starts_over() -> None:
    stats = ReceiveStats()
    feed(stats, [1, 2, 3])
    assert not stats.update(10, 500, 0, 1.0)
    assert stats.ssrc == 10
    assert stats.report_block(1.0) is None  # on probation


# --------------------------------------------------------------------- RTCP reports


def test_reports_sr_or_rr_with_cname() -> None:
    out = OutboundStream(ssrc=0x1234, first_seq=0, first_ts=0)
    stats = ReceiveStats()
    feed(stats, [1, 2, 3])
    out.rewrite(5, 1, 0, False, 0.0, size=160)
    sr = parse_rtcp(
        wire(build_rtcp_report(out, stats, sender=True, now=0.5, unix_time=1e9, cname=b"me"))
    )
    assert isinstance(sr[0], SenderReport)
    assert (sr[0].ssrc, sr[0].packet_count, sr[0].octet_count) == (0x1234, 1, 160)
    assert sr[0].rtp_timestamp == 4000
    assert sr[0].ntp_timestamp >> 32 == 1_000_000_000 + 2_208_988_800
    assert [b.ssrc for b in sr[0].reports] == [9]
    assert isinstance(sr[1], SourceDescription)
    assert sr[1].chunks[0].items == ((1, b"me"),)
    rr = parse_rtcp(
        wire(build_rtcp_report(out, stats, sender=False, now=1.0, unix_time=1e9, cname=b"me"))
    )
    assert isinstance(rr[0], ReceiverReport)
    bye = parse_rtcp(wire(build_rtcp_bye(out, b"me")))
    assert [type(p).__name__ for p in bye] == ["ReceiverReport", "SourceDescription", "Bye"]


# ---------------------------------------------------------------------- inactivity


def test_inactivity_deadline_and_hold() -> None:
    timer = Inactivity(timeout=30.0, now=100.0)
    assert timer.deadline() == 130.0
    timer.on_packet(110.0)
    assert timer.deadline() == 140.0
    assert not timer.expired(139.9)
    assert timer.expired(140.0)
    timer.pause()  # hold / a=inactive
    assert timer.deadline() is None
    assert not timer.expired(1000.0)
    timer.resume(1000.0)
    assert timer.deadline() == 1030.0
    assert timer.last_packet == 1000.0


@pytest.mark.parametrize("unix", [0.0, 1e9, 1_700_000_000.5])
def test_ntp_timestamp(unix: float) -> None:
    ntp = ntp_timestamp(unix)
    assert (ntp >> 32) - 2_208_988_800 == int(unix)
    assert abs((ntp & 0xFFFFFFFF) / 2**32 - (unix % 1)) < 1e-6
