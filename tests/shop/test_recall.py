"""Recall: staff mark a lot recalled, the shop stops selling it and everything made from it,
the trace page warns, and the orders and customers that received it are listed."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from shop import catalog
from shop.orders import orders_for_lot
from shop.trace import lots, recall
from tests.conftest import login
from tests.shop.trace_factories import make_farm, make_order


@pytest.fixture
def sold(session):
    farm = make_farm(session)
    lot = lots.create_harvest_lot(
        session, farm.cycle, "100", "kg", harvested_on=date(2026, 6, 20), product_id=farm.peach.id
    )
    good = lots.create_harvest_lot(
        session, farm.cycle, "50", "kg", harvested_on=date(2026, 6, 21), product_id=farm.peach.id
    )
    pack = lots.split_lot(session, lot, ["2"])[0]
    orders = {
        "direct": make_order(session, lot, "3", name="陈女士", phone="13800000001", email="chen@example.cn"),
        "pack": make_order(session, pack, "2", name="刘先生", phone="13800000002"),
        "pending": make_order(
            session,
            lot,
            "1",
            name="周女士",
            phone="13800000004",
            stock_state="held",
            status="pending_payment",
        ),
        "cancelled": make_order(
            session, lot, "1", name="孙先生", phone="13800000003", stock_state="released", status="cancelled"
        ),
        "other": make_order(session, good, "5", name="吴女士", phone="13800000005"),
    }
    session.commit()
    return farm, lot, good, pack, orders


def test_orders_for_lot_lists_who_received_it(session, sold):
    _farm, lot, _good, pack, orders = sold
    found = orders_for_lot(session, lot.id)
    assert [o.number for o in found] == [orders[k].number for k in ("direct", "pack", "pending")]
    by_number = {o.number: o for o in found}
    assert by_number[orders["pack"].number].lot_numbers == (pack.lot_number,)
    assert by_number[orders["direct"].number].email == "chen@example.cn"
    assert by_number[orders["direct"].number].quantity == Decimal("3")
    assert [o.number for o in orders_for_lot(session, pack.id)] == [orders["pack"].number]


def test_shop_stops_selling_a_recalled_lot_and_its_packs(session, sold):
    farm, lot, good, pack, _orders = sold
    assert {x.id for x in catalog.available_lots(session, farm.peach.id)} == {lot.id, good.id, pack.id}
    before = catalog.stock_of(session, farm.peach.id)
    recall.recall_lot(session, lot, "Residue above the limit")
    session.commit()
    assert [x.id for x in catalog.available_lots(session, farm.peach.id)] == [good.id]
    assert catalog.stock_of(session, farm.peach.id) == before - lot.remaining - pack.remaining


def test_staff_recall_shows_customers_and_the_public_warning(client, session, make_user, sold):
    _farm, lot, _good, pack, orders = sold
    make_user("kuaiji", "official")
    # a customer scans the pack before the recall: no warning, and the page is cached
    assert "data-recalled" not in client.get(f"/t/{pack.code}").get_data(as_text=True)
    login(client, "kuaiji")
    response = client.post(f"/trace/lots/{lot.id}/recall", data={"reason": "农残超标 residue above limit"})
    assert response.status_code == 302 and "/trace/recalls" in response.headers["Location"]
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    for who in ("陈女士", "13800000001", "刘先生", "13800000002", "周女士", pack.lot_number):
        assert who in page, who
    assert "孙先生" not in page and "吴女士" not in page
    client.post("/logout")
    # the recall clears the cache: the warning shows at once, on the lot and on its pack
    for code in (lot.code, pack.code):
        html = client.get(f"/t/{code}?lang=en").get_data(as_text=True)
        assert "data-recalled" in html and "This lot has been recalled" in html
        assert "农残超标" in html


def test_farmers_cannot_recall(client, session, make_user, sold):
    farm, lot, *_ = sold
    make_user("zhaolin", "farmer", household_id=farm.household.id)
    login(client, "zhaolin")
    assert client.post(f"/trace/lots/{lot.id}/recall", data={"reason": "x"}).status_code == 403
    assert client.get("/trace/recalls").status_code == 403
    session.expire_all()
    assert session.get(type(lot), lot.id).recalled_at is None
