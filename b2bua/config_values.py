"""Value checks for config.py: each validates one TOML value and converts it.

A check takes the value (already of the right TOML type) and the `Context` (config file
and its directory, for paths) and returns the converted value, or raises
`InvalidValueError` with the problem in words; config.py adds file and key. The age
recipient helpers live here too, since `recording.public_key` is checked at load time
and re-read by the recorder on reload.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from b2bua.numbers import is_region
from b2bua.tollfraud import is_rule
from media.agefile import AgeKeyError, parse_recipients

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class ConfigError(Exception):
    """A config problem: `str()` is "<file>: <dotted.key>: <what is wrong>"."""

    def __init__(self, path: Path | str, key: str, problem: str) -> None:
        super().__init__(path, key, problem)  # all three args: copy and pickle work
        self.path = Path(path)
        self.key = key
        self.problem = problem

    def __str__(self) -> str:
        where = f"{self.args[0]}: {self.key}: " if self.key else f"{self.args[0]}: "
        return where + self.problem


# ---------------------------------------------------------------- age recipients


def is_age_recipient(text: str) -> bool:
    """True for a well-formed age X25519 recipient ("age1" + bech32, checksum valid)."""
    try:
        parse_recipients(text)
    except AgeKeyError:
        return False
    return "\n" not in text.strip()


_BECH32_CHARSET = frozenset("qpzry9x8gf2tvdw0s3jn54khce6mua7l")

_IDENTITY_HINT = (
    "holds an age secret key; give the recorder only the public recipient (age-keygen -y)"
)


def read_recipients(source: str | Path) -> tuple[str, ...]:
    """Recipients from a literal or a file (one per line, '#' comments); ValueError if bad."""
    if isinstance(source, str):
        if not is_age_recipient(source):
            raise ValueError(f"not a valid age X25519 recipient: {source!r}")
        return (source,)
    try:
        text = source.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read {source}: {exc}") from None
    # A secret key here means the operator gave the recorder what it must never hold.
    if any(line.strip().upper().startswith("AGE-SECRET-KEY-") for line in text.splitlines()):
        raise ValueError(f"{source} {_IDENTITY_HINT}")
    try:
        return tuple(parse_recipients(text))
    except AgeKeyError as exc:
        where = str(exc).split(":", 1)[0]  # "line N" from parse_recipients
        message = (
            "lists no age recipient"
            if "no recipients" in str(exc)
            else f"{where}: not a valid age X25519 recipient"
        )
        raise ValueError(f"{source} {message}") from None


class InvalidValueError(Exception):
    """A check's verdict; `sub` extends the key path (e.g. "[2]" for a list element)."""

    def __init__(self, problem: str, sub: str = "") -> None:
        super().__init__(problem)
        self.sub = sub


@dataclass(frozen=True)
class Context:
    path: Path  # as the user gave it, for messages
    base: Path  # absolute directory of the config file

    def error(self, key: str, problem: str) -> ConfigError:
        return ConfigError(self.path, key, problem)

    def resolve(self, raw: str) -> Path:
        try:
            p = Path(raw).expanduser()
        except RuntimeError as exc:  # "~nobody/...": no such user's home directory
            raise InvalidValueError(f"can not expand {raw!r}: {exc}") from None
        return p if p.is_absolute() else self.base / p


Check = Callable[[Any, Context], Any]


TOML_TYPE = {
    bool: "boolean",
    int: "integer",
    float: "float",
    str: "string",
    list: "array",
    dict: "table",
}


def type_name(value: object) -> str:
    for py, name in TOML_TYPE.items():
        if isinstance(value, py):
            return name
    return "date/time"  # the only other thing tomllib produces


def toml_key(name: str) -> str:
    """A table key as TOML would write it in a dotted path."""
    return name if re.fullmatch(r"[A-Za-z0-9_-]+", name) else '"' + name + '"'


# ---------------------------------------------------------------- checks (validate + convert)


def one_of(*choices: str) -> Check:
    def check(value: str, _ctx: Context) -> str:
        if value not in choices:
            raise InvalidValueError(f"must be one of {', '.join(choices)} (got {value!r})")
        return value

    return check


def int_between(lo: int, hi: int) -> Check:
    def check(value: int, _ctx: Context) -> int:
        if not lo <= value <= hi:
            raise InvalidValueError(f"must be between {lo} and {hi} (got {value})")
        return value

    return check


