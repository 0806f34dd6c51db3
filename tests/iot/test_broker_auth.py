"""The shipped production broker configuration (deploy/mosquitto/prod.conf, only ports and paths
changed) with the files the app writes from the database, enforced by a real Mosquitto:
devices keep to their own topics and sessions, services keep their logins, refusals are
counted and backed off."""

from __future__ import annotations

import json
import logging
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from sqlalchemy import func, select

from iot import alerts, broker_access, registry
from iot.broker import Broker, free_port, production_config
from iot.ingest.config import IngestConfig
from iot.ingest.mqtt import Ingester
from iot.models import AlertRule, Reading
from iot.mqtt_client import BrokerAddress, make_client, publish_once
from tests.iot.conftest import RunningIngester, wait_for

pytestmark = pytest.mark.mqtt

T0 = 1764000000


@dataclass
class Prod:
    broker: Broker
    files: Path
    device_port: int
    passwords: dict[str, str]

    @property
    def service_port(self) -> int:
        return self.broker.port

    def write_files(self, session) -> None:
        broker_access.write_broker_files(session, self.files, prefix="farm")

    def reload(self) -> None:
        assert self.broker.process is not None
        self.broker.process.send_signal(signal.SIGHUP)
        time.sleep(0.5)


@pytest.fixture
def prod(session, tmp_path):
    """Greenhouse GH1 with dev1 and dev2 (dev1 with credentials), the service users
    tianyuan-ingester (ingester) and tianyuan-alerts (publisher), and the production broker."""
    gh = registry.create_greenhouse(session, "GH1", "One")
    registry.create_greenhouse(session, "GH2", "Two")
    dev1 = registry.create_device(session, "dev1", gh)
    registry.create_device(session, "dev2", gh)
    passwords = {
        "dev1": registry.issue_credentials(session, dev1),
        "tianyuan-ingester": broker_access.add_service_user(session, "tianyuan-ingester", "ingester"),
        "tianyuan-alerts": broker_access.add_service_user(session, "tianyuan-alerts", "publisher"),
    }
    session.commit()
    files = tmp_path / "files"
    service_port, device_port = free_port(), free_port()
    config = production_config(
        service_port=service_port, device_port=device_port, data_dir=tmp_path / "data", files_dir=files
    )
    (tmp_path / "data").mkdir()
    p = Prod(Broker(service_port, tmp_path / "data", config_text=config), files, device_port, passwords)
    p.write_files(session)
    p.broker.start()
    yield p
    p.broker.close()


def connect(port, user, password, client_id, *, clean_start=True, expiry=0):
    """A connected, looping MQTT 5 client and its CONNACK reason code."""
    c = make_client(BrokerAddress(port=port, username=user, password=password), client_id)
    result = {}
    c.on_connect = lambda _c, _u, _f, rc, _p: result.setdefault("rc", rc)
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = expiry
    c.connect("127.0.0.1", port, clean_start=clean_start, properties=props)
    c.loop_start()
    wait_for(lambda: "rc" in result, 10)
    return c, result["rc"]


def close(*clients):
    for c in clients:
        c.disconnect()
        c.loop_stop()


def publish_acked(client, topic, payload) -> mqtt.ReasonCode:
    """Publish at QoS 1 and return the broker's PUBACK reason code."""
    codes: dict[int, mqtt.ReasonCode] = {}
    client.on_publish = lambda _c, _u, mid, rc, _p: codes.__setitem__(mid, rc)
    info = client.publish(topic, payload, qos=1)
    wait_for(lambda: info.mid in codes, 10)
    return codes[info.mid]


def ingester_config(prod: Prod, settings, **overrides) -> IngestConfig:
    values = dict(
        database_url=settings.database_url,
        mqtt_port=prod.service_port,
        mqtt_username="tianyuan-ingester",
        mqtt_password=prod.passwords["tianyuan-ingester"],
        client_id="tianyuan-ingester",
        batch_ms=20,
        log_every_s=3600,
    )
    values.update(overrides)
    return IngestConfig(**values)


def stored(session) -> int:
    session.expire_all()
    return session.scalar(select(func.count()).select_from(Reading))


