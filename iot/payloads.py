"""Pure decoders for what greenhouses publish: topic -> kind, payload -> readings/events.

No database, no MQTT, no Flask: every function takes bytes (and the arrival time) and
returns plain values or raises ``PayloadError(reason, detail)``. Reasons are the
machine codes stored in the quarantine table (see ``REASONS``).

Formats (examples in docs/mqtt.md):
- native JSON object: ``{"ts": 1764000000, "air_temperature": 23.4}`` (``ts`` optional,
  epoch seconds or ISO 8601 with an offset)
- SenML pack (RFC 8428): a JSON array; ``bn``/``bt``/``bu``/``bv`` apply to later records,
  times below 2**28 are relative to now
- Tasmota ``tele/<device>/SENSOR``: readings nested under driver names, ``Time`` in local time
- irrigation: a complete event, or ``start``/``stop`` messages paired by the ingester
- status: ``online``/``offline``
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from core.clock import DEFAULT_TIMEZONE
from iot import quantities

MAX_FUTURE_S = 600  # a device clock may run ahead this much; beyond it: "future_timestamp"
MIN_TS = 946684800  # 2000-01-01: anything older is a device with an unset clock
SENML_RELATIVE_LIMIT = 2**28  # RFC 8428 4.5.3: smaller times are relative to now
MAX_PAYLOAD = 64 * 1024

REASONS = {
    "malformed_json": "Malformed JSON",
    "bad_payload": "Payload not understood",
    "unknown_metric": "Unknown metric",
    "unknown_unit": "Unknown unit",
    "out_of_range": "Value outside physical range",
    "future_timestamp": "Timestamp in the future",
    "bad_timestamp": "Invalid timestamp",
    "unknown_topic": "Unknown topic",
    "unknown_device": "Unknown device",
    "bad_device_id": "Device id not allowed",
    "unassigned_device": "Device not assigned to a greenhouse",
    "greenhouse_mismatch": "Device belongs to another greenhouse",
    "unmatched_stop": "Irrigation stop without start",
    "event_id_conflict": "Irrigation event id names another run",
    "store_error": "Could not be stored",
}


class PayloadError(ValueError):
    """A message that cannot be stored; ``reason`` is a key of ``REASONS``."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


# One reading: (metric_id, channel, ts, us, value). ``ts`` is epoch seconds UTC, ``us`` the
# microseconds within that second, ``channel`` the sensor on the device it came from ("" for
# a device's only sensor; the Tasmota driver, the SenML name's base part, the native
# ``sensor``), ``value`` in the metric's canonical unit. (device, metric, channel, ts, us)
# is a reading's identity: the unique key of ``iot_readings`` (docs/mqtt.md).
ReadingTuple = tuple[int, str, int, int, float]

# A device's own names for its sensors (``iot_devices.sensor_map``, edited in the device
# admin page and by ``flask iot device map``): a SenML record name (base name applied) or a
# Tasmota ``Driver.Key`` -> (canonical metric name or ``IGNORE``, channel or None). None:
# the SenML name itself, or the Tasmota driver, is the channel.
SensorMap = Mapping[str, tuple[str, str | None]]
IGNORE = "ignore"

# Why a reading was left out of a message that was otherwise stored (``BatchResult.dropped``)
DROP_REASONS = {
    "chip_sensor": "Chip temperature (not greenhouse air)",
    "unknown_sensor": "Unknown sensor key",
    "ignored_by_map": "Ignored by the device's sensor names",
    "repeat_in_message": "Same metric, sensor and time twice in one message",
    # a reading with the identity of one already stored (or earlier in the batch) but another
    # value: not a redelivery (that has the same value), and only one can be kept
    "conflicting_value": "Another value for a reading already stored (same sensor and time)",
}

CHANNEL_MAX = 64
CHANNEL_RE = re.compile(r"[A-Za-z0-9_.:/-]{1,64}")  # what an admin may name a channel
SOURCE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:/-]{0,119}")  # a SenML name (RFC 8428 4.5.1) or Driver.Key
_CHANNEL_BAD = re.compile(r"[^A-Za-z0-9_.:/-]")
# Tasmota's own chip: its temperature is the board's, not the greenhouse's air
TASMOTA_CHIP_DRIVERS = ("ESP32", "ESP8266")


