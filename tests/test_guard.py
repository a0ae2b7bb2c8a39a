"""The guard in simulated time: bans, slowdown, strangers, rates, call limits, log lines."""

from __future__ import annotations

import ipaddress
import logging
import re
from dataclasses import replace

import pytest

from b2bua.config import SecurityConfig
from b2bua.guard import MAX_TRACKED, Guard, Verdict, sanitize

TRUNK = ipaddress.ip_network("127.0.0.2/32")
ATTACKER = "192.0.2.66"
PHONE = "198.51.100.7"


def make(**overrides: object) -> Guard:
    config = replace(SecurityConfig(), **overrides)  # type: ignore[arg-type]
    return Guard(config, trunk_networks=[TRUNK], static_hosts=["127.0.0.3"])


def request(guard: Guard, ip: str, now: float, method: str = "REGISTER", **kw: int) -> Verdict:
    return guard.screen(ip, now, method=method, new_dialog=True, **kw)  # type: ignore[arg-type]


def test_failures_slow_down_then_ban_then_expire(caplog: pytest.LogCaptureFixture) -> None:
    guard = make(max_auth_failures=6, ban_s=100.0, auth_failure_window_s=60.0)
    caplog.set_level(logging.INFO, logger="b2bua.guard")
    now = 1000.0
    for _ in range(3):
        assert request(guard, ATTACKER, now) is Verdict.ALLOW
        guard.auth_failed(ATTACKER, "1000", now)
        now += 0.01
    # Three failures = half of six: one answer per second from now on.
    assert request(guard, ATTACKER, now) is Verdict.ALLOW
    assert request(guard, ATTACKER, now + 0.1) is Verdict.DROP
    assert request(guard, ATTACKER, now + 0.5) is Verdict.DROP
    assert request(guard, ATTACKER, now + 1.01) is Verdict.ALLOW
    assert guard.stats.dropped_slowdown == 2
    # Other sources are not affected.
    assert request(guard, PHONE, now) is Verdict.ALLOW
    for _ in range(3):
        guard.auth_failed(ATTACKER, "1000", now)
    assert guard.is_banned(ATTACKER, now)
    assert not guard.admits(ATTACKER, now + 99.0)
    assert request(guard, ATTACKER, now + 99.0) is Verdict.DROP
    assert guard.stats.bans == 1
    # After the ban the source starts afresh (no slowdown left over).
    assert guard.admits(ATTACKER, now + 100.5)
    assert request(guard, ATTACKER, now + 100.5) is Verdict.ALLOW
    assert request(guard, ATTACKER, now + 100.6) is Verdict.ALLOW
    lines = [r.getMessage() for r in caplog.records]
    assert sum(line.startswith("event=auth_failure src=192.0.2.66 ") for line in lines) == 6
    (ban,) = [line for line in lines if line.startswith("event=ban ")]
    assert re.fullmatch(
        r"event=ban src=192\.0\.2\.66 until=\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ "
        r"reason=auth_failures failures=6",
        ban,
    ), ban


def test_failures_outside_the_window_do_not_count() -> None:
    guard = make(max_auth_failures=4, auth_failure_window_s=10.0)
    for i in range(20):
        guard.auth_failed(ATTACKER, "x", 100.0 + i * 6.0)  # never more than two in 10 s
    assert not guard.is_banned(ATTACKER, 300.0)
    assert guard.stats.bans == 0


def test_ban_log_until_uses_the_wall_clock(caplog: pytest.LogCaptureFixture) -> None:
    guard = Guard(
        replace(SecurityConfig(), max_auth_failures=1, ban_s=60.0),
        wall_clock=lambda now: now + 1_800_000_000.0,  # 2027-01-15T08:00:00Z at now=0
    )
    caplog.set_level(logging.INFO, logger="b2bua.guard")
    guard.auth_failed("::ffff:192.0.2.1", "a b=c\nsrc=10.9.9.9", 0.0)
    messages = [r.getMessage() for r in caplog.records]
    assert messages[0] == "event=auth_failure src=192.0.2.1 user=a?b?c?src?10.9.9.9 failures=1"
    assert messages[1] == (
        "event=ban src=192.0.2.1 until=2027-01-15T08:01:00Z reason=auth_failures failures=1"
    )
    assert guard.is_banned("192.0.2.1", 1.0)  # IPv4-mapped IPv6 is the same source


