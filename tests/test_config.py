"""Tests for b2bua.config: the DESIGN example, defaults, every class of error, paths."""

# Long lines: the DESIGN example is kept verbatim, and the error table reads best one case
# (path, value, key, problem) per line.

from __future__ import annotations

import copy
import ipaddress
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from b2bua.config import (
    KNOWN_KEYS,
    Config,
    ConfigError,
    is_age_recipient,
    load_config,
    parse_config,
    read_recipients,
)

# A real recipient made with age-keygen (public half only; the identity was discarded).
RECIPIENT = "age13ret0yxrhjrgx75w0yyfehgaz33v5kvcl5rexjggllanzhs9echqr4mlqc"

# The example from DESIGN.md "External contract" -> "Config (TOML)", verbatim.
DESIGN_EXAMPLE = """\
[sip]
listen = "127.0.0.1:5060"          # UDP and TCP on this address
[rtp]
ports = "20000-29999"              # one RTP+RTCP pair per leg: 2,500 calls fit
[trunk]
host = "127.0.0.2:5080"            # outbound calls go here
# inbound_from = ["127.0.0.2/32"]  # source IPs (CIDRs) whose requests are inbound; default: host's IP
inbound_extension = "1000"         # where calls to the office ring
[[extension]]
number = "1000"
password = "secret"                # digest auth for REGISTER and INVITE
contact = "sip:1000@127.0.0.3:5070" # optional static contact, instead of registering
employee_consent = true            # this employee agreed in writing; default false = never recorded
[recording]
mode = "keypress"                  # keypress | announce | off
consent_digit = "1"
decline_digit = "2"
consent_timeout_s = 10             # counted from the end of the prompt; prompt replayed once
on_decline = "connect"             # connect (unrecorded) | hangup
language = "de"                    # shipped prompts: de, en; or announcement = "file.wav"
directory = "recordings"
public_key = "recorder.pub"        # an age1... recipient, or a file of them, one per line
retention_days = 30                # default 30
[portal]
listen = "127.0.0.1:8080"
identity = "recorder.key"          # an age-keygen identity file; read only by the portal
"""


def base() -> dict[str, Any]:
    return {
        "sip": {"listen": "127.0.0.1:5060"},
        "trunk": {"host": "127.0.0.2:5080", "inbound_extension": "1000"},
        "extension": [
            {"number": "1000", "password": "secret"},
            {"number": "1001", "password": "pw"},
        ],
        "recording": {"public_key": RECIPIENT},
    }


DELETE = object()


def edited(dotted: str, value: object) -> dict[str, Any]:
    """base() with one value set (or deleted) at a path like "extension[1].contact"."""
    data = base()
    parts = dotted.split(".")
    node: Any = data
    for part in parts[:-1]:
        m = re.fullmatch(r"(\w+)\[(\d+)\]", part)
        node = node[m.group(1)][int(m.group(2))] if m else node.setdefault(part, {})
    if value is DELETE:
        del node[parts[-1]]
    else:
        node[parts[-1]] = value
    return data


def error_of(data: dict[str, Any], path: Path) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse_config(data, path)
    return info.value


# ---------------------------------------------------------------- loading what DESIGN shows


