"""Checkout: turn a cart into an order whose lines hold stock until paid or expired.

Reserving is an atomic conditional UPDATE of a lot's ``remaining``
(``... SET remaining = remaining - q WHERE id = :id AND remaining >= q``) checked by its
row count, inside the caller's transaction. Two customers can never buy the last box:
on PostgreSQL the second UPDATE waits for the first and re-checks the condition; on
SQLite writers are serialised. If any line cannot be filled the caller rolls back.

Holds: an unpaid order keeps its stock until ``reserved_until``: 30 minutes for Stripe
Checkout, a short time for pickup orders (``pickup_hold_hours``, 2 by default) unless staff
confirm the hold (``confirm_hold``: then ``confirmed_hold_days`` after placing, 3 by
default). An unverified guest (not logged in) may hold only so much (``guest_limits``): a
few open orders per phone number and per delivery address (phones compared after
``normalize_phone``), and a cap on what all guests together hold of one product, in units
and in fen. The numbers are the sales centre's settings (``shop.settings.NUMBERS``).
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal

from sqlalchemy import select, text, update
from sqlalchemy.orm import Session, selectinload

from core import audit
from core.db import rows_affected, utcnow
from core.errors import DomainError
from core.money import mul_fen
from core.text import fold_width
from shop import N_, catalog
from shop import cart as carts
from shop import settings as shop_settings
from shop.models import Cart, Order, OrderLine, OrderLineLot, Product
from shop.trace.models import HarvestLot

STRIPE_HOLD = timedelta(minutes=30)  # Stripe's shortest Checkout Session lifetime
PICKUP_HOLD = timedelta(days=3)  # cash on pickup: kept for the customer to come by
PHONE_RE = re.compile(r"^\+?[0-9\- ()]{7,24}$")
PHONE_MIN_DIGITS, PHONE_MAX_DIGITS = 7, 15  # a local number without area code; E.164's longest
GUEST_LOCK = 0x5459_4701  # PostgreSQL advisory lock: guests' checkouts check their limits one at a time


class CheckoutError(DomainError):
    """Checkout was refused."""


class GuestLimit(CheckoutError):
    """An unverified guest asked to hold more than the sales centre allows."""


class OutOfStock(CheckoutError):
    """Not enough stock of ``product``: ``available`` is what is left."""

    def __init__(self, product: Product, available: Decimal):
        super().__init__(
            N_("Sorry, there is not enough %(name)s left (%(available)s available)."),
            name=product.name_zh or product.name_en,
            available=f"{available.normalize():f}",
        )
        self.product = product
        self.available = available


@dataclass
class Contact:
    name: str
    phone: str
    email: str = ""
    fulfilment: str = "pickup"  # delivery | pickup
    address: str = ""
    note: str = ""
    payment_method: str = "cash"  # stripe | cash

    def field_problems(self, *, stripe_enabled: bool) -> dict[str, str]:
        """What is wrong with the form, by field (``name``, ``phone``, ``email``, ``address``,
        ``fulfilment``, ``payment_method``): untranslated templates, one per field."""
        errors: dict[str, str] = {}
        if not self.name.strip():
            errors["name"] = N_("Enter your name.")
        phone = fold_width(self.phone).strip()
        if not phone:
            errors["phone"] = N_("Enter a phone number.")
        elif not PHONE_RE.match(phone) or not (
            PHONE_MIN_DIGITS <= sum(ch.isdigit() for ch in phone) <= PHONE_MAX_DIGITS
        ):
            errors["phone"] = N_(
                "A phone number has 7 to 15 digits (spaces, dashes, brackets and a leading + are fine)."
            )
        if self.email and "@" not in self.email:
            errors["email"] = N_("Enter a valid email address or leave it empty.")
        if self.fulfilment not in ("delivery", "pickup"):
            errors["fulfilment"] = N_("Choose delivery or pickup.")
        if self.fulfilment == "delivery" and len(self.address.strip()) < 5:
            errors["address"] = N_("Enter a delivery address.")
        if self.payment_method not in ("stripe", "cash"):
            errors["payment_method"] = N_("Choose how to pay.")
        elif self.payment_method == "stripe" and not stripe_enabled:
            errors["payment_method"] = N_("Online payment is not available; pay at pickup.")
        elif self.payment_method == "cash" and self.fulfilment == "delivery":
            errors["payment_method"] = N_("Cash payment is only possible at pickup.")
        return errors

    def problems(self, *, stripe_enabled: bool) -> list[str]:
        return list(self.field_problems(stripe_enabled=stripe_enabled).values())


def normalize_phone(phone: str | None) -> str:
    """The digits of a phone number as people type it: full-width digits, spaces, dashes,
    brackets and the +86 / 0086 country code forgiven (``+86 138-0000-0000`` → ``13800000000``)."""
    raw = fold_width(phone or "").strip()
    digits = "".join(ch for ch in raw if ch.isdigit())
    if raw.startswith("+") and digits.startswith("86"):
        digits = digits[2:]
    elif digits.startswith("0086"):
        digits = digits[4:]
    elif digits.startswith("86") and len(digits) == 13:  # 86 + an 11-digit mobile number
        digits = digits[2:]
    return digits


def normalize_address(address: str | None) -> str:
    """An address for comparing: full-width folded, case, blanks and punctuation ignored."""
    folded = fold_width(address or "").lower()
    return "".join(ch for ch in folded if ch.isalnum())


def _lock_guest_checkouts(session: Session) -> None:
    """Guests' checkouts check their limits one at a time (SQLite: the order's first write
    already holds the database's write lock)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": GUEST_LOCK})