def reading(i: int) -> bytes:
    return json.dumps({"ts": T0 + i, "air_temperature": 20.0}).encode()


def queue_readings(prod, n: int) -> None:
    """dev1 publishes ``n`` readings (QoS 1, each acknowledged by the broker)."""
    device, rc = connect(prod.device_port, "dev1", prod.passwords["dev1"], "dev1")
    assert not rc.is_failure
    for i in range(n):
        device.publish("farm/GH1/dev1/telemetry", reading(i), qos=1).wait_for_publish(5)
    close(device)


def test_devices_and_services_each_on_their_listener_and_topics(prod):
    _bad, rc = connect(prod.device_port, "dev1", "wrong-password", "x1")
    assert rc.is_failure
    close(_bad)
    # a device's password is not valid on the services' listener, nor a service's on the devices'
    _bad, rc = connect(prod.service_port, "dev1", prod.passwords["dev1"], "x2")
    assert rc.is_failure
    close(_bad)
    _bad, rc = connect(prod.device_port, "tianyuan-ingester", prod.passwords["tianyuan-ingester"], "x3")
    assert rc.is_failure
    close(_bad)

    got: list[str] = []
    subscribed = threading.Event()
    reader, rc = connect(prod.service_port, "tianyuan-ingester", prod.passwords["tianyuan-ingester"], "ing")
    assert not rc.is_failure
    reader.on_message = lambda _c, _u, m: got.append(m.topic)
    reader.on_subscribe = lambda *a: subscribed.set()
    reader.subscribe("farm/#", qos=1)
    assert subscribed.wait(5)

    device, rc = connect(prod.device_port, "dev1", prod.passwords["dev1"], "dev1")
    assert not rc.is_failure
    assert publish_acked(device, "farm/GH2/dev2/telemetry", b'{"co2": 1}').is_failure  # not its own
    assert not publish_acked(device, "farm/GH1/dev1/telemetry", b'{"co2": 2}').is_failure
    wait_for(lambda: got, 5)
    assert got == ["farm/GH1/dev1/telemetry"]
    # the ingester's and the publisher's users may publish alert events (defect 10) ...
    assert not publish_acked(reader, "farm/GH1/alerts", b"{}").is_failure
    alerts, rc = connect(prod.service_port, "tianyuan-alerts", prod.passwords["tianyuan-alerts"], "alerts")
    assert not rc.is_failure
    assert not publish_acked(alerts, "farm/GH1/alerts", b"{}").is_failure
    # ... and the publisher nothing else
    assert publish_acked(alerts, "farm/GH1/dev1/telemetry", b'{"co2": 3}').is_failure
    wait_for(lambda: len(got) == 3, 5)
    assert got == ["farm/GH1/dev1/telemetry", "farm/GH1/alerts", "farm/GH1/alerts"]
    close(reader, device, alerts)


def test_a_device_with_the_ingesters_client_id_cannot_take_or_wipe_its_session(prod, settings, session):
    """Defect 3: a device with its own password and the ingester's client id kicked the
    ingester and, with clean start, wiped the messages queued for it."""
    config = ingester_config(prod, settings)
    ing = RunningIngester(Ingester(config))
    # while it runs: a device logging in with its client id gets its own session, the
    # ingester is not kicked
    thief, rc = connect(prod.device_port, "dev1", prod.passwords["dev1"], config.client_id)
    assert not rc.is_failure
    time.sleep(0.5)
    assert ing.stats.disconnects == 0 and ing.ingester.connected
    close(thief)
    ing.stop()

    # stopped: 100 readings wait in its session
    queue_readings(prod, 100)
    # a device tries to wipe it with clean start, on either listener
    for port in (prod.device_port, prod.service_port):
        thief, rc = connect(port, "dev1", prod.passwords["dev1"], config.client_id, clean_start=True)
        close(thief)
    assert stored(session) == 0
    ing = RunningIngester(Ingester(config))
    wait_for(lambda: stored(session) == 100, 20, message="the 100 queued readings")
    ing.stop()


