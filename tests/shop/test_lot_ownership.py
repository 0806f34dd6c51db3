"""Stock belongs to its grower: a farmer records lots only for products their household supplies
and of the crop cycle's crop, packs and boxes are not re-labelled as someone else's product, a
farmer's lot is stock only once staff check it in at the sales centre (入库验收), and a farmer
without a household sees no collective lots."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from sqlalchemy import select

from core.models import AuditEntry, User
from shop import cart as carts
from shop import catalog, checkout
from shop.models import Product, ProductSupplier
from shop.trace import lots
from shop.trace.errors import LotError
from shop.trace.models import HarvestLot, LotEvent
from tests.conftest import login
from tests.shop.trace_factories import make_farm

HARVESTED = "2026-03-05"


@pytest.fixture
def village(session, make_user):
    """zhaolin's household 1 grows peaches; household 3 supplies honey melon (with some stock)."""
    peach_farm = make_farm(session)
    melon_farm = make_farm(session, code="GH3", household_code="ZZ003", crop="melon")
    melon = Product(
        slug="honey-melon", name_zh="蜜瓜", name_en="Honey melon", unit="kg", price_fen=1600, crop="melon"
    )
    session.add(melon)
    session.flush()
    session.add(ProductSupplier(product_id=melon.id, household_id=melon_farm.household.id))
    session.flush()
    shelf = catalog.add_stock(
        session, melon, Decimal(5), household_id=melon_farm.household.id, harvested_on=date(2026, 3, 4)
    )
    zhaolin = make_user("zhaolin", "farmer", household_id=peach_farm.household.id)
    make_user("liqiang", "farmer", household_id=melon_farm.household.id)
    make_user("loner", "farmer")  # created without --household
    make_user("kuaiji", "official")
    session.commit()
    return peach_farm, melon_farm, melon, shelf, zhaolin


def _harvest(client, cycle, product_id, qty="30", lang="en"):
    return client.post(
        f"/trace/lots/new?lang={lang}",
        data={
            "cycle_id": cycle.id,
            "product_id": product_id,
            "quantity": qty,
            "unit": "kg",
            "harvested_on": HARVESTED,
            "grade": "A",
        },
    )


def test_zhaolin_cannot_put_his_peaches_into_household_3s_melon(client, session, village):
    peach_farm, _melon_farm, melon, shelf, zhaolin = village
    login(client, "zhaolin")
    form = client.get(f"/trace/lots/new?cycle={peach_farm.cycle.id}").get_data(as_text=True)
    assert "蜜瓜" not in form and "黄桃" in form  # only his own product of the cycle's crop is offered
    response = _harvest(client, peach_farm.cycle, melon.id)
    assert response.status_code == 400
    session.expire_all()
    assert (
        session.scalars(select(HarvestLot).where(HarvestLot.crop_cycle_id == peach_farm.cycle.id)).all() == []
    )
    # the service refuses whatever the path (a hand-made form, the CLI, a script)
    with pytest.raises(LotError, match="蜜瓜"):
        lots.create_harvest_lot(
            session, peach_farm.cycle, "30", "kg", product_id=melon.id, user_id=zhaolin.id
        )
    session.rollback()
    # the next melon order is filled from household 3's lot only
    cart = carts.new_cart(session)
    carts.add_item(session, cart, melon, Decimal(5), today=date.today())
    order = checkout.place_order(
        session,
        cart,
        checkout.Contact(name="王", phone="13800000001"),
        user_id=None,
        today=date.today(),
        stripe_enabled=False,
    )
    assert [(a.lot_id, a.household_id) for line in order.lines for a in line.lots] == [
        (shelf.id, shelf.household_id)
    ]


