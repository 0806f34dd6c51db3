"""Demo data for the shop domain."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session


def seed(session: Session, ctx: dict[str, Any]) -> None:
    """Nothing yet."""
