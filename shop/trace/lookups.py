"""The lookup counter of a trace code: how many times its page was looked up, and when first.

A counterfeit signal for the customer: a code printed on one pack is looked up a few times;
one copied onto a thousand fake boxes is looked up a thousand times, and the page says so
("您是第 N 次查询，首次查询于 …"). Nothing personal is stored: one row per lot with the count
and the first and last time (no address, no browser, no cookie).

``record`` is the one place a lookup is counted: a conditional UPDATE (``lookups = lookups + 1``
in the database, never read-modify-write), so concurrent scans never lose a count; the first
lookup inserts the row in a savepoint and, if a concurrent first lookup won the insert, counts
with the UPDATE after all. ``current`` reads without counting (staff previews). Callers commit.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core import clock
from shop.trace.models import LotLookup


@dataclass(frozen=True)
class Lookups:
    """This lookup's number (or the count so far, when not counted) and the first lookup's time."""

    count: int
    first_at: datetime | None
    counted: bool  # False: a preview (staff, HEAD, a robot) that was not counted


def _increment(session: Session, lot_id: int, now: datetime) -> tuple[int, datetime] | None:
    row = session.execute(
        update(LotLookup)
        .where(LotLookup.lot_id == lot_id)
        .values(lookups=LotLookup.lookups + 1, last_at=now)
        .returning(LotLookup.lookups, LotLookup.first_at),
        execution_options={"synchronize_session": False},
    ).one_or_none()
    return (row[0], row[1]) if row is not None else None


def record(session: Session, lot_id: int) -> Lookups:
    """Count one lookup of the lot's page; returns its number and the first lookup's time."""
    now = clock.now()
    found = _increment(session, lot_id, now)
    if found is None:
        try:
            with session.begin_nested():
                session.execute(insert(LotLookup).values(lot_id=lot_id, lookups=1, first_at=now, last_at=now))
            return Lookups(1, now, True)
        except IntegrityError:  # a concurrent first lookup inserted the row: count on it
            found = _increment(session, lot_id, now)
            if found is None:  # pragma: no cover - the row exists once the insert failed
                raise
    count, first_at = found
    return Lookups(count, first_at, True)


def current(session: Session, lot_id: int) -> Lookups:
    """The count so far, without counting (a staff member's preview, a HEAD request, a robot)."""
    row = session.execute(
        select(LotLookup.lookups, LotLookup.first_at).where(LotLookup.lot_id == lot_id)
    ).one_or_none()
    return Lookups(row[0], row[1], False) if row is not None else Lookups(0, None, False)


# User agents that announce themselves as robots (search engines, link previews in chat
# apps): their fetches are no customer's lookup. Read, never stored.
ROBOT_MARKS = ("bot", "spider", "crawl", "slurp", "preview", "facebookexternalhit", "curl", "wget")


def is_robot(user_agent: str | None) -> bool:
    agent = (user_agent or "").lower()
    return any(mark in agent for mark in ROBOT_MARKS)
