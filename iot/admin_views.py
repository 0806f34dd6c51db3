"""Greenhouse and device administration: register greenhouses and devices, assign
auto-provisioned devices, issue MQTT credentials, list and replay quarantined messages.

Admins manage; officials may look (read-only).
"""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from flask_wtf import FlaskForm
from sqlalchemy import select
from wtforms import FloatField, SelectField, StringField
from wtforms.validators import DataRequired, Length, NumberRange, Optional

from core import clock
from core.models import User
from core.web import attempt, database, db_session, role_required, settings
from iot import quantities, registry
from iot import quarantine as quarantine_service
from iot import series as series_service
from iot.models import Device, Greenhouse
from iot.payloads import IGNORE

bp = Blueprint("iot_admin", __name__, url_prefix="/iot/admin")

VIEWERS = ("admin", "official")
KIND_LABELS = {"sensor": _l("Sensor"), "controller": _l("Fertigation controller"), "camera": _l("Camera")}
REASON_LABELS = {
    "malformed_json": _l("Malformed JSON"),
    "bad_payload": _l("Payload not understood"),
    "unknown_metric": _l("Unknown metric"),
    "unknown_unit": _l("Unknown unit"),
    "out_of_range": _l("Value outside physical range"),
    "future_timestamp": _l("Timestamp in the future"),
    "bad_timestamp": _l("Invalid timestamp"),
    "unknown_topic": _l("Unknown topic"),
    "unknown_device": _l("Unknown device"),
    "bad_device_id": _l("Device id not allowed"),
    "unassigned_device": _l("Device not assigned to a greenhouse"),
    "greenhouse_mismatch": _l("Device belongs to another greenhouse"),
    "unmatched_stop": _l("Irrigation stop without start"),
    "event_id_conflict": _l("Irrigation event id names another run"),
    "store_error": _l("Could not be stored"),
}


class GreenhouseForm(FlaskForm):
    code = StringField(
        _l("Greenhouse code"),
        validators=[DataRequired(), Length(max=40)],
        description=_l("Used in MQTT topics: letters, digits, '-', '_' or '.'"),
    )
    name = StringField(_l("Greenhouse name"), validators=[DataRequired(), Length(max=120)])
    owner = SelectField(_l("Owner (farmer)"), coerce=int, validators=[Optional()])
    crop = StringField(
        _l("Crop"), validators=[Optional(), Length(max=60)], description=_l("e.g. peach, cucumber")
    )
    area_m2 = FloatField(_l("Area (m²)"), validators=[Optional(), NumberRange(min=0)])
    timezone = StringField(
        _l("Time zone"), default=clock.zone_name, validators=[DataRequired(), Length(max=40)]
    )


class DeviceForm(FlaskForm):
    device_id = StringField(
        _l("Device id"),
        validators=[DataRequired(), Length(max=80)],
        description=_l("The id the device uses in its MQTT topics"),
    )
    greenhouse = SelectField(_l("Greenhouse"), coerce=int)
    kind = SelectField(_l("Kind"), choices=[(k, v) for k, v in KIND_LABELS.items()])
    name = StringField(_l("Device name"), validators=[Optional(), Length(max=120)])


class SensorNameForm(FlaskForm):
    source = StringField(
        _l("Sensor name sent by the device"),
        validators=[DataRequired(), Length(max=120)],
        description=_l("A SenML name with its base name, or a Tasmota Driver.Key such as ANALOG.A0"),
    )
    metric = SelectField(_l("Metric"))
    channel = StringField(
        _l("Channel"),
        validators=[Optional(), Length(max=64)],
        description=_l("Optional: which of the device's sensors it is, e.g. probe-1"),
    )


def metric_label(metric_id: int | None) -> str:
    """The metric's label in the user's language (the labels are ``iot.views.METRIC_LABELS``'
    msgids; views are not imported by other views)."""
    m = quantities.BY_ID.get(metric_id) if metric_id else None
    return _(m.label) if m else ""


def _metric_choices() -> list[tuple[str, str]]:
    return [(m.name, f"{metric_label(m.id)} ({m.name})") for m in quantities.METRICS] + [
        (IGNORE, _("Ignore (not stored)"))
    ]


def _owner_choices() -> list[tuple[int, str]]:
    farmers = db_session().scalars(select(User).where(User.role == "farmer").order_by(User.username))
    return [(0, "—")] + [(u.id, f"{u.display_name} ({u.username})") for u in farmers]


def _greenhouse_choices() -> list[tuple[int, str]]:
    return [(0, _("Unassigned"))] + [
        (g.id, f"{g.code} · {g.name}") for g in registry.list_greenhouses(db_session())
    ]


def _require_admin() -> None:
    if current_user.role != "admin":
        abort(403)


