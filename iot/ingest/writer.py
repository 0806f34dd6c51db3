"""Storing batches of MQTT messages, in three parts:

- ``decode_batch(messages, resolve)``: pure (no database): topics resolved to devices,
  payloads decoded (``iot.payloads``), readings deduplicated within the batch, bad
  messages set aside with their reason.
- ``write_batch(session, decoded)``: stores one decoded batch in the caller's
  transaction (never commits): ``INSERT .. ON CONFLICT DO NOTHING RETURNING`` for the
  readings, then the hooks (rollups, alert rules) with exactly the rows inserted,
  irrigation events, device status, provisioning and quarantine (or, when replaying,
  the quarantine rows' new state).
- ``BatchWriter``: owns the session and the commit, the device cache and the
  per-message fallback. The ingester, its writer process and ``iot.quarantine.replay``
  use it. No MQTT here.
"""

from __future__ import annotations

import functools
import logging
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import Insert, Table, Update, bindparam, event, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from core import clock
from core.db import make_engine, make_session_factory
from iot import payloads
from iot.alerts import Outbox, batch_hook
from iot.ingest.devices import DeviceInfo, DeviceRegistry, Resolved, TopicResolver
from iot.ingest.log import kv
from iot.irrigation import DEFAULT_MAX_DURATION_S, store_event
from iot.models import Device, QuarantinedMessage
from iot.payloads import PayloadError
from iot.rollups import apply_readings

log = logging.getLogger("iot.ingest")

QUARANTINE = cast(Table, QuarantinedMessage.__table__)
DEVICES = cast(Table, Device.__table__)


@dataclass(slots=True)
class Message:
    topic: str
    payload: bytes
    arrival: float  # epoch seconds
    mid: int = 0
    qos: int = 0
    generation: int = 0  # connection the message came on (acks only go back on the same one)
    quarantine_id: int | None = None  # set when replaying


@dataclass
class BatchResult:
    stored: int = 0
    duplicates: int = 0
    irrigation: int = 0
    status: int = 0
    quarantined: Counter[str] = field(default_factory=Counter)
    # for replay: quarantine_id -> (reason, detail) of messages that still fail
    still_failing: dict[int, tuple[str, str]] = field(default_factory=dict)
    # alert notifications (topic, payload) from committed batches, published by the MQTT side
    notifications: list[tuple[str, str]] = field(default_factory=list)
    alert_errors: int = 0  # alert evaluations that failed (the readings were kept)

    def add(self, other: BatchResult) -> None:
        self.stored += other.stored
        self.duplicates += other.duplicates
        self.irrigation += other.irrigation
        self.status += other.status
        self.quarantined.update(other.quarantined)
        self.still_failing.update(other.still_failing)
        self.notifications += other.notifications
        self.alert_errors += other.alert_errors


# device pk, greenhouse id, metric id, ts, value: one row of iot_readings
ReadingRow = tuple[int, int, int, int, float]
ReadingsHook = Callable[[Session, list[dict[str, Any]]], object]


@dataclass
class DecodedBatch:
    """What a batch of messages says, ready to be written."""

    readings: dict[tuple[int, int, int], ReadingRow] = field(default_factory=dict)  # first per key wins
    decoded: int = 0  # readings decoded, repeats within the batch included
    events: list[tuple[Message, DeviceInfo, payloads.IrrigationMsg]] = field(default_factory=list)
    seen: dict[int, tuple[float, bool]] = field(default_factory=dict)  # device pk -> (time, online)
    status: list[tuple[int, float, bool]] = field(default_factory=list)  # (device pk, time, online)
    bad: list[tuple[Message, PayloadError]] = field(default_factory=list)
    provision: set[str] = field(default_factory=set)  # unknown device ids to register
    replayed: set[int] = field(default_factory=set)  # quarantine ids of the messages


@dataclass(frozen=True)
class Hooks:
    """Run with the rows a batch inserted, in its transaction: ``apply_readings`` must succeed
    (rollups are exact), ``evaluate_batch`` runs in a savepoint and may fail alone."""

    apply_readings: ReadingsHook | None = None
    evaluate_batch: ReadingsHook | None = None


# --- decoding (pure) -------------------------------------------------------------------


