"""The portal in German and English: catalogue, negotiation, switch, dates, every page."""

from __future__ import annotations

import html
import re
import string
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from b2bua.archive.catalog import Catalog
from b2bua.config import load_config
from b2bua.portal.app import create_app
from b2bua.portal.i18n import (
    LANGUAGES,
    MESSAGES,
    Translator,
    format_datetime,
    format_duration,
    negotiate,
    translate,
)
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

DE = {"accept-language": "de-DE,de;q=0.9,en;q=0.8"}
EN = {"accept-language": "en-GB,en;q=0.9"}


@dataclass
class Office:
    tmp: Path
    clock: Clock
    ids: dict[str, str]

    def client(
        self, headers: dict[str, str] | None = None, language: str | None = "de"
    ) -> TestClient:
        config = load_config(write_config(self.tmp, self.tmp / "recorder.key", language=language))
        app = create_app(config, clock=self.clock, hasher=CHEAP)
        return TestClient(app, follow_redirects=False, headers=headers or {})


@pytest.fixture
def office(tmp_path: Path) -> Office:
    identity, recipient = make_keys(tmp_path)
    config = load_config(write_config(tmp_path, identity))
    ids: dict[str, str] = {}
    with Catalog.open(config.recording.directory, clock=lambda: T0) as cat:
        add_users(cat)
        ids["a"], _ = record_call(cat, recipient, extension="1000", started_at=T0)
        ids["c"], _ = record_call(
            cat, recipient, extension="1000", caller="030777", direction="outbound",
            callee="030777", started_at=T0 + 86400 * 2, consent="declined",
        )  # fmt: skip
        ids["xss"], _ = record_call(
            cat, recipient, extension="1001", caller="<script>alert(1)</script>",
            started_at=T0 + 200, seconds=1.0,
        )  # fmt: skip
    return Office(tmp_path, Clock(), ids)


