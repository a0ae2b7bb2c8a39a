"""Consent in-line, the rest of issue 5 with real peers: timeout, in-band and SIP INFO
digits, on_decline = hangup, an outbound call, pause/resume by the office and withdrawal
by the external party. SIPp plays the trunk and the phones; recordings are decrypted and
checked against the times the B2BUA logged in its catalog.
"""

from __future__ import annotations

import asyncio
import hashlib
import socket
import struct
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
import soundfile as sf

from b2bua.archive.catalog import CONSENT_KEYS, Catalog
from b2bua.consent import ConsentRecord, ConsentResult
from b2bua.recording_hub import consent_json
from b2bua.serve import Server
from media.announcement import load_prompt, shipped_prompt
from media.dtmf import InbandDtmfDetector, tone
from media.g711 import decode_alaw, encode_alaw
from tests.conftest import SIPP_DIR, free_port, run_sipp
from tests.sipp_harness import (
    answered_call,
    assert_sipp_ok,
    carrier_answers,
    catalog_rows,
    consent_office,
    decrypted_wav,
    phone_calls_out,
    run_serving,
    trunk_calls_in,
)
from tests.sipp_harness import phone_answers as answering_phone

pytestmark = pytest.mark.sipp
CAPTURES = Path("/usr/share/sip-tester")
DTMF_1 = str(CAPTURES / "dtmf_2833_1.pcap")
DTMF_2 = str(CAPTURES / "dtmf_2833_2.pcap")
DTMF_STAR = str(CAPTURES / "dtmf_2833_star.pcap")
SPEECH = str(CAPTURES / "g711a.pcap")  # 7 s of A-law speech, 30 ms packets
THANKS_S = load_prompt(shipped_prompt("en", "thanks")).duration

# ------------------------------------------------------------------ SIPp scenarios

_FROM = 'From: "Caller" <sip:+4930123456@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]'
_TO = "To: <sip:[service]@[remote_ip]:[remote_port]>"
_TRUNK_INVITE = f"""
  <send retrans="500"><![CDATA[
      INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      {_FROM}
      {_TO}
      Call-ID: [call_id]
      CSeq: 1 INVITE
      Contact: <sip:trunk@[local_ip]:[local_port]>
      Max-Forwards: 70
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=trunk 53655765 2353687637 IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 8 101
      a=rtpmap:8 PCMA/8000
      a=rtpmap:101 telephone-event/8000
      a=fmtp:101 0-15
      a=ptime:20
  ]]></send>
  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="183" optional="true"/>
  <recv response="200" rrs="true"/>
  <send><![CDATA[
      ACK [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      {_FROM}
      {_TO}[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 1 ACK
      Contact: <sip:trunk@[local_ip]:[local_port]>
      Max-Forwards: 70
      Content-Length: 0

  ]]></send>
"""
_OK_TO_REQUEST = """
  <send><![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0

  ]]></send>
"""


def pause(ms: int) -> str:
    return f'  <pause milliseconds="{ms}"/>\n'


def play(pcap: str) -> str:
    return f'  <nop><action><exec play_pcap_audio="{pcap}"/></action></nop>\n'


def trunk_request(
    method: str, cseq: int, body: str = "", content_type: str = "", expect: str = "200"
) -> str:
    """An in-dialog request from the trunk (SIPp UAC) and the response it must get."""
    typed = f"Content-Type: {content_type}\n      " if content_type else ""
    # A 415 must tell which DTMF bodies we take (RFC 3261 21.4.13: Accept).
    check = (
        '<action><ereg regexp="application/dtmf-relay" search_in="hdr" header="Accept:"'
        ' check_it="true" assign_to="accept"/></action>'
        if expect == "415"
        else ""
    )
    reference = '<Reference variables="accept"/>' if check else ""  # SIPp: "unused"
    return f"""
  <send retrans="500"><![CDATA[
      {method} [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      {_FROM}
      {_TO}[peer_tag_param]
      Call-ID: [call_id]
      CSeq: {cseq} {method}
      Contact: <sip:trunk@[local_ip]:[local_port]>
      Max-Forwards: 70
      {typed}Content-Length: [len]

      {body}
  ]]></send>
  <recv response="{expect}" crlf="true">{check}</recv>
  {reference}
"""


