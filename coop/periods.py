"""Accounting periods: closing months in order, and (admins only) reopening the latest one.

Rules (the date rules of a voucher itself are ``coop.ledger.check_date``, inside
``validate_voucher``):

- months close in order: the next month that can be closed is the one after the latest closed
  month, or the books' opening month while none is closed; closing twice is refused;
- a month closes only once it has ended (today, in the configured zone, is after its last day);
- reopening takes an admin and a reason, reopens only the latest closed month (so the closed
  months stay one unbroken run from the opening month), is refused for a year whose distribution
  is posted (such a year is corrected by ``coop.corrections``), is recorded on the row and in the
  audit log, and withdraws every published disclosure that covers the month.

Callers commit.
"""

from __future__ import annotations

import datetime as dt
import unicodedata
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from coop import settings
from coop.ledger import LedgerError, latest_closed, lock_head, month_end
from coop.models import Distribution, Period
from core import audit, clock
from core.db import utcnow
from core.errors import N_
from core.models import User

MAX_REASON = 500


def _label(year: int, month: int) -> str:
    return f"{year}-{month:02d}"


def _next_month(year: int, month: int) -> tuple[int, int]:
    return (year + 1, 1) if month == 12 else (year, month + 1)


def next_to_close(session: Session) -> tuple[int, int]:
    """The one month that may be closed next (it may not have ended yet)."""
    last = latest_closed(session)
    if last is None:
        opening = settings.get(session).opening_date
        return opening.year, opening.month
    return _next_month(*last)


def has_ended(year: int, month: int) -> bool:
    """Whether the month is over in the configured zone (today is after its last day)."""
    return clock.today() > month_end(year, month)


def require_ended(year: int, month: int) -> None:
    if not has_ended(year, month):
        raise LedgerError(
            N_("%(period)s has not ended yet: it can be closed from %(from)s"),
            period=_label(year, month),
            **{"from": (month_end(year, month) + dt.timedelta(days=1)).isoformat()},
        )


def close_period(
    session: Session, year: int, month: int, *, user_id: int | None = None, year_end: bool = False
) -> Period:
    """Close a month: nothing can be posted into it (or before it) afterwards.

    December closes with the year-end (``coop.distribution.post_distribution`` passes
    ``year_end=True`` once the year's income is closed and distributed): closed on its own it would
    lock the year out of its year-end for good. ``user_id``, when given, must be an official.
    """
    if not (1 <= month <= 12):
        raise LedgerError(N_("month must be 1-12"))
    if user_id is not None:
        user = session.get(User, user_id)
        if user is None or not user.active or user.role not in ("admin", "official"):
            raise LedgerError(N_("only an official can close a period"))
    lock_head(session)  # one closer or poster at a time: a posting re-checks its date holding it
    period = session.scalar(select(Period).where(Period.year == year, Period.month == month))
    if period is not None and period.closed:
        raise LedgerError(N_("period %(year)s-%(month)02d is already closed"), year=year, month=month)
    nxt = next_to_close(session)
    if (year, month) != nxt:
        if latest_closed(session) is None and (year, month) < nxt:
            raise LedgerError(
                N_("%(period)s is before the books' opening date %(opening)s: there is nothing to close"),
                period=_label(year, month),
                opening=settings.get(session).opening_date.isoformat(),
            )
        if (year, month) < nxt:
            raise LedgerError(
                N_("%(period)s lies within the closed months (closed up to %(closed)s)"),
                period=_label(year, month),
                closed=_label(*(latest_closed(session) or nxt)),
            )
        raise LedgerError(
            N_("months close in order: close %(next)s first"), next=_label(*nxt), period=_label(year, month)
        )
    require_ended(year, month)
    if month == 12 and not year_end:
        raise LedgerError(
            N_(
                "December %(year)s closes with the year-end: post the %(year)s year-end (Year end page, "
                "or flask coop year-end %(year)s --post), which closes the year's income into 收益分配 "
                "and then closes December"
            ),
            year=year,
        )
    if period is None:
        period = Period(year=year, month=month)
        session.add(period)
    period.closed, period.closed_at, period.closed_by = True, utcnow(), user_id
    session.flush()
    audit.record(session, "period.close", period, user_id=user_id, details={"period": _label(year, month)})
    return period


