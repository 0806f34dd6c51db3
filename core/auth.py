"""Users, passwords, login throttling and API tokens: plain services over a session.

No Flask here. Passwords are hashed with werkzeug's scrypt; API tokens are random,
shown once and stored as SHA-256.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash, generate_password_hash

from core.db import utcnow
from core.errors import N_, DomainError
from core.models import ROLES, ApiToken, LoginAttempt, User

USERNAME_RE = re.compile(r"^[A-Za-z0-9_.-]{2,80}$")
TOKEN_PREFIX = "ty_"
MIN_PASSWORD_LENGTH = 8


class AuthError(DomainError):
    """A user or token operation was refused."""


@dataclass(frozen=True)
class LoginResult:
    user: User | None
    error: str | None = None  # "invalid" | "locked"
    retry_after: timedelta | None = None


def hash_password(password: str) -> str:
    return generate_password_hash(password, method="scrypt")


def create_user(
    session: Session,
    username: str,
    password: str,
    role: str,
    *,
    display_name: str = "",
    household_id: int | None = None,
    email: str | None = None,
) -> User:
    if not USERNAME_RE.match(username or ""):
        raise AuthError(N_("username must be 2-80 letters, digits, '_', '.' or '-'"))
    if role not in ROLES:
        raise AuthError(N_("role must be one of %(roles)s"), roles=", ".join(ROLES))
    if len(password or "") < MIN_PASSWORD_LENGTH:
        raise AuthError(N_("password must be at least %(n)d characters"), n=MIN_PASSWORD_LENGTH)
    if session.scalar(select(User.id).where(func.lower(User.username) == username.lower())):
        raise AuthError(N_("user %(name)s already exists"), name=username)
    user = User(
        username=username,
        password_hash=hash_password(password),
        role=role,
        display_name=display_name or username,
        household_id=household_id,
        email=email,
    )
    session.add(user)
    session.flush()
    return user


def get_user(session: Session, username: str) -> User | None:
    return session.scalar(select(User).where(func.lower(User.username) == (username or "").lower()))


def set_password(user: User, password: str) -> None:
    if len(password or "") < MIN_PASSWORD_LENGTH:
        raise AuthError(N_("password must be at least %(n)d characters"), n=MIN_PASSWORD_LENGTH)
    user.password_hash = hash_password(password)


def authenticate(
    session: Session,
    username: str,
    password: str,
    *,
    remote_addr: str = "",
    max_failures: int = 5,
    lockout: timedelta = timedelta(minutes=15),
    now: datetime | None = None,
) -> LoginResult:
    """Check a username and password, with throttling.

    After ``max_failures`` failed attempts for a username within ``lockout``, further
    attempts are refused (even with the right password) until the window has passed.
    Failed attempts are recorded; the caller commits.
    """
    now = now or utcnow()
    key = (username or "").strip().lower()[:80]
    window_start = now - lockout
    failures = list(
        session.scalars(
            select(LoginAttempt.at)
            .where(LoginAttempt.username == key, LoginAttempt.at > window_start)
            .order_by(LoginAttempt.at)
        )
    )
    if len(failures) >= max_failures:
        retry_after = failures[-max_failures] + lockout - now
        return LoginResult(None, "locked", max(retry_after, timedelta(seconds=1)))
    user = get_user(session, key)
    if user is None or not user.active or not check_password_hash(user.password_hash, password or ""):
        session.add(LoginAttempt(username=key, remote_addr=remote_addr[:64], at=now))
        return LoginResult(None, "invalid")
    session.execute(delete(LoginAttempt).where(LoginAttempt.username == key))
    return LoginResult(user)


def _hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def issue_token(session: Session, user: User, name: str = "") -> tuple[ApiToken, str]:
    """Create a personal API token; returns the row and the token text (shown once)."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = ApiToken(user_id=user.id, name=name or "cli", prefix=token[:10], token_hash=_hash_token(token))
    session.add(row)
    session.flush()
    return row, token


def user_for_token(session: Session, token: str) -> User | None:
    """The active user a bearer token belongs to, or None if unknown or revoked."""
    if not token or not token.startswith(TOKEN_PREFIX):
        return None
    row = session.scalar(select(ApiToken).where(ApiToken.token_hash == _hash_token(token)))
    if row is None or row.revoked_at is not None or not row.user.active:
        return None
    row.last_used_at = utcnow()
    return row.user


def revoke_tokens(session: Session, user: User, token_id: int | None = None) -> int:
    """Revoke one token (by id) or all of a user's tokens; returns how many."""
    count = 0
    for row in user.tokens:
        if row.revoked_at is None and (token_id is None or row.id == token_id):
            row.revoked_at = utcnow()
            count += 1
    return count
