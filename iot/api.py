"""JSON API for greenhouse data under /api/v1 (session cookie or ``Authorization: Bearer``).

Errors are JSON ``{"error": {"status": ..., "message": ...}}`` with the HTTP status.
Documented in docs/api.md.
"""

from __future__ import annotations

from flask import Blueprint, abort, jsonify, request
from flask_login import current_user
from sqlalchemy import select

from core import clock
from core.web import attempt, db_session, json_error, role_required, settings
from iot import alerts as alert_service
from iot import irrigation, quantities
from iot.access import can_see, visible_greenhouses
from iot.models import Alert, Greenhouse
from iot.mqtt_client import publish_notifications
from iot.series import (
    RESOLUTIONS,
    choose_resolution,
    max_points,
    overview,
    series,
)

bp = Blueprint("iot_api", __name__, url_prefix="/api/v1")
ROLES = ("admin", "official", "farmer")
MAX_POINTS = 5000


def _now() -> int:
    return clock.now_ts()


def _greenhouse(code: str) -> Greenhouse:
    gh = db_session().scalar(select(Greenhouse).where(Greenhouse.code == code))
    if gh is None:
        abort(404, f"no greenhouse {code!r}")
    if not can_see(current_user, gh):
        abort(403, "this greenhouse belongs to someone else")
    return gh


def _latest_json(row) -> dict:
    return {
        quantities.BY_ID[m].name: {
            "value": lt.value,
            "unit": quantities.BY_ID[m].unit,
            "ts": lt.ts,
            "age_s": lt.age_s,
        }
        for m, lt in sorted(row.latest.items())
        if m in quantities.BY_ID
    }


def _overview_json(row) -> dict:
    g = row.greenhouse
    return {
        "code": g.code,
        "name": g.name,
        "crop": g.crop,
        "area_m2": g.area_m2,
        "latest": _latest_json(row),
        "devices": {"total": row.devices_total, "online": row.devices_online},
        "open_alerts": row.open_alerts,
        "irrigation_today": {"count": row.irrigations_today, "water_l": round(row.water_today_l, 3)},
    }


@bp.get("/greenhouses")
@role_required(*ROLES)
def greenhouses():
    """Every greenhouse the caller may see, with latest readings and state."""
    session = db_session()
    rows = overview(session, visible_greenhouses(session, current_user), _now())
    return jsonify({"greenhouses": [_overview_json(r) for r in rows]})


@bp.get("/greenhouses/<code>")
@bp.get("/greenhouses/<code>/latest")
@role_required(*ROLES)
def latest(code: str):
    """One greenhouse's latest readings and state."""
    gh = _greenhouse(code)
    (row,) = overview(db_session(), [gh], _now())
    return jsonify(_overview_json(row))


@bp.get("/greenhouses/<code>/series")
@role_required(*ROLES)
def series_view(code: str):
    """?metric=NAME[,NAME2]&start=&end=&resolution=raw|hour|day|auto"""
    gh = _greenhouse(code)
    names = [n.strip() for n in (request.args.get("metric") or "").split(",") if n.strip()]
    if not names:
        return json_error(
            400, "metric is required, e.g. metric=air_temperature", metrics=list(quantities.BY_NAME)
        )
    unknown = [n for n in names if n not in quantities.BY_NAME]
    if unknown:
        return json_error(400, f"unknown metric {unknown[0]!r}", metrics=list(quantities.BY_NAME))
    now = _now()
    try:
        end = clock.parse_time(request.args.get("end"), now)
        start = clock.parse_time(request.args.get("start"), end - 86400)
    except ValueError:
        return json_error(400, "start and end must be epoch seconds or ISO 8601 times")
    if end <= start:
        return json_error(400, "end must be after start")
    if end - start > 5 * 366 * 86400:
        return json_error(400, "range too long: at most five years")
    resolution = request.args.get("resolution", "auto")
    if resolution == "auto":
        resolution = choose_resolution(start, end)
    elif resolution not in RESOLUTIONS:
        return json_error(400, "resolution must be raw, hour, day or auto")
    if max_points(resolution, start, end) > MAX_POINTS * (1 if resolution != "raw" else 2):
        return json_error(
            400,
            f"too many points for resolution={resolution}: choose a coarser resolution or a shorter range",
            suggested_resolution=choose_resolution(start, end),
        )
    session = db_session()
    out = []
    for name in names:
        m = quantities.BY_NAME[name]
        s = series(session, gh.id, m.id, start, end, resolution)
        if resolution == "raw":
            points = [[p.ts, p.avg] for p in s.points]
            fields = ["ts", "value"]
        else:
            points = [[p.ts, round(p.avg, 4), p.min, p.max, p.n] for p in s.points]
            fields = ["ts", "mean", "min", "max", "count"]
        out.append(
            {"metric": name, "unit": m.unit, "fields": fields, "points": points, "truncated": s.truncated}
        )
    return jsonify(
        {"greenhouse": gh.code, "start": start, "end": end, "resolution": resolution, "series": out}
    )


