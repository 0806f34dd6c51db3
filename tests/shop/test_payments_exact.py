"""Payments matched exactly: a Stripe payment counts only through the order's own Checkout
Session, for the order's total, in CNY; refunds that arrive early are kept, refunds that fail
are reversed; unreadable signed bodies are recorded and answered 400; a recalled order is not
sold at the counter and is refunded in one click when paid online. Everything through the
stub with real signatures and the real app's /stripe/webhook."""

from __future__ import annotations

import json
import re
import time
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from core import clock
from core.db import utcnow
from shop import notes, payments
from shop.models import Order, Payment, Refund, StripeEvent, SupplierCredit
from shop.trace.models import HarvestLot
from shop.trace.recall import recall_lot
from tests.conftest import login
from tests.shop.conftest import WEBHOOK_SECRET, post_event
from tests.shop.stripe_stub import event, sign
from tests.shop.test_shop_stripe import buy, paid_event, the_order

CASH = {"name": "陈女士", "phone": "13800000000", "fulfilment": "pickup", "payment_method": "cash"}


@pytest.fixture
def staff(stripe_client, make_user):
    make_user("kuaiji", "official")
    login(stripe_client, "kuaiji")
    return stripe_client


def problem_of(session, event_id: str) -> str | None:
    session.expire_all()
    row = session.get(StripeEvent, event_id)
    return row.problem if row is not None else None


def desk(client, lang: str = "en") -> str:
    return client.get(f"/shop/staff/?lang={lang}").get_data(as_text=True)


def assert_untouched(session, books, order_id: int) -> None:
    session.expire_all()
    order = session.get(Order, order_id)
    assert order.status == "pending_payment" and order.paid_fen == 0 and order.stock_state == "held"
    assert session.scalar(select(func.count(Payment.id))) == 0
    assert books.vouchers() == []


# --- 1. matching on the order's own session, amount and currency ----------------------------


def test_a_payment_through_another_session_is_recorded_and_flagged_never_fulfilled(
    staff, stripe_stub, shop, session, books
):
    peach = shop.product(stock=[10])
    buy(staff, peach, "2")
    order = the_order(session)
    forged = {
        "id": "cs_test_someone_else",
        "object": "checkout.session",
        "payment_status": "paid",
        "status": "complete",
        "amount_total": 1,
        "currency": "cny",
        "client_reference_id": order.number,
        "metadata": {"order_id": str(order.id), "order_number": order.number},
        "payment_intent": "pi_forged",
    }
    evt = event("checkout.session.completed", forged, "evt_other_session")
    for _ in range(2):  # and its redelivery
        r = post_event(staff, evt)
        assert r.status_code == 200
    assert problem_of(session, "evt_other_session") == "other_session"
    assert_untouched(session, books, order.id)
    page = desk(staff)
    assert "not the order's own" in page and "Refund this payment in the Stripe Dashboard" in page
    assert 'data-event="evt_other_session"' in page
    chinese = desk(staff, "zh_CN")
    assert "不是该订单自己的会话" in chinese and "请在 Stripe 后台退还这笔付款" in chinese
    detail = staff.get(f"/shop/staff/order/{order.number}?lang=en").get_data(as_text=True)
    assert 'data-testid="problems"' in detail and "cs_test_someone_else" in detail
    # the genuine payment through the order's own session still counts
    r = post_event(staff, paid_event(stripe_stub, order))
    assert r.json["outcome"] == "paid"
    assert the_order(session).paid_fen == 1380


