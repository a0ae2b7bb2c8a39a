"""Tests for b2bua.registrar: REGISTER (RFC 3261 10.3), bindings, expiry, digest gate.

Pure and in simulated time: requests are parsed from bytes, answered by the Registrar,
and the client side of digest is b2bua.auth.answer_challenge or pyVoIP 1.6.8's own
SIPClient (its REGISTER and RFC 2069 style Authorization, byte for byte).
"""

from __future__ import annotations

import itertools

import pytest

# pyVoIP.SIP imported first hits a circular import inside pyVoIP; its package first works.
import pyVoIP.VoIP  # noqa: F401
from pyVoIP.SIP import SIPClient, SIPMessage

from b2bua.auth import NonceFactory, answer_challenge, parse_auth_params
from b2bua.config import ExtensionConfig
from b2bua.headers import Headers
from b2bua.message import Request, Response, parse_message
from b2bua.registrar import AuthOutcome, Binding, Registrar
from b2bua.uri import parse_uri

REALM = "office.example"
SECRET = b"registrar-test-secret-0123456789"
PHONE = ("127.0.0.3", 5070)
OTHER = ("127.0.0.4", 5070)
T0 = 1000.0
EXTENSIONS = (
    ExtensionConfig("1000", "secret"),
    ExtensionConfig("1001", "hunter2", contact="sip:1001@127.0.0.9:5072"),
    ExtensionConfig("1002", "s3cret", contact="sips:1002@[::1];transport=tls"),
)
_counter = itertools.count(1)


class Office:
    """A registrar with its failure hook recorded."""

    def __init__(self, nonce_lifetime: float = 30.0) -> None:
        self.failures: list[tuple[str, str | None]] = []
        self.nonces = NonceFactory(SECRET, nonce_lifetime)
        self.registrar = Registrar(
            EXTENSIONS,
            realm=REALM,
            nonces=self.nonces,
            on_auth_failure=lambda ip, user: self.failures.append((ip, user)),
        )


def register(
    user: str = "1000",
    contacts: tuple[str, ...] = ("<sip:1000@192.168.1.10:5060>",),
    *,
    to_user: str | None = None,
    expires: int | None = None,
    call_id: str = "reg-1@phone",
    cseq: int = 1,
    authorization: tuple[str, ...] = (),
    method: str = "REGISTER",
    uri: str = "sip:office.example",
) -> Request:
    """A REGISTER (or another request) as a phone sends it, parsed from its bytes."""
    to = to_user if to_user is not None else user
    lines = [
        f"{method} {uri} SIP/2.0",
        f"Via: SIP/2.0/UDP 192.168.1.10:5060;branch=z9hG4bK{next(_counter)};rport",
        f"From: <sip:{user}@office.example>;tag=ft{user}",
        f"To: <sip:{to}@office.example>",
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} {method}",
        "Max-Forwards: 70",
    ]
    lines += [f"Contact: {c}" for c in contacts]
    if expires is not None:
        lines.append(f"Expires: {expires}")
    lines += [f"Authorization: {a}" for a in authorization]
    lines += ["Content-Length: 0", "", ""]
    message = parse_message("\r\n".join(lines).encode())
    assert isinstance(message, Request)
    return message


def challenges(response: Response) -> list[str]:
    return list(response.headers.raw("WWW-Authenticate"))


def pick(response: Response, algorithm: str) -> str:
    for value in challenges(response):
        if parse_auth_params(value)[1]["algorithm"] == algorithm:
            return value
    raise AssertionError(f"no {algorithm} challenge in {response}")


def authorized_register(
    office: Office,
    password: str,
    *,
    user: str = "1000",
    algorithm: str = "SHA-256",
    source: tuple[str, int] = PHONE,
    now: float = T0,
    cseq: int = 1,
    **kwargs: object,
) -> Response:
    """Challenge then answer, as a phone does; returns the final response."""
    first = register(user, cseq=cseq, **kwargs)  # type: ignore[arg-type]
    challenge = office.registrar.handle_register(first, source, "UDP", now)
    assert challenge.status == 401
    value = answer_challenge(
        pick(challenge, algorithm),
        method="REGISTER",
        uri=str(first.uri),
        username=user,
        password=password,
        cnonce=f"cn{next(_counter)}",
    )
    second = register(user, cseq=cseq + 1, authorization=(value,), **kwargs)  # type: ignore[arg-type]
    return office.registrar.handle_register(second, source, "UDP", now)


