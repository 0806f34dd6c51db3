"""Order states, the transitions allowed between them, the staff lists, and what
traceability asks of orders.

Every change of state is a conditional UPDATE (``WHERE status = <expected>``), so two
staff members (or a webhook and a person) cannot both move the same order.

``sales_of`` and ``orders_for_lot`` implement ``shop.trace.ports.ShopPort``: the trace
page and the EPCIS export show a lot's sales, and a recall lists the orders that
received it, without traceability knowing about orders.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import NamedTuple

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, selectinload

from core import audit
from core.db import rows_affected, utcnow
from core.errors import DomainError
from shop import N_, notes
from shop.checkout import release_stock
from shop.models import Order, OrderLine, OrderLineLot, StripeEvent
from shop.trace.ancestry import descendants
from shop.trace.models import HarvestLot
from shop.trace.ports import AffectedOrder, Sale

TRANSITIONS: dict[str, set[str]] = {
    "pending_payment": {"paid", "cancelled"},
    "paid": {"packed", "refunded"},
    "packed": {"shipped", "ready_for_pickup", "refunded"},
    "shipped": {"completed", "refunded"},
    "ready_for_pickup": {"completed", "refunded"},
    "completed": {"refunded"},
    "cancelled": set(),
    "refunded": set(),
}
# Moves only the system makes, never staff: a refund that failed at Stripe after it made the
# order refunded takes the order back to where it was (``payments.refund_failed``).
SYSTEM_TRANSITIONS: dict[str, set[str]] = {
    "refunded": {"paid", "packed", "shipped", "ready_for_pickup", "completed"},
}
# What staff may do by hand (paid, refunded and cancelled have their own services).
STAFF_ACTIONS = {
    "pack": ("paid", "packed"),
    "ship": ("packed", "shipped"),
    "ready": ("packed", "ready_for_pickup"),
    "complete": (("shipped", "ready_for_pickup"), "completed"),
}


class OrderError(DomainError):
    """An order change was refused."""


class RecalledLine(NamedTuple):
    """An order line that took stock from recalled lots (a lot, or a pack or box made from one)."""

    line: OrderLine
    lots: list[HarvestLot]  # the recalled lots the line took from


def recalled_lines(session: Session, order: Order) -> list[RecalledLine]:
    """The order's lines (with their lots) whose lot has ``recalled_at`` set.

    A recall sets it on the lot and on everything made from it (``shop.trace.recall``), so
    this one test covers packs and gift boxes of a recalled harvest too. Every step that
    moves goods towards the customer asks here (``move``; payments ask too).
    """
    return recalled_lines_of(session, [order]).get(order.id, [])


def recalled_lines_of(session: Session, orders: Iterable[Order]) -> dict[int, list[RecalledLine]]:
    """``recalled_lines`` for several orders in one query: order id -> its recalled lines."""
    by_id = {o.id: o for o in orders}
    if not by_id:
        return {}
    rows = session.execute(
        select(OrderLine, HarvestLot)
        .join(OrderLineLot, OrderLineLot.line_id == OrderLine.id)
        .join(HarvestLot, HarvestLot.id == OrderLineLot.lot_id)
        .where(OrderLine.order_id.in_(list(by_id)), HarvestLot.recalled_at.is_not(None))
        .order_by(OrderLine.id, HarvestLot.id)
    ).all()
    found: dict[int, dict[int, RecalledLine]] = defaultdict(dict)
    for line, lot in rows:
        entry = found[line.order_id].setdefault(line.id, RecalledLine(line, []))
        if lot not in entry.lots:
            entry.lots.append(lot)
    return {order_id: list(lines.values()) for order_id, lines in found.items()}


def recall_note(recalled: Sequence[RecalledLine]) -> tuple[str, dict[str, str]]:
    """The staff flag of an order with recalled goods: a note's template and parameters."""
    numbers = sorted({lot.lot_number for entry in recalled for lot in entry.lots})
    return N_("Recalled lot %(lots)s: do not hand over; refund the customer."), {"lots": ", ".join(numbers)}