def expect_bye() -> str:
    """The B2BUA hangs up on the trunk: SIPp must see a BYE and answers 200."""
    return '  <recv request="BYE"/>\n' + _OK_TO_REQUEST


def trunk_scenario(path: Path, steps: list[str], *, hangs_up: bool = True) -> Path:
    """A trunk calling in: INVITE/200/ACK, the given steps, then (usually) its BYE."""
    end = trunk_request("BYE", 9) if hangs_up else ""
    path.write_text(
        '<?xml version="1.0" encoding="ISO-8859-1" ?>\n'
        '<scenario name="trunk calls in (consent)">\n'
        + _TRUNK_INVITE
        + "".join(steps)
        + end
        + "</scenario>\n"
    )
    return path


def phone_scenario(path: Path, after_ack: list[str]) -> Path:
    """The shipped answering phone with steps (e.g. key presses) after the ACK."""
    text = (SIPP_DIR / "phone_uas.xml").read_text()
    ack = '<recv request="ACK" crlf="true"/>'
    assert ack in text
    path.write_text(text.replace(ack, ack + "\n" + "".join(after_ack)))
    return path


def carrier_uas_scenario(path: Path) -> Path:
    """The carrier answering an outbound call: 180, 200, then after 1 s the called party
    presses 1 (RFC 2833), talks, and the office hangs up (BYE through the B2BUA)."""
    ok_sdp = """
  <send retrans="500"><![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]SIPpTag01[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Contact: <sip:carrier@[local_ip]:[local_port]>
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=carrier 1 1 IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 8 101
      a=rtpmap:8 PCMA/8000
      a=rtpmap:101 telephone-event/8000
      a=fmtp:101 0-15
  ]]></send>
"""
    ringing = """
  <send><![CDATA[
      SIP/2.0 180 Ringing
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]SIPpTag01[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Contact: <sip:carrier@[local_ip]:[local_port]>
      Content-Length: 0

  ]]></send>
"""
    path.write_text(
        '<?xml version="1.0" encoding="ISO-8859-1" ?>\n'
        '<scenario name="carrier answers and the called party consents">\n'
        '  <recv request="INVITE" crlf="true"/>\n'
        + ringing
        + pause(300)
        + ok_sdp
        + '  <recv request="ACK" crlf="true"/>\n'
        + pause(1000)
        + play(DTMF_1)
        + pause(1800)
        + play(SPEECH)
        + '  <recv request="BYE"/>\n'
        + _OK_TO_REQUEST
        + '  <timewait milliseconds="300"/>\n'
        + "</scenario>\n"
    )
    return path


def office_phone_scenario(path: Path) -> Path:
    """The office phone dialling out; the 180 is mandatory before the 200 (SIPp fails on
    an unexpected 200), so the office is not answered before the carrier's 180."""
    text = (SIPP_DIR / "phone_uac_auth.xml").read_text()
    optional = '<recv response="180" optional="true"/>'
    assert optional in text
    path.write_text(text.replace(optional, '<recv response="180"/>'))
    return path


# ------------------------------------------------------------------ pcap writer


