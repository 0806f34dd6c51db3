"""Harvest lots, trace codes, packs and gift boxes, and their ancestry."""

from __future__ import annotations

import re
from datetime import date
from decimal import Decimal

import pytest
from sqlalchemy import select

from shop.trace import ancestry, cycles, inspections, lots, recall
from shop.trace.codes import CODE_ALPHABET, CODE_LENGTH, normalize_code
from shop.trace.models import LotEvent
from tests.shop.trace_factories import make_farm


def _harvest(session, farm, qty="100", day=date(2026, 6, 20)):
    return lots.create_harvest_lot(session, farm.cycle, qty, "kg", harvested_on=day, product_id=farm.peach.id)


def test_harvest_gets_lot_number_code_and_first_event(session):
    farm = make_farm(session)
    lot = _harvest(session, farm)
    second = _harvest(session, farm, "40")
    session.commit()
    assert lot.lot_number == "L260620-001" and second.lot_number == "L260620-002"
    assert re.fullmatch(f"[{CODE_ALPHABET}]{{{CODE_LENGTH}}}", lot.code)
    assert lot.household_id == farm.household.id and lot.remaining == Decimal("100")
    assert [e.kind for e in lot.events] == ["harvested"]
    assert lots.lot_by_code(session, lot.code.lower()) is lot
    assert lots.lot_by_code(session, "nope") is None


def test_codes_are_not_guessable_by_counting(session):
    farm = make_farm(session)
    made = [_harvest(session, farm, "1") for _ in range(40)]
    codes = [lot.code for lot in made]
    assert len(set(codes)) == len(codes)
    # neighbours share no structure: no common prefix, and no code is its predecessor plus one
    assert len({c[:4] for c in codes}) > 35
    alphabet = CODE_ALPHABET

    def as_int(code):
        n = 0
        for ch in code:
            n = n * len(alphabet) + alphabet.index(ch)
        return n

    gaps = {abs(as_int(b) - as_int(a)) for a, b in zip(codes, codes[1:], strict=False)}
    assert min(gaps) > 1000
    # and a code one step away from a real one is not a lot
    first = codes[0]
    neighbour = first[:-1] + alphabet[(alphabet.index(first[-1]) + 1) % len(alphabet)]
    assert neighbour in codes or lots.lot_by_code(session, neighbour) is None
    # 31^10 possible codes: guessing one of 40 lots takes ~2e13 tries on average
    assert len(alphabet) ** CODE_LENGTH > 10**14


def test_split_into_packs_keeps_ancestry_and_stock(session):
    farm = make_farm(session)
    lot = _harvest(session, farm)
    packs = lots.split_lot(session, lot, ["2.5", "2.5", "5"])
    session.commit()
    assert [p.lot_number for p in packs] == ["L260620-001-1", "L260620-001-2", "L260620-001-3"]
    assert lot.remaining == Decimal("90")
    assert all(p.kind == "pack" and p.crop_cycle_id == farm.cycle.id for p in packs)
    assert len({p.code for p in packs} | {lot.code}) == 4
    assert [(r.lot.id, r.depth) for r in ancestry.ancestry(session, packs[0])] == [(lot.id, 1)]
    assert {r.lot.id for r in ancestry.descendants(session, lot)} == {p.id for p in packs}
    assert [e.kind for e in packs[1].events] == ["packed"]
    # a second packing run continues the numbering
    more = lots.split_lot(session, lot, ["1"])
    assert more[0].lot_number == "L260620-001-4"


def test_pack_sold_by_the_box_counts_one_box(session):
    farm = make_farm(session)
    lot = _harvest(session, farm)
    (box,) = lots.split_lot(session, lot, ["3"], product=farm.gift_box)
    assert (box.quantity, box.unit, box.product_id) == (Decimal(1), "box", farm.gift_box.id)
    assert lot.remaining == Decimal("97")


def test_cannot_pack_more_than_is_left(session):
    farm = make_farm(session)
    lot = _harvest(session, farm, "10")
    with pytest.raises(lots.LotError, match="left"):
        lots.split_lot(session, lot, ["6", "6"])
    with pytest.raises(lots.LotError):
        lots.split_lot(session, lot, ["0"])
    assert lot.remaining == Decimal("10")


def test_pack_of_a_merged_gift_box_traces_back_to_every_source_lot(session):
    farm = make_farm(session)
    other = make_farm(session, code="GH2", household_code="ZZ002")
    peaches = _harvest(session, farm)
    grapes = lots.create_harvest_lot(session, other.cycle, "30", "kg", harvested_on=date(2026, 6, 22))
    peach_pack = lots.split_lot(session, peaches, ["2"])[0]
    box = lots.merge_lots(session, [(peach_pack, "2"), (grapes, "1.5")], product_id=farm.gift_box.id)
    half_boxes = lots.split_lot(session, box, ["0.5"])
    session.commit()

    assert box.kind == "merge" and box.household_id is None  # two households
    assert box.harvested_on == date(2026, 6, 22)
    assert grapes.remaining == Decimal("28.5") and peach_pack.remaining == 0
    ancestors = {r.lot.id: r.depth for r in ancestry.ancestry(session, half_boxes[0])}
    assert ancestors == {box.id: 1, peach_pack.id: 2, grapes.id: 2, peaches.id: 3}
    assert {s.id for s in ancestry.source_lots(session, half_boxes[0])} == {peaches.id, grapes.id}
    assert {r.lot.id for r in ancestry.descendants(session, peaches)} == {
        peach_pack.id,
        box.id,
        half_boxes[0].id,
    }


