"""A reading's identity is (device, metric, channel, second, microsecond): no two distinct
readings collapse into one, and a true redelivery still changes nothing.

Decoders first (pure), then the writer with a database, then the real ingester against a
real Mosquitto: a backlog published while it was stopped, two probes of one kind, two
air sensors on one Tasmota, a redelivered timestamped message."""

from __future__ import annotations

import json
import time
from collections import Counter
from datetime import UTC, datetime

import pytest
from sqlalchemy import delete, func, select

from iot import quantities, registry
from iot.ingest.devices import DeviceInfo, StaticDevices, TopicResolver, sensor_names
from iot.ingest.writer import BatchWriter, Message, decode_batch
from iot.models import HourlyRollup, QuarantinedMessage, Reading
from iot.payloads import PayloadError, decode_tasmota, decode_telemetry, tasmota_time
from iot.quarantine import replay
from tests.iot.conftest import wait_for

NOW = 1764000000.0
T0 = 1764000000
M = quantities.BY_NAME
RFC_FIRST = [{"n": "urn:dev:ow:10e2073a01080063", "u": "Cel", "v": 23.1}]  # RFC 8428 5.1.1


def full(readings):
    """(metric, channel, ts, us, value) of each reading, sorted."""
    return sorted((quantities.BY_ID[m].name, c, ts, us, round(v, 4)) for m, c, ts, us, v in readings)


def reason_of(fn, *args, **kwargs) -> str:
    with pytest.raises(PayloadError) as info:
        fn(*args, **kwargs)
    return info.value.reason


def _json(doc) -> bytes:
    return json.dumps(doc).encode()


# --- decoders -------------------------------------------------------------------------------


def test_native_keeps_sub_second_time_and_sensor():
    assert full(
        decode_telemetry(_json({"ts": T0 + 0.25, "sensor": "probe-2", "soil_temperature": 15}), NOW)
    ) == [("soil_temperature", "probe-2", T0, 250000, 15.0)]
    iso = _json({"ts": "2025-11-25T00:00:00.125+08:00", "co2": 500})
    assert full(decode_telemetry(iso, NOW)) == [("co2", "", T0, 125000, 500.0)]
    # without ts: the arrival time, to the microsecond
    assert full(decode_telemetry(_json({"co2": 500}), NOW + 0.000007)) == [("co2", "", T0, 7, 500.0)]
    for bad in ({"sensor": 3, "co2": 1}, {"sensor": "a b", "co2": 1}, {"sensor": "x" * 65, "co2": 1}):
        assert reason_of(decode_telemetry, _json(bad), NOW) == "bad_payload"


def test_senml_pack_with_two_base_names_keeps_both_sensors():
    # RFC 8428 5.1.3's shape: two devices' humidity in one pack, same times
    pack = [
        {"bn": "urn:dev:ow:10e2073a01080063:", "bt": T0 - 60, "bu": "%RH", "n": "humidity", "v": 20},
        {"n": "humidity", "t": 30, "v": 20.3},
        {"bn": "urn:dev:ow:10e2073a0108006:", "bt": T0 - 60, "bu": "%RH", "n": "humidity", "v": 30},
        {"n": "humidity", "t": 30, "v": 30.1},
        {"bn": "", "n": "humidity", "t": 0.5, "v": 40},  # a bare name: the device's default channel
    ]
    assert full(decode_telemetry(_json(pack), NOW)) == sorted(
        [
            ("air_humidity", "urn:dev:ow:10e2073a01080063", T0 - 60, 0, 20.0),
            ("air_humidity", "urn:dev:ow:10e2073a01080063", T0 - 30, 0, 20.3),
            ("air_humidity", "urn:dev:ow:10e2073a0108006", T0 - 60, 0, 30.0),
            ("air_humidity", "urn:dev:ow:10e2073a0108006", T0 - 30, 0, 30.1),
            ("air_humidity", "", T0 - 60, 500000, 40.0),  # bt still applies
        ]
    )
    # sub-second samples of one sensor stay apart
    fast = [
        {"bn": "p:", "bt": T0 - 1, "n": "temperature", "v": 20},
        {"n": "temperature", "t": 0.1, "v": 20.1},
    ]
    assert [us for _m, _c, _ts, us, _v in decode_telemetry(_json(fast), NOW)] == [0, 100000]
    # a very long base name is shortened with a hash: still distinct, still short
    long_a = [{"bn": "urn:dev:" + "a" * 80 + "1:", "n": "temperature", "v": 1, "bt": T0}]
    long_b = [{"bn": "urn:dev:" + "a" * 80 + "2:", "n": "temperature", "v": 1, "bt": T0}]
    ch_a, ch_b = decode_telemetry(_json(long_a), NOW)[0][1], decode_telemetry(_json(long_b), NOW)[0][1]
    assert ch_a != ch_b and len(ch_a) == len(ch_b) == 64


