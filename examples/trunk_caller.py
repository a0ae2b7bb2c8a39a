"""A simulated SIP trunk: calls the B2BUA, presses a key at the announcement, talks, hangs up.

    python examples/trunk_caller.py --server 127.0.0.1:5060 --ip 127.0.0.2 [--digit 1]

The B2BUA must take it for its trunk: `--ip` has to be in the config's
`trunk.inbound_from` (by default the IP of `trunk.host`). The caller is the same one
`b2bua demo` uses (b2bua/demo_trunk.py): RFC 4733 key press `--digit-after` seconds
into the prompt, then speech (espeak-ng, or a shipped prompt), then BYE. Exit 0 when the
call went through and ended with our BYE.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path

from b2bua.demo import CALLER_TEXT, open_trunk, rms, run_trunk_call, speech


async def call(args: argparse.Namespace) -> int:
    host, port = args.server.rsplit(":", 1)
    with tempfile.TemporaryDirectory() as work:
        samples, source = speech(args.text, "en-us", "en_announce", Path(work))
    print(f"speech from {source}: {len(samples) / 8000:.1f} s", flush=True)
    caller, runner, rtp = await open_trunk(
        samples,
        ip=args.ip,
        number=args.number,
        digit=args.digit,
        digit_after_s=args.digit_after,
    )
    try:
        ok = await run_trunk_call(caller, runner, rtp, (host, int(port)), args.timeout)
    finally:
        rtp.close()
        await runner.close()
    heard = caller.media.heard_audio()
    print(f"heard {len(heard) / 8000:.1f} s from the B2BUA (level {rms(heard):.0f})", flush=True)
    return 0 if ok else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", required=True, help="the B2BUA's SIP address host:port")
    parser.add_argument("--ip", default="127.0.0.2", help="the trunk's address")
    parser.add_argument("--number", default="1000", help="the dialled number")
    parser.add_argument("--digit", default="1", help="the key to press (1: consent)")
    parser.add_argument("--digit-after", type=float, default=1.0, help="seconds into the prompt")
    parser.add_argument("--text", default=CALLER_TEXT, help="what the caller says")
    parser.add_argument("--timeout", type=float, default=40.0)
    return asyncio.run(call(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