def test_merge_needs_two_distinct_lots(session):
    farm = make_farm(session)
    lot = _harvest(session, farm)
    with pytest.raises(lots.LotError):
        lots.merge_lots(session, [(lot, 1)])
    with pytest.raises(lots.LotError):
        lots.merge_lots(session, [(lot, 1), (lot, 2)])


def test_inspection_is_inherited_by_packs(session):
    farm = make_farm(session)
    lot = _harvest(session, farm)
    pack = lots.split_lot(session, lot, ["2"])[0]
    inspections.record_inspection(
        session, lot, "青岛农检中心", date(2026, 6, 21), "pass", summary="62 项未检出"
    )
    session.commit()
    found = inspections.inspections_for(session, pack)
    assert [(i.lab, i.result) for i in found] == [("青岛农检中心", "pass")]
    with pytest.raises(lots.LotError):
        inspections.record_inspection(session, lot, "lab", date(2026, 6, 21), "maybe")


def test_inputs_and_cycle_validation(session):
    farm = make_farm(session)
    with pytest.raises(lots.LotError):
        cycles.add_input(session, farm.cycle, "Compost", "10", "kg", date(2026, 2, 1))  # before planting
    row = cycles.add_input(session, farm.cycle, "Compost", "10", "kg", date(2026, 3, 5))
    assert row.source == "manual" and row.amount == Decimal("10.000")
    with pytest.raises(lots.LotError):
        cycles.create_crop_cycle(
            session, farm.greenhouse.id, "peach", date(2026, 3, 1), expected_harvest_on=date(2026, 1, 1)
        )
    with pytest.raises(lots.LotError):
        lots.create_harvest_lot(session, farm.cycle, "5", harvested_on=date(2025, 1, 1))


def test_stock_received_in_the_shop_finds_its_crop_cycle(session):
    """The shop's "receive stock" calls create_harvest_lot without a cycle."""
    farm = make_farm(session)
    lot = lots.create_harvest_lot(
        session,
        product_id=farm.peach.id,
        household_id=farm.household.id,
        harvested_on=date(2026, 6, 25),
        quantity=Decimal("12"),
        unit="kg",
        grade=None,
    )
    assert lot.crop_cycle_id == farm.cycle.id
    stray = lots.create_harvest_lot(
        session,
        product_id=farm.peach.id,
        household_id=None,
        harvested_on=date(2026, 6, 25),
        quantity=Decimal("1"),
        unit="kg",
    )
    assert stray.crop_cycle_id is None and stray.code


def test_recall_reaches_every_pack_and_box(session):
    farm = make_farm(session)
    lot = _harvest(session, farm)
    other = _harvest(session, farm, "20")
    pack = lots.split_lot(session, lot, ["2"])[0]
    box = lots.merge_lots(session, [(pack, 1), (other, 1)], product_id=farm.gift_box.id)
    recalled = recall.recall_lot(session, lot, "Residue above limit")
    session.commit()
    assert {x.id for x in recalled} == {lot.id, pack.id, box.id}
    assert other.recalled_at is None
    assert box.recall_reason == "Residue above limit"  # no English "(from …)" on a Chinese page
    assert [x.id for x in recall.recalled_lots(session)] == [lot.id]
    kinds = session.scalars(select(LotEvent.kind).where(LotEvent.lot_id == box.id)).all()
    assert "recalled" in kinds
    with pytest.raises(lots.LotError, match="recalled"):
        lots.split_lot(session, lot, ["1"])
    with pytest.raises(lots.LotError):
        recall.recall_lot(session, other, "  ")


def test_what_a_typed_code_may_get_wrong():
    """Case, spaces and dashes, and the full-width forms a Chinese input method types."""
    code = "AB2CD-3EF4G".replace("-", "")
    for typed in (
        "ab2cd3ef4g",
        " AB2CD 3EF4G ",
        "AB2CD-3EF4G",
        "ＡＢ２ＣＤ－３ＥＦ４Ｇ",
        "ab2cd\u30003ef4g",
        "AB2CD—3EF4G",
    ):
        assert normalize_code(typed) == code, typed
    # 0, O, 1, I and L are not in the alphabet: nothing is guessed for them
    assert normalize_code("0O1IL") == "0O1IL"
    assert not set("0O1IL") & set(CODE_ALPHABET)
    assert normalize_code(None) == ""


def test_a_code_typed_full_width_finds_its_lot(session):
    farm = make_farm(session)
    lot = _harvest(session, farm)
    full_width = "".join(chr(ord(c) + 0xFEE0) for c in lot.code.lower())
    assert lots.lot_by_code(session, full_width) is lot
