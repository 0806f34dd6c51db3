"""Production records (生产记录) and the pre-harvest interval (安全间隔期): what is recorded and
refused, the one rule every path into a harvest lot asks (the harvest form, the shop's
"receive stock", the services), an official's override and where it shows, and
``production.interval_problem`` for the certificate rule (packs and gift boxes too)."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

import pytest
from sqlalchemy import select

from core import clock
from core.models import AuditEntry
from shop import catalog
from shop.trace import cycles, lots, production
from shop.trace.errors import LotError
from shop.trace.models import HarvestLot, InputUse, PestControl
from tests.conftest import login
from tests.shop.trace_factories import add_irrigation, local_ts, make_farm
from tests.shop.trace_factories import spray as make_spray

PLANTED = date(2026, 3, 1)
SPRAYED = date(2026, 3, 10)
TODAY = datetime(2026, 4, 20, 10, 0)  # local time the tests run at


@pytest.fixture(autouse=True)
def _frozen():
    with clock.frozen(clock.at_local(TODAY.date(), 10)):
        yield


def spray(session, cycle, day=SPRAYED, days="7", **extra):
    return make_spray(session, cycle, day, days, **extra)


@pytest.fixture
def farm(session):
    return make_farm(session, planted_on=PLANTED)


@pytest.fixture
def people(session, make_user, farm):
    neighbour = make_farm(session, code="GH2", household_code="ZZ002", planted_on=PLANTED)
    return {
        "zhaolin": make_user("zhaolin", "farmer", household_id=farm.household.id, display_name="赵林"),
        "wangfang": make_user("wangfang", "farmer", household_id=neighbour.household.id),
        "kuaiji": make_user("kuaiji", "official", display_name="会计李"),
        "neighbour": neighbour,
    }


# --- what a pesticide's registration number may be ---------------------------------------


@pytest.mark.parametrize(
    "typed, stored",
    [
        ("PD20080001", "PD20080001"),
        ("PD20152400F", "PD20152400F"),  # with the F suffix
        ("WP20080001", "WP20080001"),  # 卫生用农药
        ("LS20071573", "LS20071573"),  # 临时登记
        ("LS96030", "LS96030"),
        ("pd 2008 0001", "PD20080001"),
        ("ＰＤ２００８０００１", "PD20080001"),  # typed full width
        ("PD85105-3", "PD85105-3"),  # an old number
    ],
)
def test_registration_numbers_in_the_published_formats_are_taken(session, farm, typed, stored):
    use = spray(session, farm.cycle, registration_no=typed)
    assert use.registration_no == stored


@pytest.mark.parametrize("typed", ["", "PD2008001", "XX20080001", "PD20080001X", "20080001", "PD2008000１2"])
def test_other_registration_numbers_are_refused_beside_their_field(session, farm, typed):
    with pytest.raises(LotError) as refused:
        spray(session, farm.cycle, registration_no=typed)
    assert refused.value.field == "registration_no"
    assert session.scalars(select(InputUse)).all() == []


# --- what an input record must make sense of ----------------------------------------------


@pytest.mark.parametrize(
    "change, field",
    [
        ({"days": "-3"}, "interval_days"),
        ({"days": "400"}, "interval_days"),
        ({"days": "seven"}, "interval_days"),
        ({"days": ""}, "interval_days"),
        ({"amount": "0"}, "amount"),
        ({"amount": "-5"}, "amount"),
        ({"amount": "1e30"}, "amount"),
        ({"amount": "200000", "unit": "kg"}, "amount"),  # 200 t on one greenhouse
        ({"rate": "0"}, "rate"),
        ({"rate": "-1"}, "rate"),
        ({"rate": "9999999"}, "rate"),
        ({"rate": ""}, "rate"),  # a pesticide's dose must be known
        ({"rate": "0.5", "rate_unit": "dilution"}, "rate"),
        ({"rate_unit": "bucket"}, "rate_unit"),
        ({"unit": "barrel"}, "unit"),
        ({"target": ""}, "target"),
        ({"method": ""}, "method"),
        ({"pesticide_class": ""}, "pesticide_class"),
        ({"day": date(2026, 4, 21)}, "applied_on"),  # tomorrow
        ({"day": date(2026, 2, 27)}, "applied_on"),  # before planting
        ({"purchased_on": date(2026, 3, 11)}, "purchased_on"),  # bought after it was used
        ({"product": "  "}, "product"),
    ],
)
def test_absurd_inputs_are_refused_and_say_which_field(session, farm, change, field):
    change = dict(change)
    day = change.pop("day", SPRAYED)
    days = change.pop("days", "7")
    with pytest.raises(LotError) as refused:
        spray(session, farm.cycle, day=day, days=days, **change)
    assert refused.value.field == field, str(refused.value)
    assert session.scalars(select(InputUse)).all() == []


def test_no_input_after_the_cycle_ended(session, farm):
    cycles.end_crop_cycle(session, farm.cycle, date(2026, 4, 1))
    with pytest.raises(LotError, match="ended on 2026-04-01"):
        spray(session, farm.cycle, day=date(2026, 4, 2))
    with pytest.raises(LotError, match="ended on 2026-04-01"):
        cycles.add_input(session, farm.cycle, "腐熟羊粪", "100", "kg", date(2026, 4, 5))


def test_a_fertiliser_has_no_interval_but_may_have_a_registration_number(session, farm):
    with pytest.raises(LotError) as refused:
        production.record_input(
            session,
            farm.cycle,
            kind="fertiliser",
            product="硫酸钾",
            amount="25",
            unit="kg",
            applied_on=SPRAYED,
            interval_days="7",
        )
    assert refused.value.field == "interval_days"
    row = production.record_input(
        session,
        farm.cycle,
        kind="fertiliser",
        product="生物有机肥",
        amount="600",
        unit="kg",
        applied_on=PLANTED,
        method="broadcast",
        rate="600",
        rate_unit="kg/mu",
        registration_no="微生物肥(2021)准字(8801)号",
        supplier="绿源有机肥厂",
        purchased_on=date(2026, 2, 26),
        purchase_ref="LY-0402",
    )
    assert (row.kind, row.first_harvest_on, row.registration_no) == (
        "fertiliser",
        None,
        "微生物肥(2021)准字(8801)号",
    )
    # the short form of older callers still records a fertiliser
    old = cycles.add_input(session, farm.cycle, "Compost", "10", "kg", date(2026, 3, 5))
    assert (old.kind, old.amount, old.unit) == ("fertiliser", Decimal("10.000"), "kg")


def test_every_input_is_audited_with_who_recorded_it(session, farm, people):
    use = spray(session, farm.cycle, user_id=people["zhaolin"].id)
    assert use.recorded_by_id == people["zhaolin"].id and use.created_at is not None
    entry = session.scalars(select(AuditEntry).where(AuditEntry.action == "crop_cycle.input")).one()
    assert entry.details["registration_no"] == "PD20183071" and entry.details["interval_days"] == 7


# --- THE RULE at harvest ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "day, refused",
    [
        (date(2026, 3, 9), False),  # harvested before the spraying
        (date(2026, 3, 10), True),  # the day it was sprayed
        (date(2026, 3, 16), True),  # the last day inside 7 days
        (date(2026, 3, 17), False),  # the first allowed day
    ],
)
def test_a_harvest_inside_the_interval_is_refused_naming_the_pesticide(session, farm, day, refused):
    spray(session, farm.cycle)
    if not refused:
        lot = lots.create_harvest_lot(session, farm.cycle, "30", "kg", harvested_on=day)
        assert lot.interval_override_reason is None
        return
    with pytest.raises(production.IntervalError) as error:
        lots.create_harvest_lot(session, farm.cycle, "30", "kg", harvested_on=day)
    text = str(error.value)
    assert "43% 戊唑醇悬浮剂" in text and "2026-03-17" in text and "7-day" in text
    assert error.value.first_allowed == date(2026, 3, 17)
    assert session.scalars(select(HarvestLot)).all() == []


def test_the_longest_interval_decides(session, farm):
    spray(session, farm.cycle, days="7")
    spray(
        session,
        farm.cycle,
        day=date(2026, 3, 12),
        days="14",
        product="80% 烯酰吗啉水分散粒剂",
        registration_no="PD20121563",
    )
    with pytest.raises(production.IntervalError) as error:
        lots.create_harvest_lot(session, farm.cycle, "30", "kg", harvested_on=date(2026, 3, 20))
    assert "烯酰吗啉" in str(error.value) and error.value.first_allowed == date(2026, 3, 26)


def test_only_an_official_overrides_and_only_with_a_reason(session, farm, people):
    spray(session, farm.cycle)
    day = date(2026, 3, 14)
    farmer, official = people["zhaolin"], people["kuaiji"]
    with pytest.raises(LotError, match="only an official"):
        lots.create_harvest_lot(
            session, farm.cycle, "30", "kg", harvested_on=day, user_id=farmer.id, override_reason="我想卖"
        )
    for blank in (None, "", "   "):  # no reason: the refusal itself
        with pytest.raises(production.IntervalError):
            lots.create_harvest_lot(
                session, farm.cycle, "30", "kg", harvested_on=day, user_id=official.id, override_reason=blank
            )
    for no_reason in ("x", "..", "ok", "。。。。", "a.b.c"):  # punctuation or a word is no reason (review)
        with pytest.raises(LotError) as short:
            lots.create_harvest_lot(
                session,
                farm.cycle,
                "30",
                "kg",
                harvested_on=day,
                user_id=official.id,
                override_reason=no_reason,
            )
        assert short.value.field == "override_reason", no_reason
    with pytest.raises(LotError, match="only an official"):  # nor the system (CLI, demo) without a user
        lots.create_harvest_lot(session, farm.cycle, "30", "kg", harvested_on=day, override_reason="抢收")
    lot = lots.create_harvest_lot(
        session,
        farm.cycle,
        "30",
        "kg",
        harvested_on=day,
        user_id=official.id,
        override_reason="暴雨将至抢收，已送检农残，结果合格前不上架",
    )
    assert lot.interval_override_by_id == official.id and lot.interval_override_at is not None
    assert lot.interval_override_reason == "暴雨将至抢收，已送检农残，结果合格前不上架"
    entry = session.scalars(select(AuditEntry).where(AuditEntry.action == "lot.harvest")).one()
    assert entry.details["interval_override"] == lot.interval_override_reason


def test_a_pesticide_backdated_before_a_harvest_is_refused_or_needs_an_override(session, farm, people):
    lot = lots.create_harvest_lot(session, farm.cycle, "30", "kg", harvested_on=date(2026, 3, 16))
    with pytest.raises(production.IntervalError) as refused:
        spray(session, farm.cycle, day=date(2026, 3, 12))  # 7 days: the harvest lies inside
    assert lot.lot_number in str(refused.value) and "2026-03-19" in str(refused.value)
    assert refused.value.field == "applied_on"
    spray(session, farm.cycle, day=date(2026, 3, 16), days="0")  # no interval: nothing to refuse
    spray(session, farm.cycle, day=date(2026, 3, 17))  # after the harvest: it binds later harvests only
    with pytest.raises(LotError, match="only an official"):
        spray(
            session, farm.cycle, day=date(2026, 3, 12), user_id=people["zhaolin"].id, override_reason="忘记记"
        )
    use = spray(
        session,
        farm.cycle,
        day=date(2026, 3, 12),
        user_id=people["kuaiji"].id,
        override_reason="补记：3月12日确已施药，该批已召回送检",
    )
    assert use.override_by_id == people["kuaiji"].id and use.override_reason.startswith("补记")
    # the certificate rule sees the lot inside the interval now
    problem = production.interval_problem(session, lot, date(2026, 4, 20))
    assert problem is not None and lot.lot_number in str(problem) and not problem.overridden


def test_stock_from_a_household_growing_the_crop_twice_is_bound_by_every_cycle(session, farm, make_user):
    """Found by review: with two peach cycles growing (two greenhouses) the shop's stock path
    could not tell which, and so applied the rule to neither."""
    from iot.models import Greenhouse

    second_house = Greenhouse(code="GH1B", name="二号桃棚", crop="peach", household_id=farm.household.id)
    session.add(second_house)
    session.flush()
    second = cycles.create_crop_cycle(session, second_house.id, "peach", PLANTED)
    spray(session, second)  # only the second house was sprayed
    with pytest.raises(catalog.CatalogError) as refused:
        catalog.add_stock(
            session, farm.peach, Decimal(20), household_id=farm.household.id, harvested_on=date(2026, 3, 15)
        )
    assert "2026-03-17" in str(refused.value)
    official = make_user("kuaiji", "official")
    lot = catalog.add_stock(
        session,
        farm.peach,
        Decimal(20),
        household_id=farm.household.id,
        harvested_on=date(2026, 3, 15),
        user_id=official.id,
        override_reason="只采收一号棚，二号棚未采",
    )
    assert lot.crop_cycle_id is None and lot.interval_override_reason == "只采收一号棚，二号棚未采"
    clean = catalog.add_stock(
        session, farm.peach, Decimal(20), household_id=farm.household.id, harvested_on=date(2026, 3, 18)
    )
    assert clean.interval_override_reason is None


def test_the_shops_receive_stock_path_is_bound_by_the_rule_too(session, farm, make_user):
    """``catalog.add_stock`` without a cycle finds the household's cycle: the rule applies there."""
    spray(session, farm.cycle)
    with pytest.raises(catalog.CatalogError) as refused:
        catalog.add_stock(
            session, farm.peach, Decimal(20), household_id=farm.household.id, harvested_on=date(2026, 3, 15)
        )
    assert "2026-03-17" in str(refused.value)
    assert session.scalars(select(HarvestLot)).all() == []
    official = make_user("kuaiji", "official")
    lot = catalog.add_stock(
        session,
        farm.peach,
        Decimal(20),
        household_id=farm.household.id,
        harvested_on=date(2026, 3, 15),
        user_id=official.id,
        override_reason="抽检合格后上架",
    )
    assert lot.crop_cycle_id == farm.cycle.id and lot.interval_override_reason == "抽检合格后上架"


