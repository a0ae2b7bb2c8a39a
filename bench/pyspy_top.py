"""Top functions of a py-spy "raw" (collapsed stacks) profile: self and inclusive share.

Run: .venv/bin/python bench/pyspy_top.py PROFILE.txt [TOP]
     zcat bench/results/profiles/cps-scan.txt.gz | .venv/bin/python bench/pyspy_top.py -
"""

from __future__ import annotations

import collections
import sys
from pathlib import Path


def top(text: str, count: int) -> str:
    own: collections.Counter[str] = collections.Counter()
    anywhere: collections.Counter[str] = collections.Counter()
    total = 0
    for line in text.splitlines():
        stack, _, samples = line.rpartition(" ")
        if not stack or not samples.isdigit():
            continue
        n = int(samples)
        total += n
        frames = [f for f in stack.split(";") if not f.startswith(("process ", "thread "))]
        if not frames:
            continue
        own[frames[-1]] += n
        for frame in set(frames):  # a recursive frame counts once per sample
            anywhere[frame] += n
    out = [f"{total} samples", "-- self"]
    out += [f"{100 * c / total:5.1f}% {f}" for f, c in own.most_common(count)]
    out.append("-- inclusive")
    out += [f"{100 * c / total:5.1f}% {f}" for f, c in anywhere.most_common(count)]
    return "\n".join(out)


if __name__ == "__main__":
    source = sys.stdin.read() if sys.argv[1] == "-" else Path(sys.argv[1]).read_text()
    print(top(source, int(sys.argv[2]) if len(sys.argv) > 2 else 25))
