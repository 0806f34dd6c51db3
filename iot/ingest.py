"""The MQTT ingester: ``python -m iot.ingest`` (or ``flask iot ingest``, which calls ``main``).

One process, one thread does the work (a second, idle thread serves /metrics):

    paho network loop -> on_message appends to a buffer
                      -> flush by size (in on_message) or by age (in the main loop)
    flush: decode every message (iot.payloads, pure) -> one transaction:
           INSERT readings ON CONFLICT DO NOTHING RETURNING (only new rows come back)
           -> iot.rollups.apply_readings / iot.alerts.evaluate_batch (same transaction)
           -> irrigation events, device status, quarantine -> COMMIT -> then ack (MQTT 5
           manual acks), so nothing unstored is ever acknowledged.

A crash before the commit means the broker redelivers (persistent session: clean start
off, session expiry); a crash after the commit but before the ack means a redelivery
that the unique key turns into a no-op. A database outage keeps messages unacknowledged
in the buffer (the broker stops sending once Receive Maximum is reached) and retries
with backoff. Broker loss: reconnect with backoff; acks of the old connection are
dropped (their messages come again and are duplicates).

No Flask here.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import random
import signal
import socket
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from sqlalchemy import and_, bindparam, event, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session

from iot import payloads
from iot.models import Device, IrrigationEvent, QuarantinedMessage, Reading
from iot.payloads import PayloadError
from iot.registry import DeviceInfo, DeviceRegistry

log = logging.getLogger("iot.ingest")

READINGS = Reading.__table__
EVENTS = IrrigationEvent.__table__
QUARANTINE = QuarantinedMessage.__table__
DEVICES = Device.__table__


def kv(event: str, **fields) -> str:
    """A structured log line: ``event=batch stored=500 ms=12.3``."""
    parts = [f"event={event}"]
    for key, value in fields.items():
        if isinstance(value, float):
            value = f"{value:.3f}".rstrip("0").rstrip(".")
        elif isinstance(value, str) and (" " in value or not value):
            value = json.dumps(value, ensure_ascii=False)
        parts.append(f"{key}={value}")
    return " ".join(parts)


@dataclass
class IngestConfig:
    database_url: str
    mqtt_host: str = "127.0.0.1"
    mqtt_port: int = 1883
    mqtt_username: str | None = None
    mqtt_password: str | None = None
    mqtt_tls: bool = False
    topic_prefix: str = "farm"
    tasmota_prefix: str = "tele"
    client_id: str = "tianyuan-ingester"
    shared_group: str | None = None
    unknown_device_policy: str = "quarantine"  # quarantine | provision
    batch_size: int = 5000  # bigger batches dirty fewer index pages per row (SQLite: ~2x at 5000 vs 1000)
    batch_ms: int = 100
    receive_maximum: int = 20000  # MQTT 5: unacknowledged messages the broker may send us (> batch_size)
    session_expiry_s: int = 7 * 24 * 3600
    keepalive_s: int = 30
    metrics_port: int | None = None  # Prometheus text at http://127.0.0.1:PORT/metrics
    metrics_host: str = "127.0.0.1"
    log_every_s: float = 10.0
    last_seen_every_s: float = 60.0
    # decode and write in a child process, so reading MQTT and writing the database use two
    # cores (threads would share one: the GIL). False: in this process (tests, custom hooks).
    writer_process: bool = True

    @classmethod
    def from_settings(cls, settings, **overrides) -> IngestConfig:
        host, port, user, password, tls = settings.mqtt_host_port
        values = dict(
            database_url=settings.database_url,
            mqtt_host=host,
            mqtt_port=port,
            mqtt_username=user,
            mqtt_password=password,
            mqtt_tls=tls,
            topic_prefix=settings.mqtt_topic_prefix,
            client_id=settings.mqtt_client_id,
            unknown_device_policy=settings.unknown_device_policy,
        )
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def filters(self) -> list[str]:
        base = [f"{self.topic_prefix}/+/+/+", f"{self.tasmota_prefix}/+/SENSOR"]
        if self.shared_group:
            return [f"$share/{self.shared_group}/{f}" for f in base]
        return base


@dataclass
class Stats:
    received: int = 0
    stored: int = 0  # readings inserted
    duplicates: int = 0  # readings already present (redeliveries)
    irrigation: int = 0  # irrigation messages stored
    status: int = 0
    quarantined: Counter = field(default_factory=Counter)
    batches: int = 0
    batch_seconds: float = 0.0
    batch_seconds_max: float = 0.0
    db_errors: int = 0
    alert_errors: int = 0
    connects: int = 0
    disconnects: int = 0
    acked: int = 0
    subscribed: int = 0
    writer_starts: int = 0

    def prometheus(self) -> str:
        lines = []

        def metric(name, kind, help_, samples):
            lines.append(f"# HELP tianyuan_ingest_{name} {help_}")
            lines.append(f"# TYPE tianyuan_ingest_{name} {kind}")
            for labels, value in samples:
                lines.append(f"tianyuan_ingest_{name}{labels} {value}")

        metric("messages_received_total", "counter", "MQTT messages received.", [("", self.received)])
        metric(
            "messages_acked_total", "counter", "MQTT messages acknowledged after commit.", [("", self.acked)]
        )
        metric("readings_stored_total", "counter", "Readings inserted.", [("", self.stored)])
        metric(
            "readings_duplicate_total",
            "counter",
            "Readings already stored (redeliveries).",
            [("", self.duplicates)],
        )
        metric("irrigation_messages_total", "counter", "Irrigation messages stored.", [("", self.irrigation)])
        metric("status_messages_total", "counter", "Device status messages.", [("", self.status)])
        metric(
            "quarantined_total",
            "counter",
            "Messages quarantined, by reason.",
            [(f'{{reason="{r}"}}', n) for r, n in sorted(self.quarantined.items())]
            or [('{reason="none"}', 0)],
        )
        metric("batches_total", "counter", "Batches committed.", [("", self.batches)])
        metric(
            "batch_seconds_sum",
            "counter",
            "Total time spent storing batches.",
            [("", round(self.batch_seconds, 6))],
        )
        metric(
            "batch_seconds_max", "gauge", "Longest batch so far.", [("", round(self.batch_seconds_max, 6))]
        )
        metric("db_errors_total", "counter", "Failed batch transactions (retried).", [("", self.db_errors)])
        metric(
            "alert_errors_total",
            "counter",
            "Alert evaluations that failed (readings kept).",
            [("", self.alert_errors)],
        )
        metric("connects_total", "counter", "Connections to the broker.", [("", self.connects)])
        metric(
            "writer_starts_total",
            "counter",
            "Writer processes started (more than 1: restarts).",
            [("", self.writer_starts)],
        )
        return "\n".join(lines) + "\n"

    def as_dict(self) -> dict:
        return {
            "received": self.received,
            "acked": self.acked,
            "stored": self.stored,
            "duplicates": self.duplicates,
            "irrigation": self.irrigation,
            "status": self.status,
            "quarantined": dict(self.quarantined),
            "batches": self.batches,
            "db_errors": self.db_errors,
            "subscribed": self.subscribed,
        }


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
    quarantined: Counter = field(default_factory=Counter)
    # for replay: quarantine_id -> (reason, detail) of messages that still fail
    still_failing: dict[int, tuple[str, str]] = field(default_factory=dict)
    # alert notifications (topic, payload) from committed batches, published by the MQTT side
    notifications: list[tuple[str, str]] = field(default_factory=list)


class _Outbox:
    """An alert notifier that only collects: the batch's notifications leave after commit."""

    def __init__(self) -> None:
        self.items: list[tuple[str, str]] = []

    def publish(self, topic: str, payload: str) -> None:
        self.items.append((topic, payload))

    def flush(self, timeout: float = 5.0) -> None:
        pass


