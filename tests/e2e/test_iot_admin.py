"""Greenhouse administration in a real browser: register a greenhouse and a device on a
phone, review the quarantine on a desktop."""

from __future__ import annotations

import json
import time

import pytest

from iot.ingest.writer import BatchWriter, Message
from tests.conftest import DEFAULT_PASSWORD
from tests.e2e.conftest import browser_login

pytestmark = pytest.mark.e2e


def test_admin_registers_greenhouse_and_device_on_a_phone(live_server, phone_page, make_user):
    make_user("boss", "admin")
    make_user("zhaolin", "farmer", display_name="赵林")
    page = phone_page
    browser_login(page, live_server.url, "boss", DEFAULT_PASSWORD)
    page.goto(live_server.url + "/iot/admin/")
    assert page.locator("h1").inner_text() == "大棚管理"
    page.fill("#gh-code", "ZZ-T9")
    page.fill("#gh-name", "桃园 9 号棚")
    page.select_option("#gh-owner", label="赵林 (zhaolin)")
    page.fill("#gh-area_m2", "640")
    page.click("text=登记大棚 >> nth=-1")
    page.wait_for_load_state("networkidle")
    assert "大棚 ZZ-T9 已登记。" in page.locator(".flash").inner_text()
    assert "赵林" in page.locator("#greenhouses").inner_text()
    page.click("summary:has-text('登记设备')")
    page.fill("#dev-device_id", "zz-t9-s1")
    page.select_option("#dev-greenhouse", label="ZZ-T9 · 桃园 9 号棚")
    page.click("form >> text=登记设备")
    page.wait_for_load_state("networkidle")
    assert "zz-t9-s1" in page.locator("#devices").inner_text()
    # nothing wider than the phone: tables scroll inside their wrapper
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    assert page.js_errors == []


def test_quarantine_review_and_replay_on_desktop(live_server, browser_page, make_user, session):
    from iot import registry

    make_user("boss", "admin")
    gh = registry.create_greenhouse(session, "GH1", "One")
    session.commit()
    now = time.time()
    BatchWriter(session.get_bind()).store(
        [
            Message("farm/GH1/late/telemetry", json.dumps({"ts": int(now) - 9, "co2": 480}).encode(), now),
            Message("farm/GH1/late/telemetry", b"{broken", now),
        ]
    )
    registry.create_device(session, "late", gh)
    session.commit()
    page = browser_page
    browser_login(page, live_server.url, "boss", DEFAULT_PASSWORD)
    page.goto(live_server.url + "/iot/admin/quarantine")
    assert page.locator("#quarantine tbody tr").count() == 2
    assert "未知设备: 2" in page.locator(".reason-filter").inner_text()
    page.click("text=全部重放")
    page.wait_for_load_state("networkidle")
    assert "保存了 1 条读数，仍有 1 条消息在隔离区" in page.locator(".flash").inner_text()
    assert page.locator("#quarantine tbody tr").count() == 1
    assert "JSON 格式错误" in page.locator("#quarantine").inner_text()
    assert page.js_errors == []
