"""Crop cycles: one planting in one greenhouse (its inputs: ``shop.trace.production``).

Plain services over a SQLAlchemy session: they flush but never commit.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from core import audit
from core.errors import N_
from iot.crops import crop_key
from iot.models import Greenhouse
from shop.trace import production
from shop.trace.errors import LotError
from shop.trace.events import plausible_day
from shop.trace.models import CropCycle, InputUse


def create_crop_cycle(
    session: Session,
    greenhouse_id: int,
    crop: str,
    planted_on: date,
    *,
    variety: str | None = None,
    expected_harvest_on: date | None = None,
    household_id: int | None = None,
    comfort_min_c: float | None = None,
    comfort_max_c: float | None = None,
    note: str | None = None,
    user_id: int | None = None,
) -> CropCycle:
    """Start a crop cycle in a greenhouse; the household defaults to the greenhouse's."""
    greenhouse = session.get(Greenhouse, greenhouse_id)
    if greenhouse is None:
        raise LotError(N_("unknown greenhouse"))
    crop = (crop or "").strip()
    if not crop:
        raise LotError(N_("crop is required"))
    plausible_day(planted_on)
    if expected_harvest_on is not None:
        plausible_day(expected_harvest_on)
    if expected_harvest_on and expected_harvest_on < planted_on:
        raise LotError(N_("expected harvest is before planting"))
    if comfort_min_c is not None and comfort_max_c is not None and comfort_min_c >= comfort_max_c:
        raise LotError(N_("comfortable range: minimum must be below maximum"))
    cycle = CropCycle(
        greenhouse_id=greenhouse.id,
        household_id=household_id if household_id is not None else greenhouse.household_id,
        crop=crop,
        variety=(variety or "").strip() or None,
        planted_on=planted_on,
        expected_harvest_on=expected_harvest_on,
        comfort_min_c=comfort_min_c,
        comfort_max_c=comfort_max_c,
        note=note,
    )
    session.add(cycle)
    session.flush()
    audit.record(session, "crop_cycle.create", cycle, user_id=user_id, details={"crop": crop})
    return cycle


def end_crop_cycle(session: Session, cycle: CropCycle, ended_on: date) -> CropCycle:
    plausible_day(ended_on)
    if ended_on < cycle.planted_on:
        raise LotError(N_("a cycle cannot end before it was planted"))
    recorded = [u.applied_on for u in cycle.inputs] + [p.observed_on for p in cycle.pest_controls]
    if recorded and max(recorded) > ended_on:
        # its production record would hold inputs from after its end
        raise LotError(
            N_("inputs are recorded on this cycle until %(day)s: it cannot end before that"),
            day=max(recorded).isoformat(),
        )
    cycle.ended_on = ended_on
    return cycle


def add_input(
    session: Session,
    cycle: CropCycle,
    product: str | None,
    amount: Any,
    unit: str | None,
    applied_on: date,
    *,
    note: str | None = None,
    kind: str = "fertiliser",
    user_id: int | None = None,
) -> InputUse:
    """Record a fertiliser (or other input) applied by hand on a crop cycle: the short form
    of ``production.record_input`` (which records pesticides with their registration number
    and pre-harvest interval, and checks every input's dates and dose)."""
    return production.record_input(
        session,
        cycle,
        kind=kind,
        product=product,
        amount=amount,
        unit=unit or "kg",
        applied_on=applied_on,
        note=note,
        user_id=user_id,
    )


def active_cycles(session: Session, where: ColumnElement[bool] | None = None) -> list[CropCycle]:
    """Cycles still growing, newest first; ``where``: e.g. ``shop.trace.access.cycle_condition``."""
    stmt = select(CropCycle).where(CropCycle.ended_on.is_(None)).order_by(CropCycle.planted_on.desc())
    if where is not None:
        stmt = stmt.where(where)
    return list(session.scalars(stmt))


def cycle_for_crop(session: Session, household_id: int, crop: str, day: date) -> CropCycle | None:
    """The household's one crop cycle of ``crop`` growing on ``day``; None if none or several."""
    cycles = cycles_for_crop(session, household_id, crop, day)
    return cycles[0] if len(cycles) == 1 else None


def cycles_for_crop(session: Session, household_id: int, crop: str, day: date) -> list[CropCycle]:
    """The household's crop cycles of ``crop`` growing on ``day`` (oldest first)."""
    key = crop_key(crop)
    return [
        c
        for c in session.scalars(
            select(CropCycle).where(
                CropCycle.household_id == household_id,
                CropCycle.planted_on <= day,
                (CropCycle.ended_on.is_(None)) | (CropCycle.ended_on >= day),
            )
        )
        if crop_key(c.crop) == key
    ]
