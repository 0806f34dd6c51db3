"""Harvest lots: record a harvest, check it in at the sales centre, split it into packs,
merge lots into a box, find a lot.

Plain services over a SQLAlchemy session: they flush but never commit. Every change to
a lot adds a ``LotEvent`` (the story on the trace page and in the EPCIS export).

Stock belongs to its grower (``sold_as_problem``, the one rule every path asks):

* a harvest lot's product must be of the crop cycle's crop (for everyone), and a lot for a
  household is a product that household supplies (``shop_product_suppliers``; staff too, so
  its sales credit the household that grew it); a farmer records only their own household's;
* a pack is sold as its lot's product, or re-labelled as another product of the same crop
  which (for a farmer) the lot's household supplies;
* a gift box's product has the crop of every lot in it; a product of no crop only as a box
  (unit ``box``) made by staff (a mixed gift box), never by a farmer, never a crop-less bag;
* what a box or bag holds (``contents_problem``): a product sold by the box or bag with a
  net weight (``net_kg``) is made of at least that weight of lots whose weight is known;
  one without a net weight is packed only by staff.

Staff (admin, official) and the system (CLI, demo: no user) keep wider rights: any
household's goods, but the crop and the household's products must still match. A farmer's
new harvest lot, pack or box is stock only once staff check it in at the sales centre
(``check_in``, 入库验收: weighed, graded, by whom and when); what staff record or pack
themselves is checked in at once, by them. Lots not yet checked in cannot be split or
merged (packing happens after acceptance).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Sequence
from datetime import date
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from coop.models import Household
from core import audit, clock
from core.db import rows_affected, utcnow
from core.errors import N_
from core.models import User
from iot.crops import crop_key
from shop.trace import production
from shop.trace.codes import new_code, normalize_code
from shop.trace.cycles import cycles_for_crop
from shop.trace.errors import LotError
from shop.trace.events import add_event, event_time, plausible_day
from shop.trace.gtins import gtin_for_new_lot
from shop.trace.models import CropCycle, HarvestLot, LotLink
from shop.trace.ports import Sellable
from shop.trace.quantity import KG_PER_UNIT, PIECE_UNITS, parse_quantity

LOT_NUMBER_MAX = 20  # GS1 AI (10) batch/lot is at most 20 characters
STAFF_ROLES = ("admin", "official")
GRADES = ("A", "B", "C")


# --- whose stock it is ------------------------------------------------------------------


def is_staff(actor: Any) -> bool:
    """Staff of the sales centre, or the system itself (no user: the CLI, the demo)."""
    return actor is None or getattr(actor, "role", None) in STAFF_ROLES


def _actor(session: Session, user_id: int | None) -> User | None:
    if user_id is None:
        return None
    user = session.get(User, user_id)
    if user is None:
        raise LotError(N_("unknown user"))
    return user


def same_crop(a: str | None, b: str | None) -> bool:
    """Two crop names mean the same crop (aliases and plurals forgiven; unknown crops by name)."""

    def key(crop: str | None) -> str | None:
        if not (crop or "").strip():
            return None
        found = crop_key(crop)
        return found if found != "default" else " ".join((crop or "").lower().split())

    return key(a) == key(b)


def goods_crop(lot: HarvestLot) -> str | None:
    """The crop a lot's goods are: its crop cycle's, else its product's (None: unknown or mixed)."""
    if lot.crop_cycle is not None:
        return lot.crop_cycle.crop
    return lot.product.crop if lot.product is not None else None