def seconds(hi: float | None = None) -> Check:
    def check(value: float, _ctx: Context) -> float:
        if not math.isfinite(value) or value <= 0 or (hi is not None and value > hi):
            upper = f" and at most {hi:g}" if hi is not None else ""
            raise InvalidValueError(f"must be a number above 0{upper} (got {value})")
        return float(value)

    return check


def single_line(value: str, _ctx: Context) -> str:
    if not value.strip() or any(c in value for c in '\r\n\0"'):
        raise InvalidValueError(f"must be a non-empty single line without quotes (got {value!r})")
    return value


_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOSTNAME = re.compile(rf"{_LABEL}(?:\.{_LABEL})*\.?")


def _parse_host(text: str) -> str:
    """An IP literal (IPv6 without brackets) or a host name; raises InvalidValueError."""
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        pass
    last = text.rstrip(".").rsplit(".", 1)[-1]
    if len(text) > 253 or not _HOSTNAME.fullmatch(text) or last.isdigit():
        raise InvalidValueError(f"not an IP address or host name: {text!r}")
    return text


def host_name(value: str, _ctx: Context) -> str:
    if value.startswith("[") and value.endswith("]"):
        value = value[1:-1]
    return _parse_host(value)


def host_port(min_port: int) -> Check:
    """ "host:port" or "[v6]:port" -> (host, port); listen sockets may use port 0 (any)."""

    def check(value: str, _ctx: Context) -> tuple[str, int]:
        m = re.fullmatch(r"\[([^\]]+)\]:(\d{1,5})|([^:\[\]]+):(\d{1,5})", value)
        if m is None:
            hint = (
                ' (write IPv6 addresses in brackets: "[::1]:5060")' if value.count(":") > 1 else ""
            )
            raise InvalidValueError(f"must be host:port (got {value!r}){hint}")
        host = m.group(1) or m.group(3)
        port = int(m.group(2) or m.group(4))
        if m.group(1) is not None:
            _v6(host)  # brackets are only for IPv6 addresses
        if not min_port <= port <= 65535:
            raise InvalidValueError(f"port must be between {min_port} and 65535 (got {port})")
        return _parse_host(host), port

    return check


def host_optional_port(value: str, ctx: Context) -> tuple[str, int | None]:
    """ "host", "host:port", "[v6]" or "[v6]:port" -> (host, port or None); without a port,
    a host name is looked up with SRV (RFC 3263, b2bua/trunk_dns.py)."""
    bracketed = re.fullmatch(r"\[([^\]]+)\]", value)
    if bracketed is not None:
        _v6(bracketed.group(1))
        return bracketed.group(1), None
    if value.count(":") > 1 and not value.startswith("["):
        try:
            return str(ipaddress.IPv6Address(value)), None
        except ValueError:
            pass  # host_port explains the brackets
    if ":" in value:
        host, port = host_port(1)(value, ctx)
        return host, port
    return _parse_host(value), None


def ip_port(default_port: int) -> Check:
    """ "ip:port", "[v6]:port" or a bare IP (with `default_port`) -> (ip, port); no names."""

    def check(value: str, ctx: Context) -> tuple[str, int]:
        host, port = host_optional_port(value, ctx)
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise InvalidValueError(f"must be an IP address, not a name (got {value!r})") from None
        return host, default_port if port is None else port

    return check


def ip_port_list(value: list[Any], ctx: Context) -> tuple[tuple[str, int], ...]:
    """A list of "ip:port" (port required), e.g. trunk.failover_hosts."""
    out: list[tuple[str, int]] = []
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise InvalidValueError(
                f'must be a string like "192.0.2.7:5060" (got {item!r})', f"[{i}]"
            )
        try:
            addr = ip_port(0)(item, ctx)
        except InvalidValueError as exc:
            raise InvalidValueError(str(exc), f"[{i}]") from None
        if addr[1] == 0:
            raise InvalidValueError(f'must give the port, e.g. "{addr[0]}:5060"', f"[{i}]")
        if addr in out:
            raise InvalidValueError(f"{item} is listed twice", f"[{i}]")
        out.append(addr)
    return tuple(out)


def seconds_or_off(value: float, _ctx: Context) -> float:
    """A number of seconds >= 1, or 0 for off (e.g. trunk.keepalive_s)."""
    if not math.isfinite(value) or not (value == 0 or 1 <= value <= 86_400):
        raise InvalidValueError(f"must be 0 (off) or between 1 and 86400 seconds (got {value})")
    return float(value)


def _v6(text: str) -> None:
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        raise InvalidValueError(f"not an IPv6 address in brackets: {text!r}") from None