def test_the_crop_must_match_the_cycle_even_for_staff(client, session, village):
    peach_farm, melon_farm, melon, _shelf, _zhaolin = village
    login(client, "kuaiji")
    form = client.get(f"/trace/lots/new?cycle={peach_farm.cycle.id}").get_data(as_text=True)
    assert "蜜瓜" not in form
    with pytest.raises(LotError, match="is not peach"):
        lots.create_harvest_lot(session, peach_farm.cycle, "30", "kg", product_id=melon.id)
    session.rollback()
    # staff may record any household's lot of the right crop: checked in at once
    lot = lots.create_harvest_lot(session, melon_farm.cycle, "30", "kg", product_id=melon.id)
    assert lot.checked_in_at is not None and lot.checked_in_quantity == Decimal(30)


def test_a_farmers_lot_is_stock_only_after_check_in(client, session, village):
    peach_farm, _melon_farm, _melon, _shelf, _zhaolin = village
    before = catalog.stock_of(session, peach_farm.peach.id)
    login(client, "zhaolin")
    assert _harvest(client, peach_farm.cycle, peach_farm.peach.id, qty="30").status_code == 302
    session.expire_all()
    lot = session.scalars(select(HarvestLot).where(HarvestLot.crop_cycle_id == peach_farm.cycle.id)).one()
    assert lot.checked_in_at is None
    assert catalog.stock_of(session, peach_farm.peach.id) == before
    assert catalog.available_lots(session, peach_farm.peach.id) == []
    client.get("/trace/")  # shows the "recorded" message
    product_page = client.get(f"/shop/p/{peach_farm.peach.slug}?lang=en").get_data(as_text=True)
    assert lot.lot_number not in product_page
    # a customer who picks the lot by hand cannot reserve it either
    cart = carts.new_cart(session)
    with pytest.raises(carts.CartError):
        carts.add_item(session, cart, peach_farm.peach, Decimal(1), today=date.today(), lot_id=lot.id)
    assert not checkout.take_from_lot(session, lot.id, Decimal(1))
    session.rollback()
    # nor split or box it before the centre has accepted it
    page = client.get(f"/trace/lots/{lot.id}?lang=en").get_data(as_text=True)
    assert "data-waiting-check-in" in page and "Make packs and labels" not in page
    client.post(f"/trace/lots/{lot.id}/split?lang=en", data={"count": "2", "size": "5", "product_id": "0"})
    assert "not checked in at the sales centre yet" in client.get(f"/trace/lots/{lot.id}?lang=en").get_data(
        as_text=True
    )
    # the farmer cannot check it in
    assert client.post(f"/trace/lots/{lot.id}/check-in", data={"weighed": "30"}).status_code == 403
    with pytest.raises(LotError, match="only staff"):
        lots.check_in(session, lot, "30", "A", user_id=_zhaolin.id)
    session.rollback()

    client.post("/logout")
    login(client, "kuaiji")
    waiting = client.get("/trace/check-in?lang=en").get_data(as_text=True)
    assert f'data-lot="{lot.lot_number}"' in waiting
    response = client.post(f"/trace/lots/{lot.id}/check-in?lang=en", data={"weighed": "28.5", "grade": "B"})
    assert response.status_code == 302
    session.expire_all()
    lot = session.get(HarvestLot, lot.id)
    official = lot.checked_in_by_id
    assert lot.checked_in_at is not None and official is not None
    assert lot.quantity == lot.remaining == lot.checked_in_quantity == Decimal("28.5") and lot.grade == "B"
    assert catalog.stock_of(session, peach_farm.peach.id) == before + Decimal("28.5")
    (event,) = session.scalars(
        select(LotEvent).where(LotEvent.lot_id == lot.id, LotEvent.kind == "checked_in")
    )
    assert event.quantity == Decimal("28.5") and event.note == "30 → 28.5 kg"
    audit = session.scalars(select(AuditEntry).where(AuditEntry.action == "lot.check_in")).one()
    assert audit.details["declared"] == "30.000" and audit.details["weighed"] == "28.500"
    assert f'data-lot="{lot.lot_number}"' not in client.get("/trace/check-in").get_data(as_text=True)
    # a second check-in is refused, nothing changes
    client.post(f"/trace/lots/{lot.id}/check-in?lang=en", data={"weighed": "99"})
    session.expire_all()
    assert session.get(HarvestLot, lot.id).quantity == Decimal("28.5")
    # the EPCIS export shows the acceptance
    document = client.get(f"/api/v1/lots/{lot.lot_number}/epcis").get_json()
    assert "receiving" in [e.get("bizStep") for e in document["epcisBody"]["eventList"]]


