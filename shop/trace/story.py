"""The public trace page's data: a lot's story as plain data, safe to cache across requests.

``build_story`` gathers the product, the origins (greenhouse, household, crop cycle and
its growing conditions), the inspections and the events of a lot and the lots it was
made from. Sales come from the shop's orders, handed in as ``sales_of``. No Flask here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.orm import Session

from core import clock
from shop.trace.ancestry import ancestry, source_lots
from shop.trace.conditions import Conditions, growing_conditions
from shop.trace.gs1 import lot_digital_link, short_url
from shop.trace.inspections import inspections_for
from shop.trace.models import HarvestLot, LotEvent
from shop.trace.ports import SalesOf


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


def build_story(
    session: Session, lot: HarvestLot, base_url: str, company_prefix: str, *, sales_of: SalesOf
) -> Story:
    """Gather a lot's story: product, origins with conditions, inspections, events.

    The Digital Link is the lot's own (its stored GTIN); ``company_prefix`` is not used.

    ``sales_of`` (``ShopPort.sales_of``) gives the paid orders' takings from the lot.
    """
    ancestors = ancestry(session, lot)
    family = {lot.id: lot} | {r.lot.id: r.lot for r in ancestors}
    origins = []
    for src in source_lots(session, lot):
        cycle = src.crop_cycle
        if cycle is None:  # pragma: no cover - source lots have a crop cycle
            continue
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
        digital_link=lot_digital_link(base_url, lot),
        short_url=short_url(base_url, lot.code),
    )