def _insert_fn(engine: Engine) -> Callable:
    return postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert


def _default_hooks(outbox: _Outbox, prefix: str) -> tuple[Callable, Callable]:
    """Rollups and alert rules, updated in each batch's transaction."""
    from iot.alerts import batch_hook
    from iot.rollups import apply_readings

    return apply_readings, batch_hook(outbox, prefix)


class BatchWriter:
    """Decodes a batch of messages and stores it in one transaction. No MQTT here: the
    ingester and ``quarantine replay`` both use it."""

    def __init__(
        self,
        engine: Engine,
        *,
        topic_prefix: str = "farm",
        tasmota_prefix: str = "tele",
        unknown_device_policy: str = "quarantine",
        hooks: tuple[Callable | None, Callable | None] | None = None,
    ):
        from core.db import make_session_factory

        self.engine = engine
        self.session_factory = make_session_factory(engine)
        self.registry = DeviceRegistry(self.session_factory)
        self.topic_prefix = topic_prefix
        self.tasmota_prefix = tasmota_prefix
        self.policy = unknown_device_policy
        self.outbox = _Outbox()
        self.apply_readings, self.evaluate_batch = (
            hooks if hooks is not None else _default_hooks(self.outbox, topic_prefix)
        )
        insert = _insert_fn(engine)
        self.insert_event = insert(EVENTS).on_conflict_do_nothing(index_elements=["device_id", "started_at"])
        self.insert_device = insert(DEVICES).on_conflict_do_nothing(index_elements=["device_id"])
        self.touch_devices = (
            update(DEVICES)
            .where(DEVICES.c.id == bindparam("pk"))
            .values(last_seen_at=bindparam("seen"), online=bindparam("is_online"))
        )
        self._topics: dict[str, tuple[payloads.Topic, DeviceInfo] | PayloadError] = {}
        self._topics_version = -1
        self._last_seen: dict[int, float] = {}
        self.alert_errors = 0

    # -- resolution ------------------------------------------------------------------

    def _resolve(self, topic: str) -> tuple[payloads.Topic, DeviceInfo]:
        """Topic -> (parsed topic, device), cached per topic string; raises PayloadError."""
        if self._topics_version != self.registry.version:
            self._topics.clear()
            self._topics_version = self.registry.version
        cached = self._topics.get(topic)
        if cached is None:
            cached = self._resolve_uncached(topic)
            if self._topics_version != self.registry.version:  # refreshed while resolving
                self._topics.clear()
                self._topics_version = self.registry.version
            if not (
                isinstance(cached, PayloadError) and cached.reason in ("unknown_device", "unassigned_device")
            ):
                self._topics[topic] = cached
        if isinstance(cached, PayloadError):
            raise cached
        return cached

    def _resolve_uncached(self, topic: str):
        try:
            parsed = payloads.parse_topic(topic, self.topic_prefix, self.tasmota_prefix)
        except PayloadError as exc:
            return exc
        info = self.registry.lookup(parsed.device)
        if info is None:
            return PayloadError("unknown_device", parsed.device[:80])
        if info.greenhouse_id is None:
            return PayloadError("unassigned_device", parsed.device[:80])
        if parsed.greenhouse is not None and parsed.greenhouse != info.greenhouse_code:
            return PayloadError(
                "greenhouse_mismatch",
                f"{parsed.device} belongs to {info.greenhouse_code}, not {parsed.greenhouse}"[:200],
            )
        return parsed, info

    # -- storing ---------------------------------------------------------------------

    def store(self, messages: list[Message], *, replay: bool = False) -> BatchResult:
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
                    one = self._quarantine_only(message, "store_error", str(exc.orig)[:300], replay=replay)
                result.stored += one.stored
                result.duplicates += one.duplicates
                result.quarantined.update(one.quarantined)
                result.still_failing.update(one.still_failing)
            return result

    def _store(self, messages: list[Message], *, replay: bool) -> BatchResult:
        result = BatchResult()
        self.outbox.items = []
        rows: dict[tuple[int, int, int], tuple[int, int, int, int, float]] = {}
        decoded = 0
        events: list[tuple[Message, DeviceInfo, payloads.IrrigationMsg]] = []
        seen: dict[int, tuple[float, bool]] = {}
        status: list[tuple[int, float, bool]] = []
        bad: list[tuple[Message, PayloadError]] = []
        provision: set[str] = set()
        last_seen = self._last_seen
        for message in messages:
            try:
                parsed, info = self._resolve(message.topic)
                kind = parsed.kind
                if kind == "telemetry" or kind == "tasmota":
                    if kind == "telemetry":
                        readings = payloads.decode_telemetry(message.payload, message.arrival)
                    else:
                        readings = payloads.decode_tasmota(message.payload, message.arrival, info.timezone)
                    pk, gh = info.pk, info.greenhouse_id
                    decoded += len(readings)
                    for metric_id, ts, value in readings:
                        key = (pk, metric_id, ts)
                        if key not in rows:
                            rows[key] = (pk, gh, metric_id, ts, value)
                    if message.arrival - last_seen.get(pk, 0.0) > 60.0:
                        seen[pk] = (message.arrival, True)
                elif kind == "irrigation":
                    events.append(
                        (message, info, payloads.decode_irrigation(message.payload, message.arrival))
                    )
                    seen[info.pk] = (message.arrival, True)
                else:
                    online = payloads.decode_status(message.payload)
                    status.append((info.pk, message.arrival, online))
            except PayloadError as exc:
                if exc.reason == "unknown_device" and self.policy == "provision":
                    provision.add(exc.detail)
                    exc = PayloadError("unassigned_device", exc.detail)
                bad.append((message, exc))
            except Exception as exc:  # a decoder bug must not stop the stream
                log.exception(kv("decode_bug", topic=message.topic))
                bad.append((message, PayloadError("bad_payload", f"{type(exc).__name__}: {exc}"[:300])))

        with self.session_factory() as session:
            inserted: list[dict] = []
            if rows:
                inserted = self._insert_readings(session, rows)
                result.stored = len(inserted)
                result.duplicates = decoded - len(inserted)
            if inserted:
                self._run_hooks(session, inserted)
            for message, info, event in events:
                try:
                    self._store_event(session, info, event)
                    result.irrigation += 1
                except PayloadError as exc:
                    bad.append((message, exc))
            result.status = len(status)
            touched = [{"pk": pk, "seen": _dt(t), "is_online": on} for pk, (t, on) in seen.items()]
            touched += [{"pk": pk, "seen": _dt(t), "is_online": on} for pk, t, on in status]
            if touched:
                # executemany per distinct row; status messages last so an explicit "offline" wins
                for row in touched:
                    session.execute(self.touch_devices, [row])
            for name in provision:
                session.execute(
                    self.insert_device,
                    [
                        {
                            "device_id": name,
                            "kind": "sensor",
                            "provisioned": True,
                            "online": False,
                            "created_at": _dt(time.time()),
                        }
                    ],
                )
            good_qids = {m.quarantine_id for m in messages if m.quarantine_id is not None}
            if bad:
                if replay:
                    for message, exc in bad:
                        if message.quarantine_id is not None:
                            result.still_failing[message.quarantine_id] = (exc.reason, exc.detail)
                            good_qids.discard(message.quarantine_id)
                else:
                    session.execute(
                        QUARANTINE.insert(),
                        [
                            {
                                "received_at": _dt(m.arrival),
                                "topic": m.topic[:300],
                                "payload": bytes(m.payload),
                                "reason": e.reason,
                                "detail": e.detail or None,
                            }
                            for m, e in bad
                        ],
                    )
                for _m, e in bad:
                    result.quarantined[e.reason] += 1
            if replay:
                now = _dt(time.time())
                if good_qids:
                    session.execute(
                        update(QUARANTINE).where(QUARANTINE.c.id.in_(good_qids)).values(replayed_at=now)
                    )
                for qid, (reason, detail) in result.still_failing.items():
                    session.execute(
                        update(QUARANTINE)
                        .where(QUARANTINE.c.id == qid)
                        .values(reason=reason, detail=detail or None)
                    )
            session.commit()
        result.notifications, self.outbox.items = self.outbox.items, []
        for pk, (t, _on) in seen.items():
            last_seen[pk] = t
        if provision:
            self.registry.maybe_refresh(force=True)
        return result

    def _insert_readings(self, session: Session, rows: dict) -> list[dict]:
        """INSERT .. ON CONFLICT DO NOTHING RETURNING, as multi-row VALUES statements on the
        driver directly: the same SQL SQLAlchemy's insertmanyvalues would send, without its
        per-parameter bookkeeping (the single biggest cost per message after JSON decoding)."""
        conn = session.connection()
        mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
        cursor = conn.connection.cursor()  # the DBAPI cursor, inside the session's transaction
        one = f"({mark}, {mark}, {mark}, {mark}, {mark})"
        head = "INSERT INTO iot_readings (device_id, greenhouse_id, metric_id, ts, value) VALUES "
        tail = (
            " ON CONFLICT (device_id, metric_id, ts) DO NOTHING RETURNING greenhouse_id, metric_id, ts, value"
        )
        values = list(rows.values())
        out: list[dict] = []
        chunk = 1000  # 5,000 parameters: within SQLite's and PostgreSQL's limits
        for start in range(0, len(values), chunk):
            part = values[start : start + chunk]
            params: list = []
            for r in part:
                params += r
            sql = head + ", ".join([one] * len(part)) + tail
            cursor.execute(sql, params)
            out += [
                {"greenhouse_id": g, "metric_id": m, "ts": ts, "value": v}
                for g, m, ts, v in cursor.fetchall()
            ]
        cursor.close()
        return out

    def _quarantine_only(self, message: Message, reason: str, detail: str, *, replay: bool) -> BatchResult:
        result = BatchResult()
        result.quarantined[reason] += 1
        if replay and message.quarantine_id is not None:
            result.still_failing[message.quarantine_id] = (reason, detail)
            with self.session_factory() as session:
                session.execute(
                    update(QUARANTINE)
                    .where(QUARANTINE.c.id == message.quarantine_id)
                    .values(reason=reason, detail=detail)
                )
                session.commit()
            return result
        with self.session_factory() as session:
            session.execute(
                QUARANTINE.insert(),
                [
                    {
                        "received_at": _dt(message.arrival),
                        "topic": message.topic[:300],
                        "payload": bytes(message.payload),
                        "reason": reason,
                        "detail": detail,
                    }
                ],
            )
            session.commit()
        return result

    def _run_hooks(self, session: Session, rows: list[dict]) -> None:
        if self.apply_readings is not None:
            self.apply_readings(session, rows)  # rollups must be exact: an error here fails the batch
        if self.evaluate_batch is not None:
            try:
                with session.begin_nested():
                    self.evaluate_batch(session, rows)
            except Exception:  # alerting must never lose readings
                self.alert_errors += 1
                log.exception(kv("alert_error", rows=len(rows)))

    def _store_event(self, session: Session, info: DeviceInfo, msg: payloads.IrrigationMsg) -> None:
        base = {"device_id": info.pk, "greenhouse_id": info.greenhouse_id, "zone": msg.zone}
        details = {"water_l": msg.water_l, "ec": msg.ec, "ph": msg.ph, "fertilizer": msg.fertilizer}
        if msg.action in ("complete", "start"):
            session.execute(
                self.insert_event,
                [{**base, **details, "started_at": msg.started_at, "ended_at": msg.ended_at}],
            )
            return
        # stop: close the open event it belongs to (given start, or the latest open one before it)
        query = select(EVENTS.c.id, EVENTS.c.ended_at).where(EVENTS.c.device_id == info.pk)
        if msg.started_at is not None:
            query = query.where(EVENTS.c.started_at == msg.started_at)
        else:
            query = query.where(EVENTS.c.started_at <= msg.ended_at)
            if msg.zone is not None:
                query = query.where(EVENTS.c.zone == msg.zone)
            query = (
                query.where((EVENTS.c.ended_at.is_(None)) | (EVENTS.c.ended_at == msg.ended_at))
                .order_by(EVENTS.c.started_at.desc())
                .limit(1)
            )
        row = session.execute(query).first()
        if row is None:
            raise PayloadError("unmatched_stop", f"no open irrigation before {msg.ended_at}")
        if row.ended_at is not None:
            return  # already closed by this very stop: a redelivery
        changes = {"ended_at": msg.ended_at}
        changes.update({k: v for k, v in details.items() if v is not None})
        if msg.ended_at is not None:
            session.execute(
                update(EVENTS)
                .where(and_(EVENTS.c.id == row.id, EVENTS.c.ended_at.is_(None)))
                .values(**changes)
            )


