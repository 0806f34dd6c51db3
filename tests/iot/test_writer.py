"""The ingester's writer in parts: ``decode_batch`` needs no database, ``write_batch`` stores in
the caller's transaction without committing, ``BatchWriter`` owns the commit and falls back
to one message at a time; the counters come out as Prometheus text."""

from __future__ import annotations

import json
import time

import pytest
from sqlalchemy import event, func, select
from sqlalchemy.engine import Engine

from iot import registry
from iot.ingest.devices import DeviceInfo, StaticDevices, TopicResolver
from iot.ingest.stats import Stats
from iot.ingest.writer import BatchWriter, Hooks, Message, decode_batch, write_batch
from iot.models import Device, IrrigationEvent, QuarantinedMessage, Reading

T0 = 1764000000


def _msg(topic: str, payload, arrival: float | None = None) -> Message:
    if not isinstance(payload, bytes):
        payload = json.dumps(payload).encode()
    return Message(topic, payload, arrival if arrival is not None else time.time())


@pytest.fixture
def no_database(monkeypatch):
    """Any attempt to reach a database fails the test."""

    def refuse(*_args, **_kwargs):
        raise AssertionError("decode_batch touched the database")

    monkeypatch.setattr(Engine, "connect", refuse)
    monkeypatch.setattr(Engine, "raw_connection", refuse)


def test_decode_batch_is_pure(no_database):
    devices = StaticDevices(
        [
            DeviceInfo(1, "dev1", 10, "GH1", "Asia/Shanghai"),
            DeviceInfo(2, "ctl1", 10, "GH1", "Asia/Shanghai"),
            DeviceInfo(3, "loose", None, None, "Asia/Shanghai"),
        ]
    )
    resolver = TopicResolver(devices, "farm", "tele")
    now = time.time()
    messages = [
        _msg("farm/GH1/dev1/telemetry", {"ts": T0, "air_temperature": 21.5, "co2": 500}, now),
        _msg("farm/GH1/dev1/telemetry", {"ts": T0, "air_temperature": 21.5}, now),  # a repeat
        _msg("farm/GH1/ctl1/irrigation", {"start": T0, "end": T0 + 600, "water_l": 10}, now),
        _msg("farm/GH1/ctl1/status", b"offline", now),
        _msg("farm/GH1/ghost/telemetry", {"ts": T0, "co2": 1}, now),
        _msg("farm/GH1/loose/telemetry", {"ts": T0, "co2": 1}, now),
        _msg("farm/GH2/dev1/telemetry", {"ts": T0, "co2": 1}, now),
        _msg("farm/GH1/dev1/telemetry", b"{nope", now),
        _msg("elsewhere/x", b"1", now),
    ]
    last_seen = {2: now - 5}
    decoded = decode_batch(messages, resolver.resolve, provision=True, last_seen=last_seen)
    assert sorted(decoded.readings.values()) == [(1, 10, 1, "", T0, 0, 21.5), (1, 10, 5, "", T0, 0, 500.0)]
    assert decoded.decoded == 3  # the repeat counts as decoded, then as a duplicate
    assert [(m.topic, irr.action, irr.water_l) for m, _info, irr in decoded.events] == [
        ("farm/GH1/ctl1/irrigation", "complete", 10.0)
    ]
    assert decoded.status == [(2, now, False)]
    assert set(decoded.seen) == {1, 2}  # telemetry and irrigation mark their devices seen
    assert [(m.topic.split("/")[-2], e.reason) for m, e in decoded.bad] == [
        ("ghost", "unassigned_device"),  # provisioned: waits for an assignment
        ("loose", "unassigned_device"),
        ("dev1", "greenhouse_mismatch"),
        ("dev1", "malformed_json"),
        ("elsewhere", "unknown_topic"),
    ]
    assert decoded.provision == {"ghost"}
    assert last_seen == {2: now - 5}  # inputs are not changed


def test_decode_batch_quarantines_unknown_devices_without_provisioning(no_database):
    resolver = TopicResolver(StaticDevices([]))
    decoded = decode_batch([_msg("farm/GH1/ghost/telemetry", {"co2": 1})], resolver.resolve)
    assert [e.reason for _m, e in decoded.bad] == ["unknown_device"] and not decoded.provision


