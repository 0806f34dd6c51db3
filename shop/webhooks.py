"""Stripe webhook events: verify, record once, act.

``verify`` checks the ``Stripe-Signature`` header on the raw body with the SDK
(``stripe.Webhook.construct_event``); ``handle`` records the event id first (a replay
finds it and does nothing) and then applies the event. Every effect is itself guarded
by the order's state, so events arriving out of order (expired after completed,
completed twice under two ids) have no second effect.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

import stripe
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core import clock
from core.config import Settings
from shop import payments, settlement
from shop.models import Order, Payment, StripeEvent

log = logging.getLogger(__name__)
HANDLED = (
    "checkout.session.completed",
    "checkout.session.async_payment_succeeded",
    "checkout.session.async_payment_failed",
    "checkout.session.expired",
    "charge.refunded",
    "payout.paid",
)


class BadSignature(ValueError):
    """The payload was not signed by Stripe with our endpoint secret, or is too old."""


def verify(payload: bytes, signature: str | None, secret: str, *, tolerance: int = 300) -> dict:
    """The event as a plain dict if the signature is valid and fresh; else ``BadSignature``."""
    if not secret:
        raise BadSignature("no webhook secret configured")
    try:
        stripe.Webhook.construct_event(payload, signature or "", secret, tolerance=tolerance)
    except (stripe.SignatureVerificationError, ValueError) as exc:
        raise BadSignature(str(exc)) from exc
    event = json.loads(payload)
    if not isinstance(event, dict) or not event.get("id") or not event.get("type"):
        raise BadSignature("not an event")
    return event


def _event_time(event: dict) -> datetime:
    """When Stripe says the event happened (the money moved then, even if the delivery is late);
    never later than now, and now if the event carries no time."""
    now = clock.now()
    created = int(event.get("created") or 0)
    if created <= 0:
        return now
    return min(datetime.fromtimestamp(created, UTC), now)


def _order_for(session: Session, obj: dict) -> Order | None:
    """The order a Checkout Session or charge belongs to (metadata, reference or id)."""
    meta = obj.get("metadata") or {}
    number = meta.get("order_number") or obj.get("client_reference_id")
    if number:
        order = session.scalar(select(Order).where(Order.number == number))
        if order is not None:
            return order
    if obj.get("object") == "checkout.session" and obj.get("id"):
        return session.scalar(select(Order).where(Order.stripe_session_id == obj["id"]))
    pi = obj.get("payment_intent")
    if isinstance(pi, dict):
        pi = pi.get("id")
    if pi:
        return session.scalar(select(Order).where(Order.stripe_payment_intent == pi))
    return None


PAID = ("checkout.session.completed", "checkout.session.async_payment_succeeded")


def handle(session: Session, event: dict, settings: Settings) -> str:
    """Apply a verified event once; returns a short outcome. The caller commits.

    Raises nothing for events we do not act on (they are recorded and acknowledged).
    What Stripe must tell us (the payment's fee) is asked before anything is written, so
    no write transaction waits on the network; the event id is recorded in a savepoint,
    so a concurrent delivery of the same event changes nothing and the caller's
    transaction stays usable.
    """
    if session.get(StripeEvent, event["id"]) is not None:
        return "duplicate event"
    obj = (event.get("data") or {}).get("object") or {}
    kind = event["type"]
    fee: tuple[int, str | None] = (0, None)
    if kind in PAID and obj.get("payment_status") == "paid" and obj.get("id"):
        fee = payments.stripe_fee(settings, obj["id"])
    row = StripeEvent(id=event["id"], type=event["type"][:80], created=int(event.get("created") or 0))
    try:
        with session.begin_nested():
            session.add(row)
    except IntegrityError:
        return "duplicate event"
    if kind not in HANDLED:
        row.outcome = "ignored"
        return row.outcome
    if kind == "payout.paid":
        arrived = datetime.fromtimestamp(int(obj.get("arrival_date") or event.get("created") or 0), UTC)
        settlement.post_payout(
            session,
            obj.get("id") or event["id"],
            int(obj.get("amount") or 0),
            arrived=settlement.local_day(arrived),
        )
        row.outcome = "payout posted"
        return row.outcome
    order = _order_for(session, obj)
    if order is None:
        if kind in (
            "checkout.session.completed",
            "checkout.session.async_payment_succeeded",
            "charge.refunded",
        ):
            row.attention = (
                f"{kind} for no known order ({obj.get('id')}, {obj.get('amount_total') or obj.get('amount')})"
            )
            log.warning("Stripe %s %s: %s", kind, event["id"], row.attention)
        row.outcome = "no order"
        return row.outcome
    row.order_id = order.id
    if kind in PAID:
        if obj.get("payment_status") != "paid":
            row.outcome = "waiting for asynchronous payment"
            return row.outcome
        if (obj.get("currency") or "cny").lower() != "cny":
            order.attention = f"Stripe payment in {obj.get('currency')} instead of CNY."
        if session.scalar(select(Payment.id).where(Payment.reference == f"stripe:{obj['id']}")) is not None:
            row.outcome = "duplicate payment"
            return row.outcome
        fee_fen, pi = fee
        pi = pi or (obj.get("payment_intent") if isinstance(obj.get("payment_intent"), str) else None)
        row.outcome = payments.mark_paid(
            session,
            order,
            method="stripe",
            amount_fen=int(obj.get("amount_total") or 0),
            reference=f"stripe:{obj['id']}",
            fee_fen=fee_fen,
            payment_intent=pi,
            now=_event_time(event),
        )
    elif kind in ("checkout.session.async_payment_failed", "checkout.session.expired"):
        cancelled = payments.cancel_unpaid(session, order, reason=kind)
        row.outcome = "cancelled, stock returned" if cancelled else f"no effect (order {order.status})"
    elif kind == "charge.refunded":
        added = payments.record_stripe_refunds(session, order, obj, now=_event_time(event))
        row.outcome = f"{added} refund(s) recorded" if added else "refunds already recorded"
    return row.outcome
