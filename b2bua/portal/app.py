"""The portal's ASGI application: `create_app(config)` -> Starlette.

Routes (all pages server-rendered HTML, no script):

    GET  /login, POST /login, POST /logout
    GET  /recordings                       search, filter, paginate (newest first)
    GET  /recordings/{id}                  player, timeline, consent evidence, download
    GET  /recordings/{id}/audio.wav        decrypted WAV, HTTP Range (206/416)
    GET  /recordings/{id}/download         the same as an attachment
    GET  /recordings/{id}/timeline.svg     both channels over time
    POST /recordings/{id}/hold|delete      admins only
    GET  /audit                            admins only
    GET/POST /account/password
    POST /language, POST /login/language   the language switch (header, login page)
    GET  /static/portal.css

Every response carries the security headers (security.security_headers) through a small
ASGI middleware, error pages included.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial

from argon2 import PasswordHasher
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from b2bua.archive.retention import RetentionPolicy
from b2bua.config import Config
from b2bua.portal import account, recordings
from b2bua.portal.audio import load_identities
from b2bua.portal.security import security_headers
from b2bua.portal.state import Portal, authed
from b2bua.portal.templates import STYLESHEET

__all__ = ["PortalError", "SecurityHeaders", "create_app"]


class PortalError(Exception):
    """The portal can not start (unreadable identity file)."""


class SecurityHeaders:
    """Adds the security headers to every HTTP response (unless the view set its own)."""

    def __init__(self, app: ASGIApp, tls: bool) -> None:
        self.app = app
        self.headers = [(k.encode(), v.encode()) for k, v in security_headers(tls)]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {k.lower() for k, _ in message.get("headers", [])}
                extra = [(k, v) for k, v in self.headers if k not in present]
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, send_with_headers)


def create_app(
    config: Config,
    *,
    clock: Callable[[], float] = time.time,
    hasher: PasswordHasher | None = None,
    page_size: int = 25,
) -> Starlette:
    """The portal for one config. `clock` and `hasher` are for tests (fake time, cheap
    argon2 parameters); production uses the wall clock and argon2-cffi's defaults."""
    identities: list[str] | None = None
    if config.portal.identity is not None:
        try:
            identities = load_identities(config.portal.identity)
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise PortalError(f"portal.identity {config.portal.identity}: {exc}") from None
    portal = Portal(
        directory=config.recording.directory,
        policy=RetentionPolicy.from_config(config.recording),
        identities=identities,
        tls=config.portal.tls_cert is not None,
        idle_s=config.portal.session_idle_s,
        clock=clock,
        hasher=hasher,
        page_size=page_size,
        default_language=config.portal.language,
    )

    async def home(request: Request) -> Response:
        return RedirectResponse("/recordings", status_code=303)

    async def stylesheet(request: Request) -> Response:
        return Response(STYLESHEET, media_type="text/css")

    async def no_icon(request: Request) -> Response:
        return Response(status_code=204)

    async def not_found(request: Request, exc: Exception) -> Response:
        return portal.not_found(lang=portal.anonymous_language(request))

    async def http_error(request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        lang = portal.anonymous_language(request)
        if status == 404:
            return portal.not_found(lang=lang)
        return portal.error(status, "error_title", "error_generic", lang=lang)

    async def server_error(request: Request, exc: Exception) -> Response:
        lang = portal.anonymous_language(request)
        return portal.error(500, "error_internal_title", "error_internal", lang=lang)

    routes = [
        Route("/", home),
        Route("/static/portal.css", stylesheet),
        Route("/favicon.ico", no_icon),
        Route("/login", partial(account.login_form, portal), methods=["GET"]),
        Route("/login", partial(account.login_submit, portal), methods=["POST"]),
        Route("/login/language", partial(account.choose_login_language, portal), methods=["POST"]),
        Route("/logout", authed(portal, account.logout), methods=["POST"]),
        Route("/language", authed(portal, account.choose_language), methods=["POST"]),
        Route("/account/password", authed(portal, account.password_form), methods=["GET"]),
        Route("/account/password", authed(portal, account.password_submit), methods=["POST"]),
        Route("/recordings", authed(portal, recordings.list_recordings)),
        Route("/recordings/{id}", authed(portal, recordings.detail)),
        Route("/recordings/{id}/audio.wav", authed(portal, recordings.audio)),
        Route("/recordings/{id}/download", authed(portal, recordings.download)),
        Route("/recordings/{id}/timeline.svg", authed(portal, recordings.timeline)),
        Route("/recordings/{id}/hold", authed(portal, recordings.hold), methods=["POST"]),
        Route("/recordings/{id}/delete", authed(portal, recordings.delete), methods=["POST"]),
        Route("/audit", authed(portal, recordings.audit_log, roles=("admin",))),
    ]
    app = Starlette(
        routes=routes,
        exception_handlers={404: not_found, HTTPException: http_error, 500: server_error},
    )
    app.state.portal = portal
    app.add_middleware(SecurityHeaders, tls=portal.tls)
    return app
