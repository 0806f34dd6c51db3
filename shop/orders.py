"""Order states, the transitions allowed between them, and the staff lists.

Every change of state is a conditional UPDATE (``WHERE status = <expected>``), so two
staff members (or a webhook and a person) cannot both move the same order.
"""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, selectinload

from core import audit
from core.db import rows_affected, utcnow
from core.errors import DomainError
from shop import N_
from shop.checkout import release_stock
from shop.models import Order, OrderLine, StripeEvent

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
# What staff may do by hand (paid, refunded and cancelled have their own services).
STAFF_ACTIONS = {
    "pack": ("paid", "packed"),
    "ship": ("packed", "shipped"),
    "ready": ("packed", "ready_for_pickup"),
    "complete": (("shipped", "ready_for_pickup"), "completed"),
}


class OrderError(DomainError):
    """An order change was refused."""


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
) -> None:
    """Move ``order`` to ``to_state`` if allowed and nobody moved it meanwhile."""
    from_state = order.status
    if not allowed(from_state, to_state):
        raise OrderError(N_("This change is not allowed for the order in its current state."))
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


def lines_for_lot(session: Session, lot_id: int) -> list[OrderLine]:
    """Order lines that received goods from a lot (for a recall)."""
    from shop.models import OrderLineLot

    return list(
        session.scalars(
            select(OrderLine)
            .join(OrderLineLot, OrderLineLot.line_id == OrderLine.id)
            .where(OrderLineLot.lot_id == lot_id)
            .options(selectinload(OrderLine.order))
        )
    )
