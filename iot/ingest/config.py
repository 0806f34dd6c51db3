"""What an ingester is told: broker, topics, batching, MQTT session and metrics settings;
which topics it subscribes to and which of them it ignores; its client id."""

from __future__ import annotations

import fcntl
import os
import re
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from core import clock
from iot.mqtt_client import BrokerAddress

if TYPE_CHECKING:
    from core.config import Settings


@dataclass
class IngestConfig:
    database_url: str
    mqtt_host: str = "127.0.0.1"
    mqtt_port: int = 1883
    mqtt_username: str | None = None
    mqtt_password: str | None = None
    mqtt_tls: bool = False
    topic_prefix: str = "farm"
    tasmota_prefix: str = "tele"
    client_id: str = "tianyuan-ingester"
    shared_group: str | None = None
    # hand a stopped ingester's session over: connect as ``client_id``, unsubscribe at once
    # (nothing new is routed to it), store what it had queued, then end the session
    take_over: bool = False
    take_over_idle_s: float = 3.0  # ... once nothing has come for this long
    unknown_device_policy: str = "quarantine"  # quarantine | provision
    batch_size: int = 5000  # bigger batches dirty fewer index pages per row (SQLite: ~2x at 5000 vs 1000)
    batch_ms: int = 100
    # ... and at most this many payload bytes (big SenML packs: memory follows the readings)
    batch_bytes: int = 2 * 1024 * 1024
    # MQTT 5 Receive Maximum: unacknowledged messages the broker may send us; 0: automatic
    # (20,000, at least two batches). The reader holds at most this many messages.
    receive_maximum: int = 0
    session_expiry_s: int = 7 * 24 * 3600
    keepalive_s: int = 30
    metrics_port: int | None = None  # Prometheus text at http://127.0.0.1:PORT/metrics
    metrics_host: str = "127.0.0.1"
    log_every_s: float = 10.0
    # /health fails (503) when messages have waited this long and nothing was committed meanwhile
    health_stall_s: float = 60.0
    # a quarantined payload keeps at most this many bytes (plus its original size and SHA-256)
    quarantine_max_bytes: int = 64 * 1024
    last_seen_every_s: float = 60.0
    irrigation_max_s: int = 12 * 3600  # the longest run a stop without event id may close
    # decode and write in a child process, so reading MQTT and writing the database use two
    # cores (threads would share one: the GIL). False: in this process (tests, custom hooks).
    writer_process: bool = True
    # the zone of local times (the writer process configures core.clock with it)
    timezone: str = field(default_factory=clock.zone_name)

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> IngestConfig:
        host, port, user, password, tls = settings.mqtt_host_port
        values: dict[str, Any] = dict(
            database_url=settings.database_url,
            mqtt_host=host,
            mqtt_port=port,
            mqtt_username=user,
            mqtt_password=password,
            mqtt_tls=tls,
            topic_prefix=settings.mqtt_topic_prefix,
            client_id=settings.mqtt_client_id,
            unknown_device_policy=settings.unknown_device_policy,
            timezone=settings.timezone,
            health_stall_s=float(settings.ingest_health_stall_s),
            quarantine_max_bytes=settings.iot_quarantine_max_bytes,
            irrigation_max_s=settings.irrigation_max_hours * 3600,
            batch_bytes=settings.ingest_batch_bytes,
            receive_maximum=settings.ingest_receive_maximum,
        )
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    @property
    def broker(self) -> BrokerAddress:
        return BrokerAddress(
            self.mqtt_host, self.mqtt_port, self.mqtt_username, self.mqtt_password, self.mqtt_tls
        )

    @property
    def receive_maximum_sent(self) -> int:
        """Receive Maximum as sent to the broker: as set (``INGEST_RECEIVE_MAXIMUM``), or
        20,000 and at least two batches, at most MQTT's limit."""
        if self.receive_maximum:
            return min(self.receive_maximum, 65535)
        return min(max(20000, 2 * self.batch_size), 65535)

    def filters(self) -> list[str]:
        """Everything under the two prefixes: a topic of no known shape is received and
        quarantined (``unknown_topic``), not silently missed. The broker's ACL keeps each
        device inside its own topics, so this lets no one reach the ingester who could not
        already; what is not device data (``ignores``) is dropped before the writer."""
        base = [f"{self.topic_prefix}/#", f"{self.tasmota_prefix}/#"]
        if self.shared_group:
            return [f"$share/{self.shared_group}/{f}" for f in base]
        return base

    def all_filters(self) -> list[str]:
        """Every filter an older or differently configured session of this id may hold
        (shared or not, this release's or the narrower ones before): what a take-over
        unsubscribes."""
        base = [
            f"{self.topic_prefix}/#",
            f"{self.tasmota_prefix}/#",
            f"{self.topic_prefix}/+/+/+",
            f"{self.tasmota_prefix}/+/SENSOR",
        ]
        shared = [f"$share/{self.shared_group}/{f}" for f in base] if self.shared_group else []
        return base + shared

    def ignores(self, topic: str) -> bool:
        """Not device data: alert events (``<prefix>/<greenhouse>/alerts``, published by the
        ingester, the alert checker and the web) and Tasmota's own housekeeping
        (``tele/<device>/STATE``, ``LWT``, ``INFO1``...). Called only for topics ending in one
        of ``IGNORED_SUFFIXES``."""
        parts = topic.split("/")
        if len(parts) != 3:
            return False
        if parts[0] == self.topic_prefix:
            return parts[2] == "alerts"
        return parts[0] == self.tasmota_prefix and parts[2] in TASMOTA_HOUSEKEEPING


