"""The crops the system knows: one catalogue of names, comfortable ranges, default alert
rules and a simulated climate, and the one rule that turns what people type into a crop.

Everything that depends on the crop asks here: a new greenhouse's default alert rules
(``iot.alerts``), the public trace page's "hours outside the comfortable range"
(``shop.trace``), the simulator and the demo history. ``crop_key("黄桃")``, ``"Peaches"``,
``" PEACH "`` and ``"peach"`` are all ``"peach"``; a crop nobody described is
``"default"``.

Sources: common protected-cultivation guidance for north China greenhouses (air
temperatures in °C, relative humidity in %, soil moisture in % volumetric water).
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

# (metric, kind, threshold, hysteresis, duration minutes, severity); rate rules use the
# duration as their window
RuleSpec = tuple[str | None, str, float | None, float, int, str]


@dataclass(frozen=True)
class Climate:
    """What the simulator makes of a crop's greenhouse."""

    night_c: float
    day_c: float
    peak_light_lx: float
    co2_ppm: float
    soil_start: float
    soil_max: float = 60.0


@dataclass(frozen=True)
class Crop:
    key: str
    names: tuple[str, ...]  # other names people use (Chinese, English plurals, varieties)
    comfort_min_c: float  # the comfortable air temperature range ...
    comfort_max_c: float
    humid_max: float  # ... and the humidity above which disease pressure rises
    rules: tuple[RuleSpec, ...] | None  # None: the default crop's rules
    climate: Climate | None = None  # None: the default crop's climate


# every greenhouse gets these whatever it grows
COMMON_RULES: tuple[RuleSpec, ...] = (
    (None, "offline", None, 0.0, 15, "warning"),
    ("air_temperature", "silent", None, 0.0, 30, "warning"),
    ("air_temperature", "rate", 8.0, 2.0, 60, "warning"),
)

