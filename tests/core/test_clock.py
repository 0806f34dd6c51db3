"""The one clock: configured zone, local today, day buckets (also with daylight saving)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from core import clock


def test_parse_time_in_the_configured_zone():
    assert clock.parse_time("1764000000", 0) == 1764000000
    assert clock.parse_time("2025-11-25T00:00:00+08:00", 0) == clock.parse_time("2025-11-25", 0) == 1764000000
    assert clock.parse_time(None, 5) == 5 and clock.parse_time("  ", 5) == 5
    for bad in ("yesterday", "inf", "nan", "1e999999", "99999-01-01", str(2**70)):
        with pytest.raises(ValueError):
            clock.parse_time(bad, 0)
    with clock.using("Europe/Berlin"):
        assert clock.parse_time("2025-11-25", 0) == 1764025200  # midnight CET = 23:00 UTC


def test_today_follows_the_configured_zone_not_the_server():
    # 2026-12-01 17:30 UTC is already 2 December in Shanghai, still 1 December in New York
    at = datetime(2026, 12, 1, 17, 30, tzinfo=UTC)
    with clock.frozen(at):
        assert clock.today() == date(2026, 12, 2)
        with clock.using("America/New_York"):
            assert clock.today() == date(2026, 12, 1)
            assert clock.local(at).hour == 12


def test_day_buckets_in_a_fixed_zone_are_arithmetic():
    midnight = clock.day_start_ts(date(2025, 11, 25))
    assert midnight == 1764000000
    assert clock.day_bucket(midnight) == midnight
    assert clock.day_bucket(midnight - 1) == midnight - 86400
    assert clock.day_bucket(midnight + 86399) == midnight
    assert clock.fixed_offset(midnight, midnight + 30 * 86400) == 8 * 3600


def test_day_buckets_across_daylight_saving():
    with clock.using("Europe/Berlin"):
        # 2025-03-30 has 23 hours, 2025-10-26 has 25
        spring = clock.day_range(date(2025, 3, 30))
        autumn = clock.day_range(date(2025, 10, 26))
        assert spring[1] - spring[0] == 23 * 3600
        assert autumn[1] - autumn[0] == 25 * 3600
        for start, end in (spring, autumn):
            assert clock.day_bucket(start) == start
            assert clock.day_bucket(end - 1) == start
            assert clock.day_bucket(end) == end
        assert clock.fixed_offset(spring[0] - 86400, spring[1]) is None


@pytest.mark.parametrize("zone", ["Asia/Shanghai", "Europe/Berlin", "Asia/Kolkata", "America/Santiago"])
def test_day_bucket_sql_agrees_with_python(zone):
    import sqlite3

    with clock.using(zone):
        start = clock.day_start_ts(date(2025, 3, 1))
        end = clock.day_start_ts(date(2025, 11, 30))
        expr = clock.day_bucket_sql("ts", start, end)
        db = sqlite3.connect(":memory:")
        samples = list(range(start, end, 3571))
        db.execute("CREATE TABLE t (ts INTEGER)")
        db.executemany("INSERT INTO t VALUES (?)", [(t,) for t in samples])
        got = [row[0] for row in db.execute(f"SELECT {expr} FROM t ORDER BY ts")]
        assert got == [clock.day_bucket(t) for t in samples]


def test_unknown_zone_is_refused_and_frozen_needs_an_aware_time():
    with pytest.raises(clock.ClockError):
        clock.configure("Mars/Olympus_Mons")
    assert clock.zone_name() == "Asia/Shanghai"
    with pytest.raises(clock.ClockError), clock.frozen(datetime(2026, 1, 1)):
        pass


def test_settings_refuse_an_unknown_zone(tmp_path):
    from core.config import ConfigError, Settings

    with pytest.raises(ConfigError, match="TIANYUAN_TIMEZONE"):
        Settings.from_env({"TIANYUAN_TIMEZONE": "Nowhere/Town"}, instance_path=tmp_path, secret_key="k")


def test_midnights_cover_every_day_once():
    start = clock.day_start_ts(date(2025, 12, 30))
    days = clock.midnights(start + 5, start + 2 * 86400 + 5)
    assert days == [start + i * 86400 for i in range(4)]
    assert clock.local_date(days[1]) == date(2025, 12, 31) and (days[2] - days[1]) == 86400
    assert clock.day_start(date(2026, 1, 1)) == datetime(2025, 12, 31, 16, tzinfo=UTC)
    assert clock.at_local(date(2026, 1, 1), 12) - clock.day_start(date(2026, 1, 1)) == timedelta(hours=12)