def test_check_in_refuses_nonsense(session, village):
    peach_farm, _m, _melon, _shelf, zhaolin = village
    lot = lots.create_harvest_lot(
        session, peach_farm.cycle, "30", "kg", product_id=peach_farm.peach.id, user_id=zhaolin.id
    )
    for weighed in ("0", "-1", "abc", "1e30", "NaN"):
        with pytest.raises(LotError):
            lots.check_in(session, lot, weighed, "A", user_id=None)
    with pytest.raises(LotError, match="grade"):
        lots.check_in(session, lot, "30", "Z", user_id=None)
    assert lot.checked_in_at is None


def test_packs_are_not_relabelled_as_another_households_product(client, session, village):
    peach_farm, melon_farm, melon, _shelf, zhaolin = village
    lot = lots.create_harvest_lot(session, peach_farm.cycle, "40", "kg", product_id=peach_farm.peach.id)
    session.commit()
    login(client, "zhaolin")
    page = client.get(f"/trace/lots/{lot.id}").get_data(as_text=True)
    assert "蜜瓜" not in page  # only allowed products are offered
    client.post(
        f"/trace/lots/{lot.id}/split?lang=en", data={"count": "2", "size": "5", "product_id": melon.id}
    )
    session.expire_all()
    assert session.scalars(select(HarvestLot).where(HarvestLot.kind == "pack")).all() == []
    with pytest.raises(LotError):
        lots.split_lot(session, lot, ["5"], product=melon, user_id=zhaolin.id)
    with pytest.raises(LotError, match="is not peach"):
        lots.split_lot(session, lot, ["5"], product=melon)  # staff and the system: crop must match
    session.rollback()
    # another peach product supplied only by another household: refused for everyone
    theirs = Product(
        slug="peach-3", name_zh="别家黄桃", name_en="Their peaches", unit="kg", price_fen=1, crop="peach"
    )
    session.add(theirs)
    session.flush()
    session.add(ProductSupplier(product_id=theirs.id, household_id=melon_farm.household.id))
    session.flush()
    with pytest.raises(LotError, match="another household"):
        lots.split_lot(session, session.get(HarvestLot, lot.id), ["5"], product=theirs)
    session.rollback()
    # a gift box of no crop: only the sales centre packs one (checked in at once)
    with pytest.raises(LotError, match="no single crop"):
        lots.split_lot(
            session, session.get(HarvestLot, lot.id), ["5"], product=peach_farm.gift_box, user_id=zhaolin.id
        )
    session.rollback()
    (box,) = lots.split_lot(session, session.get(HarvestLot, lot.id), ["5"], product=peach_farm.gift_box)
    assert box.product_id == peach_farm.gift_box.id and box.checked_in_at is not None


def test_gift_boxes_keep_to_the_households_products(client, session, village):
    peach_farm, melon_farm, melon, _shelf, zhaolin = village
    a = lots.create_harvest_lot(session, peach_farm.cycle, "10", "kg", product_id=peach_farm.peach.id)
    b = lots.create_harvest_lot(session, peach_farm.cycle, "10", "kg", product_id=peach_farm.peach.id)
    session.commit()
    login(client, "zhaolin")
    page = client.get("/trace/merge").get_data(as_text=True)
    assert "蜜瓜" not in page
    refused = client.post(
        "/trace/merge?lang=en", data={"product_id": melon.id, f"qty_{a.id}": "1", f"qty_{b.id}": "1"}
    )
    assert "Choose one of the products offered" in refused.get_data(as_text=True)
    session.expire_all()
    assert session.scalars(select(HarvestLot).where(HarvestLot.kind == "merge")).all() == []
    with pytest.raises(LotError):
        lots.merge_lots(session, [(a, "1"), (b, "1")], product_id=melon.id, user_id=zhaolin.id)
    session.rollback()
    with pytest.raises(LotError, match="no single crop"):  # a mixed gift box: the sales centre's
        lots.merge_lots(
            session,
            [(session.get(HarvestLot, a.id), "1"), (session.get(HarvestLot, b.id), "1")],
            product_id=peach_farm.gift_box.id,
            user_id=zhaolin.id,
        )
    session.rollback()
    box = lots.merge_lots(
        session,
        [(session.get(HarvestLot, a.id), "1"), (session.get(HarvestLot, b.id), "1.5")],
        product_id=peach_farm.peach.id,
        user_id=zhaolin.id,
    )
    assert box.household_id == peach_farm.household.id
    assert box.quantity == Decimal("2.5") and box.unit == "kg" and box.checked_in_at is None