def test_design_example_loads_exactly(tmp_path: Path) -> None:
    (tmp_path / "office.toml").write_text(DESIGN_EXAMPLE)
    (tmp_path / "recorder.pub").write_text(RECIPIENT + "\n")
    cfg = load_config(tmp_path / "office.toml")

    assert cfg.path == tmp_path / "office.toml"
    assert cfg.sip.listen == ("127.0.0.1", 5060)
    assert (cfg.rtp.port_min, cfg.rtp.port_max) == (20000, 29999)
    assert cfg.rtp.pair_count == 5000  # 2 legs per call: the 2,500 calls of the comment
    assert cfg.rtp.bind == "127.0.0.1"  # defaults to the SIP listen host
    assert cfg.trunk.host == ("127.0.0.2", 5080)
    assert cfg.trunk.inbound_from == (ipaddress.ip_network("127.0.0.2/32"),)
    assert cfg.trunk.inbound_extension == "1000"
    assert len(cfg.extensions) == 1
    ext = cfg.extensions[0]
    assert (ext.number, ext.password, ext.contact) == ("1000", "secret", "sip:1000@127.0.0.3:5070")
    assert ext.employee_consent is True
    assert cfg.extension("1000") is ext
    assert cfg.extension("1001") is None
    rec = cfg.recording
    assert rec.mode == "keypress"
    assert (rec.consent_digit, rec.decline_digit) == ("1", "2")
    assert rec.consent_timeout_s == 10.0
    assert isinstance(rec.consent_timeout_s, float)
    assert rec.on_decline == "connect"
    assert rec.language == "de"
    assert rec.announcement is None
    assert rec.directory == tmp_path / "recordings"
    assert rec.public_key == tmp_path / "recorder.pub"
    assert rec.recipients() == (RECIPIENT,)
    assert rec.retention_days == 30
    assert cfg.portal.listen == ("127.0.0.1", 8080)
    assert cfg.portal.identity == tmp_path / "recorder.key"


def test_defaults_of_a_minimal_config(tmp_path: Path) -> None:
    cfg = parse_config(base(), tmp_path / "office.toml")
    assert cfg.sip.user_agent is None  # no product name on the wire
    assert cfg.sip.max_message_size == 65535
    assert cfg.sip.tcp_idle_s == 120.0
    assert cfg.sip.public_address is None
    assert cfg.sip.realm == "b2bua"
    assert (cfg.sip.t1_ms, cfg.sip.t2_ms, cfg.sip.t4_ms) == (500, 4000, 5000)
    assert (cfg.rtp.port_min, cfg.rtp.port_max) == (20000, 29999)
    assert cfg.rtp.inactivity_timeout_s == 60.0
    assert cfg.rtp.max_call_s == 4 * 3600.0
    assert cfg.trunk.number_map == ()
    assert cfg.trunk.register is False
    assert cfg.trunk.register_expires_s == 3600
    assert cfg.trunk.username is None
    assert cfg.trunk.password is None
    assert cfg.extensions[1].employee_consent is False  # never recorded without consent
    assert cfg.extensions[1].contact is None
    rec = cfg.recording
    assert rec.mode == "keypress"  # the default asks before recording
    assert rec.on_decline == "connect"
    assert rec.language == "de"
    assert rec.directory == tmp_path / "recordings"
    assert rec.public_key == RECIPIENT
    assert rec.pause_code == "*1"
    assert rec.mute_inband_dtmf is True
    assert cfg.portal.listen == ("127.0.0.1", 8080)
    assert cfg.portal.identity is None
    assert cfg.portal.session_idle_s == 900.0


def test_passwords_stay_out_of_repr(tmp_path: Path) -> None:
    data = edited("trunk.password", "trunkpass")
    data["trunk"]["username"] = "office"
    cfg = parse_config(data, tmp_path / "office.toml")
    text = repr(cfg)
    assert "secret" not in text
    assert "trunkpass" not in text
    assert cfg.trunk.password == "trunkpass"


def test_ipv6_addresses_and_inherited_values(tmp_path: Path) -> None:
    data = edited("sip.listen", "[::1]:5060")
    data["sip"]["public_address"] = "203.0.113.5"
    data["trunk"]["host"] = "[::1]:5080"
    cfg = parse_config(data, tmp_path / "office.toml")
    assert cfg.sip.listen == ("::1", 5060)
    assert cfg.rtp.bind == "::1"
    assert cfg.rtp.public_address == "203.0.113.5"  # inherited from sip.public_address
    assert cfg.trunk.host == ("::1", 5080)
    assert cfg.trunk.inbound_from == (ipaddress.ip_network("::1/128"),)


