"""Login, logout, password change and the language switch.

The login form has no session to hold a CSRF token yet, so GET /login sets a short-lived
random token in a cookie of its own (HttpOnly, SameSite=Strict, path /login) and in the
form; POST /login needs both to match (double submit) and, when the browser sends one,
an Origin of this site. A successful login always starts a new session (no fixation);
a password change ends the user's other sessions and rotates the current one.

The language switch (POST /language in the page header, POST /login/language on the login
page) is a state change like any other: the first needs the session's CSRF token, the
second the login form's double-submit token. The choice goes into the session and into a
cookie, so the login page after a logout keeps it too.
"""

from __future__ import annotations

import secrets

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from b2bua.archive.catalog import Catalog
from b2bua.archive.users import MIN_PASSWORD_LENGTH, User, UserError, set_password, verify_password
from b2bua.portal.i18n import LANGUAGES, translate
from b2bua.portal.security import tokens_equal
from b2bua.portal.state import Ctx, Portal, client_address, read_form, safe_next, same_origin

__all__ = [
    "choose_language",
    "choose_login_language",
    "login_form",
    "login_submit",
    "logout",
    "password_form",
    "password_submit",
]

LOGIN_COOKIE = "b2bua_login"
LOGIN_COOKIE_AGE_S = 1800
MAX_NAME = 64


def _login_page(
    portal: Portal, lang: str, *, status: int = 200, error: str | None = None,
    username: str = "", flash: str | None = None, retry_after: float | None = None,
) -> Response:  # fmt: skip
    token = secrets.token_urlsafe(24)
    headers = {"retry-after": str(max(1, int(retry_after) + 1))} if retry_after else None
    response = portal.render(
        "login.html", lang=lang, code=status, headers=headers, login_csrf=token,
        username=username, error=error, flash=flash,
    )  # fmt: skip
    response.set_cookie(
        LOGIN_COOKIE,
        token,
        max_age=LOGIN_COOKIE_AGE_S,
        path="/login",
        secure=portal.tls,
        httponly=True,
        samesite="strict",
    )
    return response


async def login_form(portal: Portal, request: Request) -> Response:
    if portal.sessions.get(request.cookies.get(portal.cookie_name), portal.clock()) is not None:
        return RedirectResponse("/recordings", status_code=303)
    lang = portal.language_for(request)
    flash = None
    if request.query_params.get("expired"):
        flash = translate(lang, "login_expired_session")
    elif request.query_params.get("bye"):
        flash = translate(lang, "login_bye")
    return _login_page(portal, lang, flash=flash)


def _login_token_ok(request: Request, given: object) -> bool:
    cookie = request.cookies.get(LOGIN_COOKIE, "")
    return bool(cookie) and tokens_equal(cookie, given if isinstance(given, str) else None)


async def login_submit(portal: Portal, request: Request) -> Response:
    lang = portal.language_for(request)
    if not same_origin(request):
        return portal.error(403, "error_forbidden_title", "error_cross_site", lang=lang)
    form = await read_form(request)
    if not _login_token_ok(request, form.get("csrf")):
        return _login_page(portal, lang, status=403, error=translate(lang, "login_form_expired"))
    name_value, password_value = form.get("username"), form.get("password")
    name = name_value.strip()[:MAX_NAME] if isinstance(name_value, str) else ""
    password = password_value if isinstance(password_value, str) else ""
    address = client_address(request)
    now = portal.clock()
    wait = portal.throttle.retry_after(name, address, now)
    if wait > 0:
        return _login_page(
            portal,
            lang,
            status=429,
            username=name,
            retry_after=wait,
            error=translate(lang, "login_throttled", seconds=int(wait) + 1),
        )
    source = f"portal:{address}"

    def check(cat: Catalog) -> User | None:
        user = verify_password(cat, name, password[:1024], hasher=portal.hasher)
        if user is None:
            cat.audit.append("-", "login_failed", name or None, source, {})
        else:
            cat.audit.append(user.name, "login", user.name, source, {"role": user.role})
        return user

    user = await portal.db(check)
    if user is None:
        portal.throttle.failed(name, address, now)
        return _login_page(
            portal, lang, status=401, username=name, error=translate(lang, "login_wrong")
        )
    portal.throttle.succeeded(name)
    old = request.cookies.get(portal.cookie_name)
    if old:
        portal.sessions.drop(old)
    # A language picked on the login page is an explicit choice: the session keeps it.
    chosen = request.cookies.get(portal.language_cookie)
    session = portal.sessions.create(user.name, now, chosen if chosen in LANGUAGES else None)
    response = RedirectResponse("/recordings", status_code=303)
    portal.set_session_cookie(response, session)
    # Same attributes as when it was set: over TLS no cookie of ours goes out without Secure.
    response.delete_cookie(
        LOGIN_COOKIE, path="/login", secure=portal.tls, httponly=True, samesite="strict"
    )
    return response


