"""Retention: raw readings are kept for a configurable number of days (``RAW_RETENTION_DAYS``,
default 90); hourly and daily rollups are kept (hourly can be pruned too, daily never).

Cut-offs fall on local midnight, so every raw day that remains is complete and a rollup
rebuild over the remaining raw data reproduces the same rollups. Deletion goes per
greenhouse and in slices of days so that no transaction grows without bound; the caller
commits between slices (``flask iot data retention`` does).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, cast

from sqlalchemy import text
from sqlalchemy.engine import CursorResult
from sqlalchemy.orm import Session

from core import clock
from iot.rollups import DAY


@dataclass
class Slice:
    table: str
    greenhouse_id: int
    start: int
    end: int
    deleted: int


def cutoff(now: int, days: int) -> int:
    """Local midnight ``days`` days before ``now``'s day: everything before it goes."""
    if days < 1:
        raise ValueError("retention must be at least one day")
    return clock.day_start_ts(clock.local_date(now) - timedelta(days=days))


def count_older(session: Session, before: int, table: str = "iot_readings") -> int:
    col = "ts" if table == "iot_readings" else "bucket"
    return session.execute(text(f"SELECT count(*) FROM {table} WHERE {col} < :c"), {"c": before}).scalar_one()


def prune(
    session: Session, before: int, *, table: str = "iot_readings", slice_days: int = 7
) -> Iterator[Slice]:
    """Delete rows older than ``before`` from ``table`` (iot_readings or iot_rollups_hourly),
    one greenhouse and ``slice_days`` at a time; yields after each slice (commit there)."""
    if table not in ("iot_readings", "iot_rollups_hourly"):
        raise ValueError("only raw readings and hourly rollups are pruned")
    col = "ts" if table == "iot_readings" else "bucket"
    spans = session.execute(
        text(f"SELECT greenhouse_id, min({col}) FROM {table} WHERE {col} < :c GROUP BY greenhouse_id"),
        {"c": before},
    ).all()
    for gh, lo in spans:
        start = lo
        while start < before:
            end = min(start + slice_days * DAY, before)
            result = cast(
                CursorResult[Any],
                session.execute(
                    text(f"DELETE FROM {table} WHERE greenhouse_id = :g AND {col} >= :s AND {col} < :e"),
                    {"g": gh, "s": start, "e": end},
                ),
            )
            yield Slice(table, gh, start, end, max(result.rowcount or 0, 0))
            start = end
