"""Irrigation starts and stops pair into the right event, whatever order they come in and
whoever stores them: the service (``iot.irrigation.store_event``) with no MQTT, the
writer's batches, quarantine replay of ``unmatched_stop``, and two writers at once."""

from __future__ import annotations

import json
import threading
import time

import pytest
from sqlalchemy import select

from core.db import make_session_factory
from iot import irrigation, quarantine
from iot.ingest.writer import BatchWriter, Message
from iot.models import Device, IrrigationEvent, QuarantinedMessage
from iot.payloads import PayloadError, decode_irrigation

T0 = 1764000000  # 2025-11-24 16:00 UTC
HOUR = 3600


def _msg(**data) -> bytes:
    return json.dumps(data).encode()


@pytest.fixture
def ctl(session, greenhouse):
    return session.scalar(select(Device).where(Device.device_id == "ctl1"))


def store(session, ctl, max_duration_s: int = 12 * HOUR, **data) -> str:
    msg = decode_irrigation(_msg(**data), T0 + 1000 * HOUR)
    return irrigation.store_event(session, ctl.id, ctl.greenhouse_id, msg, max_duration_s=max_duration_s)


def events(session) -> list[tuple]:
    session.expire_all()
    rows = session.scalars(select(IrrigationEvent).order_by(IrrigationEvent.id))
    return [(e.event_id, e.zone, e.started_at, e.ended_at, e.water_l) for e in rows]


# --- with an event id ----------------------------------------------------------------------------


def test_overlapping_runs_with_ids_each_get_their_own_stop(session, ctl):
    store(session, ctl, action="start", event_id="r1", ts=T0, zone="A", ec=1.8)
    store(session, ctl, action="start", event_id="r2", ts=T0 + 60, zone="A", ec=2.2)  # same zone, overlapping
    store(session, ctl, action="stop", event_id="r2", ts=T0 + 600, zone="A", water_l=50)
    store(session, ctl, action="stop", event_id="r1", ts=T0 + 1200, zone="A", water_l=100)
    assert events(session) == [("r1", "A", T0, T0 + 1200, 100.0), ("r2", "A", T0 + 60, T0 + 600, 50.0)]


def test_a_stop_before_its_start_is_kept_and_the_start_completes_it(session, ctl, greenhouse):
    assert store(session, ctl, action="stop", event_id="r9", ts=T0 + 900, zone="B", water_l=300) == "stored"
    assert events(session) == [("r9", "B", None, T0 + 900, 300.0)]
    # a stop waiting for its start counts nowhere yet
    assert irrigation.summarize(session, greenhouse, T0 - 86400, T0 + 86400).count == 0
    assert store(session, ctl, action="start", event_id="r9", ts=T0, zone="B", ec=2.0, ph=6.1) == "paired"
    ev = session.scalars(select(IrrigationEvent)).one()
    assert (ev.started_at, ev.ended_at, ev.water_l, ev.ec, ev.ph) == (T0, T0 + 900, 300.0, 2.0, 6.1)
    summary = irrigation.summarize(session, greenhouse, T0 - 86400, T0 + 86400)
    assert (summary.count, summary.water_l, summary.duration_s) == (1, 300.0, 900)


def test_redelivered_starts_and_stops_change_nothing(session, ctl):
    store(session, ctl, action="start", event_id="r1", ts=T0, zone="A", ec=1.8)
    store(session, ctl, action="stop", event_id="r1", ts=T0 + 600, water_l=40, ec=2.0)
    before = events(session)
    assert store(session, ctl, action="start", event_id="r1", ts=T0, zone="A", ec=1.8) == "duplicate"
    assert store(session, ctl, action="stop", event_id="r1", ts=T0 + 600, water_l=40) == "duplicate"
    assert events(session) == before == [("r1", "A", T0, T0 + 600, 40.0)]
    assert session.scalar(select(IrrigationEvent.ec)) == 2.0  # the stop's value wins over the start's


