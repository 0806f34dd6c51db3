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
  fallback. The ingester, its writer process and ``iot.quarantine.replay`` use it. No
  MQTT here.

Errors are sorted where they arise (``is_outage``): an outage (connection lost, database
locked or busy, serialization failure, schema not there yet) is raised, nothing is stored
and the caller waits and retries; any other error belongs to some message(s) of the batch,
which is split in halves until the message is found, and that one message is quarantined
as ``store_error`` (every other message is stored). Quarantine rows are deduplicated by
the SHA-256 of topic and payload, and keep at most ``quarantine_max_bytes`` of a payload.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import sqlite3
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import Insert, Table, Update, bindparam, event, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import Session, sessionmaker

from core import clock
from core.db import make_engine, make_session_factory
from iot import payloads
from iot.alerts import Outbox, batch_hook
from iot.ingest.devices import DeviceInfo, DeviceRegistry, Resolved, TopicResolver
from iot.ingest.log import kv
from iot.ingest.stats import Drops
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
    # set by ``shrink`` when the payload was cut: the original length and SHA-256 (of topic + payload)
    size: int | None = None
    sha256: str | None = None


DEFAULT_QUARANTINE_MAX_BYTES = 64 * 1024


def message_sha256(topic: str, payload: bytes) -> str:
    """The quarantine's key of a message: SHA-256 (hex) of the topic, a NUL byte, the whole payload."""
    h = hashlib.sha256(topic.encode("utf-8", "surrogatepass"))
    h.update(b"\0")
    h.update(payload)
    return h.hexdigest()


def shrink(message: Message, limit: int) -> Message:
    """``message`` with at most ``limit`` payload bytes (the original size and SHA-256 kept).

    Larger payloads than ``payloads.MAX_PAYLOAD`` are never decoded, so nothing beyond the
    limit is needed: cutting them where they arrive bounds the memory of both processes."""
    payload = message.payload
    if len(payload) <= limit or message.size is not None:
        return message
    return Message(
        message.topic,
        bytes(payload[:limit]),
        message.arrival,
        message.mid,
        message.qos,
        message.generation,
        message.quarantine_id,
        size=len(payload),
        sha256=message_sha256(message.topic, payload),
    )


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
    # readings left out of messages that were stored, by reason (``payloads.DROP_REASONS``);
    # never counted as duplicates, which are only rows the unique key refused (redeliveries)
    dropped: Drops = field(default_factory=Drops)

    def add(self, other: BatchResult) -> None:
        self.stored += other.stored
        self.duplicates += other.duplicates
        self.irrigation += other.irrigation
        self.status += other.status
        self.quarantined.update(other.quarantined)
        self.dropped.update(other.dropped)
        self.still_failing.update(other.still_failing)
        self.notifications += other.notifications
        self.alert_errors += other.alert_errors


# device pk, greenhouse id, metric id, channel, ts, us, value: one row of iot_readings
ReadingRow = tuple[int, int, int, str, int, int, float]
# a reading's identity, the unique key of iot_readings: device pk, metric id, channel, ts, us
ReadingKey = tuple[int, int, str, int, int]
ReadingsHook = Callable[[Session, list[dict[str, Any]]], object]