def test_write_batch_stores_in_the_callers_transaction_without_committing(session, greenhouse):
    writer = BatchWriter(session.get_bind())
    writer.registry.refresh()
    commits: list[object] = []
    event.listen(session, "after_commit", commits.append)
    messages = [
        _msg("farm/GH1/dev1/telemetry", {"ts": T0, "air_temperature": 20.0}),
        _msg("farm/GH1/ctl1/irrigation", {"start": T0, "end": T0 + 600}),
        _msg("farm/GH1/dev1/telemetry", b"{broken"),
    ]
    decoded = decode_batch(messages, writer.resolver.resolve)
    result = write_batch(session, decoded, hooks=Hooks())
    assert (result.stored, result.irrigation, dict(result.quarantined)) == (1, 1, {"malformed_json": 1})
    assert session.in_transaction() and commits == []
    assert session.scalar(select(func.count()).select_from(Reading)) == 1  # visible inside it
    session.rollback()  # the caller decides: nothing was written
    for model in (Reading, IrrigationEvent, QuarantinedMessage):
        assert session.scalar(select(func.count()).select_from(model)) == 0


def test_batch_writer_commits_and_falls_back_to_one_message_at_a_time(session, greenhouse):
    writer = BatchWriter(session.get_bind(), hooks=(None, None))
    writer.registry.refresh()  # caches dev1 and ctl1
    gone = registry.get_device(session, "ctl1")
    session.delete(gone)  # deleted after the cache was loaded: its rows break the foreign key
    session.commit()
    result = writer.store(
        [
            _msg("farm/GH1/dev1/telemetry", {"ts": T0, "co2": 400}),
            _msg("farm/GH1/ctl1/telemetry", {"ts": T0, "ec": 1.5}),
            _msg("farm/GH1/dev1/telemetry", {"ts": T0 + 60, "co2": 410}),
        ]
    )
    assert result.stored == 2 and dict(result.quarantined) == {"unknown_device": 1}
    session.expire_all()
    assert sorted(session.scalars(select(Reading.value))) == [400.0, 410.0]
    assert session.scalar(select(QuarantinedMessage.reason)) == "unknown_device"
    assert session.scalar(select(func.count()).select_from(Device)) == 1


def test_prometheus_text_keeps_the_documented_names():
    stats = Stats(received=3, acked=2, stored=4, batches=1, batch_seconds=0.25, batch_seconds_max=0.25)
    stats.quarantined["out_of_range"] += 2
    text = stats.prometheus().decode()
    for name in (
        "messages_received_total 3",
        "messages_acked_total 2",
        "readings_stored_total 4",
        "readings_duplicate_total 0",
        'quarantined_total{reason="out_of_range"} 2',
        "batches_total 1",
        "batch_seconds_sum 0.25",
        "batch_seconds_count 1",
        "batch_seconds_max 0.25",
        "db_errors_total 0",
        "alert_errors_total 0",
        "connects_total 0",
        "writer_starts_total 0",
    ):
        assert f"tianyuan_ingest_{name}" in text, name
    assert "# TYPE tianyuan_ingest_messages_received_total counter" in text
    assert 'tianyuan_ingest_quarantined_total{reason="none"} 0' in Stats().prometheus().decode()


# --- issue 15: one message never stops the stream; the quarantine is idempotent and bounded ---


def _quarantined(session) -> list[QuarantinedMessage]:
    session.expire_all()
    return list(session.scalars(select(QuarantinedMessage).order_by(QuarantinedMessage.id)))


def _good(n: int, start: int = 0) -> list[Message]:
    return [_msg("farm/GH1/dev1/telemetry", {"ts": T0 + i, "co2": 400 + i}) for i in range(start, start + n)]


def test_nul_in_a_metric_name_is_quarantined_storably_and_the_rest_stored(session, greenhouse):
    """PostgreSQL refuses NUL in text: the detail naming the metric used to carry it and fail the
    batch for ever. The payload keeps its bytes; topic and detail are made storable."""
    writer = BatchWriter(session.get_bind(), hooks=(None, None))
    writer.registry.refresh()
    bad = _msg("farm/GH1/dev1/telemetry", b'{"air_temperature\\u0000": 20}')
    result = writer.store([bad, *_good(100)])
    assert result.stored == 100 and dict(result.quarantined) == {"unknown_metric": 1}
    (q,) = _quarantined(session)
    assert q.reason == "unknown_metric" and "\x00" not in (q.detail or "") and "air_temperature" in q.detail
    assert q.payload == b'{"air_temperature\\u0000": 20}' and q.size == len(q.payload) and q.seen_count == 1


