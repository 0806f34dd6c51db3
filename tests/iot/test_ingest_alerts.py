"""The running ingester publishes alerts it opens to <prefix>/<greenhouse>/alerts, after commit."""

from __future__ import annotations

import json
import threading

import paho.mqtt.client as mqtt
import pytest
from sqlalchemy import select

from iot import quantities
from iot.models import Alert, AlertRule
from tests.iot.conftest import wait_for

pytestmark = pytest.mark.mqtt


def test_ingester_publishes_opened_alert(session, greenhouse, start_ingester, publisher, prefix, broker):
    session.add(
        AlertRule(
            greenhouse_id=greenhouse.id,
            metric_id=quantities.BY_NAME["air_temperature"].id,
            kind="above",
            threshold=35.0,
            hysteresis=1.0,
            duration_s=0,
            severity="critical",
        )
    )
    session.commit()
    got: list[dict] = []
    subscribed, arrived = threading.Event(), threading.Event()
    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=prefix + "-alerts", protocol=mqtt.MQTTv5)
    sub.on_subscribe = lambda *a: subscribed.set()
    sub.on_message = lambda _c, _u, msg: (got.append(json.loads(msg.payload)), arrived.set())
    sub.connect("127.0.0.1", broker.port)
    sub.loop_start()
    try:
        sub.subscribe(f"{prefix}/GH1/alerts", qos=1)
        assert subscribed.wait(10)
        start_ingester()
        publisher.publish(f"{prefix}/GH1/dev1/telemetry", {"ts": 1764000000, "air_temperature": 41.0})
        assert arrived.wait(20), "no alert published"
    finally:
        sub.loop_stop()
        sub.disconnect()
    assert got[0]["event"] == "opened" and got[0]["value"] == 41.0
    wait_for(lambda: session.scalar(select(Alert.id).where(Alert.greenhouse_id == greenhouse.id)) is not None)
