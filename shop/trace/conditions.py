"""Growing conditions of a crop cycle, from the greenhouse's data in ``iot``.

``growing_conditions`` summarises the hourly rollups (raw readings where there are no
rollups yet), the fertigation runs and the inputs applied by hand, from planting to the
harvest, against the crop's comfortable range (``iot.crops``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core import clock
from iot import crops, quantities
from iot.irrigation import summarize as irrigation_summary
from iot.models import Greenhouse, HourlyRollup, Reading
from shop.trace.models import CropCycle, InputUse

HOUR = 3600
SUMMARY_METRICS = ("air_temperature", "air_humidity", "soil_moisture", "ec", "ph")


# --- the crop's comfortable range (iot.crops) -------------------------------------------


def comfort_range(cycle: CropCycle) -> tuple[float, float, float]:
    """(min °C, max °C, max humidity %) for the cycle's crop."""
    lo, hi, humid = crops.comfort(cycle.crop)
    return (
        cycle.comfort_min_c if cycle.comfort_min_c is not None else lo,
        cycle.comfort_max_c if cycle.comfort_max_c is not None else hi,
        humid,
    )


# --- growing conditions -----------------------------------------------------------------


@dataclass
class MetricStats:
    name: str
    unit: str
    count: int
    mean: float
    min: float
    max: float


@dataclass
class DayPoint:
    ts: int  # local midnight, epoch seconds
    avg: float
    min: float
    max: float
    count: int

    @property
    def n(self) -> int:  # the name iot.series rows use
        return self.count


