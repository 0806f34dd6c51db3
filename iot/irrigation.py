"""Irrigation and fertigation events: pairing start and stop messages into events
(``store_event``, the one place every ingester and replay stores them), and summaries per
greenhouse and period, compared with the previous period.

Pairing happens in the database, so a start and its stop may reach different ingesters
(shared subscriptions), in either order, and be redelivered:

- with the controller's ``event_id`` (unique per device): the first of start and stop
  inserts the event, the other completes it with a conditional UPDATE (``started_at IS
  NULL`` / ``ended_at IS NULL``), so a redelivery, or two writers at once, change it once;
  a start or stop with another time than the run its id names is refused
  (``event_id_conflict``);
- without one, a start (or a complete event, or a stop naming its ``start``) is unique by
  device and start second; a bare stop closes the latest open event of its device and zone
  (an absent zone matches only events without one) that started at most ``max_duration_s``
  before it; with none it is refused (``unmatched_stop``: quarantined). When a start
  without id is stored, the quarantined stops of its device and zone that it can close are
  paired at once (``pair_waiting_stops``; the two sides serialise on a per-device lock, so a
  start and its stop stored at once by two writers never miss each other); replay pairs the
  rest by the same rule.

Values of the stop win over those of the start; the start's fill in what the stop left out.

Periods are local days (in the configured zone, ``core.clock``), weeks (Monday first) or
months. Events count in the period in which they started (a stop still waiting for its
start counts nowhere).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, timedelta
from typing import Any, cast

from sqlalchemy import ColumnElement, Table, and_, bindparam, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from core import clock
from iot.models import Greenhouse, IrrigationEvent, QuarantinedMessage
from iot.payloads import IrrigationMsg, PayloadError, decode_irrigation

PERIODS = ("day", "week", "month")

# the longest run a stop without an event id may close (IRRIGATION_MAX_HOURS)
DEFAULT_MAX_DURATION_S = 12 * 3600

EVENTS = cast(Table, IrrigationEvent.__table__)
QUARANTINE = cast(Table, QuarantinedMessage.__table__)
_DETAILS = ("water_l", "ec", "ph", "fertilizer")


# --- pairing (every path: ingesters, their writer processes, quarantine replay) -----------------


def store_event(
    session: Session,
    device_pk: int,
    greenhouse_id: int,
    msg: IrrigationMsg,
    *,
    max_duration_s: int = DEFAULT_MAX_DURATION_S,
) -> str:
    """Store one irrigation message in the caller's transaction (never commits).

    Returns ``"stored"`` (a new event row), ``"paired"`` (it completed an event) or
    ``"duplicate"`` (nothing changed: a redelivery). Raises ``PayloadError``
    ``unmatched_stop`` for a stop without event id that no open start fits, and
    ``event_id_conflict`` for a start or stop whose event id names a run of other times."""
    has_start = msg.started_at is not None
    has_stop = msg.action in ("stop", "complete")
    details = {k: getattr(msg, k) for k in _DETAILS if getattr(msg, k) is not None}
    if msg.event_id is None and not has_start:
        return _close_by_window(session, device_pk, msg, details, max_duration_s)
    row: dict[str, Any] = {
        "device_id": device_pk,
        "greenhouse_id": greenhouse_id,
        "event_id": msg.event_id,
        "zone": msg.zone,
        "started_at": msg.started_at,
        "ended_at": msg.ended_at if has_stop else None,
        **details,
    }
    if _insert(session, row):
        return "stored"
    # the event exists: this message completes it, or is a redelivery
    if msg.event_id is not None:
        key = and_(EVENTS.c.device_id == device_pk, EVENTS.c.event_id == msg.event_id)
        _same_run(session, key, msg, has_start, has_stop)
    else:
        key = and_(
            EVENTS.c.device_id == device_pk,
            EVENTS.c.event_id.is_(None),
            EVENTS.c.started_at == msg.started_at,
        )
    changed = 0
    if has_start:
        changed += _fill_start(session, key, msg, details)
    if has_stop:
        changed += _close(session, key, msg.ended_at, details)
    if not changed and msg.event_id is not None:
        _same_run(session, key, msg, has_start, has_stop)  # another writer got there first
    return "paired" if changed else "duplicate"


def _same_run(
    session: Session, key: ColumnElement[bool], msg: IrrigationMsg, has_start: bool, has_stop: bool
) -> None:
    """A start or stop whose event id already names a run with another start or end (a
    controller that reused its ids, e.g. a counter reset by a reboot) is refused
    (``event_id_conflict``: quarantined), rather than silently dropped or merged."""
    row = session.execute(select(EVENTS.c.started_at, EVENTS.c.ended_at).where(key)).first()
    if row is None:
        return
    if has_start and row.started_at is not None and row.started_at != msg.started_at:
        raise PayloadError(
            "event_id_conflict",
            f"event_id {msg.event_id} is a run started at {row.started_at}, not {msg.started_at}",
        )
    if has_stop and row.ended_at is not None and row.ended_at != msg.ended_at:
        raise PayloadError(
            "event_id_conflict",
            f"event_id {msg.event_id} is a run ended at {row.ended_at}, not {msg.ended_at}",
        )


def _insert(session: Session, row: dict[str, Any]) -> bool:
    """INSERT .. ON CONFLICT DO NOTHING (any unique key); True if the row is new."""
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt = insert(EVENTS).values(**row).on_conflict_do_nothing().returning(EVENTS.c.id)
    return session.execute(stmt).first() is not None


def _fill_start(session: Session, key: ColumnElement[bool], msg: IrrigationMsg, details: dict) -> int:
    """The start of an event its stop created (or a complete event's values the stop left
    out): only where nothing is set yet, so a redelivered start changes nothing."""
    values: dict[str, Any] = {
        k: func.coalesce(EVENTS.c[k], bindparam(f"start_{k}", v, type_=EVENTS.c[k].type))
        for k, v in details.items()
    }
    if msg.zone is not None:
        values["zone"] = func.coalesce(EVENTS.c.zone, bindparam("start_zone", msg.zone))
    if msg.event_id is not None:
        # the row a stop created has no start yet: claim it once
        claim = update(EVENTS).where(key, EVENTS.c.started_at.is_(None))
        result = session.execute(claim.values(started_at=msg.started_at, **values))
        return result.rowcount  # type: ignore[attr-defined]
    if values:
        session.execute(update(EVENTS).where(key).values(**values))
    return 0


def _close(session: Session, key: ColumnElement[bool], ended_at: int | None, details: dict) -> int:
    """Close the open event ``key`` names: a conditional UPDATE, so of two writers (or a
    redelivery) only the first changes it."""
    result = session.execute(
        update(EVENTS).where(key, EVENTS.c.ended_at.is_(None)).values(ended_at=ended_at, **details)
    )
    return result.rowcount  # type: ignore[attr-defined]


def _close_by_window(
    session: Session, device_pk: int, msg: IrrigationMsg, details: dict, max_duration_s: int
) -> str:
    """A stop without event id or start: the latest open event of its device and zone that
    started at most ``max_duration_s`` before it."""
    assert msg.ended_at is not None
    zone = EVENTS.c.zone.is_(None) if msg.zone is None else EVENTS.c.zone == msg.zone
    window = and_(
        EVENTS.c.device_id == device_pk,
        EVENTS.c.event_id.is_(None),
        zone,
        EVENTS.c.started_at <= msg.ended_at,
        EVENTS.c.started_at >= msg.ended_at - max_duration_s,
    )
    locked = False
    for _attempt in range(20):  # another writer may close the candidate first: look again
        closed = session.execute(
            select(EVENTS.c.id).where(window, EVENTS.c.ended_at == msg.ended_at).limit(1)
        ).first()
        if closed is not None:
            return "duplicate"  # this very stop closed it already
        candidate = session.execute(
            select(EVENTS.c.id)
            .where(window, EVENTS.c.ended_at.is_(None))
            .order_by(EVENTS.c.started_at.desc())
            .limit(1)
        ).first()
        if candidate is None:
            if locked:
                break
            # about to refuse it: first wait for any writer storing a start of this device
            # (it then sees our quarantined stop, or we see its start)
            _serialize(session, device_pk)
            locked = True
            continue
        if _close(session, EVENTS.c.id == candidate.id, msg.ended_at, details):
            return "paired"
    hours = max_duration_s / 3600
    raise PayloadError(
        "unmatched_stop",
        f"no open irrigation of zone {msg.zone or '-'} in the {hours:g} h before {msg.ended_at}",
    )


def pair_waiting_stops(
    session: Session,
    topic: str,
    device_pk: int,
    start: IrrigationMsg,
    *,
    max_duration_s: int = DEFAULT_MAX_DURATION_S,
) -> int:
    """A start without event id has just been stored: stops of its device and zone that came
    first (quarantined as ``unmatched_stop``, from the same topic) and ended within
    ``max_duration_s`` after it are paired now, by the same rule as any stop, and their
    quarantine rows marked replayed. Returns how many were paired."""
    assert start.started_at is not None
    _serialize(session, device_pk)  # a writer quarantining a stop of this device commits first
    rows = session.execute(
        select(QUARANTINE.c.id, QUARANTINE.c.payload, QUARANTINE.c.received_at).where(
            QUARANTINE.c.reason == "unmatched_stop",
            QUARANTINE.c.replayed_at.is_(None),
            QUARANTINE.c.topic == topic,
        )
    ).all()
    stops: list[tuple[int, int, IrrigationMsg]] = []
    for qid, payload, received_at in rows:
        try:
            stop = decode_irrigation(bytes(payload), received_at.replace(tzinfo=UTC).timestamp())
        except PayloadError:
            continue
        if (
            stop.action == "stop"
            and stop.event_id is None
            and stop.started_at is None
            and stop.zone == start.zone
            and stop.ended_at is not None
            and start.started_at <= stop.ended_at <= start.started_at + max_duration_s
        ):
            stops.append((stop.ended_at, qid, stop))
    paired = 0
    for _ended, qid, stop in sorted(stops, key=lambda s: (s[0], s[1])):  # the first stop after it
        details = {k: getattr(stop, k) for k in _DETAILS if getattr(stop, k) is not None}
        try:
            _close_by_window(session, device_pk, stop, details, max_duration_s)
        except PayloadError:
            continue  # its own start is another, still to come
        done = session.execute(
            update(QUARANTINE)
            .where(QUARANTINE.c.id == qid, QUARANTINE.c.replayed_at.is_(None))
            .values(replayed_at=clock.now())
        )
        paired += done.rowcount  # type: ignore[attr-defined]
    return paired


# PostgreSQL advisory lock class: (this, device pk) serialises a no-id start and a no-id stop
# that would otherwise miss each other (each in a transaction the other cannot see yet)
_LOCK_CLASS = 15_06


def _serialize(session: Session, device_pk: int) -> None:
    """Until the end of the transaction, no other writer is between storing a start without
    event id and looking for its stops, or between missing a start and quarantining the stop:
    PostgreSQL an advisory lock per device; SQLite its write lock (an UPDATE of no row)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(select(func.pg_advisory_xact_lock(_LOCK_CLASS, device_pk)))
    else:
        session.execute(update(EVENTS).where(EVENTS.c.id == -1).values(id=EVENTS.c.id))