@dataclass
class DecodedBatch:
    """What a batch of messages says, ready to be written."""

    readings: dict[ReadingKey, ReadingRow] = field(default_factory=dict)  # first per key wins
    decoded: int = 0  # readings decoded, redeliveries within the batch included
    events: list[tuple[Message, DeviceInfo, payloads.IrrigationMsg]] = field(default_factory=list)
    seen: dict[int, tuple[float, bool]] = field(default_factory=dict)  # device pk -> (time, online)
    status: list[tuple[int, float, bool]] = field(default_factory=list)  # (device pk, time, online)
    bad: list[tuple[Message, PayloadError]] = field(default_factory=list)
    provision: set[str] = field(default_factory=set)  # unknown device ids to register
    replayed: set[int] = field(default_factory=set)  # quarantine ids of the messages
    dropped: Drops = field(default_factory=Drops)  # readings dropped on purpose: dropped.add(reason, n)


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
    arrivals: set[int] | None = None,
) -> DecodedBatch:
    """Decode ``messages``; never raises for a bad message (it lands in ``bad``).

    ``resolve`` maps a topic to (topic, device) or raises ``PayloadError``
    (``TopicResolver.resolve``). ``provision``: unknown devices are to be registered
    (their messages wait in quarantine as ``unassigned_device``). ``last_seen``: device
    pk -> when it was last marked seen; telemetry marks it again after ``touch_every_s``.
    ``arrivals``: arrival microseconds already given to telemetry messages (updated); pass
    the same set when one batch is decoded in parts (message by message), so its
    timestamp-less messages get the same distinct times as when it is decoded whole.
    """
    out = DecodedBatch()
    rows = out.readings
    seen = out.seen
    bad = out.bad
    last = last_seen or {}
    decoded = 0
    taken = set() if arrivals is None else arrivals
    dropped = out.dropped
    decode_telemetry, decode_tasmota = payloads.decode_telemetry, payloads.decode_tasmota
    for message in messages:
        if message.quarantine_id is not None:
            out.replayed.add(message.quarantine_id)
        try:
            parsed, info = resolve(message.topic)
            kind = parsed.kind
            if kind == "telemetry" or kind == "tasmota":
                # The arrival time is the time of readings without a device timestamp: to the
                # microsecond, and made unique within the batch (a message read in the same
                # microsecond as another gets the next free one), so no two messages collapse.
                arrival_us = round(message.arrival * 1_000_000)
                while arrival_us in taken:
                    arrival_us += 1
                taken.add(arrival_us)
                now = arrival_us / 1_000_000
                if kind == "telemetry":
                    readings = decode_telemetry(message.payload, now, info.names, dropped)
                else:
                    readings = decode_tasmota(message.payload, now, info.timezone, info.names, dropped)
                pk, gh = info.pk, info.greenhouse_id
                assert gh is not None  # the resolver refuses devices outside a greenhouse
                decoded += len(readings)  # each a distinct identity (the decoders see to it)
                for metric_id, channel, ts, us, value in readings:
                    key = (pk, metric_id, channel, ts, us)
                    first = rows.get(key)
                    if first is None:
                        rows[key] = (pk, gh, metric_id, channel, ts, us, value)
                    elif first[6] != value:  # same identity, another value: not a redelivery
                        decoded -= 1
                        dropped.add("conflicting_value")
                    # else a redelivery within the batch: a duplicate
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
    quarantine_max_bytes: int = DEFAULT_QUARANTINE_MAX_BYTES,
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
    result.dropped.update(decoded.dropped)
    sql = _statements(session.get_bind().dialect.name)
    bad = list(decoded.bad)
    inserted: list[dict[str, Any]] = []
    if decoded.readings:
        inserted, conflicts = _insert_readings(session, decoded.readings)
        result.stored = len(inserted)
        result.duplicates = decoded.decoded - len(inserted) - conflicts
        result.dropped.add("conflicting_value", conflicts)
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
    # one statement per row, by device (two writers lock devices in one order: no deadlock),
    # and for each device its status messages last, so an explicit "offline" wins
    touched.sort(key=lambda row: cast(int, row["pk"]))  # stable: a device's rows keep their order
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
        quarantine(session, [(m, e.reason, e.detail) for m, e in bad], max_bytes=quarantine_max_bytes)
    return result


DETAIL_MAX = 2000  # characters of a quarantine row's detail


def storable_text(text: str, limit: int) -> str:
    """``text`` as any database keeps it: no NUL (PostgreSQL refuses it in text), no lone
    surrogates (not UTF-8), at most ``limit`` characters."""
    if "\0" in text:
        text = text.replace("\0", "\ufffd")
    if not text.isascii():
        text = text.encode("utf-8", "replace").decode("utf-8")
    return text[:limit]


@functools.cache
def _quarantine_upsert(dialect: str) -> Insert:
    """INSERT .. ON CONFLICT (sha256) WHERE replayed_at IS NULL DO UPDATE: a message already
    waiting (a redelivery, or the same bytes again) counts instead of adding a row."""
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt = insert(QUARANTINE)
    return stmt.on_conflict_do_update(
        index_elements=[QUARANTINE.c.sha256],
        index_where=QUARANTINE.c.replayed_at.is_(None),
        set_={
            "seen_count": QUARANTINE.c.seen_count + stmt.excluded.seen_count,
            "last_seen_at": stmt.excluded.last_seen_at,
            "reason": stmt.excluded.reason,
            "detail": stmt.excluded.detail,
        },
    )