def sold_as_problem(
    product: Sellable, *, crops: Sequence[str | None], household_id: int | None, actor: Any, mode: str
) -> tuple[str, dict[str, Any]] | None:
    """Why ``product`` may not be put on these goods (an ``N_`` template and its parameters),
    or None when it may. ``mode``: ``"harvest"`` (a new lot), ``"pack"`` (a pack re-labelled
    as another product) or ``"box"`` (a gift box of several lots).

    - crop: a new lot's product is of its crop cycle's crop; a pack's or box's product is
      of the crop of every lot in it; a product without a crop only as a gift box (unit
      ``box``) made by staff (a mixed box of several crops), never for a farmer, never a
      crop-less bag or jar (honey) put on one crop's goods;
    - household: a farmer records and packs only their own household's goods and uses only
      products their household supplies; a new lot for a household is a product that
      household supplies (for staff too: the household is credited with its sales); a pack
      or box (by anyone) never becomes a product that only other households supply.
    """
    name = product.name_zh or product.name_en
    if mode != "harvest" and not product.crop:
        if not (is_staff(actor) and product.unit == "box"):
            return N_(
                "%(product)s is of no single crop: only the sales centre makes mixed gift boxes; "
                "choose a product of the same crop"
            ), {"product": name}
        crops = []  # a mixed gift box, by staff
    for crop in crops:
        if mode == "harvest" and crop is None:
            continue  # stock received without a crop cycle: the product says what it is
        if not same_crop(product.crop, crop):
            return N_("%(product)s is not %(crop)s: choose a product of the same crop"), {
                "product": name,
                "crop": crop or "—",
            }
    suppliers = product.supplier_household_ids
    if not is_staff(actor):
        if household_id is not None and household_id != getattr(actor, "household_id", None):
            return N_(
                "these goods belong to another household: a farmer records and packs only their own"
            ), {}
        if household_id is None or household_id not in suppliers:
            return N_("your household does not supply %(product)s: choose one of your own products"), {
                "product": name
            }
    elif mode == "harvest" and household_id is not None and household_id not in suppliers:
        return N_("this household does not supply %(product)s: choose the collective or a supplier"), {
            "product": name
        }
    elif mode != "harvest" and suppliers and household_id is not None and household_id not in suppliers:
        return N_("%(product)s is supplied by another household: choose one of this household's products"), {
            "product": name
        }
    return None


def weight_kg(lot: HarvestLot, qty: Decimal) -> Decimal | None:
    """What ``qty`` of ``lot`` weighs in kg: by its unit (kg, jin), or, for a lot counted in
    boxes or bags of its own product, by that product's net weight; None when unknown."""
    per = KG_PER_UNIT.get(lot.unit)
    if per is None and lot.product is not None and lot.unit == lot.product.unit and lot.product.net_kg:
        per = lot.product.net_kg
    return qty * per if per is not None else None


def contents_problem(
    product: Sellable, parts: Sequence[tuple[HarvestLot, Decimal]], actor: Any, count: Decimal = Decimal(1)
) -> tuple[str, dict[str, Any]] | None:
    """Why these quantities of these lots may not make ``count`` boxes or bags of ``product`` (an
    ``N_`` template and its parameters), or None when they may.

    A market inspector's rule (定量包装: the net content printed on the label): a product sold
    by the box or bag with a net weight (``net_kg``) is made of at least that weight, and
    only of lots whose weight is known; one without a net weight is boxed only by staff of
    the sales centre, who answer for what it holds. Products sold by weight are not asked.
    """
    if product.unit not in PIECE_UNITS:
        return None
    name = product.name_zh or product.name_en
    if not product.net_kg:
        if is_staff(actor):
            return None
        return N_("%(product)s has no net weight per piece: only the sales centre may pack it"), {
            "product": name
        }
    total = Decimal(0)
    for lot, qty in parts:
        kg = weight_kg(lot, qty)
        if kg is None:
            return N_("the weight of lot %(lot)s is not known: %(product)s must hold %(net)s kg"), {
                "lot": lot.lot_number,
                "product": name,
                "net": f"{product.net_kg.normalize():f}",
            }
        total += kg
    if total < product.net_kg * count:
        return N_("one %(product)s must hold at least %(net)s kg, not %(held)s kg"), {
            "product": name,
            "net": f"{product.net_kg.normalize():f}",
            "held": f"{(total / count).normalize():f}",
        }
    return None


