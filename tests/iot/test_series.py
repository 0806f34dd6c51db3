"""Series by range: raw, hourly or daily; rollups agree with raw aggregation; overview."""

from __future__ import annotations

import random

from iot import series as S
from iot.models import Alert, Device
from tests.iot.dash_helpers import T0, add_irrigation, add_readings, make_greenhouse


def test_resolution_is_chosen_so_charts_stay_small():
    assert S.choose_resolution(0, S.RANGES["24h"]) == "raw"
    assert S.choose_resolution(0, S.RANGES["7d"]) == "hour"
    assert S.choose_resolution(0, S.RANGES["30d"]) == "hour"
    assert S.choose_resolution(0, S.RANGES["1y"]) == "day"
    for key, span in S.RANGES.items():
        res = S.choose_resolution(0, span)
        assert S.max_points(res, 0, span) <= 2200, key


def test_rollup_series_match_raw_aggregation(session):
    gh, dev = make_greenhouse(session)
    rng = random.Random(1)
    pts = [(T0 + i * 300, round(rng.uniform(10, 30), 2)) for i in range(12 * 24 * 10)]  # 10 days, 5-minute
    add_readings(session, gh, dev, "air_temperature", pts)
    end = T0 + 10 * 86400
    for res in ("hour", "day"):
        fast = S.series(session, gh.id, 1, T0, end, res)
        slow = S.series_from_raw(session, gh.id, 1, T0, end, res)
        assert len(fast.points) == {"hour": 240, "day": 10}[res]
        assert [(p.ts, p.n, round(p.avg, 6), p.min, p.max) for p in fast.points] == [
            (p.ts, p.n, round(p.avg, 6), p.min, p.max) for p in slow.points
        ]
    raw = S.series(session, gh.id, 1, T0, T0 + 3600)
    assert raw.resolution == "raw" and [p.ts for p in raw.points] == [T0 + i * 300 for i in range(12)]


def test_raw_series_is_capped(session, monkeypatch):
    gh, dev = make_greenhouse(session)
    add_readings(session, gh, dev, "air_temperature", [(T0 + i, 1.0) for i in range(50)])
    monkeypatch.setattr(S, "RAW_POINT_LIMIT", 20)
    out = S.series(session, gh.id, 1, T0, T0 + 100, "raw")
    assert len(out.points) == 20 and out.truncated


def test_overview_latest_devices_alerts_and_water_today(session, make_user):
    owner = make_user("farmer1", "farmer")
    gh, dev = make_greenhouse(session, owner=owner)
    dev.online = True
    session.add(Device(device_id="ctl", greenhouse_id=gh.id, kind="controller", online=False))
    add_readings(session, gh, dev, "air_temperature", [(T0 + 60, 21.5), (T0 + 120, 22.5)])
    add_readings(session, gh, dev, "soil_moisture", [(T0 + 30, 61.0)])
    add_irrigation(session, gh, dev, T0 + 7 * 3600, water_l=250)
    add_irrigation(session, gh, dev, T0 - 3600, water_l=999)  # yesterday (local)
    session.add(Alert(greenhouse_id=gh.id, kind="above", severity="critical", opened_at=T0))
    session.add(Alert(greenhouse_id=gh.id, kind="above", opened_at=T0, closed_at=T0 + 5))
    session.flush()
    (row,) = S.overview(session, [gh], now=T0 + 8 * 3600)
    assert row.latest[1].value == 22.5 and row.latest[1].age_s == 8 * 3600 - 120
    assert (row.devices_total, row.devices_online) == (2, 1)
    assert (row.open_alerts, row.critical_alerts) == (1, 1)
    assert (row.water_today_l, row.irrigations_today) == (250.0, 1)