def test_sanitize_keeps_log_lines_parseable() -> None:
    assert sanitize(None) == "-"
    assert sanitize("") == "-"
    assert sanitize("1000@example.org") == "1000@example.org"
    assert sanitize("x" * 500) == "x" * 64
    assert " " not in sanitize("a b\tc\r\nd=e")


def test_strangers_dropped_only_when_configured() -> None:
    sources = {"203.0.113.5"}
    open_guard = make()
    assert open_guard.admits(ATTACKER, 0.0)
    guard = Guard(
        replace(
            SecurityConfig(),
            drop_strangers=True,
            trusted_networks=(ipaddress.ip_network("10.1.0.0/16"),),
        ),
        trunk_networks=[TRUNK],
        static_hosts=["127.0.0.3"],
        registered_sources=lambda now: sources,
    )
    assert not guard.admits(ATTACKER, 0.0)
    assert request(guard, ATTACKER, 0.0, "OPTIONS") is Verdict.DROP
    assert guard.admits("127.0.0.2", 0.0)  # trunk
    assert guard.admits("127.0.0.3", 0.0)  # static phone
    assert guard.admits("10.1.200.3", 0.0)  # trusted network
    assert guard.admits("203.0.113.5", 0.0)  # live registration
    # A registration appearing later is seen once the cache is older than a second.
    sources.add(PHONE)
    assert guard.admits(PHONE, 5.0)
    # Peers of a live call are never strangers (e.g. a registration expired mid-call).
    assert guard.screen(ATTACKER, 6.0, method="BYE", new_dialog=False, in_call=True) is (
        Verdict.ALLOW
    )
    assert guard.stats.dropped_stranger == 2


def test_transaction_rate_per_source_and_trunk_exempt() -> None:
    guard = make(max_transactions_per_source=5)
    verdicts = [request(guard, ATTACKER, 10.0 + i * 0.01, "OPTIONS") for i in range(8)]
    assert verdicts.count(Verdict.ALLOW) == 5
    assert verdicts[5:] == [Verdict.DROP] * 3
    assert request(guard, ATTACKER, 11.1, "OPTIONS") is Verdict.ALLOW  # next window
    trunk = [request(guard, "127.0.0.2", 10.0, "INVITE") for _ in range(50)]
    assert set(trunk) == {Verdict.ALLOW}
    # Responses and ACKs are never rate limited.
    assert guard.screen(ATTACKER, 10.0, method=None, new_dialog=False) is Verdict.ALLOW
    assert guard.stats.dropped_rate == 3


def test_registrations_per_minute() -> None:
    guard = make(max_registrations_per_source=3)
    verdicts = [request(guard, PHONE, 100.0 + i, "REGISTER") for i in range(5)]
    assert verdicts == [Verdict.ALLOW] * 3 + [Verdict.DROP] * 2
    assert request(guard, PHONE, 104.0, "OPTIONS") is Verdict.ALLOW  # other methods pass
    assert request(guard, PHONE, 161.0, "REGISTER") is Verdict.ALLOW


def test_call_limits_and_draining() -> None:
    guard = make(max_calls=10, max_calls_per_source=2)
    assert request(guard, PHONE, 0.0, "INVITE", calls_total=3, calls_from_source=1) is (
        Verdict.ALLOW
    )
    assert request(guard, PHONE, 0.0, "INVITE", calls_total=3, calls_from_source=2) is (
        Verdict.REJECT_503
    )
    # The trunk carries every inbound call: no per-source limit, but the total holds.
    assert request(guard, "127.0.0.2", 0.0, "INVITE", calls_total=9, calls_from_source=9) is (
        Verdict.ALLOW
    )
    assert request(guard, "127.0.0.2", 0.0, "INVITE", calls_total=10) is Verdict.REJECT_503
    # In-dialog requests are never refused for load.
    assert guard.screen(PHONE, 0.0, method="INVITE", new_dialog=False, calls_total=99) is (
        Verdict.ALLOW
    )
    guard.draining = True
    assert request(guard, "127.0.0.2", 1.0, "INVITE") is Verdict.REJECT_503
    assert request(guard, PHONE, 1.0, "REGISTER") is Verdict.ALLOW
    assert guard.stats.rejected_calls == 2
    assert guard.stats.rejected_draining == 1