# --- interval_problem: for the certificate, through packs and gift boxes ---------------------


def test_interval_problem_follows_packs_and_gift_boxes(session, farm, people):
    official = people["kuaiji"]
    neighbour = people["neighbour"]
    spray(session, farm.cycle)
    clean = lots.create_harvest_lot(
        session, farm.cycle, "40", "kg", harvested_on=date(2026, 3, 20), product_id=farm.peach.id
    )
    inside = lots.create_harvest_lot(
        session,
        farm.cycle,
        "40",
        "kg",
        harvested_on=date(2026, 3, 12),
        product_id=farm.peach.id,
        user_id=official.id,
        override_reason="抢收送检",
    )
    other = lots.create_harvest_lot(
        session, neighbour.cycle, "40", "kg", harvested_on=date(2026, 3, 12), product_id=neighbour.peach.id
    )
    day = date(2026, 4, 20)
    assert production.interval_problem(session, clean, day) is None
    assert production.interval_problem(session, other, day) is None  # another cycle: never sprayed
    problem = production.interval_problem(session, inside, day)
    assert problem is not None and problem.overridden and problem.first_allowed == date(2026, 3, 17)
    assert inside.lot_number in str(problem) and "抢收送检" in str(problem)

    clean_packs = lots.split_lot(session, clean, ["10", "10"])
    inside_packs = lots.split_lot(session, inside, ["10"])
    assert production.interval_problem(session, clean_packs[0], day) is None
    assert production.interval_problem(session, inside_packs[0], day) is not None  # a pack inherits
    box = lots.merge_lots(
        session, [(clean_packs[1], "5"), (inside_packs[0], "5")], product_id=farm.peach.id, unit="kg"
    )
    boxed = production.interval_problem(session, box, day)
    assert boxed is not None and inside.lot_number in str(boxed)  # one source inside: the box is
    good_box = lots.merge_lots(session, [(clean_packs[0], "5"), (other, "5")], product_id=None, unit="box")
    assert production.interval_problem(session, good_box, day) is None


