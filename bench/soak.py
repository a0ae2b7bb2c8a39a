"""Soak test (not in CI, GitHub issue 8): hours of calls with churn through `b2bua serve`;
memory and file descriptors must stay flat.

One `b2bua serve` runs with a generated loopback config (bench/load.py's, plus a
/healthz endpoint). `--calls` workers each place one inbound call after another from the
trunk (bench/sipload.py): answered, RTP both ways at 50 packets/s per stream from the
benchmark generator (bench/rtpgen.c), in `--mode record` keypress consent by RFC 4733
"1" from the caller, held for a random `--min-s`..`--max-s` seconds, ended with BYE.
Once a minute two failed attempts run beside them: a REGISTER with a wrong password
(from a new 127.0.1.x address each time, so the guard's ban does not silence them) and
an outbound call from the desk phone that the trunk leaves ringing and the phone
cancels (CANCEL before answer, 487).

Every `--sample-s` seconds the B2BUA's VmRSS, open file descriptors, threads, active
calls (/healthz) and catalog rows are sampled. At the end no new call starts, the
running ones end, and after `--idle-s` an idle sample is taken. The JSON printed at the
end has the samples, call counts, failures, and a least-squares fit of RSS and fds over
time after `--warmup-s`, with a verdict: RSS growth below `--max-rss-pct-per-h` % of
the mean RSS per hour, and idle fds within `--fd-slack` of the baseline taken before the
first call.

`--tracemalloc FILE` starts serve with B2BUA_TRACEMALLOC=FILE (b2bua/memtrace.py): the
serve process traces allocations, and this script sends SIGUSR1 after the warm-up and
again when idle, so FILE holds the top allocation growth between the two, by line.

Every wait is bounded; the run stops by `--duration` (at most 24 h). Examples:
  .venv/bin/python bench/soak.py --duration 120 --calls 10
  .venv/bin/python bench/soak.py --duration 3600 --calls 20 --mode record --out soak.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import secrets
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from load import (  # noqa: E402
    B2BUA,
    COUNT_DELAY_S,
    DTMF_DELAY_S,
    Gen,
    free_port,
    proc_mem_kib,
    wait_serving,
    write_config,
)
from sipload import SipLoad, sdp_body  # noqa: E402

from b2bua.auth import answer_challenge, pick_challenge  # noqa: E402
from b2bua.headers import Headers  # noqa: E402
from b2bua.message import Request, Response, make_response, parse_message  # noqa: E402
from b2bua.uri import URI  # noqa: E402

GEN_SLOTS = 8192  # rtpgen.c's MAXC: call indices are mapped onto its slots
MAX_DURATION_S = 24 * 3600
BRIDGE_WAIT_S = 25.0  # answer, prompt, consent digit, office leg
FAIL_EVERY_S = 60.0
OUTBOUND_NUMBER = "030123456"
PHONE_PASSWORD = "bench1000"  # load.write_config's extension password
RETRANSMIT_S = 0.5
RETRANSMITS = 8


def proc_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def proc_threads(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    return -1


def catalog_rows(workdir: Path) -> int | None:
    path = workdir / "recordings" / "catalog.sqlite3"
    if not path.exists():
        return None
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5) as db:
        return int(db.execute("SELECT count(*) FROM calls").fetchone()[0])


async def healthz_calls(port: int) -> int | None:
    """Active calls as serve itself counts them (GET /healthz on the metrics port)."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 5)
        writer.write(b"GET /healthz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        data = await asyncio.wait_for(reader.read(65536), 5)
        writer.close()
        return int(json.loads(data.split(b"\r\n\r\n", 1)[1])["calls"])
    except (OSError, TimeoutError, ValueError, KeyError, IndexError):
        return None


@dataclass
class Tally:
    started: int = 0
    bridged: int = 0
    ended: int = 0
    failed: dict[str, int] = field(default_factory=dict)
    register_refused: int = 0
    register_other: dict[str, int] = field(default_factory=dict)
    cancel_ok: int = 0
    cancel_other: dict[str, int] = field(default_factory=dict)
    # When each failure happened (seconds since the first call, why): to set them
    # beside the samples, e.g. a stall of the machine rather than of the B2BUA.
    failed_at: list[tuple[float, str]] = field(default_factory=list)
    t0: float = field(default_factory=time.monotonic)

    def fail(self, table: dict[str, int], why: str) -> None:
        table[why] = table.get(why, 0) + 1
        if len(self.failed_at) < 1000:
            self.failed_at.append((round(time.monotonic() - self.t0, 1), why))


class SoakSip(SipLoad):
    """SipLoad plus what the failed attempts need: responses to the phone's own requests,
    and a trunk that rings (180) on our outbound INVITE until it is cancelled (487)."""

    def __init__(
        self, media_ports: tuple[int, int], on_media: Callable[[int, str, str, int], None]
    ) -> None:
        super().__init__(media_ports, on_media)
        self.own: dict[str, asyncio.Queue[Response]] = {}  # phone UAC calls by Call-ID
        self.ringing: dict[str, tuple[Request, str]] = {}  # trunk UAS: INVITE, to-tag

    def _on_phone(self, data: bytes, addr: tuple[str, int]) -> None:
        msg = parse_message(data)
        if isinstance(msg, Response) and msg.call_id in self.own:
            self.own[msg.call_id].put_nowait(msg)
            return
        super()._on_phone(data, addr)

    def _on_trunk(self, data: bytes, addr: tuple[str, int]) -> None:
        msg = parse_message(data)
        if isinstance(msg, Request) and msg.call_id not in self.calls:
            if msg.method == "INVITE":  # our outbound call: ring, never answer
                invite, tag = self.ringing.setdefault(msg.call_id, (msg, secrets.token_hex(4)))
                self._send(self.trunk, make_response(invite, 180, to_tag=tag), addr)
                return
            if msg.method == "CANCEL" and msg.call_id in self.ringing:
                invite, tag = self.ringing[msg.call_id]
                self._send(self.trunk, make_response(msg, 200), addr)
                self._send(self.trunk, make_response(invite, 487, to_tag=tag), addr)
                return
            if msg.method == "ACK" and msg.call_id in self.ringing:
                del self.ringing[msg.call_id]
                return
        super()._on_trunk(data, addr)

    @staticmethod
    def _send(ep: Any, msg: Request | Response, addr: tuple[str, int]) -> None:
        assert ep is not None and ep.transport is not None
        ep.transport.sendto(msg.to_bytes(), addr)

    def forget(self, k: int) -> None:
        st = self.by_k.pop(k, None)
        if st is not None:
            self.calls.pop(st.call_id, None)


async def transact(
    send: Callable[[], None], queue: asyncio.Queue[Response], method: str, final: bool = True
) -> Response | None:
    """Sends until a response to `method` arrives (a final one when `final`); bounded."""
    for _ in range(RETRANSMITS):
        send()
        deadline = time.monotonic() + RETRANSMIT_S
        while (left := deadline - time.monotonic()) > 0:
            try:
                resp = await asyncio.wait_for(queue.get(), left)
            except TimeoutError:
                break
            if resp.cseq[1] == method and (resp.status >= 200 or not final):
                return resp
        # no (final) answer yet: send again
    return None


def _headers(
    method: str,
    cseq: int,
    call_id: str,
    local: tuple[str, int],
    from_: str,
    to: str,
    branch: str,
) -> list[tuple[str, str]]:
    return [
        ("Via", f"SIP/2.0/UDP {local[0]}:{local[1]};branch={branch};rport"),
        ("From", from_),
        ("To", to),
        ("Call-ID", call_id),
        ("CSeq", f"{cseq} {method}"),
        ("Max-Forwards", "70"),
    ]


async def wrong_password_register(sip: SoakSip, n: int, tally: Tally) -> None:
    """REGISTER for extension 1000 answered with a wrong password: must end in 401/403."""
    loop = asyncio.get_running_loop()
    host = f"127.0.1.{n % 250 + 1}"
    queue: asyncio.Queue[Response] = asyncio.Queue()

    class Proto(asyncio.DatagramProtocol):
        def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
            msg = parse_message(data)
            if isinstance(msg, Response):
                queue.put_nowait(msg)

    transport, _ = await loop.create_datagram_endpoint(Proto, local_addr=(host, 0))
    try:
        local = transport.get_extra_info("sockname")
        uri = URI("sip", None, host=sip.b2bua[0], port=sip.b2bua[1])
        aor = f"<sip:1000@{sip.b2bua[0]}:{sip.b2bua[1]}>"
        call_id, tag = f"soak-reg-{n}-{secrets.token_hex(4)}", secrets.token_hex(4)
        contact = ("Contact", f"<sip:1000@{local[0]}:{local[1]}>")

        def register(cseq: int, extra: list[tuple[str, str]]) -> Callable[[], None]:
            fields = _headers(
                "REGISTER",
                cseq,
                call_id,
                local,
                f"{aor};tag={tag}",
                aor,
                f"z9hG4bK{secrets.token_hex(8)}",
            )
            data = Request(
                "REGISTER", uri, Headers.of(*fields, contact, ("Expires", "60"), *extra)
            ).to_bytes()
            return lambda: transport.sendto(data, sip.b2bua)

        first = await transact(register(1, []), queue, "REGISTER")
        if first is None or first.status != 401:
            tally.fail(tally.register_other, f"first {first.status if first else 'timeout'}")
            return
        challenge = pick_challenge(first.headers.get_all("WWW-Authenticate"))
        assert challenge is not None
        auth = answer_challenge(
            challenge,
            method="REGISTER",
            uri=str(uri),
            username="1000",
            password="not-the-password",
            cnonce=secrets.token_hex(8),
        )
        second = await transact(register(2, [("Authorization", auth)]), queue, "REGISTER")
        if second is not None and second.status in (401, 403):
            tally.register_refused += 1
        else:  # a 200 here would be a hole in the digest check
            tally.fail(tally.register_other, f"answer {second.status if second else 'timeout'}")
    finally:
        transport.close()


async def cancelled_outbound(sip: SoakSip, n: int, tally: Tally) -> None:
    """The phone calls out (digest as extension 1000), the trunk rings, the phone cancels."""
    ep = sip.phone
    assert ep is not None and ep.transport is not None
    transport = ep.transport
    local = sip.phone_addr
    call_id, tag = f"soak-cancel-{n}-{secrets.token_hex(4)}", secrets.token_hex(4)
    queue: asyncio.Queue[Response] = asyncio.Queue()
    sip.own[call_id] = queue
    uri = URI("sip", OUTBOUND_NUMBER, host=sip.b2bua[0], port=sip.b2bua[1])
    from_ = f"<sip:1000@{local[0]}:{local[1]}>;tag={tag}"
    to = f"<sip:{OUTBOUND_NUMBER}@{sip.b2bua[0]}:{sip.b2bua[1]}>"
    body = sdp_body(local[0], sip.media_ports[1])
    try:

        def request(
            method: str,
            cseq: int,
            branch: str,
            to_: str = to,
            extra: tuple[tuple[str, str], ...] = (),
        ) -> bytes:
            fields = _headers(method, cseq, call_id, local, from_, to_, branch)
            if method == "INVITE":
                fields += [
                    ("Contact", f"<sip:1000@{local[0]}:{local[1]}>"),
                    ("Content-Type", "application/sdp"),
                ]
            return Request(
                method, uri, Headers.of(*fields, *extra), body if method == "INVITE" else b""
            ).to_bytes()

        def sender(data: bytes) -> Callable[[], None]:
            return lambda: transport.sendto(data, sip.b2bua)

        b1 = f"z9hG4bK{secrets.token_hex(8)}"
        first = await transact(sender(request("INVITE", 1, b1)), queue, "INVITE")
        if first is None or first.status != 401:
            tally.fail(tally.cancel_other, f"first {first.status if first else 'timeout'}")
            return
        transport.sendto(request("ACK", 1, b1, str(first.to_addr)), sip.b2bua)
        challenge = pick_challenge(first.headers.get_all("WWW-Authenticate"))
        assert challenge is not None
        auth = answer_challenge(
            challenge,
            method="INVITE",
            uri=str(uri),
            username="1000",
            password=PHONE_PASSWORD,
            cnonce=secrets.token_hex(8),
        )
        b2 = f"z9hG4bK{secrets.token_hex(8)}"
        invite = request("INVITE", 2, b2, extra=(("Authorization", auth),))
        ringing = await transact(sender(invite), queue, "INVITE", final=False)
        # 100 Trying first; wait (bounded) for the trunk's 180 to come through.
        for _ in range(20):
            if ringing is None or ringing.status >= 180:
                break
            try:
                ringing = await asyncio.wait_for(queue.get(), 0.25)
            except TimeoutError:
                continue
        if ringing is None or not 180 <= ringing.status < 200:
            tally.fail(tally.cancel_other, f"ring {ringing.status if ringing else 'timeout'}")
            return
        cancel = request("CANCEL", 2, b2)
        final: Response | None = None
        got_cancel_ok = False
        for _ in range(RETRANSMITS):  # until both the CANCEL's 200 and the INVITE's final
            transport.sendto(cancel, sip.b2bua)
            deadline = time.monotonic() + RETRANSMIT_S
            while (left := deadline - time.monotonic()) > 0 and not (final and got_cancel_ok):
                try:
                    resp = await asyncio.wait_for(queue.get(), left)
                except TimeoutError:
                    break
                if resp.cseq[1] == "CANCEL" and resp.status >= 200:
                    got_cancel_ok = True
                elif resp.cseq[1] == "INVITE" and resp.status >= 200:
                    final = resp
            if final is not None and got_cancel_ok:
                break
        if final is not None:
            transport.sendto(request("ACK", 2, b2, str(final.to_addr)), sip.b2bua)
        if final is not None and final.status == 487 and got_cancel_ok:
            tally.cancel_ok += 1
        else:
            tally.fail(tally.cancel_other, f"cancel {final.status if final else 'timeout'}")
    finally:
        await asyncio.sleep(0.5)  # late retransmissions still find the queue
        sip.own.pop(call_id, None)


@dataclass
class Soak:
    args: argparse.Namespace
    workdir: Path
    tally: Tally = field(default_factory=Tally)
    samples: list[dict[str, Any]] = field(default_factory=list)
    next_k: int = 0


async def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    soak = Soak(args, workdir)
    tally = soak.tally
    gen = await Gen.start()
    loop = asyncio.get_running_loop()

    def on_media(k: int, side: str, host: str, port: int) -> None:
        dtmf = f" {DTMF_DELAY_S}" if side == "a" and args.mode == "record" else ""
        gen.send(f"start {k % GEN_SLOTS} {side} {host} {port}{dtmf}")
        if side == "b":  # both streams run: count this call's packets for the loss figure
            loop.call_later(COUNT_DELAY_S, gen.send, f"count {k % GEN_SLOTS}")

    sip = SoakSip(gen.ports, on_media)
    await sip.open()
    sip_port = free_port("127.0.0.1")
    metrics_port = free_port("127.0.0.1")
    sip.b2bua = ("127.0.0.1", sip_port)
    config = write_config(workdir, sip_port, sip.trunk_addr, sip.phone_addr, args.mode)
    with config.open("a") as extra:  # [security] is load.py's last table: add to it
        extra.write(
            f'max_calls_per_source = 5000\n[metrics]\nlisten = "127.0.0.1:{metrics_port}"\n'
        )
    log = workdir / "b2bua.log"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if args.tracemalloc is not None:
        env["B2BUA_TRACEMALLOC"] = str(args.tracemalloc.resolve())
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            B2BUA,
            "serve",
            "--config",
            str(config),
            "--log-level",
            "warning",
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    pid = proc.pid
    t0 = time.monotonic()
    tally.t0 = t0  # failures are timed like the samples
    deadline = t0 + args.duration

    async def sample(phase: str) -> dict[str, Any]:
        mem = proc_mem_kib(pid)
        row = {
            "t_s": round(time.monotonic() - t0, 1),
            "phase": phase,
            "rss_kib": mem["VmRSS"],
            "fds": proc_fds(pid),
            "threads": proc_threads(pid),
            "active_calls": await healthz_calls(metrics_port),
            "catalog_rows": catalog_rows(workdir),
            "calls_ended": tally.ended,
        }
        soak.samples.append(row)
        return row

    async def worker() -> None:
        # Bounded: each round lasts at least the answer wait or min_s, until the deadline.
        while time.monotonic() < deadline:
            k = soak.next_k
            soak.next_k += 1
            tally.started += 1
            st = await sip.invite(k)
            if st.failed is None:
                try:
                    await asyncio.wait_for(st.bridged.wait(), BRIDGE_WAIT_S)
                except TimeoutError:
                    st.failed = st.failed or "not bridged"
            if st.failed is not None:
                tally.fail(tally.failed, st.failed)
                gen.send(f"stop {k % GEN_SLOTS}")
                if st.remote_target is not None:
                    await sip.bye(k)
                sip.forget(k)
                await asyncio.sleep(1.0)
                continue
            tally.bridged += 1
            hold = random.uniform(args.min_s, args.max_s)
            await asyncio.sleep(max(0.0, min(hold, deadline - time.monotonic())))
            gen.send(f"uncount {k % GEN_SLOTS}")  # packets in flight still arrive
            await asyncio.sleep(COUNT_DELAY_S)
            gen.send(f"stop {k % GEN_SLOTS}")
            await sip.bye(k)
            if st.failed is not None:
                tally.fail(tally.failed, st.failed)
            else:
                tally.ended += 1
            sip.forget(k)

    async def failures() -> None:
        n = 0
        await asyncio.sleep(min(10.0, args.duration / 4))
        while time.monotonic() < deadline:  # bounded by the deadline
            await asyncio.gather(
                wrong_password_register(sip, n, tally), cancelled_outbound(sip, n, tally)
            )
            n += 1
            await asyncio.sleep(max(0.0, min(FAIL_EVERY_S, deadline - time.monotonic())))

    async def sampler() -> None:
        while time.monotonic() < deadline:  # bounded by the deadline
            await sample("load")
            await asyncio.sleep(max(0.0, min(args.sample_s, deadline - time.monotonic())))

    warm_dumped = False

    async def tracemalloc_mark() -> None:
        nonlocal warm_dumped
        await asyncio.sleep(args.warmup_s)
        if args.tracemalloc is not None and proc.returncode is None:
            os.kill(pid, signal.SIGUSR1)
            warm_dumped = True

    try:
        await wait_serving(log, proc)
        await asyncio.sleep(1.0)
        baseline = await sample("baseline")
        tasks = [asyncio.create_task(worker()) for _ in range(args.calls)]
        tasks += [asyncio.create_task(failures()), asyncio.create_task(sampler())]
        tasks.append(asyncio.create_task(tracemalloc_mark()))
        await asyncio.wait_for(asyncio.gather(*tasks), args.duration + args.max_s + 120)
        await asyncio.sleep(args.idle_s)  # retransmission timers, relay ports, sealing
        idle = await sample("idle")
        if args.tracemalloc is not None:
            os.kill(pid, signal.SIGUSR1)
            await asyncio.sleep(5.0)  # the dump takes a while under tracing
        log_tail = log.read_text(errors="replace")[-3000:]
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), 60)
        except TimeoutError:
            proc.kill()
            await proc.wait()
        sip.close()
    stats = await gen.finish()
    return {
        "mode": args.mode,
        "duration_s": args.duration,
        "concurrent_calls": args.calls,
        "hold_s": [args.min_s, args.max_s],
        "calls": {
            "started": tally.started,
            "bridged": tally.bridged,
            "ended_ok": tally.ended,
            "failed": tally.failed,
            "failed_at_s": tally.failed_at,
        },
        "failed_attempts": {
            "wrong_password_register_refused": tally.register_refused,
            "wrong_password_register_unexpected": tally.register_other,
            "cancel_before_answer_487": tally.cancel_ok,
            "cancel_unexpected": tally.cancel_other,
        },
        "rtp": {k: stats.get(k) for k in ("loss_pct", "latency_ms")},
        "b2bua_exit": proc.returncode,
        "fit": verdict(soak.samples, baseline, idle, args),
        "tracemalloc": str(args.tracemalloc) if args.tracemalloc and warm_dumped else None,
        "samples": soak.samples,
        "log_tail": log_tail if proc.returncode not in (0, None) else None,
    }


