"""Finding a lot or product from a public address, with the misses counted per client address.

Trace codes (``/t/<code>``) are 10 random characters: nobody finds one by guessing, so a
real code always answers, however many wrong ones came from the same address. A Digital
Link (``/01/<gtin>/10/<lot>``) holds a GTIN and a lot number, both guessable (lot numbers
are dates and sequence numbers), so once an address has missed ``limits.per_address``
times in the window every Digital Link and GTIN lookup from it waits until the window
ends, hits too: otherwise the refusal would only replace the 404 and leave the hits
readable. A customer who scans real labels never misses and is never slowed; wherever
the limit stands, the code printed under the QR code still opens the page.

Counts live in ``login_limits`` under ``trace-miss:<address>`` (``core.throttle``, IPv6
by /64). No Flask here; the caller commits the count.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from core import throttle
from core.db import utcnow
from shop.trace import gs1, gtins, lots
from shop.trace.models import HarvestLot


@dataclass(frozen=True)
class MissLimits:
    per_address: int = 30
    window: timedelta = timedelta(minutes=15)


def _key(address: str) -> str:
    return f"trace-miss:{throttle.client_key(address)}"


def count_miss(session: Session, address: str, limits: MissLimits, now: datetime | None = None) -> None:
    """Count one lookup that found nothing, or raise ``throttle.Throttled`` if the address is full."""
    throttle.take_slot(session, _key(address), limits.per_address, limits.window, now or utcnow())


def _refuse_if_full(session: Session, address: str, limits: MissLimits, now: datetime) -> None:
    wait = throttle.full_for(session, _key(address), limits.per_address, limits.window, now)
    if wait is not None:
        raise throttle.Throttled(wait)


def lot_by_code(
    session: Session, code: str, address: str, limits: MissLimits, *, now: datetime | None = None
) -> HarvestLot | None:
    """The lot with this trace code; a miss is counted (``Throttled`` once the address is full)."""
    lot = lots.lot_by_code(session, code)
    if lot is None:
        count_miss(session, address, limits, now)
    return lot


def lot_by_link(
    session: Session,
    gtin: str,
    lot_number: str,
    address: str,
    limits: MissLimits,
    *,
    now: datetime | None = None,
) -> HarvestLot | None:
    """The lot a Digital Link names (by the GTIN stored on it); refused while the address is
    full, a miss counted."""
    now = now or utcnow()
    _refuse_if_full(session, address, limits, now)
    lot = gs1.lot_for_digital_link(session, gtin, lot_number)
    if lot is None:
        count_miss(session, address, limits, now)
    return lot


def product_id_by_gtin(
    session: Session, gtin: str, address: str, limits: MissLimits, *, now: datetime | None = None
) -> int | None:
    """The product a GTIN in a Digital Link names (``gtins.product_id_for_gtin``), counted like a lot."""
    now = now or utcnow()
    _refuse_if_full(session, address, limits, now)
    number = gs1.path_gtin(gtin)
    found = gtins.product_id_for_gtin(session, number) if number else None
    if found is None:
        count_miss(session, address, limits, now)
    return found
