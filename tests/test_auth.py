"""Tests for b2bua.auth: digest parsing, nonces, server verification and client answers.

Vectors: RFC 7616 section 3.9.1 (Mufasa / "Circle of Life", realm
http-auth@example.org, method GET, uri /dir/index.html; SHA-256 and MD5 responses) and
RFC 2617 section 3.5 (Mufasa / "Circle Of Life", realm testrealm@host.com, MD5).
pyVoIP 1.6.8's own SIPClient.gen_register output is verified as well.
"""

from __future__ import annotations

import re

import pytest

# pyVoIP.SIP imported first hits a circular import inside pyVoIP; its package first works.
import pyVoIP.VoIP  # noqa: F401
from hypothesis import given, settings
from hypothesis import strategies as st
from pyVoIP.SIP import SIPClient, SIPMessage

import b2bua.auth as auth_module
from b2bua.auth import (
    AuthResult,
    NonceFactory,
    NonceStatus,
    answer_challenge,
    challenge_headers,
    digest_response,
    parse_auth_params,
    pick_challenge,
    verify,
)
from b2bua.errors import SipError

SECRET = b"0123456789abcdef0123456789abcdef"
REALM = "office.example"
PASSWORDS = {"1000": "secret", "1001": "hunter2"}
PHONE_IP = "127.0.0.3"

# RFC 7616 section 3.9.1.
RFC7616_NONCE = "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v"
RFC7616_CNONCE = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ"
RFC7616_OPAQUE = "FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"
RFC7616_SHA256 = "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"
RFC7616_MD5 = "8ca523f5e9506fed4657c9700eebdbec"
RFC7616_CHALLENGE_SHA256 = (
    'Digest realm="http-auth@example.org", qop="auth, auth-int", algorithm=SHA-256, '
    f'nonce="{RFC7616_NONCE}", opaque="{RFC7616_OPAQUE}"'
)
RFC7616_AUTHORIZATION_SHA256 = (
    'Digest username="Mufasa", realm="http-auth@example.org", uri="/dir/index.html", '
    f'algorithm=SHA-256, nonce="{RFC7616_NONCE}", nc=00000001, cnonce="{RFC7616_CNONCE}", '
    f'qop=auth, response="{RFC7616_SHA256}", opaque="{RFC7616_OPAQUE}"'
)
# RFC 2617 section 3.5.
RFC2617_RESPONSE = "6629fae49393a05397450978507c4ef1"


def password_for(username: str) -> str | None:
    return PASSWORDS.get(username)


def new_factory(lifetime: float = 60.0) -> NonceFactory:
    return NonceFactory(SECRET, lifetime)


def check(
    value: str,
    nonces: NonceFactory,
    *,
    ip: str = PHONE_IP,
    now: float = 1001.0,
    method: str = "REGISTER",
) -> AuthResult:
    return verify(
        value,
        method=method,
        realm=REALM,
        password_for=password_for,
        nonces=nonces,
        client_ip=ip,
        now=now,
    )


# --- header parameter parsing -----------------------------------------------------------


def test_parse_rfc7616_authorization() -> None:
    scheme, params = parse_auth_params(RFC7616_AUTHORIZATION_SHA256)
    assert scheme == "Digest"
    assert params["username"] == "Mufasa"
    assert params["nc"] == "00000001"
    assert params["qop"] == "auth"
    assert params["response"] == RFC7616_SHA256
    assert len(params) == 10


def test_parse_quoted_escapes_commas_case_and_empty_elements() -> None:
    scheme, params = parse_auth_params(
        'digest  Realm = "a, \\"b\\" \\\\ c" ,, NONCE=abc,qop="auth,auth-int" ,'
    )
    assert scheme == "digest"
    assert params == {"realm": 'a, "b" \\ c', "nonce": "abc", "qop": "auth,auth-int"}
    assert parse_auth_params("Digest") == ("Digest", {})