def open_guest_orders(session: Session, *, exclude: int | None = None) -> list[Order]:
    """Unpaid orders placed without an account that still hold stock."""
    stmt = (
        select(Order)
        .where(Order.user_id.is_(None), Order.status == "pending_payment", Order.stock_state == "held")
        .options(selectinload(Order.lines))
    )
    if exclude is not None:
        stmt = stmt.where(Order.id != exclude)
    return list(session.scalars(stmt))


def guest_limits(session: Session, order: Order, items: list, rules) -> None:
    """Refuse a guest's order that would hold more than the sales centre allows (``GuestLimit``)."""
    others = open_guest_orders(session, exclude=order.id)
    most = rules.guest_open_orders_max
    phone = normalize_phone(order.phone)
    if phone and sum(normalize_phone(o.phone) == phone for o in others) >= most:
        raise GuestLimit(
            N_(
                "This phone number already has %(count)s unpaid orders waiting. Pay for or cancel one, "
                "or log in, before ordering again."
            ),
            count=most,
        )
    address = normalize_address(order.address)
    if address and sum(normalize_address(o.address) == address for o in others) >= most:
        raise GuestLimit(
            N_(
                "This address already has %(count)s unpaid orders waiting. Pay for or cancel one, "
                "or log in, before ordering again."
            ),
            count=most,
        )
    for item in items:
        product = item.product
        held = [ln for o in others for ln in o.lines if ln.product_id == product.id]
        units = sum((Decimal(ln.quantity) for ln in held), Decimal(0)) + Decimal(item.quantity)
        fen = sum(ln.total_fen for ln in held) + mul_fen(product.price_fen, item.quantity)
        if units > rules.guest_product_units_max or fen > rules.guest_product_fen_max:
            raise GuestLimit(
                N_(
                    "Without an account, orders waiting for payment may hold at most %(units)s %(unit)s "
                    "of %(name)s. Order less, pay online now, or log in."
                ),
                units=rules.guest_product_units_max,
                unit=product.unit,
                name=product.name_zh or product.name_en,
            )


def hold_for(payment_method: str, rules) -> timedelta:
    """How long a new unpaid order keeps its stock."""
    if payment_method == "stripe":
        return STRIPE_HOLD
    return timedelta(hours=rules.pickup_hold_hours)


def checkout_key(cart: Cart) -> str:
    """One order per cart version: a double click or a refresh finds the same order."""
    return f"{cart.token}:{cart.version}"


def find_order_for(session: Session, cart: Cart) -> Order | None:
    return session.scalar(select(Order).where(Order.checkout_key == checkout_key(cart)))


def take_from_lot(session: Session, lot_id: int, quantity: Decimal) -> bool:
    """Atomically take ``quantity`` from a lot if it has that much left; True if taken.

    The one place stock leaves a lot for an order: never from a recalled lot (nor a pack or
    box of one: a recall marks them all) nor one not yet checked in at the sales centre.
    """
    result = session.execute(
        update(HarvestLot)
        .where(HarvestLot.id == lot_id, HarvestLot.remaining >= quantity, *catalog.SELLABLE)
        .values(remaining=HarvestLot.remaining - quantity)
        .execution_options(synchronize_session=False)
    )
    return rows_affected(result) == 1