def test_trunk_map_networks_and_registration(tmp_path: Path) -> None:
    data = edited("trunk.inbound_map", {"+4930123456": "1001", "030123457": "1000"})
    data["trunk"]["inbound_from"] = ["192.0.2.0/24", "2001:db8::/32"]
    data["trunk"].update(register=True, username="office", password="pw", register_expires_s=600)
    data["trunk"]["host"] = "sip.example.net:5060"  # fine: inbound_from is given
    cfg = parse_config(data, tmp_path / "office.toml")
    assert cfg.trunk.number_map == (("+4930123456", "1001"), ("030123457", "1000"))
    assert cfg.trunk.inbound_target("+4930123456") == "1001"
    assert cfg.trunk.inbound_target("999") == "1000"  # unmapped: the inbound extension
    assert cfg.trunk.inbound_from == (
        ipaddress.ip_network("192.0.2.0/24"),
        ipaddress.ip_network("2001:db8::/32"),
    )
    assert cfg.trunk.host == ("sip.example.net", 5060)
    assert (cfg.trunk.register, cfg.trunk.register_expires_s) == (True, 600)


def test_mode_off_needs_no_public_key_and_digits_are_normalised(tmp_path: Path) -> None:
    data = edited("recording.public_key", DELETE)
    data["recording"].update(mode="off", consent_digit="#", decline_digit="a", pause_code="*9")
    cfg = parse_config(data, tmp_path / "office.toml")
    assert cfg.recording.mode == "off"
    assert cfg.recording.public_key is None
    assert cfg.recording.recipients() == ()
    assert cfg.recording.decline_digit == "A"


# ---------------------------------------------------------------- every class of error


