"""Crop cycles and harvest lots: record, split into packs, merge into boxes, inspect, recall.

Plain services over a SQLAlchemy session: they flush but never commit. Every change to
a lot adds a ``LotEvent`` (the story on the trace page and in the EPCIS export).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core import audit, clock
from core.db import utcnow
from core.errors import N_, DomainError
from shop.trace_models import (
    INSPECTION_RESULTS,
    CropCycle,
    HarvestLot,
    InputUse,
    Inspection,
    LotEvent,
    LotLink,
)

# Trace codes: 10 characters from an alphabet without look-alikes (no 0/O, 1/I/L):
# 31^10 ≈ 8e14 codes, drawn with ``secrets`` so neighbours say nothing about each other.
CODE_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
CODE_LENGTH = 10
LOT_NUMBER_MAX = 20  # GS1 AI (10) batch/lot is at most 20 characters
CERTIFICATE_TYPES = {".pdf", ".png", ".jpg", ".jpeg", ".webp"}
ACTIVE_ORDER_STATES = ("held", "sold")


class LotError(DomainError):
    """A lot operation was refused."""


def new_code() -> str:
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))


def normalize_code(text: str) -> str:
    """What a person may type for a code: lower case, spaces, dashes, O for 0 are forgiven."""
    return (text or "").strip().upper().replace("-", "").replace(" ", "")


def _unique_code(session: Session) -> str:
    while True:
        code = new_code()
        if session.scalar(select(HarvestLot.id).where(HarvestLot.code == code)) is None:
            return code


MAX_QTY = Decimal("999999999")  # what a quantity column (12 digits, 3 decimals) holds
_QTY_MESSAGES = {
    "quantity": (N_("the quantity is not a number"), N_("the quantity must be more than zero")),
    "amount": (N_("the amount is not a number"), N_("the amount must be more than zero")),
    "pack size": (N_("the pack size is not a number"), N_("the pack size must be more than zero")),
}


def _qty(value: Any, what: str = "quantity") -> Decimal:
    not_number, not_positive = _QTY_MESSAGES[what]
    try:
        q = Decimal(str(value).strip()).quantize(Decimal("0.001"))
    except (InvalidOperation, ValueError) as exc:
        raise LotError(not_number) from exc
    if not q.is_finite() or q <= 0:
        raise LotError(not_positive)
    if q > MAX_QTY:
        raise LotError(N_("%(value)s is too large"), value=f"{q.normalize():f}")
    return q


def _event_time(day: date | None) -> datetime:
    """When a dated event happened: now if ``day`` is today (or None), local noon otherwise."""
    now = utcnow()
    if day is None or day >= clock.today():
        return now
    return clock.at_local(day, 12)


def _next_number(session: Session, prefix: str) -> str:
    """``prefix`` + the next free 3-digit sequence number, e.g. ``L250612-004``."""
    like = f"{prefix}-%"
    existing = session.scalars(select(HarvestLot.lot_number).where(HarvestLot.lot_number.like(like))).all()
    used = {int(n[len(prefix) + 1 :]) for n in existing if n[len(prefix) + 1 :].isdigit()}
    seq = 1
    while seq in used:
        seq += 1
    return f"{prefix}-{seq:03d}"


def _insert_lot(session: Session, lot: HarvestLot, number) -> HarvestLot:
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


# --- crop cycles ------------------------------------------------------------------------


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
    from iot.models import Greenhouse

    greenhouse = session.get(Greenhouse, greenhouse_id)
    if greenhouse is None:
        raise LotError(N_("unknown greenhouse"))
    crop = (crop or "").strip()
    if not crop:
        raise LotError(N_("crop is required"))
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
    if ended_on < cycle.planted_on:
        raise LotError(N_("a cycle cannot end before it was planted"))
    cycle.ended_on = ended_on
    return cycle


def add_input(
    session: Session,
    cycle: CropCycle,
    product: str,
    amount: Any,
    unit: str,
    applied_on: date,
    *,
    note: str | None = None,
) -> InputUse:
    """Record a fertilizer (or other input) applied by hand on a crop cycle."""
    product = (product or "").strip()
    if not product:
        raise LotError(N_("input product is required"))
    if applied_on < cycle.planted_on:
        raise LotError(N_("The date is before planting."))
    row = InputUse(
        crop_cycle_id=cycle.id if cycle is not None else None,
        product=product,
        amount=_qty(amount, "amount"),
        unit=(unit or "kg").strip(),
        applied_on=applied_on,
        source="manual",
        note=note,
    )
    session.add(row)
    session.flush()
    return row


def active_cycles(session: Session, household_id: int | None = None) -> list[CropCycle]:
    stmt = select(CropCycle).where(CropCycle.ended_on.is_(None)).order_by(CropCycle.planted_on.desc())
    if household_id is not None:
        stmt = stmt.where(CropCycle.household_id == household_id)
    return list(session.scalars(stmt))


# --- harvest lots -----------------------------------------------------------------------


def create_harvest_lot(
    session: Session,
    cycle: CropCycle | None = None,
    quantity: Any = None,
    unit: str = "kg",
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
    harvested_on = harvested_on or clock.today()
    if cycle is None:
        cycle = _guess_cycle(session, household_id, product_id, harvested_on)
    if cycle is not None and harvested_on < cycle.planted_on:
        raise LotError(N_("harvest date is before planting"))
    qty = _qty(quantity)
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
    _insert_lot(session, lot, lambda: _next_number(session, "L" + harvested_on.strftime("%y%m%d")))
    add_event(
        session, lot, "harvested", at=_event_time(harvested_on), quantity=qty, user_id=user_id, note=note
    )
    audit.record(
        session, "lot.harvest", lot, user_id=user_id, details={"lot": lot.lot_number, "qty": str(qty)}
    )
    return lot


def _guess_cycle(
    session: Session, household_id: int | None, product_id: int | None, day: date
) -> CropCycle | None:
    if household_id is None or product_id is None:
        return None
    from iot.crops import crop_key
    from shop.models import Product

    product = session.get(Product, product_id)
    if product is None or not product.crop:
        return None
    cycles = [
        c
        for c in session.scalars(
            select(CropCycle).where(
                CropCycle.household_id == household_id,
                CropCycle.planted_on <= day,
                (CropCycle.ended_on.is_(None)) | (CropCycle.ended_on >= day),
            )
        )
        if crop_key(c.crop) == crop_key(product.crop)
    ]
    return cycles[0] if len(cycles) == 1 else None


def lot_by_code(session: Session, code: str) -> HarvestLot | None:
    code = normalize_code(code)
    if not code or len(code) > 16:
        return None
    return session.scalar(select(HarvestLot).where(HarvestLot.code == code))


def lot_by_number(session: Session, lot_number: str) -> HarvestLot | None:
    return session.scalar(select(HarvestLot).where(HarvestLot.lot_number == (lot_number or "").strip()))


def _check_usable(lot: HarvestLot, qty: Decimal) -> None:
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
    product_id: int | None = None,
    user_id: int | None = None,
    on: date | None = None,
) -> list[HarvestLot]:
    """Pack part of ``lot`` into packs of the given sizes (in the lot's unit).

    Each pack is a lot of its own with its own code (its own label). When the pack's
    product is sold by the piece (a unit other than the lot's, e.g. "box"), the pack's
    quantity is 1 of that unit and the link records how much of the lot went in.
    """
    if not sizes:
        raise LotError(N_("give at least one pack size"))
    quantities = [_qty(s, "pack size") for s in sizes]
    _check_usable(lot, sum(quantities, Decimal(0)))
    from shop.models import Product

    product = session.get(Product, product_id) if product_id else lot.product
    by_piece = (
        product is not None and product.unit not in (lot.unit,) and product.unit in ("box", "bag", "piece")
    )
    day = on or clock.today()
    start = session.scalar(select(func.count()).select_from(LotLink).where(LotLink.parent_id == lot.id)) or 0
    packs = []
    for i, qty in enumerate(quantities, start=start + 1):
        pack = HarvestLot(
            product_id=product.id if product is not None else None,
            crop_cycle_id=lot.crop_cycle_id,
            household_id=lot.household_id,
            kind="pack",
            harvested_on=lot.harvested_on,
            quantity=Decimal(1) if by_piece else qty,
            remaining=Decimal(1) if by_piece else qty,
            unit=product.unit if by_piece else lot.unit,
            grade=lot.grade,
            created_by_id=user_id,
        )
        _insert_lot(session, pack, lambda i=i: _child_number(session, lot, i, day))
        session.add(LotLink(parent_id=lot.id, child_id=pack.id, quantity=qty))
        add_event(
            session,
            pack,
            "packed",
            at=_event_time(day),
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
        at=_event_time(day),
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
    parts = [(lot, _qty(q)) for lot, q in parts]
    if len(parts) < 2:
        raise LotError(N_("Choose at least two lots for a gift box."))
    if len({lot.id for lot, _q in parts}) != len(parts):
        raise LotError(N_("each lot may appear only once in a merge"))
    for lot, q in parts:
        _check_usable(lot, q)
    day = on or clock.today()
    households = {lot.household_id for lot, _q in parts}
    harvest_days = [lot.harvested_on for lot, _q in parts if lot.harvested_on]
    qty = _qty(quantity)
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
    for lot, q in parts:
        session.add(LotLink(parent_id=lot.id, child_id=box.id, quantity=q))
        lot.remaining -= q
        add_event(
            session,
            lot,
            "split",
            at=_event_time(day),
            quantity=q,
            user_id=user_id,
            details={"outputs": [[box.id, str(q)]]},
        )
    add_event(
        session,
        box,
        "merged",
        at=_event_time(day),
        quantity=qty,
        user_id=user_id,
        details={"inputs": [[lot.id, str(q)] for lot, q in parts]},
    )
    session.flush()
    return box


# --- ancestry ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Relative:
    lot: HarvestLot
    depth: int  # 1 = direct parent/child
    via_id: int  # the lot this one is linked to
    quantity: Decimal  # how much of the parent went into the child


def _walk(session: Session, lot: HarvestLot, up: bool) -> list[Relative]:
    found: dict[int, Relative] = {}
    frontier = [lot.id]
    depth = 0
    while frontier:
        depth += 1
        key, other = (LotLink.child_id, LotLink.parent_id) if up else (LotLink.parent_id, LotLink.child_id)
        rows = session.execute(select(key, other, LotLink.quantity).where(key.in_(frontier))).all()
        frontier = []
        for via, rel_id, qty in rows:
            if rel_id in found or rel_id == lot.id:
                continue
            found[rel_id] = Relative(session.get(HarvestLot, rel_id), depth, via, qty)
            frontier.append(rel_id)
    return sorted(found.values(), key=lambda r: (r.depth, r.lot.id))


def ancestry(session: Session, lot: HarvestLot) -> list[Relative]:
    """Every lot this one was made from, nearest first (parents, grandparents, ...)."""
    return _walk(session, lot, up=True)


def descendants(session: Session, lot: HarvestLot) -> list[Relative]:
    """Every lot made from this one (packs, boxes, packs of boxes), nearest first."""
    return _walk(session, lot, up=False)


def source_lots(session: Session, lot: HarvestLot) -> list[HarvestLot]:
    """The harvest lots (with a crop cycle) behind ``lot``: itself, or its ancestors."""
    if lot.crop_cycle_id is not None and lot.kind == "harvest":
        return [lot]
    sources = [r.lot for r in ancestry(session, lot) if r.lot.kind == "harvest" and r.lot.crop_cycle_id]
    if not sources and lot.crop_cycle_id is not None:
        return [lot]
    return sorted(sources, key=lambda x: x.id)


# --- inspections ------------------------------------------------------------------------


def save_certificate(directory: Path, filename: str, data: bytes) -> str:
    """Store an uploaded certificate under ``directory`` with a random name; returns that name."""
    suffix = Path(filename or "").suffix.lower()
    if suffix not in CERTIFICATE_TYPES:
        raise LotError(N_("The certificate must be a PDF or an image."))
    if not data:
        raise LotError(N_("certificate file is empty"))
    directory.mkdir(parents=True, exist_ok=True)
    name = secrets.token_hex(12) + suffix
    (directory / name).write_bytes(data)
    return name


def record_inspection(
    session: Session,
    lot: HarvestLot,
    lab: str,
    tested_on: date,
    result: str,
    *,
    kind: str = "pesticide_residue",
    summary: str | None = None,
    certificate_file: str | None = None,
    certificate_name: str | None = None,
    user_id: int | None = None,
) -> Inspection:
    """Record a test of a lot (and so of every pack and box made from it)."""
    lab = (lab or "").strip()
    if not lab:
        raise LotError(N_("lab is required"))
    if result not in INSPECTION_RESULTS:
        raise LotError(N_("result must be pass or fail"))
    if lot.harvested_on and tested_on < lot.harvested_on - timedelta(days=30):
        raise LotError(N_("test date is long before the harvest"))
    inspection = Inspection(
        lot=lot,
        kind=kind,
        lab=lab,
        tested_on=tested_on,
        result=result,
        summary=(summary or "").strip() or None,
        certificate_file=certificate_file,
        certificate_name=certificate_name,
    )
    session.add(inspection)
    session.flush()
    add_event(
        session,
        lot,
        "inspected",
        at=_event_time(tested_on),
        user_id=user_id,
        details={"inspection_id": inspection.id, "result": result, "lab": lab},
    )
    audit.record(session, "lot.inspect", lot, user_id=user_id, details={"result": result, "lab": lab})
    return inspection


def inspections_for(session: Session, lot: HarvestLot) -> list[Inspection]:
    """Inspections of the lot and of every lot it was made from."""
    ids = [lot.id] + [r.lot.id for r in ancestry(session, lot)]
    return list(
        session.scalars(
            select(Inspection).where(Inspection.lot_id.in_(ids)).order_by(Inspection.tested_on, Inspection.id)
        )
    )


# --- sale, shipping, recall -------------------------------------------------------------


def record_sale(
    session: Session,
    lot: HarvestLot,
    quantity: Any,
    *,
    order_number: str | None = None,
    shipped: bool = False,
) -> LotEvent:
    """Note that ``quantity`` of the lot was sold (or shipped); for the shop to call."""
    return add_event(
        session,
        lot,
        "shipped" if shipped else "sold",
        quantity=_qty(quantity),
        details={"order": order_number} if order_number else None,
    )


@dataclass(frozen=True)
class Sale:
    at: datetime
    quantity: Decimal
    shipped_at: datetime | None


def sales_of(session: Session, lot_id: int) -> list[Sale]:
    """Paid orders' takings from a lot (no customer data): when, how much, shipped when."""
    from shop.models import Order, OrderLine, OrderLineLot

    rows = session.execute(
        select(
            Order.paid_at,
            Order.created_at,
            Order.status,
            Order.fulfilment,
            Order.updated_at,
            OrderLineLot.quantity,
        )
        .select_from(OrderLineLot)
        .join(OrderLine, OrderLine.id == OrderLineLot.line_id)
        .join(Order, Order.id == OrderLine.order_id)
        .where(OrderLineLot.lot_id == lot_id, Order.stock_state == "sold")
        .order_by(Order.paid_at, Order.id)
    ).all()
    return [
        Sale(
            paid or created,
            qty,
            updated if status == "shipped" or (status == "completed" and fulfilment == "delivery") else None,
        )
        for paid, created, status, fulfilment, updated, qty in rows
    ]


def recall_lot(
    session: Session, lot: HarvestLot, reason: str, *, user_id: int | None = None
) -> list[HarvestLot]:
    """Recall a lot and everything made from it; the shop stops selling them at once.

    Returns the recalled lots (the lot first). A lot already recalled keeps its first
    recall time and reason.
    """
    reason = (reason or "").strip()
    if not reason:
        raise LotError(N_("Give a reason for the recall."))
    now = utcnow()
    affected = [lot] + [r.lot for r in descendants(session, lot)]
    for each in affected:
        if each.recalled_at is not None:
            continue
        each.recalled_at = now
        each.recall_reason = reason if each is lot else f"{reason} (from {lot.lot_number})"
        add_event(session, each, "recalled", at=now, note=each.recall_reason, user_id=user_id)
    audit.record(
        session,
        "lot.recall",
        lot,
        user_id=user_id,
        note=reason,
        details={"lots": [each.lot_number for each in affected]},
    )
    session.flush()
    return affected


@dataclass(frozen=True)
class AffectedOrder:
    order_id: int
    number: str
    status: str
    stock_state: str
    created_at: datetime
    contact_name: str
    phone: str
    email: str | None
    user_id: int | None
    lot_numbers: tuple[str, ...]
    quantity: Decimal
    unit: str


def orders_for_lot(session: Session, lot_id: int, *, include_descendants: bool = True) -> list[AffectedOrder]:
    """Orders (and their customers' contacts) that took stock from the lot or anything made from it.

    Released reservations (cancelled or expired before payment) are left out: those
    customers never received the goods.
    """
    from shop.models import Order, OrderLine, OrderLineLot

    lot = session.get(HarvestLot, lot_id)
    if lot is None:
        return []
    lots = {lot.id: lot}
    if include_descendants:
        lots.update({r.lot.id: r.lot for r in descendants(session, lot)})
    rows = session.execute(
        select(Order, OrderLine.unit, OrderLineLot.lot_id, OrderLineLot.quantity)
        .join(OrderLine, OrderLine.order_id == Order.id)
        .join(OrderLineLot, OrderLineLot.line_id == OrderLine.id)
        .where(OrderLineLot.lot_id.in_(list(lots)), Order.stock_state.in_(ACTIVE_ORDER_STATES))
        .order_by(Order.created_at, Order.id)
    ).all()
    grouped: dict[int, dict] = {}
    for order, unit, lot_ref, qty in rows:
        entry = grouped.setdefault(order.id, {"order": order, "lots": [], "qty": Decimal(0), "unit": unit})
        if lots[lot_ref].lot_number not in entry["lots"]:
            entry["lots"].append(lots[lot_ref].lot_number)
        entry["qty"] += qty
    return [
        AffectedOrder(
            order_id=o.id,
            number=o.number,
            status=o.status,
            stock_state=o.stock_state,
            created_at=o.created_at,
            contact_name=o.contact_name,
            phone=o.phone,
            email=o.email,
            user_id=o.user_id,
            lot_numbers=tuple(e["lots"]),
            quantity=e["qty"],
            unit=e["unit"],
        )
        for e in grouped.values()
        for o in [e["order"]]
    ]


def recalled_lots(session: Session) -> list[HarvestLot]:
    """Lots recalled at the source (not the packs recalled with them), newest first."""
    stmt = (
        select(HarvestLot).where(HarvestLot.recalled_at.is_not(None)).order_by(HarvestLot.recalled_at.desc())
    )
    lots = list(session.scalars(stmt))
    ids = {lot.id for lot in lots}
    parents_recalled = {
        child
        for child, parent in session.execute(select(LotLink.child_id, LotLink.parent_id))
        if parent in ids
    }
    return [lot for lot in lots if lot.id not in parents_recalled]
