"""Cart and checkout: reservations, FIFO lots, double submits, expiry and cancellation."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from sqlalchemy import select

from core.db import utcnow
from shop import checkout
from shop.models import Order, OrderLineLot

PICKUP = {"name": "陈女士", "phone": "13800000000", "fulfilment": "pickup", "payment_method": "cash"}


def add(client, product, qty="1", **extra):
    return client.post("/shop/cart/add", data={"product_id": product.id, "quantity": qty, **extra})


def place(client, lang="zh_CN", **overrides):
    return client.post(f"/shop/checkout?lang={lang}", data={**PICKUP, **overrides})


def only_order(session) -> Order:
    session.expire_all()
    return session.scalars(select(Order)).one()


def test_guest_checkout_for_pickup_reserves_stock_and_shows_the_order(client, shop, session):
    peach = shop.product(stock=[10])
    add(client, peach, "2.5")
    cart = client.get("/shop/cart?lang=en").get_data(as_text=True)
    assert "¥17.25" in cart  # 2.5 jin × ¥6.90
    r = place(client)
    assert r.status_code == 302
    order = only_order(session)
    assert order.status == "pending_payment" and order.total_fen == 1725
    assert shop.stock(peach) == Decimal("7.5")
    page = client.get(r.headers["Location"] + "?lang=en").get_data(as_text=True)
    assert order.number in page and "Please pay when you collect" in page
    # the cart is empty afterwards
    assert "Your cart is empty" in client.get("/shop/cart?lang=en").get_data(as_text=True)
    # guests find the order again from this browser
    assert order.number in client.get("/shop/recent").get_data(as_text=True)


def test_without_stripe_keys_the_shop_says_pickup_only_and_refuses_online_payment(client, shop, session):
    peach = shop.product(stock=[10])
    assert 'data-testid="pickup-only"' in client.get("/shop/").get_data(as_text=True)
    add(client, peach)
    r = place(client, lang="en", payment_method="stripe")
    assert r.status_code == 400
    assert "Online payment is not available" in r.get_data(as_text=True)
    assert session.scalars(select(Order)).first() is None
    assert shop.stock(peach) == 10


def test_delivery_needs_an_address_and_cash_needs_pickup(client, shop, session):
    peach = shop.product(stock=[10])
    add(client, peach)
    r = place(client, lang="en", fulfilment="delivery", address="", payment_method="cash")
    assert r.status_code == 400
    html = r.get_data(as_text=True)
    assert "Enter a delivery address." in html
    assert "Cash payment is only possible at pickup." in html
    r = place(client, fulfilment="delivery", address="", payment_method="cash")
    assert "请填写收货地址" in r.get_data(as_text=True)  # Chinese by default
    assert session.scalars(select(Order)).first() is None


def test_double_submit_places_one_order(client, shop, session):
    peach = shop.product(stock=[10])
    add(client, peach, "2")
    form = client.get("/shop/checkout").get_data(as_text=True)
    import re

    version = re.search(r'name="version" value="(\d+)"', form).group(1)
    first = place(client, version=version)
    second = place(client, version=version)
    assert first.headers["Location"] == second.headers["Location"]
    assert len(session.scalars(select(Order)).all()) == 1
    assert shop.stock(peach) == 8


def test_sales_take_from_the_oldest_lot_unless_the_customer_picks_one(client, shop, session):
    peach = shop.product(stock=[3, 10])  # first lot is the older one
    from shop.catalog import available_lots

    old, new = available_lots(session, peach.id)
    add(client, peach, "5")
    place(client)
    allocations = sorted((a.lot_id, a.quantity) for a in session.scalars(select(OrderLineLot)))
    assert allocations == [(old.id, Decimal("3")), (new.id, Decimal("2"))]
    # a customer who picks the newer lot gets it, even though an older one has stock
    shop.lot(peach, 4, days_ago=30)
    add(client, peach, "1", lot_id=new.id)
    place(client)
    session.expire_all()
    assert new.remaining == Decimal("7")


def test_not_enough_stock_reserves_nothing(client, shop, session):
    peach = shop.product(stock=[2, 1])
    melon = shop.product("melon", name_en="Honey melon", stock=[5])
    add(client, melon, "2")
    add(client, peach, "4")
    r = place(client)
    assert r.status_code == 302 and r.headers["Location"].endswith("/shop/cart")
    assert "黄桃 库存不足（仅剩 3）" in client.get("/shop/cart").get_data(as_text=True)
    assert session.scalars(select(Order)).first() is None
    assert shop.stock(peach) == 3 and shop.stock(melon) == 5


def test_expired_reservations_return_stock(client, shop, session):
    peach = shop.product(stock=[5])
    add(client, peach, "5")
    place(client, payment_method="cash")
    order = only_order(session)
    assert shop.stock(peach) == 0
    assert checkout.expire_reservations(session, now=utcnow()) == 0  # not lapsed yet
    assert checkout.expire_reservations(session, now=utcnow() + timedelta(days=4)) == 1
    session.commit()
    assert only_order(session).status == "cancelled"
    assert shop.stock(peach) == 5
    # a second run changes nothing
    assert checkout.expire_reservations(session, now=utcnow() + timedelta(days=5)) == 0
    assert order.number


def test_customer_cancels_an_unpaid_order_and_stock_returns(client, shop, session):
    peach = shop.product(stock=[5])
    add(client, peach, "3")
    place(client)
    order = only_order(session)
    client.post(f"/shop/order/{order.token}/cancel")
    assert only_order(session).status == "cancelled"
    assert shop.stock(peach) == 5
    # cancelling twice does not return the stock twice
    client.post(f"/shop/order/{order.token}/cancel")
    assert shop.stock(peach) == 5


def test_quantities_follow_the_unit(client, shop):
    box = shop.product("peach-box", unit="box", price=8800, stock=[5])
    r = add(client, box, "1.5")
    assert r.status_code == 302
    assert "¥" not in client.get("/shop/cart").get_data(as_text=True).split("<tfoot>")[0].split("<tbody>")[-1]


def test_forms_carry_csrf_tokens_when_protection_is_on(csrf_app, app, shop, session):
    from tests.conftest import csrf_token_from

    peach = shop.product(stock=[5])
    client = csrf_app.test_client()
    assert client.post("/shop/cart/add", data={"product_id": peach.id, "quantity": "1"}).status_code == 400
    token = csrf_token_from(client.get("/shop/p/yellow-peach").get_data(as_text=True))
    assert (
        client.post(
            "/shop/cart/add", data={"product_id": peach.id, "quantity": "1", "csrf_token": token}
        ).status_code
        == 302
    )
    form = client.get("/shop/checkout").get_data(as_text=True)
    r = client.post("/shop/checkout", data={**PICKUP, "csrf_token": csrf_token_from(form)})
    assert r.status_code == 302 and "/shop/order/" in r.headers["Location"]
    assert only_order(session).total_fen == 690