@pytest.mark.parametrize(
    ("change", "problem"),
    [({"amount_total": 1}, "amount_mismatch"), ({"currency": "usd"}, "currency_mismatch")],
)
def test_a_wrong_amount_or_currency_is_flagged_and_never_booked(
    staff, stripe_stub, shop, session, books, change, problem
):
    peach = shop.product(stock=[10])
    buy(staff, peach, "2")
    order = the_order(session)
    obj = {**stripe_stub.complete(order.stripe_session_id), **change}
    evt = event("checkout.session.completed", obj, f"evt_{problem}")
    assert post_event(staff, evt).json["outcome"] == f"not matching: {problem}"
    assert post_event(staff, evt).json["outcome"] == "duplicate event"
    assert problem_of(session, f"evt_{problem}") == problem
    assert_untouched(session, books, order.id)
    assert "not accepted" in the_order(session).attention
    assert f'data-problem="{problem}"' in desk(staff)


def test_mark_paid_refuses_anything_but_the_exact_total_in_cny(stripe_client, stripe_stub, shop, session):
    peach = shop.product(stock=[10])
    buy(stripe_client, peach, "2")
    order = the_order(session)
    with pytest.raises(payments.PaymentMismatch) as wrong:
        payments.mark_paid(session, order, method="stripe", amount_fen=1379, reference="stripe:x")
    assert wrong.value.problem == "amount_mismatch"
    with pytest.raises(payments.PaymentMismatch) as usd:
        payments.mark_paid(
            session, order, method="stripe", amount_fen=1380, reference="stripe:x", currency="usd"
        )
    assert usd.value.problem == "currency_mismatch"
    session.rollback()
    assert the_order(session).status == "pending_payment"


def test_a_payment_for_no_order_at_all_is_flagged(staff, stripe_stub, session, books):
    obj = {
        "id": "cs_test_nobody",
        "object": "checkout.session",
        "payment_status": "paid",
        "amount_total": 2200,
        "currency": "cny",
        "metadata": {},
        "payment_intent": "pi_nobody",
    }
    assert post_event(staff, event("checkout.session.completed", obj, "evt_nobody")).status_code == 200
    assert problem_of(session, "evt_nobody") == "unknown_session"
    assert books.vouchers() == []
    page = desk(staff)
    assert "¥22.00" in page and "belongs to no order" in page


# --- 2. a refund that arrives before its payment -------------------------------------------


def test_a_refund_before_the_payment_is_kept_and_applied_when_the_payment_arrives(
    staff, stripe_stub, shop, session, books
):
    peach = shop.product(stock=[10])
    buy(staff, peach, "2")
    order = the_order(session)
    paid = paid_event(stripe_stub, order)  # paid at Stripe, but the event is late
    pi = stripe_stub.sessions[order.stripe_session_id]["payment_intent"]
    stripe_stub.create_refund({"payment_intent": pi, "amount": "1380"})  # refunded in the Dashboard
    early = event("charge.refunded", stripe_stub.charge(pi), "evt_early_refund")
    assert post_event(staff, early).json["outcome"] == "refund waiting for its payment"
    assert post_event(staff, early).json["outcome"] == "duplicate event"
    assert problem_of(session, "evt_early_refund") == "refund_waiting"
    assert "arrived before its payment" in desk(staff)
    r = post_event(staff, paid)
    assert r.json["outcome"] == "paid, 1 waiting refund(s) applied"
    order = the_order(session)
    assert order.paid_fen == 1380 and order.refunded_fen == 1380 and order.status == "refunded"
    assert shop.stock(peach) == 10  # a full refund before handover puts the stock back
    assert books.balance(key=f"product:{peach.id}") == 0
    books.assert_balanced()
    assert session.get(StripeEvent, "evt_early_refund").resolved_at is not None
    assert 'data-event="evt_early_refund"' not in desk(staff)
    # redelivered afterwards, under the same or a new event id: nothing more
    assert post_event(staff, early).json["outcome"] == "duplicate event"
    again = event("charge.refunded", stripe_stub.charge(pi))
    assert post_event(staff, again).json["outcome"] == "refunds already recorded"
    session.expire_all()
    assert session.scalar(select(func.count(Refund.id))) == 1


