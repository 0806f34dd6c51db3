"""One visibility rule for greenhouses, tried through every way in: the dashboard, the
API, the CSV export, alert acknowledgement and traceability's crop-cycle form."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from coop.models import Household
from core.models import User
from iot import access
from iot.models import Alert
from tests.conftest import login
from tests.iot.dash_helpers import T0, add_readings, make_greenhouse


@pytest.fixture
def village(session, make_user):
    zhao, wang = Household(code="ZZ001", head_name="赵"), Household(code="ZZ002", head_name="王")
    session.add_all([zhao, wang])
    session.flush()
    owner = make_user("zhaolin", "farmer", household_id=zhao.id)
    spouse = make_user("zhaomei", "farmer", household_id=zhao.id)  # same household, owns nothing
    other = make_user("wangfang", "farmer", household_id=wang.id)
    loner = make_user("liqiang", "farmer")  # no household
    make_user("kuaiji", "official")
    make_user("chen", "customer")
    gh, dev = make_greenhouse(session, code="ZZ-PEACH-1", owner=owner, crop="peach")
    gh.household_id = zhao.id
    mine, _ = make_greenhouse(session, code="LI-1", owner=loner, device="2")
    add_readings(session, gh, dev, "air_temperature", [(T0 + 60 * i, 20.0) for i in range(5)])
    alert = Alert(greenhouse_id=gh.id, metric_id=1, kind="above", threshold=30.0, opened_at=T0)
    session.add(alert)
    session.commit()
    return {
        "gh": gh,
        "mine": mine,
        "alert": alert,
        "owner": owner,
        "spouse": spouse,
        "other": other,
        "loner": loner,
    }


def test_the_rule(session, village, make_user):
    gh = village["gh"]
    users = ("owner", "spouse", "other", "loner")
    seen = {u: [g.code for g in access.visible_greenhouses(session, village[u])] for u in users}
    assert seen == {"owner": ["ZZ-PEACH-1"], "spouse": ["ZZ-PEACH-1"], "other": [], "loner": ["LI-1"]}
    assert access.can_see(village["spouse"], gh) and not access.can_see(village["other"], gh)
    assert not access.can_see(village["loner"], gh) and access.can_see(village["loner"], village["mine"])
    official = session.scalar(select(User).where(User.username == "kuaiji"))
    assert [g.code for g in access.visible_greenhouses(session, official)] == ["LI-1", "ZZ-PEACH-1"]


@pytest.mark.parametrize(
    ("user", "allowed"),
    [("zhaolin", True), ("zhaomei", True), ("kuaiji", True), ("wangfang", False), ("liqiang", False)],
)
def test_every_path_agrees(client, village, user, allowed):
    login(client, user)
    code, alert_id = village["gh"].code, village["alert"].id
    page = client.get(f"/iot/g/{code}")
    api = client.get(f"/api/v1/greenhouses/{code}")
    csv = client.get(f"/iot/g/{code}/export.csv?start={T0}&end={T0 + 3600}")
    listing = client.get("/api/v1/greenhouses").get_json()["greenhouses"]
    overview = client.get("/iot/").get_data(as_text=True)
    cycle_form = client.get("/trace/cycles/new").get_data(as_text=True)
    if allowed:
        assert page.status_code == api.status_code == csv.status_code == 200
        assert "ZZ-PEACH-1" in csv.get_data(as_text=True)
        assert code in [g["code"] for g in listing] and code in overview and code in cycle_form
    else:
        assert page.status_code == api.status_code == csv.status_code == 403
        assert code not in [g["code"] for g in listing] and code not in overview and code not in cycle_form
    ack = client.post(f"/api/v1/alerts/{alert_id}/ack")
    assert ack.status_code == (200 if allowed else 403)


def test_a_crop_cycle_cannot_be_started_in_someone_elses_greenhouse(client, village):
    login(client, "wangfang")
    r = client.post(
        "/trace/cycles/new",
        data={"greenhouse_id": village["gh"].id, "crop": "peach", "planted_on": "2026-09-01"},
    )
    assert r.status_code in (400, 404)
    login(client, "zhaomei")
    r = client.post(
        "/trace/cycles/new",
        data={"greenhouse_id": village["gh"].id, "crop": "peach", "planted_on": "2026-09-01"},
    )
    assert r.status_code == 302


def test_customers_see_no_greenhouse(client, village):
    login(client, "chen")
    assert client.get("/iot/").status_code == 403
    assert client.get("/api/v1/greenhouses").status_code == 403


def test_traceability_follows_the_greenhouse_rule(client, village, session):
    """A farmer without a household who owns a greenhouse (as `flask users create` makes
    one) manages its crop cycles and harvests; nobody else does."""
    from shop.trace.models import CropCycle, HarvestLot

    login(client, "liqiang")
    r = client.post(
        "/trace/cycles/new",
        data={"greenhouse_id": village["mine"].id, "crop": "番茄", "planted_on": "2026-09-01"},
    )
    assert r.status_code == 302
    cycle = session.scalars(select(CropCycle)).one()
    assert client.get(f"/trace/cycles/{cycle.id}").status_code == 200
    assert f"/trace/cycles/{cycle.id}" in client.get("/trace/").get_data(as_text=True)
    r = client.post(
        "/trace/lots/new",
        data={
            "cycle_id": cycle.id,
            "harvested_on": "2026-11-20",
            "quantity": "12",
            "unit": "kg",
            "product_id": 0,
        },
    )
    assert r.status_code == 302, r.get_data(as_text=True)[:300]
    lot = session.scalars(select(HarvestLot)).one()
    assert client.get(f"/trace/lots/{lot.id}").status_code == 200
    for other in ("wangfang", "zhaomei"):
        login(client, other)
        assert client.get(f"/trace/cycles/{cycle.id}").status_code == 404
        assert client.get(f"/trace/lots/{lot.id}").status_code == 404
        assert f"/trace/cycles/{cycle.id}" not in client.get("/trace/").get_data(as_text=True)
    login(client, "kuaiji")
    assert client.get(f"/trace/lots/{lot.id}").status_code == 200
