"""TOML configuration -> frozen dataclasses, with errors that name file, key and problem.

Theory of operation: every section has a small declarative schema, a mapping of
key -> `_Key(TOML types, default, check)`. `_section` applies it generically: unknown keys
(with a difflib suggestion, so typos never pass silently), missing required keys, TOML
type checks (a bool is never a string, an int never a float where it matters), then the
key's check, which validates and converts (e.g. "host:port" -> (host, port)). Defaults are
raw TOML values and pass through the same check, so a documented default is exactly what
one could write. Rules spanning keys or sections (duplicate extensions, the inbound
extension exists, a public key is needed whenever something records) follow in the
section builders. Adding a key is one schema line plus its dataclass field.

Relative paths resolve against the config file's directory. Nothing is recorded without
informing the other party: the recording modes are keypress, announce and off only.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from b2bua import config_values as cv
from b2bua.config_values import ConfigError, IPNetwork, is_age_recipient, read_recipients

__all__ = [
    "KNOWN_KEYS",
    "Config",
    "ConfigError",
    "ExtensionConfig",
    "GroupConfig",
    "IPNetwork",
    "LogConfig",
    "MetricsConfig",
    "NumbersConfig",
    "PortalConfig",
    "RecordingConfig",
    "RecordingMode",
    "RtpConfig",
    "SecurityConfig",
    "SipConfig",
    "SrtpPolicy",
    "TrunkConfig",
    "is_age_recipient",
    "load_config",
    "parse_config",
    "read_recipients",
]

RecordingMode = Literal["keypress", "announce", "off"]
SrtpPolicy = Literal["off", "optional", "required"]  # per leg: trunk.srtp, extension.srtp


@dataclass(frozen=True)
class SipConfig:
    listen: tuple[str, int]
    user_agent: str | None = None  # no product name on the wire unless configured
    max_message_size: int = 65535
    tcp_idle_s: float = 120.0
    public_address: str | None = None  # announced in SDP/Contact when behind NAT
    realm: str = "b2bua"
    t1_ms: int = 500  # RFC 3261 timers T1, T2, T4
    t2_ms: int = 4000
    t4_ms: int = 5000
    # Challenge order (RFC 8760: most preferred first). Clients that read only one
    # challenge and know only MD5 (SIPp takes the last) need ("MD5",).
    digest_algorithms: tuple[str, ...] = ("SHA-256", "MD5")
    # SIP over TLS (b2bua/tls.py): listener address, our certificate chain and key.
    tls_listen: tuple[str, int] | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None


@dataclass(frozen=True)
class RtpConfig:
    port_min: int
    port_max: int
    bind: str
    inactivity_timeout_s: float = 60.0
    max_call_s: float = 4 * 3600.0
    public_address: str | None = None
    workers: int = 0  # media worker processes (b2bua/media_workers.py); 0: in the SIP process

    @property
    def pair_count(self) -> int:
        """How many RTP+RTCP port pairs (one per call leg) the range holds."""
        return (self.port_max - self.port_min + 1) // 2


@dataclass(frozen=True)
class TrunkConfig:
    host: tuple[str, int]
    inbound_from: tuple[IPNetwork, ...]
    inbound_extension: str
    number_map: tuple[tuple[str, str], ...] = ()  # (dialled number, extension)
    username: str | None = None
    password: str | None = field(default=None, repr=False)  # kept out of logs
    register: bool = False
    register_expires_s: int = 3600
    realm: str | None = None
    caller_id: str | None = None  # the number presented on outbound calls (None: extension's)
    identity_header: Literal["from", "pai", "ppi"] = "from"  # where the trunk reads it
    transport: Literal["udp", "tcp", "tls"] = "udp"  # for requests we send to the trunk
    tls_ca: Path | None = None  # CA file verifying the trunk (None: the system store)
    tls_server_name: str | None = None  # name its certificate must carry (None: host)
    srtp: SrtpPolicy = "off"  # SDES-SRTP on the trunk leg (RFC 4568)
    # Trunk interop (b2bua/trunk_dns.py, b2bua/trunk_monitor.py): OPTIONS every
    # keepalive_s to each target (0 = off), more targets tried in order when host's fail.
    keepalive_s: float = 30.0
    failover_hosts: tuple[tuple[str, int], ...] = ()
    dns_server: tuple[str, int] | None = None  # ask only this server (tests, split DNS)
    srv_lookup: bool = False  # host is a name given without a port: RFC 3263 SRV lookup
    # Carrier interop (docs/carriers.md): the From user toward the trunk when it is not
    # the presented number (None: the caller ID), REGISTER's Contact user (None:
    # username), and Telekom's mediasec security agreement (trunk_registration.py).
    from_user: str | None = None
    contact_user: str | None = None
    mediasec: bool = False

    def inbound_target(self, dialled: str) -> str:
        """The extension an inbound call to `dialled` rings (map first, then default)."""
        for number, extension in self.number_map:
            if number == dialled:
                return extension
        return self.inbound_extension


@dataclass(frozen=True)
class ExtensionConfig:
    number: str
    password: str = field(repr=False)  # kept out of logs
    contact: str | None = None
    employee_consent: bool = False  # without written consent the employee is never recorded
    name: str | None = None
    # Toll-fraud limits (b2bua/tollfraud.py); None: the country's default rules.
    allowed_destinations: tuple[str, ...] | None = None
    max_outbound_calls: int = 4
    max_outbound_minutes_per_day: int = 600
    transport: Literal["udp", "tcp", "tls"] | None = None  # None: the contact URI's
    srtp: SrtpPolicy = "off"  # SDES-SRTP on this phone's leg (RFC 4568)
    pbx: bool = False  # the account of a whole PBX, not one phone (b2bua/pbx.py)
    wideband: bool = False  # offer G.722 to this phone, G.711 on the trunk (codec_policy.py)
    caller_id: str | None = None  # this phone's direct number (DDI) toward the trunk


@dataclass(frozen=True)
class GroupConfig:
    """A hunt group (b2bua/hunt.py): its members ring in order (or all at once,
    b2bua/hunt_parallel.py), then the fallback."""

    number: str
    members: tuple[str, ...]  # extension numbers, rung in this order
    strategy: Literal["order", "parallel"] = "order"
    ring_s: float = 20.0  # each member (parallel: all members) rings this long
    fallback: str | None = None  # an extension, or a number that goes out to the trunk


@dataclass(frozen=True)
class RecordingConfig:
    mode: RecordingMode = "keypress"
    consent_digit: str = "1"
    decline_digit: str = "2"
    consent_timeout_s: float = 10.0
    on_decline: Literal["connect", "hangup"] = "connect"
    language: Literal["de", "en"] = "de"
    announcement: Path | None = None
    directory: Path = Path("recordings")
    public_key: str | Path | None = None  # an age1... recipient, or a file of them
    retention_days: int = 30
    # Overrides of retention_days: (direction, days) and (extension number, days).
    retention_by_direction: tuple[tuple[str, int], ...] = ()
    retention_by_extension: tuple[tuple[str, int], ...] = ()
    pause_code: str = "*1"
    mute_inband_dtmf: bool = True
    do_not_record: tuple[str, ...] = ()  # never prompted, never recorded (docs/operations.md)

    def recipients(self) -> tuple[str, ...]:
        """Read the age recipients now (a file is re-read on every call, for reloads)."""
        if self.public_key is None:
            return ()
        try:
            return read_recipients(self.public_key)
        except ValueError as exc:
            raise ConfigError(self.public_key, "recording.public_key", str(exc)) from None


@dataclass(frozen=True)
class PortalConfig:
    listen: tuple[str, int] = ("127.0.0.1", 8080)
    identity: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    session_idle_s: float = 900.0
    language: Literal["de", "en"] = "de"  # when neither the user nor the browser picks one


@dataclass(frozen=True)
class SecurityConfig:
    """Defences against a hostile network (b2bua/guard.py, docs/security.md)."""

    drop_strangers: bool = False  # answer only trunk, phones and trusted networks
    trusted_networks: tuple[IPNetwork, ...] = ()
    max_auth_failures: int = 10  # per source within the window, then a ban
    auth_failure_window_s: float = 600.0
    ban_s: float = 600.0
    max_calls: int = 1000
    max_calls_per_source: int = 20
    max_transactions_per_source: int = 100  # new requests per second
    max_registrations_per_source: int = 120  # REGISTERs per minute
    max_tcp_connections: int = 512
    max_tcp_connections_per_source: int = 32
    max_headers: int = 200
    drain_s: float = 30.0  # SIGTERM: running calls may finish for this long


@dataclass(frozen=True)
class NumbersConfig:
    """Number plan (b2bua/numbers.py): E.164 normalisation and emergency numbers."""

    country: str | None = "DE"
    area_code: str | None = None
    emergency: tuple[str, ...] = ("110", "112")
    record_emergency: bool = False  # only with recording.mode = "announce"


@dataclass(frozen=True)
class LogConfig:
    """Log line format and level of `b2bua serve` (b2bua/logs.py)."""

    format: Literal["kv", "json", "text"] = "kv"
    level: Literal["debug", "info", "warning", "error"] = "info"


@dataclass(frozen=True)
class MetricsConfig:
    """The operations HTTP endpoint (b2bua/ops.py): /metrics, /healthz, /status."""

    listen: tuple[str, int] | None = None  # None: no endpoint


@dataclass(frozen=True)
class Config:
    path: Path
    sip: SipConfig
    rtp: RtpConfig
    trunk: TrunkConfig
    extensions: tuple[ExtensionConfig, ...]
    recording: RecordingConfig
    portal: PortalConfig
    security: SecurityConfig = SecurityConfig()
    numbers: NumbersConfig = NumbersConfig()
    log: LogConfig = LogConfig()
    metrics: MetricsConfig = MetricsConfig()
    groups: tuple[GroupConfig, ...] = ()

    def group(self, number: str) -> GroupConfig | None:
        for group in self.groups:
            if group.number == number:
                return group
        return None

    def extension(self, number: str) -> ExtensionConfig | None:
        for ext in self.extensions:
            if ext.number == number:
                return ext
        return None


# ---------------------------------------------------------------- schema machinery

_REQUIRED: Any = object()  # sentinel default: the key must be present


@dataclass(frozen=True)
class _Key:
    types: tuple[type, ...]
    default: Any = None  # raw TOML value (passed through `check`), None, or _REQUIRED
    check: cv.Check | None = None


def _unknown(name: str, known: Mapping[str, object], what: str) -> str:
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    return f"unknown {what}" + (f" (did you mean '{close[0]}'?)" if close else "")


def _section(
    ctx: cv.Context, table: Mapping[str, Any], schema: Mapping[str, _Key], prefix: str
) -> dict[str, Any]:
    for name in table:
        if name not in schema:
            raise ctx.error(prefix + cv.toml_key(name), _unknown(name, schema, "key"))
    out: dict[str, Any] = {}
    for name, key in schema.items():
        dotted = prefix + name
        if name in table:
            value = table[name]
            bad_bool = isinstance(value, bool) and bool not in key.types
            if bad_bool or not isinstance(value, key.types):
                want = "number" if float in key.types else cv.TOML_TYPE[key.types[0]]
                hint = ""
                if bool in key.types and value in ("true", "false"):
                    hint = "; write true/false without quotes"
                article = "an" if want[0] in "aeiou" else "a"
                got = f"{cv.type_name(value)} {value!r}{hint}"
                raise ctx.error(dotted, f"must be {article} {want} (got {got})")
        elif key.default is _REQUIRED:
            raise ctx.error(dotted, "required key is missing")
        else:
            value = key.default
        if value is not None and key.check is not None:
            try:
                value = key.check(value, ctx)
            except cv.InvalidValueError as exc:
                raise ctx.error(dotted + exc.sub, str(exc)) from None
        out[name] = value
    return out


# ---------------------------------------------------------------- the schemas

_FLOAT = (int, float)  # TOML "10" for a float key is fine; bools are rejected separately
_STR = (str,)

_SIP = {
    "listen": _Key(_STR, _REQUIRED, cv.host_port(0)),
    "user_agent": _Key(_STR, None, cv.single_line),
    "max_message_size": _Key((int,), 65535, cv.int_between(1500, 65535)),
    "tcp_idle_s": _Key(_FLOAT, 120, cv.seconds()),
    "public_address": _Key(_STR, None, cv.host_name),
    "realm": _Key(_STR, "b2bua", cv.single_line),
    "t1_ms": _Key((int,), 500, cv.int_between(50, 10_000)),
    "t2_ms": _Key((int,), 4000, cv.int_between(100, 60_000)),
    "t4_ms": _Key((int,), 5000, cv.int_between(100, 60_000)),
    "digest_algorithms": _Key((list,), ("SHA-256", "MD5"), cv.digest_algorithms),
    "tls_listen": _Key(_STR, None, cv.host_port(0)),
    "tls_cert": _Key(_STR, None, cv.file_path(must_exist=True)),
    "tls_key": _Key(_STR, None, cv.file_path(must_exist=True)),
}
_RTP = {
    "ports": _Key(_STR, "20000-29999", cv.port_range),
    "bind": _Key(_STR, None, cv.host_name),  # default: the host of sip.listen
    "inactivity_timeout_s": _Key(_FLOAT, 60, cv.seconds()),
    "max_call_s": _Key(_FLOAT, 4 * 3600, cv.seconds()),
    "public_address": _Key(_STR, None, cv.host_name),  # default: sip.public_address
    "workers": _Key((int,), 0, cv.int_between(0, 16)),  # media worker processes; 0: in-process
}
_TRUNK = {
    "host": _Key(_STR, _REQUIRED, cv.host_optional_port),  # "name": SRV (RFC 3263)
    "inbound_from": _Key((list,), None, cv.networks),  # default: host's and failovers' IPs
    "inbound_extension": _Key(_STR, _REQUIRED, cv.extension_number),
    "inbound_map": _Key((dict,), {}, cv.number_map),
    "username": _Key(_STR, None, cv.single_line),
    "password": _Key(_STR, None, cv.single_line),
    "register": _Key((bool,), False),
    "register_expires_s": _Key((int,), 3600, cv.int_between(60, 86_400)),
    "realm": _Key(_STR, None, cv.single_line),
    "caller_id": _Key(_STR, None, cv.phone_number),
    "identity_header": _Key(_STR, "from", cv.one_of("from", "pai", "ppi")),
    "transport": _Key(_STR, "udp", cv.one_of("udp", "tcp", "tls")),
    "tls_ca": _Key(_STR, None, cv.file_path(must_exist=True)),
    "tls_server_name": _Key(_STR, None, cv.host_name),
    "srtp": _Key(_STR, "off", cv.one_of("off", "optional", "required")),
    "keepalive_s": _Key(_FLOAT, 30, cv.seconds_or_off),
    "failover_hosts": _Key((list,), [], cv.ip_port_list),
    "dns_server": _Key(_STR, None, cv.ip_port(53)),
    "from_user": _Key(_STR, None, cv.sip_user),
    "contact_user": _Key(_STR, None, cv.sip_user),
    "mediasec": _Key((bool,), False),
}
_EXTENSION = {
    "number": _Key(_STR, _REQUIRED, cv.extension_number),
    "password": _Key(_STR, _REQUIRED, cv.single_line),
    "contact": _Key(_STR, None, cv.sip_uri),
    "employee_consent": _Key((bool,), False),
    "name": _Key(_STR, None, cv.single_line),
    "allowed_destinations": _Key((list,), None, cv.destination_rules),
    "max_outbound_calls": _Key((int,), 4, cv.int_between(1, 1000)),
    "max_outbound_minutes_per_day": _Key((int,), 600, cv.int_between(1, 1440)),
    "transport": _Key(_STR, None, cv.one_of("udp", "tcp", "tls")),
    "srtp": _Key(_STR, "off", cv.one_of("off", "optional", "required")),
    "pbx": _Key((bool,), False),
    "wideband": _Key((bool,), False),
    "caller_id": _Key(_STR, None, cv.phone_number),
}
_GROUP = {
    "number": _Key(_STR, _REQUIRED, cv.extension_number),
    "members": _Key((list,), _REQUIRED),
    "strategy": _Key(_STR, "order", cv.one_of("order", "parallel")),
    "ring_s": _Key(_FLOAT, 20, cv.seconds(600)),
    "fallback": _Key(_STR, None, cv.dialable_number),
}
_RECORDING = {
    # No mode records without informing the other party first.
    "mode": _Key(_STR, "keypress", cv.one_of("keypress", "announce", "off")),
    "consent_digit": _Key(_STR, "1", cv.dtmf(1)),
    "decline_digit": _Key(_STR, "2", cv.dtmf(1)),
    "consent_timeout_s": _Key(_FLOAT, 10, cv.seconds(120)),
    "on_decline": _Key(_STR, "connect", cv.one_of("connect", "hangup")),
    "language": _Key(_STR, "de", cv.one_of("de", "en")),
    "announcement": _Key(_STR, None, cv.file_path(must_exist=True)),
    "directory": _Key(_STR, "recordings", cv.file_path(must_exist=False)),
    "public_key": _Key(_STR, None, cv.public_key),  # required unless mode = "off"
    "retention_days": _Key((int,), 30, cv.int_between(1, 1825)),
    "retention_by_direction": _Key(
        (dict,),
        {},
        cv.days_table(lambda k: k in ("inbound", "outbound", "internal"), "a direction"),
    ),
    "retention_by_extension": _Key(
        (dict,),
        {},
        cv.days_table(
            lambda k: cv.EXTENSION_NUMBER.fullmatch(k) is not None, "an extension number"
        ),
    ),
    "pause_code": _Key(_STR, "*1", cv.dtmf(8)),
    "mute_inband_dtmf": _Key((bool,), True),
    "do_not_record": _Key((list,), [], cv.number_list(True)),
}
_NUMBERS = {
    "country": _Key(_STR, "DE", cv.region),
    "area_code": _Key(_STR, None, cv.area_code),
    "emergency": _Key((list,), ["110", "112"], cv.number_list(False)),
    "record_emergency": _Key((bool,), False),
}
_PORTAL = {
    "listen": _Key(_STR, "127.0.0.1:8080", cv.host_port(0)),
    # Not required to exist: the portal may run on another machine than the recorder.
    "identity": _Key(_STR, None, cv.file_path(must_exist=False)),
    "tls_cert": _Key(_STR, None, cv.file_path(must_exist=False)),
    "tls_key": _Key(_STR, None, cv.file_path(must_exist=False)),
    "session_idle_s": _Key(_FLOAT, 900, cv.seconds()),
    "language": _Key(_STR, "de", cv.one_of("de", "en")),
}
_SECURITY = {
    "drop_strangers": _Key((bool,), False),
    "trusted_networks": _Key((list,), [], cv.network_list),
    "max_auth_failures": _Key((int,), 10, cv.int_between(1, 10_000)),
    "auth_failure_window_s": _Key(_FLOAT, 600, cv.seconds()),
    "ban_s": _Key(_FLOAT, 600, cv.seconds()),
    "max_calls": _Key((int,), 1000, cv.int_between(1, 100_000)),
    "max_calls_per_source": _Key((int,), 20, cv.int_between(1, 100_000)),
    "max_transactions_per_source": _Key((int,), 100, cv.int_between(1, 1_000_000)),
    "max_registrations_per_source": _Key((int,), 120, cv.int_between(1, 1_000_000)),
    "max_tcp_connections": _Key((int,), 512, cv.int_between(1, 100_000)),
    "max_tcp_connections_per_source": _Key((int,), 32, cv.int_between(1, 100_000)),
    "max_headers": _Key((int,), 200, cv.int_between(20, 10_000)),
    "drain_s": _Key(_FLOAT, 30, cv.seconds(3600)),
}
_LOG = {
    "format": _Key(_STR, "kv", cv.one_of("kv", "json", "text")),
    "level": _Key(_STR, "info", cv.one_of("debug", "info", "warning", "error")),
}
_METRICS = {
    "listen": _Key(_STR, None, cv.host_port(0)),
}
_SCHEMAS: dict[str, Mapping[str, _Key]] = {
    "sip": _SIP,
    "rtp": _RTP,
    "trunk": _TRUNK,
    "extension": _EXTENSION,
    "group": _GROUP,
    "recording": _RECORDING,
    "portal": _PORTAL,
    "security": _SECURITY,
    "numbers": _NUMBERS,
    "log": _LOG,
    "metrics": _METRICS,
}
KNOWN_KEYS: Mapping[str, tuple[str, ...]] = {name: tuple(s) for name, s in _SCHEMAS.items()}


# ---------------------------------------------------------------- section builders


def _table(ctx: cv.Context, data: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    value = data.get(name, {})
    if not isinstance(value, dict):
        raise ctx.error(name, f"must be a table [{name}] (got {cv.type_name(value)} {value!r})")
    return value


def _sip(ctx: cv.Context, table: Mapping[str, Any]) -> SipConfig:
    v = _section(ctx, table, _SIP, "sip.")
    if v["t1_ms"] > v["t2_ms"]:
        raise ctx.error("sip.t2_ms", f"must not be below sip.t1_ms ({v['t1_ms']})")
    if v["tls_listen"] is not None:
        for key in ("tls_cert", "tls_key"):
            if v[key] is None:
                raise ctx.error(f"sip.{key}", "required when sip.tls_listen is set")
    elif v["tls_cert"] is not None or v["tls_key"] is not None:
        raise ctx.error("sip.tls_listen", "required when sip.tls_cert or sip.tls_key is set")
    return SipConfig(**v)


def _rtp(ctx: cv.Context, table: Mapping[str, Any], sip: SipConfig) -> RtpConfig:
    v = _section(ctx, table, _RTP, "rtp.")
    port_min, port_max = v.pop("ports")
    v["bind"] = v["bind"] or sip.listen[0]
    v["public_address"] = v["public_address"] or sip.public_address
    return RtpConfig(port_min=port_min, port_max=port_max, **v)


def _trunk(ctx: cv.Context, table: Mapping[str, Any]) -> TrunkConfig:
    v = _section(ctx, table, _TRUNK, "trunk.")
    v["number_map"] = v.pop("inbound_map")
    host, port = v["host"]
    is_name = not _is_ip(host)
    # RFC 3263 4.2: SRV only for a name without a port; else the transport's default.
    v["srv_lookup"] = is_name and port is None
    if port is None:
        port = 5061 if v["transport"] == "tls" else 5060
    v["host"] = (host, port)
    if v["inbound_from"] is None:
        if is_name:
            # DNS answers are not trusted to grant inbound (unauthenticated) calls.
            raise ctx.error(
                "trunk.inbound_from",
                f"required when trunk.host is a host name ({host!r}): "
                "list the networks the trunk sends from",
            )
        ips = dict.fromkeys([host, *(h for h, _ in v["failover_hosts"])])
        v["inbound_from"] = tuple(ipaddress.ip_network(ip) for ip in ips)  # /32 or /128 each
    if v["register"]:
        for key in ("username", "password"):
            if v[key] is None:
                raise ctx.error(f"trunk.{key}", "required when trunk.register is true")
    if v["from_user"] is not None and v["identity_header"] == "from":
        # With "from" the From user *is* the presented number: nothing would present it.
        raise ctx.error(
            "trunk.from_user",
            'needs trunk.identity_header = "pai" or "ppi" (with "from" the From user is '
            "the presented number)",
        )
    return TrunkConfig(**v)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _extensions(ctx: cv.Context, data: Mapping[str, Any]) -> tuple[ExtensionConfig, ...]:
    raw = data.get("extension", [])
    if not isinstance(raw, list):
        raise ctx.error(
            "extension", "must be an array of tables: write [[extension]], not [extension]"
        )
    if not raw:
        raise ctx.error("extension", "at least one [[extension]] table is required")
    seen: dict[str, int] = {}
    out: list[ExtensionConfig] = []
    for i, item in enumerate(raw):
        prefix = f"extension[{i}]"
        if not isinstance(item, dict):
            raise ctx.error(prefix, f"must be a table (got {cv.type_name(item)} {item!r})")
        ext = ExtensionConfig(**_section(ctx, item, _EXTENSION, prefix + "."))
        if ext.number in seen:
            raise ctx.error(
                f"{prefix}.number",
                f"duplicate extension number {ext.number!r} (also extension[{seen[ext.number]}])",
            )
        seen[ext.number] = i
        out.append(ext)
    return tuple(out)


def _groups(
    ctx: cv.Context, data: Mapping[str, Any], extensions: frozenset[str]
) -> tuple[GroupConfig, ...]:
    raw = data.get("group", [])
    if not isinstance(raw, list):
        raise ctx.error("group", "must be an array of tables: write [[group]], not [group]")
    out: list[GroupConfig] = []
    for i, item in enumerate(raw):
        prefix = f"group[{i}]"
        if not isinstance(item, dict):
            raise ctx.error(prefix, f"must be a table (got {cv.type_name(item)} {item!r})")
        v = _section(ctx, item, _GROUP, prefix + ".")
        members = v["members"]
        if not members or any(not isinstance(m, str) or m not in extensions for m in members):
            raise ctx.error(
                prefix + ".members",
                f"must be a non-empty list of configured extension numbers (got {members!r})",
            )
        if v["number"] in extensions or any(g.number == v["number"] for g in out):
            raise ctx.error(prefix + ".number", f"{v['number']!r} is already an extension or group")
        v["members"] = tuple(members)
        out.append(GroupConfig(**v))
    return tuple(out)


def _recording(ctx: cv.Context, table: Mapping[str, Any]) -> RecordingConfig:
    v = _section(ctx, table, _RECORDING, "recording.")
    if v["consent_digit"] == v["decline_digit"]:
        raise ctx.error(
            "recording.decline_digit",
            f"must differ from recording.consent_digit ({v['consent_digit']!r})",
        )
    if v["public_key"] is None and v["mode"] != "off":
        default = "" if "mode" in table else " (the default)"
        raise ctx.error(
            "recording.public_key",
            f'required when recording.mode is {v["mode"]!r}{default}; or set mode = "off"',
        )
    return RecordingConfig(**v)


def _portal(ctx: cv.Context, table: Mapping[str, Any], sip: SipConfig) -> PortalConfig:
    v = _section(ctx, table, _PORTAL, "portal.")
    if (v["tls_cert"] is None) != (v["tls_key"] is None):
        missing = "tls_key" if v["tls_key"] is None else "tls_cert"
        raise ctx.error(f"portal.{missing}", "tls_cert and tls_key must be given together")
    if v["listen"] == sip.listen and v["listen"][1] != 0:
        raise ctx.error("portal.listen", "must differ from sip.listen (both use TCP)")
    return PortalConfig(**v)


def _security(ctx: cv.Context, table: Mapping[str, Any]) -> SecurityConfig:
    v = _section(ctx, table, _SECURITY, "security.")
    if v["max_calls_per_source"] > v["max_calls"]:
        raise ctx.error(
            "security.max_calls_per_source",
            f"must not exceed security.max_calls ({v['max_calls']})",
        )
    return SecurityConfig(**v)


def _metrics(
    ctx: cv.Context, table: Mapping[str, Any], sip: SipConfig, portal: PortalConfig
) -> MetricsConfig:
    v = _section(ctx, table, _METRICS, "metrics.")
    listen = v["listen"]
    if listen is not None and listen[1] != 0 and listen in (sip.listen, portal.listen):
        raise ctx.error("metrics.listen", "must differ from sip.listen and portal.listen")
    return MetricsConfig(**v)


# ---------------------------------------------------------------- entry points


def parse_config(data: Mapping[str, Any], path: Path) -> Config:
    """Validate an already parsed TOML document; `path` names the file and anchors paths."""
    ctx = cv.Context(path=path, base=path.expanduser().absolute().parent)
    for name in data:
        if name not in _SCHEMAS:
            raise ctx.error(cv.toml_key(name), _unknown(name, _SCHEMAS, "section"))
    sip = _sip(ctx, _table(ctx, data, "sip"))
    rtp = _rtp(ctx, _table(ctx, data, "rtp"), sip)
    trunk = _trunk(ctx, _table(ctx, data, "trunk"))
    extensions = _extensions(ctx, data)
    groups = _groups(ctx, data, frozenset(e.number for e in extensions))
    # Inbound calls may ring a hunt group as well as an extension.
    numbers = {e.number for e in extensions} | {g.number for g in groups}
    configured = ", ".join(sorted(numbers))
    if trunk.inbound_extension not in numbers:
        raise ctx.error(
            "trunk.inbound_extension",
            f"{trunk.inbound_extension!r} is not a configured extension (configured: {configured})",
        )
    for dialled, target in trunk.number_map:
        if target not in numbers:
            raise ctx.error(
                f"trunk.inbound_map.{cv.toml_key(dialled)}",
                f"{target!r} is not a configured extension (configured: {configured})",
            )
    recording = _recording(ctx, _table(ctx, data, "recording"))
    portal = _portal(ctx, _table(ctx, data, "portal"), sip)
    security = _security(ctx, _table(ctx, data, "security"))
    numbers_cfg = NumbersConfig(**_section(ctx, _table(ctx, data, "numbers"), _NUMBERS, "numbers."))
    if numbers_cfg.record_emergency and recording.mode != "announce":
        # Recording needs the other party informed; keypress would hold an emergency
        # call up for a digit, so only the announcement mode may record one.
        raise ctx.error(
            "numbers.record_emergency",
            f'needs recording.mode = "announce" (it is {recording.mode!r})',
        )
    return Config(
        path=ctx.base / path.name,
        sip=sip,
        rtp=rtp,
        trunk=trunk,
        extensions=extensions,
        recording=recording,
        portal=portal,
        security=security,
        numbers=numbers_cfg,
        log=LogConfig(**_section(ctx, _table(ctx, data, "log"), _LOG, "log.")),
        metrics=_metrics(ctx, _table(ctx, data, "metrics"), sip, portal),
        groups=groups,
    )


_TOML_POS = re.compile(r"^(.*) \(at line (\d+), column (\d+)\)$", re.DOTALL)


def load_config(path: Path) -> Config:
    """Read and validate a TOML config file; every problem is a ConfigError."""
    try:
        raw = Path(path).expanduser().read_bytes()
    except OSError as exc:
        raise ConfigError(path, "", f"cannot read: {exc.strerror or exc}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(path, "", f"not UTF-8 text (byte {exc.start})") from None
    except tomllib.TOMLDecodeError as exc:
        m = _TOML_POS.match(str(exc))
        where = f" at line {m.group(2)}, column {m.group(3)}" if m else ""
        detail = m.group(1) if m else str(exc)
        raise ConfigError(path, "", f"invalid TOML{where}: {detail}") from None
    return parse_config(data, Path(path))