def give_back_to_lot(session: Session, lot_id: int, quantity: Decimal) -> None:
    session.execute(
        update(HarvestLot)
        .where(HarvestLot.id == lot_id)
        .values(remaining=HarvestLot.remaining + quantity)
        .execution_options(synchronize_session=False)
    )


def reserve(
    session: Session, product: Product, quantity: Decimal, lot_id: int | None = None
) -> list[tuple[HarvestLot, Decimal]]:
    """Take ``quantity`` of a product from its lots, oldest first (or from the chosen lot).

    Returns the allocations; raises ``OutOfStock`` after giving back anything taken.
    """
    taken: list[tuple[HarvestLot, Decimal]] = []
    needed = quantity
    for _attempt in range(20):  # each retry follows a lost race; stock only shrinks meanwhile
        if needed <= 0:
            return taken
        if lot_id is not None:
            lot = session.get(HarvestLot, lot_id)
            lots = [lot] if lot is not None and lot.product_id == product.id else []
        else:
            lots = catalog.available_lots(session, product.id)
        for lot in lots:
            session.refresh(lot, ["remaining", "recalled_at", "checked_in_at"])
            if lot.recalled_at is not None or lot.checked_in_at is None or lot.remaining <= 0:
                continue
            take = min(needed, Decimal(lot.remaining))
            if take <= 0:
                continue
            if take_from_lot(session, lot.id, take):
                taken.append((lot, take))
                needed -= take
                if needed <= 0:
                    return taken
            else:
                break  # someone else took from it first: look again
        else:
            break  # went through every lot: there is no more
    if needed > 0:
        for lot, qty in taken:
            give_back_to_lot(session, lot.id, qty)
        raise OutOfStock(product, quantity - needed)
    return taken


def new_order_number(now: datetime) -> str:
    return f"{now:%y%m%d}-{secrets.randbelow(10**6):06d}"


def place_order(
    session: Session,
    cart: Cart,
    contact: Contact,
    *,
    user_id: int | None,
    today: date,
    stripe_enabled: bool,
    now: datetime | None = None,
) -> Order:
    """Create the order from the cart, reserving stock for every line; empties the cart.

    Idempotent per cart version: a repeated submit returns the order already placed.
    Raises ``CheckoutError``/``OutOfStock``; the caller must then roll back.
    """
    now = now or utcnow()
    existing = find_order_for(session, cart)
    if existing is not None:
        return existing
    problems = contact.problems(stripe_enabled=stripe_enabled)
    if problems:
        raise CheckoutError(problems[0])  # an N_ template
    if not cart.items:
        raise CheckoutError(N_("Your cart is empty."))
    expire_reservations(session, now=now)
    rules = shop_settings.get(session)
    hold = hold_for(contact.payment_method, rules)
    order = Order(
        number=new_order_number(now),
        token=secrets.token_urlsafe(24),
        checkout_key=checkout_key(cart),
        user_id=user_id,
        status="pending_payment",
        stock_state="held",
        fulfilment=contact.fulfilment,
        payment_method=contact.payment_method,
        contact_name=contact.name.strip()[:80],
        phone=contact.phone.strip()[:40],
        email=contact.email.strip()[:200] or None,
        address=contact.address.strip() or None if contact.fulfilment == "delivery" else None,
        note=contact.note.strip()[:1000] or None,
        reserved_until=now + hold,
        created_at=now,
        updated_at=now,
    )
    session.add(order)
    session.flush()  # the first write: on SQLite this takes the write lock before any stock check
    if user_id is None:
        _lock_guest_checkouts(session)
        guest_limits(session, order, list(cart.items), rules)
    total = 0
    for item in list(cart.items):
        product = item.product
        if not product.on_sale(today):
            raise CheckoutError(N_("A product in your cart is no longer on sale."))
        commission = catalog.commission_pct(session, product.id) if product.consignment else 100
        line = OrderLine(
            product_id=product.id,
            name_zh=product.name_zh,
            name_en=product.name_en,
            unit=product.unit,
            quantity=item.quantity,
            unit_price_fen=product.price_fen,
            total_fen=mul_fen(product.price_fen, item.quantity),
            consignment=product.consignment,
            commission_pct=commission,
        )
        for lot, qty in reserve(session, product, item.quantity, item.lot_id):
            line.lots.append(OrderLineLot(lot_id=lot.id, household_id=lot.household_id, quantity=qty))
        order.lines.append(line)
        total += line.total_fen
    if total <= 0:
        raise CheckoutError(N_("Your cart is empty."))
    order.total_fen = total
    carts.clear(cart)
    session.flush()
    audit.record(
        session,
        "shop.order.place",
        order,
        user_id=user_id,
        details={"total_fen": total, "payment": order.payment_method, "fulfilment": order.fulfilment},
    )
    return order


