"""Tables of the shop (shop_*): catalogue, carts, reservations, orders, payments.

Harvest lots (the stock behind products) live in ``shop.trace.models``.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, Numeric, String, Text, UniqueConstraint, false
from sqlalchemy.orm import Mapped, mapped_column, relationship

from core.db import Base, UTCDateTime, utcnow
from shop.trace.models import HarvestLot

QTY = Numeric(12, 3)


class Category(Base):
    __tablename__ = "shop_categories"

    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(String(60), unique=True)
    name_zh: Mapped[str] = mapped_column(String(60))
    name_en: Mapped[str] = mapped_column(String(60))
    position: Mapped[int] = mapped_column(default=0)

    def name(self, locale: str) -> str:
        return self.name_zh if locale == "zh_CN" else self.name_en


class Product(Base):
    __tablename__ = "shop_products"

    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(String(80), unique=True)
    # GTINs are per product and net content, in traceability's table (shop.trace.gtins)
    name_zh: Mapped[str] = mapped_column(String(120))
    name_en: Mapped[str] = mapped_column(String(120))
    description_zh: Mapped[str] = mapped_column(Text, default="")
    description_en: Mapped[str] = mapped_column(Text, default="")
    category_id: Mapped[int | None] = mapped_column(
        ForeignKey("shop_categories.id", ondelete="SET NULL"), index=True
    )
    unit: Mapped[str] = mapped_column(String(20))  # kg | jin | box | bag
    price_fen: Mapped[int]
    crop: Mapped[str | None] = mapped_column(String(60))  # links to greenhouse crop / crop cycles
    # nominal net weight of one box or bag (kg): what a pack or gift box of it must hold
    net_kg: Mapped[Decimal | None] = mapped_column(QTY)
    image: Mapped[str | None] = mapped_column(String(200))  # path under static/
    on_sale_from: Mapped[date | None]
    on_sale_to: Mapped[date | None]
    consignment: Mapped[bool] = mapped_column(default=False)  # goods sold on behalf of households
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    category: Mapped[Category | None] = relationship()
    suppliers: Mapped[list[ProductSupplier]] = relationship(
        cascade="all, delete-orphan", order_by="ProductSupplier.id"
    )

    def name(self, locale: str) -> str:
        return self.name_zh if locale == "zh_CN" else self.name_en

    def description(self, locale: str) -> str:
        return self.description_zh if locale == "zh_CN" else self.description_en

    @property
    def supplier_household_ids(self) -> tuple[int, ...]:
        """The households that supply the product (``shop_product_suppliers``); empty: the collective's."""
        return tuple(s.household_id for s in self.suppliers)

    def on_sale(self, today: date) -> bool:
        """Active and within its season (open-ended when from/to are empty)."""
        if not self.active:
            return False
        if self.on_sale_from and today < self.on_sale_from:
            return False
        return not (self.on_sale_to and today > self.on_sale_to)


# --- Catalogue extras --------------------------------------------------------------


# A lot's product: traceability names the table (shop_lots.product_id); the shop, which may
# know traceability, adds the relationship, so shop.trace's models need no shop module.
HarvestLot.product = relationship(Product)


class ProductSupplier(Base):
    """A household (and optionally its greenhouse) that supplies a product."""

    __tablename__ = "shop_product_suppliers"

    id: Mapped[int] = mapped_column(primary_key=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("shop_products.id", ondelete="CASCADE"), index=True)
    household_id: Mapped[int] = mapped_column(ForeignKey("coop_households.id", ondelete="CASCADE"))
    greenhouse_id: Mapped[int | None] = mapped_column(ForeignKey("iot_greenhouses.id", ondelete="SET NULL"))
    __table_args__ = (UniqueConstraint("product_id", "household_id"),)

    household = relationship("Household", lazy="joined")
    greenhouse = relationship("Greenhouse", lazy="joined")


