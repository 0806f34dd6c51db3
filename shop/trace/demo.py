"""Demo traceability: crop cycles for the demo greenhouses, lots tied to them, inspections,
packs, a gift box and one recalled lot.

``shop.demo.seed_trace`` calls ``seed_demo(session, ctx, products)`` after the greenhouse
(iot) and shop demo phases, handing in the shop's demo products: it links the shop's demo
harvest lots to the crop cycles it creates. It does not commit.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from core import clock
from iot.crops import crop_key
from iot.models import Greenhouse
from shop.trace import cycles as cycle_service
from shop.trace import gtins, inspections, lots, producer, recall
from shop.trace.models import CropCycle, HarvestLot
from shop.trace.ports import Sellable
from shop.trace.quantity import PIECE_UNITS

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
# The demo producer: a made-up cooperative; its credit code only has a valid check character
# (93 = a farmers' cooperative, 410185 = 登封市), it belongs to nobody.
PRODUCER: dict[str, Any] = {
    "name": "登封市赵庄村田园种植专业合作社",
    "credit_code": "93410185MA0000001U",
    "province": "河南省",
    "county": "登封市",
    "township": "大金店镇",
    "village": "赵庄村",
    "address": "赵庄村村委会东 200 米 田园销售中心",
    "phone": "0371-6200 0000",
}


@dataclass(frozen=True)
class DemoProducts:
    """The shop's demo products that the demo's lots, packs and gift box are sold as."""

    peach: Sellable | None
    grapes: Sellable | None
    gift_box: Callable[[], Sellable]  # made when the demo first needs it


def demo_gtin(item: int, variant: int, *, variable: bool = False) -> str:
    """A demo GTIN in GS1's restricted-circulation range (GTIN-13 beginning 20, which no GS1
    Company Prefix does): it cannot be anyone's product. Variable measure: indicator 9 before it."""
    body = f"20{item:05d}{variant:05d}"
    if variable:
        body = "9" + body
    return body + gtins.check_digit(body)


def seed_gtins(session: Session, product: Sellable, item: int, pack_kg: tuple[Decimal, ...] = ()) -> None:
    """Give a demo product a GTIN per net content it is labelled in: one box or bag (its net
    weight), or sold by weight (variable measure) and each pack weight of ``pack_kg``."""
    if product.unit in PIECE_UNITS:
        keys = [gtins.weight_key(product.net_kg) if product.net_kg else f"1 {product.unit}"]
    else:
        keys = [gtins.VARIABLE, *(gtins.weight_key(kg) for kg in pack_kg)]
    for variant, key in enumerate(keys):
        gtins.set_gtin(session, product, key, demo_gtin(item, variant, variable=key == gtins.VARIABLE))


def _today() -> date:
    return clock.today()


def seed_demo(session: Session, ctx: dict[str, Any], products: DemoProducts) -> dict[str, Any]:
    """Create the demo's traceability data; returns (and stores in ``ctx["trace"]``) what it made."""
    if session.scalar(select(CropCycle.id).limit(1)) is not None:
        return ctx.get("trace", {})
    today = _today()
    producer.update(session, **PRODUCER)
    cycles: dict[str, CropCycle] = {}
    for gh in session.scalars(
        select(Greenhouse).where(Greenhouse.household_id.is_not(None)).order_by(Greenhouse.id)
    ):
        key = crop_key(gh.crop)
        if key not in CYCLES or key in cycles:
            continue
        days, variety, until_harvest = CYCLES[key]
        planted = today - timedelta(days=days)
        cycle = cycle_service.create_crop_cycle(
            session,
            gh.id,
            gh.crop or key,
            planted,
            variety=variety,
            expected_harvest_on=today + timedelta(days=until_harvest),
        )
        for offset, product, amount, unit in INPUTS.get(key, []):
            cycle_service.add_input(session, cycle, product, amount, unit, planted + timedelta(days=offset))
        cycles[key] = cycle

    # the shop's demo stock: tie each harvest lot to its household's cycle of the same crop
    linked = 0
    for lot in session.scalars(
        select(HarvestLot).where(HarvestLot.crop_cycle_id.is_(None), HarvestLot.kind == "harvest")
    ):
        sold_as = lot.product
        grown_in = cycles.get(crop_key(sold_as.crop)) if sold_as is not None and sold_as.crop else None
        if grown_in is None or (lot.harvested_on and lot.harvested_on < grown_in.planted_on):
            continue
        if lot.household_id is None or lot.household_id == grown_in.household_id:
            lot.crop_cycle = grown_in
            lot.household_id = grown_in.household_id
            linked += 1
    session.flush()

    made: dict[str, Any] = {"cycles": {k: c.id for k, c in cycles.items()}, "linked_lots": linked}
    peach, grapes = products.peach, products.grapes
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
        inspections.record_inspection(
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
        inspections.record_inspection(
            session,
            bad,
            LAB,
            today - timedelta(days=7),
            "fail",
            summary="毒死蜱 0.08 mg/kg，超出限量 0.05 mg/kg (chlorpyrifos above limit)",
        )
        recall.recall_lot(session, bad, "抽检农残超标，已全部下架。请勿食用，可联系合作社退款。")
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
            inspections.record_inspection(
                session, grape_lot, LAB, today, "pass", summary="62 项农药残留均未检出"
            )
            box_product = products.gift_box()
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
