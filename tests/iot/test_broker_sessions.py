"""The ingester's MQTT sessions against a real Mosquitto: retained messages change nothing at a
restart, topics of no known shape are quarantined, client ids of a shared group are unique
per process, and a stopped ingester's session can be handed over and ended."""

from __future__ import annotations

import threading
import time

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from sqlalchemy import func, select

from iot.ingest.config import ClientIdInUse, IngestConfig, claim_client_id
from iot.ingest.mqtt import Ingester
from iot.models import Device, QuarantinedMessage, Reading
from tests.iot.conftest import wait_for

pytestmark = pytest.mark.mqtt

T0 = 1764000000


def count(session, model, *where) -> int:
    session.expire_all()
    return session.scalar(select(func.count()).select_from(model).where(*where))


def device(session, device_id) -> Device:
    session.expire_all()
    return session.scalar(select(Device).where(Device.device_id == device_id))


def session_present(broker, client_id) -> bool:
    """Whether the broker holds a session for ``client_id`` (asked without changing it)."""
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    got = {}
    c.on_connect = lambda _c, _u, flags, _rc, _p: got.setdefault("present", flags.session_present)
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 3600
    c.connect("127.0.0.1", broker.port, clean_start=False, properties=props)
    c.loop_start()
    wait_for(lambda: "present" in got, 10)
    c.disconnect()
    c.loop_stop()
    return got["present"]


def test_retained_messages_change_nothing_at_a_restart(
    session, greenhouse, start_ingester, publisher, prefix
):
    """Defect 7: each restart added a reading from a retained timestamp-less message, a
    quarantine row from a retained bad one, and flipped an offline device back online."""
    ing = start_ingester()
    publisher.publish(f"{prefix}/GH1/ctl1/status", b"online", wait=True)
    wait_for(lambda: device(session, "ctl1").online)
    ing.stop()
    # published retained while the ingester's session waits: it gets each one once, live
    publisher.client.publish(f"{prefix}/GH1/dev1/telemetry", b'{"air_temperature": 21.5}', qos=1, retain=True)
    publisher.client.publish(f"{prefix}/GH1/dev1/telemetry", b"{broken", qos=1, retain=True).wait_for_publish(
        5
    )
    publisher.client.publish(f"{prefix}/GH1/ctl1/status", b"online", qos=1, retain=True).wait_for_publish(5)
    ing = start_ingester()
    wait_for(lambda: ing.stats.received == 3, 10)
    wait_for(lambda: count(session, QuarantinedMessage) == 1, 10)
    assert count(session, Reading) == 1  # queued for its session: each came once, as live
    ing.stop()
    # the device goes offline (said live, not retained) ...
    ing = start_ingester()
    publisher.publish(f"{prefix}/GH1/ctl1/status", b"offline")
    wait_for(lambda: not device(session, "ctl1").online)
    ing.stop()
    # ... and two restarts, one with a fresh session, change nothing
    before = (count(session, Reading), count(session, QuarantinedMessage))
    for client_id in (f"ing-{prefix}", f"ing2-{prefix}"):
        ing = start_ingester(client_id=client_id)
        time.sleep(1.0)
        assert ing.stats.received == 0
        ing.stop()
    assert (count(session, Reading), count(session, QuarantinedMessage)) == before
    assert not device(session, "ctl1").online
    for topic in (f"{prefix}/GH1/dev1/telemetry", f"{prefix}/GH1/ctl1/status"):  # clear them
        publisher.client.publish(topic, b"", qos=1, retain=True).wait_for_publish(5)


def test_a_message_flagged_retained_is_acknowledged_and_dropped(settings, greenhouse, session):
    """Whatever the broker does with retain handling, a retained copy is never stored."""
    ingester = Ingester(IngestConfig(database_url=settings.database_url, writer_process=False))
    acked = []

    class Client:  # the paho client's one method _on_message uses for a dropped message
        def ack(self, mid, qos):
            acked.append(mid)

    msg = mqtt.MQTTMessage(mid=7, topic=b"farm/GH1/dev1/telemetry")
    msg.payload, msg.qos, msg.retain = b'{"air_temperature": 20}', 1, True
    ingester._on_message(Client(), None, msg)  # type: ignore[arg-type]
    assert ingester.buffer == [] and acked == [7] and ingester.stats.retained_ignored == 1
    ingester.engine.dispose()


