"""Shared driver for the fuzz targets: atheris (libFuzzer) when installed, else a plain
mutation fuzzer with the same command line (`-max_total_time=S`, `-runs=N`, seed files
or directories as arguments).

A target is `test_one_input(data: bytes) -> None` that calls a parser and swallows only
the parser's own protocol error; anything else escaping is a finding. atheris reports it
with the input saved as crash-*; the plain fuzzer writes crash-<sha1> the same way and
exits 1.
"""

from __future__ import annotations

import contextlib
import hashlib
import random
import sys
import time
import traceback
from collections.abc import Callable, Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

Target = Callable[[bytes], None]


def _options(argv: list[str]) -> tuple[dict[str, str], list[Path]]:
    opts: dict[str, str] = {}
    paths: list[Path] = []
    for arg in argv:
        if arg.startswith("-") and "=" in arg:
            key, value = arg.lstrip("-").split("=", 1)
            opts[key] = value
        elif not arg.startswith("-"):
            paths.append(Path(arg))
    return opts, paths


def _seed_files(paths: Iterable[Path]) -> list[bytes]:
    out: list[bytes] = []
    for path in paths:
        files = sorted(path.rglob("*")) if path.is_dir() else [path]
        out.extend(f.read_bytes() for f in files if f.is_file())
    return out


def _mutate(rng: random.Random, data: bytes, pool: list[bytes]) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        choice = rng.randrange(7)
        pos = rng.randrange(len(buf) + 1)
        if choice == 0 and buf:
            buf[min(pos, len(buf) - 1)] = rng.randrange(256)
        elif choice == 1:
            buf[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
        elif choice == 2 and buf:
            del buf[pos : pos + rng.randint(1, 16)]
        elif choice == 3:
            token = rng.choice(
                [
                    b"\r\n",
                    b":",
                    b";",
                    b",",
                    b"<",
                    b">",
                    b'"',
                    b"\\",
                    b"%",
                    b"\x00",
                    b" ",
                    b"=",
                    b"4294967296",
                    b"-1",
                    b"65536",
                    b"99999999999999999999",
                    b"sip:",
                    b"\r\n\r\n",
                ]
            )
            buf[pos:pos] = token
        elif choice == 4 and pool:
            other = rng.choice(pool)
            start = rng.randrange(len(other) + 1)
            buf[pos:pos] = other[start : start + rng.randint(1, 64)]
        elif choice == 5 and buf:
            end = min(len(buf), pos + rng.randint(1, 64))
            buf[pos:pos] = buf[pos:end]  # duplicate a run (repeated headers, lines)
        elif buf:
            cut = rng.randrange(len(buf))
            del buf[cut:]
    return bytes(buf)


def _plain(target: Target, seeds: list[bytes], opts: dict[str, str]) -> int:
    max_time = float(opts.get("max_total_time", "10"))
    runs = int(opts.get("runs", "-1"))
    rng = random.Random(int(opts.get("seed", "0")) or None)
    pool = list(seeds) or [b""]
    deadline = time.monotonic() + max_time
    done = 0
    # Bounded by runs and by time.
    while (runs < 0 or done < runs) and time.monotonic() < deadline:
        data = _mutate(rng, rng.choice(pool), pool) if done >= len(seeds) else seeds[done]
        try:
            target(data)
        except Exception:
            name = Path(f"crash-{hashlib.sha1(data).hexdigest()}")
            name.write_bytes(data)
            traceback.print_exc()
            print(f"finding after {done} runs, input written to {name}", file=sys.stderr)
            return 1
        done += 1
        if len(pool) < 4096 and rng.random() < 0.01:
            pool.append(data)
    print(f"plain fuzzer: {done} runs, no finding", file=sys.stderr)
    return 0


def instrumented() -> contextlib.AbstractContextManager[object]:
    """Wrap the imports of the code under test: coverage feedback for atheris."""
    try:
        import atheris  # type: ignore[import-not-found,import-untyped,unused-ignore]
    except ImportError:
        return contextlib.nullcontext()
    return atheris.instrument_imports()  # type: ignore[no-any-return]


def main(target: Target, seeds: Iterable[bytes] = ()) -> None:
    """Run `target` under atheris if it is installed, else under the plain fuzzer."""
    seed_list = list(seeds)
    try:
        import atheris  # type: ignore[import-not-found,import-untyped,unused-ignore]
    except ImportError:
        opts, paths = _options(sys.argv[1:])
        sys.exit(_plain(target, seed_list + _seed_files(paths), opts))
    if not any(not a.startswith("-") for a in sys.argv[1:]) and seed_list:
        # libFuzzer takes seeds from a corpus directory: write the built-in ones there.
        corpus = Path(__file__).parent / "corpus" / Path(sys.argv[0]).stem
        corpus.mkdir(parents=True, exist_ok=True)
        for seed in seed_list:
            (corpus / hashlib.sha1(seed).hexdigest()).write_bytes(seed)
        sys.argv.append(str(corpus))
    atheris.Setup(sys.argv, target)
    atheris.Fuzz()
