"""A recall holds at every step: reservation, packing, readying and handover refuse goods of a
recalled lot (or of a pack or box made from one), the order is flagged for staff, the EPCIS
export never shows a sale after the recall, and the customer's pages say what to do."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select

from core import clock
from shop import orders, payments
from shop import settings as shop_settings
from shop.models import Order
from shop.trace import epcis, lots, recall
from tests.conftest import login
from tests.shop.trace_factories import make_farm

PICKUP = {"name": "陈女士", "phone": "13800000000", "fulfilment": "pickup", "payment_method": "cash"}


@pytest.fixture
def packed_farm(session):
    """A checked-in peach lot (by the system) and six 2 kg packs of it, on sale."""
    farm = make_farm(session)
    lot = lots.create_harvest_lot(
        session, farm.cycle, "40", "kg", harvested_on=date(2026, 6, 20), product_id=farm.peach.id
    )
    packs = lots.split_lot(session, lot, ["2"] * 6)
    shop_settings.update(
        session,
        centre_name="赵庄村农产品销售中心",
        centre_address="村委会东侧",
        centre_hours="每天 8:00–18:00",
        centre_phone="0371-6286 0000",
    )
    session.commit()
    return farm, lot, packs


def _order_for_pack(client, session, farm, pack) -> Order:
    client.post("/shop/cart/add", data={"product_id": farm.peach.id, "quantity": "2", "lot_id": pack.id})
    response = client.post("/shop/checkout", data=PICKUP)
    assert response.status_code == 302 and "/shop/order/" in response.headers["Location"]
    session.expire_all()
    return session.scalars(select(Order).order_by(Order.id.desc())).first()


def _staff_action(client, order, action, lang="en"):
    return client.post(f"/shop/staff/order/{order.number}/action?lang={lang}", data={"action": action})


def test_a_pack_reserved_before_the_recall_cannot_be_packed_readied_or_handed_over(
    client, session, make_user, packed_farm
):
    farm, lot, packs = packed_farm
    order = _order_for_pack(client, session, farm, packs[0])
    payments.mark_paid(session, order, method="cash", amount_fen=order.total_fen, reference="cash:1")
    session.commit()
    recall.recall_lot(session, lot, "农残超标", flag_orders=orders.flag_recalled)
    session.commit()

    make_user("kuaiji", "official")
    login(client, "kuaiji")
    response = _staff_action(client, order, "pack")
    assert response.status_code == 302
    page = client.get(f"/shop/staff/order/{order.number}?lang=en").get_data(as_text=True)
    assert f"contains recalled lot {packs[0].lot_number}" in page
    session.expire_all()
    order = session.get(Order, order.id)
    assert order.status == "paid"
    assert order.attention and packs[0].lot_number in order.attention  # flagged for staff
    # the service refuses every step towards the customer, whatever the path
    for state in ("packed", "ready_for_pickup", "shipped", "completed"):
        order.status = {"packed": "paid", "completed": "ready_for_pickup"}.get(state, "packed")
        session.flush()
        with pytest.raises(orders.OrderError, match=packs[0].lot_number):
            orders.move(session, order, state)
    session.rollback()
    # in Chinese too
    _staff_action(client, order, "pack", lang="zh_CN")
    page = client.get(f"/shop/staff/order/{order.number}?lang=zh_CN").get_data(as_text=True)
    assert f"含有已召回的批次 {packs[0].lot_number}" in page


def test_an_order_packed_before_the_recall_cannot_be_readied_or_completed(
    client, session, make_user, packed_farm
):
    farm, lot, packs = packed_farm
    order = _order_for_pack(client, session, farm, packs[1])
    payments.mark_paid(session, order, method="cash", amount_fen=order.total_fen, reference="cash:2")
    orders.staff_action(session, order, "pack", user_id=None)
    session.commit()
    recall.recall_lot(session, packs[1], "包装破损")  # the pack alone, and without the flag hook
    session.commit()
    make_user("kuaiji", "official")
    login(client, "kuaiji")
    assert session.get(Order, order.id).attention is None  # the recall had no hook to flag it
    _staff_action(client, order, "ready")
    session.expire_all()
    refused = session.get(Order, order.id)
    assert refused.status == "packed"
    assert refused.attention and packs[1].lot_number in refused.attention  # the refusal flagged it
    with pytest.raises(orders.OrderError):
        orders.staff_action(session, session.get(Order, order.id), "ready", user_id=None)


def test_a_cart_filled_before_the_recall_cannot_be_checked_out_after_it(client, session, packed_farm):
    farm, lot, packs = packed_farm
    client.post("/shop/cart/add", data={"product_id": farm.peach.id, "quantity": "2", "lot_id": packs[2].id})
    client.post("/shop/cart/add", data={"product_id": farm.peach.id, "quantity": "3"})
    recall.recall_lot(session, lot, "农残超标")
    session.commit()
    response = client.post("/shop/checkout?lang=en", data=PICKUP)
    assert response.status_code == 302 and response.headers["Location"].endswith("/shop/cart")
    assert "not enough" in client.get("/shop/cart?lang=en").get_data(as_text=True)
    session.expire_all()
    assert session.scalars(select(Order)).all() == []
    assert all(session.get(type(p), p.id).remaining == 2 for p in packs)


def test_epcis_shows_no_sale_after_the_recall(client, session, make_user, packed_farm):
    farm, lot, packs = packed_farm
    start = clock.now()
    with clock.frozen(start):
        sold_before = _order_for_pack(client, session, farm, packs[3])
        payments.mark_paid(
            session, sold_before, method="cash", amount_fen=sold_before.total_fen, reference="c:3"
        )
        session.commit()
        late = _order_for_pack(client, session, farm, packs[4])
    with clock.frozen(start + timedelta(minutes=10)):
        recall.recall_lot(session, lot, "农残超标", flag_orders=orders.flag_recalled)
        session.commit()
    with clock.frozen(start + timedelta(minutes=20)):
        # a counter payment after the recall is refused; one that arrives from Stripe is recorded...
        with pytest.raises(payments.PaymentError):
            payments.mark_paid(session, late, method="cash", amount_fen=late.total_fen, reference="c:4")
        session.rollback()
        payments.mark_paid(session, late, method="stripe", amount_fen=late.total_fen, reference="cs_late")
        session.commit()
    make_user("kuaiji", "official")
    login(client, "kuaiji")
    for pack, expect_sale in ((packs[3], True), (packs[4], False)):
        document = client.get(f"/api/v1/lots/{pack.lot_number}/epcis").get_json()
        events = document["epcisBody"]["eventList"]
        dispositions = [e.get("disposition") for e in events]
        assert "recalled" in dispositions
        after = dispositions[dispositions.index("recalled") :]
        assert "retail_sold" not in after and "in_transit" not in after
        assert ("retail_sold" in dispositions) == expect_sale
    # ...and is no sale on the public trace page either
    story = client.get(f"/t/{packs[4].code}?lang=en").get_data(as_text=True)
    assert "Sold" not in story and "recalled" in story.lower()
    # the service says the same for the whole family of the recalled lot
    whole = epcis.export_lot(session, lot, "http://localhost", "697000", sales_of=orders.sales_of)
    times = [(e["eventTime"], e.get("disposition")) for e in whole["epcisBody"]["eventList"]]
    first_recall = min(t for t, d in times if d == "recalled")
    assert [d for t, d in times if d == "retail_sold"] == ["retail_sold"]  # the one paid before
    assert not [t for t, d in times if d in ("retail_sold", "in_transit") and t >= first_recall]


def test_the_customer_sees_the_recall_on_the_order_page_and_list(client, session, make_user, packed_farm):
    farm, lot, packs = packed_farm
    make_user("chen", "customer")
    login(client, "chen")
    order = _order_for_pack(client, session, farm, packs[5])
    other = _order_for_pack(client, session, farm, packs[0])
    recall.recall_lot(session, lot, "抽检农残超标", flag_orders=orders.flag_recalled)
    session.commit()
    page = client.get(f"/shop/order/{order.token}?lang=zh_CN").get_data(as_text=True)
    assert "data-recall-notice" in page
    assert "请勿食用" in page and "0371-6286 0000" in page and "退款" in page
    assert packs[5].lot_number in page and "抽检农残超标" in page
    assert "赵庄村农产品销售中心" in page and "每天 8:00–18:00" in page
    english = client.get(f"/shop/order/{order.token}?lang=en").get_data(as_text=True)
    assert "Do not eat it." in english and "call 0371-6286 0000: you will be refunded" in english
    listing = client.get("/shop/orders?lang=en").get_data(as_text=True)
    assert listing.count("data-recall-notice") == 2 and "data-recalled" in listing
    assert order.number in listing and other.number in listing
    recent = client.get("/shop/recent?lang=en").get_data(as_text=True)
    assert "data-recall-notice" in recent


def test_an_order_of_good_goods_shows_no_recall(client, session, packed_farm):
    farm, _lot, packs = packed_farm
    other = make_farm(session, code="GH2", household_code="ZZ002")
    good = lots.create_harvest_lot(
        session, other.cycle, "10", "kg", harvested_on=date(2026, 6, 20), product_id=other.peach.id
    )
    recall.recall_lot(session, good, "另一批")
    session.commit()
    order = _order_for_pack(client, session, farm, packs[0])
    assert "data-recall-notice" not in client.get(f"/shop/order/{order.token}").get_data(as_text=True)
    assert orders.recalled_lines(session, order) == []


def test_recalled_lines_names_the_lines_and_their_recalled_lots(client, session, packed_farm):
    farm, lot, packs = packed_farm
    order = _order_for_pack(client, session, farm, packs[0])
    assert orders.recalled_lines(session, order) == []
    recall.recall_lot(session, lot, "农残超标")
    session.flush()
    (entry,) = orders.recalled_lines(session, order)
    assert entry.line.id == order.lines[0].id
    assert [x.lot_number for x in entry.lots] == [packs[0].lot_number]
    assert entry.lots[0].quantity == Decimal(2)
