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
  device and start second, and a bare start or stop pairs by zone (an absent zone matches
  only events without one): a start's stop is the first stop at or after it, before the
  next start of its device and zone, and at most ``max_duration_s`` after it. Each arrival
  re-pairs the run just before it under a per-device lock (so two writers storing the two
  halves at once never miss each other), so the result does not depend on the order of
  arrival: a stop that closed the run before moves to its own run when that start comes; a
  stop with no start is refused (``unmatched_stop``: quarantined) and taken from the
  quarantine when its start is stored. Replay pairs by the same rule.

Values of the stop win over those of the start; the start's fill in what the stop left out.

Periods are local days (in the configured zone, ``core.clock``), weeks (Monday first) or
months. Events count in the period in which they started (a stop still waiting for its
start counts nowhere).
"""

from __future__ import annotations

import json
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
# a start looks at this many of its device's newest waiting stops (a device flooding stops
# makes starts no slower)
WAITING_STOPS_LOOKED_AT = 500

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
    topic: str | None = None,
) -> str:
    """Store one irrigation message in the caller's transaction (never commits). ``topic``:
    the message's, for stops without event id that wait in the quarantine for their start.

    Returns ``"stored"`` (a new event row), ``"paired"`` (it completed an event) or
    ``"duplicate"`` (nothing changed: a redelivery). Raises ``PayloadError``
    ``unmatched_stop`` for a stop without event id that no open start fits, and
    ``event_id_conflict`` for a start or stop whose event id names a run of other times."""
    has_start = msg.started_at is not None
    has_stop = msg.action in ("stop", "complete")
    details = {k: getattr(msg, k) for k in _DETAILS if getattr(msg, k) is not None}
    if msg.event_id is None and msg.action == "start":
        return _start_by_zone(session, device_pk, greenhouse_id, msg, details, max_duration_s, topic)
    if msg.event_id is None and not has_start:
        return _stop_by_zone(session, device_pk, msg, details, max_duration_s, topic)
    row: dict[str, Any] = {
        "device_id": device_pk,
        "greenhouse_id": greenhouse_id,
        "event_id": msg.event_id,
        "zone": msg.zone,
        "started_at": msg.started_at,
        "ended_at": msg.ended_at if has_stop else None,
        **details,
    }
    if _insert(session, row) is not None:
        return "stored"
    # the event exists: this message completes it, or is a redelivery
    if msg.event_id is not None:
        key = and_(EVENTS.c.device_id == device_pk, EVENTS.c.event_id == msg.event_id)
        _same_run(session, key, msg, has_start, has_stop)
    else:
        key = and_(
            EVENTS.c.device_id == device_pk,
            EVENTS.c.event_id.is_(None),
            _same_zone(msg.zone),
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


def _same_zone(zone: str | None) -> ColumnElement[bool]:
    """The zone as the unique index ``ux_iot_irrigation_device_zone_started`` compares it."""
    return func.coalesce(EVENTS.c.zone, "") == (zone or "")


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
    # a run cannot end before it starts (a complete event is checked by the decoder; the two
    # halves of one id only here, when the second arrives)
    if (
        has_start
        and row.ended_at is not None
        and msg.started_at is not None
        and msg.started_at > row.ended_at
    ):
        raise PayloadError(
            "event_id_conflict",
            f"event_id {msg.event_id} ended at {row.ended_at}, before this start at {msg.started_at}",
        )
    if has_stop and row.started_at is not None and msg.ended_at is not None and msg.ended_at < row.started_at:
        raise PayloadError(
            "event_id_conflict",
            f"event_id {msg.event_id} started at {row.started_at}, after this stop at {msg.ended_at}",
        )


def _insert(session: Session, row: dict[str, Any]) -> int | None:
    """INSERT .. ON CONFLICT DO NOTHING (any unique key); the new row's id, None if it existed."""
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt = insert(EVENTS).values(**row).on_conflict_do_nothing().returning(EVENTS.c.id)
    return session.scalar(stmt)


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