CROPS: dict[str, Crop] = {
    c.key: c
    for c in (
        Crop(
            "peach",
            ("桃", "桃子", "黄桃", "油桃", "蟠桃", "yellow peach", "nectarine"),
            8.0,
            30.0,
            85.0,
            (
                ("air_temperature", "above", 32.0, 2.0, 15, "critical"),
                ("air_temperature", "below", 0.0, 1.0, 15, "critical"),
                ("air_humidity", "above", 85.0, 5.0, 60, "warning"),
                ("soil_moisture", "below", 55.0, 5.0, 60, "warning"),
            ),
            Climate(8.0, 24.0, 60000, 420, 32.0),
        ),
        Crop(
            "grape",
            ("葡萄", "巨峰", "阳光玫瑰"),
            10.0,
            32.0,
            85.0,
            (
                ("air_temperature", "above", 35.0, 2.0, 15, "critical"),
                ("air_temperature", "below", 0.0, 1.0, 15, "critical"),
                ("air_humidity", "above", 85.0, 5.0, 120, "warning"),  # downy mildew weather
                ("soil_moisture", "below", 50.0, 5.0, 60, "warning"),
            ),
            Climate(10.0, 28.0, 70000, 430, 30.0),
        ),
        Crop(
            "cucumber",
            ("黄瓜",),
            15.0,
            32.0,
            90.0,
            (
                ("air_temperature", "above", 35.0, 2.0, 15, "critical"),
                ("air_temperature", "below", 10.0, 1.5, 15, "critical"),
                ("air_humidity", "above", 90.0, 5.0, 120, "warning"),
                ("soil_moisture", "below", 60.0, 5.0, 60, "warning"),
                ("ec", "above", 3.0, 0.3, 30, "warning"),
            ),
            Climate(16.0, 30.0, 65000, 480, 38.0),
        ),
        Crop(
            "tomato",
            ("番茄", "西红柿", "樱桃番茄", "圣女果"),
            12.0,
            30.0,
            85.0,
            (
                ("air_temperature", "above", 32.0, 2.0, 15, "critical"),
                ("air_temperature", "below", 8.0, 1.5, 15, "critical"),
                ("air_humidity", "above", 85.0, 5.0, 120, "warning"),
                ("soil_moisture", "below", 55.0, 5.0, 60, "warning"),
                ("ec", "above", 4.0, 0.3, 30, "warning"),
            ),
        ),
        Crop(
            "strawberry",
            ("草莓",),
            8.0,
            28.0,
            85.0,
            (
                ("air_temperature", "above", 30.0, 2.0, 15, "critical"),
                ("air_temperature", "below", 5.0, 1.0, 15, "critical"),
                ("air_humidity", "above", 85.0, 5.0, 120, "warning"),
                ("soil_moisture", "below", 60.0, 5.0, 60, "warning"),
            ),
        ),
        Crop(
            "melon",
            ("甜瓜", "哈密瓜", "蜜瓜", "香瓜", "西瓜", "honey melon", "watermelon"),
            15.0,
            33.0,
            85.0,
            (
                ("air_temperature", "above", 38.0, 2.0, 15, "critical"),
                ("air_temperature", "below", 12.0, 1.5, 15, "critical"),
                ("air_humidity", "above", 85.0, 5.0, 120, "warning"),
                ("soil_moisture", "below", 50.0, 5.0, 60, "warning"),
            ),
            Climate(15.0, 32.0, 75000, 440, 28.0),
        ),
        Crop("pepper", ("辣椒", "青椒", "甜椒"), 15.0, 30.0, 85.0, None),
        Crop(
            "mushroom",
            ("蘑菇", "香菇", "平菇", "食用菌", "菌菇"),
            10.0,
            22.0,
            98.0,
            (
                ("air_temperature", "above", 24.0, 1.5, 30, "critical"),
                ("air_temperature", "below", 8.0, 1.0, 30, "warning"),
                ("air_humidity", "below", 80.0, 4.0, 30, "critical"),
                ("co2", "above", 1500.0, 200.0, 30, "warning"),
            ),
            Climate(14.0, 18.0, 300, 1200, 60.0, soil_max=75.0),
        ),
        Crop(
            "seedling",
            ("育苗", "秧苗", "苗"),
            15.0,
            30.0,
            85.0,
            (
                ("air_temperature", "above", 32.0, 1.5, 10, "critical"),
                ("air_temperature", "below", 15.0, 1.0, 10, "critical"),
                ("air_humidity", "below", 60.0, 5.0, 60, "warning"),
                ("soil_moisture", "below", 65.0, 5.0, 30, "warning"),
            ),
            Climate(18.0, 26.0, 30000, 500, 45.0),
        ),
        Crop(
            "default",
            (),
            10.0,
            30.0,
            85.0,
            (
                ("air_temperature", "above", 35.0, 2.0, 15, "critical"),
                ("air_temperature", "below", 5.0, 1.0, 15, "critical"),
                ("air_humidity", "above", 90.0, 5.0, 120, "warning"),
            ),
            Climate(12.0, 26.0, 50000, 450, 35.0),
        ),
    )
}
_ALIASES = {name.lower(): crop.key for crop in CROPS.values() for name in crop.names}


def crop_key(crop: str | None) -> str:
    """The catalogue key for what someone typed: aliases, case, full-width letters, spaces and
    English plurals are forgiven (``"Peaches"`` → ``"peach"``); unknown crops → ``"default"``."""
    key = " ".join(unicodedata.normalize("NFKC", crop or "").lower().split())
    key = _ALIASES.get(key, key)
    if key not in CROPS:
        for suffix, ending in (("ies", "y"), ("es", ""), ("s", "")):
            stem = key[: -len(suffix)] + ending
            if key.endswith(suffix) and (stem in CROPS or stem in _ALIASES):
                key = _ALIASES.get(stem, stem)
                break
    return key if key in CROPS else "default"


def get(crop: str | None) -> Crop:
    return CROPS[crop_key(crop)]


def comfort(crop: str | None) -> tuple[float, float, float]:
    """(min °C, max °C, max humidity %) for the crop."""
    c = get(crop)
    return c.comfort_min_c, c.comfort_max_c, c.humid_max


def rule_specs(crop: str | None) -> tuple[RuleSpec, ...]:
    """The crop's own default alert rules (the default crop's if it has none) and the common ones."""
    own = get(crop).rules
    return (own if own is not None else CROPS["default"].rules or ()) + COMMON_RULES


def climate(crop: str | None) -> Climate:
    found = get(crop).climate
    return found if found is not None else CROPS["default"].climate  # type: ignore[return-value]
