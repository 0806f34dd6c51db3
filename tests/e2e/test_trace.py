"""A customer scans a label with a phone and reads the lot's story."""

from __future__ import annotations

from datetime import date
from urllib.parse import urlsplit

import pytest

from shop.trace import gs1, inspections, lots
from tests.shop.trace_factories import add_irrigation, add_readings, local_ts, make_farm

pytestmark = pytest.mark.e2e


@pytest.fixture
def labelled_pack(session):
    farm = make_farm(session, planted_on=date(2026, 3, 1))
    start = local_ts(date(2026, 3, 1))
    add_readings(
        session, farm, "air_temperature", [(start + i * 3600, 12 + (i % 24) * 0.8) for i in range(24 * 30)]
    )
    add_readings(session, farm, "air_humidity", [(start + i * 3600, 60 + (i % 24)) for i in range(24 * 30)])
    add_readings(session, farm, "soil_moisture", [(start + i * 3600, 50 + (i % 10)) for i in range(24 * 30)])
    add_irrigation(session, farm, start + 86400 * 3, 150, ec=1.8, ph=6.3, fertilizer={"tank_a": 1.5})
    lot = lots.create_harvest_lot(
        session, farm.cycle, "80", "kg", harvested_on=date(2026, 3, 30), product_id=farm.peach.id
    )
    inspections.record_inspection(
        session, lot, "青岛市农产品质量检测中心", date(2026, 3, 30), "pass", summary="62 项农残未检出"
    )
    from shop.trace import gtins

    body = "200000000002"  # the 2 kg pack's own GTIN (restricted circulation): its label holds a Digital Link
    gtins.set_gtin(session, farm.peach, "2 kg", body + gtins.check_digit(body), company_prefix="")
    pack = lots.split_lot(session, lot, ["2"])[0]
    session.commit()
    return pack


def test_scanning_a_label_on_a_phone_shows_the_story(live_server, phone_page, labelled_pack):
    page = phone_page
    label = gs1.label_url("http://127.0.0.1:5000", labelled_pack)
    assert "/01/" in label  # the QR holds the GS1 Digital Link
    page.goto(live_server.url + urlsplit(label).path)
    assert page.locator("h1").first.inner_text() == "黄桃"
    assert page.locator("[data-recalled]").count() == 0
    origin = page.locator("[data-origin]")
    assert "赵建国" in origin.inner_text() and "Peach house GH1" in origin.inner_text()
    assert page.locator("[data-fact=temperature]").is_visible()
    assert page.locator("[data-chart=climate] svg").is_visible()
    assert "62 项农残未检出" in page.locator("#inspections").inner_text()
    assert page.locator("[data-event=packed]").count() == 1
    # fits a phone: nothing wider than the screen
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    assert page.js_errors == []


def test_typing_a_wrong_code_on_a_phone(live_server, phone_page, labelled_pack):
    page = phone_page
    page.goto(live_server.url + "/t/WRONGCODE2")
    assert page.locator("[data-trace-missing]").is_visible()
    page.fill("#code", labelled_pack.code.lower())
    page.locator("[data-trace-missing] button[type=submit]").click()
    page.wait_for_load_state("networkidle")
    assert page.url.endswith(f"/t/{labelled_pack.code}")
    assert page.locator("h1").first.inner_text() == "黄桃"
