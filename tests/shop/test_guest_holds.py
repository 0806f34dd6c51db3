"""Guest holds: what an unverified guest may hold (per phone, per address, per product), short
holds for unpaid pickup orders unless staff confirm them, and the staff page of current holds."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select

from core import clock
from core.models import AuditEntry
from shop import cart as carts
from shop import checkout
from shop import settings as shop_settings
from shop.models import Order
from tests.conftest import login

GUEST = {"name": "张三", "phone": "0000000", "fulfilment": "pickup", "payment_method": "cash"}


def _guest_order(app, product, qty, **contact):
    """A fresh guest (own browser) orders ``qty`` for pickup; returns the response."""
    browser = app.test_client()
    browser.post("/shop/cart/add", data={"product_id": product.id, "quantity": qty})
    return browser.post("/shop/checkout?lang=en", data={**GUEST, **contact}), browser


def _orders(session):
    session.expire_all()
    return list(session.scalars(select(Order).where(Order.status == "pending_payment")))


def test_two_guests_with_one_made_up_phone_cannot_hold_all_the_melons(app, shop, session):
    melon = shop.product(
        "honey-melon", unit="kg", price=1600, name_zh="蜜瓜", name_en="Honey melon", stock=[128]
    )
    first, _ = _guest_order(app, melon, "64")
    assert first.headers["Location"].endswith("/shop/cart")  # over the per-product cap of 30
    ok, _ = _guest_order(app, melon, "20")
    assert "/shop/order/" in ok.headers["Location"]
    second, browser = _guest_order(app, melon, "20", phone="０００００００")
    assert second.headers["Location"].endswith("/shop/cart")
    assert "may hold at most 30 kg of" in browser.get("/shop/cart?lang=en").get_data(as_text=True)
    assert shop.stock(melon) == 108 and len(_orders(session)) == 1


def test_guest_orders_per_phone_are_limited_whatever_the_spelling(app, shop, session):
    shop_settings.update(session, guest_product_units_max="1000", guest_product_fen_max="10000000")
    session.commit()
    peach = shop.product(stock=[100])
    for phone in ("+86 138-0000-0000", "13800000000"):
        response, _ = _guest_order(app, peach, "1", phone=phone)
        assert "/shop/order/" in response.headers["Location"]
    for phone in ("１３８ ００００ ００００", "0086 13800000000", "138-0000-0000"):
        response, browser = _guest_order(app, peach, "1", phone=phone)
        assert response.headers["Location"].endswith("/shop/cart"), phone
    assert "This phone number already has 2 unpaid orders waiting" in browser.get(
        "/shop/cart?lang=en"
    ).get_data(as_text=True)
    other, _ = _guest_order(app, peach, "1", phone="13900000000")
    assert "/shop/order/" in other.headers["Location"]
    assert len(_orders(session)) == 3


@pytest.mark.parametrize(
    ("raw", "digits"),
    [
        ("+86 138-0000-0000", "13800000000"),
        ("８６１３８００００００００", "13800000000"),
        ("0086-138 0000 0000", "13800000000"),
        ("0371-6286 0000", "037162860000"),
        ("00000", "00000"),
    ],
)
def test_phones_are_compared_by_their_digits(raw, digits):
    assert checkout.normalize_phone(raw) == digits


def test_guest_orders_per_delivery_address_are_limited(session, shop):
    shop_settings.update(session, guest_product_units_max="1000", guest_product_fen_max="10000000")
    peach = shop.product(stock=[100])
    today = clock.today()

    def place(phone, address, user_id=None):
        cart = carts.new_cart(session)
        carts.add_item(session, cart, peach, Decimal(1), today=today)
        contact = checkout.Contact(
            name="李", phone=phone, fulfilment="delivery", address=address, payment_method="stripe"
        )
        return checkout.place_order(session, cart, contact, user_id=user_id, today=today, stripe_enabled=True)

    place("13800000001", "赵庄村 3 组 12 号")
    place("13800000002", "赵庄村3组12号")
    with pytest.raises(checkout.GuestLimit, match="address"):
        place("13800000003", "赵庄村 ３ 组 １２ 号")
    session.rollback()


def test_logged_in_customers_are_not_guests(client, shop, session, make_user):
    peach = shop.product(stock=[100])
    make_user("chen", "customer")
    login(client, "chen")
    for _ in range(3):
        client.post("/shop/cart/add", data={"product_id": peach.id, "quantity": "31"})
        response = client.post("/shop/checkout", data=GUEST)
        assert "/shop/order/" in response.headers["Location"]
    assert len(_orders(session)) == 3 and shop.stock(peach) == 7


def test_unpaid_pickup_orders_are_held_briefly_unless_staff_confirm(app, client, shop, session, make_user):
    peach = shop.product(stock=[10])
    start = clock.now()
    with clock.frozen(start):
        short, _ = _guest_order(app, peach, "2")
        kept, _ = _guest_order(app, peach, "3", phone="13900000000")
    orders = {o.phone: o for o in _orders(session)}
    assert orders["0000000"].reserved_until == start + timedelta(hours=2)
    make_user("kuaiji", "official")
    login(client, "kuaiji")
    page = client.get("/shop/staff/holds?lang=en").get_data(as_text=True)
    assert f'data-hold="{orders["0000000"].number}"' in page and "data-guest" in page and "0000000" in page
    with clock.frozen(start + timedelta(minutes=30)):
        response = client.post(f"/shop/staff/holds/{orders['13900000000'].number}/confirm?lang=en")
    assert response.status_code == 302
    session.expire_all()
    confirmed = session.get(Order, orders["13900000000"].id)
    assert confirmed.reserved_until == confirmed.created_at + timedelta(days=3)
    assert confirmed.hold_confirmed_at is not None and confirmed.hold_confirmed_by is not None
    assert session.scalars(select(AuditEntry).where(AuditEntry.action == "shop.order.hold_confirm")).one()
    assert "data-confirmed" in client.get("/shop/staff/holds").get_data(as_text=True)
    # three hours later the unconfirmed hold has lapsed and its stock is back
    assert checkout.expire_reservations(session, now=start + timedelta(hours=3)) == 1
    session.commit()
    session.expire_all()
    assert session.get(Order, orders["0000000"].id).status == "cancelled"
    assert session.get(Order, confirmed.id).status == "pending_payment"
    assert shop.stock(peach) == 7
    # a lapsed or cancelled hold cannot be confirmed
    assert client.post(f"/shop/staff/holds/{orders['0000000'].number}/confirm").status_code == 302
    session.expire_all()
    assert session.get(Order, orders["0000000"].id).hold_confirmed_at is None
    # staff cancel a hold from the page; its stock returns
    client.post(f"/shop/staff/holds/{confirmed.number}/cancel")
    session.expire_all()
    assert session.get(Order, confirmed.id).status == "cancelled" and shop.stock(peach) == 10
    assert "data-empty" in client.get("/shop/staff/holds").get_data(as_text=True)


def test_only_staff_see_and_change_holds(client, shop, session, make_user):
    make_user("zhaolin", "farmer")
    login(client, "zhaolin")
    assert client.get("/shop/staff/holds").status_code == 403
    assert client.post("/shop/staff/holds/X/confirm").status_code == 403


def test_hold_rules_are_settings_staff_change_and_the_checkout_tells(client, shop, session, make_user):
    peach = shop.product(stock=[10])
    client.post("/shop/cart/add", data={"product_id": peach.id, "quantity": "1"})
    hint = client.get("/shop/checkout?lang=en").get_data(as_text=True)
    assert "held for 2 hours" in hint and "for 3 days" in hint
    assert "保留 2 小时" in client.get("/shop/checkout?lang=zh_CN").get_data(as_text=True)
    make_user("kuaiji", "official")
    staff = client.application.test_client()
    login(staff, "kuaiji")
    form = staff.get("/shop/staff/settings?lang=en").get_data(as_text=True)
    assert 'name="pickup_hold_hours"' in form and 'name="guest_open_orders_max"' in form
    data = {
        "centre_name": "中心",
        "centre_address": "",
        "centre_hours": "",
        "centre_phone": "",
        "guest_open_orders_max": "1",
        "guest_product_units_max": "5",
        "guest_product_fen_max": "20000",
        "pickup_hold_hours": "4",
        "confirmed_hold_days": "2",
    }
    assert staff.post("/shop/staff/settings", data=data).status_code == 302
    rules = shop_settings.get(session)
    session.refresh(rules)
    assert (rules.pickup_hold_hours, rules.confirmed_hold_days, rules.guest_open_orders_max) == (4, 2, 1)
    assert "held for 4 hours" in client.get("/shop/checkout?lang=en").get_data(as_text=True)
    refused = staff.post("/shop/staff/settings?lang=en", data={**data, "pickup_hold_hours": "1e9"})
    assert refused.status_code == 400 and "1e9 is not a whole number" in refused.get_data(as_text=True)
    refused = staff.post("/shop/staff/settings?lang=en", data={**data, "confirmed_hold_days": "99"})
    assert refused.status_code == 400 and "from 1 to 14" in refused.get_data(as_text=True)
    session.expire_all()
    assert shop_settings.get(session).confirmed_hold_days == 2


def _race(app, product, contacts: list[dict], qty: str) -> list[str]:
    """Guests in their own browsers check out at the same moment against a threaded server."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    import requests
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_port}"
    browsers = [requests.Session() for _ in contacts]
    try:
        for b in browsers:
            r = b.post(
                f"{base}/shop/cart/add",
                data={"product_id": product.id, "quantity": qty},
                allow_redirects=False,
            )
            assert r.status_code == 302
        start = threading.Barrier(len(browsers))

        def checkout(pair) -> str:
            browser, contact = pair
            start.wait()
            r = browser.post(
                f"{base}/shop/checkout", data={**GUEST, **contact}, allow_redirects=False, timeout=120
            )
            assert r.status_code == 302, r.text[:300]
            return r.headers["Location"]

        with ThreadPoolExecutor(len(browsers)) as pool:
            return list(pool.map(checkout, zip(browsers, contacts, strict=True)))
    finally:
        server.shutdown()
        thread.join(timeout=5)
        for b in browsers:
            b.close()