def decode_batch(
    messages: Sequence[Message],
    resolve: Callable[[str], Resolved],
    *,
    provision: bool = False,
    last_seen: Mapping[int, float] | None = None,
    touch_every_s: float = 60.0,
) -> DecodedBatch:
    """Decode ``messages``; never raises for a bad message (it lands in ``bad``).

    ``resolve`` maps a topic to (topic, device) or raises ``PayloadError``
    (``TopicResolver.resolve``). ``provision``: unknown devices are to be registered
    (their messages wait in quarantine as ``unassigned_device``). ``last_seen``: device
    pk -> when it was last marked seen; telemetry marks it again after ``touch_every_s``.
    """
    out = DecodedBatch()
    rows = out.readings
    seen = out.seen
    bad = out.bad
    last = last_seen or {}
    decoded = 0
    decode_telemetry, decode_tasmota = payloads.decode_telemetry, payloads.decode_tasmota
    for message in messages:
        if message.quarantine_id is not None:
            out.replayed.add(message.quarantine_id)
        try:
            parsed, info = resolve(message.topic)
            kind = parsed.kind
            if kind == "telemetry" or kind == "tasmota":
                if kind == "telemetry":
                    readings = decode_telemetry(message.payload, message.arrival)
                else:
                    readings = decode_tasmota(message.payload, message.arrival, info.timezone)
                pk, gh = info.pk, info.greenhouse_id
                assert gh is not None  # the resolver refuses devices outside a greenhouse
                decoded += len(readings)
                for metric_id, ts, value in readings:
                    key = (pk, metric_id, ts)
                    if key not in rows:
                        rows[key] = (pk, gh, metric_id, ts, value)
                if message.arrival - last.get(pk, 0.0) > touch_every_s:
                    seen[pk] = (message.arrival, True)
            elif kind == "irrigation":
                out.events.append(
                    (message, info, payloads.decode_irrigation(message.payload, message.arrival))
                )
                seen[info.pk] = (message.arrival, True)
            else:
                online = payloads.decode_status(message.payload)
                out.status.append((info.pk, message.arrival, online))
        except PayloadError as exc:
            if exc.reason == "unknown_device" and provision:
                out.provision.add(exc.detail)
                bad.append((message, PayloadError("unassigned_device", exc.detail)))
            else:
                bad.append((message, exc))
        except Exception as exc:  # a decoder bug must not stop the stream
            log.exception(kv("decode_bug", topic=message.topic))
            bad.append((message, PayloadError("bad_payload", f"{type(exc).__name__}: {exc}"[:300])))
    out.decoded = decoded
    return out


# --- writing (in the caller's transaction) -------------------------------------------------


@dataclass(frozen=True)
class _Statements:
    insert_device: Insert
    touch_device: Update


@functools.cache
def _statements(dialect: str) -> _Statements:
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    return _Statements(
        insert_device=insert(DEVICES).on_conflict_do_nothing(index_elements=["device_id"]),
        touch_device=(
            update(DEVICES)
            .where(DEVICES.c.id == bindparam("pk"))
            .values(last_seen_at=bindparam("seen"), online=bindparam("is_online"))
        ),
    )


def write_batch(
    session: Session,
    decoded: DecodedBatch,
    *,
    hooks: Hooks | None = None,
    replay: bool = False,
    irrigation_max_s: int = DEFAULT_MAX_DURATION_S,
) -> BatchResult:
    """Store ``decoded`` in ``session``'s transaction; the caller commits (or rolls back).

    Raises the database's errors (``DBAPIError``; ``IntegrityError`` e.g. for a device
    deleted meanwhile). With ``replay``, quarantined messages that now pass are marked
    ``replayed_at`` and the others keep their row with the new reason (in
    ``still_failing``); otherwise bad messages are quarantined. ``irrigation_max_s``: the
    longest run a stop without event id may close.
    """
    result = BatchResult()
    sql = _statements(session.get_bind().dialect.name)
    bad = list(decoded.bad)
    inserted: list[dict[str, Any]] = []
    if decoded.readings:
        inserted = _insert_readings(session, decoded.readings)
        result.stored = len(inserted)
        result.duplicates = decoded.decoded - len(inserted)
    if inserted and hooks is not None:
        result.alert_errors = _run_hooks(session, hooks, inserted)
    for message, info, irrigation in _lock_order(decoded.events):
        try:
            _store_event(session, message, info, irrigation, irrigation_max_s)
            result.irrigation += 1
        except PayloadError as exc:
            bad.append((message, exc))
    result.status = len(decoded.status)
    touched = [{"pk": pk, "seen": _dt(t), "is_online": on} for pk, (t, on) in decoded.seen.items()]
    touched += [{"pk": pk, "seen": _dt(t), "is_online": on} for pk, t, on in decoded.status]
    # one statement per row, in order: status messages last so an explicit "offline" wins
    for row in touched:
        session.execute(sql.touch_device, [row])
    for name in decoded.provision:
        session.execute(
            sql.insert_device,
            [
                {
                    "device_id": name,
                    "kind": "sensor",
                    "provisioned": True,
                    "online": False,
                    "created_at": clock.now(),
                }
            ],
        )
    for _message, error in bad:
        result.quarantined[error.reason] += 1
    if replay:
        passed = set(decoded.replayed)
        for message, error in bad:
            if message.quarantine_id is not None:
                result.still_failing[message.quarantine_id] = (error.reason, error.detail)
                passed.discard(message.quarantine_id)
        if passed:
            session.execute(
                update(QUARANTINE).where(QUARANTINE.c.id.in_(passed)).values(replayed_at=clock.now())
            )
        for qid, (reason, detail) in result.still_failing.items():
            requarantine(session, qid, reason, detail)
    elif bad:
        quarantine(session, [(m, e.reason, e.detail) for m, e in bad])
    return result


