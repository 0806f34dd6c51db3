"""A device's own sensor names (SenML names, Tasmota keys) mapped to metrics and channels:
one service, validated and audited, used by the device admin page and ``flask iot device map``;
the device page shows the newest reading of each sensor."""

from __future__ import annotations

import json
import time

import pytest
from sqlalchemy import select

from core.models import AuditEntry
from iot import registry
from iot.ingest.writer import BatchWriter, Message
from iot.models import Device, Reading
from tests.conftest import csrf_token_from, login

NOW = 1764000000.0
RFC = "urn:dev:ow:10e2073a01080063"


def _map(session) -> dict:
    session.expire_all()
    return session.scalar(select(Device.sensor_map).where(Device.device_id == "dev1")) or {}


def test_service_validates_and_audits(session, greenhouse, make_user):
    boss = make_user("boss", "admin")
    device = registry.get_device(session, "dev1")
    registry.set_sensor_name(session, device, RFC, "air_temperature", user_id=boss.id)
    registry.set_sensor_name(session, device, "ANALOG.A0", "soil_moisture", "bed-1", user_id=boss.id)
    session.commit()
    assert _map(session) == {
        RFC: {"metric": "air_temperature"},
        "ANALOG.A0": {"metric": "soil_moisture", "channel": "bed-1"},
    }
    for source, metric, channel in (
        ("", "air_temperature", None),
        ("has space", "air_temperature", None),
        ("-leading", "air_temperature", None),
        ("x" * 121, "air_temperature", None),
        ("ok", "wind", None),
        ("ok", "", None),
        ("ok", "co2", "bad channel"),
        ("ok", "co2", "c" * 65),
    ):
        with pytest.raises(registry.RegistryError):
            registry.set_sensor_name(session, device, source, metric, channel)
    session.rollback()
    with pytest.raises(registry.RegistryError):
        registry.remove_sensor_name(session, device, "never-set")
    registry.remove_sensor_name(session, device, RFC, user_id=boss.id)
    session.commit()
    assert _map(session) == {"ANALOG.A0": {"metric": "soil_moisture", "channel": "bed-1"}}
    entries = session.scalars(select(AuditEntry).where(AuditEntry.action == "iot.device.sensor_name")).all()
    assert [(e.user_id, e.details["source"], e.details["after"]) for e in entries] == [
        (boss.id, RFC, {"metric": "air_temperature"}),
        (boss.id, "ANALOG.A0", {"metric": "soil_moisture", "channel": "bed-1"}),
        (boss.id, RFC, None),
    ]
    # at most 64 names per device
    for i in range(63):
        registry.set_sensor_name(session, device, f"n{i}", "co2")
    with pytest.raises(registry.RegistryError):
        registry.set_sensor_name(session, device, "one-too-many", "co2")
    registry.set_sensor_name(session, device, "n0", "ph")  # changing an existing one is fine


def test_cli_map_sets_lists_and_removes(runner, session, greenhouse):
    result = runner.invoke(args=["iot", "device", "map", "dev1", RFC, "air_temperature", "--channel", "ow-1"])
    assert result.exit_code == 0, result.output
    assert _map(session) == {RFC: {"metric": "air_temperature", "channel": "ow-1"}}
    listed = runner.invoke(args=["iot", "device", "map", "dev1"])
    assert RFC in listed.output and "channel=ow-1" in listed.output
    bad = runner.invoke(args=["iot", "device", "map", "dev1", RFC, "wind"])
    assert bad.exit_code != 0 and "unknown metric wind" in bad.output
    assert runner.invoke(args=["iot", "device", "map", "nobody", RFC, "co2"]).exit_code != 0
    assert runner.invoke(args=["iot", "device", "map", "dev1", RFC]).exit_code != 0  # no METRIC
    assert runner.invoke(args=["iot", "device", "map", "dev1", RFC, "--remove"]).exit_code == 0
    assert _map(session) == {}
    assert "no sensor names" in runner.invoke(args=["iot", "device", "map", "dev1"]).output
    # what the map does: the ingester's decoders use it (the registry is read at refresh)
    runner.invoke(args=["iot", "device", "map", "dev1", RFC, "soil_temperature"])
    writer = BatchWriter(session.get_bind())
    pack = json.dumps([{"n": RFC, "u": "Cel", "v": 12.5, "t": 0}]).encode()
    assert writer.store([Message("farm/GH1/dev1/telemetry", pack, NOW)]).stored == 1
    session.expire_all()
    assert session.execute(select(Reading.channel, Reading.value)).one() == (RFC, 12.5)


def test_device_page_maps_names_and_shows_each_sensor(client, session, greenhouse, make_user):
    make_user("boss", "admin")
    make_user("guan", "official")
    writer = BatchWriter(session.get_bind())
    probes = {"DS18B20-1": {"Temperature": 15.0}, "DS18B20-2": {"Temperature": 17.25}}
    writer.store([Message("tele/dev1/SENSOR", json.dumps(probes).encode(), time.time())])
    login(client, "boss")
    page = client.get("/iot/admin/devices/dev1").get_data(as_text=True)
    assert "DS18B20-1" in page and "DS18B20-2" in page and "17.25" in page
    for probe in ("DS18B20-1", "DS18B20-2"):  # one row per probe, the metric in the user's language
        assert f"<td>土壤温度</td><td><code>{probe}</code>" in page
    token = csrf_token_from(page)
    r = client.post(
        "/iot/admin/devices/dev1/sensor-names",
        data={"csrf_token": token, "sn-source": RFC, "sn-metric": "air_temperature", "sn-channel": ""},
        follow_redirects=True,
    )
    assert r.status_code == 200 and RFC in r.get_data(as_text=True)
    assert _map(session) == {RFC: {"metric": "air_temperature"}}
    # refused: a message in the user's language, nothing changed, no 500
    r = client.post(
        "/iot/admin/devices/dev1/sensor-names",
        data={"csrf_token": token, "sn-source": "a b", "sn-metric": "co2"},
        follow_redirects=True,
    )
    assert r.status_code == 200 and "传感器名称" in r.get_data(as_text=True)
    r = client.post(
        "/iot/admin/devices/dev1/sensor-names?lang=en",
        data={"csrf_token": token, "sn-source": "x", "sn-metric": "wind"},
        follow_redirects=True,
    )
    assert r.status_code == 200 and _map(session) == {RFC: {"metric": "air_temperature"}}
    r = client.post(
        "/iot/admin/devices/dev1/sensor-names/remove",
        data={"csrf_token": token, "source": RFC},
        follow_redirects=True,
    )
    assert r.status_code == 200 and _map(session) == {}
    r = client.post(
        "/iot/admin/devices/dev1/sensor-names/remove",
        data={"csrf_token": token, "source": "x" * 500},
        follow_redirects=True,
    )
    assert r.status_code == 200
    # officials look, never change
    client = client.application.test_client()
    login(client, "guan")
    page = client.get("/iot/admin/devices/dev1").get_data(as_text=True)
    assert "DS18B20-2" in page and "sn-source" not in page
    r = client.post(
        "/iot/admin/devices/dev1/sensor-names",
        data={"csrf_token": csrf_token_from(page), "sn-source": RFC, "sn-metric": "co2"},
    )
    assert r.status_code == 403 and _map(session) == {}
