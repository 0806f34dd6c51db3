"""``flask shop ...``: expire lapsed reservations, record a payout, print a statement; demo data."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from sqlalchemy import func, select

from core.db import utcnow
from shop.models import Order, Product


def test_expire_command_cancels_lapsed_orders(runner, client, shop, session):
    peach = shop.product(stock=[5])
    client.post("/shop/cart/add", data={"product_id": peach.id, "quantity": "2"})
    client.post(
        "/shop/checkout",
        data={"name": "陈", "phone": "13800000000", "fulfilment": "pickup", "payment_method": "cash"},
    )
    order = session.scalars(select(Order)).one()
    order.reserved_until = utcnow() - timedelta(minutes=1)
    session.commit()
    result = runner.invoke(args=["shop", "expire"])
    assert result.exit_code == 0 and "1 lapsed" in result.output
    assert shop.stock(peach) == 5


def test_payout_and_statement_commands(runner, shop, books):
    h = shop.household("ZZ001", "赵建国")
    result = runner.invoke(args=["shop", "payout", "po_1", "12.50", "--date", "2026-08-01"])
    assert result.exit_code == 0, result.output
    assert (books.balance(code="102") or books.balance(key="shop:bank")) == 1250
    result = runner.invoke(args=["shop", "statement", h.code, "--month", "2026-08"])
    assert result.exit_code == 0 and "owed ¥0.00" in result.output


def test_demo_seed_creates_a_stocked_catalogue(session):
    from coop.demo import seed_members
    from shop import demo

    ctx: dict = {}
    seed_members(session, ctx)
    demo.seed(session, ctx)
    session.commit()
    assert session.scalar(select(func.count(Product.id))) >= 10
    from shop.catalog import list_products

    listed = list_products(session, today=utcnow().date())
    assert all(row.stock > Decimal(0) for row in listed)
    peach = session.scalar(select(Product).where(Product.slug == "yellow-peach"))
    assert peach.consignment and peach.suppliers
