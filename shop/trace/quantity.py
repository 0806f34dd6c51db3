"""Quantities a farmer types (harvest, pack size, fertilizer amount): parsed or refused."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from core import parse
from core.errors import N_
from shop.trace.errors import LotError

PIECE_UNITS = ("box", "bag", "piece")  # counted; what one holds is its product's ``net_kg``
KG_PER_UNIT = {"kg": Decimal(1), "jin": Decimal("0.5")}  # 1 jin (斤) = 500 g
MAX_QTY = Decimal("999999999")  # what a quantity column (12 digits, 3 decimals) holds
_MESSAGES = {
    "quantity": (N_("the quantity is not a number"), N_("the quantity must be more than zero")),
    "amount": (N_("the amount is not a number"), N_("the amount must be more than zero")),
    "pack size": (N_("the pack size is not a number"), N_("the pack size must be more than zero")),
}


def parse_quantity(value: Any, what: str = "quantity") -> Decimal:
    """``value`` as a positive Decimal with three decimals; ``what`` names it in the refusal."""
    not_number, not_positive = _MESSAGES[what]
    try:
        read = parse.decimal_number(value, hi=Decimal("1e15"))
    except parse.InputError as exc:
        raise LotError(not_number) from exc
    if read is None:
        raise LotError(not_number)
    q = read.quantize(Decimal("0.001"))
    if q <= 0:
        raise LotError(not_positive)
    if q > MAX_QTY:
        raise LotError(N_("%(value)s is too large"), value=f"{q.normalize():f}")
    return q