def quarantine(
    session: Session,
    items: Sequence[tuple[Message, str, str]],
    *,
    max_bytes: int = DEFAULT_QUARANTINE_MAX_BYTES,
) -> None:
    """Keep messages that cannot be stored, with (reason, detail), for ``iot.quarantine``.

    One row per (topic, payload) waiting: a message already there (by SHA-256) adds to its
    ``seen_count`` and ``last_seen_at`` (and takes the new reason). The payload is kept as
    bytes, cut to ``max_bytes`` (``size`` is its original length); topic and detail are
    made storable (``storable_text``)."""
    rows: dict[str, dict[str, Any]] = {}
    for m, reason, detail in items:
        digest = m.sha256 or message_sha256(m.topic, m.payload)
        row = rows.get(digest)
        if row is not None:  # the same message twice in one batch: one row, counted twice
            row["seen_count"] += 1
            row["last_seen_at"] = max(row["last_seen_at"], _dt(m.arrival))
            continue
        payload = bytes(m.payload[:max_bytes])
        rows[digest] = {
            "received_at": _dt(m.arrival),
            "last_seen_at": _dt(m.arrival),
            "topic": storable_text(m.topic, 300),
            "payload": payload,
            "size": m.size if m.size is not None else len(m.payload),
            "sha256": digest,
            "seen_count": 1,
            "reason": reason,
            "detail": storable_text(detail, DETAIL_MAX) if detail else None,
        }
    if rows:
        session.execute(_quarantine_upsert(session.get_bind().dialect.name), list(rows.values()))


def requarantine(session: Session, quarantine_id: int, reason: str, detail: str) -> None:
    """A replayed message failed again: its row keeps the new reason."""
    session.execute(
        update(QUARANTINE)
        .where(QUARANTINE.c.id == quarantine_id)
        .values(reason=reason, detail=storable_text(detail, DETAIL_MAX) if detail else None)
    )


_READING_COLUMNS = "device_id, greenhouse_id, metric_id, channel, ts, us, value"
_ON_CONFLICT = " ON CONFLICT (device_id, metric_id, ts, us, channel) DO NOTHING RETURNING " + _READING_COLUMNS
# PostgreSQL: the whole batch as seven arrays, one short statement (psycopg parses and caches
# it once; 7,000 placeholders it would split in Python every time, ~60 % of the writer's time)
_PG_INSERT = (
    f"INSERT INTO iot_readings ({_READING_COLUMNS}) SELECT * FROM unnest("
    "%s::bigint[], %s::bigint[], %s::smallint[], %s::text[], %s::bigint[], %s::integer[],"
    " %s::double precision[])" + _ON_CONFLICT
)
_PG_STORED = (
    "SELECT r.device_id, r.metric_id, r.channel, r.ts, r.us, r.value FROM iot_readings r"
    " JOIN unnest(%s::bigint[], %s::smallint[], %s::text[], %s::bigint[], %s::integer[])"
    " AS k(device_id, metric_id, channel, ts, us) USING (device_id, metric_id, channel, ts, us)"
)


def _insert_readings(
    session: Session, rows: dict[ReadingKey, ReadingRow]
) -> tuple[list[dict[str, Any]], int]:
    """INSERT .. ON CONFLICT DO NOTHING RETURNING on the driver directly: on PostgreSQL one
    statement over ``unnest`` of seven arrays, on SQLite multi-row VALUES (the SQL
    SQLAlchemy's insertmanyvalues would send, without its per-parameter bookkeeping).

    Returns the rows inserted and how many of the refused ones had another value than the
    stored reading of their identity (``conflicting_value``: not redeliveries). The second
    look costs a query only where the unique key refused something.

    The driver's errors are raised as SQLAlchemy's (``IntegrityError``, ``OperationalError``
    ...), as if SQLAlchemy had run the statement: the callers' retry and fallback see them."""
    conn = session.connection()
    dbapi_error: type[Exception] = conn.dialect.loaded_dbapi.Error
    cursor = conn.connection.cursor()  # the DBAPI cursor, inside the session's transaction

    def execute(sql: str, params: Sequence[Any]) -> list[Any]:
        try:
            cursor.execute(sql, params)
        except dbapi_error as exc:
            raise DBAPIError.instance(
                sql, None, exc, dbapi_error, hide_parameters=True, dialect=conn.dialect
            ) from exc
        return list(cursor.fetchall())

    values = list(rows.values())
    out: list[dict[str, Any]] = []
    refused: list[ReadingRow] = []
    try:
        if conn.dialect.name == "postgresql":
            d, g, m, c, ts, us, v = (list(col) for col in zip(*values, strict=True))
            got = execute(_PG_INSERT, [d, g, m, c, ts, us, [float(x) for x in v]])
            parts = [(values, got)]
        else:
            parts = []
            chunk = 1000  # 7,000 parameters: within SQLite's limit
            one = "(?, ?, ?, ?, ?, ?, ?)"
            for start in range(0, len(values), chunk):
                part = values[start : start + chunk]
                params: list[int | float | str] = []
                for r in part:
                    params += r
                sql = f"INSERT INTO iot_readings ({_READING_COLUMNS}) VALUES " + ", ".join([one] * len(part))
                parts.append((part, execute(sql + _ON_CONFLICT, params)))
        for part, got in parts:
            out += [
                {"greenhouse_id": g, "metric_id": m, "ts": ts, "value": v} for _d, g, m, _c, ts, _u, v in got
            ]
            if len(got) < len(part):  # refused by the unique key: a redelivery or a conflict
                new = {(d, m, c, ts, u) for d, _g, m, c, ts, u, _v in got}
                refused += [r for r in part if (r[0], r[2], r[3], r[4], r[5]) not in new]
        kept: dict[tuple[Any, ...], float] = {}
        if refused and conn.dialect.name == "postgresql":
            cols = [[r[i] for r in refused] for i in (0, 2, 3, 4, 5)]
            kept = {(d, m, c, ts, u): v for d, m, c, ts, u, v in execute(_PG_STORED, cols)}
        elif refused:
            key5 = "(?, ?, ?, ?, ?)"
            for start in range(0, len(refused), 1000):
                part = refused[start : start + 1000]
                keys: list[int | float | str] = []
                for r in part:
                    keys += [r[0], r[2], r[3], r[4], r[5]]
                stored = execute(
                    "SELECT device_id, metric_id, channel, ts, us, value FROM iot_readings"
                    " WHERE (device_id, metric_id, channel, ts, us) IN (VALUES "
                    + ", ".join([key5] * len(part))
                    + ")",
                    keys,
                )
                kept.update({(d, m, c, ts, u): v for d, m, c, ts, u, v in stored})
        conflicts = sum(1 for r in refused if kept.get((r[0], r[2], r[3], r[4], r[5]), r[6]) != r[6])
    finally:
        cursor.close()
    return out, conflicts


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


