"""`b2bua demo`: a self-checking run on loopback that needs no setup.

Today it is the smoke call of the SIP core: a minimal UAS on 127.0.0.1 and a scripted
caller on 127.0.0.4 exchange OPTIONS and a whole call (INVITE, 180, 200, ACK, BYE)
through real UDP sockets. Later stages turn it into the full demo office.
"""

from __future__ import annotations

import asyncio

from b2bua.caller import SmokeCaller
from b2bua.runner import CoreRunner
from b2bua.uas import MinimalUas

DEMO_TIMEOUT_S = 20.0


def _say(text: str) -> None:
    print(text, flush=True)


async def run_smoke_demo(server_host: str = "127.0.0.1", caller_host: str = "127.0.0.4") -> int:
    uas = MinimalUas((server_host, 0))
    server = CoreRunner(uas)
    uas.local = await server.start(server_host, 0)
    _say(f"[1/3] SIP server listening on {uas.local[0]}:{uas.local[1]} (UDP and TCP)")

    caller = SmokeCaller((caller_host, 0), uas.local)
    client = CoreRunner(caller)
    caller.local = await client.start(caller_host, 0)
    _say(f"[2/3] caller on {caller.local[0]}:{caller.local[1]} sends OPTIONS and one call")
    try:
        caller.start(client.now())
        client.flush()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + DEMO_TIMEOUT_S
        while not caller.done and loop.time() < deadline:
            await asyncio.sleep(0.02)
    finally:
        await client.close()
        await server.close()
    for line in caller.log:
        _say(f"      {line}")
    if not caller.done:
        _say("[3/3] FAILED: no answer in time")
        return 1
    if not caller.ok:
        _say("[3/3] FAILED: " + caller.log[-1])
        return 1
    _say(
        f"[3/3] OK: {uas.stats.calls_answered} call answered and ended; "
        f"transport counted {server.transport.stats.malformed} malformed messages"
    )
    return 0
