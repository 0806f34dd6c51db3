"""The catalogue: products, their stock (from harvest lots), search, and staff edits.

A product's stock is the sum of ``remaining`` over its lots that are checked in at the sales
centre (``checked_in_at``, 入库验收) and not recalled (``SELLABLE``).
Listing pages run a fixed number of queries whatever the number of products.
"""

from __future__ import annotations

import functools
import secrets
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from sqlalchemy import bindparam, func, or_, select
from sqlalchemy.orm import Session, selectinload

from core import audit, parse
from core.errors import DomainError
from core.money import MoneyError, parse_yuan
from shop import N_
from shop.models import Category, Product, ProductSupplier, ProductTerms
from shop.trace import lots as lot_service
from shop.trace.models import HarvestLot

UNITS = ("kg", "jin", "box", "bag")
ZERO = Decimal("0")


class CatalogError(DomainError):
    """A catalogue or stock change was refused (``field``: the form field it is about, if one)."""

    field: str | None = None


@dataclass
class Listed:
    product: Product
    stock: Decimal


# The lots the shop may sell from: checked in at the sales centre and not recalled. Stock,
# the product page's lots and reservations (shop.checkout.take_from_lot) all use it.
SELLABLE = (HarvestLot.recalled_at.is_(None), HarvestLot.checked_in_at.is_not(None))


def stock_subquery():
    return (
        select(HarvestLot.product_id.label("product_id"), func.sum(HarvestLot.remaining).label("stock"))
        .where(*SELLABLE, HarvestLot.product_id.is_not(None))
        .group_by(HarvestLot.product_id)
        .subquery()
    )


def stock_of(session: Session, product_id: int) -> Decimal:
    total = session.scalar(
        select(func.sum(HarvestLot.remaining)).where(HarvestLot.product_id == product_id, *SELLABLE)
    )
    return Decimal(total or 0)


def categories(session: Session) -> list[Category]:
    return list(session.scalars(select(Category).order_by(Category.position, Category.id)))


def list_products(
    session: Session,
    *,
    today: date,
    q: str | None = None,
    category_slug: str | None = None,
    include_off_season: bool = False,
) -> list[Listed]:
    """Products on sale (or all active ones for staff), with stock, in one query."""
    stock = stock_subquery()
    stmt = (
        select(Product, func.coalesce(stock.c.stock, 0))
        .outerjoin(stock, stock.c.product_id == Product.id)
        .where(Product.active.is_(True))
        .order_by(Product.category_id, Product.id)
    )
    if not include_off_season:
        stmt = stmt.where(
            or_(Product.on_sale_from.is_(None), Product.on_sale_from <= today),
            or_(Product.on_sale_to.is_(None), Product.on_sale_to >= today),
        )
    if category_slug:
        stmt = stmt.join(Category, Category.id == Product.category_id).where(Category.slug == category_slug)
    if q:
        like = f"%{q.strip()[:60]}%"
        stmt = stmt.where(
            or_(
                Product.name_zh.ilike(like),
                Product.name_en.ilike(like),
                Product.crop.ilike(like),
                Product.description_zh.ilike(like),
                Product.description_en.ilike(like),
            )
        )
    return [Listed(p, Decimal(s or 0)) for p, s in session.execute(stmt)]


def active_products(session: Session) -> list[Product]:
    """Active products by Chinese name, with their suppliers: what a lot or pack may be put
    under (``shop.trace.ports.ShopPort.products``; ``shop.trace.lots.may_sell_as`` narrows it
    to the products a farmer's household supplies, of the right crop)."""
    return list(
        session.scalars(
            select(Product)
            .where(Product.active.is_(True))
            .options(selectinload(Product.suppliers))
            .order_by(Product.name_zh)
        )
    )


def get_product(session: Session, slug: str) -> Product | None:
    return session.scalar(
        select(Product)
        .where(Product.slug == slug)
        .options(selectinload(Product.suppliers), selectinload(Product.category))
    )


