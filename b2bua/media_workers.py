"""Media worker processes: the SIP process's side (``[rtp] workers = N``, N > 0).

Theory of operation. SIP stays in one process; RTP relaying, prompts, consent listening
and recording move to N worker processes (b2bua/media_worker.py), so a second core
relays and records while the first handles signalling. `WorkerPool` is both the
`MediaControl` and the `RecordingControl` the switch talks to (b2bua/media_control.py):
call logic does not know whether its media is local or in a worker.

- **A call lives in one worker**: both legs must be bridged and tapped in the same
  relay. The worker of a call is chosen when its first leg opens (the least loaded live
  worker, by open legs); the call id is the leg id up to its last "-" (call.py and
  transfer.py name legs ``<call id>-a``, ``-b``, ``-t<hex>``).
- **Each worker owns a slice of the RTP port range** (the range split in N equal
  parts). The SIP process binds a leg's RTP and RTCP sockets from that slice itself, so
  `port` is known at once for the SDP, and hands the sockets over (SCM_RIGHTS) with the
  "open" message; the worker never binds.
- **Commands** go one way as messages (b2bua/worker_channel.py); nothing waits for an
  answer. **Events** come back: the hub's digits and "prompt finished" (`on_event`, as
  the in-process hub's), a leg's media inactivity (the leg's `on_inactive`), the catalog
  id of each recording started, and once a second the worker's counters for /metrics
  and /status.
- **A worker that dies** (crash, kill) is noticed by end of file on its channel: each of
  its calls is told its media is gone (the same inactivity report, so the call is ended
  with BYE on both sides), the recordings it was writing are recovered like after a
  crash of the whole server (b2bua/archive/recovery.py, limited to those recordings), and
  a new worker takes its slice of ports. Restarts are bounded (`MAX_RESTARTS` per
  `RESTART_WINDOW_S`).
- **Shutdown**: "shutdown" to every worker; each seals its recordings and says "bye";
  workers still running after `STOP_TIMEOUT_S` are killed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from b2bua.archive.catalog import Catalog
from b2bua.archive.recovery import recover
from b2bua.config import Config
from b2bua.consent import ConsentRecord
from b2bua.recording_hub import HubEvent
from b2bua.worker_channel import Channel, Message, channel_pair
from rtp.ports import PortAllocator, PortsExhaustedError
from rtp.relay import LegCounters, MediaFormat, bind_pair
from rtp.srtp import SrtpLeg

log = logging.getLogger("b2bua.workers")

Addr = tuple[str, int]
STOP_TIMEOUT_S = 15.0
MAX_RESTARTS = 5
RESTART_WINDOW_S = 60.0


@dataclass
class Worker:
    """One worker process as the SIP process sees it."""

    index: int
    ports: PortAllocator
    process: subprocess.Popen[bytes] | None = None
    channel: Channel | None = None
    alive: bool = False
    legs: dict[str, WorkerLeg] = field(default_factory=dict)
    recordings: dict[str, str] = field(default_factory=dict)  # call id -> catalog id
    stats: dict[str, Any] = field(default_factory=dict)
    closed_rtp: LegCounters = field(default_factory=LegCounters)  # of dead incarnations
    said_bye: bool = False


class WorkerLeg:
    """A relay leg in a worker (the `MediaLeg` protocol): every call becomes a message."""

    def __init__(
        self,
        pool: WorkerPool,
        worker: Worker,
        leg_id: str,
        port: int,
        on_inactive: Callable[[str], None],
    ) -> None:
        self.leg_id = leg_id
        self.worker = worker
        self.on_inactive = on_inactive
        self.closed = False
        # The last remote and format sent to the worker: what the SIP process can tell
        # about the leg (the worker's latch and counters stay in the worker).
        self.remote: Addr | None = None
        self.fmt: MediaFormat | None = None
        self._pool = pool
        self._port = port

    @property
    def port(self) -> int:
        return self._port

    def set_remote(self, remote: Addr | None, fmt: MediaFormat | None = None) -> None:
        self.remote = remote
        if fmt is not None:
            self.fmt = fmt
        self._send(("set_remote", self.leg_id, remote, fmt))

    def hold(self) -> None:
        self._send(("hold", self.leg_id))

    def resume(self) -> None:
        self._send(("resume", self.leg_id))

    def set_srtp(self, srtp: SrtpLeg | None) -> None:
        keys = None if srtp is None else (srtp.inbound_key, srtp.outbound_key)
        self._send(("set_srtp", self.leg_id, keys))

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._pool._send(self.worker, ("close", self.leg_id))
        self._pool._leg_closed(self)

    def _send(self, message: Message) -> None:
        if not self.closed:
            self._pool._send(self.worker, message)


class WorkerPool:
    """`MediaControl` + `RecordingControl` over media worker processes."""

    def __init__(
        self,
        config: Config,
        recipients: tuple[str, ...],
        loop: asyncio.AbstractEventLoop,
        *,
        count: int,
        prompt_sha256: Mapping[str, str] | None = None,
    ) -> None:
        if count < 1:
            raise ValueError("a worker pool needs at least one worker")
        self.config = config
        self.recipients = recipients
        self.ip = config.rtp.public_address or config.rtp.bind
        self.on_event: Callable[[HubEvent], None] | None = None
        self.prompt_sha256 = dict(prompt_sha256 or {})
        self.restarts = 0
        self._loop = loop
        self._bind_ip = config.rtp.bind
        self._call_worker: dict[str, Worker] = {}
        self._call_legs: dict[str, int] = {}  # open legs per call: the mapping's lifetime
        self._restart_times: list[float] = []
        self._closing = False
        self.workers = [
            Worker(i, PortAllocator(lo, hi))
            for i, (lo, hi) in enumerate(
                split_range(config.rtp.port_min, config.rtp.port_max, count)
            )
        ]

    # -- lifecycle --------------------------------------------------------------------
    async def start(self, timeout: float = 30.0) -> None:
        """Start every worker and wait (bounded) until each has said "ready"."""
        for worker in self.workers:
            self._spawn(worker)
        deadline = time.monotonic() + timeout
        while not all(w.alive for w in self.workers):
            if time.monotonic() > deadline:
                raise RuntimeError("media workers did not start in time")
            await asyncio.sleep(0.02)

    def _spawn(self, worker: Worker) -> None:
        parent, child = channel_pair()
        worker.said_bye = False
        worker.alive = False
        # -P: `-m` would otherwise put the working directory first on sys.path, and a
        # `b2bua` or `media` folder there would be imported in place of ours (3.11+).
        worker.process = subprocess.Popen(  # noqa: S603 -- our own module, our interpreter
            [sys.executable, "-P", "-m", "b2bua.media_worker", str(child.fileno())],
            pass_fds=(child.fileno(),),
        )
        child.close()
        channel = Channel(
            parent,
            self._loop,
            lambda msg, fds: self._on_message(worker, msg, fds),
            lambda: self._on_closed(worker, channel),
        )
        worker.channel = channel
        level = logging.getLevelName(logging.getLogger().getEffectiveLevel())
        channel.send(("init", worker.index, self.config, self.recipients, level))

    async def close(self) -> None:
        """Every worker seals its recordings and exits (bounded by `STOP_TIMEOUT_S`)."""
        self._closing = True
        for worker in self.workers:
            self._send(worker, ("shutdown",))
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for worker in self.workers:
            process = worker.process
            if process is None:
                continue
            while process.poll() is None and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            if process.poll() is None:
                log.error("event=worker_kill worker=%d pid=%d", worker.index, process.pid)
                process.kill()
                await asyncio.to_thread(process.wait, 5)
            if worker.channel is not None:
                worker.channel.close()

    # -- MediaControl -----------------------------------------------------------------
    def open_leg(self, leg_id: str, on_inactive: Callable[[str], None]) -> WorkerLeg:
        if any(leg_id in w.legs for w in self.workers):
            raise ValueError(f"leg {leg_id!r} already open")
        call_id = _call_of(leg_id)
        worker = self._call_worker.get(call_id)
        if worker is None or not worker.alive:
            worker = self._least_loaded()
            self._call_worker[call_id] = worker
        port, fds = self._bind_pair(worker)
        self._call_legs[call_id] = self._call_legs.get(call_id, 0) + 1
        leg = WorkerLeg(self, worker, leg_id, port, on_inactive)
        worker.legs[leg_id] = leg
        self._send(worker, ("open", leg_id, self._bind_ip, port), fds)
        return leg

    def bridge(self, a: Any, b: Any) -> None:
        assert isinstance(a, WorkerLeg)
        assert isinstance(b, WorkerLeg)
        if a.worker is not b.worker:
            raise ValueError(f"legs {a.leg_id} and {b.leg_id} are in different workers")
        self._send(a.worker, ("bridge", a.leg_id, b.leg_id))

    def unbridge(self, a: Any) -> None:
        assert isinstance(a, WorkerLeg)
        self._send(a.worker, ("unbridge", a.leg_id))

    def _least_loaded(self) -> Worker:
        live = [w for w in self.workers if w.alive]
        if not live:
            raise PortsExhaustedError("no media worker is running")
        return min(live, key=lambda w: (len(w.legs), w.index))

    def _bind_pair(self, worker: Worker) -> tuple[int, list[int]]:
        port, rtp, rtcp = bind_pair(self._bind_ip, worker.ports)
        return port, [rtp.detach(), rtcp.detach()]  # the channel owns them now

    def _leg_closed(self, leg: WorkerLeg) -> None:
        worker = leg.worker
        if worker.legs.pop(leg.leg_id, None) is None:
            return
        worker.ports.release(leg.port)
        call_id = _call_of(leg.leg_id)
        left = self._call_legs.get(call_id, 1) - 1
        if left > 0:
            self._call_legs[call_id] = left
        else:
            self._call_legs.pop(call_id, None)
            self._call_worker.pop(call_id, None)

    # -- RecordingControl ---------------------------------------------------------------
    def _call(self, call_id: str, message: Message) -> None:
        worker = self._call_worker.get(call_id)
        if worker is not None:
            self._send(worker, message)

    def open_call(
        self,
        call_id: str,
        *,
        external: Any,
        direction: str,
        caller: str,
        callee: str,
        extension: str | None,
        sip_call_id: str,
    ) -> None:
        assert isinstance(external, WorkerLeg)
        details = {
            "direction": direction,
            "caller": caller,
            "callee": callee,
            "extension": extension,
            "sip_call_id": sip_call_id,
        }
        self._call_worker.setdefault(call_id, external.worker)
        self._send(external.worker, ("open_call", call_id, external.leg_id, details))

    def set_office_leg(self, call_id: str, office: Any) -> None:
        assert isinstance(office, WorkerLeg)
        self._call(call_id, ("set_office_leg", call_id, office.leg_id))

    def play(self, call_id: str, name: str, now: float) -> None:
        self._call(call_id, ("play", call_id, name))

    def stop_prompt(self, call_id: str) -> None:
        self._call(call_id, ("stop_prompt", call_id))

    def consent_decided(self, call_id: str, record: ConsentRecord) -> None:
        self._call(call_id, ("consent_decided", call_id, record))

    def start_recording(self, call_id: str, now: float, metadata: Mapping[str, Any]) -> None:
        self._call(call_id, ("start_recording", call_id, dict(metadata)))

    def pause(self, call_id: str, now: float) -> None:
        self._call(call_id, ("pause", call_id))

    def resume(self, call_id: str, now: float) -> None:
        self._call(call_id, ("resume_recording", call_id))

    def stop_recording(self, call_id: str, now: float) -> object:
        self._call(call_id, ("stop_recording", call_id))
        return None  # the result stays in the worker (callers do not use it)

    def call_ended(self, call_id: str, now: float, reason: str) -> object:
        worker = self._call_worker.get(call_id)
        if worker is not None:
            worker.recordings.pop(call_id, None)
        self._call(call_id, ("call_ended", call_id, reason))
        return None

    def configure(
        self, recipients: tuple[str, ...], mute: bool, language: str, announcement: Any
    ) -> None:
        """A reload: new recipients, muting and prompts for calls from now on."""
        self.recipients = recipients
        for worker in self.workers:
            self._send(worker, ("configure", recipients, mute, language, announcement))

    # -- what /metrics and /status read -------------------------------------------------
    @property
    def leg_count(self) -> int:
        return sum(len(w.legs) for w in self.workers)

    def rtp_totals(self) -> LegCounters:
        """Counters of every worker's last report, plus those of dead incarnations."""
        totals = LegCounters()
        for worker in self.workers:
            rtp = worker.stats.get("rtp", {})
            for name in LegCounters.__slots__:
                value = rtp.get(name, 0) + getattr(worker.closed_rtp, name)
                setattr(totals, name, getattr(totals, name) + value)
        return totals

    @property
    def consent_outcomes(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for worker in self.workers:
            for result, count in worker.stats.get("consent_outcomes", {}).items():
                out[result] = out.get(result, 0) + count
        return out

    @property
    def recordings_written(self) -> int:
        return sum(int(w.stats.get("recordings_written", 0)) for w in self.workers)

    def recording_calls(self) -> set[str]:
        return {c for w in self.workers for c in w.stats.get("recording", ())}

    # -- messages from workers ----------------------------------------------------------
    def _send(self, worker: Worker, message: Message, fds: list[int] | None = None) -> None:
        channel = worker.channel
        if channel is None:
            for fd in fds or ():
                with contextlib.suppress(OSError):
                    os.close(fd)
            return
        channel.send(message, fds or ())

    def _on_message(self, worker: Worker, message: Message, fds: list[int]) -> None:
        for fd in fds:  # workers never send descriptors
            with contextlib.suppress(OSError):
                os.close(fd)
        kind = message[0]
        if kind == "hub":
            if self.on_event is not None:
                self.on_event(message[1])
        elif kind == "inactive":
            leg = worker.legs.get(message[1])
            if leg is not None:
                leg.on_inactive(leg.leg_id)
        elif kind == "recording":
            worker.recordings[message[1]] = message[2]
        elif kind == "stats":
            worker.stats = message[1]
        elif kind == "ready":
            worker.alive = True
            log.info("event=worker_ready worker=%d pid=%d", worker.index, message[2])
        elif kind == "bye":
            worker.said_bye = True
        else:
            log.error("event=worker_unknown_event worker=%d kind=%s", worker.index, kind)

    def _on_closed(self, worker: Worker, channel: Channel) -> None:
        if worker.channel is not channel:
            return  # an earlier incarnation's channel
        worker.alive = False
        worker.channel = None
        if self._closing and worker.said_bye:
            return
        pid = worker.process.pid if worker.process is not None else -1
        log.error(
            "event=worker_died worker=%d pid=%d legs=%d recordings=%d",
            worker.index,
            pid,
            len(worker.legs),
            len(worker.recordings),
        )
        self._loop.create_task(self._after_death(worker))

    async def _after_death(self, worker: Worker) -> None:
        process = worker.process
        if process is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                await asyncio.to_thread(process.wait, 5)
        rtp = worker.stats.get("rtp", {})
        for name in LegCounters.__slots__:
            setattr(worker.closed_rtp, name, getattr(worker.closed_rtp, name) + rtp.get(name, 0))
        worker.stats = {}
        # Its calls lost their media: end them as a media timeout would (BYE both sides).
        for leg in list(worker.legs.values()):
            if not leg.closed:
                leg.on_inactive(leg.leg_id)
        for leg in list(worker.legs.values()):
            leg.closed = True  # its sockets died with the process; the ports are free
            self._leg_closed(leg)
        ids = set(worker.recordings.values())
        worker.recordings.clear()
        if ids and self.config.recording.mode != "off":
            await asyncio.to_thread(self._recover, ids)
        if self._closing:
            return
        now = time.monotonic()
        self._restart_times = [t for t in self._restart_times if now - t < RESTART_WINDOW_S]
        if len(self._restart_times) >= MAX_RESTARTS:
            log.critical("event=worker_not_restarted worker=%d reason=restarts", worker.index)
            return
        self._restart_times.append(now)
        self.restarts += 1
        self._spawn(worker)

    def _recover(self, ids: set[str]) -> None:
        catalog = Catalog.open(self.config.recording.directory)
        try:
            for item in recover(catalog, time.time(), source="worker-recovery", only=ids):
                log.warning("event=recovered_recording detail=%s", item)
        finally:
            catalog.close()


def _call_of(leg_id: str) -> str:
    """``<call id>-a`` -> ``<call id>`` (the naming of call.py and transfer.py)."""
    return leg_id.rpartition("-")[0] or leg_id


def split_range(lo: int, hi: int, parts: int) -> list[tuple[int, int]]:
    """`lo`..`hi` (inclusive) in `parts` slices of whole even/odd pairs, in order."""
    first = lo + (lo & 1)
    pairs = (hi - first + 1) // 2
    if pairs < parts:
        raise ValueError(f"RTP port range {lo}-{hi} has fewer pairs than {parts} workers")
    out = []
    start = first
    for i in range(parts):
        count = pairs // parts + (1 if i < pairs % parts else 0)
        out.append((start, start + 2 * count - 1))
        start += 2 * count
    return out