def token_of(page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found is not None, page
    return found.group(1)


def log_in(client: TestClient, name: str) -> None:
    token = token_of(client.get("/login").text)
    r = client.post("/login", data={"csrf": token, "username": name, "password": PASSWORD})
    assert r.status_code == 303, r.text


def visible_text(page: str) -> str:
    """What a reader sees: tag contents and the attributes shown as text (alt, title)."""
    shown = " ".join(re.findall(r'(?:alt|title)="([^"]*)"', page))
    body = re.sub(r"<(script|style)\b.*?</\1>", " ", page, flags=re.S)
    body = re.sub(r"<code>.*?</code>", " ", body, flags=re.S)  # ids, hashes, JSON: data
    # Text marked as another language (the switch names each language in itself).
    body = re.sub(r'<(button|span|a)\b[^>]*\blang="[a-z]+"[^>]*>.*?</\1>', " ", body, flags=re.S)
    return html.unescape(re.sub(r"<[^>]+>", " ", body) + " " + shown)


def _words_of_other_language(lang: str) -> list[str]:
    """Catalogue texts of the other language that must never show on a `lang` page.

    Texts that also occur (as whole words) in `lang`'s own catalogue are shared words
    (SIP-Call-ID, SHA-256, Status ...) and left out, as are placeholders' templates.
    """
    other = next(o for o in LANGUAGES if o != lang)
    own = " ".join(MESSAGES[lang].values())
    words = []
    for key, text in MESSAGES[other].items():
        if "{" in text or text == MESSAGES[lang][key]:
            continue
        if re.search(rf"(?<!\w){re.escape(text)}(?!\w)", own):
            continue
        words.append(text)
    return words


def assert_no_leak(page: str, lang: str, data: tuple[str, ...] = ()) -> None:
    text = visible_text(page)
    for value in data:  # values from the catalog (audit actions ...) are data, not labels
        text = text.replace(value, " ")
    leaked = [w for w in _words_of_other_language(lang)
              if re.search(rf"(?<!\w){re.escape(w)}(?!\w)", text)]  # fmt: skip
    assert leaked == [], f"{lang} page shows {leaked}"


# ----------------------------------------------------------------- the catalogue


def _fields(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


def test_every_key_in_both_languages_with_the_same_placeholders() -> None:
    assert set(MESSAGES) == set(LANGUAGES)
    keys = {lang: set(MESSAGES[lang]) for lang in LANGUAGES}
    assert keys["de"] == keys["en"], keys["de"] ^ keys["en"]
    for key in MESSAGES["en"]:
        assert _fields(MESSAGES["de"][key]) == _fields(MESSAGES["en"][key]), key
        for lang in LANGUAGES:
            text = MESSAGES[lang][key]
            assert text.strip() == text and text, (lang, key)
            assert "<" not in text and "&" not in text, (lang, key)  # plain text, never HTML


def test_every_catalogue_key_used_in_code_exists() -> None:
    """Keys named literally in the portal's code and templates are all in the catalogue."""
    root = Path(__file__).resolve().parent.parent / "b2bua" / "portal"
    source = "".join(
        p.read_text(encoding="utf-8") for p in root.glob("*.py") if p.name != "i18n.py"
    )
    used = set(re.findall(r'(?<![\w.])t\(\s*"([a-z0-9_]+)"', source))
    used |= set(re.findall(r'translate\(\s*[\w.]+,\s*"([a-z0-9_]+)"', source))
    for pair in re.findall(r'error\(\s*\d+,\s*"([a-z0-9_]+)",\s*"([a-z0-9_]+)"', source):
        used |= set(pair)
    used |= set(re.findall(r'_password_page\(\s*portal, ctx, \d+, "([a-z0-9_]+)"', source))
    used |= set(re.findall(r'return "((?:error|password)_[a-z0-9_]+)"', source))
    used |= set(re.findall(r'": "(done_[a-z]+)"', source))
    assert len(used) > 60
    missing = sorted(k for k in used if k not in MESSAGES["en"])
    assert missing == []


def test_value_names_fall_back_to_the_raw_value() -> None:
    t = Translator("de")
    assert t.value("consent", "declined") == "abgelehnt"
    assert t.value("direction", "inbound") == "eingehend"
    assert t.value("status", "not_recorded") == "nicht aufgezeichnet"
    assert t.value("consent", "something_new") == "something_new"
    assert Translator("en").value("consent", "employee_no_consent") == "employee did not consent"
    with pytest.raises(KeyError):
        translate("de", "no_such_key")


# ----------------------------------------------------------------- formats, negotiation


def test_dates_per_language() -> None:
    assert format_datetime("de", "2026-11-22T10:04:05.678Z") == "22.11.2026 10:04:05"
    assert format_datetime("en", "2026-11-22T10:04:05.678Z") == "2026-11-22 10:04:05"
    epoch = datetime(2026, 11, 22, 10, 4, 5, tzinfo=UTC).timestamp()
    assert format_datetime("de", epoch) == "22.11.2026 10:04:05"
    assert format_datetime("de", "2026-11-22T11:04:05+01:00") == "22.11.2026 10:04:05"  # UTC
    assert format_datetime("de", None) == "" and format_datetime("en", "") == ""
    assert format_datetime("de", "garbage") == "garbage"
    assert format_duration(3.4) == "0:03" and format_duration(3725) == "1:02:05"
    assert format_duration(None) == ""


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("", None),
        ("de-DE,de;q=0.9,en;q=0.8", "de"),
        ("en-US,en;q=0.9,de;q=0.8", "en"),
        ("en;q=0.3, de;q=0.7", "de"),
        ("de-AT", "de"),
        ("EN-gb", "en"),
        ("fr-FR,fr;q=0.9,en;q=0.5", "en"),
        ("fr, it", None),
        ("*", "de"),
        ("fr, *;q=0.1", "de"),
        ("de;q=0, *;q=0.5", "en"),  # q=0: not German, anything else will do
        ("de;q=0", None),
        ("en;q=0.5, de;q=0.5", "en"),  # a tie: the first listed
        ("de;q=1.5, en;q=0.2", "en"),  # an invalid weight skips its entry
        ("de;q=abc, en", "en"),
        ("d€, en", "en"),
        (",,;;,en", "en"),
        ("x" * 5000, None),
    ],
)
def test_accept_language(header: str | None, expected: str | None) -> None:
    assert negotiate(header) == expected


