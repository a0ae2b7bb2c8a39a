"""`b2bua serve`: the asyncio process around the sans-I/O switch.

Theory of operation: load the config (errors exit 2 before anything binds), bind the
SIP transport and the RTP relay, run the switch through a CoreRunner, and stop cleanly on
SIGTERM or SIGINT. The relay runs on the same (uvloop) event loop; its inactivity
callbacks wake the runner so the switch can end silent calls.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import signal
from dataclasses import dataclass

from b2bua.auth import NonceFactory
from b2bua.config import Config
from b2bua.media_control import RelayMediaControl
from b2bua.registrar import Registrar
from b2bua.runner import CoreRunner
from b2bua.switch import Switch
from b2bua.transaction import TimerConfig
from rtp.relay import MediaRelay, PortAllocator, new_event_loop

log = logging.getLogger("b2bua.serve")

NONCE_LIFETIME_S = 300.0


@dataclass
class Server:
    """A running B2BUA: what tests and the demo need to reach into."""

    config: Config
    switch: Switch
    runner: CoreRunner
    relay: MediaRelay

    @property
    def sip_address(self) -> tuple[str, int]:
        return self.runner.transport.local

    async def close(self) -> None:
        for call in list(self.switch.calls.values()):
            call.hangup("shutdown", self.runner.now())
        self.runner.flush()
        await asyncio.sleep(0)  # let the BYEs leave
        await self.runner.close()
        self.relay.close()


async def start_server(config: Config) -> Server:
    """Binds everything and returns the running server (the caller owns the loop)."""
    loop = asyncio.get_running_loop()
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
    timers = TimerConfig(
        t1=config.sip.t1_ms / 1000, t2=config.sip.t2_ms / 1000, t4=config.sip.t4_ms / 1000
    )
    host, port = config.sip.listen
    public = config.sip.public_address
    switch = Switch(config, registrar, media, (public or host, port), timers=timers)
    runner = CoreRunner(switch, max_message_size=config.sip.max_message_size)
    bound = await runner.start(host, port)
    if port == 0:
        switch.local = (public or bound[0], bound[1])

    def wakeup() -> None:
        loop.call_soon(runner.flush_now)

    switch.wakeup = wakeup
    log.info("event=listening sip=%s:%d rtp=%s", bound[0], bound[1], config.rtp.bind)
    return Server(config, switch, runner, relay)


async def _serve_forever(config: Config) -> int:
    server = await start_server(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(
        f"b2bua serving SIP on {server.sip_address[0]}:{server.sip_address[1]} "
        f"(pid {os.getpid()}); Ctrl-C to stop",
        flush=True,
    )
    await stop.wait()
    await server.close()
    return 0


def serve(config: Config) -> int:
    loop = new_event_loop()
    try:
        return loop.run_until_complete(_serve_forever(config))
    finally:
        loop.close()
