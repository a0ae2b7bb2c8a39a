"""HTTP-level tests of the portal (Starlette TestClient, fake clock, cheap argon2)."""

from __future__ import annotations

import io
import re
import struct
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
import soundfile as sf
from starlette.testclient import TestClient

from b2bua.archive.catalog import Catalog
from b2bua.config import Config, load_config
from b2bua.portal.app import create_app
from tests.test_portal_support import (
    CHEAP,
    PASSWORD,
    T0,
    Clock,
    add_users,
    make_keys,
    record_call,
    write_config,
)


@dataclass
class Env:
    config: Config
    clock: Clock
    directory: Path
    ids: dict[str, str]
    frames: dict[str, npt.NDArray[np.int16]]

    def client(self, page_size: int = 25) -> TestClient:
        app = create_app(self.config, clock=self.clock, hasher=CHEAP, page_size=page_size)
        return TestClient(app, follow_redirects=False)

    def row(self, rid: str) -> dict[str, Any]:
        with self.catalog() as cat:
            found = cat.get(rid)
        assert found is not None
        return found

    def catalog(self) -> Catalog:
        return Catalog.open(self.directory)


@pytest.fixture
def env(tmp_path: Path) -> Env:
    identity, recipient = make_keys(tmp_path)
    config = load_config(write_config(tmp_path, identity, idle_s=600))
    ids: dict[str, str] = {}
    frames: dict[str, npt.NDArray[np.int16]] = {}
    with Catalog.open(config.recording.directory, clock=lambda: T0) as cat:
        add_users(cat)
        ids["a"], frames["a"] = record_call(cat, recipient, extension="1000", started_at=T0)
        ids["b"], frames["b"] = record_call(
            cat, recipient, extension="1001", caller="+4940999888", started_at=T0 + 100
        )
        ids["c"], _ = record_call(
            cat, recipient, extension="1000", caller="030777", direction="outbound",
            callee="030777", started_at=T0 + 86400 * 2, consent="declined",
        )  # fmt: skip
        ids["xss"], frames["xss"] = record_call(
            cat, recipient, extension="1001", caller="<script>alert(1)</script>",
            started_at=T0 + 200, seconds=1.0,
        )  # fmt: skip
    return Env(config, Clock(), config.recording.directory, ids, frames)


def login(client: TestClient, name: str, password: str = PASSWORD) -> int:
    page = client.get("/login")
    token = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert token is not None
    r = client.post("/login", data={"csrf": token.group(1), "username": name, "password": password})
    return r.status_code


def csrf_of(client: TestClient, path: str = "/recordings") -> str:
    page = client.get(path)
    token = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert token is not None, page.text
    return token.group(1)


def logged_in(env: Env, name: str, page_size: int = 25) -> TestClient:
    client = env.client(page_size)
    assert login(client, name) == 303
    return client


def audit_actions(env: Env) -> list[tuple[str, str, str | None]]:
    with env.catalog() as cat:
        return [(e.actor, e.action, e.target) for e in cat.audit.entries()]


# ----------------------------------------------------------------- headers, login


def test_security_headers_on_pages_and_errors(env: Env) -> None:
    client = env.client()
    for path in ("/login", "/no/such/page"):
        r = client.get(path)
        csp = r.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in csp and "default-src 'none'" in csp
        assert "script-src" not in csp  # no script allowed at all
        assert r.headers["x-frame-options"] == "DENY"
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["referrer-policy"] == "same-origin"
        assert r.headers["cache-control"] == "no-store"
    assert client.get("/no/such/page").status_code == 404


def test_pages_need_login(env: Env) -> None:
    client = env.client()
    for path in ("/recordings", f"/recordings/{env.ids['a']}", "/audit", "/account/password",
                 f"/recordings/{env.ids['a']}/audio.wav"):  # fmt: skip
        r = client.get(path)
        assert r.status_code == 303 and r.headers["location"] == "/login", path


def test_login_sets_strict_httponly_cookie_and_logs(env: Env) -> None:
    client = env.client()
    page = client.get("/login")
    token = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert token is not None
    r = client.post(
        "/login", data={"csrf": token.group(1), "username": "anna", "password": PASSWORD}
    )
    assert r.status_code == 303 and r.headers["location"] == "/recordings"
    cookie = r.headers["set-cookie"]
    assert cookie.startswith("b2bua_session=")
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie
    assert "Secure" not in cookie  # plain HTTP: a Secure cookie would never come back
    assert client.get("/recordings").status_code == 200
    assert ("anna", "login", "anna") in audit_actions(env)


