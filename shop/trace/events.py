"""A lot's story, one ``LotEvent`` at a time: every change to a lot adds one."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from sqlalchemy.orm import Session

from core import clock
from core.db import utcnow
from shop.trace.models import HarvestLot, LotEvent


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