def flag_recalled(session: Session, lots: Sequence[HarvestLot]) -> int:
    """Flag for staff every open order that took stock from these (just recalled) lots, and
    cancel the unpaid ones (their stock released), so no payment can be invited for them.

    ``shop.trace.recall.recall_lot`` calls it through ``ShopPort.flag_recalled`` in the
    recall's own transaction. Returns how many orders were flagged. (A payment that still
    arrives from a Checkout page left open is recorded and flagged "recalled: refund" by
    ``payments.mark_paid``; the recall view also closes those sessions after it commits.)
    """
    ids = [lot.id for lot in lots]
    if not ids:
        return 0
    affected = list(
        session.scalars(
            select(Order)
            .join(OrderLine, OrderLine.order_id == Order.id)
            .join(OrderLineLot, OrderLineLot.line_id == OrderLine.id)
            .where(
                OrderLineLot.lot_id.in_(ids),
                Order.stock_state.in_(("held", "sold")),
                Order.status.not_in(("cancelled", "refunded")),
            )
            .distinct()
        )
    )
    session.flush()
    recalled = recalled_lines_of(session, affected)
    for order in affected:
        template, params = recall_note(recalled.get(order.id, []))
        flagged = notes.add(order.attention, template, **params)
        if flagged != (order.attention or ""):
            order.attention = flagged
            audit.record(session, "shop.order.flag", order, details={"recall": template % params})
        if order.status == "pending_payment" and release_stock(session, order, new_status="cancelled"):
            order.attention = notes.add(
                order.attention,
                N_("Cancelled by the recall of lot %(lots)s before it was paid; its stock was released."),
                **params,
            )
            audit.record(
                session,
                "shop.order.status",
                order,
                details={"from": "pending_payment", "to": "cancelled", "recall": params["lots"]},
                note="recall",
            )
    return len(affected)


class RecalledGoods(OrderError):
    """The order holds goods of a recalled lot: they must not reach the customer."""

    def __init__(self, template: str, *, lots: Sequence[HarvestLot], **params) -> None:
        super().__init__(template, **params)
        self.lots = list(lots)


def check_not_recalled(session: Session, order: Order) -> None:
    """Refuse to move goods of a recalled lot towards the customer, naming the lot
    (``RecalledGoods``; the caller may then ``flag_recalled(session, exc.lots)`` in a
    transaction of its own, since the refused one is rolled back)."""
    recalled = recalled_lines(session, order)
    if recalled:
        numbers = sorted({lot.lot_number for entry in recalled for lot in entry.lots})
        raise RecalledGoods(
            N_("Order %(number)s contains recalled lot %(lot)s: do not hand it over; refund the customer."),
            lots=[lot for entry in recalled for lot in entry.lots],
            number=order.number,
            lot=", ".join(numbers),
        )


# Moving into these states brings goods towards the customer: never with recalled goods.
TOWARDS_CUSTOMER = ("packed", "shipped", "ready_for_pickup", "completed")


# An order that took stock and still counts: held for its customer, or sold. Released
# reservations (cancelled or expired before payment) never reached the customer.
ACTIVE_STOCK_STATES = ("held", "sold")


def allowed(from_state: str, to_state: str) -> bool:
    return to_state in TRANSITIONS.get(from_state, set())


