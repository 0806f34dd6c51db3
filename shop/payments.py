"""Payments: Stripe Checkout Sessions, cash or transfer at pickup, and refunds.

``mark_paid`` is the single place an order becomes paid, whoever calls it (the webhook,
or staff at the sales centre); it claims the order with a conditional UPDATE, so a
payment is never counted twice, and posts the sale to the village books. It takes only
the order's exact total in CNY (anything else is ``PaymentMismatch``: the webhook records
and flags it, nothing is fulfilled or booked) and refuses a counter payment for an order
with a recalled line (a Stripe payment for one is recorded, flagged "recalled: refund").

``refund`` claims the order's refunded amount with a conditional UPDATE before it writes
anything, so two identical clicks refund once and the second hears ``AlreadyDone``;
``refund_failed`` undoes a refund Stripe could not complete (its booking is reversed by a
voucher of its own).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, cast

import stripe
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from core import audit
from core.config import Settings
from core.db import rows_affected, utcnow
from core.errors import DomainError
from core.models import AuditEntry
from core.money import allocate, format_fen
from shop import N_, notes, settlement
from shop.checkout import release_stock, reserve_again
from shop.models import Order, OrderLine, OrderLineLot, Payment, Refund
from shop.orders import recalled_lines

log = logging.getLogger(__name__)
DEFAULT_METHODS = ("card", "alipay", "wechat_pay")
CURRENCY = "cny"
# Stripe refuses a Checkout Session that expires less than 30 minutes after it is created;
# the margin covers the request's way to Stripe and a clock that is a little off.
STRIPE_MIN_LIFETIME = timedelta(minutes=30)
EXPIRY_MARGIN = timedelta(minutes=3)
STRIPE_MAX_LIFETIME = timedelta(hours=24)


class PaymentError(DomainError):
    """A payment operation was refused or failed."""


class AlreadyDone(PaymentError):
    """The same payment or refund was already recorded (a second click): nothing more was done."""


class PaymentMismatch(PaymentError):
    """A payment that is not the order's exact total in CNY; ``problem`` names what differs."""

    def __init__(self, template: str, *, problem: str, **params: Any) -> None:
        super().__init__(template, **params)
        self.problem = problem


def checkout_expiry(order: Order, now: datetime) -> datetime:
    """When a Checkout Session created ``now`` for ``order`` should expire: the end of the
    order's reservation, but never sooner than Stripe's minimum lifetime plus a margin (nor
    later than its maximum)."""
    earliest = now + STRIPE_MIN_LIFETIME + EXPIRY_MARGIN
    wanted = order.reserved_until or earliest
    return min(max(wanted, earliest), now + STRIPE_MAX_LIFETIME)


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
    recalled = recalled_lines(session, order)
    if recalled:  # asked before the stored link too: a recall stops the payment step
        raise PaymentError(
            N_(
                "This order contains %(names)s from a recalled harvest lot and can no longer be paid; "
                "nothing was charged. See the recall notice on this page."
            ),
            names="、".join(r.line.name_zh for r in recalled),
        )
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
    expires = checkout_expiry(order, utcnow())
    params["expires_at"] = math.ceil(expires.timestamp())
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
    if order.reserved_until is None or order.reserved_until < expires:
        # the stock stays held as long as the customer may still pay on Stripe's page
        order.reserved_until = expires
        order.updated_at = utcnow()
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


def expire_recalled_checkouts(session: Session, lots: Sequence[Any], settings: Settings) -> int:
    """After a recall has committed: close the open Checkout Sessions of the unpaid Stripe
    orders it cancelled (``orders.flag_recalled``), so a tab left open cannot pay them.
    Network calls, so never inside a write transaction. Returns how many were closed."""
    ids = [lot.id for lot in lots]
    if not ids:
        return 0
    sessions = session.scalars(
        select(Order.stripe_session_id)
        .join(OrderLine, OrderLine.order_id == Order.id)
        .join(OrderLineLot, OrderLineLot.line_id == OrderLine.id)
        .where(
            OrderLineLot.lot_id.in_(ids),
            Order.status == "cancelled",
            Order.paid_fen == 0,
            Order.stripe_session_id.is_not(None),
        )
        .distinct()
    ).all()
    return sum(1 for sid in sessions if expire_checkout(settings, sid))


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


