"""SRTP per leg in the call: the policy helpers of sdp_crypto.py, and call.py's offers and
answers on each leg (pass-through, consent, re-INVITE, transfer) against in-memory doubles
of the switch and the relay. Keys must never cross from one leg to the other."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from b2bua.call import Call, CallState, Side, Target
from b2bua.consent import ConsentMachine
from b2bua.errors import SipError
from b2bua.headers import Headers
from b2bua.message import Request, Response, make_response
from b2bua.sdp import SessionDescription, anchor, offer, parse_sdp
from b2bua.sdp_crypto import (
    SrtpKeys,
    answer_keys,
    crypto_attributes,
    offer_crypto,
    offer_for_leg,
    offer_wants_srtp,
    plain_profile,
    secure_answer,
)
from b2bua.uri import URI
from rtp.relay import MediaFormat
from rtp.srtp import SrtpKey, SrtpLeg

# ------------------------------------------------------------------ sdp helpers


def plain_offer(port: int = 40000) -> SessionDescription:
    return offer("192.0.2.10", port, codecs=("PCMU", "PCMA"), session_id=7)


def savp_offer(best_effort: bool = False) -> tuple[SessionDescription, dict[int, SrtpKey]]:
    return offer_crypto(plain_offer(), best_effort=best_effort)


def audio(sdp: SessionDescription) -> Any:
    return next(m for m in sdp.media if m.media == "audio" and m.port != 0)


@pytest.mark.parametrize(
    ("kind", "policy", "expected"),
    [
        ("plain", "off", False),
        ("plain", "optional", False),
        ("plain", "required", 488),
        ("savp", "off", 488),
        ("savp", "optional", True),
        ("savp", "required", True),
        ("avp+crypto", "off", False),
        ("avp+crypto", "optional", True),
        ("avp+crypto", "required", True),
    ],
)
def test_offer_wants_srtp_follows_the_leg_policy(kind: str, policy: str, expected: object) -> None:
    sdp = plain_offer() if kind == "plain" else savp_offer(best_effort=kind == "avp+crypto")[0]
    if expected == 488:
        with pytest.raises(SipError) as info:
            offer_wants_srtp(sdp, policy)
        assert info.value.status == 488
    else:
        assert offer_wants_srtp(sdp, policy) is expected


def test_savp_offer_without_usable_crypto_is_488_even_when_optional() -> None:
    sdp, _ = savp_offer()
    m = audio(sdp)
    broken = [
        (k, "1 AES_CM_128_HMAC_SHA1_80 inline:short") if k == "crypto" else (k, v)
        for k, v in m.attributes
    ]
    from dataclasses import replace

    bad = replace(sdp, media=(replace(m, attributes=tuple(broken)),))
    with pytest.raises(SipError):
        offer_wants_srtp(bad, "optional")


def test_secure_answer_uses_the_offer_profile_tag_and_a_key_of_ours() -> None:
    theirs, keys = savp_offer()
    plain_answer = anchor(plain_offer(50000), "127.0.0.1", [31000])
    answered, negotiated = secure_answer(plain_answer, theirs)
    m = audio(answered)
    assert m.proto == "RTP/SAVP"
    (line,) = crypto_attributes(m)
    assert line.tag == 1 and negotiated.tag == 1
    assert negotiated.peer == keys[1]
    assert line.key == negotiated.ours != keys[1]
    again, kept = secure_answer(plain_answer, theirs, ours=negotiated.ours)
    assert kept == negotiated  # a 183 then the 200, or a re-INVITE: the same key
    assert crypto_attributes(audio(again))[0].key == negotiated.ours


def test_offer_for_leg_by_policy_and_reoffer_keeps_keys() -> None:
    base = plain_offer()
    off, none = offer_for_leg(savp_offer()[0], "off")
    assert none is None and audio(off).proto == "RTP/AVP" and not crypto_attributes(audio(off))
    optional, keys = offer_for_leg(base, "optional")
    assert audio(optional).proto == "RTP/AVP" and keys is not None and len(keys) == 2
    required, keys = offer_for_leg(base, "required")
    assert audio(required).proto == "RTP/SAVP" and keys is not None
    current = SrtpKeys(2, keys[1], keys[2])
    again, offered = offer_for_leg(base, "required", current)
    (line,) = crypto_attributes(audio(again))
    assert offered == {2: keys[2]} and line.tag == 2 and line.key == keys[2]


def test_answer_keys_plain_answer_is_488_only_when_required() -> None:
    sdp, offered = savp_offer(best_effort=True)
    plain = plain_offer(50000)
    assert answer_keys(plain, offered, "optional") is None
    assert answer_keys(plain, None, "required") is None  # we offered nothing
    with pytest.raises(SipError) as info:
        answer_keys(plain, offered, "required")
    assert info.value.status == 488
    answered, ours = secure_answer(plain, sdp)
    keys = answer_keys(answered, offered, "required")
    assert keys is not None and keys.ours == offered[1] and keys.peer == ours.ours


def test_plain_profile_drops_crypto_and_savp() -> None:
    sdp, _ = savp_offer()
    plain = plain_profile(sdp)
    assert audio(plain).proto == "RTP/AVP" and not crypto_attributes(audio(plain))


# ------------------------------------------------------------------ call doubles


@dataclass
class FakeLeg:
    port: int
    fmt: MediaFormat = field(default_factory=MediaFormat)
    srtp: SrtpLeg | None = None
    srtp_sets: int = 0
    closed: bool = False

    def set_remote(self, remote: Any, fmt: MediaFormat | None = None) -> None:
        if fmt is not None:
            self.fmt = fmt

    def hold(self) -> None: ...

    def resume(self) -> None: ...

    def set_srtp(self, srtp: SrtpLeg | None) -> None:
        self.srtp = srtp
        self.srtp_sets += 1

    def close(self) -> None:
        self.closed = True


@dataclass
class FakeMedia:
    ip: str = "127.0.0.1"
    legs: list[FakeLeg] = field(default_factory=list)

    def open_leg(self, leg_id: str, on_inactive: Callable[[str], None]) -> FakeLeg:
        leg = FakeLeg(31000 + 2 * len(self.legs))
        self.legs.append(leg)
        return leg

    def bridge(self, a: Any, b: Any) -> None: ...

    def unbridge(self, a: Any) -> None: ...


class FakeHub:
    """RecordingControl that records nothing (consent tests need one present)."""

    def __getattr__(self, name: str) -> Callable[..., None]:
        return lambda *args, **kwargs: None


@dataclass
class FakeServices:
    local: tuple[str, int] = ("127.0.0.1", 5060)
    media: FakeMedia = field(default_factory=FakeMedia)
    recording: Any = None
    requests: list[tuple[Side, Request, str]] = field(default_factory=list)
    responses: list[tuple[str, Response]] = field(default_factory=list)
    acks: list[Request] = field(default_factory=list)
    transfer_to: Target | None = None

    def send_request(
        self, call: Any, side: Side, request: Request, dest: Any, transport: str, now: float
    ) -> str:
        key = f"k{len(self.requests)}"
        self.requests.append((side, request, key))
        return key

    def send_response(self, key: str, response: Response, now: float) -> None:
        self.responses.append((key, response))

    def send_ack(self, request: Request, dest: Any, transport: str) -> None:
        self.acks.append(request)

    def call_ended(self, call: Any, now: float) -> None: ...

    def media_inactive(self, leg_id: str) -> None: ...

    def transfer_target(self, user: str, now: float) -> Target | None:
        return self.transfer_to

    def bind_call_id(self, call: Any, call_id: str, side: Side) -> None: ...


def a_invite(body: bytes) -> Request:
    uri = URI("sip", "1000", host="127.0.0.1", port=5060)
    headers = Headers.of(
        ("Via", "SIP/2.0/UDP 127.0.0.2:5080;branch=z9hG4bKa1"),
        ("Max-Forwards", "70"),
        ("From", "<sip:+4930123@127.0.0.2>;tag=trunk1"),
        ("To", "<sip:1000@127.0.0.1>"),
        ("Call-ID", "a-call@trunk"),
        ("CSeq", "1 INVITE"),
        ("Contact", "<sip:trunk@127.0.0.2:5080>"),
        ("Content-Type", "application/sdp"),
    )
    return Request("INVITE", uri, headers, body)


def target(srtp: str = "off", user: str = "1000") -> Target:
    uri = URI("sip", user, host="127.0.0.3", port=5070)
    return Target(uri, ("127.0.0.3", 5070), "UDP", user, srtp=srtp)


def start(
    body: bytes,
    a_srtp: str,
    b_srtp: str,
    *,
    direction: str = "inbound",
    consent: ConsentMachine | None = None,
) -> tuple[Call, FakeServices]:
    services = FakeServices(recording=FakeHub() if consent is not None else None)
    call = Call.start(
        services,
        a_invite(body),
        "a-key",
        ("127.0.0.2", 5080),
        "UDP",
        target(b_srtp),
        direction,
        0.0,
        consent=consent,
        a_srtp=a_srtp,
    )
    return call, services


def b_answer(call: Call, services: FakeServices, body: bytes, status: int = 200) -> Response:
    assert call.b_invite is not None
    response = make_response(
        call.b_invite,
        status,
        to_tag="phone1",
        headers=[("Contact", "<sip:phone@127.0.0.3:5070>"), ("Content-Type", "application/sdp")],
        body=body,
    )
    call.on_b_response(response, call.b_invite_key, 1.0)
    return response


def final_to_a(services: FakeServices) -> Response:
    return [r for k, r in services.responses if k == "a-key" and r.status >= 200][-1]


def b_offer(call: Call) -> SessionDescription:
    assert call.b_invite is not None
    return parse_sdp(call.b_invite.body)


def phone_answer(to: SessionDescription, port: int = 42000) -> SessionDescription:
    """A plain phone's answer, or an SRTP one when `to` carries crypto."""
    plain = offer("127.0.0.3", port, codecs=("PCMU",), session_id=3)
    if crypto_attributes(audio(to)):
        return secure_answer(plain, to)[0]
    return plain


