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