class ProductTerms(Base):
    """Sales terms of a product that the catalogue row does not hold.

    ``commission_pct``: for consignment goods, the share of each sale the collective
    keeps as its own revenue; the rest is owed to the supplying household.
    """

    __tablename__ = "shop_product_terms"

    product_id: Mapped[int] = mapped_column(
        ForeignKey("shop_products.id", ondelete="CASCADE"), primary_key=True
    )
    commission_pct: Mapped[int] = mapped_column(default=10)
    max_per_order: Mapped[Decimal | None] = mapped_column(QTY)


# --- The sales centre -------------------------------------------------------------


class ShopSettings(Base):
    """The produce sales centre (one row): where customers collect, when it opens, whom they
    call (order pages, recall notices), set by staff on /shop/staff/settings."""

    __tablename__ = "shop_settings"

    id: Mapped[int] = mapped_column(primary_key=True)
    centre_name: Mapped[str] = mapped_column(String(120), default="")
    centre_address: Mapped[str] = mapped_column(String(200), default="")
    centre_hours: Mapped[str] = mapped_column(String(120), default="")
    centre_phone: Mapped[str] = mapped_column(String(40), default="")
    # What an unverified guest (not logged in) may hold with unpaid orders, and how long
    # unpaid pickup orders are kept (shop.checkout): see docs/shop.md.
    guest_open_orders_max: Mapped[int] = mapped_column(default=2)  # per phone and per address
    guest_product_units_max: Mapped[int] = mapped_column(default=30)  # of one product, all guests' holds
    guest_product_fen_max: Mapped[int] = mapped_column(default=100000)  # ¥1000 of one product
    pickup_hold_hours: Mapped[int] = mapped_column(default=2)  # unpaid pickup orders, unconfirmed
    confirmed_hold_days: Mapped[int] = mapped_column(default=3)  # after staff confirm the hold
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))


# --- Cart ---------------------------------------------------------------------------


class Cart(Base):
    """A shopping cart, found by a random token kept in the visitor's session cookie."""

    __tablename__ = "shop_carts"

    id: Mapped[int] = mapped_column(primary_key=True)
    token: Mapped[str] = mapped_column(String(48), unique=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), index=True)
    version: Mapped[int] = mapped_column(default=1)  # bumped on every change; part of the checkout key
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    items: Mapped[list[CartItem]] = relationship(
        back_populates="cart", cascade="all, delete-orphan", order_by="CartItem.id"
    )


class CartItem(Base):
    __tablename__ = "shop_cart_items"
    __table_args__ = (UniqueConstraint("cart_id", "product_id", "lot_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    cart_id: Mapped[int] = mapped_column(ForeignKey("shop_carts.id", ondelete="CASCADE"), index=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("shop_products.id", ondelete="CASCADE"))
    lot_id: Mapped[int | None] = mapped_column(
        ForeignKey("shop_lots.id", ondelete="SET NULL")
    )  # customer's pick
    quantity: Mapped[Decimal] = mapped_column(QTY)

    cart: Mapped[Cart] = relationship(back_populates="items")
    product: Mapped[Product] = relationship()


# --- Orders -------------------------------------------------------------------------

ORDER_STATES = (
    "pending_payment",
    "paid",
    "packed",
    "shipped",
    "ready_for_pickup",
    "completed",
    "cancelled",
    "refunded",
)


class Order(Base):
    """An order. While ``pending_payment`` its lines hold stock until ``reserved_until``.

    ``stock_state``: held (reserved, not yet paid), sold (paid), released (returned to
    the lots after cancellation, expiry or a full refund before shipping).
    """

    __tablename__ = "shop_orders"

    id: Mapped[int] = mapped_column(primary_key=True)
    number: Mapped[str] = mapped_column(String(24), unique=True)
    token: Mapped[str] = mapped_column(String(48), unique=True)  # the customer's link to the order
    checkout_key: Mapped[str] = mapped_column(String(96), unique=True)  # one order per cart version
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), index=True)
    status: Mapped[str] = mapped_column(String(20), default="pending_payment", index=True)
    stock_state: Mapped[str] = mapped_column(String(10), default="held")
    fulfilment: Mapped[str] = mapped_column(String(10))  # delivery | pickup
    payment_method: Mapped[str] = mapped_column(String(10))  # stripe | cash
    contact_name: Mapped[str] = mapped_column(String(80))
    phone: Mapped[str] = mapped_column(String(40))
    email: Mapped[str | None] = mapped_column(String(200))
    address: Mapped[str | None] = mapped_column(Text)
    note: Mapped[str | None] = mapped_column(Text)
    total_fen: Mapped[int] = mapped_column(default=0)
    paid_fen: Mapped[int] = mapped_column(default=0)
    refunded_fen: Mapped[int] = mapped_column(default=0)
    fee_fen: Mapped[int] = mapped_column(default=0)  # payment provider's fee
    reserved_until: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    hold_confirmed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # staff confirmed the hold
    hold_confirmed_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    stripe_session_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    stripe_checkout_url: Mapped[str | None] = mapped_column(Text)
    stripe_payment_intent: Mapped[str | None] = mapped_column(String(255), index=True)
    attention: Mapped[str | None] = mapped_column(Text)  # why staff must look at it; None when fine
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    paid_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    lines: Mapped[list[OrderLine]] = relationship(
        back_populates="order", cascade="all, delete-orphan", order_by="OrderLine.id"
    )
    payments: Mapped[list[Payment]] = relationship(back_populates="order", order_by="Payment.id")
    refunds: Mapped[list[Refund]] = relationship(back_populates="order", order_by="Refund.id")

    @property
    def refundable_fen(self) -> int:
        return self.paid_fen - self.refunded_fen