def charge_refunds(settings: Settings, charge_id: str) -> list[dict] | None:
    """Every Refund object of a charge, as Stripe lists them (``GET /v1/refunds?charge=``), or
    None if Stripe cannot be asked. A ``charge.refunded`` event carries no refund list by
    default (API versions since 2022-11-15), only ``amount_refunded``: we book refunds by
    their own ids and statuses, never an amount without an id."""
    client = stripe_client(settings)
    if client is None or not charge_id:
        return None
    try:
        page = client.v1.refunds.list({"charge": charge_id, "limit": 100})
        return [r.to_dict() for r in page.auto_paging_iter()]
    except stripe.StripeError as exc:
        log.warning("could not list the refunds of %s: %s", charge_id, exc)
        return None


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
    currency: str = CURRENCY,
) -> str:
    """Record a payment and make the order paid, exactly once. Returns what happened.

    - a reference already recorded (the same Stripe session twice, a second click at the
      counter, also when it raced the first): nothing changes, "duplicate payment";
    - an amount other than the order's total, or a currency other than CNY:
      ``PaymentMismatch``, nothing written (the webhook records and flags it);
    - an order with a line from a recalled lot: a counter payment is refused
      (``PaymentError``); a Stripe payment (the money has moved) is recorded and posted, and
      the order flagged "recalled: refund" for staff to refund in one click;
    - a payment for an order whose reservation lapsed: stock is taken again if there is
      any, else the order is paid but flagged for staff (refund or source the goods).
    """
    now = now or utcnow()
    if session.scalar(select(Payment.id).where(Payment.reference == reference)) is not None:
        return "duplicate payment"
    if (currency or "").lower() != CURRENCY:
        raise PaymentMismatch(
            N_("The payment is in %(currency)s, not in yuan (CNY)."),
            problem="currency_mismatch",
            currency=(currency or "?").upper()[:10],
        )
    if amount_fen != order.total_fen:
        raise PaymentMismatch(
            N_("The payment of %(paid)s fen does not equal the order total of %(total)s fen."),
            problem="amount_mismatch",
            paid=amount_fen,
            total=order.total_fen,
        )
    recalled = recalled_lines(session, order)
    if recalled and method != "stripe":
        raise PaymentError(
            N_(
                "This order contains %(names)s from a recalled harvest lot and must not be sold: do not "
                "take the money; cancel the order and tell the customer."
            ),
            names="、".join(r.line.name_zh for r in recalled),
        )
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
        if session.scalar(select(Payment.id).where(Payment.reference == reference)) is not None:
            return "duplicate payment"  # the same payment, recorded meanwhile by a concurrent request
        if order.paid_fen > 0 or order.status not in ("cancelled", "pending_payment"):
            duplicate = True  # paid already by another payment: owed back to the customer
            attention.append(N_("A second payment arrived for an order that was already paid; refund it."))
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
                gone = N_(
                    "Paid after its reservation expired and the stock is gone; refund or source the goods."
                )
                attention.append(gone)
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
        payment_intent=payment_intent if method == "stripe" else None,
        duplicate=duplicate,
    )
    session.add(payment)
    session.flush()
    session.refresh(order)
    if payment_intent and not order.stripe_payment_intent and not duplicate:
        # the order's payment intent is the sale's: refunds of the sale go there, never to a
        # second payment (which is given back on its own, ``refund_duplicate``)
        order.stripe_payment_intent = payment_intent
    for template in attention:
        order.attention = notes.add(order.attention, template)
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
    settlement.post_sale(session, order, payment, user_id=user_id)
    # asked again on the lots the order holds now: a late payment re-reserved onto clean lots
    # (``reserve_again``) holds no recalled goods, whatever the lapsed reservation held
    recalled = recalled_lines(session, order)
    if recalled:
        order.attention = notes.add(
            order.attention,
            N_("Recalled: refund. Paid online for goods from a recalled lot; do not pack, refund in full."),
        )
        return "paid (recalled: refund)"
    return "paid" + (" (flagged)" if attention else "")