def contact_expires(response: Response) -> dict[str, int]:
    out: dict[str, int] = {}
    for contact in response.contacts:
        expires = contact.param("expires")
        assert expires is not None
        out[str(contact.uri)] = int(expires)
    return out


# --- challenge ------------------------------------------------------------------------


def test_challenge_offers_sha256_then_md5_with_qop_and_one_nonce() -> None:
    office = Office()
    response = office.registrar.handle_register(register(), PHONE, "UDP", T0)
    assert response.status == 401
    params = [parse_auth_params(v) for v in challenges(response)]
    assert [p["algorithm"] for _, p in params] == ["SHA-256", "MD5"]
    assert {p["realm"] for _, p in params} == {REALM}
    assert all(p["qop"] == "auth" for _, p in params)
    assert len({p["nonce"] for _, p in params}) == 1
    assert all("stale" not in p for _, p in params)
    names = {name for name, _ in response.headers}
    assert "Server" not in names and "User-Agent" not in names
    assert office.registrar.binding_count() == 0
    assert office.failures == []


@pytest.mark.parametrize("algorithm", ["SHA-256", "MD5"])
def test_register_with_digest_binds_the_contact(algorithm: str) -> None:
    office = Office()
    response = authorized_register(office, "secret", algorithm=algorithm, expires=600)
    assert response.status == 200
    assert contact_expires(response) == {"sip:1000@192.168.1.10:5060": 600}
    (binding,) = office.registrar.lookup("1000", T0 + 1)
    assert binding.extension == "1000"
    assert binding.source == PHONE  # the socket source, not the private Contact address
    assert binding.transport == "UDP"
    assert binding.expires_at == T0 + 600
    assert str(binding.contact.uri) == "sip:1000@192.168.1.10:5060"
    assert binding.contact.param("expires") is None
    assert (binding.call_id, binding.cseq, binding.q) == ("reg-1@phone", 2, 1.0)
    assert office.registrar.get_timer() == T0 + 600
    assert office.failures == []


def test_pyvoip_register_and_deregister_exactly_as_it_sends_them() -> None:
    office = Office()
    client = SIPClient("127.0.0.1", 5060, "1000", "secret", None, myIP="127.0.0.3", myPort=5070)  # type: ignore[arg-type]

    def exchange(deregister: bool) -> Response:
        first = parse_message(client.gen_first_response(deregister=deregister).encode())
        assert isinstance(first, Request)
        challenge = office.registrar.handle_register(first, PHONE, "UDP", T0)
        assert challenge.status == 401
        again = client.gen_register(SIPMessage(challenge.to_bytes()), deregister=deregister)
        second = parse_message(again.encode())
        assert isinstance(second, Request)
        (authorization,) = second.headers.raw("Authorization")
        params = parse_auth_params(authorization)[1]
        # pyVoIP answers the last (MD5) challenge without qop, for another uri.
        assert "qop" not in params and params["algorithm"] == "MD5"
        assert params["uri"] != str(second.uri)
        return office.registrar.handle_register(second, PHONE, "UDP", T0 + 1)

    response = exchange(deregister=False)
    assert response.status == 200
    assert contact_expires(response) == {"sip:1000@127.0.0.3:5070;transport=UDP": 120}
    (binding,) = office.registrar.lookup("1000", T0 + 2)
    assert binding.contact.param("+sip.instance") is not None
    # pyVoIP deregisters with a new Call-ID and Expires: 0.
    response = exchange(deregister=True)
    assert response.status == 200
    assert response.contacts == ()
    assert office.registrar.lookup("1000", T0 + 2) == []
    assert office.failures == []


# --- bindings ---------------------------------------------------------------------------


