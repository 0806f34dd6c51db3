"""The books' settings: the charter's reserve rate, the opening date, the grace for dates ahead,
the organisation and the contact; administrators change them, on the page or the command line."""

from __future__ import annotations

import datetime as dt

import pytest

from coop import settings
from coop.distribution import preview
from coop.settings import SettingsError
from tests.conftest import csrf_token_from, login
from tests.coop.conftest import close_through, post


@pytest.fixture
def admin(make_user):
    return make_user("guanli", "admin")


def test_the_charter_rate_drives_the_year_end(books, households, admin):
    post(books, dt.date(2025, 5, 1), "补助", ("102", 1_000_000, 0), ("503", 0, 1_000_000))
    close_through(books, 2024, 12)
    assert preview(books, 2025).reserve == 100_000  # 10 % by default
    settings.update(books, user_id=admin.id, reserve_percent="15")
    assert preview(books, 2025).reserve == 150_000


def test_only_an_administrator_changes_them(books, official):
    with pytest.raises(SettingsError, match="administrator"):
        settings.update(books, user_id=official.id, reserve_percent="5")


def test_the_opening_date_moves_only_while_nothing_pins_it(books, admin):
    settings.update(books, user_id=admin.id, opening_date=dt.date(2019, 1, 1))
    post(books, dt.date(2020, 3, 1), "x", ("101", 100, 0), ("501", 0, 100))
    books.commit()
    with pytest.raises(SettingsError, match="after the first voucher"):
        settings.update(books, user_id=admin.id, opening_date=dt.date(2020, 6, 1))
    books.rollback()
    close_through(books, 2019, 1)
    with pytest.raises(SettingsError, match="once a month has been closed"):
        settings.update(books, user_id=admin.id, opening_date=dt.date(2018, 1, 1))


def test_the_grace_lets_a_voucher_be_dated_ahead(books, admin):
    from coop.ledger import LedgerError
    from core import clock

    ahead = clock.today() + dt.timedelta(days=3)
    with pytest.raises(LedgerError, match="future"):
        post(books, ahead, "x", ("101", 100, 0), ("501", 0, 100))
    books.rollback()
    settings.update(books, user_id=admin.id, future_grace_days=3)
    assert post(books, ahead, "x", ("101", 100, 0), ("501", 0, 100)).date == ahead


def test_the_page_shows_them_and_only_admins_save(client, books, official, admin):
    login(client, "kuaiji")
    page = client.get("/coop/settings").get_data(as_text=True)
    assert 'id="save-settings"' not in page and "公积公益金" in page
    assert client.post("/coop/settings", data={"reserve_percent": "5"}).status_code == 403
    client.post("/logout")
    login(client, "guanli")
    token = csrf_token_from(client.get("/coop/settings").get_data(as_text=True))
    form = {
        "csrf_token": token,
        "name": "赵庄村股份经济合作社",
        "opening_date": "2020-01-01",
        "reserve_percent": "abc",
        "future_grace_days": "0",
        "contact": "村会计室",
    }
    r = client.post("/coop/settings?lang=zh_CN", data=form)
    assert r.status_code == 400 and 'id="settings-error"' in r.get_data(as_text=True)
    assert client.post("/coop/settings", data={**form, "reserve_percent": "12.5"}).status_code == 302
    books.expire_all()
    assert (
        settings.get(books).reserve_percent == "12.5" and settings.get(books).name == "赵庄村股份经济合作社"
    )


def test_the_command_shows_and_changes_them(runner, books, admin):
    shown = runner.invoke(args=["coop", "settings"])
    assert shown.exit_code == 0 and "reserve percent  10" in shown.output
    assert runner.invoke(args=["coop", "settings", "--reserve", "20"]).exit_code != 0  # needs --user
    result = runner.invoke(args=["coop", "settings", "--reserve", "20", "--grace", "2", "--user", "guanli"])
    assert result.exit_code == 0, result.output
    assert "reserve percent  20" in result.output and "grace days       2" in result.output
    bad = runner.invoke(args=["coop", "settings", "--opening", "2020-13-01", "--user", "guanli"])
    assert bad.exit_code != 0 and "Traceback" not in bad.output
