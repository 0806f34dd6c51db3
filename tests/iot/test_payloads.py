"""The decoders are pure functions: each format gives the right readings, every kind of
bad input gives its reason, and 10,000 random or mutated inputs crash nothing."""

from __future__ import annotations

import json
from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from iot import quantities
from iot.ingest.devices import sensor_names
from iot.payloads import (
    PayloadError,
    Topic,
    decode_irrigation,
    decode_status,
    decode_tasmota,
    decode_telemetry,
    parse_topic,
)

NOW = 1764000000.0
M = quantities.BY_NAME


def ids(readings):
    return sorted((quantities.BY_ID[m].name, ts, round(v, 4)) for m, _channel, ts, _us, v in readings)


def full(readings):
    """(metric, channel, ts, us, value): the whole identity of each reading."""
    return sorted((quantities.BY_ID[m].name, c, ts, us, round(v, 4)) for m, c, ts, us, v in readings)


def reason_of(fn, *args) -> str:
    with pytest.raises(PayloadError) as info:
        fn(*args)
    return info.value.reason


def test_topics():
    assert parse_topic("farm/GH1/dev1/telemetry") == Topic("telemetry", "dev1", "GH1")
    assert parse_topic("farm/GH1/ctl/irrigation").kind == "irrigation"
    assert parse_topic("x/GH1/dev1/status", prefix="x") == Topic("status", "dev1", "GH1")
    assert parse_topic("tele/tasmota_1/SENSOR") == Topic("tasmota", "tasmota_1", None)
    for bad in (
        "farm/GH1/dev1",
        "farm/GH1/dev1/foo",
        "farm//dev1/telemetry",
        "tele/x/STATE",
        "other/a/b/telemetry",
    ):
        assert reason_of(parse_topic, bad) == "unknown_topic"


def test_native_with_epoch_and_iso_timestamps():
    assert ids(decode_telemetry(b'{"ts": 1764000000, "air_temperature": 23.4, "air_humidity": 61}', NOW)) == [
        ("air_humidity", 1764000000, 61.0),
        ("air_temperature", 1764000000, 23.4),
    ]
    iso = json.dumps({"ts": "2025-11-25T00:00:00+08:00", "ph": 6.5}).encode()
    assert ids(decode_telemetry(iso, NOW)) == [("ph", 1764000000, 6.5)]
    assert ids(decode_telemetry(b'{"ts": "2025-11-24T16:00:00Z", "ec": 2}', NOW)) == [("ec", 1764000000, 2.0)]
    assert ids(decode_telemetry(b'{"co2": 500}', NOW)) == [("co2", int(NOW), 500.0)]


def test_senml_base_fields_and_relative_times():
    pack = [
        {"bn": "urn:dev:ow:10e2073a01080063:", "bt": NOW - 120, "bu": "Cel", "bv": 20, "bver": 10},
        {"n": "temp", "v": 1.5},
        {"n": "temp", "t": 60, "v": 2.5},
        {"n": "humidity", "u": "%RH", "bv": 0, "v": 55.5},
        {"bn": "", "bt": 0, "n": "co2", "u": "ppm", "t": -10, "v": 700},
        {"n": "vwc", "u": "/", "t": -5, "v": 0.31},
        {"n": "air_temperature", "u": "degF", "t": 0, "v": 68},
    ]
    assert ids(decode_telemetry(json.dumps(pack).encode(), NOW)) == sorted(
        [
            ("air_humidity", NOW - 120, 55.5),
            ("air_temperature", NOW, 20.0),
            ("air_temperature", NOW - 120, 21.5),
            ("air_temperature", NOW - 60, 22.5),
            ("co2", NOW - 10, 700.0),
            ("soil_moisture", NOW - 5, 31.0),
        ]
    )


def test_tasmota_local_time_in_greenhouse_zone():
    payload = json.dumps(
        {
            "Time": "2025-11-25T00:00:00",
            "SHT3X": {"Temperature": 20.1, "Humidity": 50, "DewPoint": 9.4},
            "BH1750": {"Illuminance": 35000},
            "TempUnit": "C",
        }
    ).encode()
    assert ids(decode_tasmota(payload, NOW, "Asia/Shanghai")) == [
        ("air_humidity", 1764000000, 50.0),
        ("air_temperature", 1764000000, 20.1),
        ("light", 1764000000, 35000.0),
    ]
    # the same wall clock in another zone is another instant
    assert (
        ids(decode_tasmota(payload, NOW + 9 * 3600, "Europe/Berlin"))[0][1] == 1764000000 + 7 * 3600
    )  # UTC+1
    fahrenheit = json.dumps({"Time": "2025-11-25T00:00:00", "DS18B20": {"Temperature": 50}, "TempUnit": "F"})
    assert ids(decode_tasmota(fahrenheit.encode(), NOW, "Asia/Shanghai")) == [
        ("soil_temperature", 1764000000, 10.0)
    ]