def test_topics_of_no_known_shape_are_quarantined(session, greenhouse, start_ingester, publisher, prefix):
    """Point 11: topics outside the filters were never seen."""
    ing = start_ingester()
    tele = prefix + "tele"
    for topic in (
        f"{prefix}/GH1/dev1/telemetry/extra",
        f"{prefix}/GH1/dev1",
        f"{prefix}/stray",
        f"{tele}/dev1/SENSOR/x",
        # not device data: ignored, never quarantined
        f"{prefix}/GH1/alerts",
        f"{tele}/dev1/STATE",
        f"{tele}/dev1/LWT",
    ):
        publisher.publish(topic, b'{"air_temperature": 20}')
    publisher.publish(f"{prefix}/GH1/dev1/telemetry", {"ts": T0, "air_temperature": 20.0})
    wait_for(lambda: count(session, Reading) == 1 and count(session, QuarantinedMessage) == 4, 10)
    time.sleep(0.3)
    session.expire_all()
    quarantined = session.execute(select(QuarantinedMessage.topic, QuarantinedMessage.reason)).all()
    assert sorted(quarantined) == sorted(
        [
            (f"{prefix}/GH1/dev1/telemetry/extra", "unknown_topic"),
            (f"{prefix}/GH1/dev1", "unknown_topic"),
            (f"{prefix}/stray", "unknown_topic"),
            (f"{tele}/dev1/SENSOR/x", "unknown_topic"),
        ]
    )
    assert ing.stats.topics_ignored == 3


def test_client_ids_are_unique_per_process_and_come_back_after_a_restart(tmp_path):
    """Defect 9: two ingesters of a group started without --client-id on one host got the
    same id and kicked each other."""
    one, lock1 = claim_client_id(tmp_path, client_id=None, shared_group="g")
    two, lock2 = claim_client_id(tmp_path, client_id=None, shared_group="g")
    assert one != two and one.startswith("tianyuan-ingester-g-") and one.endswith("-1") and two.endswith("-2")
    lock1.close()  # the first one stops; started again it gets its id (and its queued share) back
    again, lock3 = claim_client_id(tmp_path, client_id=None, shared_group="g")
    assert again == one
    # without a group, or with a given id, a second one on this host is refused, not let kick
    plain, lock4 = claim_client_id(tmp_path, client_id=None, shared_group=None)
    assert plain == "tianyuan-ingester"
    with pytest.raises(ClientIdInUse):
        claim_client_id(tmp_path, client_id=None, shared_group=None)
    with pytest.raises(ClientIdInUse):
        claim_client_id(tmp_path, client_id=two, shared_group="g")
    for lock in (lock2, lock3, lock4):
        lock.close()


def test_two_ingesters_of_a_group_on_one_host_do_not_kick_each_other(
    session, greenhouse, start_ingester, publisher, prefix, tmp_path
):
    claims = [claim_client_id(tmp_path, client_id=None, shared_group=prefix) for _ in range(2)]
    a = start_ingester(client_id=claims[0][0], shared_group=prefix)
    b = start_ingester(client_id=claims[1][0], shared_group=prefix)
    publisher.publish_many(
        [(f"{prefix}/GH1/dev1/telemetry", f'{{"ts": {T0 + i}, "co2": 500}}') for i in range(400)]
    )
    wait_for(lambda: count(session, Reading) == 400, 20)
    wait_for(lambda: a.stats.stored + b.stats.stored == 400, 10)  # both replies counted
    assert a.stats.disconnects == b.stats.disconnects == 0
    assert a.stats.stored > 0 and b.stats.stored > 0
    for _cid, lock in claims:
        lock.close()