def _alert_json(a: Alert, code: str) -> dict:
    m = quantities.BY_ID.get(a.metric_id) if a.metric_id else None
    return {
        "id": a.id,
        "greenhouse": code,
        "status": a.status,
        "kind": a.kind,
        "severity": a.severity,
        "metric": m.name if m else None,
        "unit": m.unit if m else None,
        "threshold": a.threshold,
        "value": a.value,
        "peak": a.peak,
        "device_id": a.device_id,
        "opened_at": a.opened_at,
        "closed_at": a.closed_at,
        "acknowledged_at": a.acknowledged_at.isoformat() if a.acknowledged_at else None,
    }


@bp.get("/alerts")
@bp.get("/greenhouses/<code>/alerts")
@role_required(*ROLES)
def alerts(code: str | None = None):
    """?status=active (default: open or acknowledged) | open | acknowledged | closed | all"""
    session = db_session()
    ghs = [_greenhouse(code)] if code else visible_greenhouses(session, current_user)
    codes = {g.id: g.code for g in ghs}
    status = request.args.get("status", "active")
    if status not in ("active", "open", "acknowledged", "closed", "all"):
        return json_error(400, "status must be active, open, acknowledged, closed or all")
    limit = request.args.get("limit", 200, type=int)
    if not 1 <= limit <= 1000:
        return json_error(400, "limit must be between 1 and 1000")
    stmt = (
        select(Alert)
        .where(Alert.greenhouse_id.in_(list(codes)))
        .order_by(Alert.opened_at.desc())
        .limit(limit)
    )
    if status in ("active", "open", "acknowledged"):
        stmt = stmt.where(Alert.closed_at.is_(None))
    if status == "open":
        stmt = stmt.where(Alert.acknowledged_at.is_(None))
    elif status == "acknowledged":
        stmt = stmt.where(Alert.acknowledged_at.is_not(None))
    elif status == "closed":
        stmt = stmt.where(Alert.closed_at.is_not(None))
    return jsonify({"alerts": [_alert_json(a, codes[a.greenhouse_id]) for a in session.scalars(stmt)]})


@bp.post("/alerts/<int:alert_id>/ack")
@role_required(*ROLES)
def acknowledge(alert_id: int):
    """Acknowledge an open alert (409 if already acknowledged or closed)."""
    session = db_session()
    alert = session.get(Alert, alert_id)
    if alert is None:
        abort(404, "no such alert")
    gh = session.get(Greenhouse, alert.greenhouse_id)
    if gh is None or not can_see(current_user, gh):
        abort(403, "this greenhouse belongs to someone else")
    outbox = alert_service.Outbox()
    with attempt(flash_error=False) as result:
        acknowledged = alert_service.acknowledge(
            session, alert, current_user.id, outbox, prefix=settings().mqtt_topic_prefix
        )
    if not result.ok:
        return json_error(400, result.error or "")
    if not acknowledged:
        return json_error(409, f"alert is already {alert.status}")
    publish_notifications(settings(), outbox.take(), source="api")
    return jsonify(_alert_json(alert, gh.code))


@bp.get("/greenhouses/<code>/irrigation")
@role_required(*ROLES)
def irrigation_summary(code: str):
    """?period=day|week|month&at=<time in the period> (default: now)"""
    gh = _greenhouse(code)
    period = request.args.get("period", "week")
    if period not in irrigation.PERIODS:
        return json_error(400, "period must be day, week or month")
    try:
        at = clock.parse_time(request.args.get("at"), _now())
    except ValueError:
        return json_error(400, "at must be epoch seconds or an ISO 8601 time")
    comparison = irrigation.compare(db_session(), gh, period, at)
    return jsonify({"greenhouse": gh.code, **comparison.as_dict()})
