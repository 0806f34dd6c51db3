"""The books' settings: organisation name, opening date (建账日期), the charter's reserve rate,
how far ahead a voucher may be dated, and whom villagers ask. One row; callers commit."""

from __future__ import annotations

import datetime as dt
from fractions import Fraction
from typing import Any

from sqlalchemy.orm import Session

from coop.models import BooksSettings
from core import audit, clock
from core.db import utcnow
from core.errors import N_, DomainError

MAX_GRACE_DAYS = 31
EARLIEST_OPENING = dt.date(1949, 10, 1)


class SettingsError(DomainError):
    """A change to the books' settings was refused."""


def get(session: Session) -> BooksSettings:
    """The settings row, or (books not opened yet) unsaved defaults opening on 1 January this year."""
    row = session.get(BooksSettings, 1)
    if row is None:
        row = BooksSettings(
            id=1,
            name="",
            opening_date=dt.date(clock.today().year, 1, 1),
            reserve_percent="10",
            future_grace_days=0,
            contact="",
        )
    return row


def ensure(session: Session, *, opening: dt.date | None = None) -> BooksSettings:
    """The saved settings row, created (opening on ``opening``, default 1 January this year) if absent."""
    row = session.get(BooksSettings, 1)
    if row is None:
        row = get(session)
        if opening is not None:
            _check_opening(opening)
            row.opening_date = opening
        session.add(row)
        session.flush()
        audit.record(session, "books.open", row, details={"opening_date": row.opening_date.isoformat()})
    return row


def _check_opening(day: dt.date) -> None:
    if not (EARLIEST_OPENING <= day <= clock.today()):
        raise SettingsError(N_("the books' opening date must be between 1949-10-01 and today"))


def _check_opening_move(session: Session, day: dt.date) -> None:
    """The opening date moves only while no month is closed and no voucher lies before it: the
    chain checks every voucher against the opening date recorded at its position."""
    from sqlalchemy import func, select

    from coop.models import Period, Voucher

    if session.scalar(select(Period.id).where(Period.closed.is_(True)).limit(1)) is not None:
        raise SettingsError(N_("the books' opening date cannot move once a month has been closed"))
    first = session.scalar(select(func.min(Voucher.date)))
    if first is not None and day > first:
        raise SettingsError(
            N_("the books' opening date cannot be after the first voucher, dated %(date)s"),
            date=first.isoformat(),
        )


def _check_percent(text: str) -> str:
    try:
        value = Fraction(str(text).strip())
    except (ValueError, ZeroDivisionError):
        raise SettingsError(N_("%(text)s is not a percentage"), text=str(text)[:20]) from None
    if not (0 <= value <= 100):
        raise SettingsError(N_("percentages must be between 0 and 100"))
    return str(text).strip()


def update(session: Session, *, user_id: int | None = None, **changes: Any) -> BooksSettings:
    """Change settings (name, opening_date, reserve_percent, future_grace_days, contact); audited."""
    if user_id is not None:
        from core.models import User

        user = session.get(User, user_id)
        if user is None or not user.active or user.role != "admin":
            raise SettingsError(N_("only an administrator can change the books' settings"))
    row = ensure(session)
    allowed = {"name", "opening_date", "reserve_percent", "future_grace_days", "contact"}
    diff: dict[str, list[Any]] = {}
    for key, value in changes.items():
        if key not in allowed:
            raise SettingsError(N_("cannot change %(key)s"), key=key)
        if key == "opening_date":
            _check_opening(value)
            if value != row.opening_date:
                _check_opening_move(session, value)
        elif key == "reserve_percent":
            value = _check_percent(value)
        elif key == "future_grace_days":
            if not isinstance(value, int) or isinstance(value, bool) or not (0 <= value <= MAX_GRACE_DAYS):
                raise SettingsError(N_("the grace must be 0 to %(max)s days"), max=MAX_GRACE_DAYS)
        elif key in ("name", "contact"):
            value = (value or "").strip()[: 120 if key == "name" else 200]
        old = getattr(row, key)
        if old != value:
            diff[key] = [
                old.isoformat() if isinstance(old, dt.date) else old,
                value.isoformat() if isinstance(value, dt.date) else value,
            ]
            setattr(row, key, value)
    if diff:
        row.updated_at, row.updated_by = utcnow(), user_id
        session.flush()
        audit.record(session, "books.settings", row, user_id=user_id, details=diff)
    return row
