"""A lot's story for the trace page: growing conditions from ``iot``, GS1 Digital Link URLs, QR codes.

No Flask here. ``build_story`` gathers everything the public trace page shows into
plain data (cacheable, no ORM objects); ``growing_conditions`` reads the greenhouse's
hourly rollups and raw readings over a crop cycle; ``digital_link`` and ``qr_svg`` /
``qr_png`` make what goes on a label.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal

import segno
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core import clock
from iot import crops, quantities
from iot.irrigation import summarize as irrigation_summary
from iot.models import Greenhouse, HourlyRollup, Reading
from shop.lots import ancestry, inspections_for, sales_of, source_lots
from shop.trace_models import CropCycle, HarvestLot, InputUse, LotEvent

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

    @property
    def hours_outside(self) -> int:
        return self.hours_too_cold + self.hours_too_hot

    @property
    def has_data(self) -> bool:
        return bool(self.stats) or self.irrigations > 0


def _local_midnight(day: date) -> int:
    return clock.day_start_ts(day)


def cycle_window(cycle: CropCycle, until: date | None) -> tuple[int, int]:
    """[local midnight of planting, local midnight after ``until``) in epoch seconds."""
    last = until or cycle.ended_on or clock.today()
    return _local_midnight(cycle.planted_on), _local_midnight(last + timedelta(days=1))


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
    for count, total, _lo, _hi in buckets[ids["air_temperature"]].values():
        mean = total / count
        out.hours_with_temperature += 1
        out.hours_too_cold += mean < lo_c
        out.hours_too_hot += mean > hi_c
    out.hours_too_humid = sum(1 for c, s, _lo, _hi in buckets[ids["air_humidity"]].values() if s / c > humid)

    greenhouse = session.get(Greenhouse, cycle.greenhouse_id)
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


# --- identifiers: GTIN, GS1 Digital Link, short URL -------------------------------------


def gtin_check_digit(body: str) -> str:
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(body)))
    return str((10 - total % 10) % 10)


def valid_gtin(gtin: str) -> bool:
    return gtin.isdigit() and len(gtin) in (8, 12, 13, 14) and gtin_check_digit(gtin[:-1]) == gtin[-1]


def gtin14(gtin: str) -> str:
    return gtin.zfill(14)


def product_gtin(product, company_prefix: str) -> str | None:
    """The product's GTIN-14: its own, or one derived from the company prefix and its id.

    The derived GTIN-13 is company prefix + item reference (the product id) + check
    digit; replace it with a GTIN allocated by GS1 China before printing at scale.
    """
    if product is None:
        return None
    if product.gtin and valid_gtin(product.gtin):
        return gtin14(product.gtin)
    prefix = "".join(ch for ch in (company_prefix or "") if ch.isdigit())
    ref_len = 12 - len(prefix)
    if ref_len < 1 or product.id >= 10**ref_len:
        return None
    body = prefix + str(product.id).zfill(ref_len)
    return gtin14(body + gtin_check_digit(body))


def digital_link(base_url: str, gtin: str, lot_number: str) -> str:
    """GS1 Digital Link URI: ``https://<host>/01/<GTIN-14>/10/<lot>``."""
    from urllib.parse import quote

    return f"{base_url.rstrip('/')}/01/{gtin14(gtin)}/10/{quote(lot_number, safe='')}"


def short_url(base_url: str, code: str) -> str:
    return f"{base_url.rstrip('/')}/t/{code}"


def label_url(base_url: str, lot: HarvestLot, company_prefix: str) -> str:
    """What a label's QR code holds: the Digital Link when the lot has a product, else the short URL."""
    gtin = product_gtin(lot.product, company_prefix)
    return digital_link(base_url, gtin, lot.lot_number) if gtin else short_url(base_url, lot.code)


def lot_for_digital_link(
    session: Session, gtin: str, lot_number: str, company_prefix: str
) -> HarvestLot | None:
    """The lot a Digital Link names, or None if the lot is unknown or the GTIN is not its product's."""
    if not gtin.isdigit() or len(gtin) not in (8, 12, 13, 14):
        return None
    lot = session.scalar(select(HarvestLot).where(HarvestLot.lot_number == lot_number))
    if lot is None:
        return None
    expected = product_gtin(lot.product, company_prefix)
    return lot if expected == gtin14(gtin) else None


# --- QR codes ---------------------------------------------------------------------------


def qr_svg(data: str, *, scale: int = 4, inline: bool = False) -> str:
    qr = segno.make(data, error="m")
    if inline:
        return qr.svg_inline(scale=scale, dark="#1f2421", svgclass="qr", omitsize=True)
    buf = io.BytesIO()
    qr.save(buf, kind="svg", scale=scale, dark="#1f2421", xmldecl=True, svgclass="qr")
    return buf.getvalue().decode()


