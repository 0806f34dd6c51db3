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