def test_the_stops_values_win_whichever_came_first(session, ctl):
    store(session, ctl, action="stop", event_id="x", ts=T0 + 600, ec=2.5, fertilizer={"tank_a": 1.0})
    store(session, ctl, action="start", event_id="x", ts=T0, zone="C", ec=1.0, ph=6.0, fertilizer={"b": 2})
    ev = session.scalars(select(IrrigationEvent)).one()
    assert (ev.zone, ev.ec, ev.ph, ev.fertilizer) == ("C", 2.5, 6.0, {"tank_a": 1.0})


def test_ids_are_per_device_and_runs_of_two_zones_may_start_in_one_second(session, ctl, greenhouse):
    from iot import registry

    other = registry.create_device(session, "ctl2", greenhouse, kind="controller")
    session.flush()
    store(session, ctl, action="start", event_id="1", ts=T0, zone="A")
    store(session, ctl, action="start", event_id="2", ts=T0, zone="B")  # same device, same second
    msg = decode_irrigation(_msg(action="start", event_id="1", ts=T0 + 5, zone="A"), T0)
    irrigation.store_event(session, other.id, greenhouse.id, msg)  # the other controller's run "1"
    store(session, ctl, action="stop", event_id="2", ts=T0 + 300, water_l=20)
    store(session, ctl, action="stop", event_id="1", ts=T0 + 400, water_l=30)
    rows = session.execute(
        select(
            IrrigationEvent.device_id,
            IrrigationEvent.event_id,
            IrrigationEvent.ended_at,
            IrrigationEvent.water_l,
        ).order_by(IrrigationEvent.id)
    ).all()
    assert [tuple(r) for r in rows] == [
        (ctl.id, "1", T0 + 400, 30.0),
        (ctl.id, "2", T0 + 300, 20.0),
        (other.id, "1", None, None),
    ]


def test_a_complete_event_with_an_id_completes_its_start(session, ctl):
    store(session, ctl, action="start", event_id="c1", ts=T0, zone="A", ph=6.0)
    assert store(session, ctl, event_id="c1", start=T0, end=T0 + 500, water_l=7) == "paired"
    assert events(session) == [("c1", "A", T0, T0 + 500, 7.0)]


# --- without an event id: zone and time window ---------------------------------------------------------


def test_a_stop_never_closes_a_start_older_than_the_longest_run(session, ctl):
    store(session, ctl, action="start", ts=T0, zone="A")  # its stop was lost
    with pytest.raises(PayloadError) as exc:
        store(session, ctl, action="stop", ts=T0 + 449 * HOUR, zone="A", water_l=10)
    assert exc.value.reason == "unmatched_stop"
    assert events(session) == [(None, "A", T0, None, None)]
    # a longer limit (IRRIGATION_MAX_HOURS) reaches it
    assert (
        store(session, ctl, max_duration_s=500 * HOUR, action="stop", ts=T0 + 449 * HOUR, zone="A")
        == "paired"
    )


def test_a_stop_closes_the_latest_open_start_of_its_own_zone(session, ctl):
    store(session, ctl, action="start", ts=T0, zone="A")
    store(session, ctl, action="start", ts=T0 + 60, zone="B")
    store(session, ctl, action="start", ts=T0 + 120)  # no zone
    store(session, ctl, action="stop", ts=T0 + 600, zone="A", water_l=1)
    store(session, ctl, action="stop", ts=T0 + 700, water_l=3)  # no zone: only the run without one
    store(session, ctl, action="stop", ts=T0 + 800, zone="B", water_l=2)
    assert events(session) == [
        (None, "A", T0, T0 + 600, 1.0),
        (None, "B", T0 + 60, T0 + 800, 2.0),
        (None, None, T0 + 120, T0 + 700, 3.0),
    ]


