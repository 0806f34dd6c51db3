"""Tables of the village books (coop_*)."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import String, Text
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base, UTCDateTime, utcnow


class Household(Base):
    """A member household (成员户) of the village collective economic organisation."""

    __tablename__ = "coop_households"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(20), unique=True)
    head_name: Mapped[str] = mapped_column(String(60))  # 户主
    members: Mapped[int] = mapped_column(default=1)
    phone: Mapped[str | None] = mapped_column(String(40))
    address: Mapped[str | None] = mapped_column(String(200))
    joined_on: Mapped[date | None]
    active: Mapped[bool] = mapped_column(default=True)
    note: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