def may_sell_as(
    product: Sellable, lot: HarvestLot | None, actor: Any, *, cycle: CropCycle | None = None
) -> bool:
    """Whether ``actor`` may put ``product`` on ``lot``'s packs (or on a new harvest lot of
    ``cycle`` when ``lot`` is None): the choices a form offers."""
    if lot is None:
        household = cycle.household_id if cycle is not None else getattr(actor, "household_id", None)
        crops = [cycle.crop] if cycle is not None else []
        return (
            sold_as_problem(product, crops=crops, household_id=household, actor=actor, mode="harvest") is None
        )
    by_piece = product.unit != lot.unit and product.unit in PIECE_UNITS
    if by_piece and not product.net_kg and not is_staff(actor):
        return False  # nobody could check what one holds (``contents_problem``)
    if product.id == lot.product_id:
        return True
    return (
        sold_as_problem(
            product, crops=[goods_crop(lot)], household_id=lot.household_id, actor=actor, mode="pack"
        )
        is None
    )


def may_box_as(product: Sellable, actor: Any) -> bool:
    """Whether ``actor`` may offer ``product`` as a gift box at all (before the lots are chosen):
    staff any product of a crop and any crop-less box; a farmer a product of a crop their
    household supplies (by the box or bag only with a net weight, ``contents_problem``)."""
    if is_staff(actor):
        return bool(product.crop) or product.unit == "box"
    household = getattr(actor, "household_id", None)
    return (
        household is not None
        and household in product.supplier_household_ids
        and bool(product.crop)
        and (product.unit not in PIECE_UNITS or bool(product.net_kg))
    )


def _refuse_sold_as(
    product: Sellable, *, crops: Sequence[str | None], household_id: int | None, actor: Any, mode: str
) -> None:
    problem = sold_as_problem(product, crops=crops, household_id=household_id, actor=actor, mode=mode)
    if problem is not None:
        template, params = problem
        error = LotError(template, **params)
        if "household" in template:
            error.field = "household_id"
        raise error


def _refuse_contents(
    product: Sellable, parts: Sequence[tuple[HarvestLot, Decimal]], actor: Any, count: Decimal = Decimal(1)
) -> None:
    problem = contents_problem(product, parts, actor, count)
    if problem is not None:
        template, params = problem
        raise LotError(template, **params)