def record_counter_payment(
    session: Session, order: Order, *, method: str, user_id: int, receipt: str = ""
) -> str:
    """Staff took cash or a transfer at the sales centre for the full order total.

    A second click (also one racing the first) hears ``AlreadyDone`` and records nothing.
    """
    if method not in ("cash", "transfer"):
        raise PaymentError(N_("Choose cash or transfer."))
    if order.paid_fen > 0:
        raise AlreadyDone(N_("This order has already been paid; nothing more was recorded."))
    if order.status != "pending_payment":
        raise PaymentError(N_("This order is not waiting for payment."))
    reference = f"{method}:{order.number}"
    result = mark_paid(
        session, order, method=method, amount_fen=order.total_fen, reference=reference, user_id=user_id
    )
    if result == "duplicate payment":
        raise AlreadyDone(N_("This order has already been paid; nothing more was recorded."))
    if result == "order changed meanwhile":
        raise PaymentError(N_("The order was changed by someone else; reload and try again."))
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

    Stripe refunds carry ``key`` as the idempotency key, so a repeated submit refunds once;
    here it hears ``AlreadyDone`` (also when it raced the first: see ``_record_refund``).
    A full refund of an order not yet handed over returns its stock.
    """
    now = now or utcnow()
    if session.scalar(select(Refund.id).where(Refund.idempotency_key == key)) is not None:
        raise AlreadyDone(N_("This refund has already been made; nothing more was refunded."))
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
    # through the way the sale was paid; a second payment (owed back, 211) is never refunded here
    sale = next((p for p in sorted(order.payments, key=lambda p: p.id) if not p.duplicate), None)
    if sale is not None and sale.method == "stripe" and order.stripe_payment_intent:
        method = "stripe"
    elif sale is not None and sale.method != "stripe":
        method = sale.method
    elif order.payment_method == "stripe" and order.stripe_payment_intent:
        method = "stripe"
    else:
        method = "cash"
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
        except stripe.IdempotencyError as exc:  # the same refund is being made by another click
            raise AlreadyDone(N_("This refund has already been made; nothing more was refunded.")) from exc
        except stripe.StripeError as exc:
            log.warning("Stripe refund for order %s failed: %s", order.number, exc)
            raise PaymentError(N_("The payment service refused the refund.")) from exc
        stripe_refund_id = sr.id
        status = sr.to_dict().get("status") or "succeeded"
        if status in ("failed", "canceled"):
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
    # the claim, and the first write: the refunded amount moves only from what we read, so of
    # two identical refunds racing each other one claims and the other finds the first's row
    seen = order.refunded_fen
    claim = rows_affected(
        session.execute(
            update(Order)
            .where(
                Order.id == order.id,
                Order.refunded_fen == seen,
                Order.paid_fen >= seen + amount_fen,
            )
            .values(refunded_fen=Order.refunded_fen + amount_fen, updated_at=now)
            .execution_options(synchronize_session=False)
        )
    )
    if claim != 1:
        if session.scalar(select(Refund.id).where(Refund.idempotency_key == key)) is not None:
            raise AlreadyDone(N_("This refund has already been made; nothing more was refunded."))
        raise PaymentError(N_("The order was changed by someone else; reload and try again."))
    session.refresh(order)
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
        line_amounts={str(k): v for k, v in amounts.items()},
        created_by_id=user_id,
        created_at=now,
    )
    session.add(row)
    session.flush()
    for line in order.lines:
        line.refunded_fen += amounts.get(line.id, 0)
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
    """Bring our refunds in line with the Refund objects Stripe lists for a charge (e.g. made
    in the Dashboard): ``charge["refunds"]["data"]``, filled in by the webhook from Stripe when
    the event does not carry it.

    Refunds we made ourselves are already recorded (by refund id); any other refund that
    Stripe lists ``succeeded`` or ``pending`` is recorded now, with its id and its status (a
    pending one stays pending until its ``refund.updated``). A charge without a list books
    nothing: a refund is never recorded without its id. Returns the number of new refunds.
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
    return added


def duplicates_to_return(order: Order) -> list[Payment]:
    """The order's second payments not yet given back."""
    return [p for p in order.payments if p.duplicate and p.returned_at is None]


