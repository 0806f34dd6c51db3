"""Ancestry: which lots a lot was made from (split, merged), and which were made from it."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.orm import Session

from shop.trace.models import HarvestLot, LotLink


@dataclass(frozen=True)
class Relative:
    lot: HarvestLot
    depth: int  # 1 = direct parent/child
    via_id: int  # the lot this one is linked to
    quantity: Decimal  # how much of the parent went into the child


def _walk(session: Session, lot: HarvestLot, up: bool) -> list[Relative]:
    found: dict[int, Relative] = {}
    frontier = [lot.id]
    depth = 0
    key, other = (LotLink.child_id, LotLink.parent_id) if up else (LotLink.parent_id, LotLink.child_id)
    while frontier:
        depth += 1
        rows = session.execute(select(key, other, LotLink.quantity).where(key.in_(frontier))).all()
        frontier = []
        for via, rel_id, qty in rows:
            if rel_id in found or rel_id == lot.id:
                continue
            relative = session.get(HarvestLot, rel_id)
            if relative is None:  # pragma: no cover - links cascade with their lots
                continue
            found[rel_id] = Relative(relative, depth, via, qty)
            frontier.append(rel_id)
    return sorted(found.values(), key=lambda r: (r.depth, r.lot.id))


def ancestry(session: Session, lot: HarvestLot) -> list[Relative]:
    """Every lot this one was made from, nearest first (parents, grandparents, ...)."""
    return _walk(session, lot, up=True)


def descendants(session: Session, lot: HarvestLot) -> list[Relative]:
    """Every lot made from this one (packs, boxes, packs of boxes), nearest first."""
    return _walk(session, lot, up=False)


def source_lots(session: Session, lot: HarvestLot) -> list[HarvestLot]:
    """The harvest lots (with a crop cycle) behind ``lot``: itself, or its ancestors."""
    if lot.crop_cycle_id is not None and lot.kind == "harvest":
        return [lot]
    sources = [r.lot for r in ancestry(session, lot) if r.lot.kind == "harvest" and r.lot.crop_cycle_id]
    if not sources and lot.crop_cycle_id is not None:
        return [lot]
    return sorted(sources, key=lambda x: x.id)
