"""Dashboard pages as farmers and officials meet them: overview, charts, alerts, rules,
irrigation and CSV export; a farmer never sees another farmer's greenhouse."""

from __future__ import annotations

import csv
import io

import pytest
from sqlalchemy import select

from iot.models import Alert, AlertRule
from tests.conftest import csrf_token_from, login
from tests.iot.dash_helpers import T0, add_irrigation, add_readings, make_greenhouse

NOW = T0 + 10 * 86400 + 12 * 3600  # local noon, ten days after T0


@pytest.fixture
def farm(session, make_user, monkeypatch):
    import iot.api
    import iot.views

    monkeypatch.setattr(iot.views, "now_ts", lambda: NOW)
    monkeypatch.setattr(iot.api, "_now", lambda: NOW)
    alice = make_user("alice", "farmer", display_name="Alice")
    bob = make_user("bob", "farmer")
    a, dev = make_greenhouse(session, code="ALICE-1", owner=alice, crop="peach")
    b, bdev = make_greenhouse(session, code="BOB-1", owner=bob, device="x")
    pts = [(t, 20 + (t // 3600) % 10) for t in range(NOW - 11 * 86400, NOW, 600)]
    add_readings(session, a, dev, "air_temperature", pts)
    add_readings(session, a, dev, "air_humidity", [(t, 70.0) for t, _ in pts])
    add_readings(session, a, dev, "soil_moisture", [(t, 55.0) for t, _ in pts])
    add_readings(session, b, bdev, "air_temperature", [(NOW - 60, 99.0)])
    add_irrigation(session, a, dev, NOW - 3 * 3600, water_l=321)
    alert = Alert(
        greenhouse_id=a.id,
        metric_id=1,
        kind="above",
        severity="critical",
        threshold=32.0,
        value=33.5,
        peak=34.0,
        opened_at=NOW - 1800,
    )
    session.add(alert)
    session.commit()
    return dict(alice=alice, bob=bob, a=a, b=b, alert=alert)


def test_farmer_overview_lists_only_own_greenhouses(client, farm):
    login(client, "alice")
    html = client.get("/iot/?lang=en").get_data(as_text=True)
    assert 'data-greenhouse="ALICE-1"' in html and "BOB-1" not in html
    assert "1 open alerts" in html
    assert "321.0 L" in html  # water today


def test_official_sees_all_greenhouses(client, farm, make_user):
    make_user("kuaiji", "official")
    login(client, "kuaiji")
    html = client.get("/iot/").get_data(as_text=True)
    assert 'data-greenhouse="ALICE-1"' in html and 'data-greenhouse="BOB-1"' in html


@pytest.mark.parametrize(
    "path",
    [
        "/iot/g/BOB-1",
        "/iot/g/BOB-1?range=1y",
        "/iot/g/BOB-1/rules",
        "/iot/g/BOB-1/irrigation",
        "/iot/g/BOB-1/export.csv",
        "/iot/g/BOB-1/export.csv?resolution=day&range=1y",
        "/api/v1/greenhouses/BOB-1",
        "/api/v1/greenhouses/BOB-1/series?metric=air_temperature",
        "/api/v1/greenhouses/BOB-1/alerts",
        "/api/v1/greenhouses/BOB-1/irrigation",
    ],
)
def test_another_farmers_greenhouse_is_forbidden(client, farm, path):
    login(client, "alice")
    response = client.get(path)
    assert response.status_code == 403
    assert b"99.0" not in response.data


def test_posting_to_another_farmers_greenhouse_is_forbidden(client, farm, session):
    b_alert = Alert(greenhouse_id=farm["b"].id, kind="above", opened_at=NOW)
    session.add(b_alert)
    session.commit()
    login(client, "alice")
    assert client.post(f"/iot/alerts/{b_alert.id}/ack").status_code == 403
    assert (
        client.post(
            "/iot/g/BOB-1/rules", data={"kind": "above", "metric_id": 1, "threshold": "1"}
        ).status_code
        == 403
    )
    assert client.post("/iot/g/BOB-1/rules/defaults").status_code == 403
    session.expire_all()
    assert session.get(Alert, b_alert.id).acknowledged_at is None
    assert session.scalars(select(AlertRule)).all() == []


@pytest.mark.parametrize(
    "range_key,resolution", [("24h", "raw"), ("7d", "hour"), ("30d", "hour"), ("1y", "day")]
)
def test_greenhouse_page_ranges(client, farm, range_key, resolution):
    login(client, "alice")
    response = client.get(f"/iot/g/ALICE-1?range={range_key}")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert f'data-resolution="{resolution}"' in html
    assert f'data-range="{range_key}" aria-current="true"' in html
    assert html.count('<svg class="chart"') >= 2
    assert 'data-chart="climate"' in html and 'data-chart="soil"' in html
    # the irrigation three hours ago is marked on the soil-moisture chart
    assert ('class="marker"' in html) == (range_key in ("24h", "7d", "30d", "1y"))
    assert "<polyline" in html


def test_alert_shown_and_acknowledged_with_csrf(csrf_app, farm):
    client = csrf_app.test_client()
    page = client.get("/login").get_data(as_text=True)
    client.post(
        "/login",
        data={"username": "alice", "password": "correct-horse-9", "csrf_token": csrf_token_from(page)},
    )
    html = client.get("/iot/g/ALICE-1?lang=en").get_data(as_text=True)
    assert "Air temperature above 32.0 °C" in html
    alert_id = farm["alert"].id
    assert client.post(f"/iot/alerts/{alert_id}/ack").status_code == 400  # no token
    response = client.post(
        f"/iot/alerts/{alert_id}/ack",
        data={"csrf_token": csrf_token_from(html), "next": "/iot/g/ALICE-1"},
    )
    assert response.status_code == 302 and response.headers["Location"].endswith("/iot/g/ALICE-1")
    html = client.get("/iot/alerts?lang=en").get_data(as_text=True)
    assert 'data-status="acknowledged"' in html and f'data-ack="{alert_id}"' not in html


def test_rules_defaults_edit_add_and_validation(client, farm, session):
    login(client, "alice")
    assert client.post("/iot/g/ALICE-1/rules/defaults").status_code == 302
    rules = session.scalars(select(AlertRule).where(AlertRule.greenhouse_id == farm["a"].id)).all()
    hot = next(r for r in rules if r.kind == "above" and r.metric_id == 1)
    assert hot.threshold == 32.0  # peach default
    html = client.get("/iot/g/ALICE-1/rules").get_data(as_text=True)
    assert f'data-rule="{hot.id}"' in html
    client.post(
        "/iot/g/ALICE-1/rules",
        data={
            "rule_id": hot.id,
            "threshold": "33,5",
            "hysteresis": "1",
            "duration_min": "20",
            "severity": "critical",
            "enabled": "on",
        },
    )
    session.expire_all()
    hot = session.get(AlertRule, hot.id)
    assert (hot.threshold, hot.duration_s, hot.enabled) == (33.5, 1200, True)
    client.post(
        "/iot/g/ALICE-1/rules",
        data={
            "kind": "below",
            "metric_id": "3",
            "threshold": "40",
            "duration_min": "30",
            "severity": "warning",
            "enabled": "on",
        },
    )
    assert (
        session.scalars(
            select(AlertRule).where(
                AlertRule.metric_id == 3, AlertRule.kind == "below", AlertRule.threshold == 40.0
            )
        ).first()
        is not None
    )
    before = len(session.scalars(select(AlertRule)).all())
    response = client.post(
        "/iot/g/ALICE-1/rules?lang=en",
        data={"kind": "above", "metric_id": "1", "severity": "warning"},
        follow_redirects=True,
    )
    assert "a threshold is required" in response.get_data(as_text=True)
    # a mistyped number goes back to the form with the reason (it was a bare 400 page)
    for field, value in (
        ("threshold", "hot"),
        ("threshold", "NaN"),
        ("duration_min", "1e308"),
        ("hysteresis", "1e30"),
    ):
        response = client.post(
            "/iot/g/ALICE-1/rules?lang=en",
            data={"kind": "above", "metric_id": "1", "threshold": "30", "severity": "warning", field: value},
            follow_redirects=True,
        )
        page = response.get_data(as_text=True)
        assert response.status_code == 200 and "Rule not saved" in page, (field, value)
    assert len(session.scalars(select(AlertRule)).all()) == before


def test_irrigation_page(client, farm):
    login(client, "alice")
    html = client.get("/iot/g/ALICE-1/irrigation?period=day&lang=en").get_data(as_text=True)
    assert 'data-water="321.0"' in html
    assert "Fertilizer, A" in html


def test_csv_export_of_raw_readings_and_daily_aggregates(client, farm):
    login(client, "alice")
    response = client.get("/iot/g/ALICE-1/export.csv?range=24h")
    assert response.status_code == 200 and response.mimetype == "text/csv"
    assert "attachment" in response.headers["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(response.get_data(as_text=True))))
    assert rows[0] == ["time_utc", "time_local", "greenhouse", "device", "sensor", "metric", "unit", "value"]
    assert len(rows) == 1 + 3 * 143  # every 10 minutes in the last 24 hours
    assert rows[1][2:7] == ["ALICE-1", "ALICE-1-dev-1", "", "air_temperature", "°C"]
    assert rows[1][1].endswith("+08:00")
    daily = list(
        csv.reader(
            io.StringIO(
                client.get("/iot/g/ALICE-1/export.csv?range=1y&resolution=day").get_data(as_text=True)
            )
        )
    )
    assert daily[0][-4:] == ["count", "min", "mean", "max"]
    assert {r[3] for r in daily[1:]} == {"air_temperature", "air_humidity", "soil_moisture"}
    custom = client.get("/iot/g/ALICE-1/export.csv?start=2025-12-02&end=2025-12-03")
    assert len(custom.get_data(as_text=True).strip().splitlines()) == 1 + 3 * 144
    assert client.get("/iot/g/ALICE-1/export.csv?resolution=weekly").status_code == 400
    assert client.get("/iot/g/ALICE-1/export.csv?start=tomorrow").status_code == 400


def test_customers_cannot_open_the_dashboard(client, farm, make_user):
    make_user("buyer", "customer")
    login(client, "buyer")
    assert client.get("/iot/g/ALICE-1").status_code == 403
    assert client.get("/api/v1/greenhouses").status_code == 403


def test_unknown_greenhouse_is_404(client, farm):
    login(client, "alice")
    assert client.get("/iot/g/NOPE").status_code == 404


def test_demo_history_backfill_fills_charts_once(session, client, make_user, monkeypatch):
    import iot.views
    from iot.demo import backfill_demo_history
    from iot.models import IrrigationEvent

    monkeypatch.setattr(iot.views, "now_ts", lambda: NOW)
    owner = make_user("demo", "farmer")
    gh, _ = make_greenhouse(session, code="DEMO-1", owner=owner, crop="黄瓜")
    added = backfill_demo_history(session, days=2, now=NOW)
    session.commit()
    assert 8 * 280 < added <= 8 * 288  # eight metrics every 10 minutes, a few gaps
    assert len(session.scalars(select(IrrigationEvent)).all()) == 4  # 07:00 and 16:00 each day
    assert session.scalars(select(AlertRule).where(AlertRule.greenhouse_id == gh.id)).first() is not None
    assert backfill_demo_history(session, days=2, now=NOW) == 0  # already has history
    login(client, "demo")
    html = client.get("/iot/g/DEMO-1?range=7d").get_data(as_text=True)
    assert html.count("<polyline") >= 6 and 'data-chart="light"' in html
