"""Alert rules: thresholds with hysteresis and durations, rate of change, silent sensors
and offline devices. Plain services over a session; nothing here commits.

- ``evaluate_batch(session, rows, notifier)``: the ingester calls it after storing a batch
  of readings (dicts with greenhouse_id, metric_id, ts, value); threshold and rate rules
  advance in reading-time order, and a reading closes a "silent" alert of its metric.
- ``evaluate_time_based(session, now, notifier)``: run periodically (``flask iot data
  check-alerts``) for silent sensors and offline devices.

An ``above`` rule opens when the value stays above ``threshold`` for ``duration_s`` and
closes only when the value falls to ``threshold - hysteresis`` or lower, so a value
hovering at the threshold does not flap (``below`` mirrors it). Readings older than the
newest one a rule has seen are ignored by it (late data never reopens an old alert).

Each opening, acknowledgement and closing is handed to a ``Notifier`` as JSON for
``<prefix>/<greenhouse code>/alerts``. Callers collect them in an ``Outbox`` and publish
after their commit (the ingester, ``python -m iot.check_alerts``, acknowledgements from
the web and the API), so nothing that was rolled back is announced: at least once, not
exactly once. ``MqttNotifier`` publishes with a connected paho client.

Rule refusals are ``RuleError`` (a ``DomainError``: a translatable template).
"""

from __future__ import annotations

import functools
import json
import logging
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from core import clock
from core.db import utcnow
from core.errors import N_, DomainError
from iot import crops, quantities
from iot.models import Alert, AlertRule, Device, Greenhouse, LatestReading

log = logging.getLogger("iot.alerts")
KINDS = ("above", "below", "rate", "silent", "offline")
RATE_CHECK_S = 60  # a rate rule is checked at most once per minute of reading time
SEVERITIES = ("warning", "critical")


class Notifier(Protocol):
    def publish(self, topic: str, payload: str) -> None: ...


class NullNotifier:
    """The default: notifications are only shown in the app."""

    def publish(self, topic: str, payload: str) -> None:
        return None


class RuleError(DomainError):
    """An alert rule that makes no sense was refused."""


class Outbox:
    """A notifier that only collects (topic, payload): the caller publishes after its commit."""

    def __init__(self) -> None:
        self.items: list[tuple[str, str]] = []

    def publish(self, topic: str, payload: str) -> None:
        self.items.append((topic, payload))

    def take(self) -> list[tuple[str, str]]:
        """What was collected (and forget it)."""
        items, self.items = self.items, []
        return items