@pytest.mark.parametrize(
    "value",
    [
        "",
        "   ",
        '"Digest"',
        "Digest realm",
        "Digest realm=",
        'Digest realm="open',
        'Digest realm="a" nonce="b"',
        "Digest realm=a, realm=b",
        "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==",
        'Digest realm="a\r\nInjected: yes"',
        "Digest(x) a=b",
        "Digest " + "a=b, " * 3000,
    ],
)
def test_parse_garbage_is_400(value: str) -> None:
    with pytest.raises(SipError) as info:
        parse_auth_params(value)
    assert info.value.status == 400


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_property_parse_raises_only_sip_error(value: str) -> None:
    try:
        scheme, params = parse_auth_params(value)
    except SipError as exc:
        status: int | None = exc.status
    else:
        status = None
        assert scheme
        assert all(name == name.lower() for name in params)
    assert status in (None, 400)


# --- RFC vectors ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("algorithm", "expected"), [("SHA-256", RFC7616_SHA256), ("MD5", RFC7616_MD5)]
)
def test_rfc7616_3_9_1_vectors(algorithm: str, expected: str) -> None:
    assert (
        digest_response(
            algorithm=algorithm,
            username="Mufasa",
            realm="http-auth@example.org",
            password="Circle of Life",
            method="GET",
            uri="/dir/index.html",
            nonce=RFC7616_NONCE,
            qop="auth",
            nc="00000001",
            cnonce=RFC7616_CNONCE,
        )
        == expected
    )


@pytest.mark.parametrize(
    ("algorithm", "expected"), [("SHA-256", RFC7616_SHA256), ("MD5", RFC7616_MD5)]
)
def test_rfc7616_3_9_1_client_answer(algorithm: str, expected: str) -> None:
    challenge = RFC7616_CHALLENGE_SHA256.replace("SHA-256", algorithm)
    value = answer_challenge(
        challenge,
        method="GET",
        uri="/dir/index.html",
        username="Mufasa",
        password="Circle of Life",
        cnonce=RFC7616_CNONCE,
    )
    _, params = parse_auth_params(value)
    assert params["response"] == expected
    assert params["qop"] == "auth"  # auth preferred over auth-int
    assert params["nc"] == "00000001"
    assert params["opaque"] == RFC7616_OPAQUE  # echoed
    assert params["algorithm"] == algorithm


def test_rfc2617_3_5_vector_via_client_answer() -> None:
    challenge = (
        'Digest realm="testrealm@host.com", qop="auth,auth-int", '
        'nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc069c403ebaf9f0171e9517f40e41"'
    )
    value = answer_challenge(
        challenge,
        method="GET",
        uri="/dir/index.html",
        username="Mufasa",
        password="Circle Of Life",
        cnonce="0a4f113b",
    )
    _, params = parse_auth_params(value)
    assert params["response"] == RFC2617_RESPONSE
    assert params["algorithm"] == "MD5"  # absent in the challenge: MD5 by default


# --- nonces ---------------------------------------------------------------------------


def test_nonce_valid_stale_and_bound_to_address() -> None:
    nonces = new_factory(lifetime=30.0)
    nonce = nonces.make(PHONE_IP, 1000.0)
    assert re.fullmatch(r"[A-Za-z0-9_-]+", nonce)  # safe in quotes and for pyVoIP's regex
    assert nonces.check(nonce, PHONE_IP, 1000.0) is NonceStatus.VALID
    assert nonces.check(nonce, PHONE_IP, 1029.9) is NonceStatus.VALID
    assert nonces.check(nonce, PHONE_IP, 1030.1) is NonceStatus.STALE
    assert nonces.check(nonce, "127.0.0.4", 1000.0) is NonceStatus.INVALID
    assert nonces.check(nonce, PHONE_IP, 990.0) is NonceStatus.INVALID  # from the future
    other = NonceFactory(b"another secret of 32 bytes......", 30.0)
    assert other.check(nonce, PHONE_IP, 1000.0) is NonceStatus.INVALID


