"""Money in integer fen (1 yuan = 100 fen). Never floats.

``parse_yuan("12.5") == 1250``; ``format_fen(1250) == "¥12.50"``;
``allocate(1000, [1, 1, 1]) == [334, 333, 333]`` (largest remainder, exact sum).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Hashable, Sequence
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from fractions import Fraction

from core.errors import N_, DomainError


class MoneyError(DomainError):
    """An amount could not be understood or is not a whole number of fen."""


def parse_yuan(text: str | int | Decimal) -> int:
    """Parse an amount in yuan ("12.34", "1,234.5", "¥8") into fen; at most two decimals."""
    if isinstance(text, int):
        return text * 100
    raw = unicodedata.normalize("NFKC", str(text)).strip().replace(",", "").replace("¥", "").strip()
    if not raw:
        raise MoneyError(N_("amount is empty"))
    try:
        value = Decimal(raw)
    except InvalidOperation as exc:
        raise MoneyError(N_("not an amount: %(text)s"), text=str(text)[:40]) from exc
    if not value.is_finite():
        raise MoneyError(N_("not an amount: %(text)s"), text=str(text)[:40])
    if value.adjusted() >= 16:  # ¥10^16: beyond any book (and before Decimal overflows)
        raise MoneyError(N_("amount is too large: %(text)s"), text=str(text)[:40])
    fen = value * 100
    if fen != fen.to_integral_value():
        raise MoneyError(N_("at most two decimals (whole fen): %(text)s"), text=str(text)[:40])
    return int(fen)


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
