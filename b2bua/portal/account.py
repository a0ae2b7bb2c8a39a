"""Login, logout and password change.

The login form has no session to hold a CSRF token yet, so GET /login sets a short-lived
random token in a cookie of its own (HttpOnly, SameSite=Strict, path /login) and in the
form; POST /login needs both to match (double submit) and, when the browser sends one,
an Origin of this site. A successful login always starts a new session (no fixation);
a password change ends the user's other sessions and rotates the current one.
"""

from __future__ import annotations

import secrets
from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from b2bua.archive.catalog import Catalog
from b2bua.archive.users import MIN_PASSWORD_LENGTH, User, UserError, set_password, verify_password
from b2bua.portal.security import tokens_equal
from b2bua.portal.state import Ctx, Portal, client_address, read_form, same_origin

__all__ = ["login_form", "login_submit", "logout", "password_form", "password_submit"]

LOGIN_COOKIE = "b2bua_login"
LOGIN_COOKIE_AGE_S = 1800
MAX_NAME = 64


def _login_page(
    portal: Portal, *, status: int = 200, error: str | None = None, username: str = "",
    flash: str | None = None, retry_after: float | None = None,
) -> Response:  # fmt: skip
    token = secrets.token_urlsafe(24)
    headers = {"retry-after": str(max(1, int(retry_after) + 1))} if retry_after else None
    response = portal.render(
        "login.html", code=status, headers=headers, login_csrf=token, username=username,
        error=error, flash=flash,
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
    flash = None
    if request.query_params.get("expired"):
        flash = "Your session has ended. Please log in again."
    elif request.query_params.get("bye"):
        flash = "You are logged out."
    return _login_page(portal, flash=flash)


async def login_submit(portal: Portal, request: Request) -> Response:
    if not same_origin(request):
        return portal.error(403, "Forbidden", "Cross-site request refused.")
    form = await read_form(request)
    given = form.get("csrf")
    if not tokens_equal(
        request.cookies.get(LOGIN_COOKIE, ""), given if isinstance(given, str) else None
    ) or not request.cookies.get(LOGIN_COOKIE):
        return _login_page(portal, status=403, error="The login form expired. Please try again.")
    name_value, password_value = form.get("username"), form.get("password")
    name = name_value.strip()[:MAX_NAME] if isinstance(name_value, str) else ""
    password = password_value if isinstance(password_value, str) else ""
    address = client_address(request)
    now = portal.clock()
    wait = portal.throttle.retry_after(name, address, now)
    if wait > 0:
        return _login_page(
            portal,
            status=429,
            username=name,
            retry_after=wait,
            error=f"Too many failed logins. Try again in {int(wait) + 1} seconds.",
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
        return _login_page(portal, status=401, username=name, error="Wrong user name or password.")
    portal.throttle.succeeded(name)
    old = request.cookies.get(portal.cookie_name)
    if old:
        portal.sessions.drop(old)
    session = portal.sessions.create(user.name, now)
    response = RedirectResponse("/recordings", status_code=303)
    portal.set_session_cookie(response, session)
    response.delete_cookie(LOGIN_COOKIE, path="/login")
    return response


async def logout(portal: Portal, request: Request, ctx: Ctx) -> Response:
    portal.sessions.drop(ctx.session.token)
    await portal.db(lambda cat: cat.audit.append(ctx.user.name, "logout", None, ctx.source, {}))
    response = RedirectResponse("/login?bye=1", status_code=303)
    response.delete_cookie(portal.cookie_name, path="/", secure=portal.tls, httponly=True)
    return response


def _password_page(portal: Portal, ctx: Ctx, status: int = 200, **extra: Any) -> Response:
    return portal.render(
        "password.html", code=status, user=ctx.user, csrf=ctx.session.csrf,
        min_length=MIN_PASSWORD_LENGTH, **extra,
    )  # fmt: skip


async def password_form(portal: Portal, request: Request, ctx: Ctx) -> Response:
    return _password_page(portal, ctx)


async def password_submit(portal: Portal, request: Request, ctx: Ctx) -> Response:
    current, new, repeat = (ctx.field(k, 1024) for k in ("current", "new", "repeat"))
    address = client_address(request)
    now = portal.clock()
    wait = portal.throttle.retry_after(ctx.user.name, address, now)
    if wait > 0:
        return _password_page(
            portal, ctx, 429, error=f"Too many failed attempts. Try again in {int(wait) + 1} s."
        )
    if new != repeat:
        return _password_page(portal, ctx, 400, error="The new passwords differ.")
    name = ctx.user.name

    def change(cat: Catalog) -> str | None:
        if verify_password(cat, name, current, hasher=portal.hasher) is None:
            return "wrong"
        try:
            set_password(cat, name, new, actor=name, source=ctx.source, hasher=portal.hasher)
        except UserError as exc:
            return str(exc)
        return None

    problem = await portal.db(change)
    if problem == "wrong":
        portal.throttle.failed(name, address, now)
        return _password_page(portal, ctx, 400, error="The current password is wrong.")
    if problem is not None:
        return _password_page(portal, ctx, 400, error=problem)
    # Whoever else holds a session of this user loses it; this browser gets a new one.
    portal.sessions.drop_user(name)
    session = portal.sessions.create(name, now)
    response = portal.render(
        "password.html", user=ctx.user, csrf=session.csrf,
        min_length=MIN_PASSWORD_LENGTH, flash="Your password has been changed.",
    )  # fmt: skip
    portal.set_session_cookie(response, session)
    return response