def test_a_partial_refund_after_the_payment_is_recorded_as_before(staff, stripe_stub, shop, session, books):
    peach = shop.product(stock=[10])
    buy(staff, peach, "2")
    order = the_order(session)
    post_event(staff, paid_event(stripe_stub, order))
    pi = the_order(session).stripe_payment_intent
    stripe_stub.create_refund({"payment_intent": pi, "amount": "380"})
    r = post_event(staff, event("charge.refunded", stripe_stub.charge(pi)))
    assert r.json["outcome"] == "1 refund(s) recorded"
    order = the_order(session)
    assert order.refunded_fen == 380 and order.status == "paid"
    books.assert_balanced()


# --- 3. a pending refund that fails --------------------------------------------------------


@pytest.mark.parametrize("kind", ["refund.failed", "refund.updated", "charge.refund.updated"])
def test_a_pending_refund_that_fails_is_reversed_once_and_flagged(
    staff, stripe_stub, shop, session, books, kind
):
    household = shop.household()
    melon = shop.product(
        "melon", price=1000, unit="kg", stock=[10], consignment=True, commission=10, household=household
    )
    buy(staff, melon, "2")
    order = the_order(session)
    post_event(staff, paid_event(stripe_stub, order))
    order = the_order(session)
    stripe_stub.refund_status = "pending"  # e.g. a wallet refund Stripe has accepted, not yet made
    r = staff.post(
        f"/shop/staff/order/{order.number}/refund",
        data={"amount": "20.00", "reason": "spoilt", "key": payments.next_refund_key(order)},
    )
    assert r.status_code == 302
    refund = session.scalars(select(Refund)).one()
    assert refund.status == "pending"
    assert books.balance(key=f"product:{melon.id}") == 0  # booked at once
    assert books.prefix_balance("113") == 0
    rid = refund.stripe_refund_id
    failed = event(kind, stripe_stub.settle_refund(rid, "failed"), "evt_refund_failed")
    assert post_event(staff, failed).json["outcome"] == "refund failed, booking reversed"
    assert post_event(staff, failed).json["outcome"] == "duplicate event"
    other = event("charge.refund.updated", stripe_stub.settle_refund(rid, "failed"))
    assert post_event(staff, other).json["outcome"] == "refund already marked failed"
    session.expire_all()
    refund = session.get(Refund, refund.id)
    order = session.get(Order, order.id)
    assert refund.status == "failed"
    assert order.refunded_fen == 0 and order.refundable_fen == 2000
    assert all(line.refunded_fen == 0 for line in order.lines)
    assert "refund again" in order.attention
    # the refund's voucher stays; one more voucher reverses it
    assert len(books.vouchers("refund:")) == 1 and len(books.vouchers("refund-failed:")) == 1
    assert books.balance(key=f"product:{melon.id}") == -200  # the collective's commission, as sold
    assert books.prefix_balance("113") == -1800  # the household is owed its share again
    owed = session.scalar(select(func.sum(SupplierCredit.owed_fen)))
    assert owed == 1800
    books.assert_balanced()
    assert problem_of(session, "evt_refund_failed") == "refund_failed"
    detail = staff.get(f"/shop/staff/order/{order.number}?lang=en").get_data(as_text=True)
    assert "failed, booking reversed" in detail and "refund again on the order page" in detail
    # staff can refund again (this time Stripe makes it)
    stripe_stub.refund_status = "succeeded"
    staff.post(
        f"/shop/staff/order/{order.number}/refund",
        data={"amount": "20.00", "reason": "spoilt", "key": payments.next_refund_key(order)},
    )
    session.expire_all()
    assert session.get(Order, order.id).refunded_fen == 2000
    books.assert_balanced()


