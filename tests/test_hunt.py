"""Hunt groups without the network: [[group]] config, the hunt's table, consent rules."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from b2bua.call import Target
from b2bua.config import ConfigError, GroupConfig, parse_config
from b2bua.hunt import Hunt, HuntError, Phase, employee_consent, start_hunt
from b2bua.message import parse_message
from b2bua.router import Router
from b2bua.uri import URI

RECIPIENT = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p"


def t(user: str) -> Target:
    return Target(URI("sip", user, host="127.0.0.3"), ("127.0.0.3", 5070), "UDP", user)


def office(**group: Any) -> dict[str, Any]:
    return {
        "sip": {"listen": "127.0.0.1:5060"},
        "trunk": {"host": "127.0.0.2:5080", "inbound_extension": "600"},
        "extension": [
            {"number": "1000", "password": "a", "employee_consent": True},
            {"number": "1001", "password": "b", "employee_consent": True},
            {"number": "1002", "password": "c"},
        ],
        "group": [{"number": "600", "members": ["1000", "1001"], **group}],
        "recording": {"mode": "off"},
    }


def test_group_defaults_and_lookup(tmp_path: Path) -> None:
    config = parse_config(office(), tmp_path / "c.toml")
    assert config.group("600") == GroupConfig("600", ("1000", "1001"), "order", 20.0, None)
    assert config.group("1000") is None
    config = parse_config(office(ring_s=5, fallback="+4930123"), tmp_path / "c.toml")
    group = config.group("600")
    assert group is not None and group.ring_s == 5.0 and group.fallback == "+4930123"


@pytest.mark.parametrize(
    ("change", "key"),
    [
        ({"members": []}, "group[0].members"),
        ({"members": ["1000", "999"]}, "group[0].members"),
        ({"number": "1000"}, "group[0].number"),
        ({"strategy": "random"}, "group[0].strategy"),
        ({"ring_s": 0}, "group[0].ring_s"),
        ({"fallback": "abc"}, "group[0].fallback"),
        ({"colour": "red"}, "group[0].colour"),
    ],
)
def test_group_errors_name_the_key(tmp_path: Path, change: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(office(**change), tmp_path / "c.toml")
    assert info.value.key == key


def test_inbound_map_may_name_a_group_but_not_an_unknown_number(tmp_path: Path) -> None:
    data = office()
    data["trunk"]["inbound_map"] = {"+4930555": "600"}
    assert parse_config(data, tmp_path / "c.toml").trunk.inbound_target("+4930555") == "600"
    data["trunk"]["inbound_map"] = {"+4930555": "601"}
    with pytest.raises(ConfigError):
        parse_config(data, tmp_path / "c.toml")


def test_employee_consent_of_a_group_needs_every_office_party(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    assert employee_consent(parse_config(office(), path), "600")
    assert not employee_consent(parse_config(office(fallback="1002"), path), "600")
    assert not employee_consent(parse_config(office(fallback="+4930123"), path), "600")
    assert employee_consent(parse_config(office(), path), "1000")
    assert not employee_consent(parse_config(office(), path), None)


def test_start_hunt_skips_unreachable_members_and_the_caller(tmp_path: Path) -> None:
    config = parse_config(office(fallback="1002"), tmp_path / "c.toml")
    reachable = {"1001": t("1001"), "1002": t("1002")}
    started = start_hunt(config, "600", lambda n, _now: reachable.get(n), 0.0)
    assert started is not None
    first, hunt = started
    assert first == t("1001") and hunt.pending == [t("1002")] and hunt.label == "600"
    assert start_hunt(config, "1000", lambda n, _now: None, 0.0) is None  # not a group
    assert start_hunt(config, "600", lambda n, _now: None, 0.0) is None  # nobody reachable
    skipped = start_hunt(config, "600", lambda n, _now: t(n), 0.0, skip="1001")
    assert skipped is not None and skipped[0] == t("1000") and skipped[1].pending == [t("1002")]


def test_hunt_table_moves_on_then_says_farewell() -> None:
    hunt = Hunt("600", [t("b"), t("c")], 2.0)
    hunt.arm(10.0)
    assert hunt.deadline == 12.0
    assert hunt.next_target() == t("b") and hunt.next_target() == t("c")
    assert hunt.next_target() is None and hunt.tried == 3
    hunt.farewell(20.0)
    assert hunt.phase is Phase.FAREWELL and hunt.deadline is not None
    assert hunt.next_target() is None  # no more ringing while the prompt plays
    hunt.done()
    assert hunt.phase.value == "done"
    with pytest.raises(HuntError):
        hunt.farewell(21.0)  # an unexpected pair is an error, not a silent pass


def test_extension_dialling_a_group_is_internal(tmp_path: Path) -> None:
    router = Router(parse_config(office(), tmp_path / "c.toml"))
    raw = (
        b"INVITE sip:600@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.3;branch=z9hG4bK1\r\n"
        b"From: <sip:1002@127.0.0.1>;tag=a\r\nTo: <sip:600@127.0.0.1>\r\nCall-ID: x\r\n"
        b"CSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    )
    request = parse_message(raw)
    route = router.route(request, "127.0.0.3", "1002")  # type: ignore[arg-type]
    assert route.kind == "internal" and route.target_extension == "600"