# ------------------------------------------------------------------ calls


def test_inbound_srtp_trunk_plain_phone_keys_stay_on_their_leg() -> None:
    theirs, trunk_keys = savp_offer()
    call, services = start(theirs.to_bytes(), "optional", "off")
    to_b = b_offer(call)
    assert audio(to_b).proto == "RTP/AVP"
    assert b"crypto" not in call.b_invite.body  # type: ignore[union-attr]
    b_answer(call, services, phone_answer(to_b).to_bytes())
    answer = final_to_a(services)
    assert answer.status == 200
    m = audio(parse_sdp(answer.body))
    assert m.proto == "RTP/SAVP"
    (line,) = crypto_attributes(m)
    a_leg, b_leg = services.media.legs
    assert isinstance(a_leg.srtp, SrtpLeg) and b_leg.srtp is None
    assert a_leg.srtp.inbound_key == trunk_keys[1]
    assert a_leg.srtp.outbound_key == line.key != trunk_keys[1]
    assert call.a.srtp is not None and call.b.srtp is None


def test_policy_refusals_are_488_at_start() -> None:
    with pytest.raises(SipError) as info:
        start(savp_offer()[0].to_bytes(), "off", "off")
    assert info.value.status == 488
    with pytest.raises(SipError) as info:
        start(plain_offer().to_bytes(), "required", "off")
    assert info.value.status == 488


