"""The demo shows the payment rules: flagged Stripe events on the order desk, an unpaid order
of the recalled lot that the recall cancelled (no counter payment for it), and an order paid twice whose
second payment has its own refund button."""

from __future__ import annotations

from sqlalchemy import func, select

from coop import demo as coop_demo
from iot.models import Greenhouse
from shop import demo as shop_demo
from shop.models import Order, Payment, StripeEvent
from shop.orders import recalled_lines
from tests.conftest import login


def test_demo_order_desk_shows_what_needs_attention(client, session, make_user):
    ctx: dict = {"password": None, "accounts": []}
    coop_demo.seed_members(session, ctx)
    households = ctx["households"]
    for i, (code, crop) in enumerate([("GH-PEACH", "peach"), ("GH-GRAPE", "grape"), ("GH-MELON", "melon")]):
        session.add(Greenhouse(code=code, name=code, crop=crop, household_id=households[i].id))
    session.flush()
    shop_demo.seed(session, ctx)
    shop_demo.seed_trace(session, ctx)
    shop_demo.seed_second_payment(session, ctx)
    session.commit()
    problems = {e.id: e.problem for e in session.scalars(select(StripeEvent)) if e.problem}
    assert problems == {
        "evt_demo_other_session": "other_session",
        "evt_demo_usd": "currency_mismatch",
        "evt_demo_unreadable": "unprocessable",
    }
    # nothing of those was accepted; the one order paid twice has its sale and its second payment
    second = session.scalars(select(Payment).where(Payment.duplicate.is_(True))).one()
    assert session.scalar(select(func.count(Payment.id))) == 2 and second.method == "stripe"
    recalled = [o for o in session.scalars(select(Order)) if recalled_lines(session, o)]
    assert len(recalled) == 1 and recalled[0].payment_method == "cash"

    make_user("kuaiji", "official")
    login(client, "kuaiji")
    desk = client.get("/shop/staff/").get_data(as_text=True)  # Chinese, the default
    for event_id in problems:
        assert f'data-event="{event_id}"' in desk
    twice = client.get(f"/shop/staff/order/{second.order.number}").get_data(as_text=True)
    assert 'data-action="refund-duplicate"' in twice and "重复付款" in twice
    assert recalled[0].status == "cancelled" and "L" in (recalled[0].attention or "")  # by the recall
    r = client.post(f"/shop/staff/order/{recalled[0].number}/paid", data={"method": "cash"})
    assert r.status_code == 302
    session.expire_all()
    assert session.get(Order, recalled[0].id).status == "cancelled"
    assert session.scalar(select(func.count(Payment.id)).where(Payment.order_id == recalled[0].id)) == 0
    # seeding again adds nothing
    shop_demo.seed_trace(session, ctx)
    shop_demo.seed_second_payment(session, ctx)
    assert session.scalar(select(func.count(StripeEvent.id))) == 4
