"""A lot's story, one ``LotEvent`` at a time: every change to a lot adds one."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal

from sqlalchemy.orm import Session

from core import clock
from core.db import utcnow
from core.errors import N_
from shop.trace.errors import LotError
from shop.trace.models import HarvestLot, LotEvent

FIRST_DAY = date(2000, 1, 1)


def plausible_day(day: date) -> date:
    """``day`` if a farm record can be dated on it: from 2000 to a year from today."""
    if not FIRST_DAY <= day <= clock.today() + timedelta(days=366):
        raise LotError(N_("%(day)s is not a plausible date for this record"), day=day.isoformat())
    return day


def event_time(day: date | None) -> datetime:
    """When a dated event happened: now if ``day`` is today (or None), local noon otherwise."""
    now = utcnow()
    if day is None or day >= clock.today():
        return now
    return clock.at_local(day, 12)


def add_event(
    session: Session,
    lot: HarvestLot,
    kind: str,
    *,
    at: datetime | None = None,
    quantity: Decimal | None = None,
    details: dict | None = None,
    note: str | None = None,
    user_id: int | None = None,
) -> LotEvent:
    event = LotEvent(
        lot=lot, kind=kind, at=at or utcnow(), quantity=quantity, details=details, note=note, user_id=user_id
    )
    session.add(event)
    return event
