"""A media worker process: relay legs and recordings of the calls it was given.

`b2bua serve` with ``[rtp] workers = N`` (N > 0) starts N of these
(``python -m b2bua.media_worker FD``) and keeps SIP in its own process
(b2bua/media_workers.py has the SIP side and the message list). A worker runs its own
uvloop with a `MediaRelay` and a `RecordingHub` exactly as the single-process server does;
only the commands come over the channel instead of from the switch, and the hub's
events and the relay's inactivity reports go back over it.

Its RTP sockets are bound by the SIP process (so the SIP process knows the port at once
and bind errors stay where the SDP is written) and handed over with the "open" message;
the worker never binds. It writes the recordings of its calls and their catalog rows
itself (its own catalog writer thread: SQLite in WAL mode takes writers of several
processes). Every second it reports its counters for /metrics and /status.

It exits when the channel closes (the SIP process went away) or on "shutdown", after
sealing every open recording.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import sys
from collections.abc import Mapping
from typing import Any

from b2bua.archive.catalog import Catalog
from b2bua.archive.catalog_writer import CatalogWriter
from b2bua.archive.retention import RetentionPolicy
from b2bua.config import Config
from b2bua.logs import setup_logging
from b2bua.recording_hub import HubEvent, RecordingHub, load_prompts
from b2bua.router import number_plan
from b2bua.worker_channel import Channel, Message
from rtp.relay import Bridge, LegCounters, MediaFormat, MediaRelay, RelayLeg, new_event_loop
from rtp.srtp import SrtpKey, SrtpLeg

log = logging.getLogger("b2bua.worker")

STATS_EVERY_S = 1.0


class _NoPorts:
    """The worker's relay never allocates: its sockets come bound from the SIP process."""

    def allocate(self) -> int:
        raise RuntimeError("a media worker does not bind ports")

    def release(self, port: int) -> None:
        pass