def test_a_stop_before_any_start_of_its_run_is_unmatched(session, ctl):
    store(session, ctl, action="start", ts=T0 + 600, zone="A")  # a later run
    with pytest.raises(PayloadError) as exc:
        store(session, ctl, action="stop", ts=T0 + 300, zone="A")
    assert exc.value.reason == "unmatched_stop" and "zone A" in str(exc.value)
    assert events(session) == [(None, "A", T0 + 600, None, None)]


def test_a_redelivered_stop_does_not_close_an_older_open_run(session, ctl):
    store(session, ctl, action="start", ts=T0, zone="A")  # its stop is still on its way
    store(session, ctl, action="start", ts=T0 + HOUR, zone="A")
    store(session, ctl, action="stop", ts=T0 + HOUR + 600, zone="A", water_l=60)
    assert store(session, ctl, action="stop", ts=T0 + HOUR + 600, zone="A", water_l=60) == "duplicate"
    assert events(session) == [(None, "A", T0, None, None), (None, "A", T0 + HOUR, T0 + HOUR + 600, 60.0)]
    store(session, ctl, action="stop", ts=T0 + 900, zone="A", water_l=90)  # the late stop of the first
    assert events(session)[0] == (None, "A", T0, T0 + 900, 90.0)


def test_a_stop_naming_its_start_is_kept_before_the_start(session, ctl):
    assert store(session, ctl, action="stop", start=T0, ts=T0 + 600, zone="A", water_l=5) == "stored"
    store(session, ctl, action="start", ts=T0, zone="A", ec=1.9)
    assert store(session, ctl, action="start", ts=T0, zone="A", ec=1.9) == "duplicate"
    assert events(session) == [(None, "A", T0, T0 + 600, 5.0)]
    assert session.scalar(select(IrrigationEvent.ec)) == 1.9


# --- the writer and quarantine replay ---------------------------------------------------------------------


def _message(prefix: str, arrival: float, **data) -> Message:
    return Message(f"{prefix}/GH1/ctl1/irrigation", _msg(**data), arrival)


def test_a_quarantined_stop_is_paired_when_its_start_arrives_with_it_only(session, ctl, engine):
    writer = BatchWriter(engine, topic_prefix="farm")
    arrival = T0 + 100 * HOUR
    writer.store([_message("farm", arrival, action="start", ts=T0, zone="A")])  # stale: no stop ever
    writer.store([_message("farm", arrival, action="start", ts=T0 + 20 * HOUR, zone="B")])  # other zone
    # stops of runs whose start reaches us later (another ingester, a slow link)
    result = writer.store(
        [
            _message("farm", arrival, action="stop", ts=T0 + 30 * HOUR + 900, zone="A", water_l=77),
            _message(
                "farm", arrival, action="stop", ts=T0 + 30 * HOUR + 950, zone="A", water_l=1
            ),  # 2nd stop
            _message("farm", arrival, action="stop", ts=T0 + 29 * HOUR, zone="A", water_l=2),  # before it
            _message("farm", arrival, action="stop", ts=T0 + 30 * HOUR + 800, zone="C", water_l=3),  # zone C
        ]
    )
    assert result.quarantined == {"unmatched_stop": 4}
    writer.store([_message("farm", arrival, action="start", ts=T0 + 30 * HOUR, zone="A", ec=2.0)])
    writer.store([_message("farm", arrival, action="start", ts=T0 + 31 * HOUR, zone="A")])  # the next run
    assert events(session) == [
        (None, "A", T0, None, None),
        (None, "B", T0 + 20 * HOUR, None, None),
        (None, "A", T0 + 30 * HOUR, T0 + 30 * HOUR + 900, 77.0),
        (None, "A", T0 + 31 * HOUR, None, None),
    ]
    waiting = session.scalars(select(QuarantinedMessage).where(QuarantinedMessage.replayed_at.is_(None)))
    assert sorted(json.loads(q.payload)["water_l"] for q in waiting) == [1, 2, 3]
    # replaying them changes nothing: none has a start it fits
    assert len(quarantine.replay(engine, reason="unmatched_stop").still_failing) == 3
    assert len(events(session)) == 4 and events(session)[2][3:] == (T0 + 30 * HOUR + 900, 77.0)


