"""Refunds, cash at pickup, order states, and every money movement in the village books."""

from __future__ import annotations

from datetime import date

import pytest
from sqlalchemy import select

from core import clock
from shop import orders, payments
from shop.models import Order, Refund
from tests.conftest import login
from tests.shop.conftest import post_event
from tests.shop.stripe_stub import event

ONLINE = {"name": "陈女士", "phone": "13800000000", "fulfilment": "pickup", "payment_method": "stripe"}
CASH = {**ONLINE, "payment_method": "cash"}


def order_paid_online(client, stub, session, product, qty="2") -> Order:
    client.post("/shop/cart/add", data={"product_id": product.id, "quantity": qty})
    client.post("/shop/checkout", data=ONLINE)
    session.expire_all()
    order = session.scalars(select(Order).order_by(Order.id.desc())).first()
    post_event(client, event("checkout.session.completed", stub.complete(order.stripe_session_id)))
    session.expire_all()
    return session.get(Order, order.id)


@pytest.fixture
def staff(stripe_client, make_user):
    make_user("kuaiji", "official")
    login(stripe_client, "kuaiji")
    return stripe_client


def test_full_refund_through_stripe_returns_stock_and_reverses_the_books(
    staff, stripe_stub, shop, session, books
):
    peach = shop.product(stock=[10])
    order = order_paid_online(staff, stripe_stub, session, peach, "2")
    assert shop.stock(peach) == 8
    r = staff.post(
        f"/shop/staff/order/{order.number}/refund",
        data={"amount": "13.80", "reason": "changed mind", "key": payments.next_refund_key(order)},
    )
    assert r.status_code == 302
    session.expire_all()
    order = session.get(Order, order.id)
    assert order.status == "refunded" and order.refunded_fen == 1380
    assert shop.stock(peach) == 10
    assert stripe_stub.refunded(order.stripe_payment_intent) == 1380
    assert books.balance(key=f"product:{peach.id}") == 0  # revenue reversed
    assert books.balance(key="shop:stripe-clearing") == -41  # Stripe keeps its fee
    assert books.balance(key="shop:payment-fees") == 41
    books.assert_balanced()
    # Stripe then tells us about the refund: nothing new is recorded
    r = post_event(staff, event("charge.refunded", stripe_stub.charge(order.stripe_payment_intent)))
    assert r.json["outcome"] == "refunds already recorded"
    assert len(session.scalars(select(Refund)).all()) == 1


def test_partial_refunds_and_their_limits(staff, stripe_stub, shop, session, books, stripe_settings):
    peach = shop.product(stock=[10])
    melon = shop.product("melon", name_zh="蜜瓜", name_en="Honey melon", price=1600, unit="kg", stock=[10])
    staff.post("/shop/cart/add", data={"product_id": melon.id, "quantity": "1"})
    order = order_paid_online(staff, stripe_stub, session, peach, "2")  # 1380 + 1600 = 2980
    assert order.total_fen == 2980
    melon_line = next(ln for ln in order.lines if ln.product_id == melon.id)
    refund = payments.refund(
        session, order, 500, key="r1", settings=stripe_settings, line_id=melon_line.id, reason="bruised"
    )
    session.commit()
    # the same key again (double submit) refunds nothing more, and says so
    with pytest.raises(payments.AlreadyDone):
        payments.refund(session, order, 500, key="r1", settings=stripe_settings, line_id=melon_line.id)
    assert refund.id
    with pytest.raises(payments.PaymentError):
        payments.refund(session, order, 1200, key="r2", settings=stripe_settings, line_id=melon_line.id)
    with pytest.raises(payments.PaymentError):
        payments.refund(session, order, 2481, key="r3", settings=stripe_settings)
    session.rollback()
    payments.refund(session, order, 1000, key="r4", settings=stripe_settings)
    session.commit()
    session.expire_all()
    order = session.get(Order, order.id)
    assert order.status == "paid" and order.refunded_fen == 1500
    assert stripe_stub.refunded(order.stripe_payment_intent) == 1500
    assert shop.stock(peach) == 8  # partial refunds do not restock
    # revenue: 2980 sold - 500 melon - 1000 spread over both lines by what each could give back
    assert books.balance(key=f"product:{melon.id}") + books.balance(key=f"product:{peach.id}") == -(
        2980 - 1500
    )
    assert books.balance(key=f"product:{melon.id}") < -(1600 - 500 - 1000)
    books.assert_balanced()


def test_refund_made_in_the_stripe_dashboard_is_recorded_once(
    stripe_client, stripe_stub, shop, session, books
):
    peach = shop.product(stock=[10])
    order = order_paid_online(stripe_client, stripe_stub, session, peach, "2")
    stripe_stub.create_refund({"payment_intent": order.stripe_payment_intent, "amount": "380"})
    evt = event("charge.refunded", stripe_stub.charge(order.stripe_payment_intent))
    assert post_event(stripe_client, evt).json["outcome"] == "1 refund(s) recorded"
    assert post_event(stripe_client, evt).json["outcome"] == "duplicate event"
    evt2 = event("charge.refunded", stripe_stub.charge(order.stripe_payment_intent))
    assert post_event(stripe_client, evt2).json["outcome"] == "refunds already recorded"
    session.expire_all()
    assert session.get(Order, order.id).refunded_fen == 380
    books.assert_balanced()