@pytest.mark.parametrize(
    "payload,reason",
    [
        (b"", "malformed_json"),
        (b"\xff\xfe", "malformed_json"),
        (b'{"air_temperature": 1', "malformed_json"),
        (b'"text"', "bad_payload"),
        (b"{}", "bad_payload"),
        (b"[]", "bad_payload"),
        (b'{"air_temperature": "hot"}', "bad_payload"),
        (b'{"air_temperature": true}', "bad_payload"),
        (b'{"air_temperature": NaN}', "bad_payload"),
        (b'{"air_temperature": Infinity}', "bad_payload"),
        (b'{"wind": 3}', "unknown_metric"),
        (b'{"air_temperature": 70.1}', "out_of_range"),
        (b'{"air_temperature": -50.1}', "out_of_range"),
        (b'{"air_humidity": -1}', "out_of_range"),
        (b'{"ph": 15}', "out_of_range"),
        (b'{"ts": 1764003600, "co2": 400}', "future_timestamp"),
        (b'{"ts": 12, "co2": 400}', "bad_timestamp"),
        (b'{"ts": "2025-11-24T10:00:00", "co2": 400}', "bad_timestamp"),
        (b'{"ts": "yesterday", "co2": 400}', "bad_timestamp"),
        (b'[{"n": "temperature", "u": "Pa", "v": 1}]', "unknown_unit"),
        (b'[{"n": "windspeed", "v": 1}]', "unknown_metric"),
        (b'[{"n": "temperature", "vs": "warm"}]', "bad_payload"),
        (b'[{"n": "temperature", "v": 1, "foo_": 1}]', "bad_payload"),
        (b'[{"bt": 1764999999, "n": "temperature", "v": 1}]', "future_timestamp"),
        (b'[{"v": 1}]', "bad_payload"),
        (b"[1, 2]", "bad_payload"),
    ],
)
def test_bad_telemetry_reasons(payload, reason):
    assert reason_of(decode_telemetry, payload, NOW) == reason


def test_irrigation_messages():
    complete = decode_irrigation(
        b'{"start": 1763990000, "end": 1763990900, "zone": "A", "water_l": 400, "ec": 1.9, "ph": 6.2,'
        b' "fertilizer": {"tank_a": 1.5}}',
        NOW,
    )
    assert (complete.action, complete.started_at, complete.ended_at, complete.fertilizer) == (
        "complete",
        1763990000,
        1763990900,
        {"tank_a": 1.5},
    )
    assert decode_irrigation(b'{"action": "start", "ts": 1763990000}', NOW).started_at == 1763990000
    stop = decode_irrigation(b'{"action": "stop", "water_l": 12}', NOW)
    assert (stop.action, stop.ended_at, stop.started_at, stop.water_l) == ("stop", int(NOW), None, 12.0)
    assert reason_of(decode_irrigation, b'{"start": 1763990900, "end": 1763990000}', NOW) == "bad_timestamp"
    assert reason_of(decode_irrigation, b'{"action": "pause"}', NOW) == "bad_payload"
    assert reason_of(decode_irrigation, b'{"start": 1763990000}', NOW) == "bad_payload"
    assert reason_of(decode_irrigation, b'{"action": "start", "ph": 20}', NOW) == "out_of_range"
    assert (
        reason_of(decode_irrigation, b'{"action": "start", "fertilizer": {"a": -1}}', NOW) == "out_of_range"
    )


def test_status():
    assert decode_status(b"online") is True
    assert decode_status(b" OFFLINE\n") is False
    assert decode_status(b'{"status": "online"}') is True
    assert reason_of(decode_status, b"maybe") == "bad_payload"


# --- fuzzing: 10,000 inputs in all ----------------------------------------------------

# a device's sensor map, as the registry hands it to the ingester (names the fuzzer uses)
NAMES = sensor_names(
    {
        "urn:dev:x:temp": {"metric": "soil_temperature", "channel": "bed-1"},
        "n": {"metric": "ignore"},
        "AM2301.Temperature": {"metric": "air_temperature", "channel": "x"},
        "DS18B20.Humidity": {"metric": "ignore"},
    }
)
DECODERS = [
    lambda p: decode_telemetry(p, NOW),
    lambda p: decode_telemetry(p, NOW, NAMES, Counter()),
    lambda p: decode_tasmota(p, NOW, "Asia/Shanghai"),
    lambda p: decode_tasmota(p, NOW, "America/New_York", NAMES, Counter()),
    lambda p: decode_irrigation(p, NOW),
    decode_status,
]