def write_pcap(path: Path, payloads: list[tuple[float, bytes]]) -> Path:
    """A classic pcap (Ethernet/IPv4/UDP) of `(seconds, udp payload)` records.

    Format: libpcap file header (magic 0xa1b2c3d4, version 2.4, link type 1 Ethernet),
    then per record ts_sec, ts_usec, incl_len, orig_len. SIPp's play_pcap_audio replays
    only the UDP payloads, at the recorded times, from its own media address.
    """
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)]
    src, dst = socket.inet_aton("10.0.0.1"), socket.inet_aton("10.0.0.2")
    for ident, (at, data) in enumerate(payloads):
        udp = struct.pack("!HHHH", 40000, 40002, 8 + len(data), 0) + data
        header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), ident, 0, 64, 17, 0, src, dst)
        words = struct.unpack("!10H", header)
        total = sum(words)
        while total >> 16:
            total = (total & 0xFFFF) + (total >> 16)
        header = header[:10] + struct.pack("!H", ~total & 0xFFFF) + header[12:]
        frame = b"\x00\x00\x00\x00\x00\x02" + b"\x00\x00\x00\x00\x00\x01" + b"\x08\x00"
        frame += header + udp
        sec, usec = int(at), round((at - int(at)) * 1e6)
        out.append(struct.pack("<IIII", sec, usec, len(frame), len(frame)) + frame)
    path.write_bytes(b"".join(out))
    return path