def test_nonce_ipv6_spellings_are_one_address_and_nonces_are_unique() -> None:
    nonces = new_factory()
    nonce = nonces.make("::1", 5.0)
    assert nonces.check(nonce, "0:0::1", 5.0) is NonceStatus.VALID
    assert len({nonces.make(PHONE_IP, 5.0) for _ in range(50)}) == 50


@pytest.mark.parametrize("tamper", ["", "x", "!" * 43, "A" * 43, "A" * 44])
def test_nonce_garbage_is_invalid(tamper: str) -> None:
    assert new_factory().check(tamper, PHONE_IP, 1.0) is NonceStatus.INVALID


def test_nonce_flipped_character_is_invalid() -> None:
    nonces = new_factory()
    nonce = nonces.make(PHONE_IP, 1.0)
    flipped = ("B" if nonce[0] == "A" else "A") + nonce[1:]
    assert nonces.check(flipped, PHONE_IP, 1.0) is NonceStatus.INVALID


def test_nonce_factory_argument_checks() -> None:
    with pytest.raises(ValueError, match="16 bytes"):
        NonceFactory(b"short", 30.0)
    with pytest.raises(ValueError, match="positive"):
        NonceFactory(SECRET, 0)


def test_replay_memory_is_bounded() -> None:
    nonces = NonceFactory(SECRET, 30.0, replay_memory=2)
    assert nonces.first_use("n", "00000001")
    assert not nonces.first_use("n", "00000001")
    assert nonces.first_use("n", "00000002")
    assert nonces.first_use("n", "00000003")  # evicts the oldest entry
    assert nonces.first_use("n", "00000001")


# --- challenges -----------------------------------------------------------------------


def test_challenge_headers_sha256_first_with_qop() -> None:
    values = challenge_headers(REALM, "abc", opaque='o"1')
    assert values == [
        'Digest realm="office.example", nonce="abc", opaque="o\\"1", algorithm=SHA-256, qop="auth"',
        'Digest realm="office.example", nonce="abc", opaque="o\\"1", algorithm=MD5, qop="auth"',
    ]
    stale = challenge_headers(REALM, "abc", algorithms=("MD5",), stale=True)
    assert stale == [
        'Digest realm="office.example", nonce="abc", algorithm=MD5, qop="auth", stale=true'
    ]
    for value in values:
        assert parse_auth_params(value)[1]["realm"] == REALM
    with pytest.raises(ValueError, match="unsupported"):
        challenge_headers(REALM, "abc", algorithms=("SHA-512",))
    with pytest.raises(ValueError, match="CR"):
        challenge_headers("a\r\nb", "abc")


def test_pick_challenge_takes_first_supported() -> None:
    values = [
        "Basic realm=x",
        'Digest realm="r", nonce="n", algorithm=SHA-512-256',
        'Digest realm="r", nonce="n", algorithm=SHA-256',
        'Digest realm="r", nonce="n", algorithm=MD5',
    ]
    assert pick_challenge(values) == values[2]
    assert pick_challenge(['Digest realm="unterminated']) is None


# --- server verification: round trips ---------------------------------------------------


@pytest.mark.parametrize("algorithm", ["SHA-256", "MD5", "SHA-256-sess", "MD5-sess"])
def test_round_trip_client_to_server(algorithm: str) -> None:
    nonces = new_factory()
    (challenge,) = challenge_headers(REALM, nonces.make(PHONE_IP, 1000.0), algorithms=(algorithm,))
    value = answer_challenge(
        challenge,
        method="INVITE",
        uri="sip:1001@office.example",
        username="1000",
        password="secret",
        cnonce="c1",
    )
    result = check(value, nonces, method="INVITE")
    assert result == AuthResult(True, "1000", False, "ok")
    # The same nc again is a replay; the next nc is fine.
    assert check(value, nonces, method="INVITE").reason == "replayed nonce count"
    value2 = answer_challenge(
        challenge,
        method="INVITE",
        uri="sip:1001@office.example",
        username="1000",
        password="secret",
        cnonce="c1",
        nc=2,
    )
    assert check(value2, nonces, method="INVITE").ok


