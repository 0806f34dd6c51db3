"""Acknowledging an alert on the web page or through the API publishes ``acknowledged`` on
<prefix>/<greenhouse>/alerts after the commit (real Mosquitto); a broker that is down costs
the farmer nothing but a log line."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import replace

import pytest

from core import auth
from iot.models import Alert
from iot.mqtt_client import BrokerAddress, make_client, publish_once
from tests.conftest import login, make_test_app
from tests.iot.conftest import wait_for
from tests.iot.dash_helpers import T0, make_greenhouse

pytestmark = pytest.mark.mqtt


class Subscriber:
    def __init__(self, broker, topic: str, client_id: str):
        self.got: list[tuple[str, dict]] = []
        subscribed = threading.Event()
        self.client = make_client(BrokerAddress(port=broker.port), client_id)
        self.client.on_subscribe = lambda *a: subscribed.set()
        self.client.on_message = lambda _c, _u, msg: self.got.append((msg.topic, json.loads(msg.payload)))
        self.client.connect("127.0.0.1", broker.port)
        self.client.loop_start()
        self.client.subscribe(topic, qos=1)
        assert subscribed.wait(10)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture
def farm(session, make_user):
    alice = make_user("alice", "farmer")
    gh, _dev = make_greenhouse(session, code="GH-ACK", owner=alice)
    alerts = [
        Alert(greenhouse_id=gh.id, metric_id=1, kind="above", threshold=30.0, value=31.0, opened_at=T0 + i)
        for i in range(2)
    ]
    session.add_all(alerts)
    session.commit()
    _row, token = auth.issue_token(session, alice, "phone")
    session.commit()
    return dict(alerts=alerts, token=token)


@pytest.fixture
def live_app(app, settings, broker, prefix):
    """The app, talking to the test broker under this test's topic prefix."""
    from core.web import EXT

    application = make_test_app(replace(settings, mqtt_url=broker.url, mqtt_topic_prefix=prefix))
    yield application
    application.extensions[EXT]["db"].engine.dispose()


def test_acknowledgements_from_web_and_api_are_published(live_app, farm, broker, prefix, session):
    sub = Subscriber(broker, f"{prefix}/+/alerts", prefix + "-sub")
    web, api = farm["alerts"]
    try:
        client = live_app.test_client()
        login(client, "alice")
        r = client.post(f"/iot/alerts/{web.id}/ack", data={"next": "/iot/alerts"})
        assert r.status_code == 302
        wait_for(lambda: len(sub.got) == 1, 10, message="acknowledgement from the web")
        r = live_app.test_client().post(
            f"/api/v1/alerts/{api.id}/ack", headers={"Authorization": f"Bearer {farm['token']}"}
        )
        assert r.status_code == 200 and r.get_json()["status"] == "acknowledged"
        wait_for(lambda: len(sub.got) == 2, 10, message="acknowledgement from the API")
        # a second acknowledgement changes nothing and publishes nothing
        assert client.post(f"/api/v1/alerts/{api.id}/ack").status_code == 409
        time.sleep(0.3)
    finally:
        sub.close()
    assert [t for t, _ in sub.got] == [f"{prefix}/GH-ACK/alerts"] * 2
    assert [(m["event"], m["alert_id"], m["greenhouse"]) for _, m in sub.got] == [
        ("acknowledged", web.id, "GH-ACK"),
        ("acknowledged", api.id, "GH-ACK"),
    ]
    assert {"kind", "severity", "metric", "threshold", "value", "opened_at", "ts"} <= set(sub.got[0][1])


def test_a_broker_that_is_down_does_not_fail_the_acknowledgement(client, farm, session, caplog):
    """The test settings point MQTT at port 1, where nothing listens."""
    login(client, "alice")
    web, api = farm["alerts"]
    started = time.monotonic()
    r = client.post(f"/iot/alerts/{web.id}/ack", follow_redirects=True)
    assert r.status_code == 200
    r = client.post(f"/api/v1/alerts/{api.id}/ack")
    assert r.status_code == 200
    assert time.monotonic() - started < 5
    session.expire_all()
    assert session.get(Alert, web.id).status == "acknowledged"
    assert session.get(Alert, api.id).status == "acknowledged"
    assert "publish_failed" in caplog.text


def test_publish_once_gives_up_within_its_timeout():
    """A broker that accepts the connection and then says nothing (a hung server)."""
    import socket

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(4)
    try:
        started = time.monotonic()
        ok = publish_once(
            BrokerAddress("127.0.0.1", server.getsockname()[1]),
            [("t/x/alerts", "{}")],
            client_id="t",
            timeout=0.5,
        )
        assert ok is False and time.monotonic() - started < 3
    finally:
        server.close()


@pytest.fixture
def slammer():
    """A 'broker' that accepts each connection and closes it at once (as Mosquitto does with
    bad credentials)."""
    import socket

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    stop = threading.Event()

    def serve() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join(2)
    server.close()


def test_a_broker_that_hangs_up_is_a_log_line_not_an_error(slammer, settings, farm, session, caplog):
    from core.web import EXT
    from iot import alerts, check_alerts

    assert publish_once(BrokerAddress("127.0.0.1", slammer), [("t/x/alerts", "{}")], client_id="t") is False
    app = make_test_app(replace(settings, mqtt_url=f"mqtt://127.0.0.1:{slammer}"))
    try:
        client = app.test_client()
        login(client, "alice")
        web, api = farm["alerts"]
        assert client.post(f"/iot/alerts/{web.id}/ack").status_code == 302
        assert client.post(f"/api/v1/alerts/{api.id}/ack").status_code == 200
    finally:
        app.extensions[EXT]["db"].engine.dispose()
    # the alert checker's notifier on a connection that went away: the tick still counts
    dead = make_client(BrokerAddress("127.0.0.1", slammer), "dead")
    notifier = alerts.MqttNotifier(dead)
    notifier.publish("t/x/alerts", "{}")
    assert notifier.flush(timeout=0.2) == 1
    factory = app.extensions[EXT]["db"].session_factory
    assert check_alerts.check_once(factory, notifier, "farm") >= 0