def test_secure_cookie_under_tls(env: Env) -> None:
    tls_portal = replace(env.config.portal, tls_cert=Path("c.pem"), tls_key=Path("k.pem"))
    app = create_app(replace(env.config, portal=tls_portal), clock=env.clock, hasher=CHEAP)
    client = TestClient(app, base_url="https://testserver", follow_redirects=False)
    page = client.get("/login")
    assert "strict-transport-security" in page.headers
    assert "Secure" in page.headers["set-cookie"]  # the login form's token cookie too
    token = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert token is not None
    r = client.post("/login", data={"csrf": token.group(1), "username": "anna",
                                    "password": PASSWORD})  # fmt: skip
    assert r.status_code == 303
    cookie = r.headers["set-cookie"]
    assert cookie.startswith("__Host-b2bua_session=")
    assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie


def test_wrong_password_is_refused_and_logged(env: Env) -> None:
    client = env.client()
    assert login(client, "anna", "not the password") == 401
    assert login(client, "nobody", "not the password") == 401
    assert client.get("/recordings").status_code == 303
    actions = audit_actions(env)
    assert ("-", "login_failed", "anna") in actions
    assert ("-", "login_failed", "nobody") in actions


def test_login_needs_its_csrf_token(env: Env) -> None:
    client = env.client()
    r = client.post("/login", data={"username": "anna", "password": PASSWORD})
    assert r.status_code == 403
    client.get("/login")  # cookie set, but a forged form does not know the token
    r = client.post("/login", data={"csrf": "guess", "username": "anna", "password": PASSWORD})
    assert r.status_code == 403
    assert client.get("/recordings").status_code == 303


def test_failed_logins_throttled_per_user(env: Env) -> None:
    client = env.client()
    for _ in range(5):
        assert login(client, "anna", "wrong password!") == 401
    # Now even the right password gets no answer, until the window has passed.
    page_status = login(client, "anna")
    assert page_status == 429
    other = env.client()  # another user from the same address is not blocked
    assert login(other, "bert") == 303
    env.clock.now += 901
    assert login(client, "anna") == 303


def test_failed_logins_throttled_per_address(env: Env) -> None:
    client = env.client()
    for i in range(20):
        assert login(client, f"guess{i}", "wrong password!") == 401
    r_status = login(client, "bert")
    assert r_status == 429
    env.clock.now += 901
    assert login(client, "bert") == 303


def test_throttled_login_has_retry_after(env: Env) -> None:
    client = env.client()
    for _ in range(5):
        login(client, "sam", "wrong password!")
    page = client.get("/login")
    token = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert token is not None
    r = client.post("/login", data={"csrf": token.group(1), "username": "sam",
                                    "password": PASSWORD})  # fmt: skip
    assert r.status_code == 429
    assert 1 <= int(r.headers["retry-after"]) <= 901


def test_idle_session_expires(env: Env) -> None:
    client = logged_in(env, "anna")
    env.clock.now += 599
    assert client.get("/recordings").status_code == 200  # activity renews the idle timer
    env.clock.now += 599
    assert client.get("/recordings").status_code == 200
    env.clock.now += 601
    r = client.get("/recordings")
    assert r.status_code == 303 and r.headers["location"] == "/login?expired=1"
    assert "session has ended" in client.get("/login?expired=1").text


def test_logout_needs_csrf_and_ends_session(env: Env) -> None:
    client = logged_in(env, "anna")
    assert client.post("/logout").status_code == 403
    assert client.post("/logout", data={"csrf": "forged"}).status_code == 403
    assert client.get("/recordings").status_code == 200  # still logged in
    r = client.post("/logout", data={"csrf": csrf_of(client)})
    assert r.status_code == 303
    assert client.get("/recordings").status_code == 303
    assert ("anna", "logout", None) in audit_actions(env)


def test_cross_origin_post_refused_even_with_token(env: Env) -> None:
    client = logged_in(env, "anna")
    token = csrf_of(client)
    for origin in ("https://evil.example", "null"):
        r = client.post("/logout", data={"csrf": token}, headers={"origin": origin})
        assert r.status_code == 403
    same = client.post("/logout", data={"csrf": token}, headers={"origin": "http://testserver"})
    assert same.status_code == 303
    client = logged_in(env, "anna")
    assert client.get("/recordings").status_code == 200


