"""Recurring entries: contract fees and leases posted on their due dates (``flask coop recurring``).

Each occurrence is keyed by entry and date, so running it daily (or twice) posts each
once; occurrences in closed months are skipped. Callers commit.
"""

from __future__ import annotations

import calendar
import datetime as dt

from sqlalchemy import select
from sqlalchemy.orm import Session

from coop.ledger import Line, is_closed, post_voucher
from coop.models import RecurringEntry, Voucher


def _add_months(day: dt.date, months: int, dom: int) -> dt.date:
    y, m = divmod(day.month - 1 + months, 12)
    year, month = day.year + y, m + 1
    return dt.date(year, month, min(dom, calendar.monthrange(year, month)[1]))


def due_dates(entry: RecurringEntry, until: dt.date) -> list[dt.date]:
    out: list[dt.date] = []
    i = 0
    while True:
        day = _add_months(entry.start.replace(day=1), i * entry.every_months, entry.day)
        if day > until or (entry.end is not None and day > entry.end):
            return out
        if day >= entry.start:
            out.append(day)
        i += 1


def run_recurring(session: Session, today: dt.date, *, user_id: int | None = None) -> list:
    """Post every due occurrence of every active recurring entry up to ``today``; returns the new vouchers.

    Idempotent (each occurrence is keyed by entry and date); occurrences in closed months are skipped.
    """
    posted = []
    for entry in session.scalars(
        select(RecurringEntry).where(RecurringEntry.active.is_(True)).order_by(RecurringEntry.id)
    ):
        for day in due_dates(entry, today):
            ref = f"{entry.id}:{day.isoformat()}"
            if is_closed(session, day.year, day.month) or session.scalar(
                select(Voucher.id).where(Voucher.source == "recurring", Voucher.source_ref == ref)
            ):
                continue
            v = post_voucher(
                session,
                date=day,
                summary=f"{entry.name} {day:%Y-%m}",
                lines=[
                    Line(entry.debit_account.code, debit=entry.amount),
                    Line(entry.credit_account.code, credit=entry.amount),
                ],
                preparer_id=user_id,
                source="recurring",
                source_ref=ref,
            )
            posted.append(v)
    return posted
