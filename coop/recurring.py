"""Recurring entries: contract fees and leases posted on their due dates (``flask coop recurring``).

Each occurrence is keyed by entry and date, so running it daily (or twice) posts each
once; occurrences due in a closed period or before the books' opening date are skipped and
reported (``Skipped``). Callers commit.
"""

from __future__ import annotations

import calendar
import datetime as dt
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from coop import settings
from coop.ledger import Line, first_open_day, post_voucher
from coop.models import RecurringEntry, Voucher
from core.errors import N_


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


@dataclass
class Skipped:
    """An occurrence that was not posted, and why (an ``N_`` template; ``date`` is its due date)."""

    entry: str
    date: dt.date
    why: str


SKIP_CLOSED = N_(
    "due in a closed period: not posted; if it is owed, post it yourself (a correction for a closed year)"
)
SKIP_BEFORE_OPENING = N_("due before the books' opening date: not posted")


def run_recurring(
    session: Session, today: dt.date, *, user_id: int | None = None, skipped: list[Skipped] | None = None
) -> list:
    """Post every due occurrence of every active recurring entry up to ``today``; returns the new vouchers.

    Idempotent (each occurrence is keyed by entry and date). Occurrences due before the books'
    opening date or in a closed period are not posted (an official decides whether such an amount
    is still owed, and in a closed year it is a correction, ``coop.corrections``); each one is
    appended to ``skipped`` with its reason, and the CLI prints them.
    """
    posted = []
    first = first_open_day(session)
    opening = settings.get(session).opening_date
    for entry in session.scalars(
        select(RecurringEntry).where(RecurringEntry.active.is_(True)).order_by(RecurringEntry.id)
    ):
        for day in due_dates(entry, today):
            ref = f"{entry.id}:{day.isoformat()}"
            if session.scalar(
                select(Voucher.id).where(Voucher.source == "recurring", Voucher.source_ref == ref)
            ):
                continue
            if day < first:
                if skipped is not None:
                    skipped.append(
                        Skipped(entry.name, day, SKIP_BEFORE_OPENING if day < opening else SKIP_CLOSED)
                    )
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
