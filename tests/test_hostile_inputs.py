"""Mistyped and absurd input on the paths the house change touched: every one gets a clear
refusal (a message, a 400, a CLI error) and changes nothing; none is a 500."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from tests.conftest import login


@pytest.fixture
def farm(session, make_user):
    from datetime import date

    from shop.trace import lots
    from tests.shop.trace_factories import make_farm

    farm = make_farm(session)
    farm.lots = [
        lots.create_harvest_lot(
            session, farm.cycle, "20", "kg", harvested_on=date(2026, 3, 4), product_id=farm.peach.id
        )
        for _ in range(2)
    ]
    make_user("zhaolin", "farmer", household_id=farm.household.id)
    make_user("kuaiji", "official")
    session.commit()
    return farm


def _count(session, model) -> int:
    session.expire_all()
    return session.scalar(select(func.count()).select_from(model))


@pytest.mark.parametrize("qty", ["NaN", "sNaN", "Infinity", "1e30", "-3", "abc", "１e9"])
def test_a_gift_box_with_a_mistyped_quantity_is_refused(client, session, farm, qty):
    from shop.trace.models import HarvestLot

    login(client, "zhaolin")
    before = _count(session, HarvestLot)
    r = client.post(
        "/trace/merge",
        data={"product_id": farm.peach.id, f"qty_{farm.lots[0].id}": qty, f"qty_{farm.lots[1].id}": "1"},
        follow_redirects=True,
    )
    assert r.status_code == 200 and 'class="flash error"' in r.get_data(as_text=True)
    assert _count(session, HarvestLot) == before


@pytest.mark.parametrize("day", ["0001-01-01", "1899-12-31", "9999-12-31"])
def test_implausible_farm_dates_are_refused(client, session, farm, day):
    from shop.trace.models import CropCycle

    login(client, "zhaolin")
    before = _count(session, CropCycle)
    r = client.post(
        "/trace/cycles/new?lang=en",
        data={"greenhouse_id": farm.greenhouse.id, "crop": "peach", "planted_on": day},
    )
    assert r.status_code == 200 and "not a plausible date" in r.get_data(as_text=True)
    assert _count(session, CropCycle) == before


@pytest.mark.parametrize("month", ["0001-01", "9999-12", "2026-13", "2026", "x"])
def test_a_statement_for_an_impossible_month_is_a_400(client, farm, month):
    login(client, "kuaiji")
    r = client.get(f"/shop/staff/statement?month={month}&household={farm.household.id}")
    assert r.status_code == 400


@pytest.mark.parametrize(
    "start", ["-62135596800", "-1", "1e20", "0001-01-01T00:00:00", "2200-01-01", "253402300799"]
)
def test_series_and_exports_refuse_times_outside_1970_to_2199(client, farm, start):
    login(client, "kuaiji")
    code = farm.greenhouse.code
    api = client.get(f"/api/v1/greenhouses/{code}/series?metric=air_temperature&start={start}&resolution=day")
    assert api.status_code == 400 and api.is_json
    csv = client.get(f"/iot/g/{code}/export.csv?start={start}&resolution=day")
    assert csv.status_code == 400


def test_cli_refusals_are_messages(runner, farm):
    r = runner.invoke(
        args=[
            "users",
            "create",
            "newbie",
            "--role",
            "farmer",
            "--password",
            "long-enough-1",
            "--household",
            "999",
        ]
    )
    assert r.exit_code == 1 and "Traceback" not in r.output and "refused" in r.output
    for area in ("nan", "inf", "-1"):
        r = runner.invoke(args=["iot", "greenhouse", "add", f"GH-{area}", "--name", "x", "--area", area])
        assert r.exit_code != 0 and "Traceback" not in r.output, area
    r = runner.invoke(args=["shop", "statement", farm.household.code, "--month", "0001-01"])
    assert r.exit_code == 2 and "YYYY-MM" in r.output


def test_stock_for_a_household_that_does_not_exist_says_so(client, session, farm):
    login(client, "kuaiji")
    r = client.post(
        f"/shop/staff/products/{farm.peach.id}/stock?lang=en",
        data={"quantity": "10", "household_id": "999999", "harvested_on": "2026-03-04"},
        follow_redirects=True,
    )
    assert r.status_code == 200 and "no household 999999" in r.get_data(as_text=True)


def test_irrigation_summary_at_the_edges_of_time(client, farm):
    login(client, "kuaiji")
    base = f"/api/v1/greenhouses/{farm.greenhouse.code}/irrigation?period=month&at="
    assert client.get(base + "7258118399").status_code == 200  # the last second of 2199
    assert client.get(base + "7258118400").status_code == 400
    assert client.get(base + "0").status_code == 200


@pytest.mark.parametrize(
    "path",
    [
        "/disclosure/99999999999999999999999",
        "/coop/vouchers/99999999999999999999999",
        "/coop/members/99999999999999999999999",
        "/coop/drafts/99999999999999999999999",
        "/coop/disclosures/9223372036854775808",
    ],
)
def test_an_id_too_large_for_the_database_is_not_found(client, make_user, path):
    """Found by review: ids beyond a database integer overflowed in the driver (500)."""
    from tests.conftest import login

    make_user("kuaiji", "official")
    login(client, "kuaiji")
    assert client.get(path).status_code in (404, 405)  # no route takes it (405 where POST shares the path)


def test_a_text_longer_than_its_column_is_refused_on_every_database_found_by_ci(client, session, make_user):
    """PostgreSQL refused a 21-character household code with a DataError (a 500 from the members
    form); SQLite kept it whole. Both now refuse it before the flush, with a clear message."""
    from coop import members
    from coop.models import Household
    from core.db import TextTooLong

    make_user("kuaiji", "official")
    login(client, "kuaiji")
    r = client.post(
        "/coop/members?lang=en",
        data={"action": "add", "code": "9" * 21, "head_name": "赵甲", "members": "3", "on": "2026-01-05"},
        follow_redirects=True,
    )
    assert r.status_code < 500 and "too long: at most 20 characters" in r.get_data(as_text=True)
    assert _count(session, Household) == 0
    with pytest.raises(TextTooLong):
        members.add_household(session, code="x" * 21, head_name="赵乙", members=2)
    session.rollback()
    assert _count(session, Household) == 0