def fit(xs_s: list[float], ys: list[float]) -> float:
    """Least-squares slope per hour."""
    if len(xs_s) < 3:
        return 0.0
    return float(np.polyfit(np.array(xs_s), np.array(ys, dtype=np.float64), 1)[0]) * 3600


def verdict(
    samples: list[dict[str, Any]],
    baseline: dict[str, Any],
    idle: dict[str, Any],
    args: argparse.Namespace,
) -> dict[str, Any]:
    steady = [s for s in samples if s["phase"] == "load" and s["t_s"] >= args.warmup_s]
    xs = [s["t_s"] for s in steady]
    rss = [s["rss_kib"] for s in steady]
    rss_slope = fit(xs, rss)
    fd_slope = fit(xs, [s["fds"] for s in steady])
    mean_rss = float(np.mean(rss)) if rss else 0.0
    pct = 100 * rss_slope / mean_rss if mean_rss else 0.0
    ended = [s["calls_ended"] for s in steady]
    calls_in_fit = (ended[-1] - ended[0]) if ended else 0
    rss_delta = (rss[-1] - rss[0]) if rss else 0
    rss_ok = pct < args.max_rss_pct_per_h
    fds_ok = abs(idle["fds"] - baseline["fds"]) <= args.fd_slack
    return {
        "warmup_s": args.warmup_s,
        "samples_in_fit": len(steady),
        "rss_kib_baseline": baseline["rss_kib"],
        "rss_kib_after_warmup": rss[0] if rss else None,
        "rss_kib_end_of_load": rss[-1] if rss else None,
        "rss_kib_idle": idle["rss_kib"],
        "rss_growth_kib_per_h": round(rss_slope, 1),
        "rss_growth_pct_per_h": round(pct, 2),
        "calls_ended_in_fit": calls_in_fit,
        "rss_kib_per_ended_call": round(rss_delta / calls_in_fit, 2) if calls_in_fit else None,
        "fds_baseline": baseline["fds"],
        "fds_idle": idle["fds"],
        "fds_growth_per_h": round(fd_slope, 2),
        "threads_baseline": baseline["threads"],
        "threads_idle": idle["threads"],
        "active_calls_idle": idle["active_calls"],
        "thresholds": {"rss_pct_per_h": args.max_rss_pct_per_h, "fd_slack": args.fd_slack},
        "rss_ok": rss_ok,
        "fds_ok": fds_ok,
        "pass": rss_ok and fds_ok and idle["active_calls"] in (0, None),
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--duration", type=float, default=3600.0, help="seconds of load")
    p.add_argument("--calls", type=int, default=20, help="concurrent calls")
    p.add_argument("--min-s", type=float, default=5.0, help="shortest call")
    p.add_argument("--max-s", type=float, default=60.0, help="longest call")
    p.add_argument("--mode", choices=["record", "off"], default="record")
    p.add_argument("--sample-s", type=float, default=10.0, help="sampling interval")
    p.add_argument("--warmup-s", type=float, help="left out of the fit (default: 10 %%, <= 600)")
    p.add_argument("--idle-s", type=float, default=8.0, help="wait after the last call")
    p.add_argument("--max-rss-pct-per-h", type=float, default=5.0)
    p.add_argument("--fd-slack", type=int, default=5)
    p.add_argument("--tracemalloc", type=Path, help="serve dumps allocation growth here")
    p.add_argument("--out", type=Path, help="also write the JSON here")
    p.add_argument("--keep", action="store_true", help="keep the work directory")
    args = p.parse_args(argv)
    if not 0 < args.duration <= MAX_DURATION_S:
        p.error(f"--duration must be in (0, {MAX_DURATION_S}]")
    if not 0 < args.min_s <= args.max_s:
        p.error("need 0 < --min-s <= --max-s")
    if not 1 <= args.calls < GEN_SLOTS // 2:
        p.error("--calls out of range")
    if args.warmup_s is None:
        args.warmup_s = min(600.0, max(args.max_s, args.duration / 10))
    return args


def main() -> None:
    args = parse_args()
    work = Path(tempfile.mkdtemp(prefix="b2bua-soak-"))
    try:
        result = asyncio.run(run(args, work))
    finally:
        if not args.keep:
            subprocess.run(["rm", "-rf", str(work)], check=False)
    result["workdir"] = str(work) if args.keep else None
    text = json.dumps(result, indent=1)
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n")
    sys.exit(0 if result["fit"]["pass"] else 1)


if __name__ == "__main__":
    main()
