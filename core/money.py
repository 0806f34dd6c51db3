"""Money in integer fen (1 yuan = 100 fen). Never floats.

``parse_yuan("12.5") == 1250``; ``format_fen(1250) == "¥12.50"``;
``allocate(1000, [1, 1, 1]) == [334, 333, 333]`` (largest remainder, exact sum).
"""

from __future__ import annotations

import re
from collections.abc import Hashable, Sequence
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction

from core.errors import N_, DomainError
from core.text import fold_width


class MoneyError(DomainError):
    """An amount could not be understood or is not a whole number of fen."""


_AMOUNT = re.compile(
    r"""
    (?P<sign>[-+])?                       # a sign (refused unless the field allows negatives)
    (?P<whole>\d{1,3}(?:,\d{3})+|\d+)     # 1234 or 1,234 (commas only between groups of three)
    (?:\.(?P<fraction>\d+))?               # decimals (at most two)
    """,
    re.VERBOSE | re.ASCII,
)
_CURRENCY = ("¥", "元", "CNY", "RMB")


def parse_yuan(text: str | int | Decimal, *, allow_negative: bool = False) -> int:
    """Parse an amount in yuan into fen, strictly: ``"1,234.50"``, ``"¥8"``, ``"12.5元"``,
    full-width ``"１２３．４５"`` and ``"１，２３４"``, spaces around it.

    Refused with a message that says why (``MoneyError``): exponents (``1e3``), commas anywhere but
    between groups of three digits (``1,2,3``, ``1,23.4``), a lone point, more than two decimals,
    doubled signs, NaN and infinity, and a negative amount unless ``allow_negative``.
    """
    if isinstance(text, bool):
        raise MoneyError(N_("not an amount: %(text)s"), text=str(text))
    if isinstance(text, int):
        if text < 0 and not allow_negative:
            raise MoneyError(N_("the amount must not be negative: %(text)s"), text=str(text))
        return text * 100
    shown = str(text)[:40]
    raw = fold_width(str(text)).strip()
    for mark in _CURRENCY:
        if raw.upper().startswith(mark):
            raw = raw[len(mark) :].strip()
        elif raw.upper().endswith(mark):
            raw = raw[: -len(mark)].strip()
    if raw[:1] in "-+" and raw[1:2] == "¥":  # "-¥12"
        raw = raw[0] + raw[2:].strip()
    if not raw:
        raise MoneyError(N_("amount is empty"))
    match = _AMOUNT.fullmatch(raw)
    if match is None:
        if any(c in raw for c in "eE") and any(c.isdigit() for c in raw):
            raise MoneyError(N_("write the amount in digits, without an exponent: %(text)s"), text=shown)
        if "," in raw and re.fullmatch(r"[-+]?[\d,]+(?:\.\d*)?", raw, re.ASCII):
            raise MoneyError(
                N_("commas may only separate groups of three digits (1,234.50): %(text)s"), text=shown
            )
        raise MoneyError(N_("not an amount: %(text)s"), text=shown)
    fraction = match["fraction"] or ""
    if len(fraction) > 2:
        raise MoneyError(N_("at most two decimals (whole fen): %(text)s"), text=shown)
    whole = match["whole"].replace(",", "")
    if len(whole.lstrip("0")) > 16:  # ¥10^16: beyond any book
        raise MoneyError(N_("amount is too large: %(text)s"), text=shown)
    fen = int(whole) * 100 + int((fraction + "00")[:2])
    if match["sign"] == "-":
        if not allow_negative and fen:
            raise MoneyError(N_("the amount must not be negative: %(text)s"), text=shown)
        fen = -fen
    return fen


def fen_to_decimal(fen: int) -> Decimal:
    return (Decimal(fen) / 100).quantize(Decimal("0.01"))


def format_yuan(fen: int) -> str:
    """``123456`` → ``"1,234.56"`` (no currency sign)."""
    sign = "-" if fen < 0 else ""
    whole, cents = divmod(abs(int(fen)), 100)
    return f"{sign}{whole:,}.{cents:02d}"


def format_fen(fen: int) -> str:
    """``123456`` → ``"¥1,234.56"``."""
    text = format_yuan(fen)
    return f"-¥{text[1:]}" if text.startswith("-") else f"¥{text}"


def mul_fen(fen: int, quantity: Decimal | int | str) -> int:
    """Price in fen times a (possibly fractional) quantity, rounded half up to whole fen."""
    return int((Decimal(fen) * Decimal(str(quantity))).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def allocate(
    total: int, weights: Sequence[int | Decimal | Fraction], keys: Sequence[Hashable] | None = None
) -> list[int]:
    """Split ``total`` fen by ``weights`` with the largest-remainder (Hamilton) method.

    The parts sum exactly to ``total`` and each is within one fen of its exact share.
    Ties in the remainder go to the lower ``keys`` value (default: position), so the
    result is stable.
    """
    if total < 0:
        return [-p for p in allocate(-total, weights, keys)]
    fractions = [Fraction(w) if not isinstance(w, Decimal) else Fraction(str(w)) for w in weights]
    if any(f < 0 for f in fractions):
        raise MoneyError(N_("weights must not be negative"))
    weight_sum = sum(fractions, Fraction(0))
    if not fractions:
        if total:
            raise MoneyError(N_("nothing to allocate to"))
        return []
    if weight_sum == 0:
        raise MoneyError(N_("weights sum to zero"))
    exact = [total * f / weight_sum for f in fractions]
    parts = [int(e) for e in exact]  # floor, e >= 0
    short = total - sum(parts)
    order_keys = list(keys) if keys is not None else list(range(len(exact)))
    ranked = sorted(range(len(exact)), key=lambda i: (-(exact[i] - parts[i]), order_keys[i]))
    for i in ranked[:short]:
        parts[i] += 1
    return parts
