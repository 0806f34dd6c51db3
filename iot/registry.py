"""Greenhouses, devices and their broker credentials: services (take a session, never
commit). The ingester's cache of the device table is ``iot.ingest.devices``.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from core import audit, clock
from core.errors import N_, DomainError
from core.models import User
from iot import broker_access, quantities
from iot.models import Device, Greenhouse
from iot.payloads import CHANNEL_RE, CODE_RE, IGNORE, SOURCE_RE, valid_device_id  # the one format of each

KINDS = ("sensor", "controller", "camera")


class RegistryError(DomainError):
    """A greenhouse or device operation was refused."""


# --- greenhouses --------------------------------------------------------------------


def create_greenhouse(
    session: Session,
    code: str,
    name: str,
    *,
    owner: User | None = None,
    crop: str | None = None,
    area_m2: float | None = None,
    timezone: str | None = None,
) -> Greenhouse:
    code = (code or "").strip()
    if not CODE_RE.fullmatch(code):
        raise RegistryError(N_("greenhouse code must be 1-40 letters, digits, '_', '.' or '-'"))
    if session.scalar(select(Greenhouse.id).where(Greenhouse.code == code)):
        raise RegistryError(N_("greenhouse %(code)s already exists"), code=code)
    timezone = timezone or clock.zone_name()
    _check_timezone(timezone)
    _check_area(area_m2)
    gh = Greenhouse(
        code=code, name=(name or code).strip(), crop=crop or None, area_m2=area_m2, timezone=timezone
    )
    set_owner(gh, owner)
    session.add(gh)
    session.flush()
    from iot.alerts import ensure_default_rules  # alerts import the registry's models only

    ensure_default_rules(session, gh)  # the crop's default alert rules, which the farmer can adjust
    return gh


def set_owner(gh: Greenhouse, owner: User | None) -> None:
    """The owner is a farmer; the greenhouse belongs to the farmer's household."""
    gh.owner_id = owner.id if owner else None
    gh.household_id = owner.household_id if owner else None


def _check_timezone(tz: str) -> None:
    if not clock.valid_timezone(tz):
        raise RegistryError(N_("unknown time zone %(tz)s (e.g. Asia/Shanghai)"), tz=tz[:60])


def _check_area(area_m2: float | None) -> None:
    if area_m2 is not None and not 0 <= area_m2 <= 10_000_000:  # NaN and infinities too
        raise RegistryError(N_("the area must be a number of square metres, from 0 to 10,000,000"))


def update_greenhouse(session: Session, gh: Greenhouse, **fields) -> Greenhouse:
    if "area_m2" in fields:
        _check_area(fields["area_m2"])
    if "timezone" in fields:
        _check_timezone(fields["timezone"])
    if "owner" in fields:
        set_owner(gh, fields.pop("owner"))
    for key in ("name", "crop", "area_m2", "timezone"):
        if key in fields:
            setattr(gh, key, fields[key])
    session.flush()
    return gh


def get_greenhouse(session: Session, code: str) -> Greenhouse | None:
    return session.scalar(select(Greenhouse).where(Greenhouse.code == code))


def list_greenhouses(session: Session) -> list[Greenhouse]:
    return list(session.scalars(select(Greenhouse).order_by(Greenhouse.code)))


# --- devices ------------------------------------------------------------------------


def create_device(
    session: Session,
    device_id: str,
    greenhouse: Greenhouse | None,
    *,
    kind: str = "sensor",
    name: str | None = None,
) -> Device:
    device_id = (device_id or "").strip()
    if not valid_device_id(device_id):
        raise RegistryError(N_("device id must be 1-80 letters, digits, '_', '.' or '-'"))
    if kind not in KINDS:
        raise RegistryError(N_("kind must be one of %(kinds)s"), kinds=", ".join(KINDS))
    if session.scalar(select(Device.id).where(Device.device_id == device_id)):
        raise RegistryError(N_("device %(device)s already exists"), device=device_id)
    device = Device(
        device_id=device_id,
        greenhouse_id=greenhouse.id if greenhouse else None,
        kind=kind,
        name=name or None,
        provisioned=False,
    )
    session.add(device)
    session.flush()
    return device


def get_device(session: Session, device_id: str) -> Device | None:
    return session.scalar(select(Device).where(Device.device_id == device_id))


