"""Issue 15, defects 1, 8 and 12 against a real Mosquitto and the real ingester (its own
process, and the in-process mode), on SQLite and on PostgreSQL (``TEST_DATABASE_URL``):
one bad message never stops the stream, a redelivered bad message keeps one quarantine row,
big payloads are kept cut, and /health, /metrics tell a stalled ingester from an idle one."""

from __future__ import annotations

import json
import signal
import time
import urllib.error
import urllib.request

import paho.mqtt.client as paho
import pytest
from sqlalchemy import event, func, select
from sqlalchemy.exc import OperationalError

from iot import registry
from iot.broker import free_port
from iot.models import IrrigationEvent, QuarantinedMessage
from tests.iot.conftest import drop_session, wait_for
from tests.iot.test_reliability import T0, _spawn, expected_ts, messages, stored, stored_ts

pytestmark = [pytest.mark.mqtt, pytest.mark.slow]

NUL_METRIC = b'{"air_temperature\\u0000": 20}'  # the JSON escape: a NUL in the metric's name


def quarantined(session) -> list[QuarantinedMessage]:
    session.expire_all()
    return list(session.scalars(select(QuarantinedMessage).order_by(QuarantinedMessage.id)))


def get_json(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def poison(prefix: str) -> list[tuple[str, bytes]]:
    """What stopped PostgreSQL ingestion for good: a NUL in a metric name; a NUL in an irrigation
    zone (PostgreSQL refuses it in the INSERT); a device deleted while the writer had it cached."""
    return [
        (f"{prefix}/GH1/dev1/telemetry", NUL_METRIC),
        (
            f"{prefix}/GH1/ctl1/irrigation",
            json.dumps({"start": T0, "end": T0 + 60, "zone": "A\u0000"}).encode(),
        ),
        (f"{prefix}/GH1/gone/telemetry", json.dumps({"ts": T0, "co2": 500}).encode()),
    ]


def expected_reasons(engine) -> dict[str, int]:
    reasons = {"unknown_metric": 1, "unknown_device": 1}
    if engine.dialect.name == "postgresql":
        reasons["store_error"] = 1  # SQLite keeps the NUL zone (the event is stored)
    return reasons


def check_poison_outcome(session, engine) -> None:
    rows = quarantined(session)
    by_reason: dict[str, int] = {}
    for q in rows:
        by_reason[q.reason] = by_reason.get(q.reason, 0) + 1
        assert q.seen_count == 1 and "\x00" not in q.topic + (q.detail or "")
    assert by_reason == expected_reasons(engine)
    nul = next(q for q in rows if q.reason == "unknown_metric")
    assert nul.payload == NUL_METRIC  # the bytes as they came
    events = session.scalar(select(func.count()).select_from(IrrigationEvent))
    assert events == (0 if engine.dialect.name == "postgresql" else 1)


def test_poison_then_1000_good_messages_real_ingester_process(session, greenhouse, broker, settings, prefix):
    gone = registry.create_device(session, "gone", greenhouse)
    session.commit()
    client_id = f"ing-{prefix}"
    port = free_port()
    proc = _spawn(settings, broker, prefix, port, client_id)
    from tests.iot.conftest import Publisher

    publisher = Publisher(broker)
    try:
        session.delete(gone)  # the writer process has it cached: its reading breaks the foreign key
        session.commit()
        publisher.publish_many([*poison(prefix), *messages(prefix, 0, 1000)])
        wait_for(lambda: stored(session) >= 1000, 60, 0.1, "1000 readings after the poison")
        assert stored_ts(session) == expected_ts(0, 1000)
        n_bad = sum(expected_reasons(session.get_bind()).values())
        wait_for(lambda: len(quarantined(session)) >= n_bad, 10, message="the poison quarantined")
        time.sleep(0.5)
        check_poison_outcome(session, session.get_bind())
        assert proc.poll() is None, "the ingester died"
        status = get_json(f"http://127.0.0.1:{port}/status")[1]
        assert status["db_errors"] == 0  # nothing was mistaken for an outage
        wait_for(lambda: get_json(f"http://127.0.0.1:{port}/status")[1]["acked"] == 1003, 10, message="acks")
        code, health = get_json(f"http://127.0.0.1:{port}/health")
        assert code == 200 and health["status"] == "ok" and health["unacked"] == 0
        # and it goes on: more good messages after the poison
        publisher.publish_many(messages(prefix, 1000, 100))
        wait_for(lambda: stored(session) >= 1100, 30, 0.1, "100 more")
    finally:
        publisher.close()
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(15)
        drop_session(broker, client_id)


def test_poison_then_1000_good_messages_in_process(session, greenhouse, start_ingester, publisher, prefix):
    gone = registry.create_device(session, "gone", greenhouse)
    session.commit()
    ing = start_ingester(writer_process=False)
    session.delete(gone)
    session.commit()
    publisher.publish_many([*poison(prefix), *messages(prefix, 0, 1000)])
    wait_for(lambda: stored(session) >= 1000, 60, 0.1, "1000 readings after the poison")
    wait_for(lambda: ing.stats.acked == 1003, 10, message="all acknowledged")
    check_poison_outcome(session, session.get_bind())
    assert ing.thread.is_alive() and ing.stats.db_errors == 0
    assert dict(ing.stats.quarantined) == expected_reasons(session.get_bind())


def test_a_bad_message_redelivered_after_a_crash_keeps_one_row(
    session, greenhouse, start_ingester, publisher, prefix, monkeypatch
):
    """Committed, never acknowledged (the ingester died in between): the broker sends it again."""
    first = start_ingester(writer_process=False)
    monkeypatch.setattr(paho.Client, "ack", lambda self, mid, qos: paho.MQTT_ERR_SUCCESS)  # the acks are lost
    publisher.publish(f"{prefix}/GH1/ghost/telemetry", {"ts": T0, "co2": 1})
    wait_for(lambda: len(quarantined(session)) == 1, 10, message="quarantined")
    first.stop()
    monkeypatch.undo()
    second = start_ingester(writer_process=False)  # same client id: the session's message again
    wait_for(lambda: second.stats.received == 1 and second.stats.acked == 1, 10, message="redelivered")
    (q,) = quarantined(session)
    assert q.reason == "unknown_device" and q.seen_count == 2 and q.last_seen_at > q.received_at


def test_big_payloads_are_kept_cut_through_the_broker(session, greenhouse, start_ingester, publisher, prefix):
    ing = start_ingester(writer_process=True, quarantine_max_bytes=8192)
    big = [(b'{"co2": %d, "pad": "' % i) + b"x" * 100_000 + b'"}' for i in range(5)]
    publisher.publish_many([(f"{prefix}/GH1/dev1/telemetry", p) for p in big])
    publisher.publish_many(messages(prefix, 0, 10))
    wait_for(lambda: stored(session) == 10 and len(quarantined(session)) == 5, 20, message="stored")
    for q, p in zip(quarantined(session), big, strict=True):
        assert q.reason == "bad_payload" and q.size == len(p) and q.payload == p[:8192] and q.truncated
    wait_for(lambda: ing.stats.acked == 15, 10)


def test_health_fails_while_messages_wait_without_a_commit_and_recovers(
    session, greenhouse, start_ingester, publisher, prefix
):
    down = False

    def fail_while_down(_conn, *_args):
        if down:
            raise OperationalError("connect", {}, Exception("connection refused: database is down"))

    ing = start_ingester(batch_ms=20, writer_process=False, metrics_port=0, health_stall_s=0.5)
    base = f"http://127.0.0.1:{ing.ingester.config.metrics_port}"
    time.sleep(0.7)  # idle for longer than the stall limit, no commit yet: healthy
    code, body = get_json(base + "/health")
    assert code == 200 and body["status"] == "ok" and body["seconds_since_commit"] > 0.5
    ing.ingester.engine.dispose()
    event.listen(ing.ingester.engine.pool, "checkout", fail_while_down)
    down = True
    publisher.publish_many(messages(prefix, 0, 50))
    wait_for(lambda: get_json(base + "/health")[0] == 503, 10, message="/health failing")
    code, body = get_json(base + "/health")
    assert body["status"] == "stalled" and body["unacked"] == 50 and "50 messages wait" in body["reason"]
    metrics = urllib.request.urlopen(base + "/metrics", timeout=2).read().decode()
    assert "\ntianyuan_ingest_messages_unacked 50.0" in metrics
    age = float(metrics.split("\ntianyuan_ingest_oldest_unacked_age_seconds ")[1].split()[0])
    assert age > 0.5
    down = False
    wait_for(lambda: stored(session) == 50, 30, message="stored after the outage")
    wait_for(lambda: get_json(base + "/health")[0] == 200, 10, message="/health passing again")
    metrics = urllib.request.urlopen(base + "/metrics", timeout=2).read().decode()
    assert "\ntianyuan_ingest_messages_unacked 0.0" in metrics
    assert "\ntianyuan_ingest_oldest_unacked_age_seconds 0.0" in metrics


def test_the_writer_process_waits_for_a_database_not_migrated_yet_and_never_dies(tmp_path):
    """The readings table missing (``flask db upgrade`` not run): an outage, not a bad message.
    The writer process retries (nothing quarantined, nothing reported done) and stores the same
    batch once the table is there."""
    import logging

    from app import load_models
    from core.db import Base, make_engine, make_session_factory
    from iot.ingest.process import WriterOptions, WriterProcess
    from iot.ingest.writer import Message
    from iot.models import Reading

    url = f"sqlite:///{tmp_path / 'late.sqlite3'}"
    engine = make_engine(url)
    load_models()
    readings = Reading.__table__
    Base.metadata.create_all(engine, tables=[t for t in Base.metadata.sorted_tables if t is not readings])
    with make_session_factory(engine)() as s:
        registry.create_device(s, "dev1", registry.create_greenhouse(s, "GH1", "One"))
        s.commit()
    options = WriterOptions(url, "farm", "tele", "quarantine", "Asia/Shanghai", 60.0, logging.CRITICAL)
    writer = WriterProcess(options)
    writer.start()
    try:
        writer.send(1, [Message("farm/GH1/dev1/telemetry", json.dumps({"ts": T0, "co2": 400}).encode(), T0)])
        replies: list = []

        def reply() -> bool:
            got = writer.receive()
            if got is not None:
                replies.append(got)
            return bool(got)

        wait_for(lambda: reply() and replies[-1][0] == "db_error", 20, 0.05, "a db_error reply")
        assert writer.process.is_alive()
        with engine.connect() as conn:
            assert conn.execute(select(func.count()).select_from(QuarantinedMessage)).scalar() == 0
        readings.create(engine)
        wait_for(lambda: reply() and replies[-1][0] == "done", 30, 0.1, "the batch stored")
        assert replies[-1][2].stored == 1 and not replies[-1][2].quarantined
        assert writer.process.is_alive()
    finally:
        writer.stop(5)
        engine.dispose()
