"""The [security] section: defaults, values and errors, in the style of test_config.py."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

import pytest

from b2bua.config import ConfigError, SecurityConfig, parse_config


def base(**security: object) -> dict[str, Any]:
    data: dict[str, Any] = {
        "sip": {"listen": "127.0.0.1:5060"},
        "trunk": {"host": "127.0.0.2:5080", "inbound_extension": "1000"},
        "extension": [{"number": "1000", "password": "secret"}],
        "recording": {"mode": "off"},
    }
    if security:
        data["security"] = dict(security)
    return data


def test_defaults_without_a_security_section(tmp_path: Path) -> None:
    config = parse_config(base(), tmp_path / "office.toml")
    assert config.security == SecurityConfig()
    sec = config.security
    assert sec.drop_strangers is False
    assert sec.trusted_networks == ()
    assert (sec.max_auth_failures, sec.ban_s, sec.auth_failure_window_s) == (10, 600.0, 600.0)
    assert (sec.max_calls, sec.max_calls_per_source) == (1000, 20)
    assert (sec.max_transactions_per_source, sec.max_registrations_per_source) == (100, 120)
    assert (sec.max_tcp_connections, sec.max_tcp_connections_per_source) == (512, 32)
    assert (sec.max_headers, sec.drain_s) == (200, 30.0)


def test_values_are_converted(tmp_path: Path) -> None:
    config = parse_config(
        base(
            drop_strangers=True,
            trusted_networks=["10.0.0.0/8", "2001:db8::/32"],
            max_auth_failures=3,
            ban_s=3600,
            drain_s=5,
            max_calls=50,
            max_calls_per_source=50,
        ),
        tmp_path / "office.toml",
    )
    sec = config.security
    assert sec.drop_strangers is True
    assert sec.trusted_networks == (
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("2001:db8::/32"),
    )
    assert sec.ban_s == 3600.0 and isinstance(sec.ban_s, float)
    assert sec.drain_s == 5.0
    assert (
        parse_config(base(trusted_networks=[]), tmp_path / "o.toml").security.trusted_networks == ()
    )


@pytest.mark.parametrize(
    ("security", "key", "words"),
    [
        ({"drop_strangers": "true"}, "security.drop_strangers", "write true/false without quotes"),
        ({"trusted_networks": ["10.0.0.1/8"]}, "security.trusted_networks[0]", "10.0.0.0/8"),
        ({"trusted_networks": "10.0.0.0/8"}, "security.trusted_networks", "must be an array"),
        ({"max_auth_failures": 0}, "security.max_auth_failures", "between 1 and 10000"),
        ({"ban_s": -1}, "security.ban_s", "above 0"),
        ({"drain_s": 7200}, "security.drain_s", "at most 3600"),
        ({"max_headers": 5}, "security.max_headers", "between 20 and 10000"),
        (
            {"max_calls": 10, "max_calls_per_source": 11},
            "security.max_calls_per_source",
            "must not exceed security.max_calls (10)",
        ),
        ({"max_call": 10}, "security.max_call", "did you mean 'max_calls'?"),
    ],
)
def test_errors_name_the_key(
    tmp_path: Path, security: dict[str, object], key: str, words: str
) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(base(**security), tmp_path / "office.toml")
    assert info.value.key == key
    assert words in info.value.problem


def test_security_must_be_a_table(tmp_path: Path) -> None:
    data = base()
    data["security"] = "on"
    with pytest.raises(ConfigError) as info:
        parse_config(data, tmp_path / "office.toml")
    assert info.value.key == "security"