def test_rfc2069_style_without_qop_round_trip() -> None:
    nonces = new_factory()
    nonce = nonces.make(PHONE_IP, 1000.0)
    value = answer_challenge(
        f'Digest realm="{REALM}", nonce="{nonce}"',
        method="REGISTER",
        uri="sip:office.example",
        username="1001",
        password="hunter2",
        cnonce="unused",
    )
    assert "qop" not in parse_auth_params(value)[1]
    assert check(value, nonces).ok


def test_auth_int_round_trip_binds_body() -> None:
    nonces = new_factory()
    challenge = f'Digest realm="{REALM}", nonce="{nonces.make(PHONE_IP, 1000.0)}", qop="auth-int"'
    value = answer_challenge(
        challenge,
        method="INVITE",
        uri="sip:x@y",
        username="1000",
        password="secret",
        cnonce="c",
        body=b"v=0\r\n",
    )
    kwargs = {
        "method": "INVITE",
        "realm": REALM,
        "password_for": password_for,
        "nonces": nonces,
        "client_ip": PHONE_IP,
        "now": 1001.0,
    }
    assert not verify(value, body=b"v=1\r\n", **kwargs).ok  # type: ignore[arg-type]
    assert verify(value, body=b"v=0\r\n", **kwargs).ok  # type: ignore[arg-type]


def fresh_answer(
    nonces: NonceFactory,
    *,
    password: str = "secret",
    user: str = "1000",
    ip: str = PHONE_IP,
    now: float = 1000.0,
) -> str:
    (challenge, _) = challenge_headers(REALM, nonces.make(ip, now))
    return answer_challenge(
        challenge,
        method="REGISTER",
        uri="sip:office.example",
        username=user,
        password=password,
        cnonce="abc",
    )


def test_wrong_password_and_unknown_user_look_the_same() -> None:
    nonces = new_factory()
    wrong = check(fresh_answer(nonces, password="guess"), nonces)
    unknown = check(fresh_answer(nonces, user="9999"), nonces)
    assert wrong == AuthResult(False, "1000", False, "wrong credentials")
    assert unknown == AuthResult(False, "9999", False, "wrong credentials")