def test_password_change(env: Env) -> None:
    app = create_app(env.config, clock=env.clock, hasher=CHEAP)
    client = TestClient(app, follow_redirects=False)
    other = TestClient(app, follow_redirects=False)  # a second session of the same user
    assert login(client, "anna") == 303 and login(other, "anna") == 303
    token = csrf_of(client, "/account/password")
    new = "a much newer secret"
    bad = client.post("/account/password",
                      data={"csrf": token, "current": "wrong", "new": new, "repeat": new})  # fmt: skip
    assert bad.status_code == 400 and "current password is wrong" in bad.text
    differ = client.post("/account/password",
                         data={"csrf": token, "current": PASSWORD, "new": new, "repeat": "x"})  # fmt: skip
    assert differ.status_code == 400
    short = client.post("/account/password",
                        data={"csrf": token, "current": PASSWORD, "new": "short", "repeat": "short"})  # fmt: skip
    assert short.status_code == 400 and "too short" in short.text
    assert client.post("/account/password",
                       data={"current": PASSWORD, "new": new, "repeat": new}).status_code == 403  # fmt: skip
    ok = client.post("/account/password",
                     data={"csrf": token, "current": PASSWORD, "new": new, "repeat": new})  # fmt: skip
    assert ok.status_code == 200 and "has been changed" in ok.text
    assert client.get("/recordings").status_code == 200  # this browser stays logged in
    assert other.get("/recordings").status_code == 303  # the other session ended
    fresh = env.client()
    assert login(fresh, "anna") == 401
    assert login(fresh, "anna", new) == 303


def test_removed_user_loses_session(env: Env) -> None:
    from b2bua.archive.users import remove_user

    client = logged_in(env, "bert")
    with env.catalog() as cat:
        remove_user(cat, "bert", actor="test", source="test")
    assert client.get("/recordings").status_code == 303


# ----------------------------------------------------------------- visibility


def test_agent_sees_only_own_extension(env: Env) -> None:
    anna = logged_in(env, "anna")  # extension 1000
    page = anna.get("/recordings").text
    assert env.ids["a"] in page and env.ids["c"] in page
    assert env.ids["b"] not in page and env.ids["xss"] not in page
    # Even asking for the other extension's rows shows nothing.
    assert env.ids["b"] not in anna.get("/recordings?extension=1001").text
    other = env.ids["b"]
    missing = "0" * 26
    for suffix in ("", "/audio.wav", "/download", "/timeline.svg"):
        forbidden = anna.get(f"/recordings/{other}{suffix}")
        absent = anna.get(f"/recordings/{missing}{suffix}")
        assert forbidden.status_code == 404 == absent.status_code, suffix
        assert forbidden.text == absent.text  # indistinguishable from a missing one
    assert anna.get(f"/recordings/{env.ids['a']}").status_code == 200


def test_supervisor_and_admin_see_all(env: Env) -> None:
    for name in ("sam", "alice"):
        page = logged_in(env, name).get("/recordings").text
        for rid in env.ids.values():
            assert rid in page, name


def test_only_admin_deletes_and_holds(env: Env) -> None:
    sam = logged_in(env, "sam")
    token = csrf_of(sam)
    rid = env.ids["a"]
    assert sam.post(f"/recordings/{rid}/delete",
                    data={"csrf": token, "reason": "x"}).status_code == 403  # fmt: skip
    assert sam.post(f"/recordings/{rid}/hold",
                    data={"csrf": token, "hold": "1", "reason": "x"}).status_code == 403  # fmt: skip
    bert = logged_in(env, "bert")  # an agent of 1001: recording a is not even visible
    assert bert.post(f"/recordings/{rid}/delete",
                     data={"csrf": csrf_of(bert), "reason": "x"}).status_code == 404  # fmt: skip
    path = Path(env.row(rid)["path"])
    assert path.exists()

    alice = logged_in(env, "alice")
    token = csrf_of(alice)
    r = alice.post(f"/recordings/{rid}/hold", data={"csrf": token, "hold": "1", "reason": "court"})
    assert r.status_code == 303
    assert "on legal hold" in alice.get(f"/recordings/{rid}").text
    refused = alice.post(f"/recordings/{rid}/delete", data={"csrf": token, "reason": "gdpr"})
    assert refused.status_code == 409 and "legal hold" in refused.text
    assert path.exists()
    alice.post(f"/recordings/{rid}/hold", data={"csrf": token, "hold": "0", "reason": "done"})
    r = alice.post(f"/recordings/{rid}/delete", data={"csrf": token, "reason": "gdpr request"})
    assert r.status_code == 303
    assert not path.exists()
    assert env.row(rid)["status"] == "deleted"
    actions = audit_actions(env)
    assert ("alice", "hold", rid) in actions and ("alice", "release", rid) in actions
    assert ("alice", "delete", rid) in actions
    assert alice.get(f"/recordings/{rid}/audio.wav").status_code == 404


