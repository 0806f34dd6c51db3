"""Builders for the traceability tests: a household with a greenhouse, products, a crop cycle,
readings and irrigation events. Plain functions over a session (``make_farm(session)``).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import date, datetime, time
from decimal import Decimal
from zoneinfo import ZoneInfo

from coop.models import Household
from core import clock
from iot import quantities
from iot.models import Device, Greenhouse, IrrigationEvent, Reading
from shop import cart as carts
from shop import checkout, payments
from shop.models import Order, OrderLine, OrderLineLot, Product, ProductSupplier
from shop.trace import cycles, gtins, production
from shop.trace.models import CropCycle, ProductGtin

LOCAL = ZoneInfo("Asia/Shanghai")
PEACH_GTIN = "6970000000017"  # a valid GTIN-13 (check digit 7)


@dataclass
class Farm:
    household: Household
    greenhouse: Greenhouse
    sensor: Device
    controller: Device
    peach: Product
    gift_box: Product
    cycle: CropCycle


def local_ts(day: date, hour: int = 0, minute: int = 0) -> int:
    return int(datetime.combine(day, time(hour, minute), LOCAL).timestamp())


def make_farm(
    session,
    *,
    code: str = "GH1",
    household_code: str = "ZZ001",
    planted_on: date = date(2026, 3, 1),
    crop: str = "peach",
) -> Farm:
    household = Household(code=household_code, head_name="赵建国")
    session.add(household)
    session.flush()
    gh = Greenhouse(code=code, name=f"Peach house {code}", crop=crop, area_m2=600, household_id=household.id)
    session.add(gh)
    session.flush()
    sensor = Device(device_id=f"{code}-s", greenhouse_id=gh.id, kind="sensor")
    controller = Device(device_id=f"{code}-c", greenhouse_id=gh.id, kind="controller")
    session.add_all([sensor, controller])
    peach = Product(
        slug=f"yellow-peach-{code.lower()}",
        name_zh="黄桃",
        name_en="Yellow peaches",
        unit="kg",
        price_fen=1800,
        crop="peach",
    )
    gift = Product(
        slug=f"gift-box-{code.lower()}",
        name_zh="鲜果礼盒",
        name_en="Fruit gift box",
        unit="box",
        price_fen=16800,
    )
    session.add_all([peach, gift])
    session.flush()
    if code == "GH1":
        # the peaches sold by weight, with the GTIN their labels carried before GTINs were
        # entered per net content (``gtins.set_gtin`` would now ask for a GTIN-14 beginning with 9)
        session.add(ProductGtin(product_id=peach.id, net_content=gtins.VARIABLE, gtin="0" + PEACH_GTIN))
        session.flush()
    # the household supplies both (a farmer may sell only their household's products)
    session.add_all(
        [
            ProductSupplier(product_id=peach.id, household_id=household.id),
            ProductSupplier(product_id=gift.id, household_id=household.id),
        ]
    )
    session.flush()
    cycle = cycles.create_crop_cycle(
        session, gh.id, crop, planted_on, variety="锦绣黄桃", expected_harvest_on=date(2026, 7, 1)
    )
    session.commit()
    return Farm(household, gh, sensor, controller, peach, gift, cycle)


def add_readings(session, farm: Farm, metric: str, points: list[tuple[int, float]]) -> None:
    mid = quantities.get(metric).id
    session.add_all(
        Reading(device_id=farm.sensor.id, greenhouse_id=farm.greenhouse.id, metric_id=mid, ts=ts, value=v)
        for ts, v in points
    )
    session.flush()


def add_irrigation(
    session,
    farm: Farm,
    started_at: int,
    water_l: float,
    ec: float | None = None,
    ph: float | None = None,
    fertilizer: dict | None = None,
) -> IrrigationEvent:
    ev = IrrigationEvent(
        device_id=farm.controller.id,
        greenhouse_id=farm.greenhouse.id,
        started_at=started_at,
        ended_at=started_at + 600,
        water_l=water_l,
        ec=ec,
        ph=ph,
        fertilizer=fertilizer,
    )
    session.add(ev)
    session.flush()
    return ev


def make_order(session, lot, qty, *, name, phone, email=None, stock_state="sold", status="paid"):
    order = Order(
        number=f"TY{secrets.token_hex(4).upper()}",
        token=secrets.token_urlsafe(16),
        checkout_key=secrets.token_hex(16),
        status=status,
        stock_state=stock_state,
        fulfilment="delivery",
        payment_method="cash",
        contact_name=name,
        phone=phone,
        email=email,
        total_fen=3600,
    )
    line = OrderLine(
        product_id=lot.product_id,
        name_zh="黄桃",
        name_en="Yellow peaches",
        unit=lot.unit,
        quantity=Decimal(qty),
        unit_price_fen=1800,
        total_fen=3600,
    )
    line.lots.append(OrderLineLot(lot_id=lot.id, household_id=lot.household_id, quantity=Decimal(qty)))
    order.lines.append(line)
    session.add(order)
    session.flush()
    return order


def sell(session, lot, qty, *, name: str = "王先生", phone: str = "13800000009") -> Order:
    """Sell ``qty`` of ``lot`` the way the shop does: a cart, checkout (cash at pickup), payment."""
    today = clock.today()
    cart = carts.new_cart(session)
    carts.add_item(session, cart, lot.product, Decimal(qty), today=today, lot_id=lot.id)
    contact = checkout.Contact(name=name, phone=phone)
    order = checkout.place_order(session, cart, contact, user_id=None, today=today, stripe_enabled=False)
    payments.mark_paid(
        session, order, method="cash", amount_fen=order.total_fen, reference=f"cash:{order.number}"
    )
    session.flush()
    return order


def spray(session, cycle, day: date, days: str = "7", **extra):
    """A fungicide sprayed on ``cycle`` on ``day`` with a pre-harvest interval of ``days``
    (``production.record_input``); ``extra`` overrides or adds fields (user_id, override_reason)."""
    fields = dict(
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
        interval_days=days,
        supplier="大金店镇农资服务站",
    )
    fields.update(extra)
    return production.record_input(session, cycle, applied_on=day, **fields)
