"""Accounting periods: closing a month so nothing more can be posted into it.

``coop.ledger`` refuses postings into a closed month (``ledger.is_closed``); this module
closes months and lists them. Callers commit.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from coop.ledger import LedgerError
from coop.models import Period
from core import audit
from core.db import utcnow
from core.errors import N_


def close_period(session: Session, year: int, month: int, *, user_id: int | None = None) -> Period:
    """Close a month: nothing can be posted into it afterwards."""
    if not (1 <= month <= 12):
        raise LedgerError(N_("month must be 1-12"))
    period = session.scalar(select(Period).where(Period.year == year, Period.month == month))
    if period is None:
        period = Period(year=year, month=month)
        session.add(period)
    if period.closed:
        raise LedgerError(N_("period %(year)s-%(month)02d is already closed"), year=year, month=month)
    period.closed, period.closed_at, period.closed_by = True, utcnow(), user_id
    session.flush()
    audit.record(session, "period.close", period, user_id=user_id, details={"period": f"{year}-{month:02d}"})
    return period


def closed_periods(session: Session) -> set[tuple[int, int]]:
    return {(p.year, p.month) for p in session.scalars(select(Period).where(Period.closed.is_(True)))}
