"""TIANYUAN_TIMEZONE decides "today", local days and shown times everywhere, not the
server's zone and not Asia/Shanghai: the village here is in New York for a day."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime

import pytest
from sqlalchemy import select

from core import clock
from tests.conftest import login, make_test_app

# 03:30 UTC on 2 December: still 1 December in New York, already 2 December in Shanghai
NOW = datetime(2026, 12, 2, 3, 30, tzinfo=UTC)


@pytest.fixture
def ny(settings):
    with clock.frozen(NOW):
        application = make_test_app(replace(settings, timezone="America/New_York"))
        yield application
        clock.configure(clock.DEFAULT_TIMEZONE)


def test_the_app_configures_the_clock(ny):
    assert clock.zone_name() == "America/New_York"
    assert clock.today() == date(2026, 12, 1)


def test_pages_default_to_the_local_today(ny, make_user):
    from coop.ledger import load_chart

    make_user("kuaiji", "official")
    client = ny.test_client()
    login(client, "kuaiji")
    from core.web import EXT

    with ny.extensions[EXT]["db"].session_factory() as s:
        load_chart(s)
        s.commit()
    page = client.get("/coop/vouchers/new").get_data(as_text=True)
    assert 'value="2026-12-01"' in page and 'value="2026-12-02"' not in page


def test_daily_rollups_start_at_local_midnight(ny, session):
    from iot.models import DailyRollup
    from tests.iot.dash_helpers import add_readings, make_greenhouse

    gh, dev = make_greenhouse(session, code="NY-1")
    ts = int(NOW.timestamp())
    add_readings(session, gh, dev, "air_temperature", [(ts, 20.0), (ts - 6 * 3600, 18.0)])
    session.commit()
    buckets = sorted(session.scalars(select(DailyRollup.bucket).where(DailyRollup.greenhouse_id == gh.id)))
    # 03:30 and 21:30 UTC the day before are both 1 December in New York (midnight = 05:00 UTC)
    assert (
        buckets
        == [clock.day_start_ts(date(2026, 12, 1))]
        == [int(datetime(2026, 12, 1, 5, tzinfo=UTC).timestamp())]
    )


def test_settlement_dates_a_payment_by_the_local_day(ny):
    from shop.settlement import local_day

    assert local_day(NOW) == date(2026, 12, 1)
    assert local_day(None) == date(2026, 12, 1)


def test_times_are_shown_in_the_configured_zone(ny):
    with ny.test_request_context("/"):
        render = ny.jinja_env.from_string("{{ t|localtime }}").render
        assert render(t=NOW) == "2026-12-01 22:30"
