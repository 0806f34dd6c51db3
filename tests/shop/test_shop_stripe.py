"""Stripe Checkout through the local stub, and the webhook: signatures, replays, order of events."""

from __future__ import annotations

import time
from datetime import timedelta

from sqlalchemy import select

from core.db import utcnow
from shop import checkout
from shop.models import Order, Payment, StripeEvent
from tests.shop.conftest import post_event
from tests.shop.stripe_stub import event

ONLINE = {
    "name": "陈女士",
    "phone": "13800000000",
    "fulfilment": "delivery",
    "address": "上海市徐汇区某路1号",
    "payment_method": "stripe",
}


def buy(client, product, qty="2"):
    client.post("/shop/cart/add", data={"product_id": product.id, "quantity": qty})
    return client.post("/shop/checkout", data=ONLINE)


def the_order(session) -> Order:
    session.expire_all()
    return session.scalars(select(Order)).one()


def paid_event(stub, order, event_id=None):
    return event("checkout.session.completed", stub.complete(order.stripe_session_id), event_id)


def test_checkout_redirects_to_stripe_with_cny_amounts_and_payment_methods(
    stripe_client, stripe_stub, shop, session
):
    peach = shop.product(stock=[10])
    r = buy(stripe_client, peach, "2")
    assert r.status_code == 303
    order = the_order(session)
    assert r.headers["Location"] == f"{stripe_stub.url}/pay/{order.stripe_session_id}"
    params = stripe_stub.sessions[order.stripe_session_id]["_params"]
    assert params["currency"] == "cny"
    assert params["line_items"][0]["price_data"]["unit_amount"] == "1380"
    assert params["payment_method_types"] == ["card", "alipay", "wechat_pay"]
    assert params["payment_method_options"]["wechat_pay"]["client"] == "web"
    assert params["client_reference_id"] == order.number
    assert order.status == "pending_payment" and shop.stock(peach) == 8


def test_refresh_and_double_click_create_one_checkout_session(stripe_client, stripe_stub, shop, session):
    peach = shop.product(stock=[10])
    buy(stripe_client, peach)
    order = the_order(session)
    first = stripe_client.post(f"/shop/order/{order.token}/pay")
    second = stripe_client.post(f"/shop/order/{order.token}/pay")
    assert first.headers["Location"] == second.headers["Location"]
    assert stripe_stub.count("POST", "/v1/checkout/sessions") == 1
    # even if our database lost the session id, the idempotency key gives back the same session
    order.stripe_session_id = None
    order.stripe_checkout_url = None
    session.commit()
    again = stripe_client.post(f"/shop/order/{order.token}/pay")
    assert again.headers["Location"] == first.headers["Location"]
    assert len(stripe_stub.sessions) == 1


def test_stripe_down_keeps_the_order_and_offers_to_pay_again(stripe_client, stripe_stub, shop, session):
    peach = shop.product(stock=[10])
    stripe_stub.fail_next = 10
    r = buy(stripe_client, peach)
    assert r.status_code == 302
    order = the_order(session)
    assert order.status == "pending_payment" and order.stripe_session_id is None
    stripe_stub.fail_next = 0
    r = stripe_client.post(f"/shop/order/{order.token}/pay")
    assert r.status_code == 303 and "/pay/" in r.headers["Location"]


def test_return_page_shows_real_state_and_never_fulfils(stripe_client, stripe_stub, shop, session, books):
    peach = shop.product(stock=[10])
    buy(stripe_client, peach)
    order = the_order(session)
    stripe_stub.complete(order.stripe_session_id)  # paid at Stripe, webhook not yet here
    page = stripe_client.get(f"/shop/order/{order.token}?session_id={order.stripe_session_id}&lang=en")
    assert 'data-testid="confirming"' in page.get_data(as_text=True)
    assert the_order(session).status == "pending_payment"
    assert books.vouchers() == []


