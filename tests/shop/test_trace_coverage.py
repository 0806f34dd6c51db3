"""Growing-condition coverage is stated honestly: what period the sensor data covers, in the
EPCIS export and on the trace page, and hours outside the comfort range over hours with data."""

from __future__ import annotations

import json
from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from shop.orders import sales_of
from shop.trace import conditions, epcis, lots
from tests.shop.trace_factories import add_readings, local_ts, make_farm

SCHEMA = json.loads(
    (Path(__file__).resolve().parent.parent / "data" / "epcis-2.0-json-schema.json").read_text()
)
PLANTED, HARVESTED = date(2026, 3, 1), date(2026, 3, 10)  # a 10-day window
DAYS_WITH_DATA = (date(2026, 3, 2), date(2026, 3, 5), date(2026, 3, 9))


@pytest.fixture
def partial(session):
    """Readings on 3 of the cycle's 10 days, four hours each (8:00-11:59), one too hot."""
    farm = make_farm(session, planted_on=PLANTED)
    points = [
        (local_ts(day, hour, 10), 40.0 if (day, hour) == (DAYS_WITH_DATA[1], 9) else 20.0)
        for day in DAYS_WITH_DATA
        for hour in (8, 9, 10, 11)
    ]
    add_readings(session, farm, "air_temperature", points)
    add_readings(session, farm, "air_humidity", [(ts, 70.0) for ts, _v in points[:4]])  # first day only
    lot = lots.create_harvest_lot(
        session, farm.cycle, "20", "kg", harvested_on=HARVESTED, product_id=farm.peach.id
    )
    session.commit()
    return farm, lot


def test_coverage_counts_the_days_and_hours_with_data(session, partial):
    farm, _lot = partial
    cond = conditions.growing_conditions(session, farm.cycle, HARVESTED)
    cov = cond.coverage
    assert (cov.days, cov.window_days) == (3, 10)
    assert (cov.hours, cov.window_hours) == (12, 240)
    assert cov.first == local_ts(DAYS_WITH_DATA[0], 8) and cov.last == local_ts(DAYS_WITH_DATA[-1], 12)
    assert cov.gaps == [
        (local_ts(date(2026, 3, 2), 12), local_ts(date(2026, 3, 5), 8)),
        (local_ts(date(2026, 3, 5), 12), local_ts(date(2026, 3, 9), 8)),
    ]
    assert cond.hours_outside == 1 and cond.hours_with_temperature == 12  # one denominator: hours with data
    assert cond.metric_coverage["air_humidity"].days == 1


def test_the_export_says_what_period_the_data_covers(session, partial):
    _farm, lot = partial
    document = epcis.export_lot(session, lot, "https://trace.example.cn", "6970000", sales_of=sales_of)
    assert epcis.validate(document, SCHEMA) == []
    (sensors,) = [e for e in document["epcisBody"]["eventList"] if e.get("bizStep") == "sensor_reporting"]
    coverage = sensors["ty:coverage"]
    assert (coverage["ty:daysWithData"], coverage["ty:cycleDays"]) == (3, 10)
    assert (coverage["ty:hoursWithData"], coverage["ty:cycleHours"]) == (12, 240)
    assert coverage["ty:firstReading"] == "2026-03-02T08:00:00+08:00"
    assert coverage["ty:lastReading"] == "2026-03-09T12:00:00+08:00"
    assert len(coverage["ty:gaps"]) == 2
    assert (sensors["ty:hoursOutsideComfort"], sensors["ty:hoursWithTemperature"]) == (1, 12)
    by_metric = {el["sensorReport"][0]["ty:metric"]: el for el in sensors["sensorElementList"]}
    # each metric's own period, never the cycle's planting-to-harvest window
    assert by_metric["air_temperature"]["sensorMetadata"]["startTime"] == "2026-03-02T08:00:00+08:00"
    assert by_metric["air_temperature"]["sensorMetadata"]["endTime"] == "2026-03-09T12:00:00+08:00"
    assert by_metric["air_humidity"]["sensorMetadata"]["endTime"] == "2026-03-02T12:00:00+08:00"
    assert by_metric["air_temperature"]["sensorReport"][0]["ty:daysWithData"] == 3


def test_the_trace_page_says_what_period_the_data_covers(client, session, partial):
    _farm, lot = partial
    html = client.get(f"/t/{lot.code}").get_data(as_text=True)
    assert 'data-days="3" data-window-days="10" data-hours="12" data-window-hours="240"' in html
    assert "2026-03-02 08:00" in html and "2026-03-09 12:00" in html
    assert "10 天中有 3 天有读数" in html and "240 小时中的 12 小时" in html
    assert "12 个有温度数据的小时中" in html  # hours outside the range, over hours with data
    english = client.get(f"/t/{lot.code}?lang=en").get_data(as_text=True)
    assert "readings on 3 of 10 days, in 12 of 240 hours" in english


def test_a_cycle_still_growing_counts_its_window_up_to_now(session):
    from core import clock

    farm = make_farm(session, planted_on=date(2026, 3, 1))
    with clock.frozen(datetime(2026, 3, 3, 4, 30, tzinfo=ZoneInfo("Asia/Shanghai"))):
        add_readings(session, farm, "air_temperature", [(local_ts(date(2026, 3, 3), 1), 20.0)])
        cond = conditions.growing_conditions(session, farm.cycle)
    assert cond.coverage.window_hours == 2 * 24 + 5 and cond.coverage.window_days == 3
    assert cond.coverage.hours == 1
