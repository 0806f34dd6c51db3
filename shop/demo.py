"""Demo data for the shop: categories, the cooperative's products and their harvest lots,
and the shop's side of the traceability demo (``seed_trace``: the products it packs and boxes)."""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from core import clock
from core.config import Settings
from shop import catalog, checkout, payments, webhooks
from shop.models import (
    Category,
    Order,
    OrderLine,
    OrderLineLot,
    Product,
    ProductSupplier,
    ProductTerms,
    StripeEvent,
)
from shop.trace import demo as trace_demo
from shop.trace import lots as trace_lots
from shop.trace.models import HarvestLot

CATEGORIES = [
    ("fruit", "时令水果", "Fruit", 1),
    ("grains", "杂粮", "Small grains", 2),
    ("mugwort", "艾草制品", "Mugwort products", 3),
    ("pickles", "腌菜酱菜", "Pickles", 4),
]

# nominal net weight (kg) of one box or bag: what a pack or box of it must hold (lots.contents_problem)
DEMO_PACK_KG = {"yellow-peach": (Decimal(5),)}  # the traceability demo packs 10 jin (5 kg) of peaches
NET_KG = {"yellow-peach-box": Decimal(5), "millet": Decimal("2.5"), "red-beans": Decimal(1)}

# slug, category, zh, en, unit, price (fen), image, crop, consignment, supplier household indexes,
# lots as (days ago harvested, quantity), description zh, description en
PRODUCTS = [
    (
        "yellow-peach",
        "fruit",
        "赵庄黄桃",
        "Zhaozhuang yellow peaches",
        "jin",
        690,
        "peach.svg",
        "peach",
        True,
        [0],
        [(6, 120), (3, 200)],
        "大棚黄桃，树上熟透再摘，果肉金黄、香甜多汁。",
        "Greenhouse yellow peaches, picked ripe: golden, sweet and juicy.",
    ),
    (
        "yellow-peach-box",
        "fruit",
        "黄桃礼盒（5公斤）",
        "Yellow peach gift box (5 kg)",
        "box",
        8800,
        "peach.svg",
        "peach",
        True,
        [0],
        [(3, 30)],
        "精选大果，每盒约十六个，适合送礼。",
        "Large selected peaches, about sixteen a box; a good gift.",
    ),
    (
        "kyoho-grapes",
        "fruit",
        "巨峰葡萄",
        "Kyoho grapes",
        "jin",
        1200,
        "grape.svg",
        "grape",
        True,
        [1, 0],
        [(4, 150)],
        "果粒饱满，酸甜适口，不打膨大剂。",
        "Plump berries, sweet and tart, grown without swelling agents.",
    ),
    (
        "honey-melon",
        "fruit",
        "蜜瓜",
        "Honey melon",
        "kg",
        1600,
        "melon.svg",
        "melon",
        True,
        [2],
        [(5, 80)],
        "网纹蜜瓜，糖度十五度以上。",
        "Netted honey melon, over 15 °Brix.",
    ),
    (
        "millet",
        "grains",
        "赵庄小米（2.5公斤）",
        "Zhaozhuang millet (2.5 kg)",
        "bag",
        4500,
        "millet.svg",
        "millet",
        False,
        [],
        [(40, 60)],
        "山坡旱地谷子，熬粥米油厚。",
        "Hillside millet; makes a thick, fragrant porridge.",
    ),
    (
        "red-beans",
        "grains",
        "红小豆（1公斤）",
        "Red beans (1 kg)",
        "bag",
        2200,
        "millet.svg",
        "red bean",
        False,
        [],
        [(60, 50)],
        "村里自留种红小豆。",
        "Red beans from the village's own seed.",
    ),
    (
        "mugwort-qingtuan",
        "mugwort",
        "艾草青团（6个装）",
        "Mugwort rice cakes (6)",
        "box",
        3800,
        "mugwort.svg",
        "mugwort",
        False,
        [],
        [(1, 40)],
        "新鲜艾草汁和糯米做皮，豆沙馅。冷藏保存三天。",
        "Glutinous rice with fresh mugwort juice, red bean filling. Keeps three days chilled.",
    ),
    (
        "mugwort-tea",
        "mugwort",
        "艾叶茶",
        "Mugwort leaf tea",
        "bag",
        2800,
        "mugwort.svg",
        "mugwort",
        False,
        [],
        [(30, 45)],
        "端午前采摘的艾叶，晾晒炒制。",
        "Mugwort leaves picked before the Dragon Boat Festival, dried and roasted.",
    ),
    (
        "pickled-mustard",
        "pickles",
        "农家酸菜",
        "Farmhouse pickled mustard greens",
        "bag",
        1500,
        "pickles.svg",
        "mustard",
        True,
        [1, 2],
        [(20, 35)],
        "老坛腌制，只用盐和青菜。",
        "Crock-pickled with nothing but salt and greens.",
    ),
    (
        "wildflower-honey",
        "pickles",
        "山花蜂蜜（500克）",
        "Wildflower honey (500 g)",
        "bag",
        6800,
        "honey.svg",
        None,
        True,
        [2],
        [(45, 25)],
        "村后山养蜂，一年只摇一次蜜。",
        "From hives on the hill behind the village, harvested once a year.",
    ),
]


