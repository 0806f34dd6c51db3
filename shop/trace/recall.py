"""Recall: a lot and everything made from it stop being sold at once.

Which orders (and customers) received a recalled lot is the shop's business:
``ShopPort.orders_for_lot`` (``shop.orders.orders_for_lot``).
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from core import audit
from core.db import utcnow
from core.errors import N_
from shop.trace.ancestry import descendants
from shop.trace.errors import LotError
from shop.trace.events import add_event
from shop.trace.models import HarvestLot, LotLink
from shop.trace.ports import FlagRecalled


def recall_lot(
    session: Session,
    lot: HarvestLot,
    reason: str | None,
    *,
    user_id: int | None = None,
    flag_orders: FlagRecalled | None = None,
) -> list[HarvestLot]:
    """Recall a lot and everything made from it; the shop stops selling them at once.

    Returns the recalled lots (the lot first). A lot already recalled keeps its first
    recall time and reason. ``flag_orders`` (``ShopPort.flag_recalled``) flags the open
    orders that hold any of them, in the same transaction; the shop also refuses to pack,
    ready or hand over such an order (``shop.orders.move``) whether flagged or not.
    """
    reason = (reason or "").strip()
    if not reason:
        raise LotError(N_("Give a reason for the recall."))
    now = utcnow()
    affected = [lot] + [r.lot for r in descendants(session, lot)]
    for each in affected:
        if each.recalled_at is not None:
            continue
        each.recalled_at = now
        # the reason as given, in the language it was written in; where a pack's or box's
        # recall came from is the ancestry's to tell (the trace page says "召回自批次 …")
        each.recall_reason = reason
        add_event(session, each, "recalled", at=now, note=each.recall_reason, user_id=user_id)
    audit.record(
        session,
        "lot.recall",
        lot,
        user_id=user_id,
        note=reason,
        details={"lots": [each.lot_number for each in affected]},
    )
    session.flush()
    if flag_orders is not None:
        flag_orders(session, affected)
    return affected


def recalled_lots(session: Session) -> list[HarvestLot]:
    """Lots recalled at the source (not the packs recalled with them), newest first."""
    stmt = (
        select(HarvestLot).where(HarvestLot.recalled_at.is_not(None)).order_by(HarvestLot.recalled_at.desc())
    )
    lots = list(session.scalars(stmt))
    ids = {lot.id for lot in lots}
    parents_recalled = {
        child
        for child, parent in session.execute(select(LotLink.child_id, LotLink.parent_id))
        if parent in ids
    }
    return [lot for lot in lots if lot.id not in parents_recalled]