@dataclass
class Coverage:
    """What period the sensor data really covers, out of the window asked for.

    ``first``/``last`` are the start of the first and the end of the last hour that holds a
    reading (epoch seconds; None without data); ``hours``/``days`` count hours and local days
    with at least one reading, out of ``window_hours``/``window_days`` (the cycle from planting
    to the harvest day, or to now while it grows); ``gaps`` are the stretches of at least
    ``GAP_HOURS`` without a reading between ``first`` and ``last`` ([start, end) pairs).
    """

    window_start: int
    window_end: int
    first: int | None = None
    last: int | None = None
    hours: int = 0
    days: int = 0
    window_hours: int = 0
    window_days: int = 0
    gaps: list[tuple[int, int]] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return self.window_hours > 0 and self.hours == self.window_hours

    @property
    def first_at(self) -> datetime | None:
        return clock.local(self.first) if self.first is not None else None

    @property
    def last_at(self) -> datetime | None:
        return clock.local(self.last) if self.last is not None else None

    @property
    def longest_gap_hours(self) -> int:
        return max(((b - a) // HOUR for a, b in self.gaps), default=0)


GAP_HOURS = 6  # a stretch without readings this long or longer is listed as a gap


def coverage_of(hours: set[int], start: int, end: int) -> Coverage:
    """The coverage of the hour buckets ``hours`` within [start, end)."""
    end = max(start, min(end, clock.now_ts() - clock.now_ts() % HOUR + HOUR))
    out = Coverage(start, end)
    out.window_hours = (end - start) // HOUR
    out.window_days = len({clock.local_date(t) for t in range(start, end, HOUR)})
    inside = sorted(h for h in hours if start <= h < end)
    if not inside:
        return out
    out.first, out.last = inside[0], inside[-1] + HOUR
    out.hours = len(inside)
    out.days = len({clock.local_date(h) for h in inside})
    for a, b in zip(inside, inside[1:], strict=False):
        if b - a - HOUR >= GAP_HOURS * HOUR:
            out.gaps.append((a + HOUR, b))
    return out


@dataclass
class Conditions:
    """Growing conditions in a greenhouse over [start, end) (epoch seconds)."""

    start: int
    end: int
    comfort_min_c: float
    comfort_max_c: float
    humid_max: float
    stats: dict[str, MetricStats] = field(default_factory=dict)
    hours_with_temperature: int = 0
    hours_too_cold: int = 0
    hours_too_hot: int = 0
    hours_too_humid: int = 0
    irrigations: int = 0
    water_l: float = 0.0
    fertigation: dict[str, float] = field(default_factory=dict)  # tank/product -> amount
    manual_inputs: list[tuple[str, str, Decimal]] = field(default_factory=list)  # (product, unit, total)
    mean_ec: float | None = None
    mean_ph: float | None = None
    daily: dict[str, list[DayPoint]] = field(default_factory=dict)
    # the period the data really covers: any of the summary metrics, and each metric alone
    coverage: Coverage | None = None
    metric_coverage: dict[str, Coverage] = field(default_factory=dict)

    @property
    def hours_outside(self) -> int:
        return self.hours_too_cold + self.hours_too_hot

    @property
    def has_data(self) -> bool:
        return bool(self.stats) or self.irrigations > 0


def cycle_window(cycle: CropCycle, until: date | None) -> tuple[int, int]:
    """[local midnight of planting, local midnight after ``until``) in epoch seconds."""
    last = until or cycle.ended_on or clock.today()
    return clock.day_start_ts(cycle.planted_on), clock.day_start_ts(last + timedelta(days=1))


def hourly_buckets(
    session: Session, greenhouse_id: int, metric_ids: list[int], start: int, end: int
) -> dict[int, dict[int, list]]:
    """{metric_id: {hour: [count, sum, min, max]}} over [start, end).

    Hourly rollups are used where they exist; raw readings fill the hours before the
    first and after the last rollup hour (e.g. rollups not built yet, or a cycle that
    ended minutes ago). The ingester keeps rollups in step with readings, so in between
    the rollups are complete, and raw readings pruned after 90 days are not needed.
    """
    out: dict[int, dict[int, list]] = {m: {} for m in metric_ids}
    rollups = session.execute(
        select(
            HourlyRollup.metric_id,
            HourlyRollup.bucket,
            HourlyRollup.count,
            HourlyRollup.sum,
            HourlyRollup.min,
            HourlyRollup.max,
        ).where(
            HourlyRollup.greenhouse_id == greenhouse_id,
            HourlyRollup.metric_id.in_(metric_ids),
            HourlyRollup.bucket >= start,
            HourlyRollup.bucket < end,
        )
    ).all()
    for m, bucket, count, total, lo, hi in rollups:
        out[m][bucket] = [count, total, lo, hi]
    bucket_expr = Reading.ts - Reading.ts % HOUR
    for m in metric_ids:
        spans = [(start, end)]
        if out[m]:
            first, last = min(out[m]), max(out[m]) + HOUR
            spans = [(start, first), (last, end)]
        for lo_ts, hi_ts in spans:
            if lo_ts >= hi_ts:
                continue
            rows = session.execute(
                select(
                    bucket_expr,
                    func.count(),
                    func.sum(Reading.value),
                    func.min(Reading.value),
                    func.max(Reading.value),
                )
                .where(
                    Reading.greenhouse_id == greenhouse_id,
                    Reading.metric_id == m,
                    Reading.ts >= lo_ts,
                    Reading.ts < hi_ts,
                )
                .group_by(bucket_expr)
            ).all()
            for bucket, count, total, lo, hi in rows:
                out[m][int(bucket)] = [int(count), float(total), float(lo), float(hi)]
    return out


def _daily(hours: dict[int, list]) -> list[DayPoint]:
    days: dict[int, list] = {}
    for bucket, (count, total, lo, hi) in hours.items():
        day = clock.day_bucket(bucket)
        acc = days.setdefault(day, [0, 0.0, lo, hi])
        acc[0] += count
        acc[1] += total
        acc[2] = min(acc[2], lo)
        acc[3] = max(acc[3], hi)
    return [DayPoint(d, a[1] / a[0], a[2], a[3], a[0]) for d, a in sorted(days.items()) if a[0]]


def growing_conditions(session: Session, cycle: CropCycle, until: date | None = None) -> Conditions:
    """Summarise the greenhouse's conditions from planting to ``until`` (the harvest day).

    Hours outside the comfortable range count hour buckets whose *mean* air
    temperature lies below the minimum or above the maximum (humidity: above its
    maximum). EC and pH are the nutrient solution's, water-weighted over fertigation
    runs; without fertigation data, the means of the EC/pH sensor readings.
    """
    start, end = cycle_window(cycle, until)
    lo_c, hi_c, humid = comfort_range(cycle)
    out = Conditions(start, end, lo_c, hi_c, humid)
    ids = {name: quantities.get(name).id for name in SUMMARY_METRICS}
    buckets = hourly_buckets(session, cycle.greenhouse_id, list(ids.values()), start, end)
    for name, mid in ids.items():
        hours = buckets[mid]
        count = sum(h[0] for h in hours.values())
        if not count:
            continue
        out.stats[name] = MetricStats(
            name,
            quantities.get(name).unit,
            count,
            sum(h[1] for h in hours.values()) / count,
            min(h[2] for h in hours.values()),
            max(h[3] for h in hours.values()),
        )
        out.daily[name] = _daily(hours)
        out.metric_coverage[name] = coverage_of(set(hours), start, end)
    out.coverage = coverage_of({h for mid in ids.values() for h in buckets[mid]}, start, end)
    for count, total, _lo, _hi in buckets[ids["air_temperature"]].values():
        mean = total / count
        out.hours_with_temperature += 1
        out.hours_too_cold += mean < lo_c
        out.hours_too_hot += mean > hi_c
    out.hours_too_humid = sum(1 for c, s, _lo, _hi in buckets[ids["air_humidity"]].values() if s / c > humid)

    greenhouse = session.get(Greenhouse, cycle.greenhouse_id)
    if greenhouse is None:  # pragma: no cover - a cycle's greenhouse cannot be deleted (RESTRICT)
        raise LookupError(f"crop cycle {cycle.id} has no greenhouse")
    irrigation = irrigation_summary(session, greenhouse, start, end)
    out.irrigations = irrigation.count
    out.water_l = irrigation.water_l
    out.fertigation = dict(sorted(irrigation.fertilizer.items()))
    out.mean_ec = (
        irrigation.avg_ec
        if irrigation.avg_ec is not None
        else (out.stats["ec"].mean if "ec" in out.stats else None)
    )
    out.mean_ph = (
        irrigation.avg_ph
        if irrigation.avg_ph is not None
        else (out.stats["ph"].mean if "ph" in out.stats else None)
    )

    last_day = clock.local_date(end - 1)
    totals: dict[tuple[str, str], Decimal] = {}
    for row in session.scalars(
        select(InputUse).where(InputUse.crop_cycle_id == cycle.id, InputUse.applied_on <= last_day)
    ):
        key = (row.product, row.unit)
        totals[key] = totals.get(key, Decimal(0)) + row.amount
    out.manual_inputs = [(p, u, amount) for (p, u), amount in sorted(totals.items())]
    return out
