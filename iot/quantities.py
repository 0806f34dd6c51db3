"""The quantities a greenhouse reports (the "metrics" of readings, charts and the API): each
with its unit, a small stable integer id (stored in ``iot_readings.metric_id``) and a
physical range.

Ids are part of the stored data: never renumber or reuse one, only append.
Decoders map foreign names and units (SenML, Tasmota) onto these metrics here, so the
rest of the system only ever sees canonical names, ids and units.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Metric:
    id: int
    name: str
    unit: str  # the canonical unit values are stored in
    low: float  # physical range: values outside it are quarantined ("out_of_range")
    high: float
    label: str  # English label (wrap in _() when shown)
    senml_unit: str  # the SenML (RFC 8428 / 8798) unit of the canonical value


METRICS: tuple[Metric, ...] = (
    Metric(1, "air_temperature", "°C", -50.0, 70.0, "Air temperature", "Cel"),
    Metric(2, "air_humidity", "%", 0.0, 100.0, "Air humidity", "%RH"),
    Metric(3, "soil_moisture", "%", 0.0, 100.0, "Soil moisture", "%"),
    Metric(4, "soil_temperature", "°C", -30.0, 60.0, "Soil temperature", "Cel"),
    Metric(5, "co2", "ppm", 0.0, 10000.0, "CO₂", "ppm"),
    Metric(6, "light", "lx", 0.0, 200000.0, "Light", "lx"),
    Metric(7, "ec", "mS/cm", 0.0, 20.0, "EC (nutrient solution)", "mS/cm"),
    Metric(8, "ph", "pH", 0.0, 14.0, "pH (nutrient solution)", "pH"),
)

BY_NAME: dict[str, Metric] = {m.name: m for m in METRICS}
BY_ID: dict[int, Metric] = {m.id: m for m in METRICS}


def get(name_or_id: str | int) -> Metric:
    """The metric with this canonical name or id (KeyError if none)."""
    return BY_ID[name_or_id] if isinstance(name_or_id, int) else BY_NAME[name_or_id]


def in_range(metric: Metric, value: float) -> bool:
    return metric.low <= value <= metric.high


# --- SenML --------------------------------------------------------------------------
# SenML record names (the part after the base name's last ':' or '/', lower-cased) that
# mean a canonical metric. Canonical names themselves are always accepted.
SENML_NAMES: dict[str, str] = {
    "temperature": "air_temperature",
    "temp": "air_temperature",
    "air_temp": "air_temperature",
    "humidity": "air_humidity",
    "hum": "air_humidity",
    "rh": "air_humidity",
    "moisture": "soil_moisture",
    "soil_moist": "soil_moisture",
    "vwc": "soil_moisture",
    "soil_temp": "soil_temperature",
    "carbon_dioxide": "co2",
    "illuminance": "light",
    "lux": "light",
    "conductivity": "ec",
    "electrical_conductivity": "ec",
}
SENML_NAMES.update({m.name: m.name for m in METRICS})


def _identity(v: float) -> float:
    return v


# Accepted units per canonical metric, each with its conversion to the canonical unit.
# A record without a unit is taken to be in the canonical unit.
UNIT_CONVERSIONS: dict[str, dict[str, Callable[[float], float]]] = {
    "air_temperature": {"Cel": _identity, "K": lambda v: v - 273.15, "degF": lambda v: (v - 32.0) / 1.8},
    "soil_temperature": {"Cel": _identity, "K": lambda v: v - 273.15, "degF": lambda v: (v - 32.0) / 1.8},
    "air_humidity": {"%RH": _identity, "%": _identity},
    "soil_moisture": {"%": _identity, "%VWC": _identity, "%RH": _identity, "/": lambda v: v * 100.0},
    "co2": {"ppm": _identity},
    "light": {"lx": _identity},
    "ec": {"mS/cm": _identity, "S/m": lambda v: v * 10.0, "uS/cm": lambda v: v / 1000.0},
    "ph": {"pH": _identity},
}


def senml_metric(name: str) -> Metric | None:
    """The canonical metric for a SenML record name (base name already applied)."""
    key = name.lower()
    for sep in (":", "/"):
        if sep in key:
            key = key.rsplit(sep, 1)[1]
    canonical = SENML_NAMES.get(key)
    return BY_NAME[canonical] if canonical else None


def convert(metric: Metric, unit: str | None, value: float) -> float | None:
    """``value`` in ``unit`` converted to the metric's canonical unit; None if the unit is unknown."""
    if unit is None or unit == "" or unit == metric.unit:
        return value
    conv = UNIT_CONVERSIONS[metric.name].get(unit)
    return conv(value) if conv else None


# --- Tasmota ------------------------------------------------------------------------
# Keys inside a sensor driver's object (e.g. {"AM2301": {"Temperature": 23.4}}).
TASMOTA_KEYS: dict[str, str] = {
    "Temperature": "air_temperature",
    "Humidity": "air_humidity",
    "Illuminance": "light",
    "CarbonDioxide": "co2",
    "eCO2": "co2",
    "Moisture": "soil_moisture",
    "EC": "ec",
    "pH": "ph",
    "PH": "ph",
}
# Drivers whose temperature is the soil's (waterproof probes, capacitive soil sensors).
TASMOTA_SOIL_DRIVERS = ("DS18B20", "DS18S20", "SOIL", "CAPSOIL")
# Derived or unrelated values Tasmota reports alongside; ignored, not quarantined.
TASMOTA_IGNORED_KEYS = frozenset(
    {"DewPoint", "Id", "Pressure", "SeaPressure", "Gas", "Distance", "TVOC", "Illuminance2", "AbsHumidity"}
)