def _writer_main(
    conn, database_url: str, topic_prefix: str, tasmota_prefix: str, policy: str, log_level: int
) -> None:
    """The writer process: receive batches, store them, report back. Ends when the pipe
    closes (the ingester stopped or was killed) or on ``None``."""
    import os

    from core.db import make_engine

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the ingester decides when we stop
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    logging.basicConfig(
        level=log_level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    parent = os.getppid()
    engine = make_engine(database_url)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_ingest_pragmas)
    writer = BatchWriter(
        engine, topic_prefix=topic_prefix, tasmota_prefix=tasmota_prefix, unknown_device_policy=policy
    )
    backoff = 0.0
    while True:  # the database may be away when we start: wait for it
        try:
            writer.registry.refresh()
            break
        except DBAPIError as exc:
            backoff = min(max(backoff * 2, 0.5), 15.0)
            log.error(kv("db_error", error=str(exc.orig or exc)[:200], retry_in_s=backoff))
            time.sleep(backoff)
            if os.getppid() != parent:
                return
    backoff = 0.0
    while True:
        try:
            item = conn.recv()
        except (EOFError, OSError):
            return
        if item is None:
            return
        seq, raw = item
        messages = [Message(t, p, a) for t, p, a in raw]
        while True:
            started = time.perf_counter()
            try:
                result = writer.store(messages)
            except DBAPIError as exc:
                backoff = min(max(backoff * 2, 0.5), 15.0)
                log.error(
                    kv(
                        "db_error",
                        error=type(exc.orig).__name__ if exc.orig else type(exc).__name__,
                        pending=len(messages),
                        retry_in_s=backoff,
                    )
                )
                try:
                    conn.send(("db_error", seq, None))
                except OSError:
                    return
                time.sleep(backoff)
                if os.getppid() != parent:
                    return  # the ingester is gone; the broker still has these messages
                continue
            backoff = 0.0
            data = (
                result.stored,
                result.duplicates,
                result.irrigation,
                result.status,
                dict(result.quarantined),
                writer.alert_errors,
                time.perf_counter() - started,
                result.notifications,
            )
            try:
                conn.send(("done", seq, data))
            except OSError:
                return
            break


