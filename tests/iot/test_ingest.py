"""The ingester against a real Mosquitto: every payload format lands as the right readings,
bad input ends in quarantine, status and irrigation are recorded, and the counters show it."""

from __future__ import annotations

import json
import time
import urllib.request
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select

from iot import quantities
from iot.models import Device, IrrigationEvent, QuarantinedMessage, Reading
from tests.iot.conftest import wait_for

pytestmark = pytest.mark.mqtt

T0 = 1764000000  # 2025-11-24T16:00:00Z


def readings(session) -> set[tuple[str, int, float]]:
    session.expire_all()
    rows = session.execute(select(Reading.metric_id, Reading.ts, Reading.value)).all()
    return {(quantities.BY_ID[m].name, ts, round(v, 3)) for m, ts, v in rows}


def count(session, model) -> int:
    session.expire_all()
    return session.scalar(select(func.count()).select_from(model))


def test_every_payload_format_lands_as_readings(session, greenhouse, start_ingester, publisher, prefix):
    ing = start_ingester()
    publisher.publish(
        f"{prefix}/GH1/dev1/telemetry", {"ts": T0, "air_temperature": 23.4, "air_humidity": 61.2}
    )
    publisher.publish(f"{prefix}/GH1/dev1/telemetry", {"ts": "2025-11-25T00:10:00+08:00", "co2": 612})
    publisher.publish(
        f"{prefix}/GH1/dev1/telemetry",
        [
            {
                "bn": "urn:dev:mac:0024befffe804ff1:",
                "bt": T0 + 60,
                "bu": "Cel",
                "n": "temperature",
                "v": 21.5,
            },
            {"n": "temperature", "t": 60, "v": 22.0},
            {"n": "humidity", "u": "%RH", "v": 55},
            {"n": "soil_temp", "t": 120, "u": "K", "v": 290.15},
            {"n": "conductivity", "u": "S/m", "v": 0.18},
        ],
    )
    # Tasmota: local time of the greenhouse (Asia/Shanghai, UTC+8), no offset
    publisher.publish(
        f"{prefix}tele/dev1/SENSOR",
        {
            "Time": "2025-11-25T08:00:00",
            "AM2301": {"Temperature": 19.5, "Humidity": 70.1, "DewPoint": 14.0},
            "DS18B20": {"Id": "0316", "Temperature": 15.25},
            "TempUnit": "C",
        },
    )
    wait_for(lambda: count(session, Reading) >= 11, message="11 readings")
    assert readings(session) == {
        ("air_temperature", T0, 23.4),
        ("air_humidity", T0, 61.2),
        ("co2", T0 + 600, 612.0),
        ("air_temperature", T0 + 60, 21.5),
        ("air_temperature", T0 + 120, 22.0),
        ("air_humidity", T0 + 60, 55.0),
        ("soil_temperature", T0 + 180, 17.0),
        ("ec", T0 + 60, 1.8),
        ("air_temperature", T0 + 8 * 3600, 19.5),  # 08:00 at +08:00 = 00:00Z
        ("air_humidity", T0 + 8 * 3600, 70.1),
        ("soil_temperature", T0 + 8 * 3600, 15.25),
    }
    assert count(session, QuarantinedMessage) == 0
    wait_for(lambda: ing.stats.stored == 11, 5)  # counted when acknowledged, just after the commit


def test_senml_relative_time_is_relative_to_arrival(session, greenhouse, start_ingester, publisher, prefix):
    start_ingester()
    before = int(time.time())
    publisher.publish(f"{prefix}/GH1/dev1/telemetry", [{"n": "temperature", "u": "Cel", "v": 20, "t": -30}])
    wait_for(lambda: count(session, Reading) == 1)
    ts = session.scalar(select(Reading.ts))
    assert before - 31 <= ts <= int(time.time()) - 29