def seed(session: Session, ctx: dict[str, Any]) -> None:
    """Categories, products with prices in fen and suppliers, and their stock as harvest lots."""
    if session.scalar(select(Product.id).limit(1)) is not None:
        return
    households = ctx.get("households") or []
    from shop import settings as shop_settings

    shop_settings.update(
        session,
        centre_name="赵庄村农产品销售中心",
        centre_address="登封市赵庄村村委会东侧（村文化广场北）",
        centre_hours="每天 8:00–18:00",
        centre_phone="0371-6286 0000",
    )
    cats = {}
    for slug, zh, en, position in CATEGORIES:
        cats[slug] = Category(slug=slug, name_zh=zh, name_en=en, position=position)
        session.add(cats[slug])
    session.flush()
    greenhouses = _greenhouses(session)
    today = clock.today()
    for item, row in enumerate(PRODUCTS, start=1):
        slug, cat, zh, en, unit, price, image, crop, consignment, suppliers, lots, dzh, den = row
        product = Product(
            slug=slug,
            category_id=cats[cat].id,
            name_zh=zh,
            name_en=en,
            unit=unit,
            price_fen=price,
            image=f"img/products/{image}",
            crop=crop,
            net_kg=NET_KG.get(slug),
            consignment=consignment and bool(households),
            description_zh=dzh,
            description_en=den,
        )
        session.add(product)
        session.flush()
        # GTINs per net content, in GS1's restricted-circulation range (the 10-jin packs their own)
        trace_demo.seed_gtins(session, product, item, DEMO_PACK_KG.get(slug, ()))
        if product.consignment:
            session.add(ProductTerms(product_id=product.id, commission_pct=15))
        supplier_ids = [households[i].id for i in suppliers if i < len(households)]
        for hid in supplier_ids:
            gh = greenhouses.get((hid, crop)) or greenhouses.get((hid, None))
            session.add(ProductSupplier(product_id=product.id, household_id=hid, greenhouse_id=gh))
        for n, (days_ago, qty) in enumerate(lots):
            catalog.add_stock(
                session,
                product,
                Decimal(qty),
                household_id=supplier_ids[n % len(supplier_ids)] if supplier_ids else None,
                harvested_on=today - timedelta(days=days_ago),
            )
    session.flush()


def _greenhouses(session: Session) -> dict:
    """(household_id, crop) → greenhouse id, from whatever the greenhouse demo created."""
    from iot.models import Greenhouse

    found: dict = {}
    for gh in session.scalars(select(Greenhouse).where(Greenhouse.household_id.is_not(None))):
        found.setdefault((gh.household_id, gh.crop), gh.id)
        found.setdefault((gh.household_id, None), gh.id)
    return found


def seed_trace(session: Session, ctx: dict[str, Any]) -> dict[str, Any]:
    """The demo's traceability phase (after ``seed``): crop cycles, packs, a gift box, a recall.

    Traceability cannot look up the shop's products itself, so the shop hands them in.
    """
    products = trace_demo.DemoProducts(
        peach=_product(session, "yellow-peach"),
        grapes=_product(session, "kyoho-grapes"),
        gift_box=lambda: _gift_box(session),
    )
    made = trace_demo.seed_demo(session, ctx, products)
    seed_stock_and_holds(session, ctx, made)  # first: it runs only while there are no orders
    seed_payments(session, made)
    return made


