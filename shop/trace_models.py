"""Traceability tables (shop_*): crop cycles, harvest lots and their ancestry.

A product's stock is the sum of its lots' ``remaining`` quantity; the shop takes from
the oldest lot first.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import ForeignKey, Numeric, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base, UTCDateTime, utcnow

QTY = Numeric(12, 3)


class CropCycle(Base):
    """One planting in one greenhouse: crop, variety, planting date, expected harvest."""

    __tablename__ = "shop_crop_cycles"

    id: Mapped[int] = mapped_column(primary_key=True)
    greenhouse_id: Mapped[int] = mapped_column(ForeignKey("iot_greenhouses.id", ondelete="RESTRICT"), index=True)
    crop: Mapped[str] = mapped_column(String(60))
    variety: Mapped[str | None] = mapped_column(String(80))
    planted_on: Mapped[date]
    expected_harvest_on: Mapped[date | None]
    ended_on: Mapped[date | None]
    note: Mapped[str | None] = mapped_column(Text)


class HarvestLot(Base):
    """A harvest lot (or a pack split from one, or a box merged from several)."""

    __tablename__ = "shop_lots"

    id: Mapped[int] = mapped_column(primary_key=True)
    lot_number: Mapped[str] = mapped_column(String(40), unique=True)
    code: Mapped[str] = mapped_column(String(16), unique=True)  # short unguessable public trace code
    product_id: Mapped[int | None] = mapped_column(ForeignKey("shop_products.id", ondelete="SET NULL"), index=True)
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
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class LotLink(Base):
    """Ancestry: ``child`` was made from ``parent`` (split into packs, merged into a box)."""

    __tablename__ = "shop_lot_links"

    parent_id: Mapped[int] = mapped_column(ForeignKey("shop_lots.id", ondelete="CASCADE"), primary_key=True)
    child_id: Mapped[int] = mapped_column(ForeignKey("shop_lots.id", ondelete="CASCADE"), primary_key=True)
    quantity: Mapped[Decimal] = mapped_column(QTY)