def run_take_over(broker, settings, prefix, client_id, shared_group=None):
    config = IngestConfig(
        database_url=settings.database_url,
        mqtt_port=broker.port,
        topic_prefix=prefix,
        tasmota_prefix=prefix + "tele",
        client_id=client_id,
        shared_group=shared_group,
        take_over=True,
        take_over_idle_s=1.0,
        batch_ms=20,
        log_every_s=3600,
    )
    ingester = Ingester(config)
    thread = threading.Thread(target=ingester.run, kwargs={"max_seconds": 30})
    thread.start()
    thread.join(40)
    assert not thread.is_alive()
    ingester.engine.dispose()
    return ingester.stats


def test_a_stopped_members_share_is_handed_over(
    session, greenhouse, broker, settings, start_ingester, publisher, prefix
):
    """Defect 9: a stopped member's share waits for it (the broker keeps routing to its
    session); `--take-over` stores it and ends that session."""
    gone = start_ingester(client_id=f"{prefix}-m1", shared_group=prefix)
    running = start_ingester(client_id=f"{prefix}-m2", shared_group=prefix)
    gone.stop()
    publisher.publish_many(
        [(f"{prefix}/GH1/dev1/telemetry", f'{{"ts": {T0 + i}, "co2": 500}}') for i in range(400)]
    )
    time.sleep(0.5)
    wait_for(lambda: running.stats.stored == running.stats.received, 10, message="the running member's share")
    waiting = 400 - count(session, Reading)
    assert waiting > 0, "the broker routed nothing to the stopped member: nothing to hand over"
    stats = run_take_over(broker, settings, prefix, f"{prefix}-m1", shared_group=prefix)
    assert stats.stored == waiting
    assert count(session, Reading) == 400
    assert not session_present(broker, f"{prefix}-m1")  # ended: nothing more is routed to it


def test_switching_to_a_shared_group_leaves_no_session_queuing(
    session, greenhouse, broker, settings, start_ingester, publisher, prefix
):
    """Defect 9: the old non-shared session kept queuing (29,600 messages) after the switch."""
    start_ingester(client_id=f"{prefix}-solo").stop()
    start_ingester(client_id=f"{prefix}-g1", shared_group=prefix)
    publisher.publish_many(
        [(f"{prefix}/GH1/dev1/telemetry", f'{{"ts": {T0 + i}, "co2": 500}}') for i in range(200)]
    )
    wait_for(lambda: count(session, Reading) == 200, 20)
    stats = run_take_over(broker, settings, prefix, f"{prefix}-solo")
    assert stats.stored == 0 and stats.duplicates == 200  # its copies: already stored by the group
    assert not session_present(broker, f"{prefix}-solo")
    publisher.publish(f"{prefix}/GH1/dev1/telemetry", {"ts": T0 + 999, "co2": 500})
    wait_for(lambda: count(session, Reading) == 201, 10)


def test_a_session_of_the_narrower_filters_before_gets_each_message_once(
    session, greenhouse, broker, start_ingester, publisher, prefix
):
    """A persistent session from before this release holds `<prefix>/+/+/+`; with the wide
    filters added beside it every message would come twice."""
    old = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"ing-{prefix}", protocol=mqtt.MQTTv5)
    done = threading.Event()
    old.on_subscribe = lambda *a: done.set()
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 3600
    old.connect("127.0.0.1", broker.port, clean_start=True, properties=props)
    old.loop_start()
    old.subscribe(f"{prefix}/+/+/+", qos=1)
    assert done.wait(5)
    old.disconnect()
    old.loop_stop()
    publisher.publish(f"{prefix}/GH1/dev1/telemetry", {"ts": T0, "co2": 500})  # queued meanwhile
    ing = start_ingester()
    publisher.publish_many(
        [(f"{prefix}/GH1/dev1/telemetry", f'{{"ts": {T0 + 1 + i}, "co2": 500}}') for i in range(50)]
    )
    wait_for(lambda: count(session, Reading) == 51, 10)
    time.sleep(0.5)
    assert ing.stats.received == 51 and ing.stats.duplicates == 0
