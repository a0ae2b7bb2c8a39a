"""`b2bua portal --config C`: the portal alone, on uvicorn; and the helper `b2bua serve`
uses to run it as a separate process.

The recording process must never hold the age identity (DESIGN.md, "Keys and who holds
them"), so `b2bua serve` does not import the portal into its own process: it starts
`python -m b2bua.portal --config C` with `spawn_portal` and stops it on the way out.
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
from pathlib import Path

from b2bua.config import Config

__all__ = ["EXIT_CONFIG", "check_tls", "main", "register", "run_portal", "spawn_portal"]

EXIT_CONFIG = 2
log = logging.getLogger("b2bua.portal")


def run_portal(config: Config) -> None:
    """Serve the portal on `[portal] listen` until SIGINT/SIGTERM (blocks).

    TLS when `tls_cert` and `tls_key` are set. Raises PortalError if the identity file, the
    certificate or its key can not be read.
    """
    import uvicorn

    from b2bua.portal.app import create_app

    check_tls(config)
    app = create_app(config)
    host, port = config.portal.listen
    tls = config.portal
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=host,
            port=port,
            ssl_certfile=str(tls.tls_cert) if tls.tls_cert is not None else None,
            ssl_keyfile=str(tls.tls_key) if tls.tls_key is not None else None,
            # Client addresses are the socket's: X-Forwarded-For would let anyone pick
            # the address the login throttle counts against.
            proxy_headers=False,
            server_header=False,
            date_header=True,
            workers=1,  # sessions and throttle counts live in this process
            log_level="info",
            access_log=False,
        )
    )
    scheme = "https" if tls.tls_cert is not None else "http"
    log.info("portal listening on %s://%s:%d", scheme, host, port)
    server.run()


def check_tls(config: Config) -> None:
    """Loads `[portal] tls_cert` and `tls_key` once, so that a missing file, a key that does
    not match or a password-protected key is a config error naming the key (exit 2),
    not a traceback from inside uvicorn. The loader accepts files that do not exist yet
    (the portal may run on another machine than `b2bua serve`), so this is the check."""
    import ssl

    from b2bua.portal.app import PortalError

    cert, key = config.portal.tls_cert, config.portal.tls_key
    if cert is None or key is None:
        return
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        # A password callback that refuses: an encrypted key must not make uvicorn prompt
        # on a terminal the service does not have.
        ctx.load_cert_chain(str(cert), str(key), password=_no_password)
    except (OSError, ssl.SSLError, ValueError) as exc:  # ValueError: from _no_password
        raise PortalError(f"portal.tls_cert {cert} / portal.tls_key {key}: {exc}") from None


def _no_password() -> str:
    raise ValueError("the key is encrypted; give an unencrypted key file (mode 0600)")


def _cmd_portal(args: argparse.Namespace) -> int:
    from b2bua.config import ConfigError, load_config
    from b2bua.portal.app import PortalError

    if not args.config:
        print("b2bua portal: --config is required (or set B2BUA_CONFIG)", file=sys.stderr)
        return EXIT_CONFIG
    try:
        config = load_config(Path(args.config))
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        run_portal(config)
    except PortalError as exc:
        print(f"b2bua portal: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `portal` to the `b2bua` parser."""
    p = subparsers.add_parser(
        "portal",
        help="run the web portal alone (reads [portal] of the config)",
        description="Serve the recordings portal on [portal] listen (TLS with tls_cert and "
        "tls_key). Needs [portal] identity to play recordings.",
    )
    p.add_argument(
        "--config",
        default=os.environ.get("B2BUA_CONFIG"),
        help="the TOML config file (default: $B2BUA_CONFIG)",
    )
    p.set_defaults(func=_cmd_portal)


def spawn_portal(config_path: Path) -> subprocess.Popen[bytes]:
    """Start the portal in its own process (for `b2bua serve`); the caller terminates it."""
    return subprocess.Popen(  # noqa: S603 - our own interpreter and module, no shell
        [sys.executable, "-m", "b2bua.portal", "--config", str(config_path)],
        stdin=subprocess.DEVNULL,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="b2bua")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["portal", *(sys.argv[1:] if argv is None else argv)])
    return int(args.func(args))