def test_interval_problem_uses_the_day_for_a_source_without_harvest_date(session, farm):
    spray(session, farm.cycle)
    lot = lots.create_harvest_lot(session, farm.cycle, "40", "kg", harvested_on=date(2026, 3, 20))
    lot.harvested_on = None  # stock of old with no harvest date
    assert production.interval_problem(session, lot, date(2026, 3, 12)) is not None
    assert production.interval_problem(session, lot, date(2026, 3, 17)) is None


# --- pest control -------------------------------------------------------------------------------


def test_pest_control_records_link_chemical_control_to_its_pesticide(session, farm, people):
    use = spray(session, farm.cycle)
    with pytest.raises(LotError) as refused:
        production.record_pest_control(
            session, farm.cycle, observed_on=SPRAYED, observation="褐腐病斑", control="chemical"
        )
    assert refused.value.field == "input_use_id"
    other = spray(session, people["neighbour"].cycle)
    with pytest.raises(LotError):  # another cycle's pesticide
        production.record_pest_control(
            session,
            farm.cycle,
            observed_on=SPRAYED,
            observation="褐腐病斑",
            control="chemical",
            input_use_id=other.id,
        )
    with pytest.raises(LotError) as no_measure:
        production.record_pest_control(
            session, farm.cycle, observed_on=SPRAYED, observation="桃蚜", control="physical"
        )
    assert no_measure.value.field == "measure"
    with pytest.raises(LotError) as future:
        production.record_pest_control(
            session, farm.cycle, observed_on=date(2026, 5, 1), observation="桃蚜", control="none"
        )
    assert future.value.field == "observed_on"
    row = production.record_pest_control(
        session,
        farm.cycle,
        observed_on=date(2026, 3, 9),
        observation="果面零星褐腐病斑",
        control="chemical",
        input_use_id=use.id,
        user_id=people["zhaolin"].id,
    )
    assert row.input_use_id == use.id and row.recorded_by_id == people["zhaolin"].id
    record = production.production_record(session, farm.cycle)
    assert [p.pesticide for p in record.pest_controls] == ["43% 戊唑醇悬浮剂"]
    assert record.pesticides[0].first_harvest_on == date(2026, 3, 17)


