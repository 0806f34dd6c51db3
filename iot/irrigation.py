"""Irrigation and fertigation per greenhouse and period, compared with the previous period.

Periods are local days (in the configured zone, ``core.clock``), weeks (Monday first) or
months. Events count in the period in which they started.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from core import clock
from iot.models import Greenhouse, IrrigationEvent

PERIODS = ("day", "week", "month")


@dataclass
class IrrigationSummary:
    start: int
    end: int
    count: int = 0
    water_l: float = 0.0
    duration_s: int = 0
    fertilizer: dict[str, float] = field(default_factory=dict)
    avg_ec: float | None = None
    avg_ph: float | None = None
    water_per_m2: float | None = None  # litres per square metre (= mm of water)

    def as_dict(self) -> dict:
        return {
            "start": self.start,
            "end": self.end,
            "irrigations": self.count,
            "water_l": round(self.water_l, 3),
            "duration_s": self.duration_s,
            "fertilizer": {k: round(v, 3) for k, v in sorted(self.fertilizer.items())},
            "avg_ec": None if self.avg_ec is None else round(self.avg_ec, 3),
            "avg_ph": None if self.avg_ph is None else round(self.avg_ph, 3),
            "water_per_m2": None if self.water_per_m2 is None else round(self.water_per_m2, 3),
        }


@dataclass
class Comparison:
    period: str
    current: IrrigationSummary
    previous: IrrigationSummary

    def change(self, attr: str) -> float | None:
        """Relative change of ``attr`` against the previous period (0.25 = +25%); None if no base."""
        now, before = getattr(self.current, attr), getattr(self.previous, attr)
        if now is None or before in (None, 0):
            return None
        return (now - before) / before

    def as_dict(self) -> dict:
        return {
            "period": self.period,
            "current": self.current.as_dict(),
            "previous": self.previous.as_dict(),
            "change": {k: self.change(k) for k in ("count", "water_l", "avg_ec", "avg_ph", "water_per_m2")},
        }


def period_bounds(period: str, at: int) -> tuple[int, int]:
    """[start, end) epoch seconds of the local period containing ``at``."""
    if period not in PERIODS:
        raise ValueError(f"period must be one of {', '.join(PERIODS)}")
    day = clock.local_date(at)
    if period == "day":
        start, end = day, day + timedelta(days=1)
    elif period == "week":
        start = day - timedelta(days=day.weekday())
        end = start + timedelta(days=7)
    else:
        start = day.replace(day=1)
        end = (start + timedelta(days=32)).replace(day=1)
    return clock.day_start_ts(start), clock.day_start_ts(end)


def previous_bounds(period: str, start: int) -> tuple[int, int]:
    return period_bounds(period, start - 1)


def summarize(session: Session, greenhouse: Greenhouse, start: int, end: int) -> IrrigationSummary:
    events = session.scalars(
        select(IrrigationEvent).where(
            IrrigationEvent.greenhouse_id == greenhouse.id,
            IrrigationEvent.started_at >= start,
            IrrigationEvent.started_at < end,
        )
    )
    out = IrrigationSummary(start, end)
    ec, ph = [], []
    for ev in events:
        out.count += 1
        out.water_l += ev.water_l or 0.0
        if ev.ended_at:
            out.duration_s += max(ev.ended_at - ev.started_at, 0)
        for tank, amount in (ev.fertilizer or {}).items():
            if isinstance(amount, int | float):
                out.fertilizer[tank] = out.fertilizer.get(tank, 0.0) + float(amount)
        if ev.ec is not None:
            ec.append((ev.ec, ev.water_l or 1.0))
        if ev.ph is not None:
            ph.append((ev.ph, ev.water_l or 1.0))
    # averages weighted by water volume: a long fertigation counts more than a short rinse
    if ec:
        out.avg_ec = sum(v * w for v, w in ec) / sum(w for _, w in ec)
    if ph:
        out.avg_ph = sum(v * w for v, w in ph) / sum(w for _, w in ph)
    if greenhouse.area_m2:
        out.water_per_m2 = out.water_l / greenhouse.area_m2
    return out


def compare(session: Session, greenhouse: Greenhouse, period: str, at: int) -> Comparison:
    """The period containing ``at`` and the one before it."""
    start, end = period_bounds(period, at)
    p_start, p_end = previous_bounds(period, start)
    return Comparison(
        period, summarize(session, greenhouse, start, end), summarize(session, greenhouse, p_start, p_end)
    )