def reopen_period(session: Session, year: int, month: int, *, reason: str, user_id: int | None) -> Period:
    """Reopen the latest closed month (admins only, with a reason); withdraws the disclosures covering it."""
    from coop.disclosure import withdraw_covering

    user = session.get(User, user_id) if user_id is not None else None
    if user is None or not user.has_role("admin"):
        raise LedgerError(N_("only an administrator can reopen a closed period"))
    reason = (reason or "").strip()
    visible = "".join(ch for ch in reason if unicodedata.category(ch)[0] not in ("Z", "C"))
    if not visible:  # blanks, zero-width and control characters are not a reason
        raise LedgerError(N_("give the reason for reopening the period"))
    if len(reason) > MAX_REASON:
        raise LedgerError(N_("the reason is too long (at most %(max)s characters)"), max=MAX_REASON)
    period = session.scalar(select(Period).where(Period.year == year, Period.month == month))
    if period is None or not period.closed:
        raise LedgerError(N_("period %(period)s is not closed"), period=_label(year, month))
    last = latest_closed(session)
    if last != (year, month):
        raise LedgerError(
            N_(
                "only the latest closed month (%(latest)s) can be reopened, so the closed months stay "
                "unbroken"
            ),
            latest=_label(*last) if last else "",
        )
    if session.scalar(select(Distribution.id).where(Distribution.year == year)) is not None:
        raise LedgerError(
            N_(
                "the %(year)s distribution has been posted: the year stays closed; correct it with a "
                "prior-year adjustment (以前年度损益调整) instead"
            ),
            year=year,
        )
    period.closed = False
    period.reopened_at, period.reopened_by, period.reopen_reason = utcnow(), user_id, reason
    session.flush()
    withdrawn = withdraw_covering(session, year, month, reason=reason, user_id=user_id)
    audit.record(
        session,
        "period.reopen",
        period,
        user_id=user_id,
        details={"period": _label(year, month), "reason": reason, "withdrawn": [d.id for d in withdrawn]},
    )
    return period


def closed_periods(session: Session) -> set[tuple[int, int]]:
    return {(p.year, p.month) for p in session.scalars(select(Period).where(Period.closed.is_(True)))}


@dataclass
class MonthStatus:
    """One month on the periods page: whether it is closed, and whether (or why not) it can be closed."""

    year: int
    month: int
    period: Period | None
    closed: bool
    can_close: bool
    can_reopen: bool
    why_not: str  # an N_ template, or ""
    params: dict


def year_status(session: Session, year: int) -> list[MonthStatus]:
    """The twelve months of ``year``: closed or open, the next one to close, and why others cannot be."""
    rows = {p.month: p for p in session.scalars(select(Period).where(Period.year == year))}
    nxt = next_to_close(session)
    last = latest_closed(session)
    opening = settings.get(session).opening_date
    distributed = session.scalar(select(Distribution.id).where(Distribution.year == year)) is not None
    out = []
    for m in range(1, 13):
        p = rows.get(m)
        closed = bool(p and p.closed)
        why, params = "", {}
        can_close = False
        if not closed:
            if (year, m) < (opening.year, opening.month):
                why, params = (
                    N_("before the books' opening date %(opening)s"),
                    {"opening": opening.isoformat()},
                )
            elif (year, m) != nxt:
                why, params = N_("close %(next)s first"), {"next": _label(*nxt)}
            elif not has_ended(year, m):
                why = N_("can be closed from %(from)s")
                params = {"from": (month_end(year, m) + dt.timedelta(days=1)).isoformat()}
            elif m == 12:
                why, params = N_("closes with the %(year)s year-end"), {"year": str(year)}
            else:
                can_close = True
        out.append(
            MonthStatus(
                year, m, p, closed, can_close, closed and last == (year, m) and not distributed, why, params
            )
        )
    return out
