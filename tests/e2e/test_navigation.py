"""Log in as each role in a real browser and see the right navigation."""

from __future__ import annotations

import pytest

from tests.conftest import DEFAULT_PASSWORD
from tests.e2e.conftest import browser_login

pytestmark = pytest.mark.e2e

EXPECTED_NAV = {
    "admin": {"iot", "trace", "coop", "shop", "disclosure"},
    "official": {"iot", "trace", "coop", "shop", "disclosure"},
    "oversight": {"coop", "shop", "disclosure"},  # 民主理财小组: reads the books
    "farmer": {"iot", "trace", "shop", "disclosure"},
    "customer": {"shop", "disclosure", "orders", "trace-code"},  # and their orders, the trace lookup
}


def nav_items(page) -> set[str]:
    return set(page.eval_on_selector_all(".main-nav a", "els => els.map(e => e.dataset.nav)"))


@pytest.mark.parametrize("role", sorted(EXPECTED_NAV))
def test_each_role_sees_its_navigation(live_server, browser_page, make_user, role):
    make_user(f"{role}1", role, display_name=f"测试{role}")
    page = browser_page
    page.goto(live_server.url + "/")
    assert nav_items(page) == {"shop", "disclosure", "orders", "trace-code"}  # a guest: orders, lookup
    browser_login(page, live_server.url, f"{role}1", DEFAULT_PASSWORD)
    assert nav_items(page) == EXPECTED_NAV[role]
    assert page.locator(".whoami").inner_text() == f"测试{role}"
    assert page.js_errors == []


def test_language_switch_and_phone_layout(live_server, phone_page, make_user):
    make_user("zhaolin", "farmer")
    page = phone_page
    browser_login(page, live_server.url, "zhaolin", DEFAULT_PASSWORD)
    assert "大棚" in page.locator(".main-nav").inner_text()
    page.click("[data-lang=en]")
    page.wait_for_load_state("networkidle")
    assert "Greenhouses" in page.locator(".main-nav").inner_text()
    assert page.locator("html").get_attribute("lang") == "en"
    # nothing overflows the phone's width
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390
    page.click("[data-lang=zh_CN]")
    page.wait_for_load_state("networkidle")
    assert "大棚" in page.locator(".main-nav").inner_text()


def test_wrong_password_in_browser_shows_message(live_server, browser_page, make_user):
    make_user("kuaiji", "official")
    browser_login(browser_page, live_server.url, "kuaiji", "wrong-password")
    assert "用户名或密码错误" in browser_page.locator(".field .error").inner_text()
