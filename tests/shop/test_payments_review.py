"""What a hostile review of payments found, each reproduced through the real app, the stub
Stripe and signed webhooks: a recall stops the payment step; refunds are recorded by their
Refund objects (never id-less); a double payment is refunded on its own; a failed full refund
reopens the order; payout dates are checked; a late payment re-reserved onto clean lots is not
flagged as recalled."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from core import clock
from core.audit import AuditEntry
from core.db import utcnow
from shop import payments
from shop.checkout import expire_reservations
from shop.models import Order, Payment, Refund, StripeEvent
from shop.trace.models import HarvestLot
from shop.trace.recall import recall_lot
from tests.conftest import login
from tests.shop.conftest import post_event
from tests.shop.stripe_stub import event
from tests.shop.test_shop_stripe import buy, paid_event, the_order


@pytest.fixture
def staff(stripe_client, make_user):
    make_user("kuaiji", "official")
    login(stripe_client, "kuaiji")
    return stripe_client


def problem_of(session, event_id: str) -> str | None:
    session.expire_all()
    row = session.get(StripeEvent, event_id)
    return row.problem if row is not None else None


def recall_on_the_web(client, session, lot_id: int | None = None):
    lot_id = lot_id or session.scalars(select(HarvestLot.id)).first()
    r = client.post(f"/trace/lots/{lot_id}/recall", data={"reason": "pesticide residue"})
    assert r.status_code == 302
    return lot_id


# --- 1. a recall stops the payment step ------------------------------------------------------


def test_a_recall_stops_online_payment_found_by_review(staff, stripe_stub, shop, session, books):
    peach = shop.product(stock=[10])
    buy(staff, peach, "2")  # reserved, the Checkout Session open at Stripe
    order = the_order(session)
    assert shop.stock(peach) == 8
    sid = order.stripe_session_id
    recall_on_the_web(staff, session)
    order = the_order(session)
    # the recall itself cancelled the unpaid order and released its stock, for staff to see
    assert order.status == "cancelled" and order.stock_state == "released" and order.paid_fen == 0
    assert "Cancelled by the recall of lot" in order.attention
    assert session.scalar(
        select(func.count(AuditEntry.id)).where(
            AuditEntry.action == "shop.order.status", AuditEntry.entity_id == str(order.id)
        )
    )
    # and closed its Checkout Session after it committed
    assert stripe_stub.count("POST", f"/v1/checkout/sessions/{sid}/expire") == 1
    assert stripe_stub.sessions[sid]["status"] == "expired"
    page = staff.get(f"/shop/order/{order.token}?lang=en").get_data(as_text=True)
    assert "data-recall-notice" in page and "Pay now" not in page
    r = staff.post(f"/shop/order/{order.token}/pay")
    assert r.status_code == 302 and stripe_stub.url not in r.headers["Location"]
    assert books.vouchers() == []


def test_start_checkout_refuses_an_order_with_recalled_lines_found_by_review(
    staff, stripe_stub, stripe_settings, shop, session
):
    peach = shop.product(stock=[10])
    buy(staff, peach, "2")
    order = the_order(session)
    recall_lot(session, session.scalars(select(HarvestLot)).one(), "residue")  # no shop port: not cancelled
    session.commit()
    order = the_order(session)
    assert order.status == "pending_payment" and order.stripe_checkout_url
    with pytest.raises(payments.PaymentError) as refused:
        payments.start_checkout(
            session, order, stripe_settings, success_url="http://x/", cancel_url="http://x/"
        )
    assert "recalled harvest lot and can no longer be paid" in refused.value.template
    page = staff.get(f"/shop/order/{order.token}?lang=en").get_data(as_text=True)
    assert "Pay now" not in page and "data-recall-notice" in page
    r = staff.post(f"/shop/order/{order.token}/pay?lang=en", follow_redirects=True)
    assert "can no longer be paid" in r.get_data(as_text=True)
    assert stripe_stub.url not in (r.request.url or "")


def test_a_payment_from_a_checkout_page_left_open_after_the_recall_found_by_review(
    staff, stripe_stub, shop, session, books
):
    peach = shop.product(stock=[10])
    buy(staff, peach, "2")
    order = the_order(session)
    paid = paid_event(stripe_stub, order, "evt_open_tab")  # paid in a tab opened before the recall
    recall_on_the_web(staff, session)
    assert the_order(session).status == "cancelled"
    assert post_event(staff, paid).json["outcome"].startswith("paid (recalled: refund)")
    order = the_order(session)
    assert order.status == "paid" and order.paid_fen == 1380
    assert problem_of(session, "evt_open_tab") == "recalled_paid"
    detail = staff.get(f"/shop/staff/order/{order.number}?lang=en").get_data(as_text=True)
    form = detail.split('data-testid="recalled"')[1].split("</form>")[0]
    fields = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)"', form))
    assert staff.post(f"/shop/staff/order/{order.number}/refund", data=fields).status_code == 302
    order = the_order(session)
    assert order.status == "refunded" and stripe_stub.refunded(order.stripe_payment_intent) == 1380
    assert shop.stock(peach) == 0  # the recalled lot stays off sale
    books.assert_balanced()


def test_a_late_payment_reserved_again_on_clean_lots_is_not_flagged_recalled_found_by_review(
    staff, stripe_stub, shop, session, books
):
    peach = shop.product(stock=[10])
    buy(staff, peach, "2")
    order = the_order(session)
    paid = paid_event(stripe_stub, order, "evt_late_clean")
    expire_reservations(session, now=utcnow() + timedelta(days=2))  # the hold lapsed: stock back
    session.commit()
    recall_lot(session, session.scalars(select(HarvestLot)).one(), "residue")
    session.commit()
    shop.lot(peach, 5, days_ago=0)  # a clean harvest
    r = post_event(staff, paid)
    assert r.json["outcome"] == "paid"
    order = the_order(session)
    assert order.status == "paid" and order.stock_state == "sold"
    assert "Recalled" not in (order.attention or "")
    assert problem_of(session, "evt_late_clean") is None
    assert shop.stock(peach) == 3


# --- 2. refunds are recorded by their Refund objects, never without an id --------------------


def paid_order(client, stripe_stub, shop, session):
    peach = shop.product(stock=[10])
    buy(client, peach, "2")
    order = the_order(session)
    assert post_event(client, paid_event(stripe_stub, order)).json["outcome"] == "paid"
    return peach, the_order(session)


def test_a_listless_charge_refunded_records_the_refund_by_its_id_and_status_found_by_review(
    staff, stripe_stub, shop, session, books
):
    _peach, order = paid_order(staff, stripe_stub, shop, session)
    pi = order.stripe_payment_intent
    stripe_stub.refund_status = "pending"  # made in the Dashboard, a wallet refund not yet done
    _status, made = stripe_stub.create_refund({"payment_intent": pi, "amount": "500"})
    charge = stripe_stub.charge(pi, listed=False)
    assert "refunds" not in charge and charge["amount_refunded"] == 500
    assert post_event(staff, event("charge.refunded", charge)).json["outcome"] == "1 refund(s) recorded"
    assert stripe_stub.count("GET", "/v1/refunds") == 1
    refund = session.scalars(select(Refund)).one()
    assert refund.stripe_refund_id == made["id"] and refund.status == "pending"
    assert the_order(session).refunded_fen == 500
    # its failure finds it, and the booking is reversed
    failed = event("refund.failed", stripe_stub.settle_refund(made["id"], "failed"))
    assert post_event(staff, failed).json["outcome"] == "refund failed, booking reversed"
    order = the_order(session)
    assert order.refunded_fen == 0 and order.status == "paid"
    assert len(books.vouchers("refund-failed:")) == 1
    books.assert_balanced()


def test_a_listless_refund_before_its_payment_that_fails_is_never_booked_found_by_review(
    staff, stripe_stub, shop, session, books
):
    peach = shop.product(stock=[10])
    buy(staff, peach, "2")
    order = the_order(session)
    paid = paid_event(stripe_stub, order)
    pi = stripe_stub.sessions[order.stripe_session_id]["payment_intent"]
    stripe_stub.refund_status = "pending"
    _status, made = stripe_stub.create_refund({"payment_intent": pi, "amount": "500"})
    early = event("charge.refunded", stripe_stub.charge(pi, listed=False))
    assert post_event(staff, early).json["outcome"] == "refund waiting for its payment"
    failed = event("refund.failed", stripe_stub.settle_refund(made["id"], "failed"))
    assert post_event(staff, failed).json["outcome"] == "waiting refund marked failed"
    assert post_event(staff, paid).json["outcome"] == "paid"
    order = the_order(session)
    assert order.refunded_fen == 0 and order.status == "paid"
    assert books.vouchers("refund") == []
    session.expire_all()
    assert session.scalar(select(func.count(Refund.id))) == 0


def test_a_listless_refund_before_its_payment_is_applied_with_its_id_found_by_review(
    staff, stripe_stub, shop, session, books
):
    peach = shop.product(stock=[10])
    buy(staff, peach, "2")
    order = the_order(session)
    paid = paid_event(stripe_stub, order)
    pi = stripe_stub.sessions[order.stripe_session_id]["payment_intent"]
    _status, made = stripe_stub.create_refund({"payment_intent": pi, "amount": "1380"})
    early = event("charge.refunded", stripe_stub.charge(pi, listed=False))
    assert post_event(staff, early).json["outcome"] == "refund waiting for its payment"
    assert post_event(staff, paid).json["outcome"] == "paid, 1 waiting refund(s) applied"
    refund = session.scalars(select(Refund)).one()
    assert refund.stripe_refund_id == made["id"] and refund.status == "succeeded"
    order = the_order(session)
    assert order.status == "refunded" and shop.stock(peach) == 10
    books.assert_balanced()


def test_a_listless_charge_refunded_when_stripe_cannot_be_asked_is_flagged_found_by_review(
    staff, stripe_stub, shop, session, books
):
    _peach, order = paid_order(staff, stripe_stub, shop, session)
    pi = order.stripe_payment_intent
    stripe_stub.create_refund({"payment_intent": pi, "amount": "500"})
    stripe_stub.fail_next = 10  # Stripe does not answer (the SDK retries twice)
    evt = event("charge.refunded", stripe_stub.charge(pi, listed=False), "evt_unlisted")
    assert post_event(staff, evt).json["outcome"] == "refunds unknown: flagged, nothing booked"
    stripe_stub.fail_next = 0
    session.expire_all()
    assert session.scalar(select(func.count(Refund.id))) == 0
    assert the_order(session).refunded_fen == 0 and books.vouchers("refund") == []
    assert problem_of(session, "evt_unlisted") == "refunds_unknown"
    page = staff.get("/shop/staff/?lang=en").get_data(as_text=True)
    assert 'data-event="evt_unlisted"' in page and "could not be asked for them" in page


def test_a_refund_created_event_records_a_dashboard_refund_once_found_by_review(
    staff, stripe_stub, shop, session, books
):
    _peach, order = paid_order(staff, stripe_stub, shop, session)
    pi = order.stripe_payment_intent
    _status, made = stripe_stub.create_refund({"payment_intent": pi, "amount": "380"})
    created = event("refund.created", dict(made))
    assert post_event(staff, created).json["outcome"] == "1 refund(s) recorded"
    later = event("charge.refunded", stripe_stub.charge(pi, listed=False))
    assert post_event(staff, later).json["outcome"] == "refunds already recorded"
    refund = session.scalars(select(Refund)).one()
    assert refund.stripe_refund_id == made["id"] and the_order(session).refunded_fen == 380
    books.assert_balanced()


# --- 3. a second payment is given back on its own --------------------------------------------


def paid_twice(client, stripe_stub, shop, session):
    """Paid at the counter in cash, and then also online through the order's Checkout page."""
    peach = shop.product(stock=[10])
    buy(client, peach, "2")
    order = the_order(session)
    online = paid_event(stripe_stub, order, "evt_second")
    r = client.post(f"/shop/staff/order/{order.number}/paid", data={"method": "cash"})
    assert r.status_code == 302
    assert post_event(client, online).json["outcome"] == "duplicate payment (flagged)"
    return peach, the_order(session), stripe_stub.sessions[order.stripe_session_id]["payment_intent"]