def rtp_packets(
    samples: npt.NDArray[np.int16], ssrc: int = 0x1234ABCD
) -> list[tuple[float, bytes]]:
    """20 ms A-law RTP packets (PT 8) of `samples`, timed 20 ms apart."""
    out = []
    for i in range(len(samples) // 160):
        payload = encode_alaw(samples[i * 160 : (i + 1) * 160])
        header = struct.pack("!BBHII", 0x80, 8 | (0x80 if i == 0 else 0), 1000 + i, 160 * i, ssrc)
        out.append((1000.0 + i * 0.02, header + payload))
    return out


def inband_digit_pcap(path: Path, digit: str) -> Path:
    """Silence, a 120 ms DTMF tone at -10 dBFS, silence: the caller's key press as audio."""
    silence = np.zeros(800, dtype=np.int16)
    samples = np.concatenate([silence, tone(digit, 0.12, -10.0), silence, silence])
    return write_pcap(path, rtp_packets(samples))


def test_pcap_writer_round_trip(tmp_path: Path) -> None:
    # Our pcap must hold the RTP we meant: checked with the pcap header fields and the
    # decoded tone (the same detector the B2BUA runs must find the digit in it).
    path = inband_digit_pcap(tmp_path / "d.pcap", "1")
    raw = path.read_bytes()
    magic, major, minor, _, _, snap, link = struct.unpack_from("<IHHiIII", raw)
    assert (magic, major, minor, snap, link) == (0xA1B2C3D4, 2, 4, 65535, 1)
    offset, audio = 24, []
    while offset < len(raw):
        _, _, incl, orig = struct.unpack_from("<IIII", raw, offset)
        assert incl == orig
        frame = raw[offset + 16 : offset + 16 + incl]
        assert frame[12:14] == b"\x08\x00" and frame[14] == 0x45 and frame[23] == 17
        udp_len = struct.unpack_from("!H", frame, 38)[0]
        assert udp_len == incl - 34
        audio.append(decode_alaw(frame[42 + 12 :]))
        offset += 16 + incl
    digits = InbandDtmfDetector().feed(np.concatenate(audio))
    assert [d.digit for d in digits] == ["1"]


# ------------------------------------------------------------------ running a call


@dataclass
class Spy:
    """What the B2BUA did, seen from the test: prompts, consent records, SIP sent."""

    prompts: list[str] = field(default_factory=list)
    records: list[ConsentRecord] = field(default_factory=list)
    sent: list[tuple[float, str, tuple[str, int]]] = field(default_factory=list)  # wall time

    def first_sent(self, prefix: str, dest_ip: str) -> float:
        times = [t for t, line, dest in self.sent if line.startswith(prefix) and dest[0] == dest_ip]
        assert times, f"{prefix!r} never sent to {dest_ip}: {self.sent}"
        return times[0]


def attach_spy(server: Server) -> Spy:
    spy = Spy()
    # The recording control the switch talks to: the hub, or the media worker pool.
    hub: Any = server.hub if server.hub is not None else server.workers
    assert hub is not None
    play, decided = hub.play, hub.consent_decided

    def play_spy(call_id: str, name: str, now: float) -> None:
        spy.prompts.append(name)
        play(call_id, name, now)

    def decided_spy(call_id: str, record: ConsentRecord) -> None:
        spy.records.append(record)
        decided(call_id, record)

    hub.play = play_spy  # type: ignore[method-assign]
    hub.consent_decided = decided_spy  # type: ignore[method-assign]
    switch = server.switch
    outgoing = switch.datagrams_to_send

    def sent_spy() -> list[tuple[bytes, tuple[str, int], str]]:
        batch = outgoing()
        for data, dest, _ in batch:
            spy.sent.append((time.time(), data.split(b"\r\n", 1)[0].decode(), dest))
        return batch

    switch.datagrams_to_send = sent_spy  # type: ignore[method-assign]
    return spy


@dataclass
class Outcome:
    trunk: Any
    phone: Any
    rows: list[dict[str, Any]]
    spy: Spy
    phone_datagrams: int = 0


def run_inbound(
    tmp_path: Path,
    trunk_steps: list[str],
    *,
    recording: dict[str, str] | None = None,
    phone_steps: list[str] | None = None,
    phone_answers: bool = True,
    trunk_hangs_up: bool = True,
) -> Outcome:
    """One inbound call: SIPp trunk -> B2BUA -> SIPp phone (or a silent socket)."""
    phone_port, trunk_port = free_port("127.0.0.3"), free_port("127.0.0.2")
    config = consent_office(tmp_path, trunk_port, phone_port, recording=recording)
    trunk_xml = trunk_scenario(tmp_path / "trunk.xml", trunk_steps, hangs_up=trunk_hangs_up)
    phone_xml = phone_scenario(tmp_path / "phone.xml", phone_steps or [])

    async def body(server: Server, spy: Spy) -> Outcome:
        if phone_answers:
            trunk, (phone,) = await answered_call(
                [answering_phone(phone_port, phone_xml)],
                trunk_calls_in(server, trunk_port, trunk_xml),
                timeout=25,
                wait=15,
            )
            return Outcome(trunk, phone, [], spy)
        # The phone must never be rung: a bare socket on its address counts datagrams.
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind(("127.0.0.3", phone_port))
            sock.setblocking(False)
            trunk = await run_sipp(trunk_calls_in(server, trunk_port, trunk_xml), 25)
            await asyncio.sleep(0.3)
            count = 0
            for _ in range(100):
                try:
                    sock.recv(4096)
                except BlockingIOError:
                    break
                count += 1
        return Outcome(trunk, None, [], spy, phone_datagrams=count)

    return run_with_server(config, body)


def run_with_server(config: Path, body: Callable[[Server, Spy], Awaitable[Outcome]]) -> Outcome:
    async def main(server: Server) -> Outcome:
        outcome = await body(server, attach_spy(server))
        # The call has ended on both sides: let the hub seal and catalog it.
        for _ in range(40):
            if not server.switch.calls:
                break
            await asyncio.sleep(0.05)
        return outcome

    outcome = run_serving(config, main, timeout=50)
    outcome.rows = catalog_rows(config.parent / "recordings")
    return outcome


def wall(iso: str) -> float:
    return datetime.strptime(iso, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp()


def decrypt(tmp_path: Path, row: dict[str, Any]) -> npt.NDArray[np.int16]:
    data, rate = decrypted_wav(tmp_path, row)
    assert rate == 8000 and data.shape[1] == 2
    return data


def max_correlation(x: npt.NDArray[np.float64], reference: npt.NDArray[np.float64]) -> float:
    """Largest normalised cross-correlation of `x` against any stretch of `reference`."""
    energy = float(np.dot(x, x))
    if energy == 0.0:
        return 0.0  # silence is not the prompt
    dots = np.correlate(reference, x, mode="valid")
    windows = np.convolve(reference**2, np.ones(len(x)), mode="valid")
    norm = np.sqrt(np.maximum(windows, 1e-9) * energy)
    return float(np.max(np.abs(dots) / norm))


def assert_no_prompt_in(data: npt.NDArray[np.int16]) -> None:
    head = data[:1600].astype(np.float64)  # the first 200 ms
    for name in ("consent", "thanks"):
        prompt = load_prompt(shipped_prompt("en", name))
        reference = np.asarray(prompt.samples, dtype=np.float64)
        # The measure itself finds the prompt where it is (a 200 ms excerpt of it).
        assert max_correlation(reference[800:2400], reference) > 0.99
        for channel in (0, 1):
            assert max_correlation(head[:, channel], reference) < 0.5, (name, channel)


# ------------------------------------------------------------------ the tests


def test_no_digit_replays_prompt_once_then_timeout_connects_unrecorded(tmp_path: Path) -> None:
    # A short own announcement (1 s) and a 1 s timeout keep the test short:
    # prompt, 1 s, prompt again, 1 s, then the office is rung, unrecorded.
    announcement = tmp_path / "short.wav"
    t = np.arange(8000) / 8000
    sf.write(announcement, (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 8000)
    out = run_inbound(
        tmp_path,
        [pause(5800), play(SPEECH), pause(1500)],
        recording={"consent_timeout_s": "1", "announcement": f'"{announcement}"'},
    )
    assert_sipp_ok(out.trunk)
    assert_sipp_ok(out.phone)  # the phone was rung and answered after the timeout
    assert out.spy.prompts == ["consent", "consent"]
    (row,) = out.rows
    assert row["status"] == "not_recorded" and row["path"] is None
    consent = row["consent"]
    assert consent["result"] == "timeout"
    assert consent["digit"] is None and consent["method"] is None
    assert consent["prompt_sha256"] == hashlib.sha256(announcement.read_bytes()).hexdigest()
    # Timed out after two plays and two waits, and not much later.
    (record,) = out.spy.records
    invite_at = out.spy.first_sent("INVITE", "127.0.0.3")
    answered = out.spy.first_sent("SIP/2.0 200", "127.0.0.2")
    assert 4.0 - 0.3 < invite_at - answered < 4.0 + 1.0
    assert record.result == "timeout"
    assert not list((tmp_path / "recordings").glob("*.age*"))


def test_inband_digit_accepted_and_kept_out_of_the_recording(tmp_path: Path) -> None:
    pcap = inband_digit_pcap(tmp_path / "inband_1.pcap", "1")
    out = run_inbound(
        tmp_path, [pause(800), play(str(pcap)), pause(2200), play(SPEECH), pause(3000)]
    )
    assert_sipp_ok(out.trunk, out.phone)
    (row,) = out.rows
    assert row["status"] == "complete"
    consent = row["consent"]
    assert (consent["result"], consent["method"], consent["digit"]) == ("accepted", "inband", "1")
    assert out.spy.prompts == ["consent", "thanks"]
    data = decrypt(tmp_path, row)
    # Recorded from the end of "thanks" to the hang-up: the digit and prompts are before.
    seconds = len(data) / 8000
    expected = wall(row["ended_at"]) - wall(consent["at"]) - THANKS_S
    assert expected - 0.6 < seconds < expected + 0.3, (seconds, expected)
    assert_no_prompt_in(data)
    for channel in (0, 1):
        found = InbandDtmfDetector().feed(data[:, channel].copy())
        assert found == [], f"a DTMF tone in channel {channel}: {found}"
    assert float(np.sqrt(np.mean(data[:, 0].astype(float) ** 2))) > 100  # speech recorded


def test_sip_info_digit_accepted(tmp_path: Path) -> None:
    info = trunk_request(
        "INFO", 3, body="Signal=1\n      Duration=160", content_type="application/dtmf-relay"
    )
    wrong = trunk_request("INFO", 2, body="1", content_type="text/plain", expect="415")
    out = run_inbound(tmp_path, [pause(800), wrong, info, pause(2200), play(SPEECH), pause(2500)])
    assert_sipp_ok(out.trunk, out.phone)
    (row,) = out.rows
    assert row["status"] == "complete"
    consent = row["consent"]
    assert (consent["result"], consent["method"], consent["digit"]) == ("accepted", "info", "1")
    data = decrypt(tmp_path, row)
    assert_no_prompt_in(data)
    assert float(np.sqrt(np.mean(data[:, 1].astype(float) ** 2))) > 100  # the phone's echo


def test_decline_with_hangup_says_goodbye_and_never_rings_the_phone(tmp_path: Path) -> None:
    out = run_inbound(
        tmp_path,
        [pause(800), play(DTMF_2), expect_bye()],
        recording={"on_decline": '"hangup"'},
        phone_answers=False,
        trunk_hangs_up=False,
    )
    assert_sipp_ok(out.trunk)  # the trunk got the B2BUA's BYE and answered it
    assert out.phone_datagrams == 0
    assert out.spy.prompts == ["consent", "goodbye"]
    (row,) = out.rows
    assert row["status"] == "not_recorded" and row["path"] is None
    consent = row["consent"]
    assert (consent["result"], consent["method"], consent["digit"]) == ("declined", "rfc4733", "2")
    # The BYE came after the whole goodbye prompt.
    goodbye_s = load_prompt(shipped_prompt("en", "goodbye")).duration
    bye_at = out.spy.first_sent("BYE", "127.0.0.2")
    assert goodbye_s - 0.1 < bye_at - wall(consent["at"]) < goodbye_s + 1.0
    assert not list((tmp_path / "recordings").glob("*.age*"))


def test_outbound_called_party_consents_office_answered_after(tmp_path: Path) -> None:
    phone_port, trunk_port = free_port("127.0.0.3"), free_port("127.0.0.2")
    config = consent_office(
        tmp_path, trunk_port, phone_port, sip_extra='digest_algorithms = ["MD5"]'
    )
    carrier = carrier_uas_scenario(tmp_path / "carrier.xml")
    office = office_phone_scenario(tmp_path / "office.xml")

    async def body(server: Server, spy: Spy) -> Outcome:
        phone, (trunk,) = await answered_call(
            [carrier_answers(trunk_port, carrier, rtp_echo=False)],
            phone_calls_out(server, phone_port, scenario=office, rtp_echo=True),
            timeout=25,
            wait=15,
        )
        return Outcome(trunk, phone, [], spy)

    out = run_with_server(config, body)
    assert_sipp_ok(out.phone)  # 180 came before 200 (the scenario requires that order)
    assert_sipp_ok(out.trunk)
    (row,) = out.rows
    assert row["direction"] == "outbound"
    assert row["status"] == "complete"
    consent = row["consent"]
    assert (consent["result"], consent["method"], consent["digit"]) == ("accepted", "rfc4733", "1")
    assert out.spy.prompts == ["consent", "thanks"]
    ringing = out.spy.first_sent("SIP/2.0 180", "127.0.0.3")
    answered = out.spy.first_sent("SIP/2.0 200", "127.0.0.3")
    assert ringing < wall(consent["at"]) < answered
    assert answered - wall(consent["at"]) > THANKS_S - 0.1  # answered after "thanks" ended
    data = decrypt(tmp_path, row)
    assert_no_prompt_in(data)
    assert float(np.sqrt(np.mean(data[:, 0].astype(float) ** 2))) > 100  # the called party


def test_office_pauses_and_resumes_with_star_1(tmp_path: Path) -> None:
    press = [play(DTMF_STAR), pause(250), play(DTMF_1)]
    out = run_inbound(
        tmp_path,
        [pause(800), play(DTMF_1), pause(1700), play(SPEECH), pause(5500)],
        phone_steps=[pause(1200), *press, pause(1800), *press],
    )
    assert_sipp_ok(out.trunk, out.phone)
    (row,) = out.rows
    assert row["status"] == "complete"
    assert row["consent"]["result"] == "accepted"
    ((start, end),) = row["pauses"]
    assert 1.4 < end - start < 2.4, row["pauses"]
    data = decrypt(tmp_path, row)
    assert len(data) / 8000 > end + 1.0
    span = data[round((start + 0.06) * 8000) : round((end - 0.06) * 8000)]
    assert len(span) > 8000
    assert int(np.max(np.abs(span))) == 0  # both channels silent while paused
    before = data[: round(start * 8000)].astype(float)
    after = data[round(end * 8000) :].astype(float)
    assert float(np.sqrt(np.mean(before[:, 0] ** 2))) > 100  # recorded before the pause
    assert float(np.sqrt(np.mean(after[:, 0] ** 2))) > 100  # and again after it


def test_external_party_withdraws_consent_mid_call(tmp_path: Path) -> None:
    out = run_inbound(
        tmp_path,
        [
            pause(800),
            play(DTMF_1),
            pause(1700),
            play(SPEECH),
            pause(2000),
            play(DTMF_2),  # replaces the speech: the caller presses 2 mid-call
            pause(3000),
        ],
    )
    assert_sipp_ok(out.trunk, out.phone)
    assert out.spy.prompts == ["consent", "thanks", "stopped"]
    (row,) = out.rows
    assert row["status"] == "complete"
    consent = row["consent"]
    assert consent["result"] == "withdrawn"
    assert (consent["digit"], consent["method"]) == ("1", "rfc4733")  # the acceptance stays
    record = out.spy.records[-1]
    assert record.result == "withdrawn" and record.withdrawn_at is not None
    assert record.withdrawn_at - record.at > 3.0
    assert wall(consent["withdrawn_at"]) > wall(consent["at"])
    data = decrypt(tmp_path, row)
    seconds = len(data) / 8000
    recorded_for = record.withdrawn_at - record.at - THANKS_S
    assert recorded_for - 0.5 < seconds < recorded_for + 0.3, (seconds, recorded_for)
    # The catalog's ended_at is the end of the call (the trunk's BYE, passed on to the
    # phone), not the end of the recording.
    call_s = out.spy.first_sent("BYE", "127.0.0.3") - wall(consent["at"])
    assert abs(wall(row["ended_at"]) - wall(consent["at"]) - call_s) < 0.5
    assert seconds < call_s - THANKS_S - 2.5  # the rest of the call was not recorded


def test_consent_json_of_a_withdrawal_is_accepted_by_the_catalog(tmp_path: Path) -> None:
    # The hub passes only fields the catalog knows (it refuses others), so a withdrawal's
    # record is stored, never lost to a CatalogError.
    record = ConsentRecord(
        "keypress", ConsentResult.WITHDRAWN, "1", "rfc4733", 10.0, "ab" * 32, "en", 15.0
    )
    data = consent_json(record, lambda t: 1_800_000_000.0 + t)
    assert set(data) <= set(CONSENT_KEYS)
    assert data["result"] == "withdrawn" and data["at"] == 1_800_000_010.0
    with Catalog.open(tmp_path) as catalog:
        row_id = catalog.new_call("c1", "inbound", "+4930123456", "1000", "1000", 1.8e9)
        catalog.set_consent(row_id, data)
        rendered = catalog.get(row_id)
        assert rendered is not None
        stored = rendered["consent"]
    assert stored["result"] == "withdrawn" and stored["digit"] == "1"
    assert wall(stored["withdrawn_at"]) == pytest.approx(1_800_000_015.0)
