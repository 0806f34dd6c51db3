"""A refusal from another domain (the books refuse a closed month) reaches the user as a
message on every path into the shop, never as a 500 or a half-written change."""

from __future__ import annotations

from sqlalchemy import select

from coop.models import Account
from shop.models import Order, Payment, StripeEvent
from tests.shop.conftest import post_event
from tests.shop.test_shop_money import CASH, staff  # noqa: F401  (fixture)
from tests.shop.test_shop_stripe import buy, paid_event, the_order


def _refuse_in_the_books(session) -> None:
    """Deactivate the accounts the shop's money goes to: the books refuse every such posting."""
    from shop import settlement

    settlement.cash_account(session), settlement.stripe_clearing_account(session)
    for account in session.scalars(
        select(Account).where(Account.code.startswith("101") | Account.code.startswith("112"))
    ):
        account.active = False
    session.commit()


def test_a_counter_payment_the_books_refuse_is_refused_with_the_reason(staff, shop, session, books):  # noqa: F811
    peach = shop.product(stock=[10])
    staff.post("/shop/cart/add", data={"product_id": peach.id, "quantity": "3"})
    staff.post("/shop/checkout", data=CASH)
    order = session.scalars(select(Order)).one()
    _refuse_in_the_books(session)
    r = staff.post(f"/shop/staff/order/{order.number}/paid", data={"method": "cash"}, follow_redirects=True)
    assert r.status_code == 200 and 'class="flash error"' in r.get_data(as_text=True)
    session.expire_all()
    assert session.get(Order, order.id).status == "pending_payment"
    assert session.scalars(select(Payment)).all() == []


def test_a_webhook_refused_by_the_books_leaves_nothing_for_the_retry_to_trip_over(
    stripe_client, stripe_stub, shop, session, books
):
    peach = shop.product(stock=[10])
    buy(stripe_client, peach, "2")
    order = the_order(session)
    _refuse_in_the_books(session)
    evt = paid_event(stripe_stub, order)
    assert post_event(stripe_client, evt).status_code == 500  # Stripe retries later
    session.expire_all()
    assert session.get(StripeEvent, evt["id"]) is None and the_order(session).status == "pending_payment"
    assert post_event(stripe_client, evt).status_code == 500  # still refused, still not "duplicate"