def test_refunding_a_second_payment_leaves_the_sale_standing_found_by_review(
    staff, stripe_stub, shop, session, books
):
    peach, order, second_pi = paid_twice(staff, stripe_stub, shop, session)
    assert books.balance(key="shop:refunds-due") == -1380  # owed back to the customer
    sale_vouchers = len(books.vouchers("payment:"))
    detail = staff.get(f"/shop/staff/order/{order.number}?lang=en").get_data(as_text=True)
    assert 'data-action="refund-duplicate"' in detail and "through Stripe" in detail
    second = session.scalars(select(Payment).where(Payment.duplicate.is_(True))).one()
    r = staff.post(f"/shop/staff/order/{order.number}/payment/{second.id}/give-back")
    assert r.status_code == 302
    assert stripe_stub.refunded(second_pi) == 1380  # the second payment went back through Stripe
    order = the_order(session)
    assert order.status == "paid" and order.paid_fen == 1380 and order.refunded_fen == 0
    assert order.stock_state == "sold" and shop.stock(peach) == 8  # the stock was not put back
    assert books.balance(key="shop:refunds-due") == 0
    assert books.balance(key=f"product:{peach.id}") == -1380  # the sale stands
    assert len(books.vouchers("payment:")) == sale_vouchers and books.vouchers("refund:") == []
    assert len(books.vouchers("duplicate-refund:")) == 1
    books.assert_balanced()
    # a second click gives nothing more back
    again = staff.post(
        f"/shop/staff/order/{order.number}/payment/{second.id}/give-back",
        headers={"Accept": "application/json"},
    )
    assert again.status_code == 409
    assert stripe_stub.refunded(second_pi) == 1380 and len(books.vouchers("duplicate-refund:")) == 1
    detail = staff.get(f"/shop/staff/order/{order.number}?lang=en").get_data(as_text=True)
    assert "data-given-back" in detail and 'data-action="refund-duplicate"' not in detail
    # Stripe's charge.refunded for it changes nothing more
    later = event("charge.refunded", stripe_stub.charge(second_pi, listed=False))
    assert post_event(staff, later).json["outcome"] == "second payment already given back"
    # the order is still packed and handed over as usual
    assert staff.post(f"/shop/staff/order/{order.number}/action", data={"action": "pack"}).status_code == 302
    assert the_order(session).status == "packed"


