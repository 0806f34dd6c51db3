"""What traceability needs from the shop, and the shape in which the shop hands it over.

``shop.trace`` never imports the rest of ``shop``. The few things it needs that the shop
owns (its products, its orders) come in through ``ShopPort``: a frozen set of plain
callables that ``shop.orders`` and ``shop.catalog`` implement and that the composition
root (``app.create_app``) wires in once, when it registers the trace blueprint::

    app.register_blueprint(trace_bp, shop=ShopPort(sales_of=..., orders_for_lot=..., products=...))

Services that need one of them take that callable as an argument (``build_story(...,
sales_of=...)``); views and the CLI read the port from the app (``port_of(app)``).

A lot's product is the shop's ``Product`` row (``HarvestLot.product``, a relationship by
class name); traceability reads it only through ``Sellable``, the attributes it uses.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy.orm import Session

if TYPE_CHECKING:
    from flask import Flask

EXTENSION = "trace_shop"  # app.extensions key of the ShopPort


class Sellable(Protocol):
    """A product of the shop as traceability sees it (the shop's ``Product`` is one)."""

    @property
    def id(self) -> int: ...
    @property
    def slug(self) -> str: ...
    @property
    def unit(self) -> str: ...
    @property
    def crop(self) -> str | None: ...
    @property
    def net_kg(self) -> Decimal | None: ...
    @property
    def name_zh(self) -> str: ...
    @property
    def name_en(self) -> str: ...
    def name(self, locale: str) -> str: ...
    @property
    def supplier_household_ids(self) -> tuple[int, ...]: ...


@dataclass(frozen=True)
class Sale:
    """A paid order's taking from a lot, without customer data: when, how much, shipped when."""

    at: datetime
    quantity: Decimal
    shipped_at: datetime | None
    order_number: str | None = None  # the order's own number (EPCIS bizTransactionList), not personal


@dataclass(frozen=True)
class AffectedOrder:
    """An order that took stock from a recalled lot (or from a pack or box made from it)."""

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


# (session, lot id) -> the paid orders' takings from that one lot, oldest first
SalesOf = Callable[[Session, int], list[Sale]]
# (session, lot id) -> orders that took stock from the lot or anything made from it
OrdersForLot = Callable[[Session, int], list[AffectedOrder]]
# (session) -> the active products a farmer may put a lot or pack under, by Chinese name
Products = Callable[[Session], Sequence[Sellable]]
# (session, the lots just recalled) -> how many open orders holding them were flagged for staff
# (the lots are HarvestLot rows; not named here, as the models module imports this one)
FlagRecalled = Callable[[Session, Sequence[Any]], int]
# (session, the lots just recalled) -> how many open payment pages of the orders the recall
# cancelled were closed; called after the recall committed (it may ask a payment service)
AfterRecall = Callable[[Session, Sequence[Any]], int]


@dataclass(frozen=True)
class ShopPort:
    """Everything traceability asks of the shop."""

    sales_of: SalesOf
    orders_for_lot: OrdersForLot
    products: Products
    flag_recalled: FlagRecalled | None = None
    after_recall: AfterRecall | None = None


def port_of(app: Flask) -> ShopPort:
    """The port wired in when the trace blueprint was registered on ``app``."""
    try:
        return app.extensions[EXTENSION]
    except KeyError:
        raise RuntimeError(
            "the trace blueprint was registered without shop=ShopPort(...); see shop.trace.ports"
        ) from None