def test_a_farmer_without_household_sees_no_collective_lots(client, session, village):
    peach_farm, _melon_farm, _melon, _shelf, _zhaolin = village
    collective = Product(
        slug="millet", name_zh="小米", name_en="Millet", unit="bag", price_fen=4500, crop="millet"
    )
    session.add(collective)
    session.flush()
    lot = catalog.add_stock(
        session, collective, Decimal(10), household_id=None, harvested_on=date(2026, 3, 1)
    )
    other = catalog.add_stock(
        session, collective, Decimal(10), household_id=None, harvested_on=date(2026, 3, 2)
    )
    session.commit()
    login(client, "loner")
    assert lot.lot_number not in client.get("/trace/").get_data(as_text=True)
    assert client.get(f"/trace/lots/{lot.id}").status_code == 404
    merge_page = client.get("/trace/merge").get_data(as_text=True)
    assert f"qty_{lot.id}" not in merge_page
    client.post(
        "/trace/merge", data={"product_id": collective.id, f"qty_{lot.id}": "1", f"qty_{other.id}": "1"}
    )
    assert client.post(f"/trace/lots/{lot.id}/split", data={"count": "1", "size": "1"}).status_code == 404
    session.expire_all()
    assert session.get(HarvestLot, lot.id).remaining == 10
    assert session.scalars(select(HarvestLot).where(HarvestLot.kind.in_(("merge", "pack")))).all() == []


# --- found by the hostile review --------------------------------------------------------


def _supplied(session, household_id, slug, name_zh, unit, crop, net_kg=None):
    """A product supplied by ``household_id`` (``net_kg``: its nominal net weight per piece)."""
    product = Product(slug=slug, name_zh=name_zh, name_en=slug, unit=unit, price_fen=6800, crop=crop)
    product.net_kg = net_kg
    session.add(product)
    session.flush()
    session.add(ProductSupplier(product_id=product.id, household_id=household_id))
    session.flush()
    return product


def _kinds(session, kind):
    session.expire_all()
    return session.scalars(select(HarvestLot).where(HarvestLot.kind == kind)).all()


def test_a_melon_pack_is_not_sold_as_honey_found_by_review(client, session, village):
    _peach_farm, melon_farm, _melon, shelf, liqiang_household = village
    honey = _supplied(session, melon_farm.household.id, "wildflower-honey", "百花蜜", "bag", None)
    session.commit()
    login(client, "liqiang")
    assert "百花蜜" not in client.get(f"/trace/lots/{shelf.id}").get_data(as_text=True)
    client.post(
        f"/trace/lots/{shelf.id}/split?lang=en", data={"count": "2", "size": "0.01", "product_id": honey.id}
    )
    assert _kinds(session, "pack") == []
    page = client.get(f"/trace/lots/{shelf.id}?lang=en").get_data(as_text=True)
    assert "百花蜜 is of no single crop" in page and "same crop" in page
    assert session.get(HarvestLot, shelf.id).remaining == Decimal(5)
    # staff neither: a crop-less product other than a gift box is never put on one crop's goods
    with pytest.raises(LotError, match="same crop"):
        lots.split_lot(session, session.get(HarvestLot, shelf.id), ["1"], product=honey)
    session.rollback()