def test_several_contacts_refresh_and_q_order() -> None:
    office = Office()
    contacts = ("<sip:1000@10.0.0.1>;q=0.5", "<sip:1000@10.0.0.2>;expires=120;q=0.9")
    response = authorized_register(office, "secret", contacts=contacts, expires=300)
    assert response.status == 200
    assert contact_expires(response) == {"sip:1000@10.0.0.1": 300, "sip:1000@10.0.0.2": 120}
    # A second phone of the same extension, another Call-ID, from another address.
    response = authorized_register(
        office,
        "secret",
        contacts=("<sip:1000@10.0.0.3;transport=tcp>",),
        call_id="desk-2",
        source=OTHER,
        now=T0 + 10,
    )
    assert response.status == 200
    assert contact_expires(response) == {
        "sip:1000@10.0.0.1": 290,
        "sip:1000@10.0.0.2": 110,
        "sip:1000@10.0.0.3;transport=tcp": 3600,
    }
    bindings = office.registrar.lookup("1000", T0 + 10)
    assert [str(b.contact.uri.host) for b in bindings] == ["10.0.0.3", "10.0.0.2", "10.0.0.1"]
    assert [b.q for b in bindings] == [1.0, 0.9, 0.5]
    assert bindings[0].source == OTHER
    # Refresh the first phone's contact (same Call-ID, higher CSeq): updated in place.
    response = authorized_register(
        office, "secret", contacts=("<sip:1000@10.0.0.1>;q=0.5",), cseq=5, now=T0 + 100
    )
    assert response.status == 200
    assert contact_expires(response)["sip:1000@10.0.0.1"] == 3600
    assert office.registrar.binding_count() == 3
    assert office.registrar.get_timer() == T0 + 120


def test_query_without_contact_lists_bindings_and_changes_nothing() -> None:
    office = Office()
    authorized_register(office, "secret", expires=600)
    response = authorized_register(office, "secret", contacts=(), cseq=10, now=T0 + 100)
    assert response.status == 200
    assert contact_expires(response) == {"sip:1000@192.168.1.10:5060": 500}
    assert office.registrar.binding_count() == 1


def test_expiry_is_a_deadline_swept_by_handle_timer() -> None:
    office = Office()
    authorized_register(office, "secret", expires=60)
    authorized_register(
        office, "secret", contacts=("<sip:1000@10.9.9.9>",), call_id="b", expires=90
    )
    registrar = office.registrar
    assert registrar.get_timer() == T0 + 60
    registrar.handle_timer(T0 + 59.9)
    assert registrar.binding_count() == 2
    registrar.handle_timer(T0 + 60)
    assert registrar.binding_count() == 1
    assert registrar.get_timer() == T0 + 90
    # lookup never returns what has expired, even before the sweep.
    assert registrar.lookup("1000", T0 + 90) == []
    assert registrar.binding_count() == 0
    assert registrar.get_timer() is None


def test_unregister_one_contact_then_all_with_star() -> None:
    office = Office()
    contacts = ("<sip:1000@10.0.0.1>", "<sip:1000@10.0.0.2>", "<sip:1000@10.0.0.3>")
    authorized_register(office, "secret", contacts=contacts)
    response = authorized_register(
        office, "secret", contacts=("<sip:1000@10.0.0.2>;expires=0",), cseq=3
    )
    assert response.status == 200
    assert set(contact_expires(response)) == {"sip:1000@10.0.0.1", "sip:1000@10.0.0.3"}
    # "*" needs Expires: 0.
    response = authorized_register(office, "secret", contacts=("*",), expires=60, cseq=5)
    assert response.status == 400
    assert office.registrar.binding_count() == 2
    response = authorized_register(office, "secret", contacts=("*",), expires=0, cseq=7)
    assert response.status == 200
    assert response.contacts == ()
    assert office.registrar.binding_count() == 0
    assert office.registrar.lookup("1000", T0) == []