# --- fertigation from the greenhouse, with units ------------------------------------------------


def test_fertigation_counts_as_an_input_with_units(session, farm):
    add_irrigation(
        session, farm, local_ts(date(2026, 3, 5), 7), 300, ec=1.8, ph=6.2, fertilizer={"A": 1.25, "B": 0.5}
    )
    add_irrigation(session, farm, local_ts(date(2026, 3, 6), 7), 200, ec=2.1, ph=6.0, fertilizer={"A": 1.0})
    add_irrigation(session, farm, local_ts(date(2026, 3, 7), 7), 100)  # water only: no fertigation
    f = production.fertigation(session, farm.cycle, date(2026, 3, 31))
    assert (f.runs, f.first_on, f.last_on, f.water_l) == (2, date(2026, 3, 5), date(2026, 3, 6), 500)
    assert [(t.tank, t.amount, t.unit) for t in f.tanks] == [("A", 2.25, "L"), ("B", 0.5, "L")]
    assert f.mean_ec == pytest.approx((1.8 * 300 + 2.1 * 200) / 500)


# --- the pages ----------------------------------------------------------------------------------


def _input_form(**fields):
    data = dict(
        kind="pesticide",
        pesticide_class="fungicide",
        product="43% 戊唑醇悬浮剂",
        registration_no="PD20183071",
        target="褐腐病",
        interval_days="7",
        method="spray",
        amount="60",
        unit="mL",
        rate="3000",
        rate_unit="dilution",
        applied_on="2026-03-10",
        supplier="大金店镇农资服务站",
        purchased_on="2026-03-08",
        purchase_ref="NZ-0731",
        note="",
        override_reason="",
    )
    data.update(fields)
    return data


