"""Hourly and daily rollups of readings, kept up to date as readings arrive.

``apply_readings`` sits on the ingest hot path: the ingester hands it the rows it has just
inserted (inside its batch transaction) and it folds them into the rollups with three
set-based upserts (hourly, daily, latest value). Each bucket keeps count, sum, min and
max, so adding a late or replayed reading only ever *adds* to the right bucket; the mean
is sum / count. Hourly buckets are UTC hours; daily buckets are local days in the
configured zone (``core.clock``), keyed by the epoch second of local midnight.

``rebuild`` recomputes the rollups from raw readings (e.g. after a bulk import); it only
touches days for which raw readings still exist, so rollups of pruned days survive.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, cast

from sqlalchemy import text
from sqlalchemy.engine import Connection, CursorResult
from sqlalchemy.orm import Session

from core import clock

HOUR = 3600
DAY = 86400

Progress = Callable[[int, int], None]


def hour_bucket(ts: int) -> int:
    return ts - ts % HOUR


def _dialect(bind: Session | Connection) -> str:
    return bind.get_bind().dialect.name if isinstance(bind, Session) else bind.dialect.name


def _upsert_sql(table: str, dialect: str) -> str:
    least, greatest = ("least", "greatest") if dialect == "postgresql" else ("min", "max")
    return (
        f"INSERT INTO {table} (greenhouse_id, metric_id, bucket, count, sum, min, max) "
        "VALUES (:g, :m, :b, :c, :s, :lo, :hi) "
        "ON CONFLICT (greenhouse_id, metric_id, bucket) DO UPDATE SET "
        f"count = {table}.count + excluded.count, sum = {table}.sum + excluded.sum, "
        f"min = {least}({table}.min, excluded.min), max = {greatest}({table}.max, excluded.max)"
    )


LATEST_SQL = (
    "INSERT INTO iot_latest (greenhouse_id, metric_id, ts, value) VALUES (:g, :m, :ts, :v) "
    "ON CONFLICT (greenhouse_id, metric_id) DO UPDATE SET ts = excluded.ts, value = excluded.value "
    "WHERE excluded.ts >= iot_latest.ts"
)


def _fold(rows: Iterable[Mapping[str, Any]]):
    day = clock.day_bucket
    hourly: dict[tuple[int, int, int], list] = {}
    daily: dict[tuple[int, int, int], list] = {}
    latest: dict[tuple[int, int], tuple[int, float]] = {}
    for row in rows:
        g, m, ts, v = row["greenhouse_id"], row["metric_id"], int(row["ts"]), float(row["value"])
        for acc, key in ((hourly, (g, m, ts - ts % HOUR)), (daily, (g, m, day(ts)))):
            a = acc.get(key)
            if a is None:
                acc[key] = [1, v, v, v]
            else:
                a[0] += 1
                a[1] += v
                if v < a[2]:
                    a[2] = v
                if v > a[3]:
                    a[3] = v
        cur = latest.get((g, m))
        if cur is None or ts >= cur[0]:
            latest[(g, m)] = (ts, v)
    return hourly, daily, latest


def _params(acc):
    return [
        {"g": g, "m": m, "b": b, "c": a[0], "s": a[1], "lo": a[2], "hi": a[3]} for (g, m, b), a in acc.items()
    ]


def apply_readings(bind: Session | Connection, rows: Sequence[Mapping[str, Any]]) -> int:
    """Fold newly inserted readings into the hourly and daily rollups and the latest values.

    ``rows``: dicts with greenhouse_id, metric_id, ts (epoch seconds) and value. Pass only
    rows that were really inserted (not duplicates ignored by the unique key), or they are
    counted twice. Does not commit. Returns the number of hourly buckets touched.
    """
    if not rows:
        return 0
    hourly, daily, latest = _fold(rows)
    dialect = _dialect(bind)
    # sorted keys: concurrent ingesters lock buckets in the same order (no deadlocks on PostgreSQL)
    bind.execute(text(_upsert_sql("iot_rollups_hourly", dialect)), sorted(_params(hourly), key=_key))
    bind.execute(text(_upsert_sql("iot_rollups_daily", dialect)), sorted(_params(daily), key=_key))
    bind.execute(
        text(LATEST_SQL),
        [{"g": g, "m": m, "ts": ts, "v": v} for (g, m), (ts, v) in sorted(latest.items())],
    )
    return len(hourly)


def _key(p: Mapping[str, Any]) -> tuple[int, int, int]:
    return (p["g"], p["m"], p["b"])


def rebuild(
    session: Session,
    *,
    greenhouse_ids: list[int] | None = None,
    start: int | None = None,
    end: int | None = None,
    chunk_days: int = 31,
    progress: Progress | None = None,
) -> int:
    """Recompute rollups (and latest values) from raw readings; returns hourly buckets written.

    Works on whole local days from the first raw reading (or ``start``) to the last (or
    ``end``), per greenhouse, in chunks of ``chunk_days``; ``progress(done, total)`` is
    called after each chunk. Days without raw readings are left alone. Does not commit.
    """
    gh_filter = ""
    params: dict[str, Any] = {}
    if greenhouse_ids is not None:
        if not greenhouse_ids:
            return 0
        gh_filter = "WHERE greenhouse_id IN ({})".format(",".join(str(int(g)) for g in greenhouse_ids))
    spans = session.execute(
        text(f"SELECT greenhouse_id, min(ts), max(ts) FROM iot_readings {gh_filter} GROUP BY greenhouse_id"),
        params,
    ).all()
    chunks: list[tuple[int, int, int]] = []
    for gh, lo, hi in spans:
        first = max(lo, start) if start is not None else lo
        days = clock.midnights(first, min(hi, end - 1) if end is not None else hi)
        for i in range(0, len(days) - 1, chunk_days):
            chunks.append((gh, days[i], days[min(i + chunk_days, len(days) - 1)]))
    dialect = session.get_bind().dialect.name
    hourly_total = 0
    for i, (gh, s, e) in enumerate(chunks):
        p = {"g": gh, "s": s, "e": e}
        for table in ("iot_rollups_hourly", "iot_rollups_daily"):
            session.execute(
                text(f"DELETE FROM {table} WHERE greenhouse_id = :g AND bucket >= :s AND bucket < :e"), p
            )
        result = cast(
            CursorResult[Any],
            session.execute(
                text(
                    "INSERT INTO iot_rollups_hourly (greenhouse_id, metric_id, bucket, count, sum, min, max) "
                    "SELECT greenhouse_id, metric_id, ts - (ts % 3600), count(*), sum(value), min(value), "
                    "max(value) "
                    "FROM iot_readings WHERE greenhouse_id = :g AND ts >= :s AND ts < :e "
                    "GROUP BY greenhouse_id, metric_id, ts - (ts % 3600)"
                ),
                p,
            ),
        )
        hourly_total += max(result.rowcount or 0, 0)
        session.execute(text(_daily_sql(s, e)), p)
        if progress:
            progress(i + 1, len(chunks))
    _rebuild_latest(session, greenhouse_ids, dialect)
    return hourly_total


def _daily_sql(start: int, end: int) -> str:
    """Daily rollups of the local days in [start, end): the sum of their hours when every local
    midnight falls on a UTC hour (all whole-hour zones), else straight from raw readings."""
    head = "INSERT INTO iot_rollups_daily (greenhouse_id, metric_id, bucket, count, sum, min, max) "
    if all(m % HOUR == 0 for m in clock.midnights(start, end - 1)):
        day = clock.day_bucket_sql("bucket", start, end)
        return (
            f"{head}SELECT greenhouse_id, metric_id, {day}, sum(count), sum(sum), min(min), max(max) "
            "FROM iot_rollups_hourly WHERE greenhouse_id = :g AND bucket >= :s AND bucket < :e "
            f"GROUP BY greenhouse_id, metric_id, {day}"
        )
    day = clock.day_bucket_sql("ts", start, end)
    return (
        f"{head}SELECT greenhouse_id, metric_id, {day}, count(*), sum(value), min(value), max(value) "
        "FROM iot_readings WHERE greenhouse_id = :g AND ts >= :s AND ts < :e "
        f"GROUP BY greenhouse_id, metric_id, {day}"
    )


def _rebuild_latest(session: Session, greenhouse_ids: list[int] | None, dialect: str) -> None:
    where = ""
    if greenhouse_ids is not None:
        where = "WHERE r.greenhouse_id IN ({})".format(",".join(str(int(g)) for g in greenhouse_ids))
    session.execute(text(f"DELETE FROM iot_latest {where.replace('r.', '')}"))
    session.execute(
        text(
            "INSERT INTO iot_latest (greenhouse_id, metric_id, ts, value) "
            "SELECT r.greenhouse_id, r.metric_id, r.ts, max(r.value) FROM iot_readings r "
            "JOIN (SELECT greenhouse_id, metric_id, max(ts) AS ts FROM iot_readings GROUP BY "
            "greenhouse_id, metric_id) l "
            "ON l.greenhouse_id = r.greenhouse_id AND l.metric_id = r.metric_id AND l.ts = r.ts "
            f"{where} GROUP BY r.greenhouse_id, r.metric_id, r.ts"
        )
    )