def test_a_pending_refund_that_succeeds_is_marked_succeeded(staff, stripe_stub, shop, session, books):
    peach = shop.product(stock=[10])
    buy(staff, peach, "2")
    order = the_order(session)
    post_event(staff, paid_event(stripe_stub, order))
    stripe_stub.refund_status = "pending"
    staff.post(
        f"/shop/staff/order/{order.number}/refund",
        data={"amount": "5.00", "key": payments.next_refund_key(the_order(session))},
    )
    refund = session.scalars(select(Refund)).one()
    done = event("refund.updated", stripe_stub.settle_refund(refund.stripe_refund_id, "succeeded"))
    assert post_event(staff, done).json["outcome"] == "refund succeeded"
    session.expire_all()
    assert session.get(Refund, refund.id).status == "succeeded"
    assert books.vouchers("refund-failed:") == []


# --- 4. unreadable signed bodies, signatures from the future, Checkout expiry --------------


def signed_post(client, body: bytes, timestamp: int | None = None):
    return client.post(
        "/stripe/webhook",
        data=body,
        headers={"Stripe-Signature": sign(body, WEBHOOK_SECRET, timestamp)},
        content_type="application/json",
    )


MALFORMED = {
    "a list": b"[]",
    "not JSON": b"this is not json {",
    "a string data.object": json.dumps(
        {"id": "evt_str", "type": "checkout.session.completed", "data": {"object": "cs_test_1"}}
    ).encode(),
    "no id": json.dumps({"type": "payout.paid", "data": {"object": {"id": "po_1", "amount": 5}}}).encode(),
    "a bad payout amount": json.dumps(
        {"id": "evt_payout", "type": "payout.paid", "data": {"object": {"id": "po_1", "amount": "lots"}}}
    ).encode(),
    "a text amount_total": json.dumps(
        {
            "id": "evt_text_amount",
            "type": "checkout.session.completed",
            "data": {
                "object": {"id": "cs_1", "payment_status": "paid", "amount_total": "1380", "currency": "cny"}
            },
        }
    ).encode(),
    "refunds that are not a list": json.dumps(
        {
            "id": "evt_refunds",
            "type": "charge.refunded",
            "data": {"object": {"id": "ch_1", "refunds": {"data": "none"}}},
        }
    ).encode(),
    "a refund without an amount": json.dumps(
        {"id": "evt_refund_amount", "type": "refund.failed", "data": {"object": {"id": "re_1"}}}
    ).encode(),
}


def test_unreadable_signed_bodies_answer_400_every_time_and_are_shown_to_staff(
    staff, stripe_stub, shop, session, books
):
    peach = shop.product(stock=[10])
    buy(staff, peach, "2")
    order = the_order(session)
    for name, body in MALFORMED.items():
        for _ in range(2):  # Stripe retries: the same answer, one record
            r = signed_post(staff, body)
            assert r.status_code == 400, name
            assert "unprocessable" in r.json["error"]["message"], name
    session.expire_all()
    rows = session.scalars(select(StripeEvent)).all()
    assert len(rows) == len(MALFORMED)
    assert {row.problem for row in rows} == {"unprocessable"}
    assert all(row.attention and row.payload for row in rows)
    assert_untouched(session, books, order.id)
    page = desk(staff)
    assert page.count('data-problem="unprocessable"') == len(MALFORMED)
    assert "data.object is not an object" in page and "the body is not JSON" in page
    assert "data.object.amount is not an amount" in page
    # staff resolve one: it leaves the list, and resolving it again says so
    bad = session.get(StripeEvent, "evt_payout")
    r = staff.post("/shop/staff/events/resolve", data={"event_id": bad.id, "note": "checked in Dashboard"})
    assert r.status_code == 302
    assert page.count('data-problem="unprocessable"') - 1 == desk(staff).count('data-problem="unprocessable"')
    staff.post("/shop/staff/events/resolve?lang=en", data={"event_id": bad.id})
    assert "already been resolved" in desk(staff)


