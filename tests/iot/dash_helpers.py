"""Small factories for the dashboard tests.

Plain functions: tests/iot/conftest.py belongs to the ingester.
"""

from __future__ import annotations

from sqlalchemy import insert

from iot import quantities
from iot.models import Device, Greenhouse, IrrigationEvent, Reading
from iot.rollups import apply_readings

T0 = 1_764_000_000 - 1_764_000_000 % 86400 - 8 * 3600  # a local (UTC+8) midnight, 2025-11-24


def make_greenhouse(session, code="GH1", owner=None, crop="cucumber", area_m2=500.0, device="dev-1"):
    gh = Greenhouse(
        code=code,
        name=f"Greenhouse {code}",
        crop=crop,
        area_m2=area_m2,
        owner_id=owner.id if owner is not None else None,
    )
    session.add(gh)
    session.flush()
    dev = Device(device_id=f"{code}-{device}", greenhouse_id=gh.id, kind="sensor")
    session.add(dev)
    session.flush()
    return gh, dev


def add_readings(session, gh, dev, metric: str, points, apply: bool = True) -> list[dict]:
    """Insert readings [(ts, value), ...] and fold them into the rollups, as the ingester does."""
    m = quantities.BY_NAME[metric]
    rows = [{"greenhouse_id": gh.id, "metric_id": m.id, "ts": int(ts), "value": float(v)} for ts, v in points]
    if rows:
        session.execute(insert(Reading), [{**r, "device_id": dev.id} for r in rows])
        if apply:
            apply_readings(session, rows)
    return rows


def add_irrigation(session, gh, dev, started_at, minutes=20, water_l=300.0, ec=2.0, ph=6.2, fertilizer=None):
    ev = IrrigationEvent(
        device_id=dev.id,
        greenhouse_id=gh.id,
        started_at=started_at,
        ended_at=started_at + minutes * 60,
        water_l=water_l,
        ec=ec,
        ph=ph,
        fertilizer=fertilizer or {"A": 1.0, "B": 0.5},
    )
    session.add(ev)
    session.flush()
    return ev
