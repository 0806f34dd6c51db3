"""GTINs as staff enter them: one per product and net content, validated once, stored.

A GTIN identifies a trade item: one product in one net content. A pack of 10 jin and a
pack of 5 jin of the same peaches are two trade items and need two GTINs; peaches sold by
weight (each harvest lot weighs what it weighs) are a variable-measure trade item, with a
GTIN-14 beginning with the indicator digit 9 and the weight beside it (AI 310n). Staff
enter each GTIN (``set_gtin``: the web page ``/trace/gtins`` or ``flask shop gtin set``);
it is checked here (digits, length, check digit, the configured GS1 Company Prefix, the
indicator digit for the net content, not in use elsewhere) and stored in
``shop_trace_gtins``. Nothing is derived from the company prefix on a request.

When a lot is made (``lots._insert_lot``, the one place every harvest, pack and box
passes) it takes its product's GTIN for its own net content (``gtin_for_new_lot``) and
keeps it: the label printed then, its Digital Link and its EPCIS identity all use the lot's
stored ``HarvestLot.gtin``, so a new prefix, or a product's GTIN replaced later, breaks
no printed label.

No Flask here; the caller commits.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from sqlalchemy import inspect as sa_inspect
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core import audit
from core.errors import N_
from shop.trace.errors import LotError
from shop.trace.models import HarvestLot, ProductGtin
from shop.trace.ports import Sellable
from shop.trace.quantity import KG_PER_UNIT, PIECE_UNITS

VARIABLE = "variable"  # net content of goods sold by weight (a variable-measure trade item)
GTIN_LENGTHS = (8, 12, 13, 14)
MAX_NET_G = 999_999_999


class GtinError(LotError):
    """A GTIN or net content staff typed was refused; ``field`` names the form field."""

    def __init__(self, template: str, *, field: str = "gtin", **params: object) -> None:
        super().__init__(template, **params)
        self.field = field


# --- the number itself ------------------------------------------------------------------


def check_digit(body: str) -> str:
    """The GS1 check digit of ``body`` (the GTIN without its last digit): mod 10, weights 3, 1
    from the right."""
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(body)))
    return str((10 - total % 10) % 10)


def _digits(text: str | None) -> str:
    """What a person typed, with full-width digits made ASCII and spaces and dashes dropped."""
    text = unicodedata.normalize("NFKC", text or "")
    return "".join(ch for ch in text if not ch.isspace() and ch not in "-‐‑‒–—")


def parse_gtin(text: str | None, *, company_prefix: str = "", variable: bool | None = None) -> str:
    """``text`` as a GTIN-14 (shorter GTINs padded with zeros), or a ``GtinError`` saying why not.

    Checked: only digits; 8, 12, 13 or 14 of them; the check digit; when a company prefix is
    configured, that the GTIN is one of its own (the prefix follows the GTIN-14's first
    digit); ``variable=True`` (sold by weight) needs indicator digit 9, ``False`` refuses it.
    """
    raw = _digits(text)
    if not raw:
        raise GtinError(N_("enter the GTIN (8, 12, 13 or 14 digits)"))
    if not (raw.isascii() and raw.isdigit()):
        raise GtinError(N_("a GTIN has only digits, not %(gtin)s"), gtin=raw[:20])
    if len(raw) not in GTIN_LENGTHS:
        raise GtinError(N_("a GTIN has 8, 12, 13 or 14 digits, not %(count)d"), count=len(raw))
    expected = check_digit(raw[:-1])
    if raw[-1] != expected:
        raise GtinError(
            N_("the check digit of %(gtin)s should be %(digit)s: check the number on the allocation"),
            gtin=raw,
            digit=expected,
        )
    gtin = raw.zfill(14)
    # The GS1 prefix after the indicator digit (GTIN-13 form): ranges GS1 keeps for things that
    # are no company's produce (review: all zeros, an ISBN and a coupon were accepted).
    body = gtin[1:]
    if not int(gtin[1:-1] or "0") or body.startswith(("977", "978", "979", "98", "99")):
        raise GtinError(
            N_("%(gtin)s is not a trade item's GTIN (all zeros, a book or journal number, or a coupon)"),
            gtin=raw,
        )
    if company_prefix:
        if len(raw) == 8:
            raise GtinError(
                N_("%(gtin)s is a GTIN-8, which holds no company prefix: use one of your prefix %(prefix)s"),
                gtin=raw,
                prefix=company_prefix,
            )
        if not gtin[1:].startswith(company_prefix):
            raise GtinError(
                N_("%(gtin)s does not begin with your GS1 Company Prefix %(prefix)s"),
                gtin=raw,
                prefix=company_prefix,
            )
    if variable is True and (len(raw) != 14 or gtin[0] != "9"):
        raise GtinError(
            N_("goods sold by weight need a variable-measure GTIN-14, which begins with 9, not %(gtin)s"),
            gtin=raw,
        )
    if variable is False and len(raw) == 14 and gtin[0] == "9":
        raise GtinError(
            N_("a GTIN-14 beginning with 9 is for goods sold by weight: give this net content another"),
        )
    return gtin


def valid_gtin(text: str | None) -> bool:
    try:
        parse_gtin(text)
    except GtinError:
        return False
    return True


# --- net content --------------------------------------------------------------------------

_WEIGHT_UNITS = {"kg": 1000, "公斤": 1000, "千克": 1000, "jin": 500, "斤": 500, "g": 1, "克": 1}
_PIECES = {"box": "box", "盒": "box", "箱": "box", "bag": "bag", "袋": "bag", "piece": "piece", "个": "piece"}
_BY_WEIGHT = {"variable", "var", "by weight", "weight", "称重", "散装", "计重", "按重量"}
_WEIGHT_RE = re.compile(r"^(\d+(?:\.\d+)?)\s*(kg|公斤|千克|jin|斤|g|克)$")
_PIECE_RE = re.compile(r"^(?:1\s*)?(box|bag|piece|盒|箱|袋|个)$")


def weight_key(kg: Decimal) -> str:
    """The net content key of a fixed weight: whole grams (10 jin and 5 kg are both ``5000 g``)."""
    return f"{int((kg * 1000).to_integral_value())} g"


def parse_net_content(text: str | None) -> str:
    """A net content as staff type it: ``5 kg``, ``10 斤``, ``500 g``, ``1 box``, or ``by weight``
    (``称重``) for goods sold by weight. Returns the stored key (``5000 g``, ``1 box``, ``variable``)."""
    raw = " ".join(unicodedata.normalize("NFKC", text or "").lower().split())
    if raw in _BY_WEIGHT:
        return VARIABLE
    weight = _WEIGHT_RE.match(raw)
    if weight:
        try:
            grams = Decimal(weight.group(1)) * _WEIGHT_UNITS[weight.group(2)]
        except InvalidOperation:  # pragma: no cover - the pattern admits only numbers
            grams = Decimal(0)
        if grams != grams.to_integral_value() or not 0 < grams <= MAX_NET_G:
            raise GtinError(
                N_("a net weight is whole grams, more than 0: not %(text)s"), field="net_content", text=raw
            )
        return f"{int(grams)} g"
    piece = _PIECE_RE.match(raw)
    if piece:
        return f"1 {_PIECES[piece.group(1)]}"
    raise GtinError(
        N_("net content %(text)s: write a weight (5 kg, 10 斤, 500 g), one piece (1 box) or “by weight”"),
        field="net_content",
        text=raw[:40] or "—",
    )


@dataclass(frozen=True)
class NetContent:
    """A stored key read back: ``grams`` for a fixed weight, ``piece`` for one box or bag."""

    key: str
    grams: int | None = None
    piece: str | None = None

    @property
    def variable(self) -> bool:
        return self.key == VARIABLE

    @property
    def kg(self) -> str | None:
        return None if self.grams is None else f"{(Decimal(self.grams) / 1000).normalize():f}"


def read_net_content(key: str) -> NetContent:
    if key.endswith(" g") and key[:-2].isdigit():
        return NetContent(key, grams=int(key[:-2]))
    if key.startswith("1 "):
        return NetContent(key, piece=key[2:])
    return NetContent(key)


def net_content_of(lot: HarvestLot, product: Sellable | None) -> str:
    """The net content of the trade item a new lot's label is on.

    One box or bag of its product (the product's net weight when it has one); a pack of a
    fixed weight (``kind="pack"`` in kg or jin: its quantity); goods sold by weight (a
    harvest lot, or a box merged by weight: each weighs what it weighs) are ``VARIABLE``.
    """
    return _net_content(lot.kind, lot.unit, lot.quantity, product)


def _net_content(kind: str, unit: str, quantity: Decimal, product: Sellable | None) -> str:
    if unit in PIECE_UNITS:
        if product is not None and product.unit == unit and product.net_kg:
            return weight_key(product.net_kg)
        return f"1 {unit}"
    if unit in KG_PER_UNIT and kind == "pack":
        return weight_key(quantity * KG_PER_UNIT[unit])
    return VARIABLE


# --- the table ----------------------------------------------------------------------------


def _product(session: Session, product_id: int) -> Sellable | None:
    """The shop's product (through the relationship the shop adds to lots)."""
    cls = sa_inspect(HarvestLot).relationships["product"].mapper.class_
    return session.get(cls, product_id)


def gtin_for(session: Session, product_id: int, net_content: str) -> ProductGtin | None:
    return session.scalar(
        select(ProductGtin).where(
            ProductGtin.product_id == product_id, ProductGtin.net_content == net_content
        )
    )


def gtin_for_new_lot(session: Session, lot: HarvestLot) -> str | None:
    """The GTIN a new lot is labelled with: its product's for its net content, if staff gave one."""
    if lot.product_id is None:
        return None
    row = gtin_for(session, lot.product_id, net_content_of(lot, _product(session, lot.product_id)))
    return row.gtin if row is not None else None


def product_id_for_gtin(session: Session, gtin14: str) -> int | None:
    """The product a GTIN names: its row in the table, else (a GTIN since replaced) the
    product of a lot labelled with it."""
    found = session.scalar(select(ProductGtin.product_id).where(ProductGtin.gtin == gtin14))
    if found is None:
        found = session.scalar(
            select(HarvestLot.product_id)
            .where(HarvestLot.gtin == gtin14, HarvestLot.product_id.is_not(None))
            .order_by(HarvestLot.id.desc())
            .limit(1)
        )
    return found


def all_gtins(session: Session) -> list[ProductGtin]:
    stmt = select(ProductGtin).order_by(ProductGtin.product_id, ProductGtin.net_content)
    return list(session.scalars(stmt))


def set_gtin(
    session: Session,
    product: Sellable,
    net_content: str | None,
    gtin: str | None,
    *,
    company_prefix: str = "",
    user_id: int | None = None,
) -> ProductGtin:
    """Give ``product`` in ``net_content`` (as staff type it) the GTIN ``gtin``, or refuse.

    Refused: a GTIN that is not valid (``parse_gtin``) or not of the company prefix; a
    GTIN another product or net content has, or that lots of another product were labelled
    with (a GTIN is never reused for another trade item). Replacing a product's GTIN is
    allowed: lots made before keep (and resolve by) the GTIN their labels carry.
    """
    key = parse_net_content(net_content)
    number = parse_gtin(gtin, company_prefix=company_prefix, variable=key == VARIABLE)
    taken = session.scalar(select(ProductGtin).where(ProductGtin.gtin == number))
    if taken is not None and (taken.product_id != product.id or taken.net_content != key):
        other = _product(session, taken.product_id)
        raise GtinError(
            N_("GTIN %(gtin)s is already that of %(product)s, %(net)s"),
            gtin=number,
            product=other.name_zh if other is not None else taken.product_id,
            net=taken.net_content,
        )
    labelled = session.scalar(
        select(HarvestLot.lot_number)
        .where(HarvestLot.gtin == number, HarvestLot.product_id != product.id)
        .limit(1)
    )
    if labelled is not None:
        raise GtinError(
            N_("GTIN %(gtin)s is on the labels of lot %(lot)s of another product: a GTIN is never reused"),
            gtin=number,
            lot=labelled,
        )
    row = gtin_for(session, product.id, key)
    if row is not None and row.gtin == number:
        return row
    before = row.gtin if row is not None else None
    try:
        with session.begin_nested():
            if row is None:
                row = ProductGtin(product_id=product.id, net_content=key, gtin=number, created_by_id=user_id)
                session.add(row)
            else:
                row.gtin, row.created_by_id = number, user_id
            session.flush()
    except IntegrityError:  # another clerk stored the same GTIN or net content just now
        raise GtinError(
            N_("GTIN %(gtin)s was just stored by someone else: reload the page"), gtin=number
        ) from None
    audit.record(
        session,
        "trace.gtin_set",
        row,
        user_id=user_id,
        details={"product_id": product.id, "net_content": key, "gtin": number, "before": before},
    )
    return row


def remove_gtin(session: Session, row: ProductGtin, *, user_id: int | None = None) -> None:
    """Forget a product's GTIN for a net content: new lots get none (their labels use the short
    URL); lots already labelled with it keep it and still resolve."""
    audit.record(
        session,
        "trace.gtin_removed",
        row,
        user_id=user_id,
        details={"product_id": row.product_id, "net_content": row.net_content, "gtin": row.gtin},
    )
    session.delete(row)
    session.flush()


def net_contents_in_use(session: Session, products: list[Sellable]) -> dict[int, list[str]]:
    """Per product, the net contents its lots have been (or will by default be) made in, so
    the staff page can show which still lack a GTIN."""
    by_id = {p.id: p for p in products}
    found: dict[int, set[str]] = {p.id: {_net_content("harvest", p.unit, Decimal(1), p)} for p in products}
    rows = session.execute(
        select(HarvestLot.product_id, HarvestLot.kind, HarvestLot.unit, HarvestLot.quantity)
        .where(HarvestLot.product_id.in_(list(by_id)), HarvestLot.kind == "pack")
        .distinct()
        .limit(500)
    )
    for product_id, kind, unit, qty in rows:
        if product_id is None:  # pragma: no cover - filtered by the query
            continue
        found[product_id].add(_net_content(kind, unit, qty, by_id[product_id]))
    return {k: sorted(v) for k, v in found.items()}