def _product(session: Session, product_id: int | None) -> Sellable | None:
    """The shop's product ``product_id`` (through the relationship the shop adds to lots)."""
    if product_id is None:
        return None
    cls = sa_inspect(HarvestLot).relationships["product"].mapper.class_
    product = session.get(cls, product_id)
    if product is None:
        raise LotError(N_("no product %(id)s"), id=product_id)
    return product


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
    transaction took the same number meanwhile (the unique constraint decides).

    Every new lot (harvest, pack, box) passes here, so here it is given the GTIN its label
    carries from now on: its product's for its net content (``gtins.gtin_for_new_lot``)."""
    with session.no_autoflush:
        lot.gtin = gtin_for_new_lot(session, lot)
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
    override_reason: str | None = None,
) -> HarvestLot:
    """Record a harvest: a lot number, an unguessable code and the first event of its story.

    Without ``cycle`` (stock received in the shop), the household's one active crop
    cycle of the product's crop is used when there is exactly one, so the lot still
    traces back to its greenhouse.

    The product must be one the lot may be sold as (``sold_as_problem``). Recorded by staff
    (or the system) the lot is checked in at once; recorded by a farmer it waits for staff
    to weigh it at the sales centre (``check_in``) before it counts as stock.

    A harvest inside the pre-harvest interval (安全间隔期) of a pesticide applied on the
    cycle is refused (``production.check_harvest``, the one rule every path asks), unless
    an official gives ``override_reason``; the override is kept on the lot.
    """
    harvested_on = plausible_day(harvested_on or clock.today())
    if cycle is not None and harvested_on < cycle.planted_on:
        raise LotError(N_("harvest date is before planting"))
    qty = parse_quantity(quantity)
    if household_id is not None and session.get(Household, household_id) is None:
        raise LotError(N_("no household %(id)s"), id=household_id)
    actor = _actor(session, user_id)
    owner = cycle.household_id if cycle is not None and household_id is None else household_id
    product = _product(session, product_id)
    if product is not None:
        _refuse_sold_as(
            product,
            crops=[cycle.crop if cycle is not None else None],
            household_id=owner,
            actor=actor,
            mode="harvest",
        )
    grown_in = cycle
    candidates: list[CropCycle | None] = [cycle]
    if cycle is None and household_id is not None and product is not None and product.crop:
        growing = cycles_for_crop(session, household_id, product.crop, harvested_on)
        grown_in = growing[0] if len(growing) == 1 else None
        candidates = list(growing) or [None]
    # Several cycles of the crop growing that day (two greenhouses of peaches): the lot
    # cannot say which, so the rule binds for every one of them (review: it bound for none).
    granted = None
    for candidate in candidates:
        granted = (
            production.check_harvest(
                session, candidate, harvested_on, actor=actor, override_reason=override_reason
            )
            or granted
        )
    staff = is_staff(actor)
    lot = HarvestLot(
        product_id=product_id,
        crop_cycle_id=cycle.id if cycle is not None else None,
        household_id=owner,
        kind="harvest",
        harvested_on=harvested_on,
        quantity=qty,
        remaining=qty,
        unit=(unit or "kg").strip(),
        grade=(grade or "").strip() or None,
        created_by_id=user_id,
        checked_in_at=utcnow() if staff else None,
        checked_in_by_id=user_id if staff else None,
        checked_in_quantity=qty if staff else None,
    )
    production.mark_override(lot, granted)
    day = harvested_on
    _insert_lot(session, lot, lambda: _next_number(session, "L" + day.strftime("%y%m%d")))
    if cycle is None and grown_in is not None:
        lot.crop_cycle_id, lot.crop_cycle = grown_in.id, grown_in
    add_event(
        session, lot, "harvested", at=event_time(harvested_on), quantity=qty, user_id=user_id, note=note
    )
    audit.record(
        session,
        "lot.harvest",
        lot,
        user_id=user_id,
        details={
            "lot": lot.lot_number,
            "qty": str(qty),
            "checked_in": staff,
            **({"interval_override": lot.interval_override_reason} if granted else {}),
        },
    )
    return lot


def check_in(
    session: Session, lot: HarvestLot, weighed: Any, grade: str | None, *, user_id: int | None
) -> HarvestLot:
    """入库验收: staff weigh and grade a farmer's lot at the sales centre; only then is it stock.

    The lot's quantity (and what is left of it) becomes the weighed quantity, which may be
    less than the farmer declared (or more); the event and the audit log keep both. Checked
    in once: a second click (or a second clerk) is refused by the conditional UPDATE.
    """
    actor = _actor(session, user_id)
    if not is_staff(actor):
        raise LotError(N_("only staff of the sales centre can check lots in"))
    if lot.recalled_at is not None:
        raise LotError(N_("lot %(lot)s is recalled"), lot=lot.lot_number)
    if lot.checked_in_at is not None:
        raise LotError(N_("lot %(lot)s is already checked in"), lot=lot.lot_number)
    qty = parse_quantity(weighed)
    grade = (grade or "").strip() or None
    if grade is not None and grade not in GRADES:
        raise LotError(N_("grade must be A, B or C"))
    product = lot.product
    if lot.kind != "harvest" and product is not None and lot.unit in PIECE_UNITS and lot.unit == product.unit:
        # a farmer's boxes or bags: as many as what went in can fill (no more than made)
        parts = made_of(session, [lot]).get(lot.id, [])
        if qty > lot.quantity:
            raise LotError(
                N_("%(lot)s was made as %(made)s %(unit)s: check in at most that many"),
                lot=lot.lot_number,
                made=f"{lot.quantity.normalize():f}",
                unit=lot.unit,
            )
        _refuse_contents(product, parts, actor, qty)
    declared = lot.quantity
    now = utcnow()
    claimed = rows_affected(
        session.execute(
            update(HarvestLot)
            .where(
                HarvestLot.id == lot.id, HarvestLot.checked_in_at.is_(None), HarvestLot.recalled_at.is_(None)
            )
            .values(
                checked_in_at=now,
                checked_in_by_id=user_id,
                checked_in_quantity=qty,
                quantity=qty,
                remaining=HarvestLot.remaining - declared + qty,
                grade=grade if grade is not None else HarvestLot.grade,
            )
            .execution_options(synchronize_session=False)
        )
    )
    if claimed != 1:
        raise LotError(N_("lot %(lot)s is already checked in"), lot=lot.lot_number)
    session.refresh(lot)
    if lot.remaining < 0:
        raise LotError(
            N_("lot %(lot)s has only %(left)s %(unit)s left"), lot=lot.lot_number, left=0, unit=lot.unit
        )
    note = f"{declared.normalize():f} → {qty.normalize():f} {lot.unit}"  # declared → weighed
    add_event(session, lot, "checked_in", at=now, quantity=qty, user_id=user_id, note=note)
    audit.record(
        session,
        "lot.check_in",
        lot,
        user_id=user_id,
        details={"declared": str(declared), "weighed": str(qty), "grade": lot.grade},
    )
    session.flush()
    return lot