def test_native_json_without_ts_uses_arrival_time(session, greenhouse, start_ingester, publisher, prefix):
    start_ingester()
    before = int(time.time())
    publisher.publish(f"{prefix}/GH1/dev1/telemetry", {"soil_moisture": 33.3})
    wait_for(lambda: count(session, Reading) == 1)
    assert before <= session.scalar(select(Reading.ts)) <= int(time.time())


def test_redelivered_message_changes_nothing(session, greenhouse, start_ingester, publisher, prefix):
    ing = start_ingester()
    payload = {"ts": T0, "air_temperature": 23.4, "light": 12000}
    for _ in range(3):
        publisher.publish(f"{prefix}/GH1/dev1/telemetry", payload)
    wait_for(lambda: ing.stats.stored + ing.stats.duplicates == 6)
    assert count(session, Reading) == 2
    assert ing.stats.stored == 2 and ing.stats.duplicates == 4


BAD = [
    ("telemetry", b"{not json", "malformed_json"),
    ("telemetry", json.dumps({"ts": T0, "leaf_colour": 3}).encode(), "unknown_metric"),
    ("telemetry", json.dumps([{"n": "temperature", "u": "Pa", "v": 3, "bt": T0}]).encode(), "unknown_unit"),
    ("telemetry", json.dumps({"ts": T0, "air_temperature": 71}).encode(), "out_of_range"),
    ("telemetry", json.dumps({"ts": T0, "air_temperature": -50.5}).encode(), "out_of_range"),
    ("telemetry", json.dumps({"ts": T0, "air_humidity": 100.1}).encode(), "out_of_range"),
    ("telemetry", json.dumps({"ts": int(time.time()) + 86400, "co2": 400}).encode(), "future_timestamp"),
    ("telemetry", json.dumps({"ts": "2025-11-24 10:00", "co2": 400}).encode(), "bad_timestamp"),
    ("status", b"sleepy", "bad_payload"),
]


def test_bad_input_is_quarantined_with_reason_and_stream_goes_on(
    session, greenhouse, start_ingester, publisher, prefix
):
    ing = start_ingester()
    for kind, payload, _reason in BAD:
        publisher.publish(f"{prefix}/GH1/dev1/{kind}", payload)
    publisher.publish(f"{prefix}/GH1/ghost/telemetry", {"ts": T0, "co2": 400})  # unknown device
    publisher.publish(f"{prefix}/GH2/dev1/telemetry", {"ts": T0, "co2": 400})  # wrong greenhouse
    publisher.publish(f"{prefix}/GH1/dev1/telemetry", {"ts": T0, "co2": 401})  # and a good one after all that
    wait_for(lambda: count(session, Reading) == 1 and count(session, QuarantinedMessage) == len(BAD) + 2)
    rows = session.scalars(select(QuarantinedMessage).order_by(QuarantinedMessage.id)).all()
    assert [r.reason for r in rows] == [b[2] for b in BAD] + ["unknown_device", "greenhouse_mismatch"]
    assert rows[0].payload == b"{not json" and rows[0].topic == f"{prefix}/GH1/dev1/telemetry"
    assert rows[-2].detail == "ghost"
    wait_for(lambda: ing.stats.quarantined["out_of_range"] == 3, 5)
    assert session.scalar(select(Reading.value)) == 401


def test_unknown_device_auto_provisioned_then_replayed(
    session, greenhouse, start_ingester, publisher, prefix
):
    from iot import registry
    from iot.quarantine import replay

    start_ingester(unknown_device_policy="provision")
    publisher.publish(f"{prefix}/GH1/newdev/telemetry", {"ts": T0, "air_temperature": 20.0})
    wait_for(lambda: count(session, QuarantinedMessage) == 1)
    wait_for(lambda: registry.get_device(session, "newdev") is not None)
    device = registry.get_device(session, "newdev")
    assert device.provisioned and device.greenhouse_id is None
    assert session.scalar(select(QuarantinedMessage.reason)) == "unassigned_device"

    registry.assign_device(session, device, greenhouse)
    session.commit()
    result = replay(session.get_bind(), topic_prefix=prefix)
    assert result.stored == 1 and not result.still_failing
    session.expire_all()
    assert readings(session) == {("air_temperature", T0, 20.0)}
    assert session.scalar(select(QuarantinedMessage.replayed_at)) is not None


