"""Unit tests: E.164 numbers, toll-fraud rules and limits, the router's annotations
(emergency, do-not-record, withheld) and the caller ID shown to the trunk."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest

from b2bua.archive.catalog import Catalog
from b2bua.config import Config, ConfigError, parse_config
from b2bua.consent import ConsentMachine, ConsentResult, PlayPrompt, StartRecording
from b2bua.message import Request, parse_message
from b2bua.numbers import NumberPlan
from b2bua.router import Router, caller_withheld, number_plan
from b2bua.switch import toll_policies
from b2bua.tollfraud import Policy, TollFraud, default_rules, is_rule, match_rules

RECIPIENT = "age13ret0yxrhjrgx75w0yyfehgaz33v5kvcl5rexjggllanzhs9echqr4mlqc"
PHONE_IP = "192.168.1.10"
TRUNK_IP = "203.0.113.7"
PLAN = NumberPlan("DE", "030", ("110", "112"), frozenset({"1000", "1001"}), ("030 555 0100",))
_branches = itertools.count(1)


# ---------------------------------------------------------------- numbers


@pytest.mark.parametrize(
    ("number", "e164"),
    [
        ("+49 30 123456", "+4930123456"),
        ("004930123456", "+4930123456"),
        ("030123456", "+4930123456"),
        ("030/12 34-56", "+4930123456"),
        ("2345678", "+49302345678"),  # local: area code in front
        ("0044 20 7946 0000", "+442079460000"),
        ("+1 212 555 0100", "+12125550100"),
        ("1000", None),  # an extension
        ("112", None),  # emergency
        ("110", None),
        ("11833", None),  # directory enquiries: a short code
        ("116117", None),
        ("*21#", None),
        ("anonymous", None),
        ("", None),
        (None, None),
    ],
)
def test_e164(number: str | None, e164: str | None) -> None:
    assert PLAN.e164(number) == e164


def test_local_numbers_need_an_area_code() -> None:
    assert NumberPlan("DE").e164("2345678") is None
    assert NumberPlan("DE").e164("030123456") == "+4930123456"
    # Without a country only the international forms can be read.
    assert NumberPlan(None).e164("004930123456") == "+4930123456"
    assert NumberPlan(None).e164("030123456") is None
    with pytest.raises(ValueError, match="unknown region"):
        NumberPlan("XX")


def test_emergency_and_do_not_record() -> None:
    assert PLAN.is_emergency("112") and PLAN.is_emergency("110")
    assert not PLAN.is_emergency("1120")
    # Listed as "030 555 0100": matched in every dialled and E.164 form.
    for form in ("0305550100", "+49305550100", "0049 30 5550100", "5550100"):
        assert PLAN.do_not_record_match([form]), form
    assert not PLAN.do_not_record_match(["0305550101", None, ""])


# ---------------------------------------------------------------- toll fraud


DE = default_rules("DE")


@pytest.mark.parametrize(
    ("dialled", "allowed", "rule"),
    [
        ("030123456", True, "+49*"),
        ("+4989123456", True, "+49*"),
        ("01701234567", True, "+49*"),  # mobile
        ("2345678", True, "+49*"),  # local with the area code
        ("0900123456", False, "!+49900*"),  # premium rate
        ("0049900123456", False, "!+49900*"),
        ("01371234567", False, "!+49137*"),
        ("11833", False, "!118*"),
        ("0044207946000", False, "no_rule"),  # international
        ("+12125550100", False, "no_rule"),
        ("*21#", False, "no_rule"),
    ],
)
def test_default_rules_de(dialled: str, allowed: bool, rule: str) -> None:
    decision = match_rules(DE, dialled, PLAN.e164(dialled))
    assert (decision.allowed, decision.rule) == (allowed, rule)


def test_default_rules_other_countries_and_rule_syntax() -> None:
    assert default_rules("FR", 33) == ("+33*", "[2-9]*")
    assert "!+43900*" in default_rules("AT")
    assert default_rules(None) == ("[2-9]*",)  # no country: local numbers only
    assert is_rule("!+49900*") and is_rule("[2-9]*") and is_rule("+4930123456")
    assert not is_rule("abc") and not is_rule("!") and not is_rule("+49 30")
    # An explicit allow before the default rules lets one premium number through.
    rules = ("+49900123456", *DE)
    assert match_rules(rules, "0900123456", "+49900123456").allowed
    assert not match_rules(rules, "0900999999", "+49900999999").allowed


def test_concurrent_cap() -> None:
    fraud = TollFraud({"1000": Policy(DE, max_calls=2)})
    assert fraud.check("1000", "030123", "+4930123", 0.0).allowed
    fraud.call_started("a", "1000", 0.0)
    fraud.call_started("b", "1000", 1.0)
    decision = fraud.check("1000", "030123", "+4930123", 2.0)
    assert (decision.allowed, decision.rule) == (False, "max_outbound_calls")
    fraud.call_ended("a", 3.0)
    assert fraud.check("1000", "030123", "+4930123", 4.0).allowed
    assert fraud.check("4711", "030123", "+4930123", 4.0).rule == "unknown_extension"


def test_minutes_per_day_rolling_window_and_deadline() -> None:
    fraud = TollFraud({"1000": Policy(DE, max_minutes_per_day=10)}, window_s=3600.0)
    fraud.call_started("a", "1000", 0.0)
    fraud.call_ended("a", 240.0)  # 4 minutes
    fraud.call_started("b", "1000", 300.0)
    fraud.call_started("c", "1000", 300.0)
    # 6 minutes left, two calls running: they run out after 3 minutes.
    assert fraud.get_timer() == pytest.approx(480.0)
    assert fraud.expired(479.0) == []
    assert sorted(fraud.expired(480.0)) == ["b", "c"]
    fraud.call_ended("b", 481.0)
    fraud.call_ended("c", 481.0)
    assert fraud.used_s("1000", 481.0) == pytest.approx(602.0)
    decision = fraud.check("1000", "030123", "+4930123", 500.0)
    assert (decision.allowed, decision.rule) == (False, "max_outbound_minutes_per_day")
    # An hour later the first call has left the window, the others partly.
    assert fraud.used_s("1000", 3600.0 + 240.0) == pytest.approx(362.0)
    assert fraud.check("1000", "030123", "+4930123", 3600.0 + 240.0).allowed
    assert fraud.get_timer() is None


def test_expired_recomputes_when_old_calls_leave_the_window() -> None:
    fraud = TollFraud({"1000": Policy(DE, max_minutes_per_day=2)}, window_s=150.0)
    fraud.call_started("old", "1000", 0.0)
    fraud.call_ended("old", 60.0)  # 1 minute used
    fraud.call_started("new", "1000", 100.0)
    assert fraud.get_timer() == pytest.approx(160.0)
    # At 160 the old call has partly left the window (since 10): 50 + 60 s, not 120.
    assert fraud.expired(160.0) == []
    assert fraud.get_timer() == pytest.approx(170.0)
    # Once the old call is gone entirely, the new one runs out at 100 + 120 s.
    deadline = fraud.get_timer()
    for _ in range(20):
        assert deadline is not None
        if fraud.expired(deadline):
            break
        deadline = fraud.get_timer()
    assert deadline == pytest.approx(220.0)


# ---------------------------------------------------------------- config


def config(**extra: Any) -> Config:
    data: dict[str, Any] = {
        "sip": {"listen": "127.0.0.1:5060"},
        "trunk": {"host": "203.0.113.7:5060", "inbound_extension": "1000"},
        "extension": [
            {"number": "1000", "password": "a", "employee_consent": True},
            {
                "number": "1001",
                "password": "b",
                "allowed_destinations": ["+4930*"],
                "max_outbound_calls": 1,
            },
        ],
        "recording": {"mode": "off", "do_not_record": ["030 555 0100"]},
        "numbers": {"country": "de", "area_code": "030"},
    }
    for section, values in extra.items():
        data[section] = {**data.get(section, {}), **values}
    return parse_config(data, Path("/etc/b2bua/office.toml"))


def test_config_keys_and_defaults() -> None:
    cfg = config()
    assert cfg.numbers.country == "DE"
    assert cfg.numbers.emergency == ("110", "112")
    assert cfg.numbers.record_emergency is False
    assert cfg.recording.do_not_record == ("0305550100",)
    assert cfg.trunk.caller_id is None and cfg.trunk.identity_header == "from"
    ext = cfg.extension("1000")
    assert ext is not None
    assert (ext.allowed_destinations, ext.max_outbound_calls) == (None, 4)
    assert ext.max_outbound_minutes_per_day == 600
    policies = toll_policies(cfg, Router(cfg))
    assert policies["1000"].rules == DE
    assert policies["1001"] == Policy(("+4930*",), 1, 600.0)


@pytest.mark.parametrize(
    ("extra", "key"),
    [
        ({"numbers": {"country": "Germany"}}, "numbers.country"),
        ({"numbers": {"area_code": "30a"}}, "numbers.area_code"),
        ({"numbers": {"emergency": []}}, "numbers.emergency"),
        ({"numbers": {"emergency": ["11 2x"]}}, "numbers.emergency[0]"),
        ({"numbers": {"record_emergency": True}}, "numbers.record_emergency"),
        ({"numbers": {"bogus": 1}}, "numbers.bogus"),
        ({"recording": {"do_not_record": [1234]}}, "recording.do_not_record[0]"),
        ({"trunk": {"identity_header": "p-asserted"}}, "trunk.identity_header"),
        ({"trunk": {"caller_id": "office"}}, "trunk.caller_id"),
    ],
)
def test_config_errors(extra: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        config(**extra)
    assert info.value.key == key


def test_bad_destination_rule_is_a_config_error() -> None:
    data: dict[str, Any] = {
        "sip": {"listen": "127.0.0.1:5060"},
        "trunk": {"host": "203.0.113.7:5060", "inbound_extension": "1000"},
        "extension": [{"number": "1000", "password": "a", "allowed_destinations": ["abc"]}],
        "recording": {"mode": "off"},
    }
    with pytest.raises(ConfigError) as info:
        parse_config(data, Path("office.toml"))
    assert info.value.key == "extension[0].allowed_destinations[0]"


# ---------------------------------------------------------------- router


def invite(ruri: str, from_header: str = "<sip:1000@office.example>", *extra: str) -> Request:
    lines = [
        f"INVITE {ruri} SIP/2.0",
        f"Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK{next(_branches)}",
        f"From: {from_header};tag=f",
        f"To: <{ruri}>",
        "Call-ID: numbers-test",
        "CSeq: 1 INVITE",
        "Max-Forwards: 70",
        *extra,
        "Content-Length: 0",
        "",
        "",
    ]
    message = parse_message("\r\n".join(lines).encode())
    assert isinstance(message, Request)
    return message


def test_router_emergency_and_do_not_record() -> None:
    router = Router(config(trunk={"inbound_from": [TRUNK_IP + "/32"]}))
    sos = router.route(invite("sip:112@x"), PHONE_IP, "1000")
    assert (sos.kind, sos.emergency, sos.unrecorded) == ("outbound", True, "emergency")
    assert router.is_emergency_request(invite("sip:110@x"))
    assert not router.is_emergency_request(invite("sip:0301234@x"))
    normal = router.route(invite("sip:030123456@x"), PHONE_IP, "1000")
    assert (normal.emergency, normal.unrecorded, normal.e164) == (False, None, "+4930123456")
    out_dnr = router.route(invite("sip:+49305550100@x"), PHONE_IP, "1000")
    assert out_dnr.unrecorded == "do_not_record"
    # Inbound: the caller's From, or its asserted identity, is on the list.
    in_dnr = router.route(invite("sip:1000@x", "<sip:0305550100@trunk>"), TRUNK_IP, None)
    assert (in_dnr.kind, in_dnr.unrecorded) == ("inbound", "do_not_record")
    in_pai = router.route(
        invite(
            "sip:1000@x",
            '"Anonymous" <sip:anonymous@anonymous.invalid>',
            "P-Asserted-Identity: <sip:+49305550100@trunk>",
            "Privacy: id",
        ),
        TRUNK_IP,
        None,
    )
    assert (in_pai.unrecorded, in_pai.withheld) == ("do_not_record", True)
    # Internal calls are never recorded anyway; nothing to annotate.
    internal = router.route(invite("sip:1001@x"), PHONE_IP, "1000")
    assert (internal.kind, internal.emergency, internal.unrecorded) == ("internal", False, None)


def test_record_emergency_only_with_announce() -> None:
    cfg = config(
        numbers={"record_emergency": True},
        recording={"mode": "announce", "public_key": RECIPIENT},
    )
    route = Router(cfg).route(invite("sip:112@x"), PHONE_IP, "1000")
    assert (route.emergency, route.unrecorded) == (True, None)


@pytest.mark.parametrize(
    ("from_header", "extra", "withheld"),
    [
        ("<sip:030123@trunk>", (), False),
        ('"Anonymous" <sip:anonymous@anonymous.invalid>', (), True),
        ("<sip:anonymous@trunk>", (), True),
        ("<sip:030123@trunk>", ("Privacy: id",), True),
        ("<sip:030123@trunk>", ("Privacy: user;critical",), True),
        ("<sip:030123@trunk>", ("Privacy: none",), False),
        ("<sip:trunk.example>", (), True),
    ],
)
def test_withheld(from_header: str, extra: tuple[str, ...], withheld: bool) -> None:
    assert caller_withheld(invite("sip:1000@x", from_header, *extra)) is withheld


def test_presentation_toward_trunk_and_phone() -> None:
    cfg = config(
        trunk={"caller_id": "+49 30 1234 0", "identity_header": "pai"},
    )
    router = Router(cfg)
    out = router.route(invite("sip:030999@x", '"Desk" <sip:1000@office>'), PHONE_IP, "1000")
    shown = router.presentation(out, invite("sip:030999@x", '"Desk" <sip:1000@office>'))
    assert (shown.from_user, shown.display_name) == ("+493012340", "Desk")
    assert shown.headers == (("P-Asserted-Identity", "<sip:+493012340@203.0.113.7>"),)
    assert shown.caller_label == "1000"
    # The phone asks for CLIR: anonymous From, identity for the trunk, Privacy: id.
    clir = invite("sip:030999@x", "<sip:1000@office>", "Privacy: id")
    shown = router.presentation(router.route(clir, PHONE_IP, "1000"), clir)
    assert (shown.from_user, shown.display_name) == ("anonymous", "Anonymous")
    assert ("Privacy", "id") in shown.headers
    # Emergency calls always present the number.
    sos = invite("sip:112@x", "<sip:1000@office>", "Privacy: id")
    shown = router.presentation(router.route(sos, PHONE_IP, "1000"), sos)
    assert shown.from_user == "+493012340" and ("Privacy", "id") not in shown.headers
    ppi = Router(config(trunk={"caller_id": "0301234", "identity_header": "ppi"}))
    call = invite("sip:030999@x")
    shown = ppi.presentation(ppi.route(call, PHONE_IP, "1000"), call)
    assert shown.headers == (("P-Preferred-Identity", "<sip:0301234@203.0.113.7>"),)


def test_presentation_inbound_withheld() -> None:
    router = Router(config(trunk={"inbound_from": [TRUNK_IP + "/32"]}))
    request = invite("sip:1000@x", "<sip:0301234567@trunk>", "Privacy: id")
    shown = router.presentation(router.route(request, TRUNK_IP, None), request)
    assert (shown.from_user, shown.caller_label, shown.headers) == ("anonymous", "withheld", ())


# ---------------------------------------------------------------- consent and catalog


def test_consent_machine_not_asked_note() -> None:
    machine = ConsentMachine("keypress", employee_consent=True, not_asked_note="do_not_record")
    assert not machine.asks
    actions = machine.start(0.0)
    assert not any(isinstance(a, PlayPrompt | StartRecording) for a in actions)
    record = machine.record
    assert record is not None
    assert (record.result, record.note, record.mode) == (
        ConsentResult.NOT_ASKED,
        "do_not_record",
        "keypress",
    )
    assert ConsentMachine("keypress", employee_consent=True).asks


def test_catalog_erasure_by_number_uses_the_number_plan(tmp_path: Path) -> None:
    with Catalog.open(tmp_path) as catalog:
        catalog.normalise = number_plan(config()).e164
        rid = catalog.new_call("c", "inbound", "030 1234567", "1000", "1000", 1e9)
        local = catalog.new_call("d", "inbound", "7654321", "1000", "1000", 1e9 + 1)
        row = catalog.conn.execute(
            "SELECT caller, caller_e164, callee_e164 FROM calls WHERE id = ?", (rid,)
        ).fetchone()
        assert tuple(row) == ("030 1234567", "+49301234567", None)
        assert catalog.ids_for_number("+49 30 1234567") == [rid]
        assert catalog.ids_for_number("0049301234567") == [rid]
        assert catalog.ids_for_number("+49307654321") == [local]