def test_nul_and_invalid_text_in_a_topic_are_made_storable(session, greenhouse):
    # the broker refuses a NUL in a topic (MQTT-1.5.4-2), but the writer must not depend on it
    writer = BatchWriter(session.get_bind(), hooks=(None, None))
    writer.registry.refresh()
    result = writer.store([_msg("farm/GH1/de\x00v\udc80/telemetry", {"co2": 1}), *_good(3)])
    assert result.stored == 3 and sum(result.quarantined.values()) == 1
    (q,) = _quarantined(session)
    assert "\x00" not in q.topic and "\x00" not in (q.detail or "")
    q.topic.encode("utf-8")  # valid text


def test_a_message_the_database_refuses_is_found_by_halving_and_quarantined(session, greenhouse):
    """A refusal that belongs to one message (here a rollup hook failing on one value, as a
    column refusing a value would) stores every other message in a few transactions."""
    commits: list[object] = []

    def fussy(_session, rows):
        if any(r["value"] == 777.0 for r in rows):
            raise ValueError("value refused")

    writer = BatchWriter(session.get_bind(), hooks=(fussy, None))
    writer.registry.refresh()
    event.listen(writer.session_factory, "after_commit", commits.append)
    messages = _good(1000)
    messages[377] = _msg("farm/GH1/dev1/telemetry", {"ts": T0 + 377, "co2": 777})
    result = writer.store(messages)
    assert result.stored == 999 and dict(result.quarantined) == {"store_error": 1}
    (q,) = _quarantined(session)
    assert q.reason == "store_error" and q.detail == "ValueError: value refused"
    assert json.loads(q.payload) == {"ts": T0 + 377, "co2": 777}
    assert len(commits) <= 2 * 11  # about 2 log2(1000) transactions, not 1,000
    assert session.scalar(select(func.count()).select_from(Reading)) == 999


def test_an_outage_is_raised_and_nothing_is_quarantined(session, greenhouse, engine):
    """SQLite locked past its busy timeout: the batch waits (raised for the caller's retry)."""
    if engine.dialect.name != "sqlite":
        pytest.skip("SQLite's lock")
    from sqlalchemy.exc import OperationalError

    from iot.ingest.writer import ingest_engine, is_outage

    writer_engine = ingest_engine(str(engine.url))

    @event.listens_for(writer_engine, "connect")
    def short_wait(dbapi_connection, _record):
        dbapi_connection.execute("PRAGMA busy_timeout=50")

    writer = BatchWriter(writer_engine, hooks=(None, None))
    writer.registry.refresh()
    with engine.connect() as holder:
        holder.exec_driver_sql("BEGIN IMMEDIATE")  # another writer holds the lock
        with pytest.raises(OperationalError) as caught:
            writer.store(_good(10))
        assert is_outage(caught.value) and "locked" in str(caught.value.orig)
        holder.rollback()
    assert _quarantined(session) == [] and session.scalar(select(func.count()).select_from(Reading)) == 0
    assert writer.store(_good(10)).stored == 10  # the same batch, once the lock is gone
    writer_engine.dispose()