def assign_device(
    session: Session, device: Device, greenhouse: Greenhouse | None, kind: str | None = None
) -> Device:
    """Put a device (e.g. an auto-provisioned one) into a greenhouse."""
    if kind is not None:
        if kind not in KINDS:
            raise RegistryError(N_("kind must be one of %(kinds)s"), kinds=", ".join(KINDS))
        device.kind = kind
    device.greenhouse_id = greenhouse.id if greenhouse else None
    if greenhouse is not None:
        device.provisioned = False
    session.flush()
    return device


def list_devices(session: Session, *, unassigned: bool = False) -> list[Device]:
    query = select(Device).order_by(Device.device_id)
    if unassigned:
        query = query.where(Device.greenhouse_id.is_(None))
    return list(session.scalars(query))


# --- a device's own sensor names ------------------------------------------------------

MAX_SENSOR_NAMES = 64


def sensor_names(device: Device) -> dict[str, dict[str, str]]:
    """The device's sensor map: source name -> {"metric": ..., "channel": ... (if set)}."""
    return dict(sorted((device.sensor_map or {}).items()))


def set_sensor_name(
    session: Session,
    device: Device,
    source: str,
    metric: str,
    channel: str | None = None,
    *,
    user_id: int | None = None,
) -> dict[str, str]:
    """Map one of the device's own sensor names to a canonical metric (or ``ignore``).

    ``source``: a SenML record name with its base name (``urn:dev:ow:10e2073a01080063``) or a
    Tasmota ``Driver.Key`` (``ANALOG.A0``). ``channel``: the sensor's name among the device's
    readings (default: the SenML name, or the Tasmota driver). Audited; the ingester picks
    the change up within a minute, and quarantined messages can then be replayed."""
    source = (source or "").strip()
    metric = (metric or "").strip()
    channel = (channel or "").strip() or None
    if not SOURCE_RE.fullmatch(source):
        raise RegistryError(
            N_("a sensor name is 1-120 letters, digits, '_', '.', ':', '/' or '-', first a letter or digit")
        )
    if metric != IGNORE and metric not in quantities.BY_NAME:
        raise RegistryError(
            N_("unknown metric %(metric)s (one of %(metrics)s, or ignore)"),
            metric=metric[:40],
            metrics=", ".join(quantities.BY_NAME),
        )
    if channel is not None and not CHANNEL_RE.fullmatch(channel):
        raise RegistryError(N_("a channel is 1-64 letters, digits, '_', '.', ':', '/' or '-'"))
    current = dict(device.sensor_map or {})
    if source not in current and len(current) >= MAX_SENSOR_NAMES:
        raise RegistryError(N_("a device has at most %(n)d sensor names"), n=MAX_SENSOR_NAMES)
    entry = {"metric": metric} | ({"channel": channel} if channel else {})
    before = current.get(source)
    current[source] = entry
    device.sensor_map = current  # a new dict: the JSON column sees the change
    audit.record(
        session,
        "iot.device.sensor_name",
        device,
        user_id=user_id,
        details={"device": device.device_id, "source": source, "before": before, "after": entry},
    )
    session.flush()
    return entry


def remove_sensor_name(session: Session, device: Device, source: str, *, user_id: int | None = None) -> None:
    """Forget one of the device's sensor names (audited)."""
    current = dict(device.sensor_map or {})
    if source not in current:
        raise RegistryError(
            N_("device %(device)s has no sensor name %(source)s"),
            device=device.device_id,
            source=source[:120],
        )
    before = current.pop(source)
    device.sensor_map = current or None
    audit.record(
        session,
        "iot.device.sensor_name",
        device,
        user_id=user_id,
        details={"device": device.device_id, "source": source, "before": before, "after": None},
    )
    session.flush()


# --- broker credentials -------------------------------------------------------------


mosquitto_hash = broker_access.mosquitto_hash


def issue_credentials(session: Session, device: Device) -> str:
    """A new random MQTT password for ``device`` (shown once); its hash is stored. The broker
    files are written from the database by ``iot.broker_access.write_broker_files``."""
    broker_access.check_device_login_name(device.device_id)
    password = broker_access.new_password()
    device.password_hash = mosquitto_hash(password)
    session.flush()
    return password
