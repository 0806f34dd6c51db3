"""Harvest lots: record a harvest, split it into packs, merge lots into a box, find a lot.

Plain services over a SQLAlchemy session: they flush but never commit. Every change to
a lot adds a ``LotEvent`` (the story on the trace page and in the EPCIS export).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Sequence
from datetime import date
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from coop.models import Household
from core import audit, clock
from core.errors import N_
from shop.trace.codes import new_code, normalize_code
from shop.trace.cycles import cycle_for_crop
from shop.trace.errors import LotError
from shop.trace.events import add_event, event_time, plausible_day
from shop.trace.models import CropCycle, HarvestLot, LotLink
from shop.trace.ports import Sellable
from shop.trace.quantity import parse_quantity

LOT_NUMBER_MAX = 20  # GS1 AI (10) batch/lot is at most 20 characters
PIECE_UNITS = ("box", "bag", "piece")


def _unique_code(session: Session) -> str:
    while True:
        code = new_code()
        if session.scalar(select(HarvestLot.id).where(HarvestLot.code == code)) is None:
            return code


def _next_number(session: Session, prefix: str) -> str:
    """``prefix`` + the next free 3-digit sequence number, e.g. ``L250612-004``."""
    like = f"{prefix}-%"
    existing = session.scalars(select(HarvestLot.lot_number).where(HarvestLot.lot_number.like(like))).all()
    used = {int(n[len(prefix) + 1 :]) for n in existing if n[len(prefix) + 1 :].isdigit()}
    seq = 1
    while seq in used:
        seq += 1
    return f"{prefix}-{seq:03d}"


def _insert_lot(session: Session, lot: HarvestLot, number: Callable[[], str]) -> HarvestLot:
    """Add ``lot`` with a fresh number (``number()``) and code, retrying if another
    transaction took the same number meanwhile (the unique constraint decides)."""
    for _attempt in range(8):
        with session.no_autoflush:  # ``lot`` is not in the session yet
            lot.lot_number, lot.code = number(), _unique_code(session)
        try:
            with session.begin_nested():
                session.add(lot)
                session.flush()
            return lot
        except IntegrityError:
            continue
    raise LotError(N_("could not allocate a lot number; try again"))


def create_harvest_lot(
    session: Session,
    cycle: CropCycle | None = None,
    quantity: Any = None,
    unit: str | None = "kg",
    *,
    harvested_on: date | None = None,
    product_id: int | None = None,
    household_id: int | None = None,
    grade: str | None = None,
    user_id: int | None = None,
    note: str | None = None,
) -> HarvestLot:
    """Record a harvest: a lot number, an unguessable code and the first event of its story.

    Without ``cycle`` (stock received in the shop), the household's one active crop
    cycle of the product's crop is used when there is exactly one, so the lot still
    traces back to its greenhouse.
    """
    harvested_on = plausible_day(harvested_on or clock.today())
    if cycle is not None and harvested_on < cycle.planted_on:
        raise LotError(N_("harvest date is before planting"))
    qty = parse_quantity(quantity)
    if household_id is not None and session.get(Household, household_id) is None:
        raise LotError(N_("no household %(id)s"), id=household_id)
    lot = HarvestLot(
        product_id=product_id,
        crop_cycle_id=cycle.id if cycle is not None else None,
        household_id=cycle.household_id if cycle is not None and household_id is None else household_id,
        kind="harvest",
        harvested_on=harvested_on,
        quantity=qty,
        remaining=qty,
        unit=(unit or "kg").strip(),
        grade=(grade or "").strip() or None,
        created_by_id=user_id,
    )
    day = harvested_on
    _insert_lot(session, lot, lambda: _next_number(session, "L" + day.strftime("%y%m%d")))
    if cycle is None and household_id is not None and lot.product is not None and lot.product.crop:
        grown_in = cycle_for_crop(session, household_id, lot.product.crop, harvested_on)
        if grown_in is not None:
            lot.crop_cycle_id, lot.crop_cycle = grown_in.id, grown_in
    add_event(
        session, lot, "harvested", at=event_time(harvested_on), quantity=qty, user_id=user_id, note=note
    )
    audit.record(
        session, "lot.harvest", lot, user_id=user_id, details={"lot": lot.lot_number, "qty": str(qty)}
    )
    return lot


def lot_by_code(session: Session, code: str | None) -> HarvestLot | None:
    """The lot with this trace code, as a person types it (see ``codes.normalize_code``)."""
    code = normalize_code(code)
    if not code or len(code) > 16:
        return None
    return session.scalar(select(HarvestLot).where(HarvestLot.code == code))


def lot_by_number(session: Session, lot_number: str | None) -> HarvestLot | None:
    return session.scalar(select(HarvestLot).where(HarvestLot.lot_number == (lot_number or "").strip()))


def check_usable(lot: HarvestLot, qty: Decimal) -> None:
    """Refuse to take ``qty`` from a recalled lot or more than it has left."""
    if lot.recalled_at is not None:
        raise LotError(N_("lot %(lot)s is recalled"), lot=lot.lot_number)
    if qty > lot.remaining:
        raise LotError(
            N_("lot %(lot)s has only %(left)s %(unit)s left"),
            lot=lot.lot_number,
            left=lot.remaining,
            unit=lot.unit,
        )


def _child_number(session: Session, parent: HarvestLot, index: int, day: date) -> str:
    number = f"{parent.lot_number}-{index}"
    if len(number) <= LOT_NUMBER_MAX and lot_by_number(session, number) is None:
        return number
    return _next_number(session, "P" + day.strftime("%y%m%d"))


def split_lot(
    session: Session,
    lot: HarvestLot,
    sizes: Sequence[Any],
    *,
    product: Sellable | None = None,
    user_id: int | None = None,
    on: date | None = None,
) -> list[HarvestLot]:
    """Pack part of ``lot`` into packs of the given sizes (in the lot's unit).

    Each pack is a lot of its own with its own code (its own label), sold as ``product``
    (the shop's product, as the catalogue hands it over; default the lot's). When that
    product is sold by the piece (a unit other than the lot's, e.g. "box"), the pack's
    quantity is 1 of that unit and the link records how much of the lot went in.
    """
    if not sizes:
        raise LotError(N_("give at least one pack size"))
    quantities = [parse_quantity(s, "pack size") for s in sizes]
    check_usable(lot, sum(quantities, Decimal(0)))
    sold_as = product if product is not None else lot.product
    by_piece = sold_as is not None and sold_as.unit != lot.unit and sold_as.unit in PIECE_UNITS
    day = on or clock.today()
    start = session.scalar(select(func.count()).select_from(LotLink).where(LotLink.parent_id == lot.id)) or 0
    packs = []
    for i, qty in enumerate(quantities, start=start + 1):
        pack = HarvestLot(
            product_id=sold_as.id if sold_as is not None else None,
            crop_cycle_id=lot.crop_cycle_id,
            household_id=lot.household_id,
            kind="pack",
            harvested_on=lot.harvested_on,
            quantity=Decimal(1) if by_piece else qty,
            remaining=Decimal(1) if by_piece else qty,
            unit=sold_as.unit if by_piece and sold_as is not None else lot.unit,
            grade=lot.grade,
            created_by_id=user_id,
        )
        _insert_lot(session, pack, functools.partial(_child_number, session, lot, i, day))
        session.add(LotLink(parent_id=lot.id, child_id=pack.id, quantity=qty))
        add_event(
            session,
            pack,
            "packed",
            at=event_time(day),
            quantity=pack.quantity,
            user_id=user_id,
            details={"inputs": [[lot.id, str(qty)]]},
        )
        packs.append(pack)
    total = sum(quantities, Decimal(0))
    lot.remaining -= total
    add_event(
        session,
        lot,
        "split",
        at=event_time(day),
        quantity=total,
        user_id=user_id,
        details={"outputs": [[p.id, str(q)] for p, q in zip(packs, quantities, strict=True)]},
    )
    session.flush()
    return packs


def merge_lots(
    session: Session,
    parts: Iterable[tuple[HarvestLot, Any]],
    *,
    product_id: int | None = None,
    quantity: Any = 1,
    unit: str = "box",
    grade: str | None = None,
    user_id: int | None = None,
    on: date | None = None,
) -> HarvestLot:
    """Merge quantities of several lots into one new lot (e.g. a gift box)."""
    taken = [(lot, parse_quantity(q)) for lot, q in parts]
    if len(taken) < 2:
        raise LotError(N_("Choose at least two lots for a gift box."))
    if len({lot.id for lot, _q in taken}) != len(taken):
        raise LotError(N_("each lot may appear only once in a merge"))
    for lot, q in taken:
        check_usable(lot, q)
    day = on or clock.today()
    households = {lot.household_id for lot, _q in taken}
    harvest_days = [lot.harvested_on for lot, _q in taken if lot.harvested_on]
    qty = parse_quantity(quantity)
    box = HarvestLot(
        product_id=product_id,
        crop_cycle_id=None,
        household_id=households.pop() if len(households) == 1 else None,
        kind="merge",
        harvested_on=max(harvest_days) if harvest_days else None,
        quantity=qty,
        remaining=qty,
        unit=unit,
        grade=grade,
        created_by_id=user_id,
    )
    _insert_lot(session, box, lambda: _next_number(session, "B" + day.strftime("%y%m%d")))
    for lot, q in taken:
        session.add(LotLink(parent_id=lot.id, child_id=box.id, quantity=q))
        lot.remaining -= q
        add_event(
            session,
            lot,
            "split",
            at=event_time(day),
            quantity=q,
            user_id=user_id,
            details={"outputs": [[box.id, str(q)]]},
        )
    add_event(
        session,
        box,
        "merged",
        at=event_time(day),
        quantity=qty,
        user_id=user_id,
        details={"inputs": [[lot.id, str(q)] for lot, q in taken]},
    )
    session.flush()
    return box