def test_only_admin_sees_audit_log(env: Env) -> None:
    assert logged_in(env, "sam").get("/audit").status_code == 403
    assert logged_in(env, "anna").get("/audit").status_code == 403
    alice = logged_in(env, "alice")
    page = alice.get("/audit")
    assert page.status_code == 200
    assert "Chain intact" in page.text and "login" in page.text


# ----------------------------------------------------------------- list


def test_list_filters_sorting_and_columns(env: Env) -> None:
    sam = logged_in(env, "sam")
    page = sam.get("/recordings").text
    order = re.findall(r'data-id="([0-9A-Z]{26})"', page)
    assert order == [env.ids["c"], env.ids["xss"], env.ids["b"], env.ids["a"]]  # newest first
    assert "0:03" in page and "accepted" in page and "declined" in page
    assert "(in 29 days)" in page or "(in 30 days)" in page  # expiry with what is left

    def ids(query: str) -> set[str]:
        return set(re.findall(r'data-id="([0-9A-Z]{26})"', sam.get("/recordings?" + query).text))

    assert ids("number=%2B4940999888") == {env.ids["b"]}
    assert ids("number=004940999888") == {env.ids["b"]}  # E.164 match
    assert ids("extension=1001") == {env.ids["b"], env.ids["xss"]}
    assert ids("direction=outbound") == {env.ids["c"]}
    assert ids("consent=declined") == {env.ids["c"]}
    assert ids("consent=accepted&extension=1000") == {env.ids["a"]}
    day0 = "2026-11-18"
    assert ids(f"from={day0}&to={day0}") == {env.ids["a"], env.ids["b"], env.ids["xss"]}
    assert ids("from=2026-11-19") == {env.ids["c"]}
    bad = sam.get("/recordings?from=yesterday&direction=sideways")
    assert bad.status_code == 200 and "must be a date" in bad.text


def test_list_pagination(env: Env) -> None:
    sam = logged_in(env, "sam", page_size=3)
    first = sam.get("/recordings")
    assert 'href="/recordings?page=2"' in first.text
    ids1 = re.findall(r'data-id="([0-9A-Z]{26})"', first.text)
    second = sam.get("/recordings?page=2").text
    ids2 = re.findall(r'data-id="([0-9A-Z]{26})"', second)
    assert len(ids1) == 3 and ids2 == [env.ids["a"]]
    assert "page=3" not in second and 'href="/recordings?page=1"' in second
    # Paging keeps the filters.
    filtered = sam.get("/recordings?extension=1000&page=1").text
    assert "older" not in filtered


def test_agent_with_two_extensions_paginates_merged(env: Env, tmp_path: Path) -> None:
    from b2bua.archive.users import add_user

    with env.catalog() as cat:
        add_user(cat, "carl", PASSWORD, "agent", ["1000", "1001"], actor="t", source="t",
                 hasher=CHEAP)  # fmt: skip
    carl = logged_in(env, "carl", page_size=2)
    got = re.findall(r'data-id="([0-9A-Z]{26})"', carl.get("/recordings").text)
    got += re.findall(r'data-id="([0-9A-Z]{26})"', carl.get("/recordings?page=2").text)
    assert got == [env.ids["c"], env.ids["xss"], env.ids["b"], env.ids["a"]]


def test_list_and_view_are_audited(env: Env) -> None:
    anna = logged_in(env, "anna")
    anna.get("/recordings?extension=1000")
    anna.get(f"/recordings/{env.ids['a']}")
    with env.catalog() as cat:
        entries = [e for e in cat.audit.entries() if e.actor == "anna"]
    listing = [e for e in entries if e.action == "list"]
    assert listing and listing[-1].details["filters"] == {"extension": "1000"}
    assert env.ids["a"] in listing[-1].details["ids"]
    assert any(e.action == "view" and e.target == env.ids["a"] for e in entries)