def port_range(value: str, _ctx: Context) -> tuple[int, int]:
    m = re.fullmatch(r"\s*(\d{1,5})\s*-\s*(\d{1,5})\s*", value)
    if m is None:
        raise InvalidValueError(f'must be a range like "20000-29999" (got {value!r})')
    lo, hi = int(m.group(1)), int(m.group(2))
    if not (1024 <= lo <= 65535 and 1024 <= hi <= 65535):
        raise InvalidValueError(f"ports must be within 1024..65535 (got {value!r})")
    if lo >= hi:
        raise InvalidValueError(f"first port must be below the last (got {value!r})")
    if lo % 2:
        # RFC 3550 section 11: RTP on an even port, RTCP on the next (odd) one.
        raise InvalidValueError(f"first port must be even, RTP uses even ports (got {lo})")
    return lo, hi


def networks(value: list[Any], _ctx: Context) -> tuple[IPNetwork, ...]:
    if not value:
        raise InvalidValueError("must list at least one network")
    nets: list[IPNetwork] = []
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise InvalidValueError(
                f'must be a string like "192.0.2.0/24" (got {item!r})', f"[{i}]"
            )
        try:
            nets.append(ipaddress.ip_network(item, strict=True))
        except ValueError as exc:
            hint = ""
            if "host bits set" in str(exc):
                hint = f"; did you mean {ipaddress.ip_network(item, strict=False)}?"
            raise InvalidValueError(f"not a network: {item!r} ({exc}{hint})", f"[{i}]") from None
    return tuple(nets)


def days_table(key_check: Callable[[str], bool], what: str) -> Check:
    """A table of name -> retention days (1..1825), e.g. {inbound = 7} or {"1000" = 90}."""

    def check(value: dict[str, Any], _ctx: Context) -> tuple[tuple[str, int], ...]:
        out: list[tuple[str, int]] = []
        for name, days in value.items():
            if not key_check(name):
                raise InvalidValueError(f"{name!r} is not {what}", f".{toml_key(name)}")
            if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= 1825:
                raise InvalidValueError(
                    f"must be a whole number of days, 1..1825 (got {days!r})", f".{toml_key(name)}"
                )
            out.append((name, days))
        return tuple(out)

    return check


def network_list(value: list[Any], ctx: Context) -> tuple[IPNetwork, ...]:
    """Like `networks`, but an empty list is allowed (and means: none)."""
    return networks(value, ctx) if value else ()


DIGEST_ALGORITHMS = ("SHA-256", "MD5")


def digest_algorithms(value: list[Any], _ctx: Context) -> tuple[str, ...]:
    """A non-empty list of distinct digest algorithms, in the order they are offered."""
    if not value:
        raise InvalidValueError("must list at least one of SHA-256, MD5")
    out: list[str] = []
    for i, item in enumerate(value):
        if item not in DIGEST_ALGORITHMS:
            raise InvalidValueError(f"must be SHA-256 or MD5 (got {item!r})", f"[{i}]")
        if item in out:
            raise InvalidValueError(f"{item} is listed twice", f"[{i}]")
        out.append(item)
    return tuple(out)


EXTENSION_NUMBER = re.compile(r"[0-9]{1,15}")


def extension_number(value: str, _ctx: Context) -> str:
    if not EXTENSION_NUMBER.fullmatch(value):
        raise InvalidValueError(f"must be 1 to 15 digits (got {value!r})")
    return value


def dialable_number(value: str, _ctx: Context) -> str:
    """An extension or an external number (digits, optionally a leading +)."""
    if not re.fullmatch(r"\+?[0-9]{1,20}", value):
        raise InvalidValueError(f"must be digits, optionally with a leading + (got {value!r})")
    return value


def number_map(value: dict[str, Any], _ctx: Context) -> tuple[tuple[str, str], ...]:
    pairs: list[tuple[str, str]] = []
    for dialled, target in value.items():
        sub = "." + toml_key(dialled)
        if not re.fullmatch(r"\+?[0-9]{1,20}", dialled):
            raise InvalidValueError(
                f"dialled number must be digits, optionally with a leading + (got {dialled!r})", sub
            )
        if not isinstance(target, str) or not EXTENSION_NUMBER.fullmatch(target):
            raise InvalidValueError(
                f"must be an extension number as a string (got {target!r})", sub
            )
        pairs.append((dialled, target))
    return tuple(pairs)


