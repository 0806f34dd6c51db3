"""Alert notifications reach MQTT subscribers on <prefix>/<greenhouse>/alerts (real Mosquitto)."""

from __future__ import annotations

import json
import threading

import paho.mqtt.client as mqtt
import pytest

from iot import alerts
from iot.models import AlertRule
from tests.iot.dash_helpers import T0, add_readings, make_greenhouse

pytestmark = pytest.mark.mqtt


def client_for(broker, name):
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=name, protocol=mqtt.MQTTv5)
    c.connect("127.0.0.1", broker.port)
    c.loop_start()
    return c


def test_opened_and_closed_alerts_are_published(broker, prefix, session):
    gh, dev = make_greenhouse(session, code="GH-MQ")
    session.add(
        AlertRule(
            greenhouse_id=gh.id,
            metric_id=1,
            kind="above",
            threshold=30.0,
            hysteresis=1.0,
            duration_s=0,
            severity="critical",
        )
    )
    session.flush()
    got: list[tuple[str, dict]] = []
    subscribed, two = threading.Event(), threading.Event()
    sub = client_for(broker, prefix + "-sub")
    sub.on_subscribe = lambda *a: subscribed.set()

    def on_message(_c, _u, msg):
        got.append((msg.topic, json.loads(msg.payload)))
        if len(got) == 2:
            two.set()

    sub.on_message = on_message
    sub.subscribe(f"{prefix}/+/alerts", qos=1)
    assert subscribed.wait(10)
    pub = client_for(broker, prefix + "-pub")
    notifier = alerts.MqttNotifier(pub, prefix)
    hook = alerts.batch_hook(notifier, prefix)
    try:
        hook(session, add_readings(session, gh, dev, "air_temperature", [(T0, 31.5)]))
        hook(session, add_readings(session, gh, dev, "air_temperature", [(T0 + 60, 28.0)]))
        notifier.flush()
        assert two.wait(10)
    finally:
        for c in (sub, pub):
            c.loop_stop()
            c.disconnect()
    assert [t for t, _ in got] == [f"{prefix}/GH-MQ/alerts"] * 2
    assert [m["event"] for _, m in got] == ["opened", "closed"]
    assert (
        got[0][1]["value"] == 31.5
        and got[0][1]["severity"] == "critical"
        and got[1][1]["closed_at"] == T0 + 60
    )