def test_replayed_unmatched_stop_pairs_with_its_own_start_only(session, ctl, engine):
    """The ingester ran with too short a longest run (IRRIGATION_MAX_HOURS): once it is
    raised, replay pairs the stop with its own start, not the stale one nor the next run."""
    writer = BatchWriter(engine, topic_prefix="farm", irrigation_max_s=600)
    arrival = T0 + 100 * HOUR
    writer.store([_message("farm", arrival, action="start", ts=T0, zone="A")])  # stale: no stop ever
    writer.store([_message("farm", arrival, action="stop", ts=T0 + 30 * HOUR + 900, zone="A", water_l=77)])
    writer.store([_message("farm", arrival, action="start", ts=T0 + 30 * HOUR, zone="A", ec=2.0)])
    writer.store([_message("farm", arrival, action="start", ts=T0 + 31 * HOUR, zone="A")])  # the next run
    assert session.scalar(select(QuarantinedMessage.replayed_at)) is None  # a 900 s run: too long
    replayed = quarantine.replay(engine, reason="unmatched_stop", irrigation_max_s=2 * HOUR)
    assert replayed.still_failing == {}
    assert events(session) == [
        (None, "A", T0, None, None),
        (None, "A", T0 + 30 * HOUR, T0 + 30 * HOUR + 900, 77.0),
        (None, "A", T0 + 31 * HOUR, None, None),
    ]
    assert session.scalar(select(QuarantinedMessage.replayed_at)) is not None
    # replaying again finds nothing waiting and changes nothing
    assert quarantine.replay(engine, reason="unmatched_stop").quarantined == {}
    assert len(events(session)) == 3


def test_replay_honours_the_longest_run(session, ctl, engine):
    writer = BatchWriter(engine, topic_prefix="farm")
    arrival = T0 + 21 * HOUR
    assert writer.store(
        [_message("farm", arrival, action="stop", ts=T0 + 20 * HOUR, zone="A")]
    ).quarantined == {"unmatched_stop": 1}
    writer.store([_message("farm", arrival, action="start", ts=T0, zone="A")])
    result = quarantine.replay(engine, reason="unmatched_stop")  # 20 h apart: not one run
    assert list(result.still_failing.values())[0][0] == "unmatched_stop"
    assert events(session) == [(None, "A", T0, None, None)]
    assert quarantine.replay(engine, reason="unmatched_stop", irrigation_max_s=24 * HOUR).still_failing == {}
    assert events(session) == [(None, "A", T0, T0 + 20 * HOUR, None)]