ERRORS: list[tuple[str, object, str, str]] = [
    # enums
    ("recording.mode", "always", "recording.mode",
     "must be one of keypress, announce, off (got 'always')"),
    ("recording.on_decline", "drop", "recording.on_decline",
     "must be one of connect, hangup (got 'drop')"),
    ("recording.language", "fr", "recording.language", "must be one of de, en (got 'fr')"),
    # unknown keys and sections, with a suggestion
    ("recording.moed", "off", "recording.moed", "unknown key (did you mean 'mode'?)"),
    ("extension[1].contcat", "sip:a@b", "extension[1].contcat",
     "unknown key (did you mean 'contact'?)"),
    ("recordings.mode", "off", "recordings", "unknown section (did you mean 'recording'?)"),
    ("sip.zzz", 1, "sip.zzz", "unknown key"),
    # required keys
    ("sip.listen", DELETE, "sip.listen", "required key is missing"),
    ("trunk.host", DELETE, "trunk.host", "required key is missing"),
    ("trunk.inbound_extension", DELETE, "trunk.inbound_extension", "required key is missing"),
    ("extension[0].password", DELETE, "extension[0].password", "required key is missing"),
    ("recording.public_key", DELETE, "recording.public_key",
     "required when recording.mode is 'keypress' (the default); or set mode = \"off\""),
    # TOML types
    ("extension[1].employee_consent", "true", "extension[1].employee_consent",
     "must be a boolean (got string 'true'; write true/false without quotes)"),
    ("recording.retention_days", 30.5, "recording.retention_days",
     "must be an integer (got float 30.5)"),
    ("sip.max_message_size", 65535.0, "sip.max_message_size",
     "must be an integer (got float 65535.0)"),
    ("recording.consent_timeout_s", True, "recording.consent_timeout_s",
     "must be a number (got boolean True)"),
    ("extension[0].number", 1000, "extension[0].number", "must be a string (got integer 1000)"),
    ("trunk.inbound_from", "127.0.0.2/32", "trunk.inbound_from",
     "must be an array (got string '127.0.0.2/32')"),
    ("sip", "x", "sip", "must be a table [sip] (got string 'x')"),
    ("extension", {"number": "1"}, "extension",
     "must be an array of tables: write [[extension]], not [extension]"),
    ("extension", [], "extension", "at least one [[extension]] table is required"),
    # numeric ranges
    ("recording.consent_timeout_s", 0, "recording.consent_timeout_s",
     "must be a number above 0 and at most 120 (got 0)"),
    ("recording.consent_timeout_s", 121, "recording.consent_timeout_s",
     "must be a number above 0 and at most 120 (got 121)"),
    ("sip.tcp_idle_s", float("inf"), "sip.tcp_idle_s", "must be a number above 0 (got inf)"),
    ("recording.retention_days", 0, "recording.retention_days",
     "must be between 1 and 1825 (got 0)"),
    ("recording.retention_days", 1826, "recording.retention_days",
     "must be between 1 and 1825 (got 1826)"),
    ("sip.t1_ms", 5000, "sip.t2_ms", "must not be below sip.t1_ms (5000)"),
    # port ranges
    ("rtp.ports", "20001-29999", "rtp.ports", "first port must be even, RTP uses even ports (got 20001)"),
    ("rtp.ports", "80-1000", "rtp.ports", "ports must be within 1024..65535 (got '80-1000')"),
    ("rtp.ports", "20000-70000", "rtp.ports", "ports must be within 1024..65535"),
    ("rtp.ports", "30000-20000", "rtp.ports", "first port must be below the last (got '30000-20000')"),
    ("rtp.ports", "20000", "rtp.ports", "must be a range like \"20000-29999\" (got '20000')"),
    # host:port syntax
    ("sip.listen", "127.0.0.1", "sip.listen", "must be host:port (got '127.0.0.1')"),
    ("sip.listen", "::1:5060", "sip.listen",
     "must be host:port (got '::1:5060') (write IPv6 addresses in brackets: \"[::1]:5060\")"),
    ("sip.listen", "127.0.0.1:70000", "sip.listen", "port must be between 0 and 65535 (got 70000)"),
    ("trunk.host", "127.0.0.2:0", "trunk.host", "port must be between 1 and 65535 (got 0)"),
    ("sip.listen", "[127.0.0.1]:5060", "sip.listen", "not an IPv6 address in brackets: '127.0.0.1'"),
    ("sip.listen", "bad_host!:5060", "sip.listen", "not an IP address or host name: 'bad_host!'"),
    ("sip.listen", "999.1.1.1:5060", "sip.listen", "not an IP address or host name: '999.1.1.1'"),
    ("sip.public_address", "a b", "sip.public_address", "not an IP address or host name: 'a b'"),
    ("portal.listen", "127.0.0.1:5060", "portal.listen", "must differ from sip.listen (both use TCP)"),
    # extensions
    ("extension[1].number", "1000", "extension[1].number",
     "duplicate extension number '1000' (also extension[0])"),
    ("extension[0].number", "10a", "extension[0].number", "must be 1 to 15 digits (got '10a')"),
    ("extension[1].number", "1" * 16, "extension[1].number", "must be 1 to 15 digits"),
    ("extension[0].contact", "1000@127.0.0.3", "extension[0].contact",
     "must be a sip: or sips: URI with a host"),
    ("extension[0].contact", "sip:1000@", "extension[0].contact", "(got 'sip:1000@')"),
    ("extension[0].password", "", "extension[0].password",
     "must be a non-empty single line without quotes (got '')"),
    # trunk
    ("trunk.inbound_extension", "2000", "trunk.inbound_extension",
     "'2000' is not a configured extension (configured: 1000, 1001)"),
    ("trunk.inbound_map", {"+4930123": "2000"}, 'trunk.inbound_map."+4930123"',
     "'2000' is not a configured extension (configured: 1000, 1001)"),
    ("trunk.inbound_map", {"49-30": "1000"}, "trunk.inbound_map.49-30",
     "dialled number must be digits, optionally with a leading + (got '49-30')"),
    ("trunk.inbound_map", {"4930": 1000}, "trunk.inbound_map.4930",
     "must be an extension number as a string (got 1000)"),
    ("trunk.inbound_from", ["127.0.0.2/32", "10.0.0.1/8"], "trunk.inbound_from[1]",
     "; did you mean 10.0.0.0/8?"),
    ("trunk.inbound_from", ["nonsense"], "trunk.inbound_from[0]", "not a network: 'nonsense'"),
    ("trunk.inbound_from", [5], "trunk.inbound_from[0]", "must be a string like"),
    ("trunk.inbound_from", [], "trunk.inbound_from", "must list at least one network"),
    ("trunk.host", "sip.example.net:5060", "trunk.inbound_from",
     "required when trunk.host is a host name ('sip.example.net')"),
    ("trunk.register", True, "trunk.username", "required when trunk.register is true"),
    # recording digits and codes
    ("recording.decline_digit", "1", "recording.decline_digit",
     "must differ from recording.consent_digit ('1')"),
    ("recording.consent_digit", "11", "recording.consent_digit",
     "must be a single DTMF key (0-9, *, #, A-D) (got '11')"),
    ("recording.consent_digit", "E", "recording.consent_digit", "must be a single DTMF key"),
    ("recording.pause_code", "*x", "recording.pause_code",
     "must be 1 to 8 DTMF keys (0-9, *, #, A-D) (got '*x')"),
    # keys and files
    ("recording.public_key", RECIPIENT[:-1] + ("q" if RECIPIENT[-1] != "q" else "p"),
     "recording.public_key", "not a valid age X25519 recipient"),
    ("recording.public_key", "AGE-SECRET-KEY-1QQQQ", "recording.public_key",
     "this holds an age secret key; give the recorder only the public recipient"),
    ("recording.public_key", "missing.pub", "recording.public_key", "file not found: "),
    ("recording.announcement", "nope.wav", "recording.announcement", "file not found: "),
    ("portal.tls_cert", "cert.pem", "portal.tls_key", "tls_cert and tls_key must be given together"),
]  # fmt: skip


