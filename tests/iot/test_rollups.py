"""Rollups: incremental upserts, late data, local days, rebuild, retention."""

from __future__ import annotations

from sqlalchemy import func, select

from core import clock
from iot import retention, rollups
from iot.models import DailyRollup, HourlyRollup, LatestReading, Reading
from tests.iot.dash_helpers import T0, add_readings, make_greenhouse

TEMP = 1  # air_temperature


def hour_row(session, gh, bucket, metric=TEMP):
    return session.get(HourlyRollup, (gh.id, metric, bucket))


def test_readings_fold_into_hour_and_day(session):
    gh, dev = make_greenhouse(session)
    add_readings(
        session, gh, dev, "air_temperature", [(T0 + 60, 20.0), (T0 + 120, 22.0), (T0 + 3600 + 5, 30.0)]
    )
    h0 = hour_row(session, gh, T0)
    assert (h0.count, h0.sum, h0.min, h0.max) == (2, 42.0, 20.0, 22.0)
    assert hour_row(session, gh, T0 + 3600).count == 1
    day = session.get(DailyRollup, (gh.id, TEMP, T0))
    assert (day.count, day.min, day.max) == (3, 20.0, 30.0)
    assert abs(day.sum / day.count - 24.0) < 1e-9


def test_late_reading_corrects_an_hour_already_rolled_up(session):
    gh, dev = make_greenhouse(session)
    add_readings(session, gh, dev, "air_temperature", [(T0 + 600, 20.0), (T0 + 1200, 21.0)])
    session.commit()
    # a reading for the same hour arrives two hours later, in another batch
    add_readings(session, gh, dev, "air_temperature", [(T0 + 7200, 25.0)])
    add_readings(session, gh, dev, "air_temperature", [(T0 + 1800, 5.0)])
    session.commit()
    h0 = hour_row(session, gh, T0)
    assert (h0.count, h0.min, h0.max) == (3, 5.0, 21.0)
    assert abs(h0.sum / h0.count - 46.0 / 3) < 1e-9
    # the late value does not replace the latest value
    latest = session.get(LatestReading, (gh.id, TEMP))
    assert (latest.ts, latest.value) == (T0 + 7200, 25.0)


def test_daily_buckets_follow_the_local_day(session):
    gh, dev = make_greenhouse(session)
    # 23:30 and 00:30 Beijing time are on different local days, though the same UTC day
    add_readings(session, gh, dev, "air_temperature", [(T0 - 1800, 10.0), (T0 + 1800, 30.0)])
    days = session.scalars(select(DailyRollup).order_by(DailyRollup.bucket)).all()
    assert [(d.bucket, d.count, d.max) for d in days] == [(T0 - 86400, 1, 10.0), (T0, 1, 30.0)]
    assert clock.day_bucket(T0 - 1) == T0 - 86400 and clock.day_bucket(T0) == T0


def test_rebuild_reproduces_incremental_rollups(session):
    gh, dev = make_greenhouse(session)
    points = [(T0 + i * 137, 15 + (i % 23) * 0.5) for i in range(2000)]
    add_readings(session, gh, dev, "air_temperature", points)
    session.commit()
    before_h = [
        (r.bucket, r.count, round(r.sum, 6), r.min, r.max)
        for r in session.scalars(select(HourlyRollup).order_by(HourlyRollup.bucket))
    ]
    before_d = [
        (r.bucket, r.count, round(r.sum, 6), r.min, r.max)
        for r in session.scalars(select(DailyRollup).order_by(DailyRollup.bucket))
    ]
    # wreck them, then rebuild
    session.execute(HourlyRollup.__table__.update().values(count=1, sum=0))
    session.execute(DailyRollup.__table__.delete())
    calls = []
    rollups.rebuild(session, progress=lambda done, total: calls.append((done, total)))
    session.commit()
    after_h = [
        (r.bucket, r.count, round(r.sum, 6), r.min, r.max)
        for r in session.scalars(select(HourlyRollup).order_by(HourlyRollup.bucket))
    ]
    after_d = [
        (r.bucket, r.count, round(r.sum, 6), r.min, r.max)
        for r in session.scalars(select(DailyRollup).order_by(DailyRollup.bucket))
    ]
    assert after_h == before_h and after_d == before_d
    assert calls and calls[-1][0] == calls[-1][1]


def test_retention_prunes_raw_but_keeps_rollups_and_rebuild_leaves_them(session):
    gh, dev = make_greenhouse(session)
    now = T0 + 100 * 86400 + 3600
    add_readings(session, gh, dev, "air_temperature", [(T0 + d * 86400 + 3600, float(d)) for d in range(100)])
    session.commit()
    before = retention.cutoff(now, 90)
    assert before == T0 + 10 * 86400  # local midnight, 90 days before today
    deleted = sum(p.deleted for p in retention.prune(session, before))
    session.commit()
    assert deleted == 10
    assert session.scalar(select(func.min(Reading.ts))) == T0 + 10 * 86400 + 3600
    assert session.scalar(select(func.count()).select_from(DailyRollup)) == 100
    rollups.rebuild(session)
    session.commit()
    assert session.scalar(select(func.count()).select_from(DailyRollup)) == 100
    assert session.get(DailyRollup, (gh.id, TEMP, T0)).max == 0.0


def test_cli_rebuild_and_retention(app, session, runner):
    from iot.cli import data_cli

    gh, dev = make_greenhouse(session)
    add_readings(session, gh, dev, "air_temperature", [(T0 + 60, 1.0), (T0 + 120, 3.0)], apply=False)
    session.commit()
    result = runner.invoke(data_cli, ["rebuild-rollups", "--greenhouse", "GH1"])
    assert result.exit_code == 0, result.output
    assert "hourly buckets rebuilt" in result.output
    session.expire_all()
    assert hour_row(session, gh, T0).count == 2
    result = runner.invoke(data_cli, ["retention", "--days", "30"])
    assert result.exit_code == 0, result.output
    assert "iot_readings: 2 rows deleted" in result.output
    assert session.scalar(select(func.count()).select_from(Reading)) == 0
    assert session.scalar(select(func.count()).select_from(HourlyRollup)) == 1
    assert runner.invoke(data_cli, ["rebuild-rollups", "--greenhouse", "NOPE"]).exit_code != 0
