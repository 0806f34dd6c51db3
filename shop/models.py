"""Tables of the shop (shop_*): catalogue, carts, reservations, orders, payments.

Harvest lots (the stock behind products) live in ``shop.trace_models``.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base, UTCDateTime, utcnow


class Category(Base):
    __tablename__ = "shop_categories"

    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(String(60), unique=True)
    name_zh: Mapped[str] = mapped_column(String(60))
    name_en: Mapped[str] = mapped_column(String(60))
    position: Mapped[int] = mapped_column(default=0)


class Product(Base):
    __tablename__ = "shop_products"

    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(String(80), unique=True)
    gtin: Mapped[str | None] = mapped_column(String(14), unique=True)  # GS1 GTIN-13/14 for Digital Link
    name_zh: Mapped[str] = mapped_column(String(120))
    name_en: Mapped[str] = mapped_column(String(120))
    description_zh: Mapped[str] = mapped_column(Text, default="")
    description_en: Mapped[str] = mapped_column(Text, default="")
    category_id: Mapped[int | None] = mapped_column(ForeignKey("shop_categories.id", ondelete="SET NULL"), index=True)
    unit: Mapped[str] = mapped_column(String(20))  # kg | jin | box | bag
    price_fen: Mapped[int]
    crop: Mapped[str | None] = mapped_column(String(60))  # links to greenhouse crop / crop cycles
    image: Mapped[str | None] = mapped_column(String(200))  # path under static/
    on_sale_from: Mapped[date | None]
    on_sale_to: Mapped[date | None]
    consignment: Mapped[bool] = mapped_column(default=False)  # goods sold on behalf of households
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
