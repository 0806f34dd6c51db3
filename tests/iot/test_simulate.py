"""The demo greenhouses and the simulator: believable data that the ingester stores."""

from __future__ import annotations

import json
import time
from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy import func, select

from iot import payloads
from iot.demo import GREENHOUSES, seed
from iot.ingest.writer import BatchWriter, Message
from iot.models import Device, Greenhouse, IrrigationEvent, QuarantinedMessage, Reading
from iot.simulate import Simulator, load_greenhouses


def test_demo_seed_gives_each_farmer_greenhouses_with_sensors_and_controller(session, make_user):
    users = {name: make_user(name, "farmer") for name in ("zhaolin", "wangfang", "liqiang")}
    seed(session, {"users": users})
    session.commit()
    assert session.scalar(select(func.count()).select_from(Greenhouse)) == 6
    for gh in session.scalars(select(Greenhouse)):
        kinds = sorted(d.kind for d in gh.devices)
        assert kinds == ["controller", "sensor", "sensor", "sensor"]
        assert gh.owner_id in {u.id for u in users.values()}
    assert {c for c, *_ in GREENHOUSES} == set(session.scalars(select(Greenhouse.code)))


def test_simulated_day_is_stored_with_cycles_irrigation_and_faults(session, make_user, whole_local_day):
    users = {name: make_user(name, "farmer") for name in ("zhaolin", "wangfang", "liqiang")}
    seed(session, {"users": users})
    session.commit()
    greenhouses = load_greenhouses(session)
    start = whole_local_day(greenhouses[0].timezone)
    sim = Simulator(greenhouses, interval_s=600, start=start, fault_rate=0.01)
    sent = sim.step(24 * 3600)
    assert {payloads.parse_topic(t).kind for t, _ in sent} == {"telemetry", "tasmota", "irrigation"}
    writer = BatchWriter(session.get_bind())
    now = time.time()
    result = writer.store([Message(t, p.encode(), now) for t, p in sent])
    assert result.stored > 3000
    assert (
        set(result.quarantined) <= {"out_of_range"} and sum(result.quarantined.values()) > 0
    )  # sensor faults

    peach = session.scalar(select(Greenhouse).where(Greenhouse.code == "ZZ-PEACH-1"))
    tz = ZoneInfo(peach.timezone)
    temps = session.execute(
        select(Reading.ts, Reading.value).where(Reading.greenhouse_id == peach.id, Reading.metric_id == 1)
    ).all()
    by_hour: dict[int, list[float]] = {}
    for ts, value in temps:
        by_hour.setdefault(datetime.fromtimestamp(ts, tz).hour, []).append(value)
    assert min(by_hour[14]) > max(by_hour[3]) + 5  # warm afternoons, cold nights
    events = session.scalars(select(IrrigationEvent).where(IrrigationEvent.greenhouse_id == peach.id)).all()
    assert len(events) == 2 and all(e.ended_at - e.started_at == 1200 and e.water_l > 0 for e in events)
    assert {datetime.fromtimestamp(e.started_at, tz).hour for e in events} == {6, 16}
    assert session.scalar(select(func.count()).select_from(QuarantinedMessage)) == sum(
        result.quarantined.values()
    )
    assert session.scalar(select(func.count()).select_from(Device)) == 24
    # the Tasmota sensors have two soil probes, each its own channel; their chip is not air
    channels = set(session.scalars(select(Reading.channel).where(Reading.metric_id == 4)))
    assert {"DS18B20-1", "DS18B20-2"} <= channels
    assert result.dropped["chip_sensor"] > 0
    assert session.scalar(select(func.max(Reading.value)).where(Reading.metric_id == 1)) < 50


def test_simulator_never_sends_future_timestamps():
    from iot.simulate import SimDevice, SimGreenhouse

    gh = SimGreenhouse("G", "peach", "Asia/Shanghai", [SimDevice("d", "sensor")])
    sim = Simulator([gh], start=time.time() - 60, interval_s=10)
    sent = sim.step(10**6)
    assert sent and all(json.loads(p)["ts"] <= time.time() for _t, p in sent)