class OrderLine(Base):
    __tablename__ = "shop_order_lines"

    id: Mapped[int] = mapped_column(primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("shop_orders.id", ondelete="CASCADE"), index=True)
    product_id: Mapped[int | None] = mapped_column(
        ForeignKey("shop_products.id", ondelete="SET NULL"), index=True
    )
    name_zh: Mapped[str] = mapped_column(String(120))
    name_en: Mapped[str] = mapped_column(String(120))
    unit: Mapped[str] = mapped_column(String(20))
    quantity: Mapped[Decimal] = mapped_column(QTY)
    unit_price_fen: Mapped[int]
    total_fen: Mapped[int]
    refunded_fen: Mapped[int] = mapped_column(default=0)
    consignment: Mapped[bool] = mapped_column(default=False)
    commission_pct: Mapped[int] = mapped_column(default=100)

    order: Mapped[Order] = relationship(back_populates="lines")
    product: Mapped[Product | None] = relationship()
    lots: Mapped[list[OrderLineLot]] = relationship(
        back_populates="line", cascade="all, delete-orphan", order_by="OrderLineLot.id"
    )


class OrderLineLot(Base):
    """Which harvest lot an order line took its quantity from (recall finds orders here)."""

    __tablename__ = "shop_order_line_lots"

    id: Mapped[int] = mapped_column(primary_key=True)
    line_id: Mapped[int] = mapped_column(ForeignKey("shop_order_lines.id", ondelete="CASCADE"), index=True)
    lot_id: Mapped[int] = mapped_column(ForeignKey("shop_lots.id", ondelete="RESTRICT"), index=True)
    household_id: Mapped[int | None] = mapped_column(ForeignKey("coop_households.id", ondelete="SET NULL"))
    quantity: Mapped[Decimal] = mapped_column(QTY)

    line: Mapped[OrderLine] = relationship(back_populates="lots")


class Payment(Base):
    """Money received for an order: a Stripe Checkout payment or cash/transfer at pickup."""

    __tablename__ = "shop_payments"

    id: Mapped[int] = mapped_column(primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("shop_orders.id", ondelete="RESTRICT"), index=True)
    method: Mapped[str] = mapped_column(String(10))  # stripe | cash | transfer
    amount_fen: Mapped[int]
    fee_fen: Mapped[int] = mapped_column(default=0)
    reference: Mapped[str | None] = mapped_column(String(255), unique=True)  # Stripe session / receipt number
    received_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # the Stripe PaymentIntent of this very payment (the order's own is the sale's)
    payment_intent: Mapped[str | None] = mapped_column(String(255), index=True)
    # a second payment for an order already paid: owed back (211), not revenue
    duplicate: Mapped[bool] = mapped_column(default=False, server_default=false())
    # a duplicate given back (``payments.refund_duplicate``): when, and the Stripe refund id or "cash"
    returned_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    return_ref: Mapped[str | None] = mapped_column(String(255))

    order: Mapped[Order] = relationship(back_populates="payments")


