"""Traceability tables (shop_*): crop cycles, harvest lots, their ancestry and story.

A product's stock is the sum of its checked-in lots' ``remaining`` quantity; the shop takes
from the oldest lot first, never from a lot with ``recalled_at`` set nor from one that staff
have not yet checked in at the sales centre (``checked_in_at``, 入库验收).

A lot is a harvest lot (``kind="harvest"``, from a crop cycle), a pack split from a
lot (``"pack"``) or a box merged from several lots (``"merge"``). ``LotLink`` rows keep
the ancestry; ``LotEvent`` rows are the story shown on the trace page and exported as
EPCIS. Inputs (fertilisers, pesticides), pest control records and inspections belong to the cycle
and the lot.

``HarvestLot.product_id`` names the shop's products by table (``shop_products``); the
``HarvestLot.product`` relationship is added by ``shop.models``, on the shop's side, so
these models configure without any other shop module. Traceability reads a lot's
product as a ``ports.Sellable``.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING

from sqlalchemy import JSON, Double, ForeignKey, Index, Numeric, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from coop.models import Household
from core.db import Base, UTCDateTime, utcnow
from core.models import User
from iot.models import Greenhouse

if TYPE_CHECKING:
    from shop.trace.ports import Sellable

QTY = Numeric(12, 3)

LOT_KINDS = ("harvest", "pack", "merge")
EVENT_KINDS = (
    "harvested",
    "checked_in",
    "packed",
    "split",
    "merged",
    "inspected",
    "sold",
    "shipped",
    "recalled",
)
INSPECTION_RESULTS = ("pass", "fail")


class CropCycle(Base):
    """One planting in one greenhouse: crop, variety, planting date, expected harvest."""

    __tablename__ = "shop_crop_cycles"

    id: Mapped[int] = mapped_column(primary_key=True)
    greenhouse_id: Mapped[int] = mapped_column(
        ForeignKey("iot_greenhouses.id", ondelete="RESTRICT"), index=True
    )
    household_id: Mapped[int | None] = mapped_column(ForeignKey("coop_households.id", ondelete="SET NULL"))
    crop: Mapped[str] = mapped_column(String(60))
    variety: Mapped[str | None] = mapped_column(String(80))
    planted_on: Mapped[date]
    expected_harvest_on: Mapped[date | None]
    ended_on: Mapped[date | None]
    # The crop's comfortable air temperature (°C); None = the default for the crop.
    comfort_min_c: Mapped[float | None] = mapped_column(
        Double
    )  # as migrated (a bare float is Float on SQLAlchemy 2.0)
    comfort_max_c: Mapped[float | None] = mapped_column(Double)
    note: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    greenhouse: Mapped[Greenhouse] = relationship(Greenhouse, lazy="joined")
    household: Mapped[Household | None] = relationship(Household)
    lots: Mapped[list[HarvestLot]] = relationship(back_populates="crop_cycle")
    inputs: Mapped[list[InputUse]] = relationship(
        back_populates="crop_cycle",
        cascade="all, delete-orphan",
        order_by="[InputUse.applied_on, InputUse.id]",
    )
    pest_controls: Mapped[list[PestControl]] = relationship(
        cascade="all, delete-orphan", order_by="[PestControl.observed_on, PestControl.id]"
    )


class HarvestLot(Base):
    """A harvest lot (or a pack split from one, or a box merged from several)."""

    __tablename__ = "shop_lots"

    id: Mapped[int] = mapped_column(primary_key=True)
    lot_number: Mapped[str] = mapped_column(String(40), unique=True)  # GS1 AI (10), at most 20 chars
    code: Mapped[str] = mapped_column(String(16), unique=True)  # short unguessable public trace code
    # the GTIN-14 the lot was labelled with when it was made (``shop.trace.gtins``); its Digital
    # Link resolves by it, so a new company prefix or a product's new GTIN breaks no label
    gtin: Mapped[str | None] = mapped_column(String(14))
    product_id: Mapped[int | None] = mapped_column(
        ForeignKey("shop_products.id", ondelete="SET NULL"), index=True
    )
    crop_cycle_id: Mapped[int | None] = mapped_column(ForeignKey("shop_crop_cycles.id", ondelete="SET NULL"))
    household_id: Mapped[int | None] = mapped_column(ForeignKey("coop_households.id", ondelete="SET NULL"))
    kind: Mapped[str] = mapped_column(String(10), default="harvest")  # harvest | pack | merge
    harvested_on: Mapped[date | None]
    quantity: Mapped[Decimal] = mapped_column(QTY)
    remaining: Mapped[Decimal] = mapped_column(QTY)  # what the shop can still sell
    unit: Mapped[str] = mapped_column(String(20))
    grade: Mapped[str | None] = mapped_column(String(20))
    recalled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    recall_reason: Mapped[str | None] = mapped_column(Text)
    # 入库验收: staff weighed and graded the lot at the sales centre; only then is it stock.
    # A farmer's new harvest lot waits (None); lots staff record themselves are checked in at once.
    checked_in_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    checked_in_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    checked_in_quantity: Mapped[Decimal | None] = mapped_column(QTY)  # what the scale said
    # harvested within a pesticide's pre-harvest interval (安全间隔期) on an official's
    # explicit override (shop.trace.production): who, when, why
    interval_override_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    interval_override_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    interval_override_reason: Mapped[str | None] = mapped_column(Text)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    if TYPE_CHECKING:
        product: Sellable | None  # the relationship shop.models adds
    household: Mapped[Household | None] = relationship(Household)
    interval_override_by: Mapped[User | None] = relationship(User, foreign_keys=[interval_override_by_id])
    crop_cycle: Mapped[CropCycle | None] = relationship(back_populates="lots")
    events: Mapped[list[LotEvent]] = relationship(
        back_populates="lot", cascade="all, delete-orphan", order_by="[LotEvent.at, LotEvent.id]"
    )
    inspections: Mapped[list[Inspection]] = relationship(
        back_populates="lot", cascade="all, delete-orphan", order_by="Inspection.tested_on"
    )

    @property
    def is_recalled(self) -> bool:
        return self.recalled_at is not None

    @property
    def is_checked_in(self) -> bool:
        return self.checked_in_at is not None

    def __repr__(self) -> str:
        return f"<HarvestLot {self.lot_number} ({self.kind})>"


class LotLink(Base):
    """Ancestry: ``child`` was made from ``parent`` (split into packs, merged into a box).

    ``quantity`` is how much of the parent (in the parent's unit) went into the child.
    """

    __tablename__ = "shop_lot_links"
    __table_args__ = (Index("ix_shop_lot_links_child", "child_id"),)

    parent_id: Mapped[int] = mapped_column(ForeignKey("shop_lots.id", ondelete="CASCADE"), primary_key=True)
    child_id: Mapped[int] = mapped_column(ForeignKey("shop_lots.id", ondelete="CASCADE"), primary_key=True)
    quantity: Mapped[Decimal] = mapped_column(QTY)


class LotEvent(Base):
    """One step in a lot's story: harvested, packed, split, merged, inspected, sold, shipped, recalled."""

    __tablename__ = "shop_lot_events"
    __table_args__ = (Index("ix_shop_lot_events_lot_at", "lot_id", "at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    lot_id: Mapped[int] = mapped_column(ForeignKey("shop_lots.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(12))
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    quantity: Mapped[Decimal | None] = mapped_column(QTY)
    # Lots on the other side of a split/merge: {"inputs": [[lot_id, qty], ...], "outputs": [...]}
    details: Mapped[dict | None] = mapped_column(JSON)
    note: Mapped[str | None] = mapped_column(Text)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))

    lot: Mapped[HarvestLot] = relationship(back_populates="events")


