"""Tables shared by every domain: users, API tokens, browser sessions, login limits and the audit log."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from core.db import Base, UTCDateTime, utcnow

ROLES = ("admin", "official", "oversight", "farmer", "customer")
# "oversight": a member of the 民主理财小组 (democratic financial oversight group): reads the village
# books and disclosure drafts and signs disclosures off; never posts, reviews vouchers or approves.


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(80), unique=True)
    display_name: Mapped[str] = mapped_column(String(120), default="")
    email: Mapped[str | None] = mapped_column(String(200))
    phone: Mapped[str | None] = mapped_column(String(40))
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(20))
    # A farmer belongs to a member household (coop_households); the FK is by table name
    # so that core does not import coop.
    household_id: Mapped[int | None] = mapped_column(ForeignKey("coop_households.id", ondelete="SET NULL"))
    locale: Mapped[str | None] = mapped_column(String(10))
    active: Mapped[bool] = mapped_column(default=True)
    # Raised whenever every session of the user must end (password changed or reset,
    # deactivated, "log out everywhere"); a browser session carries the version it began with.
    session_version: Mapped[int] = mapped_column(default=0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    tokens: Mapped[list[ApiToken]] = relationship(back_populates="user", cascade="all, delete-orphan")

    # Flask-Login protocol (plain attributes, no Flask import)
    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def is_active(self) -> bool:
        return self.active

    @property
    def is_anonymous(self) -> bool:
        return False

    def get_id(self) -> str:
        return str(self.id)

    def has_role(self, *roles: str) -> bool:
        return self.role in roles

    @property
    def is_staff(self) -> bool:
        return self.role in ("admin", "official")

    def __repr__(self) -> str:
        return f"<User {self.username} ({self.role})>"


class ApiToken(Base):
    """A personal API token. Only its SHA-256 is stored; the token is shown once."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(80), default="")
    prefix: Mapped[str] = mapped_column(String(16))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    user: Mapped[User] = relationship(back_populates="tokens")


class LoginLimit(Base):
    """A throttle counter (``core.throttle``): attempts under one key in a fixed window.

    Keys are ``acct-addr:<username>|<address>``, ``addr:<address>``, ``acct:<username>`` and
    ``token-addr:<address>`` (logins and API tokens), and ``trace-miss:<address>`` (public
    trace lookups that found nothing, ``shop.trace.lookup``). A slot is taken with a
    conditional UPDATE *before* the password is checked (``core.auth.reserve_login``), so
    parallel guesses cannot overrun the limit.
    """

    __tablename__ = "login_limits"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    window_start: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    count: Mapped[int] = mapped_column(default=0)


class WebSession(Base):
    """A browser session as the server knows it: the cookie holds a random id, this row its hash.

    Flask's session is a signed cookie that could be replayed; a cookie whose row is gone
    (logged out, logged in anew, ended by "log out everywhere") is emptied on arrival. A
    logged-in session also records the user's ``session_version`` it began with.
    """

    __tablename__ = "web_sessions"

    id: Mapped[int] = mapped_column(primary_key=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    user_version: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)


class AuditEntry(Base):
    """Who did what, when: every change to members, shares, vouchers, products, disclosures."""

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_entity", "entity_type", "entity_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    action: Mapped[str] = mapped_column(String(60))
    entity_type: Mapped[str] = mapped_column(String(60))
    entity_id: Mapped[str] = mapped_column(String(60))
    details: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    note: Mapped[str | None] = mapped_column(Text)
