"""Per-device passwords and the ACL generated from the registry, enforced by a real Mosquitto:
a device may publish only under its own greenhouse/device topics."""

from __future__ import annotations

import threading

import pytest

from iot import registry
from iot.broker import Broker
from iot.mqtt_client import BrokerAddress, make_client
from tests.iot.conftest import wait_for

pytestmark = pytest.mark.mqtt


def _client(broker, user, password, client_id):
    c = make_client(BrokerAddress(port=broker.port, username=user, password=password), client_id)
    result = {}
    c.on_connect = lambda _c, _u, _f, rc, _p: result.setdefault("rc", rc)
    c.connect("127.0.0.1", broker.port)
    c.loop_start()
    wait_for(lambda: "rc" in result, 10)
    return c, result["rc"]


def test_device_credentials_and_acl(session, tmp_path):
    gh1 = registry.create_greenhouse(session, "GH1", "One")
    gh2 = registry.create_greenhouse(session, "GH2", "Two")
    dev = registry.create_device(session, "dev1", gh1)
    registry.create_device(session, "dev2", gh2)
    password = registry.issue_credentials(session, dev)
    session.commit()
    passwd = tmp_path / "passwd"
    passwd.write_text(registry.password_file(session) + f"ingester:{registry.mosquitto_hash('ingest-pw')}\n")
    acl = tmp_path / "acl"
    acl.write_text(registry.acl_file(session))
    with Broker(data_dir=tmp_path / "b", password_file=passwd, acl_file=acl) as broker:
        _bad, rc = _client(broker, "dev1", "wrong-password", "x1")
        assert rc.is_failure
        _bad.loop_stop()

        got: list[str] = []
        subscribed = threading.Event()
        ingester, rc = _client(broker, "ingester", "ingest-pw", "ing")
        assert not rc.is_failure
        ingester.on_message = lambda _c, _u, m: got.append(m.topic)
        ingester.on_subscribe = lambda *a: subscribed.set()
        ingester.subscribe("farm/#", qos=1)
        assert subscribed.wait(5)

        device, rc = _client(broker, "dev1", password, "dev1")
        assert not rc.is_failure
        device.publish("farm/GH2/dev2/telemetry", b'{"co2": 1}', qos=1).wait_for_publish(5)  # not its own
        device.publish("farm/GH1/dev1/telemetry", b'{"co2": 2}', qos=1).wait_for_publish(5)
        wait_for(lambda: got, 5)
        assert got == ["farm/GH1/dev1/telemetry"]
        # the ingester's user also publishes alert events (the ingester, check_alerts, the web)
        ingester.publish("farm/GH1/alerts", b"{}", qos=1).wait_for_publish(5)
        wait_for(lambda: len(got) == 2, 5)
        assert got == ["farm/GH1/dev1/telemetry", "farm/GH1/alerts"]
        for c in (ingester, device):
            c.loop_stop()
            c.disconnect()