@functools.cache
def _available_lots_stmt():
    """Built once per process (on first use): product pages run it on every view."""
    return (
        select(HarvestLot)
        .where(
            HarvestLot.product_id == bindparam("product_id"),
            *SELLABLE,
            HarvestLot.remaining > 0,
        )
        .order_by(HarvestLot.harvested_on.is_(None), HarvestLot.harvested_on, HarvestLot.id)
    )


def available_lots(session: Session, product_id: int) -> list[HarvestLot]:
    """Lots the shop can sell from, oldest first (the order sales take from them)."""
    return list(session.scalars(_available_lots_stmt(), {"product_id": product_id}))


DEFAULT_COMMISSION_PCT = 10


def commission_pct(session: Session, product_id: int) -> int:
    """The collective's share of a consignment product's sales, in percent (read only)."""
    row = session.get(ProductTerms, product_id)
    return row.commission_pct if row is not None else DEFAULT_COMMISSION_PCT


def terms(session: Session, product_id: int) -> ProductTerms:
    """The product's terms row, created with the defaults if it has none (for changing it)."""
    row = session.get(ProductTerms, product_id)
    if row is None:
        row = ProductTerms(product_id=product_id, commission_pct=DEFAULT_COMMISSION_PCT)
        session.add(row)
    return row


# --- staff edits -----------------------------------------------------------------------

EDITABLE = (
    "name_zh",
    "name_en",
    "description_zh",
    "description_en",
    "unit",
    "price_fen",
    "active",
    "on_sale_from",
    "on_sale_to",
    "consignment",
    "category_id",
    "image",
    "crop",
    "net_kg",
)


def parse_product_form(form) -> dict:
    """Turn submitted form fields into product attributes; raises CatalogError."""
    values: dict = {}
    for key in ("name_zh", "name_en", "description_zh", "description_en", "crop", "image"):
        if key in form:
            values[key] = (form.get(key) or "").strip()
    if not values.get("name_zh") or not values.get("name_en"):
        raise CatalogError(N_("Both names are required."))
    unit = form.get("unit", "kg")
    if unit not in UNITS:
        raise CatalogError(N_("Unknown unit."))
    values["unit"] = unit
    try:
        values["price_fen"] = parse_yuan(form.get("price", ""))
    except MoneyError as exc:
        raise CatalogError(N_("Price must be an amount in yuan, e.g. 25.80.")) from exc
    if values["price_fen"] <= 0:
        raise CatalogError(N_("Price must be more than zero."))
    for key in ("on_sale_from", "on_sale_to"):
        raw = (form.get(key) or "").strip()
        try:
            values[key] = date.fromisoformat(raw) if raw else None
        except ValueError as exc:
            raise CatalogError(N_("Dates must look like 2026-07-01.")) from exc
    if values["on_sale_from"] and values["on_sale_to"] and values["on_sale_from"] > values["on_sale_to"]:
        raise CatalogError(N_("The season ends before it starts."))
    values["active"] = bool(form.get("active"))
    values["consignment"] = bool(form.get("consignment"))
    raw_cat = form.get("category_id") or ""
    values["category_id"] = int(raw_cat) if raw_cat.isdigit() else None
    values["image"] = values.get("image") or None
    values["crop"] = values.get("crop") or None
    values["net_kg"] = _net_kg(form.get("net_kg"), unit)
    return values


def _net_kg(raw: object, unit: str) -> Decimal | None:
    """The nominal net weight of one box or bag in kg (empty: none; products by weight have none)."""
    text = str(raw or "").strip()
    if not text:
        return None
    if unit not in lot_service.PIECE_UNITS:
        raise CatalogError(N_("Only a product sold by the box or bag has a net weight per piece."))
    value = parse.decimal_number(text)
    if value is None or not Decimal("0.001") <= value <= Decimal(1000):
        raise CatalogError(N_("Net weight must be between 0.001 and 1000 kg, e.g. 5 or 2.5."))
    return value.quantize(Decimal("0.001"))