# ----------------------------------------------------------------- pages in both languages

PAGES = {
    # path, user, (German strings, English strings)
    "login": ("/login", None, ("Benutzername", "Anmelden"), ("User name", "Log in")),
    "list": (
        "/recordings",
        "sam",
        (
            "Aufzeichnungen",
            "Nebenstelle",
            "Beginn (UTC)",
            "Suchen",
            "abgelehnt",
            "eingehend",
            "Abmelden",
            "Seite 1",
        ),
        (
            "Recordings",
            "Extension",
            "Started (UTC)",
            "Search",
            "declined",
            "inbound",
            "Log out",
            "page 1",
        ),
    ),
    "detail": (
        "/recordings/{a}",
        "alice",
        (
            "WAV herunterladen",
            "Nachweis der Einwilligung",
            "Tastendruck",
            "zugestimmt",
            "Löschsperre setzen",
            "Aufzeichnung löschen",
            "vollständig",
            "SHA-256 der Ansage",
        ),
        (
            "Download WAV",
            "Consent evidence",
            "keypress",
            "accepted",
            "Set legal hold",
            "Delete recording",
            "complete",
            "Prompt SHA-256",
        ),
    ),
    "declined": (
        "/recordings/{c}",
        "anna",
        ("Keine Tonaufnahme abspielbar", "nicht aufgezeichnet", "ausgehend"),
        ("No audio to play", "not recorded", "outbound"),
    ),
    "audit": (
        "/audit",
        "alice",
        ("Zugriffsprotokoll", "Hash-Kette intakt", "Benutzer", "Aktion"),
        ("Audit log", "Chain intact", "Actor", "Action"),
    ),
    "password": (
        "/account/password",
        "anna",
        ("Passwort ändern", "Aktuelles Passwort", "mindestens"),
        ("Change password", "Current password", "at least"),
    ),
    "not found": ("/recordings/{missing}", "anna", ("Nicht gefunden",), ("Not found",)),
    "not found, anonymous": ("/no/such/page", None, ("Nicht gefunden",), ("Not found",)),
    "forbidden": ("/audit", "sam", ("Nicht erlaubt", "Ihre Rolle"), ("Forbidden", "Your role")),
}
# Raw values that are data on these pages (audit actions, user names), not labels.
DATA = ("login", "list", "view", "user_add", "audit_view", "alice", "sam", "anna")


@pytest.mark.parametrize("name", list(PAGES))
@pytest.mark.parametrize("lang", LANGUAGES)
def test_every_page_in_both_languages(office: Office, name: str, lang: str) -> None:
    path, user, german, english = PAGES[name]
    client = office.client(DE if lang == "de" else EN, language="en" if lang == "de" else "de")
    if user is not None:
        log_in(client, user)
    page = client.get(path.format(missing="0" * 26, **office.ids))
    assert page.headers["content-type"].startswith("text/html")
    assert page.headers["content-language"] == lang
    assert f'<html lang="{lang}">' in page.text
    for text in german if lang == "de" else english:
        assert text in page.text, (name, text)
    assert_no_leak(page.text, lang, DATA)


