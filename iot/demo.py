"""Demo data for the iot domain: six greenhouses of the demo farmers, each with three
sensors (one per payload format: native JSON, SenML, Tasmota) and a fertigation
controller, and about two weeks of plausible history for them, so charts, rollups and
irrigation summaries look alive on a fresh demo. ``python -m iot.simulate`` (started by
``make demo``) then publishes their live data.

``seed`` and ``seed_history`` are called by ``flask demo seed``;
``backfill_demo_history(session, days=14)`` also by ``flask iot data backfill-demo``.
Nothing here commits.
"""

from __future__ import annotations

import math
import random
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from core import clock
from iot import broker_access, crops, payloads, quantities, registry
from iot.alerts import ensure_default_rules
from iot.models import Device, Greenhouse, IrrigationEvent, Reading
from iot.rollups import HOUR, apply_readings

# code, name, crop, area m², owner username
GREENHOUSES = [
    ("ZZ-PEACH-1", "黄桃 1 号棚", "peach", 800.0, "zhaolin"),
    ("ZZ-GRAPE-1", "葡萄 1 号棚", "grape", 1000.0, "zhaolin"),
    ("ZZ-CUKE-1", "黄瓜 1 号棚", "cucumber", 600.0, "wangfang"),
    ("ZZ-SEED-1", "育苗棚", "seedling", 400.0, "wangfang"),
    ("ZZ-MUSH-1", "香菇棚", "mushroom", 300.0, "liqiang"),
    ("ZZ-MELON-1", "甜瓜 1 号棚", "melon", 900.0, "liqiang"),
]


DEMO_BROKER_USERS = (
    ("tianyuan-ingester", "ingester"),
    ("tianyuan-alerts", "publisher"),
    ("tianyuan-simulator", "simulator"),
)


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
    # the services' broker logins, as production has them (`flask iot broker user list`; the
    # demo's own broker is anonymous, so their passwords are not needed and not printed)
    for username, role in DEMO_BROKER_USERS:
        broker_access.add_service_user(session, username, role)


def seed_history(session: Session, ctx: dict[str, Any]) -> None:
    """Two weeks of readings and fertigation, so charts and summaries are alive at once; and a
    stray sensor's message in the quarantine (its id breaks the registry's format, so it was
    neither stored nor auto-provisioned: the admin's quarantine page says why)."""
    backfill_demo_history(session, days=14)
    seed_quarantine(session)


STRAY = ("farm/ZZ-PEACH-1/温室探头 2/telemetry", b'{"air_temperature": 24.1}')
# a controller that dumped its log as telemetry: far larger than any payload the ingester reads
DUMP = ("farm/ZZ-GRAPE-1/zz-grape-1-ctl/telemetry", b'{"log": "' + b"boot ok; " * 20_000 + b'"}')


def seed_quarantine(session: Session) -> None:
    """What the ingester quarantines, as it does (``iot.ingest.writer.quarantine``): the message a
    stray sensor sent three times (one row, seen 3 times), and a payload too large to read
    (kept cut, with its original size and SHA-256)."""
    from iot.ingest.writer import Message, quarantine

    now = clock.now().timestamp()
    topic, payload = STRAY
    try:
        payloads.parse_topic(topic)
    except payloads.PayloadError as exc:
        stray = [(Message(topic, payload, now - 600 * k), exc.reason, exc.detail) for k in (3, 2, 1)]
        quarantine(session, stray)
    topic, payload = DUMP
    detail = f"payload of {len(payload)} bytes is too large"
    quarantine(session, [(Message(topic, payload, now - 300), "bad_payload", detail)], max_bytes=4096)


# --- history ---------------------------------------------------------------------

STEP = 600  # one reading per metric every 10 minutes
IRRIGATION_SECONDS = (7 * HOUR, 16 * HOUR)  # local 07:00 and 16:00


def _local_seconds(ts: int) -> int:
    """Seconds since local midnight."""
    return ts - clock.day_bucket(ts)


def _local_hour(ts: int) -> float:
    return _local_seconds(ts) / 3600


def _device(session: Session, gh: Greenhouse, kind: str) -> Device:
    devices = list(session.scalars(select(Device).where(Device.greenhouse_id == gh.id).order_by(Device.id)))
    for d in devices:
        if d.kind == kind:
            return d
    if devices:
        return devices[0]
    dev = Device(device_id=f"{gh.code}-hist", greenhouse_id=gh.id, kind="sensor", name="history")
    session.add(dev)
    session.flush()
    return dev


