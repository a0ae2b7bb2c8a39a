"""The `b2bua` command: argument parsing and dispatch; the work lives in other modules."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from b2bua import __version__

EXIT_CONFIG = 2


def _cmd_keygen(args: argparse.Namespace) -> int:
    from b2bua.archive.keys import keygen

    out = Path(args.out)
    try:
        recipient = keygen(out)
    except FileExistsError:
        print(f"b2bua keygen: {out} exists; refusing to overwrite a key", file=sys.stderr)
        return 1
    print(f"identity written to {out} (mode 0600), public key in {out}.pub")
    print(f"public key: {recipient}")
    return 0


def _cmd_decrypt(args: argparse.Namespace) -> int:
    from b2bua.archive.keys import decrypt_file

    return decrypt_file(Path(args.identity), Path(args.input), Path(args.output))


def _cmd_check_config(args: argparse.Namespace) -> int:
    from b2bua.config import ConfigError, load_config

    try:
        config = load_config(Path(args.config))
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    print(
        f"{config.path}: ok ({len(config.extensions)} extensions, "
        f"recording mode {config.recording.mode})"
    )
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    from b2bua.config import ConfigError, load_config
    from b2bua.logs import setup_logging
    from b2bua.serve import serve

    try:
        config = load_config(Path(args.config))
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    setup_logging(config.log.format, args.log_level or config.log.level)
    try:
        return serve(config)
    except ConfigError as exc:  # e.g. a TLS certificate that does not load
        print(f"config error: {exc}", file=sys.stderr)
        return EXIT_CONFIG


def _cmd_status(args: argparse.Namespace) -> int:
    import json

    from b2bua.config import ConfigError, load_config
    from b2bua.ops import StatusError, fetch_status, format_status

    try:
        config = load_config(Path(args.config))
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if config.metrics.listen is None:
        print(
            f"b2bua status: {config.path} has no [metrics] listen; set it (e.g. "
            '"127.0.0.1:9090") and restart b2bua serve',
            file=sys.stderr,
        )
        return 1
    try:
        data = fetch_status(config.metrics.listen)
    except StatusError as exc:
        print(f"b2bua status: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(data["calls"], indent=2) if args.json else format_status(data))
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from b2bua.demo import main as run_demo

    return run_demo(args.dir)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="b2bua",
        description="Consent-aware SIP call recorder (back-to-back user agent).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("serve", help="run the recorder with a config file")
    p.add_argument("--config", required=True, help="the TOML config file")
    p.add_argument(
        "--log-level",
        default=None,
        choices=["debug", "info", "warning", "error"],
        help="overrides [log] level (default: info)",
    )
    p.set_defaults(func=_cmd_serve)

    p = sub.add_parser("status", help="show the running calls of b2bua serve ([metrics] listen)")
    p.add_argument("--config", required=True, help="the TOML config file")
    p.add_argument("--json", action="store_true", help="a JSON array of the calls")
    p.set_defaults(func=_cmd_status)

    p = sub.add_parser("demo", help="run a whole office on loopback, record one call and check it")
    p.add_argument("--dir", help="where to leave config, keys and recording (default: new temp)")
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser("check-config", help="load a config file and report problems")
    p.add_argument("--config", required=True, help="the TOML config file")
    p.set_defaults(func=_cmd_check_config)

    p = sub.add_parser("keygen", help="write an age identity (0600) and OUT.pub")
    p.add_argument("out", help="identity file to create")
    p.set_defaults(func=_cmd_keygen)

    p = sub.add_parser(
        "decrypt",
        help="decrypt a recording (exit 0 complete, 3 truncated, 1 tampered/wrong key)",
    )
    p.add_argument("--identity", required=True, help="age identity file")
    p.add_argument("input", help="the .wav.age (or .wav.age.part) file")
    p.add_argument("output", help="the WAV to write")
    p.set_defaults(func=_cmd_decrypt)

    from b2bua.archive.commands import register as register_archive

    register_archive(sub)

    from b2bua.portal.cli import register as register_portal

    register_portal(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