def test_rfc_8428_first_example_needs_the_devices_sensor_map():
    assert reason_of(decode_telemetry, _json(RFC_FIRST), NOW) == "unknown_metric"
    names = sensor_names({"urn:dev:ow:10e2073a01080063": {"metric": "air_temperature"}})
    assert full(decode_telemetry(_json(RFC_FIRST), NOW, names)) == [
        ("air_temperature", "urn:dev:ow:10e2073a01080063", T0, 0, 23.1)
    ]
    named = sensor_names({"urn:dev:ow:10e2073a01080063": {"metric": "soil_temperature", "channel": "bed-3"}})
    assert full(decode_telemetry(_json(RFC_FIRST), NOW, named)) == [
        ("soil_temperature", "bed-3", T0, 0, 23.1)
    ]
    dropped: Counter[str] = Counter()
    ignore = sensor_names(
        {"urn:dev:ow:10e2073a01080063": {"metric": "ignore"}, "x:temperature": {"metric": "ph"}}
    )
    pack = RFC_FIRST + [{"n": "temperature", "v": 20}]
    assert full(decode_telemetry(_json(pack), NOW, ignore, dropped)) == [("air_temperature", "", T0, 0, 20.0)]
    assert dropped == {"ignored_by_map": 1}
    # a hand-edited entry naming no metric is left out: unknown, not a crash
    assert sensor_names({"a": {"metric": "wind"}, "b": "x"}) is None


def test_tasmota_two_probes_and_two_air_sensors_are_channels():
    payload = _json(
        {
            "Time": "2025-11-25T00:00:00",
            "AM2301": {"Temperature": 19.5, "Humidity": 70.1, "DewPoint": 14.0},
            "BME280": {"Temperature": 19.9, "Humidity": 68.0, "Pressure": 1013.2},
            "DS18B20-1": {"Id": "01144A", "Temperature": 15.25},
            "DS18B20-2": {"Id": "02155B", "Temperature": 16.5},
            "TempUnit": "C",
        }
    )
    assert full(decode_tasmota(payload, NOW, "Asia/Shanghai")) == [
        ("air_humidity", "AM2301", T0, 0, 70.1),
        ("air_humidity", "BME280", T0, 0, 68.0),
        ("air_temperature", "AM2301", T0, 0, 19.5),
        ("air_temperature", "BME280", T0, 0, 19.9),
        ("soil_temperature", "DS18B20-1", T0, 0, 15.25),
        ("soil_temperature", "DS18B20-2", T0, 0, 16.5),
    ]