def test_a_gift_box_holds_its_net_weight_found_by_review(client, session, village):
    peach_farm, _melon_farm, _melon, _shelf, _zhaolin = village
    box = _supplied(
        session, peach_farm.household.id, "yellow-peach-box", "黄桃礼盒（5公斤）", "box", "peach", Decimal(5)
    )
    a = lots.create_harvest_lot(session, peach_farm.cycle, "40", "jin", product_id=peach_farm.peach.id)
    b = lots.create_harvest_lot(session, peach_farm.cycle, "40", "jin", product_id=peach_farm.peach.id)
    session.commit()
    login(client, "zhaolin")
    client.post(
        f"/trace/lots/{a.id}/split?lang=en", data={"count": "2", "size": "0.01", "product_id": box.id}
    )
    assert _kinds(session, "pack") == []
    assert "5 kg" in client.get(f"/trace/lots/{a.id}?lang=en").get_data(as_text=True)
    client.post(
        "/trace/merge?lang=en", data={"product_id": box.id, f"qty_{a.id}": "0.001", f"qty_{b.id}": "0.001"}
    )
    assert _kinds(session, "merge") == []
    assert session.get(HarvestLot, a.id).remaining == session.get(HarvestLot, b.id).remaining == 40
    # 10 jin is 5 kg: a box of it is accepted, and waits for the centre's check-in
    client.post(f"/trace/lots/{a.id}/split?lang=en", data={"count": "1", "size": "10", "product_id": box.id})
    (pack,) = _kinds(session, "pack")
    assert pack.unit == "box" and pack.quantity == 1 and pack.checked_in_at is None
    client.post("/trace/merge?lang=en", data={"product_id": box.id, f"qty_{a.id}": "6", f"qty_{b.id}": "4"})
    (merged,) = _kinds(session, "merge")
    assert merged.checked_in_at is None and catalog.stock_of(session, box.id) == 0
    # the centre checks in no more boxes than were made
    client.post("/logout")
    login(client, "kuaiji")
    client.post(f"/trace/lots/{pack.id}/check-in?lang=en", data={"weighed": "2", "grade": "A"})
    assert "check in at most that many" in client.get("/trace/check-in?lang=en").get_data(as_text=True)
    client.post(f"/trace/lots/{pack.id}/check-in?lang=en", data={"weighed": "1", "grade": "A"})
    session.expire_all()
    assert (
        session.get(HarvestLot, pack.id).checked_in_at is not None and catalog.stock_of(session, box.id) == 1
    )
    # a 5 kg box is not re-labelled as a 10 kg box
    big = _supplied(session, peach_farm.household.id, "big-box", "大礼盒", "box", "peach", Decimal(10))
    session.commit()
    with pytest.raises(LotError, match="at least 10 kg, not 5 kg"):
        lots.split_lot(session, session.get(HarvestLot, pack.id), ["1"], product=big)
    session.rollback()
    # a box or bag without a net weight: offered to and packed by staff only
    unweighed = _supplied(session, peach_farm.household.id, "peach-bag", "黄桃袋", "bag", "peach")
    session.commit()
    assert "黄桃袋" in client.get(f"/trace/lots/{a.id}").get_data(as_text=True)
    zhaolin = session.scalar(select(User).where(User.username == "zhaolin"))
    with pytest.raises(LotError, match="no net weight"):
        lots.split_lot(session, session.get(HarvestLot, a.id), ["1"], product=unweighed, user_id=zhaolin.id)
    session.rollback()
    client.post("/logout")
    login(client, "zhaolin")
    assert "黄桃袋" not in client.get(f"/trace/lots/{a.id}").get_data(as_text=True)