# Tasmota publishes these under tele/<device>/ besides SENSOR (state, last will, boot info)
TASMOTA_HOUSEKEEPING = frozenset({"STATE", "LWT", "INFO1", "INFO2", "INFO3", "UPTIME", "MARGINS", "RESULT"})
IGNORED_SUFFIXES = ("/alerts", *(f"/{name}" for name in sorted(TASMOTA_HOUSEKEEPING)))


# --- client ids ---------------------------------------------------------------------------

DEFAULT_CLIENT_ID = "tianyuan-ingester"
MAX_SLOTS = 64


class ClientIdInUse(RuntimeError):
    """Another ingester on this host runs with the client id (it would be kicked off)."""


def _lock(lock_dir: Path, client_id: str) -> IO[str] | None:
    lock_dir.mkdir(parents=True, exist_ok=True)
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", client_id)[:200]
    f = open(lock_dir / f"{name}.lock", "a+")  # noqa: SIM115 - held for the life of the process
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.close()
        return None
    f.seek(0)
    f.truncate()
    f.write(f"{os.getpid()}\n")
    f.flush()
    return f


def claim_client_id(
    lock_dir: Path, *, client_id: str | None, shared_group: str | None, base: str = DEFAULT_CLIENT_ID
) -> tuple[str, IO[str]]:
    """This process's client id and the lock that keeps it (hold it until the process ends).

    A given ``client_id`` is used as it is; so is ``base`` without a shared group (one session
    receives everything: a second ingester with it on this host is refused, not left to kick
    the first). In a shared group each process takes the lowest free numbered id,
    ``<base>-<group>-<host>-<n>``: two started at once get two ids, and a restarted one gets
    its old id back, with the share the broker queued for it meanwhile.
    Raises ``ClientIdInUse``."""
    if client_id or not shared_group:
        cid = client_id or base
        lock = _lock(lock_dir, cid)
        if lock is None:
            raise ClientIdInUse(f"another ingester on this host runs as MQTT client {cid!r}")
        return cid, lock
    host = re.sub(r"[^A-Za-z0-9_.-]", "_", socket.gethostname())[:60]
    for n in range(1, MAX_SLOTS + 1):
        cid = f"{base}-{shared_group}-{host}-{n}"
        lock = _lock(lock_dir, cid)
        if lock is not None:
            return cid, lock
    raise ClientIdInUse(f"{MAX_SLOTS} ingesters of group {shared_group!r} already run on this host")