def test_a_batch_with_start_and_stop_in_any_order(session, ctl, engine):
    writer = BatchWriter(engine, topic_prefix="farm")
    batch = [
        _message("farm", T0 + HOUR, action="stop", event_id="e2", ts=T0 + 700, water_l=2),
        _message("farm", T0 + HOUR, action="start", event_id="e1", ts=T0, zone="A"),
        _message("farm", T0 + HOUR, action="start", event_id="e2", ts=T0 + 100, zone="B"),
        _message("farm", T0 + HOUR, action="stop", event_id="e1", ts=T0 + 600, water_l=1),
        _message("farm", T0 + HOUR, action="stop", event_id="e1", ts=T0 + 600, water_l=1),  # redelivered
    ]
    result = writer.store(batch)
    assert result.irrigation == 5 and result.quarantined == {}
    assert sorted(events(session)) == [("e1", "A", T0, T0 + 600, 1.0), ("e2", "B", T0 + 100, T0 + 700, 2.0)]
    # without ids a batch's starts and stops pair by time whatever their order (the writer sorts
    # them by device and zone, starts first, so that two writers lock rows in one order)
    result = writer.store(
        [
            _message("farm", T0 + HOUR, action="start", ts=T0 + 1000, zone="B"),
            _message("farm", T0 + HOUR, action="start", ts=T0 + 1100, zone="A"),
            _message("farm", T0 + HOUR, action="stop", ts=T0 + 1500, zone="B", water_l=3),
            _message("farm", T0 + HOUR, action="start", ts=T0 + 1600, zone="B"),
            _message("farm", T0 + HOUR, action="stop", ts=T0 + 1700, zone="A", water_l=4),
            _message("farm", T0 + HOUR, action="stop", ts=T0 + 1800, zone="B", water_l=5),
        ]
    )
    assert result.quarantined == {}
    assert sorted(e for e in events(session) if e[0] is None) == [
        (None, "A", T0 + 1100, T0 + 1700, 4.0),
        (None, "B", T0 + 1000, T0 + 1500, 3.0),
        (None, "B", T0 + 1600, T0 + 1800, 5.0),
    ]


def test_max_duration_reaches_the_writer_from_the_settings(settings):
    from core.config import ConfigError, Settings
    from iot.ingest.config import IngestConfig

    assert IngestConfig.from_settings(settings).irrigation_max_s == 12 * HOUR
    config = IngestConfig.from_settings(
        Settings.from_env({"IRRIGATION_MAX_HOURS": "3"}, database_url="sqlite://")
    )
    assert config.irrigation_max_s == 3 * HOUR
    with pytest.raises(ConfigError, match="IRRIGATION_MAX_HOURS"):
        Settings.from_env({"IRRIGATION_MAX_HOURS": "0"}, database_url="sqlite://")


# --- two writers at once ---------------------------------------------------------------------------------


@pytest.mark.parametrize("with_id", [True, False])
def test_two_writers_storing_one_stop_at_once_close_one_event_once(session, ctl, engine, with_id):
    """The first writer holds its transaction open while the second stores the same stop (a
    redelivery to the other member of a shared group): the second waits, then changes nothing
    and closes no other event (SQLite: the database lock; PostgreSQL: the row lock)."""
    ids = {"event_id": "late"} if with_id else {}
    store(session, ctl, action="start", ts=T0, zone="A")  # an older open run of the same zone
    store(session, ctl, action="start", ts=T0 + HOUR, zone="A", **ids)
    session.commit()
    stop = {"action": "stop", "ts": T0 + HOUR + 600, "zone": "A", "water_l": 42, **ids}
    factory = make_session_factory(engine)
    first, second = factory(), factory()
    outcome: list[str] = []
    try:
        assert store(first, ctl, **stop) == "paired"  # not committed yet

        def other_writer() -> None:
            outcome.append(store(second, ctl, **stop))
            second.commit()

        thread = threading.Thread(target=other_writer)
        thread.start()
        time.sleep(0.5)
        assert outcome == []  # waiting for the first writer
        first.commit()
        thread.join(30)
    finally:
        first.close()
        second.close()
    assert outcome == ["duplicate"]
    assert [e[2:] for e in events(session)] == [(T0, None, None), (T0 + HOUR, T0 + HOUR + 600, 42.0)]