class Refund(Base):
    __tablename__ = "shop_refunds"

    id: Mapped[int] = mapped_column(primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("shop_orders.id", ondelete="RESTRICT"), index=True)
    amount_fen: Mapped[int]
    method: Mapped[str] = mapped_column(String(10))  # stripe | cash
    reason: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(12), default="succeeded")  # pending | succeeded | failed
    idempotency_key: Mapped[str] = mapped_column(String(96), unique=True)
    stripe_refund_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    line_id: Mapped[int | None] = mapped_column(ForeignKey("shop_order_lines.id", ondelete="SET NULL"))
    restocked: Mapped[bool] = mapped_column(default=False)
    # how the refund was spread over the order's lines ({str(line_id): fen}), so a refund that
    # fails later at Stripe can be undone line by line
    line_amounts: Mapped[dict | None] = mapped_column(JSON)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    order: Mapped[Order] = relationship(back_populates="refunds")


class StripeEvent(Base):
    """Every verified Stripe event, recorded once by its id: a replay has no second effect.

    ``problem`` says why staff must look at it (``shop.webhooks.PROBLEMS``): a payment that
    does not match its order, a refund waiting for its payment, a refund that failed, or a
    signed body we could not read (``unprocessable``; its id is then ``bad:<sha256>`` when the
    body has no usable id, and ``payload`` keeps the start of the body). ``resolved_at`` is set
    when staff (or a later event, for a waiting refund) have dealt with it.
    """

    __tablename__ = "shop_stripe_events"

    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    type: Mapped[str] = mapped_column(String(80))
    created: Mapped[int] = mapped_column(BigInteger, default=0)  # Stripe's event timestamp
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    order_id: Mapped[int | None] = mapped_column(
        ForeignKey("shop_orders.id", ondelete="SET NULL"), index=True
    )
    outcome: Mapped[str] = mapped_column(String(200), default="")
    attention: Mapped[str | None] = mapped_column(Text)  # e.g. a payment for no known order
    problem: Mapped[str | None] = mapped_column(String(40), index=True)
    object_id: Mapped[str | None] = mapped_column(String(255))  # the session, charge or refund
    payment_intent: Mapped[str | None] = mapped_column(String(255), index=True)
    amount: Mapped[int | None] = mapped_column(BigInteger)  # in the event's currency's minor unit
    currency: Mapped[str | None] = mapped_column(String(10))
    payload: Mapped[str | None] = mapped_column(Text)  # kept for unprocessable and waiting events
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    resolved_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))


class SupplierCredit(Base):
    """An amount owed to (positive) or taken back from (negative) a supplying household.

    One row per household per sale or refund of consignment goods: the monthly statement
    sums them; the same amounts are posted to the household's 113 内部往来 account.
    """

    __tablename__ = "shop_supplier_credits"
    __table_args__ = (Index("ix_shop_supplier_credits_household_at", "household_id", "at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    household_id: Mapped[int] = mapped_column(ForeignKey("coop_households.id", ondelete="RESTRICT"))
    order_id: Mapped[int] = mapped_column(ForeignKey("shop_orders.id", ondelete="RESTRICT"), index=True)
    line_id: Mapped[int] = mapped_column(ForeignKey("shop_order_lines.id", ondelete="RESTRICT"))
    refund_id: Mapped[int | None] = mapped_column(ForeignKey("shop_refunds.id", ondelete="RESTRICT"))
    gross_fen: Mapped[int]  # the sale (or refund, negative) amount of this household's goods
    commission_fen: Mapped[int]  # kept by the collective
    owed_fen: Mapped[int]  # gross - commission
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