def test_paid_webhook_marks_paid_once_and_posts_the_sale(stripe_client, stripe_stub, shop, session, books):
    peach = shop.product(stock=[10])
    buy(stripe_client, peach, "2")
    order = the_order(session)
    evt = paid_event(stripe_stub, order)
    r = post_event(stripe_client, evt)
    assert r.status_code == 200 and r.json["outcome"] == "paid"
    order = the_order(session)
    assert order.status == "paid" and order.paid_fen == 1380
    assert order.fee_fen == 41  # 3 % of ¥13.80, read from the balance transaction
    assert order.stripe_payment_intent.startswith("pi_")
    # replayed: recorded once, no second effect
    r = post_event(stripe_client, evt)
    assert r.status_code == 200 and r.json["outcome"] == "duplicate event"
    # the same session completed again under another event id: still one payment
    r = post_event(stripe_client, paid_event(stripe_stub, order))
    assert r.json["outcome"] == "duplicate payment"
    assert len(session.scalars(select(Payment)).all()) == 1
    assert len(books.vouchers("payment:")) == 1
    assert books.balance(key="shop:stripe-clearing") == 1380 - 41
    assert books.balance(key="shop:payment-fees") == 41
    assert books.balance(key=f"product:{peach.id}") == -1380
    books.assert_balanced()
    assert shop.stock(peach) == 8
    page = stripe_client.get(f"/shop/order/{order.token}?lang=en").get_data(as_text=True)
    assert 'data-testid="paid"' in page


def test_bad_or_stale_signatures_are_rejected_and_change_nothing(stripe_client, stripe_stub, shop, session):
    peach = shop.product(stock=[10])
    buy(stripe_client, peach)
    order = the_order(session)
    evt = paid_event(stripe_stub, order)
    assert post_event(stripe_client, evt, secret="whsec_wrong").status_code == 400
    assert post_event(stripe_client, evt, timestamp=int(time.time()) - 3600).status_code == 400
    assert post_event(stripe_client, evt, signature="").status_code == 400
    assert post_event(stripe_client, evt, signature="t=1,v1=deadbeef").status_code == 400
    # a body changed after signing
    import json

    from tests.shop.stripe_stub import sign

    body = json.dumps(evt).encode()
    header = sign(body, "whsec_test_secret")
    tampered = body.replace(b'"paid"', b'"unpaid"', 1)
    r = stripe_client.post("/stripe/webhook", data=tampered, headers={"Stripe-Signature": header})
    assert r.status_code == 400
    assert the_order(session).status == "pending_payment"
    assert session.scalars(select(StripeEvent)).first() is None
    # and the genuine event still works afterwards
    assert post_event(stripe_client, evt).status_code == 200
    assert the_order(session).status == "paid"


def test_expired_after_completed_has_no_effect(stripe_client, stripe_stub, shop, session):
    peach = shop.product(stock=[10])
    buy(stripe_client, peach, "3")
    order = the_order(session)
    post_event(stripe_client, paid_event(stripe_stub, order))
    r = post_event(
        stripe_client, event("checkout.session.expired", stripe_stub.expire(order.stripe_session_id))
    )
    assert r.status_code == 200
    assert the_order(session).status == "paid"
    assert shop.stock(peach) == 7


def test_expired_session_cancels_and_returns_stock(stripe_client, stripe_stub, shop, session, books):
    peach = shop.product(stock=[10])
    buy(stripe_client, peach, "3")
    order = the_order(session)
    post_event(stripe_client, event("checkout.session.expired", stripe_stub.expire(order.stripe_session_id)))
    assert the_order(session).status == "cancelled"
    assert shop.stock(peach) == 10
    assert books.vouchers() == []


def test_async_payment_waits_then_succeeds_or_fails(stripe_client, stripe_stub, shop, session):
    peach = shop.product(stock=[10])
    buy(stripe_client, peach, "1")
    order = the_order(session)
    pending = stripe_stub.complete(order.stripe_session_id, paid=False)
    r = post_event(stripe_client, event("checkout.session.completed", pending))
    assert r.json["outcome"] == "waiting for asynchronous payment"
    assert the_order(session).status == "pending_payment"
    paid = stripe_stub.complete(order.stripe_session_id, paid=True)
    post_event(stripe_client, event("checkout.session.async_payment_succeeded", paid))
    assert the_order(session).status == "paid"

    buy(stripe_client, peach, "2")
    session.expire_all()
    second = session.scalars(select(Order).where(Order.id != order.id)).one()
    failed = stripe_stub.complete(second.stripe_session_id, paid=False)
    post_event(stripe_client, event("checkout.session.async_payment_failed", failed))
    session.expire_all()
    assert session.get(Order, second.id).status == "cancelled"
    assert shop.stock(peach) == 9


