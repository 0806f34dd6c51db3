"""The demo's traceability data: cycles, linked shop lots, packs, a gift box, a recall."""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import func, select

from coop import demo as coop_demo
from iot.models import Greenhouse
from shop import demo as shop_demo
from shop.models import Product
from shop.orders import sales_of
from shop.trace import ancestry, epcis, lots
from shop.trace.models import CropCycle, HarvestLot

SCHEMA = json.loads(
    (Path(__file__).resolve().parent.parent / "data" / "epcis-2.0-json-schema.json").read_text()
)


def test_demo_traceability(client, session):
    ctx: dict = {"password": None, "accounts": []}
    coop_demo.seed_members(session, ctx)
    households = ctx["households"]
    for i, (code, crop) in enumerate([("GH-PEACH", "peach"), ("GH-GRAPE", "grape"), ("GH-MELON", "melon")]):
        session.add(Greenhouse(code=code, name=code, crop=crop, household_id=households[i].id))
    session.flush()
    shop_demo.seed(session, ctx)
    made = shop_demo.seed_trace(session, ctx)
    session.commit()

    assert set(made["cycles"]) == {"peach", "grape", "melon"}
    unlinked_fruit = session.scalar(
        select(func.count(HarvestLot.id))
        .join(Product, Product.id == HarvestLot.product_id)
        .where(HarvestLot.crop_cycle_id.is_(None), Product.crop.in_(["peach", "grape", "melon"]))
    )
    assert made["linked_lots"] >= 4 and unlinked_fruit == 0
    box = lots.lot_by_code(session, made["box_code"])
    assert {s.crop_cycle.crop for s in ancestry.source_lots(session, box)} == {"peach", "grape"}
    html = client.get(f"/t/{box.code}").get_data(as_text=True)
    assert "GH-PEACH" in html and "GH-GRAPE" in html
    recalled = client.get(f"/t/{made['recalled_code']}").get_data(as_text=True)
    assert "data-recalled" in recalled
    assert (
        epcis.validate(
            epcis.export_lot(session, box, "https://trace.example.cn", "6970000", sales_of=sales_of), SCHEMA
        )
        == []
    )
    # seeding twice changes nothing
    assert shop_demo.seed_trace(session, ctx) == made
    assert session.scalar(select(func.count(CropCycle.id))) == 3


def test_demo_shows_check_in_holds_and_a_recalled_order(client, session):
    """The demo's staff pages have something to show: farmers' lots waiting for check-in, unpaid
    holds (a guest's, a confirmed one), and the demo customer's order of a recalled pack."""
    from core import auth
    from shop import checkout
    from shop.models import Order
    from tests.conftest import DEFAULT_PASSWORD, login

    ctx: dict = {"password": None, "accounts": [], "users": {}}
    coop_demo.seed_members(session, ctx)
    households = ctx["households"]
    for i, (code, crop) in enumerate([("GH-PEACH", "peach"), ("GH-GRAPE", "grape"), ("GH-MELON", "melon")]):
        session.add(Greenhouse(code=code, name=code, crop=crop, household_id=households[i].id))
    for username, role, household in (
        ("zhaolin", "farmer", households[0].id),
        ("wangfang", "farmer", households[1].id),
        ("kuaiji", "official", None),
        ("customer", "customer", None),
    ):
        ctx["users"][username] = auth.create_user(
            session, username, DEFAULT_PASSWORD, role, display_name=username, household_id=household
        )
    session.flush()
    shop_demo.seed(session, ctx)
    shop_demo.seed_trace(session, ctx)
    session.commit()

    waiting = lots.waiting_for_check_in(session)
    assert {lot.created_by_id for lot in waiting} == {ctx["users"]["zhaolin"].id, ctx["users"]["wangfang"].id}
    boxes = [lot for lot in waiting if lot.kind == "pack"]  # zhaolin's 5 kg gift boxes, 10 jin each
    assert len(boxes) == 2 and all(b.unit == "box" and b.product.net_kg == 5 for b in boxes)
    others = session.scalars(select(HarvestLot).where(HarvestLot.id.not_in([w.id for w in waiting]))).all()
    assert others and all(lot.checked_in_at is not None for lot in others)
    holds = checkout.current_holds(session)
    desk = [h for h in holds if h.checkout_key.startswith(shop_demo.DEMO_PREFIX)]  # the order desk's cases
    # the demo customer's unpaid order of the recalled pack was cancelled by the recall itself
    assert len(holds) - len(desk) == 2 and sum(h.hold_confirmed_at is not None for h in holds) == 1
    mine = session.scalars(select(Order).where(Order.user_id == ctx["users"]["customer"].id)).one()
    assert mine.attention and "Recalled lot" in mine.attention
    assert mine.status == "cancelled" and "Cancelled by the recall" in mine.attention

    login(client, "kuaiji")
    check_in_page = client.get("/trace/check-in").get_data(as_text=True)
    assert "data-lot" in check_in_page and check_in_page.count("data-made-of") == 2
    assert client.get("/shop/staff/holds").get_data(as_text=True).count("data-hold=") == len(holds)
    client.post("/logout")
    login(client, "customer")
    assert "data-recall-notice" in client.get(f"/shop/order/{mine.token}").get_data(as_text=True)


