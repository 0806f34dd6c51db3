"""Irrigation starts and stops through a real Mosquitto into two ingesters: every event paired
with its own stop, whichever ingester got which half and in which order (defect 6 of issue 15:
132 of 800 events were closed by another event's stop, up to 449 h long, with the wrong water)."""

from __future__ import annotations

import json
import random

import pytest
from sqlalchemy import func, select

from iot import quarantine, registry
from iot.models import Device, IrrigationEvent, QuarantinedMessage
from tests.iot.conftest import wait_for

pytestmark = [pytest.mark.mqtt, pytest.mark.slow]

T0 = 1764000000
CONTROLLERS = ("ctl1", "ctl2", "ctl3", "ctl4")
ZONES = ("A", "B", "C")


@pytest.fixture
def controllers(session, greenhouse):
    for name in CONTROLLERS[1:]:
        registry.create_device(session, name, greenhouse, kind="controller")
    session.commit()
    return {d.device_id: d.id for d in session.scalars(select(Device).where(Device.kind == "controller"))}


def runs(n: int, seed: int, *, with_ids: bool = True) -> list[dict]:
    """``n`` runs of several controllers and zones; each zone's runs follow one another (with
    ids, some of one zone overlap too), runs of different zones and controllers overlap."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        start = T0 + i * 97
        run = {
            "device": CONTROLLERS[i % len(CONTROLLERS)],
            "zone": ZONES[(i // len(CONTROLLERS)) % len(ZONES)],
            "start": start,
            # a zone's next run starts 12 * 97 s later: without ids a run must end before it
            "end": start + rng.randint(60, 1100 if not with_ids else 2400),
            "water": round(rng.uniform(5, 900), 1),
            "tank_a": round(rng.uniform(0, 3), 2),
            "ec": round(rng.uniform(1.2, 2.8), 2),
        }
        if with_ids:
            run["event_id"] = f"{run['zone']}-{i}"
        out.append(run)
    return out


def start_message(prefix: str, run: dict) -> tuple[str, str]:
    body = {"action": "start", "ts": run["start"], "zone": run["zone"], "ec": run["ec"]}
    if "event_id" in run:
        body["event_id"] = run["event_id"]
    return f"{prefix}/GH1/{run['device']}/irrigation", json.dumps(body)


def stop_message(prefix: str, run: dict) -> tuple[str, str]:
    body = {
        "action": "stop",
        "ts": run["end"],
        "zone": run["zone"],
        "water_l": run["water"],
        "fertilizer": {"tank_a": run["tank_a"]},
    }
    if "event_id" in run:
        body["event_id"] = run["event_id"]
    return f"{prefix}/GH1/{run['device']}/irrigation", json.dumps(body)


def in_time_order(prefix: str, all_runs: list[dict]) -> list[tuple[str, str]]:
    timed = [(r["start"], 0, start_message(prefix, r)) for r in all_runs]
    timed += [(r["end"], 1, stop_message(prefix, r)) for r in all_runs]
    return [m for _t, _k, m in sorted(timed, key=lambda x: (x[0], x[1]))]


def jumbled(messages: list, seed: int, reach: int = 40) -> list:
    """Each message moved up to ``reach`` places: many stops come before their starts."""
    rng = random.Random(seed)
    keyed = [(i + rng.uniform(-reach, reach), m) for i, m in enumerate(messages)]
    return [m for _k, m in sorted(keyed, key=lambda x: x[0])]


def stored_events(session) -> dict[tuple[int, int], tuple]:
    session.expire_all()
    rows = session.scalars(select(IrrigationEvent))
    return {(e.device_id, e.started_at or -1): e for e in rows}


def assert_all_paired(session, controllers, all_runs: list[dict]) -> None:
    session.expire_all()
    rows = list(session.scalars(select(IrrigationEvent)))
    by_start = {(e.device_id, e.zone, e.started_at): e for e in rows}
    wrong = []
    for run in all_runs:
        ev = by_start.get((controllers[run["device"]], run["zone"], run["start"]))
        got = None if ev is None else (ev.ended_at, ev.water_l, ev.fertilizer, ev.ec, ev.event_id)
        want = (run["end"], run["water"], {"tank_a": run["tank_a"]}, run["ec"], run.get("event_id"))
        if got != want:
            wrong.append((run, got))
    assert not wrong, f"{len(wrong)} of {len(all_runs)} events wrong, e.g. {wrong[:3]}"
    assert len(rows) == len(all_runs)
    longest = max(r["end"] - r["start"] for r in all_runs)
    assert max(e.ended_at - e.started_at for e in rows) == longest  # none longer than a true run


def complete_count(session) -> int:
    return session.scalar(
        select(func.count())
        .select_from(IrrigationEvent)
        .where(IrrigationEvent.started_at.is_not(None), IrrigationEvent.ended_at.is_not(None))
    )


def test_800_runs_through_two_ingesters_of_one_shared_group_all_pair_correctly(
    session, controllers, start_ingester, publisher, prefix
):
    a = start_ingester(shared_group="irr", client_id=f"ing-{prefix}-a", batch_ms=5, batch_size=20)
    b = start_ingester(shared_group="irr", client_id=f"ing-{prefix}-b", batch_ms=5, batch_size=20)
    all_runs = runs(800, seed=15)
    messages = jumbled(in_time_order(prefix, all_runs), seed=6)
    stops_first = sum(
        1
        for r in all_runs
        if messages.index(stop_message(prefix, r)) < messages.index(start_message(prefix, r))
    )
    assert stops_first > 50  # the case that used to go wrong is well represented
    publisher.publish_many(messages)
    wait_for(lambda: complete_count(session) == 800, 90, 0.2, "800 complete events")
    wait_for(lambda: a.stats.irrigation + b.stats.irrigation >= 1600, 20)
    assert min(a.stats.irrigation, b.stats.irrigation) > 1600 * 0.2  # both ingesters took part
    assert session.scalar(select(func.count()).select_from(QuarantinedMessage)) == 0
    assert_all_paired(session, controllers, all_runs)
    # every message again (a broker redelivering after a crash): nothing changes
    before = {k: (e.ended_at, e.water_l, e.ec) for k, e in stored_events(session).items()}
    publisher.publish_many(jumbled(messages, seed=7))
    wait_for(lambda: a.stats.irrigation + b.stats.irrigation >= 3200, 60, 0.2, "redeliveries stored")
    assert {k: (e.ended_at, e.water_l, e.ec) for k, e in stored_events(session).items()} == before
    assert session.scalar(select(func.count()).select_from(QuarantinedMessage)) == 0


def test_two_ingesters_each_storing_every_message_pair_each_run_once(
    session, controllers, start_ingester, publisher, prefix
):
    """Two ingesters not in a group both get everything: each start and stop is stored by two
    writers at about the same time; runs with and without event ids all pair once, correctly."""
    a = start_ingester(client_id=f"ing-{prefix}-a", batch_ms=5, batch_size=10)
    b = start_ingester(client_id=f"ing-{prefix}-b", batch_ms=5, batch_size=10)
    all_runs = runs(120, seed=1) + [
        {**r, "start": r["start"] + 200_000, "end": r["end"] + 200_000}
        for r in runs(120, seed=2, with_ids=False)
    ]
    publisher.publish_many(in_time_order(prefix, all_runs))
    wait_for(lambda: a.stats.irrigation >= 480 and b.stats.irrigation >= 480, 60, 0.2, "both stored all")
    assert session.scalar(select(func.count()).select_from(QuarantinedMessage)) == 0
    assert_all_paired(session, controllers, all_runs)


def test_a_stop_before_its_start_on_another_ingester_is_paired(
    session, controllers, start_ingester, publisher, prefix
):
    topic = f"{prefix}/GH1/ctl1/irrigation"
    first = start_ingester(client_id=f"ing-{prefix}-a")
    publisher.publish(
        topic, {"action": "stop", "event_id": "r7", "ts": T0 + 900, "zone": "A", "water_l": 333}
    )
    wait_for(lambda: first.stats.irrigation == 1)
    first.stop()
    waiting = session.scalars(select(IrrigationEvent)).one()
    assert (waiting.started_at, waiting.ended_at, waiting.water_l) == (None, T0 + 900, 333.0)
    second = start_ingester(client_id=f"ing-{prefix}-b")
    publisher.publish(topic, {"action": "start", "event_id": "r7", "ts": T0, "zone": "A", "ec": 1.7})
    publisher.publish(topic, {"action": "start", "event_id": "r8", "ts": T0 + 1000, "zone": "A"})
    wait_for(lambda: second.stats.irrigation == 2)
    session.expire_all()
    rows = session.scalars(select(IrrigationEvent).order_by(IrrigationEvent.id)).all()
    assert [(e.event_id, e.started_at, e.ended_at, e.water_l, e.ec) for e in rows] == [
        ("r7", T0, T0 + 900, 333.0, 1.7),
        ("r8", T0 + 1000, None, None, None),
    ]


def test_800_runs_without_event_ids_through_two_ingesters_pair_correctly(
    session, controllers, start_ingester, publisher, prefix
):
    """Controllers that send no event id (the hostile tester's case), published in time order and
    then jumbled: a stop that reaches one ingester before its start reaches the other waits in
    the quarantine and is paired when the start is stored; a stop that closed the run before
    moves to its own run when that start arrives; none closes a stale or another zone's run."""
    a = start_ingester(shared_group="irr", client_id=f"ing-{prefix}-a", batch_ms=5, batch_size=20)
    b = start_ingester(shared_group="irr", client_id=f"ing-{prefix}-b", batch_ms=5, batch_size=20)
    all_runs = runs(800, seed=16, with_ids=False)
    publisher.publish_many(in_time_order(prefix, all_runs[:400]))
    publisher.publish_many(jumbled(in_time_order(prefix, all_runs[400:]), seed=8))
    wait_for(lambda: a.stats.acked + b.stats.acked >= 1600, 90, 0.2, "1600 messages acknowledged")
    wait_for(lambda: complete_count(session) == 800, 20, 0.2, "800 complete events")
    assert min(a.stats.received, b.stats.received) > 1600 * 0.2
    waiting = (
        select(func.count()).select_from(QuarantinedMessage).where(QuarantinedMessage.replayed_at.is_(None))
    )
    assert session.scalar(waiting) == 0
    assert_all_paired(session, controllers, all_runs)


def test_a_stop_without_id_before_its_start_on_another_ingester_is_paired_when_the_start_arrives(
    session, controllers, start_ingester, publisher, prefix
):
    topic = f"{prefix}/GH1/ctl1/irrigation"
    first = start_ingester(client_id=f"ing-{prefix}-a")
    publisher.publish(topic, {"action": "start", "ts": T0 - 100 * 3600, "zone": "A"})  # lost its stop
    publisher.publish(topic, {"action": "start", "ts": T0 - 600, "zone": "B"})  # another zone, running
    publisher.publish(
        topic, {"action": "stop", "ts": T0 + 900, "zone": "A", "water_l": 55}
    )  # start not yet in
    wait_for(lambda: first.stats.irrigation == 2 and first.stats.acked == 3)
    assert session.scalar(select(QuarantinedMessage.reason)) == "unmatched_stop"
    first.stop()
    second = start_ingester(client_id=f"ing-{prefix}-b")
    publisher.publish(topic, {"action": "start", "ts": T0, "zone": "A", "ec": 2.1})  # late, via the other
    publisher.publish(topic, {"action": "start", "ts": T0 + 1200, "zone": "A"})  # the next run
    wait_for(lambda: second.stats.irrigation == 2)
    session.expire_all()
    rows = session.scalars(select(IrrigationEvent).order_by(IrrigationEvent.started_at)).all()
    assert [(e.zone, e.started_at, e.ended_at, e.water_l, e.ec) for e in rows] == [
        ("A", T0 - 100 * 3600, None, None, None),
        ("B", T0 - 600, None, None, None),
        ("A", T0, T0 + 900, 55.0, 2.1),
        ("A", T0 + 1200, None, None, None),
    ]
    assert session.scalar(select(QuarantinedMessage.replayed_at)) is not None


def test_a_quarantined_stop_replayed_after_its_start_arrived_pairs_with_it_only(
    session, controllers, start_ingester, publisher, prefix
):
    """An ingester whose longest run was too short (IRRIGATION_MAX_HOURS) left the stop
    quarantined though its start came: replay with the right limit pairs it, and only it."""
    topic = f"{prefix}/GH1/ctl1/irrigation"
    ing = start_ingester(irrigation_max_s=600)
    publisher.publish(topic, {"action": "start", "ts": T0 - 100 * 3600, "zone": "A"})  # lost its stop
    publisher.publish(topic, {"action": "stop", "ts": T0 + 900, "zone": "A", "water_l": 55})
    publisher.publish(topic, {"action": "start", "ts": T0, "zone": "A", "ec": 2.1})  # a 900 s run
    publisher.publish(topic, {"action": "start", "ts": T0 + 1200, "zone": "A"})  # the next run
    wait_for(lambda: ing.stats.acked == 4)
    assert session.scalar(select(QuarantinedMessage.reason)) == "unmatched_stop"
    result = quarantine.replay(ing.ingester.engine, topic_prefix=prefix, reason="unmatched_stop")
    assert result.still_failing == {}
    session.expire_all()
    rows = session.scalars(select(IrrigationEvent).order_by(IrrigationEvent.started_at)).all()
    assert [(e.zone, e.started_at, e.ended_at, e.water_l, e.ec) for e in rows] == [
        ("A", T0 - 100 * 3600, None, None, None),
        ("A", T0, T0 + 900, 55.0, 2.1),
        ("A", T0 + 1200, None, None, None),
    ]
