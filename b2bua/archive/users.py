"""Portal users, kept in the catalog database: name, role, extensions, argon2id hash.

Roles: `admin` (everything, including users and holds), `supervisor` (all recordings),
`agent` (only the recordings of its own extensions, so an agent needs at least one).
Passwords are hashed with argon2id (argon2-cffi's defaults, RFC 9106's second
recommended parameter set); `verify_password` re-hashes when those parameters change and
spends the same work on an unknown name as on a known one, so the answer time does not
tell which names exist. Every change is an audit entry.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from b2bua.archive.audit import immediate
from b2bua.archive.catalog import Catalog

__all__ = [
    "MIN_PASSWORD_LENGTH",
    "ROLES",
    "User",
    "UserError",
    "add_user",
    "check_user_fields",
    "get_user",
    "list_users",
    "remove_user",
    "set_password",
    "verify_password",
]

ROLES = ("admin", "supervisor", "agent")
MIN_PASSWORD_LENGTH = 10
_NAME = re.compile(r"^[a-z0-9][a-z0-9._@-]{0,63}$")
_EXTENSION = re.compile(r"^[0-9A-Za-z*#+._-]{1,32}$")
_HASHER = PasswordHasher()  # argon2id


class UserError(ValueError):
    """A user operation refused: bad name, role, password, or unknown/duplicate user."""


@dataclass(frozen=True)
class User:
    name: str
    role: str
    extensions: tuple[str, ...]
    created_at: float
    updated_at: float


def check_user_fields(name: str, role: str | None, extensions: Sequence[str] | None) -> None:
    if not _NAME.match(name):
        raise UserError(
            f"user name {name!r}: use 1-64 characters a-z 0-9 . _ @ -, starting with a "
            "letter or digit"
        )
    if role is not None and role not in ROLES:
        raise UserError(f"role must be one of {', '.join(ROLES)} (got {role!r})")
    for ext in extensions or ():
        if not _EXTENSION.match(ext):
            raise UserError(f"extension {ext!r} is not a valid extension number")
    if role == "agent" and not extensions:
        raise UserError("an agent needs at least one extension (--extension)")


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise UserError(f"password too short: at least {MIN_PASSWORD_LENGTH} characters")
    if password != password.strip() or "\n" in password:
        raise UserError("password must not start or end with white space")


def _hasher(hasher: PasswordHasher | None) -> PasswordHasher:
    return hasher if hasher is not None else _HASHER


def get_user(catalog: Catalog, name: str) -> User | None:
    row = catalog.conn.execute(
        "SELECT name, role, extensions, created_at, updated_at FROM users WHERE name = ?",
        (name,),
    ).fetchone()
    if row is None:
        return None
    return User(row[0], row[1], tuple(json.loads(row[2])), row[3], row[4])


def list_users(catalog: Catalog) -> list[User]:
    rows = catalog.conn.execute(
        "SELECT name, role, extensions, created_at, updated_at FROM users ORDER BY name"
    )
    return [User(r[0], r[1], tuple(json.loads(r[2])), r[3], r[4]) for r in rows]


def add_user(
    catalog: Catalog,
    name: str,
    password: str,
    role: str,
    extensions: Sequence[str] = (),
    *,
    actor: str,
    source: str,
    now: float | None = None,
    hasher: PasswordHasher | None = None,
) -> User:
    check_user_fields(name, role, extensions)
    _check_password(password)
    when = catalog.clock() if now is None else now
    digest = _hasher(hasher).hash(password)
    exts = sorted(set(extensions))
    with immediate(catalog.conn):
        if get_user(catalog, name) is not None:
            raise UserError(f"user {name!r} exists (use `b2bua users passwd` to change it)")
        catalog.conn.execute(
            "INSERT INTO users (name, role, extensions, password_hash, created_at, updated_at)"
            " VALUES (?,?,?,?,?,?)",
            (name, role, json.dumps(exts), digest, when, when),
        )
        catalog.audit.append(
            actor, "user_add", name, source, {"role": role, "extensions": exts}, when
        )
    return User(name, role, tuple(exts), when, when)


def set_password(
    catalog: Catalog,
    name: str,
    password: str,
    *,
    actor: str,
    source: str,
    now: float | None = None,
    hasher: PasswordHasher | None = None,
) -> None:
    _check_password(password)
    when = catalog.clock() if now is None else now
    digest = _hasher(hasher).hash(password)
    with immediate(catalog.conn):
        cur = catalog.conn.execute(
            "UPDATE users SET password_hash = ?, updated_at = ? WHERE name = ?",
            (digest, when, name),
        )
        if cur.rowcount == 0:
            raise UserError(f"no user {name!r}")
        catalog.audit.append(actor, "user_passwd", name, source, {}, when)


def remove_user(
    catalog: Catalog, name: str, *, actor: str, source: str, now: float | None = None
) -> None:
    with immediate(catalog.conn):
        cur = catalog.conn.execute("DELETE FROM users WHERE name = ?", (name,))
        if cur.rowcount == 0:
            raise UserError(f"no user {name!r}")
        catalog.audit.append(actor, "user_remove", name, source, {}, now)


def verify_password(
    catalog: Catalog, name: str, password: str, *, hasher: PasswordHasher | None = None
) -> User | None:
    """The user if the password is right, else None (same work for unknown names)."""
    h = _hasher(hasher)
    row = catalog.conn.execute("SELECT password_hash FROM users WHERE name = ?", (name,)).fetchone()
    if row is None:
        with contextlib.suppress(VerificationError):
            h.verify(_dummy_hash(h), password + "\x00")
        return None
    stored = str(row[0])
    try:
        h.verify(stored, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return None
    if h.check_needs_rehash(stored):
        with immediate(catalog.conn):
            catalog.conn.execute(
                "UPDATE users SET password_hash = ? WHERE name = ?", (h.hash(password), name)
            )
    return get_user(catalog, name)


_DUMMY: dict[int, str] = {}


def _dummy_hash(h: PasswordHasher) -> str:
    key = id(h)
    if key not in _DUMMY:
        _DUMMY[key] = h.hash("not a password of anyone")
    return _DUMMY[key]
