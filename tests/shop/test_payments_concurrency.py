"""Six staff clicks at the same moment, against a real threaded server: "payment received" and
the same refund each happen once; the other five hear "already done" (a flash on the page, 409
for JSON), never a 500 and never a second booking (SQLite and PostgreSQL)."""

from __future__ import annotations

import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from sqlalchemy import func, select
from werkzeug.serving import make_server

from core.auth import create_user
from shop import payments
from shop.models import Order, Payment, Refund
from tests.conftest import DEFAULT_PASSWORD
from tests.shop.conftest import post_event
from tests.shop.test_shop_stripe import buy, paid_event, the_order

CLICKS = 6


@pytest.fixture
def server(stripe_app):
    srv = make_server("127.0.0.1", 0, stripe_app, threaded=True)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.server_port}"
    srv.shutdown()
    thread.join(timeout=5)


def staff_sessions(base: str, session) -> list[requests.Session]:
    create_user(session, "kuaiji", DEFAULT_PASSWORD, "official")
    session.commit()
    clients = []
    for _ in range(CLICKS):
        c = requests.Session()
        r = c.post(f"{base}/login", data={"username": "kuaiji", "password": DEFAULT_PASSWORD}, timeout=30)
        assert r.status_code == 200, r.text[:300]
        clients.append(c)
    return clients


def at_once(clients, fn):
    start = threading.Barrier(len(clients))

    def click(c):
        start.wait()
        return fn(c)

    try:
        with ThreadPoolExecutor(len(clients)) as pool:
            return list(pool.map(click, clients))
    finally:
        for c in clients:
            c.close()


def test_six_payment_received_clicks_record_one_payment(server, stripe_client, shop, session, books):
    peach = shop.product(stock=[10])
    stripe_client.post("/shop/cart/add", data={"product_id": peach.id, "quantity": "2"})
    stripe_client.post(
        "/shop/checkout",
        data={"name": "陈女士", "phone": "13800000000", "fulfilment": "pickup", "payment_method": "cash"},
    )
    order = the_order(session)
    clients = staff_sessions(server, session)

    def pay(c: requests.Session) -> tuple[int, str]:
        r = c.post(
            f"{server}/shop/staff/order/{order.number}/paid?lang=en", data={"method": "cash"}, timeout=120
        )
        return r.status_code, r.text

    outcomes = at_once(clients, pay)
    assert [status for status, _ in outcomes] == [200] * CLICKS  # every click lands on the order page
    said = Counter(
        "done" if "Payment recorded" in text else "already" if "already been paid" in text else "?"
        for _, text in outcomes
    )
    assert said == {"done": 1, "already": CLICKS - 1}
    session.expire_all()
    assert session.scalar(select(func.count(Payment.id))) == 1
    assert session.get(Order, order.id).paid_fen == 1380
    assert len(books.vouchers("payment:")) == 1
    books.assert_balanced()


def test_six_identical_refunds_refund_once(server, stripe_client, stripe_stub, shop, session, books):
    peach = shop.product(stock=[10])
    buy(stripe_client, peach, "2")
    order = the_order(session)
    post_event(stripe_client, paid_event(stripe_stub, order))
    order = the_order(session)
    key = payments.next_refund_key(order)
    clients = staff_sessions(server, session)

    def refund(c: requests.Session) -> int:
        r = c.post(
            f"{server}/shop/staff/order/{order.number}/refund",
            data={"amount": "5.00", "reason": "bruised", "key": key},
            headers={"Accept": "application/json"},
            timeout=120,
        )
        if r.status_code == 409:
            assert r.json()["error"]["already_done"] is True
        return r.status_code

    statuses = sorted(at_once(clients, refund))
    assert statuses == [200] + [409] * (CLICKS - 1)
    session.expire_all()
    assert session.scalar(select(func.count(Refund.id))) == 1
    assert session.get(Order, order.id).refunded_fen == 500
    assert stripe_stub.refunded(order.stripe_payment_intent) == 500  # one refund at Stripe too
    assert len(books.vouchers("refund:")) == 1
    books.assert_balanced()
