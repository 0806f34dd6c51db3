"""Greenhouse pages: overview, charts, alerts, rules, irrigation and CSV export.

Farmers see the greenhouses they own (403 for any other); officials and admins see all.
"""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime

from flask import (
    Blueprint,
    Response,
    abort,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from markupsafe import Markup
from sqlalchemy import select, text

from core import clock, parse
from core.text import safe_cell
from core.web import attempt, database, db_session, role_required, settings
from iot import alerts as alert_service
from iot import charts, crops, irrigation, quantities
from iot.access import can_see, visible_greenhouses
from iot.models import Alert, AlertRule, Device, Greenhouse
from iot.mqtt_client import publish_notifications
from iot.series import (
    RANGES,
    choose_resolution,
    irrigation_events,
    overview,
    series,
)

bp = Blueprint("iot", __name__, url_prefix="/iot")
STAFF_AND_FARMERS = ("admin", "official", "farmer")

METRIC_LABELS = {
    "air_temperature": _l("Air temperature"),
    "air_humidity": _l("Air humidity"),
    "soil_moisture": _l("Soil moisture"),
    "soil_temperature": _l("Soil temperature"),
    "co2": _l("CO₂"),
    "light": _l("Light"),
    "ec": _l("EC (nutrient solution)"),
    "ph": _l("pH (nutrient solution)"),
}
KIND_LABELS = {
    "above": _l("Above threshold"),
    "below": _l("Below threshold"),
    "rate": _l("Changes too fast"),
    "silent": _l("Sensor silent"),
    "offline": _l("Device offline"),
}
STATUS_LABELS = {"open": _l("Open"), "acknowledged": _l("Acknowledged"), "closed": _l("Closed")}
SEVERITY_LABELS = {"warning": _l("Warning"), "critical": _l("Critical")}
RANGE_LABELS = {"24h": _l("24 hours"), "7d": _l("7 days"), "30d": _l("30 days"), "1y": _l("1 year")}
PERIOD_LABELS = {"day": _l("Today"), "week": _l("This week"), "month": _l("This month")}
RESOLUTION_LABELS = {"raw": _l("every reading"), "hour": _l("hourly"), "day": _l("daily")}


def metric_label(metric_id: int | None) -> str:
    m = quantities.BY_ID.get(metric_id) if metric_id else None
    return str(METRIC_LABELS.get(m.name, m.label)) if m else ""


def metric_unit(metric_id: int | None) -> str:
    m = quantities.BY_ID.get(metric_id) if metric_id else None
    return m.unit if m else ""


def epoch_local(ts: int | None, fmt: str = "%Y-%m-%d %H:%M") -> str:
    if ts is None:
        return ""
    return clock.local(ts).strftime(fmt)


def age_text(seconds: int | None) -> str:
    if seconds is None:
        return _("never")
    if seconds < 90:
        return _("%(n)s s ago", n=seconds)
    if seconds < 90 * 60:
        return _("%(n)s min ago", n=seconds // 60)
    if seconds < 48 * 3600:
        return _("%(n)s h ago", n=seconds // 3600)
    return _("%(n)s d ago", n=seconds // 86400)


def fmt_value(value: float | None, metric_id: int | None = None) -> str:
    if value is None:
        return "–"
    if metric_id == quantities.BY_NAME["light"].id or abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.1f}" if metric_id != quantities.BY_NAME["ph"].id else f"{value:.2f}"


def alert_text(alert: Alert) -> str:
    """A one-line description of an alert, e.g. 'Air temperature above 32 °C'."""
    label, unit = metric_label(alert.metric_id), metric_unit(alert.metric_id)
    t = fmt_value(alert.threshold, alert.metric_id)
    if alert.kind == "above":
        return _("%(metric)s above %(t)s %(unit)s", metric=label, t=t, unit=unit)
    if alert.kind == "below":
        return _("%(metric)s below %(t)s %(unit)s", metric=label, t=t, unit=unit)
    if alert.kind == "rate":
        return _("%(metric)s changed by %(t)s %(unit)s or more", metric=label, t=t, unit=unit)
    if alert.kind == "silent":
        return _("No %(metric)s readings", metric=label)
    return _("A device is offline")


@bp.app_context_processor
def _iot_helpers():
    return dict(
        metric_label=metric_label,
        metric_unit=metric_unit,
        epoch_local=epoch_local,
        age_text=age_text,
        fmt_value=fmt_value,
        alert_text=alert_text,
        KIND_LABELS=KIND_LABELS,
        STATUS_LABELS=STATUS_LABELS,
        SEVERITY_LABELS=SEVERITY_LABELS,
    )


def now_ts() -> int:
    return clock.now_ts()


def greenhouse_for(code: str) -> Greenhouse:
    """The greenhouse with this code if the current user may see it (404 / 403 otherwise)."""
    gh = db_session().scalar(select(Greenhouse).where(Greenhouse.code == code))
    if gh is None:
        abort(404, _("No such greenhouse."))
    if not can_see(current_user, gh):
        abort(403, _("This greenhouse belongs to someone else."))
    return gh


@bp.get("/")
@role_required(*STAFF_AND_FARMERS)
def index():
    """The greenhouses the user may see, with latest readings, devices, alerts and water today."""
    session = db_session()
    rows = overview(session, visible_greenhouses(session, current_user), now_ts())
    return render_template("iot/index.html", rows=rows, key_metrics=_key_metrics())


def _key_metrics() -> list[int]:
    return [
        quantities.BY_NAME[n].id
        for n in ("air_temperature", "air_humidity", "soil_moisture", "co2", "ec", "ph")
    ]


def _range_bounds() -> tuple[str, int, int]:
    key = request.args.get("range", "24h")
    if key not in RANGES:
        key = "24h"
    end = now_ts()
    # round the end up to the next minute so repeated loads hit the same buckets
    end = end - end % 60 + 60
    return key, end - RANGES[key], end


@bp.get("/g/<code>")
@role_required(*STAFF_AND_FARMERS)
def greenhouse(code: str):
    """One greenhouse: latest readings, charts for a range, open alerts, today's water."""
    session = db_session()
    gh = greenhouse_for(code)
    key, start, end = _range_bounds()
    (row,) = overview(session, [gh], now_ts())
    resolution = choose_resolution(start, end)
    no_data = _("No data in this range")

    def line(name: str) -> charts.ChartSeries:
        m = quantities.BY_NAME[name]
        s = series(session, gh.id, m.id, start, end, resolution)
        return charts.ChartSeries(s, metric_label(m.id), m.unit, charts.METRIC_COLORS.get(name, ""))

    events = irrigation_events(session, gh.id, start, end)
    markers = [
        (
            ev.started_at,
            _(
                "Irrigation %(time)s, %(water)s L",
                time=epoch_local(ev.started_at),
                water=fmt_value(ev.water_l),
            ),
        )
        for ev in events
        if ev.started_at is not None  # always: a stop still waiting for its start is not listed
    ]
    blocks = []
    present = set(row.latest)
    groups = [
        ("climate", ["air_temperature", "air_humidity"], []),
        ("soil", ["soil_moisture"], markers),
        ("soil_temperature", ["soil_temperature"], []),
        ("co2", ["co2"], []),
        ("light", ["light"], []),
        ("nutrients", ["ec", "ph"], []),
    ]
    for block_id, names, marks in groups:
        ids = [quantities.BY_NAME[n].id for n in names]
        if block_id not in ("climate", "soil") and not present.intersection(ids):
            continue
        lines = [line(n) for n in names]
        title = " · ".join(cs.label for cs in lines)
        svg = charts.render(charts.Chart(start, end, lines, marks, title=title, no_data=no_data))
        blocks.append(dict(id=block_id, title=title, svg=Markup(svg), lines=lines, markers=len(marks)))
    open_alerts = list(
        session.scalars(
            select(Alert)
            .where(Alert.greenhouse_id == gh.id, Alert.closed_at.is_(None))
            .order_by(Alert.opened_at.desc())
        )
    )
    devices = list(
        session.scalars(select(Device).where(Device.greenhouse_id == gh.id).order_by(Device.device_id))
    )
    today = irrigation.compare(session, gh, "day", now_ts())
    return render_template(
        "iot/greenhouse.html",
        gh=gh,
        row=row,
        range_key=key,
        ranges=RANGE_LABELS,
        resolution=resolution,
        resolution_label=RESOLUTION_LABELS[resolution],
        blocks=blocks,
        open_alerts=open_alerts,
        devices=devices,
        today=today,
        irrigations=len(events),
    )


# --- alerts --------------------------------------------------------------------------------


@bp.get("/alerts")
@role_required(*STAFF_AND_FARMERS)
def alerts():
    """Alerts of the visible greenhouses: active ones first, closed ones on request."""
    session = db_session()
    ghs = {g.id: g for g in visible_greenhouses(session, current_user)}
    show = request.args.get("show", "active")
    code = request.args.get("greenhouse")
    ids = list(ghs)
    if code:
        ids = [g.id for g in ghs.values() if g.code == code]
    stmt = select(Alert).where(Alert.greenhouse_id.in_(ids)).order_by(Alert.opened_at.desc()).limit(300)
    if show != "all":
        stmt = stmt.where(Alert.closed_at.is_(None))
    rows = list(session.scalars(stmt))
    return render_template("iot/alerts.html", rows=rows, ghs=ghs, show=show, code=code)


@bp.post("/alerts/<int:alert_id>/ack")
@role_required(*STAFF_AND_FARMERS)
def acknowledge(alert_id: int):
    """Acknowledge an alert: it stays listed until the condition clears, marked as seen."""
    session = db_session()
    alert = session.get(Alert, alert_id)
    if alert is None:
        abort(404)
    gh = session.get(Greenhouse, alert.greenhouse_id)
    if gh is None or not can_see(current_user, gh):
        abort(403)
    outbox = alert_service.Outbox()
    with attempt() as result:
        acknowledged = alert_service.acknowledge(
            session, alert, current_user.id, outbox, prefix=settings().mqtt_topic_prefix
        )
    if result.ok and acknowledged:
        publish_notifications(settings(), outbox.take())
        flash(_("Alert acknowledged."), "success")
    elif result.ok:
        flash(_("This alert was already acknowledged or closed."), "warning")
    target = request.form.get("next") or ""
    if not target.startswith("/") or target.startswith("//"):
        target = url_for("iot.alerts")
    return redirect(target)


# --- rules ---------------------------------------------------------------------------------


def _float(name: str) -> float | None:
    return parse.number(request.form.get(name), lo=-1e9, hi=1e9)


def _minutes(name: str) -> int:
    value = parse.number(request.form.get(name), lo=0, hi=366 * 24 * 60)  # up to a year
    return int(round((value or 0) * 60))


@bp.get("/g/<code>/rules")
@role_required(*STAFF_AND_FARMERS)
def rules(code: str):
    """The greenhouse's alert rules, editable."""
    session = db_session()
    gh = greenhouse_for(code)
    rows = list(
        session.scalars(
            select(AlertRule)
            .where(AlertRule.greenhouse_id == gh.id)
            .order_by(AlertRule.metric_id, AlertRule.kind)
        )
    )
    return render_template(
        "iot/rules.html",
        gh=gh,
        rules=rows,
        metric_choices=[(m.id, metric_label(m.id), m.unit) for m in quantities.METRICS],
        crop_key=crops.crop_key(gh.crop),
    )


@bp.post("/g/<code>/rules")
@role_required(*STAFF_AND_FARMERS)
def save_rule(code: str):
    """Create a rule (no rule_id) or update one."""
    session = db_session()
    gh = greenhouse_for(code)
    rule = None
    rule_id = request.form.get("rule_id", type=int)
    if rule_id:
        rule = session.get(AlertRule, rule_id)
        if rule is None or rule.greenhouse_id != gh.id:
            abort(404)
    with attempt(flash_error=False) as result:
        alert_service.save_rule(
            session,
            gh,
            rule,
            kind=request.form.get("kind", ""),
            metric_id=request.form.get("metric_id", type=int),
            threshold=_float("threshold"),
            hysteresis=_float("hysteresis") or 0.0,
            duration_s=_minutes("duration_min"),
            window_s=_minutes("window_min"),
            severity=request.form.get("severity", "warning"),
            enabled=request.form.get("enabled") == "on",
        )
    if result.ok:
        flash(_("Rule saved."), "success")
    else:
        flash(_("Rule not saved: %(error)s", error=result.error), "error")
    return redirect(url_for("iot.rules", code=gh.code))


@bp.post("/g/<code>/rules/<int:rule_id>/delete")
@role_required(*STAFF_AND_FARMERS)
def delete_rule(code: str, rule_id: int):
    """Delete a rule; its past alerts stay."""
    session = db_session()
    gh = greenhouse_for(code)
    rule = session.get(AlertRule, rule_id)
    if rule is None or rule.greenhouse_id != gh.id:
        abort(404)
    with attempt() as result:
        alert_service.delete_rule(session, rule, now_ts())
    if result.ok:
        flash(_("Rule deleted."), "success")
    return redirect(url_for("iot.rules", code=gh.code))


@bp.post("/g/<code>/rules/defaults")
@role_required(*STAFF_AND_FARMERS)
def default_rules(code: str):
    """Replace the rules with the crop's defaults."""
    session = db_session()
    gh = greenhouse_for(code)
    with attempt() as result:
        alert_service.ensure_default_rules(session, gh, replace=True)
    if result.ok:
        flash(_("Default rules for this crop are in place."), "success")
    return redirect(url_for("iot.rules", code=gh.code))


# --- irrigation ------------------------------------------------------------------------------


@bp.get("/g/<code>/irrigation")
@role_required(*STAFF_AND_FARMERS)
def irrigation_page(code: str):
    """Irrigation and fertigation for a day, week or month, against the period before."""
    session = db_session()
    gh = greenhouse_for(code)
    period = request.args.get("period", "week")
    if period not in irrigation.PERIODS:
        period = "week"
    comparison = irrigation.compare(session, gh, period, now_ts())
    events = list(
        reversed(irrigation_events(session, gh.id, comparison.current.start, comparison.current.end))
    )
    tanks = sorted(set(comparison.current.fertilizer) | set(comparison.previous.fertilizer))
    now, max_s = now_ts(), settings().irrigation_max_hours * 3600
    return render_template(
        "iot/irrigation.html",
        gh=gh,
        c=comparison,
        period=period,
        periods=PERIOD_LABELS,
        runs=[(ev, irrigation.run_state(ev, now, max_s)) for ev in events],
        tanks=tanks,
        waiting=irrigation.stops_waiting_for_start(session, gh.id),
        max_hours=settings().irrigation_max_hours,
    )


# --- export ------------------------------------------------------------------------------------


@bp.get("/g/<code>/export.csv")
@role_required(*STAFF_AND_FARMERS)
def export_csv(code: str):
    """CSV of raw readings (or hourly/daily aggregates) for a range, streamed."""
    gh = greenhouse_for(code)
    key, start, end = _range_bounds()
    if request.args.get("start") or request.args.get("end"):
        try:
            end = clock.parse_time(request.args.get("end"), now_ts())
            start = clock.parse_time(request.args.get("start"), end - RANGES["24h"])
        except ValueError:
            abort(400, _("start and end must be dates, ISO 8601 times or epoch seconds"))
        if end <= start or end - start > 400 * 86400:
            abort(400, _("the range must be positive and at most 400 days"))
        key = "custom"
    resolution = request.args.get("resolution", "raw")
    if resolution not in ("raw", "hour", "day"):
        abort(400, _("resolution must be raw, hour or day"))
    filename = f"{gh.code}-{key}-{resolution}.csv"
    factory = database().session_factory  # the stream outlives the request's session

    def stream():
        with factory() as own:
            yield from export_rows(own, gh, start, end, resolution)

    return Response(
        stream(),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


def export_rows(session, gh: Greenhouse, start: int, end: int, resolution: str):
    zone = clock.zone()
    buf = io.StringIO()
    out = csv.writer(buf)

    def flush() -> str:
        data = buf.getvalue()
        buf.seek(0)
        buf.truncate()
        return data

    def times(ts: int) -> list[str]:
        return [
            datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            datetime.fromtimestamp(ts, zone).isoformat(),
        ]

    if resolution == "raw":
        out.writerow(["time_utc", "time_local", "greenhouse", "device", "sensor", "metric", "unit", "value"])
        yield flush()
        result = session.execute(
            text(
                "SELECT r.ts, d.device_id, r.channel, r.metric_id, r.value FROM iot_readings r "
                "JOIN iot_devices d ON d.id = r.device_id "
                "WHERE r.greenhouse_id = :g AND r.ts >= :s AND r.ts < :e "
                "ORDER BY r.ts, r.us, r.metric_id, r.channel"
            ).execution_options(yield_per=5000),
            {"g": gh.id, "s": start, "e": end},
        )
        for i, (ts, device, channel, metric_id, value) in enumerate(result):
            m = quantities.BY_ID.get(metric_id)
            out.writerow(
                [
                    *times(ts),
                    safe_cell(gh.code),
                    safe_cell(device),
                    safe_cell(channel),
                    m.name if m else metric_id,
                    m.unit if m else "",
                    value,
                ]
            )
            if i % 2000 == 1999:
                yield flush()
    else:
        table = "iot_rollups_hourly" if resolution == "hour" else "iot_rollups_daily"
        out.writerow(
            ["bucket_utc", "bucket_local", "greenhouse", "metric", "unit", "count", "min", "mean", "max"]
        )
        rows = session.execute(
            text(
                f"SELECT bucket, metric_id, count, sum, min, max FROM {table} "
                "WHERE greenhouse_id = :g AND bucket >= :s AND bucket < :e ORDER BY bucket, metric_id"
            ),
            {
                "g": gh.id,
                "s": start - start % 3600 if resolution == "hour" else clock.day_bucket(start),
                "e": end,
            },
        )
        for b, metric_id, count, total, mn, mx in rows:
            m = quantities.BY_ID.get(metric_id)
            out.writerow(
                [
                    *times(b),
                    safe_cell(gh.code),
                    m.name if m else metric_id,
                    m.unit if m else "",
                    count,
                    mn,
                    round(total / count, 4),
                    mx,
                ]
            )
    yield flush()
