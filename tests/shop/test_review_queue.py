"""The shop's vouchers are posted at once (the money has moved) and wait in the books' review queue."""

from __future__ import annotations

from sqlalchemy import select

from coop import review
from coop.models import Voucher
from shop.models import Order
from tests.conftest import login
from tests.shop.test_shop_money import CASH


def test_a_counter_sale_counts_at_once_and_is_reviewed_by_another_official(
    stripe_client, make_user, shop, session, books
):
    kuaiji = make_user("kuaiji", "official")
    make_user("cunzhang", "official")
    login(stripe_client, "kuaiji")
    peach = shop.product(stock=[10])
    stripe_client.post("/shop/cart/add", data={"product_id": peach.id, "quantity": "3"})
    stripe_client.post("/shop/checkout", data=CASH)
    order = session.scalars(select(Order)).one()
    stripe_client.post(f"/shop/staff/order/{order.number}/paid", data={"method": "cash"})
    session.expire_all()
    sale = session.scalar(select(Voucher).where(Voucher.source.like("shop%")))
    assert sale is not None and sale.total > 0  # in the books already
    assert [v.id for v in review.unreviewed_vouchers(session)] == [sale.id]
    queue = stripe_client.get("/coop/review").get_data(as_text=True)
    assert sale.label in queue
    if sale.preparer_id == kuaiji.id:  # the official at the counter prepared it: not theirs to review
        r = stripe_client.post(f"/coop/vouchers/{sale.id}/review", follow_redirects=True)
        assert 'class="flash error"' in r.get_data(as_text=True)
        assert review.unreviewed_count(session) == 1
    stripe_client.post("/logout")
    login(stripe_client, "cunzhang")
    stripe_client.post(f"/coop/vouchers/{sale.id}/review")
    session.expire_all()
    assert review.unreviewed_count(session) == 0
    assert sale.label not in stripe_client.get("/coop/review").get_data(as_text=True).split('id="posted"')[1]
