"""Stripe webhook events: verify, read, record once, match exactly, act.

``verify`` checks the ``Stripe-Signature`` header on the raw body with the SDK
(``stripe.WebhookSignature.verify_header``: the HMAC and a timestamp not older than the
tolerance) and refuses a timestamp further in the future than the tolerance too, which the
SDK does not check. ``parse`` reads a signed body and checks the shape of every field we
use: a body we cannot read is ``Unprocessable`` (the view records it with its reason, for
staff, and answers 400 on every delivery). ``handle`` records the event id first (a replay
finds it and does nothing) and then applies the event. Every effect is itself guarded by
the order's state, so events arriving out of order have no second effect.

Matching a payment (``checkout.session.completed`` / ``async_payment_succeeded``): the
Checkout Session id must be the order's own (stored when the session was created), never
only the reference or metadata the event carries; amount and currency must be the order's
total in CNY (``payments.mark_paid`` refuses anything else). A payment that does not match
is recorded on its event with a ``problem`` (``PROBLEMS``) and shown to staff; the order is
not fulfilled and nothing is booked. Refunds are recorded by their Refund objects (a
``charge.refunded`` without its list has it fetched from Stripe first; never an amount without
a refund id). A refund for a payment not yet recorded waits on its event (``refund_waiting``)
and is applied when the payment arrives; events about one payment intent are applied one at a
time (``_one_at_a_time``). A refund
that Stripe reports ``failed`` or ``canceled`` later (``refund.updated``, ``refund.failed``,
``charge.refund.updated``) has its booking reversed (``payments.refund_failed``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from datetime import UTC, date, datetime, timedelta
from typing import Any

import stripe
from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core import audit, clock
from core.config import Settings
from shop import N_, notes, payments, settlement
from shop.models import Order, Payment, Refund, StripeEvent

log = logging.getLogger(__name__)
PAID = ("checkout.session.completed", "checkout.session.async_payment_succeeded")
CLOSED = ("checkout.session.async_payment_failed", "checkout.session.expired")
REFUND_UPDATES = ("refund.created", "refund.updated", "refund.failed", "charge.refund.updated")
HANDLED = (*PAID, *CLOSED, "charge.refunded", *REFUND_UPDATES, "payout.paid")
TOLERANCE = 300  # seconds a signature's timestamp may be off, either way
MAX_AMOUNT = 10**12  # fen; more is not a real payment (and would not fit the books)
PAYLOAD_KEPT = 4000  # characters of an unprocessable body kept for staff
PAYOUT_DAYS_AHEAD = 7  # a payout may be dated this many days after today (its expected arrival)

# Why staff must look at an event: (what happened, what to do); shown translated on the
# order desk (templates/shop/staff/_problems.html). Parameters: order, object, amount, total.
PROBLEMS: dict[str, tuple[str, str]] = {
    "unknown_session": (
        N_("A payment of %(amount)s through Checkout Session %(object)s, which belongs to no order."),
        N_("Nothing was fulfilled or booked. Find the payment in the Stripe Dashboard and refund it there."),
    ),
    "other_session": (
        N_(
            "A payment of %(amount)s for order %(order)s through Checkout Session %(object)s, which is "
            "not the order's own."
        ),
        N_(
            "The order was not marked paid and nothing was booked. Refund this payment in the Stripe "
            "Dashboard; the customer pays the order through its own link."
        ),
    ),
    "amount_mismatch": (
        N_("A payment of %(amount)s for order %(order)s, whose total is %(total)s."),
        N_(
            "The order was not marked paid and nothing was booked. Refund this payment in the Stripe "
            "Dashboard and ask the customer to pay the order again."
        ),
    ),
    "currency_mismatch": (
        N_("A payment of %(amount)s for order %(order)s, which is not in yuan (CNY)."),
        N_(
            "The order was not marked paid and nothing was booked. Refund this payment in the Stripe "
            "Dashboard and ask the customer to pay the order again."
        ),
    ),
    "refund_waiting": (
        N_("A refund of %(amount)s (charge %(object)s) arrived before its payment was recorded."),
        N_(
            "It is applied and booked by itself when the payment arrives. If no payment arrives, look "
            "the charge up in the Stripe Dashboard."
        ),
    ),
    "refunds_unknown": (
        N_(
            "A refund of %(amount)s (charge %(object)s) was reported without its refunds, and Stripe "
            "could not be asked for them."
        ),
        N_(
            "Nothing was booked. The refund is recorded by itself when Stripe sends its refund event; "
            "if it does not appear on the order, look the charge up in the Stripe Dashboard."
        ),
    ),
    "refund_failed": (
        N_(
            "The Stripe refund %(object)s of %(amount)s for order %(order)s failed; its booking was reversed."
        ),
        N_(
            "The money is still the cooperative's: tell the customer, and refund again on the order "
            "page (or in cash)."
        ),
    ),
    "recalled_paid": (
        N_("Order %(order)s was paid online (%(amount)s) but contains goods from a recalled lot."),
        N_("Do not pack it. Refund it in full with the button on the order page and tell the customer."),
    ),
    "unprocessable": (
        N_("Stripe sent a signed event that could not be read: %(reason)s."),
        N_(
            "Nothing was changed. Look the event up in the Stripe Dashboard (Developers, Events) and "
            "settle its payment or refund by hand."
        ),
    ),
}


class BadSignature(ValueError):
    """The payload was not signed by Stripe with our endpoint secret, or is too old or too new."""


class Unprocessable(ValueError):
    """A correctly signed body that is not an event we can read; ``reason`` says why."""

    def __init__(self, reason: str, *, event_id: str | None = None, kind: str | None = None):
        super().__init__(reason)
        self.reason = reason
        self.event_id = event_id
        self.kind = kind


def verify(payload: bytes, signature: str | None, secret: str, *, tolerance: int = TOLERANCE) -> dict:
    """The event as a plain dict if the signature is valid and its time within ``tolerance``
    seconds of now (either way); else ``BadSignature``. A signed body that is not an event
    we can read raises ``Unprocessable``.

    The signature's time is Stripe's wall-clock time, so it is compared with the wall clock
    (as the SDK does), not the application's clock.
    """
    if not secret:
        raise BadSignature("no webhook secret configured")
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadSignature("body is not UTF-8") from exc
    header = signature or ""
    try:
        stripe.WebhookSignature.verify_header(text, header, secret, tolerance)
    except stripe.SignatureVerificationError as exc:
        raise BadSignature(str(exc)) from exc
    stamps = [p.split("=", 1)[1] for p in header.split(",") if p.strip().startswith("t=")]
    try:
        signed_at = int(stamps[0].strip())
    except (IndexError, ValueError) as exc:  # verify_header already needs it; kept for safety
        raise BadSignature("no timestamp") from exc
    if signed_at > time.time() + tolerance:
        raise BadSignature(f"timestamp {signed_at} is in the future beyond the tolerance")
    return parse(payload)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _amount(obj: dict, key: str, *, required: bool, where: str) -> None:
    value = obj.get(key)
    if value is None and not required:
        return
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_AMOUNT:
        raise ValueError(f"{where}.{key} is not an amount")


def _text(obj: dict, key: str, *, required: bool, where: str) -> None:
    value = obj.get(key)
    if value is None and not required:
        return
    if not isinstance(value, str) or not value or len(value) > 255:
        raise ValueError(f"{where}.{key} is missing or not a string")


def _ref(obj: dict, key: str, where: str) -> None:
    """An expandable reference: an id, an object with an id, or nothing."""
    value = obj.get(key)
    if value is None or (isinstance(value, str) and 0 < len(value) <= 255):
        return
    if isinstance(value, dict):
        _text(value, "id", required=True, where=f"{where}.{key}")
        return
    raise ValueError(f"{where}.{key} is not a reference")


def _check_refund(obj: dict, where: str) -> None:
    _text(obj, "id", required=True, where=where)
    _amount(obj, "amount", required=True, where=where)
    _text(obj, "status", required=False, where=where)
    _ref(obj, "payment_intent", where)


def _check_object(kind: str, obj: dict) -> None:
    """The fields of ``data.object`` that ``handle`` reads for this kind of event."""
    where = "data.object"
    if kind not in HANDLED:
        return
    _text(obj, "id", required=True, where=where)
    if not isinstance(obj.get("metadata") or {}, dict):
        raise ValueError("data.object.metadata is not an object")
    if kind in PAID or kind in CLOSED:
        _amount(obj, "amount_total", required=kind in PAID, where=where)
        _text(obj, "currency", required=kind in PAID, where=where)
        _text(obj, "payment_status", required=False, where=where)
        _text(obj, "client_reference_id", required=False, where=where)
        _ref(obj, "payment_intent", where)
    elif kind == "charge.refunded":
        _amount(obj, "amount_refunded", required=False, where=where)
        _text(obj, "currency", required=False, where=where)
        _ref(obj, "payment_intent", where)
        refunds = obj.get("refunds")
        if refunds is not None:
            listed = refunds.get("data") if isinstance(refunds, dict) else None
            if not isinstance(listed, list) or not all(isinstance(r, dict) for r in listed):
                raise ValueError("data.object.refunds is not a list of refunds")
            for i, r in enumerate(listed):
                _check_refund(r, f"{where}.refunds.data[{i}]")
    elif kind in REFUND_UPDATES:
        _check_refund(obj, where)
    elif kind == "payout.paid":
        _amount(obj, "amount", required=True, where=where)
        if obj.get("arrival_date") is not None and (
            not _is_int(obj["arrival_date"]) or not 0 <= obj["arrival_date"] < 2**33
        ):
            raise ValueError("data.object.arrival_date is not a time")


def parse(payload: bytes) -> dict:
    """A signed body as an event dict, checked; else ``Unprocessable`` with the reason."""
    try:
        event = json.loads(payload)
    except (ValueError, RecursionError) as exc:
        raise Unprocessable("the body is not JSON") from exc
    if not isinstance(event, dict):
        raise Unprocessable("the body is not a JSON object")
    eid = event.get("id")
    event_id = eid if isinstance(eid, str) and 0 < len(eid) <= 255 else None
    kind = event.get("type") if isinstance(event.get("type"), str) else None
    if event_id is None:
        raise Unprocessable("the event has no id", kind=kind)
    if not kind or len(kind) > 80:
        raise Unprocessable("the event has no type", event_id=event_id)
    created = event.get("created")
    if created is not None and (not _is_int(created) or not 0 <= created < 2**33):
        raise Unprocessable("created is not a time", event_id=event_id, kind=kind)
    data = event.get("data")
    if not isinstance(data, dict) or not isinstance(data.get("object"), dict):
        raise Unprocessable("data.object is not an object", event_id=event_id, kind=kind)
    try:
        _check_object(kind, data["object"])
    except ValueError as exc:
        raise Unprocessable(str(exc), event_id=event_id, kind=kind) from exc
    return event


def unprocessable_id(payload: bytes, exc: Unprocessable) -> str:
    """The id an unprocessable body is recorded under: its event id, else a hash of the body
    (so every redelivery of the same body finds the same row)."""
    return exc.event_id or f"bad:{hashlib.sha256(payload).hexdigest()[:40]}"


def record_unprocessable(session: Session, payload: bytes, exc: Unprocessable) -> StripeEvent:
    """Keep a signed body we could not read, with the reason, for staff (once per body)."""
    event_id = unprocessable_id(payload, exc)
    row = session.get(StripeEvent, event_id)
    if row is not None:
        return row
    row = StripeEvent(
        id=event_id,
        type=(exc.kind or "?")[:80],
        outcome="unprocessable",
        problem="unprocessable",
        attention=exc.reason[:1000],
        payload=payload[:PAYLOAD_KEPT].decode("utf-8", errors="replace"),
        received_at=clock.now(),
    )
    try:
        with session.begin_nested():
            session.add(row)
    except IntegrityError:  # a concurrent delivery of the same body recorded it
        found = session.get(StripeEvent, event_id)
        assert found is not None
        return found
    log.warning("unprocessable Stripe event %s: %s", event_id, exc.reason)
    return row


def _event_time(event: dict) -> datetime:
    """When Stripe says the event happened (the money moved then, even if the delivery is late);
    never later than now, and now if the event carries no time."""
    now = clock.now()
    created = int(event.get("created") or 0)
    if created <= 0:
        return now
    return min(datetime.fromtimestamp(created, UTC), now)


def _pi(obj: dict) -> str | None:
    pi = obj.get("payment_intent")
    if isinstance(pi, dict):
        pi = pi.get("id")
    return pi if isinstance(pi, str) and pi else None


def _order_named(session: Session, obj: dict) -> Order | None:
    """The order an object *says* it is for (metadata or reference): used to tell staff which
    order a payment that does not match was meant for, never to pay it."""
    meta = obj.get("metadata") or {}
    number = meta.get("order_number") or obj.get("client_reference_id")
    if isinstance(number, str) and number:
        return session.scalar(select(Order).where(Order.number == number[:24]))
    return None


def _own_order(session: Session, session_id: str) -> Order | None:
    """The order whose own Checkout Session this is."""
    return session.scalar(select(Order).where(Order.stripe_session_id == session_id))


def _flag(
    row: StripeEvent,
    problem: str,
    obj: dict,
    *,
    order: Order | None,
    amount: Any = None,
    currency: Any = None,
) -> None:
    row.problem = problem
    row.object_id = str(obj.get("id"))[:255]
    row.amount = amount if _is_int(amount) else None
    row.currency = str(currency).lower()[:10] if currency else None
    row.payment_intent = _pi(obj)
    if order is not None:
        row.order_id = order.id
    # the English sentence (logs, the CLI); pages show PROBLEMS[problem] translated
    params = {
        "amount": _money(row.amount, row.currency),
        "order": order.number if order is not None else "?",
        "object": row.object_id,
        "total": _money(order.total_fen, "cny") if order is not None else "?",
    }
    row.attention = PROBLEMS[problem][0] % params


def _money(amount: int | None, currency: str | None) -> str:
    if amount is None:
        return "?"
    if not currency or currency == "cny":
        return f"¥{amount / 100:.2f}"
    return f"{amount / 100:.2f} {currency.upper()}"


def _flag_order(order: Order | None, template: str, **params: Any) -> None:
    if order is not None:
        order.attention = notes.add(order.attention, template, **params)


def handle(session: Session, event: dict, settings: Settings) -> str:
    """Apply a verified, parsed event once; returns a short outcome. The caller commits.

    Raises nothing for events we do not act on (they are recorded and acknowledged).
    What Stripe must tell us (the payment's fee) is asked before anything is written, so
    no write transaction waits on the network; the event id is recorded in a savepoint,
    so a concurrent delivery of the same event changes nothing and the caller's
    transaction stays usable.
    """
    seen = session.get(StripeEvent, event["id"])
    if seen is not None:
        if seen.problem == "unprocessable":  # a redelivery of an event we could not apply
            raise Unprocessable(seen.attention or "unprocessable", event_id=seen.id, kind=seen.type)
        return "duplicate event"
    obj = event["data"]["object"]
    kind = event["type"]
    fee: tuple[int, str | None] = (0, None)
    if kind in PAID and obj.get("payment_status") == "paid" and _own_order(session, obj["id"]) is not None:
        fee = payments.stripe_fee(settings, obj["id"])
    unlisted = False
    if kind == "charge.refunded" and obj.get("refunds") is None:
        # Stripe's default payload (API 2022-11-15 on) has no refund list: ask for the refunds
        listed = _checked_refunds(payments.charge_refunds(settings, obj["id"]))
        if listed is None:
            unlisted = True
        else:
            obj = {**obj, "refunds": {"object": "list", "data": listed}}
    row = StripeEvent(id=event["id"], type=kind[:80], created=int(event.get("created") or 0))
    try:
        with session.begin_nested():
            session.add(row)
    except IntegrityError:
        return "duplicate event"
    if kind not in HANDLED:
        row.outcome = "ignored"
        return row.outcome
    if kind in PAID or kind == "charge.refunded" or kind in REFUND_UPDATES:
        _one_at_a_time(session, _pi(obj) or fee[1])
    if kind == "payout.paid":
        arrived = _payout_day(session, event, obj)
        settlement.post_payout(session, obj["id"], int(obj["amount"]), arrived=arrived)
        row.outcome = "payout posted"
        return row.outcome
    if kind in PAID:
        row.outcome = _paid(session, row, event, obj, fee)
    elif kind in CLOSED:
        order = _own_order(session, obj["id"])
        if order is None:
            row.outcome = "no order"
        else:
            row.order_id = order.id
            cancelled = payments.cancel_unpaid(session, order, reason=kind)
            row.outcome = "cancelled, stock returned" if cancelled else f"no effect (order {order.status})"
    elif kind == "charge.refunded" and unlisted:
        _flag(
            row,
            "refunds_unknown",
            obj,
            order=_order_of_charge(session, obj),
            amount=obj.get("amount_refunded"),
            currency=obj.get("currency"),
        )
        row.outcome = "refunds unknown: flagged, nothing booked"
    elif kind == "charge.refunded":
        row.outcome = _charge_refunded(session, row, event, obj)
    elif kind in REFUND_UPDATES:
        row.outcome = _refund_updated(session, row, event, obj)
    return row.outcome


def _payout_day(session: Session, event: dict, obj: dict) -> date:
    """The local day a payout arrived (its ``arrival_date``, else the event's time), which must lie
    between the books' opening date and a few days ahead (``PAYOUT_DAYS_AHEAD``: Stripe dates a
    payout by its expected arrival); anything else (none at all, 1970, the year 2242) is not a
    payout we can date, so ``Unprocessable``: recorded for staff, 400, nothing posted."""
    from coop import settings as coop_settings

    stamp = obj.get("arrival_date") or event.get("created")
    if not stamp:
        raise Unprocessable("the payout has no arrival date", event_id=event["id"], kind=event["type"])
    day = settlement.local_day(datetime.fromtimestamp(int(stamp), UTC))
    first = coop_settings.get(session).opening_date
    last = clock.today() + timedelta(days=PAYOUT_DAYS_AHEAD)
    if not first <= day <= last:
        raise Unprocessable(
            f"the payout's arrival date {day.isoformat()} is not between the books' opening date "
            f"{first.isoformat()} and {last.isoformat()}",
            event_id=event["id"],
            kind=event["type"],
        )
    return day


def _one_at_a_time(session: Session, payment_intent: str | None) -> None:
    """Events about one payment intent are applied one at a time (PostgreSQL: a transaction-level
    advisory lock on the intent, held to commit). Without it, under READ COMMITTED, a
    ``charge.refunded`` could look for the order before a concurrent payment committed and keep
    its refund waiting after that payment had already applied the waiting refunds: never
    applied. Taken before those reads, so each sees what the other committed. SQLite needs
    nothing: the event row is written first, and SQLite has one writer at a time."""
    if not payment_intent or session.get_bind().dialect.name != "postgresql":
        return
    digest = hashlib.sha256(f"stripe-intent:{payment_intent}".encode()).digest()
    key = int.from_bytes(digest[:8], "big", signed=True)
    session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})


def _paid(session: Session, row: StripeEvent, event: dict, obj: dict, fee: tuple[int, str | None]) -> str:
    if obj.get("payment_status") != "paid":
        return "waiting for asynchronous payment"
    amount, currency = obj["amount_total"], obj["currency"]
    order = _own_order(session, obj["id"])
    if order is None:
        named = _order_named(session, obj)
        problem = "other_session" if named is not None else "unknown_session"
        _flag(row, problem, obj, order=named, amount=amount, currency=currency)
        _flag_order(
            named,
            N_(
                "A Stripe payment through another Checkout Session (%(session)s) was not accepted; refund it."
            ),
            session=str(obj["id"]),
        )
        log.warning("Stripe %s %s: %s", event["type"], event["id"], problem)
        return f"not matching: {problem}"
    row.order_id = order.id
    if session.scalar(select(Payment.id).where(Payment.reference == f"stripe:{obj['id']}")) is not None:
        return "duplicate payment"
    fee_fen, pi = fee
    pi = pi or _pi(obj)
    try:
        outcome = payments.mark_paid(
            session,
            order,
            method="stripe",
            amount_fen=amount,
            currency=currency,
            reference=f"stripe:{obj['id']}",
            fee_fen=fee_fen,
            payment_intent=pi,
            now=_event_time(event),
        )
    except payments.PaymentMismatch as exc:
        _flag(row, exc.problem, obj, order=order, amount=amount, currency=currency)
        _flag_order(
            order,
            N_("A Stripe payment was not accepted: %(why)s; refund it."),
            why=notes.note(exc.template, **exc.params),
        )
        log.warning("Stripe %s %s for order %s: %s", event["type"], event["id"], order.number, exc)
        return f"not matching: {exc.problem}"
    if outcome.startswith("paid (recalled"):
        _flag(row, "recalled_paid", obj, order=order, amount=amount, currency=currency)
    if order.stripe_payment_intent:
        applied = apply_waiting_refunds(session, order, now=_event_time(event))
        if applied:
            outcome += f", {applied} waiting refund(s) applied"
    return outcome


def apply_waiting_refunds(session: Session, order: Order, *, now: datetime) -> int:
    """Refunds that arrived before the order's payment was recorded, applied now (once each)."""
    waiting = list(
        session.scalars(
            select(StripeEvent)
            .where(
                StripeEvent.payment_intent == order.stripe_payment_intent,
                StripeEvent.problem == "refund_waiting",
                StripeEvent.resolved_at.is_(None),
            )
            .order_by(StripeEvent.created, StripeEvent.received_at)
        )
    )
    added = 0
    for ev in waiting:
        charge = json.loads(ev.payload or "{}")
        added += payments.record_stripe_refunds(session, order, charge, now=now)
        ev.order_id = order.id
        ev.resolved_at = clock.now()
        ev.outcome = "refund applied after its payment arrived"
    return added


def _checked_refunds(listed: list[dict] | None) -> list[dict] | None:
    """Refund objects fetched from Stripe, checked like an event's; None if any is unreadable."""
    if listed is None:
        return None
    try:
        for i, r in enumerate(listed):
            if not isinstance(r, dict):
                raise ValueError(f"refunds[{i}] is not an object")
            _check_refund(r, f"refunds[{i}]")
    except ValueError as exc:
        log.warning("Stripe listed refunds we cannot read: %s", exc)
        return None
    return listed


def _order_of_charge(session: Session, obj: dict) -> Order | None:
    pi = _pi(obj)
    found = session.scalar(select(Order).where(Order.stripe_payment_intent == pi)) if pi else None
    return found or _order_named(session, obj)


def _charge_refunded(session: Session, row: StripeEvent, event: dict, obj: dict) -> str:
    pi = _pi(obj)
    order = session.scalar(select(Order).where(Order.stripe_payment_intent == pi)) if pi else None
    second = (
        session.scalar(select(Payment).where(Payment.payment_intent == pi, Payment.duplicate.is_(True)))
        if order is None and pi
        else None
    )
    if second is not None:  # a refund of a second payment (owed back, 211), not of the sale
        row.order_id = second.order_id
        made = [
            r
            for r in (obj.get("refunds") or {}).get("data") or []
            if r.get("status") in ("succeeded", "pending")
        ]
        if second.returned_at is not None:
            return "second payment already given back"
        if made and payments.duplicate_refunded_at_stripe(
            session, second, made[0]["id"], now=_event_time(event)
        ):
            return "second payment given back"
        return "second payment: no refund listed"
    if order is None:
        # the payment is not recorded yet (or never will be): keep the charge until it is
        _flag(
            row,
            "refund_waiting",
            obj,
            order=_order_named(session, obj),
            amount=obj.get("amount_refunded"),
            currency=obj.get("currency"),
        )
        row.payload = json.dumps(obj)
        return "refund waiting for its payment"
    row.order_id = order.id
    added = payments.record_stripe_refunds(session, order, obj, now=_event_time(event))
    added += apply_waiting_refunds(session, order, now=_event_time(event))  # any left waiting
    return f"{added} refund(s) recorded" if added else "refunds already recorded"


def _refund_updated(session: Session, row: StripeEvent, event: dict, obj: dict) -> str:
    refund = session.scalar(select(Refund).where(Refund.stripe_refund_id == obj["id"]))
    status = obj.get("status") or ""
    if refund is None:
        if status in ("failed", "canceled") and _settle_waiting(session, obj):
            return "waiting refund marked failed"
        second = session.scalar(select(Payment).where(Payment.return_ref == obj["id"]))
        if second is not None:  # the refund of a second payment
            row.order_id = second.order_id
            if status not in ("failed", "canceled"):
                return f"second payment refund {status}"
            if payments.duplicate_refund_failed(
                session, second, stripe_status=status, now=_event_time(event)
            ):
                _flag(
                    row,
                    "refund_failed",
                    obj,
                    order=second.order,
                    amount=obj["amount"],
                    currency=obj.get("currency"),
                )
                return "second payment refund failed, owed again"
            return "second payment refund already marked failed"
        if status in ("succeeded", "pending"):  # a refund we have not recorded (e.g. the Dashboard)
            return _unknown_refund(session, row, event, obj)
        return f"no such refund ({status})"
    row.order_id = refund.order_id
    if status in ("failed", "canceled"):
        if not payments.refund_failed(session, refund, stripe_status=status, now=_event_time(event)):
            return "refund already marked failed"
        _flag(
            row, "refund_failed", obj, order=refund.order, amount=obj["amount"], currency=obj.get("currency")
        )
        return "refund failed, booking reversed"
    if status == "succeeded" and refund.status == "pending":
        refund.status = "succeeded"
        return "refund succeeded"
    return f"refund {status}"


def _unknown_refund(session: Session, row: StripeEvent, event: dict, obj: dict) -> str:
    """A Refund object we have not recorded: recorded by its id and status, like a refund a
    ``charge.refunded`` lists (waiting, like one, when its payment is not recorded yet)."""
    charge = obj.get("charge")
    charge_id = charge.get("id") if isinstance(charge, dict) else charge
    as_charge = {
        "id": charge_id if isinstance(charge_id, str) and charge_id else obj["id"],
        "object": "charge",
        "payment_intent": _pi(obj),
        "amount_refunded": obj["amount"],
        "currency": obj.get("currency"),
        "metadata": obj.get("metadata") or {},
        "refunds": {"object": "list", "data": [obj]},
    }
    return _charge_refunded(session, row, event, as_charge)


def _settle_waiting(session: Session, obj: dict) -> bool:
    """A refund that failed while it still waits for its payment: it will not be booked."""
    changed = False
    pi = _pi(obj)
    if pi is None:
        return False
    for ev in session.scalars(
        select(StripeEvent).where(
            StripeEvent.payment_intent == pi,
            StripeEvent.problem == "refund_waiting",
            StripeEvent.resolved_at.is_(None),
        )
    ):
        charge = json.loads(ev.payload or "{}")
        for listed in (charge.get("refunds") or {}).get("data") or []:
            if listed.get("id") == obj["id"] and listed.get("status") != obj["status"]:
                listed["status"] = obj["status"]
                changed = True
        if changed:
            charge["amount_refunded"] = sum(
                int(r.get("amount") or 0)
                for r in (charge.get("refunds") or {}).get("data") or []
                if r.get("status") in ("succeeded", "pending")
            )
            ev.payload = json.dumps(charge)
    return changed


# --- what staff see ---------------------------------------------------------------------


def open_problems(session: Session, *, order_id: int | None = None, limit: int = 100) -> list[StripeEvent]:
    """Events staff must look at and have not yet resolved, newest first."""
    stmt = select(StripeEvent).where(StripeEvent.attention.is_not(None), StripeEvent.resolved_at.is_(None))
    if order_id is not None:
        stmt = stmt.where(StripeEvent.order_id == order_id)
    return list(session.scalars(stmt.order_by(StripeEvent.received_at.desc()).limit(limit)))


def resolve(session: Session, event_id: str, *, user_id: int | None, note: str = "") -> StripeEvent:
    """Staff have dealt with a flagged event (a refund in the Dashboard, a call to the customer)."""
    row = session.get(StripeEvent, event_id[:255])
    if row is None or row.attention is None:
        raise payments.PaymentError(N_("There is no such event to resolve."))
    if row.resolved_at is not None:
        raise payments.AlreadyDone(N_("This event has already been resolved."))
    row.resolved_at = clock.now()
    row.resolved_by_id = user_id
    audit.record(
        session,
        "shop.stripe_event.resolve",
        entity_type="shop_stripe_events",
        entity_id=row.order_id or 0,
        user_id=user_id,
        details={"event": row.id, "problem": row.problem},
        note=note[:1000] or None,
    )
    return row
