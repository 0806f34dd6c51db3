"""Demo data for the iot domain: six greenhouses of the demo farmers, each with three
sensors (one per payload format: native JSON, SenML, Tasmota) and a fertigation
controller. ``flask iot simulate`` (started by ``make demo``) then publishes their data.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from iot import registry

# code, name, crop, area m², owner username
GREENHOUSES = [
    ("ZZ-PEACH-1", "黄桃 1 号棚", "peach", 800.0, "zhaolin"),
    ("ZZ-GRAPE-1", "葡萄 1 号棚", "grape", 1000.0, "zhaolin"),
    ("ZZ-CUKE-1", "黄瓜 1 号棚", "cucumber", 600.0, "wangfang"),
    ("ZZ-SEED-1", "育苗棚", "seedling", 400.0, "wangfang"),
    ("ZZ-MUSH-1", "香菇棚", "mushroom", 300.0, "liqiang"),
    ("ZZ-MELON-1", "甜瓜 1 号棚", "melon", 900.0, "liqiang"),
]


def seed(session: Session, ctx: dict[str, Any]) -> None:
    """Create the demo greenhouses and devices; adds ``ctx["greenhouses"]`` (code -> Greenhouse)."""
    users = ctx.get("users", {})
    ctx["greenhouses"] = {}
    for code, name, crop, area, owner in GREENHOUSES:
        gh = registry.create_greenhouse(session, code, name, owner=users.get(owner), crop=crop, area_m2=area)
        slug = code.lower()
        for n in (1, 2, 3):
            registry.create_device(session, f"{slug}-s{n}", gh, kind="sensor", name=f"Sensor {n}")
        registry.create_device(session, f"{slug}-ctl", gh, kind="controller", name="Fertigation controller")
        ctx["greenhouses"][code] = gh


def seed_history(session: Session, ctx: dict[str, Any]) -> None:
    """Two weeks of readings and fertigation, so charts and summaries are alive at once."""
    from iot.history import backfill_demo_history

    backfill_demo_history(session, days=14)
