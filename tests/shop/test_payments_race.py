"""A refund and its payment arriving at the same moment (two webhook deliveries in two threads,
the payment's transaction still open while the refund is handled): the refund is applied, never
left waiting for ever. On SQLite and on PostgreSQL (``TEST_DATABASE_URL``)."""

from __future__ import annotations

import threading

from sqlalchemy import event as sa_event
from sqlalchemy import select
from sqlalchemy.orm import Session

from shop.models import Refund, StripeEvent
from tests.shop.conftest import post_event
from tests.shop.stripe_stub import event
from tests.shop.test_shop_stripe import buy, paid_event, the_order


def test_a_refund_racing_its_payment_is_applied_found_by_review(
    stripe_app, stripe_stub, shop, session, books
):
    client = stripe_app.test_client()
    peach = shop.product(stock=[10])
    buy(client, peach, "2")
    order = the_order(session)
    paid = paid_event(stripe_stub, order, "evt_race_paid")
    pi = stripe_stub.sessions[order.stripe_session_id]["payment_intent"]
    stripe_stub.create_refund({"payment_intent": pi, "amount": "500"})
    refunded = event("charge.refunded", stripe_stub.charge(pi), "evt_race_refund")
    about_to_commit = threading.Event()
    answers: dict[str, int] = {}

    def hold_the_payment_open(db):  # the payment's transaction waits before it commits
        if threading.current_thread().name == "paid" and not db.in_nested_transaction():
            about_to_commit.set()
            threading.Event().wait(0.6)

    def deliver(name: str, evt: dict) -> None:
        answers[name] = post_event(stripe_app.test_client(), evt).status_code

    sa_event.listen(Session, "before_commit", hold_the_payment_open)
    try:
        first = threading.Thread(target=deliver, args=("paid", paid), name="paid")
        first.start()
        assert about_to_commit.wait(10)
        second = threading.Thread(target=deliver, args=("refund", refunded), name="refund")
        second.start()
        first.join(20)
        second.join(20)
    finally:
        sa_event.remove(Session, "before_commit", hold_the_payment_open)
    assert answers == {"paid": 200, "refund": 200}
    session.expire_all()
    order = the_order(session)
    assert order.paid_fen == 1380 and order.refunded_fen == 500
    assert session.scalars(select(Refund)).one().amount_fen == 500
    waiting = session.scalars(
        select(StripeEvent).where(StripeEvent.problem == "refund_waiting", StripeEvent.resolved_at.is_(None))
    ).all()
    assert waiting == []
    books.assert_balanced()
