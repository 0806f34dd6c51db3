"""In a real browser: a guest finds peaches, pays through the (stub) Stripe Checkout and sees
the paid order; staff then pack it and hand it over, on a phone."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import requests

from tests.conftest import DEFAULT_PASSWORD, make_test_app
from tests.e2e.conftest import LiveServer, browser_login
from tests.shop.conftest import WEBHOOK_SECRET, Shop
from tests.shop.stripe_stub import StripeStub, event, sign

pytestmark = pytest.mark.e2e


@pytest.fixture
def stripe_live(app, settings):
    """A live server with Stripe pointed at a local stub that sends signed webhooks on payment."""
    stub = StripeStub().start()
    cfg = replace(
        settings,
        stripe_secret_key="sk_test_stub",
        stripe_webhook_secret=WEBHOOK_SECRET,
        stripe_api_base=stub.url,
    )
    server = LiveServer(make_test_app(cfg)).start()
    cfg = replace(cfg, public_base_url=server.url)
    server.app.extensions["tianyuan"]["settings"] = cfg

    def send_webhook(checkout_session: dict) -> None:
        body = json.dumps(event("checkout.session.completed", checkout_session)).encode()
        r = requests.post(
            f"{server.url}/stripe/webhook",
            data=body,
            timeout=30,
            headers={"Stripe-Signature": sign(body, WEBHOOK_SECRET), "Content-Type": "application/json"},
        )
        assert r.status_code == 200, r.text

    stub.on_paid = send_webhook
    yield server
    server.stop()
    stub.stop()
    server.app.extensions["tianyuan"]["db"].engine.dispose()


def test_guest_buys_peaches_online_and_staff_hand_them_over(
    stripe_live, browser_page, phone_page, session, make_user
):
    shop = Shop(session)
    fruit = shop.category("fruit", "时令水果", "Fruit")
    shop.product(
        "yellow-peach",
        price=690,
        unit="jin",
        name_zh="赵庄黄桃",
        name_en="Zhaozhuang yellow peaches",
        category=fruit,
        stock=[20],
        image="img/products/peach.svg",
    )
    shop.product("millet", price=4500, unit="bag", name_zh="小米", name_en="Millet", stock=[10])
    make_user("kuaiji", "official", display_name="赵会计")

    page = browser_page
    page.goto(f"{stripe_live.url}/shop/")
    page.fill("input[name=q]", "黄桃")
    page.press("input[name=q]", "Enter")
    page.wait_for_load_state("networkidle")
    assert page.locator("[data-product]").count() == 1
    page.click("[data-product=yellow-peach] .product-link")
    page.fill("#quantity", "2")
    page.click("[data-testid=add-to-cart]")
    assert "¥13.80" in page.locator("[data-testid=cart-total]").inner_text()
    page.click("[data-testid=checkout]")
    page.fill("#name", "陈女士")
    page.fill("#phone", "13800000000")
    page.check("input[name=fulfilment][value=pickup]")
    page.check("input[name=payment_method][value=stripe]")
    page.click("[data-testid=place-order]")
    page.wait_for_url("**/pay/cs_test_*")
    page.click("#pay")  # the stub's Checkout page: pays and sends the signed webhook
    page.wait_for_url("**/shop/order/**")
    assert page.locator("[data-testid=paid]").is_visible()
    assert page.locator("[data-status=paid]").count() == 1
    number = page.locator("h1").inner_text().split()[1]
    assert page.js_errors == []

    staff = phone_page
    browser_login(staff, stripe_live.url, "kuaiji", DEFAULT_PASSWORD)
    staff.goto(f"{stripe_live.url}/shop/")
    staff.click("[data-nav=order-desk]")
    staff.click(f"[data-order='{number}'] a")
    staff.click("[data-action=pack]")
    staff.click("[data-action=ready]")
    staff.goto(f"{stripe_live.url}/shop/staff/pickup")
    assert number in staff.locator(f"[data-order='{number}']").inner_text()
    staff.click(f"[data-order='{number}'] button")
    staff.goto(f"{stripe_live.url}/shop/staff/order/{number}")
    assert staff.locator("h1 [data-status=completed]").count() == 1
    # nothing overflows the phone screen
    assert staff.evaluate("document.documentElement.scrollWidth") <= 390
    assert staff.js_errors == []
