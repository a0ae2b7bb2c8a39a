"""Recording views: the searchable list, one recording, its audio, its picture, admin
actions (legal hold, delete) and the audit log.

Visibility: admins and supervisors see every row; an agent sees rows whose extension is
one of its own. A row a user may not see answers exactly like one that does not exist
(404), for every route that names a recording. Every list view, recording view, play
(each audio request, ranges included) and download is an audit entry, written before the
bytes leave.

Texts come from the catalogue (i18n.py) in the request's language: dates, relative
expiry, filter problems, values such as direction and consent result. Error outcomes
are catalogue keys until the page is rendered.
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from b2bua.archive.catalog import DIRECTIONS, Catalog, CatalogError, ListFilter
from b2bua.archive.users import User
from b2bua.portal.audio import DecryptError, PlainRecording, parse_range, timeline_svg
from b2bua.portal.i18n import Translator, format_duration
from b2bua.portal.state import Ctx, Portal

__all__ = [
    "audio",
    "audit_log",
    "delete",
    "detail",
    "download",
    "hold",
    "list_recordings",
    "timeline",
]

CONSENT_RESULTS = (
    "accepted", "declined", "timeout", "not_asked", "employee_no_consent", "withdrawn",
    "abandoned",
)  # fmt: skip
PLAYABLE = ("complete", "truncated")
_ID = re.compile(r"^[0-9A-HJKMNP-TV-Z]{26}$")  # catalog.new_id: Crockford base32
_DATE = re.compile(r"^\d{4}-\d\d-\d\d$")
_TEXT_FILTER = re.compile(r"^[0-9A-Za-z+*#._@ ()/-]{1,64}$")
MAX_PAGE = 10_000
DONE_MESSAGES = {"deleted": "done_deleted", "hold": "done_hold", "release": "done_release"}
# Consent evidence fields whose values are times or words of the catalogue.
_CONSENT_TIMES = ("at", "withdrawn_at")
_CONSENT_WORDS = {"mode": "mode", "result": "consent", "language": "language"}


# ----------------------------------------------------------------- presentation


def _done(t: Translator, request: Request) -> str | None:
    key = DONE_MESSAGES.get(request.query_params.get("done", ""))
    return None if key is None else t(key)


def _expires(t: Translator, iso: str | None, now: float) -> str:
    if not iso:
        return ""
    at = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    days = (at.timestamp() - now) / 86400
    if days < 0:
        rel = t("expires_overdue")
    elif days < 1:
        rel = t("expires_today")
    elif round(days) == 1:
        rel = t("expires_in_one_day")
    else:
        rel = t("expires_in_days", days=f"{days:.0f}")
    return f"{t.datetime(iso)} ({rel})"


def _present(t: Translator, row: dict[str, Any], now: float) -> dict[str, Any]:
    consent = row.get("consent") or {}
    return {
        **row,
        "started": t.datetime(row["started_at"]),
        "ended": t.datetime(row["ended_at"]),
        "duration": format_duration(row["duration_s"]),
        "consent": consent.get("result") or "",
        "expires": _expires(t, row["expires_at"], now),
    }


def consent_evidence(t: Translator, consent: dict[str, Any]) -> list[tuple[str, str, bool]]:
    """(label, value, is_code) of the consent record in `t`'s language; empty fields left
    out; is_code marks values shown as code (the prompt's hash)."""
    out = []
    for key, value in consent.items():
        if value is None or value == "":
            continue
        label_key = f"consent_field_{key}"
        label = t(label_key) if t.has(label_key) else key
        if key in _CONSENT_TIMES:
            text = t.datetime(value if isinstance(value, str | int | float) else str(value))
        elif key in _CONSENT_WORDS:
            text = t.value(_CONSENT_WORDS[key], value)
        else:
            text = str(value)
        out.append((label, text, key == "prompt_sha256"))
    return out


# ----------------------------------------------------------------- list


def _filters(t: Translator, request: Request) -> tuple[ListFilter, dict[str, str], list[str]]:
    """The query string as a ListFilter, the values to refill the form, and problems."""
    q = {k: request.query_params.get(k, "").strip()[:64] for k in
         ("from", "to", "number", "extension", "direction", "consent")}  # fmt: skip
    problems: list[str] = []
    since = until = None
    for key in ("from", "to"):
        if q[key]:
            field = t(f"filter_{key}")
            if not _DATE.match(q[key]):
                problems.append(t("filter_bad_date", field=field))
                q[key] = ""
                continue
            try:
                day = datetime.strptime(q[key], "%Y-%m-%d").replace(tzinfo=UTC)
            except ValueError:
                problems.append(t("filter_invalid_date", field=field))
                q[key] = ""
                continue
            if key == "from":
                since = day.timestamp()
            else:
                until = (day + timedelta(days=1)).timestamp()  # the whole day
    for key in ("number", "extension"):
        if q[key] and not _TEXT_FILTER.match(q[key]):
            problems.append(t("filter_bad_text", field=t(f"filter_{key}")))
            q[key] = ""
    if q["direction"] not in ("", *DIRECTIONS):
        problems.append(t("filter_bad_direction"))
        q["direction"] = ""
    if q["consent"] not in ("", *CONSENT_RESULTS):
        problems.append(t("filter_bad_consent"))
        q["consent"] = ""
    filt = ListFilter(
        since=since,
        until=until,
        number=q["number"] or None,
        extension=q["extension"] or None,
        direction=q["direction"] or None,
        consent=q["consent"] or None,
    )
    return filt, q, problems


def _page_number(request: Request) -> int:
    text = request.query_params.get("page", "1")
    return min(MAX_PAGE, max(1, int(text))) if text.isdigit() and len(text) < 7 else 1


def visible_rows(cat: Catalog, user: User, filt: ListFilter, want: int) -> list[dict[str, Any]]:
    """The first `want` rows this user may see, newest first.

    The catalog filters by one extension; an agent with several gets one query per own
    extension, merged (each query is bounded by `want`, so pages stay cheap).
    """
    if user.role in ("admin", "supervisor"):
        return cat.list(replace(filt, limit=want))
    extensions = [e for e in user.extensions if filt.extension in (None, e)]
    rows: list[dict[str, Any]] = []
    for ext in extensions:
        rows += cat.list(replace(filt, extension=ext, limit=want))
    rows.sort(key=lambda r: (r["started_at"], r["id"]), reverse=True)
    return rows[:want]


async def list_recordings(portal: Portal, request: Request, ctx: Ctx) -> Response:
    t = Translator(ctx.lang)
    filt, q, problems = _filters(t, request)
    page = _page_number(request)
    size = portal.page_size
    offset = (page - 1) * size
    now = portal.clock()

    def query(cat: Catalog) -> list[dict[str, Any]]:
        rows = visible_rows(cat, ctx.user, filt, offset + size + 1)
        shown = rows[offset : offset + size]
        details = {k: v for k, v in q.items() if v}
        cat.audit.append(
            ctx.user.name, "list", None, ctx.source,
            {"filters": details, "page": page, "ids": [r["id"] for r in shown]},
        )  # fmt: skip
        return rows

    rows = await portal.db(query)
    base = {k: v for k, v in q.items() if v}
    newer = f"/recordings?{urlencode({**base, 'page': page - 1})}" if page > 1 else None
    more = len(rows) > offset + size
    older = f"/recordings?{urlencode({**base, 'page': page + 1})}" if more else None
    return portal.page(
        "list.html",
        ctx,
        rows=[_present(t, r, now) for r in rows[offset : offset + size]],
        q=q,
        directions=DIRECTIONS,
        consents=CONSENT_RESULTS,
        page=page,
        newer_url=newer,
        older_url=older,
        flash=_done(t, request),
        error="; ".join(problems) or None,
    )


# ----------------------------------------------------------------- one recording


def _visible_row(cat: Catalog, ctx: Ctx, record_id: str) -> dict[str, Any] | None:
    if not _ID.match(record_id):
        return None
    row = cat.get(record_id)
    if row is None or not ctx.may_see(row):
        return None
    return row


async def detail(portal: Portal, request: Request, ctx: Ctx) -> Response:
    record_id = request.path_params["id"]

    def load(cat: Catalog) -> dict[str, Any] | None:
        row = _visible_row(cat, ctx, record_id)
        if row is not None:
            cat.audit.append(ctx.user.name, "view", record_id, ctx.source, {})
        return row

    row = await portal.db(load)
    if row is None:
        return portal.not_found(ctx=ctx)
    t = Translator(ctx.lang)
    playable = row["status"] in PLAYABLE and row["path"] is not None
    return portal.page(
        "detail.html",
        ctx,
        r=_present(t, row, portal.clock()),
        consent=consent_evidence(t, row.get("consent") or {}),
        playable=playable,
        flash=_done(t, request),
    )


async def _plain(
    portal: Portal, request: Request, ctx: Ctx, action: str | None
) -> tuple[dict[str, Any], PlainRecording] | Response:
    """Authorize, decrypt (cached), and log `action` with the requested range."""
    record_id = request.path_params["id"]
    identities = portal.identities
    range_header = request.headers.get("range")

    def load(cat: Catalog) -> tuple[dict[str, Any], PlainRecording] | str | None:
        row = _visible_row(cat, ctx, record_id)
        if row is None or row["status"] not in PLAYABLE or row["path"] is None:
            return None
        if identities is None:
            return "no identity"
        try:
            plain = portal.cache.get(record_id, str(row["sha256"]), cat.abs_path(row["path"]),
                                     identities)  # fmt: skip
        except DecryptError as exc:
            cat.audit.append(ctx.user.name, f"{action or 'view'}_failed", record_id, ctx.source,
                             {"error": str(exc)})  # fmt: skip
            return "error_open_missing" if exc.missing else "error_open_failed"
        if action is not None:
            details = {"range": range_header[:100]} if range_header else {}
            cat.audit.append(ctx.user.name, action, record_id, ctx.source, details)
        return row, plain

    result = await portal.db(load)
    if result is None:
        return portal.not_found(ctx=ctx)
    if result == "no identity":
        return portal.error(503, "error_unavailable_title", "error_no_identity", ctx=ctx)
    if isinstance(result, str):
        return portal.error(500, "error_open_title", result, ctx=ctx)
    return result


async def audio(portal: Portal, request: Request, ctx: Ctx) -> Response:
    got = await _plain(portal, request, ctx, "play")
    if isinstance(got, Response):
        return got
    _, plain = got
    size = len(plain.wav)
    headers = {"accept-ranges": "bytes", "content-type": "audio/wav"}
    wanted = parse_range(request.headers.get("range"), size)
    if wanted == "unsatisfiable":
        return Response(status_code=416, headers={**headers, "content-range": f"bytes */{size}"})
    if wanted is None or isinstance(wanted, str):
        return Response(plain.wav, headers=headers, media_type="audio/wav")
    first, last = wanted
    headers["content-range"] = f"bytes {first}-{last}/{size}"
    return Response(plain.wav[first : last + 1], status_code=206, headers=headers,
                    media_type="audio/wav")  # fmt: skip


async def download(portal: Portal, request: Request, ctx: Ctx) -> Response:
    got = await _plain(portal, request, ctx, "download")
    if isinstance(got, Response):
        return got
    row, plain = got
    name = f"recording-{row['id']}.wav"  # the id is Crockford base32: safe in a header
    return Response(
        plain.wav,
        media_type="audio/wav",
        headers={"content-disposition": f'attachment; filename="{name}"'},
    )


async def timeline(portal: Portal, request: Request, ctx: Ctx) -> Response:
    got = await _plain(portal, request, ctx, None)
    if isinstance(got, Response):
        return got
    row, plain = got
    pauses = row.get("pauses") or []
    t = Translator(ctx.lang)
    svg = timeline_svg(
        plain,
        labels=(t("timeline_external"), t("timeline_office")),
        pauses=[p for p in pauses if isinstance(p, list)],
        sides=(t("timeline_left"), t("timeline_right")),
    )
    # The picture holds words of one language: caches must keep languages apart.
    return Response(svg, media_type="image/svg+xml", headers={"content-language": ctx.lang})


# ----------------------------------------------------------------- admin actions


async def _admin_action(portal: Portal, request: Request, ctx: Ctx, action: str) -> Response:
    record_id = request.path_params["id"]
    reason = ctx.field("reason", 300)
    hold_flag = ctx.field("hold", 1) == "1"

    def act(cat: Catalog) -> str:
        row = _visible_row(cat, ctx, record_id)
        if row is None:
            return "404"
        if ctx.user.role != "admin":
            return "403"
        if not reason:
            return "error_reason_required"
        # The catalog's own refusals, told in the page's language (it re-checks them).
        if row["status"] == "deleted":
            return "error_already_deleted"
        if action == "delete" and row["status"] == "recording":
            return "error_still_recording"
        if action == "delete" and row["legal_hold"]:
            return "error_on_hold"
        try:
            if action == "delete":
                cat.delete(record_id, actor=ctx.user.name, source=ctx.source, reason=reason)
                return "deleted"
            cat.set_hold(record_id, hold_flag, actor=ctx.user.name, source=ctx.source,
                         reason=reason)  # fmt: skip
        except CatalogError:
            return "error_action_failed"
        return "hold" if hold_flag else "release"

    outcome = await portal.db(act)
    if outcome == "404":
        return portal.not_found(ctx=ctx)
    if outcome == "403":
        return portal.error(403, "error_forbidden_title", "error_admin_only", ctx=ctx)
    if outcome == "deleted":
        portal.cache.forget(record_id)
        return RedirectResponse("/recordings?done=deleted", status_code=303)
    if outcome in ("hold", "release"):
        return RedirectResponse(f"/recordings/{record_id}?done={outcome}", status_code=303)
    return portal.error(409, "error_not_done_title", outcome, ctx=ctx)


async def hold(portal: Portal, request: Request, ctx: Ctx) -> Response:
    return await _admin_action(portal, request, ctx, "hold")


async def delete(portal: Portal, request: Request, ctx: Ctx) -> Response:
    return await _admin_action(portal, request, ctx, "delete")


# ----------------------------------------------------------------- audit log


async def audit_log(portal: Portal, request: Request, ctx: Ctx) -> Response:
    size = 100
    text = request.query_params.get("before", "")
    before = int(text) if text.isdigit() and len(text) < 12 else None

    def load(cat: Catalog) -> tuple[Any, list[Any], int]:
        cat.audit.append(ctx.user.name, "audit_view", None, ctx.source,
                         {"before": before})  # fmt: skip
        head, _ = cat.audit.head()
        top = head + 1 if before is None else min(before, head + 1)
        # Sequence numbers are contiguous from 1, so a page is (top - size, top).
        entries = cat.audit.entries(since_seq=max(0, top - size - 1), limit=size)
        entries = [e for e in entries if e.seq < top][::-1]
        return cat.audit.verify(), entries, head

    verified, entries, head = await portal.db(load)
    rows = [{**e.to_json(), "details_text": json.dumps(e.details, sort_keys=True)} for e in entries]
    older = f"/audit?before={entries[-1].seq}" if entries and entries[-1].seq > 1 else None
    newer = None
    if entries and entries[0].seq < head:
        newer = f"/audit?before={entries[0].seq + size + 1}"
    return portal.page(
        "audit.html", ctx, verified=verified, entries=rows, older_url=older, newer_url=newer
    )
