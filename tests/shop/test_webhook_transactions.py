"""The webhook's transaction: nothing is written while Stripe is asked for the fee, and a
concurrent delivery of the same event is absorbed by a savepoint, not by rolling back the
caller's transaction."""

from __future__ import annotations

import pytest
from sqlalchemy import event as sa_event
from sqlalchemy import select
from sqlalchemy.orm import Session

from core import audit
from core.models import AuditEntry
from shop import payments, webhooks
from shop.models import Order, Payment, StripeEvent
from tests.shop.conftest import post_event
from tests.shop.test_shop_stripe import buy, paid_event, the_order


def test_no_write_is_pending_while_stripe_is_asked_for_the_fee(
    stripe_client, stripe_stub, shop, session, books, monkeypatch
):
    peach = shop.product(stock=[10])
    buy(stripe_client, peach, "2")
    order = the_order(session)
    flushed: list[int] = []

    def count_flushes(sess, _context):
        flushed.append(len(sess.new) + len(sess.dirty))

    sa_event.listen(Session, "after_flush", count_flushes)
    real = payments.stripe_fee
    seen: list[int] = []

    def fee(settings, session_id):
        seen.append(len(flushed))  # how many flushes had happened when the network call started
        return real(settings, session_id)

    monkeypatch.setattr(payments, "stripe_fee", fee)
    try:
        r = post_event(stripe_client, paid_event(stripe_stub, order))
    finally:
        sa_event.remove(Session, "after_flush", count_flushes)
    assert r.status_code == 200 and r.json["outcome"] == "paid"
    assert seen == [0]  # asked before anything was written
    assert the_order(session).fee_fen == 41 and flushed  # and then it was written


def test_a_concurrent_duplicate_is_absorbed_by_a_savepoint(stripe_app, stripe_stub, shop, session, books):
    from core.web import EXT

    peach = shop.product(stock=[10])
    buy(stripe_app.test_client(), peach, "2")
    order = the_order(session)
    evt = paid_event(stripe_stub, order, "evt_race")
    factory = stripe_app.extensions[EXT]["db"].session_factory
    settings = stripe_app.extensions[EXT]["settings"]
    with factory() as first:
        assert webhooks.handle(first, evt, settings) == "paid"
        first.commit()
    with factory() as second:
        audit.record(second, "test.before", entity_type="test", entity_id=1)  # the caller's own work
        # the other delivery's row is not visible to the check (committed after it looked) ...
        real_get = second.get
        second.get = lambda model, ident, **kw: None if model is StripeEvent else real_get(model, ident, **kw)
        assert webhooks.handle(second, evt, settings) == "duplicate event"
        # ... and the caller's transaction is still usable: nothing was rolled back under it
        assert second.scalar(select(Order.status).where(Order.id == order.id)) == "paid"
        second.commit()
    session.expire_all()
    assert len(session.scalars(select(Payment)).all()) == 1
    assert len(session.scalars(select(StripeEvent)).all()) == 1
    assert (
        session.scalar(select(AuditEntry.action).where(AuditEntry.action == "test.before")) == "test.before"
    )


def test_no_path_holds_the_database_locked_while_stripe_answers(
    stripe_client, stripe_stub, shop, session, books, make_user, database_url
):
    """Every call to Stripe (checkout, return page, webhook fee, refund, expiry) finds the
    database free: another writer could start a transaction at that moment (SQLite)."""
    import sqlite3

    from tests.conftest import login
    from tests.shop.test_shop_money import order_paid_online

    if not database_url.startswith("sqlite"):
        pytest.skip("SQLite shows a held write lock directly")
    path = database_url.split("///", 1)[1]
    locked: list[tuple[str, str]] = []

    def probe(method: str, api_path: str) -> None:
        conn = sqlite3.connect(path, timeout=0, isolation_level=None)
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("ROLLBACK")
        except sqlite3.OperationalError:
            locked.append((method, api_path))
        finally:
            conn.close()

    stripe_stub.on_api_call = probe
    peach = shop.product(stock=[10])
    make_user("kuaiji", "official")
    order = order_paid_online(stripe_client, stripe_stub, session, peach, "2")  # checkout + webhook
    stripe_client.get(f"/shop/order/{order.token}?session_id={order.stripe_session_id}")  # return page
    login(stripe_client, "kuaiji")
    stripe_client.post(
        f"/shop/staff/order/{order.number}/refund",
        data={"amount": "1.00", "reason": "bruised", "key": payments.next_refund_key(order)},
    )
    stripe_client.post("/logout")
    stripe_client.post("/shop/cart/add", data={"product_id": peach.id, "quantity": "1"})
    stripe_client.post("/shop/checkout", data=ONLINE_PICKUP)
    session.expire_all()
    unpaid = session.scalars(select(Order).order_by(Order.id.desc())).first()
    stripe_client.post(f"/shop/order/{unpaid.token}/cancel")  # expires its Checkout Session
    calls = {
        (m, p.split("/")[2] if p.count("/") > 1 else p)
        for m, p in stripe_stub.requests
        if p.startswith("/v1/")
    }
    assert {("POST", "checkout"), ("GET", "checkout"), ("POST", "refunds")} <= calls
    assert any(p.endswith("/expire") for _m, p in stripe_stub.requests)
    assert locked == []


ONLINE_PICKUP = {"name": "陈女士", "phone": "13800000000", "fulfilment": "pickup", "payment_method": "stripe"}


def test_a_delivery_that_fails_after_the_event_is_recorded_is_retried_in_full(
    stripe_client, stripe_stub, shop, session, books, monkeypatch
):
    """The event row commits with the payment or not at all: Stripe's retry then pays."""
    peach = shop.product(stock=[10])
    buy(stripe_client, peach, "2")
    order = the_order(session)
    evt = paid_event(stripe_stub, order)
    real = payments.mark_paid
    calls = []

    def fail_once(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("the database went away mid-delivery")
        return real(*args, **kwargs)

    monkeypatch.setattr(payments, "mark_paid", fail_once)
    assert post_event(stripe_client, evt).status_code == 500
    session.expire_all()
    assert session.get(StripeEvent, evt["id"]) is None  # not half-recorded
    r = post_event(stripe_client, evt)  # Stripe retries
    assert r.status_code == 200 and r.json["outcome"] == "paid"
    assert the_order(session).status == "paid"
