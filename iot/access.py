"""Who may see (and so manage the rules of) a greenhouse: the one rule every path uses.

The dashboard, the JSON API, the CSV export and traceability (crop cycles, harvests) all
ask here. Admins and officials see every greenhouse; a farmer sees the greenhouses of
their household and any they own; nobody else sees any.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import false, or_, select
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from iot.models import Greenhouse

ALL_GREENHOUSES = ("admin", "official")


def greenhouse_condition(user: Any) -> ColumnElement[bool] | None:
    """A WHERE condition on ``Greenhouse`` for what ``user`` may see (None: everything)."""
    role = getattr(user, "role", None)
    if role in ALL_GREENHOUSES:
        return None
    if role != "farmer":
        return false()
    household = getattr(user, "household_id", None)
    if household is None:
        return Greenhouse.owner_id == user.id
    return or_(Greenhouse.owner_id == user.id, Greenhouse.household_id == household)


def can_see(user: Any, greenhouse: Greenhouse | None) -> bool:
    if greenhouse is None:
        return False
    role = getattr(user, "role", None)
    if role in ALL_GREENHOUSES:
        return True
    if role != "farmer":
        return False
    household = getattr(user, "household_id", None)
    return greenhouse.owner_id == user.id or (household is not None and greenhouse.household_id == household)


def visible_greenhouses(session: Session, user: Any) -> list[Greenhouse]:
    """The greenhouses ``user`` may see, by code."""
    stmt = select(Greenhouse).order_by(Greenhouse.code)
    condition = greenhouse_condition(user)
    if condition is not None:
        stmt = stmt.where(condition)
    return list(session.scalars(stmt))