def quarantine(session: Session, items: Sequence[tuple[Message, str, str]]) -> None:
    """Keep messages that cannot be stored, with (reason, detail), for ``iot.quarantine``."""
    session.execute(
        QUARANTINE.insert(),
        [
            {
                "received_at": _dt(m.arrival),
                "topic": m.topic[:300],
                "payload": bytes(m.payload),
                "reason": reason,
                "detail": detail or None,
            }
            for m, reason, detail in items
        ],
    )


def requarantine(session: Session, quarantine_id: int, reason: str, detail: str) -> None:
    """A replayed message failed again: its row keeps the new reason."""
    session.execute(
        update(QUARANTINE)
        .where(QUARANTINE.c.id == quarantine_id)
        .values(reason=reason, detail=detail or None)
    )


def _insert_readings(session: Session, rows: dict[tuple[int, int, int], ReadingRow]) -> list[dict[str, Any]]:
    """INSERT .. ON CONFLICT DO NOTHING RETURNING, as multi-row VALUES statements on the
    driver directly: the same SQL SQLAlchemy's insertmanyvalues would send, without its
    per-parameter bookkeeping (the single biggest cost per message after JSON decoding).

    The driver's errors are raised as SQLAlchemy's (``IntegrityError``, ``OperationalError``
    ...), as if SQLAlchemy had run the statement: the callers' retry and fallback see them."""
    conn = session.connection()
    dbapi_error: type[Exception] = conn.dialect.loaded_dbapi.Error
    mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    cursor = conn.connection.cursor()  # the DBAPI cursor, inside the session's transaction
    one = f"({mark}, {mark}, {mark}, {mark}, {mark})"
    head = "INSERT INTO iot_readings (device_id, greenhouse_id, metric_id, ts, value) VALUES "
    tail = " ON CONFLICT (device_id, metric_id, ts) DO NOTHING RETURNING greenhouse_id, metric_id, ts, value"
    values = list(rows.values())
    out: list[dict[str, Any]] = []
    chunk = 1000  # 5,000 parameters: within SQLite's and PostgreSQL's limits
    try:
        for start in range(0, len(values), chunk):
            part = values[start : start + chunk]
            params: list[int | float] = []
            for r in part:
                params += r
            sql = head + ", ".join([one] * len(part)) + tail
            try:
                cursor.execute(sql, params)
            except dbapi_error as exc:
                raise DBAPIError.instance(
                    sql, None, exc, dbapi_error, hide_parameters=True, dialect=conn.dialect
                ) from exc
            out += [
                {"greenhouse_id": g, "metric_id": m, "ts": ts, "value": v}
                for g, m, ts, v in cursor.fetchall()
            ]
    finally:
        cursor.close()
    return out


def _run_hooks(session: Session, hooks: Hooks, rows: list[dict[str, Any]]) -> int:
    """Rollups (an error fails the batch), then alerts in a savepoint; returns 1 if alerting failed."""
    if hooks.apply_readings is not None:
        hooks.apply_readings(session, rows)
    if hooks.evaluate_batch is not None:
        try:
            with session.begin_nested():
                hooks.evaluate_batch(session, rows)
        except Exception:  # alerting must never lose readings
            log.exception(kv("alert_error", rows=len(rows)))
            return 1
    return 0


def _lock_order(
    events: list[tuple[Message, DeviceInfo, payloads.IrrigationMsg]],
) -> list[tuple[Message, DeviceInfo, payloads.IrrigationMsg]]:
    """Irrigation messages in one order for every writer (by device, zone, event id; starts
    before stops, which pair by time, not by arrival): two writers pairing each other's
    events lock the rows in the same order and wait for one another instead of deadlocking
    (PostgreSQL)."""
    return sorted(
        events, key=lambda e: (e[1].pk, e[2].zone or "", e[2].event_id or "", e[2].action == "stop")
    )