class ListNotifier:
    """Collects notifications (tests, or to publish after commit)."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, dict]] = []

    def publish(self, topic: str, payload: str) -> None:
        self.messages.append((topic, json.loads(payload)))


class MqttNotifier:
    """Publishes with a connected paho client (QoS 1, not retained)."""

    def __init__(self, client: Any, prefix: str = "farm") -> None:
        self.client = client
        self.prefix = prefix
        self._pending: list[Any] = []
        self._refused: dict[int, str] = {}  # mid -> the broker's reason (MQTT 5 PUBACK)
        client.on_publish = self._on_publish

    def _on_publish(self, _client: Any, _userdata: Any, mid: int, reason_code: Any, _props: Any) -> None:
        if getattr(reason_code, "is_failure", False):  # e.g. "Not authorized": the broker's ACL
            self._refused[mid] = str(reason_code)

    def publish(self, topic: str, payload: str) -> None:
        self._pending.append(self.client.publish(topic, payload, qos=1))

    def publish_all(self, items: Iterable[tuple[str, str]]) -> None:
        for topic, payload in items:
            self.publish(topic, payload)

    def flush(self, timeout: float = 5.0) -> int:
        """Wait until what was published has left (QoS 1 acknowledged by the broker); returns
        how many did not (the broker went away: logged, never raised, the alerts stay in
        the app)."""
        lost = 0
        for info in self._pending:
            try:
                info.wait_for_publish(timeout)
                lost += not info.is_published() or info.mid in self._refused
            except (RuntimeError, ValueError):  # not connected, or the queue was dropped
                lost += 1
        refused = sorted(set(self._refused.values()))
        self._pending.clear()
        self._refused.clear()
        if lost:
            log.error("event=publish_failed unconfirmed=%d refused=%r", lost, refused)
        return lost


@dataclass
class _Ctx:
    notifier: Notifier
    prefix: str
    codes: dict[int, str]

    def code(self, session: Session, greenhouse_id: int) -> str:
        if greenhouse_id not in self.codes:
            gh = session.get(Greenhouse, greenhouse_id)
            self.codes[greenhouse_id] = gh.code if gh else str(greenhouse_id)
        return self.codes[greenhouse_id]


def alert_topic(code: str, prefix: str = "farm") -> str:
    return f"{prefix}/{code}/alerts"


def _notify(session: Session, ctx: _Ctx, event: str, alert: Alert, ts: int | None = None) -> None:
    metric = quantities.BY_ID.get(alert.metric_id) if alert.metric_id else None
    code = ctx.code(session, alert.greenhouse_id)
    payload = {
        "event": event,
        "alert_id": alert.id,
        "greenhouse": code,
        "kind": alert.kind,
        "severity": alert.severity,
        "metric": metric.name if metric else None,
        "unit": metric.unit if metric else None,
        "threshold": alert.threshold,
        "value": alert.value,
        "peak": alert.peak,
        "opened_at": alert.opened_at,
        "closed_at": alert.closed_at,
        "ts": ts if ts is not None else alert.opened_at,
    }
    ctx.notifier.publish(alert_topic(code, ctx.prefix), json.dumps(payload, ensure_ascii=False))


def _ctx(notifier: Notifier | None, prefix: str) -> _Ctx:
    return _Ctx(notifier or NullNotifier(), prefix, {})


def _open(
    session: Session, ctx: _Ctx, rule: AlertRule, ts: int, value: float | None, device_id=None
) -> Alert:
    alert = Alert(
        rule_id=rule.id,
        greenhouse_id=rule.greenhouse_id,
        metric_id=rule.metric_id,
        device_id=device_id,
        kind=rule.kind,
        severity=rule.severity,
        threshold=rule.threshold,
        value=value,
        peak=value,
        opened_at=ts,
    )
    session.add(alert)
    session.flush()
    _notify(session, ctx, "opened", alert, ts)
    return alert


def _close(session: Session, ctx: _Ctx, alert: Alert, ts: int) -> None:
    alert.closed_at = max(ts, alert.opened_at)
    _notify(session, ctx, "closed", alert, ts)


def _active_alerts(session: Session, rule_ids: list[int]) -> dict[tuple[int | None, int | None], Alert]:
    if not rule_ids:
        return {}
    rows = session.scalars(select(Alert).where(Alert.rule_id.in_(rule_ids), Alert.closed_at.is_(None)))
    return {(a.rule_id, a.device_id): a for a in rows}


# --- threshold and rate rules, advanced by readings -------------------------------------


def _step_threshold(session: Session, ctx: _Ctx, rule: AlertRule, alert: Alert | None, ts: int, v: float):
    """Advance an above/below rule by one reading; returns the active alert (or None)."""
    sign = 1.0 if rule.kind == "above" else -1.0
    t = rule.threshold or 0.0
    breached = sign * (v - t) > 0
    if alert is not None:
        if sign * (v - alert.peak) > 0 if alert.peak is not None else True:
            alert.peak = v
        if sign * (v - (t - sign * (rule.hysteresis or 0.0))) <= 0:  # back past the hysteresis band
            _close(session, ctx, alert, ts)
            rule.pending_since = None
            return None
        return alert
    if not breached:
        rule.pending_since = None
        return None
    if rule.pending_since is None:
        rule.pending_since = ts
    if ts - rule.pending_since >= (rule.duration_s or 0):
        rule.pending_since = None
        return _open(session, ctx, rule, ts, v)
    return None


def _step_rate(session: Session, ctx: _Ctx, rule: AlertRule, alert: Alert | None, ts: int, v: float):
    """Change within ``window_s``: compare with the oldest stored reading in the window."""
    ref = session.execute(
        text(
            "SELECT value FROM iot_readings WHERE greenhouse_id = :g AND metric_id = :m "
            "AND ts >= :s AND ts < :t ORDER BY ts LIMIT 1"
        ),
        {"g": rule.greenhouse_id, "m": rule.metric_id, "s": ts - (rule.window_s or 3600), "t": ts},
    ).scalar()
    if ref is None:
        return alert
    change = abs(v - ref)
    t = rule.threshold or 0.0
    if alert is not None:
        alert.peak = max(alert.peak or 0.0, change)
        if change <= t - (rule.hysteresis or 0.0):
            _close(session, ctx, alert, ts)
            return None
        return alert
    if change >= t:
        alert = _open(session, ctx, rule, ts, v)
        alert.peak = change
        return alert
    return None


def batch_hook(
    notifier: Notifier | None, prefix: str = "farm"
) -> Callable[[Session, Iterable[Mapping[str, Any]]], list[Alert]]:
    """``evaluate_batch`` bound to a notifier, for the ingester.

    Used as ``hooks=(apply_readings, batch_hook(n, prefix))``.
    """
    return functools.partial(evaluate_batch, notifier=notifier, prefix=prefix)


def evaluate_batch(
    session: Session,
    rows: Iterable[Mapping[str, Any]],
    notifier: Notifier | None = None,
    *,
    prefix: str = "farm",
) -> list[Alert]:
    """Advance every enabled rule touched by ``rows``; returns alerts opened or closed."""
    by_series: dict[tuple[int, int | None], list[tuple[int, float]]] = defaultdict(list)
    for r in rows:
        by_series[(r["greenhouse_id"], r["metric_id"])].append((int(r["ts"]), float(r["value"])))
    if not by_series:
        return []
    gh_ids = sorted({g for g, _ in by_series})
    rules = [
        rule
        for rule in session.scalars(
            select(AlertRule).where(
                AlertRule.greenhouse_id.in_(gh_ids),
                AlertRule.enabled.is_(True),
                AlertRule.kind.in_(("above", "below", "rate", "silent")),
            )
        )
        if (rule.greenhouse_id, rule.metric_id) in by_series
    ]
    if not rules:
        return []
    ctx = _ctx(notifier, prefix)
    changed: list[Alert] = []
    with session.no_autoflush:  # rule state changes need no flush before each query
        active = _active_alerts(session, [r.id for r in rules])
        for rule in rules:
            _advance(
                session,
                ctx,
                rule,
                active.get((rule.id, None)),
                by_series[(rule.greenhouse_id, rule.metric_id)],
                changed,
            )
    return changed


def _advance(
    session: Session, ctx: _Ctx, rule: AlertRule, alert: Alert | None, points: list, changed: list
) -> None:
    points = sorted(points)
    if rule.kind == "silent":  # a reading arrived: the sensor speaks again
        if alert is not None:
            _close(session, ctx, alert, points[-1][0])
            changed.append(alert)
        return
    if rule.last_ts is not None:
        # the same second as the last one may still be news: another sensor, or a later sample
        points = [p for p in points if p[0] >= rule.last_ts]
    if not points:
        return
    if rule.kind == "rate":
        # the newest reading against the window, at most once a minute of reading time
        if rule.last_ts is not None and points[-1][0] - rule.last_ts < RATE_CHECK_S:
            return
        points = points[-1:]
        step = _step_rate
    else:
        step = _step_threshold
        if alert is None and rule.pending_since is None:
            sign, t = (1.0 if rule.kind == "above" else -1.0), rule.threshold or 0.0
            if not any(sign * (v - t) > 0 for _, v in points):  # the common case: all is well
                rule.last_ts = points[-1][0]
                return
    for ts, v in points:
        before = alert
        alert = step(session, ctx, rule, alert, ts, v)
        if alert is not before:
            changed.append(alert or before)
    rule.last_ts = points[-1][0]


# --- time-based rules: silent sensors and offline devices --------------------------------


def evaluate_time_based(
    session: Session, now: int, notifier: Notifier | None = None, *, prefix: str = "farm"
) -> list[Alert]:
    """Open or close "silent" and "offline" alerts as of ``now`` (epoch seconds)."""
    rules = list(
        session.scalars(
            select(AlertRule).where(AlertRule.enabled.is_(True), AlertRule.kind.in_(("silent", "offline")))
        )
    )
    if not rules:
        return []
    ctx = _ctx(notifier, prefix)
    active = _active_alerts(session, [r.id for r in rules])
    gh_ids = sorted({r.greenhouse_id for r in rules})
    latest: dict[tuple[int, int | None], int] = {
        (lr.greenhouse_id, lr.metric_id): lr.ts
        for lr in session.scalars(select(LatestReading).where(LatestReading.greenhouse_id.in_(gh_ids)))
    }
    devices: dict[int | None, list[Device]] = defaultdict(list)
    for d in session.scalars(select(Device).where(Device.greenhouse_id.in_(gh_ids))):
        devices[d.greenhouse_id].append(d)
    changed: list[Alert] = []
    for rule in rules:
        if rule.kind == "silent":
            last = latest.get((rule.greenhouse_id, rule.metric_id))
            silent = last is not None and now - last >= (rule.duration_s or 0)
            alert = active.get((rule.id, None))
            if silent and alert is None:
                changed.append(_open(session, ctx, rule, now, None))
            elif not silent and alert is not None:
                _close(session, ctx, alert, now)
                changed.append(alert)
            continue
        for device in devices.get(rule.greenhouse_id, []):
            if device.last_seen_at is None:
                continue  # never heard from: not installed yet
            age = now - int(device.last_seen_at.timestamp())
            # offline (last will) or silent, for at least the rule's duration since last heard
            offline = age >= (rule.duration_s or 0)
            alert = active.get((rule.id, device.id))
            if offline and alert is None:
                changed.append(_open(session, ctx, rule, now, None, device_id=device.id))
            elif not offline and alert is not None:
                _close(session, ctx, alert, now)
                changed.append(alert)
    return changed


def acknowledge(
    session: Session,
    alert: Alert,
    user_id: int | None,
    notifier: Notifier | None = None,
    *,
    prefix: str = "farm",
) -> bool:
    """Mark an open alert as seen; False if it was already acknowledged or closed."""
    if alert.acknowledged_at is not None or alert.closed_at is not None:
        return False
    alert.acknowledged_at = utcnow()
    alert.acknowledged_by_id = user_id
    _notify(session, _ctx(notifier, prefix), "acknowledged", alert, int(alert.acknowledged_at.timestamp()))
    return True


# --- default rules per crop (iot.crops) ---------------------------------------------------


def default_rules(crop: str | None) -> list[dict]:
    out = []
    for metric_name, kind, threshold, hyst, minutes, severity in crops.rule_specs(crop):
        out.append(
            dict(
                metric_id=quantities.BY_NAME[metric_name].id if metric_name else None,
                kind=kind,
                threshold=threshold,
                hysteresis=hyst,
                duration_s=0 if kind == "rate" else minutes * 60,
                window_s=minutes * 60 if kind == "rate" else 0,
                severity=severity,
            )
        )
    return out


def ensure_default_rules(
    session: Session, greenhouse: Greenhouse, *, replace: bool = False
) -> list[AlertRule]:
    """Give a greenhouse its crop's default rules if it has none (or ``replace`` its rules)."""
    existing = list(session.scalars(select(AlertRule).where(AlertRule.greenhouse_id == greenhouse.id)))
    if existing and not replace:
        return existing
    for rule in existing:
        delete_rule(session, rule)
    rules = [AlertRule(greenhouse_id=greenhouse.id, **spec) for spec in default_rules(greenhouse.crop)]
    session.add_all(rules)
    session.flush()
    return rules