class LotLookup(Base):
    """How often a lot's trace page was looked up, and when first and last (a counterfeit signal:
    a code copied onto fake goods is looked up far more often than one pack's buyers would).
    One row per lot, no personal data (no address, no browser); ``shop.trace.lookups`` counts
    with a conditional UPDATE, so concurrent scans never lose a count."""

    __tablename__ = "shop_trace_lookups"

    lot_id: Mapped[int] = mapped_column(ForeignKey("shop_lots.id", ondelete="CASCADE"), primary_key=True)
    lookups: Mapped[int] = mapped_column(default=0)
    first_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Inspection(Base):
    """A test of a lot, e.g. a pesticide residue test: lab, date, result, certificate file."""

    __tablename__ = "shop_inspections"

    id: Mapped[int] = mapped_column(primary_key=True)
    lot_id: Mapped[int] = mapped_column(ForeignKey("shop_lots.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(40), default="pesticide_residue")
    lab: Mapped[str] = mapped_column(String(120))
    tested_on: Mapped[date]
    result: Mapped[str] = mapped_column(String(10))  # pass | fail
    summary: Mapped[str | None] = mapped_column(Text)  # e.g. "organophosphates not detected"
    certificate_file: Mapped[str | None] = mapped_column(
        String(120)
    )  # stored name under instance/certificates
    certificate_name: Mapped[str | None] = mapped_column(String(200))  # original file name
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    lot: Mapped[HarvestLot] = relationship(back_populates="inspections")
    results: Mapped[list[InspectionResult]] = relationship(
        back_populates="inspection", cascade="all, delete-orphan", order_by="InspectionResult.position"
    )

    @property
    def passed(self) -> bool:
        return self.result == "pass"


RESULT_UNITS = ("mg/kg", "ug/kg", "mg/L")  # ug = µg


class InspectionResult(Base):
    """One measured substance of an inspection: its name, CAS number when known, the value
    (None = not detected), the unit and the limit (MRL, e.g. GB 2763) it is judged against."""

    __tablename__ = "shop_inspection_results"

    id: Mapped[int] = mapped_column(primary_key=True)
    inspection_id: Mapped[int] = mapped_column(
        ForeignKey("shop_inspections.id", ondelete="CASCADE"), index=True
    )
    position: Mapped[int] = mapped_column(default=0)
    substance: Mapped[str] = mapped_column(String(120))
    cas: Mapped[str | None] = mapped_column(String(12))  # e.g. "52315-07-8", check digit verified
    value: Mapped[Decimal | None] = mapped_column(Numeric(14, 4))  # None: not detected
    unit: Mapped[str] = mapped_column(String(8))  # one of RESULT_UNITS
    mrl: Mapped[Decimal | None] = mapped_column(Numeric(14, 4))  # maximum residue limit, same unit

    inspection: Mapped[Inspection] = relationship(back_populates="results")

    @property
    def detected(self) -> bool:
        return self.value is not None

    @property
    def exceeds(self) -> bool:
        return self.value is not None and self.mrl is not None and self.value > self.mrl


class InputUse(Base):
    """An input applied on a crop cycle by hand: a fertiliser, a pesticide (农药) or another
    input, as a production record (生产记录) holds it (``shop.trace.production`` validates and
    records it): name, registration number, supplier and purchase, method, dose, date,
    the pesticide's pre-harvest interval (安全间隔期) and target, who recorded it and when.

    Fertigation from the greenhouse controller is not copied here: ``shop.trace.production``
    derives it from ``iot_irrigation_events`` when it builds a cycle's production record.
    """

    __tablename__ = "shop_input_uses"

    id: Mapped[int] = mapped_column(primary_key=True)
    crop_cycle_id: Mapped[int] = mapped_column(
        ForeignKey("shop_crop_cycles.id", ondelete="CASCADE"), index=True
    )
    applied_on: Mapped[date]
    kind: Mapped[str] = mapped_column(String(12), default="fertiliser")  # fertiliser | pesticide | other
    # a pesticide's class: fungicide | insecticide | herbicide | acaricide | regulator | other
    pesticide_class: Mapped[str | None] = mapped_column(String(12))
    product: Mapped[str] = mapped_column(String(120))  # e.g. "腐熟羊粪", "43% 戊唑醇悬浮剂"
    registration_no: Mapped[str | None] = mapped_column(String(30))  # 农药登记证号 / 肥料登记证号
    supplier: Mapped[str | None] = mapped_column(String(120))
    purchased_on: Mapped[date | None]
    purchase_ref: Mapped[str | None] = mapped_column(String(60))  # invoice or receipt number
    method: Mapped[str | None] = mapped_column(String(12))  # spray | drench | drip | broadcast | ...
    amount: Mapped[Decimal] = mapped_column(QTY)  # how much of the product was used in all
    unit: Mapped[str] = mapped_column(String(20))  # kg | g | L | mL
    rate: Mapped[Decimal | None] = mapped_column(QTY)  # the dose per 亩, or the dilution (倍)
    rate_unit: Mapped[str | None] = mapped_column(String(12))  # g/mu | kg/mu | mL/mu | L/mu | dilution
    target: Mapped[str | None] = mapped_column(String(120))  # 防治对象, e.g. "霜霉病"
    interval_days: Mapped[int | None]  # 安全间隔期 in days (pesticides)
    source: Mapped[str] = mapped_column(String(12), default="manual")
    note: Mapped[str | None] = mapped_column(Text)
    # recorded although a harvest of the cycle lies inside its interval: an official's reason
    override_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    override_reason: Mapped[str | None] = mapped_column(Text)
    recorded_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    crop_cycle: Mapped[CropCycle] = relationship(back_populates="inputs")

    @property
    def first_harvest_on(self) -> date | None:
        """The first day the crop may be harvested after this pesticide (None: no interval)."""
        if self.kind != "pesticide" or not self.interval_days:
            return None
        return self.applied_on + timedelta(days=self.interval_days)


class PestControl(Base):
    """A pest or disease control record (病虫害防治记录): what was observed on a crop cycle and
    when, and what was done: chemical control (linked to the pesticide's ``InputUse``),
    physical, biological or agronomic control, or nothing yet."""

    __tablename__ = "shop_pest_controls"

    id: Mapped[int] = mapped_column(primary_key=True)
    crop_cycle_id: Mapped[int] = mapped_column(
        ForeignKey("shop_crop_cycles.id", ondelete="CASCADE"), index=True
    )
    observed_on: Mapped[date]
    observation: Mapped[str] = mapped_column(Text)  # e.g. "叶背出现霜霉病斑，约 5% 植株"
    control: Mapped[str] = mapped_column(String(12))  # chemical | physical | biological | agronomic | none
    measure: Mapped[str | None] = mapped_column(Text)  # what was done, e.g. "悬挂黄板 30 张"
    input_use_id: Mapped[int | None] = mapped_column(ForeignKey("shop_input_uses.id", ondelete="SET NULL"))
    recorded_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    input_use: Mapped[InputUse | None] = relationship(InputUse)


class Producer(Base):
    """Who produces and answers for what the trace pages, labels and certificates show (one
    row): the cooperative's (or household's) name, its 统一社会信用代码 (GB 32100) when it has
    one, its 主体码 on the national traceability platform when registered, its 产地 as an
    administrative address, and a phone. ``shop.trace.producer`` reads and changes it."""

    __tablename__ = "shop_trace_producer"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(120), default="")
    credit_code: Mapped[str] = mapped_column(String(18), default="")  # 统一社会信用代码
    platform_code: Mapped[str] = mapped_column(String(40), default="")  # 主体码 (national platform)
    province: Mapped[str] = mapped_column(String(40), default="")
    county: Mapped[str] = mapped_column(String(40), default="")  # county or county-level city
    township: Mapped[str] = mapped_column(String(40), default="")
    village: Mapped[str] = mapped_column(String(40), default="")
    address: Mapped[str] = mapped_column(String(200), default="")  # street, group, house number
    phone: Mapped[str] = mapped_column(String(40), default="")
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))