def test_simulated_controllers_name_their_runs_so_any_order_pairs(session, make_user, whole_local_day):
    """The simulator's start, stop and complete messages carry the run's event_id: delivered
    stops first (as two ingesters may), every run still pairs with its own stop."""
    from iot.demo import seed
    from iot.simulate import Simulator, load_greenhouses

    users = {name: make_user(name, "farmer") for name in ("zhaolin", "wangfang", "liqiang")}
    seed(session, {"users": users})
    session.commit()
    greenhouses = load_greenhouses(session)
    start = whole_local_day(greenhouses[0].timezone)
    sim = Simulator(greenhouses, interval_s=600, start=start, fault_rate=0)
    sent = [(t, json.loads(p)) for t, p in sim.step(24 * 3600) if t.endswith("/irrigation")]
    assert sent and all("event_id" in body for _t, body in sent)
    stops_first = sorted(sent, key=lambda m: m[1].get("action") != "stop")
    result = BatchWriter(session.get_bind()).store(
        [Message(t, json.dumps(b).encode(), time.time()) for t, b in stops_first]
    )
    assert result.quarantined == {}
    session.expire_all()
    run_ids = {body["event_id"] for _t, body in sent}  # not the demo's own seeded runs of these days
    simulated = session.scalars(select(IrrigationEvent).where(IrrigationEvent.event_id.in_(run_ids))).all()
    assert len(simulated) == 2 * 6  # two runs a day in six greenhouses
    assert all(e.ended_at - e.started_at == 1200 and e.water_l > 0 and e.ec is not None for e in simulated)


def test_an_event_id_reused_for_another_run_is_refused_not_merged(session, ctl, engine):
    """A controller whose run counter restarted (a reboot) sends ids it used before: the new
    run's start and stop are quarantined (``event_id_conflict``), the old run keeps its values."""
    store(session, ctl, action="start", event_id="7", ts=T0, zone="A")
    store(session, ctl, action="stop", event_id="7", ts=T0 + 600, water_l=40)
    for data in (
        {"action": "start", "ts": T0 + 86400, "zone": "A"},
        {"action": "stop", "ts": T0 + 86400 + 900, "water_l": 70},
        {"start": T0 + 86400, "end": T0 + 86400 + 900},
    ):
        with pytest.raises(PayloadError) as exc:
            store(session, ctl, event_id="7", **data)
        assert exc.value.reason == "event_id_conflict"
    assert events(session) == [("7", "A", T0, T0 + 600, 40.0)]
    session.commit()
    writer = BatchWriter(engine, topic_prefix="farm")
    late = T0 + 2 * 86400
    result = writer.store(
        [_message("farm", late, action="stop", event_id="7", ts=T0 + 86400 + 900, water_l=70)]
    )
    assert result.quarantined == {"event_id_conflict": 1}
    assert session.scalar(select(QuarantinedMessage.detail)).startswith("event_id 7 is a run ended at")


@pytest.mark.parametrize(
    "event_id, reason",
    [
        ("A-1764000000", None),
        (42, None),
        ("x" * 64, None),
        ("x" * 65, "bad_payload"),
        ("a\u0000b", "bad_payload"),
        ("zone A", "bad_payload"),
        ("", "bad_payload"),
        (True, "bad_payload"),
        (1.5, "bad_payload"),
        (["a"], "bad_payload"),
    ],
)
def test_event_ids_a_controller_may_send(event_id, reason):
    payload = json.dumps({"action": "start", "ts": T0, "event_id": event_id}).encode()
    if reason is None:
        assert decode_irrigation(payload, T0).event_id == str(event_id)
    else:
        with pytest.raises(PayloadError) as exc:
            decode_irrigation(payload, T0)
        assert exc.value.reason == reason


def test_a_stop_naming_a_later_start_is_refused():
    with pytest.raises(PayloadError) as exc:
        decode_irrigation(_msg(action="stop", ts=T0, start=T0 + 60), T0 + 100)
    assert exc.value.reason == "bad_timestamp"


