"""A farmer in a real browser: overview, a greenhouse's charts across ranges, acknowledging
an alert; the same pages at phone width."""

from __future__ import annotations

import math
import time

import pytest

from iot.models import Alert
from tests.conftest import DEFAULT_PASSWORD
from tests.e2e.conftest import browser_login
from tests.iot.dash_helpers import add_irrigation, add_readings, make_greenhouse

pytestmark = pytest.mark.e2e


@pytest.fixture
def farm(session, make_user):
    farmer = make_user("laowang", "farmer", display_name="老王")
    other = make_user("laoli", "farmer")
    gh, dev = make_greenhouse(session, code="WANG-1", owner=farmer, crop="peach")
    make_greenhouse(session, code="LI-1", owner=other, device="x")
    now = int(time.time())
    pts = range(now - 40 * 86400, now, 1800)
    add_readings(session, gh, dev, "air_temperature", [(t, 20 + 8 * math.sin(t / 13751)) for t in pts])
    add_readings(session, gh, dev, "air_humidity", [(t, 70 - 15 * math.sin(t / 13751)) for t in pts])
    add_readings(session, gh, dev, "soil_moisture", [(t, 60 + 5 * math.cos(t / 20000)) for t in pts])
    add_irrigation(session, gh, dev, now - 5 * 3600, water_l=280)
    alert = Alert(
        greenhouse_id=gh.id,
        metric_id=1,
        kind="above",
        severity="critical",
        threshold=32.0,
        value=33.2,
        peak=34.1,
        opened_at=now - 900,
    )
    session.add(alert)
    session.commit()
    return alert


def test_farmer_switches_ranges_and_acknowledges_an_alert(live_server, browser_page, farm):
    page = browser_page
    browser_login(page, live_server.url, "laowang", DEFAULT_PASSWORD)
    page.click('[data-nav="iot"]')
    cards = page.locator("[data-greenhouse]")
    assert cards.count() == 1 and "LI-1" not in page.content()
    cards.first.click()
    page.wait_for_url("**/iot/g/WANG-1")
    assert page.locator('[data-chart="climate"] svg.chart polyline').count() >= 2
    assert page.locator('[data-chart="soil"] svg .marker').count() == 1
    for key, resolution in (("7d", "hour"), ("30d", "hour"), ("1y", "day"), ("24h", "raw")):
        page.click(f'[data-range="{key}"]')
        page.wait_for_url(f"**range={key}")
        assert page.locator(f'[data-range="{key}"]').get_attribute("aria-current") == "true"
        assert page.locator("[data-resolution]").get_attribute("data-resolution") == resolution
        assert page.locator('[data-chart="climate"] svg.chart polyline').count() >= 2
    item = page.locator(f'[data-alert="{farm.id}"]')
    assert "33.2" in item.inner_text()
    page.click(f'[data-ack="{farm.id}"]')
    page.wait_for_load_state("networkidle")
    assert page.locator(".flash.success").count() == 1
    assert page.locator(f'[data-alert="{farm.id}"] [data-status="acknowledged"]').count() == 1
    assert page.locator(f'[data-ack="{farm.id}"]').count() == 0
    assert page.js_errors == []


def test_phone_layout_has_no_horizontal_scroll(live_server, phone_page, farm):
    page = phone_page
    browser_login(page, live_server.url, "laowang", DEFAULT_PASSWORD)
    for path in (
        "/iot/",
        "/iot/g/WANG-1?range=30d",
        "/iot/g/WANG-1/rules",
        "/iot/g/WANG-1/irrigation",
        "/iot/alerts",
    ):
        page.goto(live_server.url + path)
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 1, (path, overflow)
    page.goto(live_server.url + "/iot/g/WANG-1")
    width = page.locator('[data-chart="climate"] svg.chart').bounding_box()["width"]
    assert 300 < width <= 390