def seed_stock_and_holds(session: Session, ctx: dict[str, Any], made: dict[str, Any]) -> None:
    """What the staff pages show on the first day: farmers' harvests waiting for check-in
    (入库验收), unpaid orders holding stock (a guest's, a confirmed one) and the demo
    customer's order of a pack that was then recalled (the order page's recall notice).

    Needs the demo users (``ctx["users"]``); runs once (skipped when any order exists).
    """
    from shop import cart as carts
    from shop import checkout, orders
    from shop.models import Order
    from shop.trace import lots, recall
    from shop.trace.errors import LotError
    from shop.trace.models import CropCycle

    users = ctx.get("users") or {}
    if not users or session.scalar(select(Order.id).limit(1)) is not None:
        return
    today = clock.today()
    cycles = made.get("cycles") or {}
    for username, crop, slug, qty in (
        ("zhaolin", "peach", "yellow-peach", "45"),
        ("wangfang", "grape", "kyoho-grapes", "30"),
    ):
        farmer, product = users.get(username), _product(session, slug)
        cycle = session.get(CropCycle, cycles[crop]) if crop in cycles else None
        if farmer is None or product is None or cycle is None:
            continue
        try:
            with session.begin_nested():
                lots.create_harvest_lot(
                    session,
                    cycle,
                    qty,
                    product.unit,
                    harvested_on=today,
                    product_id=product.id,
                    user_id=farmer.id,
                )
        except LotError:
            continue  # the demo village's households do not match: nothing to wait for
    _seed_farmers_boxes(session, users.get("zhaolin"))

    def place(product, qty, name, phone, *, user_id=None, lot_id=None):
        cart = carts.new_cart(session, user_id)
        carts.add_item(session, cart, product, Decimal(qty), today=today, lot_id=lot_id)
        contact = checkout.Contact(name=name, phone=phone)
        return checkout.place_order(
            session, cart, contact, user_id=user_id, today=today, stripe_enabled=False
        )

    grapes, peach = _product(session, "kyoho-grapes"), _product(session, "yellow-peach")
    if grapes is not None:
        place(grapes, "2", "游客", "138 0000 0001")  # a guest's short hold
        confirmed = place(grapes, "3", "王阿姨", "13900000002")
        checkout.confirm_hold(session, confirmed, user_id=getattr(users.get("kuaiji"), "id", None))
    customer = users.get("customer")
    pack = lots.lot_by_code(session, (made.get("packs") or [None])[-1])
    if customer is not None and peach is not None and pack is not None and pack.product_id == peach.id:
        place(
            peach,
            pack.remaining,
            customer.display_name or "陈女士",
            "13800000008",
            user_id=customer.id,
            lot_id=pack.id,
        )
        recall.recall_lot(
            session,
            pack,
            "包装破损，可能受污染。请勿食用，可送回销售中心退款。",
            flag_orders=orders.flag_recalled,
        )
    session.flush()


DEMO_PREFIX = "demo-"


def seed_payments(session: Session, made: dict[str, Any]) -> None:
    """What the order desk must show staff (docs/shop.md, "Payments"): an order reserved from the
    recalled lot before the recall (the recall cancels it: no payment for it), an online order with a
    payment through another Checkout Session and one in the wrong currency (recorded, flagged,
    not fulfilled, not booked) and a signed body that could not be read. Nothing is posted to
    the books (``seed_second_payment`` does, after the books are seeded), and nothing goes over
    the network (Stripe is not configured here)."""
    if session.scalar(select(Order.id).where(Order.checkout_key.startswith(DEMO_PREFIX)).limit(1)):
        return
    now = clock.now()
    bad = trace_lots.lot_by_code(session, made["recalled_code"]) if made.get("recalled_code") else None
    recalled_product = session.get(Product, bad.product_id) if bad is not None and bad.product_id else None
    if bad is not None and recalled_product is not None:
        _demo_order(
            session, recalled_product, bad.id, "cash", "刘先生", "13800000021", now - timedelta(days=10)
        )
        from shop import orders

        orders.flag_recalled(session, [bad])  # as the recall did to it: cancelled, noted for staff
    peach = _product(session, "yellow-peach")
    if peach is None:
        return
    lot_id = session.scalar(
        select(HarvestLot.id)
        .where(HarvestLot.product_id == peach.id, HarvestLot.recalled_at.is_(None), HarvestLot.remaining >= 2)
        .order_by(HarvestLot.id)
    )
    if lot_id is None:
        return
    online = _demo_order(
        session, peach, lot_id, "stripe", "陈女士", "13800000022", now - timedelta(minutes=5)
    )
    online.stripe_session_id = f"cs_test_demo_{online.number.replace('-', '')}"
    online.reserved_until = now + timedelta(days=1)  # kept for the demo's visitors
    session.flush()
    paid = {
        "object": "checkout.session",
        "payment_status": "paid",
        "status": "complete",
        "client_reference_id": online.number,
        "metadata": {"order_number": online.number},
        "payment_intent": "pi_demo_other",
    }
    created = int(now.timestamp())
    for event_id, obj in (
        (
            "evt_demo_other_session",
            {**paid, "id": "cs_test_demo_forged", "amount_total": 1, "currency": "cny"},
        ),
        (
            "evt_demo_usd",
            {**paid, "id": online.stripe_session_id, "amount_total": online.total_fen, "currency": "usd"},
        ),
    ):
        event = {
            "id": event_id,
            "type": "checkout.session.completed",
            "created": created,
            "data": {"object": obj},
        }
        webhooks.handle(session, event, Settings())
    body = b'{"id": "evt_demo_unreadable", "type": "payout.paid", "data": {"object": "po_demo"}}'
    try:
        webhooks.parse(body)
    except webhooks.Unprocessable as exc:
        webhooks.record_unprocessable(session, body, exc)


