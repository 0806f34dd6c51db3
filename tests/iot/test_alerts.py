"""Alert rules on synthetic series: thresholds with duration and hysteresis, rate of change,
silent sensors, offline devices, notifications and crop defaults."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from iot import alerts, crops
from iot.models import Alert, AlertRule, Device
from tests.iot.dash_helpers import T0, add_readings, make_greenhouse

TEMP = 1


def rule(session, gh, kind="above", metric_id=TEMP, threshold=30.0, hysteresis=2.0, duration_s=0, **kw):
    r = AlertRule(
        greenhouse_id=gh.id,
        metric_id=metric_id,
        kind=kind,
        threshold=threshold,
        hysteresis=hysteresis,
        duration_s=duration_s,
        **kw,
    )
    session.add(r)
    session.flush()
    return r


def feed(session, gh, dev, values, start=T0, step=60, notifier=None, batch=5):
    """Store and evaluate a series in batches of ``batch`` readings, as the ingester would."""
    pts = [(start + i * step, v) for i, v in enumerate(values)]
    for i in range(0, len(pts), batch):
        rows = add_readings(session, gh, dev, "air_temperature", pts[i : i + batch])
        alerts.evaluate_batch(session, rows, notifier)
    session.flush()
    return list(session.scalars(select(Alert).order_by(Alert.id)))


def test_value_hovering_at_threshold_opens_once_thanks_to_hysteresis(session):
    gh, dev = make_greenhouse(session)
    rule(session, gh, threshold=30.0, hysteresis=2.0)
    hover = [29, 31, 29.5, 30.5, 29.1, 30.2, 28.5, 31]  # never below 28
    opened = feed(session, gh, dev, hover)
    assert len(opened) == 1 and opened[0].status == "open"
    assert opened[0].opened_at == T0 + 60 and opened[0].peak == 31
    closed = feed(session, gh, dev, [27.9, 31.0], start=T0 + 3600)
    assert [a.status for a in closed] == ["closed", "open"]
    assert closed[0].closed_at == T0 + 3600


def test_without_hysteresis_the_same_series_flaps(session):
    gh, dev = make_greenhouse(session)
    rule(session, gh, threshold=30.0, hysteresis=0.0)
    opened = feed(session, gh, dev, [29, 31, 29.5, 30.5, 29.1, 30.2, 28.5, 31])
    assert len(opened) == 4


def test_duration_must_hold_before_an_alert_opens(session):
    gh, dev = make_greenhouse(session)
    rule(session, gh, threshold=30.0, duration_s=600)
    # 9 minutes above, one dip, then 10 minutes above
    values = [31] * 10 + [29] + [31] * 11
    found = feed(session, gh, dev, values)
    assert len(found) == 1
    assert found[0].opened_at == T0 + (11 + 10) * 60  # 10 minutes after the run started at minute 11


def test_below_rule_mirrors_above(session):
    gh, dev = make_greenhouse(session)
    rule(session, gh, kind="below", threshold=5.0, hysteresis=1.0)
    found = feed(session, gh, dev, [6, 4.5, 5.5, 4.0, 5.9, 6.1])
    assert len(found) == 1
    assert found[0].closed_at == T0 + 5 * 60 and found[0].peak == 4.0


def test_rate_of_change_rule(session):
    gh, dev = make_greenhouse(session)
    rule(session, gh, kind="rate", threshold=5.0, hysteresis=1.0, window_s=1800)
    steady = feed(session, gh, dev, [20 + 0.01 * i for i in range(30)], batch=1)
    assert steady == []
    jump = feed(session, gh, dev, [20.3, 23, 26], start=T0 + 30 * 60, batch=1)
    assert len(jump) == 1 and jump[0].kind == "rate" and jump[0].status == "open"


def test_late_reading_does_not_reopen(session):
    gh, dev = make_greenhouse(session)
    rule(session, gh, threshold=30.0, hysteresis=2.0)
    feed(session, gh, dev, [31, 25])
    assert [a.status for a in session.scalars(select(Alert))] == ["closed"]
    feed(session, gh, dev, [35], start=T0 + 30)  # older than what the rule has seen
    assert [a.status for a in session.scalars(select(Alert))] == ["closed"]


def test_notifications_go_to_the_greenhouse_alert_topic(session):
    gh, dev = make_greenhouse(session, code="PEACH-3")
    rule(session, gh, threshold=30.0, hysteresis=1.0, severity="critical")
    note = alerts.ListNotifier()
    feed(session, gh, dev, [31, 28], notifier=note)
    assert [(t, m["event"]) for t, m in note.messages] == [
        ("farm/PEACH-3/alerts", "opened"),
        ("farm/PEACH-3/alerts", "closed"),
    ]
    assert note.messages[0][1]["metric"] == "air_temperature" and note.messages[0][1]["value"] == 31
    assert note.messages[0][1]["severity"] == "critical"


def test_silent_sensor_opens_and_a_reading_closes(session):
    gh, dev = make_greenhouse(session)
    rule(session, gh, kind="silent", threshold=None, duration_s=1800)
    add_readings(session, gh, dev, "air_temperature", [(T0, 20.0)])
    assert alerts.evaluate_time_based(session, T0 + 1000) == []
    (opened,) = alerts.evaluate_time_based(session, T0 + 1800)
    assert opened.kind == "silent" and opened.status == "open"
    assert alerts.evaluate_time_based(session, T0 + 2400) == []  # still one alert
    rows = add_readings(session, gh, dev, "air_temperature", [(T0 + 2500, 20.0)])
    alerts.evaluate_batch(session, rows)
    assert opened.status == "closed"


def test_offline_device_alert(session):
    gh, dev = make_greenhouse(session)
    other = Device(device_id="never-seen", greenhouse_id=gh.id)
    session.add(other)
    rule(session, gh, kind="offline", metric_id=None, threshold=None, duration_s=900)
    dev.online = False
    dev.last_seen_at = datetime.fromtimestamp(T0, UTC)
    session.flush()
    assert alerts.evaluate_time_based(session, T0 + 600) == []
    (opened,) = alerts.evaluate_time_based(session, T0 + 900)
    assert opened.device_id == dev.id  # the device never heard from is not flagged
    dev.online = True
    dev.last_seen_at = datetime.fromtimestamp(T0 + 1000, UTC)
    (closed,) = alerts.evaluate_time_based(session, T0 + 1010)
    assert closed is opened and closed.status == "closed"


def test_acknowledge_once(session, make_user):
    gh, dev = make_greenhouse(session)
    rule(session, gh)
    (a,) = feed(session, gh, dev, [35])
    user = make_user("farmer1", "farmer")
    assert alerts.acknowledge(session, a, user.id) is True
    assert a.status == "acknowledged" and a.acknowledged_by_id == user.id
    assert alerts.acknowledge(session, a, user.id) is False
    feed(session, gh, dev, [20], start=T0 + 600)
    assert a.status == "closed"


def test_crop_defaults_differ_and_can_be_adjusted(session):
    peach, _ = make_greenhouse(session, code="P1", crop="桃", device="a")
    shroom, _ = make_greenhouse(session, code="M1", crop="Mushrooms", device="b")
    p_rules = alerts.ensure_default_rules(session, peach)
    m_rules = alerts.ensure_default_rules(session, shroom)

    def hot(rules):
        return next(r for r in rules if r.kind == "above" and r.metric_id == TEMP)

    assert hot(p_rules).threshold == 32.0 and hot(m_rules).threshold == 24.0
    assert {r.kind for r in p_rules} >= {"above", "below", "rate", "silent", "offline"}
    hot(p_rules).threshold = 34.0
    session.flush()
    again = alerts.ensure_default_rules(session, peach)  # existing rules are kept
    assert hot(again).threshold == 34.0
    assert crops.crop_key("unknown crop") == "default"


def test_rule_validation_messages():
    def refusal(*args):
        with pytest.raises(alerts.RuleError) as caught:
            alerts.validate_rule(*args)
        return caught.value.template

    assert refusal("above", TEMP, None, 0, 0, 0, "warning") == "a threshold is required"
    assert refusal("sideways", TEMP, 1, 0, 0, 0, "warning") == "unknown rule kind"
    assert alerts.validate_rule("offline", None, None, 0, 600, 0, "critical") is None
    assert refusal("rate", TEMP, 3, 0, 0, 0, "warning") == "a rate rule needs a time window"


def test_check_alerts_command_opens_offline_alert(app, session, runner):
    from iot.cli import data_cli

    gh, dev = make_greenhouse(session)
    dev.last_seen_at = datetime(2020, 1, 1, tzinfo=UTC)
    session.add(AlertRule(greenhouse_id=gh.id, kind="offline", duration_s=900))
    session.commit()
    result = runner.invoke(data_cli, ["check-alerts", "--no-mqtt"])
    assert result.exit_code == 0, result.output
    assert "1 alerts opened or closed" in result.output
    result = runner.invoke(data_cli, ["check-alerts", "--no-mqtt"])
    assert "0 alerts opened or closed" in result.output


def test_deleting_a_rule_closes_its_active_alert(session):
    gh, dev = make_greenhouse(session)
    r = rule(session, gh)
    (a,) = feed(session, gh, dev, [35])
    alerts.delete_rule(session, r, now=T0 + 500)
    assert a.status == "closed" and a.closed_at == T0 + 500
    assert session.get(AlertRule, r.id) is None
