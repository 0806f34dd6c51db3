"""GS1 identifiers: GTINs, the GS1 Digital Link URI a label's QR code holds, the short URL."""

from __future__ import annotations

from urllib.parse import quote

from sqlalchemy import select
from sqlalchemy.orm import Session

from shop.trace.models import HarvestLot
from shop.trace.ports import Sellable


def gtin_check_digit(body: str) -> str:
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(body)))
    return str((10 - total % 10) % 10)


def valid_gtin(gtin: str) -> bool:
    return gtin.isdigit() and len(gtin) in (8, 12, 13, 14) and gtin_check_digit(gtin[:-1]) == gtin[-1]


def gtin14(gtin: str) -> str:
    return gtin.zfill(14)


def product_gtin(product: Sellable | None, company_prefix: str) -> str | None:
    """The product's GTIN-14: its own, or one derived from the company prefix and its id.

    The derived GTIN-13 is company prefix + item reference (the product id) + check
    digit; replace it with a GTIN allocated by GS1 China before printing at scale.
    """
    if product is None:
        return None
    if product.gtin and valid_gtin(product.gtin):
        return gtin14(product.gtin)
    prefix = "".join(ch for ch in (company_prefix or "") if ch.isdigit())
    ref_len = 12 - len(prefix)
    if ref_len < 1 or product.id >= 10**ref_len:
        return None
    body = prefix + str(product.id).zfill(ref_len)
    return gtin14(body + gtin_check_digit(body))


def digital_link(base_url: str, gtin: str, lot_number: str) -> str:
    """GS1 Digital Link URI: ``https://<host>/01/<GTIN-14>/10/<lot>``."""
    return f"{base_url.rstrip('/')}/01/{gtin14(gtin)}/10/{quote(lot_number, safe='')}"


def short_url(base_url: str, code: str) -> str:
    return f"{base_url.rstrip('/')}/t/{code}"


def label_url(base_url: str, lot: HarvestLot, company_prefix: str) -> str:
    """What a label's QR code holds: the Digital Link when the lot has a product, else the short URL."""
    gtin = product_gtin(lot.product, company_prefix)
    return digital_link(base_url, gtin, lot.lot_number) if gtin else short_url(base_url, lot.code)


def lot_for_digital_link(
    session: Session, gtin: str, lot_number: str, company_prefix: str
) -> HarvestLot | None:
    """The lot a Digital Link names, or None if the lot is unknown or the GTIN is not its product's."""
    if not gtin.isdigit() or len(gtin) not in (8, 12, 13, 14):
        return None
    lot = session.scalar(select(HarvestLot).where(HarvestLot.lot_number == lot_number))
    if lot is None:
        return None
    expected = product_gtin(lot.product, company_prefix)
    return lot if expected == gtin14(gtin) else None