def test_best_effort_crypto_on_a_plain_leg_is_answered_plain() -> None:
    call, services = start(savp_offer(best_effort=True)[0].to_bytes(), "off", "off")
    b_answer(call, services, phone_answer(b_offer(call)).to_bytes())
    m = audio(parse_sdp(final_to_a(services).body))
    assert m.proto == "RTP/AVP" and not crypto_attributes(m)
    assert all(leg.srtp is None for leg in services.media.legs)


def test_required_b_leg_gets_savp_and_its_own_keys() -> None:
    call, services = start(plain_offer().to_bytes(), "off", "required", direction="outbound")
    to_b = b_offer(call)
    assert audio(to_b).proto == "RTP/SAVP" and len(crypto_attributes(audio(to_b))) == 2
    answered, keys = secure_answer(plain_offer(42000), to_b)
    b_answer(call, services, answered.to_bytes())
    m = audio(parse_sdp(final_to_a(services).body))
    assert m.proto == "RTP/AVP" and not crypto_attributes(m)
    a_leg, b_leg = services.media.legs
    assert a_leg.srtp is None and isinstance(b_leg.srtp, SrtpLeg)
    assert b_leg.srtp.inbound_key == keys.ours  # what B protects with
    assert b_leg.srtp.outbound_key == keys.peer  # our key in the offer, tag 1


def test_required_b_leg_with_plain_answer_fails_the_call_with_488_and_bye() -> None:
    call, services = start(plain_offer().to_bytes(), "off", "required", direction="outbound")
    b_answer(call, services, offer("127.0.0.3", 42000, session_id=3).to_bytes())
    assert final_to_a(services).status == 488
    assert services.acks and services.acks[-1].method == "ACK"
    assert services.requests[-1][0] is Side.B and services.requests[-1][1].method == "BYE"
    assert call.state is CallState.ENDING
    assert "refused" in call.end_reason


