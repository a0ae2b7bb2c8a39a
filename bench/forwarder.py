"""The baseline: a bare uvloop UDP forwarder, the ceiling of what Python forwards here.

COUNT socket pairs on --bind; a packet read on the first socket of pair k goes out of
the second to --a-dest, one read on the second goes out of the first to --b-dest. The
same read path as rtp/relay.py (add_reader + recvfrom_into into one buffer, 64 reads
per callback) without any RTP work: no parsing, latching, rewriting or recording.
Prints one JSON line ``{"pid": ..., "ports": [[a, b], ...]}`` and runs until SIGTERM.
Run by load.py; by hand: .venv/bin/python bench/forwarder.py --count 10 \\
    --a-dest 127.0.0.3:40000 --b-dest 127.0.0.2:40000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket

import uvloop

READ_BATCH = 64


def _addr(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


def forward(src: socket.socket, out: socket.socket, dest: tuple[str, int]) -> None:
    buf = bytearray(2048)
    view = memoryview(buf)
    recv, send = src.recvfrom_into, out.sendto

    def on_readable() -> None:
        for _ in range(READ_BATCH):
            try:
                size, _source = recv(buf)
            except (BlockingIOError, InterruptedError):
                return
            try:  # noqa: SIM105 - a try is cheaper than suppress() per packet
                send(view[:size], dest)
            except OSError:
                pass  # lost, like a full socket in the relay

    asyncio.get_running_loop().add_reader(src.fileno(), on_readable)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--bind", default="127.0.0.1")
    parser.add_argument("--a-dest", type=_addr, required=True)
    parser.add_argument("--b-dest", type=_addr, required=True)
    args = parser.parse_args()
    pairs = []
    for _ in range(args.count):
        a, b = (socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(2))
        for sock in (a, b):
            sock.bind((args.bind, 0))
            sock.setblocking(False)
        forward(a, b, args.a_dest)
        forward(b, a, args.b_dest)
        pairs.append((a, b))
    ports = [[a.getsockname()[1], b.getsockname()[1]] for a, b in pairs]
    print(json.dumps({"pid": os.getpid(), "ports": ports}), flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


if __name__ == "__main__":
    uvloop.run(main())