def test_too_brief_is_423_with_min_expires_and_too_long_is_shortened() -> None:
    office = Office()
    response = authorized_register(office, "secret", expires=30)
    assert response.status == 423
    assert response.headers.get("Min-Expires") == "60"
    assert office.registrar.binding_count() == 0
    response = authorized_register(
        office, "secret", contacts=("<sip:1000@10.0.0.1>;expires=86400",), cseq=3
    )
    assert response.status == 200
    assert contact_expires(response) == {"sip:1000@10.0.0.1": 3600}


def test_same_call_id_with_lower_cseq_is_refused_and_changes_nothing() -> None:
    office = Office()
    assert authorized_register(office, "secret", cseq=10, expires=600).status == 200
    response = authorized_register(office, "secret", cseq=4, expires=0, now=T0 + 5)
    assert response.status == 500
    (binding,) = office.registrar.lookup("1000", T0 + 5)
    assert binding.cseq == 11 and binding.expires_at == T0 + 600
    response = authorized_register(office, "secret", contacts=("*",), expires=0, cseq=2)
    assert response.status == 500
    assert office.registrar.binding_count() == 1
    # Another Call-ID (the phone rebooted) may replace it whatever its CSeq.
    response = authorized_register(office, "secret", call_id="reboot", cseq=1, expires=900)
    assert response.status == 200
    (binding,) = office.registrar.lookup("1000", T0 + 5)
    assert (binding.call_id, binding.expires_at) == ("reboot", T0 + 900)


def test_too_many_contacts_is_refused() -> None:
    office = Office()
    contacts = tuple(f"<sip:1000@10.0.0.{i}>" for i in range(11))
    response = authorized_register(office, "secret", contacts=contacts)
    assert response.status == 403
    assert office.registrar.binding_count() == 0


def bare_register(contact: str, authorization: str) -> Request:
    """A REGISTER built without the parser's checks (as a buggy core could hand over)."""
    return Request(
        "REGISTER",
        parse_uri("sip:office.example"),
        Headers.of(
            ("Via", "SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKbare"),
            ("From", "<sip:1000@office.example>;tag=a"),
            ("To", "<sip:1000@office.example>"),
            ("Call-ID", "bare"),
            ("CSeq", "2 REGISTER"),
            ("Contact", contact),
            ("Authorization", authorization),
        ),
    )


@pytest.mark.parametrize(
    "contact",
    ["<sip:1000@10.0.0.1>;expires=soon", "<sip:1000@10.0.0.1>;q=2", "<tel:+4930123>", "<sip:"],
)
def test_bad_contact_is_400(contact: str) -> None:
    office = Office()
    challenge = office.registrar.handle_register(register(), PHONE, "UDP", T0)
    value = answer_challenge(
        pick(challenge, "SHA-256"),
        method="REGISTER",
        uri="sip:office.example",
        username="1000",
        password="secret",
        cnonce="c",
    )
    response = office.registrar.handle_register(bare_register(contact, value), PHONE, "UDP", T0)
    assert response.status == 400
    assert office.registrar.binding_count() == 0


# --- static contacts ------------------------------------------------------------------


def test_static_contact_from_config_comes_after_registrations() -> None:
    office = Office()
    (static,) = office.registrar.lookup("1001", T0)
    assert static.is_static and static.expires_at is None
    assert static.source == ("127.0.0.9", 5072)
    assert static.transport == "UDP"
    assert str(static.contact.uri) == "sip:1001@127.0.0.9:5072"
    (tls,) = office.registrar.lookup("1002", T0)
    assert (tls.source, tls.transport) == (("::1", 5061), "TLS")
    response = authorized_register(
        office, "hunter2", user="1001", contacts=("<sip:1001@10.1.1.1>;q=0.1",)
    )
    assert response.status == 200
    assert [b.is_static for b in office.registrar.lookup("1001", T0)] == [False, True]
    assert office.registrar.binding_count() == 1  # static contacts are not registrations
    assert office.registrar.lookup("4711", T0) == []


def test_bad_static_contact_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="1003"):
        Registrar(
            [ExtensionConfig("1003", "x", contact="sip:1003@bad host")],
            realm=REALM,
            nonces=NonceFactory(SECRET, 30),
        )