def test_tasmota_chip_and_unknown_sensors_are_skipped_and_counted():
    dropped: Counter[str] = Counter()
    payload = _json(
        {
            "Time": "2025-11-25T00:00:00",
            "ESP32": {"Temperature": 47.8},
            "AM2301": {"Temperature": 19.5, "Humidity": 70.1},
            "ENERGY": {"TotalStartTime": "2025-01-01T00:00:00", "Total": 1.2, "Power": 3},
            "ANALOG": {"A0": 512},
            "TempUnit": "C",
        }
    )
    assert full(decode_tasmota(payload, NOW, "Asia/Shanghai", None, dropped)) == [
        ("air_humidity", "AM2301", T0, 0, 70.1),
        ("air_temperature", "AM2301", T0, 0, 19.5),  # not the chip's 47.8
    ]
    assert dropped == {"chip_sensor": 1, "unknown_sensor": 4}
    # nothing usable: refused (quarantined), and nothing counted as dropped
    dropped.clear()
    only_energy = _json({"ENERGY": {"Total": 1.2}, "ANALOG": {"A0": 3}})
    assert reason_of(decode_tasmota, only_energy, NOW, "Asia/Shanghai", None, dropped) == "unknown_metric"
    assert reason_of(decode_tasmota, _json({"ESP32": {"Temperature": 47.8}}), NOW) == "bad_payload"
    assert not dropped
    # the device's sensor map names a key: stored under the metric and channel it gives
    names = sensor_names({"ANALOG.A0": {"metric": "soil_moisture", "channel": "bed-1"}})
    assert full(decode_tasmota(_json({"ANALOG": {"A0": 31.5}}), NOW, "Asia/Shanghai", names)) == [
        ("soil_moisture", "bed-1", T0, 0, 31.5)
    ]
    chip_as_air = sensor_names({"DS18B20-1.Temperature": {"metric": "air_temperature"}})
    assert full(decode_tasmota(_json({"DS18B20-1": {"Temperature": 20}}), NOW, "UTC", chip_as_air)) == [
        ("air_temperature", "DS18B20-1", T0, 0, 20.0)
    ]


def _utc(*args) -> float:
    return datetime(*args, tzinfo=UTC).timestamp()


def test_tasmota_local_time_in_the_repeated_autumn_hour_is_the_one_nearest_to_arrival():
    # New York, 2 November 2025: 01:30 happens at 05:30Z (EDT) and again at 06:30Z (EST)
    first, second = _utc(2025, 11, 2, 5, 30), _utc(2025, 11, 2, 6, 30)
    zone = "America/New_York"
    assert tasmota_time("2025-11-02T01:30:00", zone, first + 5) == first  # the second is in the future
    assert tasmota_time("2025-11-02T01:30:00", zone, second + 5) == second
    assert tasmota_time("2025-11-02T01:30:00", zone, second + 7200) == second  # delayed: still the nearest
    # Berlin, 26 October 2025: 02:30 at 00:30Z (CEST) and 01:30Z (CET)
    assert tasmota_time("2025-10-26T02:30:00", "Europe/Berlin", _utc(2025, 10, 26, 1, 31)) == _utc(
        2025, 10, 26, 1, 30
    )
    # an ordinary hour, and China (no summer time): one reading of the clock
    assert tasmota_time("2025-11-25T00:00:00", "Asia/Shanghai", NOW) == NOW


# --- decode_batch (pure) ---------------------------------------------------------------------

DEVICES = StaticDevices([DeviceInfo(1, "dev1", 10, "GH1", "Asia/Shanghai")])


def _msg(topic: str, payload, arrival: float) -> Message:
    return Message(topic, payload if isinstance(payload, bytes) else _json(payload), arrival)


def test_timestamp_less_messages_in_one_batch_never_collapse():
    resolver = TopicResolver(DEVICES)
    arrival = time.time()
    same = [_msg("farm/GH1/dev1/telemetry", {"air_temperature": 20.0}, arrival) for _ in range(60)]
    senml = [_msg("farm/GH1/dev1/telemetry", [{"n": "temperature", "v": 20.0}], arrival) for _ in range(30)]
    tasmota = [_msg("tele/dev1/SENSOR", {"AM2301": {"Temperature": 20.0}}, arrival) for _ in range(10)]
    decoded = decode_batch(same + senml + tasmota, resolver.resolve)
    assert len(decoded.readings) == decoded.decoded == 100 and not decoded.bad
    assert len({(ts, us) for _pk, _g, _m, _c, ts, us, _v in decoded.readings.values()}) == 100
    # a timestamped message redelivered in the same batch is the same reading: one row
    again = [_msg("farm/GH1/dev1/telemetry", {"ts": T0, "co2": 400}, arrival + i) for i in range(3)]
    decoded = decode_batch(again, resolver.resolve)
    assert len(decoded.readings) == 1 and decoded.decoded == 3 and not decoded.dropped
    # one message giving one identity twice is not a redelivery: dropped, by reason
    twice = [
        {"bn": "p:", "bt": T0, "n": "temperature", "v": 20},
        {"bn": "p:", "bt": T0, "n": "temp", "v": 21},
    ]
    decoded = decode_batch([_msg("farm/GH1/dev1/telemetry", twice, arrival)], resolver.resolve)
    assert decoded.decoded == 1 and decoded.dropped == {"repeat_in_message": 1}


