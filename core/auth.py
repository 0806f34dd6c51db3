"""Users, passwords, browser sessions, login throttling and API tokens: plain services over a session.

No Flask here. Passwords are hashed with werkzeug's scrypt and must pass ``check_password_rule``
(length, not the username, not a common password); API tokens are random, shown once and
stored as SHA-256.

**Sessions.** A browser session is a row (``WebSession``) whose random id lives in the signed
cookie; ``session_user`` is the one check of a logged-in cookie (the row exists, belongs to
that user, is younger than ``SESSION_LIFETIME``, the user is active and the user's
``session_version`` is the one the session began with). ``end_other_sessions`` raises the
version (password changed or reset, deactivation, "log out everywhere"), deletes the other
rows and revokes the user's API tokens.

**Throttling.** ``reserve_login`` takes one slot in each of three counters *before* the
password is checked, each with a conditional UPDATE (``count < limit``), so parallel guesses
cannot overrun a limit on SQLite or PostgreSQL: per account and client address (a stranger
elsewhere cannot lock an official out), per address (one address guessing many accounts),
and a slower cap per account (many addresses guessing one account). A successful login
gives its slots back. Failed API tokens are counted per address the same way. The counter
itself is ``core.throttle.take_slot``, which other limits share.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash, generate_password_hash

from core import throttle
from core.db import utcnow
from core.errors import N_, DomainError
from core.models import ROLES, ApiToken, LoginLimit, User, WebSession
from core.throttle import client_key

USERNAME_RE = re.compile(r"^[A-Za-z0-9_.-]{2,80}$")
TOKEN_PREFIX = "ty_"
MIN_PASSWORD_LENGTH = 10
MAX_PASSWORD_LENGTH = 200
COMMON_PASSWORDS = Path(__file__).resolve().parent / "data" / "common-passwords.txt.gz"
SESSION_LIFETIME = timedelta(days=30)


class AuthError(DomainError):
    """A user or token operation was refused."""


class LoginLocked(AuthError):
    """Too many attempts under one of the throttle's keys; ``retry_after`` says for how long."""

    def __init__(self, retry_after: timedelta) -> None:
        self.retry_after = max(retry_after, timedelta(seconds=1))
        minutes = max(1, int(self.retry_after.total_seconds() // 60) + 1)
        super().__init__(N_("Too many failed attempts. Try again in %(minutes)d minutes."), minutes=minutes)


@dataclass(frozen=True)
class LoginLimits:
    """How many attempts each throttle key allows in its window (``Settings`` fills it)."""

    per_account_and_address: int = 5
    per_address: int = 30
    per_account: int = 100
    window: timedelta = timedelta(minutes=15)
    account_window: timedelta = timedelta(hours=24)
    tokens_per_address: int = 30  # failed API tokens per address and window


@dataclass(frozen=True)
class LoginResult:
    user: User | None
    error: str | None = None  # "invalid" | "locked"
    retry_after: timedelta | None = None


# -- passwords ---------------------------------------------------------------------------


def hash_password(password: str) -> str:
    return generate_password_hash(password, method="scrypt")


@functools.cache
def common_passwords() -> frozenset[str]:
    """The shipped list of common passwords (lowercased; see core/data/README.md)."""
    with gzip.open(COMMON_PASSWORDS, "rt", encoding="utf-8") as fh:
        return frozenset(line.strip() for line in fh if line.strip())


LEET = str.maketrans(
    {"@": "a", "4": "a", "0": "o", "1": "i", "!": "i", "3": "e", "$": "s", "5": "s", "7": "t"}
)
# words anyone guessing at this system tries first (the project's and the demo village's names)
LOCAL_WORDS = frozenset({"tianyuan", "zhaozhuang", "dengfeng", "village", "cooperative", "hezuoshe"})
MIN_DISTINCT_CHARACTERS = 5


def _bases(folded: str) -> set[str]:
    """What a guesser would try a password as: itself, without the digits and signs around
    it ("Password!!", "admin12345"), and with letters written as digits undone ("P@ssw0rd")."""
    core = folded.strip("0123456789!@#$%^&*()-_=+.,;:?~ ")
    return {folded, core, folded.translate(LEET), core.translate(LEET)} - {""}


def check_password_rule(password: str, username: str) -> None:
    """The one password rule: at least 10 characters (full-width ones counted as what they
    are), at least 5 different characters, not the username nor containing it
    (case-insensitively; for usernames of three characters or more), not a common password,
    nor one with digits or signs added around it or letters written as digits."""
    from core.text import fold_width

    password = password or ""
    if len(password) > MAX_PASSWORD_LENGTH:
        raise AuthError(N_("password must be at most %(n)d characters"), n=MAX_PASSWORD_LENGTH)
    folded = " ".join(fold_width(password).split()).lower()  # full-width as ASCII; blanks as one
    if len(folded) < MIN_PASSWORD_LENGTH:
        raise AuthError(N_("password must be at least %(n)d characters"), n=MIN_PASSWORD_LENGTH)
    if len(set(folded.replace(" ", ""))) < MIN_DISTINCT_CHARACTERS:
        raise AuthError(
            N_("the password needs at least %(n)d different characters"), n=MIN_DISTINCT_CHARACTERS
        )
    name = (username or "").strip().lower()
    if name and (folded == name or (len(name) >= 3 and name in folded)):
        raise AuthError(N_("the password must not be or contain the username"))
    bases = _bases(folded)
    if bases & common_passwords() or any(word in base for base in bases for word in LOCAL_WORDS):
        raise AuthError(N_("this password is one of the most common passwords: choose another"))


# -- users -------------------------------------------------------------------------------


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
    check_password_rule(password, username)
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


def set_password(session: Session, user: User, password: str, *, keep_session: str | None = None) -> None:
    """Set a new password (the user's own change, or an admin's reset) and end every session
    of the user but ``keep_session`` (the browser that changed it), revoking API tokens."""
    check_password_rule(password, user.username)
    user.password_hash = hash_password(password)
    end_other_sessions(session, user, keep_session=keep_session)


def change_password(
    session: Session, user: User, current: str, new: str, *, keep_session: str | None = None
) -> None:
    """The user changes their own password: the current one must be given."""
    if not check_password_hash(user.password_hash, current or ""):
        raise AuthError(N_("the current password is wrong"))
    set_password(session, user, new, keep_session=keep_session)


def deactivate_user(session: Session, user: User) -> None:
    """Disable an account: every session ends at its next request, tokens are revoked."""
    user.active = False
    end_other_sessions(session, user)


def activate_user(user: User) -> None:
    user.active = True


# -- browser sessions --------------------------------------------------------------------


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def open_web_session(session: Session, user: User | None = None, *, now: datetime | None = None) -> str:
    """Record a new browser session (anonymous, or logged in as ``user``); returns the id
    to put in the cookie. Sessions past ``SESSION_LIFETIME`` are pruned on the way."""
    now = now or utcnow()
    session.execute(delete(WebSession).where(WebSession.created_at < now - SESSION_LIFETIME))
    sid = secrets.token_urlsafe(32)
    session.add(
        WebSession(
            key_hash=_digest(sid),
            user_id=user.id if user is not None else None,
            user_version=user.session_version if user is not None else 0,
            created_at=now,
        )
    )
    session.flush()
    return sid


def web_session(session: Session, sid: str | None, *, now: datetime | None = None) -> WebSession | None:
    """The live session with this cookie id, or None (never issued, ended, or too old)."""
    if not sid or not isinstance(sid, str):
        return None
    row = session.scalar(select(WebSession).where(WebSession.key_hash == _digest(sid)))
    if row is None or row.created_at < (now or utcnow()) - SESSION_LIFETIME:
        return None
    return row


def end_web_session(session: Session, sid: str | None) -> None:
    """End one browser session (logout, or the anonymous session a login replaces)."""
    if sid and isinstance(sid, str):
        session.execute(delete(WebSession).where(WebSession.key_hash == _digest(sid)))


def session_user(session: Session, sid: str | None, user_id: object) -> User | None:
    """The user a logged-in cookie may act as, or None: the one check of every cookie login."""
    row = web_session(session, sid)
    if row is None or row.user_id is None or str(row.user_id) != str(user_id):
        return None
    user = session.get(User, row.user_id)
    if user is None or not user.active or row.user_version != user.session_version:
        return None
    return user


def end_other_sessions(session: Session, user: User, *, keep_session: str | None = None) -> None:
    """End every browser session of ``user`` except ``keep_session``, and revoke their API tokens."""
    user.session_version = (user.session_version or 0) + 1
    kept = web_session(session, keep_session)
    keep_id = kept.id if kept is not None and kept.user_id == user.id else None
    session.execute(delete(WebSession).where(WebSession.user_id == user.id, WebSession.id != (keep_id or -1)))
    if keep_id is not None and kept is not None:
        kept.user_version = user.session_version
    revoke_tokens(session, user)
    session.flush()


# -- throttling --------------------------------------------------------------------------


def _take_slot(session: Session, key: str, limit: int, window: timedelta, now: datetime) -> None:
    """Count one attempt under ``key`` (``core.throttle.take_slot``), or raise ``LoginLocked``."""
    try:
        throttle.take_slot(session, key, limit, window, now)
    except throttle.Throttled as exc:
        raise LoginLocked(exc.retry_after) from None


KNOWN_FOR = timedelta(days=90)  # an address an account logged in from is "known" this long


def _keys(username: str, remote_addr: str) -> tuple[str, str, str]:
    name = (username or "").strip().lower()[:80]
    addr = client_key(remote_addr)
    return f"acct-addr:{name}|{addr}", f"addr:{addr}", f"acct:{name}"


def _known_key(username: str, remote_addr: str) -> str:
    return f"known:{(username or '').strip().lower()[:80]}|{client_key(remote_addr)}"[:200]


def is_known_address(
    session: Session, username: str, remote_addr: str, *, now: datetime | None = None
) -> bool:
    """Whether the account logged in successfully from this address (its /64) in the last 90 days."""
    now = now or utcnow()
    seen = session.scalar(
        select(LoginLimit.window_start).where(LoginLimit.key == _known_key(username, remote_addr))
    )
    return seen is not None and seen > now - KNOWN_FOR


def unlock_account(session: Session, username: str) -> int:
    """Clear every login counter of an account (all addresses, and the daily cap); returns how
    many were cleared. Addresses it is known at stay known. ``flask users unlock``."""
    name = (username or "").strip().lower()[:80]
    result = session.execute(
        delete(LoginLimit).where(
            (LoginLimit.key == f"acct:{name}")
            | LoginLimit.key.startswith(f"acct-addr:{name}|", autoescape=True)
        )
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def reserve_login(
    session: Session,
    username: str,
    remote_addr: str,
    limits: LoginLimits = LoginLimits(),
    *,
    now: datetime | None = None,
) -> None:
    """Count a login attempt before its password is checked, or raise ``LoginLocked``.

    The caller commits before checking the password (``check_login``), so the slot is taken
    whatever happens next; a refusal leaves every counter as it was.
    """
    now = now or utcnow()
    pair, addr, account = _keys(username, remote_addr)
    known = is_known_address(session, username, remote_addr, now=now)
    with session.begin_nested():
        _take_slot(session, pair, limits.per_account_and_address, limits.window, now)
        if not known:
            # strangers' failures fill these; an address the account logged in from before is
            # spared them, so nobody can lock an official out of their own office or phone
            _take_slot(session, addr, limits.per_address, limits.window, now)
            _take_slot(session, account, limits.per_account, limits.account_window, now)


def check_login(session: Session, username: str, password: str, remote_addr: str) -> User | None:
    """Check a password after ``reserve_login``; a success gives the attempt's slots back."""
    user = get_user(session, (username or "").strip())
    if user is None or not user.active or not check_password_hash(user.password_hash, password or ""):
        return None
    release_login(session, username, remote_addr)
    return user


def release_login(session: Session, username: str, remote_addr: str) -> None:
    """A reserved attempt succeeded: give its slots back and clear the account-and-address count."""
    pair, addr, account = _keys(username, remote_addr)
    known = _known_key(username, remote_addr)
    now = utcnow()
    was_known = is_known_address(session, username, remote_addr, now=now)  # then it took no such slots
    seen = session.execute(
        update(LoginLimit)
        .where(LoginLimit.key == known)
        .values(window_start=now)
        .execution_options(synchronize_session=False)
    )
    if not seen.rowcount:  # type: ignore[attr-defined]
        try:
            with session.begin_nested():
                session.execute(insert(LoginLimit).values(key=known, window_start=now, count=0))
        except IntegrityError:
            pass  # recorded by a simultaneous login
    session.execute(delete(LoginLimit).where(LoginLimit.key == pair))
    if was_known:
        return
    session.execute(
        update(LoginLimit)
        .where(LoginLimit.key.in_([addr, account]), LoginLimit.count > 0)
        .values(count=LoginLimit.count - 1)
        .execution_options(synchronize_session=False)
    )


def authenticate(
    session: Session,
    username: str,
    password: str,
    *,
    remote_addr: str = "",
    limits: LoginLimits = LoginLimits(),
    now: datetime | None = None,
) -> LoginResult:
    """``reserve_login`` and ``check_login`` in one transaction (services, the CLI, tests).

    The login page commits between the two, so that the slot is taken before the slow
    password hash; in one transaction the counter row stays locked during the check instead.
    """
    try:
        reserve_login(session, username, remote_addr, limits, now=now)
    except LoginLocked as exc:
        return LoginResult(None, "locked", exc.retry_after)
    user = check_login(session, username, password, remote_addr)
    return LoginResult(user, None if user else "invalid")


# -- API tokens --------------------------------------------------------------------------


def _hash_token(token: str) -> str:
    return _digest(token)


def issue_token(session: Session, user: User, name: str = "") -> tuple[ApiToken, str]:
    """Create a personal API token; returns the row and the token text (shown once)."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = ApiToken(user_id=user.id, name=name or "cli", prefix=token[:10], token_hash=_hash_token(token))
    session.add(row)
    session.flush()
    return row, token


def user_for_token(
    session: Session,
    token: str,
    *,
    remote_addr: str = "",
    limits: LoginLimits = LoginLimits(),
    now: datetime | None = None,
) -> User | None:
    """The active user a bearer token belongs to, or None if unknown or revoked.

    A wrong token counts against its address (``limits.tokens_per_address`` a window); once
    that is full every wrong token from the address is refused with ``LoginLocked`` until it
    passes (a valid one still works: it cannot be guessed).
    The caller commits (the count, or the token's last use).
    """
    now = now or utcnow()
    key = f"token-addr:{client_key(remote_addr)}"
    row = None
    if token and token.startswith(TOKEN_PREFIX):
        row = session.scalar(select(ApiToken).where(ApiToken.token_hash == _hash_token(token)))
    if row is not None and row.revoked_at is None and row.user.active:
        # a valid token proves itself (256 random bits): junk from the same address cannot lock it out
        row.last_used_at = now
        return row.user
    full = session.scalar(
        select(LoginLimit.window_start).where(
            LoginLimit.key == key,
            LoginLimit.window_start > now - limits.window,
            LoginLimit.count >= limits.tokens_per_address,
        )
    )
    if full is not None:
        raise LoginLocked(full + limits.window - now)
    _take_slot(session, key, limits.tokens_per_address, limits.window, now)
    return None


def revoke_tokens(session: Session, user: User, token_id: int | None = None) -> int:
    """Revoke one token (by id) or all of a user's tokens; returns how many."""
    count = 0
    for row in user.tokens:
        if row.revoked_at is None and (token_id is None or row.id == token_id):
            row.revoked_at = utcnow()
            count += 1
    return count
