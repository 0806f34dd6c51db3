"""The produce sales centre's own details: its name, pickup address, opening hours and phone,
and its rules for holds: what an unverified guest may hold and how long unpaid pickup orders
are kept (``NUMBERS``; ``shop.checkout`` applies them).

Order pages, the checkout and recall notices show them. One row (``shop_settings``); staff
change it on /shop/staff/settings or with ``flask shop settings``; callers commit.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from core import audit
from core.db import utcnow
from core.errors import N_, DomainError
from core.text import fold_width
from shop.models import ShopSettings

FIELDS = {"centre_name": 120, "centre_address": 200, "centre_hours": 120, "centre_phone": 40}
# whole-number rules: name -> (default, smallest, largest)
NUMBERS = {
    "guest_open_orders_max": (2, 0, 100),  # open unpaid guest orders per phone and per address
    "guest_product_units_max": (30, 0, 100_000),  # units of one product held by all guests' orders
    "guest_product_fen_max": (100_000, 0, 100_000_000),  # fen of one product held by all guests' orders
    "pickup_hold_hours": (2, 1, 72),  # how long an unpaid pickup order is kept unless confirmed
    "confirmed_hold_days": (3, 1, 14),  # how long after placing a confirmed pickup order is kept
}
STAFF = ("admin", "official")


class ShopSettingsError(DomainError):
    """A change to the sales centre's details was refused."""


def get(session: Session) -> ShopSettings:
    """The settings row, or unsaved empty defaults when nobody has set them yet."""
    row = session.get(ShopSettings, 1)
    if row is None:
        row = ShopSettings(id=1, **{key: "" for key in FIELDS})
    for key, (default, _low, _high) in NUMBERS.items():
        if getattr(row, key) is None:  # unsaved defaults (or a row older than the column)
            setattr(row, key, default)
    return row


def _number(key: str, value: Any) -> int:
    from core import parse

    _default, low, high = NUMBERS[key]
    try:
        return parse.whole_number(value, lo=low, hi=high)
    except parse.InputError as exc:
        raise ShopSettingsError(exc.template, **{**exc.params, "field": key}) from exc


def _clean(key: str, value: Any) -> str | int:
    if key in NUMBERS:
        return _number(key, value)
    text = " ".join(str(value or "").split())  # one line: no control characters, no runs of blanks
    if len(text) > FIELDS[key]:
        raise ShopSettingsError(N_("at most %(max)s characters"), max=FIELDS[key], field=key)
    if key == "centre_phone" and text:
        digits = fold_width(text)
        if not all(ch.isdigit() or ch in " -+()" for ch in digits) or sum(ch.isdigit() for ch in digits) < 5:
            raise ShopSettingsError(N_("a phone number has digits, spaces and - only"), field=key)
        text = digits
    return text


def update(session: Session, *, user_id: int | None = None, **changes: Any) -> ShopSettings:
    """Change the sales centre's details (any of ``FIELDS`` and ``NUMBERS``); staff only when
    ``user_id`` is given; audited with the old and new values."""
    if user_id is not None:
        from core.models import User

        user = session.get(User, user_id)
        if user is None or not user.active or user.role not in STAFF:
            raise ShopSettingsError(N_("only staff of the sales centre can change its details"))
    for key in changes:
        if key not in FIELDS and key not in NUMBERS:
            raise ShopSettingsError(N_("cannot change %(key)s"), key=key)
    cleaned = {key: _clean(key, value) for key, value in changes.items()}
    row = session.get(ShopSettings, 1)
    if row is None:
        row = get(session)
        session.add(row)
    diff = {key: [_current(row, key), value] for key, value in cleaned.items() if _current(row, key) != value}
    for key, (_old, value) in diff.items():
        setattr(row, key, value)
    if diff:
        row.updated_at, row.updated_by = utcnow(), user_id
        session.flush()
        audit.record(session, "shop.settings", row, user_id=user_id, details=diff)
    return row


def _current(row: ShopSettings, key: str) -> str | int:
    value = getattr(row, key)
    if key in NUMBERS:
        return NUMBERS[key][0] if value is None else value
    return value or ""