def move(
    session: Session,
    order: Order,
    to_state: str,
    *,
    user_id: int | None = None,
    note: str | None = None,
    extra: dict | None = None,
    system: bool = False,
) -> None:
    """Move ``order`` to ``to_state`` if allowed and nobody moved it meanwhile.

    Packing, shipping, readying and handing over are refused while any of the order's lots
    is recalled (``check_not_recalled``): every staff action and every other path comes here.
    ``system`` allows the moves in ``SYSTEM_TRANSITIONS`` too (a failed refund taking the order
    back to where it was: no goods move then, so no recall check).
    """
    from_state = order.status
    by_system = system and to_state in SYSTEM_TRANSITIONS.get(from_state, set())
    if not allowed(from_state, to_state) and not by_system:
        raise OrderError(N_("This change is not allowed for the order in its current state."))
    if to_state in TOWARDS_CUSTOMER and not by_system:
        check_not_recalled(session, order)
    values = {"status": to_state, "updated_at": utcnow(), **(extra or {})}
    changed = rows_affected(
        session.execute(
            update(Order)
            .where(Order.id == order.id, Order.status == from_state)
            .values(**values)
            .execution_options(synchronize_session=False)
        )
    )
    session.refresh(order)
    if changed != 1:
        raise OrderError(N_("The order was changed by someone else; reload and try again."))
    audit.record(
        session,
        "shop.order.status",
        order,
        user_id=user_id,
        details={"from": from_state, "to": to_state},
        note=note,
    )


def staff_action(session: Session, order: Order, action: str, *, user_id: int | None) -> None:
    if action not in STAFF_ACTIONS:
        raise OrderError(N_("Unknown action."))
    sources, target = STAFF_ACTIONS[action]
    sources = (sources,) if isinstance(sources, str) else sources
    if order.status not in sources:
        raise OrderError(N_("This change is not allowed for the order in its current state."))
    if action == "ship" and order.fulfilment != "delivery":
        raise OrderError(N_("This order is collected at the sales centre, not shipped."))
    if action == "ready" and order.fulfilment != "pickup":
        raise OrderError(N_("This order is delivered, not collected."))
    move(session, order, target, user_id=user_id)


def cancel(session: Session, order: Order, *, user_id: int | None, reason: str = "") -> None:
    """Cancel an unpaid order and return its stock. Paid orders are refunded instead."""
    if order.status != "pending_payment":
        raise OrderError(N_("Only unpaid orders can be cancelled; refund a paid order."))
    if not release_stock(session, order, new_status="cancelled"):
        raise OrderError(N_("The order was changed by someone else; reload and try again."))
    audit.record(
        session,
        "shop.order.status",
        order,
        user_id=user_id,
        details={"from": "pending_payment", "to": "cancelled"},
        note=reason or None,
    )


def get_by_token(session: Session, token: str) -> Order | None:
    return session.scalar(select(Order).where(Order.token == token).options(selectinload(Order.lines)))


def get_by_number(session: Session, number: str) -> Order | None:
    return session.scalar(select(Order).where(Order.number == number).options(selectinload(Order.lines)))


def list_orders(
    session: Session,
    *,
    status: str | None = None,
    attention: bool = False,
    q: str | None = None,
    limit: int = 200,
) -> list[Order]:
    stmt = select(Order).options(selectinload(Order.lines)).order_by(Order.created_at.desc(), Order.id.desc())
    if status:
        stmt = stmt.where(Order.status == status)
    if attention:
        stmt = stmt.where(Order.attention.is_not(None))
    if q:
        like = f"%{q.strip()[:40]}%"
        stmt = stmt.where(Order.number.ilike(like) | Order.contact_name.ilike(like) | Order.phone.ilike(like))
    return list(session.scalars(stmt.limit(limit)))


def orders_of_user(session: Session, user_id: int) -> list[Order]:
    return list(
        session.scalars(
            select(Order)
            .where(Order.user_id == user_id)
            .options(selectinload(Order.lines))
            .order_by(Order.created_at.desc(), Order.id.desc())
        )
    )


def counts_by_status(session: Session) -> dict[str, int]:
    return dict(session.execute(select(Order.status, func.count(Order.id)).group_by(Order.status)).all())


def packing_list(session: Session) -> tuple[list[Order], list[dict]]:
    """Paid orders waiting to be packed, and the total quantity of each product to pick."""
    orders = list_orders(session, status="paid")
    totals: dict[tuple, Decimal] = defaultdict(Decimal)
    for order in orders:
        for line in order.lines:
            totals[(line.product_id, line.name_zh, line.name_en, line.unit)] += Decimal(line.quantity)
    items = [
        {"product_id": k[0], "name_zh": k[1], "name_en": k[2], "unit": k[3], "quantity": q}
        for k, q in sorted(totals.items(), key=lambda kv: kv[0][1])
    ]
    return orders, items


