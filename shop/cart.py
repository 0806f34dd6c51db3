"""Carts for guests and logged-in customers, found by a random token.

The view keeps the token in the visitor's session cookie; nothing here knows about Flask.
A cart holds no stock: stock is reserved only at checkout (``shop.checkout``).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from core import parse
from core.db import utcnow
from core.errors import DomainError
from core.money import mul_fen
from shop import N_
from shop.models import Cart, CartItem, Product
from shop.trace.models import HarvestLot

STEP = Decimal("0.5")  # kg and jin sell in half units; boxes and bags in whole units
MAX_QTY = Decimal("100")


class CartError(DomainError):
    """The cart change was refused."""


@dataclass
class CartLine:
    item: CartItem
    product: Product
    total_fen: int


def parse_quantity(raw: str | Decimal | int, unit: str) -> Decimal:
    try:
        qty = parse.decimal_number(raw, hi=Decimal("1e15"))
    except parse.InputError as exc:
        raise CartError(N_("Enter a quantity.")) from exc
    if qty is None or qty < 0:
        raise CartError(N_("Enter a quantity."))
    step = Decimal(1) if unit in ("box", "bag") else STEP
    if qty % step != 0:
        raise CartError(N_("This product sells in whole units.") if step == 1 else N_("Use steps of 0.5."))
    if qty > MAX_QTY:
        raise CartError(N_("That is more than one order can take."))
    return qty


def get_cart(session: Session, token: str | None) -> Cart | None:
    if not token:
        return None
    return session.scalar(
        select(Cart)
        .where(Cart.token == token)
        .options(selectinload(Cart.items).selectinload(CartItem.product))
    )


def new_cart(session: Session, user_id: int | None = None) -> Cart:
    cart = Cart(token=secrets.token_urlsafe(24), user_id=user_id)
    session.add(cart)
    session.flush()
    return cart


def lines(cart: Cart | None) -> list[CartLine]:
    if cart is None:
        return []
    return [
        CartLine(item, item.product, mul_fen(item.product.price_fen, item.quantity)) for item in cart.items
    ]


def total_fen(cart: Cart | None) -> int:
    return sum(line.total_fen for line in lines(cart))


def count(cart: Cart | None) -> int:
    return len(cart.items) if cart else 0


def _touch(cart: Cart) -> None:
    cart.version += 1
    cart.updated_at = utcnow()


def add_item(
    session: Session,
    cart: Cart,
    product: Product,
    quantity: Decimal,
    *,
    today: date,
    lot_id: int | None = None,
) -> CartItem:
    """Add ``quantity`` of ``product`` (optionally from a chosen lot) to the cart."""
    if quantity <= 0:
        raise CartError(N_("Enter a quantity."))
    if not product.on_sale(today):
        raise CartError(N_("This product is not on sale now."))
    if lot_id is not None:
        lot = session.get(HarvestLot, lot_id)
        if (
            lot is None
            or lot.product_id != product.id
            or lot.recalled_at is not None
            or lot.checked_in_at is None
        ):
            raise CartError(N_("That lot is not available."))
    item = next((i for i in cart.items if i.product_id == product.id and i.lot_id == lot_id), None)
    if item is None:
        item = CartItem(product_id=product.id, product=product, lot_id=lot_id, quantity=quantity)
        cart.items.append(item)
    else:
        item.quantity = item.quantity + quantity
    if item.quantity > MAX_QTY:
        raise CartError(N_("That is more than one order can take."))
    _touch(cart)
    return item


def set_quantity(session: Session, cart: Cart, item_id: int, quantity: Decimal) -> None:
    """Change a line's quantity; zero removes it."""
    item = next((i for i in cart.items if i.id == item_id), None)
    if item is None:
        raise CartError(N_("That item is no longer in your cart."))
    if quantity <= 0:
        cart.items.remove(item)
    else:
        item.quantity = quantity
    _touch(cart)


def clear(cart: Cart) -> None:
    cart.items.clear()
    _touch(cart)


def hand_over(session: Session, token: str | None, user_id: int) -> str | None:
    """Move a guest's cart to the user who has just logged in, under a new token (the old
    token opens nothing any more); returns the new token, or None if there was no cart (or
    it was another user's: logging in as someone else on a shared computer takes nothing over)."""
    cart = get_cart(session, token)
    if cart is None or cart.user_id not in (None, user_id):
        return None
    cart.token = secrets.token_urlsafe(24)
    cart.user_id = user_id
    session.flush()
    return cart.token