def waiting_for_check_in(session: Session) -> list[HarvestLot]:
    """Lots waiting to be checked in at the sales centre, oldest first."""
    return list(
        session.scalars(
            select(HarvestLot)
            .where(HarvestLot.checked_in_at.is_(None), HarvestLot.recalled_at.is_(None))
            .order_by(HarvestLot.created_at, HarvestLot.id)
        )
    )


def made_of(session: Session, lots: Sequence[HarvestLot]) -> dict[int, list[tuple[HarvestLot, Decimal]]]:
    """What each pack or box among ``lots`` was made of: lot id → [(source lot, quantity in
    its unit)], for the checker at the sales centre (harvest lots have nothing)."""
    ids = [lot.id for lot in lots if lot.kind != "harvest"]
    found: dict[int, list[tuple[HarvestLot, Decimal]]] = {}
    if not ids:
        return found
    rows = session.execute(
        select(LotLink.child_id, HarvestLot, LotLink.quantity)
        .join(HarvestLot, HarvestLot.id == LotLink.parent_id)
        .where(LotLink.child_id.in_(ids))
        .order_by(LotLink.child_id, LotLink.parent_id)
    )
    for child_id, parent, qty in rows:
        found.setdefault(child_id, []).append((parent, qty))
    return found


def lot_by_code(session: Session, code: str | None) -> HarvestLot | None:
    """The lot with this trace code, as a person types it (see ``codes.normalize_code``)."""
    code = normalize_code(code)
    if not code or len(code) > 16:
        return None
    return session.scalar(select(HarvestLot).where(HarvestLot.code == code))


def lot_by_number(session: Session, lot_number: str | None) -> HarvestLot | None:
    return session.scalar(select(HarvestLot).where(HarvestLot.lot_number == (lot_number or "").strip()))