def _sqlite_ingest_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA cache_size=-65536")  # 64 MiB page cache (default 2 MiB)
    cursor.execute("PRAGMA mmap_size=268435456")
    # checkpoint every ~80 MB of WAL rather than 4 MB: a page dirtied by many batches is
    # copied back to the database once, not once per batch (about +10 % at 200k messages)
    cursor.execute("PRAGMA wal_autocheckpoint=20000")
    cursor.close()


def _dt(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


# --- the MQTT side ------------------------------------------------------------------


class Ingester:
    def __init__(self, config: IngestConfig, engine: Engine | None = None, *, hooks=None):
        from core.db import make_engine

        self.config = config
        self.engine = engine or make_engine(config.database_url)
        if engine is None and self.engine.dialect.name == "sqlite":
            # readings from hundreds of devices land all over two indexes: keep them in memory
            event.listen(self.engine, "connect", _sqlite_ingest_pragmas)
        self.writer = BatchWriter(
            self.engine,
            topic_prefix=config.topic_prefix,
            tasmota_prefix=config.tasmota_prefix,
            unknown_device_policy=config.unknown_device_policy,
            hooks=hooks,
        )
        self.stats = Stats()
        self.buffer: list[Message] = []
        self.buffer_started = 0.0
        self.generation = 0
        self.connected = False
        self.subscribed = threading.Event()
        self._stop = threading.Event()
        self._retry_at = 0.0
        self._db_backoff = 0.0
        self._client = None
        self._http: ThreadingHTTPServer | None = None
        # the writer process (config.writer_process, default hooks and engine only)
        self.use_process = config.writer_process and hooks is None and engine is None
        self._proc = None
        self._conn = None
        self._inflight: tuple[int, list[Message]] | None = None
        self._seq = 0
        self._last_poll = 0.0
        self._writer_started = 0.0

    # -- paho callbacks --------------------------------------------------------------

    def _on_connect(self, client, _userdata, flags, reason_code, _properties):
        if reason_code.is_failure:
            log.error(kv("connect_refused", reason=str(reason_code)))
            return
        self.connected = True
        self.stats.connects += 1
        log.info(kv("connected", client_id=self.config.client_id, session_present=int(flags.session_present)))
        from paho.mqtt.subscribeoptions import SubscribeOptions

        client.subscribe([(f, SubscribeOptions(qos=1)) for f in self.config.filters()])

    def _on_subscribe(self, _client, _userdata, _mid, reason_codes, _properties):
        if any(rc.is_failure for rc in reason_codes):
            log.error(kv("subscribe_refused", codes=",".join(str(rc) for rc in reason_codes)))
        else:
            self.stats.subscribed = 1
            self.subscribed.set()

    def _on_disconnect(self, _client, _userdata, _flags, reason_code, _properties):
        self.connected = False
        self.generation += 1
        self.stats.disconnects += 1
        self.stats.subscribed = 0
        log.warning(kv("disconnected", reason=str(reason_code), unacked=len(self.buffer)))

    def _on_message(self, _client, _userdata, msg):
        if not self.buffer:
            self.buffer_started = time.monotonic()
        self.buffer.append(Message(msg.topic, msg.payload, time.time(), msg.mid, msg.qos, self.generation))
        self.stats.received += 1
        if len(self.buffer) >= self.config.batch_size:
            self.flush()

    # -- batches ---------------------------------------------------------------------

    def flush(self) -> bool:
        """Store the buffer (or hand it to the writer process), acknowledging what is committed.

        False if nothing could be done now (database away, or the writer still busy): the
        buffer is kept and the broker stops sending once Receive Maximum is reached."""
        if self.use_process:
            return self._flush_to_process()
        if not self.buffer:
            return True
        now = time.monotonic()
        if now < self._retry_at:
            return False
        batch = self.buffer
        started = time.perf_counter()
        try:
            result = self.writer.store(batch)
        except DBAPIError as exc:
            self.stats.db_errors += 1
            self._db_backoff = min(max(self._db_backoff * 2, 0.5), 15.0)
            self._retry_at = time.monotonic() + self._db_backoff
            log.error(
                kv(
                    "db_error",
                    error=type(exc.orig).__name__ if exc.orig else type(exc).__name__,
                    pending=len(batch),
                    retry_in_s=self._db_backoff,
                )
            )
            return False
        self._db_backoff = 0.0
        self.buffer = []
        self._acknowledge(batch, result, time.perf_counter() - started, self.writer.alert_errors)
        return True

    def _acknowledge(
        self, batch: list[Message], result: BatchResult, elapsed: float, alert_errors: int
    ) -> None:
        client = self._client
        acked = 0
        if client is not None:
            for topic, payload in result.notifications:  # alerts opened/closed by this batch
                client.publish(topic, payload, qos=1)
            gen = self.generation
            for m in batch:
                if m.qos and m.generation == gen:
                    client.ack(m.mid, m.qos)
                    acked += 1
        st = self.stats
        st.acked += acked
        st.stored += result.stored
        st.duplicates += result.duplicates
        st.irrigation += result.irrigation
        st.status += result.status
        st.quarantined.update(result.quarantined)
        st.batches += 1
        st.batch_seconds += elapsed
        st.batch_seconds_max = max(st.batch_seconds_max, elapsed)
        st.alert_errors = alert_errors
        if result.quarantined:
            log.warning(kv("quarantined", **{r: n for r, n in result.quarantined.items()}))

    # -- the writer process ----------------------------------------------------------

    def _start_writer(self) -> None:
        import multiprocessing

        ctx = multiprocessing.get_context("spawn")  # no fork of a process with threads and sockets
        self._conn, child = ctx.Pipe()
        cfg = self.config
        self._proc = ctx.Process(
            target=_writer_main,
            name="ingest-writer",
            daemon=True,
            args=(
                child,
                cfg.database_url,
                cfg.topic_prefix,
                cfg.tasmota_prefix,
                cfg.unknown_device_policy,
                logging.getLogger().level or logging.INFO,
            ),
        )
        self._proc.start()
        self._writer_started = time.monotonic()
        child.close()
        if self._inflight is not None:  # a crashed writer's batch: send it again
            self._conn.send((self._inflight[0], [(m.topic, m.payload, m.arrival) for m in self._inflight[1]]))
        self.stats.writer_starts += 1

    def _poll_writer(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_poll < 0.002:  # a poll is a system call: not per message
            return
        self._last_poll = now
        while self._inflight is not None and self._conn.poll():
            try:
                kind, seq, data = self._conn.recv()
            except (EOFError, OSError):
                break
            if kind == "db_error":
                self.stats.db_errors += 1
                continue
            batch = self._inflight[1]
            self._inflight = None
            stored, duplicates, irrigation, status, quarantined, alert_errors, elapsed, notifications = data
            result = BatchResult(
                stored=stored,
                duplicates=duplicates,
                irrigation=irrigation,
                status=status,
                quarantined=Counter(quarantined),
                notifications=notifications,
            )
            self._acknowledge(batch, result, elapsed, alert_errors)
        if self._inflight is not None and not self._proc.is_alive() and now - self._writer_started > 1.0:
            log.error(kv("writer_died", exitcode=self._proc.exitcode, pending=len(self._inflight[1])))
            self._start_writer()

    def _flush_to_process(self) -> bool:
        self._poll_writer()
        if not self.buffer:
            return True
        if self._inflight is not None:
            return False  # one batch at a time: this one is collected while that one is written
        batch, self.buffer = self.buffer, []
        self._seq += 1
        self._inflight = (self._seq, batch)
        try:
            self._conn.send((self._seq, [(m.topic, m.payload, m.arrival) for m in batch]))
        except OSError:  # the writer died: _poll_writer restarts it and sends the batch again
            self._poll_writer(force=True)
        return True

    def _stop_writer(self, deadline: float) -> None:
        while (self.buffer or self._inflight is not None) and time.monotonic() < deadline:
            if not self.flush():
                time.sleep(0.01)
            self._poll_writer(force=True)
        with contextlib.suppress(OSError):
            self._conn.send(None)
        self._proc.join(max(0.1, deadline - time.monotonic()))
        if self._proc.is_alive():  # the database is away: what it holds is not acknowledged
            self._proc.kill()
            self._proc.join(5)
        self._poll_writer(force=True)

    # -- running ---------------------------------------------------------------------

    def _make_client(self):
        import paho.mqtt.client as mqtt

        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=self.config.client_id,
            protocol=mqtt.MQTTv5,
            manual_ack=True,
        )
        if self.config.mqtt_username:
            client.username_pw_set(self.config.mqtt_username, self.config.mqtt_password)
        if self.config.mqtt_tls:
            client.tls_set()
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        return client

    def _connect(self, client) -> None:
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = self.config.session_expiry_s
        props.ReceiveMaximum = min(max(self.config.receive_maximum, 2 * self.config.batch_size), 65535)
        client.connect(
            self.config.mqtt_host,
            self.config.mqtt_port,
            keepalive=self.config.keepalive_s,
            clean_start=False,
            properties=props,
        )

    def stop(self) -> None:
        self._stop.set()

    def run(self, *, max_seconds: float | None = None) -> Stats:
        """Run until ``stop()`` (or SIGTERM/SIGINT via ``main``). Returns the counters."""
        import paho.mqtt.client as mqtt

        if self.use_process:
            self._start_writer()
        else:
            self.writer.registry.refresh()
        client = self._client = self._make_client()
        if self.config.metrics_port is not None:
            self._serve_metrics()
        backoff = 0.0
        deadline = None if max_seconds is None else time.monotonic() + max_seconds
        last_log = time.monotonic()
        last_received = 0
        log.info(
            kv(
                "start",
                broker=f"{self.config.mqtt_host}:{self.config.mqtt_port}",
                filters=",".join(self.config.filters()),
                batch_size=self.config.batch_size,
            )
        )
        need_connect = True
        while not self._stop.is_set() and (deadline is None or time.monotonic() < deadline):
            if need_connect:
                try:
                    if self.stats.connects == 0 and self.generation == 0:
                        self._connect(client)
                    else:
                        client.reconnect()
                    need_connect = False
                    backoff = 0.0
                except (OSError, ValueError) as exc:
                    backoff = min(max(backoff * 2, 0.25), 10.0)
                    log.warning(kv("connect_failed", error=str(exc), retry_in_s=backoff))
                    self._stop.wait(backoff * (0.8 + 0.4 * random.random()))
                    self.flush()  # store what we have (acks of an old connection are dropped anyway)
                    continue
            rc = client.loop(timeout=0.05)
            if rc != mqtt.MQTT_ERR_SUCCESS:
                if self.connected:
                    self.connected = False
                    self.generation += 1
                need_connect = True
            if self._inflight is not None:
                self._poll_writer()
            if self.buffer and (
                time.monotonic() - self.buffer_started >= self.config.batch_ms / 1000.0 or not self.connected
            ):
                self.flush()
            now = time.monotonic()
            if now - last_log >= self.config.log_every_s:
                rate = (self.stats.received - last_received) / (now - last_log)
                last_received = self.stats.received
                last_log = now
                log.info(
                    kv(
                        "progress",
                        rate_per_s=round(rate, 1),
                        **{k: v for k, v in self.stats.as_dict().items() if k != "quarantined"},
                        quarantined=sum(self.stats.quarantined.values()),
                    )
                )
        # shutting down: store what we have and ack it while still connected; if the database
        # stays away, give up after a few seconds (unacknowledged messages stay with the broker)
        if self.use_process:
            self._stop_writer(time.monotonic() + 3.0)
        else:
            for _ in range(20):
                if self.flush():
                    break
                time.sleep(0.1)
        try:
            client.loop(timeout=0.05)
            client.disconnect()
        except Exception:  # noqa: BLE001 - best effort on the way out
            pass
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
        log.info(kv("stop", **{k: v for k, v in self.stats.as_dict().items() if k != "quarantined"}))
        return self.stats

    def _serve_metrics(self) -> None:
        ingester = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's name
                if self.path.startswith("/metrics"):
                    body, ctype = ingester.stats.prometheus().encode(), "text/plain; version=0.0.4"
                elif self.path.startswith("/status"):
                    body, ctype = json.dumps(ingester.stats.as_dict()).encode(), "application/json"
                else:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self._http = ThreadingHTTPServer((self.config.metrics_host, self.config.metrics_port), Handler)
        self.config = replace(self.config, metrics_port=self._http.server_address[1])
        threading.Thread(target=self._http.serve_forever, name="metrics", daemon=True).start()
        log.info(kv("metrics", url=f"http://{self.config.metrics_host}:{self.config.metrics_port}/metrics"))


# --- replaying the quarantine -------------------------------------------------------


def replay_quarantine(
    engine: Engine,
    *,
    topic_prefix: str = "farm",
    tasmota_prefix: str = "tele",
    reason: str | None = None,
    ids: Iterable[int] | None = None,
    batch_size: int = 500,
    progress: Callable[[int, int, BatchResult], None] | None = None,
    unknown_device_policy: str = "quarantine",
) -> BatchResult:
    """Feed quarantined messages (not yet replayed) through the writer again.

    Stored ones get ``replayed_at``; the rest keep their row with the new reason."""
    writer = BatchWriter(
        engine,
        topic_prefix=topic_prefix,
        tasmota_prefix=tasmota_prefix,
        unknown_device_policy=unknown_device_policy,
    )
    writer.registry.refresh()
    query = select(QUARANTINE.c.id).where(QUARANTINE.c.replayed_at.is_(None)).order_by(QUARANTINE.c.id)
    if reason:
        query = query.where(QUARANTINE.c.reason == reason)
    if ids is not None:
        query = query.where(QUARANTINE.c.id.in_(list(ids)))
    with writer.session_factory() as session:
        all_ids = list(session.scalars(query))
    total = BatchResult()
    done = 0
    for start in range(0, len(all_ids), batch_size):
        chunk = all_ids[start : start + batch_size]
        with writer.session_factory() as session:
            rows = session.execute(
                select(QUARANTINE.c.id, QUARANTINE.c.topic, QUARANTINE.c.payload, QUARANTINE.c.received_at)
                .where(QUARANTINE.c.id.in_(chunk))
                .order_by(QUARANTINE.c.id)
            ).all()
        messages = [
            Message(
                r.topic, bytes(r.payload), r.received_at.replace(tzinfo=UTC).timestamp(), quarantine_id=r.id
            )
            for r in rows
        ]
        result = writer.store(messages, replay=True)
        total.stored += result.stored
        total.duplicates += result.duplicates
        total.quarantined.update(result.quarantined)
        total.still_failing.update(result.still_failing)
        done += len(chunk)
        if progress:
            progress(done, len(all_ids), total)
    return total


# --- entry point --------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m iot.ingest", description="Store greenhouse MQTT data.")
    p.add_argument(
        "--shared-group", help="subscribe as $share/NAME/... to split the stream with other ingesters"
    )
    p.add_argument("--client-id", help="MQTT client id (fixed per instance; default MQTT_CLIENT_ID)")
    p.add_argument("--batch-size", type=int, default=5000)
    p.add_argument("--batch-ms", type=int, default=100)
    p.add_argument(
        "--metrics-port", type=int, help="serve Prometheus text on 127.0.0.1:PORT/metrics (0: any port)"
    )
    p.add_argument("--log-level", default="INFO")
    return p


def run_from_settings(
    settings, *, shared_group=None, client_id=None, batch_size=None, batch_ms=None, metrics_port=None
) -> Stats:
    """What ``python -m iot.ingest`` and ``flask iot ingest`` both run."""
    if shared_group and not client_id and settings.mqtt_client_id == "tianyuan-ingester":
        # each member of a group needs its own (stable) id; the host name is stable per machine
        client_id = f"tianyuan-ingester-{shared_group}-{socket.gethostname()}"
    config = IngestConfig.from_settings(
        settings,
        shared_group=shared_group,
        client_id=client_id,
        batch_size=batch_size,
        batch_ms=batch_ms,
        metrics_port=metrics_port,
    )
    ingester = Ingester(config)

    def _term(_signum, _frame):
        ingester.stop()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _term)
        signal.signal(signal.SIGINT, _term)
    return ingester.run()


def main(argv: list[str] | None = None) -> int:
    from core.config import Settings

    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    settings = Settings.from_env()
    run_from_settings(
        settings,
        shared_group=args.shared_group,
        client_id=args.client_id,
        batch_size=args.batch_size,
        batch_ms=args.batch_ms,
        metrics_port=args.metrics_port,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