@pytest.mark.parametrize("first_half", ["stop", "start"])
def test_a_start_and_its_stop_stored_at_once_by_two_writers_pair(session, ctl, engine, first_half):
    """Without an event id: one writer stores the stop (no start visible: it would quarantine
    it), the other the start at the same moment (the stop not visible yet). They serialise on
    the device, so the second one sees what the first did, and the run is paired."""
    from iot.ingest.writer import decode_batch, write_batch

    writer = BatchWriter(engine, topic_prefix="farm")
    writer.registry.refresh()
    arrival = T0 + HOUR
    halves = {
        "start": _message("farm", arrival, action="start", ts=T0, zone="A", ec=1.5),
        "stop": _message("farm", arrival, action="stop", ts=T0 + 600, zone="A", water_l=66),
    }
    second_half = "start" if first_half == "stop" else "stop"
    factory = make_session_factory(engine)
    first, second = factory(), factory()
    done: list[bool] = []
    try:
        write_batch(first, decode_batch([halves[first_half]], writer.resolver.resolve))  # not committed

        def other_writer() -> None:
            write_batch(second, decode_batch([halves[second_half]], writer.resolver.resolve))
            second.commit()
            done.append(True)

        thread = threading.Thread(target=other_writer)
        thread.start()
        time.sleep(0.5)
        assert done == []  # waiting for the first writer
        first.commit()
        thread.join(30)
    finally:
        first.close()
        second.close()
    assert done == [True]
    assert events(session) == [(None, "A", T0, T0 + 600, 66.0)]
    assert session.scalar(select(IrrigationEvent.ec)) == 1.5
    waiting = session.scalars(
        select(QuarantinedMessage).where(QuarantinedMessage.replayed_at.is_(None))
    ).all()
    assert waiting == []


def _permutation_outcome(session, engine, messages) -> list[tuple]:
    from sqlalchemy import delete

    session.execute(delete(IrrigationEvent))
    session.execute(delete(QuarantinedMessage))
    session.commit()
    writer = BatchWriter(engine, topic_prefix="farm")
    for m in messages:
        writer.store([m])
    return sorted(e[1:] for e in events(session))


def test_without_ids_the_pairing_does_not_depend_on_the_order_of_arrival(session, ctl, engine):
    """Three runs of one zone (and one of another): in every order of arrival of their
    starts and stops, each run ends up with its own stop, and no stop is left waiting."""
    import itertools
    import random

    arrival = T0 + 10 * HOUR
    runs = [(T0, T0 + 500, 1.0, "A"), (T0 + 600, T0 + 700, 2.0, "A"), (T0 + 900, T0 + 1500, 3.0, "A")]
    runs.append((T0 + 100, T0 + 800, 4.0, "B"))
    halves = []
    for start, end, water, zone in runs:
        halves.append(_message("farm", arrival, action="start", ts=start, zone=zone, ec=water / 10))
        halves.append(_message("farm", arrival, action="stop", ts=end, zone=zone, water_l=water))
    want = sorted((zone, start, end, water) for start, end, water, zone in runs)
    orders = list(itertools.permutations(halves[:4]))  # every order of the first two runs
    rng = random.Random(6)
    orders += [rng.sample(halves, len(halves)) for _ in range(40)]  # and of all four
    for order in orders:
        got = _permutation_outcome(session, engine, order)
        expected = want if len(order) == len(halves) else want[:2]
        assert got == expected, [json.loads(m.payload) for m in order]
        waiting = select(QuarantinedMessage).where(QuarantinedMessage.replayed_at.is_(None))
        assert session.scalars(waiting).all() == []
        ecs = session.execute(select(IrrigationEvent.water_l, IrrigationEvent.ec)).all()
        assert all(abs(ec - water / 10) < 1e-9 for water, ec in ecs)  # each start's values kept