def save_product(
    session: Session,
    product: Product | None,
    values: dict,
    *,
    user_id: int | None,
    slug: str | None = None,
    commission_pct: int | None = None,
) -> Product:
    """Create or update a product; every changed field goes to the audit log."""
    if product is None:
        slug = (slug or "").strip().lower() or f"p-{secrets.token_hex(3)}"
        if session.scalar(select(Product.id).where(Product.slug == slug)):
            raise CatalogError(N_("That short name is already used."))
        product = Product(slug=slug, **{k: v for k, v in values.items() if k in EDITABLE})
        session.add(product)
        session.flush()
        audit.record(
            session,
            "shop.product.create",
            product,
            user_id=user_id,
            details={k: _plain(v) for k, v in values.items()},
        )
    else:
        changes = {}
        for key, value in values.items():
            if key in EDITABLE and getattr(product, key) != value:
                changes[key] = [_plain(getattr(product, key)), _plain(value)]
                setattr(product, key, value)
        if changes:
            audit.record(session, "shop.product.update", product, user_id=user_id, details=changes)
    if commission_pct is not None:
        if not 0 <= commission_pct <= 100:
            raise CatalogError(N_("Commission must be between 0 and 100 percent."))
        row = terms(session, product.id)
        if row.commission_pct != commission_pct:
            audit.record(
                session,
                "shop.product.commission",
                product,
                user_id=user_id,
                details={"commission_pct": [row.commission_pct, commission_pct]},
            )
            row.commission_pct = commission_pct
    return product


def set_suppliers(
    session: Session, product: Product, household_ids: list[int], greenhouse_id: int | None = None
) -> None:
    existing = {s.household_id: s for s in product.suppliers}
    for hid in household_ids:
        if hid not in existing:
            product.suppliers.append(ProductSupplier(household_id=hid, greenhouse_id=greenhouse_id))
    for hid, row in existing.items():
        if hid not in household_ids:
            product.suppliers.remove(row)


def _plain(value):
    if isinstance(value, date | Decimal):
        return str(value)
    return value


def add_stock(
    session: Session,
    product: Product,
    quantity: Decimal,
    *,
    household_id: int | None,
    harvested_on: date | None,
    user_id: int | None = None,
    grade: str | None = None,
    override_reason: str | None = None,
) -> HarvestLot:
    """Receive a harvest lot into stock: traceability gives it a lot number, a trace code
    and the first event of its story (and its crop cycle, when the household has one).

    Stock for a household is a product that household supplies (``lots.sold_as_problem``,
    as on the harvest form), so its sales credit the household that grew it; the
    collective's own stock (no household) may be any product."""
    if quantity <= 0:
        raise CatalogError(N_("Quantity must be more than zero."))
    try:
        lot = lot_service.create_harvest_lot(
            session,
            None,
            quantity,
            product.unit,
            harvested_on=harvested_on,
            product_id=product.id,
            household_id=household_id,
            grade=grade,
            user_id=user_id,
            override_reason=override_reason,
        )
    except lot_service.LotError as exc:
        error = CatalogError(exc.template, **exc.params)
        error.field = exc.field
        raise error from exc
    audit.record(
        session,
        "shop.stock.receive",
        lot,
        user_id=user_id,
        details={"product_id": product.id, "quantity": str(quantity)},
    )
    return lot


def adjust_lot(
    session: Session, lot: HarvestLot, remaining: Decimal, *, reason: str, user_id: int | None
) -> None:
    """Correct a lot's remaining quantity after a stock count (spoilage, breakage)."""
    if remaining < 0:
        raise CatalogError(N_("Stock cannot be negative."))
    if not reason.strip():
        raise CatalogError(N_("Say why the stock changes."))
    before = lot.remaining
    lot.remaining = remaining
    audit.record(
        session,
        "shop.stock.adjust",
        lot,
        user_id=user_id,
        details={"remaining": [str(before), str(remaining)]},
        note=reason.strip(),
    )