def test_optional_b_leg_accepts_a_plain_answer() -> None:
    call, services = start(plain_offer().to_bytes(), "off", "optional", direction="outbound")
    to_b = b_offer(call)
    assert audio(to_b).proto == "RTP/AVP" and crypto_attributes(audio(to_b))
    b_answer(call, services, offer("127.0.0.3", 42000, session_id=3).to_bytes())
    assert final_to_a(services).status == 200
    assert all(leg.srtp is None for leg in services.media.legs)


def test_early_media_and_final_answer_keep_one_key_toward_a() -> None:
    theirs, _ = savp_offer()
    call, services = start(theirs.to_bytes(), "required", "off")
    body = phone_answer(b_offer(call)).to_bytes()
    b_answer(call, services, body, status=183)
    b_answer(call, services, body)
    early, final = (r for k, r in services.responses if k == "a-key" and r.status > 100)
    key_early = crypto_attributes(audio(parse_sdp(early.body)))[0].key
    key_final = crypto_attributes(audio(parse_sdp(final.body)))[0].key
    assert key_early == key_final
    assert services.media.legs[0].srtp_sets == 1  # libsrtp state not restarted


def consent_machine() -> ConsentMachine:
    return ConsentMachine("keypress", "1", "2", 5.0, "connect", "en", employee_consent=True)


def test_consent_inbound_answers_a_with_srtp_and_offers_b_by_its_policy() -> None:
    theirs, trunk_keys = savp_offer()
    call, services = start(theirs.to_bytes(), "required", "optional", consent=consent_machine())
    assert call.state is CallState.ANNOUNCING
    answer = final_to_a(services)
    m = audio(parse_sdp(answer.body))
    assert m.proto == "RTP/SAVP"
    a_leg = services.media.legs[0]
    assert a_leg.srtp is not None and a_leg.srtp.inbound_key == trunk_keys[1]
    # Prompts are injected into leg A: encrypted from the first packet.
    call.on_a_ack(0.1)
    call.on_digit("1", "rfc4733", "external", 0.5)
    for t in (1.0, 2.0, 3.0):
        call.on_prompt_finished(t)
        if call.b_invite is not None:
            break
    assert call.b_invite is not None, "consent given: the office leg is called"
    to_b = b_offer(call)
    assert audio(to_b).proto == "RTP/AVP" and crypto_attributes(audio(to_b))
    answered, keys = secure_answer(plain_offer(42000), to_b)
    b_answer(call, services, answered.to_bytes())
    b_leg = services.media.legs[1]
    assert call.state is CallState.CONFIRMED
    assert b_leg.srtp is not None and b_leg.srtp.inbound_key == keys.ours
    assert b_leg.srtp.inbound_key != trunk_keys[1]


def reinvite(call: Call, side: Side, body: bytes, services: FakeServices) -> str:
    """A re-INVITE from `side` in its dialog; returns the key of the one relayed on."""
    leg = call.leg(side)
    assert leg.dialog is not None
    from b2bua.headers import Via

    ours = leg.dialog.create_request(
        "INVITE",
        via=Via("UDP", "127.0.0.2", 5080, (("branch", "z9hG4bKre1"),)),
        body=body,
        content_type="application/sdp",
    )
    # Turn our UAC request into the peer's: swap From and To so the dialog accepts it.
    headers = ours.headers.set("From", str(ours.to_addr)).set("To", str(ours.from_addr))
    request = Request("INVITE", ours.uri, headers, body)
    before = len(services.requests)
    call.on_request(side, request, "re-key", 2.0)
    assert len(services.requests) == before + 1
    return services.requests[-1][2]