def stops_waiting_for_start(session: Session, greenhouse_id: int) -> int:
    """Stops (with an event id) whose start has not arrived: they count nowhere until it does."""
    query = (
        select(func.count())
        .select_from(EVENTS)
        .where(EVENTS.c.greenhouse_id == greenhouse_id, EVENTS.c.started_at.is_(None))
    )
    return session.scalar(query) or 0


def run_state(event: IrrigationEvent, now: int, max_duration_s: int) -> str:
    """``done``; ``running`` (started, no stop yet, within the longest run); ``no_stop`` (its
    stop never came: no stop without event id can close it any more)."""
    if event.ended_at is not None:
        return "done"
    if event.started_at is not None and now - event.started_at <= max_duration_s:
        return "running"
    return "no_stop"


# --- summaries -----------------------------------------------------------------------------------


@dataclass
class IrrigationSummary:
    start: int
    end: int
    count: int = 0
    water_l: float = 0.0
    duration_s: int = 0
    fertilizer: dict[str, float] = field(default_factory=dict)
    avg_ec: float | None = None
    avg_ph: float | None = None
    water_per_m2: float | None = None  # litres per square metre (= mm of water)

    def as_dict(self) -> dict:
        return {
            "start": self.start,
            "end": self.end,
            "irrigations": self.count,
            "water_l": round(self.water_l, 3),
            "duration_s": self.duration_s,
            "fertilizer": {k: round(v, 3) for k, v in sorted(self.fertilizer.items())},
            "avg_ec": None if self.avg_ec is None else round(self.avg_ec, 3),
            "avg_ph": None if self.avg_ph is None else round(self.avg_ph, 3),
            "water_per_m2": None if self.water_per_m2 is None else round(self.water_per_m2, 3),
        }


