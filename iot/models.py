"""Tables of the greenhouse domain (iot_*).

Timestamps of readings and rollup buckets are integer epoch seconds (UTC): compact,
fast to index and compare, and identical on SQLite and PostgreSQL. Metrics are small
integer ids from ``iot.quantities`` (the canonical metric registry).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Float,
    ForeignKey,
    Index,
    Integer,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

# alerts refer to users (who acknowledged): the users table must be in the metadata wherever
# iot.models is used alone (the ingester's processes), or the ORM cannot order a flush of
# an alert. (Greenhouses refer to coop households too; nothing outside the app writes them.)
import core.models  # noqa: F401
from core import clock
from core.db import Base, UTCDateTime, utcnow


class Greenhouse(Base):
    __tablename__ = "iot_greenhouses"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(40), unique=True)
    name: Mapped[str] = mapped_column(String(120))
    crop: Mapped[str | None] = mapped_column(String(60))  # key into default alert rules, e.g. "peach"
    area_m2: Mapped[float | None] = mapped_column(Float)
    timezone: Mapped[str] = mapped_column(String(40), default=clock.zone_name)
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), index=True)
    household_id: Mapped[int | None] = mapped_column(ForeignKey("coop_households.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    devices: Mapped[list[Device]] = relationship(back_populates="greenhouse")


class Device(Base):
    __tablename__ = "iot_devices"

    id: Mapped[int] = mapped_column(primary_key=True)
    device_id: Mapped[str] = mapped_column(String(80), unique=True)  # the id used in MQTT topics
    greenhouse_id: Mapped[int | None] = mapped_column(
        ForeignKey("iot_greenhouses.id", ondelete="SET NULL"), index=True
    )
    kind: Mapped[str] = mapped_column(String(20), default="sensor")  # sensor | controller | camera
    name: Mapped[str | None] = mapped_column(String(120))
    password_hash: Mapped[str | None] = mapped_column(String(255))  # MQTT credentials (broker side)
    online: Mapped[bool] = mapped_column(default=False)
    last_seen_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    provisioned: Mapped[bool] = mapped_column(default=False)  # auto-provisioned, awaiting assignment
    # the device's own sensor names: {"<SenML name or Tasmota Driver.Key>": {"metric": "<canonical
    # metric or ignore>", "channel": "<channel>" (optional)}}; see iot.registry.set_sensor_name
    sensor_map: Mapped[dict | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    greenhouse: Mapped[Greenhouse | None] = relationship(back_populates="devices")


class BrokerUser(Base):
    """A service's MQTT login (the ingesters, the alert publishers, the simulator): kept here
    beside the devices' so that writing the broker's files never loses one
    (``iot.broker_access``). The password itself is shown once and never stored."""

    __tablename__ = "iot_broker_users"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(80), unique=True)
    role: Mapped[str] = mapped_column(String(20))  # ingester | publisher | simulator
    password_hash: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Reading(Base):
    """One sensor value. Its identity is (device, metric, channel, ts, us), the unique key:
    a redelivered message changes nothing, and no two distinct readings collapse: two
    probes of one kind on one device differ in ``channel``, two samples within a second in
    ``us`` (docs/mqtt.md, "Reading identity")."""

    __tablename__ = "iot_readings"
    __table_args__ = (
        UniqueConstraint("device_id", "metric_id", "ts", "us", "channel"),
        Index("ix_iot_readings_gh_metric_ts", "greenhouse_id", "metric_id", "ts"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    device_id: Mapped[int] = mapped_column(ForeignKey("iot_devices.id", ondelete="CASCADE"))
    greenhouse_id: Mapped[int] = mapped_column(ForeignKey("iot_greenhouses.id", ondelete="CASCADE"))
    metric_id: Mapped[int] = mapped_column(SmallInteger)
    ts: Mapped[int] = mapped_column(BigInteger)  # epoch seconds, UTC (device time when sent)
    # microseconds within ``ts`` (0..999999): sub-second samples, and arrival times made unique
    us: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # the sensor on the device: "" for its only one, else the Tasmota driver (``DS18B20-1``),
    # the SenML name's base part or the device's sensor map, or the native ``sensor``
    channel: Mapped[str] = mapped_column(String(64), default="", server_default="")
    value: Mapped[float] = mapped_column(Float)


class _RollupColumns:
    """Columns shared by the hourly and daily rollups: count, sum, min and max per bucket."""

    greenhouse_id: Mapped[int] = mapped_column(
        ForeignKey("iot_greenhouses.id", ondelete="CASCADE"), primary_key=True
    )
    metric_id: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    bucket: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    count: Mapped[int] = mapped_column(Integer)
    sum: Mapped[float] = mapped_column(Float)
    min: Mapped[float] = mapped_column(Float)
    max: Mapped[float] = mapped_column(Float)


class HourlyRollup(_RollupColumns, Base):
    """Aggregates of readings per greenhouse, metric and hour (bucket = epoch seconds of the hour)."""

    __tablename__ = "iot_rollups_hourly"


class DailyRollup(_RollupColumns, Base):
    """Aggregates per greenhouse, metric and local day (bucket = epoch seconds of local midnight)."""

    __tablename__ = "iot_rollups_daily"


class IrrigationEvent(Base):
    """One irrigation or fertigation run, complete or paired from start/stop messages.

    Paired in the database (``iot.irrigation.store_event``), whichever ingester gets which
    message: by the controller's ``event_id`` (unique per device), or without one by device,
    zone and start second. A row may await its stop (``ended_at`` None) or, with an
    ``event_id``, its start (``started_at`` None: a stop that came first; such a row counts
    nowhere until its start arrives).
    """

    __tablename__ = "iot_irrigation_events"
    __table_args__ = (
        UniqueConstraint("device_id", "event_id"),
        Index("ix_iot_irrigation_gh_started", "greenhouse_id", "started_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    device_id: Mapped[int] = mapped_column(ForeignKey("iot_devices.id", ondelete="CASCADE"))
    greenhouse_id: Mapped[int] = mapped_column(ForeignKey("iot_greenhouses.id", ondelete="CASCADE"))
    event_id: Mapped[str | None] = mapped_column(String(64))  # the controller's id of the run
    zone: Mapped[str | None] = mapped_column(String(40))
    started_at: Mapped[int | None] = mapped_column(BigInteger)  # epoch seconds UTC; None: stop came first
    ended_at: Mapped[int | None] = mapped_column(BigInteger)  # None while a start awaits its stop
    water_l: Mapped[float | None] = mapped_column(Float)
    ec: Mapped[float | None] = mapped_column(Float)  # mS/cm of the nutrient solution
    ph: Mapped[float | None] = mapped_column(Float)
    fertilizer: Mapped[dict | None] = mapped_column(JSON)  # {"tank_a": 1.2, ...} litres or kg by tank
    # without event_id: the start's and the stop's own values ({"start": {...}, "stop": {...}}),
    # so a stop can move to the run it belongs to when a later start arrives
    parts: Mapped[dict | None] = mapped_column(JSON)


class QuarantinedMessage(Base):
    """A message that could not be stored, kept with its reason so it can be replayed.

    One row per distinct (topic, payload) still waiting: ``sha256`` is the SHA-256 of the
    topic, a NUL byte and the whole payload, unique among rows not yet replayed, so a
    redelivery (a crash between the commit and the acknowledgement) or a repeat counts in
    ``seen_count`` / ``last_seen_at`` instead of adding a row. ``payload`` keeps at most
    the configured limit (``IOT_QUARANTINE_MAX_BYTES``); ``size`` is the original length
    (larger than ``len(payload)``: truncated, not replayable). Rows from before issue 15
    have no ``sha256``/``size``.
    """

    __tablename__ = "iot_quarantine"
    __table_args__ = (
        Index(
            "uq_iot_quarantine_waiting_sha256",
            "sha256",
            unique=True,
            sqlite_where=text("replayed_at IS NULL"),
            postgresql_where=text("replayed_at IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    topic: Mapped[str] = mapped_column(String(300))
    payload: Mapped[bytes] = mapped_column()
    reason: Mapped[str] = mapped_column(String(60), index=True)  # machine code, e.g. "unknown_device"
    detail: Mapped[str | None] = mapped_column(Text)
    replayed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    sha256: Mapped[str | None] = mapped_column(String(64))  # hex, of topic + NUL + the whole payload
    size: Mapped[int | None] = mapped_column(Integer)  # the payload's original length in bytes
    seen_count: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    last_seen_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    @property
    def truncated(self) -> bool:
        """Only the first bytes of the payload were kept (it cannot be replayed)."""
        return self.size is not None and self.size > len(self.payload)


# --- alerts (issue 4) ---
# Also the per-(greenhouse, metric) latest value, kept by iot.rollups.apply_readings so
# the overview page is one indexed read instead of a max() over millions of readings.


class LatestReading(Base):
    """The newest reading per greenhouse and metric (maintained with the rollups)."""

    __tablename__ = "iot_latest"

    greenhouse_id: Mapped[int] = mapped_column(
        ForeignKey("iot_greenhouses.id", ondelete="CASCADE"), primary_key=True
    )
    metric_id: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    ts: Mapped[int] = mapped_column(BigInteger)
    value: Mapped[float] = mapped_column(Float)


class AlertRule(Base):
    """A rule per greenhouse (and metric): when it holds long enough, an Alert opens.

    kind: ``above`` / ``below`` (threshold, with hysteresis to close and a duration to
    open), ``rate`` (the value changes by at least ``threshold`` within ``window_s``),
    ``silent`` (no reading of the metric for ``duration_s``), ``offline`` (a device of
    the greenhouse offline or unheard for ``duration_s``; no metric).
    """

    __tablename__ = "iot_alert_rules"
    __table_args__ = (Index("ix_iot_alert_rules_gh_metric", "greenhouse_id", "metric_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    greenhouse_id: Mapped[int] = mapped_column(ForeignKey("iot_greenhouses.id", ondelete="CASCADE"))
    metric_id: Mapped[int | None] = mapped_column(SmallInteger)
    kind: Mapped[str] = mapped_column(String(10))  # above | below | rate | silent | offline
    threshold: Mapped[float | None] = mapped_column(Float)
    hysteresis: Mapped[float] = mapped_column(Float, default=0.0)
    duration_s: Mapped[int] = mapped_column(Integer, default=0)
    window_s: Mapped[int] = mapped_column(Integer, default=0)  # rate rules only
    severity: Mapped[str] = mapped_column(String(10), default="warning")  # warning | critical
    enabled: Mapped[bool] = mapped_column(default=True)
    # evaluation state: since when the condition holds (not yet long enough), newest ts seen
    pending_since: Mapped[int | None] = mapped_column(BigInteger)
    last_ts: Mapped[int | None] = mapped_column(BigInteger)


class Alert(Base):
    """An alert opened by a rule: open → (acknowledged) → closed when the condition clears."""

    __tablename__ = "iot_alerts"
    __table_args__ = (Index("ix_iot_alerts_gh_closed", "greenhouse_id", "closed_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    rule_id: Mapped[int | None] = mapped_column(
        ForeignKey("iot_alert_rules.id", ondelete="SET NULL"), index=True
    )
    greenhouse_id: Mapped[int] = mapped_column(ForeignKey("iot_greenhouses.id", ondelete="CASCADE"))
    metric_id: Mapped[int | None] = mapped_column(SmallInteger)
    device_id: Mapped[int | None] = mapped_column(ForeignKey("iot_devices.id", ondelete="SET NULL"))
    kind: Mapped[str] = mapped_column(String(10))
    severity: Mapped[str] = mapped_column(String(10), default="warning")
    threshold: Mapped[float | None] = mapped_column(Float)
    value: Mapped[float | None] = mapped_column(Float)  # the value that opened it
    peak: Mapped[float | None] = mapped_column(Float)  # the worst value while open
    opened_at: Mapped[int] = mapped_column(BigInteger)  # epoch seconds (reading time)
    closed_at: Mapped[int | None] = mapped_column(BigInteger)
    acknowledged_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    acknowledged_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))

    @property
    def status(self) -> str:
        if self.closed_at is not None:
            return "closed"
        return "acknowledged" if self.acknowledged_at is not None else "open"


# Covering indexes: a chart reads a run of buckets of one series straight from the index,
# without a lookup into the table per bucket (about 20-30% faster on SQLite).
# irrigation events without an id: one per device, zone and start second (a redelivered start
# is absorbed; two valves opened in the same second are two runs: found by review)
Index(
    "ux_iot_irrigation_device_zone_started",
    IrrigationEvent.device_id,
    func.coalesce(IrrigationEvent.zone, ""),
    IrrigationEvent.started_at,
    unique=True,
    sqlite_where=text("event_id IS NULL"),
    postgresql_where=text("event_id IS NULL"),
)
Index(
    "ix_iot_rollups_hourly_series",
    HourlyRollup.greenhouse_id,
    HourlyRollup.metric_id,
    HourlyRollup.bucket,
    HourlyRollup.count,
    HourlyRollup.sum,
    HourlyRollup.min,
    HourlyRollup.max,
)
Index(
    "ix_iot_rollups_daily_series",
    DailyRollup.greenhouse_id,
    DailyRollup.metric_id,
    DailyRollup.bucket,
    DailyRollup.count,
    DailyRollup.sum,
    DailyRollup.min,
    DailyRollup.max,
)
