"""The carrier examples (examples/trunks/*.toml) against docs/carriers.md.

Each example is a [trunk] section meant to be pasted into an office.toml. It is loaded
here the way a user would use it: appended to a minimal office and read by
`b2bua.config.load_config`, the loader of `b2bua serve` and `b2bua check-config`. The
parsed values must match the summary table of docs/carriers.md, so the page and the
examples can not drift apart.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from b2bua.config import TrunkConfig, load_config

ROOT = Path(__file__).parent.parent
DOC = ROOT / "docs" / "carriers.md"
EXAMPLES = ROOT / "examples" / "trunks"

# Everything an office needs besides [trunk]; extensions 10 and 11 are the targets the
# examples' inbound_extension and inbound_map name. Recording off: no key file needed.
OFFICE = """\
[sip]
listen = "127.0.0.1:5060"
[[extension]]
number = "10"
password = "pw-10"
[[extension]]
number = "11"
password = "pw-11"
[recording]
mode = "off"
"""


@dataclass(frozen=True)
class Row:
    carrier: str
    example: str
    transport: str
    srtp: str
    register: bool
    identity_header: str
    caller_id_form: str  # "+49…" or "49…"


def summary_rows() -> list[Row]:
    """The rows of the summary table: those whose second cell names an example file."""
    rows: list[Row] = []
    for line in DOC.read_text(encoding="utf-8").splitlines():
        cells = [c.strip().strip("`") for c in line.strip().strip("|").split("|")]
        if len(cells) != 7 or not re.fullmatch(r"examples/trunks/[a-z0-9_-]+\.toml", cells[1]):
            continue
        assert cells[4] in ("true", "false"), line
        rows.append(
            Row(cells[0], cells[1], cells[2], cells[3], cells[4] == "true", cells[5], cells[6])
        )
    return rows


def load_trunk(example: Path, tmp_path: Path) -> TrunkConfig:
    office = tmp_path / "office.toml"
    office.write_text(OFFICE + "\n" + example.read_text(encoding="utf-8"), encoding="utf-8")
    return load_config(office).trunk


ROWS = summary_rows()


def test_table_and_example_files_match() -> None:
    assert len(ROWS) >= 5  # Telekom, Vodafone, sipgate, easybell, 1&1 Versatel at least
    named = sorted(row.example for row in ROWS)
    files = sorted(f"examples/trunks/{p.name}" for p in EXAMPLES.glob("*.toml"))
    assert named == files
    carriers = " ".join(row.carrier for row in ROWS)
    for name in ("Telekom", "Vodafone", "sipgate", "easybell", "Versatel"):
        assert name in carriers


@pytest.mark.parametrize("row", ROWS, ids=[Path(r.example).stem for r in ROWS])
def test_example_matches_doc(row: Row, tmp_path: Path) -> None:
    trunk = load_trunk(ROOT / row.example, tmp_path)
    assert trunk.transport == row.transport
    assert trunk.srtp == row.srtp
    assert trunk.register is row.register
    assert trunk.identity_header == row.identity_header
    assert trunk.caller_id is not None
    assert row.caller_id_form in ("+49…", "49…")
    if row.caller_id_form == "+49…":
        assert trunk.caller_id.startswith("+49")
    else:
        assert trunk.caller_id.startswith("49")
    # SDES keys travel in the SDP: a mandatory SRTP leg is only secret over TLS.
    if trunk.srtp == "required":
        assert trunk.transport == "tls"
    # The examples route inbound calls somewhere that exists in a real office.
    assert trunk.inbound_extension == "10"


@pytest.mark.parametrize("row", ROWS, ids=[Path(r.example).stem for r in ROWS])
def test_example_holds_no_credentials(row: Row, tmp_path: Path) -> None:
    trunk = load_trunk(ROOT / row.example, tmp_path)
    if trunk.register:
        assert trunk.username is not None and trunk.username.startswith("<")
        assert trunk.password is not None and trunk.password.startswith("<")
    # Placeholder networks are the RFC 5737 documentation ranges, never a real carrier's.
    docs_nets = ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24")
    assert trunk.inbound_from
    assert all(str(net) in docs_nets for net in trunk.inbound_from)


def test_doc_section_per_carrier_names_a_source_or_says_ask() -> None:
    text = DOC.read_text(encoding="utf-8")
    sections = re.split(r"^## ", text, flags=re.MULTILINE)[1:]
    by_title = {s.splitlines()[0]: s for s in sections}
    for row in ROWS:
        stem = Path(row.example).stem
        matching = [t for t in by_title if stem in t.lower()]
        assert matching, f"no section for {row.example}"
        body = by_title[matching[0]]
        assert "Source" in body
        assert "https://" in body or "ask the carrier" in body
        # Each section points at its example, and the example back at the page.
        assert row.example in body
        assert "docs/carriers.md" in (ROOT / row.example).read_text(encoding="utf-8")


def test_doc_names_what_the_config_can_not_express() -> None:
    text = DOC.read_text(encoding="utf-8")
    gaps = text.split("## What our config can not express yet", 1)[1]
    for topic in ("mediasec", "NAPTR", "Diversion", "CLIP no screening"):
        assert topic in gaps


def test_solved_gaps_left_the_list_and_reached_the_examples(tmp_path: Path) -> None:
    gaps = DOC.read_text(encoding="utf-8").split("## What our config can not express yet", 1)[1]
    bullets = [line for line in gaps.splitlines() if line.startswith("- **")]
    for solved in ("Contact user", "One caller ID per trunk", "Account in From"):
        assert not any(solved in line for line in bullets), solved
    # Telekom: mediasec on; sipgate: SIP-ID in From, number in P-Preferred-Identity;
    # easybell: the number in international format in the REGISTER's Contact.
    assert load_trunk(EXAMPLES / "telekom.toml", tmp_path).mediasec is True
    sipgate = load_trunk(EXAMPLES / "sipgate.toml", tmp_path)
    assert sipgate.from_user is not None and sipgate.identity_header == "ppi"
    easybell = load_trunk(EXAMPLES / "easybell.toml", tmp_path)
    assert easybell.contact_user is not None and easybell.contact_user.startswith("0049")
    others = ("vodafone", "versatel", "plusnet")
    for name in others:
        trunk = load_trunk(EXAMPLES / f"{name}.toml", tmp_path)
        assert (trunk.mediasec, trunk.from_user, trunk.contact_user) == (False, None, None)


def test_sipgate_caller_id_without_plus_reaches_the_config(tmp_path: Path) -> None:
    # sipgate rejects "+49…" in P-Preferred-Identity; the loader must keep the form given.
    trunk = load_trunk(EXAMPLES / "sipgate.toml", tmp_path)
    assert trunk.caller_id == "49301234560"
    assert trunk.host == ("sipconnect.sipgate.de", 5060)
    assert trunk.srv_lookup


def test_easybell_tls_host_skips_srv(tmp_path: Path) -> None:
    # easybell: DNS-SRV connections can not be encrypted, so the TLS host carries a port.
    trunk = load_trunk(EXAMPLES / "easybell.toml", tmp_path)
    assert trunk.host == ("secure.sip.easybell.de", 5061)
    assert not trunk.srv_lookup
    # Main number with 00, block extensions in E.164 without +, matched exactly.
    assert trunk.inbound_target("0049301234560") == "10"
    assert trunk.inbound_target("49301234561") == "11"


def test_docs_link_the_carrier_page() -> None:
    assert "docs/carriers.md" in (ROOT / "README.md").read_text(encoding="utf-8")
    assert "carriers.md" in (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
