# ruff: noqa: E501 - catalogue sentences read better unwrapped
"""The portal's message catalogue (German and English) and language negotiation.

Every text a user sees on a portal page goes through `translate` (in templates: the `t`
object the pages receive), so a language is one dict here and nothing else. Entries are
plain text, never HTML: templates autoescape whatever `t` returns, so a placeholder filled
with something a user typed is escaped like any other value.

Which language a request gets (`Portal.language_for`): the user's explicit choice (the
form in the page header, kept in the session and in a small cookie so the login page
after a logout stays in it), else the best match in Accept-Language (RFC 9110, 12.5.4:
q-values, `*`, primary subtags such as `de-AT` -> `de`), else `[portal] language`.

Dates are UTC in both languages; German writes 22.11.2026 10:04:05, English keeps the
ISO order 2026-11-22 10:04:05.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

__all__ = [
    "DEFAULT_LANGUAGE",
    "LANGUAGES",
    "MESSAGES",
    "Translator",
    "format_datetime",
    "format_duration",
    "negotiate",
    "translate",
]

LANGUAGES = ("de", "en")
DEFAULT_LANGUAGE = "de"

_EN: dict[str, str] = {
    # page frame
    "app_name": "Call recorder",
    "title_suffix": "call recorder",
    "nav_recordings": "Recordings",
    "nav_audit": "Audit log",
    "nav_password": "Password",
    "logout": "Log out",
    "language": "Language",
    "role_admin": "admin",
    "role_supervisor": "supervisor",
    "role_agent": "agent",
    # login
    "login_title": "Log in",
    "login_username": "User name",
    "login_password": "Password",
    "login_button": "Log in",
    "login_expired_session": "Your session has ended. Please log in again.",
    "login_bye": "You are logged out.",
    "login_form_expired": "The login form expired. Please try again.",
    "login_throttled": "Too many failed logins. Try again in {seconds} seconds.",
    "login_wrong": "Wrong user name or password.",
    # list
    "list_title": "Recordings",
    "filter_from": "From",
    "filter_to": "To",
    "filter_number": "Number",
    "filter_extension": "Extension",
    "filter_direction": "Direction",
    "filter_consent": "Consent",
    "filter_any": "any",
    "filter_search": "Search",
    "filter_reset": "Reset",
    "filter_bad_date": "“{field}” must be a date (YYYY-MM-DD)",
    "filter_invalid_date": "“{field}” is not a valid date",
    "filter_bad_text": "“{field}” may hold digits, letters and + * # . _ @ ( ) / - only",
    "filter_bad_direction": "unknown direction",
    "filter_bad_consent": "unknown consent result",
    "col_started": "Started (UTC)",
    "col_direction": "Direction",
    "col_caller": "Caller",
    "col_callee": "Callee",
    "col_extension": "Ext.",
    "col_duration": "Duration",
    "col_consent": "Consent",
    "col_status": "Status",
    "col_expires": "Expires (UTC)",
    "badge_hold": "hold",
    "open": "open",
    "no_match": "No recordings match.",
    "newer": "newer",
    "older": "older",
    "page_number": "page {page}",
    "done_deleted": "The recording has been deleted.",
    "done_hold": "Legal hold set.",
    "done_release": "Legal hold released.",
    # values shown in lists and facts
    "direction_inbound": "inbound",
    "direction_outbound": "outbound",
    "direction_internal": "internal",
    "consent_accepted": "accepted",
    "consent_declined": "declined",
    "consent_timeout": "no answer (timeout)",
    "consent_not_asked": "not asked",
    "consent_employee_no_consent": "employee did not consent",
    "consent_withdrawn": "withdrawn",
    "consent_abandoned": "hung up during the prompt",
    "status_recording": "recording",
    "status_complete": "complete",
    "status_truncated": "truncated",
    "status_not_recorded": "not recorded",
    "status_deleted": "deleted",
    "status_pending": "pending",
    "expires_in_days": "in {days} days",
    "expires_in_one_day": "in 1 day",
    "expires_today": "today",
    "expires_overdue": "overdue",
    # one recording
    "detail_title": "Recording {id}",
    "detail_heading": "Recording",
    "timeline_alt": "Timeline of both channels: left external party, right office party",
    "timeline_external": "external party",
    "timeline_office": "office party",
    "timeline_left": "left",
    "timeline_right": "right",
    "download": "Download WAV",
    "no_audio": "No audio to play: status",
    "section_call": "Call",
    "fact_id": "Id",
    "fact_call_id": "SIP Call-ID",
    "fact_direction": "Direction",
    "fact_caller": "Caller",
    "fact_callee": "Callee",
    "fact_extension": "Extension",
    "fact_times": "Started / ended (UTC)",
    "fact_recorded": "Recorded",
    "fact_status": "Status",
    "fact_on_hold": "on legal hold",
    "fact_expires": "Expires (UTC)",
    "fact_sha256": "File SHA-256",
    "section_consent": "Consent evidence",
    "no_consent": "No consent record.",
    "consent_field_mode": "Mode",
    "consent_field_result": "Result",
    "consent_field_digit": "Digit",
    "consent_field_method": "Detected by",
    "consent_field_at": "At (UTC)",
    "consent_field_prompt_sha256": "Prompt SHA-256",
    "consent_field_language": "Prompt language",
    "consent_field_withdrawn_at": "Withdrawn at (UTC)",
    "consent_field_note": "Note",
    "mode_keypress": "keypress",
    "mode_announce": "announcement only",
    "mode_off": "off",
    "language_de": "German",
    "language_en": "English",
    "section_admin": "Administration",
    "admin_reason": "Reason",
    "admin_set_hold": "Set legal hold",
    "admin_release_hold": "Release legal hold",
    "admin_delete_reason": "Reason for deleting",
    "admin_delete": "Delete recording",
    # audit log
    "audit_title": "Audit log",
    "audit_chain_ok": "Chain intact: {entries} entries, head",
    "audit_chain_broken": "Chain BROKEN: {entries} entries, head",
    "audit_col_at": "At (UTC)",
    "audit_col_actor": "Actor",
    "audit_col_action": "Action",
    "audit_col_target": "Target",
    "audit_col_source": "Source",
    "audit_col_details": "Details",
    # password
    "password_title": "Change password",
    "password_current": "Current password",
    "password_new": "New password (at least {min_length} characters)",
    "password_repeat": "Repeat the new password",
    "password_button": "Change password",
    "password_throttled": "Too many failed attempts. Try again in {seconds} s.",
    "password_differ": "The new passwords differ.",
    "password_wrong": "The current password is wrong.",
    "password_too_short": "The new password is too short: at least {min_length} characters.",
    "password_whitespace": "The new password must not start or end with white space.",
    "password_refused": "The new password was refused.",
    "password_changed": "Your password has been changed.",
    # errors
    "error_title": "Error",
    "error_generic": "The request could not be handled.",
    "error_internal_title": "Internal error",
    "error_internal": "Something went wrong; it has been logged.",
    "error_not_found_title": "Not found",
    "error_not_found": "There is no such page or recording.",
    "error_forbidden_title": "Forbidden",
    "error_cross_site": "Cross-site request refused.",
    "error_form_expired": "The form has expired. Please reload the page and retry.",
    "error_role": "Your role does not allow this.",
    "error_admin_only": "Only administrators may do this.",
    "error_bad_language": "Unknown language.",
    "error_unavailable_title": "Unavailable",
    "error_no_identity": "The portal has no key to open recordings ([portal] identity is not set).",
    "error_open_title": "Can not open the recording",
    "error_open_missing": "The recording file is missing.",
    "error_open_failed": "The recording can not be decrypted: damaged, or encrypted for another key.",
    "error_not_done_title": "Not done",
    "error_reason_required": "A reason is required.",
    "error_on_hold": "The recording is on legal hold; release the hold first.",
    "error_still_recording": "The recording is still running; delete it after the call.",
    "error_already_deleted": "The recording has already been deleted.",
    "error_action_failed": "The action could not be carried out.",
    "error_back": "Back to the recordings",
}

_DE: dict[str, str] = {
    "app_name": "Gesprächsaufzeichnung",
    "title_suffix": "Gesprächsaufzeichnung",
    "nav_recordings": "Aufzeichnungen",
    "nav_audit": "Zugriffsprotokoll",
    "nav_password": "Passwort",
    "logout": "Abmelden",
    "language": "Sprache",
    "role_admin": "Administration",
    "role_supervisor": "Teamleitung",
    "role_agent": "Mitarbeiter",
    "login_title": "Anmelden",
    "login_username": "Benutzername",
    "login_password": "Passwort",
    "login_button": "Anmelden",
    "login_expired_session": "Ihre Sitzung ist abgelaufen. Bitte melden Sie sich erneut an.",
    "login_bye": "Sie sind abgemeldet.",
    "login_form_expired": "Das Anmeldeformular ist abgelaufen. Bitte versuchen Sie es erneut.",
    "login_throttled": "Zu viele fehlgeschlagene Anmeldungen. Bitte in {seconds} Sekunden erneut versuchen.",
    "login_wrong": "Benutzername oder Passwort falsch.",
    "list_title": "Aufzeichnungen",
    "filter_from": "Von",
    "filter_to": "Bis",
    "filter_number": "Rufnummer",
    "filter_extension": "Nebenstelle",
    "filter_direction": "Richtung",
    "filter_consent": "Einwilligung",
    "filter_any": "alle",
    "filter_search": "Suchen",
    "filter_reset": "Zurücksetzen",
    "filter_bad_date": "„{field}“ muss ein Datum sein (JJJJ-MM-TT)",
    "filter_invalid_date": "„{field}“ ist kein gültiges Datum",
    "filter_bad_text": "„{field}“ darf nur Ziffern, Buchstaben und + * # . _ @ ( ) / - enthalten",
    "filter_bad_direction": "unbekannte Richtung",
    "filter_bad_consent": "unbekanntes Ergebnis der Einwilligung",
    "col_started": "Beginn (UTC)",
    "col_direction": "Richtung",
    "col_caller": "Anrufer",
    "col_callee": "Angerufen",
    "col_extension": "Nst.",
    "col_duration": "Dauer",
    "col_consent": "Einwilligung",
    "col_status": "Zustand",
    "col_expires": "Löschung (UTC)",
    "badge_hold": "Löschsperre",
    "open": "öffnen",
    "no_match": "Keine passenden Aufzeichnungen.",
    "newer": "neuere",
    "older": "ältere",
    "page_number": "Seite {page}",
    "done_deleted": "Die Aufzeichnung wurde gelöscht.",
    "done_hold": "Löschsperre gesetzt.",
    "done_release": "Löschsperre aufgehoben.",
    "direction_inbound": "eingehend",
    "direction_outbound": "ausgehend",
    "direction_internal": "intern",
    "consent_accepted": "zugestimmt",
    "consent_declined": "abgelehnt",
    "consent_timeout": "keine Antwort (Zeitablauf)",
    "consent_not_asked": "nicht gefragt",
    "consent_employee_no_consent": "ohne Einwilligung des Mitarbeiters",
    "consent_withdrawn": "widerrufen",
    "consent_abandoned": "während der Ansage aufgelegt",
    "status_recording": "läuft",
    "status_complete": "vollständig",
    "status_truncated": "unvollständig",
    "status_not_recorded": "nicht aufgezeichnet",
    "status_deleted": "gelöscht",
    "status_pending": "ausstehend",
    "expires_in_days": "in {days} Tagen",
    "expires_in_one_day": "in 1 Tag",
    "expires_today": "heute",
    "expires_overdue": "überfällig",
    "detail_title": "Aufzeichnung {id}",
    "detail_heading": "Aufzeichnung",
    "timeline_alt": "Zeitverlauf beider Kanäle: links Gesprächspartner, rechts Büro",
    "timeline_external": "Gesprächspartner",
    "timeline_office": "Büro",
    "timeline_left": "links",
    "timeline_right": "rechts",
    "download": "WAV herunterladen",
    "no_audio": "Keine Tonaufnahme abspielbar: Zustand",
    "section_call": "Anruf",
    "fact_id": "Kennung",
    "fact_call_id": "SIP-Call-ID",
    "fact_direction": "Richtung",
    "fact_caller": "Anrufer",
    "fact_callee": "Angerufen",
    "fact_extension": "Nebenstelle",
    "fact_times": "Beginn / Ende (UTC)",
    "fact_recorded": "Aufgezeichnet",
    "fact_status": "Zustand",
    "fact_on_hold": "Löschsperre aktiv",
    "fact_expires": "Löschung (UTC)",
    "fact_sha256": "SHA-256 der Datei",
    "section_consent": "Nachweis der Einwilligung",
    "no_consent": "Kein Nachweis vorhanden.",
    "consent_field_mode": "Verfahren",
    "consent_field_result": "Ergebnis",
    "consent_field_digit": "Taste",
    "consent_field_method": "Erkannt über",
    "consent_field_at": "Zeitpunkt (UTC)",
    "consent_field_prompt_sha256": "SHA-256 der Ansage",
    "consent_field_language": "Sprache der Ansage",
    "consent_field_withdrawn_at": "Widerrufen am (UTC)",
    "consent_field_note": "Vermerk",
    "mode_keypress": "Tastendruck",
    "mode_announce": "nur Ansage",
    "mode_off": "aus",
    "language_de": "Deutsch",
    "language_en": "Englisch",
    "section_admin": "Verwaltung",
    "admin_reason": "Begründung",
    "admin_set_hold": "Löschsperre setzen",
    "admin_release_hold": "Löschsperre aufheben",
    "admin_delete_reason": "Grund für das Löschen",
    "admin_delete": "Aufzeichnung löschen",
    "audit_title": "Zugriffsprotokoll",
    "audit_chain_ok": "Hash-Kette intakt: {entries} Einträge, Kopf",
    "audit_chain_broken": "Hash-Kette BESCHÄDIGT: {entries} Einträge, Kopf",
    "audit_col_at": "Zeit (UTC)",
    "audit_col_actor": "Benutzer",
    "audit_col_action": "Aktion",
    "audit_col_target": "Ziel",
    "audit_col_source": "Quelle",
    "audit_col_details": "Einzelheiten",
    "password_title": "Passwort ändern",
    "password_current": "Aktuelles Passwort",
    "password_new": "Neues Passwort (mindestens {min_length} Zeichen)",
    "password_repeat": "Neues Passwort wiederholen",
    "password_button": "Passwort ändern",
    "password_throttled": "Zu viele Fehlversuche. Bitte in {seconds} s erneut versuchen.",
    "password_differ": "Die neuen Passwörter stimmen nicht überein.",
    "password_wrong": "Das aktuelle Passwort ist falsch.",
    "password_too_short": "Das neue Passwort ist zu kurz: mindestens {min_length} Zeichen.",
    "password_whitespace": "Das neue Passwort darf nicht mit Leerzeichen beginnen oder enden.",
    "password_refused": "Das neue Passwort wurde abgelehnt.",
    "password_changed": "Ihr Passwort wurde geändert.",
    "error_title": "Fehler",
    "error_generic": "Die Anfrage konnte nicht bearbeitet werden.",
    "error_internal_title": "Interner Fehler",
    "error_internal": "Etwas ist schiefgegangen; der Fehler wurde protokolliert.",
    "error_not_found_title": "Nicht gefunden",
    "error_not_found": "Diese Seite oder Aufzeichnung gibt es nicht.",
    "error_forbidden_title": "Nicht erlaubt",
    "error_cross_site": "Anfrage von einer fremden Website abgelehnt.",
    "error_form_expired": "Das Formular ist abgelaufen. Bitte laden Sie die Seite neu und versuchen Sie es erneut.",
    "error_role": "Ihre Rolle erlaubt das nicht.",
    "error_admin_only": "Das dürfen nur Administratoren.",
    "error_bad_language": "Unbekannte Sprache.",
    "error_unavailable_title": "Nicht verfügbar",
    "error_no_identity": "Dem Portal fehlt der Schlüssel zum Öffnen der Aufzeichnungen ([portal] identity ist nicht gesetzt).",
    "error_open_title": "Die Aufzeichnung lässt sich nicht öffnen",
    "error_open_missing": "Die Datei der Aufzeichnung fehlt.",
    "error_open_failed": "Die Aufzeichnung lässt sich nicht entschlüsseln: beschädigt oder für einen anderen Schlüssel verschlüsselt.",
    "error_not_done_title": "Nicht ausgeführt",
    "error_reason_required": "Eine Begründung ist erforderlich.",
    "error_on_hold": "Für die Aufzeichnung gilt eine Löschsperre; heben Sie sie zuerst auf.",
    "error_still_recording": "Die Aufzeichnung läuft noch; löschen Sie sie nach dem Gespräch.",
    "error_already_deleted": "Die Aufzeichnung wurde bereits gelöscht.",
    "error_action_failed": "Die Aktion konnte nicht ausgeführt werden.",
    "error_back": "Zurück zu den Aufzeichnungen",
}

MESSAGES: Mapping[str, Mapping[str, str]] = {"de": _DE, "en": _EN}

# The names of the languages in their own language, for the switch in the header.
ENDONYMS: Mapping[str, str] = {"de": "Deutsch", "en": "English"}

_DATE_FORMATS = {"de": "%d.%m.%Y %H:%M:%S", "en": "%Y-%m-%d %H:%M:%S"}


def translate(lang: str, key: str, **params: object) -> str:
    """The text for `key` in `lang` (placeholders filled). A missing key is a bug: KeyError."""
    text = MESSAGES[lang][key]
    return text.format(**params) if params else text


def format_datetime(lang: str, value: str | float | None) -> str:
    """An ISO 8601 UTC time (as the catalog stores it) or epoch seconds, in `lang`'s way;
    a value that is neither is shown as it is."""
    if value is None or value == "":
        return ""
    if isinstance(value, int | float):
        at = datetime.fromtimestamp(float(value), UTC)
    else:
        try:
            at = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return value
        if at.tzinfo is not None:
            at = at.astimezone(UTC)
    return at.strftime(_DATE_FORMATS[lang])


def format_duration(seconds: float | None) -> str:
    """m:ss, or h:mm:ss from an hour on; the same in both languages."""
    if seconds is None:
        return ""
    s = round(seconds)
    return (
        f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"
    )


_LANGUAGE_RANGE = re.compile(r"^(\*|[A-Za-z]{1,8})(?:-[A-Za-z0-9]{1,8})*$")
_QVALUE = re.compile(r"^q=(0(?:\.\d{0,3})?|1(?:\.0{0,3})?)$", re.IGNORECASE)


def negotiate(header: str | None, supported: tuple[str, ...] = LANGUAGES) -> str | None:
    """The supported language the Accept-Language header prefers, or None.

    Ranges match by primary subtag (de-CH -> de; the highest q among a language's ranges
    counts); `*` gives its q to every supported language not named otherwise; q=0
    excludes. Among equal q-values the one listed first wins. Malformed entries are
    skipped, never an error (the header comes from anyone).
    """
    if not header:
        return None
    named: dict[str, tuple[float, int]] = {}  # language -> (q, position)
    wildcard: tuple[float, int] | None = None
    for position, item in enumerate(header[:1000].split(",")[:50]):
        tag, _, params = item.partition(";")
        tag = tag.strip()
        if not _LANGUAGE_RANGE.match(tag):
            continue
        q: float | None = 1.0
        for param in params.split(";") if params else ():
            found = _QVALUE.match(param.strip())
            q = float(found.group(1)) if found and q is not None else None
        if q is None:
            continue  # an unreadable weight: skip the entry
        primary = tag.split("-")[0].lower()
        if primary == "*":
            wildcard = wildcard or (q, position)
        elif primary in supported and (primary not in named or q > named[primary][0]):
            named[primary] = (q, position)
    candidates = dict(named)
    if wildcard is not None:
        for lang in supported:
            candidates.setdefault(lang, wildcard)
    ranked = sorted((-q, position, lang) for lang, (q, position) in candidates.items() if q > 0)
    return ranked[0][2] if ranked else None


@dataclass(frozen=True)
class Translator:
    """What templates call `t`: `t("key", param=...)`, plus the formatting helpers."""

    lang: str

    def __call__(self, key: str, **params: object) -> str:
        return translate(self.lang, key, **params)

    def has(self, key: str) -> bool:
        return key in MESSAGES[self.lang]

    def datetime(self, value: str | float | None) -> str:
        return format_datetime(self.lang, value)

    def value(self, prefix: str, raw: object) -> str:
        """A catalog value (direction, status, consent result ...) in words; an unknown
        one is shown as it is, so new values still display."""
        if raw is None or raw == "":
            return ""
        key = f"{prefix}_{raw}"
        return translate(self.lang, key) if self.has(key) else str(raw)

    def endonym(self, lang: str) -> str:
        return ENDONYMS[lang]