def test_a_stop_that_closed_the_run_before_moves_to_its_own_run(session, ctl, engine):
    writer = BatchWriter(engine, topic_prefix="farm")
    arrival = T0 + 10 * HOUR
    writer.store([_message("farm", arrival, action="start", ts=T0, zone="A", ec=1.0)])
    writer.store([_message("farm", arrival, action="stop", ts=T0 + 1500, zone="A", water_l=20)])  # run 2's
    assert events(session) == [(None, "A", T0, T0 + 1500, 20.0)]  # the best guess so far
    writer.store([_message("farm", arrival, action="start", ts=T0 + 1000, zone="A", ec=2.0)])
    assert events(session) == [(None, "A", T0, None, None), (None, "A", T0 + 1000, T0 + 1500, 20.0)]
    assert session.scalar(select(IrrigationEvent.ec).where(IrrigationEvent.started_at == T0)) == 1.0
    writer.store([_message("farm", arrival, action="stop", ts=T0 + 400, zone="A", water_l=10)])
    assert events(session) == [(None, "A", T0, T0 + 400, 10.0), (None, "A", T0 + 1000, T0 + 1500, 20.0)]
    # an earlier stop for a run that has one takes its place; the later one waits for a start
    writer.store([_message("farm", arrival, action="stop", ts=T0 + 300, zone="A", water_l=9)])
    assert events(session)[0] == (None, "A", T0, T0 + 300, 9.0)
    waiting = session.scalars(
        select(QuarantinedMessage).where(QuarantinedMessage.replayed_at.is_(None))
    ).all()
    assert [json.loads(q.payload) for q in waiting] == [
        {"action": "stop", "ts": T0 + 400, "zone": "A", "water_l": 10.0}
    ]
    assert waiting[0].reason == "unmatched_stop"


def test_a_run_stored_before_parts_existed_keeps_its_start_values(session, ctl):
    session.add(
        IrrigationEvent(device_id=ctl.id, greenhouse_id=ctl.greenhouse_id, zone="A", started_at=T0, ec=1.4)
    )
    session.flush()
    assert store(session, ctl, action="stop", ts=T0 + 600, zone="A", water_l=30) == "paired"
    ev = session.scalars(select(IrrigationEvent)).one()
    assert (ev.ended_at, ev.water_l, ev.ec) == (T0 + 600, 30.0, 1.4)


def test_two_valves_opened_in_the_same_second_without_ids_are_two_runs_found_by_review(session, ctl):
    """A controller opening zones A and B at once: both runs kept (the unique key had no zone),
    each paired with its own stop; a redelivery of either still changes nothing."""
    assert store(session, ctl, start=T0, end=T0 + 300, zone="A", water_l=100) == "stored"
    assert store(session, ctl, start=T0, end=T0 + 300, zone="B", water_l=120) == "stored"
    assert store(session, ctl, action="start", ts=T0 + 600, zone="C") == "stored"
    assert store(session, ctl, action="start", ts=T0 + 600, zone="D") == "stored"
    assert store(session, ctl, action="stop", ts=T0 + 900, zone="D", water_l=40) == "paired"
    assert store(session, ctl, action="stop", ts=T0 + 960, zone="C", water_l=30) == "paired"
    assert store(session, ctl, start=T0, end=T0 + 300, zone="B", water_l=120) == "duplicate"
    assert store(session, ctl, action="start", ts=T0 + 600, zone="C") == "duplicate"
    assert sorted(e[1:] for e in events(session)) == [
        ("A", T0, T0 + 300, 100.0),
        ("B", T0, T0 + 300, 120.0),
        ("C", T0 + 600, T0 + 960, 30.0),
        ("D", T0 + 600, T0 + 900, 40.0),
    ]


@pytest.mark.parametrize("stop_first", [True, False])
def test_the_halves_of_one_event_id_cannot_make_a_run_that_ends_before_it_starts_found_by_review(
    session, ctl, stop_first
):
    start = dict(action="start", event_id="J1", ts=T0 + 9000, zone="A")
    stop = dict(action="stop", event_id="J1", ts=T0 + 8900, zone="A", water_l=10)
    first, second = (stop, start) if stop_first else (start, stop)
    store(session, ctl, **first)
    with pytest.raises(PayloadError) as refused:
        store(session, ctl, **second)
    assert refused.value.reason == "event_id_conflict"
    (row,) = events(session)
    assert row[2] is None or row[3] is None  # the second half was not joined to the first
