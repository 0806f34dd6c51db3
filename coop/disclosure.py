"""Public disclosure (财务公开): frozen snapshots of the accounts for a month, quarter or year.

A disclosure is drafted from the books (income and expense summary, balance sheet, the year's
distribution, major items and the chain head), approved by an official, and from then on
is public and read-only: its content is stored, so later postings do not change it.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import event, func, select
from sqlalchemy.orm import Session

from coop.ledger import LedgerError, chain_head
from coop.models import Disclosure, Distribution, Voucher
from coop.reports import balance_sheet, income_expense, month_end
from core import audit
from core.db import utcnow
from core.errors import N_

MAJOR_ITEM_FEN = 1_000_000  # ¥10,000: vouchers at or above this are listed as major items
KINDS = ("month", "quarter", "year")


def period_range(year: int, kind: str, number: int) -> tuple[int, int]:
    """First and last month of a disclosure period."""
    if kind == "month" and 1 <= number <= 12:
        return number, number
    if kind == "quarter" and 1 <= number <= 4:
        return 3 * number - 2, 3 * number
    if kind == "year":
        return 1, 12
    raise LedgerError(N_("period must be a month (1-12), a quarter (1-4) or the year"))


def _acct(a) -> dict:
    return {"code": a.code, "name": a.name, "name_en": a.name_en}


def snapshot(session: Session, year: int, kind: str, number: int, *, major_fen: int = MAJOR_ITEM_FEN) -> dict:
    m1, m2 = period_range(year, kind, number)
    ie = income_expense(session, year, m1, m2)
    bs = balance_sheet(session, year, m2)
    start, end = dt.date(year, m1, 1), month_end(year, m2)
    majors = session.scalars(
        select(Voucher)
        .where(
            Voucher.date >= start,
            Voucher.date <= end,
            func.abs(Voucher.total) >= major_fen,
            Voucher.kind != "closing",
        )
        .order_by(Voucher.date, Voucher.seq)
        .limit(50)
    )
    dist = session.scalar(select(Distribution).where(Distribution.year == year)) if m2 == 12 else None
    seq, head = chain_head(session)
    return {
        "start": start.isoformat(),
        "end": end.isoformat(),
        "income": [{**_acct(r.account), "depth": r.depth, "amount": r.credit - r.debit} for r in ie.income],
        "expense": [{**_acct(r.account), "depth": r.depth, "amount": r.debit - r.credit} for r in ie.expense],
        "total_income": ie.total_income,
        "total_expense": ie.total_expense,
        "surplus": ie.surplus,
        "balance_sheet": {
            "date": bs.date.isoformat(),
            "assets": [{**_acct(a), "amount": v} for a, v in bs.assets],
            "liabilities": [{**_acct(a), "amount": v} for a, v in bs.liabilities],
            "equity": [{**_acct(a), "amount": v} for a, v in bs.equity],
            "total_assets": bs.total_assets,
            "total_liabilities": bs.total_liabilities,
            "total_equity": bs.total_equity,
        },
        "distribution": dist.plan if dist is not None else None,
        "major_items": [
            {"voucher": v.label, "date": v.date.isoformat(), "summary": v.summary, "amount": v.total}
            for v in majors
        ],
        "chain": {"seq": seq, "hash": head},
    }


def draft(
    session: Session,
    year: int,
    kind: str,
    number: int,
    *,
    user_id: int | None = None,
    title: str | None = None,
) -> Disclosure:
    """Create (or refresh, while still a draft) the disclosure for a period."""
    if kind not in KINDS:
        raise LedgerError(N_("period kind must be month, quarter or year"))
    m1, m2 = period_range(year, kind, number)
    existing = session.scalar(
        select(Disclosure).where(
            Disclosure.year == year, Disclosure.period_kind == kind, Disclosure.period_no == number
        )
    )
    if existing is not None and existing.status == "approved":
        raise LedgerError(N_("this period's disclosure has been approved and published; it cannot change"))
    content = snapshot(session, year, kind, number)
    label = {"month": f"{year}年{number}月", "quarter": f"{year}年第{number}季度", "year": f"{year}年度"}[
        kind
    ]
    d = existing or Disclosure(year=year, period_kind=kind, period_no=number)
    d.start, d.end = dt.date(year, m1, 1), month_end(year, m2)
    d.title = title or f"{label} 财务公开"
    d.content = content
    d.chain_seq, d.chain_hash = content["chain"]["seq"], content["chain"]["hash"]
    d.created_by = user_id
    d.created_at = utcnow()
    if existing is None:
        session.add(d)
    session.flush()
    audit.record(
        session,
        "disclosure.refresh" if existing else "disclosure.draft",
        d,
        user_id=user_id,
        details={"title": d.title, "chain_seq": d.chain_seq, "chain_hash": d.chain_hash},
    )
    return d


def approve(session: Session, disclosure_id: int, *, user_id: int | None) -> Disclosure:
    """Approve a draft: it becomes public and read-only."""
    d = session.get(Disclosure, disclosure_id)
    if d is None:
        raise LedgerError(N_("no disclosure %(disclosure_id)s"), disclosure_id=disclosure_id)
    if d.status == "approved":
        raise LedgerError(N_("this disclosure is already approved"))
    d.status, d.approved_by, d.approved_at = "approved", user_id, utcnow()
    session.flush()
    audit.record(
        session,
        "disclosure.approve",
        d,
        user_id=user_id,
        details={"title": d.title, "chain_hash": d.chain_hash},
    )
    return d


def published(session: Session) -> list[Disclosure]:
    return list(
        session.scalars(
            select(Disclosure)
            .where(Disclosure.status == "approved")
            .order_by(Disclosure.end.desc(), Disclosure.id.desc())
        )
    )


def _guard(_mapper, connection, target: Disclosure) -> None:
    stored = connection.scalar(select(Disclosure.status).where(Disclosure.id == target.id))
    if stored == "approved":
        raise LedgerError(N_("an approved disclosure is read-only"))


event.listen(Disclosure, "before_update", _guard)
event.listen(Disclosure, "before_delete", _guard)