def test_unknown_user_still_computes_a_hash(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    real = auth_module.digest_response

    def counting(**kwargs: object) -> str:
        calls.append(str(kwargs["username"]))
        return real(**kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(auth_module, "digest_response", counting)
    nonces = new_factory()
    value = fresh_answer(nonces, user="9999")
    calls.clear()
    assert not check(value, nonces).ok
    assert calls == ["9999"]


def test_stale_nonce_after_lifetime_only_with_right_password() -> None:
    nonces = new_factory(lifetime=30.0)
    good = fresh_answer(nonces, now=1000.0)
    assert check(good, nonces, now=1031.0) == AuthResult(False, "1000", True, "stale nonce")
    bad = fresh_answer(nonces, password="guess", now=1000.0)
    assert check(bad, nonces, now=1031.0) == AuthResult(False, "1000", False, "wrong credentials")


def test_nonce_from_another_address_is_rejected() -> None:
    nonces = new_factory()
    value = fresh_answer(nonces, ip="127.0.0.7")
    result = check(value, nonces, ip=PHONE_IP)
    assert not result.ok
    assert not result.stale
    assert "nonce" in result.reason


def test_server_rejections() -> None:
    nonces = new_factory()
    value = fresh_answer(nonces)
    _, p = parse_auth_params(value)

    def rebuild(**changes: str | None) -> str:
        merged = {**p, **changes}
        return "Digest " + ", ".join(f'{k}="{v}"' for k, v in merged.items() if v is not None)

    assert check(rebuild(realm="other"), nonces).reason == "wrong realm"
    assert check(rebuild(response=None), nonces).reason == "missing response"
    assert "algorithm" in check(rebuild(algorithm="SHA-512"), nonces).reason
    assert "qop" in check(rebuild(qop="auth-conf"), nonces).reason
    assert "nc" in check(rebuild(nc="1"), nonces).reason
    assert (
        "cnonce"
        in check(rebuild(qop=None, nc=None, cnonce=None, algorithm="MD5-sess"), nonces).reason
    )
    assert "Digest" in check("Basic realm=x", nonces).reason
    assert check(rebuild(response="z" * 64), nonces).reason == "wrong credentials"
    assert check(rebuild(response="ü" * 64), nonces).reason == "wrong credentials"
    # Wrong method: the response covers the method.
    assert not check(value, nonces, method="INVITE").ok
    # Upper-case hex in the response is the same digest.
    assert check(rebuild(response=p["response"].upper()), nonces).ok
    with pytest.raises(SipError) as info:
        check('Digest username="unterminated', nonces)
    assert info.value.status == 400


def test_digest_uri_is_not_compared_with_request_uri() -> None:
    # The digest uri is whatever the client signed (see the module docstring).
    nonces = new_factory()
    (challenge, _) = challenge_headers(REALM, nonces.make(PHONE_IP, 1000.0))
    value = answer_challenge(
        challenge,
        method="INVITE",
        uri="sip:127.0.0.1;transport=UDP",
        username="1000",
        password="secret",
        cnonce="c",
    )
    assert check(value, nonces, method="INVITE").ok


def test_client_rejects_unusable_challenges() -> None:
    for value in [
        'Digest nonce="n"',
        'Digest realm="r", nonce="n", algorithm=SHA-512',
        "Basic x=y",
    ]:
        with pytest.raises(SipError):
            answer_challenge(
                value, method="INVITE", uri="sip:a@b", username="u", password="p", cnonce="c"
            )


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_property_verify_garbage_never_authenticates(value: str) -> None:
    try:
        ok: bool | None = check(value, new_factory()).ok
    except SipError as exc:
        ok = None if exc.status == 400 else True
    assert not ok


# --- pyVoIP interoperability ------------------------------------------------------------


def test_pyvoip_register_authorization_verifies() -> None:
    nonces = new_factory()
    server = "127.0.0.1"
    client_ip = "127.0.0.5"
    challenges = challenge_headers(REALM, nonces.make(client_ip, 1000.0))
    response = (
        "SIP/2.0 401 Unauthorized\r\n"
        "Via: SIP/2.0/UDP 127.0.0.5:5070;branch=z9hG4bK1;rport\r\n"
        'From: "1001" <sip:1001@127.0.0.1>;tag=a\r\n'
        "To: <sip:1001@127.0.0.1>;tag=b\r\n"
        "Call-ID: c1\r\n"
        "CSeq: 1 REGISTER\r\n"
        + "".join(f"WWW-Authenticate: {value}\r\n" for value in challenges)
        + "Content-Length: 0\r\n\r\n"
    )
    message = SIPMessage(response.encode())
    client = SIPClient(server, 5060, "1001", "hunter2", None, myIP=client_ip, myPort=5070)  # type: ignore[arg-type]
    request = client.gen_register(message)
    (header,) = [line for line in request.split("\r\n") if line.startswith("Authorization: ")]
    value = header.removeprefix("Authorization: ")
    _, params = parse_auth_params(value)
    # pyVoIP answers RFC 2069 style, MD5, with a uri that is not its Request-URI.
    assert "qop" not in params
    assert params["algorithm"] == "MD5"
    assert params["uri"] == "sip:127.0.0.1;transport=UDP"
    result = check(value, nonces, ip=client_ip, method="REGISTER")
    assert result == AuthResult(True, "1001", False, "ok")
    # The same answer with a wrong password in pyVoIP is refused.
    wrong = SIPClient(server, 5060, "1001", "nope", None, myIP=client_ip, myPort=5070)  # type: ignore[arg-type]
    bad = [x for x in wrong.gen_register(message).split("\r\n") if x.startswith("Authorization")]
    assert not check(bad[0].removeprefix("Authorization: "), nonces, ip=client_ip).ok