# ----------------------------------------------------------------- escaping


def test_user_input_is_escaped(env: Env) -> None:
    sam = logged_in(env, "sam")
    page = sam.get("/recordings").text
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    detail = sam.get(f"/recordings/{env.ids['xss']}").text
    assert "<script>" not in detail and "&lt;script&gt;" in detail
    reflected = sam.get('/recordings?number="><script>x</script>').text
    assert "<script>" not in reflected
    client = env.client()
    form = client.get("/login")
    token = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert token is not None
    r = client.post("/login", data={"csrf": token.group(1), "username": '"><b>x',
                                    "password": "nope nope nope"})  # fmt: skip
    assert "<b>x" not in r.text and "&#34;&gt;&lt;b&gt;x" in r.text


# ----------------------------------------------------------------- audio


def _wav_frames(data: bytes) -> npt.NDArray[np.int16]:
    frames, rate = sf.read(io.BytesIO(data), dtype="int16", always_2d=True)
    assert rate == 8000
    return np.asarray(frames, dtype=np.int16)


def test_audio_full_and_ranges(env: Env) -> None:
    anna = logged_in(env, "anna")
    url = f"/recordings/{env.ids['a']}/audio.wav"
    full = anna.get(url)
    assert full.status_code == 200
    assert full.headers["accept-ranges"] == "bytes"
    assert full.headers["content-type"] == "audio/wav"
    body = full.content
    assert int(full.headers["content-length"]) == len(body)
    (riff,) = struct.unpack_from("<I", body, 4)
    assert riff == len(body) - 8  # exact sizes, not 0xFFFFFFFF
    data_at = body.index(b"data")
    (data_size,) = struct.unpack_from("<I", body, data_at + 4)
    assert data_size == len(body) - data_at - 8
    assert np.array_equal(_wav_frames(body), env.frames["a"])

    part = anna.get(url, headers={"range": "bytes=100-1099"})
    assert part.status_code == 206
    assert part.headers["content-range"] == f"bytes 100-1099/{len(body)}"
    assert part.content == body[100:1100]
    assert anna.get(url, headers={"range": "bytes=-10"}).content == body[-10:]
    tail = anna.get(url, headers={"range": f"bytes={len(body) - 5}-"})
    assert tail.status_code == 206 and tail.content == body[-5:]
    beyond = anna.get(url, headers={"range": f"bytes={len(body)}-"})
    assert beyond.status_code == 416 and beyond.headers["content-range"] == f"bytes */{len(body)}"
    many = anna.get(url, headers={"range": "bytes=0-1,5-6"})
    assert many.status_code == 200 and many.content == body


def test_download_is_attachment_with_exact_wav(env: Env) -> None:
    sam = logged_in(env, "sam")
    r = sam.get(f"/recordings/{env.ids['b']}/download")
    assert r.status_code == 200
    assert (
        r.headers["content-disposition"] == f'attachment; filename="recording-{env.ids["b"]}.wav"'
    )
    assert np.array_equal(_wav_frames(r.content), env.frames["b"])


def test_play_and_download_are_audited(env: Env) -> None:
    anna = logged_in(env, "anna")
    rid = env.ids["a"]
    anna.get(f"/recordings/{rid}/audio.wav", headers={"range": "bytes=0-"})
    anna.get(f"/recordings/{rid}/audio.wav", headers={"range": "bytes=5000-"})
    anna.get(f"/recordings/{rid}/download")
    with env.catalog() as cat:
        mine = [e for e in cat.audit.entries() if e.actor == "anna" and e.target == rid]
        assert cat.audit.verify().ok
    plays = [e.details.get("range") for e in mine if e.action == "play"]
    assert plays == ["bytes=0-", "bytes=5000-"]
    assert [e.action for e in mine].count("download") == 1


def test_no_decrypted_file_left_on_disk(env: Env, tmp_path: Path) -> None:
    before = {p.name for p in env.directory.iterdir()}
    sam = logged_in(env, "sam")
    for key in ("a", "b"):
        sam.get(f"/recordings/{env.ids[key]}/audio.wav")
        sam.get(f"/recordings/{env.ids[key]}/download")
        sam.get(f"/recordings/{env.ids[key]}/timeline.svg")
    after = {p.name for p in env.directory.iterdir()}
    assert after == before
    wavs = [p for p in tmp_path.rglob("*") if p.is_file() and p.read_bytes()[:4] == b"RIFF"]
    assert wavs == []