def channel_name(text: str) -> str:
    """A device-given sensor name as a stored channel: kept if it is short and plain, else
    made plain and short with a hash of the original, so distinct names stay distinct."""
    return _channel_name(text) if len(text) <= _CACHED_NAME else _shorten(text)


_CACHED_NAME = 200  # longer names are not cached (a hostile device must not fill memory)


@functools.lru_cache(maxsize=4096)
def _channel_name(text: str) -> str:
    if not text or (len(text) <= CHANNEL_MAX and CHANNEL_RE.fullmatch(text)):
        return text
    return _shorten(text)


def _shorten(text: str) -> str:
    digest = hashlib.sha1(text.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    return _CHANNEL_BAD.sub("_", text)[: CHANNEL_MAX - 9] + "~" + digest


@dataclass(frozen=True)
class Topic:
    kind: str  # telemetry | irrigation | status | tasmota
    device: str
    greenhouse: str | None = None  # None for Tasmota topics


@dataclass
class IrrigationMsg:
    """One irrigation message. ``event_id`` is the controller's id of the run (the same in its
    start and its stop); ``started_at`` in a stop is the start it names (``"start"``)."""

    action: str  # complete | start | stop
    event_id: str | None = None
    started_at: int | None = None
    ended_at: int | None = None
    zone: str | None = None
    water_l: float | None = None
    ec: float | None = None
    ph: float | None = None
    fertilizer: dict[str, float] | None = field(default=None)


# What a greenhouse code and a device id may be: usable as one MQTT topic level, in the
# broker's password and ACL files, and in a spreadsheet cell. The registry checks them when
# they are registered, ``parse_topic`` when a topic names them (so a device auto-provisioned
# from its topic passes the very same check).
CODE_RE = re.compile(r"[A-Za-z0-9_.-]{1,40}")
DEVICE_RE = re.compile(r"[A-Za-z0-9_.-]{1,80}")


def valid_device_id(device_id: str) -> bool:
    return DEVICE_RE.fullmatch(device_id) is not None


def parse_topic(topic: str, prefix: str = "farm", tasmota_prefix: str = "tele") -> Topic:
    """The kind, device and greenhouse a topic names; ``PayloadError`` ``unknown_topic`` for a
    topic of no known shape, ``bad_device_id`` for a device id the registry would refuse."""
    parts = topic.split("/")
    if (
        len(parts) == 4
        and parts[0] == prefix
        and parts[3] in ("telemetry", "irrigation", "status")
        and parts[1]
        and parts[2]
    ):
        parsed = Topic(parts[3], parts[2], parts[1])
    elif len(parts) == 3 and parts[0] == tasmota_prefix and parts[2] == "SENSOR" and parts[1]:
        parsed = Topic("tasmota", parts[1])
    else:
        raise PayloadError("unknown_topic", topic[:200])
    if not valid_device_id(parsed.device):
        raise PayloadError("bad_device_id", parsed.device[:80])
    return parsed


# --- helpers ------------------------------------------------------------------------

# what an ISO 8601 time may contain: Python's fromisoformat alone also took a NUL inside one
_ISO_CHARS = re.compile(r"[0-9][0-9T:+.,Z -]{0,39}")


def _iso(value: str) -> datetime:
    """``datetime.fromisoformat`` for text of ISO 8601's characters only; ``bad_timestamp``
    otherwise."""
    if _ISO_CHARS.fullmatch(value) is None:
        raise PayloadError("bad_timestamp", f"not ISO 8601: {value[:40]!r}")
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise PayloadError("bad_timestamp", f"not ISO 8601: {value[:40]!r}") from None


def _json(payload: bytes) -> Any:
    if len(payload) > MAX_PAYLOAD:
        raise PayloadError("bad_payload", f"payload larger than {MAX_PAYLOAD} bytes")
    try:
        return json.loads(payload.decode() if isinstance(payload, bytes | bytearray) else payload)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise PayloadError("malformed_json", str(exc)[:200]) from None


def _number(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PayloadError("bad_payload", f"{what} is not a number")
    number = float(value)
    if not math.isfinite(number):
        raise PayloadError("bad_payload", f"{what} is not a finite number")
    return number


def _checked(ts: float, now: float) -> float:
    if not math.isfinite(ts) or ts < MIN_TS:
        raise PayloadError("bad_timestamp", f"timestamp {ts!r} before 2000")
    if ts > now + MAX_FUTURE_S:
        raise PayloadError("future_timestamp", f"timestamp {int(ts)} is {int(ts - now)} s ahead")
    return ts


def split_time(t: float) -> tuple[int, int]:
    """Epoch seconds (float) -> (whole seconds, microseconds within them)."""
    micro = round(t * 1_000_000)
    return micro // 1_000_000, micro % 1_000_000


def _ts_value(value: object, now: float) -> float:
    """Epoch seconds (number) or ISO 8601 with an offset -> checked epoch seconds, fraction kept."""
    if isinstance(value, str):
        dt = _iso(value)
        if dt.tzinfo is None:
            raise PayloadError("bad_timestamp", "ISO 8601 time needs an offset, e.g. +08:00")
        try:
            return _checked(dt.timestamp(), now)
        except OverflowError:
            raise PayloadError("bad_timestamp", "out of range") from None
    return _checked(_number(value, "ts"), now)


def parse_ts(value: object, now: float) -> int:
    """Epoch seconds (number) or ISO 8601 with an offset -> checked whole epoch seconds."""
    return int(_ts_value(value, now))


def _reading(metric: quantities.Metric, channel: str, t: float, value: float) -> ReadingTuple:
    if not (metric.low <= value <= metric.high):
        raise PayloadError(
            "out_of_range", f"{metric.name}={value:g} outside {metric.low:g}..{metric.high:g} {metric.unit}"
        )
    ts, us = split_time(t)
    return (metric.id, channel, ts, us, value)


# --- telemetry ----------------------------------------------------------------------


def decode_telemetry(
    payload: bytes, now: float, names: SensorMap | None = None, dropped: Counter[str] | None = None
) -> list[ReadingTuple]:
    """A native JSON object or a SenML pack -> readings. ``names``: the device's sensor map;
    readings left out of a stored message are counted by reason in ``dropped``."""
    data = _json(payload)
    if isinstance(data, dict):
        return decode_native(data, now)
    if isinstance(data, list):
        return decode_senml(data, now, names, dropped)
    raise PayloadError("bad_payload", "expected a JSON object or a SenML array")


_BY_NAME = quantities.BY_NAME


def decode_native(data: dict[str, Any], now: float) -> list[ReadingTuple]:
    """``{"ts": ..., "sensor": "probe-2", "<metric>": value, ...}``; ``ts`` (fraction kept) and
    ``sensor`` (the channel) are optional; without ``ts`` the reading has the arrival time."""
    ts, us = split_time(_ts_value(data["ts"], now) if "ts" in data else now)
    channel = data.get("sensor", "")
    if channel.__class__ is not str or (channel and not CHANNEL_RE.fullmatch(channel)):
        raise PayloadError("bad_payload", "sensor must be 1-64 letters, digits or _ . : / -")
    out: list[ReadingTuple] = []
    for key, value in data.items():
        if key == "ts" or key == "sensor":
            continue
        metric = _BY_NAME.get(key)
        if metric is None:
            raise PayloadError("unknown_metric", str(key)[:60])
        if value.__class__ is not float and value.__class__ is not int:  # fast path for the common case
            value = _number(value, key)
        elif value != value or value in (math.inf, -math.inf):
            raise PayloadError("bad_payload", f"{key} is not a finite number")
        if not (metric.low <= value <= metric.high):
            _reading(metric, channel, now, value)  # raises out_of_range
        out.append((metric.id, channel, ts, us, float(value)))
    if not out:
        raise PayloadError("bad_payload", "no readings in message")
    return out


def _senml_channel(name: str) -> str:
    """The channel of an unmapped SenML name: what comes before its last ':' or '/' (usually the
    base name, e.g. ``urn:dev:ow:10e2073a01080063``), "" for a bare ``temperature``."""
    return _senml_channel_cached(name) if len(name) <= _CACHED_NAME else _senml_prefix(name)


@functools.lru_cache(maxsize=4096)
def _senml_channel_cached(name: str) -> str:
    return _senml_prefix(name)


def _senml_prefix(name: str) -> str:
    cut = max(name.rfind(":"), name.rfind("/"))
    return channel_name(name[:cut].rstrip(":/")) if cut > 0 else ""


def decode_senml(
    records: list[Any], now: float, names: SensorMap | None = None, dropped: Counter[str] | None = None
) -> list[ReadingTuple]:
    """Resolve a SenML pack (RFC 8428 section 4.6) into canonical readings."""
    if not records:
        raise PayloadError("bad_payload", "empty SenML pack")
    bn, bt, bu, bv = "", 0.0, None, 0.0
    out: list[ReadingTuple] = []
    ignored = repeats = 0
    seen: set[tuple[int, str, int, int]] = set()
    for rec in records:
        if not isinstance(rec, dict):
            raise PayloadError("bad_payload", "SenML record is not an object")
        for key in rec:
            if isinstance(key, str) and key.endswith("_"):
                raise PayloadError("bad_payload", f"SenML must-understand field {key[:40]!r}")
        if "bn" in rec:
            if not isinstance(rec["bn"], str):
                raise PayloadError("bad_payload", "bn is not a string")
            bn = rec["bn"]
        if "bt" in rec:
            bt = _number(rec["bt"], "bt")
        if "bu" in rec:
            if not isinstance(rec["bu"], str):
                raise PayloadError("bad_payload", "bu is not a string")
            bu = rec["bu"]
        if "bv" in rec:
            bv = _number(rec["bv"], "bv")
        if "v" not in rec:
            if any(k in rec for k in ("vs", "vb", "vd", "s")):
                raise PayloadError("bad_payload", "only numeric SenML values (v) are supported")
            if "n" in rec:
                raise PayloadError("bad_payload", "SenML record without a value")
            continue  # a record that only sets base fields
        name = rec.get("n", "")
        if not isinstance(name, str):
            raise PayloadError("bad_payload", "n is not a string")
        name = bn + name
        if not name:
            raise PayloadError("bad_payload", "SenML record without a name")
        mapped = names.get(name) if names else None
        if mapped is not None:
            if mapped[0] == IGNORE:
                ignored += 1
                continue
            metric = quantities.BY_NAME[mapped[0]]
            channel = mapped[1] if mapped[1] is not None else channel_name(name)
        else:
            found = quantities.senml_metric(name)
            if found is None:
                raise PayloadError("unknown_metric", name[:60])
            metric, channel = found, _senml_channel(name)
        unit = rec.get("u", bu)
        if unit is not None and not isinstance(unit, str):
            raise PayloadError("bad_payload", "u is not a string")
        value = bv + _number(rec["v"], "v")
        converted = quantities.convert(metric, unit, value)
        if converted is None:
            raise PayloadError("unknown_unit", f"{name[:40]} in {unit!r}"[:80])
        t = bt + (_number(rec["t"], "t") if "t" in rec else 0.0)
        if not math.isfinite(t):
            raise PayloadError("bad_timestamp", "time is not finite")
        if t < SENML_RELATIVE_LIMIT:
            t = now + t  # relative time (usually 0 or negative: "that many seconds ago")
        reading = _reading(metric, channel, _checked(t, now), converted)
        identity = reading[:4]  # metric, channel, ts, us
        if identity in seen:  # one pack giving one reading twice: the first is kept
            repeats += 1
            continue
        seen.add(identity)
        out.append(reading)
    if not out:
        raise PayloadError("bad_payload", "no readings in SenML pack")
    if dropped is not None and (ignored or repeats):
        if ignored:
            dropped["ignored_by_map"] += ignored
        if repeats:
            dropped["repeat_in_message"] += repeats
    return out


def tasmota_time(raw: str, timezone: str, now: float) -> float:
    """Tasmota's ``Time`` (local wall clock, no offset) -> epoch seconds in ``timezone``.

    A wall clock time the zone has twice (the hour repeated when summer time ends) or not at
    all (the hour skipped when it starts) is ambiguous: of the two readings of it (``fold`` 0
    and 1) the one nearest to the arrival time is taken, as long as it is not in the future
    (a sensor reports what it has just measured). A message delayed by more than half an
    hour inside such an hour may therefore land an hour off; zones without summer time (all
    of China) are never ambiguous."""
    if len(raw) > 40:  # no ISO 8601 time is longer (and nothing that long is cached)
        raise PayloadError("bad_timestamp", f"not ISO 8601: {raw[:40]!r}")
    first, second = _wall_clock(raw, timezone)
    if first != second:
        candidates = [t for t in (first, second) if t <= now + MAX_FUTURE_S] or [min(first, second)]
        first = min(candidates, key=lambda t: abs(t - now))
    return _checked(first, now)


@functools.lru_cache(maxsize=4096)  # many devices report the same second
def _wall_clock(raw: str, timezone: str) -> tuple[float, float]:
    """The two readings (fold 0 and 1) of a wall clock time in ``timezone``: equal but for
    the hour a zone has twice or skips. Raises ``PayloadError`` (which is not cached)."""
    local = _iso(raw)
    try:
        if local.tzinfo is not None:
            t = local.timestamp()
            return t, t
        zone = ZoneInfo(timezone)
        return local.replace(tzinfo=zone, fold=0).timestamp(), local.replace(tzinfo=zone, fold=1).timestamp()
    except OverflowError:
        raise PayloadError("bad_timestamp", "out of range") from None


def decode_tasmota(
    payload: bytes,
    now: float,
    timezone: str = DEFAULT_TIMEZONE,
    names: SensorMap | None = None,
    dropped: Counter[str] | None = None,
) -> list[ReadingTuple]:
    """Tasmota's tele/<device>/SENSOR: ``Time`` is local time of ``timezone`` without offset.

    Each driver (``AM2301``, ``BME280``, ``DS18B20-1`` ...) is a channel. The chip's own
    temperature (``ESP32``) and keys no one knows (``ENERGY``, ``ANALOG`` ... unless the
    device's sensor map names them) are left out and counted in ``dropped``; a message
    with nothing usable is refused."""
    data = _json(payload)
    if not isinstance(data, dict):
        raise PayloadError("bad_payload", "expected a JSON object")
    t = now
    if "Time" in data:
        raw = data["Time"]
        if not isinstance(raw, str):
            raise PayloadError("bad_timestamp", "Time is not a string")
        t = tasmota_time(raw, timezone, now)
    fahrenheit = data.get("TempUnit") == "F"
    ts, us = split_time(t)
    out: list[ReadingTuple] = []
    skipped: Counter[str] = Counter()
    unknown: list[str] = []
    seen: set[tuple[int, str]] = set()
    for driver, values in data.items():
        if not isinstance(values, dict):
            continue  # Time, TempUnit, PressureUnit, Epoch...
        upper = str(driver).upper()
        soil = upper.startswith(quantities.TASMOTA_SOIL_DRIVERS)
        chip = upper.startswith(TASMOTA_CHIP_DRIVERS)
        channel = channel_name(str(driver))
        for key, value in values.items():
            mapped = names.get(f"{driver}.{key}") if names else None
            if mapped is not None:
                if mapped[0] == IGNORE:
                    skipped["ignored_by_map"] += 1
                    continue
                name = mapped[0]
                reading_channel = mapped[1] if mapped[1] is not None else channel
            else:
                if key in quantities.TASMOTA_IGNORED_KEYS:
                    continue
                if chip:
                    skipped["chip_sensor"] += 1
                    continue
                found = quantities.TASMOTA_KEYS.get(key)
                if found is None:
                    skipped["unknown_sensor"] += 1
                    unknown.append(f"{driver}.{key}")
                    continue
                name, reading_channel = found, channel
                if soil and name == "air_temperature":
                    name = "soil_temperature"
                if soil and name == "air_humidity":
                    name = "soil_moisture"
            value = _number(value, f"{driver}.{key}")
            metric = quantities.BY_NAME[name]
            if fahrenheit and metric.unit == "°C":
                value = (value - 32.0) / 1.8
            if not (metric.low <= value <= metric.high):
                _reading(metric, reading_channel, t, value)  # raises out_of_range
            if (metric.id, reading_channel) in seen:  # e.g. CarbonDioxide and eCO2 of one driver
                skipped["repeat_in_message"] += 1
                continue
            seen.add((metric.id, reading_channel))
            out.append((metric.id, reading_channel, ts, us, value))
    if not out:
        if unknown:
            raise PayloadError("unknown_metric", ", ".join(unknown)[:60])
        if skipped:
            only = ", ".join(sorted(skipped))
            raise PayloadError("bad_payload", f"no greenhouse sensor readings (only {only})")
        raise PayloadError("bad_payload", "no sensor readings in Tasmota message")
    if dropped is not None:
        dropped.update(skipped)
    return out


# --- irrigation and status ----------------------------------------------------------


def _opt_number(data: dict[str, Any], key: str, low: float, high: float) -> float | None:
    if data.get(key) is None:
        return None
    value = _number(data[key], key)
    if not (low <= value <= high):
        raise PayloadError("out_of_range", f"{key}={value:g} outside {low:g}..{high:g}")
    return value


# what an irrigation event id may be: printable, one token (a counter, a UUID, "A-20251125-0600")
EVENT_ID_RE = re.compile(r"[A-Za-z0-9_.:-]{1,64}")


def _event_id(data: dict[str, Any]) -> str | None:
    raw = data.get("event_id")
    if raw is None:
        return None
    if isinstance(raw, bool) or not isinstance(raw, str | int):
        raise PayloadError("bad_payload", "event_id must be a string or a whole number")
    text = str(raw)
    if EVENT_ID_RE.fullmatch(text) is None:
        raise PayloadError("bad_payload", "event_id must be 1 to 64 letters, digits or _ . : -")
    return text


def decode_irrigation(payload: bytes, now: float) -> IrrigationMsg:
    data = _json(payload)
    if not isinstance(data, dict):
        raise PayloadError("bad_payload", "expected a JSON object")
    action = data.get("action", "complete")
    if action not in ("complete", "start", "stop"):
        raise PayloadError("bad_payload", "action must be complete, start or stop")
    event_id = _event_id(data)
    zone = data.get("zone")
    if zone is not None:
        if not isinstance(zone, str | int) or isinstance(zone, bool):
            raise PayloadError("bad_payload", "zone is not a string")
        zone = str(zone)[:40]
    fertilizer = data.get("fertilizer")
    if fertilizer is not None:
        if not isinstance(fertilizer, dict) or len(fertilizer) > 16:
            raise PayloadError("bad_payload", "fertilizer must be an object of tank: amount (at most 16)")
        fertilizer = {str(k)[:40]: _number(v, f"fertilizer.{k}") for k, v in fertilizer.items()}
        if any(v < 0 or v > 100000 for v in fertilizer.values()):
            raise PayloadError("out_of_range", "fertilizer amount outside 0..100000")
    msg = IrrigationMsg(
        action=action,
        event_id=event_id,
        zone=zone,
        water_l=_opt_number(data, "water_l", 0.0, 1_000_000.0),
        ec=_opt_number(data, "ec", quantities.BY_NAME["ec"].low, quantities.BY_NAME["ec"].high),
        ph=_opt_number(data, "ph", quantities.BY_NAME["ph"].low, quantities.BY_NAME["ph"].high),
        fertilizer=fertilizer,
    )
    if action == "complete":
        if "start" not in data or "end" not in data:
            raise PayloadError("bad_payload", "a complete irrigation event needs start and end")
        msg.started_at = parse_ts(data["start"], now)
        msg.ended_at = parse_ts(data["end"], now)
        if msg.ended_at < msg.started_at:
            raise PayloadError("bad_timestamp", "end before start")
    elif action == "start":
        msg.started_at = parse_ts(data["ts"], now) if "ts" in data else int(now)
    else:
        msg.ended_at = parse_ts(data["ts"], now) if "ts" in data else int(now)
        if "start" in data:
            msg.started_at = parse_ts(data["start"], now)
            if msg.ended_at < msg.started_at:
                raise PayloadError("bad_timestamp", "stop before the start it names")
    return msg


def decode_status(payload: bytes) -> bool:
    """``online``/``offline`` (plain text or ``{"status": ...}``) -> True/False."""
    text = payload[:200].decode("utf-8", "replace").strip().strip('"').lower()
    if text.startswith("{"):
        data = _json(payload)
        text = str(data.get("status", "")).lower() if isinstance(data, dict) else ""
    if text in ("online", "1", "true"):
        return True
    if text in ("offline", "0", "false"):
        return False
    raise PayloadError("bad_payload", "status must be online or offline")