def pickup_list(session: Session) -> list[Order]:
    """Orders to hand over at the sales centre: ready ones, and unpaid cash-on-pickup ones."""
    stmt = (
        select(Order)
        .options(selectinload(Order.lines))
        .where(
            Order.fulfilment == "pickup",
            (Order.status == "ready_for_pickup")
            | ((Order.status == "pending_payment") & (Order.payment_method == "cash")),
        )
        .order_by(Order.created_at)
    )
    return list(session.scalars(stmt))


def attention_events(session: Session) -> list[StripeEvent]:
    return list(
        session.scalars(
            select(StripeEvent)
            .where(StripeEvent.attention.is_not(None))
            .order_by(StripeEvent.received_at.desc())
        )
    )


def resolve_attention(session: Session, order: Order, *, user_id: int | None, note: str) -> None:
    audit.record(
        session,
        "shop.order.resolve",
        order,
        user_id=user_id,
        details={"attention": order.attention},
        note=note or None,
    )
    order.attention = None


# --- what traceability asks of orders (shop.trace.ports.ShopPort) -----------------------


def sales_of(session: Session, lot_id: int) -> list[Sale]:
    """Paid orders' takings from a lot (no customer data): when, how much, shipped when.

    A payment recorded at or after the lot's recall is no sale: the goods are never handed
    over (``move`` refuses) and the money is refunded, so the trace page and the EPCIS export
    never show a sale after the recall.
    """
    rows = session.execute(
        select(
            Order.paid_at,
            Order.created_at,
            Order.status,
            Order.fulfilment,
            Order.updated_at,
            OrderLineLot.quantity,
            Order.number,
        )
        .select_from(OrderLineLot)
        .join(OrderLine, OrderLine.id == OrderLineLot.line_id)
        .join(Order, Order.id == OrderLine.order_id)
        .join(HarvestLot, HarvestLot.id == OrderLineLot.lot_id)
        .where(
            OrderLineLot.lot_id == lot_id,
            Order.stock_state == "sold",
            HarvestLot.recalled_at.is_(None)
            | (func.coalesce(Order.paid_at, Order.created_at) < HarvestLot.recalled_at),
        )
        .order_by(Order.paid_at, Order.id)
    ).all()
    return [
        Sale(
            paid or created,
            qty,
            updated if status == "shipped" or (status == "completed" and fulfilment == "delivery") else None,
            number,
        )
        for paid, created, status, fulfilment, updated, qty, number in rows
    ]


def orders_for_lot(session: Session, lot_id: int, *, include_descendants: bool = True) -> list[AffectedOrder]:
    """Orders (and their customers' contacts) that took stock from the lot or anything made from it.

    Released reservations (cancelled or expired before payment) are left out: those
    customers never received the goods; except orders cancelled at or after the lot's recall
    (``flag_recalled`` cancels the unpaid ones): those customers are told why.
    """
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
        .join(HarvestLot, HarvestLot.id == OrderLineLot.lot_id)
        .where(
            OrderLineLot.lot_id.in_(list(lots)),
            Order.stock_state.in_(ACTIVE_STOCK_STATES)
            | (
                (Order.status == "cancelled")
                & HarvestLot.recalled_at.is_not(None)
                & (Order.updated_at >= HarvestLot.recalled_at)
            ),
        )
        .order_by(Order.created_at, Order.id)
    ).all()
    grouped: dict[int, tuple[Order, list[str], list[Decimal], str]] = {}
    for order, unit, lot_ref, qty in rows:
        _order, numbers, taken, _unit = grouped.setdefault(order.id, (order, [], [], unit))
        if lots[lot_ref].lot_number not in numbers:
            numbers.append(lots[lot_ref].lot_number)
        taken.append(qty)
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
            lot_numbers=tuple(numbers),
            quantity=sum(taken, Decimal(0)),
            unit=unit,
        )
        for o, numbers, taken, unit in grouped.values()
    ]
