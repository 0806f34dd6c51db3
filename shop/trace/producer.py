"""The producer's identity (``Producer``, one row): the name, 统一社会信用代码, 主体码, 产地
and phone that certificates (承诺达标合格证), labels and trace pages show.

``get`` returns the row or unsaved empty defaults; ``update`` validates and audits a change
(staff only when a user is named); ``origin`` is the 产地 as one administrative address.
Callers commit.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from core import audit
from core.db import utcnow
from core.errors import N_, DomainError
from core.text import fold_width
from shop.trace.models import Producer

FIELDS = {
    "name": 120,
    "credit_code": 18,
    "platform_code": 40,
    "province": 40,
    "county": 40,
    "township": 40,
    "village": 40,
    "address": 200,
    "phone": 40,
}
STAFF = ("admin", "official")

# GB 32100-2015: 18 characters from this alphabet (no I, O, S, V, Z); the last is a check
# character over the first 17 with these weights (3^i mod 31).
CREDIT_CODE_CHARS = "0123456789ABCDEFGHJKLMNPQRTUWXY"
CREDIT_CODE_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)


class ProducerError(DomainError):
    """A change to the producer's identity was refused."""


def credit_code_check(body: str) -> str:
    """The check character of a 统一社会信用代码 whose first 17 characters are ``body``."""
    total = sum(CREDIT_CODE_CHARS.index(ch) * w for ch, w in zip(body, CREDIT_CODE_WEIGHTS, strict=True))
    return CREDIT_CODE_CHARS[(31 - total % 31) % 31]


def valid_credit_code(code: str) -> bool:
    return (
        len(code) == 18
        and all(ch in CREDIT_CODE_CHARS for ch in code)
        and credit_code_check(code[:17]) == code[17]
    )


def get(session: Session) -> Producer:
    """The producer's row, or unsaved empty defaults when nobody has set it yet."""
    row = session.get(Producer, 1)
    return row if row is not None else Producer(id=1, **{key: "" for key in FIELDS})


def origin(row: Producer) -> str:
    """产地 as an administrative address: 省 县 乡镇 村 (the parts that are set)."""
    return "".join(part for part in (row.province, row.county, row.township, row.village) if part)


def _clean(key: str, value: Any) -> str:
    text = " ".join(str(value or "").split())  # one line: no control characters, no runs of blanks
    if len(text) > FIELDS[key]:
        raise ProducerError(N_("at most %(max)s characters"), max=FIELDS[key], field=key)
    if key == "credit_code" and text:
        text = fold_width(text).upper().replace(" ", "")
        if not valid_credit_code(text):
            raise ProducerError(
                N_("a unified social credit code has 18 characters and a valid check character"),
                field=key,
            )
    if key == "phone" and text:
        text = fold_width(text)
        if not all(ch.isdigit() or ch in " -+()" for ch in text) or sum(ch.isdigit() for ch in text) < 5:
            raise ProducerError(N_("a phone number has digits, spaces and - only"), field=key)
    return text


def problems(**changes: Any) -> dict[str, ProducerError]:
    """Every field's refusal at once (a form shows each beside its field); empty if none."""
    found = {}
    for key, value in changes.items():
        if key not in FIELDS:
            found[key] = ProducerError(N_("cannot change %(key)s"), key=key)
            continue
        try:
            _clean(key, value)
        except ProducerError as exc:
            found[key] = exc
    return found


def update(session: Session, *, user_id: int | None = None, **changes: Any) -> Producer:
    """Change the producer's identity (any of ``FIELDS``); staff only when ``user_id`` is
    given; audited with the old and new values."""
    if user_id is not None:
        from core.models import User

        user = session.get(User, user_id)
        if user is None or not user.active or user.role not in STAFF:
            raise ProducerError(N_("only officials can change the producer's details"))
    for key in changes:
        if key not in FIELDS:
            raise ProducerError(N_("cannot change %(key)s"), key=key)
    cleaned = {key: _clean(key, value) for key, value in changes.items()}
    row = session.get(Producer, 1)
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
        audit.record(session, "shop.trace.producer", row, user_id=user_id, details=diff)
    return row
