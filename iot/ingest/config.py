"""What an ingester is told: broker, topics, batching, MQTT session and metrics settings."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

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
    unknown_device_policy: str = "quarantine"  # quarantine | provision
    batch_size: int = 5000  # bigger batches dirty fewer index pages per row (SQLite: ~2x at 5000 vs 1000)
    batch_ms: int = 100
    receive_maximum: int = 20000  # MQTT 5: unacknowledged messages the broker may send us (> batch_size)
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
        """Receive Maximum as sent to the broker: at least two batches, at most MQTT's limit."""
        return min(max(self.receive_maximum, 2 * self.batch_size), 65535)

    def filters(self) -> list[str]:
        base = [f"{self.topic_prefix}/+/+/+", f"{self.tasmota_prefix}/+/SENSOR"]
        if self.shared_group:
            return [f"$share/{self.shared_group}/{f}" for f in base]
        return base