def test_cash_on_pickup_paid_at_the_sales_centre(staff, shop, session, books):
    peach = shop.product(stock=[10])
    staff.post("/shop/cart/add", data={"product_id": peach.id, "quantity": "3"})
    staff.post("/shop/checkout", data=CASH)
    order = session.scalars(select(Order)).one()
    pickup = staff.get("/shop/staff/pickup").get_data(as_text=True)
    assert order.number in pickup
    staff.post(f"/shop/staff/order/{order.number}/paid", data={"method": "cash"})
    staff.post(f"/shop/staff/order/{order.number}/paid", data={"method": "cash"})  # twice: counted once
    session.expire_all()
    order = session.get(Order, order.id)
    assert order.status == "paid" and order.paid_fen == 2070
    cash = books.balance(code="101") or books.balance(key="shop:cash")
    assert cash == 2070
    for action in ("pack", "ready", "complete"):
        staff.post(f"/shop/staff/order/{order.number}/action", data={"action": action})
    session.expire_all()
    assert session.get(Order, order.id).status == "completed"
    # a completed cash order refunded in cash: money leaves the till, stock stays sold
    staff.post(f"/shop/staff/order/{order.number}/refund", data={"amount": "20.70", "key": "k1"})
    session.expire_all()
    assert session.get(Order, order.id).status == "refunded"
    assert (books.balance(code="101") or books.balance(key="shop:cash")) == 0
    assert shop.stock(peach) == 7
    books.assert_balanced()


def test_transitions_are_enforced(staff, shop, session):
    peach = shop.product(stock=[10])
    staff.post("/shop/cart/add", data={"product_id": peach.id, "quantity": "1"})
    staff.post("/shop/checkout", data=CASH)
    order = session.scalars(select(Order)).one()
    with pytest.raises(orders.OrderError):
        orders.staff_action(session, order, "pack", user_id=None)  # not paid yet
    with pytest.raises(orders.OrderError):
        orders.move(session, order, "completed")
    payments.record_counter_payment(session, order, method="cash", user_id=None)
    session.commit()
    with pytest.raises(orders.OrderError):
        orders.staff_action(session, order, "ship", user_id=None)  # not packed
    orders.staff_action(session, order, "pack", user_id=None)
    session.commit()
    with pytest.raises(orders.OrderError):
        orders.staff_action(session, order, "ship", user_id=None)  # a pickup order is not shipped
    with pytest.raises(orders.OrderError):
        orders.cancel(session, order, user_id=None)  # paid: refund instead
    assert orders.allowed("completed", "refunded") and not orders.allowed("cancelled", "paid")
    html = staff.get(f"/shop/staff/order/{order.number}?lang=en").get_data(as_text=True)
    assert 'data-action="ready"' in html and 'data-action="ship"' not in html


def test_consignment_sales_owe_the_household_and_show_on_its_statement(
    staff, stripe_stub, shop, session, books
):
    h = shop.household("ZZ003", "李桂兰")
    grapes = shop.product(
        "grapes",
        name_zh="葡萄",
        name_en="Grapes",
        price=1200,
        consignment=True,
        commission=15,
        household=h,
        stock=[20],
    )
    order = order_paid_online(staff, stripe_stub, session, grapes, "5")  # ¥60.00
    assert books.balance(key=f"household:{h.id}") == -5100  # 85 % owed to the household (credit)
    assert books.balance(key=f"product:{grapes.id}") == -900  # 15 % commission is revenue
    payments.refund(
        session, order, 1200, key="r", settings=staff.application.extensions["tianyuan"]["settings"]
    )
    session.commit()
    assert books.balance(key=f"household:{h.id}") == -(5100 - 1020)
    books.assert_balanced()
    today = date.today()
    html = staff.get(f"/shop/staff/statement?household={h.id}&month={today:%Y-%m}").get_data(as_text=True)
    assert "¥40.80" in html  # 51.00 owed - 10.20 refunded
    assert order.number in html


def test_farmer_sees_only_their_own_statement(client, shop, make_user):
    mine = shop.household("ZZ001", "赵建国")
    other = shop.household("ZZ002", "王秀英")
    make_user("zhaolin", "farmer", household_id=mine.id)
    login(client, "zhaolin")
    html = client.get(f"/shop/staff/statement?household={other.id}").get_data(as_text=True)
    assert "赵建国" in html and "王秀英" not in html
    assert client.get("/shop/staff/").status_code == 403


def test_payout_moves_money_from_stripe_clearing_to_the_bank(
    stripe_client, stripe_stub, shop, session, books
):
    peach = shop.product(stock=[10])
    order_paid_online(stripe_client, stripe_stub, session, peach, "2")
    payout = {
        "id": "po_123",
        "object": "payout",
        "amount": 1339,
        "currency": "cny",
        "arrival_date": int(clock.now().timestamp()),  # today: within the books
        "status": "paid",
    }
    evt = event("payout.paid", payout)
    assert post_event(stripe_client, evt).json["outcome"] == "payout posted"
    post_event(stripe_client, event("payout.paid", payout))  # another event id, same payout: once
    assert books.balance(key="shop:stripe-clearing") == 0
    assert (books.balance(code="102") or books.balance(key="shop:bank")) == 1339
    assert len(books.vouchers("payout:")) == 1
    books.assert_balanced()


def test_packing_list_sums_products_over_paid_orders(staff, stripe_stub, shop, session):
    peach = shop.product(stock=[20])
    order_paid_online(staff, stripe_stub, session, peach, "2")
    order_paid_online(staff, stripe_stub, session, peach, "3.5")
    html = staff.get("/shop/staff/packing?lang=en").get_data(as_text=True)
    assert "5.5" in html and html.count("data-order=") == 2


def test_my_orders_lists_the_customers_orders(client, shop, make_user, session):
    make_user("chen", "customer")
    login(client, "chen")
    peach = shop.product(stock=[5])
    client.post("/shop/cart/add", data={"product_id": peach.id, "quantity": "1"})
    client.post("/shop/checkout", data=CASH)
    order = session.scalars(select(Order)).one()
    assert order.user_id is not None
    assert order.number in client.get("/shop/orders").get_data(as_text=True)