def test_the_ordinary_refund_refunds_the_sale_not_the_second_payment_found_by_review(
    staff, stripe_stub, shop, session, books
):
    _peach, order, second_pi = paid_twice(staff, stripe_stub, shop, session)
    assert order.stripe_payment_intent is None  # the order's payment is the cash sale
    r = staff.post(
        f"/shop/staff/order/{order.number}/refund",
        data={"amount": "13.80", "key": payments.next_refund_key(order)},
    )
    assert r.status_code == 302
    refund = session.scalars(select(Refund)).one()
    assert refund.method == "cash" and refund.amount_fen == 1380
    assert stripe_stub.refunded(second_pi) == 0  # the second payment is still owed, on its own
    assert books.balance(key="shop:refunds-due") == -1380
    too_much = staff.post(
        f"/shop/staff/order/{order.number}/refund",
        data={"amount": "0.01", "key": payments.next_refund_key(the_order(session))},
        headers={"Accept": "application/json"},
    )
    assert too_much.status_code == 400
    books.assert_balanced()


def test_a_second_payment_refunded_in_the_dashboard_is_booked_against_211_found_by_review(
    staff, stripe_stub, shop, session, books
):
    peach, order, second_pi = paid_twice(staff, stripe_stub, shop, session)
    stripe_stub.create_refund({"payment_intent": second_pi, "amount": "1380"})
    evt = event("charge.refunded", stripe_stub.charge(second_pi, listed=False))
    assert post_event(staff, evt).json["outcome"] == "second payment given back"
    assert books.balance(key="shop:refunds-due") == 0
    order = the_order(session)
    assert order.status == "paid" and order.refunded_fen == 0 and shop.stock(peach) == 8
    books.assert_balanced()