def backfill_demo_history(session: Session, days: int = 14, now: int | None = None, seed: int = 7) -> int:
    """Generate readings every 10 minutes and two fertigations a day; returns readings added."""
    now = clock.now_ts() if now is None else now
    end = now - now % STEP - STEP
    start = end - days * 86400
    total = 0
    for gh in session.scalars(select(Greenhouse).order_by(Greenhouse.id)):
        has_old = session.scalar(
            select(Reading.id).where(Reading.greenhouse_id == gh.id, Reading.ts < now - 86400).limit(1)
        )
        if has_old:
            continue
        rng = random.Random(f"{seed}-{gh.code}")
        sensor = _device(session, gh, "sensor")
        controller = _device(session, gh, "controller")
        mushroom = crops.crop_key(gh.crop) == "mushroom"
        area = gh.area_m2 or 500.0
        rows: list[dict] = []
        events: list[dict] = []
        moisture = 62.0
        temp_bias = rng.uniform(-1.5, 1.5)
        for ts in range(start, end, STEP):
            h = _local_hour(ts)
            sun = max(0.0, math.sin((h - 6) / 12 * math.pi))  # 06:00–18:00
            day_temp = math.cos((h - 14) / 24 * 2 * math.pi)  # max at 14:00
            weather = math.sin(ts / (3.3 * 86400) * 2 * math.pi)
            if mushroom:
                air = 16 + 1.5 * day_temp + 0.8 * weather
                hum = 90 - 3 * day_temp + rng.gauss(0, 0.8)
                light = 40 * sun
                co2 = 1100 - 250 * sun + rng.gauss(0, 40)
            else:
                air = 18 + temp_bias + 8 * day_temp + 2.5 * weather + rng.gauss(0, 0.3)
                hum = 75 - 18 * day_temp + rng.gauss(0, 1.5)
                light = 45000 * sun * (0.75 + 0.25 * weather) + rng.uniform(0, 300) * sun
                co2 = 700 - 300 * sun + rng.gauss(0, 20)
            # soil dries through the day and jumps after each irrigation
            moisture -= (0.12 + 0.25 * sun) * STEP / 3600
            if _local_seconds(ts) in IRRIGATION_SECONDS:
                water = area * rng.uniform(0.45, 0.6)
                ec = round(rng.uniform(1.6, 2.2), 2)
                events.append(
                    dict(
                        device_id=controller.id,
                        greenhouse_id=gh.id,
                        event_id=f"1-{ts}",  # as the simulator's controllers name their runs
                        zone="1",
                        started_at=ts,
                        ended_at=ts + 20 * 60,
                        water_l=round(water, 1),
                        ec=ec,
                        ph=round(rng.uniform(5.9, 6.4), 2),
                        fertilizer={"A": round(water * 0.002, 2), "B": round(water * 0.0015, 2)},
                    )
                )
                moisture = min(moisture + 9 + rng.uniform(-1, 1), 78)
            values = {
                "air_temperature": air,
                "air_humidity": min(max(hum, 20), 99),
                "soil_moisture": max(moisture, 20),
                "soil_temperature": 17 + 2.5 * math.cos((h - 16) / 24 * 2 * math.pi) + 0.5 * weather,
                "co2": max(co2, 300),
                "light": max(light, 0),
                "ec": 1.9 + 0.15 * math.sin(ts / 40000) + rng.gauss(0, 0.03),
                "ph": 6.2 + 0.1 * math.sin(ts / 50000) + rng.gauss(0, 0.02),
            }
            if rng.random() < 0.003:  # an occasional gap, as real sensors have
                continue
            for name, v in values.items():
                rows.append(
                    {
                        "greenhouse_id": gh.id,
                        "metric_id": quantities.BY_NAME[name].id,
                        "ts": ts,
                        "value": round(v, 2),
                    }
                )
        for i in range(0, len(rows), 5000):
            chunk = rows[i : i + 5000]
            session.execute(insert(Reading), [{**r, "device_id": sensor.id} for r in chunk])
            apply_readings(session, chunk)
        if events:
            session.execute(insert(IrrigationEvent), events)
        ensure_default_rules(session, gh)
        total += len(rows)
    return total