def test_a_service_login_with_the_ingesters_client_id_cannot_take_or_wipe_its_session_found_by_review(
    prod, settings, session
):
    """The publisher's password (held by the web app and the alert checker) with the ingester's
    client id, on the services listener: it kicked the ingester, and with clean start and
    expiry 0 erased the 100 messages queued for it."""
    config = ingester_config(prod, settings)
    ing = RunningIngester(Ingester(config))
    thief, rc = connect(
        prod.service_port, "tianyuan-alerts", prod.passwords["tianyuan-alerts"], config.client_id
    )
    assert not rc.is_failure  # it may log in, as itself
    time.sleep(0.5)
    assert ing.stats.disconnects == 0 and ing.ingester.connected
    close(thief)
    ing.stop()
    queue_readings(prod, 100)
    thief, rc = connect(
        prod.service_port,
        "tianyuan-alerts",
        prod.passwords["tianyuan-alerts"],
        config.client_id,
        clean_start=True,
    )
    close(thief)
    ing = RunningIngester(Ingester(config))
    wait_for(lambda: stored(session) == 100, 20, message="the 100 queued readings")
    ing.stop()


def test_credentials_issued_while_the_ingester_runs_leave_it_alone(prod, settings, session, runner):
    """Defect 4: `flask iot device credentials` rewrote the password file from the devices and
    locked the hand-added ingester out."""
    ing = RunningIngester(Ingester(ingester_config(prod, settings)))
    result = runner.invoke(args=["iot", "device", "credentials", "dev2", "--broker-dir", str(prod.files)])
    assert result.exit_code == 0, result.output
    dev2_password = result.output.split("password: ")[1].split()[0]
    prod.reload()
    # the new device logs in and is stored; the ingester never lost its connection or login
    device, rc = connect(prod.device_port, "dev2", dev2_password, "dev2")
    assert not rc.is_failure
    device.publish("farm/GH1/dev2/telemetry", reading(1), qos=1).wait_for_publish(5)
    close(device)
    wait_for(lambda: stored(session) == 1, 10)
    assert ing.stats.connect_refused == 0 and ing.stats.disconnects == 0
    # and it logs in again after a restart
    ing.stop()
    ing = RunningIngester(Ingester(ingester_config(prod, settings)))
    assert ing.stats.connect_refused == 0
    ing.stop()


def test_health_fails_while_the_broker_refuses_the_ingester_found_by_review(prod, settings):
    """A wrong password leaves nothing waiting in the ingester: /health must still fail."""
    import threading

    from tests.iot.test_poison import get_json

    ingester = Ingester(
        ingester_config(prod, settings, mqtt_password="wrong", metrics_port=0, health_stall_s=0.5)
    )
    thread = threading.Thread(target=ingester.run, daemon=True)
    thread.start()

    def health() -> tuple[int, dict]:
        try:
            return get_json(f"http://127.0.0.1:{ingester.config.metrics_port}/health")
        except OSError:  # not serving yet
            return 0, {}

    try:
        wait_for(lambda: health()[0] == 503, 10, message="/health failing")
        code, body = health()
        assert body["status"] == "disconnected" and "not subscribed to the broker" in body["reason"]
        assert ingester.stats.connect_refused >= 1
    finally:
        ingester.stop()
        thread.join(15)
        ingester.engine.dispose()


def test_a_refused_ingester_backs_off_with_one_log_line_an_attempt(prod, settings, caplog):
    """Defect 4: "Not authorized" was retried with no backoff (24,027 attempts in 12 s)."""
    config = ingester_config(prod, settings, mqtt_password="wrong")
    ingester = Ingester(config)
    with caplog.at_level(logging.INFO, logger="iot.ingest"):
        ingester.run(max_seconds=3.5)
    refused = [r for r in caplog.records if "event=connect_refused" in r.getMessage()]
    # 1 s, 2 s (+-20 %): two or three attempts in 3.5 s, each one line naming the reason
    assert 2 <= ingester.stats.connect_refused <= 3
    assert len(refused) == ingester.stats.connect_refused
    assert (
        "Not authorized" in refused[0].getMessage() or "Bad user name or password" in refused[0].getMessage()
    )
    assert "user=tianyuan-ingester" in refused[0].getMessage() and "retry_in_s=" in refused[0].getMessage()
    assert "tianyuan_ingest_connections_refused_total 3.0" in ingester.stats.prometheus().decode() or (
        "tianyuan_ingest_connections_refused_total 2.0" in ingester.stats.prometheus().decode()
    )