# --- failures ---------------------------------------------------------------------------


def test_wrong_password_is_403_and_counted_per_socket_source() -> None:
    office = Office()
    response = authorized_register(office, "wrong")
    assert (response.status, response.reason) == (403, "Forbidden")
    assert challenges(response) == []
    assert office.failures == [(PHONE[0], "1000")]
    assert office.registrar.binding_count() == 0


def shape(response: Response) -> tuple[int, str, list[str], list[tuple[str, str]]]:
    """What an observer can compare between two answers (nonces and tags differ)."""
    names = [name for name, _ in response.headers if name not in ("Via", "From", "To")]
    params = [
        (p["realm"], p["algorithm"])
        for p in (parse_auth_params(v)[1] for v in challenges(response))
    ]
    return response.status, response.reason, names, params


def test_unknown_extension_gets_the_same_answers_as_a_known_one() -> None:
    office = Office()
    known = office.registrar.handle_register(register("1000", call_id="x"), PHONE, "UDP", T0)
    unknown = office.registrar.handle_register(register("4711", call_id="x"), PHONE, "UDP", T0)
    assert known.status == 401
    assert shape(known) == shape(unknown)
    wrong = authorized_register(office, "guess", user="1000", call_id="x")
    missing = authorized_register(office, "guess", user="4711", call_id="x")
    assert wrong.status == 403
    assert shape(wrong) == shape(missing)
    assert office.failures == [(PHONE[0], "1000"), (PHONE[0], "4711")]
    # The same for a request other than REGISTER.
    options = [
        office.registrar.authenticate(register(u, method="OPTIONS", contacts=()), PHONE, T0)
        for u in ("1000", "4711")
    ]
    assert [o.status for o in options] == [401, 401]
    assert shape(options[0].response_for(register())) == shape(options[1].response_for(register()))


def test_stale_nonce_gets_401_stale_only_with_the_right_password() -> None:
    office = Office(nonce_lifetime=30)
    challenge = office.registrar.handle_register(register(), PHONE, "UDP", T0)
    later = T0 + 31

    def answer(password: str) -> Response:
        value = answer_challenge(
            pick(challenge, "MD5"),
            method="REGISTER",
            uri="sip:office.example",
            username="1000",
            password=password,
            cnonce=f"c{next(_counter)}",
        )
        request = register(cseq=2, authorization=(value,))
        return office.registrar.handle_register(request, PHONE, "UDP", later)

    response = answer("secret")
    assert response.status == 401
    assert all(parse_auth_params(v)[1].get("stale") == "true" for v in challenges(response))
    assert office.failures == []
    assert answer("wrong").status == 403
    assert office.failures == [(PHONE[0], "1000")]
    assert office.registrar.binding_count() == 0


def test_nonce_issued_to_another_address_gets_a_fresh_challenge() -> None:
    office = Office()
    challenge = office.registrar.handle_register(register(), PHONE, "UDP", T0)
    value = answer_challenge(
        pick(challenge, "SHA-256"),
        method="REGISTER",
        uri="sip:office.example",
        username="1000",
        password="secret",
        cnonce="c1",
    )
    response = office.registrar.handle_register(
        register(cseq=2, authorization=(value,)), OTHER, "UDP", T0
    )
    assert response.status == 401
    old_nonce = parse_auth_params(challenges(challenge)[0])[1]["nonce"]
    fresh = [parse_auth_params(v)[1] for v in challenges(response)]
    assert all(p["nonce"] != old_nonce and "stale" not in p for p in fresh)
    assert office.registrar.binding_count() == 0
    assert office.failures == []  # nothing was checked, so nothing is counted


