"""A greenhouse simulator: publishes believable data for registered greenhouses over MQTT.

Daily temperature and light cycles, humidity that falls as temperature rises, soil moisture
that dries out and jumps after each irrigation, fertigation twice a day (06:00 and 16:00
local time), an occasional sensor fault (an impossible value, which the ingester must
quarantine). Devices rotate through the payload formats: native JSON, SenML and Tasmota
for sensors; start/stop and complete events for controllers.

Simulated time starts ``backfill_hours`` in the past and runs ``speedup`` times faster
than real time until it catches up with now, then follows the clock (device timestamps
are never in the future).

``python -m iot.simulate`` (or ``flask iot simulate``, the same ``run``) publishes for
every registered greenhouse. No Flask here.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from types import FrameType
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from core import clock
from core.config import Settings
from core.db import make_engine, make_session_factory
from iot import crops
from iot.models import Device, Greenhouse
from iot.mqtt_client import BrokerAddress, make_client

FORMATS = ("native", "senml", "tasmota")
CLIENT_ID = "tianyuan-simulator"


def _now() -> float:
    """Epoch seconds (the one clock: frozen in tests that freeze it)."""
    return clock.now().timestamp()


@dataclass
class SimDevice:
    device_id: str
    kind: str
    fmt: str = "native"
    next_at: float = 0.0


@dataclass
class SimGreenhouse:
    code: str
    crop: str | None
    timezone: str
    devices: list[SimDevice]
    soil: float = 35.0
    irrigating_since: float | None = None
    zone: str = "A"
    rng: random.Random = field(default_factory=random.Random)


def load_greenhouses(session: Session) -> list[SimGreenhouse]:
    """Every greenhouse with its assigned devices, sensors alternating formats."""
    out = []
    for gh in session.scalars(select(Greenhouse).order_by(Greenhouse.code)):
        devices = session.scalars(
            select(Device).where(Device.greenhouse_id == gh.id).order_by(Device.device_id)
        )
        sims, n = [], 0
        for d in devices:
            if d.kind == "sensor":
                sims.append(SimDevice(d.device_id, d.kind, FORMATS[n % len(FORMATS)]))
                n += 1
            elif d.kind == "controller":
                sims.append(SimDevice(d.device_id, d.kind))
        climate = crops.climate(gh.crop)
        out.append(
            SimGreenhouse(
                gh.code,
                gh.crop,
                gh.timezone or clock.zone_name(),
                sims,
                soil=climate.soil_start,
                rng=random.Random(gh.code),
            )
        )
    return out


def climate_at(gh: SimGreenhouse, t: float) -> dict[str, float]:
    """The greenhouse's air, light and CO2 at epoch ``t`` (local solar day)."""
    local = datetime.fromtimestamp(t, ZoneInfo(gh.timezone))
    hour = local.hour + local.minute / 60 + local.second / 3600
    c = crops.climate(gh.crop)
    night, day, peak_light, co2 = c.night_c, c.day_c, c.peak_light_lx, c.co2_ppm
    rng = gh.rng
    warm = (math.sin((hour - 8) / 24 * 2 * math.pi) + 1) / 2  # coolest ~02:00, warmest ~14:00
    air = night + (day - night) * warm + rng.gauss(0, 0.3)
    humidity = min(99.0, max(20.0, 95 - 40 * warm + rng.gauss(0, 1.5)))
    sun = max(0.0, math.sin((hour - 6) / 12 * math.pi)) if 6 <= hour <= 18 else 0.0
    light = peak_light * sun * rng.uniform(0.85, 1.0)
    co2_now = co2 + (300 * (1 - sun) if peak_light > 1000 else 0) + rng.gauss(0, 10)
    return {
        "air_temperature": round(air, 2),
        "air_humidity": round(humidity, 1),
        "light": round(light),
        "co2": round(max(300.0, co2_now)),
        "soil_temperature": round(night + (day - night) * 0.4 + 2 * warm, 2),
    }


def sensor_message(gh: SimGreenhouse, dev: SimDevice, t: float, prefix: str, fault_rate: float):
    values = climate_at(gh, t)
    values["soil_moisture"] = round(gh.soil, 1)
    if gh.rng.random() < fault_rate:  # a sensor glitch: the ingester quarantines it
        values["air_temperature"] = 85.0 + gh.rng.random() * 10
    ts = int(t)
    if dev.fmt == "senml":
        pack = [
            {
                "bn": f"urn:dev:{dev.device_id}:",
                "bt": ts,
                "n": "temperature",
                "u": "Cel",
                "v": values["air_temperature"],
            },
            {"n": "humidity", "u": "%RH", "v": values["air_humidity"]},
            {"n": "co2", "u": "ppm", "v": values["co2"]},
            {"n": "soil_moisture", "u": "%", "v": values["soil_moisture"]},
        ]
        return f"{prefix}/{gh.code}/{dev.device_id}/telemetry", json.dumps(pack)
    if dev.fmt == "tasmota":
        local = datetime.fromtimestamp(ts, ZoneInfo(gh.timezone)).replace(tzinfo=None)
        doc = {
            "Time": local.isoformat(timespec="seconds"),
            "AM2301": {
                "Temperature": values["air_temperature"],
                "Humidity": values["air_humidity"],
                "DewPoint": round(values["air_temperature"] - 5, 1),
            },
            "BH1750": {"Illuminance": values["light"]},
            # two waterproof probes, 10 and 30 cm deep: two channels of soil temperature
            "DS18B20-1": {"Id": "01144A", "Temperature": values["soil_temperature"]},
            "DS18B20-2": {"Id": "02155B", "Temperature": round(values["soil_temperature"] - 0.8, 2)},
            "ESP32": {"Temperature": round(values["air_temperature"] + 20, 1)},  # the chip: skipped
            "TempUnit": "C",
        }
        return f"tele/{dev.device_id}/SENSOR", json.dumps(doc)
    return f"{prefix}/{gh.code}/{dev.device_id}/telemetry", json.dumps({"ts": ts, **values})


