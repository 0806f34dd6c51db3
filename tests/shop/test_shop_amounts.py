"""Every money field of the shop reads amounts strictly (core.money.parse_yuan): the refund form,
the payout command and the product price."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from shop.models import Order
from tests.conftest import login
from tests.shop.test_shop_money import CASH


@pytest.fixture
def staff(stripe_client, make_user):
    make_user("kuaiji", "official")
    login(stripe_client, "kuaiji")
    return stripe_client


def test_refund_amounts_are_strict_and_full_width_is_understood(staff, shop, session, books):
    peach = shop.product(stock=[10])
    staff.post("/shop/cart/add", data={"product_id": peach.id, "quantity": "3"})
    staff.post("/shop/checkout", data=CASH)
    order = session.scalars(select(Order)).one()
    staff.post(f"/shop/staff/order/{order.number}/paid", data={"method": "cash"})
    url = f"/shop/staff/order/{order.number}/refund?lang=zh_CN"
    for bad, why in (("1e3", "科学计数法"), ("-20.70", "负数"), ("20.701", "两位小数"), ("2,07", "千分位")):
        page = staff.post(url, data={"amount": bad, "key": f"k-{bad}"}, follow_redirects=True)
        assert why in page.get_data(as_text=True), bad
        session.expire_all()
        assert session.get(Order, order.id).status == "paid"
    staff.post(url, data={"amount": "２０．７０", "key": "k-ok"})
    session.expire_all()
    assert session.get(Order, order.id).status == "refunded"
    assert (books.balance(code="101") or books.balance(key="shop:cash")) == 0
    books.assert_balanced()


def test_the_payout_command_refuses_malformed_amounts(runner, shop, books):
    for bad in ("1,2,3", "-5", "1e3", "12.345"):
        result = runner.invoke(args=["shop", "payout", f"po_{bad}", bad, "--date", "2026-08-01"])
        assert result.exit_code != 0 and "Error" in result.output, bad
    result = runner.invoke(args=["shop", "payout", "po_ok", "¥1,250.00", "--date", "2026-08-01"])
    assert result.exit_code == 0, result.output
    assert (books.balance(code="102") or books.balance(key="shop:bank")) == 125_000