def test_dates_on_pages_follow_the_language(office: Office) -> None:
    started = datetime.fromtimestamp(T0, UTC)
    de, en = office.client(DE), office.client(EN)
    log_in(de, "sam")
    log_in(en, "sam")
    german = de.get("/recordings").text
    english = en.get("/recordings").text
    assert started.strftime("%d.%m.%Y %H:%M:%S") in german
    assert started.strftime("%Y-%m-%d %H:%M:%S") not in german
    assert started.strftime("%Y-%m-%d %H:%M:%S") in english
    assert re.search(r"\(in (29|30) Tagen\)", german) and re.search(r"\(in (29|30) days\)", english)
    detail = de.get(f"/recordings/{office.ids['a']}").text
    consent_at = datetime.fromtimestamp(T0 + 5, UTC).strftime("%d.%m.%Y %H:%M:%S")
    assert "Zeitpunkt (UTC)" in detail and consent_at in detail  # consent time too
    audit = logged_in_audit(office)
    assert re.search(r"<td>\d\d\.\d\d\.\d{4} \d\d:\d\d:\d\d</td>", audit)


def logged_in_audit(office: Office) -> str:
    client = office.client(DE)
    log_in(client, "alice")
    return client.get("/audit").text


def test_timeline_picture_and_flashes_in_german(office: Office) -> None:
    client = office.client(DE)
    log_in(client, "alice")
    svg = client.get(f"/recordings/{office.ids['a']}/timeline.svg")
    assert "Gesprächspartner (links)" in svg.text and "Büro (rechts)" in svg.text
    assert svg.headers["content-language"] == "de"
    bad = client.get("/recordings?from=gestern&extension=<b>").text
    assert "„Von“ muss ein Datum sein (JJJJ-MM-TT)" in bad
    assert "„Nebenstelle“ darf nur" in bad and "<b>" not in bad
    token = token_of(client.get("/recordings").text)
    rid = office.ids["a"]
    r = client.post(f"/recordings/{rid}/hold", data={"csrf": token, "hold": "1", "reason": "x"})
    assert r.status_code == 303
    assert "Löschsperre gesetzt." in client.get(r.headers["location"]).text
    refused = client.post(f"/recordings/{rid}/delete", data={"csrf": token, "reason": "dsgvo"})
    assert refused.status_code == 409 and "Löschsperre" in refused.text
    assert "Nicht ausgeführt" in refused.text
    assert client.post("/logout", data={"csrf": "forged"}).text.count("Formular ist abgelaufen")


def test_user_input_stays_escaped_in_german(office: Office) -> None:
    client = office.client(DE)
    log_in(client, "sam")
    page = client.get("/recordings").text
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    reflected = client.get('/recordings?number="><script>x</script>').text
    assert "<script>" not in reflected


def test_german_login_errors(office: Office) -> None:
    client = office.client(DE)
    token = token_of(client.get("/login").text)
    r = client.post("/login", data={"csrf": token, "username": "anna", "password": "falsch!"})
    assert r.status_code == 401 and "Benutzername oder Passwort falsch." in r.text
    r = client.post("/login", data={"csrf": "x", "username": "anna", "password": PASSWORD})
    assert r.status_code == 403 and "Anmeldeformular ist abgelaufen" in r.text
    assert "abgemeldet" in client.get("/login?bye=1").text


# ----------------------------------------------------------------- choice of language


def test_configured_default_without_accept_language(office: Office, tmp_path: Path) -> None:
    assert '<html lang="de">' in office.client(language="de").get("/login").text
    assert '<html lang="en">' in office.client(language="en").get("/login").text
    # The loader's default, with no key in the file, is German.
    assert load_config(write_config(tmp_path, None, language=None)).portal.language == "de"
    # A browser asking only for French gets the configured default.
    page = office.client({"accept-language": "fr-FR"}, language="en").get("/login")
    assert '<html lang="en">' in page.text


def test_language_key_is_checked(tmp_path: Path) -> None:
    from b2bua.config import ConfigError

    make_keys(tmp_path)
    with pytest.raises(ConfigError, match=r"portal\.language"):
        load_config(write_config(tmp_path, None, language="fr"))