@bp.get("/")
@role_required(*VIEWERS)
def index():
    """Greenhouses, devices (unassigned first) and a quarantine summary."""
    s = db_session()
    greenhouses = registry.list_greenhouses(s)
    devices = sorted(registry.list_devices(s), key=lambda d: (d.greenhouse_id is not None, d.device_id))
    owners = {u.id: u for u in s.scalars(select(User).where(User.role == "farmer"))}
    by_id = {g.id: g for g in greenhouses}
    quarantined = quarantine_service.pending_count(s)
    gh_form, dev_form = GreenhouseForm(prefix="gh"), DeviceForm(prefix="dev")
    gh_form.owner.choices = _owner_choices()
    dev_form.greenhouse.choices = _greenhouse_choices()
    return render_template(
        "iot/admin/index.html",
        greenhouses=greenhouses,
        devices=devices,
        owners=owners,
        by_id=by_id,
        quarantined=quarantined,
        gh_form=gh_form,
        dev_form=dev_form,
        kinds=KIND_LABELS,
        can_edit=current_user.role == "admin",
    )


@bp.post("/greenhouses")
@role_required("admin")
def add_greenhouse():
    """Register a greenhouse."""
    form = GreenhouseForm(prefix="gh")
    form.owner.choices = _owner_choices()
    if form.validate_on_submit():
        owner = db_session().get(User, form.owner.data) if form.owner.data else None
        with attempt() as result:
            gh = registry.create_greenhouse(
                db_session(),
                form.code.data or "",
                form.name.data or "",
                owner=owner,
                crop=form.crop.data,
                area_m2=form.area_m2.data,
                timezone=(form.timezone.data or "").strip(),
            )
        if result.ok:
            flash(_("Greenhouse %(code)s registered.", code=gh.code), "success")
    else:
        for errors in form.errors.values():
            flash("; ".join(str(e) for e in errors), "error")
    return redirect(url_for("iot_admin.index"))


@bp.route("/greenhouses/<code>", methods=["GET", "POST"])
@role_required(*VIEWERS)
def greenhouse(code: str):
    """One greenhouse: details (editable by admins) and its devices."""
    s = db_session()
    gh = registry.get_greenhouse(s, code)
    if gh is None:
        abort(404)
    form = GreenhouseForm(obj=gh)
    form.owner.choices = _owner_choices()
    if request.method == "GET":
        form.owner.data = gh.owner_id or 0
    if request.method == "POST":
        _require_admin()
        form.code.data = gh.code  # the code is fixed: devices publish under it
        if form.validate_on_submit():
            owner = s.get(User, form.owner.data) if form.owner.data else None
            with attempt(flash_error=False) as result:
                registry.update_greenhouse(
                    s,
                    gh,
                    name=form.name.data,
                    crop=form.crop.data or None,
                    area_m2=form.area_m2.data,
                    timezone=(form.timezone.data or "").strip(),
                    owner=owner,
                )
            if result.ok:
                flash(_("Greenhouse %(code)s saved.", code=gh.code), "success")
                return redirect(url_for("iot_admin.greenhouse", code=gh.code))
            form.timezone.errors = [result.error or ""]
    devices = [d for d in registry.list_devices(s) if d.greenhouse_id == gh.id]
    return render_template(
        "iot/admin/greenhouse.html",
        gh=gh,
        form=form,
        devices=devices,
        kinds=KIND_LABELS,
        can_edit=current_user.role == "admin",
    )


@bp.post("/devices")
@role_required("admin")
def add_device():
    """Register a device, in a greenhouse or in the unassigned pool."""
    form = DeviceForm(prefix="dev")
    form.greenhouse.choices = _greenhouse_choices()
    if form.validate_on_submit():
        gh = db_session().get(Greenhouse, form.greenhouse.data) if form.greenhouse.data else None
        with attempt() as result:
            device = registry.create_device(
                db_session(), form.device_id.data or "", gh, kind=form.kind.data, name=form.name.data
            )
        if result.ok:
            flash(_("Device %(id)s registered.", id=device.device_id), "success")
    else:
        for errors in form.errors.values():
            flash("; ".join(str(e) for e in errors), "error")
    return redirect(url_for("iot_admin.index"))


def _device_or_404(device_id: str) -> Device:
    device = registry.get_device(db_session(), device_id)
    if device is None:
        abort(404)
    return device


@bp.route("/devices/<device_id>", methods=["GET", "POST"])
@role_required(*VIEWERS)
def device(device_id: str):
    """One device: state, greenhouse assignment (admins) and MQTT credentials."""
    d = _device_or_404(device_id)
    form = DeviceForm(obj=d)
    form.greenhouse.choices = _greenhouse_choices()
    if request.method == "GET":
        form.greenhouse.data = d.greenhouse_id or 0
    if request.method == "POST":
        _require_admin()
        form.device_id.data = d.device_id
        if form.validate_on_submit():
            gh = db_session().get(Greenhouse, form.greenhouse.data) if form.greenhouse.data else None
            with attempt() as result:
                registry.assign_device(db_session(), d, gh, kind=form.kind.data)
                d.name = form.name.data or None
            if result.ok:
                flash(_("Device %(id)s saved.", id=d.device_id), "success")
                return redirect(url_for("iot_admin.device", device_id=d.device_id))
    return _device_page(d, form, waiting=quarantine_service.waiting_for_device(db_session(), d.device_id))