def qr_png(data: str, *, scale: int = 8) -> bytes:
    buf = io.BytesIO()
    segno.make(data, error="m").save(buf, kind="png", scale=scale, border=4)
    return buf.getvalue()


# --- the story shown on the trace page --------------------------------------------------


@dataclass
class Origin:
    lot_number: str
    household: str | None
    household_code: str | None
    greenhouse: str
    greenhouse_code: str
    crop: str
    variety: str | None
    planted_on: date
    harvested_on: date | None
    conditions: Conditions


@dataclass
class StoryEvent:
    at: datetime
    kind: str
    lot_number: str
    quantity: Decimal | None
    unit: str
    note: str | None = None


@dataclass
class StoryInspection:
    id: int
    lot_number: str
    kind: str
    lab: str
    tested_on: date
    result: str
    summary: str | None
    has_certificate: bool


@dataclass
class Story:
    """Everything the public trace page shows, as plain data (safe to cache across requests)."""

    code: str
    lot_number: str
    kind: str
    product_zh: str | None
    product_en: str | None
    quantity: Decimal
    unit: str
    grade: str | None
    harvested_on: date | None
    recalled_at: datetime | None
    recall_reason: str | None
    origins: list[Origin]
    inspections: list[StoryInspection]
    events: list[StoryEvent]
    source_count: int
    digital_link: str | None
    short_url: str
    built_at: datetime = field(default_factory=clock.now)


def build_story(session: Session, lot: HarvestLot, base_url: str, company_prefix: str) -> Story:
    """Gather a lot's story: product, origins with conditions, inspections, events."""
    ancestors = ancestry(session, lot)
    family = {lot.id: lot} | {r.lot.id: r.lot for r in ancestors}
    origins = []
    for src in source_lots(session, lot):
        cycle = src.crop_cycle
        gh = cycle.greenhouse
        household = cycle.household or src.household
        origins.append(
            Origin(
                lot_number=src.lot_number,
                household=household.head_name if household else None,
                household_code=household.code if household else None,
                greenhouse=gh.name,
                greenhouse_code=gh.code,
                crop=cycle.crop,
                variety=cycle.variety,
                planted_on=cycle.planted_on,
                harvested_on=src.harvested_on,
                conditions=growing_conditions(session, cycle, src.harvested_on),
            )
        )
    events = [
        StoryEvent(e.at, e.kind, family[e.lot_id].lot_number, e.quantity, family[e.lot_id].unit, e.note)
        for e in session.scalars(
            select(LotEvent).where(LotEvent.lot_id.in_(list(family))).order_by(LotEvent.at, LotEvent.id)
        )
        # an ancestor's sales and shipments are other customers' business, and its
        # "split" is this lot's own "packed"/"merged" seen from the other side
        if e.lot_id == lot.id or e.kind not in ("sold", "shipped", "recalled", "split")
    ]
    for sale in sales_of(session, lot.id):
        events.append(StoryEvent(sale.at, "sold", lot.lot_number, sale.quantity, lot.unit))
        if sale.shipped_at:
            events.append(StoryEvent(sale.shipped_at, "shipped", lot.lot_number, sale.quantity, lot.unit))
    events.sort(key=lambda e: e.at)
    inspections = [
        StoryInspection(
            i.id,
            family[i.lot_id].lot_number,
            i.kind,
            i.lab,
            i.tested_on,
            i.result,
            i.summary,
            bool(i.certificate_file),
        )
        for i in inspections_for(session, lot)
    ]
    gtin = product_gtin(lot.product, company_prefix)
    recalled_source = next((r.lot for r in ancestors if r.lot.recalled_at), None)
    return Story(
        code=lot.code,
        lot_number=lot.lot_number,
        kind=lot.kind,
        product_zh=lot.product.name_zh if lot.product else None,
        product_en=lot.product.name_en if lot.product else None,
        quantity=lot.quantity,
        unit=lot.unit,
        grade=lot.grade,
        harvested_on=lot.harvested_on,
        recalled_at=lot.recalled_at or (recalled_source.recalled_at if recalled_source else None),
        recall_reason=lot.recall_reason or (recalled_source.recall_reason if recalled_source else None),
        origins=origins,
        inspections=inspections,
        events=events,
        source_count=len(origins),
        digital_link=digital_link(base_url, gtin, lot.lot_number) if gtin else None,
        short_url=short_url(base_url, lot.code),
    )