def test_errors_are_sorted_into_outages_and_the_data(engine):
    import sqlite3

    from sqlalchemy.exc import DataError, IntegrityError, OperationalError

    from core.db import TextTooLong
    from iot.ingest.writer import is_outage

    def wrapped(cls, orig):
        return cls("INSERT ...", None, orig)

    assert is_outage(sqlite3.OperationalError("database is locked"))  # a raw cursor's error
    assert is_outage(wrapped(OperationalError, sqlite3.OperationalError("database is locked")))
    assert is_outage(wrapped(OperationalError, sqlite3.OperationalError("no such table: iot_readings")))
    assert is_outage(wrapped(OperationalError, Exception("connection refused")))
    assert not is_outage(wrapped(IntegrityError, sqlite3.IntegrityError("FOREIGN KEY constraint failed")))
    assert not is_outage(sqlite3.IntegrityError("FOREIGN KEY constraint failed"))
    assert not is_outage(TextTooLong("%(field)s is too long", field="topic", max=300))
    assert not is_outage(ValueError("a bug on one message"))
    psycopg = pytest.importorskip("psycopg")
    errors = psycopg.errors
    assert not is_outage(wrapped(DataError, psycopg.DataError("text fields cannot contain NUL (0x00) bytes")))
    assert not is_outage(wrapped(DataError, errors.StringDataRightTruncation()))
    assert not is_outage(wrapped(IntegrityError, errors.ForeignKeyViolation()))
    assert is_outage(wrapped(OperationalError, errors.SerializationFailure()))
    assert is_outage(wrapped(OperationalError, errors.DeadlockDetected()))
    assert is_outage(wrapped(OperationalError, errors.AdminShutdown()))
    assert is_outage(wrapped(OperationalError, errors.DiskFull()))
    assert is_outage(wrapped(OperationalError, psycopg.OperationalError("server closed the connection")))


def test_postgresql_refusals_of_one_message_are_store_errors(session, greenhouse, engine):
    """On PostgreSQL a NUL in an irrigation message's zone is refused by the database itself
    (SQLite keeps it): that message alone is quarantined."""
    if engine.dialect.name != "postgresql":
        pytest.skip("PostgreSQL's own refusals")
    writer = BatchWriter(session.get_bind(), hooks=(None, None))
    writer.registry.refresh()
    nul = _msg("farm/GH1/ctl1/irrigation", {"start": T0, "end": T0 + 60, "zone": "A\u0000"})
    result = writer.store([*_good(50), nul, *_good(50, 50)])
    assert result.stored == 100 and dict(result.quarantined) == {"store_error": 1}
    (q,) = _quarantined(session)
    assert q.reason == "store_error" and "NUL" in q.detail and q.payload == nul.payload
    # replay goes through the same handling: still refused, the row kept (not a second one)
    from iot import quarantine as q_service

    replayed = q_service.replay(session.get_bind())
    assert replayed.still_failing == {q.id: ("store_error", q.detail)}
    assert [(r.id, r.reason, r.replayed_at) for r in _quarantined(session)] == [(q.id, "store_error", None)]


def test_a_redelivered_bad_message_keeps_one_quarantine_row(session, greenhouse):
    """A crash between the commit and the acknowledgement brings the message again."""
    writer = BatchWriter(session.get_bind(), hooks=(None, None))
    writer.registry.refresh()
    bad = _msg("farm/GH1/ghost/telemetry", {"ts": T0, "co2": 1}, arrival=T0)
    writer.store([bad])
    again = Message(bad.topic, bad.payload, T0 + 30)
    twice = Message(bad.topic, bad.payload, T0 + 31)
    other = _msg("farm/GH1/ghost/telemetry", {"ts": T0 + 1, "co2": 1}, arrival=T0 + 31)
    result = writer.store([again, twice, other, *_good(2)])  # twice in one batch, too
    assert result.stored == 2 and result.quarantined["unknown_device"] == 3
    rows = _quarantined(session)
    assert [(q.seen_count, q.reason) for q in rows] == [(3, "unknown_device"), (1, "unknown_device")]
    first = rows[0]
    assert first.received_at.timestamp() == T0 and first.last_seen_at.timestamp() == T0 + 31
    from iot.ingest.writer import message_sha256

    assert first.sha256 == message_sha256(bad.topic, bad.payload)


def test_a_message_quarantined_again_after_its_replay_gets_a_new_row(session, greenhouse):
    from iot import quarantine as q_service

    writer = BatchWriter(session.get_bind(), hooks=(None, None))
    writer.registry.refresh()
    bad = _msg("farm/GH1/ghost/telemetry", {"ts": T0, "co2": 1})
    writer.store([bad])
    registry.create_device(session, "ghost", greenhouse)
    session.commit()
    assert q_service.replay(session.get_bind()).stored == 1
    registry.get_device(session, "ghost").greenhouse_id = None  # unassigned again
    session.commit()
    writer.registry.refresh()
    writer.store([Message(bad.topic, bad.payload, time.time())])
    rows = _quarantined(session)
    assert len(rows) == 2 and rows[0].replayed_at is not None and rows[1].replayed_at is None


