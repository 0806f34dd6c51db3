"""One clock for the whole system: the configured time zone, now, local today and day buckets.

Times are stored in UTC (``core.db.UTCDateTime``) or as epoch seconds (sensor data). They
are shown, and grouped into days, in one zone: ``TIANYUAN_TIMEZONE`` (default
``Asia/Shanghai``). Each process sets it once when it starts (``create_app``, the
ingester and its writer, the workers) with ``configure``; until then the default applies.
Every "today", every local day boundary and every local rendering goes through here, so
a village in another zone (or a test) changes one setting, not seven modules.

Day buckets are the epoch second of the local midnight that starts a day. Zones with
daylight saving have 23- and 25-hour days; ``day_bucket`` and ``day_bucket_sql`` are
exact for them (``Asia/Shanghai`` has had a fixed offset since 1991, so for it they
reduce to arithmetic).

Tests may ``freeze`` the clock (``with clock.frozen(datetime(...)):``) or run in another
zone (``with clock.using("Europe/Berlin"):``).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DEFAULT_TIMEZONE = "Asia/Shanghai"
DAY = 86400
LAST_TS = 7258118399  # 2199-12-31 23:59:59 UTC: room for any zone, week and month after it
_QUARTER = 900  # every zone's offset is a multiple of 15 minutes (since 1900)


class ClockError(ValueError):
    """An unknown time zone or an unreadable time."""


@dataclass
class _State:
    name: str = DEFAULT_TIMEZONE
    zone: ZoneInfo | None = None
    frozen: datetime | None = None
    buckets: dict[int, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


_state = _State()


def _load(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ClockError(f"unknown time zone {name!r} (e.g. Asia/Shanghai)") from None


def valid_timezone(name: str) -> bool:
    try:
        _load(name)
    except ClockError:
        return False
    return True


def configure(name: str) -> None:
    """Set the zone times are shown and grouped in (ClockError if unknown)."""
    zone = _load(name)
    with _state.lock:
        _state.name, _state.zone = name, zone
        _state.buckets = {}


def zone() -> ZoneInfo:
    if _state.zone is None:
        _state.zone = _load(_state.name)
    return _state.zone


def zone_name() -> str:
    return _state.name


# --- now ------------------------------------------------------------------------------


def now() -> datetime:
    """The current time, timezone-aware UTC (the frozen time in tests)."""
    return _state.frozen if _state.frozen is not None else datetime.now(UTC)


def now_ts() -> int:
    """The current time in epoch seconds."""
    return int(now().timestamp())


def local(value: datetime | int | float) -> datetime:
    """A UTC datetime (naive ones are taken as UTC) or epoch seconds, in the configured zone."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(zone())
    return datetime.fromtimestamp(value, zone())


def local_date(value: datetime | int | float) -> date:
    return local(value).date()


def today() -> date:
    """Today's date in the configured zone (not the server's)."""
    return local(now()).date()


# --- days -----------------------------------------------------------------------------


def day_start(day: date) -> datetime:
    """The local midnight that starts ``day`` (aware, in the configured zone)."""
    return datetime.combine(day, time(0), zone())


def day_start_ts(day: date) -> int:
    return int(day_start(day).timestamp())


def day_range(day: date) -> tuple[int, int]:
    """[start, end) of a local day in epoch seconds (23 or 25 hours long on DST days)."""
    return day_start_ts(day), day_start_ts(day + timedelta(days=1))


def at_local(day: date, hour: int = 0, minute: int = 0) -> datetime:
    """``day`` at a local wall-clock time (aware, in the configured zone)."""
    return datetime.combine(day, time(hour, minute), zone())


def day_bucket(ts: int) -> int:
    """Epoch second of the local midnight that starts ``ts``'s local day (cached)."""
    key = ts // _QUARTER
    found = _state.buckets.get(key)
    if found is None:
        found = day_start_ts(local_date(key * _QUARTER))
        if len(_state.buckets) > 200_000:
            _state.buckets.clear()
        _state.buckets[key] = found
    return found


def midnights(start: int, end: int) -> list[int]:
    """Every local midnight from the one starting ``start``'s day up to and including ``end``'s day."""
    out = []
    day = local_date(start)
    last = local_date(max(end, start))
    while day <= last:
        out.append(day_start_ts(day))
        day += timedelta(days=1)
    out.append(day_start_ts(day))
    return out


def fixed_offset(start: int, end: int) -> int | None:
    """The zone's UTC offset in seconds if it is the same over [start, end], else None."""
    offsets = {
        int(local(m).utcoffset().total_seconds())  # type: ignore[union-attr]
        for m in (start, end, *midnights(start, end))
    }
    return offsets.pop() if len(offsets) == 1 else None


def day_bucket_sql(column: str, start: int, end: int) -> str:
    """An SQL expression that maps epoch seconds in ``column`` (within [start, end)) to their
    local day bucket: arithmetic for a fixed-offset span, else a CASE over the midnights."""
    offset = fixed_offset(start, end)
    if offset is not None:
        return f"(({column} + {offset}) / {DAY} * {DAY} - {offset})"
    bounds = midnights(start, end)
    whens = " ".join(f"WHEN {column} < {b} THEN {a}" for a, b in zip(bounds, bounds[1:], strict=False))
    return f"(CASE {whens} ELSE {bounds[-1]} END)"


# --- parsing --------------------------------------------------------------------------


def parse_time(value: str | None, default: int) -> int:
    """Epoch seconds from an epoch number or ISO 8601 text (naive = the configured zone).

    ``default`` when empty; ``ClockError`` (a ValueError) when unreadable or out of range.
    """
    if value is None or value.strip() == "":
        return default
    value = value.strip()
    try:
        number = float(value)
    except ValueError:
        pass
    else:
        if not 0 <= number <= LAST_TS:  # NaN, before 1970, beyond year 9999
            raise ClockError(f"not a time between 1970 and 2199: {value!r}")
        return int(number)
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ClockError(f"not a time: {value!r}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=zone())
    ts = int(parsed.timestamp())  # aware: no conversion that could overflow
    if not 0 <= ts <= LAST_TS:
        raise ClockError(f"not a time between 1970 and 2199: {value!r}")
    return ts


# --- tests ----------------------------------------------------------------------------


@contextmanager
def frozen(at: datetime) -> Iterator[None]:
    """Freeze ``now()`` (and so ``today()``) at ``at`` (aware) for the block."""
    if at.tzinfo is None:
        raise ClockError("frozen() needs an aware datetime")
    before = _state.frozen
    _state.frozen = at.astimezone(UTC)
    try:
        yield
    finally:
        _state.frozen = before


@contextmanager
def using(name: str) -> Iterator[None]:
    """Run the block in another configured zone."""
    before = _state.name
    configure(name)
    try:
        yield
    finally:
        configure(before)