def test_memory_is_bounded_and_bans_survive_eviction() -> None:
    guard = make(max_auth_failures=1, ban_s=1e6)
    guard.auth_failed(ATTACKER, None, 0.0)
    for i in range(MAX_TRACKED + 50):
        request(guard, str(ipaddress.ip_address(0x0A000000 + i)), 1.0, "OPTIONS")
    assert guard.tracked() <= MAX_TRACKED
    assert guard.is_banned(ATTACKER, 2.0)


def test_sweep_forgets_idle_sources(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="b2bua.guard")
    guard = make(max_auth_failures=1, ban_s=30.0, auth_failure_window_s=30.0)
    guard.auth_failed(ATTACKER, None, 0.0)
    request(guard, PHONE, 0.0, "OPTIONS")
    assert guard.tracked() == 2
    assert guard.get_timer() is not None
    guard.handle_timer(10.0)
    assert guard.tracked() == 2  # still banned, PHONE seen recently
    guard.handle_timer(100.0)
    assert guard.tracked() == 0
    assert guard.get_timer() is None
    assert any(r.getMessage() == f"event=unban src={ATTACKER}" for r in caplog.records)


def test_garbage_addresses_do_not_raise() -> None:
    guard = make(drop_strangers=True)
    for ip in ("", "not-an-ip", "[::1]", "fe80::1%eth0", "999.1.1.1"):
        assert guard.admits(ip, 0.0) is False
        assert request(guard, ip, 0.0) is Verdict.DROP


def test_hammering_while_slowed_is_banned(caplog: pytest.LogCaptureFixture) -> None:
    # A guesser whose authenticated attempts are the ones dropped never reaches the
    # failure count; flooding on while slowed earns the ban instead.
    caplog.set_level(logging.INFO, logger="b2bua.guard")
    guard = make(max_auth_failures=4)
    for i in range(2):
        guard.auth_failed(ATTACKER, "1000", float(i))
    verdicts = [request(guard, ATTACKER, 10.0 + i * 0.02) for i in range(10)]
    assert verdicts[0] is Verdict.ALLOW
    assert verdicts[1:5] == [Verdict.DROP] * 4
    assert guard.is_banned(ATTACKER, 11.0)
    assert any("reason=slowdown_ignored failures=2" in r.getMessage() for r in caplog.records)


def test_fail2ban_filter_matches_the_log_lines(caplog: pytest.LogCaptureFixture) -> None:
    """docs/fail2ban/b2bua.conf against lines formatted as `b2bua serve` writes them."""
    from pathlib import Path

    conf = (Path(__file__).resolve().parents[1] / "docs/fail2ban/b2bua.conf").read_text()
    block = conf.split("failregex =", 1)[1].split("ignoreregex", 1)[0]
    patterns = [
        re.compile(line.strip().replace("<HOST>", r"(?P<host>\S+)"))
        for line in block.splitlines()
        if line.strip()
    ]
    assert len(patterns) == 2
    formatter = logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s")
    caplog.set_level(logging.INFO, logger="b2bua.guard")
    guard = make(max_auth_failures=2)
    guard.auth_failed("192.0.2.66", "x src=10.0.0.1", 0.0)
    guard.auth_failed("192.0.2.66", None, 0.1)
    lines = [formatter.format(r) for r in caplog.records]
    hosts = []
    for line in lines:
        found = [m.group("host") for p in patterns if (m := p.match(line))]
        hosts.extend(found)
    assert hosts == ["192.0.2.66"] * 3  # two failures and the ban, never 10.0.0.1
