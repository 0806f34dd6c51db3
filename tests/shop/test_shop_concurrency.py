"""50 customers check out at the same moment for the last 10 boxes, against a real threaded
server: exactly 10 orders, and no lot ever goes below zero (SQLite and PostgreSQL)."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import requests
from sqlalchemy import func, select
from werkzeug.serving import make_server

from shop.models import Order, OrderLineLot
from shop.trace.models import HarvestLot

CUSTOMERS = 50


def test_fifty_concurrent_checkouts_for_the_last_ten_units(app, shop, session):
    box = shop.product("peach-box", unit="box", price=8800, stock=[4, 6])
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_port}"
    try:
        clients = [requests.Session() for _ in range(CUSTOMERS)]
        for c in clients:
            r = c.post(
                f"{base}/shop/cart/add", data={"product_id": box.id, "quantity": "1"}, allow_redirects=False
            )
            assert r.status_code == 302
        start = threading.Barrier(CUSTOMERS)

        phones = {id(c): f"139000000{i:02d}" for i, c in enumerate(clients)}  # guests' limits are per phone

        def checkout(c: requests.Session) -> str:
            start.wait()
            r = c.post(
                f"{base}/shop/checkout",
                data={
                    "name": "客户",
                    "phone": phones[id(c)],
                    "fulfilment": "pickup",
                    "payment_method": "cash",
                },
                allow_redirects=False,
                timeout=120,
            )
            assert r.status_code == 302, r.text[:500]
            return r.headers["Location"]

        with ThreadPoolExecutor(CUSTOMERS) as pool:
            outcomes = list(pool.map(checkout, clients))
    finally:
        server.shutdown()
        thread.join(timeout=5)
        for c in clients:
            c.close()
    succeeded = [o for o in outcomes if "/shop/order/" in o]
    refused = [o for o in outcomes if o.endswith("/shop/cart")]
    assert len(succeeded) == 10 and len(refused) == CUSTOMERS - 10
    session.expire_all()
    assert session.scalar(select(func.count(Order.id))) == 10
    assert session.scalar(select(func.sum(OrderLineLot.quantity))) == Decimal(10)
    remaining = list(session.scalars(select(HarvestLot.remaining)))
    assert all(r == 0 for r in remaining), remaining
