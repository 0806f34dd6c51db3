"""Demo traceability: crop cycles for the demo greenhouses, lots tied to them, inspections,
packs, a gift box and one recalled lot.

Call ``seed_demo(session, ctx)`` after the greenhouse (iot) and shop demo phases: it links
the shop's demo harvest lots to the crop cycles it creates. It does not commit.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from core import clock
from iot.crops import crop_key
from shop import lots
from shop.models import Category, Product
from shop.trace_models import CropCycle, HarvestLot

# crop key: (days since planting, variety, days until expected harvest)
CYCLES = {
    "peach": (125, "锦绣黄桃", 10),
    "grape": (110, "巨峰", 12),
    "melon": (95, "西州蜜25号", 7),
    "cucumber": (55, "津优35号", 20),
    "mushroom": (35, "香菇 808", 15),
}
INPUTS = {
    "peach": [
        (0, "腐熟羊粪 (composted sheep manure)", "800", "kg"),
        (60, "硫酸钾 (potassium sulphate)", "25", "kg"),
    ],
    "grape": [(0, "生物有机肥 (bio-organic fertilizer)", "600", "kg")],
    "melon": [(0, "腐熟鸡粪 (composted chicken manure)", "500", "kg"), (40, "磷酸二氢钾 (MKP)", "8", "kg")],
    "cucumber": [(0, "生物有机肥 (bio-organic fertilizer)", "400", "kg")],
}
LAB = "青岛市农产品质量安全检测中心"


def _today():
    return clock.today()


def seed_demo(session: Session, ctx: dict[str, Any]) -> dict[str, Any]:
    """Create the demo's traceability data; returns (and stores in ``ctx["trace"]``) what it made."""
    from iot.models import Greenhouse

    if session.scalar(select(CropCycle.id).limit(1)) is not None:
        return ctx.get("trace", {})
    today = _today()
    cycles: dict[str, CropCycle] = {}
    for gh in session.scalars(
        select(Greenhouse).where(Greenhouse.household_id.is_not(None)).order_by(Greenhouse.id)
    ):
        key = crop_key(gh.crop)
        if key not in CYCLES or key in cycles:
            continue
        days, variety, until_harvest = CYCLES[key]
        planted = today - timedelta(days=days)
        cycle = lots.create_crop_cycle(
            session,
            gh.id,
            gh.crop or key,
            planted,
            variety=variety,
            expected_harvest_on=today + timedelta(days=until_harvest),
        )
        for offset, product, amount, unit in INPUTS.get(key, []):
            lots.add_input(session, cycle, product, amount, unit, planted + timedelta(days=offset))
        cycles[key] = cycle

    # the shop's demo stock: tie each harvest lot to its household's cycle of the same crop
    linked = 0
    for lot in session.scalars(
        select(HarvestLot).where(HarvestLot.crop_cycle_id.is_(None), HarvestLot.kind == "harvest")
    ):
        product = lot.product
        cycle = cycles.get(crop_key(product.crop)) if product is not None and product.crop else None
        if cycle is None or (lot.harvested_on and lot.harvested_on < cycle.planted_on):
            continue
        if lot.household_id is None or lot.household_id == cycle.household_id:
            lot.crop_cycle = cycle
            lot.household_id = cycle.household_id
            linked += 1
    session.flush()

    made: dict[str, Any] = {"cycles": {k: c.id for k, c in cycles.items()}, "linked_lots": linked}
    peach = _product(session, "yellow-peach")
    grapes = _product(session, "kyoho-grapes")
    if "peach" in cycles:
        peach_cycle = cycles["peach"]
        picked = lots.create_harvest_lot(
            session,
            peach_cycle,
            "160",
            peach.unit if peach else "jin",
            harvested_on=today - timedelta(days=2),
            product_id=peach.id if peach else None,
            grade="A",
        )
        lots.record_inspection(
            session,
            picked,
            LAB,
            today - timedelta(days=1),
            "pass",
            summary="62 项农药残留均未检出 (62 pesticides tested, none detected)",
        )
        packs = lots.split_lot(session, picked, ["10"] * 6)
        made.update(lot=picked.lot_number, code=picked.code, packs=[p.code for p in packs])

        # one recalled lot: a failed spot check
        bad = lots.create_harvest_lot(
            session,
            peach_cycle,
            "40",
            peach.unit if peach else "jin",
            harvested_on=today - timedelta(days=9),
            product_id=peach.id if peach else None,
            grade="B",
        )
        lots.record_inspection(
            session,
            bad,
            LAB,
            today - timedelta(days=7),
            "fail",
            summary="毒死蜱 0.08 mg/kg，超出限量 0.05 mg/kg (chlorpyrifos above limit)",
        )
        lots.recall_lot(session, bad, "抽检农残超标，已全部下架。请勿食用，可联系合作社退款。")
        made.update(recalled=bad.lot_number, recalled_code=bad.code)

        if "grape" in cycles:
            grape_lot = lots.create_harvest_lot(
                session,
                cycles["grape"],
                "80",
                grapes.unit if grapes else "jin",
                harvested_on=today - timedelta(days=1),
                product_id=grapes.id if grapes else None,
                grade="A",
            )
            lots.record_inspection(session, grape_lot, LAB, today, "pass", summary="62 项农药残留均未检出")
            box_product = _gift_box(session)
            box = lots.merge_lots(
                session,
                [(packs[0], "10"), (grape_lot, "4")],
                product_id=box_product.id,
                unit="box",
                grade="A",
            )
            made.update(box=box.lot_number, box_code=box.code)
    session.flush()
    ctx["trace"] = made
    return made


def _product(session: Session, slug: str) -> Product | None:
    return session.scalar(select(Product).where(Product.slug == slug))


def _gift_box(session: Session) -> Product:
    product = _product(session, "orchard-gift-box")
    if product is None:
        fruit = session.scalar(select(Category).where(Category.slug == "fruit"))
        product = Product(
            slug="orchard-gift-box",
            name_zh="田园鲜果礼盒（黄桃+葡萄）",
            name_en="Orchard gift box (peaches and grapes)",
            description_zh="同一天装箱的黄桃和巨峰葡萄，每盒扫码可见两个大棚的生长记录。",
            description_en=(
                "Yellow peaches and Kyoho grapes boxed the same day; scan to see both greenhouses' records."
            ),
            category_id=fruit.id if fruit else None,
            unit="box",
            price_fen=12800,
            crop=None,
            image="img/products/peach.svg",
        )
        session.add(product)
        session.flush()
    return product
