"""A guest's order opens only in the browser session that placed it: not from a copy of the
cookie kept from before a login or logout (the kiosk case), not from another browser that
knows the link, and the previous customer's orders, name and phone are gone after logout."""

from __future__ import annotations

from sqlalchemy import select

from shop.models import Order
from tests.conftest import login

PICKUP = {"name": "陈女士", "phone": "13812345678", "fulfilment": "pickup", "payment_method": "cash"}


def place_order(client, product) -> str:
    client.post("/shop/cart/add", data={"product_id": product.id, "quantity": "1"})
    r = client.post("/shop/checkout", data=PICKUP)
    assert r.status_code == 302 and "/shop/order/" in r.headers["Location"]
    return r.headers["Location"]


def cookie(client) -> str:
    found = client.get_cookie("session")
    assert found is not None
    return found.value


def with_cookie(app, value: str):
    other = app.test_client()
    other.set_cookie("session", value)
    return other


def test_the_order_opens_in_its_own_session_only(app, client, shop, session):
    peach = shop.product(stock=[10])
    link = place_order(client, peach)
    page = client.get(link).get_data(as_text=True)
    assert "13812345678" in page
    number = session.scalars(select(Order)).one().number
    assert number in client.get("/shop/recent").get_data(as_text=True)
    # the link alone opens nothing, nor can another browser cancel the order
    stranger = app.test_client()
    assert stranger.get(link).status_code == 404
    assert stranger.post(link + "/cancel").status_code == 404


def test_a_kiosk_cookie_copied_before_a_login_does_not_open_the_guests_order(
    app, client, shop, make_user, session
):
    peach = shop.product(stock=[10])
    link = place_order(client, peach)  # the victim orders as a guest at the kiosk
    number = session.scalars(select(Order)).one().number
    assert number in client.get("/shop/recent").get_data(as_text=True)
    copied = cookie(client)
    make_user("next-customer", "customer")
    login(client, "next-customer")  # the next person logs in on the same kiosk
    assert client.get(link).status_code == 404
    assert number not in client.get("/shop/recent").get_data(as_text=True)
    replay = with_cookie(app, copied)  # and the cookie copied earlier is dead
    assert replay.get(link).status_code == 404
    assert number not in replay.get("/shop/recent").get_data(as_text=True)


def test_logout_clears_the_previous_customers_orders_name_and_phone(app, client, shop, make_user, session):
    make_user("chen", "customer")
    peach = shop.product(stock=[10])
    login(client, "chen")
    link = place_order(client, peach)
    order = session.scalars(select(Order)).one()
    assert order.user_id is not None
    assert order.number in client.get("/shop/recent").get_data(as_text=True)
    assert "13812345678" in client.get(link).get_data(as_text=True)
    kept = cookie(client)
    client.post("/logout")
    assert order.number not in client.get("/shop/recent").get_data(as_text=True)
    assert client.get(link).status_code == 404
    replay = with_cookie(app, kept)
    assert replay.get(link).status_code == 404
    assert order.number not in replay.get("/shop/recent").get_data(as_text=True)
    assert "13812345678" not in replay.get("/shop/checkout").get_data(as_text=True)
    # the customer finds it again by logging in
    login(client, "chen")
    assert client.get(link).status_code == 200


def test_the_anonymous_cart_is_moved_to_the_user_under_a_new_token(app, client, shop, make_user, session):
    from shop.models import Cart

    peach = shop.product(stock=[10])
    client.post("/shop/cart/add", data={"product_id": peach.id, "quantity": "2"})
    guest_token = session.scalars(select(Cart.token)).one()
    copied = cookie(client)
    chen = make_user("chen", "customer")
    login(client, "chen")
    assert "黄桃" in client.get("/shop/cart").get_data(as_text=True)
    session.expire_all()
    cart = session.scalars(select(Cart)).one()
    assert cart.user_id == chen.id and cart.token != guest_token
    # the old cookie's session has ended, and its cart token opens nothing any more
    assert "黄桃" not in with_cookie(app, copied).get("/shop/cart").get_data(as_text=True)


def test_logging_in_as_someone_else_takes_no_cart_over(client, shop, make_user, session):
    from shop.models import Cart

    peach = shop.product(stock=[10])
    chen = make_user("chen", "customer")
    make_user("wang", "customer")
    login(client, "chen")
    client.post("/shop/cart/add", data={"product_id": peach.id, "quantity": "2"})
    login(client, "wang")  # on the same shared computer, without logging out
    assert "黄桃" not in client.get("/shop/cart").get_data(as_text=True)
    session.expire_all()
    assert session.scalars(select(Cart)).one().user_id == chen.id  # still chen's