def test_reinvite_keeps_each_legs_keys() -> None:
    theirs, trunk_keys = savp_offer()
    call, services = start(theirs.to_bytes(), "required", "required")
    b_first, b_keys = secure_answer(plain_offer(42000), b_offer(call))
    b_answer(call, services, b_first.to_bytes())
    call.on_a_ack(1.5)
    assert call.state is CallState.CONFIRMED
    a_ours = crypto_attributes(audio(parse_sdp(final_to_a(services).body)))[0].key
    a_leg, b_leg = services.media.legs
    a_srtp, b_srtp = a_leg.srtp, b_leg.srtp
    # The trunk re-INVITEs (hold) with the same key: B is re-offered our same key.
    key = reinvite(call, Side.A, theirs.to_bytes(), services)
    relayed = parse_sdp(services.requests[-1][1].body)
    (line,) = crypto_attributes(audio(relayed))
    assert line.key == b_keys.peer and audio(relayed).proto == "RTP/SAVP"
    response = make_response(
        services.requests[-1][1],
        200,
        headers=[("Contact", "<sip:phone@127.0.0.3:5070>")],
        body=secure_answer(plain_offer(42000), relayed, ours=b_keys.ours)[0].to_bytes(),
    )
    call.on_b_response(response, key, 3.0)
    to_a = [r for k, r in services.responses if k == "re-key"][-1]
    assert to_a.status == 200
    (back,) = crypto_attributes(audio(parse_sdp(to_a.body)))
    assert back.key == a_ours  # our key toward the trunk did not change
    assert a_leg.srtp is a_srtp and b_leg.srtp is b_srtp  # libsrtp state kept
    assert a_leg.srtp is not None and a_leg.srtp.inbound_key == trunk_keys[1]


def test_reinvite_plain_offer_on_required_leg_is_488_and_not_relayed() -> None:
    theirs, _ = savp_offer()
    call, services = start(theirs.to_bytes(), "required", "off")
    b_answer(call, services, phone_answer(b_offer(call)).to_bytes())
    call.on_a_ack(1.5)
    leg = call.leg(Side.A)
    assert leg.dialog is not None
    before = len(services.requests)
    with pytest.raises(AssertionError):
        reinvite(call, Side.A, plain_offer().to_bytes(), services)
    assert len(services.requests) == before
    assert [r for k, r in services.responses if k == "re-key"][-1].status == 488


def refer_from_b(call: Call, services: FakeServices) -> Request:
    """The office phone (B) transfers the caller to 1001; returns the target's INVITE."""
    leg = call.leg(Side.B)
    assert leg.dialog is not None
    from b2bua.headers import Via

    ours = leg.dialog.create_request(
        "REFER",
        via=Via("UDP", "127.0.0.3", 5070, (("branch", "z9hG4bKref1"),)),
        headers=[("Refer-To", "<sip:1001@127.0.0.1>")],
    )
    headers = ours.headers.set("From", str(ours.to_addr)).set("To", str(ours.from_addr))
    call.on_request(Side.B, Request("REFER", ours.uri, headers, b""), "refer-key", 5.0)
    invites = [r for side, r, _ in services.requests if side is Side.C and r.method == "INVITE"]
    assert invites, services.responses
    return invites[-1]


def confirmed_call(target_srtp: str) -> tuple[Call, FakeServices]:
    call, services = start(plain_offer().to_bytes(), "off", "off")
    b_answer(call, services, phone_answer(b_offer(call)).to_bytes())
    call.on_a_ack(1.5)
    services.transfer_to = target(target_srtp, "1001")
    return call, services


def c_answer(call: Call, services: FakeServices, invite: Request, body: bytes) -> None:
    key = next(k for side, r, k in services.requests if r is invite)
    response = make_response(
        invite,
        200,
        to_tag="c1",
        headers=[("Contact", "<sip:1001@127.0.0.4:5070>"), ("Content-Type", "application/sdp")],
        body=body,
    )
    call.on_c_response(response, key, 6.0)


def test_transfer_target_gets_its_own_srtp_offer_and_keys() -> None:
    call, services = confirmed_call("required")
    invite = refer_from_b(call, services)
    to_c = parse_sdp(invite.body)
    assert audio(to_c).proto == "RTP/SAVP" and crypto_attributes(audio(to_c))
    answered, keys = secure_answer(plain_offer(42000), to_c)
    c_answer(call, services, invite, answered.to_bytes())
    c_leg = services.media.legs[-1]
    assert call.transfer is None and call.b.media is c_leg
    assert c_leg.srtp is not None and c_leg.srtp.inbound_key == keys.ours
    assert call.b.srtp is not None and call.b.srtp_policy == "required"


def test_transfer_target_answering_plain_when_required_fails_the_transfer_only() -> None:
    call, services = confirmed_call("required")
    invite = refer_from_b(call, services)
    c_answer(call, services, invite, phone_answer(plain_offer()).to_bytes())
    sent = [(side, r) for side, r, _ in services.requests]
    assert any(side is Side.C and r.method == "BYE" for side, r in sent)
    notify = [r for side, r in sent if r.method == "NOTIFY"][-1]
    assert b"488" in notify.body
    assert call.transfer is None and call.state is CallState.CONFIRMED
    assert services.media.legs[-1].closed
