"""Sessions, CSRF tokens, login throttling and security headers of the portal.

Everything here is plain state driven by a `now` the caller passes in (the app reads its
clock once per request), so idle expiry and throttling are tested without sleeping.

Sessions live in the portal process's memory only: a random 256-bit token in an HttpOnly,
SameSite=Strict cookie (Secure under TLS) names a server-side record holding the user
name, a CSRF token and the times. A restart logs everyone out, which is the safe side.
The user's role and extensions are re-read from the catalog on every request, so a
removed user or a changed role takes effect at once.

CSRF: every state-changing request must carry the session's token (hidden form field
`csrf` or header `X-CSRF-Token`), compared in constant time; the login form, which has
no session yet, uses a short-lived pre-session token bound to a cookie of its own
(double submit). SameSite=Strict is a second line, not the only one.

Throttling: failed logins are counted per user name and per client address in a sliding
window; over the limit a login is refused with 429 before the password is even checked,
so guessing gets no answer at all while throttled. Unknown names are counted like known
ones (the answer must not tell which names exist).
"""

from __future__ import annotations

import hmac
import secrets
from collections import deque
from dataclasses import dataclass, field

__all__ = [
    "CONTENT_SECURITY_POLICY",
    "LoginThrottle",
    "Session",
    "SessionStore",
    "ThrottleRule",
    "security_headers",
    "tokens_equal",
]

# No scripts at all: the pages are plain forms, an <audio> element and an SVG picture.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; style-src 'self'; img-src 'self'; media-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


def security_headers(tls: bool) -> list[tuple[str, str]]:
    headers = [
        ("content-security-policy", CONTENT_SECURITY_POLICY),
        ("x-frame-options", "DENY"),
        ("x-content-type-options", "nosniff"),
        # Not no-referrer: Chromium then sends "Origin: null" on our own form posts,
        # which the Origin check must refuse. same-origin leaks nothing to other sites.
        ("referrer-policy", "same-origin"),
        ("cross-origin-opener-policy", "same-origin"),
        ("cross-origin-resource-policy", "same-origin"),
        ("permissions-policy", "camera=(), microphone=(), geolocation=()"),
        # Recordings and pages about them must not linger in shared caches or history.
        ("cache-control", "no-store"),
    ]
    if tls:
        headers.append(("strict-transport-security", "max-age=31536000"))
    return headers


def tokens_equal(expected: str, given: str | None) -> bool:
    return given is not None and hmac.compare_digest(expected.encode(), given.encode())


def _token() -> str:
    return secrets.token_urlsafe(32)


@dataclass
class Session:
    token: str
    user: str
    csrf: str
    created_at: float
    last_seen: float
    language: str | None = None  # the user's explicit choice (portal header), if any


class SessionStore:
    """Server-side sessions with idle and absolute expiry."""

    def __init__(self, idle_s: float, max_age_s: float = 12 * 3600.0, limit: int = 10_000) -> None:
        self.idle_s = idle_s
        self.max_age_s = max_age_s
        self.limit = limit
        self._by_token: dict[str, Session] = {}

    def __len__(self) -> int:
        return len(self._by_token)

    def create(self, user: str, now: float, language: str | None = None) -> Session:
        self.expire(now)
        if len(self._by_token) >= self.limit:
            # Bounded memory: the least recently used session goes first.
            oldest = min(self._by_token.values(), key=lambda s: s.last_seen)
            del self._by_token[oldest.token]
        session = Session(_token(), user, _token(), now, now, language)
        self._by_token[session.token] = session
        return session

    def get(self, token: str | None, now: float) -> Session | None:
        """The live session for a cookie value (touching it), or None."""
        if not token:
            return None
        session = self._by_token.get(token)
        if session is None:
            return None
        if now - session.last_seen > self.idle_s or now - session.created_at > self.max_age_s:
            del self._by_token[token]
            return None
        session.last_seen = now
        return session

    def peek(self, token: str | None, now: float) -> Session | None:
        """The live session for a cookie value without touching it (error pages)."""
        session = self._by_token.get(token) if token else None
        if session is None or now - session.last_seen > self.idle_s:
            return None
        return None if now - session.created_at > self.max_age_s else session

    def drop(self, token: str) -> None:
        self._by_token.pop(token, None)

    def drop_user(self, user: str, keep: str | None = None) -> int:
        """End every session of a user (password change, removal) except `keep`."""
        doomed = [t for t, s in self._by_token.items() if s.user == user and t != keep]
        for token in doomed:
            del self._by_token[token]
        return len(doomed)

    def expire(self, now: float) -> None:
        doomed = [
            t
            for t, s in self._by_token.items()
            if now - s.last_seen > self.idle_s or now - s.created_at > self.max_age_s
        ]
        for token in doomed:
            del self._by_token[token]


@dataclass(frozen=True)
class ThrottleRule:
    failures: int  # allowed failures within the window
    window_s: float


@dataclass
class LoginThrottle:
    """Sliding-window counts of failed logins per user name and per address."""

    per_user: ThrottleRule = ThrottleRule(5, 900.0)
    per_address: ThrottleRule = ThrottleRule(20, 900.0)
    max_keys: int = 50_000
    _failures: dict[tuple[str, str], deque[float]] = field(default_factory=dict)

    def _times(self, kind: str, key: str, rule: ThrottleRule, now: float) -> deque[float]:
        times = self._failures.get((kind, key))
        if times is None:
            return deque()
        while times and now - times[0] >= rule.window_s:
            times.popleft()
        if not times:
            del self._failures[(kind, key)]
        return times

    def retry_after(self, user: str, address: str, now: float) -> float:
        """Seconds until a login for (user, address) is accepted again; 0 if allowed now."""
        wait = 0.0
        for kind, key, rule in (
            ("user", user.lower(), self.per_user),
            ("addr", address, self.per_address),
        ):
            times = self._times(kind, key, rule, now)
            if len(times) >= rule.failures:
                wait = max(wait, times[-rule.failures] + rule.window_s - now)
        return wait

    def failed(self, user: str, address: str, now: float) -> None:
        if len(self._failures) >= self.max_keys:
            self._failures.clear()  # bounded memory under a flood; limits restart
        for kind, key, rule in (
            ("user", user.lower(), self.per_user),
            ("addr", address, self.per_address),
        ):
            times = self._failures.setdefault((kind, key), deque(maxlen=rule.failures * 2))
            times.append(now)

    def succeeded(self, user: str) -> None:
        """A right password clears the user's count (not the address's)."""
        self._failures.pop(("user", user.lower()), None)