# --- 4. a full refund that fails reopens the order --------------------------------------------


def full_pending_refund(client, stripe_stub, shop, session, stock=(10,)):
    peach = shop.product(stock=list(stock))
    buy(client, peach, "2")
    order = the_order(session)
    post_event(client, paid_event(stripe_stub, order))
    order = the_order(session)
    stripe_stub.refund_status = "pending"
    r = client.post(
        f"/shop/staff/order/{order.number}/refund",
        data={"amount": "13.80", "key": payments.next_refund_key(order)},
    )
    assert r.status_code == 302
    order = the_order(session)
    assert order.status == "refunded" and order.stock_state == "released"
    return peach, order, session.scalars(select(Refund)).one()


def test_a_failed_full_refund_takes_the_order_back_to_paid_found_by_review(
    staff, stripe_stub, shop, session, books
):
    peach, order, refund = full_pending_refund(staff, stripe_stub, shop, session)
    assert shop.stock(peach) == 10  # the refund put the stock back on sale
    failed = event("refund.failed", stripe_stub.settle_refund(refund.stripe_refund_id, "failed"))
    assert post_event(staff, failed).json["outcome"] == "refund failed, booking reversed"
    order = the_order(session)
    assert order.status == "paid" and order.refunded_fen == 0 and order.refundable_fen == 1380
    assert order.stock_state == "sold" and shop.stock(peach) == 8  # taken again
    detail = staff.get(f"/shop/staff/order/{order.number}?lang=en").get_data(as_text=True)
    assert "reopened the order: it is paid again" in detail and "was taken again: pack it" in detail
    assert "该订单因退款失败重新打开" in staff.get(f"/shop/staff/order/{order.number}?lang=zh_CN").get_data(
        as_text=True
    )
    # and it can be packed, or refunded again
    assert staff.post(f"/shop/staff/order/{order.number}/action", data={"action": "pack"}).status_code == 302
    assert the_order(session).status == "packed"
    books.assert_balanced()