# --- the writer, with a database ---------------------------------------------------------------


def test_two_probes_are_two_readings_in_the_rows_and_the_hourly_rollup(session, greenhouse):
    writer = BatchWriter(session.get_bind())
    probes = {
        "Time": "2025-11-25T00:00:00",
        "DS18B20-1": {"Temperature": 15},
        "DS18B20-2": {"Temperature": 17},
    }
    chip = {"Time": "2025-11-25T00:00:00", "ESP32": {"Temperature": 47.8}, "AM2301": {"Temperature": 19.5}}
    result = writer.store([_msg("tele/dev1/SENSOR", probes, NOW), _msg("tele/dev1/SENSOR", chip, NOW)])
    assert (result.stored, result.duplicates, dict(result.dropped)) == (3, 0, {"chip_sensor": 1})
    session.expire_all()
    rows = session.execute(select(Reading.channel, Reading.value).order_by(Reading.channel)).all()
    assert [tuple(r) for r in rows] == [("AM2301", 19.5), ("DS18B20-1", 15.0), ("DS18B20-2", 17.0)]
    hour = session.scalar(
        select(HourlyRollup).where(
            HourlyRollup.metric_id == M["soil_temperature"].id, HourlyRollup.bucket == T0
        )
    )
    assert (hour.count, hour.sum, hour.min, hour.max) == (2, 32.0, 15.0, 17.0)
    # the same message again (a redelivery): nothing new, counted as duplicates only
    again = writer.store([_msg("tele/dev1/SENSOR", probes, NOW + 5)])
    assert (again.stored, again.duplicates, dict(again.dropped)) == (0, 2, {})
    session.expire_all()
    assert (
        session.scalar(select(HourlyRollup.count).where(HourlyRollup.metric_id == M["soil_temperature"].id))
        == 2
    )


def test_a_senml_name_mapped_after_quarantine_is_stored_by_replay(session, greenhouse):
    writer = BatchWriter(session.get_bind())
    result = writer.store([_msg("farm/GH1/dev1/telemetry", _json(RFC_FIRST), NOW)])
    assert dict(result.quarantined) == {"unknown_metric": 1}
    device = registry.get_device(session, "dev1")
    registry.set_sensor_name(session, device, "urn:dev:ow:10e2073a01080063", "air_temperature", "ow-1")
    session.commit()
    replayed = replay(session.get_bind())
    assert replayed.stored == 1 and not replayed.still_failing
    session.expire_all()
    assert session.execute(select(Reading.metric_id, Reading.channel, Reading.ts, Reading.value)).one() == (
        M["air_temperature"].id,
        "ow-1",
        T0,
        23.1,
    )
    assert session.scalar(select(QuarantinedMessage.replayed_at)) is not None


# --- the real ingester and a real Mosquitto ------------------------------------------------------


def _count(session, model=Reading) -> int:
    session.expire_all()
    return session.scalar(select(func.count()).select_from(model))


@pytest.mark.mqtt
def test_backlog_published_while_the_ingester_was_stopped_is_stored_whole(
    session, greenhouse, start_ingester, publisher, prefix
):
    ing = start_ingester()  # its persistent session now exists at the broker
    ing.stop()
    native = [(f"{prefix}/GH1/dev1/telemetry", json.dumps({"air_temperature": 20.0})) for _ in range(60)]
    senml = [
        (
            f"{prefix}/GH1/dev1/telemetry",
            json.dumps([{"bn": "urn:dev:mac:0024befffe804ff1:", "n": "temp", "v": 21}]),
        )
        for _ in range(30)
    ]
    publisher.publish_many(native + senml)
    ing = start_ingester()
    wait_for(lambda: _count(session) == 90, message="90 readings")
    wait_for(lambda: ing.stats.stored == 90, 5)
    assert ing.stats.duplicates == 0
    session.expire_all()
    channels = Counter(session.scalars(select(Reading.channel)))
    assert channels == {"": 60, "urn:dev:mac:0024befffe804ff1": 30}
    assert session.scalar(select(func.sum(HourlyRollup.count))) == 90