def test_status_sets_online_and_last_seen(session, greenhouse, start_ingester, publisher, prefix):
    ing = start_ingester()
    publisher.publish(f"{prefix}/GH1/ctl1/status", b"online")
    wait_for(lambda: session.expire_all() or registry_device(session, "ctl1").online)
    seen = registry_device(session, "ctl1").last_seen_at
    assert seen is not None and abs((datetime.now(UTC) - seen).total_seconds()) < 30
    publisher.publish(f"{prefix}/GH1/ctl1/status", b"offline")
    wait_for(lambda: session.expire_all() or not registry_device(session, "ctl1").online)
    wait_for(lambda: ing.stats.status == 2, 5)


def registry_device(session, device_id) -> Device:
    return session.scalar(select(Device).where(Device.device_id == device_id))


def test_irrigation_complete_and_paired_start_stop(session, greenhouse, start_ingester, publisher, prefix):
    ing = start_ingester()
    topic = f"{prefix}/GH1/ctl1/irrigation"
    publisher.publish(
        topic,
        {
            "start": T0,
            "end": T0 + 900,
            "zone": "A",
            "water_l": 420.5,
            "ec": 1.8,
            "ph": 6.1,
            "fertilizer": {"tank_a": 1.2, "tank_b": 0.8},
        },
    )
    publisher.publish(topic, {"action": "start", "ts": T0 + 3600, "zone": "B", "ec": 2.0, "ph": 6.0})
    publisher.publish(
        topic, {"action": "stop", "ts": T0 + 4200, "zone": "B", "water_l": 300, "fertilizer": {"tank_a": 0.9}}
    )
    publisher.publish(topic, {"action": "stop", "ts": T0 + 4200, "zone": "B", "water_l": 300})  # redelivered
    publisher.publish(topic, {"action": "stop", "ts": T0 + 7200, "zone": "C"})  # no start
    wait_for(lambda: count(session, QuarantinedMessage) == 1)
    events = session.scalars(select(IrrigationEvent).order_by(IrrigationEvent.started_at)).all()
    assert [(e.zone, e.started_at, e.ended_at, e.water_l, e.ec, e.ph, e.fertilizer) for e in events] == [
        ("A", T0, T0 + 900, 420.5, 1.8, 6.1, {"tank_a": 1.2, "tank_b": 0.8}),
        ("B", T0 + 3600, T0 + 4200, 300.0, 2.0, 6.0, {"tank_a": 0.9}),
    ]
    assert session.scalar(select(QuarantinedMessage.reason)) == "unmatched_stop"
    wait_for(lambda: ing.stats.irrigation == 4)  # the redelivered stop counts, changing nothing


def test_prometheus_endpoint_counts(session, greenhouse, start_ingester, publisher, prefix):
    ing = start_ingester(metrics_port=0)
    publisher.publish(f"{prefix}/GH1/dev1/telemetry", {"ts": T0, "co2": 400, "light": 100})
    publisher.publish(f"{prefix}/GH1/dev1/telemetry", b"[]")
    wait_for(lambda: ing.stats.batches >= 1 and ing.stats.received == 2 and ing.stats.acked == 2)
    port = ing.ingester.config.metrics_port
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    assert "tianyuan_ingest_messages_received_total 2" in text
    assert "tianyuan_ingest_readings_stored_total 2" in text
    assert 'tianyuan_ingest_quarantined_total{reason="bad_payload"} 1' in text
    assert "tianyuan_ingest_batch_seconds_max" in text
