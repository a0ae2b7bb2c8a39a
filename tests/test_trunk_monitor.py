"""OPTIONS keepalive and failover (b2bua/trunk_monitor.py), alone and inside the switch
(sans-I/O: messages in, datagrams out, time passed in), plus the trunk config keys."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

import pytest

from b2bua.auth import NonceFactory
from b2bua.config import Config, ConfigError, parse_config
from b2bua.message import Request, Response, make_response, parse_message
from b2bua.registrar import Registrar
from b2bua.switch import Switch
from b2bua.trunk_monitor import Health, TrunkMonitor

A = ("127.0.0.2", 5080)
B = ("127.0.0.4", 5080)
LOCAL = ("127.0.0.1", 5060)


def _monitor(interval: float = 30.0) -> TrunkMonitor:
    monitor = TrunkMonitor("trunk.test", interval_s=interval, failover=[B])
    monitor.set_primary([A], 0.0)
    monitor.start(100.0)
    return monitor


def _probe_map(monitor: TrunkMonitor, now: float) -> dict[tuple[str, int], Request]:
    return {dest: request for request, dest in monitor.on_timer(now, LOCAL)}


def test_probes_go_out_one_interval_after_start_and_never_twice_at_once() -> None:
    monitor = _monitor()
    assert monitor.get_timer() == 130.0
    assert monitor.on_timer(129.9, LOCAL) == []
    probes = _probe_map(monitor, 130.0)
    assert set(probes) == {A, B}
    options = probes[A]
    assert options.method == "OPTIONS"
    assert str(options.uri) == "sip:127.0.0.2:5080"
    assert options.headers.get("To") == "<sip:trunk.test>"
    assert options.headers.get("Max-Forwards") == "70"
    assert monitor.get_timer() is None  # both probes out: nothing due
    assert monitor.on_timer(500.0, LOCAL) == []


def test_any_answer_is_alive_but_silence_and_503_are_not() -> None:
    monitor = _monitor()
    probes = _probe_map(monitor, 130.0)
    assert monitor.health(A) is Health.UNKNOWN and monitor.is_live(A)
    monitor.on_response(A, make_response(probes[A], 100), 130.1)  # provisional: no verdict
    assert monitor.health(A) is Health.UNKNOWN
    monitor.on_response(A, make_response(probes[A], 501), 130.2)
    assert monitor.health(A) is Health.UP
    monitor.on_timeout(B, 162.0)
    assert monitor.health(B) is Health.DOWN
    assert monitor.live_targets() == [A, B]  # dead ones last, still tried
    # Next round: A says 503 (overloaded), B answers 404: they swap.
    assert monitor.get_timer() == 160.2
    probes = _probe_map(monitor, 192.0)
    monitor.on_response(A, make_response(probes[A], 503), 192.1)
    monitor.on_response(B, make_response(probes[B], 404), 192.1)
    assert (monitor.health(A), monitor.health(B)) == (Health.DOWN, Health.UP)
    assert monitor.first() == B
    assert monitor.protocol_errors == 0
    monitor.on_response(A, make_response(probes[A], 200), 193.0)  # no probe out: stray
    assert monitor.protocol_errors == 1
    assert monitor.health(A) is Health.DOWN


def test_keepalive_off_sends_nothing() -> None:
    monitor = _monitor(interval=0)
    assert monitor.get_timer() is None
    assert monitor.on_timer(10_000.0, LOCAL) == []
    assert monitor.first() == A


def test_alternative_after_a_failed_invite() -> None:
    monitor = _monitor()
    assert monitor.alternative([A], 486) is None  # busy is an answer, not a failure
    assert monitor.health(A) is Health.UNKNOWN
    assert monitor.alternative([A], 503) == B
    assert monitor.health(A) is Health.DOWN
    assert monitor.alternative([A, B], None) is None  # tried them all: once is enough
    assert monitor.first() is not None  # dead targets remain the last resort


def test_dns_changes_keep_known_health_and_drop_old_targets() -> None:
    monitor = _monitor()
    monitor.report_failure(A)
    c = ("127.0.0.5", 5080)
    monitor.set_primary([c, A], 200.0)
    assert monitor.targets == (c, A, B)
    assert monitor.health(A) is Health.DOWN
    assert monitor.health(c) is Health.UNKNOWN
    monitor.set_primary([c], 201.0)
    assert monitor.health(A) is None
    assert monitor.live_targets() == [c, B]


# -- inside the switch ----------------------------------------------------------------


def _config(tmp_path: Path, **trunk: Any) -> Config:
    data: dict[str, Any] = {
        "sip": {"listen": "127.0.0.1:5060", "t1_ms": 100},
        "trunk": {"host": "127.0.0.2:5080", "inbound_extension": "1000", **trunk},
        "extension": [{"number": "1000", "password": "pw", "contact": "sip:1000@127.0.0.3"}],
        "recording": {"mode": "off"},
    }
    return parse_config(data, tmp_path / "office.toml")


def _switch(config: Config) -> Switch:
    registrar = Registrar(config.extensions, realm="b2bua", nonces=NonceFactory(b"k" * 32, 300.0))
    return Switch(config, registrar, None, LOCAL)  # type: ignore[arg-type]  # no calls here


def _sent(switch: Switch) -> list[tuple[Request, tuple[str, int]]]:
    out = []
    for data, dest, _ in switch.datagrams_to_send():
        message = parse_message(data)
        if isinstance(message, Request):
            out.append((message, dest))
    return out


def _answer(
    switch: Switch, request: Request, status: int, source: tuple[str, int], now: float
) -> None:
    response = make_response(request, status)
    assert isinstance(response, Response)
    switch.receive(parse_message(response.to_bytes()), source, "UDP", now)


def test_switch_probes_and_fails_over(tmp_path: Path) -> None:
    config = _config(tmp_path, keepalive_s=5, failover_hosts=["127.0.0.4:5080"])
    switch = _switch(config)
    switch.start_trunk_registration(0.0)
    assert switch.get_timer() == 5.0
    switch.handle_timer(5.0)
    probes = {dest: request for request, dest in _sent(switch) if request.method == "OPTIONS"}
    assert set(probes) == {A, B}
    _answer(switch, probes[B], 200, B, 5.01)  # only the failover host answers
    now = 5.0
    for _ in range(200):  # the primary's OPTIONS transaction runs out (64 * T1 = 6.4 s)
        deadline = switch.get_timer()
        assert deadline is not None
        now = deadline
        switch.handle_timer(now)
        switch.datagrams_to_send()
        if switch.trunk_monitor.health(A) is Health.DOWN:
            break
    assert switch.trunk_monitor.health(A) is Health.DOWN
    assert 36.0 < now < 38.0  # Timer F with the default T1 (the switch got no TimerConfig)
    target = switch._target_for("outbound", None, "+4930123", now)
    assert target is not None
    assert target.destination == B
    assert str(target.uri) == "sip:+4930123@127.0.0.2:5080"  # the trunk's own name/address
    assert switch._services.trunk_alternative([B], 503, now) is None  # A is down too


def test_switch_waits_for_dns_before_calling_out_or_registering(tmp_path: Path) -> None:
    config = _config(
        tmp_path,
        host="trunk.test",
        inbound_from=["127.0.0.2/32"],
        register=True,
        username="office",
        password="secret",
        keepalive_s=0,
    )
    switch = _switch(config)
    switch.start_trunk_registration(0.0)
    assert switch.trunk_registration is None
    assert switch._target_for("outbound", None, "+4930123", 0.0) is None
    switch.set_trunk_targets((("127.0.0.2", 5062), ("127.0.0.4", 5062)), 1.0)
    registers = [(r, d) for r, d in _sent(switch) if r.method == "REGISTER"]
    assert [d for _, d in registers] == [("127.0.0.2", 5062)]
    assert str(registers[0][0].uri) == "sip:trunk.test"
    target = switch._target_for("outbound", None, "+4930123", 1.0)
    assert target is not None and target.destination == ("127.0.0.2", 5062)
    assert str(target.uri) == "sip:+4930123@trunk.test"  # SRV: no port in the URI


# -- config ---------------------------------------------------------------------------


def test_config_defaults_and_forms(tmp_path: Path) -> None:
    config = _config(tmp_path)
    assert config.trunk.keepalive_s == 30.0
    assert config.trunk.failover_hosts == ()
    assert config.trunk.dns_server is None
    assert config.trunk.srv_lookup is False
    config = _config(
        tmp_path,
        host="sip.carrier.test",
        transport="tls",
        inbound_from=["192.0.2.0/24"],
        dns_server="127.0.0.1:5353",
    )
    assert config.trunk.host == ("sip.carrier.test", 5061)
    assert config.trunk.srv_lookup is True
    assert config.trunk.dns_server == ("127.0.0.1", 5353)
    config = _config(tmp_path, host="sip.carrier.test:5070", inbound_from=["192.0.2.0/24"])
    assert (config.trunk.host, config.trunk.srv_lookup) == (("sip.carrier.test", 5070), False)
    assert _config(tmp_path, dns_server="127.0.0.1").trunk.dns_server == ("127.0.0.1", 53)


def test_failover_hosts_are_inbound_sources_by_default(tmp_path: Path) -> None:
    config = _config(tmp_path, failover_hosts=["127.0.0.4:5080"])
    assert config.trunk.inbound_from == (
        ipaddress.ip_network("127.0.0.2/32"),
        ipaddress.ip_network("127.0.0.4/32"),
    )


@pytest.mark.parametrize(
    ("trunk", "key", "problem"),
    [
        ({"keepalive_s": -1}, "trunk.keepalive_s", "must be 0 (off)"),
        ({"keepalive_s": 0.5}, "trunk.keepalive_s", "must be 0 (off)"),
        ({"failover_hosts": ["b.test:5060"]}, "trunk.failover_hosts[0]", "IP address"),
        ({"failover_hosts": ["127.0.0.4"]}, "trunk.failover_hosts[0]", "must give the port"),
        ({"failover_hosts": [5060]}, "trunk.failover_hosts[0]", "must be a string"),
        ({"dns_server": "dns.test:53"}, "trunk.dns_server", "IP address"),
        ({"host": "trunk.test"}, "trunk.inbound_from", "required when trunk.host is a host"),
    ],
)
def test_bad_trunk_interop_keys(
    tmp_path: Path, trunk: dict[str, Any], key: str, problem: str
) -> None:
    with pytest.raises(ConfigError) as info:
        _config(tmp_path, **trunk)
    assert info.value.key == key
    assert problem in info.value.problem