def refund_duplicate(
    session: Session,
    payment: Payment,
    *,
    settings: Settings,
    user_id: int | None = None,
    note: str = "",
    now: datetime | None = None,
) -> str:
    """Give back a second payment for an order already paid (``mark_paid`` booked it to 211
    商城待退款, "duplicate payment (flagged)"): through Stripe for a Stripe payment, else
    recorded as cash (or transfer) given back. Books Dr 211 / Cr the money account
    (``settlement.post_duplicate_refund``) and leaves the sale, its voucher, the stock and the
    order's state alone. Once: a second click hears ``AlreadyDone``. Returns the refund's
    reference (the Stripe refund id, or "cash:<payment id>")."""
    now = now or utcnow()
    order = payment.order
    if not payment.duplicate:
        raise PaymentError(N_("This is the order's own payment: refund the order instead."))
    if payment.returned_at is not None:
        raise AlreadyDone(N_("This second payment has already been refunded."))
    # one key per attempt: a double click reuses it; after a failed refund a new one is made
    key = f"tianyuan-duplicate-{payment.id}" + (f"-after-{payment.return_ref}" if payment.return_ref else "")
    reference = f"{payment.method}:{payment.id}"
    if payment.method == "stripe":
        client = stripe_client(settings)
        if client is None or not payment.payment_intent:
            raise PaymentError(
                N_("This payment cannot be refunded from here; refund it in the Stripe Dashboard.")
            )
        try:
            sr = client.v1.refunds.create(
                cast(
                    Any,
                    {
                        "payment_intent": payment.payment_intent,
                        "amount": payment.amount_fen,
                        "metadata": {"order_number": order.number, "key": key, "duplicate": "yes"},
                    },
                ),
                {"idempotency_key": key},
            )
        except stripe.IdempotencyError as exc:
            raise AlreadyDone(N_("This second payment has already been refunded.")) from exc
        except stripe.StripeError as exc:
            log.warning("Stripe refund of second payment %s failed: %s", payment.id, exc)
            raise PaymentError(N_("The payment service refused the refund.")) from exc
        if (sr.to_dict().get("status") or "succeeded") in ("failed", "canceled"):
            raise PaymentError(N_("The payment service refused the refund."))
        reference = sr.id
    if not _return_duplicate(session, payment, reference=reference, amount_fen=payment.amount_fen, now=now):
        raise AlreadyDone(N_("This second payment has already been refunded."))
    audit.record(
        session,
        "shop.order.duplicate_refund",
        order,
        user_id=user_id,
        details={"payment_id": payment.id, "amount_fen": payment.amount_fen, "reference": reference},
        note=note[:1000] or None,
    )
    settlement.post_duplicate_refund(session, payment, reference=reference, when=now, user_id=user_id)
    return reference


def _return_duplicate(
    session: Session, payment: Payment, *, reference: str, amount_fen: int, now: datetime
) -> bool:
    """Claim a second payment as given back (a conditional UPDATE: once) and note it for staff."""
    claim = rows_affected(
        session.execute(
            update(Payment)
            .where(Payment.id == payment.id, Payment.duplicate.is_(True), Payment.returned_at.is_(None))
            .values(returned_at=now, return_ref=reference[:255])
            .execution_options(synchronize_session=False)
        )
    )
    if claim != 1:
        return False
    session.refresh(payment)
    order = payment.order
    order.attention = notes.add(
        order.attention,
        N_("The second payment of %(amount)s was given back (%(reference)s); the sale stands."),
        amount=format_fen(amount_fen),
        reference=reference,
    )
    return True


def duplicate_refunded_at_stripe(
    session: Session, payment: Payment, refund_id: str, *, now: datetime
) -> bool:
    """A second payment refunded in the Stripe Dashboard (its ``charge.refunded``): given back,
    booked Dr 211 / Cr Stripe clearing, once."""
    if not _return_duplicate(session, payment, reference=refund_id, amount_fen=payment.amount_fen, now=now):
        return False
    audit.record(
        session,
        "shop.order.duplicate_refund",
        payment.order,
        details={"payment_id": payment.id, "amount_fen": payment.amount_fen, "reference": refund_id},
    )
    settlement.post_duplicate_refund(session, payment, reference=refund_id, when=now)
    return True


STATUS_WORDS = {
    "paid": N_("paid"),
    "packed": N_("packed"),
    "shipped": N_("shipped"),
    "ready_for_pickup": N_("ready for pickup"),
    "completed": N_("completed"),
}


def _status_before_refund(session: Session, order: Order) -> str:
    """The state the order had when a refund made it ``refunded`` (from the audit log)."""
    entries = session.scalars(
        select(AuditEntry)
        .where(
            AuditEntry.action == "shop.order.status",
            AuditEntry.entity_type == "shop_orders",
            AuditEntry.entity_id == str(order.id),
        )
        .order_by(AuditEntry.id.desc())
        .limit(20)
    )
    for entry in entries:
        details = entry.details or {}
        if details.get("to") == "refunded" and details.get("from") in STATUS_WORDS:
            return str(details["from"])
    return "paid"