@pytest.mark.parametrize(("dotted", "value", "key", "problem"), ERRORS)
def test_error_names_file_key_and_problem(
    tmp_path: Path, dotted: str, value: object, key: str, problem: str
) -> None:
    path = tmp_path / "office.toml"
    err = error_of(edited(dotted, value), path)
    assert err.path == path
    assert err.key == key
    assert problem in err.problem
    assert str(err) == f"{path}: {key}: {err.problem}"


def test_error_text_exactly_as_specified(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "office.toml").write_text(
        DESIGN_EXAMPLE.replace('mode = "keypress"', 'mode = "always"')
    )
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as info:
        load_config(Path("office.toml"))
    assert str(info.value) == (
        "office.toml: recording.mode: must be one of keypress, announce, off (got 'always')"
    )


def test_missing_public_key_with_explicit_mode_does_not_say_default(tmp_path: Path) -> None:
    data = edited("recording.public_key", DELETE)
    data["recording"]["mode"] = "announce"
    err = error_of(data, tmp_path / "office.toml")
    assert err.problem == "required when recording.mode is 'announce'; or set mode = \"off\""


def test_missing_public_key_file_names_the_resolved_path(tmp_path: Path) -> None:
    err = error_of(edited("recording.public_key", "keys/missing.pub"), tmp_path / "office.toml")
    assert err.problem == f"file not found: {tmp_path / 'keys' / 'missing.pub'}"


@settings(max_examples=150, deadline=None)
@given(
    section_key=st.sampled_from([(s, k) for s, keys in KNOWN_KEYS.items() for k in keys]),
    value=st.one_of(
        st.text(max_size=12),
        st.integers(-(2**70), 2**70),
        st.floats(allow_nan=True),
        st.booleans(),
        st.lists(st.text(max_size=5), max_size=3),
        st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=2),
    ),
)
def test_any_value_at_any_key_gives_config_or_config_error(
    section_key: tuple[str, str], value: object
) -> None:
    section, key = section_key
    dotted = f"extension[0].{key}" if section == "extension" else f"{section}.{key}"
    # A fixed absolute path: existence checks find nothing there.
    path = Path("/nonexistent-b2bua-test/office.toml")
    outcome: Config | ConfigError
    try:
        outcome = parse_config(edited(dotted, value), path)
    except ConfigError as err:
        outcome = err
    if isinstance(outcome, ConfigError):
        assert outcome.key
        assert outcome.problem
    else:
        assert outcome.path == path