def check_usable(lot: HarvestLot, qty: Decimal) -> None:
    """Refuse to take ``qty`` from a recalled lot, a lot not yet checked in, or more than it has left."""
    if lot.recalled_at is not None:
        raise LotError(N_("lot %(lot)s is recalled"), lot=lot.lot_number)
    if lot.checked_in_at is None:
        raise LotError(N_("lot %(lot)s is not checked in at the sales centre yet"), lot=lot.lot_number)
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
    quantity is 1 of that unit and the link records how much of the lot went in. Another
    product than the lot's must be of the same crop and (for a farmer) supplied by the
    lot's household (``sold_as_problem``).
    """
    if not sizes:
        raise LotError(N_("give at least one pack size"))
    quantities = [parse_quantity(s, "pack size") for s in sizes]
    check_usable(lot, sum(quantities, Decimal(0)))
    actor = _actor(session, user_id)
    if product is not None and product.id != lot.product_id:
        _refuse_sold_as(
            product, crops=[goods_crop(lot)], household_id=lot.household_id, actor=actor, mode="pack"
        )
    sold_as = product if product is not None else lot.product
    by_piece = sold_as is not None and sold_as.unit != lot.unit and sold_as.unit in PIECE_UNITS
    if sold_as is not None and sold_as.unit in PIECE_UNITS and (by_piece or sold_as.id != lot.product_id):
        # one box or bag per pack, or (re-labelled box for box) as many as the pack counts
        for size in sorted(set(quantities)):
            _refuse_contents(sold_as, [(lot, size)], actor, Decimal(1) if by_piece else size)
    by_weight = sold_as is not None and sold_as.unit != lot.unit and sold_as.unit in KG_PER_UNIT
    if by_weight and lot.unit not in KG_PER_UNIT:
        raise LotError(
            N_("lot %(lot)s is counted in %(unit)s: it cannot be packed by weight"),
            lot=lot.lot_number,
            unit=lot.unit,
        )

    def holds(qty: Decimal) -> Decimal:
        """A pack's quantity in its own unit: 1 box or bag, or the weight in the product's unit."""
        if by_piece:
            return Decimal(1)
        if by_weight and sold_as is not None:
            converted = (qty * KG_PER_UNIT[lot.unit] / KG_PER_UNIT[sold_as.unit]).quantize(Decimal("0.001"))
            if converted <= 0:
                raise LotError(N_("a pack must hold at least 0.001 %(unit)s"), unit=sold_as.unit)
            return converted
        return qty

    pack_unit = sold_as.unit if (by_piece or by_weight) and sold_as is not None else lot.unit
    # staff (and the system) pack at the sales centre: checked in at once, by them; a
    # farmer's packs wait for the centre's check-in like a new lot (``check_in``)
    staff = is_staff(actor)
    checked_at = utcnow() if staff else None
    day = on or clock.today()
    start = session.scalar(select(func.count()).select_from(LotLink).where(LotLink.parent_id == lot.id)) or 0
    packs = []
    for i, qty in enumerate(quantities, start=start + 1):
        held = holds(qty)
        pack = HarvestLot(
            product_id=sold_as.id if sold_as is not None else None,
            crop_cycle_id=lot.crop_cycle_id,
            household_id=lot.household_id,
            kind="pack",
            harvested_on=lot.harvested_on,
            quantity=held,
            remaining=held,
            unit=pack_unit,
            grade=lot.grade,
            created_by_id=user_id,
            checked_in_at=checked_at,
            checked_in_by_id=user_id if staff else None,
            checked_in_quantity=held if staff else None,
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
    """Merge quantities of several lots into one new lot (e.g. a gift box).

    The box's product has the crop of every lot in it, or no crop (a mixed box); a farmer
    may use only a product their household supplies (``sold_as_problem``).
    """
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
    actor = _actor(session, user_id)
    product = _product(session, product_id)
    if product is not None:
        _refuse_sold_as(
            product,
            crops=[goods_crop(lot) for lot, _q in taken],
            household_id=next(iter(households))
            if len(households) == 1
            else getattr(actor, "household_id", None),
            actor=actor,
            mode="box",
        )
        unit = product.unit
        if unit in PIECE_UNITS:
            _refuse_contents(product, taken, actor, qty)
        elif unit in KG_PER_UNIT:  # merged by weight: the lot holds what went in
            weights = [weight_kg(lot, q) for lot, q in taken]
            if any(w is None for w in weights):
                raise LotError(N_("lots counted in boxes or bags cannot be merged by weight"))
            qty = (sum((w for w in weights if w is not None), Decimal(0)) / KG_PER_UNIT[unit]).quantize(
                Decimal("0.001")
            )
    # staff (and the system) box at the sales centre: checked in at once, by them; a
    # farmer's box waits for the centre's check-in like a new lot (``check_in``)
    staff = is_staff(actor)
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
        checked_in_at=utcnow() if staff else None,
        checked_in_by_id=user_id if staff else None,
        checked_in_quantity=qty if staff else None,
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