def _reopen(session: Session, order: Order, row: Refund, *, now: datetime) -> None:
    """A failed refund left the order ``refunded`` without its money given back: it goes back to
    where it was (``orders.SYSTEM_TRANSITIONS``). Stock the refund had put back on sale is taken
    again if there is any (the order then waits to be packed); if not, staff are told to source
    the goods or refund again."""
    from shop import orders

    target = "paid" if row.restocked else _status_before_refund(session, order)
    orders.move(session, order, target, system=True, note="refund failed at Stripe")
    order.attention = notes.add(
        order.attention,
        N_("The failed refund reopened the order: it is %(status)s again."),
        status=notes.note(STATUS_WORDS[target]),
    )
    if row.restocked and order.stock_state == "released":
        if reserve_again(session, order):
            order.attention = notes.add(
                order.attention, N_("Its stock, put back on sale by the refund, was taken again: pack it.")
            )
        else:
            order.attention = notes.add(
                order.attention,
                N_(
                    "Its stock had been put back on sale and is gone now: source the goods, or refund "
                    "again and tell the customer."
                ),
            )
    order.updated_at = now


def duplicate_refund_failed(session: Session, payment: Payment, *, stripe_status: str, now: datetime) -> bool:
    """Stripe could not complete the refund of a second payment (it was ``pending``): the money
    is owed again (211, a reversal voucher), the payment can be given back again, and staff are
    told. Once (a conditional UPDATE on the refund id)."""
    reference = payment.return_ref or ""
    claim = rows_affected(
        session.execute(
            update(Payment)
            .where(
                Payment.id == payment.id, Payment.return_ref == reference, Payment.returned_at.is_not(None)
            )
            .values(returned_at=None)  # the refund id stays, so a redelivery finds it
            .execution_options(synchronize_session=False)
        )
    )
    if claim != 1 or not reference:
        return False
    session.refresh(payment)
    order = payment.order
    order.attention = notes.add(
        order.attention,
        N_(
            "The Stripe refund %(refund)s of the second payment (%(amount)s) %(status)s; the money is "
            "still owed to the customer: give it back again."
        ),
        refund=reference,
        amount=format_fen(payment.amount_fen),
        status=notes.note(
            {"failed": N_("failed"), "canceled": N_("was cancelled")}.get(stripe_status, stripe_status)
        ),
    )
    audit.record(
        session,
        "shop.order.duplicate_refund_failed",
        order,
        details={"payment_id": payment.id, "stripe_refund_id": reference, "status": stripe_status},
    )
    settlement.post_duplicate_refund_reversal(session, payment, reference=reference, when=now)
    return True


def refund_failed(session: Session, row: Refund, *, stripe_status: str, now: datetime | None = None) -> bool:
    """Stripe could not complete a refund we booked (it was ``pending``): mark it failed,
    give the amount back to the order and its lines, reverse its booking with a voucher of
    its own and flag the order. Once only (a conditional UPDATE); returns whether it acted."""
    now = now or utcnow()
    claim = rows_affected(
        session.execute(
            update(Refund)
            .where(Refund.id == row.id, Refund.status != "failed")
            .values(status="failed")
            .execution_options(synchronize_session=False)
        )
    )
    if claim != 1:
        return False
    session.refresh(row)
    order = row.order
    amounts = {int(k): int(v) for k, v in (row.line_amounts or {}).items()}
    if not amounts:  # a refund recorded before its spread was kept: undo it over what the lines gave back
        given = [(ln.id, ln.refunded_fen) for ln in order.lines if ln.refunded_fen > 0]
        parts = allocate(row.amount_fen, [g for _i, g in given], keys=[i for i, _g in given]) if given else []
        amounts = {i: p for (i, _g), p in zip(given, parts, strict=True) if p}
    for line in order.lines:
        line.refunded_fen -= amounts.get(line.id, 0)
    session.execute(
        update(Order)
        .where(Order.id == order.id)
        .values(refunded_fen=Order.refunded_fen - row.amount_fen, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    session.refresh(order)
    order.attention = notes.add(
        order.attention,
        N_(
            "Stripe refund %(refund)s of %(amount)s %(status)s; its booking was reversed and the money "
            "is still ours: refund again (or in cash) and tell the customer."
        ),
        refund=row.stripe_refund_id or "",
        amount=format_fen(row.amount_fen),
        status=notes.note(
            {"failed": N_("failed"), "canceled": N_("was cancelled")}.get(stripe_status, stripe_status)
        ),
    )
    if order.status == "refunded" and order.refunded_fen < order.paid_fen:
        _reopen(session, order, row, now=now)
    audit.record(
        session,
        "shop.order.refund_failed",
        order,
        details={"refund_id": row.id, "stripe_refund_id": row.stripe_refund_id, "status": stripe_status},
    )
    settlement.post_refund_reversal(session, row, when=now)
    return True
