"""The lot's story: growing conditions from the greenhouse's readings, identifiers, QR codes,
the public trace page (cached), and the farmer's pages."""

from __future__ import annotations

import io
import random
import statistics
from collections import defaultdict
from datetime import date, timedelta

import pytest
from sqlalchemy import select

from iot import crops, quantities
from iot.rollups import apply_readings
from shop.trace import ancestry, conditions, cycles, gs1, inspections, lots, qr
from shop.trace.models import CropCycle, HarvestLot
from tests.conftest import login
from tests.shop.trace_factories import PEACH_GTIN, add_irrigation, add_readings, local_ts, make_farm

PLANTED = date(2026, 3, 1)
HARVESTED = date(2026, 3, 4)
BASE = "http://127.0.0.1:5000"  # the default PUBLIC_BASE_URL


def _series(rng, start: int, end: int, step: int, centre: float, swing: float, noise: float):
    """A daily sine-ish curve with noise, one value every ``step`` seconds over [start, end)."""
    out = []
    for ts in range(start, end, step):
        hour = ((ts + 8 * 3600) % 86400) / 3600
        daily = -1 if hour < 6 or hour > 18 else 1
        out.append((ts, round(centre + daily * swing * rng.random() + rng.uniform(-noise, noise), 2)))
    return out


@pytest.fixture
def grown(session):
    """A peach cycle planted 2026-03-01 and harvested 03-04, with readings in and around it."""
    rng = random.Random(7)
    farm = make_farm(session, planted_on=PLANTED)
    neighbour = make_farm(session, code="GH2", household_code="ZZ002", planted_on=PLANTED)
    start, end = local_ts(PLANTED), local_ts(HARVESTED + timedelta(days=1))
    readings = {
        # from a day before planting to a day after harvest: only the cycle must count
        "air_temperature": _series(rng, start - 86400, end + 86400, 600, 20, 14, 3),
        "air_humidity": _series(rng, start - 86400, end + 86400, 600, 75, 15, 4),
        "soil_moisture": _series(rng, start, end, 1800, 60, 8, 2),
        "ec": _series(rng, start, end, 3600, 1.8, 0.4, 0.1),
        "ph": _series(rng, start, end, 3600, 6.3, 0.3, 0.05),
    }
    for metric, points in readings.items():
        add_readings(session, farm, metric, points)
    add_readings(session, neighbour, "air_temperature", [(start + 60, 55.0)])  # another greenhouse
    irrigations = [
        (local_ts(PLANTED, 8), 120.0, 1.6, 6.1, {"tank_a": 1.2, "tank_b": 0.4}),
        (local_ts(date(2026, 3, 3), 7, 30), 80.0, 2.0, 6.5, {"tank_a": 0.8}),
        (local_ts(HARVESTED, 23, 50), 40.0, None, None, None),
        (local_ts(HARVESTED + timedelta(days=1), 8), 999.0, 3.0, 7.0, {"tank_a": 9.0}),  # after harvest
    ]
    for ts, water, ec, ph, fert in irrigations:
        add_irrigation(session, farm, ts, water, ec, ph, fert)
    cycles.add_input(session, farm.cycle, "Organic compost", "50", "kg", PLANTED)
    cycles.add_input(session, farm.cycle, "Organic compost", "20", "kg", date(2026, 3, 2))
    cycles.add_input(session, farm.cycle, "Potassium sulphate", "3", "kg", date(2026, 3, 4))
    cycles.add_input(session, farm.cycle, "Late dressing", "9", "kg", date(2026, 3, 20))  # after harvest
    lot = lots.create_harvest_lot(
        session, farm.cycle, "80", "kg", harvested_on=HARVESTED, product_id=farm.peach.id
    )
    session.commit()
    return farm, lot, readings, irrigations, (start, end)