def test_the_cycle_page_records_inputs_and_says_whats_wrong_beside_the_field(client, session, farm, people):
    login(client, "zhaolin")
    page = client.get(f"/trace/cycles/{farm.cycle.id}?lang=en")
    assert page.status_code == 200 and 'data-form="input"' in page.get_data(as_text=True)
    bad = client.post(
        f"/trace/cycles/{farm.cycle.id}/inputs?lang=en", data=_input_form(registration_no="PD123")
    )
    html = bad.get_data(as_text=True)
    assert bad.status_code == 400
    beside = html[html.index('id="registration_no"') :][:900]
    assert "is not a pesticide registration number" in beside
    assert 'value="43% 戊唑醇悬浮剂"' in html  # what was typed is kept
    for hostile in (
        {"interval_days": "-1"},
        {"amount": "NaN"},
        {"applied_on": "2026-13-40"},
        {"rate": "1e999"},
        {"kind": "plutonium"},
        {"applied_on": "2027-01-01"},
    ):
        response = client.post(f"/trace/cycles/{farm.cycle.id}/inputs?lang=en", data=_input_form(**hostile))
        assert response.status_code == 400, hostile
    assert session.scalars(select(InputUse)).all() == []
    good = client.post(f"/trace/cycles/{farm.cycle.id}/inputs", data=_input_form())
    assert good.status_code == 302
    use = session.scalars(select(InputUse)).one()
    assert (use.registration_no, use.interval_days, use.recorded_by_id) == (
        "PD20183071",
        7,
        people["zhaolin"].id,
    )
    page = client.get(f"/trace/cycles/{farm.cycle.id}?lang=en").get_data(as_text=True)
    assert "PD20183071" in page and "harvest from 2026-03-17" in page and "赵林" in page