def test_a_failed_full_refund_whose_stock_is_gone_is_flagged_found_by_review(
    staff, stripe_stub, shop, session, books
):
    peach, order, refund = full_pending_refund(staff, stripe_stub, shop, session, stock=(2,))
    other = staff.application.test_client()
    buy(other, peach, "2")  # someone else bought the stock the refund put back
    failed = event("refund.failed", stripe_stub.settle_refund(refund.stripe_refund_id, "failed"))
    assert post_event(staff, failed).json["outcome"] == "refund failed, booking reversed"
    session.expire_all()
    order = session.get(Order, order.id)
    assert order.status == "paid" and order.stock_state == "released" and order.refunded_fen == 0
    detail = staff.get(f"/shop/staff/order/{order.number}?lang=en").get_data(as_text=True)
    assert "is gone now: source the goods, or refund again" in detail
    books.assert_balanced()


# --- 5a. a payout must be dated within the books ----------------------------------------------


@pytest.mark.parametrize(
    ("fields", "created"),
    [({}, 0), ({"arrival_date": 2**33 - 1}, None), ({"arrival_date": 86400}, None)],
    ids=["no-date", "year-2242", "1970"],
)
def test_a_payout_dated_outside_the_books_is_unprocessable_found_by_review(
    staff, stripe_stub, session, books, fields, created
):
    payout = {"id": "po_review", "object": "payout", "amount": 5000, "currency": "cny", **fields}
    evt = event("payout.paid", payout, "evt_payout_review")
    if created == 0:
        evt.pop("created")
    for _ in range(2):  # and its redelivery
        r = post_event(staff, evt)
        assert r.status_code == 400
    assert books.vouchers("payout:") == []
    assert problem_of(session, "evt_payout_review") == "unprocessable"
    page = staff.get("/shop/staff/?lang=en").get_data(as_text=True)
    assert 'data-event="evt_payout_review"' in page


def test_a_payout_dated_today_or_a_few_days_ahead_is_posted(staff, stripe_stub, session, books):
    ahead = int((clock.now() + timedelta(days=3)).timestamp())
    payout = {"id": "po_ok", "object": "payout", "amount": 5000, "currency": "cny", "arrival_date": ahead}
    assert post_event(staff, event("payout.paid", payout)).status_code == 200
    assert len(books.vouchers("payout:")) == 1


def test_a_second_payment_refund_that_fails_is_owed_again_found_by_review(
    staff, stripe_stub, shop, session, books
):
    _peach, order, second_pi = paid_twice(staff, stripe_stub, shop, session)
    second = session.scalars(select(Payment).where(Payment.duplicate.is_(True))).one()
    stripe_stub.refund_status = "pending"
    staff.post(f"/shop/staff/order/{order.number}/payment/{second.id}/give-back")
    session.expire_all()
    rid = session.get(Payment, second.id).return_ref
    assert rid and books.balance(key="shop:refunds-due") == 0
    failed = event("refund.failed", stripe_stub.settle_refund(rid, "failed"))
    assert post_event(staff, failed).json["outcome"] == "second payment refund failed, owed again"
    assert post_event(staff, event("refund.updated", dict(stripe_stub.refunds[rid]))).json["outcome"] == (
        "second payment refund already marked failed"
    )
    assert books.balance(key="shop:refunds-due") == -1380  # owed to the customer again
    order = the_order(session)
    assert order.status == "paid" and order.refunded_fen == 0
    detail = staff.get(f"/shop/staff/order/{order.number}?lang=en").get_data(as_text=True)
    assert 'data-action="refund-duplicate"' in detail and "give it back again" in detail
    # given back again, this time it goes through
    stripe_stub.refund_status = "succeeded"
    r = staff.post(f"/shop/staff/order/{order.number}/payment/{second.id}/give-back")
    assert r.status_code == 302
    assert books.balance(key="shop:refunds-due") == 0 and len(books.vouchers("duplicate-refund:")) == 2
    books.assert_balanced()
