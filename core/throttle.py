"""Counting attempts per key in a fixed window, in the database: the one limiter.

``take_slot`` counts one attempt under a key (``login_limits`` rows: key, window start,
count) with conditional UPDATEs, so parallel requests can never both take the last slot
(PostgreSQL re-checks the WHERE after waiting for the row; SQLite writes one at a time), and
raises ``Throttled`` once the window is full. ``full_for`` asks, without counting, whether a
key is full. Login throttling (``core.auth``) and the trace pages' misses
(``shop.trace.lookup``) use it; every process sees the same counts. No Flask here; the
caller commits.
"""

from __future__ import annotations

import ipaddress
from datetime import datetime, timedelta

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.errors import N_, DomainError
from core.models import LoginLimit

KEY_LENGTH = 200  # login_limits.key


class Throttled(DomainError):
    """Too many attempts under one key; ``retry_after`` says how long until the window ends."""

    def __init__(self, retry_after: timedelta) -> None:
        self.retry_after = max(retry_after, timedelta(seconds=1))
        minutes = max(1, int(self.retry_after.total_seconds() // 60) + 1)
        super().__init__(N_("Too many requests. Try again in %(minutes)d minutes."), minutes=minutes)

    @property
    def retry_after_seconds(self) -> int:
        """For an HTTP ``Retry-After`` header: whole seconds, at least 1."""
        return max(1, int(self.retry_after.total_seconds() + 0.999))


def take_slot(session: Session, key: str, limit: int, window: timedelta, now: datetime) -> None:
    """Count one attempt under ``key``, or raise ``Throttled`` if its window is full.

    Each step is one conditional statement: restart a window that has passed, else add one
    if below ``limit``, else refuse; a key seen for the first time is inserted (a
    simultaneous insert by another request is counted on instead).
    """
    key = key[:KEY_LENGTH]
    for _try in range(3):
        restarted = session.execute(
            update(LoginLimit)
            .where(LoginLimit.key == key, LoginLimit.window_start <= now - window)
            .values(window_start=now, count=1)
            .execution_options(synchronize_session=False)
        )
        if restarted.rowcount:  # type: ignore[attr-defined]
            return
        counted = session.execute(
            update(LoginLimit)
            .where(LoginLimit.key == key, LoginLimit.count < limit)
            .values(count=LoginLimit.count + 1)
            .execution_options(synchronize_session=False)
        )
        if counted.rowcount:  # type: ignore[attr-defined]
            return
        started = session.scalar(select(LoginLimit.window_start).where(LoginLimit.key == key))
        if started is not None:
            raise Throttled(started + window - now)
        try:
            with session.begin_nested():
                session.execute(insert(LoginLimit).values(key=key, window_start=now, count=1))
            return
        except IntegrityError:  # another request created it just now: count on it
            continue
    raise Throttled(window)


def full_for(session: Session, key: str, limit: int, window: timedelta, now: datetime) -> timedelta | None:
    """How long ``key``'s window stays full (None: not full), without counting anything."""
    started = session.scalar(
        select(LoginLimit.window_start).where(
            LoginLimit.key == key[:KEY_LENGTH],
            LoginLimit.window_start > now - window,
            LoginLimit.count >= limit,
        )
    )
    return None if started is None else max(started + window - now, timedelta(seconds=1))


def client_key(remote_addr: str) -> str:
    """The address the limits count: IPv4 as it is, IPv6 by its /64 (one household or
    machine usually holds a whole /64, so counting single addresses would not limit it)."""
    text = (remote_addr or "").strip()[:64]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return text
    if isinstance(address, ipaddress.IPv6Address):
        mapped = address.ipv4_mapped
        if mapped is not None:
            return str(mapped)
        return str(ipaddress.IPv6Network(f"{address}/64", strict=False))
    return str(address)