def test_aor_hijack_is_refused() -> None:
    office = Office()
    authorized_register(office, "hunter2", user="1001", contacts=("<sip:1001@10.1.1.1>",))
    first = register("1000", to_user="1001", contacts=("<sip:evil@10.6.6.6>",))
    challenge = office.registrar.handle_register(first, OTHER, "UDP", T0)
    value = answer_challenge(
        pick(challenge, "SHA-256"),
        method="REGISTER",
        uri=str(first.uri),
        username="1000",
        password="secret",
        cnonce="c",
    )
    request = register(
        "1000", to_user="1001", contacts=("<sip:evil@10.6.6.6>",), cseq=2, authorization=(value,)
    )
    response = office.registrar.handle_register(request, OTHER, "UDP", T0)
    assert (response.status, response.reason) == (403, "Forbidden")
    assert [b.contact.uri.host for b in office.registrar.lookup("1001", T0)] == [
        "10.1.1.1",
        "127.0.0.9",
    ]
    assert office.failures == [(OTHER[0], "1000")]


def test_unparseable_authorization_is_400_and_other_realms_are_ignored() -> None:
    office = Office()
    garbage = register(authorization=('Digest realm="open',))
    assert office.registrar.handle_register(garbage, PHONE, "UDP", T0).status == 400
    foreign = register(
        authorization=(
            'Digest username="1000", realm="elsewhere", nonce="n", uri="x", response="r"',
        )
    )
    response = office.registrar.handle_register(foreign, PHONE, "UDP", T0)
    assert response.status == 401
    assert office.failures == []


# --- authenticate (INVITE and friends) ------------------------------------------------


def invite(authorization: tuple[str, ...] = (), cseq: int = 1) -> Request:
    return register(
        "1000",
        contacts=("<sip:1000@192.168.1.10:5060>",),
        to_user="1001",
        method="INVITE",
        uri="sip:1001@office.example",
        cseq=cseq,
        call_id="call-1",
        authorization=authorization,
    )


def test_authenticate_invite_challenge_accept_reject_and_replay() -> None:
    office = Office()
    registrar = office.registrar
    outcome = registrar.authenticate(invite(), PHONE, T0)
    assert (outcome.ok, outcome.status, outcome.extension) == (False, 401, None)
    response = outcome.response_for(invite())
    assert response.status == 401 and len(challenges(response)) == 2
    value = answer_challenge(
        pick(response, "SHA-256"),
        method="INVITE",
        uri="sip:1001@office.example",
        username="1000",
        password="secret",
        cnonce="c9",
    )
    accepted = registrar.authenticate(invite((value,), cseq=2), PHONE, T0 + 1)
    assert accepted == AuthOutcome(True, "1000", None, (), "ok")
    with pytest.raises(ValueError):
        accepted.response_for(invite())
    # The same nonce count again is a replay.
    replay = registrar.authenticate(invite((value,), cseq=3), PHONE, T0 + 2)
    assert (replay.ok, replay.status) == (False, 403)
    wrong = answer_challenge(
        pick(response, "MD5"),
        method="INVITE",
        uri="sip:1001@office.example",
        username="1000",
        password="nope",
        cnonce="c10",
    )
    rejected = registrar.authenticate(invite((wrong,), cseq=4), PHONE, T0 + 2)
    assert (rejected.ok, rejected.status) == (False, 403)
    assert rejected.response_for(invite()).status == 403
    assert office.failures == [(PHONE[0], "1000"), (PHONE[0], "1000")]


def test_ipv4_mapped_source_is_the_same_client() -> None:
    office = Office()
    first = office.registrar.authenticate(invite(), ("::ffff:127.0.0.3", 5070), T0)
    value = answer_challenge(
        pick(first.response_for(invite()), "SHA-256"),
        method="INVITE",
        uri="sip:1001@office.example",
        username="1000",
        password="secret",
        cnonce="c",
    )
    assert office.registrar.authenticate(invite((value,), cseq=2), PHONE, T0).ok


def test_constructor_checks_expiry_bounds() -> None:
    with pytest.raises(ValueError):
        Registrar(
            EXTENSIONS,
            realm=REALM,
            nonces=NonceFactory(SECRET, 30),
            min_expires=600,
            default_expires=300,
        )
    binding = Binding("1000", register().contacts[0], PHONE, "UDP", None, "", 0, 0.0)
    with pytest.raises(ValueError):
        binding.remaining(T0)