def test_timeline_picture(env: Env) -> None:
    sam = logged_in(env, "sam")
    r = sam.get(f"/recordings/{env.ids['a']}/timeline.svg")
    assert r.status_code == 200 and r.headers["content-type"].startswith("image/svg+xml")
    assert r.text.startswith("<svg") and r.text.count("<path") == 2  # both channels
    assert "external party" in r.text and "office party" in r.text
    detail = sam.get(f"/recordings/{env.ids['a']}").text
    assert f'src="/recordings/{env.ids["a"]}/audio.wav"' in detail
    assert f'src="/recordings/{env.ids["a"]}/timeline.svg"' in detail
    assert "Prompt SHA-256" in detail and "rfc4733" in detail  # consent evidence
    assert "Download WAV" in detail


def test_truncated_recording_plays_what_was_kept(env: Env, tmp_path: Path) -> None:
    pub = (tmp_path / "recorder.key.pub").read_text().strip()
    with env.catalog() as cat:
        rid, frames = record_call(cat, pub, seconds=10.0, started_at=T0 + 500, truncate=True)
    sam = logged_in(env, "sam")
    got = _wav_frames(sam.get(f"/recordings/{rid}/audio.wav").content)
    assert 0 < len(got) < len(frames)
    assert np.array_equal(got, frames[: len(got)])


def test_tampered_file_is_refused_and_logged(env: Env) -> None:
    path = Path(env.row(env.ids["b"])["path"])
    data = bytearray(path.read_bytes())
    data[len(data) // 4] ^= 0x01  # inside the first chunk, which is followed by another
    path.write_bytes(bytes(data))
    sam = logged_in(env, "sam")
    r = sam.get(f"/recordings/{env.ids['b']}/audio.wav")
    assert r.status_code == 500 and "RIFF" not in r.text
    assert ("sam", "play_failed", env.ids["b"]) in audit_actions(env)


def test_without_identity_playback_is_unavailable(env: Env) -> None:
    config = replace(env.config, portal=replace(env.config.portal, identity=None))
    client = TestClient(create_app(config, clock=env.clock, hasher=CHEAP),
                        follow_redirects=False)  # fmt: skip
    assert login(client, "sam") == 303
    assert client.get(f"/recordings/{env.ids['a']}/audio.wav").status_code == 503
    assert client.get("/recordings").status_code == 200


def test_declined_call_has_no_player(env: Env) -> None:
    anna = logged_in(env, "anna")
    page = anna.get(f"/recordings/{env.ids['c']}").text
    assert "<audio" not in page and "not recorded" in page and "declined" in page
    assert anna.get(f"/recordings/{env.ids['c']}/audio.wav").status_code == 404


# ----------------------------------------------------------------- unit: ranges, cli


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("bytes=0-9", (0, 9)),
        ("bytes=5-", (5, 99)),
        ("bytes=-10", (90, 99)),
        ("bytes=-1000", (0, 99)),
        ("bytes=90-500", (90, 99)),
        ("bytes=100-", "unsatisfiable"),
        ("bytes=-0", "unsatisfiable"),
        ("bytes=9-3", None),
        ("bytes=0-1,4-5", None),
        ("items=0-9", None),
        ("bytes=a-b", None),
        ("bytes=-", None),
    ],
)
def test_parse_range(header: str | None, expected: object) -> None:
    from b2bua.portal.audio import parse_range

    assert parse_range(header, 100) == expected


def test_portal_command_config_error_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from b2bua.portal.cli import main

    make_keys(tmp_path)
    bad = write_config(tmp_path, None, listen="nowhere")
    assert main(["--config", str(bad)]) == 2
    assert "portal.listen" in capsys.readouterr().err


def test_unreadable_identity_stops_the_portal(env: Env, tmp_path: Path) -> None:
    from b2bua.portal.app import PortalError

    bad = tmp_path / "not-a-key"
    bad.write_text("hello\n")
    config = replace(env.config, portal=replace(env.config.portal, identity=bad))
    with pytest.raises(PortalError, match=r"portal\.identity"):
        create_app(config)