def test_another_household_may_not_record_on_a_cycle(client, session, farm, people):
    login(client, "wangfang")
    assert client.post(f"/trace/cycles/{farm.cycle.id}/inputs", data=_input_form()).status_code == 404
    assert (
        client.post(
            f"/trace/cycles/{farm.cycle.id}/pest-controls",
            data={"observed_on": "2026-03-09", "observation": "x", "control": "none"},
        ).status_code
        == 404
    )
    assert session.scalars(select(InputUse)).all() == [] and session.scalars(select(PestControl)).all() == []
    client.post("/logout")
    login(client, "kuaiji")  # staff may
    assert client.post(f"/trace/cycles/{farm.cycle.id}/inputs", data=_input_form()).status_code == 302


def test_the_pest_control_form(client, session, farm, people):
    use = spray(session, farm.cycle)
    session.commit()
    login(client, "zhaolin")
    url = f"/trace/cycles/{farm.cycle.id}/pest-controls?lang=en"
    bad = client.post(
        url,
        data={
            "observed_on": "2026-03-09",
            "observation": "褐腐病斑",
            "control": "chemical",
            "input_use_id": "0",
        },
    )
    html = bad.get_data(as_text=True)
    assert bad.status_code == 400
    assert "choose the pesticide applied" in html[html.index('id="input_use_id"') :][:1500]
    good = client.post(
        url,
        data={
            "observed_on": "2026-03-09",
            "observation": "褐腐病斑",
            "control": "chemical",
            "input_use_id": str(use.id),
            "measure": "",
        },
    )
    assert good.status_code == 302
    assert session.scalars(select(PestControl)).one().input_use_id == use.id