@dataclass
class Comparison:
    period: str
    current: IrrigationSummary
    previous: IrrigationSummary

    def change(self, attr: str) -> float | None:
        """Relative change of ``attr`` against the previous period (0.25 = +25%); None if no base."""
        now, before = getattr(self.current, attr), getattr(self.previous, attr)
        if now is None or before in (None, 0):
            return None
        return (now - before) / before

    def as_dict(self) -> dict:
        return {
            "period": self.period,
            "current": self.current.as_dict(),
            "previous": self.previous.as_dict(),
            "change": {k: self.change(k) for k in ("count", "water_l", "avg_ec", "avg_ph", "water_per_m2")},
        }


def period_bounds(period: str, at: int) -> tuple[int, int]:
    """[start, end) epoch seconds of the local period containing ``at``."""
    if period not in PERIODS:
        raise ValueError(f"period must be one of {', '.join(PERIODS)}")
    day = clock.local_date(at)
    if period == "day":
        start, end = day, day + timedelta(days=1)
    elif period == "week":
        start = day - timedelta(days=day.weekday())
        end = start + timedelta(days=7)
    else:
        start = day.replace(day=1)
        end = (start + timedelta(days=32)).replace(day=1)
    return clock.day_start_ts(start), clock.day_start_ts(end)