@pytest.mark.slow
def test_persistence_keeps_what_the_broker_acknowledged_through_kill_9(prod, settings, session):
    """Defect 5: with autosave_interval 60 and autosave_on_changes false, 20,000 messages the
    broker had acknowledged were lost by kill -9. With the shipped config only what the
    broker acknowledged in its last loop pass may be lost (docs/operations.md)."""
    n = 3000
    config = ingester_config(prod, settings)
    RunningIngester(Ingester(config)).stop()  # its session exists, and waits
    device, rc = connect(prod.device_port, "dev1", prod.passwords["dev1"], "dev1")
    infos = [device.publish("farm/GH1/dev1/telemetry", reading(i), qos=1) for i in range(n)]
    for info in infos:
        info.wait_for_publish(60)
    prod.broker.kill()  # right after the last PUBACK
    device.loop_stop()
    prod.broker.start()
    ing = RunningIngester(Ingester(config))
    try:
        wait_for(lambda: stored(session) >= n - 5, 30, 0.2, "the acknowledged readings")
        time.sleep(1)
    finally:
        ing.stop()
    session.expire_all()
    kept = set(session.scalars(select(Reading.ts)))
    lost = sorted(set(range(T0, T0 + n)) - kept)
    assert len(lost) <= 5 and all(ts >= T0 + n - 100 for ts in lost), lost  # only the very last ones


def test_an_alert_event_the_broker_refuses_is_counted_and_logged(session, settings, tmp_path, caplog):
    """Defect 10: with the ACL generated before (the ingester's user could only read farm/#),
    alert events were refused and the ingester never knew."""
    gh = registry.create_greenhouse(session, "GH1", "One")
    registry.create_device(session, "dev1", gh)
    session.add(
        AlertRule(
            greenhouse_id=gh.id, metric_id=1, kind="above", threshold=30.0, hysteresis=1.0, duration_s=0
        )
    )
    session.commit()
    passwd, acl = tmp_path / "passwd", tmp_path / "acl"
    passwd.write_text(f"ing:{broker_access.mosquitto_hash('pw')}\npub:{broker_access.mosquitto_hash('pw')}\n")
    acl.write_text("user ing\ntopic read farm/#\n\nuser pub\ntopic write farm/#\n")
    with Broker(data_dir=tmp_path / "b", password_file=passwd, acl_file=acl) as broker:
        config = IngestConfig(
            database_url=settings.database_url,
            mqtt_port=broker.port,
            mqtt_username="ing",
            mqtt_password="pw",
            client_id="ing-alerts",
            batch_ms=20,
            log_every_s=3600,
            writer_process=False,
        )
        with caplog.at_level(logging.ERROR, logger="iot.ingest"):
            ing = RunningIngester(Ingester(config))
            pub, _rc = connect(broker.port, "pub", "pw", "pub")
            pub.publish("farm/GH1/dev1/telemetry", json.dumps({"ts": T0, "air_temperature": 31.0}), qos=1)
            wait_for(lambda: ing.stats.alert_publish_errors == 1, 10, message="the refusal counted")
            ing.stop()
            close(pub)
        assert ing.stats.stored == 1  # the reading itself is kept
        assert any("event=alert_publish_refused" in r.getMessage() for r in caplog.records)
        assert "tianyuan_ingest_alert_publish_errors_total 1.0" in ing.stats.prometheus().decode()
        # the alert checker's notifier and the short-lived publishers (web, API) report it too
        client, _rc = connect(broker.port, "ing", "pw", "checker")
        notifier = alerts.MqttNotifier(client, "farm")
        notifier.publish("farm/GH1/alerts", "{}")
        assert notifier.flush() == 1
        close(client)
        assert not publish_once(
            BrokerAddress(port=broker.port, username="ing", password="pw"),
            [("farm/GH1/alerts", "{}")],
            client_id="web-1",
            timeout=3,
        )
