"""The portal's shared state and the request plumbing every view goes through.

`Portal` holds what lives as long as the process: the config, the age identities (read
once at start; the portal is one of the two places allowed to hold them), sessions, the
login throttle and the decrypted-audio cache. The catalog is opened per request inside
a worker thread (`db`), because SQLite connections belong to the thread that opened them
and argon2 and decryption must not block the event loop.

`authed` wraps a view: it finds the session, re-reads the user, turns an expired or
missing session into a redirect to the login page, checks the role, and for every
state-changing method checks the Origin header and the CSRF token before the view runs.
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
from b2bua.portal.security import LoginThrottle, Session, SessionStore, tokens_equal
from b2bua.portal.templates import environment

__all__ = ["Ctx", "Portal", "View", "authed"]

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

    async def db(self, fn: Callable[[Catalog], T]) -> T:
        """Run fn with an open catalog in a worker thread."""

        def run() -> T:
            with Catalog.open(self.directory, policy=self.policy, clock=self.clock) as cat:
                return fn(cat)

        return await run_in_threadpool(run)

    def render(
        self, name: str, *, code: int = 200, headers: Mapping[str, str] | None = None, **ctx: Any
    ) -> HTMLResponse:
        ctx.setdefault("user", None)
        ctx.setdefault("csrf", "")
        ctx.setdefault("flash", None)
        ctx.setdefault("error", None)
        body = self.templates.get_template(name).render(**ctx)
        return HTMLResponse(body, status_code=code, headers=dict(headers or {}))

    def error(self, status: int, title: str, message: str, ctx: Ctx | None = None) -> HTMLResponse:
        extra: dict[str, Any] = {}
        if ctx is not None:
            extra = {"user": ctx.user, "csrf": ctx.session.csrf}
        return self.render(
            "error.html", code=status, status=status, title=title, message=message, **extra
        )

    def not_found(self, ctx: Ctx | None = None) -> HTMLResponse:
        # The same answer for "does not exist" and "not yours" (no existence oracle).
        return self.error(404, "Not found", "There is no such page or recording.", ctx)

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
        form: FormData | None = None
        if request.method not in SAFE_METHODS:
            if not same_origin(request):
                return portal.error(403, "Forbidden", "Cross-site request refused.")
            form = await read_form(request)
            given = form.get("csrf")
            if not isinstance(given, str):
                given = request.headers.get("x-csrf-token")
            if not tokens_equal(session.csrf, given):
                return portal.error(
                    403, "Forbidden", "The form has expired. Please reload the page and retry."
                )
        ctx = Ctx(session, user, form, audit_source(request))
        if roles is not None and user.role not in roles:
            return portal.error(403, "Forbidden", "Your role does not allow this.", ctx)
        return await view(portal, request, ctx)

    return endpoint