def test_demo_shows_measured_results_and_a_complete_epcis_story(client, session):
    """The demo's residue tests carry measured substances (page and export), every EPCIS location
    of the demo's packs resolves, and a pack has one identity in every event."""
    ctx: dict = {"password": None, "accounts": [], "users": {}}
    coop_demo.seed_members(session, ctx)
    households = ctx["households"]
    for i, (code, crop) in enumerate([("GH-PEACH", "peach"), ("GH-GRAPE", "grape"), ("GH-MELON", "melon")]):
        session.add(Greenhouse(code=code, name=code, crop=crop, household_id=households[i].id))
    session.flush()
    shop_demo.seed(session, ctx)
    made = shop_demo.seed_trace(session, ctx)
    session.commit()
    html = client.get(f"/t/{made['code']}").get_data(as_text=True)
    assert "data-measured" in html and "吡虫啉" in html and "未检出" in html
    recalled = client.get(f"/t/{made['recalled_code']}").get_data(as_text=True)
    assert "毒死蜱" in recalled and "超过限量" in recalled
    lot = lots.lot_by_code(session, made["code"])
    document = epcis.export_lot(session, lot, "https://trace.example.cn", "6970000", sales_of=sales_of)
    assert epcis.validate(document, SCHEMA) == []
    events = document["epcisBody"]["eventList"]
    assert not [e for e in events if e["type"] == "AggregationEvent"]
    (split,) = [e for e in events if e.get("bizStep") == "repackaging"]
    assert len(split["outputQuantityList"]) == 6
    reports = [
        r
        for e in events
        if e.get("bizStep") == "inspecting"
        for el in e.get("sensorElementList", [])
        for r in el["sensorReport"]
    ]
    assert {r["chemicalSubstance"] for r in reports} >= {"https://identifiers.org/cas:138261-41-3"}
    for e in events:
        for key in ("readPoint", "bizLocation"):
            if key in e:
                path = e[key]["id"].removeprefix("https://trace.example.cn")
                assert client.get(path).status_code == 200, path


def test_demo_issues_certificates_but_not_for_the_recalled_lot(client, session):
    from shop.trace.models import ComplianceCertificate

    ctx: dict = {"password": None, "accounts": []}
    coop_demo.seed_members(session, ctx)
    households = ctx["households"]
    for i, (code, crop) in enumerate([("GH-PEACH", "peach"), ("GH-GRAPE", "grape")]):
        session.add(Greenhouse(code=code, name=code, crop=crop, household_id=households[i].id))
    session.flush()
    shop_demo.seed(session, ctx)
    made = shop_demo.seed_trace(session, ctx)
    session.commit()
    certs = list(session.scalars(select(ComplianceCertificate).order_by(ComplianceCertificate.id)))
    assert [c.serial for c in certs] == made["certificates"] and len(certs) == 3
    assert {c.lot.kind for c in certs} == {"harvest", "pack", "merge"}
    assert all(c.lot.lot_number != made["recalled"] and not c.withdrawn for c in certs)
    assert certs[0].basis == "commissioned_test" and certs[0].snapshot["producer"].endswith("合作社")
    page = client.get(f"/t/{made['code']}").get_data(as_text=True)
    assert certs[0].serial in page