# --- which errors are outages -------------------------------------------------------------------

# PostgreSQL SQLSTATEs (and classes) that say the database cannot take any batch right now:
# connection (08), resources (53: disk full, too many connections), operator intervention
# (57: shutdown, statement timeout), system (58: I/O), authorisation (28), serialization
# failure / deadlock, lock not available, read-only (a standby), schema not migrated yet
_PG_OUTAGE_CLASSES = ("08", "28", "53", "57", "58")
_PG_OUTAGE_STATES = {"40001", "40P01", "40003", "55P03", "55006", "25006", "42P01", "42703", "3D000"}
# SQLite's messages for the same situations (its OperationalError covers both kinds)
_SQLITE_OUTAGE = (
    "locked",
    "busy",
    "disk i/o",
    "unable to open",
    "readonly",
    "disk is full",
    "no such table",
    "no such column",
    "has no column",
    "interrupted",
)


def is_outage(exc: BaseException) -> bool:
    """True if ``exc`` says the database cannot store anything now (wait and retry the same
    batch); False if it belongs to the data (a message: the batch is split to find it).

    Takes SQLAlchemy's errors and the drivers' own (a raw cursor's). Anything not known to be
    an outage belongs to the data: mistaking an outage for a bad message costs a few smaller
    transactions (and the quarantine, failing the same way, raises the outage after all);
    the reverse would stop the stream on one message."""
    if isinstance(exc, DisconnectionError | PoolTimeout | ConnectionError | TimeoutError):
        return True
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated:
            return True
        orig: BaseException | None = exc.orig
    else:
        orig = exc
    if isinstance(orig, sqlite3.Error):
        return isinstance(orig, sqlite3.OperationalError) and any(
            word in str(orig).lower() for word in _SQLITE_OUTAGE
        )
    state = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    if isinstance(state, str) and state:
        return state in _PG_OUTAGE_STATES or state[:2] in _PG_OUTAGE_CLASSES
    # a driver's connection trouble without a SQLSTATE (psycopg: server gone, refused)
    if isinstance(exc, OperationalError | InterfaceError):
        return True
    return type(orig).__name__ in ("OperationalError", "InterfaceError") and hasattr(orig, "sqlstate")


def describe(exc: BaseException) -> str:
    """A short, storable account of an error (the driver's message, without the SQL)."""
    orig = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    text = str(orig).strip().splitlines()[0] if str(orig).strip() else ""
    return storable_text(f"{type(orig).__name__}: {text}" if text else type(orig).__name__, 300)


# --- the writer: session, commit, fallback, device cache ----------------------------------------


