"""StereoMixer: placement, reordering, loss, wraps, re-anchoring, drift, muting (simulated time)."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt
import pytest

from media.g711 import encode_ulaw
from media.mixer import LEFT, RIGHT, StereoMixer

SR = 8000
FRAME = 160
TICK = 0.02
L16 = 96  # dynamic PT carrying big-endian 16-bit PCM: exact, so outputs compare bit for bit


def l16_decode(payload: bytes) -> npt.NDArray[np.int16]:
    return np.frombuffer(payload, dtype=">i2").astype(np.int16)


def l16_encode(samples: npt.NDArray[np.int16]) -> bytes:
    return samples.astype(">i2").tobytes()


@dataclass(frozen=True)
class Pkt:
    leg: int
    arrival: float
    ssrc: int
    seq: int
    ts: int
    pt: int
    payload: bytes


def stream(
    leg: int,
    signal: npt.NDArray[np.int16],
    *,
    t0: float = 0.0,
    ssrc: int = 0x1234,
    seq0: int = 1000,
    ts0: int = 50_000,
    period: float = TICK,
    pt: int = L16,
) -> list[Pkt]:
    """Packetise ``signal`` into 20 ms frames sent every ``period`` seconds from ``t0``."""
    out = []
    for i in range(len(signal) // FRAME):
        frame = signal[i * FRAME : (i + 1) * FRAME]
        payload = l16_encode(frame) if pt == L16 else encode_ulaw(frame)
        out.append(
            Pkt(
                leg,
                t0 + i * period,
                ssrc,
                (seq0 + i) & 0xFFFF,
                (ts0 + i * FRAME) & 0xFFFFFFFF,
                pt,
                payload,
            )
        )
    return out


def send(m: StereoMixer, p: Pkt) -> None:
    m.push(
        p.leg,
        ssrc=p.ssrc,
        seq=p.seq,
        timestamp=p.ts,
        payload_type=p.pt,
        payload=p.payload,
        arrival=p.arrival,
    )


def run(mixer: StereoMixer, packets: Iterable[Pkt], until: float) -> npt.NDArray[np.int16]:
    """Push packets in arrival order, pull every 20 ms tick up to ``until``, then flush."""
    pkts = sorted(packets, key=lambda p: p.arrival)
    chunks = []
    j = 0
    n_ticks = round(until / TICK)
    for k in range(1, n_ticks + 1):
        now = k * TICK
        while j < len(pkts) and pkts[j].arrival <= now:
            send(mixer, pkts[j])
            j += 1
        chunks.append(mixer.pull(now))
    chunks.append(mixer.flush())
    return np.concatenate(chunks)


def mixer(**kw: object) -> StereoMixer:
    return StereoMixer(payload_decoders={L16: l16_decode}, start=0.0, **kw)  # type: ignore[arg-type]


def ramp(n: int, seed: int = 1) -> npt.NDArray[np.int16]:
    """Non-periodic test audio: every frame is distinct, so misplacement shows."""
    rng = np.random.default_rng(seed)
    return rng.integers(-20000, 20000, n, dtype=np.int16)


def tone(freq: float, seconds: float, amp: float = 8000.0) -> npt.NDArray[np.int16]:
    t = np.arange(round(seconds * SR)) / SR
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def peak_hz(x: npt.NDArray[np.int16]) -> float:
    spec = np.abs(np.fft.rfft(x.astype(np.float64)))
    return float(np.fft.rfftfreq(len(x), 1 / SR)[int(np.argmax(spec))])


# -- basics ---------------------------------------------------------------------------


def test_tones_land_in_their_channels_via_default_g711() -> None:
    m = StereoMixer(start=0.0)  # default decoders: PCMU 0, PCMA 8
    pk = stream(LEFT, tone(400, 2.0), pt=0) + stream(RIGHT, tone(1000, 2.0), pt=0, ssrc=9)
    out = run(m, pk, 2.2)
    assert out.dtype == np.int16
    assert out.ndim == 2
    assert out.shape[1] == 2
    body = out[800:12800]
    assert peak_hz(body[:, 0]) == pytest.approx(400, abs=2)
    assert peak_hz(body[:, 1]) == pytest.approx(1000, abs=2)
    assert m.stats.samples_out == len(out)
    assert m.stats.left.packets == 100
    assert m.stats.left.lost_packets == 0


def test_placement_is_exact_at_arrival_time() -> None:
    sig = ramp(SR)
    out = run(mixer(), stream(LEFT, sig, t0=0.5), 2.0)
    start = round(0.5 * SR)
    assert not out[:start].any()
    assert np.array_equal(out[start : start + SR, 0], sig)
    assert not out[:, 1].any()


def test_output_is_paced_by_jitter_delay() -> None:
    m = mixer(jitter_s=0.06)
    for p in stream(LEFT, ramp(800), t0=0.0)[:3]:
        send(m, p)
    assert m.pull(0.05).shape == (0, 2)  # nothing older than now - 60 ms yet
    assert m.pull(0.10).shape == (round(0.04 * SR), 2)
    assert m.pull(0.12).shape == (FRAME, 2)


# -- reordering, duplicates, loss -----------------------------------------------------


def test_reordering_within_window_restored_exactly() -> None:
    sig = ramp(2 * SR)
    clean = run(mixer(), stream(LEFT, sig), 2.3)
    pk = stream(LEFT, sig)
    # Every 5th packet is delayed by 35 ms: it arrives after its successor.
    shuffled = [
        replace(p, arrival=p.arrival + 0.035) if i % 5 == 2 else p for i, p in enumerate(pk)
    ]
    m = mixer()
    out = run(m, shuffled, 2.3)
    assert np.array_equal(out, clean)
    assert m.stats.left.late == 0
    assert m.stats.left.gaps == 0
    assert m.stats.left.lost_packets == 0


def test_duplicates_ignored() -> None:
    sig = ramp(SR)
    clean = run(mixer(), stream(LEFT, sig), 1.2)
    pk = stream(LEFT, sig)
    dup = pk + [replace(p, arrival=p.arrival + 0.01) for p in pk]
    m = mixer()
    out = run(m, dup, 1.2)
    assert np.array_equal(out, clean)
    assert m.stats.left.duplicates == len(pk)
    assert m.stats.left.lost_packets == 0


def test_packet_later_than_window_is_dropped_and_counted() -> None:
    pk = stream(LEFT, ramp(SR))
    pk[10] = replace(pk[10], arrival=pk[10].arrival + 0.2)
    m = mixer()
    out = run(m, pk, 1.5)
    st = m.stats.left
    assert st.late == 1
    assert st.lost_packets == 0  # it did arrive (RFC 3550 counts it as received)
    assert st.gaps == 1
    assert len(out) >= SR


def test_one_lost_packet_is_concealed_and_counted() -> None:
    sig = tone(300, 1.0)
    pk = stream(LEFT, sig)
    del pk[20]
    m = mixer()
    out = run(m, pk, 1.2)[:, 0]
    st = m.stats.left
    assert st.lost_packets == 1
    assert st.gaps == 1
    assert st.concealed_gaps == 1
    assert st.gap_seconds == pytest.approx(0.02)
    gap = out[20 * FRAME : 21 * FRAME]
    assert np.abs(gap[:40]).max() > 1000  # concealed: the last frame fades out, not silence
    assert np.abs(gap).max() <= np.abs(sig).max()
    assert np.array_equal(out[: 20 * FRAME], sig[: 20 * FRAME])
    assert np.array_equal(out[21 * FRAME : 50 * FRAME], sig[21 * FRAME : 50 * FRAME])


def test_long_gap_is_exact_silence_of_right_length() -> None:
    sig = ramp(4 * SR)
    pk = stream(LEFT, sig)
    # The sender is silent for 2 s (packets 50..149 never sent), seq numbers keep counting.
    kept = pk[:50] + pk[150:]
    m = mixer()
    out = run(m, kept, 4.3)[:, 0]
    assert np.array_equal(out[: 50 * FRAME], sig[: 50 * FRAME])
    assert not out[50 * FRAME : 150 * FRAME].any()
    assert np.array_equal(out[150 * FRAME : 4 * SR], sig[150 * FRAME :])
    st = m.stats.left
    assert st.gaps == 1
    assert st.concealed_gaps == 0
    assert st.gap_seconds == pytest.approx(2.0)
    assert st.lost_packets == 100
    assert st.reanchors == 0


def test_hold_without_timestamp_progress_reanchors_and_leaves_silence() -> None:
    first = stream(LEFT, ramp(SR, 1), seq0=1, ts0=0)
    # After 3 s of hold the phone resumes with timestamps continuing from before the hold.
    second = stream(LEFT, ramp(SR, 2), t0=4.0, seq0=51, ts0=50 * FRAME)
    m = mixer()
    out = run(m, first + second, 5.3)[:, 0]
    assert np.array_equal(out[:SR], ramp(SR, 1))
    assert not out[SR : 4 * SR].any()
    assert np.array_equal(out[4 * SR : 5 * SR], ramp(SR, 2))
    assert m.stats.left.reanchors == 1


# -- wraps and re-anchoring -----------------------------------------------------------


def test_sequence_and_timestamp_wrap_are_seamless() -> None:
    sig = ramp(2 * SR)
    clean = run(mixer(), stream(LEFT, sig, seq0=0, ts0=0), 2.3)
    m = mixer()
    wrapped = stream(LEFT, sig, seq0=65500, ts0=2**32 - 30 * FRAME)
    out = run(m, wrapped, 2.3)
    assert np.array_equal(out, clean)
    st = m.stats.left
    assert (st.lost_packets, st.gaps, st.reanchors, st.late) == (0, 0, 0, 0)


def test_ssrc_change_reanchors_without_overlap() -> None:
    a, b = ramp(SR, 1), ramp(SR, 2)
    first = stream(LEFT, a, ssrc=1, seq0=10, ts0=0)
    # The new source starts 10 ms before the old one's last frame has ended.
    second = stream(LEFT, b, t0=0.99, ssrc=2, seq0=40000, ts0=123_456_789)
    m = mixer()
    out = run(m, first + second, 2.3)[:, 0]
    assert np.array_equal(out[:SR], a)  # the old stream is complete ...
    assert np.array_equal(out[SR : SR + SR - 80], b[80:])  # ... and the new one trimmed
    st = m.stats.left
    assert st.reanchors == 1
    assert st.trimmed_samples == 80
    assert st.lost_packets == 0


def test_straggler_of_retired_ssrc_is_dropped() -> None:
    first = stream(LEFT, ramp(SR, 1), ssrc=1)
    second = stream(LEFT, ramp(SR, 2), t0=1.0, ssrc=2, seq0=7)
    late_old = replace(first[-1], arrival=1.03, seq=(first[-1].seq + 1) & 0xFFFF)
    m = mixer()
    out = run(m, [*first, *second, late_old], 2.3)[:, 0]
    assert np.array_equal(out[SR : 2 * SR], ramp(SR, 2))
    assert m.stats.left.late == 1
    assert m.stats.left.reanchors == 1


def test_old_ssrc_may_return_after_a_while() -> None:
    a = stream(LEFT, ramp(SR, 1), ssrc=1, seq0=1, ts0=0)
    b = stream(LEFT, ramp(SR, 2), t0=1.0, ssrc=2, seq0=500, ts0=9999)
    c = stream(LEFT, ramp(SR, 3), t0=5.0, ssrc=1, seq0=51, ts0=50 * FRAME)  # A -> B -> A
    m = mixer()
    out = run(m, a + b + c, 6.3)[:, 0]
    assert np.array_equal(out[5 * SR : 6 * SR], ramp(SR, 3))
    assert m.stats.left.reanchors == 2
    assert m.stats.left.late == 0


def test_ssrc_change_after_only_events_has_no_false_duplicates() -> None:
    m = mixer()
    for i in range(5):  # a stream that only ever sent RFC 4733 events
        send(m, Pkt(LEFT, i * TICK, 1, 100 + i, 0, 101, b"\x01\x0a\x00\xa0"))
    pk = stream(LEFT, ramp(SR), t0=0.1, ssrc=2, seq0=100)
    out = run(m, pk, 1.4)[:, 0]
    assert m.stats.left.duplicates == 0
    assert np.array_equal(out[800 : 800 + SR], ramp(SR))


def test_timestamp_jump_reanchors_at_arrival() -> None:
    a, b = ramp(SR, 1), ramp(SR, 2)
    first = stream(LEFT, a, seq0=100, ts0=0)
    second = stream(LEFT, b, t0=1.0, seq0=150, ts0=3_000_000)  # seq continues, ts jumps
    m = mixer()
    out = run(m, first + second, 2.3)[:, 0]
    assert np.array_equal(out[: 2 * SR], np.concatenate((a, b)))
    st = m.stats.left
    assert st.reanchors == 1
    assert st.gaps == 0
    assert st.lost_packets == 0


# -- drift, alignment, memory ---------------------------------------------------------


def clicks(n: int, at_s: Iterable[float], clock: float) -> npt.NDArray[np.int16]:
    """Silence with a 20 ms click at each real time in ``at_s``, sampled by ``clock``."""
    sig = np.zeros(n, dtype=np.int16)
    for t in at_s:
        i = round(t * SR * clock)
        sig[i : i + 160] = 20000  # 20 ms: a 10 ms drift trim can not erase it
    return sig


def find_clicks(ch: npt.NDArray[np.int16], at_s: Iterable[float]) -> list[float]:
    """Time of the first loud sample within 0.5 s of each expected click."""
    found = []
    for t in at_s:
        lo = max(0, round((t - 0.5) * SR))
        hits = np.flatnonzero(ch[lo : round((t + 0.5) * SR)] > 10000)
        assert hits.size, f"click at {t} s missing"
        found.append((lo + int(hits[0])) / SR)
    return found


def test_drift_of_one_per_mille_stays_aligned_and_memory_bounded() -> None:
    minutes = 10  # 30 simulated minutes also pass (about 9 s here); 10 keeps CI quick
    dur = minutes * 60.0
    n_pk = int(dur / TICK) - 10
    marks = [5.0 + 30.0 * k for k in range(minutes * 2)]
    # LEFT: sender clock exact. RIGHT: sender clock 0.1 % fast, i.e. its 20 ms frames
    # leave every 19.98 ms of real time and its samples are timed by its own clock.
    left = clicks(n_pk * FRAME, marks, 1.0)
    fast = 1.001
    right = clicks(n_pk * FRAME, marks, fast)
    rng = np.random.default_rng(7)
    jl = rng.exponential(0.004, n_pk)  # network jitter: delay only ever added
    jr = rng.exponential(0.004, n_pk)
    m = mixer()
    started = time.process_time()
    chunks = []
    footprints = []
    frames_l = left.reshape(-1, FRAME).astype(">i2")
    frames_r = right.reshape(-1, FRAME).astype(">i2")
    arr_l = 0.03 + np.arange(n_pk) * TICK + jl
    arr_r = 0.03 + np.arange(n_pk) * TICK / fast + jr
    il = ir = 0
    for k in range(1, n_pk + 1):
        now = k * TICK
        while il < n_pk and arr_l[il] <= now:
            send(
                m,
                Pkt(
                    LEFT, float(arr_l[il]), 1, il & 0xFFFF, il * FRAME, L16, frames_l[il].tobytes()
                ),
            )
            il += 1
        while ir < n_pk and arr_r[ir] <= now:
            ts_r = (ir * FRAME + 7) & 0xFFFFFFFF
            send(
                m,
                Pkt(
                    RIGHT, float(arr_r[ir]), 2, (ir + 9) & 0xFFFF, ts_r, L16, frames_r[ir].tobytes()
                ),
            )
            ir += 1
        chunks.append(m.pull(now))
        if k % 15000 == 7500:
            footprints.append(m.footprint())
    chunks.append(m.flush())
    elapsed = time.process_time() - started
    out = np.concatenate(chunks)
    got_l = find_clicks(out[:, 0], [t + 0.03 for t in marks])
    got_r = find_clicks(out[:, 1], [t + 0.03 for t in marks])
    skew = np.abs(np.array(got_l) - np.array(got_r))
    assert skew.max() <= 0.020, skew
    # Each leg on its own also stays within 20 ms of true arrival time.
    assert np.abs(np.array(got_r) - np.array(marks) - 0.03).max() <= 0.020
    st = m.stats
    assert st.right.drift_corrections >= 20  # 600 ms of drift, taken in small steps
    assert st.left.drift_corrections <= 2
    assert st.left.late + st.right.late <= n_pk // 200
    assert len(set(footprints)) == 1, footprints  # nothing grows with call length
    assert len(out) == pytest.approx(dur * SR, rel=0.01)
    assert elapsed < 30  # CPU seconds: about 3 on an idle core


def test_leg_that_never_sends_is_all_zeros() -> None:
    sig = ramp(2 * SR)
    m = mixer()
    out = run(m, stream(RIGHT, sig, t0=0.1), 3.0)
    assert not out[:, 0].any()
    assert np.array_equal(out[800 : 800 + 2 * SR, 1], sig)
    assert m.stats.left.packets == 0
    assert m.stats.left.gaps == 0
    assert len(out) == pytest.approx(3.0 * SR - 480, abs=FRAME)


# -- events, muting, robustness -------------------------------------------------------


def test_telephone_events_never_reach_audio() -> None:
    sig = ramp(SR)
    pk = stream(LEFT, sig)
    loud = b"\x05\x8a\x03\x20"  # RFC 4733: event 5, end bit, volume 10, duration 800
    for i in range(20, 30):
        pk[i] = replace(pk[i], pt=101, payload=loud * 40)
    m = mixer()
    out = run(m, pk, 1.3)[:, 0]
    assert not out[20 * FRAME : 30 * FRAME].any()
    assert np.array_equal(out[30 * FRAME : SR], sig[30 * FRAME :])
    st = m.stats.left
    assert st.events_skipped == 10
    assert st.lost_packets == 0  # events consumed their sequence numbers


def test_per_leg_payload_types_after_sdp() -> None:
    m = mixer()
    m.set_payload_types(RIGHT, {110: l16_decode}, {96})
    sig = ramp(SR)
    pk = stream(LEFT, sig, pt=L16) + stream(RIGHT, sig, pt=L16, ssrc=5)
    pk += [replace(p, pt=110) for p in stream(RIGHT, sig, t0=1.0, ssrc=5, seq0=1050, ts0=58000)]
    out = run(m, pk, 2.3)
    assert np.array_equal(out[:SR, 0], sig)
    assert not out[:SR, 1].any()  # 96 is this leg's event type now
    assert np.array_equal(out[SR : 2 * SR, 1], sig)
    assert m.stats.right.events_skipped == 50


def test_pause_gives_silence_span_on_both_legs() -> None:
    sig = ramp(2 * SR)
    m = mixer()
    pk = stream(LEFT, sig) + stream(RIGHT, sig, ssrc=3)
    pkts = sorted(pk, key=lambda p: p.arrival)
    chunks = []
    j = 0
    for k in range(1, 116):
        now = k * TICK
        if k == 50:
            m.pause(now)  # 1.0 s
            assert m.paused
        if k == 75:
            m.resume(now)  # 1.5 s
            assert not m.paused
        while j < len(pkts) and pkts[j].arrival <= now:
            send(m, pkts[j])
            j += 1
        chunks.append(m.pull(now))
    out = np.concatenate([*chunks, m.flush()])
    assert not out[SR : SR + SR // 2].any()
    for ch in (0, 1):
        assert np.array_equal(out[:SR, ch], sig[:SR])
        assert np.array_equal(out[SR + SR // 2 : 2 * SR, ch], sig[SR + SR // 2 :])


def test_mute_one_leg_and_report_missed_span() -> None:
    sig = ramp(SR)
    m = mixer()
    assert m.mute(RIGHT, 0.2, 0.4) == 0.0
    out = run(m, stream(LEFT, sig) + stream(RIGHT, sig, ssrc=4), 1.2)
    assert not out[1600:3200, 1].any()
    assert np.array_equal(out[1600:3200, 0], sig[1600:3200])
    assert np.array_equal(out[3200:SR, 1], sig[3200:])
    assert m.mute(None, 0.5, 0.6) == pytest.approx(0.1)  # already written: reported


def test_time_of_maps_event_timestamp_to_arrival_clock() -> None:
    m = mixer()
    for p in stream(LEFT, ramp(800), t0=0.3, ts0=1000):
        send(m, p)
    assert m.time_of(LEFT, 1000 + 800) == pytest.approx(0.4)
    assert m.time_of(RIGHT, 0) is None


def test_bad_input_is_counted_not_raised() -> None:
    m = mixer()
    m.push(LEFT, ssrc=1, seq=1, timestamp=0, payload_type=34, payload=b"xx", arrival=0.0)
    m.push(LEFT, ssrc=1, seq=2, timestamp=160, payload_type=L16, payload=b"", arrival=0.02)
    m.push(LEFT, ssrc=1, seq=3, timestamp=320, payload_type=L16, payload=b"\x01", arrival=0.04)
    out = m.flush()
    assert m.stats.left.unplayable == 3  # unknown PT, empty, odd length for L16
    assert not out.any()
    with pytest.raises(ValueError, match="leg"):
        m.push(2, ssrc=1, seq=1, timestamp=0, payload_type=0, payload=b"x", arrival=0.0)


def test_far_future_packet_overflows_ring_without_growth() -> None:
    m = mixer(reanchor_threshold_s=100.0)
    first = stream(LEFT, ramp(800))
    for p in first:
        send(m, p)
    far = replace(first[-1], seq=first[-1].seq + 1, ts=first[-1].ts + 5 * SR, arrival=0.1)
    send(m, far)
    assert m.stats.left.overflow == 1
    assert len(m.flush()) == 800


@pytest.mark.parametrize("clock", [0.995, 1.005])
def test_fast_or_slow_sender_clock_is_corrected_both_ways(clock: float) -> None:
    marks = [2.0 + 10.0 * k for k in range(6)]
    n = 60 * SR
    m = mixer()
    pk = stream(LEFT, clicks(n, marks, 1.0)) + stream(
        RIGHT, clicks(n, marks, clock), period=TICK / clock, ssrc=8, ts0=2**32 - 4000
    )
    out = run(m, pk, 60.5)
    got_l = np.array(find_clicks(out[:, 0], marks))
    got_r = np.array(find_clicks(out[:, 1], marks))
    assert np.abs(got_l - got_r).max() <= 0.020
    st = m.stats.right
    assert st.drift_corrections >= 10  # 300 ms of drift in a minute
    assert st.late == 0
    assert st.reanchors == 0
    assert len(out) == pytest.approx(60 * SR, abs=SR)


@pytest.mark.parametrize("stall_s", [1.3, 1.9])
def test_a_loop_running_late_for_a_while_is_not_taken_for_clock_drift(stall_s: float) -> None:
    # Both senders' clocks are exact. For `stall_s` seconds the reading loop is 15 ms
    # behind (an overloaded media loop: every packet waits in the socket and is stamped
    # late); then it catches up. The packets' timestamps say where they belong, and the
    # 0.2 s jitter delay leaves room, so the recording must be bit-exact: no drift
    # correction (which would cut 15 ms going in and 15 ms coming out).
    seconds = 10.0
    sig_l, sig_r = ramp(int(seconds * SR), seed=3), ramp(int(seconds * SR), seed=4)
    stall = (4.0, 4.0 + stall_s)

    def late(p: Pkt) -> Pkt:
        lag = 0.015 if stall[0] <= p.arrival < stall[1] else 0.0
        return replace(p, arrival=p.arrival + 0.001 + lag)

    pk = [late(p) for p in stream(LEFT, sig_l, t0=0.0)]
    pk += [late(p) for p in stream(RIGHT, sig_r, t0=0.0, ssrc=9, ts0=7)]
    m = mixer(jitter_s=0.2)
    out = run(m, pk, seconds + 0.5)
    st = m.stats
    assert st.left.drift_corrections == 0 and st.right.drift_corrections == 0
    first = int(np.flatnonzero(out[:, 0])[0])
    assert np.array_equal(out[first : first + len(sig_l), 0], sig_l)
    assert np.array_equal(out[first : first + len(sig_r), 1], sig_r)


def test_a_first_packet_read_late_does_not_shift_the_stream_for_good() -> None:
    # The loop read the first two packets of each leg in one batch, so both carry the
    # second one's arrival: anchored there, every later packet looks 20 ms early. The
    # mixer settles the anchor at its first pull, before writing anything, so the
    # drift correction has nothing to cut later: the recording is bit-exact.
    seconds = 6.0
    sig_l, sig_r = ramp(int(seconds * SR), seed=5), ramp(int(seconds * SR), seed=6)

    def batched(packets: list[Pkt]) -> list[Pkt]:
        return [replace(packets[0], arrival=packets[1].arrival), *packets[1:]]

    pk = batched(stream(LEFT, sig_l, t0=0.013))
    pk += batched(stream(RIGHT, sig_r, t0=0.017, ssrc=9, ts0=7))
    m = mixer(jitter_s=0.2)
    out = run(m, pk, seconds + 0.5)
    st = m.stats
    assert st.left.settled_anchors == 1 and st.right.settled_anchors == 1
    assert st.left.drift_corrections == 0 and st.right.drift_corrections == 0
    assert st.left.trimmed_samples == 0 and st.right.trimmed_samples == 0
    for ch, sig, t0 in ((0, sig_l, 0.013), (1, sig_r, 0.017)):
        first = int(np.flatnonzero(out[:, ch])[0])
        assert first == round(t0 * SR)  # the first packet sits at its true arrival
        assert np.array_equal(out[first : first + len(sig), ch], sig)


def test_a_stall_longer_than_the_reanchor_threshold_is_not_a_timestamp_jump() -> None:
    # The whole loop stops for 0.35 s: no packet is read and no pull runs. Then the
    # queued packets are read in one burst, all stamped with the same time, up to
    # 0.35 s later than their timestamps say. That is more than the 0.2 s that marks a
    # timestamp jump, but their places are still ahead of the output, so they go there
    # by timestamp: no re-anchoring (a gap now) and no correction back (a cut later).
    seconds = 8.0
    sig_l, sig_r = ramp(int(seconds * SR), seed=7), ramp(int(seconds * SR), seed=8)
    pk = stream(LEFT, sig_l, t0=0.001) + stream(RIGHT, sig_r, t0=0.003, ssrc=9, ts0=7)
    stall = (3.0, 3.35)
    m = mixer(jitter_s=0.2, reanchor_threshold_s=0.2)
    chunks = []
    pkts = sorted(pk, key=lambda p: p.arrival)
    j = 0
    for k in range(1, round((seconds + 0.5) / TICK) + 1):
        now = k * TICK
        if stall[0] < now < stall[1]:
            continue  # nothing runs
        while j < len(pkts) and pkts[j].arrival <= now:
            queued = stall[0] < pkts[j].arrival < stall[1]
            send(m, replace(pkts[j], arrival=now) if queued else pkts[j])
            j += 1
        chunks.append(m.pull(now))
    chunks.append(m.flush())
    out = np.concatenate(chunks)
    st = m.stats
    assert (st.left.reanchors, st.right.reanchors) == (0, 0)
    assert (st.left.drift_corrections, st.right.drift_corrections) == (0, 0)
    assert (st.left.late, st.right.late) == (0, 0)
    for ch, sig in ((0, sig_l), (1, sig_r)):
        first = int(np.flatnonzero(out[:, ch])[0])
        assert np.array_equal(out[first : first + len(sig), ch], sig)


def test_a_reader_late_on_both_legs_for_seconds_is_not_corrected_as_drift() -> None:
    # Exact sender clocks; the reading loop runs 15 ms behind for 3.5 s (longer than
    # two drift windows). Both legs see the same offset, so it is ours, not a sender's
    # clock: nothing is shifted, and the recording is bit-exact.
    seconds = 10.0
    sig_l, sig_r = ramp(int(seconds * SR), seed=9), ramp(int(seconds * SR), seed=10)
    slow = (3.0, 6.5)

    def late(p: Pkt) -> Pkt:
        lag = 0.015 if slow[0] <= p.arrival < slow[1] else 0.0
        return replace(p, arrival=p.arrival + 0.001 + lag)

    pk = [late(p) for p in stream(LEFT, sig_l)]
    pk += [late(p) for p in stream(RIGHT, sig_r, ssrc=9, ts0=7, t0=0.004)]
    m = mixer(jitter_s=0.2)
    out = run(m, pk, seconds + 0.5)
    st = m.stats
    assert (st.left.drift_corrections, st.right.drift_corrections) == (0, 0)
    for ch, sig in ((0, sig_l), (1, sig_r)):
        first = int(np.flatnonzero(out[:, ch])[0])
        assert np.array_equal(out[first : first + len(sig), ch], sig)


def test_both_senders_drifting_alike_are_followed_after_a_while() -> None:
    # Both senders' clocks 0.3 % fast: the same offset on both legs, but it persists,
    # so after _COMMON_WINDOWS windows it is corrected and the legs stay near their
    # true times (within 60 ms over a minute), with no re-anchoring.
    marks = [2.0 + 10.0 * k for k in range(6)]
    n = 60 * SR
    fast = 1.003
    m = mixer()
    pk = stream(LEFT, clicks(n, marks, fast), period=TICK / fast) + stream(
        RIGHT, clicks(n, marks, fast), period=TICK / fast, ssrc=8, ts0=2**32 - 4000
    )
    out = run(m, pk, 60.5)
    for ch in (0, 1):
        got = np.array(find_clicks(out[:, ch], marks))
        assert np.abs(got - np.array(marks)).max() <= 0.060
    st = m.stats
    assert st.left.drift_corrections >= 2 and st.right.drift_corrections >= 2
    assert st.left.reanchors == 0 and st.right.reanchors == 0