def run_id(zone: str, started_at: float) -> str:
    """The controller's id of an irrigation run (docs/mqtt.md, ``event_id``): zone and start."""
    return f"{zone}-{int(started_at)}"


def controller_messages(gh: SimGreenhouse, dev: SimDevice, t: float, prefix: str, step: float):
    """Fertigation at 06:00 and 16:00 local for 20 minutes: start/stop in the morning, a
    complete event in the afternoon, each with the run's ``event_id``; EC and pH of the
    solution as telemetry."""
    topic = f"{prefix}/{gh.code}/{dev.device_id}"
    local = datetime.fromtimestamp(t, ZoneInfo(gh.timezone))
    minute_of_day = local.hour * 60 + local.minute
    out = []
    ec, ph = round(gh.rng.uniform(1.6, 2.2), 2), round(gh.rng.uniform(5.8, 6.5), 2)
    for start_min, style in ((6 * 60, "startstop"), (16 * 60, "complete")):
        start_t = t - (minute_of_day - start_min) * 60 - local.second
        in_window = start_min <= minute_of_day < start_min + 20
        if in_window and gh.irrigating_since is None:
            gh.irrigating_since = int(start_t)
            gh.zone = "A" if gh.zone == "B" else "B"
            if style == "startstop":
                out.append(
                    (
                        f"{topic}/irrigation",
                        json.dumps(
                            {
                                "action": "start",
                                "event_id": run_id(gh.zone, gh.irrigating_since),
                                "ts": int(start_t),
                                "zone": gh.zone,
                                "ec": ec,
                                "ph": ph,
                            }
                        ),
                    )
                )
        elif (
            not in_window
            and gh.irrigating_since is not None
            and minute_of_day >= start_min + 20
            and gh.irrigating_since == int(start_t)
        ):
            end = gh.irrigating_since + 20 * 60
            water = round(gh.rng.uniform(300, 600), 1)
            fert = {
                "tank_a": round(gh.rng.uniform(0.8, 1.5), 2),
                "tank_b": round(gh.rng.uniform(0.5, 1.0), 2),
            }
            if style == "startstop":
                out.append(
                    (
                        f"{topic}/irrigation",
                        json.dumps(
                            {
                                "action": "stop",
                                "event_id": run_id(gh.zone, gh.irrigating_since),
                                "ts": end,
                                "zone": gh.zone,
                                "water_l": water,
                                "fertilizer": fert,
                            }
                        ),
                    )
                )
            else:
                out.append(
                    (
                        f"{topic}/irrigation",
                        json.dumps(
                            {
                                "event_id": run_id(gh.zone, gh.irrigating_since),
                                "start": gh.irrigating_since,
                                "end": end,
                                "zone": gh.zone,
                                "water_l": water,
                                "ec": ec,
                                "ph": ph,
                                "fertilizer": fert,
                            }
                        ),
                    )
                )
            gh.soil = min(gh.soil + gh.rng.uniform(10, 15), crops.climate(gh.crop).soil_max)
            gh.irrigating_since = None
    out.append((f"{topic}/telemetry", json.dumps({"ts": int(t), "ec": ec, "ph": ph})))
    return out