def _sqlite_ingest_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # a commit is fsynced before the ingester acknowledges its messages: with NORMAL (the app's
    # setting) a power loss can roll back the last commits in WAL mode, and the broker, told
    # they were stored, has dropped them (docs/operations.md, "Durability": the cost measured)
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA cache_size=-65536")  # 64 MiB page cache (default 2 MiB)
    cursor.execute("PRAGMA mmap_size=268435456")
    # checkpoint every ~80 MB of WAL rather than 4 MB: a page dirtied by many batches is
    # copied back to the database once, not once per batch (about +10 % at 200k messages)
    cursor.execute("PRAGMA wal_autocheckpoint=20000")
    cursor.close()


def ingest_engine(database_url: str) -> Engine:
    """An engine for the ingester: on SQLite with ``synchronous=FULL`` (an acknowledged commit
    survives a power loss), a big page cache (readings from hundreds of devices land all over
    two indexes) and rare checkpoints."""
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
        quarantine_max_bytes: int = DEFAULT_QUARANTINE_MAX_BYTES,
        irrigation_max_s: int = DEFAULT_MAX_DURATION_S,
    ) -> None:
        self.engine = engine
        self.irrigation_max_s = irrigation_max_s
        self.quarantine_max_bytes = quarantine_max_bytes
        # payloads are cut to this on the way in: what the decoder may read, or the quarantine keep
        self.payload_limit = max(payloads.MAX_PAYLOAD, quarantine_max_bytes)
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
        """Decode and store ``messages`` (committed on return): in one transaction, or, if the
        database refuses something in it, split until each refused message is alone, and
        that message quarantined as ``store_error`` (``still_failing`` when replaying).

        Raises only for an outage (``is_outage``: a ``DBAPIError`` or a driver's error;
        nothing of the failed transaction is stored, the caller retries the same batch) or
        when even the quarantine refuses a message (then retried the same way). A batch
        retried after an outage in the middle of a split stores the rest; what was already
        committed comes back as duplicates."""
        self.registry.maybe_refresh()
        limit = self.payload_limit
        if any(len(m.payload) > limit for m in messages):  # the ingester cuts them on arrival already
            messages = [shrink(m, limit) for m in messages]
        arrivals: set[int] = set()  # one batch's arrival stamps stay apart in its halves too
        try:
            return self._store(messages, replay=replay, arrivals=arrivals)
        except Exception as exc:
            if is_outage(exc):
                raise
            log.warning(kv("batch_refused", error=describe(exc), messages=len(messages)))
            # e.g. a device deleted since the registry was cached: its messages are unknown now
            self.registry.refresh()
            return self._isolate(messages, exc, replay=replay, arrivals=arrivals)

    def _isolate(
        self, messages: Sequence[Message], error: Exception, *, replay: bool, arrivals: set[int]
    ) -> BatchResult:
        """``messages`` failed together with ``error`` (not an outage): halves stored apart,
        down to the one message the database refuses."""
        if len(messages) == 1:
            log.warning(kv("store_error", topic=storable_text(messages[0].topic, 300), error=describe(error)))
            return self._store_error(messages[0], describe(error), replay=replay)
        result = BatchResult()
        middle = len(messages) // 2
        for half in (messages[:middle], messages[middle:]):
            try:
                one = self._store(half, replay=replay, arrivals=arrivals)
            except Exception as exc:
                if is_outage(exc):
                    raise
                one = self._isolate(half, exc, replay=replay, arrivals=arrivals)
            result.add(one)
        return result

    def _store(self, messages: Sequence[Message], *, replay: bool, arrivals: set[int]) -> BatchResult:
        cut = [m for m in messages if m.size is not None]  # larger than any payload we decode
        decoded = decode_batch(
            [m for m in messages if m.size is None] if cut else messages,
            self.resolver.resolve,
            provision=self.provision,
            last_seen=self._last_seen,
            touch_every_s=self.touch_every_s,
            arrivals=arrivals,
        )
        for m in cut:
            decoded.bad.append((m, PayloadError("bad_payload", f"payload of {m.size} bytes is too large")))
            if m.quarantine_id is not None:
                decoded.replayed.add(m.quarantine_id)
        self.outbox.take()  # anything left by a batch that failed
        with self.session_factory() as session:
            result = write_batch(
                session,
                decoded,
                hooks=self.hooks,
                replay=replay,
                quarantine_max_bytes=self.quarantine_max_bytes,
                irrigation_max_s=self.irrigation_max_s,
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
                quarantine(session, [(message, "store_error", detail)], max_bytes=self.quarantine_max_bytes)
            session.commit()
        return result
