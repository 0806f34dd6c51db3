"""Irrigation and fertigation summaries per period, compared with the previous period."""

from __future__ import annotations

from iot import irrigation
from tests.iot.dash_helpers import T0, add_irrigation, make_greenhouse


def test_week_summary_and_comparison(session):
    gh, dev = make_greenhouse(session, area_m2=500.0)
    start, end = irrigation.period_bounds("week", T0)  # T0 is Monday 2025-11-24, local midnight
    assert (end - start) == 7 * 86400 and start == T0
    add_irrigation(
        session, gh, dev, T0 + 7 * 3600, water_l=300, ec=2.0, ph=6.0, fertilizer={"A": 1.0, "B": 0.5}
    )
    add_irrigation(session, gh, dev, T0 + 16 * 3600, water_l=100, ec=1.0, ph=7.0, fertilizer={"A": 0.5})
    add_irrigation(session, gh, dev, start - 3600, water_l=200, ec=1.5, ph=6.5)  # last week
    add_irrigation(session, gh, dev, end + 60, water_l=999)  # next week: not counted
    c = irrigation.compare(session, gh, "week", T0 + 3600)
    cur, prev = c.current, c.previous
    assert cur.count == 2 and cur.water_l == 400.0
    assert cur.fertilizer == {"A": 1.5, "B": 0.5}
    assert abs(cur.avg_ec - 1.75) < 1e-9  # weighted by water: (2*300 + 1*100) / 400
    assert abs(cur.avg_ph - 6.25) < 1e-9
    assert cur.water_per_m2 == 0.8
    assert cur.duration_s == 2 * 20 * 60
    assert prev.count == 1 and prev.water_l == 200.0
    assert c.change("water_l") == 1.0 and c.change("count") == 1.0
    data = c.as_dict()
    assert data["current"]["fertilizer"] == {"A": 1.5, "B": 0.5} and data["change"]["water_l"] == 1.0


def test_months_and_days_are_local():
    # 2025-12-01 00:30 Beijing time is still November in UTC
    ts = 1764520200
    start, end = irrigation.period_bounds("month", ts)
    assert start == 1764518400 and end - start == 31 * 86400
    d0, d1 = irrigation.period_bounds("day", ts)
    assert d0 == 1764518400 and d1 == d0 + 86400
    p0, p1 = irrigation.previous_bounds("month", start)
    assert p1 == start and p1 - p0 == 30 * 86400


def test_empty_period_has_no_change_ratio(session):
    gh, dev = make_greenhouse(session, area_m2=None)
    c = irrigation.compare(session, gh, "day", T0)
    assert c.current.count == 0 and c.current.water_per_m2 is None
    assert c.change("water_l") is None


def test_irrigation_page_tells_finished_running_and_stopless_runs_apart(
    client, session, make_user, monkeypatch
):
    """A run without a stop is "running" only for as long as a run can last (IRRIGATION_MAX_HOURS);
    a stop still waiting for its start is not listed or counted, only mentioned."""
    import iot.views
    from iot.models import IrrigationEvent
    from tests.conftest import login

    now = T0 + 3 * 86400 + 12 * 3600  # Thursday noon
    monkeypatch.setattr(iot.views, "now_ts", lambda: now)
    alice = make_user("alice", "farmer")
    gh, dev = make_greenhouse(session, code="ALICE-1", owner=alice)
    add_irrigation(session, gh, dev, now - 5 * 3600, water_l=100)  # done, 20 minutes
    session.add_all(
        [
            IrrigationEvent(device_id=dev.id, greenhouse_id=gh.id, zone="A", started_at=now - 600),
            IrrigationEvent(device_id=dev.id, greenhouse_id=gh.id, zone="B", started_at=now - 30 * 3600),
            IrrigationEvent(  # its start is still on its way
                device_id=dev.id, greenhouse_id=gh.id, event_id="r1", zone="C", ended_at=now - 60, water_l=999
            ),
        ]
    )
    session.commit()
    login(client, "alice")
    html = client.get("/iot/g/ALICE-1/irrigation?period=week&lang=en").get_data(as_text=True)
    assert html.count("<tr data-run=") == 3
    assert html.count('data-run="done"') == 1 and ">20.0<" in html
    assert html.count('data-run="running"') == 1 and ">running<" in html
    assert html.count('data-run="no_stop"') == 1 and "No stop arrived within 12 hours" in html
    assert 'data-water="100.0"' in html  # the waiting stop's 999 L are not counted yet
    assert "Irrigation stops waiting for their start: 1." in html
    zh = client.get("/iot/g/ALICE-1/irrigation?period=week&lang=zh").get_data(as_text=True)
    assert ">进行中<" in zh and ">无结束<" in zh and "等待开始消息的灌溉结束消息：1 条" in zh
