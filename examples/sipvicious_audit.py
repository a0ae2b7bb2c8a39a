"""Audit a running B2BUA with SIPVicious the way an attacker on the internet would.

    python examples/sipvicious_audit.py --target 127.0.0.1:5060 --bind 127.0.0.9

Runs `sipvicious_svmap` (does the server answer, and does it name its software?) and
`sipvicious_svwar` (can extensions be told apart from non-existent ones by their answers
to REGISTER?). Bind to an address of its own (`--bind`): the B2BUA bans sources that
fail authentication too often, and the ban should hit the auditor, not your phones.
Only scan systems you run. Exit 0 when nothing was found, 1 when a finding is reported.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

BIN = Path(sys.executable).parent


def tool(name: str, *args: str, timeout: float) -> str:
    command = [str(BIN / f"sipvicious_{name}"), *args]
    print("$ " + " ".join(command), flush=True)
    result = subprocess.run(  # noqa: S603 - the installed tool, our arguments, no shell
        command, capture_output=True, text=True, timeout=timeout, check=False
    )
    out = result.stdout + result.stderr
    print(out.rstrip(), flush=True)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", required=True, help="the B2BUA's SIP address host:port")
    parser.add_argument("--bind", default="127.0.0.9", help="the auditor's own address")
    parser.add_argument("--extensions", default="1000-1010", help="range svwar tries")
    parser.add_argument("--timeout", type=float, default=60.0, help="per tool, seconds")
    args = parser.parse_args()
    host, port = args.target.rsplit(":", 1)
    findings: list[str] = []

    out = tool("svmap", "-b", args.bind, "-p", port, host, timeout=args.timeout)
    rows = [line for line in out.splitlines() if re.match(r"\|\s*\d+\.\d+\.\d+\.\d+:\d+", line)]
    if not rows:
        findings.append("svmap got no answer: is the target right (or are we dropped)?")
    for row in rows:
        agent = row.split("|")[2].strip() if row.count("|") >= 3 else ""
        print(f"svmap: {row.strip()}", flush=True)
        if agent and agent.lower() not in ("unknown", ""):
            findings.append(f"the server names its software: {agent!r}")

    out = tool(
        "svwar",
        "-b", args.bind,
        "-m", "REGISTER",
        "-e", args.extensions,
        f"udp://{host}:{port}",
        timeout=args.timeout,
    )  # fmt: skip
    found = re.findall(r"\|\s*(\d+)\s*\|\s*(reqauth|noauth|weird)", out)
    if found:
        findings.append(f"svwar told these extensions apart: {sorted({e for e, _ in found})}")

    for finding in findings:
        print(f"FINDING: {finding}", flush=True)
    if not findings:
        print("audit: the server answers, hides its software and does not reveal "
              "which extensions exist", flush=True)  # fmt: skip
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
