"""TLS contexts for SIP over TLS (RFC 3261 26.2, RFC 5630): server side and client side.

Theory of operation: this module only builds `ssl.SSLContext` objects; the transport
(b2bua/transport.py) uses them for `loop.create_server(ssl=...)` and
`loop.create_connection(ssl=..., server_hostname=...)`. Both sides refuse anything older
than TLS 1.2. The client side always verifies the peer: the certificate must chain to the
configured CA file (or the system store when none is given) and name the expected host
(`TlsClient.server_name`, which is also sent as SNI). There is no "accept any
certificate" switch on purpose: a trunk whose certificate can not be verified is a trunk
someone else may be answering for.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

from b2bua.config import Config, ConfigError

__all__ = ["TlsClient", "client_context", "server_context", "sip_server_context", "trunk_client"]


def _harden(ctx: ssl.SSLContext) -> ssl.SSLContext:
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    # Renegotiation and compression have both been attack surfaces; SIP needs neither.
    ctx.options |= ssl.OP_NO_COMPRESSION
    if hasattr(ssl, "OP_NO_RENEGOTIATION"):
        ctx.options |= ssl.OP_NO_RENEGOTIATION
    return ctx


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    """Our certificate chain (PEM, leaf first) and its key; TLS 1.2 and newer only.

    Raises OSError or ssl.SSLError when the files are missing or do not match."""
    ctx = _harden(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER))
    ctx.load_cert_chain(certfile=str(cert), keyfile=str(key))
    return ctx


def client_context(ca_file: Path | None = None) -> ssl.SSLContext:
    """A verifying client context: CERT_REQUIRED and hostname check (the defaults of
    PROTOCOL_TLS_CLIENT, asserted here so nobody weakens them by accident)."""
    ctx = _harden(ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT))
    if ca_file is not None:
        ctx.load_verify_locations(cafile=str(ca_file))
    else:
        ctx.load_default_certs(ssl.Purpose.SERVER_AUTH)
    assert ctx.verify_mode is ssl.CERT_REQUIRED and ctx.check_hostname
    return ctx


@dataclass(frozen=True)
class TlsClient:
    """How to open a TLS connection to one peer: the verifying context and the name its
    certificate must carry (None: the destination host as given, an IP or a name)."""

    context: ssl.SSLContext
    server_name: str | None = None


def sip_server_context(config: Config) -> ssl.SSLContext | None:
    """The context for `sip.tls_listen` (None when TLS is not configured); a certificate
    or key that does not load is a config error (exit 2), named after the key."""
    sip = config.sip
    if sip.tls_listen is None or sip.tls_cert is None or sip.tls_key is None:
        return None
    try:
        return server_context(sip.tls_cert, sip.tls_key)
    except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
        raise ConfigError(
            config.path, "sip.tls_cert", f"can not load with sip.tls_key: {exc}"
        ) from None


def trunk_client(config: Config) -> TlsClient:
    """How we verify the trunk: `trunk.tls_ca` (or the system store), and the name in
    its certificate: `trunk.tls_server_name`, else the host of `trunk.host`."""
    trunk = config.trunk
    try:
        context = client_context(trunk.tls_ca)
    except (OSError, ValueError) as exc:
        raise ConfigError(config.path, "trunk.tls_ca", f"can not load: {exc}") from None
    return TlsClient(context, trunk.tls_server_name or trunk.host[0])