def previous_bounds(period: str, start: int) -> tuple[int, int]:
    return period_bounds(period, start - 1)


def summarize(session: Session, greenhouse: Greenhouse, start: int, end: int) -> IrrigationSummary:
    events = session.scalars(
        select(IrrigationEvent).where(
            IrrigationEvent.greenhouse_id == greenhouse.id,
            IrrigationEvent.started_at >= start,
            IrrigationEvent.started_at < end,
        )
    )
    out = IrrigationSummary(start, end)
    ec, ph = [], []
    for ev in events:
        out.count += 1
        out.water_l += ev.water_l or 0.0
        if ev.ended_at and ev.started_at is not None:
            out.duration_s += max(ev.ended_at - ev.started_at, 0)
        for tank, amount in (ev.fertilizer or {}).items():
            if isinstance(amount, int | float):
                out.fertilizer[tank] = out.fertilizer.get(tank, 0.0) + float(amount)
        if ev.ec is not None:
            ec.append((ev.ec, ev.water_l or 1.0))
        if ev.ph is not None:
            ph.append((ev.ph, ev.water_l or 1.0))
    # averages weighted by water volume: a long fertigation counts more than a short rinse
    if ec:
        out.avg_ec = sum(v * w for v, w in ec) / sum(w for _, w in ec)
    if ph:
        out.avg_ph = sum(v * w for v, w in ph) / sum(w for _, w in ph)
    if greenhouse.area_m2:
        out.water_per_m2 = out.water_l / greenhouse.area_m2
    return out


def compare(session: Session, greenhouse: Greenhouse, period: str, at: int) -> Comparison:
    """The period containing ``at`` and the one before it."""
    start, end = period_bounds(period, at)
    p_start, p_end = previous_bounds(period, start)
    return Comparison(
        period, summarize(session, greenhouse, start, end), summarize(session, greenhouse, p_start, p_end)
    )
