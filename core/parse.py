"""Reading what people type into forms: dates and whole numbers (amounts: ``core.money``).

Each parser returns the value or raises ``InputError`` (a ``DomainError``), so a view
handles a mistyped field exactly like a refused operation: ``core.web.attempt`` rolls
back and shows the message. Full-width digits from a Chinese keyboard are accepted.
"""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal, InvalidOperation

from core.errors import N_, DomainError
from core.text import fold_width

MAX_INT = 2**63 - 1  # what a database integer holds


class InputError(DomainError):
    """A form field could not be understood."""


def _clean(text: object) -> str:
    return fold_width(str(text if text is not None else "")).strip()


_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_GROUPED = re.compile(r"[+-]?\d{1,3}(,\d{3})+")


def date_field(text: object, *, default: dt.date | None = None) -> dt.date:
    """An ISO date (``2026-12-01``); ``default`` when empty (InputError if there is none)."""
    raw = _clean(text)
    if not raw:
        if default is None:
            raise InputError(N_("Enter a date as YYYY-MM-DD."))
        return default
    try:
        if not _ISO_DATE.fullmatch(raw):  # not 20261120 or 2026-W47-5, which fromisoformat takes
            raise ValueError(raw)
        return dt.date.fromisoformat(raw)
    except ValueError:
        raise InputError(N_("%(text)s is not a date: enter it as YYYY-MM-DD."), text=raw[:20]) from None


FIRST_YEAR, LAST_YEAR = 1900, 2199  # the years a month of the books or a statement can be in


def month(text: object, *, default: tuple[int, int] | None = None) -> tuple[int, int]:
    """``2026-07`` as (2026, 7), for years 1900 to 2199; ``default`` when empty."""
    raw = _clean(text)
    if not raw and default is not None:
        return default
    try:
        year_text, month_text = raw.split("-", 1)
        year, number = int(year_text), int(month_text)
    except ValueError:
        raise InputError(N_("Enter a month as YYYY-MM, e.g. 2026-07.")) from None
    if not (FIRST_YEAR <= year <= LAST_YEAR and 1 <= number <= 12):
        raise InputError(N_("Enter a month as YYYY-MM, e.g. 2026-07."))
    return year, number


def optional_date(text: object) -> dt.date | None:
    """An ISO date, or None when the field is empty."""
    return date_field(text) if _clean(text) else None


def whole_number(text: object, *, lo: int = 0, hi: int = MAX_INT, default: int | None = None) -> int:
    """A whole number within [lo, hi]; ``default`` when empty (InputError if there is none)."""
    raw = _clean(text)
    if not raw:
        if default is None:
            raise InputError(N_("Enter a whole number."))
        return default
    if "," in raw:  # 1,000 is understood; 1,2,3 is not a number
        if not _GROUPED.fullmatch(raw):
            raise InputError(N_("%(text)s is not a whole number."), text=raw[:20])
        raw = raw.replace(",", "")
    try:
        value = int(raw)
    except ValueError:
        raise InputError(N_("%(text)s is not a whole number."), text=raw[:20]) from None
    if not lo <= value <= hi:
        raise InputError(N_("Enter a whole number from %(lo)d to %(hi)d."), lo=lo, hi=hi)
    return value


def number(text: object, *, lo: float = -1e12, hi: float = 1e12) -> float | None:
    """A decimal number within [lo, hi] (a decimal comma is accepted), or None when empty."""
    raw = _clean(text).replace(",", ".")
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        raise InputError(N_("%(text)s is not a number."), text=raw[:20]) from None
    if value != value or not lo <= value <= hi:  # NaN, infinities, absurd sizes
        raise InputError(N_("Enter a number from %(lo)s to %(hi)s."), lo=f"{lo:g}", hi=f"{hi:g}")
    return value


MAX_DECIMAL = Decimal("999999999")  # what a quantity column (12 digits, 3 after the point) holds


def decimal_number(text: object, *, hi: Decimal = MAX_DECIMAL) -> Decimal | None:
    """An exact decimal (quantities: kg, boxes, litres) with at most ``hi`` in size, or
    None when empty. Full-width digits are read; NaN, infinities and 1e30 are refused.
    Domains add their own rules on top (positive, steps of 0.5, three decimals)."""
    raw = _clean(text)
    if not raw:
        return None
    try:
        value = Decimal(raw)
    except InvalidOperation:
        raise InputError(N_("%(text)s is not a number."), text=raw[:20]) from None
    if not value.is_finite() or abs(value) > hi:
        raise InputError(N_("Enter a number from %(lo)s to %(hi)s."), lo=f"{-hi:f}", hi=f"{hi:f}")
    return value


def choice(text: object, options: tuple[str, ...] | list[str]) -> str:
    """One of ``options`` (InputError otherwise)."""
    raw = _clean(text)
    if raw not in options:
        raise InputError(N_("Choose one of the options."))
    return raw