def _harvest_form(cycle, product, **fields):
    data = {
        "cycle_id": cycle.id,
        "product_id": product.id,
        "quantity": "30",
        "unit": "kg",
        "harvested_on": "2026-03-14",
        "grade": "A",
    }
    data.update(fields)
    return data


def test_the_harvest_form_refuses_inside_the_interval_and_an_official_overrides(
    client, session, farm, people
):
    spray(session, farm.cycle)
    session.commit()
    login(client, "zhaolin")
    response = client.post("/trace/lots/new?lang=en", data=_harvest_form(farm.cycle, farm.peach))
    html = response.get_data(as_text=True)
    assert response.status_code == 200 and "first day this crop may be harvested is 2026-03-17" in html
    assert "override_reason" not in html  # a farmer is not offered the override
    # nor may a farmer slip one in
    client.post("/trace/lots/new", data=_harvest_form(farm.cycle, farm.peach, override_reason="我说可以"))
    assert session.scalars(select(HarvestLot)).all() == []
    client.post("/logout")
    login(client, "kuaiji")
    form = client.get(f"/trace/lots/new?cycle={farm.cycle.id}&lang=en").get_data(as_text=True)
    assert 'name="override_reason"' in form
    done = client.post(
        "/trace/lots/new", data=_harvest_form(farm.cycle, farm.peach, override_reason="暴雨抢收，已送检")
    )
    assert done.status_code == 302
    lot = session.scalars(select(HarvestLot)).one()
    assert (
        lot.interval_override_reason == "暴雨抢收，已送检"
        and lot.interval_override_by_id == people["kuaiji"].id
    )
    staff_page = client.get(f"/trace/lots/{lot.id}?lang=en").get_data(as_text=True)
    assert "暴雨抢收，已送检" in staff_page and "会计李" in staff_page
    # packs inherit it, on the staff page and the public page
    pack = lots.split_lot(session, lot, ["10"])[0]
    session.commit()
    assert "暴雨抢收，已送检" in client.get(f"/trace/lots/{pack.id}?lang=en").get_data(as_text=True)
    client.post("/logout")
    public = client.get(f"/t/{pack.code}?lang=zh_CN").get_data(as_text=True)
    assert "暴雨抢收，已送检" in public and "data-interval-override" in public
    assert "PD20183071" in public and "43% 戊唑醇悬浮剂" in public


def test_the_stock_page_is_bound_by_the_rule(client, session, farm, people):
    spray(session, farm.cycle)
    session.commit()
    login(client, "kuaiji")
    url = f"/shop/staff/products/{farm.peach.id}/stock?lang=en"
    form = {
        "quantity": "20",
        "harvested_on": "2026-03-15",
        "household_id": str(farm.household.id),
        "grade": "A",
    }
    refused = client.post(url, data=form)
    assert refused.status_code == 400
    assert "2026-03-17" in refused.get_data(as_text=True)
    assert session.scalars(select(HarvestLot)).all() == []
    assert client.post(url, data=form | {"override_reason": "抽检合格"}).status_code == 302
    assert session.scalars(select(HarvestLot)).one().interval_override_reason == "抽检合格"


