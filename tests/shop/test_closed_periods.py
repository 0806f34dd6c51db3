"""Shop money never fails to post because of a period: a payment, overpayment, refund or payout
whose local day is in a closed month is posted on the first open day, its original date in the
summary. The clock is frozen just after the month end (Asia/Shanghai), when October 2026 has
ended and been closed while a late Stripe delivery for 31 October is still on its way."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select

from coop.ledger import LedgerError, load_chart
from coop.models import Voucher
from coop.periods import close_period
from core import clock
from shop import payments, settlement
from shop.models import Order, Payment
from tests.shop.conftest import post_event
from tests.shop.stripe_stub import event
from tests.shop.test_shop_money import CASH, ONLINE, staff  # noqa: F401  (fixture)

SHANGHAI = "Asia/Shanghai"


def at(day: dt.date, hour: int, minute: int = 0) -> dt.datetime:
    return clock.at_local(day, hour, minute)


@pytest.fixture
def october_closed(session):
    """Books opened on 2026-10-01; it is now 2026-11-02 10:00 in Shanghai and October is closed."""
    with clock.using(SHANGHAI), clock.frozen(at(dt.date(2026, 11, 2), 10)):
        load_chart(session, opening=dt.date(2026, 10, 1))
        close_period(session, 2026, 10)
        session.commit()
        yield session


LATE = dt.date(2026, 10, 31)


def _only(session, prefix: str) -> Voucher:
    session.expire_all()
    rows = [
        v
        for v in session.scalars(select(Voucher).where(Voucher.source == "shop"))
        if v.source_ref.startswith(prefix)
    ]
    assert len(rows) == 1
    return rows[0]


def test_a_stripe_payment_dated_in_a_closed_month_posts_on_the_first_open_day(
    october_closed, stripe_client, stripe_stub, shop, session, books
):
    peach = shop.product(stock=[10])
    stripe_client.post("/shop/cart/add", data={"product_id": peach.id, "quantity": "2"})
    stripe_client.post("/shop/checkout", data=ONLINE)
    order = session.scalars(select(Order)).one()
    paid_at = int(at(LATE, 23, 50).timestamp())  # the customer paid late on 31 October
    evt = event("checkout.session.completed", stripe_stub.complete(order.stripe_session_id), created=paid_at)
    r = post_event(stripe_client, evt)
    assert r.status_code == 200 and r.json["outcome"] == "paid"
    session.expire_all()
    assert session.get(Order, order.id).status == "paid"
    assert clock.local_date(session.scalars(select(Payment)).one().created_at) == LATE  # the real payment day
    v = _only(session, "payment:")
    assert v.date == dt.date(2026, 11, 1)
    assert "原日期 2026-10-31" in v.summary
    books.assert_balanced()
    assert books.balance(key="shop:stripe-clearing") > 0
    # a redelivery is recorded once, and still succeeds
    assert post_event(stripe_client, evt).status_code == 200
    assert len(books.vouchers("payment:")) == 1


def test_the_counter_after_month_end_and_a_counter_payment_dated_in_the_closed_month(
    october_closed,
    staff,  # noqa: F811
    shop,
    session,
    books,
):
    # 00:05 on 1 November: October has just ended and is closed; the current month cannot be closed
    with clock.frozen(at(dt.date(2026, 11, 1), 0, 5)):
        with pytest.raises(LedgerError, match="has not ended yet"):
            close_period(session, 2026, 11)
        session.rollback()
        peach = shop.product(stock=[10])
        staff.post("/shop/cart/add", data={"product_id": peach.id, "quantity": "3"})
        staff.post("/shop/checkout", data=CASH)
        order = session.scalars(select(Order)).one()
        r = staff.post(f"/shop/staff/order/{order.number}/paid", data={"method": "cash"})
        assert r.status_code == 302
        assert _only(session, "payment:").date == dt.date(2026, 11, 1)
        # the same service, for a payment taken at the counter at 23:55 on 31 October
        staff.post("/shop/cart/add", data={"product_id": peach.id, "quantity": "1"})
        staff.post("/shop/checkout", data=CASH)
        second = session.scalars(select(Order).order_by(Order.id.desc())).first()
        payments.mark_paid(
            session,
            second,
            method="cash",
            amount_fen=second.total_fen,
            reference=f"cash:{second.number}",
            now=at(LATE, 23, 55),
        )
        session.commit()
    posted = [v for v in books.vouchers("payment:") if "原日期" in v.summary]
    assert len(posted) == 1 and posted[0].date == dt.date(2026, 11, 1)
    assert "原日期 2026-10-31" in posted[0].summary
    books.assert_balanced()


def test_a_refund_and_an_overpayment_dated_in_the_closed_month(
    october_closed,
    staff,  # noqa: F811
    shop,
    session,
    books,
    settings,
):
    peach = shop.product(stock=[10])
    staff.post("/shop/cart/add", data={"product_id": peach.id, "quantity": "2"})
    staff.post("/shop/checkout", data=CASH)
    order = session.scalars(select(Order)).one()
    staff.post(f"/shop/staff/order/{order.number}/paid", data={"method": "cash"})
    session.expire_all()
    order = session.get(Order, order.id)
    payments.refund(session, order, 500, key="k-late", settings=settings, reason="late", now=at(LATE, 18))
    payments.mark_paid(  # the same order paid a second time on 31 October: owed back, not revenue
        session, order, method="cash", amount_fen=order.total_fen, reference="cash:twice", now=at(LATE, 19)
    )
    session.commit()
    refund = _only(session, "refund:")
    assert refund.date == dt.date(2026, 11, 1) and "原日期 2026-10-31" in refund.summary
    over = [v for v in books.vouchers("payment:") if "重复收款" in v.summary]
    assert len(over) == 1 and over[0].date == dt.date(2026, 11, 1) and "原日期 2026-10-31" in over[0].summary
    books.assert_balanced()


def test_a_payout_that_arrived_in_the_closed_month(october_closed, stripe_client, session, books):
    payout = {
        "id": "po_late",
        "object": "payout",
        "amount": 1200,
        "currency": "cny",
        "arrival_date": int(at(LATE, 9).timestamp()),
        "status": "paid",
    }
    assert post_event(stripe_client, event("payout.paid", payout)).json["outcome"] == "payout posted"
    v = _only(session, "payout:")
    assert v.date == dt.date(2026, 11, 1) and "原日期 2026-10-31" in v.summary
    # money of an open day keeps its own date
    payout2 = {**payout, "id": "po_today", "arrival_date": int(at(dt.date(2026, 11, 2), 9).timestamp())}
    post_event(stripe_client, event("payout.paid", payout2))
    assert _only(session, "payout:po_today").date == dt.date(2026, 11, 2)
    books.assert_balanced()
    # found by review: a payout whose arrival date is tomorrow failed (a future date); it posts today
    payout3 = {**payout, "id": "po_tomorrow", "arrival_date": int(at(dt.date(2026, 11, 3), 9).timestamp())}
    assert post_event(stripe_client, event("payout.paid", payout3)).json["outcome"] == "payout posted"
    v = _only(session, "payout:po_tomorrow")
    assert v.date == dt.date(2026, 11, 2) and "原日期 2026-11-03" in v.summary
    books.assert_balanced()


def test_posting_day_keeps_open_days_and_moves_closed_ones(october_closed):
    session = october_closed
    assert settlement.posting_day(session, dt.date(2026, 11, 2), "x") == (dt.date(2026, 11, 2), "x")
    day, summary = settlement.posting_day(session, dt.date(2026, 9, 30), "x")  # before the opening too
    assert day == dt.date(2026, 11, 1) and "原日期 2026-09-30" in summary