# --- without event id: the zone rule, whatever order the halves arrive in ----------------------------
#
# Within one device and zone, runs follow one another. A start's stop is the first stop at or
# after it, before the zone's next start and at most ``max_duration_s`` later; any other stop
# has no start (yet). That pairing depends only on which starts and stops exist, not on the
# order they arrived in or which ingester stored them: each arrival changes at most the run
# just before it, under a per-device lock. The halves' own values are kept in ``parts`` so a
# stop can move to the run it belongs to; a stop with no start waits in the quarantine
# (``unmatched_stop``) and is taken from there when its start arrives.


def _zone_runs(device_pk: int, zone: str | None) -> ColumnElement[bool]:
    same_zone = EVENTS.c.zone.is_(None) if zone is None else EVENTS.c.zone == zone
    return and_(EVENTS.c.device_id == device_pk, EVENTS.c.event_id.is_(None), same_zone)


def _merged(parts: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The event's values: the start's, overridden by the stop's."""
    out: dict[str, Any] = dict.fromkeys(_DETAILS)
    for half in ("start", "stop"):
        out.update({k: v for k, v in parts.get(half, {}).items() if k in _DETAILS and v is not None})
    return out


def _set_stop(session: Session, event_id: int, parts: dict, ended_at: int | None, stop: dict | None) -> None:
    halves = {"start": parts.get("start", {})}
    if stop is not None:
        halves["stop"] = stop
    session.execute(
        update(EVENTS)
        .where(EVENTS.c.id == event_id)
        .values(ended_at=ended_at, parts=halves, **_merged(halves))
    )


def _start_by_zone(
    session: Session,
    device_pk: int,
    greenhouse_id: int,
    msg: IrrigationMsg,
    details: dict,
    max_duration_s: int,
    topic: str | None,
) -> str:
    t = msg.started_at
    assert t is not None
    parts = {"start": details}
    row = {
        "device_id": device_pk,
        "greenhouse_id": greenhouse_id,
        "zone": msg.zone,
        "started_at": t,
        "parts": parts,
        **details,
    }
    new_id = _insert(session, row)
    if new_id is None:  # a redelivery (or the start of a complete event): fill in what is missing
        key = and_(
            EVENTS.c.device_id == device_pk,
            EVENTS.c.event_id.is_(None),
            _same_zone(msg.zone),
            EVENTS.c.started_at == t,
        )
        _fill_start(session, key, msg, details)
        return "duplicate"
    _serialize(session, device_pk)
    runs = _zone_runs(device_pk, msg.zone)
    # the run before this one holds a stop from after this start: that stop is this run's
    before = session.execute(
        select(EVENTS.c.id, EVENTS.c.started_at, EVENTS.c.ended_at, EVENTS.c.parts)
        .where(
            runs, EVENTS.c.started_at < t, EVENTS.c.started_at >= t - max_duration_s, EVENTS.c.ended_at >= t
        )
        .order_by(EVENTS.c.started_at.desc())
        .limit(1)
    ).first()
    if before is not None and before.parts and "stop" in before.parts:
        _set_stop(session, before.id, before.parts, None, None)
        if before.ended_at - t <= max_duration_s:
            _set_stop(session, new_id, parts, before.ended_at, before.parts["stop"])
        else:
            _requeue(session, topic, msg.zone, before.ended_at, before.parts["stop"], t)
        # and the run before may have a stop waiting from before this start
        _take_waiting_stop(
            session, topic, before.id, before.started_at, before.parts, msg.zone, t, max_duration_s
        )
        if before.ended_at - t <= max_duration_s:
            return "paired"
    next_start = session.scalar(select(func.min(EVENTS.c.started_at)).where(runs, EVENTS.c.started_at > t))
    bound = t + max_duration_s + 1 if next_start is None else min(next_start, t + max_duration_s + 1)
    if _take_waiting_stop(session, topic, new_id, t, parts, msg.zone, bound, max_duration_s):
        return "paired"
    return "stored"


def _stop_by_zone(
    session: Session,
    device_pk: int,
    msg: IrrigationMsg,
    details: dict,
    max_duration_s: int,
    topic: str | None,
) -> str:
    s = msg.ended_at
    assert s is not None
    window = and_(
        _zone_runs(device_pk, msg.zone),
        EVENTS.c.started_at <= s,
        EVENTS.c.started_at >= s - max_duration_s,
    )
    _serialize(session, device_pk)  # no writer is between storing a start and looking for its stop
    if session.execute(select(EVENTS.c.id).where(window, EVENTS.c.ended_at == s).limit(1)).first():
        return "duplicate"  # this very stop closed a run already
    run = session.execute(
        select(EVENTS.c.id, EVENTS.c.ended_at, EVENTS.c.parts, *(EVENTS.c[k] for k in _DETAILS))
        .where(window)
        .order_by(EVENTS.c.started_at.desc())
        .limit(1)
    ).first()
    stop = {**details, "ts": s}
    if run is not None and run.ended_at is None:
        # (a run stored before ``parts`` existed: its values are its start's)
        start = {k: getattr(run, k) for k in _DETAILS if getattr(run, k) is not None}
        _set_stop(session, run.id, run.parts or {"start": start}, s, stop)
        return "paired"
    if run is not None and run.ended_at > s and run.parts and "stop" in run.parts:
        # an earlier stop of this run: it takes this one; the later stop has no start (yet)
        _set_stop(session, run.id, run.parts, s, stop)
        _requeue(session, topic, msg.zone, run.ended_at, run.parts["stop"], s)
        return "paired"
    hours = max_duration_s / 3600
    raise PayloadError(
        "unmatched_stop",
        f"no open irrigation of zone {msg.zone or '-'} in the {hours:g} h before {s}",
    )


def _stop_payload(zone: str | None, ended_at: int, stop: dict) -> bytes:
    body: dict[str, Any] = {"action": "stop", "ts": ended_at}
    if zone is not None:
        body["zone"] = zone
    body.update({k: v for k, v in stop.items() if k in _DETAILS})
    return json.dumps(body).encode()


def _requeue(
    session: Session, topic: str | None, zone: str | None, ended_at: int, stop: dict, by: int
) -> None:
    """A stop taken off a run (it belongs to none of the starts stored so far) waits in the
    quarantine again, as the stop message it was, for its own start."""
    if topic is None:
        return
    session.execute(
        QUARANTINE.insert().values(
            received_at=clock.now(),
            topic=topic[:300],
            payload=_stop_payload(zone, ended_at, stop),
            reason="unmatched_stop",
            detail=f"moved off its run by the irrigation message at {by}: no start before it yet",
        )
    )


def _take_waiting_stop(
    session: Session,
    topic: str | None,
    event_id: int,
    started_at: int,
    parts: dict,
    zone: str | None,
    bound: int,
    max_duration_s: int,
) -> bool:
    """Give the run (started ``started_at``, open) the first quarantined stop of its topic and
    zone in [started_at, bound) and at most ``max_duration_s`` after it; mark it replayed."""
    if topic is None:
        return False
    rows = session.execute(
        select(QUARANTINE.c.id, QUARANTINE.c.payload, QUARANTINE.c.received_at)
        .where(
            QUARANTINE.c.reason == "unmatched_stop",
            QUARANTINE.c.replayed_at.is_(None),
            QUARANTINE.c.topic == topic,
        )
        .order_by(QUARANTINE.c.id.desc())
        .limit(WAITING_STOPS_LOOKED_AT)
    ).all()
    best: tuple[int, int, IrrigationMsg] | None = None
    for qid, payload, received_at in rows:
        try:
            stop = decode_irrigation(bytes(payload), received_at.replace(tzinfo=UTC).timestamp())
        except PayloadError:
            continue
        end = stop.ended_at
        if (
            stop.action == "stop"
            and stop.event_id is None
            and stop.started_at is None
            and stop.zone == zone
            and end is not None
            and started_at <= end < bound
            and end - started_at <= max_duration_s
            and (best is None or (end, qid) < (best[0], best[1]))
        ):
            best = (end, qid, stop)
    if best is None:
        return False
    end, qid, stop = best
    details = {k: getattr(stop, k) for k in _DETAILS if getattr(stop, k) is not None}
    _set_stop(session, event_id, parts, end, {**details, "ts": end})
    session.execute(update(QUARANTINE).where(QUARANTINE.c.id == qid).values(replayed_at=clock.now()))
    return True


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
