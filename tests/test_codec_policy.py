"""G.722 for wideband phones (b2bua/codec_policy.py): the pure codec decisions, and
call.py's offers and answers on each leg against the in-memory doubles of the switch
and the relay (tests/test_srtp_negotiation.py). The phone's leg and the trunk's leg
each get their own codec and payload types; the relay transcodes between them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from b2bua.call import Call, CallState, Side, Target
from b2bua.codec_policy import (
    CodecPlan,
    a_answer_codec,
    answer_for_a,
    audio_codecs,
    is_wideband,
    offer_for_b,
    office_offer_codecs,
    plan_for_call,
)
from b2bua.config import ConfigError, load_config
from b2bua.message import make_response
from b2bua.sdp import SessionDescription, direction, fmtp, parse_sdp, rtpmap
from b2bua.sdp_crypto import crypto_attributes, offer_crypto, secure_answer
from b2bua.uri import URI
from rtp.relay import MediaFormat
from tests.test_srtp_negotiation import (
    FakeHub,
    FakeServices,
    a_invite,
    audio,
    b_answer,
    b_offer,
    consent_machine,
    final_to_a,
    reinvite,
)


def sdp(formats: str, *rtpmaps: str, port: int = 40000, extra: str = "") -> SessionDescription:
    """An audio SDP on 192.0.2.10 with these payload types and rtpmap lines."""
    lines = [
        "v=0",
        "o=peer 1 1 IN IP4 192.0.2.10",
        "s=-",
        "c=IN IP4 192.0.2.10",
        "t=0 0",
        f"m=audio {port} RTP/AVP {formats}",
        *(f"a=rtpmap:{r}" for r in rtpmaps),
        "a=ptime:20",
    ]
    if extra:
        lines.append(extra)
    return parse_sdp(("\r\n".join(lines) + "\r\n").encode())


TRUNK_PCMA = sdp("8 96", "8 PCMA/8000", "96 telephone-event/8000")
TRUNK_BOTH = sdp("8 0 96", "8 PCMA/8000", "0 PCMU/8000", "96 telephone-event/8000")
TRUNK_G729 = sdp("18 101", "18 G729/8000", "101 telephone-event/8000")
PHONE_HD = sdp("9 0 8 100", "9 G722/8000", "0 PCMU/8000", "8 PCMA/8000", "100 telephone-event/8000")
PHONE_HD_ONLY = sdp("9 100", "9 G722/8000", "100 telephone-event/8000")
PHONE_NARROW = sdp("0 101", "0 PCMU/8000", "101 telephone-event/8000")


def names(description: SessionDescription) -> list[str]:
    return [c.name.upper() for c in rtpmap(audio(description)).values()]


# ------------------------------------------------------------------ pure decisions


def test_audio_codecs_in_offer_order_once_each() -> None:
    assert audio_codecs(PHONE_HD) == ("G722", "PCMU", "PCMA", "TELEPHONE-EVENT")
    assert audio_codecs(TRUNK_G729) == ("G729", "TELEPHONE-EVENT")


def test_inbound_plan_offers_g722_then_the_trunks_g711() -> None:
    plan = plan_for_call(
        "inbound", TRUNK_BOTH, office_wideband=True, caller_wideband=False, session_id=5
    )
    assert plan == CodecPlan(("G722", "PCMA", "PCMU"), ("PCMA", "PCMU"), 5)
    pcma_only = plan_for_call("inbound", TRUNK_PCMA, office_wideband=True, caller_wideband=False)
    assert pcma_only is not None and pcma_only.b_offer == ("G722", "PCMA")


@pytest.mark.parametrize(
    ("direction_", "offer_", "office", "caller"),
    [
        ("inbound", TRUNK_PCMA, False, True),  # the phone called is narrowband
        ("inbound", TRUNK_G729, True, False),  # nothing the relay can transcode to G.722
        ("outbound", PHONE_HD, False, False),  # the calling phone is narrowband
        ("outbound", PHONE_NARROW, False, True),  # a wideband phone that offered no G722
        ("internal", PHONE_HD, True, True),  # phone to phone: the offer passes through
    ],
)
def test_no_plan_means_the_offer_passes_through(
    direction_: str, offer_: SessionDescription, office: bool, caller: bool
) -> None:
    assert plan_for_call(direction_, offer_, office_wideband=office, caller_wideband=caller) is None
    assert plan_for_call(direction_, None, office_wideband=True, caller_wideband=True) is None


def test_outbound_plan_gives_the_trunk_g711_only() -> None:
    plan = plan_for_call("outbound", PHONE_HD, office_wideband=False, caller_wideband=True)
    assert plan == CodecPlan(("PCMU", "PCMA"), ("G722",))
    only = plan_for_call("outbound", PHONE_HD_ONLY, office_wideband=False, caller_wideband=True)
    assert only is not None and only.b_offer == ("PCMA", "PCMU")  # none in the offer


def test_offer_for_b_has_static_types_and_telephone_event_at_8000() -> None:
    plan = CodecPlan(("G722", "PCMA"), ("PCMA",), 77)
    ours = offer_for_b(plan, sdp("8", "8 PCMA/8000", extra="a=sendonly"), "127.0.0.1", 31002)
    m = audio(ours)
    assert m.formats == ("9", "8", "101")
    assert rtpmap(m)[9].name == "G722" and rtpmap(m)[9].clock_rate == 8000
    assert rtpmap(m)[101].name == "telephone-event" and rtpmap(m)[101].clock_rate == 8000
    assert fmtp(m)[101] == "0-15"
    assert direction(m, ours) == "sendonly"  # A offered sendonly: so do we
    assert ours.origin.session_id == "77" and m.port == 31002


def test_a_answer_codec_prefers_bs_own_codec() -> None:
    plan = CodecPlan(("G722", "PCMA", "PCMU"), ("PCMA", "PCMU"))
    assert a_answer_codec(plan, "G722") == "PCMA"
    assert a_answer_codec(plan, "PCMU") == "PCMU"  # nothing to transcode
    assert a_answer_codec(CodecPlan(("PCMU",), ("G722",)), "PCMU") == "G722"


def test_answer_for_a_keeps_as_payload_types_and_bs_direction() -> None:
    plan = CodecPlan(("G722", "PCMA"), ("PCMA",), 9)
    phone = sdp("9 100", "9 G722/8000", "100 telephone-event/8000", extra="a=recvonly")
    ours = answer_for_a(plan, TRUNK_PCMA, phone, "G722", "127.0.0.1", 31000)
    m = audio(ours)
    assert m.formats == ("8", "96")  # the trunk's own telephone-event number
    assert direction(m, ours) == "recvonly"
    assert ours.origin.session_id == "9"


def test_answer_for_a_of_an_savp_offer_is_plain_for_the_call_to_secure() -> None:
    savp, _ = offer_crypto(TRUNK_PCMA)
    ours = answer_for_a(
        CodecPlan(("G722", "PCMA"), ("PCMA",)), savp, PHONE_HD_ONLY, "G722", "127.0.0.1", 1
    )
    assert audio(ours).proto == "RTP/AVP" and audio(ours).formats == ("8", "96")


def test_office_offer_after_consent() -> None:
    assert office_offer_codecs("PCMA", False) == ("PCMA", "PCMU")  # as before
    assert office_offer_codecs("PCMA", True) == ("G722", "PCMA", "PCMU")
    assert office_offer_codecs("PCMU", True) == ("G722", "PCMU", "PCMA")


def test_wideband_key_in_config(tmp_path: Path) -> None:
    path = tmp_path / "office.toml"
    path.write_text(
        '[sip]\nlisten = "127.0.0.1:0"\n[trunk]\nhost = "127.0.0.2:5080"\ninbound_extension = "1000"\n'
        '[[extension]]\nnumber = "1000"\npassword = "a"\nwideband = true\n'
        '[[extension]]\nnumber = "1001"\npassword = "b"\n'
        '[recording]\nmode = "off"\n'
    )
    config = load_config(path)
    assert is_wideband(config, "1000") and not is_wideband(config, "1001")
    assert not is_wideband(config, None) and not is_wideband(config, "4711")
    path.write_text(path.read_text().replace("wideband = true", 'wideband = "yes"'))
    with pytest.raises(ConfigError, match="wideband"):
        load_config(path)


# ------------------------------------------------------------------ calls


def start(
    body: SessionDescription,
    *,
    direction_: str = "inbound",
    wideband: bool = False,
    a_wideband: bool = False,
    consent: bool = False,
    a_srtp: str = "off",
) -> tuple[Call, FakeServices]:
    services = FakeServices(recording=FakeHub() if consent else None)
    uri = URI("sip", "1000", host="127.0.0.3", port=5070)
    target = Target(uri, ("127.0.0.3", 5070), "UDP", "1000", wideband=wideband)
    call = Call.start(
        services,
        a_invite(body.to_bytes()),
        "a-key",
        ("127.0.0.2", 5080),
        "UDP",
        target,
        direction_,
        0.0,
        consent=consent_machine() if consent else None,
        a_srtp=a_srtp,
        a_wideband=a_wideband,
    )
    return call, services


def test_inbound_wideband_phone_gets_g722_trunk_gets_pcma() -> None:
    call, services = start(TRUNK_PCMA, wideband=True)
    to_phone = b_offer(call)
    assert names(to_phone) == ["G722", "PCMA", "TELEPHONE-EVENT"]
    assert audio(to_phone).formats[0] == "9"
    b_answer(call, services, sdp("9 100", "9 G722/8000", "100 telephone-event/8000").to_bytes())
    answer = final_to_a(services)
    assert answer.status == 200
    m = audio(parse_sdp(answer.body))
    assert m.formats == ("8", "96") and names(parse_sdp(answer.body)) == [
        "PCMA",
        "TELEPHONE-EVENT",
    ]
    a_leg, b_leg = services.media.legs
    assert m.port == a_leg.port
    # Each relay leg has its own codec and payload types (the relay transcodes).
    assert a_leg.fmt == MediaFormat(8, "PCMA", 96)
    assert b_leg.fmt == MediaFormat(9, "G722", 100)
    assert call.state is CallState.ANSWERED


def test_inbound_wideband_phone_choosing_g711_is_not_transcoded() -> None:
    call, services = start(TRUNK_BOTH, wideband=True)
    assert names(b_offer(call)) == ["G722", "PCMA", "PCMU", "TELEPHONE-EVENT"]
    b_answer(call, services, PHONE_NARROW.to_bytes())
    m = audio(parse_sdp(final_to_a(services).body))
    assert m.formats == ("0", "96")
    a_leg, b_leg = services.media.legs
    assert a_leg.fmt.encoding == b_leg.fmt.encoding == "PCMU"
    assert (a_leg.fmt.telephone_event, b_leg.fmt.telephone_event) == (96, 101)


def test_inbound_early_media_and_the_200_carry_the_same_answer() -> None:
    call, services = start(TRUNK_PCMA, wideband=True)
    phone = sdp("9 100", "9 G722/8000", "100 telephone-event/8000")
    b_answer(call, services, phone.to_bytes(), status=183)
    (early,) = [r for k, r in services.responses if r.status == 183]
    b_answer(call, services, phone.to_bytes())
    assert early.body == final_to_a(services).body
    assert audio(parse_sdp(early.body)).formats == ("8", "96")


def test_inbound_not_wideband_passes_the_trunk_offer_through() -> None:
    call, services = start(TRUNK_PCMA)
    to_phone = b_offer(call)
    assert names(to_phone) == ["PCMA", "TELEPHONE-EVENT"]
    assert to_phone.origin.username == "peer"  # the trunk's own o=, anchored
    assert call.codec_plan is None
    b_answer(call, services, sdp("8 96", "8 PCMA/8000", "96 telephone-event/8000").to_bytes())
    assert audio(parse_sdp(final_to_a(services).body)).formats == ("8", "96")


def test_inbound_wideband_with_a_trunk_offer_without_g711_passes_through() -> None:
    call, _ = start(TRUNK_G729, wideband=True)
    assert call.codec_plan is None
    assert names(b_offer(call)) == ["G729", "TELEPHONE-EVENT"]


def test_inbound_wideband_srtp_trunk_answered_with_its_crypto_and_pcma() -> None:
    savp, trunk_keys = offer_crypto(TRUNK_PCMA)
    call, services = start(savp, wideband=True, a_srtp="required")
    to_phone = b_offer(call)
    assert audio(to_phone).proto == "RTP/AVP" and not crypto_attributes(audio(to_phone))
    b_answer(call, services, PHONE_HD_ONLY.to_bytes())
    answered = parse_sdp(final_to_a(services).body)
    m = audio(answered)
    assert m.proto == "RTP/SAVP" and m.formats == ("8", "96")
    (line,) = crypto_attributes(m)
    a_leg, b_leg = services.media.legs
    assert a_leg.srtp is not None and a_leg.srtp.inbound_key == trunk_keys[1]
    assert a_leg.srtp.outbound_key == line.key
    assert b_leg.srtp is None and b_leg.fmt.encoding == "G722"


def test_inbound_wideband_refused_phone_answer_is_488_to_the_trunk() -> None:
    # The phone leg requires SRTP, the phone answers plain: nothing changes, A hears 488.
    call, services = start(TRUNK_PCMA, wideband=True)
    call.b.srtp_policy = "required"
    call.b.srtp_offer = {1: offer_crypto(TRUNK_PCMA)[1][1]}
    b_answer(call, services, PHONE_HD_ONLY.to_bytes())
    assert final_to_a(services).status == 488


def test_inbound_after_consent_offers_g722_first() -> None:
    call, services = start(TRUNK_PCMA, wideband=True, consent=True)
    assert call.state is CallState.ANNOUNCING
    call.on_a_ack(0.1)
    call.on_digit("1", "rfc4733", "external", 0.5)
    for t in (1.0, 2.0, 3.0):
        call.on_prompt_finished(t)
        if call.b_invite is not None:
            break
    assert call.b_invite is not None, "consent given: the office leg is called"
    assert names(b_offer(call)) == ["G722", "PCMA", "PCMU", "TELEPHONE-EVENT"]
    b_answer(call, services, PHONE_HD_ONLY.to_bytes())
    a_leg, b_leg = services.media.legs
    assert call.state is CallState.CONFIRMED
    assert a_leg.fmt.encoding == "PCMA" and b_leg.fmt == MediaFormat(9, "G722", 100)


def test_inbound_after_consent_narrowband_offer_unchanged() -> None:
    call, _ = start(TRUNK_PCMA, consent=True)
    call.on_a_ack(0.1)
    call.on_digit("1", "rfc4733", "external", 0.5)
    for t in (1.0, 2.0, 3.0):
        call.on_prompt_finished(t)
        if call.b_invite is not None:
            break
    assert names(b_offer(call)) == ["PCMA", "PCMU", "TELEPHONE-EVENT"]


def test_outbound_wideband_phone_trunk_offer_without_g722_phone_answered_g722() -> None:
    call, services = start(PHONE_HD, direction_="outbound", a_wideband=True)
    to_trunk = b_offer(call)
    assert names(to_trunk) == ["PCMU", "PCMA", "TELEPHONE-EVENT"]
    assert "9" not in audio(to_trunk).formats
    b_answer(call, services, sdp("8 101", "8 PCMA/8000", "101 telephone-event/8000").to_bytes())
    answered = parse_sdp(final_to_a(services).body)
    assert audio(answered).formats == ("9", "100")
    a_leg, b_leg = services.media.legs
    assert a_leg.fmt == MediaFormat(9, "G722", 100)
    assert b_leg.fmt == MediaFormat(8, "PCMA", 101)


def test_outbound_consent_first_answers_the_phone_with_g722_on_connect() -> None:
    call, services = start(PHONE_HD, direction_="outbound", a_wideband=True, consent=True)
    b_answer(call, services, sdp("0 101", "0 PCMU/8000", "101 telephone-event/8000").to_bytes())
    assert call.state is CallState.ANNOUNCING
    assert audio(parse_sdp(call.a_answer_body)).formats == ("9", "100")


def test_outbound_not_wideband_or_without_g722_passes_through() -> None:
    call, _ = start(PHONE_HD, direction_="outbound")
    assert names(b_offer(call))[0] == "G722"  # as before: the phone's offer goes on
    call, _ = start(PHONE_NARROW, direction_="outbound", a_wideband=True)
    assert call.codec_plan is None and names(b_offer(call)) == ["PCMU", "TELEPHONE-EVENT"]


def test_internal_between_wideband_phones_keeps_g722() -> None:
    call, services = start(PHONE_HD, direction_="internal", wideband=True, a_wideband=True)
    assert call.codec_plan is None and names(b_offer(call))[0] == "G722"
    b_answer(call, services, PHONE_HD_ONLY.to_bytes())
    a_leg, b_leg = services.media.legs
    assert a_leg.fmt.encoding == b_leg.fmt.encoding == "G722"


def test_b_answer_with_a_foreign_crypto_tag_is_refused() -> None:
    call, services = start(TRUNK_PCMA, wideband=True)
    call.b.srtp_policy = "optional"
    _, keys = offer_crypto(TRUNK_PCMA)
    call.b.srtp_offer = keys
    bad, _ = secure_answer(PHONE_HD_ONLY, offer_crypto(TRUNK_PCMA)[0])
    # A crypto tag we never offered: 488 to the trunk, nothing set on the legs.
    text = bad.to_bytes().replace(b"a=crypto:1 ", b"a=crypto:7 ")
    assert call.b_invite is not None
    response = make_response(
        call.b_invite, 200, to_tag="p", headers=[("Content-Type", "application/sdp")], body=text
    )
    call.on_b_response(response, call.b_invite_key, 1.0)
    assert final_to_a(services).status == 488
    assert all(leg.srtp is None for leg in services.media.legs)


# ------------------------------------------------------------ re-INVITEs


def answered_wideband_call() -> tuple[Call, FakeServices]:
    """An inbound call: trunk PCMA, phone answered G722, ACKed (CONFIRMED)."""
    call, services = start(TRUNK_PCMA, wideband=True)
    b_answer(call, services, PHONE_HD_ONLY.to_bytes())
    call.on_a_ack(1.5)
    assert call.state is CallState.CONFIRMED
    return call, services


def relayed_answer(call: Call, services: FakeServices, key: str, body: SessionDescription) -> Any:
    """The other leg answers our relayed re-INVITE with `body`; returns our answer's
    SDP to the offerer."""
    sent = services.requests[-1][1]
    response = make_response(
        sent, 200, headers=[("Contact", "<sip:peer@127.0.0.3:5070>")], body=body.to_bytes()
    )
    if sent.uri.port == 5070:  # toward the phone (B)
        call.on_b_response(response, key, 3.0)
    else:
        call.on_a_response(response, key, 3.0)
    to_offerer = [r for k, r in services.responses if k == "re-key"][-1]
    assert to_offerer.status == 200
    return parse_sdp(to_offerer.body)


def test_phone_hold_reinvite_keeps_g722_on_the_phone_and_g711_toward_the_trunk() -> None:
    call, services = answered_wideband_call()
    first_version = parse_sdp(services.requests[0][1].body).origin.session_version
    hold = sdp("9 8 100", "9 G722/8000", "8 PCMA/8000", "100 telephone-event/8000",
               extra="a=sendonly")  # fmt: skip
    key = reinvite(call, Side.B, hold.to_bytes(), services)
    to_trunk = parse_sdp(services.requests[-1][1].body)
    assert names(to_trunk) == ["PCMA", "TELEPHONE-EVENT"]  # never G722 to the trunk
    assert direction(audio(to_trunk), to_trunk) == "sendonly"
    assert to_trunk.origin.session_version > first_version  # RFC 3264 section 8
    trunk_hold = sdp("8 96", "8 PCMA/8000", "96 telephone-event/8000", extra="a=recvonly")
    back = relayed_answer(call, services, key, trunk_hold)
    assert names(back) == ["G722", "TELEPHONE-EVENT"] and audio(back).formats == ("9", "100")
    assert direction(audio(back), back) == "recvonly"
    a_leg, b_leg = services.media.legs
    assert b_leg.fmt == MediaFormat(9, "G722", 100)
    assert a_leg.fmt == MediaFormat(8, "PCMA", 96)
    assert call.reinvite_plans == {}


def test_trunk_reinvite_offers_the_phone_g722_first_and_answers_the_trunk_g711() -> None:
    call, services = answered_wideband_call()
    key = reinvite(call, Side.A, TRUNK_PCMA.to_bytes(), services)
    to_phone = parse_sdp(services.requests[-1][1].body)
    assert names(to_phone) == ["G722", "PCMA", "TELEPHONE-EVENT"]
    back = relayed_answer(call, services, key, PHONE_HD_ONLY)
    assert names(back) == ["PCMA", "TELEPHONE-EVENT"] and audio(back).formats == ("8", "96")
    a_leg, b_leg = services.media.legs
    assert (a_leg.fmt.encoding, b_leg.fmt.encoding) == ("PCMA", "G722")


def test_reinvite_of_a_narrowband_call_still_passes_through() -> None:
    call, services = start(TRUNK_PCMA, wideband=False)
    b_answer(call, services, sdp("8 101", "8 PCMA/8000", "101 telephone-event/8000").to_bytes())
    call.on_a_ack(1.5)
    reinvite(call, Side.B, PHONE_HD.to_bytes(), services)
    assert names(parse_sdp(services.requests[-1][1].body))[0] == "G722"  # unchanged offer
    assert call.reinvite_plans == {}