def test_payment_after_reservation_lapsed_takes_stock_again(stripe_client, stripe_stub, shop, session):
    peach = shop.product(stock=[5])
    buy(stripe_client, peach, "2")
    order = the_order(session)
    checkout.expire_reservations(session, now=utcnow() + timedelta(hours=1))
    session.commit()
    assert the_order(session).status == "cancelled" and shop.stock(peach) == 5
    post_event(stripe_client, paid_event(stripe_stub, order))
    order = the_order(session)
    assert order.status == "paid" and order.attention is None
    assert shop.stock(peach) == 3


def test_paid_order_whose_stock_is_gone_is_flagged_for_staff(
    stripe_client, stripe_stub, shop, session, make_user, books
):
    from tests.conftest import login

    peach = shop.product(stock=[2])
    buy(stripe_client, peach, "2")
    order = the_order(session)
    checkout.expire_reservations(session, now=utcnow() + timedelta(hours=1))
    session.commit()
    other = stripe_stub  # someone else buys the last two meanwhile
    assert other
    from shop.checkout import take_from_lot
    from shop.trace.models import HarvestLot

    lot = session.scalars(select(HarvestLot)).one()
    assert take_from_lot(session, lot.id, 2)
    session.commit()
    post_event(stripe_client, paid_event(stripe_stub, order))
    order = the_order(session)
    assert order.status == "paid" and order.attention and "stock" in order.attention
    assert order.paid_fen == 1380  # the money is on record, not lost
    books.assert_balanced()
    make_user("kuaiji", "official")
    login(stripe_client, "kuaiji")
    desk = stripe_client.get("/shop/staff/").get_data(as_text=True)
    assert 'data-testid="attention"' in desk and order.number in desk


def test_payment_for_unknown_order_is_recorded_and_flagged(stripe_client, stripe_stub, session):
    obj = {
        "id": "cs_test_unknown",
        "object": "checkout.session",
        "payment_status": "paid",
        "amount_total": 500,
        "currency": "cny",
        "metadata": {},
        "client_reference_id": None,
        "payment_intent": "pi_x",
    }
    r = post_event(stripe_client, event("checkout.session.completed", obj, "evt_unknown"))
    assert r.status_code == 200
    row = session.get(StripeEvent, "evt_unknown")
    assert row.problem == "unknown_session" and "belongs to no order" in row.attention


def test_webhook_without_configured_secret_rejects(client):
    r = post_event(client, event("checkout.session.completed", {"id": "cs_1"}))
    assert r.status_code == 400


def test_webhook_needs_no_csrf_token_even_with_protection_on(
    app, stripe_settings, stripe_stub, shop, session
):
    from tests.conftest import make_test_app

    protected = make_test_app(stripe_settings, WTF_CSRF_ENABLED=True).test_client()
    obj = {
        "id": "cs_test_x",
        "object": "checkout.session",
        "payment_status": "paid",
        "amount_total": 1,
        "currency": "cny",
        "metadata": {},
        "client_reference_id": None,
        "payment_intent": None,
    }
    assert post_event(protected, event("checkout.session.completed", obj, "evt_csrf")).status_code == 200
    assert session.get(StripeEvent, "evt_csrf") is not None


def test_cancelling_an_unpaid_online_order_closes_its_stripe_session(
    stripe_client, stripe_stub, shop, session
):
    peach = shop.product(stock=[10])
    buy(stripe_client, peach, "2")
    order = the_order(session)
    stripe_client.post(f"/shop/order/{order.token}/cancel")
    assert the_order(session).status == "cancelled" and shop.stock(peach) == 10
    assert stripe_stub.sessions[order.stripe_session_id]["status"] == "expired"
