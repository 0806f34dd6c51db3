"""Delivery guarantees, the hard way: SIGKILL mid-stream, a broker restart, a database
outage, and two ingesters sharing one stream. Every message is stored exactly once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request

import pytest
from sqlalchemy import event, func, select
from sqlalchemy.exc import OperationalError

from core.config import PROJECT_ROOT
from iot.broker import Broker, free_port
from iot.models import Reading
from tests.iot.conftest import Publisher, drop_session, wait_for

pytestmark = [pytest.mark.mqtt, pytest.mark.slow]

T0 = 1764000000


def stored(session) -> int:
    session.expire_all()
    return session.scalar(select(func.count()).select_from(Reading))


def stored_ts(session) -> list[int]:
    session.expire_all()
    return sorted(session.scalars(select(Reading.ts)))


def messages(prefix: str, start: int, n: int):
    return [
        (
            f"{prefix}/GH1/dev1/telemetry",
            json.dumps({"ts": T0 - 10**6 + i, "air_temperature": 20 + (i % 100) / 10}),
        )
        for i in range(start, start + n)
    ]


def expected_ts(start: int, n: int) -> list[int]:
    return [T0 - 10**6 + i for i in range(start, start + n)]


def _spawn(settings, broker, prefix, metrics_port, client_id):
    env = dict(
        os.environ,
        DATABASE_URL=settings.database_url,
        MQTT_URL=broker.url,
        MQTT_TOPIC_PREFIX=prefix,
        MQTT_CLIENT_ID=client_id,
        TIANYUAN_ENV="testing",
        TIANYUAN_INSTANCE_PATH=str(settings.instance_path),
        SECRET_KEY="test",
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "iot.ingest", "--metrics-port", str(metrics_port), "--log-level", "WARNING"],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )

    def subscribed():
        assert proc.poll() is None, proc.stderr.read().decode()
        try:
            status = json.loads(
                urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/status", timeout=1).read()
            )
        except OSError:
            return False
        return status["subscribed"] == 1

    wait_for(subscribed, 20, 0.1, "ingester process subscribed")
    return proc


def test_sigkill_mid_stream_then_restart_stores_every_message_once(
    session, greenhouse, broker, settings, prefix
):
    n = 20_000
    client_id = f"ing-{prefix}"
    port = free_port()
    proc = _spawn(settings, broker, prefix, port, client_id)
    publisher = Publisher(broker)
    try:
        sender = threading.Thread(target=publisher.publish_many, args=(messages(prefix, 0, n),))
        sender.start()
        wait_for(lambda: stored(session) >= 3000, 60, 0.02, "3000 readings before the kill")
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        # its writer process may still commit the batch it holds (never acknowledged), then exits
        at_kill, previous = stored(session), -1
        while at_kill != previous:
            time.sleep(0.5)
            previous, at_kill = at_kill, stored(session)
        assert at_kill < n, "the stream was already over at the kill: nothing tested"
        sender.join(120)
        assert not sender.is_alive()
        proc = _spawn(settings, broker, prefix, port, client_id)
        wait_for(lambda: stored(session) >= n, 90, 0.2, f"{n} readings after restart")
        time.sleep(0.5)  # anything extra (a duplicate) would show now
        assert stored_ts(session) == expected_ts(0, n)

        def status():
            return json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=2).read())

        # the restarted ingester received the rest, plus whatever was stored but not yet acknowledged
        wait_for(lambda: status()["stored"] >= n - at_kill, 10)
        assert status()["stored"] == n - at_kill
    finally:
        publisher.close()
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(15)
        drop_session(broker, client_id)


def test_broker_restart_mid_stream_loses_nothing_acknowledged(
    session, greenhouse, settings, prefix, tmp_path
):
    from iot.ingest.config import IngestConfig
    from iot.ingest.mqtt import Ingester
    from tests.iot.conftest import RunningIngester

    def slow_rollups(_session, rows):  # make the ingester lag so the broker holds a queue when it stops
        time.sleep(len(rows) * 0.001)

    broker = Broker(data_dir=tmp_path / "broker").start()
    try:
        config = IngestConfig(
            database_url=settings.database_url,
            mqtt_port=broker.port,
            topic_prefix=prefix,
            client_id=f"ing-{prefix}",
            batch_size=100,
            batch_ms=20,
            log_every_s=3600,
        )
        ing = RunningIngester(Ingester(config, hooks=(slow_rollups, None)))
        pub = Publisher(broker)
        pub.publish_many(messages(prefix, 0, 3000))  # every one PUBACKed by the broker
        pub.close()
        assert stored(session) < 3000, "nothing was queued at the restart: nothing tested"
        broker.stop()
        broker.start()
        pub = Publisher(broker)
        pub.publish_many(messages(prefix, 3000, 1000))
        pub.close()
        try:
            wait_for(lambda: stored(session) >= 4000, 30, 0.1, "4000 readings after broker restart")
        except AssertionError:
            missing = sorted(set(expected_ts(0, 4000)) - set(stored_ts(session)))
            print("MISSING", len(missing), missing[:5], missing[-5:], ing.stats, broker.log_path.read_text())
            raise
        assert stored_ts(session) == expected_ts(0, 4000)
        assert ing.stats.connects >= 2
        ing.stop()
    finally:
        broker.close()


def test_database_outage_keeps_messages_unacknowledged(
    session, greenhouse, start_ingester, publisher, prefix
):
    down = threading.Event()

    def fail_while_down(conn, *_args):
        if down.is_set():
            raise OperationalError("connect", {}, Exception("connection refused: database is down"))

    first = start_ingester(batch_ms=20, writer_process=False)  # the outage is simulated in this process
    first.ingester.engine.dispose()  # every transaction of the ingester now starts with a checkout
    event.listen(first.ingester.engine.pool, "checkout", fail_while_down)
    down.set()
    publisher.publish_many(messages(prefix, 0, 50))
    wait_for(lambda: first.stats.db_errors >= 2, 20, message="failed flushes")
    assert stored(session) == 0 and first.stats.acked == 0 and first.stats.received == 50
    down.clear()  # the database is back: the same process stores everything
    wait_for(lambda: stored(session) == 50, 30, message="50 readings after the outage")
    wait_for(lambda: first.stats.acked == 50, 5, message="acknowledged after the commit")

    down.set()  # down again, and now the ingester stops before the database returns
    publisher.publish_many(messages(prefix, 50, 50))
    wait_for(lambda: first.stats.received == 100, 20)
    first.stop()
    assert first.stats.acked == 50 and stored(session) == 50
    down.clear()
    second = start_ingester(
        writer_process=False
    )  # same client id: the broker redelivers what was never acknowledged
    wait_for(lambda: stored(session) == 100, 30, message="redelivered after restart")
    assert stored_ts(session) == expected_ts(0, 100)
    assert second.stats.received == 50


def test_two_ingesters_in_a_shared_group_split_the_stream(
    session, greenhouse, start_ingester, publisher, prefix
):
    a = start_ingester(shared_group="g1", client_id=f"ing-{prefix}-a")
    b = start_ingester(shared_group="g1", client_id=f"ing-{prefix}-b")
    publisher.publish_many(messages(prefix, 0, 4000))
    wait_for(lambda: stored(session) >= 4000, 60, 0.1, "4000 readings")
    time.sleep(0.3)
    assert stored_ts(session) == expected_ts(0, 4000)
    wait_for(lambda: a.stats.acked + b.stats.acked == 4000, 10)
    assert a.stats.stored + b.stats.stored == 4000
    assert a.stats.duplicates + b.stats.duplicates == 0
    assert min(a.stats.received, b.stats.received) > 4000 * 0.2, (a.stats.received, b.stats.received)


def test_broker_without_persistence_restarted_ingester_subscribes_again(
    session, greenhouse, settings, prefix, tmp_path
):
    from iot.ingest.config import IngestConfig
    from iot.ingest.mqtt import Ingester
    from tests.iot.conftest import RunningIngester

    broker = Broker(data_dir=tmp_path / "broker", persistence=False).start()
    try:
        config = IngestConfig(
            database_url=settings.database_url,
            mqtt_port=broker.port,
            topic_prefix=prefix,
            client_id=f"ing-{prefix}",
            batch_ms=20,
            log_every_s=3600,
        )
        ing = RunningIngester(Ingester(config))
        broker.stop()
        broker.start()  # the broker forgot the session and its subscriptions
        wait_for(lambda: ing.stats.connects >= 2 and ing.stats.subscribed, 20, message="reconnected")
        time.sleep(0.2)
        pub = Publisher(broker)
        pub.publish_many(messages(prefix, 0, 500))
        pub.close()
        wait_for(lambda: stored(session) >= 500, 20, 0.1, "500 readings")
        ing.stop()
    finally:
        broker.close()


def test_writer_process_killed_is_restarted_and_nothing_lost(
    session, greenhouse, start_ingester, publisher, prefix
):
    ing = start_ingester(writer_process=True, batch_size=200)
    first_writer = ing.ingester.writer_process.process
    sender = threading.Thread(target=publisher.publish_many, args=(messages(prefix, 0, 3000),))
    sender.start()
    wait_for(lambda: stored(session) >= 400, 30, 0.01, "400 readings")
    os.kill(first_writer.pid, signal.SIGKILL)
    sender.join(60)
    # more after the kill, so only a new writer can store everything (on a fast machine the
    # first one may have finished the first 3,000 before the signal landed)
    publisher.publish_many(messages(prefix, 3000, 3000))
    wait_for(lambda: stored(session) >= 6000, 60, 0.1, "6000 readings after the writer restart")
    assert ing.ingester.writer_process.process.pid != first_writer.pid and ing.stats.writer_starts == 2
    assert stored_ts(session) == expected_ts(0, 6000)
    wait_for(lambda: ing.stats.acked == 6000, 10)


@pytest.fixture
def handed_over(monkeypatch):
    """Each batch the reader hands the writer process, as (messages, payload bytes)."""
    from iot.ingest.process import WriterProcess

    sizes: list[tuple[int, int]] = []
    send = WriterProcess.send

    def recording(self, seq, batch):
        sizes.append((len(batch), sum(len(m.payload) for m in batch)))
        return send(self, seq, batch)

    monkeypatch.setattr(WriterProcess, "send", recording)
    return sizes


def test_a_backlog_reaches_the_writer_process_one_batch_at_a_time(
    session, greenhouse, start_ingester, publisher, prefix, handed_over
):
    """While the writer stores one batch the reader keeps receiving (up to Receive Maximum):
    what it then hands over is still at most ``batch_size`` messages, so the writer's memory
    is that of one batch whatever the backlog (bench/ingest.py: flat RSS over 300k messages)."""
    ing = start_ingester(writer_process=True, batch_size=50, batch_ms=5)
    publisher.publish_many(messages(prefix, 0, 3000))
    wait_for(lambda: stored(session) >= 3000, 60, 0.1, "3000 readings")
    wait_for(lambda: ing.stats.acked == 3000, 10)
    assert stored_ts(session) == expected_ts(0, 3000)
    sizes = [n for n, _ in handed_over]
    assert sum(sizes) == 3000 and max(sizes) == 50  # the backlog came as full batches, none larger
    assert ing.stats.buffered_max > 50  # and there was a backlog: the reader held more than one batch


def test_big_messages_reach_the_writer_in_batches_of_bounded_bytes(
    session, greenhouse, start_ingester, publisher, prefix, handed_over
):
    """A batch is cut at ``batch_bytes`` of payload too: big SenML packs decode into many
    readings each, so a batch of ``batch_size`` of them could take gigabytes (found by review)."""
    sizes = handed_over
    ing = start_ingester(writer_process=True, batch_size=5000, batch_bytes=20_000, batch_ms=5)
    pad = " " * 2000  # JSON allows the whitespace
    publisher.publish_many(
        [
            (f"{prefix}/GH1/dev1/telemetry", json.dumps({"ts": T0 + i, "air_temperature": 20}) + pad)
            for i in range(300)
        ]
    )
    wait_for(lambda: stored(session) >= 300, 60, 0.1, "300 readings")
    wait_for(lambda: ing.stats.acked == 300, 10)
    assert sum(n for n, _ in sizes) == 300
    assert max(b for _, b in sizes) <= 20_000  # ~9 messages of ~2 KB a batch, never more
    assert ing.stats.buffered_bytes_max > 20_000  # the reader did hold more than one batch