def test_switch_needs_csrf_and_is_kept_in_the_session(office: Office) -> None:
    client = office.client(EN)
    log_in(client, "anna")
    page = client.get("/recordings?consent=accepted").text
    assert '<html lang="en">' in page and 'name="language" value="de"' in page
    token = token_of(page)
    form = {"language": "de", "next": "/recordings?consent=accepted"}
    assert client.post("/language", data=form).status_code == 403
    assert client.post("/language", data={**form, "csrf": "forged"}).status_code == 403
    cross = client.post("/language", data={**form, "csrf": token},
                        headers={"origin": "https://evil.example"})  # fmt: skip
    assert cross.status_code == 403
    assert '<html lang="en">' in client.get("/recordings").text  # nothing changed
    r = client.post("/language", data={**form, "csrf": token})
    assert r.status_code == 303 and r.headers["location"] == "/recordings?consent=accepted"
    # The choice beats the browser's Accept-Language from now on.
    page = client.get("/recordings").text
    assert '<html lang="de">' in page and "Aufzeichnungen" in page
    assert 'name="language" value="en"' in page
    assert client.post("/language", data={"csrf": token, "language": "fr"}).status_code == 400
    evil = client.post("/language", data={"csrf": token, "language": "en",
                                          "next": "//evil.example/x"})  # fmt: skip
    assert evil.headers["location"] == "/recordings"  # no open redirect
    # Other sessions of the same browser profile are not affected by the session value;
    # after logout the login page keeps the last choice (cookie).
    client.post("/language", data={"csrf": token, "language": "de"})
    client.post("/logout", data={"csrf": token})
    assert '<html lang="de">' in client.get("/login?bye=1").text
    fresh = office.client(EN)
    log_in(fresh, "anna")
    assert '<html lang="en">' in fresh.get("/recordings").text


def test_login_page_switch_needs_its_token(office: Office) -> None:
    client = office.client(DE)
    login = client.get("/login").text
    assert 'action="/login/language"' in login and "English" in login
    token = token_of(login)
    assert client.post("/login/language", data={"language": "en"}).status_code == 403
    r = client.post("/login/language", data={"language": "en", "csrf": "guess"})
    assert r.status_code == 403
    assert '<html lang="de">' in client.get("/login").text
    token = token_of(client.get("/login").text)
    r = client.post("/login/language", data={"language": "en", "csrf": token})
    assert r.status_code == 303 and r.headers["location"] == "/login"
    assert "httponly" in r.headers["set-cookie"].lower()
    assert '<html lang="en">' in client.get("/login").text
    log_in(client, "anna")  # the choice made before logging in stays in the session
    assert '<html lang="en">' in client.get("/recordings").text


def test_password_change_keeps_the_language(office: Office) -> None:
    client = office.client(EN)
    log_in(client, "anna")
    token = token_of(client.get("/recordings").text)
    client.post("/language", data={"csrf": token, "language": "de"})
    client.cookies.clear()  # only the session's choice is left to decide
    log_in(client, "anna")
    token = token_of(client.get("/account/password").text)
    assert '<html lang="en">' in client.get("/account/password").text
    client.post("/language", data={"csrf": token, "language": "de"})
    short = client.post("/account/password", data={"csrf": token, "current": PASSWORD,
                                                   "new": "kurz", "repeat": "kurz"})  # fmt: skip
    assert short.status_code == 400 and "zu kurz" in short.text
    new = "ein viel neueres Geheimnis"
    ok = client.post("/account/password", data={"csrf": token, "current": PASSWORD,
                                                "new": new, "repeat": new})  # fmt: skip
    assert ok.status_code == 200 and "Ihr Passwort wurde geändert." in ok.text
    client.cookies.delete("b2bua_lang")
    assert '<html lang="de">' in client.get("/recordings").text  # the new session kept it


def test_the_leak_check_catches_a_stray_label() -> None:
    words = _words_of_other_language("de")
    assert {"Recordings", "Log out", "Download WAV", "Search", "Started (UTC)"} <= set(words)
    assert len(words) > 100
    page = '<html lang="de"><main><p>Aufzeichnungen</p><th>Duration</th></main></html>'
    with pytest.raises(AssertionError, match="Duration"):
        assert_no_leak(page, "de")
    assert_no_leak(page.replace("Duration", "Dauer"), "de")