def release_stock(
    session: Session, order: Order, *, new_status: str | None = None, from_states=("held",)
) -> bool:
    """Return an order's lots to stock, once: the conditional UPDATE on the order claims it.

    ``new_status`` (e.g. ``cancelled``) is set in the same statement. Returns False when
    another request already released it.
    """
    values: dict = {"stock_state": "released", "updated_at": utcnow()}
    if new_status:
        values["status"] = new_status
    claimed = rows_affected(
        session.execute(
            update(Order)
            .where(Order.id == order.id, Order.stock_state.in_(from_states))
            .values(**values)
            .execution_options(synchronize_session=False)
        )
    )
    if claimed != 1:
        session.refresh(order)
        return False
    for line in order.lines:
        for alloc in line.lots:
            give_back_to_lot(session, alloc.lot_id, alloc.quantity)
    session.refresh(order)
    return True


def reserve_again(session: Session, order: Order) -> bool:
    """After expiry, try to take the same quantities again (same lots first, else FIFO).

    Used when a payment arrives for an order whose reservation already lapsed.
    """
    taken_all: list[tuple[int, Decimal]] = []
    new_allocs: dict[int, list[tuple[HarvestLot, Decimal]]] = {}
    try:
        for line in order.lines:
            product = session.get(Product, line.product_id) if line.product_id else None
            if product is None:
                raise OutOfStock(Product(name_en=line.name_en), Decimal(0))
            allocs = reserve(session, product, line.quantity)
            taken_all += [(lot.id, q) for lot, q in allocs]
            new_allocs[line.id] = allocs
    except OutOfStock:
        for lot_id, qty in taken_all:
            give_back_to_lot(session, lot_id, qty)
        return False
    for line in order.lines:
        line.lots.clear()
        session.flush()
        for lot, qty in new_allocs[line.id]:
            line.lots.append(OrderLineLot(lot_id=lot.id, household_id=lot.household_id, quantity=qty))
    order.stock_state = "sold"
    return True


def expire_reservations(session: Session, *, now: datetime | None = None) -> int:
    """Cancel unpaid orders whose hold has lapsed and return their stock; returns how many."""
    now = now or utcnow()
    stale = list(
        session.scalars(
            select(Order).where(
                Order.status == "pending_payment",
                Order.stock_state == "held",
                Order.reserved_until < now,
            )
        )
    )
    count = 0
    for order in stale:
        if release_stock(session, order, new_status="cancelled"):
            count += 1
    return count


# --- holds: what unpaid orders keep, for how long ------------------------------------------


def current_holds(session: Session) -> list[Order]:
    """Every unpaid order holding stock, the one whose hold ends first first."""
    return list(
        session.scalars(
            select(Order)
            .where(Order.status == "pending_payment", Order.stock_state == "held")
            .options(selectinload(Order.lines))
            .order_by(Order.reserved_until, Order.id)
        )
    )


def confirm_hold(session: Session, order: Order, *, user_id: int | None, now: datetime | None = None) -> None:
    """Staff confirm an unpaid pickup order (e.g. after calling the customer): it is kept until
    ``confirmed_hold_days`` after it was placed. Audited; refused for online payments (Stripe
    ends its own session) and for orders no longer holding stock."""
    now = now or utcnow()
    if order.payment_method != "cash":
        raise CheckoutError(N_("Only orders paid at pickup can be held longer."))
    rules = shop_settings.get(session)
    until = max(order.reserved_until or now, order.created_at + timedelta(days=rules.confirmed_hold_days))
    claimed = rows_affected(
        session.execute(
            update(Order)
            .where(
                Order.id == order.id,
                Order.status == "pending_payment",
                Order.stock_state == "held",
                Order.reserved_until >= now,
            )
            .values(reserved_until=until, hold_confirmed_at=now, hold_confirmed_by=user_id, updated_at=now)
            .execution_options(synchronize_session=False)
        )
    )
    session.refresh(order)
    if claimed != 1:
        raise CheckoutError(N_("This order no longer holds stock: it was paid, cancelled or its hold ended."))
    audit.record(
        session,
        "shop.order.hold_confirm",
        order,
        user_id=user_id,
        details={"reserved_until": until.isoformat()},
    )
