"""The JSON API under /api/v1: series, latest, alerts, irrigation; token auth; JSON errors."""

from __future__ import annotations

import pytest

from core import auth
from iot.models import Alert
from tests.conftest import login
from tests.iot.dash_helpers import T0, add_irrigation, add_readings, make_greenhouse

NOW = T0 + 3 * 86400 + 12 * 3600  # local noon


@pytest.fixture
def farm(session, make_user, monkeypatch):
    import iot.api

    monkeypatch.setattr(iot.api, "_now", lambda: NOW)
    alice = make_user("alice", "farmer")
    gh, dev = make_greenhouse(session, code="GH-A", owner=alice)
    add_readings(
        session, gh, dev, "air_temperature", [(t, 10 + (t - T0) / 3600) for t in range(T0, NOW, 300)]
    )
    add_readings(session, gh, dev, "air_humidity", [(t, 60.0) for t in range(T0, NOW, 300)])
    add_irrigation(session, gh, dev, NOW - 7200, water_l=100, fertilizer={"A": 2.0})
    alert = Alert(
        greenhouse_id=gh.id, metric_id=1, kind="above", threshold=30.0, value=31.0, opened_at=NOW - 100
    )
    session.add(alert)
    session.commit()
    _, token = auth.issue_token(session, alice, "phone")
    session.commit()
    return dict(alice=alice, gh=gh, alert=alert, token=token)


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


def test_series_hourly_with_bands(client, farm):
    login(client, "alice")
    r = client.get(
        "/api/v1/greenhouses/GH-A/series",
        query_string={
            "metric": "air_temperature,air_humidity",
            "start": T0,
            "end": T0 + 86400,
            "resolution": "hour",
        },
    )
    assert r.status_code == 200
    data = r.get_json()
    assert data["resolution"] == "hour" and len(data["series"]) == 2
    temp = data["series"][0]
    assert temp["metric"] == "air_temperature" and temp["unit"] == "°C"
    assert temp["fields"] == ["ts", "mean", "min", "max", "count"]
    assert len(temp["points"]) == 24
    ts, mean, lo, hi, count = temp["points"][1]
    assert ts == T0 + 3600 and count == 12 and lo == 11.0 and hi == pytest.approx(11 + 55 / 60)


def test_series_auto_resolution_and_iso_times(client, farm):
    login(client, "alice")
    r = client.get(
        "/api/v1/greenhouses/GH-A/series?metric=air_temperature&start=2025-11-24T00:00:00%2B08:00&end=2025-11-24T02:00:00%2B08:00"
    )
    data = r.get_json()
    assert data["resolution"] == "raw" and data["start"] == T0
    assert data["series"][0]["fields"] == ["ts", "value"] and len(data["series"][0]["points"]) == 24
    r = client.get(
        f"/api/v1/greenhouses/GH-A/series?metric=air_temperature&start={T0 - 200 * 86400}&end={NOW}"
    )
    assert r.get_json()["resolution"] == "day"


@pytest.mark.parametrize(
    "query,fragment",
    [
        ("", "metric is required"),
        ("metric=wind", "unknown metric"),
        ("metric=air_temperature&start=soon", "epoch seconds or ISO 8601"),
        (f"metric=air_temperature&start={T0}&end={T0 - 1}", "end must be after start"),
        ("metric=air_temperature&resolution=minute", "resolution must be"),
        (f"metric=air_temperature&start={T0 - 365 * 86400}&end={T0}&resolution=raw", "too many points"),
    ],
)
def test_bad_series_parameters_are_json_400(client, farm, query, fragment):
    login(client, "alice")
    r = client.get(f"/api/v1/greenhouses/GH-A/series?{query}")
    assert r.status_code == 400 and r.is_json
    assert fragment in r.get_json()["error"]["message"]


def test_latest_and_list(client, farm):
    login(client, "alice")
    data = client.get("/api/v1/greenhouses/GH-A/latest").get_json()
    assert data["latest"]["air_temperature"]["ts"] == NOW - 300
    assert data["open_alerts"] == 1 and data["irrigation_today"]["water_l"] == 100.0
    listing = client.get("/api/v1/greenhouses").get_json()["greenhouses"]
    assert [g["code"] for g in listing] == ["GH-A"]


def test_alerts_and_acknowledge(client, farm):
    login(client, "alice")
    (a,) = client.get("/api/v1/alerts").get_json()["alerts"]
    assert a["status"] == "open" and a["metric"] == "air_temperature" and a["greenhouse"] == "GH-A"
    r = client.post(f"/api/v1/alerts/{a['id']}/ack")
    assert r.status_code == 200 and r.get_json()["status"] == "acknowledged"
    assert client.post(f"/api/v1/alerts/{a['id']}/ack").status_code == 409
    assert client.get("/api/v1/alerts?status=open").get_json()["alerts"] == []
    assert len(client.get("/api/v1/greenhouses/GH-A/alerts?status=acknowledged").get_json()["alerts"]) == 1
    assert client.get("/api/v1/alerts?status=bogus").status_code == 400
    assert client.post("/api/v1/alerts/999999/ack").status_code == 404


def test_irrigation_summary(client, farm):
    login(client, "alice")
    data = client.get("/api/v1/greenhouses/GH-A/irrigation?period=day").get_json()
    assert data["current"]["irrigations"] == 1 and data["current"]["fertilizer"] == {"A": 2.0}
    assert data["previous"]["irrigations"] == 0 and data["change"]["water_l"] is None
    assert client.get("/api/v1/greenhouses/GH-A/irrigation?period=year").status_code == 400


def test_anonymous_gets_json_401_and_unknown_greenhouse_404(client, farm):
    r = client.get("/api/v1/greenhouses")
    assert r.status_code == 401 and r.is_json
    login(client, "alice")
    r = client.get("/api/v1/greenhouses/NOPE/series?metric=air_temperature")
    assert r.status_code == 404 and r.is_json


def test_bearer_token(app, farm):
    client = app.test_client()
    r = client.get("/api/v1/greenhouses/GH-A/latest", headers=bearer(farm["token"]))
    assert r.status_code == 200
    r = client.post(f"/api/v1/alerts/{farm['alert'].id}/ack", headers=bearer(farm["token"]))
    assert r.status_code == 200
    assert client.get("/api/v1/greenhouses", headers=bearer("ty_wrong")).status_code == 401