def test_a_farmers_packs_and_boxes_wait_for_check_in_found_by_review(client, session, village):
    peach_farm, _melon_farm, _melon, _shelf, zhaolin = village
    peach = peach_farm.peach
    lot = lots.create_harvest_lot(session, peach_farm.cycle, "40", "kg", product_id=peach.id)
    other = lots.create_harvest_lot(session, peach_farm.cycle, "10", "kg", product_id=peach.id)
    session.commit()
    assert catalog.stock_of(session, peach.id) == 50
    login(client, "zhaolin")
    client.post(f"/trace/lots/{lot.id}/split?lang=en", data={"count": "2", "size": "5", "product_id": "0"})
    packs = _kinds(session, "pack")
    assert len(packs) == 2 and all(p.checked_in_at is None and p.checked_in_by_id is None for p in packs)
    assert catalog.stock_of(session, peach.id) == 40  # 10 kg went into packs nobody has checked yet
    assert all(lot_ not in catalog.available_lots(session, peach.id) for lot_ in packs)
    client.post(
        "/trace/merge?lang=en",
        data={"product_id": peach.id, f"qty_{lot.id}": "2", f"qty_{other.id}": "3"},
    )
    (box,) = _kinds(session, "merge")
    assert box.checked_in_at is None and box.checked_in_by_id is None and box.created_by_id == zhaolin.id
    client.post("/logout")

    login(client, "kuaiji")
    kuaiji = session.scalar(select(User).where(User.username == "kuaiji"))
    waiting = client.get("/trace/check-in?lang=en").get_data(as_text=True)
    assert all(f'data-lot="{p.lot_number}"' in waiting for p in [*packs, box])
    assert f"from {lot.lot_number}: 5 kg" in waiting and f"from {other.lot_number}: 3 kg" in waiting
    client.post(f"/trace/lots/{packs[0].id}/check-in?lang=en", data={"weighed": "5", "grade": "A"})
    session.expire_all()
    assert session.get(HarvestLot, packs[0].id).checked_in_by_id == kuaiji.id
    assert catalog.stock_of(session, peach.id) == 35 + 5
    # staff's own packs and boxes are checked in at once, by them
    client.post(f"/trace/lots/{lot.id}/split?lang=en", data={"count": "1", "size": "5", "product_id": "0"})
    mine = [p for p in _kinds(session, "pack") if p.created_by_id == kuaiji.id]
    assert len(mine) == 1 and mine[0].checked_in_by_id == kuaiji.id and mine[0].checked_in_at is not None
    client.post(
        "/trace/merge?lang=en",
        data={"product_id": peach.id, f"qty_{lot.id}": "1", f"qty_{other.id}": "1"},
    )
    staff_box = [b for b in _kinds(session, "merge") if b.created_by_id == kuaiji.id]
    assert len(staff_box) == 1 and staff_box[0].checked_in_by_id == kuaiji.id


def test_staff_stock_goes_only_to_a_household_that_supplies_it_found_by_review(client, session, village):
    peach_farm, melon_farm, melon, shelf, _zhaolin = village
    login(client, "kuaiji")
    response = client.post(
        f"/shop/staff/products/{melon.id}/stock?lang=en",
        data={"quantity": "5", "household_id": str(peach_farm.household.id)},
    )
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert 'id="household_id-error"' in page and "does not supply" in page
    assert 'aria-describedby="household_id-error"' in page
    session.expire_all()
    assert [
        lot.id for lot in session.scalars(select(HarvestLot).where(HarvestLot.product_id == melon.id))
    ] == [shelf.id]
    with pytest.raises(catalog.CatalogError, match="does not supply"):
        catalog.add_stock(session, melon, Decimal(5), household_id=peach_farm.household.id, harvested_on=None)
    session.rollback()
    # the household that supplies it, and the collective's own stock, are fine
    for household in (str(melon_farm.household.id), ""):
        response = client.post(
            f"/shop/staff/products/{melon.id}/stock?lang=en",
            data={"quantity": "5", "household_id": household},
        )
        assert response.status_code == 302
    session.expire_all()
    owners = session.scalars(select(HarvestLot.household_id).where(HarvestLot.product_id == melon.id)).all()
    assert sorted(owners, key=lambda h: h or 0) == [None, melon_farm.household.id, melon_farm.household.id]