def seed_second_payment(session: Session, ctx: dict[str, Any] | None = None) -> None:
    """The demo's last phase, after the books (it posts to them): an online order the customer
    paid in cash at the counter and then on the Checkout page too. The second payment is owed
    back (211) and the staff order page offers "Refund the second payment"
    (``payments.refund_duplicate``), which leaves the sale standing. Once."""
    if session.get(StripeEvent, "evt_demo_second_payment") is not None:
        return
    product = _product(session, "yellow-peach")
    if product is None:
        return
    now = clock.now()
    lot_id = session.scalar(
        select(HarvestLot.id)
        .where(
            HarvestLot.product_id == product.id, HarvestLot.recalled_at.is_(None), HarvestLot.remaining >= 2
        )
        .order_by(HarvestLot.id)
    )
    if lot_id is None:
        return
    order = _demo_order(session, product, lot_id, "stripe", "郑先生", "13800000023", now - timedelta(hours=1))
    order.stripe_session_id = f"cs_test_demo_{order.number.replace('-', '')}"
    session.flush()
    payments.mark_paid(
        session,
        order,
        method="cash",
        amount_fen=order.total_fen,
        reference=f"cash:{order.number}",
        now=now - timedelta(minutes=50),
    )
    completed = {
        "id": order.stripe_session_id,
        "object": "checkout.session",
        "payment_status": "paid",
        "status": "complete",
        "amount_total": order.total_fen,
        "currency": "cny",
        "client_reference_id": order.number,
        "metadata": {"order_number": order.number},
        "payment_intent": "pi_demo_second_payment",
    }
    event = {
        "id": "evt_demo_second_payment",
        "type": "checkout.session.completed",
        "created": int((now - timedelta(minutes=45)).timestamp()),
        "data": {"object": completed},
    }
    webhooks.handle(session, event, Settings())


def _demo_order(
    session: Session, product: Product, lot_id: int, method: str, name: str, phone: str, at: datetime
) -> Order:
    """An order taking 2 units of ``product`` from one lot, placed at ``at``."""
    quantity = Decimal(2)
    checkout.take_from_lot(session, lot_id, quantity)
    lot = session.get(HarvestLot, lot_id)
    number = checkout.new_order_number(at)
    order = Order(
        number=number,
        token=secrets.token_urlsafe(24),
        checkout_key=f"{DEMO_PREFIX}{number}",
        status="pending_payment",
        stock_state="held",
        fulfilment="pickup",
        payment_method=method,
        contact_name=name,
        phone=phone,
        total_fen=product.price_fen * 2,
        reserved_until=at + checkout.PICKUP_HOLD if method == "cash" else at + checkout.STRIPE_HOLD,
        created_at=at,
        updated_at=at,
    )
    line = OrderLine(
        product_id=product.id,
        name_zh=product.name_zh,
        name_en=product.name_en,
        unit=product.unit,
        quantity=quantity,
        unit_price_fen=product.price_fen,
        total_fen=product.price_fen * 2,
    )
    line.lots.append(
        OrderLineLot(lot_id=lot_id, household_id=lot.household_id if lot else None, quantity=quantity)
    )
    order.lines.append(line)
    session.add(order)
    session.flush()
    return order


def _seed_farmers_boxes(session: Session, farmer: Any) -> None:
    """zhaolin packs 10 jin (5 kg) of his checked-in peaches into each of two 5 kg gift boxes:
    they wait for the sales centre's check-in beside the farmers' harvests."""
    box, peach = _product(session, "yellow-peach-box"), _product(session, "yellow-peach")
    if farmer is None or box is None or peach is None or farmer.household_id is None:
        return
    source = session.scalar(
        select(HarvestLot)
        .where(
            HarvestLot.product_id == peach.id,
            HarvestLot.household_id == farmer.household_id,
            HarvestLot.checked_in_at.is_not(None),
            HarvestLot.recalled_at.is_(None),
            HarvestLot.remaining >= 20,
        )
        .order_by(HarvestLot.id)
    )
    if source is None:
        return
    try:
        with session.begin_nested():
            trace_lots.split_lot(session, source, ["10", "10"], product=box, user_id=farmer.id)
    except trace_lots.LotError:
        return  # the demo village's products do not match: nothing to wait for


def _product(session: Session, slug: str) -> Product | None:
    return session.scalar(select(Product).where(Product.slug == slug))


def _gift_box(session: Session) -> Product:
    """The orchard gift box the traceability demo merges peaches and grapes into."""
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
        trace_demo.seed_gtins(session, product, len(PRODUCTS) + 1)
    return product
