"""One crop rule: every part of the system reads a crop name the same way."""

from __future__ import annotations

import pytest

from iot import alerts, crops


@pytest.mark.parametrize(
    ("typed", "key"),
    [
        ("黄桃", "peach"),  # was "default" for alerts, "peach" for the trace page
        ("西瓜", "melon"),  # was "melon" for alerts, "default" for the trace page
        ("Peaches", "peach"),
        (" PEACH ", "peach"),
        ("ｐｅａｃｈ", "peach"),  # full-width letters from a Chinese keyboard
        ("strawberries", "strawberry"),
        ("Tomatoes", "tomato"),
        ("grapes", "grape"),
        ("香菇", "mushroom"),
        ("Yellow  Peach", "peach"),
        ("辣椒", "pepper"),
        ("dragon fruit", "default"),
        ("", "default"),
        (None, "default"),
    ],
)
def test_one_normalisation(typed, key):
    assert crops.crop_key(typed) == key


def test_alert_rules_and_comfort_come_from_the_same_crop():
    # the trace page's comfortable range and a new greenhouse's alert rules agree on the crop
    for typed in ("黄桃", "西瓜", "Peaches"):
        key = crops.crop_key(typed)
        specs = alerts.default_rules(typed)
        expected = crops.rule_specs(key)
        assert [(s["kind"], s["threshold"]) for s in specs] == [(k, t) for _m, k, t, *_ in expected]
        assert crops.comfort(typed) == crops.comfort(key)
    # a crop without rules of its own gets the default crop's, plus the common ones
    assert crops.rule_specs("pepper") == crops.CROPS["default"].rules + crops.COMMON_RULES
    assert crops.comfort("pepper") == (15.0, 30.0, 85.0)


def test_every_crop_has_a_climate_for_the_simulator():
    for key in crops.CROPS:
        climate = crops.climate(key)
        assert climate.night_c < climate.day_c
