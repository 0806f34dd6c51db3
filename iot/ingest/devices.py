"""The ingester's view of the devices: a cache of the device table (one query per refresh,
none per message) and the topic resolver built on it.

``DeviceRegistry`` holds device id -> ``DeviceInfo``; ``TopicResolver`` turns a topic
string into (parsed topic, device) or a ``PayloadError`` that says why not, and caches
the answer per topic string until the registry is refreshed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from core import clock
from iot import payloads, quantities
from iot.models import Device, Greenhouse
from iot.payloads import PayloadError

# refusals that a registry change can lift: not cached, so the next message asks again
_TRANSIENT = ("unknown_device", "unassigned_device")


@dataclass(frozen=True)
class DeviceInfo:
    pk: int
    device_id: str
    greenhouse_id: int | None
    greenhouse_code: str | None
    timezone: str
    names: payloads.SensorMap | None = None  # the device's sensor map (SenML names, Tasmota keys)


def sensor_names(stored: object) -> payloads.SensorMap | None:
    """``iot_devices.sensor_map`` as the decoders take it; entries that do not name a metric
    (a hand-edited row) are left out, so they quarantine as unknown rather than crash."""
    if not isinstance(stored, dict) or not stored:
        return None
    out: dict[str, tuple[str, str | None]] = {}
    for source, entry in stored.items():
        if not isinstance(entry, dict):
            continue
        metric, channel = entry.get("metric"), entry.get("channel")
        if metric != payloads.IGNORE and metric not in quantities.BY_NAME:
            continue
        out[str(source)] = (str(metric), payloads.channel_name(channel) if isinstance(channel, str) else None)
    return out or None


class DeviceLookup(Protocol):
    """What the resolver needs of a registry: a lookup and a version that changes on refresh."""

    version: int

    def lookup(self, device_id: str) -> DeviceInfo | None: ...


class DeviceRegistry:
    """device id -> DeviceInfo, loaded in one query and refreshed at most every
    ``min_refresh_s`` when an unknown device shows up (so newly registered or assigned
    devices are picked up without a restart) and every ``max_age_s`` regardless."""

    def __init__(
        self,
        session_factory: sessionmaker[Session],
        *,
        min_refresh_s: float = 2.0,
        max_age_s: float = 60.0,
    ) -> None:
        self.session_factory = session_factory
        self.min_refresh_s = min_refresh_s
        self.max_age_s = max_age_s
        self.devices: dict[str, DeviceInfo] = {}
        self.loaded_at = 0.0
        self.version = 0

    def refresh(self) -> None:
        with self.session_factory() as session:
            rows = session.execute(
                select(
                    Device.id,
                    Device.device_id,
                    Device.greenhouse_id,
                    Greenhouse.code,
                    Greenhouse.timezone,
                    Device.sensor_map,
                ).outerjoin(Greenhouse, Device.greenhouse_id == Greenhouse.id)
            ).all()
        self.devices = {
            r[1]: DeviceInfo(r[0], r[1], r[2], r[3], r[4] or clock.zone_name(), sensor_names(r[5]))
            for r in rows
        }
        self.loaded_at = time.monotonic()
        self.version += 1

    def maybe_refresh(self, *, force: bool = False) -> bool:
        age = time.monotonic() - self.loaded_at
        if age > self.max_age_s or (force and age > self.min_refresh_s):
            self.refresh()
            return True
        return False

    def lookup(self, device_id: str) -> DeviceInfo | None:
        info = self.devices.get(device_id)
        if info is None and self.maybe_refresh(force=True):
            info = self.devices.get(device_id)
        return info


class StaticDevices:
    """A fixed set of devices (tests, tools): a ``DeviceLookup`` without a database."""

    def __init__(self, devices: list[DeviceInfo]) -> None:
        self.devices = {d.device_id: d for d in devices}
        self.version = 0

    def lookup(self, device_id: str) -> DeviceInfo | None:
        return self.devices.get(device_id)


Resolved = tuple[payloads.Topic, DeviceInfo]


class TopicResolver:
    """Topic -> (parsed topic, device), cached per topic string; ``resolve`` raises
    ``PayloadError`` (unknown topic or device, device not in a greenhouse, or in another
    greenhouse than the topic says)."""

    def __init__(
        self, devices: DeviceLookup, topic_prefix: str = "farm", tasmota_prefix: str = "tele"
    ) -> None:
        self.devices = devices
        self.topic_prefix = topic_prefix
        self.tasmota_prefix = tasmota_prefix
        self._cache: dict[str, Resolved | PayloadError] = {}
        self._version = -1

    def resolve(self, topic: str) -> Resolved:
        if self._version != self.devices.version:
            self._cache.clear()
            self._version = self.devices.version
        cached = self._cache.get(topic)
        if cached is None:
            cached = self._resolve_uncached(topic)
            if self._version != self.devices.version:  # refreshed while resolving
                self._cache.clear()
                self._version = self.devices.version
            if not (isinstance(cached, PayloadError) and cached.reason in _TRANSIENT):
                self._cache[topic] = cached
        if isinstance(cached, PayloadError):
            raise cached
        return cached

    def _resolve_uncached(self, topic: str) -> Resolved | PayloadError:
        try:
            parsed = payloads.parse_topic(topic, self.topic_prefix, self.tasmota_prefix)
        except PayloadError as exc:
            return exc
        info = self.devices.lookup(parsed.device)
        if info is None:
            return PayloadError("unknown_device", parsed.device[:80])
        if info.greenhouse_id is None:
            return PayloadError("unassigned_device", parsed.device[:80])
        if parsed.greenhouse is not None and parsed.greenhouse != info.greenhouse_code:
            return PayloadError(
                "greenhouse_mismatch",
                f"{parsed.device} belongs to {info.greenhouse_code}, not {parsed.greenhouse}"[:200],
            )
        return parsed, info