def test_a_signature_dated_in_the_future_is_refused(stripe_client, stripe_stub, shop, session):
    peach = shop.product(stock=[10])
    buy(stripe_client, peach, "2")
    order = the_order(session)
    evt = paid_event(stripe_stub, order)
    assert post_event(stripe_client, evt, timestamp=int(time.time()) + 3600).status_code == 400
    assert post_event(stripe_client, evt, timestamp=int(time.time()) + 301 + 5).status_code == 400
    session.expire_all()
    assert session.scalars(select(StripeEvent)).first() is None
    assert the_order(session).status == "pending_payment"
    # a little clock skew is fine
    assert post_event(stripe_client, evt, timestamp=int(time.time()) + 60).status_code == 200
    assert the_order(session).status == "paid"


def test_the_checkout_session_lives_at_least_thirty_minutes_also_on_the_retry_path(
    stripe_client, stripe_stub, shop, session
):
    peach = shop.product(stock=[10])
    buy(stripe_client, peach, "2")
    first = the_order(session)
    created = stripe_stub.sessions[first.stripe_session_id]
    lifetime = int(created["_params"]["expires_at"]) - time.time()
    assert lifetime >= 30 * 60 + 60
    # Stripe was down at checkout; the customer retries 20 minutes later
    stripe_stub.fail_next = 10
    buy(stripe_client, peach, "1")
    session.expire_all()
    order = session.scalars(select(Order).where(Order.id != first.id)).one()
    assert order.stripe_session_id is None
    stripe_stub.fail_next = 0
    later = utcnow() + timedelta(minutes=20)
    with clock.frozen(later):
        r = stripe_client.post(f"/shop/order/{order.token}/pay")
    assert r.status_code == 303
    session.expire_all()
    order = session.get(Order, order.id)
    expires = int(stripe_stub.sessions[order.stripe_session_id]["_params"]["expires_at"])
    assert expires - later.timestamp() >= 30 * 60 + 60  # Stripe's minimum, and a margin
    # the reservation was extended to match: the stock stays held while Stripe may take the money
    assert abs(order.reserved_until.timestamp() - expires) < 1


# --- 6. recall at payment ------------------------------------------------------------------


def recalled_order(client, shop, session, payment="cash"):
    peach = shop.product(stock=[10])
    client.post("/shop/cart/add", data={"product_id": peach.id, "quantity": "2"})
    client.post("/shop/checkout", data={**CASH, "payment_method": payment})
    order = the_order(session)
    lot = session.scalars(select(HarvestLot)).one()
    recall_lot(session, lot, "pesticide residue")
    session.commit()
    return peach, order


def test_payment_received_is_refused_for_a_recalled_line(staff, shop, session, books):
    _peach, order = recalled_order(staff, shop, session)
    detail = staff.get(f"/shop/staff/order/{order.number}?lang=en").get_data(as_text=True)
    assert 'data-testid="recalled"' in detail and 'data-action="paid"' not in detail
    r = staff.post(
        f"/shop/staff/order/{order.number}/paid?lang=en", data={"method": "cash"}, follow_redirects=True
    )
    assert "recalled harvest lot and must not be sold" in r.get_data(as_text=True)
    r = staff.post(
        f"/shop/staff/order/{order.number}/paid",
        data={"method": "cash"},
        headers={"Accept": "application/json"},
    )
    assert r.status_code == 400 and r.json["error"]["already_done"] is False
    assert_untouched(session, books, order.id)


def test_a_stripe_payment_for_a_recalled_line_is_recorded_flagged_and_refunded_in_one_click(
    staff, stripe_stub, shop, session, books
):
    peach, order = recalled_order(staff, shop, session, payment="stripe")
    r = post_event(staff, paid_event(stripe_stub, order, "evt_recalled"))
    assert r.json["outcome"] == "paid (recalled: refund)"
    order = the_order(session)
    assert order.paid_fen == 1380 and order.status == "paid"  # the money is real and on record
    assert notes.english(order.attention).startswith("Recalled: refund")
    assert problem_of(session, "evt_recalled") == "recalled_paid"
    assert "contains goods from a recalled lot" in desk(staff)
    detail = staff.get(f"/shop/staff/order/{order.number}?lang=en").get_data(as_text=True)
    assert 'data-action="refund-recalled"' in detail and "Refund ¥13.80 in full (recall)" in detail
    form = detail.split('data-testid="recalled"')[1].split("</form>")[0]
    fields = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)"', form))
    r = staff.post(f"/shop/staff/order/{order.number}/refund", data=fields)
    assert r.status_code == 302
    order = the_order(session)
    assert order.status == "refunded" and order.refunded_fen == 1380
    assert stripe_stub.refunded(order.stripe_payment_intent) == 1380
    assert books.balance(key=f"product:{peach.id}") == 0
    books.assert_balanced()
    assert 'data-action="refund-recalled"' not in staff.get(f"/shop/staff/order/{order.number}").get_data(
        as_text=True
    )