async def logout(portal: Portal, request: Request, ctx: Ctx) -> Response:
    portal.sessions.drop(ctx.session.token)
    await portal.db(lambda cat: cat.audit.append(ctx.user.name, "logout", None, ctx.source, {}))
    response = RedirectResponse("/login?bye=1", status_code=303)
    response.delete_cookie(
        portal.cookie_name, path="/", secure=portal.tls, httponly=True, samesite="strict"
    )
    return response


def _password_page(
    portal: Portal, ctx: Ctx, status: int = 200, error: str | None = None, **params: object
) -> Response:
    """The password form; `error` is a catalogue key, filled with `params`."""
    message = translate(ctx.lang, error, **params) if error is not None else None
    return portal.page(
        "password.html", ctx, code=status, min_length=MIN_PASSWORD_LENGTH, error=message
    )


async def password_form(portal: Portal, request: Request, ctx: Ctx) -> Response:
    return _password_page(portal, ctx)


async def password_submit(portal: Portal, request: Request, ctx: Ctx) -> Response:
    current, new, repeat = (ctx.field(k, 1024) for k in ("current", "new", "repeat"))
    address = client_address(request)
    now = portal.clock()
    wait = portal.throttle.retry_after(ctx.user.name, address, now)
    if wait > 0:
        return _password_page(portal, ctx, 429, "password_throttled", seconds=int(wait) + 1)
    if new != repeat:
        return _password_page(portal, ctx, 400, "password_differ")

    name = ctx.user.name

    def change(cat: Catalog) -> str | None:
        if verify_password(cat, name, current, hasher=portal.hasher) is None:
            return "wrong"
        # The rules of users.py, checked here first so the answer is in the page's language.
        if len(new) < MIN_PASSWORD_LENGTH:
            return "password_too_short"
        if new != new.strip() or "\n" in new:
            return "password_whitespace"
        try:
            set_password(cat, name, new, actor=name, source=ctx.source, hasher=portal.hasher)
        except UserError:
            return "password_refused"
        return None

    problem = await portal.db(change)
    if problem == "wrong":
        portal.throttle.failed(name, address, now)
        return _password_page(portal, ctx, 400, "password_wrong")
    if problem is not None:
        return _password_page(portal, ctx, 400, problem, min_length=MIN_PASSWORD_LENGTH)
    # Whoever else holds a session of this user loses it; this browser gets a new one.
    portal.sessions.drop_user(name)
    session = portal.sessions.create(name, now, ctx.session.language)
    response = portal.page(
        "password.html", ctx, csrf=session.csrf, min_length=MIN_PASSWORD_LENGTH,
        flash=translate(ctx.lang, "password_changed"),
    )  # fmt: skip
    portal.set_session_cookie(response, session)
    return response


def _chosen_language(value: object) -> str | None:
    return value if isinstance(value, str) and value in LANGUAGES else None


async def choose_language(portal: Portal, request: Request, ctx: Ctx) -> Response:
    """POST /language (CSRF-checked by `authed`): keep the choice, go back to the page."""
    lang = _chosen_language(ctx.field("language", 8))
    if lang is None:
        return portal.error(400, "error_title", "error_bad_language", ctx=ctx)
    ctx.session.language = lang
    response = RedirectResponse(safe_next(ctx.field("next", 1000)), status_code=303)
    portal.set_language_cookie(response, lang)
    return response


async def choose_login_language(portal: Portal, request: Request) -> Response:
    """POST /login/language: the login page's switch, guarded by the login form's token."""
    current = portal.language_for(request)
    if not same_origin(request):
        return portal.error(403, "error_forbidden_title", "error_cross_site", lang=current)
    form = await read_form(request)
    if not _login_token_ok(request, form.get("csrf")):
        return _login_page(
            portal, current, status=403, error=translate(current, "login_form_expired")
        )
    lang = _chosen_language(form.get("language"))
    if lang is None:
        return portal.error(400, "error_title", "error_bad_language", lang=current)
    response = RedirectResponse("/login", status_code=303)
    portal.set_language_cookie(response, lang)
    return response