# ---------------------------------------------------------------- files and paths


def test_relative_paths_resolve_against_the_config_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    conf = tmp_path / "etc" / "b2bua"
    (conf / "prompts").mkdir(parents=True)
    (conf / "prompts" / "hello.wav").write_bytes(b"RIFF")
    (conf / "keys").mkdir()
    (conf / "keys" / "rec.pub").write_text(f"# office key\n\n{RECIPIENT}\n")
    (conf / "office.toml").write_text(
        DESIGN_EXAMPLE.replace('"recorder.pub"', '"keys/rec.pub"')
        .replace('directory = "recordings"', 'directory = "../../var/rec"\nannouncement = "prompts/hello.wav"')
        .replace('"recorder.key"', f'"{tmp_path / "abs.key"}"')
    )  # fmt: skip
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    cfg = load_config(Path("../etc/b2bua/office.toml"))
    assert cfg.path.is_absolute()
    assert cfg.path.parent.resolve() == conf.resolve()
    rec = cfg.recording
    assert rec.announcement is not None
    assert rec.announcement.resolve() == (conf / "prompts" / "hello.wav").resolve()
    assert rec.directory.resolve() == (tmp_path / "var" / "rec").resolve()
    assert isinstance(rec.public_key, Path)
    assert rec.public_key.resolve() == (conf / "keys" / "rec.pub").resolve()
    assert rec.recipients() == (RECIPIENT,)
    assert cfg.portal.identity == tmp_path / "abs.key"  # absolute paths stay as written


def test_home_directory_is_expanded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    cfg = parse_config(edited("recording.directory", "~/rec"), Path("/etc/office.toml"))
    assert cfg.recording.directory == tmp_path / "rec"


def test_toml_syntax_error_names_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "office.toml"
    path.write_text('[sip]\nlisten = "127.0.0.1:5060"\nports = \n')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.key == ""
    assert str(info.value) == f"{path}: invalid TOML at line 3, column 9: Invalid value"


def test_duplicate_table_is_a_toml_error(tmp_path: Path) -> None:
    path = tmp_path / "office.toml"
    path.write_text('[sip]\nlisten = "127.0.0.1:5060"\n[sip]\n')
    with pytest.raises(ConfigError, match=r"invalid TOML at line 3, column \d+: Cannot declare"):
        load_config(path)


def test_unreadable_and_non_utf8_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "absent.toml")
    assert str(info.value) == f"{tmp_path / 'absent.toml'}: cannot read: No such file or directory"
    bad = tmp_path / "latin1.toml"
    bad.write_bytes(b'[sip]\nlisten = "caf\xe9"\n')
    with pytest.raises(ConfigError, match=r"latin1\.toml: not UTF-8 text \(byte 19\)"):
        load_config(bad)


def test_recipients_are_reread_for_reloads(tmp_path: Path) -> None:
    pub = tmp_path / "recorder.pub"
    pub.write_text(f"{RECIPIENT}\n")
    cfg = parse_config(edited("recording.public_key", "recorder.pub"), tmp_path / "office.toml")
    assert cfg.recording.recipients() == (RECIPIENT,)
    pub.write_text("# rotated: old key kept as well\nage1notvalid\n")
    with pytest.raises(ConfigError) as info:
        cfg.recording.recipients()
    assert info.value.key == "recording.public_key"
    assert info.value.problem == f"{pub} line 2: not a valid age X25519 recipient"


def test_public_key_file_problems_at_load_time(tmp_path: Path) -> None:
    path = tmp_path / "office.toml"
    (tmp_path / "empty.pub").write_text("# nothing\n")
    err = error_of(edited("recording.public_key", "empty.pub"), path)
    assert err.problem == f"{tmp_path / 'empty.pub'} lists no age recipient"