def test_large_payloads_are_kept_cut_with_their_size_and_hash(session, greenhouse, engine, tmp_path):
    """30 payloads of 10 MB: the database grows by at most 30 x the limit (plus overhead)."""
    import hashlib

    limit = 64 * 1024
    writer = BatchWriter(session.get_bind(), hooks=(None, None), quarantine_max_bytes=limit)
    writer.registry.refresh()

    def size() -> int:
        if engine.dialect.name == "postgresql":
            with engine.connect() as conn:
                return conn.exec_driver_sql("SELECT pg_database_size(current_database())").scalar()
        path = engine.url.database
        import os

        return sum(os.path.getsize(p) for p in (path, path + "-wal") if os.path.exists(p))

    before = size()
    payloads = [(b'{"co2": %d, "pad": "' % i) + b"x" * (10 * 1024 * 1024) + b'"}' for i in range(30)]
    for i in range(0, 30, 5):
        result = writer.store([_msg("farm/GH1/dev1/telemetry", p) for p in payloads[i : i + 5]])
        assert dict(result.quarantined) == {"bad_payload": 5}
    grown = size() - before
    assert grown < 30 * limit + 4 * 1024 * 1024, grown
    rows = _quarantined(session)
    assert len(rows) == 30
    for q, p in zip(rows, payloads, strict=True):
        assert q.size == len(p) and q.truncated and q.payload == p[:limit]
        assert q.sha256 == hashlib.sha256(b"farm/GH1/dev1/telemetry\0" + p).hexdigest()
        assert "too large" in q.detail
    # replay leaves them alone: only their first bytes are known
    from iot import quarantine as q_service

    result = q_service.replay(session.get_bind())
    assert len(result.still_failing) == 30 and result.stored == 0
    assert {(q.reason, q.replayed_at) for q in _quarantined(session)} == {("bad_payload", None)}


def test_health_fails_only_when_messages_wait_without_a_commit():
    stats = Stats(health_stall_s=60)
    now = 1_000_000.0
    stats.started_at = now - 3600
    stats.unsubscribed_since = None  # subscribed
    assert stats.health(now)[0]  # idle for an hour: healthy
    stats.waiting = lambda: (120, now - 5)  # a message arrived after a long idle time: not a stall
    assert stats.health(now)[0]
    stats.waiting = lambda: (120, now - 90)
    healthy, body = stats.health(now)
    assert not healthy and body["status"] == "stalled" and body["unacked"] == 120
    assert "no commit for 3600 s while 120 messages wait" in body["reason"]
    stats.committed(now - 10)  # a batch committed 10 s ago: the stream moves
    assert stats.health(now)[0]
    assert not stats.health(now + 61)[0]


def test_health_fails_when_the_ingester_is_not_subscribed_for_longer_than_the_stall_time_found_by_review():
    """A refused login or a broker gone: nothing waits in the ingester, and it is not idle."""
    now = 1_000_000.0
    stats = Stats(health_stall_s=60, connect_refused=5, unsubscribed_since=now - 30)
    assert stats.health(now)[0]  # starting, or a short broker restart: not yet
    healthy, body = stats.health(now + 31)
    assert not healthy and body["status"] == "disconnected"
    assert "not subscribed to the broker for 61 s (5 connections refused)" in body["reason"]
    stats.unsubscribed_since = None  # subscribed again
    assert stats.health(now + 31)[0]


def test_new_metrics_in_prometheus_text():
    stats = Stats(connect_refused=2)
    stats.dropped.add("unknown_sensor", 3)
    stats.dropped.add("nothing", 0)
    stats.waiting = lambda: (7, time.time() - 12)
    text = stats.prometheus().decode()
    assert 'tianyuan_ingest_readings_dropped_total{reason="unknown_sensor"} 3' in text
    assert "nothing" not in text
    assert "tianyuan_ingest_connections_refused_total 2" in text
    assert "tianyuan_ingest_messages_unacked 7" in text
    age = float(text.split("\ntianyuan_ingest_oldest_unacked_age_seconds ")[1].split()[0])
    assert 11 < age < 20
    assert "# TYPE tianyuan_ingest_messages_unacked gauge" in text
    assert 'tianyuan_ingest_readings_dropped_total{reason="none"} 0' in Stats().prometheus().decode()