def delete_rule(session: Session, rule: AlertRule, now: int | None = None) -> None:
    """Delete a rule; its still-active alerts are closed (nothing else would close them)."""
    now = clock.now_ts() if now is None else now
    for alert in session.scalars(select(Alert).where(Alert.rule_id == rule.id, Alert.closed_at.is_(None))):
        alert.closed_at = max(now, alert.opened_at)
    session.delete(rule)
    session.flush()


def validate_rule(
    kind: str,
    metric_id: int | None,
    threshold: float | None,
    hysteresis: float,
    duration_s: int,
    window_s: int,
    severity: str,
) -> None:
    """Raise ``RuleError`` if the rule makes no sense."""
    if kind not in KINDS:
        raise RuleError(N_("unknown rule kind"))
    if severity not in SEVERITIES:
        raise RuleError(N_("unknown severity"))
    if kind != "offline" and metric_id not in quantities.BY_ID:
        raise RuleError(N_("choose a metric"))
    if kind in ("above", "below", "rate") and threshold is None:
        raise RuleError(N_("a threshold is required"))
    if hysteresis < 0 or duration_s < 0 or window_s < 0:
        raise RuleError(N_("hysteresis and durations cannot be negative"))
    if kind == "rate" and window_s <= 0:
        raise RuleError(N_("a rate rule needs a time window"))
    if kind in ("silent", "offline") and duration_s <= 0:
        raise RuleError(N_("a duration is required"))


def save_rule(
    session: Session,
    greenhouse: Greenhouse,
    rule: AlertRule | None,
    *,
    kind: str,
    metric_id: int | None,
    threshold: float | None,
    hysteresis: float,
    duration_s: int,
    window_s: int,
    severity: str,
    enabled: bool,
) -> AlertRule:
    """Create a rule (``rule`` None) or change one; ``RuleError`` if it makes no sense.

    A changed rule starts counting its duration afresh. Does not commit.
    """
    if rule is not None:
        kind, metric_id = rule.kind, rule.metric_id  # what a rule watches is fixed
    elif kind == "offline":
        metric_id = None
    validate_rule(kind, metric_id, threshold, hysteresis, duration_s, window_s, severity)
    if rule is None:
        rule = AlertRule(greenhouse_id=greenhouse.id, kind=kind, metric_id=metric_id)
        session.add(rule)
    rule.threshold = threshold
    rule.hysteresis = hysteresis
    rule.duration_s = duration_s
    rule.window_s = window_s
    rule.severity = severity
    rule.enabled = enabled
    rule.pending_since = None
    session.flush()
    return rule