def _expected(readings, irrigations, window):
    """The summary computed independently, straight from the inserted values."""
    start, end = window
    inside = {m: [(ts, v) for ts, v in pts if start <= ts < end] for m, pts in readings.items()}
    hourly = defaultdict(list)
    for ts, v in inside["air_temperature"]:
        hourly[ts // 3600].append(v)
    hour_means = [statistics.fmean(vs) for vs in hourly.values()]
    humid_hours = defaultdict(list)
    for ts, v in inside["air_humidity"]:
        humid_hours[ts // 3600].append(v)
    events = [e for e in irrigations if start <= e[0] < end]
    weighted = [(e[2], e[1]) for e in events if e[2] is not None]
    return {
        "stats": {
            m: (len(v), statistics.fmean(x for _t, x in v), min(x for _t, x in v), max(x for _t, x in v))
            for m, v in inside.items()
        },
        "hours": len(hour_means),
        "cold": sum(1 for m in hour_means if m < 8.0),
        "hot": sum(1 for m in hour_means if m > 30.0),
        "humid": sum(1 for vs in humid_hours.values() if statistics.fmean(vs) > 85.0),
        "irrigations": len(events),
        "water": sum(e[1] for e in events),
        "tank_a": sum((e[4] or {}).get("tank_a", 0) for e in events),
        "ec": sum(v * w for v, w in weighted) / sum(w for _v, w in weighted),
    }


def _assert_matches(cond, exp):
    assert set(cond.stats) == set(exp["stats"])
    for name, (count, mean, lo, hi) in exp["stats"].items():
        got = cond.stats[name]
        assert (got.count, got.min, got.max) == (count, lo, hi), name
        assert got.mean == pytest.approx(mean, rel=1e-9), name
    assert cond.hours_with_temperature == exp["hours"] == 96
    assert (cond.hours_too_cold, cond.hours_too_hot) == (exp["cold"], exp["hot"])
    assert cond.hours_outside == exp["cold"] + exp["hot"] > 0
    assert cond.hours_too_humid == exp["humid"]
    assert cond.irrigations == exp["irrigations"] == 3
    assert cond.water_l == pytest.approx(exp["water"]) == 240.0
    assert cond.fertigation["tank_a"] == pytest.approx(exp["tank_a"]) == 2.0
    assert cond.mean_ec == pytest.approx(exp["ec"])


def test_growing_conditions_equal_what_the_readings_say(session, grown):
    farm, lot, readings, irrigations, window = grown
    cond = conditions.growing_conditions(session, farm.cycle, lot.harvested_on)
    assert (cond.start, cond.end) == window
    _assert_matches(cond, _expected(readings, irrigations, window))
    assert cond.manual_inputs == [("Organic compost", "kg", 70), ("Potassium sulphate", "kg", 3)]
    assert len(cond.daily["air_temperature"]) == 4


def test_growing_conditions_are_the_same_from_hourly_rollups(session, grown):
    """Once the ingester's rollups cover part of the cycle, the summary reads them instead."""
    farm, lot, readings, irrigations, window = grown
    start, end = window
    rows = [
        {"greenhouse_id": farm.greenhouse.id, "metric_id": quantities.get(m).id, "ts": ts, "value": v}
        for m, pts in readings.items()
        for ts, v in pts
        if start + 86400 <= ts < end - 86400
    ]
    apply_readings(session, rows)
    session.commit()
    cond = conditions.growing_conditions(session, farm.cycle, lot.harvested_on)
    _assert_matches(cond, _expected(readings, irrigations, window))


def test_comfort_range_by_crop_and_override(session):
    farm = make_farm(session)
    assert conditions.comfort_range(farm.cycle)[:2] == (8.0, 30.0)
    farm.cycle.crop = "黄桃"
    assert crops.crop_key(farm.cycle.crop) == "peach"
    farm.cycle.comfort_max_c = 27.5
    assert conditions.comfort_range(farm.cycle)[:2] == (8.0, 27.5)
    assert crops.crop_key("dragon fruit") == "default"


def test_gtin_and_digital_link(session):
    make_farm(session)
    assert gs1.valid_gtin(PEACH_GTIN) and not gs1.valid_gtin("6970000000018")
    assert gs1.digital_link("https://trace.example.cn/", PEACH_GTIN, "L260620-001") == (
        "https://trace.example.cn/01/06970000000017/10/L260620-001"
    )


# --- the public page ----------------------------------------------------------------------


def test_trace_page_tells_the_story_in_chinese(client, session, grown):
    farm, lot, *_ = grown
    inspections.record_inspection(
        session, lot, "青岛市农产品质量检测中心", HARVESTED, "pass", summary="62 项农残未检出"
    )
    pack = lots.split_lot(session, lot, ["2"])[0]
    session.commit()
    response = client.get(f"/t/{pack.code}")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    for text in (
        "黄桃",
        "赵建国",
        "Peach house GH1",
        "2026-03-01",
        "2026-03-04",
        pack.lot_number,
        "青岛市农产品质量检测中心",
        "62 项农残未检出",
        'data-fact="temperature"',
        'data-fact="comfort"',
        'data-fact="irrigation"',
        "<svg",
        'data-event="harvested"',
        'data-event="packed"',
    ):
        assert text in html, text
    assert "data-recalled" not in html
    assert response.headers["Cache-Control"] == "private, max-age=60"


def test_trace_page_in_english(client, grown):
    _farm, lot, *_ = grown
    html = client.get(f"/t/{lot.code}?lang=en").get_data(as_text=True)
    assert "Yellow peaches" in html and "Where and how it grew" in html and "Harvested" in html


def test_digital_link_opens_the_same_page(client, grown):
    _farm, lot, *_ = grown
    assert client.get(f"/01/0{PEACH_GTIN}/10/{lot.lot_number}").status_code == 200
    short = client.get(f"/01/{PEACH_GTIN}/10/{lot.lot_number}")  # GTIN-13 form: to the 14-digit one
    assert short.status_code == 301
    assert short.headers["Location"].endswith(f"/01/0{PEACH_GTIN}/10/{lot.lot_number}")
    assert client.get(f"/01/06970000000024/10/{lot.lot_number}").status_code == 404  # another product
    assert client.get(f"/01/0{PEACH_GTIN}/10/L999999-001").status_code == 404


def test_unknown_code_gets_a_friendly_404(client, grown):
    response = client.get("/t/ZZZZZZZZZZ?lang=en")
    assert response.status_code == 404
    html = response.get_data(as_text=True)
    assert "We could not find this code" in html and 'name="code"' in html
    zh = client.get("/t/ZZZZZZZZZZ?lang=zh_CN").get_data(as_text=True)
    assert "找不到" in zh


def test_typed_code_is_forgiven(client, grown):
    _farm, lot, *_ = grown
    typed = lot.code.lower()[:5] + " " + lot.code.lower()[5:]
    response = client.get("/t/", query_string={"code": typed})
    assert response.status_code == 302 and response.headers["Location"].endswith(f"/t/{lot.code}")


def test_qr_codes_hold_the_digital_link(client, grown):
    _farm, lot, *_ = grown
    svg = client.get(f"/t/{lot.code}/qr.svg")
    expected = f"{BASE}/01/0{PEACH_GTIN}/10/{lot.lot_number}"
    assert svg.mimetype == "image/svg+xml" and svg.get_data(as_text=True) == qr.qr_svg(expected)
    png = client.get(f"/t/{lot.code}/qr.png")
    assert png.mimetype == "image/png" and png.data[:8] == b"\x89PNG\r\n\x1a\n"
    assert "public" in png.headers["Cache-Control"]
    assert client.get("/t/NOSUCHCODE/qr.png").status_code == 404


def test_trace_pages_are_served_from_the_cache(app, client, session, grown):
    _farm, lot, *_ = grown
    cache = app.extensions["trace_cache"]
    client.get(f"/t/{lot.code}")
    before = cache.hits
    for _ in range(5):
        assert client.get(f"/t/{lot.code}").status_code == 200
    assert cache.hits == before + 5
    # a change made elsewhere shows once the entry expires
    session.get(HarvestLot, lot.id).grade = "特级"
    session.commit()
    assert "特级" not in client.get(f"/t/{lot.code}").get_data(as_text=True)
    cache.clear()
    assert "特级" in client.get(f"/t/{lot.code}").get_data(as_text=True)


# --- farmer pages -------------------------------------------------------------------------


@pytest.fixture
def farmer(session, make_user, grown):
    farm = grown[0]
    make_user("zhaolin", "farmer", household_id=farm.household.id, display_name="赵林")
    return farm


def test_farmer_records_a_harvest_in_a_few_taps(client, session, farmer):
    login(client, "zhaolin")
    page = client.get(f"/trace/lots/new?cycle={farmer.cycle.id}")
    assert page.status_code == 200 and "黄桃" in page.get_data(as_text=True)
    response = client.post(
        "/trace/lots/new",
        data={
            "cycle_id": farmer.cycle.id,
            "product_id": farmer.peach.id,
            "quantity": "36.5",
            "unit": "kg",
            "harvested_on": "2026-03-05",
            "grade": "A",
        },
    )
    assert response.status_code == 302
    lot = lots.lot_by_number(session, "L260305-001")
    assert lot is not None and lot.quantity == 36.5 and lot.crop_cycle_id == farmer.cycle.id
    html = client.get(response.headers["Location"]).get_data(as_text=True)
    assert lot.code in html and "L260305-001" in html


def test_farmer_starts_a_crop_cycle(client, session, farmer):
    login(client, "zhaolin")
    response = client.post(
        "/trace/cycles/new",
        data={
            "greenhouse_id": farmer.greenhouse.id,
            "crop": "peach",
            "variety": "锦绣",
            "planted_on": "2026-09-01",
        },
    )
    assert response.status_code == 302
    html = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "锦绣" in html


def test_split_leads_to_a_printable_label_sheet(client, session, farmer, grown):
    lot = grown[1]
    login(client, "zhaolin")
    response = client.post(
        f"/trace/lots/{lot.id}/split", data={"count": "4", "size": "2.5", "product_id": "0"}
    )
    assert response.status_code == 302 and "/trace/labels?" in response.headers["Location"]
    sheet = client.get(response.headers["Location"]).get_data(as_text=True)
    assert sheet.count('class="sheet-label"') == 4 and sheet.count("<svg") >= 4 and "黄桃" in sheet
    session.expire_all()
    assert session.get(HarvestLot, lot.id).remaining == 70


def test_inspection_with_certificate_is_public(client, session, farmer, grown):
    lot = grown[1]
    login(client, "zhaolin")
    pdf = b"%PDF-1.4 residue test report"
    response = client.post(
        f"/trace/lots/{lot.id}/inspections",
        data={
            "lab": "SGS Qingdao",
            "tested_on": "2026-03-04",
            "result": "pass",
            "summary": "none detected",
            "certificate": (io.BytesIO(pdf), "report.pdf"),
        },
        content_type="multipart/form-data",
    )
    assert response.status_code == 302
    (inspection,) = inspections.inspections_for(session, lot)
    client.post("/logout")
    anonymous = client.get(f"/t/{lot.code}/certificate/{inspection.id}")
    assert anonymous.status_code == 200 and anonymous.data == pdf
    assert client.get(f"/t/{lot.code}/certificate/{inspection.id + 1}").status_code == 404


def test_merge_page_makes_a_gift_box(client, session, farmer, grown):
    lot = grown[1]
    other = lots.create_harvest_lot(session, farmer.cycle, "10", "kg", harvested_on=HARVESTED)
    session.commit()
    login(client, "zhaolin")
    response = client.post(
        "/trace/merge",
        data={
            "product_id": farmer.peach.id,  # a farmer boxes one crop (mixed gift boxes: the sales centre)
            f"qty_{lot.id}": "2",
            f"qty_{other.id}": "1",
        },
    )
    assert response.status_code == 302
    box = session.scalars(select(HarvestLot).where(HarvestLot.kind == "merge")).one()
    assert box.product_id == farmer.peach.id and box.quantity == 3 and box.checked_in_at is None
    assert {s.id for s in ancestry.source_lots(session, box)} == {lot.id, other.id}


def test_farmers_see_only_their_household(client, session, make_user, grown):
    lot = grown[1]
    neighbour = make_farm(session, code="GH9", household_code="ZZ009")
    make_user("wangfang", "farmer", household_id=neighbour.household.id)
    make_user("chen", "customer")
    login(client, "wangfang")
    assert client.get(f"/trace/lots/{lot.id}").status_code == 404
    assert client.post(f"/trace/lots/{lot.id}/recall", data={"reason": "x"}).status_code == 403
    client.post("/logout")
    login(client, "chen")
    assert client.get("/trace/").status_code == 403
    client.post("/logout")
    assert client.get("/trace/").status_code == 302


# --- refusals: one way to end a transaction (core.web.attempt) ----------------------------


def test_a_refused_split_says_why_in_the_users_language_and_writes_nothing(client, session, farmer, grown):
    lot = grown[1]
    login(client, "zhaolin")
    response = client.post(
        f"/trace/lots/{lot.id}/split", data={"count": "9", "size": "10", "product_id": "0"}
    )  # 90 kg from a lot of 80
    assert response.status_code == 302 and response.headers["Location"].endswith(f"/trace/lots/{lot.id}")
    page = client.get(response.headers["Location"] + "?lang=zh_CN").get_data(as_text=True)
    assert f"批次 {lot.lot_number} 只剩 80.000 kg" in page
    session.expire_all()
    assert session.get(HarvestLot, lot.id).remaining == 80
    assert session.scalars(select(HarvestLot).where(HarvestLot.kind == "pack")).all() == []
    # the message is translated when it is flashed, in the language of that request
    client.post(f"/trace/lots/{lot.id}/split?lang=en", data={"count": "9", "size": "10", "product_id": "0"})
    page = client.get(f"/trace/lots/{lot.id}").get_data(as_text=True)
    assert f"lot {lot.lot_number} has only 80.000 kg left" in page


def test_a_refused_cycle_form_is_shown_again_with_the_reason(client, session, farmer):
    login(client, "zhaolin")
    response = client.post(
        "/trace/cycles/new?lang=en",
        data={
            "greenhouse_id": farmer.greenhouse.id,
            "crop": "peach",
            "planted_on": "2026-09-01",
            "expected_harvest_on": "2026-08-01",
        },
    )
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert "expected harvest is before planting" in html and 'name="crop"' in html
    assert session.scalars(select(CropCycle).where(CropCycle.planted_on == date(2026, 9, 1))).all() == []


def test_a_merge_of_one_lot_is_refused_and_the_cache_kept(app, client, session, farmer, grown):
    lot = grown[1]
    client.get(f"/t/{lot.code}")
    cache = app.extensions["trace_cache"]
    login(client, "zhaolin")
    response = client.post("/trace/merge?lang=en", data={"product_id": farmer.peach.id, f"qty_{lot.id}": "2"})
    assert response.status_code == 200
    assert "Choose at least two lots for a gift box." in response.get_data(as_text=True)
    assert session.scalars(select(HarvestLot).where(HarvestLot.kind == "merge")).all() == []
    before = cache.hits
    client.get(f"/t/{lot.code}")
    assert cache.hits == before + 1  # nothing changed, so nothing was forgotten


def test_a_refused_inspection_leaves_no_certificate_behind(app, client, session, farmer, grown):
    lot = grown[1]
    login(client, "zhaolin")
    response = client.post(
        f"/trace/lots/{lot.id}/inspections",
        data={
            "lab": "SGS Qingdao",
            "tested_on": "2025-01-01",  # long before the harvest
            "result": "pass",
            "certificate": (io.BytesIO(b"%PDF-1.4"), "report.pdf"),
        },
        content_type="multipart/form-data",
    )
    assert response.status_code == 302
    assert inspections.inspections_for(session, lot) == []
    certificates = app.extensions["tianyuan"]["settings"].instance_path / "certificates"
    assert not certificates.exists() or list(certificates.iterdir()) == []
