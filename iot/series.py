"""Time series for charts and the API, read from raw readings or a rollup chosen by range.

A chart never reads more than a few thousand points: up to two days come from raw
readings (one point per reading, capped), up to 92 days from hourly rollups, longer
ranges from daily rollups. ``series_from_raw`` computes the same buckets from raw rows;
it is what the rollups save (the benchmark compares both).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from core import clock
from iot import quantities
from iot.models import Alert, Device, Greenhouse, IrrigationEvent, LatestReading
from iot.rollups import DAY, HOUR

RESOLUTIONS = ("raw", "hour", "day")
RAW_MAX_SPAN = 2 * DAY  # auto: raw up to two days
HOUR_MAX_SPAN = 92 * DAY  # auto: hourly up to ~3 months, then daily
RAW_POINT_LIMIT = 5000
RANGES = {"24h": DAY, "7d": 7 * DAY, "30d": 30 * DAY, "1y": 365 * DAY}


@dataclass
class Series:
    """``points``: rows with ``ts`` (bucket start, or reading time for raw), ``avg``, ``min``,
    ``max`` and ``n`` (readings in the bucket), in time order. Rows straight from the
    database driver: no per-point Python object, which is most of the cost of a chart query."""

    metric_id: int
    resolution: str
    start: int
    end: int
    points: Sequence[Any] = field(default_factory=list)
    truncated: bool = False


def choose_resolution(start: int, end: int) -> str:
    span = end - start
    if span <= RAW_MAX_SPAN:
        return "raw"
    if span <= HOUR_MAX_SPAN:
        return "hour"
    return "day"


def max_points(resolution: str, start: int, end: int) -> int:
    """How many points a query would return at most (raw assumes one reading a minute)."""
    span = max(end - start, 0)
    return {"raw": span // 60, "hour": span // HOUR, "day": span // DAY}[resolution] + 1


def series(
    session: Session, greenhouse_id: int, metric_id: int, start: int, end: int, resolution: str | None = None
) -> Series:
    """Points of one metric in [start, end) at ``resolution`` (None: chosen by range)."""
    resolution = resolution or choose_resolution(start, end)
    out = Series(metric_id, resolution, start, end)
    if resolution == "raw":
        rows = session.execute(
            text(
                "SELECT ts, value AS avg, value AS min, value AS max, 1 AS n FROM iot_readings "
                "WHERE greenhouse_id = :g AND metric_id = :m "
                "AND ts >= :s AND ts < :e ORDER BY ts LIMIT :n"
            ),
            {"g": greenhouse_id, "m": metric_id, "s": start, "e": end, "n": RAW_POINT_LIMIT + 1},
        ).all()
        out.truncated = len(rows) > RAW_POINT_LIMIT
        out.points = rows[:RAW_POINT_LIMIT]
        return out
    table, lo = (
        ("iot_rollups_hourly", start - start % HOUR)
        if resolution == "hour"
        else (
            "iot_rollups_daily",
            clock.day_bucket(start),
        )
    )
    rows = session.execute(
        text(
            f"SELECT bucket AS ts, sum / count AS avg, min, max, count AS n FROM {table} "
            "WHERE greenhouse_id = :g AND metric_id = :m "
            "AND bucket >= :s AND bucket < :e AND count > 0 ORDER BY bucket"
        ),
        {"g": greenhouse_id, "m": metric_id, "s": lo, "e": end},
    ).all()
    out.points = rows
    return out


def series_from_raw(
    session: Session, greenhouse_id: int, metric_id: int, start: int, end: int, resolution: str
) -> Series:
    """The same buckets as ``series`` computed by aggregating raw readings (slow; for comparison)."""
    if resolution == "raw":
        return series(session, greenhouse_id, metric_id, start, end, "raw")
    if resolution == "hour":
        bucket, lo = "ts - (ts % 3600)", start - start % HOUR
    else:
        bucket, lo = clock.day_bucket_sql("ts", start, end), clock.day_bucket(start)
    rows = session.execute(
        text(
            f"SELECT {bucket} AS ts, avg(value) AS avg, min(value) AS min, max(value) AS max, count(*) AS n "
            "FROM iot_readings WHERE greenhouse_id = :g AND metric_id = :m AND ts >= :s AND ts < :e "
            f"GROUP BY {bucket} ORDER BY 1"
        ),
        {"g": greenhouse_id, "m": metric_id, "s": lo, "e": end},
    ).all()
    return Series(metric_id, resolution, start, end, rows)


def irrigation_events(session: Session, greenhouse_id: int, start: int, end: int) -> list[IrrigationEvent]:
    return list(
        session.scalars(
            select(IrrigationEvent)
            .where(
                IrrigationEvent.greenhouse_id == greenhouse_id,
                IrrigationEvent.started_at >= start,
                IrrigationEvent.started_at < end,
            )
            .order_by(IrrigationEvent.started_at)
        )
    )


# --- overview ---------------------------------------------------------------------------


@dataclass
class Latest:
    metric_id: int
    ts: int
    value: float
    age_s: int


@dataclass
class GreenhouseOverview:
    greenhouse: Greenhouse
    latest: dict[int, Latest]
    devices_total: int
    devices_online: int
    open_alerts: int
    critical_alerts: int
    water_today_l: float
    irrigations_today: int

    @property
    def newest_age_s(self) -> int | None:
        return min((lt.age_s for lt in self.latest.values()), default=None)


def overview(
    session: Session, greenhouses: list[Greenhouse], now: int | None = None
) -> list[GreenhouseOverview]:
    """Latest readings, device state, open alerts and today's irrigation for each greenhouse.

    Five indexed queries whatever the number of greenhouses.
    """
    now = clock.now_ts() if now is None else now
    ids = [g.id for g in greenhouses]
    if not ids:
        return []
    latest: dict[int, dict[int, Latest]] = {i: {} for i in ids}
    for row in session.scalars(select(LatestReading).where(LatestReading.greenhouse_id.in_(ids))):
        latest[row.greenhouse_id][row.metric_id] = Latest(
            row.metric_id, row.ts, row.value, max(now - row.ts, 0)
        )
    devices: dict[int | None, list[int]] = {i: [0, 0] for i in ids}
    for gh, online, n in session.execute(
        select(Device.greenhouse_id, Device.online, func.count())
        .where(Device.greenhouse_id.in_(ids))
        .group_by(Device.greenhouse_id, Device.online)
    ):
        devices[gh][0] += n
        if online:
            devices[gh][1] += n
    alerts = {i: [0, 0] for i in ids}
    for gh, severity, n in session.execute(
        select(Alert.greenhouse_id, Alert.severity, func.count())
        .where(Alert.greenhouse_id.in_(ids), Alert.closed_at.is_(None))
        .group_by(Alert.greenhouse_id, Alert.severity)
    ):
        alerts[gh][0] += n
        if severity == "critical":
            alerts[gh][1] += n
    today = clock.day_bucket(now)
    water: dict[int, tuple[float, int]] = {i: (0.0, 0) for i in ids}
    for gh, total, n in session.execute(
        select(IrrigationEvent.greenhouse_id, func.sum(IrrigationEvent.water_l), func.count())
        .where(IrrigationEvent.greenhouse_id.in_(ids), IrrigationEvent.started_at >= today)
        .group_by(IrrigationEvent.greenhouse_id)
    ):
        water[gh] = (float(total or 0.0), n)
    return [
        GreenhouseOverview(
            g,
            latest[g.id],
            devices[g.id][0],
            devices[g.id][1],
            alerts[g.id][0],
            alerts[g.id][1],
            *water[g.id],
        )
        for g in greenhouses
    ]


@dataclass(frozen=True)
class ChannelLatest:
    metric_id: int
    channel: str  # "" for the device's only sensor
    ts: int
    value: float


def device_channels(session: Session, device_id: int, since: int) -> list[ChannelLatest]:
    """The newest reading of each (metric, channel) the device sent since ``since``: what the
    device page shows, one row per sensor (the greenhouse's latest values, ``overview``, show
    the newest reading of a metric whichever sensor sent it). One indexed range per metric."""
    rows = session.execute(
        text(
            "SELECT r.metric_id, r.channel, r.ts, r.value FROM iot_readings r JOIN ("
            "SELECT metric_id, channel, max(ts * 1000000 + us) AS t FROM iot_readings "
            "WHERE device_id = :d AND metric_id IN ({}) AND ts >= :s GROUP BY metric_id, channel"
            ") l ON r.device_id = :d AND r.metric_id = l.metric_id AND r.channel = l.channel "
            "AND r.ts = l.t / 1000000 AND r.us = l.t % 1000000 "
            "ORDER BY r.metric_id, r.channel".format(",".join(str(m.id) for m in quantities.METRICS))
        ),
        {"d": device_id, "s": since},
    ).all()
    return [ChannelLatest(m, c, ts, v) for m, c, ts, v in rows]