def _device_page(
    d: Device, form: DeviceForm, names_form: SensorNameForm | None = None, **extra: object
) -> str:
    s = db_session()
    gh = s.get(Greenhouse, d.greenhouse_id) if d.greenhouse_id else None
    if names_form is None:
        names_form = SensorNameForm(prefix="sn")
    names_form.metric.choices = _metric_choices()
    return render_template(
        "iot/admin/device.html",
        d=d,
        gh=gh,
        form=form,
        kinds=KIND_LABELS,
        can_edit=current_user.role == "admin",
        prefix=settings().mqtt_topic_prefix,
        names=registry.sensor_names(d),
        names_form=names_form,
        metric_label=metric_label,
        channels=series_service.device_channels(s, d.id, clock.now_ts() - 86400),
        metrics=quantities.BY_ID,
        metrics_by_name=quantities.BY_NAME,
        **extra,
    )


def _device_form(d: Device) -> DeviceForm:
    form = DeviceForm(obj=d, formdata=None)
    form.greenhouse.choices = _greenhouse_choices()
    form.greenhouse.data = d.greenhouse_id or 0
    return form


@bp.post("/devices/<device_id>/sensor-names")
@role_required("admin")
def sensor_name(device_id: str):
    """Map one of the device's own sensor names (SenML name, Tasmota key) to a metric."""
    d = _device_or_404(device_id)
    names_form = SensorNameForm(prefix="sn")
    names_form.metric.choices = _metric_choices()
    if names_form.validate_on_submit():
        with attempt() as result:
            registry.set_sensor_name(
                db_session(),
                d,
                names_form.source.data or "",
                names_form.metric.data or "",
                names_form.channel.data or None,
                user_id=current_user.id,
            )
        if result.ok:
            flash(
                _("Sensor name %(source)s saved.", source=(names_form.source.data or "").strip()), "success"
            )
            return redirect(url_for("iot_admin.device", device_id=d.device_id))
    else:
        for errors in names_form.errors.values():
            flash("; ".join(str(e) for e in errors), "error")
    return _device_page(d, _device_form(d), names_form, waiting=0)


@bp.post("/devices/<device_id>/sensor-names/remove")
@role_required("admin")
def remove_sensor_name(device_id: str):
    """Forget one of the device's sensor names."""
    d = _device_or_404(device_id)
    source = (request.form.get("source") or "")[:200]
    with attempt() as result:
        registry.remove_sensor_name(db_session(), d, source, user_id=current_user.id)
    if result.ok:
        flash(_("Sensor name %(source)s removed.", source=source), "success")
    return redirect(url_for("iot_admin.device", device_id=d.device_id))


@bp.post("/devices/<device_id>/credentials")
@role_required("admin")
def device_credentials(device_id: str):
    """Issue a new MQTT password for the device; shown once."""
    d = _device_or_404(device_id)
    with attempt() as result:
        password = registry.issue_credentials(db_session(), d)
    if not result.ok:
        return redirect(url_for("iot_admin.device", device_id=d.device_id))
    form = DeviceForm(obj=d)
    form.greenhouse.choices = _greenhouse_choices()
    form.greenhouse.data = d.greenhouse_id or 0
    return _device_page(d, form, waiting=0, new_password=password)


@bp.get("/quarantine")
@role_required(*VIEWERS)
def quarantine():
    """Quarantined messages with their reasons; filter by reason."""
    s = db_session()
    reason = request.args.get("reason") or None
    show_all = request.args.get("all") == "1"
    counts = quarantine_service.counts_by_reason(s, include_replayed=show_all)
    rows = quarantine_service.newest(s, reason=reason, include_replayed=show_all, limit=200)
    return render_template(
        "iot/admin/quarantine.html",
        counts=counts,
        rows=rows,
        reason=reason,
        show_all=show_all,
        labels=REASON_LABELS,
        can_edit=current_user.role == "admin",
    )


@bp.post("/quarantine/replay")
@role_required("admin")
def replay():
    """Run quarantined messages (all, or one reason) through the ingester's checks again."""
    reason = request.form.get("reason") or None
    ids = request.form.getlist("id", type=int) or None  # bounded: see core.web._Fields
    cfg = settings()
    result = quarantine_service.replay(
        database().engine,
        topic_prefix=cfg.mqtt_topic_prefix,
        reason=reason,
        ids=ids,
        unknown_device_policy=cfg.unknown_device_policy,
        irrigation_max_s=cfg.irrigation_max_hours * 3600,
    )
    flash(
        _(
            "Replayed: %(stored)d readings stored, %(failing)d messages still quarantined.",
            stored=result.stored,
            failing=len(result.still_failing),
        ),
        "success" if not result.still_failing else "warning",
    )
    return redirect(url_for("iot_admin.quarantine", reason=reason or None))