@pytest.mark.mqtt
def test_probes_and_air_sensors_of_one_device_all_arrive_and_a_redelivery_adds_nothing(
    session, greenhouse, start_ingester, publisher, prefix
):
    ing = start_ingester()
    publisher.publish(
        f"{prefix}tele/dev1/SENSOR",
        {
            "Time": "2025-11-25T08:00:00",
            "AM2301": {"Temperature": 19.5, "Humidity": 70.1},
            "BME280": {"Temperature": 19.9, "Humidity": 68.0, "Pressure": 1013.2},
            "DS18B20-1": {"Temperature": 15.25},
            "DS18B20-2": {"Temperature": 16.5},
            "ESP32": {"Temperature": 47.8},
        },
    )
    timestamped = {"ts": T0, "sensor": "probe-2", "soil_moisture": 31.5}
    publisher.publish(f"{prefix}/GH1/dev1/telemetry", timestamped)
    wait_for(lambda: _count(session) == 7, message="7 readings")
    publisher.publish(f"{prefix}/GH1/dev1/telemetry", timestamped)  # a true redelivery
    wait_for(lambda: ing.stats.duplicates == 1, 10, message="one duplicate")
    assert ing.stats.stored == 7 and _count(session) == 7
    session.expire_all()
    rows = {
        (quantities.BY_ID[m].name, c, v)
        for m, c, v in session.execute(select(Reading.metric_id, Reading.channel, Reading.value))
    }
    assert rows == {
        ("air_temperature", "AM2301", 19.5),
        ("air_humidity", "AM2301", 70.1),
        ("air_temperature", "BME280", 19.9),
        ("air_humidity", "BME280", 68.0),
        ("soil_temperature", "DS18B20-1", 15.25),
        ("soil_temperature", "DS18B20-2", 16.5),
        ("soil_moisture", "probe-2", 31.5),
    }
    assert _count(session, QuarantinedMessage) == 0


def test_alert_rules_see_a_second_sensor_of_the_same_second_in_a_later_batch(session, greenhouse):
    from iot.models import Alert, AlertRule

    session.execute(delete(AlertRule))  # the crop's defaults aside: one rule, air above 30 °C
    gh_id = registry.get_greenhouse(session, "GH1").id
    session.add(
        AlertRule(greenhouse_id=gh_id, metric_id=M["air_temperature"].id, kind="above", threshold=30.0)
    )
    session.commit()
    writer = BatchWriter(session.get_bind())
    cool = {"Time": "2025-11-25T00:00:00", "AM2301": {"Temperature": 25.0}}
    hot = {"Time": "2025-11-25T00:00:00", "BME280": {"Temperature": 35.0}}
    assert writer.store([_msg("tele/dev1/SENSOR", cool, NOW)]).stored == 1
    assert writer.store([_msg("tele/dev1/SENSOR", hot, NOW + 1)]).stored == 1  # same second, next batch
    session.expire_all()
    alert = session.scalar(select(Alert))
    assert alert is not None and (alert.value, alert.opened_at) == (35.0, T0)


def test_another_value_at_a_stored_readings_identity_is_counted_apart_from_duplicates_found_by_review(
    session, greenhouse
):
    """Two CO2 values in one second from a device without sub-second time: one can be kept;
    the other is no redelivery and must not be counted as one."""
    writer = BatchWriter(session.get_bind())
    first = {"ts": T0, "co2": 500}
    other = {"ts": T0, "co2": 510}
    topic = "farm/GH1/dev1/telemetry"
    result = writer.store([_msg(topic, first, NOW), _msg(topic, other, NOW + 1), _msg(topic, first, NOW + 2)])
    assert (result.stored, result.duplicates, dict(result.dropped)) == (1, 1, {"conflicting_value": 1})
    # in a later batch: the redelivery is a duplicate, the other value a conflict
    later = writer.store([_msg(topic, first, NOW + 5), _msg(topic, other, NOW + 6)])
    assert (later.stored, later.duplicates, dict(later.dropped)) == (0, 1, {"conflicting_value": 1})
    session.expire_all()
    assert session.scalars(select(Reading.value)).all() == [500.0]
