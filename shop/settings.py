"""The produce sales centre's own details: its name, pickup address, opening hours and phone.

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
STAFF = ("admin", "official")


class ShopSettingsError(DomainError):
    """A change to the sales centre's details was refused."""


def get(session: Session) -> ShopSettings:
    """The settings row, or unsaved empty defaults when nobody has set them yet."""
    row = session.get(ShopSettings, 1)
    if row is None:
        row = ShopSettings(id=1, **{key: "" for key in FIELDS})
    return row


def _clean(key: str, value: Any) -> str:
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
    """Change the sales centre's details (any of ``FIELDS``); staff only when ``user_id`` is given;
    audited with the old and new values."""
    if user_id is not None:
        from core.models import User

        user = session.get(User, user_id)
        if user is None or not user.active or user.role not in STAFF:
            raise ShopSettingsError(N_("only staff of the sales centre can change its details"))
    for key in changes:
        if key not in FIELDS:
            raise ShopSettingsError(N_("cannot change %(key)s"), key=key)
    cleaned = {key: _clean(key, value) for key, value in changes.items()}
    row = session.get(ShopSettings, 1)
    if row is None:
        row = get(session)
        session.add(row)
    diff = {
        key: [getattr(row, key) or "", value]
        for key, value in cleaned.items()
        if (getattr(row, key) or "") != value
    }
    for key, (_old, value) in diff.items():
        setattr(row, key, value)
    if diff:
        row.updated_at, row.updated_by = utcnow(), user_id
        session.flush()
        audit.record(session, "shop.settings", row, user_id=user_id, details=diff)
    return row
