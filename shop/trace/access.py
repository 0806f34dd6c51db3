"""Who may manage traceability records: built on the one greenhouse rule (``iot.access``).

A crop cycle is its greenhouse's: whoever may see the greenhouse manages its cycles and
the lots harvested from them. A lot without a cycle (stock received at the sales centre,
a gift box) is its household's. Admins and officials manage everything.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import false, or_, select
from sqlalchemy.sql.elements import ColumnElement

from iot import access
from iot.models import Greenhouse
from shop.trace.models import CropCycle, HarvestLot


def _visible_greenhouse_ids(user: Any):  # a subquery
    condition = access.greenhouse_condition(user)
    return select(Greenhouse.id).where(condition if condition is not None else false())


def cycle_condition(user: Any) -> ColumnElement[bool] | None:
    """A WHERE condition on ``CropCycle`` for the cycles ``user`` manages (None: all)."""
    if access.greenhouse_condition(user) is None:
        return None
    return CropCycle.greenhouse_id.in_(_visible_greenhouse_ids(user))


def lot_condition(user: Any) -> ColumnElement[bool] | None:
    """A WHERE condition on ``HarvestLot`` for the lots ``user`` manages (None: all)."""
    if access.greenhouse_condition(user) is None:
        return None
    cycles = select(CropCycle.id).where(CropCycle.greenhouse_id.in_(_visible_greenhouse_ids(user)))
    household = getattr(user, "household_id", None)
    mine = HarvestLot.household_id == household if household is not None else false()
    return or_(HarvestLot.crop_cycle_id.in_(cycles), mine)


def can_manage_cycle(user: Any, cycle: CropCycle | None) -> bool:
    return cycle is not None and access.can_see(user, cycle.greenhouse)


def can_manage_lot(user: Any, lot: HarvestLot | None) -> bool:
    if lot is None:
        return False
    if access.greenhouse_condition(user) is None:  # admins and officials
        return True
    if lot.crop_cycle is not None and access.can_see(user, lot.crop_cycle.greenhouse):
        return True
    household = getattr(user, "household_id", None)
    return household is not None and lot.household_id == household
