"""Payments: Stripe Checkout Sessions, cash or transfer at pickup, and refunds.

``mark_paid`` is the single place an order becomes paid, whoever calls it (the webhook,
or staff at the sales centre); it claims the order with a conditional UPDATE, so a
payment is never counted twice, and posts the sale to the village books.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any, cast

import stripe
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from core import audit
from core.config import Settings
from core.db import rows_affected, utcnow
from core.errors import DomainError
from shop import N_, settlement
from shop.checkout import release_stock, reserve_again
from shop.models import Order, OrderLine, Payment, Refund

log = logging.getLogger(__name__)
DEFAULT_METHODS = ("card", "alipay", "wechat_pay")


class PaymentError(DomainError):
    """A payment operation was refused or failed."""


# --- Stripe ---------------------------------------------------------------------------


def stripe_client(settings: Settings) -> stripe.StripeClient | None:
    """A Stripe client for these settings, or None when no secret key is configured."""
    if not settings.stripe_enabled:
        return None
    kwargs: dict = {"max_network_retries": 2}
    if settings.stripe_api_base:
        kwargs["base_addresses"] = {"api": settings.stripe_api_base}
    return stripe.StripeClient(settings.stripe_secret_key, **kwargs)


def payment_method_types(settings: Settings) -> list[str]:
    methods = [m.strip() for m in settings.stripe_payment_methods.split(",") if m.strip()]
    return methods or list(DEFAULT_METHODS)


def start_checkout(
    session: Session, order: Order, settings: Settings, *, success_url: str, cancel_url: str
) -> str:
    """The Stripe Checkout URL for an unpaid order, creating the session once.

    The idempotency key is the order number, so a double click, a refresh or a retry
    after a network error all get the same Checkout Session.
    """
    if order.status != "pending_payment" or order.payment_method != "stripe":
        raise PaymentError(N_("This order is not waiting for an online payment."))
    if order.stripe_checkout_url:
        return order.stripe_checkout_url
    client = stripe_client(settings)
    if client is None:
        raise PaymentError(N_("Online payment is not available; pay at pickup."))
    methods = payment_method_types(settings)
    params: dict[str, Any] = {
        "mode": "payment",
        "currency": "cny",
        "client_reference_id": order.number,
        "line_items": [
            {
                "price_data": {
                    "currency": "cny",
                    "unit_amount": line.total_fen,
                    "product_data": {
                        "name": f"{line.name_zh} {line.name_en} × {line.quantity.normalize():f} {line.unit}"
                    },
                },
                "quantity": 1,
            }
            for line in order.lines
        ],
        "payment_method_types": methods,
        "metadata": {"order_id": str(order.id), "order_number": order.number},
        "payment_intent_data": {"metadata": {"order_id": str(order.id), "order_number": order.number}},
        "success_url": success_url
        + ("&" if "?" in success_url else "?")
        + "session_id={CHECKOUT_SESSION_ID}",
        "cancel_url": cancel_url,
    }
    if "wechat_pay" in methods:
        params["payment_method_options"] = {"wechat_pay": {"client": "web"}}
    if order.reserved_until:
        params["expires_at"] = int(order.reserved_until.timestamp())
    if order.email:
        params["customer_email"] = order.email
    try:
        cs = client.v1.checkout.sessions.create(
            cast(Any, params), {"idempotency_key": f"tianyuan-checkout-{order.number}"}
        )
    except stripe.StripeError as exc:
        log.warning("Stripe checkout for order %s failed: %s", order.number, exc)
        raise PaymentError(N_("The payment service did not answer; try again in a moment.")) from exc
    if not cs.url:
        raise PaymentError(N_("The payment service did not answer; try again in a moment."))
    order.stripe_session_id = cs.id
    order.stripe_checkout_url = cs.url
    return cs.url


def expire_checkout(settings: Settings, session_id: str | None) -> bool:
    """Close an open Checkout Session so an order cancelled here can no longer be paid there."""
    client = stripe_client(settings)
    if client is None or not session_id:
        return False
    try:
        client.v1.checkout.sessions.expire(session_id)
    except stripe.StripeError as exc:  # already expired or completed: the webhook tells the rest
        log.info("could not expire %s: %s", session_id, exc)
        return False
    return True


def checkout_session_state(settings: Settings, session_id: str) -> str | None:
    """Stripe's view of a Checkout Session ('paid', 'unpaid', 'expired'...), or None if unknown.

    For display only: the return page never fulfils an order by itself.
    """
    client = stripe_client(settings)
    if client is None or not session_id:
        return None
    try:
        cs = client.v1.checkout.sessions.retrieve(session_id).to_dict()
    except stripe.StripeError:
        return None
    if cs.get("status") == "expired":
        return "expired"
    return cs.get("payment_status")


def stripe_fee(settings: Settings, session_id: str) -> tuple[int, str | None]:
    """(fee in fen, payment intent id) of a paid Checkout Session, (0, None) if unknown."""
    client = stripe_client(settings)
    if client is None:
        return 0, None
    try:
        cs = client.v1.checkout.sessions.retrieve(
            session_id, {"expand": ["payment_intent.latest_charge.balance_transaction"]}
        ).to_dict()
    except stripe.StripeError as exc:
        log.warning("could not read fees of %s: %s", session_id, exc)
        return 0, None
    pi = cs.get("payment_intent")
    if not isinstance(pi, dict):
        return 0, pi
    charge = pi.get("latest_charge")
    bt = charge.get("balance_transaction") if isinstance(charge, dict) else None
    fee = int(bt.get("fee") or 0) if isinstance(bt, dict) else 0
    return fee, pi.get("id")


# --- becoming paid ----------------------------------------------------------------------


def mark_paid(
    session: Session,
    order: Order,
    *,
    method: str,
    amount_fen: int,
    reference: str,
    fee_fen: int = 0,
    user_id: int | None = None,
    now: datetime | None = None,
    payment_intent: str | None = None,
) -> str:
    """Record a payment and make the order paid, exactly once. Returns what happened.

    - a reference already recorded (the same Stripe session twice): nothing changes;
    - a payment for an order whose reservation lapsed: stock is taken again if there is
      any, else the order is paid but flagged for staff (refund or source the goods);
    - an amount different from the order total: paid, and flagged.
    """
    now = now or utcnow()
    if session.scalar(select(Payment.id).where(Payment.reference == reference)) is not None:
        return "duplicate payment"
    claim = rows_affected(
        session.execute(
            update(Order)
            .where(Order.id == order.id, Order.status == "pending_payment", Order.stock_state == "held")
            .values(status="paid", stock_state="sold", paid_at=now, updated_at=now)
            .execution_options(synchronize_session=False)
        )
    )
    attention: list[str] = []
    duplicate = False
    if claim != 1:
        session.refresh(order)
        if order.paid_fen > 0 or order.status not in ("cancelled", "pending_payment"):
            duplicate = True  # paid already by another payment: owed back to the customer
            attention.append("A second payment arrived for an order that was already paid; refund it.")
        else:
            # the reservation lapsed (or was cancelled) before the payment came in
            late = rows_affected(
                session.execute(
                    update(Order)
                    .where(Order.id == order.id, Order.status == order.status, Order.paid_fen == 0)
                    .values(status="paid", paid_at=now, updated_at=now)
                    .execution_options(synchronize_session=False)
                )
            )
            if late != 1:
                return "order changed meanwhile"
            session.refresh(order)
            if order.stock_state == "released" and not reserve_again(session, order):
                attention.append(
                    "Paid after its reservation expired and the stock is gone; refund or source the goods."
                )
            elif order.stock_state == "held":
                order.stock_state = "sold"
    payment = Payment(
        order_id=order.id,
        method=method,
        amount_fen=amount_fen,
        fee_fen=fee_fen,
        reference=reference,
        received_by_id=user_id,
        created_at=now,
    )
    session.add(payment)
    session.flush()
    session.refresh(order)
    if payment_intent and not order.stripe_payment_intent:
        order.stripe_payment_intent = payment_intent
    if attention:
        order.attention = " ".join(filter(None, [order.attention, *attention]))
    audit.record(
        session,
        "shop.order.paid",
        order,
        user_id=user_id,
        details={
            "method": method,
            "amount_fen": amount_fen,
            "fee_fen": fee_fen,
            "reference": reference,
            "duplicate": duplicate,
        },
    )
    if duplicate:
        settlement.post_overpayment(session, order, payment, user_id=user_id)
        return "duplicate payment (flagged)"
    order.paid_fen += amount_fen
    order.fee_fen += fee_fen
    if amount_fen != order.total_fen:
        attention.append(f"Paid {amount_fen} fen for an order of {order.total_fen} fen.")
        order.attention = " ".join(filter(None, [order.attention, attention[-1]]))
    settlement.post_sale(session, order, payment, user_id=user_id)
    return "paid" + (" (flagged)" if attention else "")


def record_counter_payment(
    session: Session, order: Order, *, method: str, user_id: int, receipt: str = ""
) -> str:
    """Staff took cash or a transfer at the sales centre for the full order total."""
    if method not in ("cash", "transfer"):
        raise PaymentError(N_("Choose cash or transfer."))
    if order.status != "pending_payment":
        raise PaymentError(N_("This order is not waiting for payment."))
    reference = f"{method}:{order.number}"
    result = mark_paid(
        session, order, method=method, amount_fen=order.total_fen, reference=reference, user_id=user_id
    )
    if receipt:
        audit.record(session, "shop.order.receipt", order, user_id=user_id, note=receipt)
    return result


def cancel_unpaid(session: Session, order: Order, *, reason: str) -> bool:
    """Payment failed or the Checkout Session expired: cancel and return stock, once."""
    if order.status != "pending_payment":
        return False
    return release_stock(session, order, new_status="cancelled")


# --- refunds --------------------------------------------------------------------------


def next_refund_key(order: Order) -> str:
    """The business idempotency key the refund form carries (a double submit reuses it)."""
    return f"refund-{order.number}-{len(order.refunds) + 1}"


def refund(
    session: Session,
    order: Order,
    amount_fen: int,
    *,
    key: str,
    settings: Settings,
    reason: str = "",
    user_id: int | None = None,
    line_id: int | None = None,
    now: datetime | None = None,
) -> Refund:
    """Refund part or all of a paid order through the way it was paid.

    Stripe refunds carry ``key`` as the idempotency key, so a repeated submit refunds once.
    A full refund of an order not yet handed over returns its stock.
    """
    now = now or utcnow()
    existing = session.scalar(select(Refund).where(Refund.idempotency_key == key))
    if existing is not None:
        return existing
    if order.paid_fen <= 0:
        raise PaymentError(N_("This order has not been paid."))
    if amount_fen <= 0:
        raise PaymentError(N_("Enter an amount to refund."))
    if amount_fen > order.refundable_fen:
        raise PaymentError(N_("That is more than can still be refunded."))
    if line_id is not None:
        line = session.get(OrderLine, line_id)
        if line is None or line.order_id != order.id:
            raise PaymentError(N_("Unknown order line."))
        if amount_fen > line.total_fen - line.refunded_fen:
            raise PaymentError(N_("That is more than this line can still give back."))
    stripe_refund_id = None
    status = "succeeded"
    if order.payment_method == "stripe" and order.stripe_payment_intent:
        method = "stripe"
    else:
        method = next((p.method for p in order.payments if p.method != "stripe"), "cash")
    if method == "stripe":
        client = stripe_client(settings)
        if client is None:
            raise PaymentError(N_("Stripe is not configured; refund in cash and record it."))
        try:
            sr = client.v1.refunds.create(
                cast(
                    Any,
                    {
                        "payment_intent": order.stripe_payment_intent,
                        "amount": amount_fen,
                        "metadata": {"order_number": order.number, "key": key},
                    },
                ),
                {"idempotency_key": key},
            )
        except stripe.StripeError as exc:
            log.warning("Stripe refund for order %s failed: %s", order.number, exc)
            raise PaymentError(N_("The payment service refused the refund.")) from exc
        stripe_refund_id = sr.id
        status = sr.to_dict().get("status") or "succeeded"
        if status == "failed":
            raise PaymentError(N_("The payment service refused the refund."))
    return _record_refund(
        session,
        order,
        amount_fen,
        method=method,
        key=key,
        reason=reason,
        user_id=user_id,
        line_id=line_id,
        stripe_refund_id=stripe_refund_id,
        status=status,
        now=now,
    )


def _record_refund(
    session: Session,
    order: Order,
    amount_fen: int,
    *,
    method: str,
    key: str,
    reason: str,
    user_id: int | None,
    line_id: int | None,
    stripe_refund_id: str | None,
    status: str,
    now: datetime,
) -> Refund:
    amounts = settlement.refund_amounts(order, amount_fen, line_id)
    row = Refund(
        order_id=order.id,
        order=order,
        amount_fen=amount_fen,
        method=method,
        reason=reason[:1000],
        status=status,
        idempotency_key=key,
        stripe_refund_id=stripe_refund_id,
        line_id=line_id,
        created_by_id=user_id,
        created_at=now,
    )
    session.add(row)
    session.flush()
    for line in order.lines:
        line.refunded_fen += amounts.get(line.id, 0)
    order.refunded_fen += amount_fen
    if order.refunded_fen >= order.paid_fen:
        before = order.status
        if before in ("paid", "packed") and order.stock_state == "sold":
            release_stock(session, order, from_states=("sold",))
            row.restocked = True
        order.status = "refunded"
        order.updated_at = now
        audit.record(
            session, "shop.order.status", order, user_id=user_id, details={"from": before, "to": "refunded"}
        )
    audit.record(
        session,
        "shop.order.refund",
        order,
        user_id=user_id,
        details={
            "amount_fen": amount_fen,
            "method": method,
            "key": key,
            "stripe_refund_id": stripe_refund_id,
        },
        note=reason or None,
    )
    settlement.post_refund(session, row, amounts, user_id=user_id)
    return row


def record_stripe_refunds(
    session: Session, order: Order, charge: dict, *, now: datetime | None = None
) -> int:
    """Bring our refunds in line with a ``charge.refunded`` event (e.g. made in the Dashboard).

    Refunds we made ourselves are already recorded (by refund id); anything else Stripe
    has refunded is recorded now. Returns the number of new refunds.
    """
    now = now or utcnow()
    added = 0
    known = set(session.scalars(select(Refund.stripe_refund_id).where(Refund.order_id == order.id)))
    listed = ((charge.get("refunds") or {}).get("data")) or []
    for sr in listed:
        if sr.get("id") in known or sr.get("status") not in ("succeeded", "pending"):
            continue
        amount = min(int(sr.get("amount") or 0), order.refundable_fen)
        if amount > 0:
            _record_refund(
                session,
                order,
                amount,
                method="stripe",
                key=f"stripe-{sr['id']}",
                reason="Refunded in Stripe",
                user_id=None,
                line_id=None,
                stripe_refund_id=sr["id"],
                status=sr.get("status"),
                now=now,
            )
            added += 1
    missing = int(charge.get("amount_refunded") or 0) - order.refunded_fen
    if missing > 0 and not listed:
        amount = min(missing, order.refundable_fen)
        if amount > 0:
            _record_refund(
                session,
                order,
                amount,
                method="stripe",
                key=f"stripe-{charge.get('id')}-{charge.get('amount_refunded')}",
                reason="Refunded in Stripe",
                user_id=None,
                line_id=None,
                stripe_refund_id=None,
                status="succeeded",
                now=now,
            )
            added += 1
    return added