# --- 5. a second click is "already done" ---------------------------------------------------


def test_a_second_click_hears_already_done(staff, stripe_stub, shop, session, books):
    peach = shop.product(stock=[10])
    staff.post("/shop/cart/add", data={"product_id": peach.id, "quantity": "2"})
    staff.post("/shop/checkout", data=CASH)
    order = the_order(session)
    first = staff.post(
        f"/shop/staff/order/{order.number}/paid?lang=en", data={"method": "cash"}, follow_redirects=True
    )
    assert "Payment recorded" in first.get_data(as_text=True)
    second = staff.post(
        f"/shop/staff/order/{order.number}/paid?lang=en", data={"method": "cash"}, follow_redirects=True
    )
    assert second.status_code == 200 and "already been paid" in second.get_data(as_text=True)
    key = payments.next_refund_key(the_order(session))
    data = {"amount": "13.80", "key": key, "method": "cash"}
    ok = staff.post(
        f"/shop/staff/order/{order.number}/refund", data=data, headers={"Accept": "application/json"}
    )
    assert ok.status_code == 200
    again = staff.post(
        f"/shop/staff/order/{order.number}/refund", data=data, headers={"Accept": "application/json"}
    )
    assert again.status_code == 409 and again.json["error"]["already_done"] is True
    assert len(books.vouchers("payment:")) == 1 and len(books.vouchers("refund:")) == 1
    books.assert_balanced()


def test_a_refund_that_fails_while_it_waits_for_its_payment_is_never_booked(
    staff, stripe_stub, shop, session, books
):
    peach = shop.product(stock=[10])
    buy(staff, peach, "2")
    order = the_order(session)
    paid = paid_event(stripe_stub, order)
    pi = stripe_stub.sessions[order.stripe_session_id]["payment_intent"]
    stripe_stub.refund_status = "pending"
    _status, refund = stripe_stub.create_refund({"payment_intent": pi, "amount": "500"})
    post_event(staff, event("charge.refunded", stripe_stub.charge(pi)))
    failed = event("refund.failed", stripe_stub.settle_refund(refund["id"], "failed"))
    assert post_event(staff, failed).json["outcome"] == "waiting refund marked failed"
    assert post_event(staff, paid).json["outcome"] == "paid"
    order = the_order(session)
    assert order.refunded_fen == 0 and order.status == "paid"
    assert books.vouchers("refund") == []


def test_a_second_session_for_an_order_already_paid_is_flagged_not_booked(
    staff, stripe_stub, shop, session, books
):
    peach = shop.product(stock=[10])
    buy(staff, peach, "2")
    order = the_order(session)
    post_event(staff, paid_event(stripe_stub, order))
    second = {
        **stripe_stub.complete(order.stripe_session_id),
        "id": "cs_test_second",
        "payment_intent": "pi_second",
    }
    evt = event("checkout.session.completed", second, "evt_second_session")
    assert post_event(staff, evt).json["outcome"] == "not matching: other_session"
    session.expire_all()
    assert session.scalar(select(func.count(Payment.id))) == 1
    assert the_order(session).paid_fen == 1380
    assert len(books.vouchers("payment:")) == 1
    books.assert_balanced()