COMPLIANCE_BASES = ("commissioned_test", "self_test", "internal_control", "self_commitment")


class ComplianceCertificate(Base):
    """A 承诺达标合格证 (commitment certificate of compliance) issued for a lot, pack or box.

    Not to be confused with an inspection's uploaded lab report (``Inspection.certificate_file``).
    ``snapshot`` holds what was printed (producer, 产地, product, quantity, commitments, the
    trace URL): the producer's details may change later, a printed certificate must not.
    ``serial`` is unique; ``(year, number)`` is its sequence, unique per year.
    ``shop.trace.compliance`` issues them.
    """

    __tablename__ = "shop_trace_compliance_certificates"
    __table_args__ = (UniqueConstraint("year", "number", name="uq_shop_trace_compliance_year_number"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    serial: Mapped[str] = mapped_column(String(20), unique=True)
    year: Mapped[int]
    number: Mapped[int]
    lot_id: Mapped[int] = mapped_column(ForeignKey("shop_lots.id", ondelete="RESTRICT"), index=True)
    product_name: Mapped[str] = mapped_column(String(120))
    quantity: Mapped[Decimal] = mapped_column(QTY)
    unit: Mapped[str] = mapped_column(String(20))
    basis: Mapped[str] = mapped_column(String(20))  # one of COMPLIANCE_BASES
    issuer: Mapped[str] = mapped_column(String(12))  # cooperative | household
    producer_name: Mapped[str] = mapped_column(String(120))
    issued_on: Mapped[date]
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    issued_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    snapshot: Mapped[dict] = mapped_column(JSON)

    lot: Mapped[HarvestLot] = relationship(HarvestLot)

    @property
    def withdrawn(self) -> bool:
        """作废 by a recall of the lot (a recall reaches everything made from it). A pesticide
        recorded later withdraws it too: ``shop.trace.compliance.withdrawn_because`` says
        every reason, and the pages ask it."""
        return self.lot.recalled_at is not None


class ProductGtin(Base):
    """The GTIN staff gave one product in one net content (``shop.trace.gtins``).

    ``net_content`` is ``gtins.VARIABLE`` (sold by weight: a variable-measure GTIN-14 with
    indicator 9, each lot's weight travelling beside it), a weight in grams (``"5000 g"``:
    a pack of 10 jin) or one piece of unknown weight (``"1 box"``). ``gtin`` is stored as
    14 digits. ``product_id`` names the shop's products by table, like ``HarvestLot``.
    """

    __tablename__ = "shop_trace_gtins"
    __table_args__ = (UniqueConstraint("product_id", "net_content"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("shop_products.id", ondelete="CASCADE"), index=True)
    net_content: Mapped[str] = mapped_column(String(24))
    gtin: Mapped[str] = mapped_column(String(14), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
