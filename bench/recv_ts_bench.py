"""What kernel receive timestamps would cost the relay: `recvfrom_into` against
`recvmsg_into` with `SO_TIMESTAMPNS` (the ancillary data parsed), per datagram on
loopback, alternating rounds, medians. Prints JSON.

The recorder places packets by their arrival; today the relay stamps a packet when it
reads it, so a busy loop makes packets look late (docs/performance.md, "Late reads are
not clock drift"). The kernel's stamp would not depend on the loop.

    .venv/bin/python bench/recv_ts_bench.py [--packets 20000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import struct
import time

SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)  # Linux; not exported by Python
PACKET = b"\x80" * 172  # RTP header + 160 bytes of G.711: the relay's usual datagram


def per_packet_us(packets: int, timestamps: bool) -> float:
    """Microseconds per datagram read (sends are outside the timed part)."""
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        receiver.bind(("127.0.0.1", 0))
        receiver.setblocking(False)
        receiver.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
        if timestamps:
            receiver.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        dest = receiver.getsockname()
        buf = bytearray(2048)
        batch = 2000  # fits the receive buffer, so nothing is dropped
        elapsed = 0.0
        for _ in range(max(1, packets // batch)):
            for _ in range(batch):
                sender.sendto(PACKET, dest)
            started = time.perf_counter()
            if timestamps:
                read, unpack = receiver.recvmsg_into, struct.unpack_from
                for _ in range(batch):
                    _, ancillary, _, _ = read([buf], 64)
                    unpack("qq", ancillary[0][2])  # seconds, nanoseconds (CLOCK_REALTIME)
            else:
                read_from = receiver.recvfrom_into
                for _ in range(batch):
                    read_from(buf)
            elapsed += time.perf_counter() - started
        return elapsed / (max(1, packets // batch) * batch) * 1e6
    finally:
        receiver.close()
        sender.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--packets", type=int, default=20000, help="datagrams per round")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds")
    args = parser.parse_args()
    plain: list[float] = []
    stamped: list[float] = []
    for _ in range(args.rounds):
        plain.append(per_packet_us(args.packets, False))
        stamped.append(per_packet_us(args.packets, True))
    a, b = statistics.median(plain), statistics.median(stamped)
    print(
        json.dumps(
            {
                "packets_per_round": args.packets,
                "rounds": args.rounds,
                "recvfrom_into_us": round(a, 3),
                "recvmsg_into_timestamp_us": round(b, 3),
                "extra_us": round(b - a, 3),
                "ratio": round(b / a, 2),
            }
        )
    )


if __name__ == "__main__":
    main()
