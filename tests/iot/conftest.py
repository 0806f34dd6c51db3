"""Fixtures for the greenhouse area: a real Mosquitto (one per test session, on a free
loopback port), greenhouses with devices, an ingester running in a thread, a publisher.

Each test gets its own topic prefix and client ids, so tests sharing the broker never
see each other's messages or sessions.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable

import pytest

from iot import registry


def wait_for(
    condition: Callable[[], bool], timeout: float = 20.0, interval: float = 0.05, message: str = ""
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {message or condition}")


@pytest.fixture(scope="session")
def broker(tmp_path_factory):
    from iot.broker import Broker, find_mosquitto

    if find_mosquitto() is None:
        pytest.skip("mosquitto is not installed")
    b = Broker(data_dir=tmp_path_factory.mktemp("mosquitto")).start()
    yield b
    b.close()


@pytest.fixture
def prefix() -> str:
    return "t" + uuid.uuid4().hex[:10]


@pytest.fixture
def greenhouse(session):
    """Greenhouse GH1 (Asia/Shanghai) with sensor dev1 and controller ctl1."""
    gh = registry.create_greenhouse(session, "GH1", "Peach house 1", crop="peach", area_m2=600)
    registry.create_device(session, "dev1", gh, kind="sensor")
    registry.create_device(session, "ctl1", gh, kind="controller")
    session.commit()
    return gh


class Publisher:
    """A QoS 1 publisher that waits for the broker's PUBACK of every message."""

    def __init__(self, broker, client_id: str | None = None):
        import paho.mqtt.client as mqtt

        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=client_id or "pub-" + uuid.uuid4().hex[:8],
            protocol=mqtt.MQTTv5,
        )
        self.client.max_queued_messages_set(0)
        self.client.max_inflight_messages_set(1000)
        self.client.connect("127.0.0.1", broker.port)
        self.client.loop_start()

    def publish(self, topic: str, payload, qos: int = 1, wait: bool = True):
        if isinstance(payload, dict | list):
            import json

            payload = json.dumps(payload)
        info = self.client.publish(topic, payload, qos=qos)
        if wait:
            info.wait_for_publish(10)
        return info

    def publish_many(self, items, qos: int = 1) -> None:
        infos = [self.client.publish(t, p, qos=qos) for t, p in items]
        for info in infos:
            info.wait_for_publish(30)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture
def publisher(broker):
    p = Publisher(broker)
    yield p
    p.close()


def drop_session(broker, client_id: str) -> None:
    """Connect with clean start and no expiry: the broker forgets the persistent session."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 0
    try:
        c.connect("127.0.0.1", broker.port, clean_start=True, properties=props)
        c.loop(0.2)
        c.disconnect()
    except OSError:
        pass


class RunningIngester:
    def __init__(self, ingester):
        self.ingester = ingester
        self.thread = threading.Thread(target=ingester.run, daemon=True)
        self.thread.start()
        wait_for(ingester.subscribed.is_set, 10, message="ingester subscribed")

    @property
    def stats(self):
        return self.ingester.stats

    def stop(self) -> None:
        self.ingester.stop()
        self.thread.join(15)
        assert not self.thread.is_alive(), "ingester did not stop"
        self.ingester.engine.dispose()


@pytest.fixture
def start_ingester(broker, settings, prefix):
    """``start_ingester(**config)`` runs an Ingester in a thread against the test database."""
    from iot.ingest.config import IngestConfig
    from iot.ingest.mqtt import Ingester

    running: list[RunningIngester] = []
    client_ids: list[str] = []

    def start(**overrides) -> RunningIngester:
        values = dict(
            database_url=settings.database_url,
            mqtt_port=broker.port,
            topic_prefix=prefix,
            tasmota_prefix=prefix + "tele",
            client_id=f"ing-{prefix}",
            batch_ms=30,
            log_every_s=3600,
        )
        values.update(overrides)
        config = IngestConfig(**values)
        client_ids.append(config.client_id)
        r = RunningIngester(Ingester(config))
        running.append(r)
        return r

    yield start
    for r in running:
        if r.thread.is_alive():
            r.stop()
        else:
            r.ingester.engine.dispose()
    for cid in set(client_ids):
        drop_session(broker, cid)


@pytest.fixture
def whole_local_day():
    """The start of one whole local day two days back in a greenhouse's zone: a simulator
    started there and stepped 24 hours sees each fertigation window (06:00, 16:00) exactly
    once, whatever the time the test runs (24 hours back from now could start inside one)."""
    from datetime import datetime, timedelta
    from zoneinfo import ZoneInfo

    def start(timezone: str) -> float:
        now = datetime.now(ZoneInfo(timezone))
        return (now.replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=2)).timestamp()

    return start