def sip_uri(value: str, _ctx: Context) -> str:
    # A deliberately simple check: scheme, optional userinfo, then a host.
    m = re.fullmatch(
        r"sips?:(?:[^@\s]+@)?(\[[0-9A-Fa-f:.]+\]|[^:;?\s\[\]@]+)(?::\d{1,5})?(?:[;?]\S*)?", value
    )
    if m is None:
        raise InvalidValueError(
            "must be a sip: or sips: URI with a host, "
            f'e.g. "sip:1000@192.0.2.7:5060" (got {value!r})'
        )
    return value


def dtmf(max_len: int) -> Check:
    def check(value: str, _ctx: Context) -> str:
        code = value.upper()
        if not 1 <= len(code) <= max_len or any(c not in "0123456789*#ABCD" for c in code):
            what = "a single DTMF key" if max_len == 1 else f"1 to {max_len} DTMF keys"
            raise InvalidValueError(f"must be {what} (0-9, *, #, A-D) (got {value!r})")
        return code

    return check


def file_path(must_exist: bool) -> Check:
    def check(value: str, ctx: Context) -> Path:
        if not value:
            raise InvalidValueError("must not be empty")
        path = ctx.resolve(value)
        if must_exist and not path.is_file():
            raise InvalidValueError(f"file not found: {path}")
        return path

    return check


def public_key(value: str, ctx: Context) -> str | Path:
    if value.upper().startswith("AGE-SECRET-KEY-"):
        raise InvalidValueError(f"this {_IDENTITY_HINT}")
    # Something that looks like a recipient is one: a bad checksum must not turn it into a path.
    looks_literal = value.startswith("age1") and all(c in _BECH32_CHARSET for c in value[4:])
    source: str | Path = value if looks_literal else file_path(must_exist=True)(value, ctx)
    try:
        read_recipients(source)
    except ValueError as exc:
        raise InvalidValueError(str(exc)) from None
    return source


# ---------------------------------------------------------------- numbers (b2bua/numbers.py)


def region(value: str, _ctx: Context) -> str:
    """A two-letter region code phonenumbers knows ("DE"); upper-cased."""
    code = value.upper()
    if not is_region(code):
        raise InvalidValueError(f'must be a two-letter country code such as "DE" (got {value!r})')
    return code


def area_code(value: str, _ctx: Context) -> str:
    if not re.fullmatch(r"[0-9]{1,8}", value):
        raise InvalidValueError(f'must be digits as dialled nationally, e.g. "030" (got {value!r})')
    return value


_PHONE_NUMBER = re.compile(r"\+?[0-9]{1,20}")
_NUMBER_SEPARATORS = re.compile(r"[\s().\-/]")


def number_list(allow_empty: bool) -> Check:
    """A list of telephone numbers (digits, optional leading +, separators dropped)."""

    def check(value: list[Any], _ctx: Context) -> tuple[str, ...]:
        if not value and not allow_empty:
            raise InvalidValueError("must list at least one number")
        out: list[str] = []
        for i, item in enumerate(value):
            text = _NUMBER_SEPARATORS.sub("", item) if isinstance(item, str) else None
            if text is None or not _PHONE_NUMBER.fullmatch(text):
                raise InvalidValueError(
                    f'must be a number as a string, e.g. "+4930123456" (got {item!r})', f"[{i}]"
                )
            out.append(text)
        return tuple(out)

    return check


def destination_rules(value: list[Any], _ctx: Context) -> tuple[str, ...]:
    """Toll-fraud destination rules (b2bua/tollfraud.py): "!"? + a digit pattern."""
    out: list[str] = []
    for i, item in enumerate(value):
        if not isinstance(item, str) or not is_rule(item):
            raise InvalidValueError(
                f'must be a pattern like "+49*" or "!+49900*" (got {item!r})', f"[{i}]"
            )
        out.append(item)
    return tuple(out)


# RFC 3261 25.1 user part: unreserved and user-unreserved characters, without escapes
# and without ";", "?" and "/", which our URIs would have to escape.
_SIP_USER = re.compile(r"[A-Za-z0-9\-_.!~*'()&=+$,]{1,64}")


def sip_user(value: str, _ctx: Context) -> str:
    """The user part of a SIP URI (an account name such as sipgate's "1234567t0")."""
    if not _SIP_USER.fullmatch(value):
        raise InvalidValueError(
            f'must be the user part of a SIP URI such as "1234567t0" (got {value!r})'
        )
    return value


def phone_number(value: str, _ctx: Context) -> str:
    """One telephone number: digits with an optional leading +, separators dropped."""
    text = _NUMBER_SEPARATORS.sub("", value)
    if not _PHONE_NUMBER.fullmatch(text):
        raise InvalidValueError(f'must be a number such as "+4930123456" (got {value!r})')
    return text
