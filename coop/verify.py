"""Verifying the books: the hash chain (``coop.chain.verify_chain``) and, on top of it, that every
published disclosure's figures are still what the books give.

A disclosure covers closed months only, and a closed month's figures change only by reopening it,
which withdraws the disclosure; so recomputing what a published statement says catches a rewrite
of the history behind it however the chain was recomputed around it, even without an anchor. The
``flask coop verify`` command, the books' verify button and the Beancount export's check use
``verify_books``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from coop.chain import VerifyResult, _fail, verify_chain
from coop.disclosure import snapshot
from coop.models import Disclosure
from core.errors import DomainError


def verify_books(
    session: Session, *, check_balances: bool = True, anchors: Iterable[str] = ()
) -> VerifyResult:
    """``verify_chain``, then (with the balances checked) the published disclosures' figures."""
    result = verify_chain(session, check_balances=check_balances, anchors=anchors)
    if check_balances and not result.balance_problems:  # the figures come from the balances
        _check_published_figures(session, result)
    return result


# What a published disclosure states that the books must still produce: a disclosure covers closed
# months only, and a closed month's figures can change only by reopening it, which withdraws the
# disclosure. So recomputing them catches any rewrite of the history behind a published statement,
# however the chain was recomputed around it, even without an anchor.
PUBLISHED_FIGURES = (
    "income",
    "expense",
    "total_income",
    "total_expense",
    "surplus",
    "balance_sheet",
    "income_statement",
    "distribution",
    "major_items",
)


def _check_published_figures(session: Session, result: VerifyResult) -> None:
    rows = session.scalars(select(Disclosure).where(Disclosure.status == "approved").order_by(Disclosure.id))
    for d in rows:
        try:
            now = snapshot(session, d.year, d.period_kind, d.period_no)
        except DomainError:  # a stored period the books no longer know: report, never crash
            _fail(result, f"disclosure {d.title!r}: its period can no longer be computed from the books")
            continue
        stored = d.content or {}
        changed = []
        for key in PUBLISHED_FIGURES:
            if key not in stored:
                continue
            was, is_ = stored[key], now.get(key)
            if isinstance(was, dict) and isinstance(is_, dict) and set(was) != set(is_):
                # published in an earlier layout: compare what both layouts have
                was = {k: v for k, v in was.items() if k in is_ and k.startswith("total")}
                is_ = {k: is_[k] for k in was}
            if _normal(was) != _normal(is_):
                changed.append(key)
        if changed:
            _fail(
                result,
                f"disclosure {d.title!r}: the books no longer give its published figures "
                f"({', '.join(changed)}): the history behind a published statement was rewritten",
            )


def _normal(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)