def _store_event(
    session: Session, message: Message, info: DeviceInfo, msg: payloads.IrrigationMsg, max_duration_s: int
) -> None:
    """Pairing is ``iot.irrigation.store_event`` (in the database, whichever ingester got the
    start); raises ``PayloadError`` (``unmatched_stop``, ``event_id_conflict``). The topic
    lets a start without event id take its stop from the quarantine if the stop came first."""
    assert info.greenhouse_id is not None  # the resolver refuses devices outside a greenhouse
    store_event(session, info.pk, info.greenhouse_id, msg, max_duration_s=max_duration_s, topic=message.topic)


def _dt(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


# --- the writer: session, commit, fallback, device cache ----------------------------------------


def _sqlite_ingest_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA cache_size=-65536")  # 64 MiB page cache (default 2 MiB)
    cursor.execute("PRAGMA mmap_size=268435456")
    # checkpoint every ~80 MB of WAL rather than 4 MB: a page dirtied by many batches is
    # copied back to the database once, not once per batch (about +10 % at 200k messages)
    cursor.execute("PRAGMA wal_autocheckpoint=20000")
    cursor.close()


def ingest_engine(database_url: str) -> Engine:
    """An engine for the ingester: on SQLite with a big page cache (readings from hundreds
    of devices land all over two indexes) and rare checkpoints."""
    engine = make_engine(database_url)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_ingest_pragmas)
    return engine


def default_hooks(outbox: Outbox, prefix: str) -> Hooks:
    """Rollups and alert rules, updated in each batch's transaction; alert notifications
    go to ``outbox`` (they leave after the commit)."""
    return Hooks(apply_readings, batch_hook(outbox, prefix))


class BatchWriter:
    """Decodes a batch of messages and stores it in one transaction, committed on return."""

    def __init__(
        self,
        engine: Engine,
        *,
        topic_prefix: str = "farm",
        tasmota_prefix: str = "tele",
        unknown_device_policy: str = "quarantine",
        hooks: Hooks | tuple[ReadingsHook | None, ReadingsHook | None] | None = None,
        touch_every_s: float = 60.0,
        irrigation_max_s: int = DEFAULT_MAX_DURATION_S,
    ) -> None:
        self.engine = engine
        self.irrigation_max_s = irrigation_max_s
        self.session_factory: sessionmaker[Session] = make_session_factory(engine)
        self.registry = DeviceRegistry(self.session_factory)
        self.resolver = TopicResolver(self.registry, topic_prefix, tasmota_prefix)
        self.provision = unknown_device_policy == "provision"
        self.touch_every_s = touch_every_s
        self.outbox = Outbox()
        if hooks is None:
            hooks = default_hooks(self.outbox, topic_prefix)
        elif isinstance(hooks, tuple):
            hooks = Hooks(*hooks)
        self.hooks = hooks
        self._last_seen: dict[int, float] = {}

    def store(self, messages: Sequence[Message], *, replay: bool = False) -> BatchResult:
        """Decode and store ``messages`` in one transaction (committed on return).

        Raises DBAPIError subclasses for database trouble (nothing is stored then);
        bad messages never raise: they are quarantined (or, when replaying, reported
        in ``still_failing``)."""
        self.registry.maybe_refresh()
        try:
            return self._store(messages, replay=replay)
        except IntegrityError:
            # e.g. a device deleted since the registry was cached: refresh and store one by one
            self.registry.refresh()
            result = BatchResult()
            for message in messages:
                try:
                    one = self._store([message], replay=replay)
                except IntegrityError as exc:
                    one = self._store_error(message, str(exc.orig)[:300], replay=replay)
                result.add(one)
            return result

    def _store(self, messages: Sequence[Message], *, replay: bool) -> BatchResult:
        decoded = decode_batch(
            messages,
            self.resolver.resolve,
            provision=self.provision,
            last_seen=self._last_seen,
            touch_every_s=self.touch_every_s,
        )
        self.outbox.take()  # anything left by a batch that failed
        with self.session_factory() as session:
            result = write_batch(
                session, decoded, hooks=self.hooks, replay=replay, irrigation_max_s=self.irrigation_max_s
            )
            session.commit()
        result.notifications = self.outbox.take()
        for pk, (t, _online) in decoded.seen.items():
            self._last_seen[pk] = t
        if decoded.provision:
            self.registry.maybe_refresh(force=True)
        return result

    def _store_error(self, message: Message, detail: str, *, replay: bool) -> BatchResult:
        """A message the database refuses on its own: quarantined as ``store_error``."""
        result = BatchResult()
        result.quarantined["store_error"] += 1
        with self.session_factory() as session:
            if replay and message.quarantine_id is not None:
                result.still_failing[message.quarantine_id] = ("store_error", detail)
                requarantine(session, message.quarantine_id, "store_error", detail)
            else:
                quarantine(session, [(message, "store_error", detail)])
            session.commit()
        return result