def test_simultaneous_guests_with_one_phone_get_two_holds(app, shop, session):
    melon = shop.product("honey-melon", unit="kg", price=1600, stock=[128])
    outcomes = _race(app, melon, [{"phone": "0000000"}] * 12, "1")
    assert sum("/shop/order/" in o for o in outcomes) == 2
    session.expire_all()
    assert len(_orders(session)) == 2 and shop.stock(melon) == 126


def test_simultaneous_guests_with_many_phones_hold_at_most_the_cap(app, shop, session):
    melon = shop.product("honey-melon", unit="kg", price=1600, stock=[128])
    outcomes = _race(app, melon, [{"phone": f"1380000{i:04d}"} for i in range(10)], "10")
    assert sum("/shop/order/" in o for o in outcomes) == 3  # 30 kg of the 128
    session.expire_all()
    assert shop.stock(melon) == 98


def test_hold_rules_from_the_cli(runner, session):
    result = runner.invoke(args=["shop", "settings", "--pickup-hold-hours", "5", "--guest-orders", "1"])
    assert result.exit_code == 0, result.output
    assert "pickup_hold_hours: 5" in result.output and "guest_open_orders_max: 1" in result.output
    refused = runner.invoke(args=["shop", "settings", "--confirmed-hold-days", "abc"])
    assert refused.exit_code == 1 and "abc is not a whole number" in refused.output
    session.expire_all()
    assert shop_settings.get(session).pickup_hold_hours == 5
