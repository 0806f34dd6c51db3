"""The public trace page's data: a lot's story as plain data, safe to cache across requests.

``build_story`` gathers the product, the producer (``shop.trace.producer``: the cooperative's
name, 产地 as an administrative address, address and phone), the origins (greenhouse,
household, crop cycle and its growing conditions; one per harvest lot behind a pack or a
gift box), the inspections and the events of a lot and the lots it was made from. Sales come
from the shop's orders, handed in as ``sales_of``. Everything a page prints in words is
here in both languages (a crop's Chinese and English name) or as a key the template
translates, never an English string on a Chinese page. No Flask here.

The lookup counter (``shop.trace.lookups``) is not part of the story: the story is cached,
the count changes with every view.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.orm import Session

from core import clock
from iot import crops
from shop.trace import producer as producers
from shop.trace.ancestry import Relative, ancestry, source_lots
from shop.trace.conditions import Conditions, growing_conditions
from shop.trace.gs1 import lot_digital_link, short_url
from shop.trace.inspections import Measured, inspections_for
from shop.trace.models import HarvestLot, LotEvent
from shop.trace.ports import SalesOf
from shop.trace.production import ProductionRecord, production_record


def crop_names(crop: str | None) -> tuple[str, str]:
    """A crop's name in Chinese and in English, from the crop catalogue (``iot.crops``).

    What a farmer typed in Chinese stays as typed on the Chinese page ("黄桃"); a catalogue
    key or English name becomes the catalogue's Chinese name ("peach" → "桃"). A crop the
    catalogue does not know is shown as typed in both languages.
    """
    typed = (crop or "").strip()
    key = crops.crop_key(typed)
    if key == "default":
        return typed, typed
    typed_chinese = any("\u4e00" <= ch <= "\u9fff" for ch in typed)
    chinese = next((n for n in crops.get(key).names if any("\u4e00" <= ch <= "\u9fff" for ch in n)), typed)
    return (typed if typed_chinese else chinese), key


@dataclass(frozen=True)
class ProducerInfo:
    """Who answers for the produce: the cooperative (or household) of ``shop.trace.producer``."""

    name: str
    origin: str  # 产地: 省 县 乡镇 村
    address: str
    phone: str
    credit_code: str
    village: str = ""

    @property
    def full_address(self) -> str:
        """产地 and the street address, the village not said twice ("…赵庄村" + "赵庄村村委会东")."""
        street = self.address
        if self.village and street.startswith(self.village):
            street = street[len(self.village) :]
        return f"{self.origin}{street}".strip()


@dataclass
class Origin:
    lot_number: str
    household: str | None
    household_code: str | None
    greenhouse: str
    greenhouse_code: str
    crop: str
    crop_zh: str
    crop_en: str
    variety: str | None
    planted_on: date
    harvested_on: date | None
    conditions: Conditions
    production: ProductionRecord | None = None  # inputs, pest control, fertigation, an override


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
    results: tuple[Measured, ...] = ()  # measured substances (value None: not detected)


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
    producer: ProducerInfo | None = None
    # the lot the recall started from, when this pack or box was recalled with it
    recalled_from: str | None = None
    built_at: datetime = field(default_factory=clock.now)

    @property
    def households(self) -> list[str | None]:
        """Who grew it: each household once, in the order of the origins (None: the collective)."""
        seen: list[str | None] = []
        for origin in self.origins:
            if origin.household not in seen:
                seen.append(origin.household)
        return seen

    def crop(self, lang: str) -> str:
        """The crops behind the lot, each once, in ``lang`` ("zh_CN" or "en")."""
        names: list[str] = []
        for origin in self.origins:
            name = origin.crop_zh if lang == "zh_CN" else origin.crop_en
            if name not in names:
                names.append(name)
        return "、".join(names) if lang == "zh_CN" else ", ".join(names)


def producer_info(session: Session) -> ProducerInfo | None:
    """The producer's identity as the page shows it, or None when nobody has set a name yet."""
    row = producers.get(session)
    if not row.name:
        return None
    return ProducerInfo(
        row.name, producers.origin(row), row.address, row.phone, row.credit_code, village=row.village
    )


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
                crop_zh=crop_names(cycle.crop)[0],
                crop_en=crop_names(cycle.crop)[1],
                variety=cycle.variety,
                planted_on=cycle.planted_on,
                harvested_on=src.harvested_on,
                conditions=growing_conditions(session, cycle, src.harvested_on),
                production=production_record(session, cycle, src.harvested_on, lot=src),
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
            tuple(Measured(r.substance, r.cas, r.value, r.unit, r.mrl) for r in i.results),
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
        recalled_from=_recalled_from(lot, ancestors),
        origins=origins,
        inspections=inspections,
        events=events,
        source_count=len(origins),
        digital_link=lot_digital_link(base_url, lot),
        short_url=short_url(base_url, lot.code),
        producer=producer_info(session),
    )


def _recalled_from(lot: HarvestLot, ancestors: list[Relative]) -> str | None:
    """The lot number a recall started from, when ``lot`` was recalled with it (a pack or box
    of a recalled lot); None when the lot itself was recalled first or nothing was."""
    recalled = [r for r in ancestors if r.lot.recalled_at is not None]
    if not recalled:
        return None
    # a recall reaches everything made from the lot at once: the earliest recall, and of
    # those recalled together the farthest ancestor, is where it started
    first = min(recalled, key=lambda r: (r.lot.recalled_at, -r.depth))
    if lot.recalled_at is not None and lot.recalled_at < first.lot.recalled_at:  # type: ignore[operator]
        return None
    return first.lot.lot_number
