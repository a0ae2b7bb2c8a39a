"""The portal's shared state and the request plumbing every view goes through.

`Portal` holds what lives as long as the process: the config, the age identities (read
once at start; the portal is one of the two places allowed to hold them), sessions, the
login throttle and the decrypted-audio cache. The catalog is opened per request inside
a worker thread (`db`), because SQLite connections belong to the thread that opened them
and argon2 and decryption must not block the event loop.

`authed` wraps a view: it finds the session, re-reads the user, turns an expired or
missing session into a redirect to the login page, checks the role, and for every
state-changing method checks the Origin header and the CSRF token before the view runs.
It also settles the page language (i18n.py): session choice, language cookie,
Accept-Language, `[portal] language`, in that order.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from argon2 import PasswordHasher
from jinja2 import Environment
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from b2bua.archive.catalog import Catalog
from b2bua.archive.retention import RetentionPolicy
from b2bua.archive.users import User, get_user
from b2bua.portal.audio import DecryptedCache
from b2bua.portal.i18n import DEFAULT_LANGUAGE, LANGUAGES, Translator, negotiate
from b2bua.portal.security import LoginThrottle, Session, SessionStore, tokens_equal
from b2bua.portal.templates import environment

__all__ = ["Ctx", "Portal", "View", "authed", "safe_next"]

T = TypeVar("T")
SAFE_METHODS = ("GET", "HEAD")
MAX_FORM_FIELDS = 20


@dataclass
class Portal:
    directory: Path
    policy: RetentionPolicy
    identities: list[str] | None
    tls: bool
    idle_s: float
    clock: Callable[[], float] = time.time
    hasher: PasswordHasher | None = None
    page_size: int = 25
    default_language: str = DEFAULT_LANGUAGE
    sessions: SessionStore = field(init=False)
    throttle: LoginThrottle = field(default_factory=LoginThrottle)
    cache: DecryptedCache = field(default_factory=DecryptedCache)
    templates: Environment = field(default_factory=environment)

    def __post_init__(self) -> None:
        self.sessions = SessionStore(self.idle_s)

    @property
    def cookie_name(self) -> str:
        # The __Host- prefix makes the browser insist on Secure, Path=/ and no Domain.
        return "__Host-b2bua_session" if self.tls else "b2bua_session"

    @property
    def language_cookie(self) -> str:
        return "__Host-b2bua_lang" if self.tls else "b2bua_lang"

    def language_for(self, request: Request, session: Session | None = None) -> str:
        """The page language: explicit choice (session, then cookie), Accept-Language,
        then the configured default."""
        if session is not None and session.language in LANGUAGES:
            return session.language
        chosen = request.cookies.get(self.language_cookie)
        if chosen in LANGUAGES:
            return str(chosen)
        return negotiate(request.headers.get("accept-language")) or self.default_language

    def anonymous_language(self, request: Request) -> str:
        """The language for a page rendered outside `authed` (login, app-level errors)."""
        session = self.sessions.peek(request.cookies.get(self.cookie_name), self.clock())
        return self.language_for(request, session)

    def set_language_cookie(self, response: Response, lang: str) -> None:
        response.set_cookie(
            self.language_cookie,
            lang,
            max_age=365 * 86400,
            path="/",
            secure=self.tls,
            httponly=True,
            samesite="strict",
        )

    async def db(self, fn: Callable[[Catalog], T]) -> T:
        """Run fn with an open catalog in a worker thread."""

        def run() -> T:
            with Catalog.open(self.directory, policy=self.policy, clock=self.clock) as cat:
                return fn(cat)

        return await run_in_threadpool(run)

    def render(
        self,
        name: str,
        *,
        lang: str,
        code: int = 200,
        headers: Mapping[str, str] | None = None,
        **ctx: Any,
    ) -> HTMLResponse:
        ctx.setdefault("user", None)
        ctx.setdefault("csrf", "")
        ctx.setdefault("flash", None)
        ctx.setdefault("error", None)
        ctx.setdefault("here", "/recordings")
        template = self.templates.get_template(name)
        body = template.render(lang=lang, t=Translator(lang), languages=LANGUAGES, **ctx)
        headers = {**(headers or {}), "content-language": lang}
        return HTMLResponse(body, status_code=code, headers=headers)

    def page(
        self,
        name: str,
        ctx: Ctx,
        *,
        code: int = 200,
        headers: Mapping[str, str] | None = None,
        **extra: Any,
    ) -> HTMLResponse:
        """A page for a logged-in user (header with user, CSRF token, language switch)."""
        extra.setdefault("csrf", ctx.session.csrf)
        return self.render(
            name, lang=ctx.lang, code=code, headers=headers, user=ctx.user, here=ctx.here, **extra
        )

    def error(
        self,
        status: int,
        title_key: str,
        message_key: str,
        *,
        lang: str | None = None,
        ctx: Ctx | None = None,
    ) -> HTMLResponse:
        """An error page; title and message are catalogue keys (i18n.py)."""
        t = Translator(ctx.lang if ctx is not None else lang or self.default_language)
        fields: dict[str, Any] = {
            "status": status,
            "title": t(title_key),
            "message": t(message_key),
        }
        if ctx is not None:
            # The language switch leads back to the list, not to this URL: an error page
            # repeats nothing of the request (a hidden recording's 404 is byte-identical
            # to a missing one's).
            fields.update(user=ctx.user, csrf=ctx.session.csrf, here="/recordings")
        return self.render("error.html", lang=t.lang, code=status, **fields)

    def not_found(self, *, lang: str | None = None, ctx: Ctx | None = None) -> HTMLResponse:
        # The same answer for "does not exist" and "not yours" (no existence oracle).
        return self.error(404, "error_not_found_title", "error_not_found", lang=lang, ctx=ctx)

    def set_session_cookie(self, response: Response, session: Session) -> None:
        response.set_cookie(
            self.cookie_name,
            session.token,
            path="/",
            secure=self.tls,
            httponly=True,
            samesite="strict",
        )


def client_address(request: Request) -> str:
    return request.client.host if request.client is not None else "unknown"


def audit_source(request: Request) -> str:
    return f"portal:{client_address(request)}"


def safe_next(target: str) -> str:
    """`target` if it is a path on this site, else /recordings (no open redirect)."""
    if (
        not target.startswith("/")
        or target.startswith(("//", "/\\"))
        or len(target) > 1000
        or any(ord(c) < 0x20 for c in target)
    ):
        return "/recordings"
    return target


def same_origin(request: Request) -> bool:
    """False when the browser says the request comes from another origin.

    Browsers send Origin on every POST; a request without it (curl, old clients) falls
    back on the CSRF token alone.
    """
    origin = request.headers.get("origin")
    if origin is None:
        return True
    host = request.headers.get("host", "")
    return origin in (f"http://{host}", f"https://{host}")


async def read_form(request: Request) -> FormData:
    return await request.form(max_files=0, max_fields=MAX_FORM_FIELDS)


@dataclass(frozen=True)
class Ctx:
    """A request of a logged-in user."""

    session: Session
    user: User
    form: FormData | None
    source: str
    lang: str = DEFAULT_LANGUAGE
    here: str = "/recordings"  # this page, for the language switch to come back to

    @property
    def sees_all(self) -> bool:
        return self.user.role in ("admin", "supervisor")

    def may_see(self, row: Mapping[str, Any]) -> bool:
        return self.sees_all or row.get("extension") in self.user.extensions

    def field(self, name: str, limit: int = 500) -> str:
        if self.form is None:
            return ""
        value = self.form.get(name)
        return value.strip()[:limit] if isinstance(value, str) else ""


View = Callable[[Portal, Request, Ctx], Awaitable[Response]]


def authed(
    portal: Portal, view: View, roles: tuple[str, ...] | None = None
) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        now = portal.clock()
        token = request.cookies.get(portal.cookie_name)
        session = portal.sessions.get(token, now)
        if session is None:
            target = "/login?expired=1" if token else "/login"
            return RedirectResponse(target, status_code=303)
        user = await portal.db(lambda cat: get_user(cat, session.user))
        if user is None:  # removed while logged in
            portal.sessions.drop_user(session.user)
            return RedirectResponse("/login", status_code=303)
        lang = portal.language_for(request, session)
        form: FormData | None = None
        if request.method not in SAFE_METHODS:
            if not same_origin(request):
                return portal.error(403, "error_forbidden_title", "error_cross_site", lang=lang)
            form = await read_form(request)
            given = form.get("csrf")
            if not isinstance(given, str):
                given = request.headers.get("x-csrf-token")
            if not tokens_equal(session.csrf, given):
                return portal.error(403, "error_forbidden_title", "error_form_expired", lang=lang)
        here = "/recordings"
        if request.method in SAFE_METHODS:
            query = request.url.query
            here = safe_next(request.url.path + (f"?{query}" if query else ""))
        ctx = Ctx(session, user, form, audit_source(request), lang, here)
        if roles is not None and user.role not in roles:
            return portal.error(403, "error_forbidden_title", "error_role", ctx=ctx)
        return await view(portal, request, ctx)

    return endpoint
