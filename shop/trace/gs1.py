"""GS1 identifiers: a lot's GTIN, the GS1 Digital Link URI its label's QR code holds, the
short URL, and GS1 link sets.

A lot's GTIN is the one stored on it when it was made (``HarvestLot.gtin``, given by
``shop.trace.gtins``); nothing here derives a GTIN from the company prefix. A lot labelled
with a variable-measure GTIN (indicator digit 9) carries its net weight as a data
attribute, AI 310n (kg, n decimals), in the query string (GS1 Digital Link URI syntax).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any
from urllib.parse import quote, urlencode

from sqlalchemy import select
from sqlalchemy.orm import Session

from shop.trace.gtins import GTIN_LENGTHS, check_digit
from shop.trace.gtins import valid_gtin as valid_gtin
from shop.trace.models import HarvestLot
from shop.trace.quantity import KG_PER_UNIT

GS1_VOC = "https://gs1.org/voc/"
LINKSET_CONTEXT = "https://ref.gs1.org/standards/resolver/linkset-context"
LINKSET_TYPE = "application/linkset+json"


def gtin_check_digit(body: str) -> str:
    return check_digit(body)


def gtin14(gtin: str) -> str:
    return gtin.zfill(14)


def path_gtin(text: str) -> str | None:
    """A GTIN as it stands in a Digital Link path (8, 12, 13 or 14 ASCII digits with a right
    check digit) as a GTIN-14, or None."""
    if not (text.isascii() and text.isdigit() and len(text) in GTIN_LENGTHS):
        return None
    return gtin14(text) if check_digit(text[:-1]) == text[-1] else None


def lot_gtin(lot: HarvestLot) -> str | None:
    """The GTIN-14 the lot was labelled with (None: none, its label holds the short URL)."""
    return lot.gtin or None


def weight_attribute(lot: HarvestLot) -> tuple[str, str] | None:
    """A variable-measure lot's net weight as GS1 AI 310n: ``("3103", "080000")`` is 80.000 kg.

    The most decimals (at most 3, grams) that fit the six digits; None when the lot's GTIN is
    not variable measure or its unit is not a weight.
    """
    gtin = lot_gtin(lot)
    per_unit = KG_PER_UNIT.get(lot.unit)
    if gtin is None or gtin[0] != "9" or per_unit is None:
        return None
    kg = lot.quantity * per_unit
    for decimals in (3, 2, 1, 0):
        value = int((kg * Decimal(10) ** decimals).to_integral_value())
        if value < 1_000_000:
            return f"310{decimals}", f"{value:06d}"
    return None


def digital_link(base_url: str, gtin: str, lot_number: str | None = None, **attributes: str) -> str:
    """GS1 Digital Link URI: ``https://<host>/01/<GTIN-14>[/10/<lot>][?<AI>=<value>...]``."""
    uri = f"{base_url.rstrip('/')}/01/{gtin14(gtin)}"
    if lot_number is not None:
        uri += f"/10/{quote(lot_number, safe='')}"
    return uri + (f"?{urlencode(attributes)}" if attributes else "")


def lot_digital_link(base_url: str, lot: HarvestLot) -> str | None:
    """The lot's Digital Link (with its weight when variable measure), or None without a GTIN."""
    gtin = lot_gtin(lot)
    if gtin is None:
        return None
    weight = weight_attribute(lot)
    return digital_link(base_url, gtin, lot.lot_number, **dict([weight] if weight else []))


def short_url(base_url: str, code: str) -> str:
    return f"{base_url.rstrip('/')}/t/{code}"


def label_url(base_url: str, lot: HarvestLot) -> str:
    """What a label's QR code holds: the lot's Digital Link when it has a GTIN, else the short URL."""
    return lot_digital_link(base_url, lot) or short_url(base_url, lot.code)


def lot_for_digital_link(session: Session, gtin: str, lot_number: str) -> HarvestLot | None:
    """The lot a Digital Link names: that lot number, labelled with that GTIN (its stored one)."""
    number = path_gtin(gtin)
    if number is None or not lot_number or len(lot_number) > 40:
        return None
    return session.scalar(
        select(HarvestLot).where(HarvestLot.lot_number == lot_number, HarvestLot.gtin == number)
    )


# --- link sets (RFC 9264, as the GS1-Conformant Resolver standard returns them) -----------


@dataclass(frozen=True)
class Link:
    """One link of a link set: a GS1 link type (``pip``, ``traceability`` ...) and its target."""

    rel: str
    href: str
    title: str
    type: str = "text/html"
    hreflang: tuple[str, ...] = ("zh", "en")
    extra: dict[str, Any] = field(default_factory=dict)


def linkset(anchor: str, links: list[Link]) -> dict[str, Any]:
    """``{"linkset": [{"anchor": ..., "https://gs1.org/voc/<type>": [{"href": ...}], ...}]}``.

    The first link is also the default link (``gs1:defaultLink``)."""
    entry: dict[str, Any] = {"anchor": anchor}
    for i, link in enumerate(links):
        target = {"href": link.href, "title": link.title, "type": link.type, "hreflang": list(link.hreflang)}
        target.update(link.extra)
        if i == 0:
            entry[GS1_VOC + "defaultLink"] = [target]
        entry.setdefault(GS1_VOC + link.rel, []).append(target)
    return {"linkset": [entry]}


def link_type(value: str | None) -> str | None:
    """A ``linkType`` query value as a GS1 link type name: ``gs1:pip`` and its full URI are ``pip``."""
    value = (value or "").strip()
    for prefix in ("gs1:", GS1_VOC):
        if value.startswith(prefix):
            return value[len(prefix) :] or None
    return value or None
