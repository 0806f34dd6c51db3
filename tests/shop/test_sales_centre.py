"""The sales centre's details (where to collect, when, whom to call) and the checkout form a
customer on a phone can finish: messages beside the fields, the summary before the button."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from core.models import AuditEntry
from shop import settings as shop_settings
from shop.models import Order
from tests.conftest import login
from tests.shop.test_shop_checkout import add, place

CENTRE = {
    "centre_name": "赵庄村农产品销售中心",
    "centre_address": "登封市赵庄村村委会东侧",
    "centre_hours": "每天 8:00–18:00",
    "centre_phone": "0371-6286 0000",
}


@pytest.fixture
def centre(session):
    shop_settings.update(session, **CENTRE)
    session.commit()


def test_a_pickup_order_says_where_when_and_whom_to_call(client, shop, session, centre):
    add(client, shop.product(stock=[10]))
    r = place(client)
    page = client.get(r.headers["Location"] + "?lang=en").get_data(as_text=True)
    order = session.scalars(select(Order)).one()
    for value in CENTRE.values():
        assert value in page
    assert 'href="tel:0371-62860000"' in page
    assert f"Bring the order number {order.number}" in page
    # the checkout already names the place and its hours beside the pickup choice
    add(client, shop.product(slug="grapes", stock=[5]))
    form = client.get("/shop/checkout?lang=zh_CN").get_data(as_text=True)
    assert "到赵庄村农产品销售中心自提" in form and "每天 8:00–18:00" in form


def test_without_details_the_order_page_shows_no_empty_card(client, shop):
    add(client, shop.product(stock=[10]))
    page = client.get(place(client).headers["Location"]).get_data(as_text=True)
    assert 'data-testid="centre"' not in page


@pytest.mark.parametrize(
    ("phone", "message"),
    [
        ("", "Enter a phone number."),
        ("123", "A phone number has 7 to 15 digits"),
        ("00000", "A phone number has 7 to 15 digits"),
        ("1380000abcd", "A phone number has 7 to 15 digits"),
        ("+86 138 0000 0000 0000 1", "A phone number has 7 to 15 digits"),
    ],
)
def test_a_wrong_phone_says_what_is_wrong_beside_the_field(client, shop, session, phone, message):
    add(client, shop.product(stock=[10]))
    r = place(client, lang="en", phone=phone)
    html = r.get_data(as_text=True)
    assert r.status_code == 400
    assert message in html
    # beside the phone field, marked invalid, and the form keeps what was typed
    field = html[html.index('<label for="phone">') : html.index('<label for="email">')]
    assert message in field and 'aria-invalid="true"' in field
    assert 'value="陈女士"' in html
    assert session.scalars(select(Order)).first() is None


@pytest.mark.parametrize(
    "phone", ["138 0000 1234", "０３７１－６２８６００００", "+86 (371) 6286-0000", "6286000"]
)
def test_real_phone_numbers_are_accepted_and_stored_folded(client, shop, session, phone):
    add(client, shop.product(stock=[10]))
    assert place(client, phone=phone).status_code == 302
    stored = session.scalars(select(Order)).one().phone
    assert stored.isascii() and sum(ch.isdigit() for ch in stored) >= 7


def test_the_order_summary_comes_before_the_form_so_a_phone_shows_it_first(client, shop):
    add(client, shop.product(stock=[10], price=12800))
    html = client.get("/shop/checkout?lang=zh_CN").get_data(as_text=True)
    assert html.index('data-testid="summary-total"') < html.index('data-testid="place-order"')
    # the total is said once, in its own cell
    total = html[html.index('data-testid="summary-total"') :]
    assert total[: total.index("</td>")].count("¥128.00") == 1


def test_guests_find_their_orders_and_the_trace_lookup_in_the_menu(client, session, make_user):
    nav = client.get("/shop/?lang=en").get_data(as_text=True)
    assert 'data-nav="orders" href="/shop/recent"' in nav and 'data-nav="trace-code" href="/t/"' in nav
    make_user("chen", "customer")
    login(client, "chen")
    nav = client.get("/shop/?lang=en").get_data(as_text=True)
    assert 'data-nav="orders" href="/shop/orders"' in nav


def test_staff_set_the_details_on_their_page_and_every_change_is_audited(client, session, make_user):
    make_user("kuaiji", "official")
    login(client, "kuaiji")
    r = client.post("/shop/staff/settings", data={**CENTRE, "centre_phone": "call us"})
    html = r.get_data(as_text=True)
    assert r.status_code == 400 and 'id="centre_phone-error"' in html
    assert 'value="登封市赵庄村村委会东侧"' in html  # nothing typed is lost
    assert session.get(type(shop_settings.get(session)), 1) is None
    assert client.post("/shop/staff/settings", data=CENTRE).status_code == 302
    session.expire_all()
    assert shop_settings.get(session).centre_hours == "每天 8:00–18:00"
    entry = session.scalars(select(AuditEntry).where(AuditEntry.action == "shop.settings")).one()
    assert entry.user_id is not None and "centre_phone" in entry.details


@pytest.mark.parametrize("role", ["farmer", "customer", "oversight"])
def test_only_staff_change_the_details(client, session, make_user, role):
    user = make_user("someone", role)
    login(client, "someone")
    assert client.post("/shop/staff/settings", data=CENTRE).status_code in (302, 403)
    session.expire_all()
    assert shop_settings.get(session).centre_name == ""
    with pytest.raises(shop_settings.ShopSettingsError):
        shop_settings.update(session, user_id=user.id, **CENTRE)


def test_the_cli_shows_and_changes_the_details(runner, session):
    r = runner.invoke(args=["shop", "settings", "--phone", "0371 6286 0000", "--hours", "8:00-18:00"])
    assert r.exit_code == 0, r.output
    assert "phone: 0371 6286 0000" in r.output
    r = runner.invoke(args=["shop", "settings", "--phone", "not a phone"])
    assert r.exit_code == 1 and "phone number" in r.output
    session.expire_all()
    assert shop_settings.get(session).centre_phone == "0371 6286 0000"
    r = runner.invoke(args=["shop", "settings", "--name", "x" * 121])
    assert r.exit_code == 1 and "at most 120" in r.output


def test_a_guest_on_a_shared_phone_makes_the_browser_forget_their_orders_found_by_review(
    client, shop, session
):
    add(client, shop.product(stock=[10]))
    order_url = place(client).headers["Location"]
    recent = client.get("/shop/recent?lang=en").get_data(as_text=True)
    assert 'data-testid="forget"' in recent
    page = client.get(order_url + "?lang=en").get_data(as_text=True)
    assert "opens in this browser only" in page and "Keep the link" not in page
    assert client.post("/shop/recent/forget").status_code == 302
    assert session.scalars(select(Order)).one().number not in client.get("/shop/recent").get_data(
        as_text=True
    )
    assert client.get(order_url).status_code == 404  # the next person at this phone cannot open it
    assert "Your cart is empty" in client.get("/shop/cart?lang=en").get_data(as_text=True)


def test_without_online_payment_the_checkout_does_not_promise_a_30_minute_online_hold_found_by_review(
    client, shop
):
    add(client, shop.product(stock=[10]))
    hint = client.get("/shop/checkout?lang=en").get_data(as_text=True)
    hint = hint[hint.index('data-testid="hold-hint"') :][:400]
    assert "30 minutes" not in hint and "held for 2 hours" in hint