def _survives(payload: bytes) -> None:
    for decode in DECODERS:
        try:
            result = decode(payload)
        except PayloadError as exc:
            assert exc.reason in {
                "malformed_json",
                "bad_payload",
                "unknown_metric",
                "unknown_unit",
                "out_of_range",
                "future_timestamp",
                "bad_timestamp",
            }
            continue
        if isinstance(result, list):  # readings: always in range, canonical, and not in the future
            for metric_id, channel, ts, us, value in result:
                metric = quantities.BY_ID[metric_id]
                assert metric.low <= value <= metric.high
                assert isinstance(ts, int) and ts <= NOW + 600
                assert isinstance(us, int) and 0 <= us < 1_000_000
                assert isinstance(channel, str) and len(channel) <= 64


# examples: three times the hypothesis profile's (each takes microseconds)
FUZZ = settings(
    max_examples=settings().max_examples * 3,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    database=None,
)


@FUZZ
@given(st.binary(max_size=300))
def test_random_bytes_crash_nothing(payload):
    _survives(payload)


json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(10**12), 10**12)
    | st.floats(allow_nan=True)
    | st.text(max_size=20)
)
keys = st.sampled_from(
    [
        "ts",
        "air_temperature",
        "air_humidity",
        "co2",
        "n",
        "v",
        "t",
        "u",
        "bn",
        "bt",
        "bu",
        "bv",
        "sensor",
        "Time",
        "ESP32",
        "ENERGY",
        "DS18B20-2",
        "AM2301",
        "DS18B20",
        "Temperature",
        "Humidity",
        "TempUnit",
        "action",
        "start",
        "end",
        "zone",
        "water_l",
        "fertilizer",
        "status",
        "vs",
        "x_",
    ]
) | st.text(max_size=8)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(keys, inner, max_size=3),
    max_leaves=4,
)
VALID = [
    {"ts": 1764000000, "air_temperature": 23.4, "air_humidity": 61.2},
    [
        {"bn": "urn:dev:x:", "bt": 1764000000, "bu": "Cel", "n": "temp", "v": 20},
        {"n": "humidity", "u": "%RH", "v": 5},
    ],
    {"Time": "2025-11-25T08:00:00", "AM2301": {"Temperature": 19.5, "Humidity": 70.1}, "TempUnit": "C"},
    {"action": "stop", "ts": 1764000000, "zone": "A", "water_l": 3, "fertilizer": {"a": 1}},
]


@st.composite
def mutated_json(draw):
    doc = json.loads(json.dumps(draw(st.sampled_from(VALID))))
    for _ in range(draw(st.integers(1, 4))):
        target = doc if isinstance(doc, dict) else draw(st.sampled_from(doc))
        if not isinstance(target, dict):
            break
        op = draw(st.sampled_from(["set", "delete", "replace_all"]))
        if op == "set":
            target[draw(keys)] = draw(json_values)
        elif op == "delete" and target:
            target.pop(draw(st.sampled_from(sorted(target))))
        elif op == "replace_all":
            doc = draw(json_values)
            break
    text = json.dumps(doc, allow_nan=True)
    if draw(st.booleans()):  # and sometimes damage the bytes too
        pos = draw(st.integers(0, max(len(text) - 1, 0)))
        text = text[:pos] + draw(st.text(max_size=3)) + text[pos + 1 :]
    return text.encode("utf-8", "surrogatepass")


@FUZZ
@given(mutated_json())
def test_mutated_json_crashes_nothing(payload):
    _survives(payload)


@pytest.mark.parametrize(
    "value",
    ["2025-11-25T00:10:00\u0000+08:00", "2025-11-25T08:00:00\u0000", "2025-11-25T08:00:00\u00a0+08:00"],
)
def test_a_time_with_a_stray_character_is_a_bad_timestamp_found_by_review(value):
    from iot.payloads import PayloadError, decode_tasmota, decode_telemetry

    with pytest.raises(PayloadError) as native:
        decode_telemetry(json.dumps({"ts": value, "co2": 500}).encode(), 1764000000.0)
    assert native.value.reason == "bad_timestamp"
    tasmota = {"Time": value, "AM2301": {"Temperature": 20}}
    with pytest.raises(PayloadError) as tele:
        decode_tasmota(json.dumps(tasmota).encode(), 1764000000.0, "Asia/Shanghai")
    assert tele.value.reason == "bad_timestamp"