class MediaWorker:
    """Executes the SIP process's media commands on a local relay and hub."""

    def __init__(self, channel_sock: socket.socket, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.relay: MediaRelay | None = None
        self.hub: RecordingHub | None = None
        self.bridges: dict[str, Bridge] = {}
        self.done = asyncio.Event()
        self.index = -1
        self._closing = False
        self.channel = Channel(channel_sock, loop, self._on_message, self._on_closed)
        self._stats_task: asyncio.Task[None] | None = None

    # -- messages ---------------------------------------------------------------------
    def _on_message(self, message: Message, fds: list[int]) -> None:
        kind = message[0]
        handler = getattr(self, "_do_" + kind, None)
        if handler is None:
            log.error("event=worker_unknown_command kind=%s", kind)
            for fd in fds:
                os.close(fd)
            return
        if kind == "open":
            handler(*message[1:], fds=fds)
        else:
            handler(*message[1:])

    def _on_closed(self) -> None:
        if not self._closing:
            log.warning("event=worker_channel_closed worker=%d", self.index)
            self.loop.create_task(self._shutdown())

    def _do_init(
        self, index: int, config: Config, recipients: tuple[str, ...], log_level: str
    ) -> None:
        self.index = index
        setup_logging(config.log.format, log_level)  # the SIP process's level (--log-level)
        self.relay = MediaRelay(
            config.rtp.bind,
            _NoPorts(),  # type: ignore[arg-type]
            inactivity_timeout=config.rtp.inactivity_timeout_s,
            loop=self.loop,
        )
        rec = config.recording
        if rec.mode != "off":
            directory = rec.directory
            policy = RetentionPolicy.from_config(rec)
            plan = number_plan(config)

            def open_catalog() -> Catalog:
                opened = Catalog.open(directory, policy=policy)
                opened.normalise = plan.e164
                return opened

            self.hub = RecordingHub(
                directory=directory,
                recipients=recipients,
                prompts=load_prompts(rec.language, rec.announcement),
                catalog=CatalogWriter(open_catalog, directory),
                mute_inband_dtmf=rec.mute_inband_dtmf,
                on_event=self._hub_event,
            )
            self.hub.start()
        self._stats_task = self.loop.create_task(self._report_stats())
        self.channel.send(("ready", index, os.getpid()))

    def _do_configure(
        self, recipients: tuple[str, ...], mute: bool, language: str, announcement: Any
    ) -> None:
        hub = self.hub
        if hub is None:
            return
        hub.recipients = recipients
        hub.mute_inband_dtmf = mute
        hub.prompts = load_prompts(language, announcement)

    def _do_open(self, leg_id: str, ip: str, port: int, *, fds: list[int]) -> None:
        assert self.relay is not None
        rtp_sock = socket.socket(fileno=fds[0])
        rtcp_sock = socket.socket(fileno=fds[1])
        for sock in (rtp_sock, rtcp_sock):
            sock.setblocking(False)
        leg = RelayLeg(
            self.relay,
            leg_id=leg_id,
            address=(ip, port),
            rtp_sock=rtp_sock,
            rtcp_sock=rtcp_sock,
            fmt=MediaFormat(),
            remote=None,
            on_inactive=self._inactive,
        )
        self.relay.legs[leg_id] = leg

    def _leg(self, leg_id: str) -> RelayLeg | None:
        return None if self.relay is None else self.relay.legs.get(leg_id)

    def _do_set_remote(
        self, leg_id: str, remote: tuple[str, int] | None, fmt: MediaFormat | None
    ) -> None:
        leg = self._leg(leg_id)
        if leg is not None:
            leg.set_remote(remote, fmt)

    def _do_hold(self, leg_id: str) -> None:
        leg = self._leg(leg_id)
        if leg is not None:
            leg.hold()

    def _do_resume(self, leg_id: str) -> None:
        leg = self._leg(leg_id)
        if leg is not None:
            leg.resume()

    def _do_set_srtp(self, leg_id: str, keys: tuple[SrtpKey, SrtpKey] | None) -> None:
        leg = self._leg(leg_id)
        if leg is not None:
            leg.set_srtp(None if keys is None else SrtpLeg(*keys))

    def _do_close(self, leg_id: str) -> None:
        self._unbridge(leg_id)
        leg = self._leg(leg_id)
        if leg is not None:
            leg.close()

    def _do_bridge(self, a_id: str, b_id: str) -> None:
        a, b = self._leg(a_id), self._leg(b_id)
        if a is None or b is None:
            log.error("event=worker_bridge_unknown_leg a=%s b=%s", a_id, b_id)
            return
        bridge = Bridge(a, b)
        self.bridges[a_id] = bridge
        self.bridges[b_id] = bridge

    def _do_unbridge(self, leg_id: str) -> None:
        self._unbridge(leg_id)

    def _unbridge(self, leg_id: str) -> None:
        bridge = self.bridges.pop(leg_id, None)
        if bridge is None:
            return
        self.bridges.pop(bridge.a.leg_id, None)
        self.bridges.pop(bridge.b.leg_id, None)
        bridge.unbridge()

    # The recording commands carry the SIP process's loop time; both processes read the
    # same CLOCK_MONOTONIC, but the worker's own clock is the one its hub paces with.
    def _do_open_call(self, call_id: str, external_id: str, details: Mapping[str, Any]) -> None:
        leg = self._leg(external_id)
        if self.hub is not None and leg is not None:
            self.hub.open_call(call_id, external=leg, **details)

    def _do_set_office_leg(self, call_id: str, office_id: str) -> None:
        leg = self._leg(office_id)
        if self.hub is not None and leg is not None:
            self.hub.set_office_leg(call_id, leg)

    def _do_play(self, call_id: str, name: str) -> None:
        if self.hub is not None:
            self.hub.play(call_id, name, self.loop.time())

    def _do_stop_prompt(self, call_id: str) -> None:
        if self.hub is not None:
            self.hub.stop_prompt(call_id)

    def _do_consent_decided(self, call_id: str, record: Any) -> None:
        if self.hub is not None:
            self.hub.consent_decided(call_id, record)

    def _do_start_recording(self, call_id: str, metadata: Mapping[str, Any]) -> None:
        hub = self.hub
        if hub is None:
            return
        hub.start_recording(call_id, self.loop.time(), metadata)
        media = hub.calls.get(call_id)
        if media is not None and media.catalog_id is not None:
            # The SIP process recovers this file if this worker dies mid-call.
            self.channel.send(("recording", call_id, media.catalog_id))

    def _do_pause(self, call_id: str) -> None:
        if self.hub is not None:
            self.hub.pause(call_id, self.loop.time())

    def _do_resume_recording(self, call_id: str) -> None:
        if self.hub is not None:
            self.hub.resume(call_id, self.loop.time())

    def _do_stop_recording(self, call_id: str) -> None:
        if self.hub is not None:
            self.hub.stop_recording(call_id, self.loop.time())

    def _do_call_ended(self, call_id: str, reason: str) -> None:
        if self.hub is not None:
            self.hub.call_ended(call_id, self.loop.time(), reason)

    def _do_shutdown(self) -> None:
        self.loop.create_task(self._shutdown())

    def _do_crash(self) -> None:
        """Tests only: die as a crash would (no sealing, no goodbye)."""
        os._exit(70)

    # -- events back ------------------------------------------------------------------
    def _hub_event(self, event: HubEvent) -> None:
        self.channel.send(("hub", event))

    def _inactive(self, leg: RelayLeg) -> None:
        self.channel.send(("inactive", leg.leg_id))

    async def _report_stats(self) -> None:
        while True:
            await asyncio.sleep(STATS_EVERY_S)
            self.channel.send(("stats", self.stats()))

    def stats(self) -> dict[str, Any]:
        relay, hub = self.relay, self.hub
        totals = relay.totals() if relay is not None else LegCounters()
        return {
            "legs": len(relay.legs) if relay is not None else 0,
            "rtp": {name: getattr(totals, name) for name in LegCounters.__slots__},
            "consent_outcomes": dict(hub.consent_outcomes) if hub is not None else {},
            "recordings_written": hub.recordings_written if hub is not None else 0,
            "recording": sorted(hub.recording_calls()) if hub is not None else [],
        }

    async def _shutdown(self) -> None:
        if self._closing:
            return
        self._closing = True
        if self._stats_task is not None:
            self._stats_task.cancel()
        if self.hub is not None:
            await self.hub.close(self.loop.time())  # seals every recording
        if self.relay is not None:
            self.relay.close()
        if not self.channel.closed:
            self.channel.send(("stats", self.stats()))
            self.channel.send(("bye",))
            # Bounded: let the last messages leave (at most 2 s).
            for _ in range(200):
                if not self.channel.pending or self.channel.closed:
                    break
                await asyncio.sleep(0.01)
        self.done.set()


async def _main(fd: int) -> int:
    loop = asyncio.get_running_loop()
    # SIGINT/SIGTERM reach the whole process group from a terminal: the SIP process
    # decides when media stops (it says "shutdown" after its calls ended).
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(sig, lambda: None)
    worker = MediaWorker(socket.socket(fileno=fd), loop)
    await worker.done.wait()
    return 0


def main(argv: list[str]) -> int:
    # Until "init" brings the SIP process's log settings.
    logging.basicConfig(level="INFO", format="%(asctime)s %(levelname)s %(name)s %(message)s")
    from b2bua.serve import tune_gc

    loop = new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        tune_gc()
        return loop.run_until_complete(_main(int(argv[0])))
    finally:
        loop.close()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