def test_the_split_form_takes_its_stated_minimum_found_by_review(client, session, village):
    peach_farm, _melon_farm, _melon, _shelf, _zhaolin = village
    lot = lots.create_harvest_lot(session, peach_farm.cycle, "1", "kg", product_id=peach_farm.peach.id)
    session.commit()
    login(client, "kuaiji")
    response = client.post(
        f"/trace/lots/{lot.id}/split?lang=en", data={"count": "1", "size": "0.001", "product_id": "0"}
    )
    assert response.status_code == 302 and "/trace/labels" in response.headers["Location"]
    (pack,) = _kinds(session, "pack")
    assert pack.quantity == Decimal("0.001")
    # the harvest form's and the input form's stated minimum too
    assert _harvest(client, peach_farm.cycle, peach_farm.peach.id, qty="0.001").status_code == 302
    response = client.post(
        f"/trace/cycles/{peach_farm.cycle.id}/inputs?lang=en",
        data={"product": "复合肥", "amount": "0.001", "unit": "kg", "applied_on": "2026-03-05"},
    )
    assert response.status_code == 302
    assert "Give the number" not in client.get(f"/trace/cycles/{peach_farm.cycle.id}?lang=en").get_data(
        as_text=True
    )


def test_a_farmer_records_only_their_own_households_harvest_found_by_review(session, village):
    """Found while fixing the review: the service took the cycle's household, not the farmer's."""
    peach_farm, melon_farm, melon, _shelf, _zhaolin = village
    liqiang = session.scalar(select(User).where(User.username == "liqiang"))
    theirs = _supplied(session, peach_farm.household.id, "peach-zz1", "一号黄桃", "kg", "peach")
    session.add(ProductSupplier(product_id=theirs.id, household_id=melon_farm.household.id))
    session.flush()
    with pytest.raises(LotError, match="another household"):
        lots.create_harvest_lot(
            session, peach_farm.cycle, "30", "kg", product_id=theirs.id, user_id=liqiang.id
        )
    session.rollback()
    # staff record a household's harvest only under a product it supplies (its sales credit it)
    only_3 = _supplied(session, melon_farm.household.id, "peach-zz3", "三号黄桃", "kg", "peach")
    with pytest.raises(LotError, match="does not supply"):
        lots.create_harvest_lot(session, peach_farm.cycle, "30", "kg", product_id=only_3.id)
    session.rollback()
    assert lots.create_harvest_lot(session, melon_farm.cycle, "30", "kg", product_id=melon.id).checked_in_at


def test_staff_set_a_boxs_net_weight_on_the_product_form_found_by_review(client, session, village):
    peach_farm, _melon_farm, melon, _shelf, _zhaolin = village
    box = _supplied(session, peach_farm.household.id, "peach-box", "黄桃礼盒", "box", "peach")
    session.commit()
    login(client, "kuaiji")
    form = {"name_zh": "黄桃礼盒（5公斤）", "name_en": "Peach box (5 kg)", "unit": "box", "price": "88"}
    response = client.post(f"/shop/staff/products/{box.id}/edit?lang=en", data={**form, "net_kg": "10"})
    assert response.status_code == 302
    session.expire_all()
    assert session.get(Product, box.id).net_kg == Decimal(10)
    assert 'value="10"' in client.get(f"/shop/staff/products/{box.id}/edit").get_data(as_text=True)
    refusals = [("abc", "not a number"), ("0", "between 0.001 and 1000"), ("5000", "between")]
    for bad, says in [*refusals, ("1e999999", "Enter a number")]:
        page = client.post(f"/shop/staff/products/{box.id}/edit?lang=en", data={**form, "net_kg": bad})
        assert page.status_code == 400 and says in page.get_data(as_text=True)
    by_weight = {"name_zh": "蜜瓜", "name_en": "Honey melon", "unit": "kg", "price": "16", "net_kg": "5"}
    page = client.post(f"/shop/staff/products/{melon.id}/edit?lang=en", data=by_weight)
    assert page.status_code == 400 and "Only a product sold by the box or bag" in page.get_data(as_text=True)