def test_the_public_page_shows_the_production_record_in_chinese(client, session, farm):
    production.record_input(
        session,
        farm.cycle,
        kind="fertiliser",
        product="腐熟羊粪",
        amount="800",
        unit="kg",
        applied_on=PLANTED,
        method="broadcast",
        rate="800",
        rate_unit="kg/mu",
        supplier="绿源有机肥厂",
    )
    spray(session, farm.cycle)
    add_irrigation(session, farm, local_ts(date(2026, 3, 5), 7), 300, ec=1.8, ph=6.2, fertilizer={"A": 21.22})
    lot = lots.create_harvest_lot(
        session, farm.cycle, "30", "kg", harvested_on=date(2026, 3, 20), product_id=farm.peach.id
    )
    session.commit()
    html = client.get(f"/t/{lot.code}?lang=zh_CN").get_data(as_text=True)
    for text in (
        "腐熟羊粪",
        "撒施",
        "800 千克/亩",
        "绿源有机肥厂",
        "PD20183071",
        "杀菌剂",
        "褐腐病",
        "3000 倍液",
        "7 天",
        "2026-03-17 起可采收",
        "A 罐母液 21.22 升",
        "EC 1.80 mS/cm",
    ):
        assert text in html, text
    assert "A 21.22" not in html


def test_the_demo_records_a_real_looking_production_record(app, runner, session):
    result = runner.invoke(args=["demo", "seed", "--password", "demo-password-1"])
    assert result.exit_code == 0, result.output
    uses = session.scalars(select(InputUse)).all()
    assert uses and not [u.product for u in uses if "(" in u.product]  # no English in parentheses
    pesticides = [u for u in uses if u.kind == "pesticide"]
    assert pesticides and all(production.REGISTRATION_RE.fullmatch(u.registration_no) for u in pesticides)
    assert all(u.interval_days and u.supplier and u.rate and u.target for u in pesticides)
    grape = [u for u in pesticides if u.crop_cycle.crop.startswith("grape") or "烯酰吗啉" in u.product]
    assert grape and grape[0].pesticide_class == "fungicide"
    for lot in session.scalars(select(HarvestLot)):
        assert production.interval_problem(session, lot) is None, lot.lot_number  # harvested after it
    assert session.scalars(select(PestControl)).all()
    code = session.scalars(select(HarvestLot.code).where(HarvestLot.kind == "merge")).first()
    html = app.test_client().get(f"/t/{code}?lang=zh_CN").get_data(as_text=True)
    assert "data-production" in html and "安全间隔期" in html


def test_free_text_keeps_its_chinese_punctuation(session, farm):
    use = spray(session, farm.cycle, target="褐腐病，炭疽病（兼治）", note="  第一次  用药，\n按标签 ")
    assert (use.target, use.note) == ("褐腐病，炭疽病（兼治）", "第一次 用药， 按标签")
    row = production.record_pest_control(
        session,
        farm.cycle,
        observed_on=SPRAYED,
        observation="释放胡瓜钝绥螨（捕食螨），2 万头",
        control="none",
    )
    assert row.observation == "释放胡瓜钝绥螨（捕食螨），2 万头"


def test_a_cycle_does_not_end_before_its_last_input(session, farm):
    spray(session, farm.cycle, day=date(2026, 4, 2))
    with pytest.raises(LotError, match="until 2026-04-02"):
        cycles.end_crop_cycle(session, farm.cycle, date(2026, 4, 1))
    cycles.end_crop_cycle(session, farm.cycle, date(2026, 4, 2))
    assert farm.cycle.ended_on == date(2026, 4, 2)


def test_the_cycle_page_says_when_the_crop_may_be_harvested_again(client, session, farm, people):
    spray(session, farm.cycle, day=date(2026, 4, 18))
    session.commit()
    login(client, "zhaolin")
    html = client.get(f"/trace/cycles/{farm.cycle.id}?lang=zh_CN").get_data(as_text=True)
    notice = html[html.index("data-interval-today") :][:400]
    assert "最早 2026-04-25 才可采收" in notice and "43% 戊唑醇悬浮剂" in notice