class Simulator:
    def __init__(
        self,
        greenhouses: list[SimGreenhouse],
        *,
        prefix: str = "farm",
        speedup: float = 60.0,
        interval_s: float = 60.0,
        backfill_hours: float = 24.0,
        fault_rate: float = 0.002,
        start: float | None = None,
    ):
        self.greenhouses = greenhouses
        self.prefix = prefix
        self.speedup = speedup
        self.interval = interval_s
        self.fault_rate = fault_rate
        self.sim_time = start if start is not None else _now() - backfill_hours * 3600
        self.published = 0

    def step(self, sim_seconds: float) -> list[tuple[str, str]]:
        """Advance simulated time; return the (topic, payload) messages due."""
        end = min(self.sim_time + sim_seconds, _now())
        out: list[tuple[str, str]] = []
        while True:
            due = [(d.next_at, gh, d) for gh in self.greenhouses for d in gh.devices if d.next_at <= end]
            if not due:
                break
            for _next_at, gh, dev in sorted(due, key=lambda x: x[0]):
                t = max(dev.next_at, self.sim_time)
                if dev.kind == "sensor":
                    out.append(sensor_message(gh, dev, t, self.prefix, self.fault_rate))
                else:
                    out.extend(controller_messages(gh, dev, t, self.prefix, self.interval))
                dev.next_at = t + self.interval
            for gh in self.greenhouses:  # soil dries out: faster when warm and bright
                gh.soil = max(5.0, gh.soil - 0.02 * self.interval / 60)
        self.sim_time = end
        return out

    def status_messages(self, online: bool) -> list[tuple[str, str]]:
        return [
            (f"{self.prefix}/{gh.code}/{d.device_id}/status", "online" if online else "offline")
            for gh in self.greenhouses
            for d in gh.devices
        ]

    def run(
        self,
        client,
        *,
        duration_s: float | None = None,
        max_messages: int | None = None,
        tick_s: float = 0.5,
        qos: int = 1,
        on_progress=None,
    ) -> int:
        """Publish with a connected paho client until ``duration_s``/``max_messages`` (or forever)."""
        for topic, payload in self.status_messages(True):
            client.publish(topic, payload, qos=qos, retain=True)
        started = time.monotonic()
        last = started
        try:
            while duration_s is None or time.monotonic() - started < duration_s:
                now = time.monotonic()
                behind = self.sim_time < _now() - 1
                for topic, payload in self.step((now - last) * (self.speedup if behind else 1.0)):
                    client.publish(topic, payload, qos=qos)
                    self.published += 1
                    if max_messages is not None and self.published >= max_messages:
                        return self.published
                last = now
                if on_progress:
                    on_progress(self)
                time.sleep(tick_s)
        finally:
            for topic, payload in self.status_messages(False):
                client.publish(topic, payload, qos=qos, retain=True)
        return self.published


# --- the worker -----------------------------------------------------------------------


class SimulatorError(RuntimeError):
    """The simulator cannot start (nothing to simulate)."""


def run(
    settings: Settings,
    *,
    speedup: float = 60.0,
    interval: float = 60.0,
    backfill_hours: float = 24.0,
    duration: float | None = None,
    count: int | None = None,
    fault_rate: float = 0.002,
    session_factory: Callable[[], Session] | None = None,
    echo: Callable[[str], Any] = print,
) -> int:
    """Publish for every registered greenhouse until ``duration``/``count`` (or Ctrl-C);
    returns the messages published. ``SimulatorError`` if there is no greenhouse."""
    clock.configure(settings.timezone)
    engine = None
    if session_factory is None:
        engine = make_engine(settings.database_url)
        session_factory = make_session_factory(engine)
    try:
        with session_factory() as session:
            greenhouses = load_greenhouses(session)
    finally:
        if engine is not None:
            engine.dispose()
    if not greenhouses:
        raise SimulatorError("no greenhouses: run `flask demo seed` or `flask iot greenhouse add`")
    broker = BrokerAddress.from_settings(settings)
    client = make_client(broker, CLIENT_ID)
    client.connect(broker.host, broker.port)
    client.loop_start()
    sim = Simulator(
        greenhouses,
        prefix=settings.mqtt_topic_prefix,
        speedup=speedup,
        interval_s=interval,
        backfill_hours=backfill_hours,
        fault_rate=fault_rate,
    )
    devices = sum(len(g.devices) for g in greenhouses)
    echo(f"simulating {len(greenhouses)} greenhouses, {devices} devices at {speedup:g}x; Ctrl-C stops")
    try:
        sim.run(client, duration_s=duration, max_messages=count)
    except KeyboardInterrupt:
        pass
    finally:
        client.loop_stop()
        client.disconnect()
    echo(f"published {sim.published} messages")
    return sim.published


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m iot.simulate", description="Publish realistic data for every registered greenhouse."
    )
    p.add_argument("--speedup", type=float, default=60.0, help="simulated seconds per real second")
    p.add_argument("--interval", type=float, default=60.0, help="simulated seconds between readings")
    p.add_argument("--backfill-hours", type=float, default=24.0, help="start this far in the past")
    p.add_argument("--duration", type=float, help="stop after this many real seconds")
    p.add_argument("--count", type=int, help="stop after this many messages")
    p.add_argument("--fault-rate", type=float, default=0.002, help="share of readings with a sensor fault")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def _term(_signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt  # stop like Ctrl-C: devices are reported offline

    signal.signal(signal.SIGTERM, _term)
    try:
        run(
            Settings.from_env(),
            speedup=args.speedup,
            interval=args.interval,
            backfill_hours=args.backfill_hours,
            duration=args.duration,
            count=args.count,
            fault_rate=args.fault_rate,
            echo=lambda s: print(s, flush=True),
        )
    except (SimulatorError, OSError) as exc:
        print(f"python -m iot.simulate: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
