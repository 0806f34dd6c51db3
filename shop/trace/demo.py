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
from core.models import User
from iot.crops import crop_key
from iot.models import Greenhouse
from shop.trace import cycles as cycle_service
from shop.trace import gtins, inspections, lots, producer, production, recall
from shop.trace.models import CropCycle, HarvestLot
from shop.trace.ports import Sellable
from shop.trace.quantity import PIECE_UNITS

# measured substances of the demo's residue tests (made-up values; the limits are illustrative)
DEMO_RESULTS_PASSED = inspections.read_results(
    [
        {"substance": "多菌灵", "cas": "10605-21-7", "value": "ND", "unit": "mg/kg", "mrl": "2"},
        {"substance": "吡虫啉", "cas": "138261-41-3", "value": "0.02", "unit": "mg/kg", "mrl": "0.5"},
        {"substance": "铅", "cas": "7439-92-1", "value": "0.03", "unit": "mg/kg", "mrl": "0.1"},
    ]
)
DEMO_RESULTS_FAILED = inspections.read_results(
    [{"substance": "毒死蜱", "cas": "2921-88-2", "value": "0.08", "unit": "mg/kg", "mrl": "0.05"}]
)

# crop key: (days since planting, variety, days until expected harvest)
CYCLES = {
    "peach": (125, "锦绣黄桃", 10),
    "grape": (110, "巨峰", 12),
    "melon": (95, "西州蜜25号", 7),
    "cucumber": (55, "津优35号", 20),
    "mushroom": (35, "香菇 808", 15),
}
# crop key: the production record (days after planting, what record_input takes). Suppliers,
# receipts and registration numbers are made up: the numbers have the published format
# (PD + year + number) and belong to no product we know of; intervals are of the usual order
# for such products, not advice.
SHOP = "大金店镇农资服务站"
INPUTS: dict[str, list[tuple[int, dict[str, Any]]]] = {
    "peach": [
        (
            0,
            dict(
                kind="fertiliser",
                product="腐熟羊粪",
                amount="800",
                unit="kg",
                method="broadcast",
                rate="800",
                rate_unit="kg/mu",
                supplier="登封市绿源有机肥厂",
                purchase_ref="LY-0318",
            ),
        ),
        (
            60,
            dict(
                kind="fertiliser",
                product="硫酸钾",
                amount="25",
                unit="kg",
                method="drench",
                rate="5",
                rate_unit="kg/mu",
                supplier=SHOP,
                purchase_ref="NZ-0712",
            ),
        ),
        (
            75,
            dict(
                kind="pesticide",
                pesticide_class="fungicide",
                product="43% 戊唑醇悬浮剂",
                registration_no="PD20183071",
                target="褐腐病",
                method="spray",
                amount="60",
                unit="mL",
                rate="3000",
                rate_unit="dilution",
                interval_days="21",
                supplier=SHOP,
                purchase_ref="NZ-0731",
            ),
        ),
    ],
    "grape": [
        (
            0,
            dict(
                kind="fertiliser",
                product="生物有机肥",
                amount="600",
                unit="kg",
                method="broadcast",
                rate="600",
                rate_unit="kg/mu",
                registration_no="微生物肥(2021)准字(8801)号",
                supplier="登封市绿源有机肥厂",
                purchase_ref="LY-0402",
            ),
        ),
        (
            65,
            dict(
                kind="pesticide",
                pesticide_class="fungicide",
                product="80% 烯酰吗啉水分散粒剂",
                registration_no="PD20121563",
                target="霜霉病",
                method="spray",
                amount="30",
                unit="g",
                rate="2500",
                rate_unit="dilution",
                interval_days="14",
                supplier=SHOP,
                purchase_ref="NZ-0705",
            ),
        ),
    ],
    "melon": [
        (
            0,
            dict(
                kind="fertiliser",
                product="腐熟鸡粪",
                amount="500",
                unit="kg",
                method="broadcast",
                rate="500",
                rate_unit="kg/mu",
                supplier="登封市绿源有机肥厂",
            ),
        ),
        (
            40,
            dict(
                kind="fertiliser",
                product="磷酸二氢钾",
                amount="8",
                unit="kg",
                method="spray",
                rate="800",
                rate_unit="dilution",
                supplier=SHOP,
            ),
        ),
    ],
    "cucumber": [
        (
            0,
            dict(
                kind="fertiliser",
                product="生物有机肥",
                amount="400",
                unit="kg",
                method="broadcast",
                rate="400",
                rate_unit="kg/mu",
                supplier="登封市绿源有机肥厂",
            ),
        ),
        (
            20,
            dict(
                kind="pesticide",
                pesticide_class="insecticide",
                product="1.8% 阿维菌素乳油",
                registration_no="PD20097112",
                target="白粉虱",
                method="spray",
                amount="40",
                unit="mL",
                rate="3000",
                rate_unit="dilution",
                interval_days="2",
                supplier=SHOP,
            ),
        ),
    ],
}
# crop key: pest control (days after planting, observed, control, measure; chemical control
# uses the pesticide of INPUTS applied on the same day or the day after)
PESTS: dict[str, list[tuple[int, str, str, str | None]]] = {
    "peach": [
        (40, "新梢发现桃蚜，约 5% 枝梢", "physical", "每亩悬挂黄板 30 张"),
        (74, "果面零星出现褐腐病斑", "chemical", None),
    ],
    "grape": [
        (64, "叶背出现霜霉病斑，约 3% 叶片", "chemical", None),
        (80, "零星发现红蜘蛛", "biological", "释放胡瓜钝绥螨（捕食螨）2 万头"),
    ],
    "cucumber": [(20, "叶背发现白粉虱", "chemical", None)],
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


def _production_record(session: Session, cycle: CropCycle, key: str) -> None:
    """The cycle's inputs and pest control, recorded by its household's farmer when there is one."""
    farmer = session.scalar(
        select(User.id).where(User.household_id == cycle.household_id, User.role == "farmer").limit(1)
    )
    planted = cycle.planted_on
    pesticides = {}
    for offset, fields in INPUTS.get(key, []):
        day = planted + timedelta(days=offset)
        use = production.record_input(
            session, cycle, applied_on=day, purchased_on=day - timedelta(days=3), user_id=farmer, **fields
        )
        if use.kind == "pesticide":
            pesticides[day] = use.id
    for offset, seen, control, measure in PESTS.get(key, []):
        day = planted + timedelta(days=offset)
        used = pesticides.get(day) or pesticides.get(day + timedelta(days=1))
        production.record_pest_control(
            session,
            cycle,
            observed_on=day,
            observation=seen,
            control=control,
            measure=measure,
            input_use_id=used if control == "chemical" else None,
            user_id=farmer,
        )


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
        _production_record(session, cycle, key)
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
            summary="62 项农药残留均未检出",
            results=DEMO_RESULTS_PASSED,
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
            summary="毒死蜱 0.08 mg/kg，超出限量 0.05 mg/kg",
            results=DEMO_RESULTS_FAILED,
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
        made["certificates"] = _demo_certificates(session, [picked, packs[1], made.get("box")])
    session.flush()
    ctx["trace"] = made
    return made


def _demo_certificates(session: Session, chosen: list[Any]) -> list[str]:
    """承诺达标合格证 for a harvest lot (part of it), a pack and the gift box; none for the
    recalled lot (``compliance.issue_certificate`` would refuse it)."""
    from flask import has_app_context

    from core.config import Settings
    from shop.trace import compliance

    if has_app_context():
        from core.web import settings

        cfg = settings()
        base = cfg.public_base_url
    else:
        base = Settings.public_base_url
    serials = []
    for item in chosen:
        lot = item if isinstance(item, HarvestLot) else lots.lot_by_number(session, item) if item else None
        if lot is None:
            continue
        quantity = "50" if lot.kind == "harvest" else None  # part of the harvest lot; packs whole
        cert = compliance.issue_certificate(
            session, lot, quantity=quantity, user_id=None, trace_url=compliance.trace_url(lot, base)
        )
        serials.append(cert.serial)
    return serials
