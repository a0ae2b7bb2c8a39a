"""`b2bua serve`: the asyncio process around the sans-I/O switch.

Theory of operation: load the config (errors exit 2 before anything binds), bind the
SIP transport and the RTP relay, run the switch through a CoreRunner, and stop cleanly on
SIGTERM or SIGINT. The relay runs on the same (uvloop) event loop; its inactivity
callbacks wake the runner so the switch can end silent calls. SIGHUP reloads the config
without touching running calls (b2bua/reload.py); `[metrics] listen` adds the HTTP
endpoint for /metrics, /healthz and /status on the same loop (b2bua/ops.py).
A trunk host name is resolved by a background task (b2bua/trunk_dns.py, RFC 3263) that
hands each new list of servers to the switch's trunk monitor.

The guard (b2bua/guard.py) screens every source: the transport asks it before parsing,
the switch before handling, and the registrar reports failed digest checks to it.
Shutdown drains: new calls get 503 while running calls may finish for
`security.drain_s`; whatever still runs then is ended with BYE.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import ipaddress
import logging
import os
import secrets
import signal
import subprocess
import time
from dataclasses import dataclass, field

from b2bua.archive.catalog import Catalog
from b2bua.archive.catalog_writer import CatalogWriter
from b2bua.archive.recovery import recover
from b2bua.archive.retention import RetentionPolicy, run_sweeper
from b2bua.auth import NonceFactory
from b2bua.config import Config, ConfigError, IPNetwork
from b2bua.guard import Guard
from b2bua.media_control import MediaControl, RecordingControl, RelayMediaControl
from b2bua.media_workers import WorkerPool
from b2bua.recording_hub import HubEvent, RecordingHub, load_prompts, prompt_hashes
from b2bua.registrar import Registrar
from b2bua.router import number_plan
from b2bua.runner import CoreRunner
from b2bua.switch import Switch
from b2bua.tls import TlsClient, sip_server_context, trunk_client
from b2bua.transaction import TimerConfig
from b2bua.trunk_dns import keep_resolved, make_resolver
from b2bua.trunk_monitor import is_ip_literal
from rtp.relay import MediaRelay, PortAllocator, new_event_loop

log = logging.getLogger("b2bua.serve")

# Collector thresholds for a media server (docs/performance.md, "Garbage collection"):
# young collections stay small (their pause grows with the young objects: 1,000 net new
# containers, about the default 700), a middle collection every 10 of them as by
# default, but a full collection only after 100 middle ones (default 10; CPython also
# waits for 25 % new long-lived objects). The steady state makes no cyclic garbage
# (measured with b2bua/gctrace.py), so a full collection finds next to nothing, while
# its pause (every tracked object of every call, all calls stalled at once) is what
# made the recording gaps.
GC_THRESHOLDS = (1000, 10, 100)
NONCE_LIFETIME_S = 300.0
SWEEP_INTERVAL_S = 3600.0
DRAIN_POLL_S = 0.1


@dataclass
class Server:
    """A running B2BUA: what tests and the demo need to reach into."""

    config: Config
    switch: Switch
    runner: CoreRunner
    relay: MediaRelay | None  # None when media runs in worker processes
    hub: RecordingHub | None = None
    catalog: Catalog | None = None
    background: list[asyncio.Task[None]] = field(default_factory=list)
    workers: WorkerPool | None = None  # [rtp] workers > 0 (b2bua/media_workers.py)
    guard: Guard = field(init=False)

    def __post_init__(self) -> None:
        guard = self.switch.guard
        assert guard is not None, "start_server sets the guard"
        self.guard = guard

    @property
    def sip_address(self) -> tuple[str, int]:
        return self.runner.transport.local

    async def drain(self, timeout: float) -> bool:
        """Refuses new calls (503) and waits up to `timeout` for running calls to end;
        True when none is left. `close()` afterwards ends the rest with BYE."""
        self.guard.draining = True
        log.info("event=draining calls=%d timeout_s=%g", len(self.switch.calls), timeout)
        deadline = self.runner.now() + timeout
        # Bounded: one poll per DRAIN_POLL_S until the deadline.
        while self.switch.calls and self.runner.now() < deadline:
            await asyncio.sleep(min(DRAIN_POLL_S, max(0.0, deadline - self.runner.now())))
        return not self.switch.calls

    async def close(self) -> None:
        for call in list(self.switch.calls.values()):
            call.hangup("shutdown", self.runner.now())
        self.runner.flush()
        await asyncio.sleep(0)  # let the BYEs leave
        if self.hub is not None:
            await self.hub.close(self.runner.now())  # seals every recording
        if self.workers is not None:
            await self.workers.close()  # each worker seals its recordings
        for task in self.background:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.runner.close()
        if self.relay is not None:
            self.relay.close()
        if self.catalog is not None:
            self.catalog.close()


async def start_server(config: Config) -> Server:
    """Binds everything and returns the running server (the caller owns the loop)."""
    loop = asyncio.get_running_loop()
    relay: MediaRelay | None = None
    workers: WorkerPool | None = None
    media: MediaControl
    if config.rtp.workers:
        # Prompts are loaded here too, only for their hashes (the consent evidence).
        rec = config.recording
        prompts = load_prompts(rec.language, rec.announcement) if rec.mode != "off" else {}
        workers = WorkerPool(
            config,
            rec.recipients() if rec.mode != "off" else (),
            loop,
            count=config.rtp.workers,
            prompt_sha256=prompt_hashes(prompts),
        )
        media = workers
    else:
        relay = MediaRelay(
            config.rtp.bind,
            PortAllocator(config.rtp.port_min, config.rtp.port_max),
            inactivity_timeout=config.rtp.inactivity_timeout_s,
            loop=loop,
        )
        media = RelayMediaControl(relay, config.rtp.public_address)
    nonces = NonceFactory(secrets.token_bytes(32), NONCE_LIFETIME_S)
    registrar = Registrar(
        config.extensions,
        realm=config.sip.realm,
        nonces=nonces,
        algorithms=config.sip.digest_algorithms,
    )

    def registered_sources(now: float) -> list[str]:
        return [
            binding.source[0]
            for ext in config.extensions
            for binding in registrar.lookup(ext.number, now)
            if not binding.is_static
        ]

    wall_offset = time.time() - loop.time()  # for the ISO times in ban log lines
    static_hosts = [
        binding.source[0]
        for ext in config.extensions
        for binding in registrar.lookup(ext.number, loop.time())
        if binding.is_static
    ]
    trunk_networks = (
        *config.trunk.inbound_from,
        *_networks_of(config.trunk.host[0]),
        *(net for ip, _ in config.trunk.failover_hosts for net in _networks_of(ip)),
    )
    guard = Guard(
        config.security,
        trunk_networks=trunk_networks,
        static_hosts=static_hosts,
        registered_sources=registered_sources,
        wall_clock=lambda now: now + wall_offset,
    )
    registrar.on_auth_failure = lambda ip, user: guard.auth_failed(ip, user, loop.time())
    timers = TimerConfig(
        t1=config.sip.t1_ms / 1000, t2=config.sip.t2_ms / 1000, t4=config.sip.t4_ms / 1000
    )
    host, port = config.sip.listen
    public = config.sip.public_address
    hub, catalog, background = _start_recording(config, in_process=workers is None)
    recording: RecordingControl | None = hub
    sha256 = hub.prompt_sha256 if hub is not None else None
    if workers is not None:
        await workers.start()  # after crash recovery: no writer is open before this
        if config.recording.mode != "off":
            recording, sha256 = workers, workers.prompt_sha256
    switch = Switch(
        config,
        registrar,
        media,
        (public or host, port),
        timers=timers,
        recording=recording,
        prompt_sha256=sha256,
    )

    def hub_event(ev: HubEvent) -> None:
        switch.media_event(ev.call_id, ev.kind, ev.at, ev.digit, ev.method, ev.side)

    if hub is not None:
        hub.on_event = hub_event
    if workers is not None:
        workers.on_event = hub_event
    switch.guard = guard
    runner = CoreRunner(switch, max_message_size=config.sip.max_message_size)
    sip = runner.transport
    sip.tcp_idle_s = config.sip.tcp_idle_s
    # A banned office phone is still parsed: the switch lets its emergency calls through
    # (docs/operations.md, "Emergency calls") and drops everything else it sends.
    sip.accept_source = lambda ip: guard.admits(ip, loop.time()) or guard.is_known(ip, loop.time())
    sip.max_headers = config.security.max_headers
    sip.max_tcp_connections = config.security.max_tcp_connections
    sip.max_tcp_connections_per_source = config.security.max_tcp_connections_per_source
    tls_context = sip_server_context(config)  # before binding: a bad cert exits 2
    trunk_tls = trunk_client(config)  # one name to verify, whichever server answers
    for target in (config.trunk.host, *config.trunk.failover_hosts):
        sip.tls_clients[target] = trunk_tls
    bound = await runner.start(host, port)
    if tls_context is not None and config.sip.tls_listen is not None:
        tls_bound = await sip.start_tls(*config.sip.tls_listen, tls_context)
        log.info("event=listening_tls sip=%s:%d", *tls_bound)
    if port == 0:
        switch.local = (public or bound[0], bound[1])

    def wakeup() -> None:
        loop.call_soon(runner.flush_now)

    switch.wakeup = wakeup
    switch.start_trunk_registration(runner.now())
    if not is_ip_literal(config.trunk.host[0]):
        background.append(_resolve_trunk(config, switch, runner, trunk_tls))
    runner.flush()
    log.info("event=listening sip=%s:%d rtp=%s", bound[0], bound[1], config.rtp.bind)
    return Server(config, switch, runner, relay, hub, catalog, background, workers)


def _start_recording(
    config: Config, *, in_process: bool = True
) -> tuple[RecordingHub | None, Catalog | None, list[asyncio.Task[None]]]:
    """Catalog, crash recovery, retention sweeper and the recording hub (mode != off);
    no hub when media workers record (`in_process` False)."""
    rec = config.recording
    if rec.mode == "off":
        return None, None, []
    directory = rec.directory
    directory.mkdir(parents=True, exist_ok=True)
    policy = RetentionPolicy.from_config(rec)
    catalog = Catalog.open(directory, policy=policy)
    catalog.normalise = number_plan(config).e164  # E.164 with the office's country/area
    for item in recover(catalog, time.time()):
        log.warning("event=recovered_recording detail=%s", item)
    catalog.audit.log_config(config.path, "system", "serve")
    plan = number_plan(config)
    sweeper = asyncio.get_running_loop().create_task(
        run_sweeper(lambda: Catalog.open(directory, policy=policy), interval_s=SWEEP_INTERVAL_S),
        name="retention-sweeper",  # b2bua/reload.py restarts it when retention changes
    )
    if not in_process:
        return None, catalog, [sweeper]

    def open_for_writer() -> Catalog:
        opened = Catalog.open(directory, policy=policy)
        opened.normalise = plan.e164
        return opened

    # The hub's writes (a commit, an fsync each) go through a thread of their own so that
    # a slow disk never stalls the media loop (b2bua/archive/catalog_writer.py).
    hub = RecordingHub(
        directory=directory,
        recipients=rec.recipients(),
        prompts=load_prompts(rec.language, rec.announcement),
        catalog=CatalogWriter(open_for_writer, directory),
        mute_inband_dtmf=rec.mute_inband_dtmf,
    )
    hub.start()
    return hub, catalog, [sweeper]


async def _serve_forever(config: Config) -> int:
    from b2bua.metrics import OpsCounters
    from b2bua.ops import OpsEndpoint
    from b2bua.reload import reload_config

    counters = OpsCounters()
    server = await start_server(config)
    tune_gc(os.environ.get("B2BUA_GC"))
    endpoint = None
    if config.metrics.listen is not None:
        endpoint = OpsEndpoint(server, counters)
        try:
            mhost, mport = await endpoint.start(*config.metrics.listen)
        except OSError as exc:
            await server.close()
            raise ConfigError(config.path, "metrics.listen", f"cannot listen: {exc}") from None
        log.info("event=listening_metrics http=%s:%d", mhost, mport)
        print(f"metrics on http://{mhost}:{mport}/metrics", flush=True)
    portal = None
    if config.portal.identity is not None:
        # The identity never enters this process: the portal runs as its own process.
        from b2bua.portal.cli import spawn_portal

        portal = spawn_portal(config.path)
        host, port = config.portal.listen
        scheme = "https" if config.portal.tls_cert is not None else "http"
        print(f"portal (pid {portal.pid}) on {scheme}://{host}:{port}/", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if trace_to := os.environ.get("B2BUA_TRACEMALLOC"):  # soak tests only (bench/soak.py)
        from b2bua.memtrace import install

        install(loop, trace_to)
    gc_trace = None
    if gc_to := os.environ.get("B2BUA_GCTRACE"):  # benchmarks only: collector pauses
        from b2bua.gctrace import install as install_gctrace

        gc_trace = install_gctrace(loop, gc_to)
    # SIGHUP: re-read the config; running calls are untouched (b2bua/reload.py).
    loop.add_signal_handler(signal.SIGHUP, lambda: reload_config(server, counters))
    print(
        f"b2bua serving SIP on {server.sip_address[0]}:{server.sip_address[1]} "
        f"(pid {os.getpid()}); Ctrl-C to stop",
        flush=True,
    )
    await stop.wait()
    # A second signal during the drain ends the calls at once.
    stop.clear()
    loop.remove_signal_handler(signal.SIGHUP)  # no reloads while shutting down
    drained = asyncio.create_task(server.drain(server.config.security.drain_s))
    second = asyncio.create_task(stop.wait())
    await asyncio.wait({drained, second}, return_when=asyncio.FIRST_COMPLETED)
    for task in (drained, second):
        task.cancel()
    log.info("event=shutdown calls_left=%d", len(server.switch.calls))
    await server.close()
    if gc_trace is not None:
        gc_trace.close()
    if endpoint is not None:
        await endpoint.close()  # last: /healthz answers 503 for the whole drain
    if portal is not None:
        portal.terminate()
        try:
            portal.wait(timeout=10)
        except subprocess.TimeoutExpired:
            portal.kill()
    return 0


def tune_gc(setting: str | None = None) -> tuple[int, int, int]:
    """After start-up: collect once, freeze what is left (modules, config, prompts: never
    garbage, no longer walked by any collection) and set `GC_THRESHOLDS`.

    `setting` (the B2BUA_GC environment variable, for benchmarks): "default" leaves the
    interpreter's collector as it is; "A,B,C" freezes and uses these thresholds instead.
    Returns the thresholds in force.
    """
    if setting == "default":
        return gc.get_threshold()
    thresholds = GC_THRESHOLDS
    if setting:
        a, b, c = (int(part) for part in setting.split(","))
        thresholds = (a, b, c)
    gc.collect()
    gc.freeze()
    gc.set_threshold(*thresholds)
    return gc.get_threshold()


def _resolve_trunk(
    config: Config, switch: Switch, runner: CoreRunner, tls: TlsClient
) -> asyncio.Task[None]:
    """The DNS task for a trunk host name (b2bua/trunk_dns.py): RFC 3263 lookups,
    repeated when the TTL runs out; each new list goes to the switch's trunk monitor."""
    trunk = config.trunk

    def on_targets(targets: tuple[tuple[str, int], ...]) -> None:
        for target in targets:
            runner.transport.tls_clients[target] = tls
        switch.set_trunk_targets(targets, runner.now())
        runner.flush()

    v6 = ":" in config.sip.listen[0]
    return asyncio.get_running_loop().create_task(
        keep_resolved(
            trunk.host[0],
            None if trunk.srv_lookup else trunk.host[1],
            trunk.transport,
            make_resolver(trunk.dns_server),
            on_targets,
            # The SIP socket's family: an IPv4 socket can not reach an AAAA address.
            families=("AAAA", "A") if v6 else ("A",),
        ),
        name="trunk-dns",
    )


def _networks_of(host: str) -> list[IPNetwork]:
    """The trunk host as a network when it is an IP literal (its replies are no strangers)."""
    try:
        return [ipaddress.ip_network(host)]
    except ValueError:
        return []


def serve(config: Config) -> int:
    loop = new_event_loop()
    try:
        return loop.run_until_complete(_serve_forever(config))
    finally:
        loop.close()
