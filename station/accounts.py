"""Operator accounts of the web page: roles, argon2 password hashes, server-side sessions.

Roles, each including the one before: ``viewer`` (reads passages, alarms, gates, people and
acknowledges nothing), ``operator`` (also acknowledges alarms, opens doors, changes door modes and
asks gates to re-send missing events), ``admin`` (also sees the administration view: audit,
commands, operator actions).

A session is a random token in an HttpOnly cookie; the database keeps only its SHA-256, so a copy
of the database opens no session.  Passwords are hashed with argon2id (argon2-cffi's defaults) and
re-hashed on login when those defaults change.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, select, update

from station.messages import SAFE_NAME
from station.store import Store, now_ms

ROLES = ("viewer", "operator", "admin")
MIN_PASSWORD_CHARS = 10
SESSION_TOKEN_BYTES = 32
_hasher = PasswordHasher()
#: Verified against for unknown user names, so a wrong name costs as long as a wrong password.
_DUMMY_HASH = _hasher.hash("menjin: no such user")


class AccountError(ValueError):
    """A refused account change; the text is for the operator."""


@dataclass(frozen=True)
class User:
    name: str
    role: str

    def may(self, role: str) -> bool:
        """True when this user's role includes ``role``."""
        return ROLES.index(self.role) >= ROLES.index(role)


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_CHARS:
        raise AccountError(f"password too short: at least {MIN_PASSWORD_CHARS} characters")


class Accounts:
    """Users and sessions in the station's database; every method blocks (call from a thread)."""

    def __init__(self, store: Store, *, session_hours: float = 12.0) -> None:
        self.store = store
        self.users = store.t["users"]
        self.sessions = store.t["sessions"]
        self.session_ms = int(session_hours * 3_600_000)

    def add(self, name: str, role: str, password: str) -> None:
        if not SAFE_NAME.match(name):
            raise AccountError(f"user name {name!r}: letters, digits, '.', '_' and '-' only")
        if role not in ROLES:
            raise AccountError(f"role {role!r}: one of {', '.join(ROLES)}")
        _check_password(password)
        with self.store.engine.begin() as conn:
            if conn.scalar(select(self.users.c.name).where(self.users.c.name == name)):
                raise AccountError(f"user {name!r} already exists (use passwd to change it)")
            conn.execute(self.users.insert().values(
                name=name, role=role, password_hash=_hasher.hash(password), created_ms=now_ms()))

    def remove(self, name: str) -> None:
        """Delete the user and end their sessions."""
        with self.store.engine.begin() as conn:
            gone = conn.execute(delete(self.users).where(self.users.c.name == name)).rowcount
            conn.execute(delete(self.sessions).where(self.sessions.c.user == name))
        if not gone:
            raise AccountError(f"no user {name!r}")

    def passwd(self, name: str, password: str) -> None:
        """Set a new password and end the user's other sessions."""
        _check_password(password)
        with self.store.engine.begin() as conn:
            changed = conn.execute(update(self.users).where(self.users.c.name == name)
                                   .values(password_hash=_hasher.hash(password))).rowcount
            conn.execute(delete(self.sessions).where(self.sessions.c.user == name))
        if not changed:
            raise AccountError(f"no user {name!r}")

    def list(self) -> list[User]:
        with self.store.engine.connect() as conn:
            rows = conn.execute(select(self.users.c.name, self.users.c.role)
                                .order_by(self.users.c.name)).all()
        return [User(r.name, r.role) for r in rows]

    def verify(self, name: str, password: str) -> User | None:
        """The user when the password is right, else None (same cost for unknown names)."""
        with self.store.engine.connect() as conn:
            row = conn.execute(select(self.users).where(self.users.c.name == name)).first()
        try:
            _hasher.verify(row.password_hash if row else _DUMMY_HASH, password)
        except (VerificationError, InvalidHashError):
            return None
        if row is None:
            return None
        if _hasher.check_needs_rehash(row.password_hash):
            with self.store.engine.begin() as conn:
                conn.execute(update(self.users).where(self.users.c.name == name)
                             .values(password_hash=_hasher.hash(password)))
        return User(row.name, row.role)

    def start_session(self, user: User) -> str:
        """A new session token for the cookie."""
        token = secrets.token_urlsafe(SESSION_TOKEN_BYTES)
        now = now_ms()
        with self.store.engine.begin() as conn:
            conn.execute(delete(self.sessions).where(self.sessions.c.expires_ms < now))
            conn.execute(self.sessions.insert().values(
                token_hash=_token_hash(token), user=user.name, created_ms=now,
                expires_ms=now + self.session_ms))
        return token

    def session_user(self, token: str) -> User | None:
        """The signed-in user of a session token, None when unknown or expired."""
        s, u = self.sessions, self.users
        with self.store.engine.connect() as conn:
            row = conn.execute(
                select(u.c.name, u.c.role).select_from(s.join(u, u.c.name == s.c.user))
                .where(s.c.token_hash == _token_hash(token), s.c.expires_ms > now_ms())
            ).first()
        return User(row.name, row.role) if row else None

    def end_session(self, token: str) -> None:
        with self.store.engine.begin() as conn:
            conn.execute(
                delete(self.sessions).where(self.sessions.c.token_hash == _token_hash(token)))