def test_bech32_checksum_catches_a_typo() -> None:
    assert is_age_recipient(RECIPIENT)
    typo = RECIPIENT[:10] + ("x" if RECIPIENT[10] != "x" else "y") + RECIPIENT[11:]
    assert not is_age_recipient(typo)
    assert not is_age_recipient(RECIPIENT + "q")
    assert not is_age_recipient(RECIPIENT.upper())
    with pytest.raises(ValueError, match="not a valid age X25519 recipient"):
        read_recipients(typo)


@pytest.mark.agetool
def test_keys_made_by_age_keygen(tmp_path: Path) -> None:
    if shutil.which("age-keygen") is None:
        pytest.skip("age-keygen is not installed (Debian package age)")
    identity = tmp_path / "recorder.key"
    subprocess.run(["age-keygen", "-o", str(identity)], check=True, capture_output=True, timeout=10)
    public = subprocess.run(
        ["age-keygen", "-y", str(identity)], check=True, capture_output=True, text=True, timeout=10
    ).stdout.strip()
    (tmp_path / "recorder.pub").write_text(public + "\n")
    path = tmp_path / "office.toml"
    by_file = parse_config(edited("recording.public_key", "recorder.pub"), path)
    assert by_file.recording.recipients() == (public,)
    literal = parse_config(edited("recording.public_key", public), path)
    assert literal.recording.public_key == public
    # The identity file given by mistake: refused, the recorder must never hold it.
    err = error_of(edited("recording.public_key", "recorder.key"), path)
    assert err.key == "recording.public_key"
    assert "holds an age secret key" in err.problem


# ---------------------------------------------------------------- documentation


def test_every_key_is_documented() -> None:
    doc = (Path(__file__).resolve().parents[1] / "docs" / "configuration.md").read_text(
        encoding="utf-8"
    )
    for section, keys in KNOWN_KEYS.items():
        arrays = ("extension", "group")  # arrays of tables: [[extension]], [[group]]
        heading = f"## [[{section}]]" if section in arrays else f"## [{section}]"
        assert heading in doc, heading
        body = doc.split(heading, 1)[1].split("\n## ", 1)[0]
        for key in keys:
            assert re.search(rf"^\| `{key}` \|", body, re.MULTILINE), f"{section}.{key}"


def test_error_paths_render_like_the_spec() -> None:
    err = ConfigError("office.toml", "extension[1].contact", "bad")
    assert str(err) == "office.toml: extension[1].contact: bad"
    assert (err.path, err.key, err.problem) == (Path("office.toml"), "extension[1].contact", "bad")
    assert str(ConfigError("office.toml", "", "cannot read")) == "office.toml: cannot read"
    assert copy.copy(err).key == "extension[1].contact"


def test_retention_overrides_by_direction_and_extension(tmp_path: Path) -> None:
    data = edited("recording.retention_by_direction", {"inbound": 7, "outbound": 90})
    data["recording"]["retention_by_extension"] = {"1000": 365}
    config = parse_config(data, tmp_path / "office.toml")
    assert config.recording.retention_by_direction == (("inbound", 7), ("outbound", 90))
    assert config.recording.retention_by_extension == (("1000", 365),)
    assert parse_config(base(), tmp_path / "office.toml").recording.retention_by_direction == ()


@pytest.mark.parametrize(
    ("key", "value", "where", "problem"),
    [
        ("retention_by_direction", {"sideways": 7}, "retention_by_direction.sideways", "not a direction"),
        ("retention_by_direction", {"inbound": 0}, "retention_by_direction.inbound", "1..1825"),
        ("retention_by_extension", {"10a": 7}, "retention_by_extension.10a", "not an extension"),
        ("retention_by_extension", {"1000": "7"}, "retention_by_extension.1000", "whole number"),
    ],
)
def test_retention_override_errors(
    tmp_path: Path, key: str, value: object, where: str, problem: str
) -> None:
    err = error_of(edited(f"recording.{key}", value), tmp_path / "office.toml")
    assert err.key == f"recording.{where}"
    assert problem in err.problem
