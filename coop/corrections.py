"""Corrections to a closed year (以前年度损益调整), posted in an open period.

A closed year's vouchers and statements stay as published. An income or expense found later
for such a year is posted today (or on another open date) as two vouchers:

1. the correction itself: the accounts it affects (cash, bank, a household's 113, …) against
   322 收益分配—以前年度损益调整 (key ``distribution:prior-year-adjustment``) — credited when
   the closed year's surplus was understated (a gain), debited when it was overstated (a loss);
2. at once, the transfer of that balance into 322 收益分配—未分配收益 (the sub-account the
   year-end distribution uses, key ``distribution:undistributed``), leaving the adjustment
   account at zero.

The 2023 chart (财会〔2023〕14号) has no level-1 以前年度损益调整 account, so the adjustment is a
sub-account of 322 收益分配, as the 2004 rules' 322 "以前年度损益调整" detail did. This year's
income statement is not touched; 未分配收益 (and so next year's distribution) is. Callers commit.
"""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import select
from sqlalchemy.orm import Session

from coop.ledger import LedgerError, Line, ensure_account, is_closed, post_voucher, validate_voucher
from coop.models import Account, Voucher
from core import clock
from core.errors import N_

SOURCE = "correction"
DISTRIBUTION = "322"


def adjustment_account(session: Session):
    """322 收益分配—以前年度损益调整."""
    return ensure_account(session, DISTRIBUTION, "以前年度损益调整", key="distribution:prior-year-adjustment")


def undistributed_account(session: Session):
    """322 收益分配—未分配收益 (the same account as ``coop.distribution._dist_accounts``)."""
    return ensure_account(session, DISTRIBUTION, "未分配收益", key="distribution:undistributed")


def plan_correction(
    session: Session,
    *,
    year: int,
    summary: str,
    lines: list[Line],
    date: dt.date | None = None,
) -> tuple[dt.date, str, list[Line], list[Line]]:
    """Check a correction to the closed ``year`` without writing: (date, summary, the correction's
    lines with the adjustment line added, the transfer's lines). Raises ``LedgerError``.

    ``lines`` are the correction's own lines (not the adjustment account): their net debit is
    credited to 以前年度损益调整 (a gain for the closed year), their net credit debited (a loss).
    ``date`` defaults to today; it must lie in an open period (``validate_voucher`` checks it).
    """
    if not isinstance(year, int) or isinstance(year, bool):
        raise LedgerError(N_("give the year to correct"))
    if not is_closed(session, year, 12):
        raise LedgerError(
            N_("%(year)s is not closed: post an ordinary voucher into it instead of a correction"), year=year
        )
    day = date or clock.today()
    if isinstance(day, dt.date) and not isinstance(day, dt.datetime) and day.year <= year:
        raise LedgerError(
            N_("a correction to %(year)s is dated in a later, open period (not %(date)s)"),
            year=year,
            date=day.isoformat(),
        )
    summary = (summary or "").strip()
    if not summary:
        raise LedgerError(N_("a voucher needs a summary (摘要)"))
    if not lines:
        raise LedgerError(N_("a correction needs at least one line"))
    adjustment = adjustment_account(session)
    undistributed = undistributed_account(session)
    if any(str(ln.account).strip() in (adjustment.code, undistributed.code) for ln in lines):
        raise LedgerError(
            N_("the correction's lines are the accounts it affects; the adjustment lines are added for you")
        )
    codes = {str(ln.account).strip() for ln in lines}
    accounts = list(session.scalars(select(Account).where(Account.code.in_(codes))))
    by_id = {a.id: a for a in session.scalars(select(Account))}

    def root(account: Account) -> Account:
        while account.parent_id is not None and account.parent_id in by_id:
            account = by_id[account.parent_id]
        return account

    wrong = sorted(
        a.code for a in accounts if a.kind in ("income", "expense") or root(a).code in ("321", DISTRIBUTION)
    )
    if wrong:
        # this year's income statement is not the place for last year's income: the adjustment
        # account stands for the closed year's income and expense
        raise LedgerError(
            N_(
                "%(codes)s: a correction's lines are the balance-sheet accounts it affects (cash, bank, "
                "receivables, payables, assets), never income, expense, 本年收益 or 收益分配; the closed "
                "year's income or expense is what 以前年度损益调整 stands for"
            ),
            codes=", ".join(wrong),
        )
    net = sum(ln.debit for ln in lines if isinstance(ln.debit, int)) - sum(
        ln.credit for ln in lines if isinstance(ln.credit, int)
    )
    if net == 0:
        raise LedgerError(N_("the correction's lines net to zero: there is nothing to adjust"))
    memo = f"{year}年 以前年度损益调整"
    adjust = (
        Line(adjustment.code, credit=net, memo=memo)
        if net > 0
        else Line(adjustment.code, debit=-net, memo=memo)
    )
    amount = abs(net)
    transfer = (
        [Line(adjustment.code, debit=amount), Line(undistributed.code, credit=amount)]
        if net > 0
        else [Line(undistributed.code, debit=amount), Line(adjustment.code, credit=amount)]
    )
    full = [*lines, adjust]
    validate_voucher(session, day, summary, full)
    return day, f"调整{year}年度：{summary}"[:200], full, transfer


def post_correction(
    session: Session,
    *,
    year: int,
    summary: str,
    lines: list[Line],
    date: dt.date | None = None,
    preparer_id: int | None = None,
    approver_id: int | None = None,
    attachments: int = 0,
    ref: str | None = None,
) -> tuple[Voucher, Voucher]:
    """Post a correction to the closed ``year`` (see ``plan_correction``); returns (the correction,
    the transfer). Officials do not call this directly: a correction is prepared as a draft and
    posted when another official reviews it (``coop.review``), which passes the draft as ``ref``.
    """
    day, title, full, transfer_lines = plan_correction(
        session, year=year, summary=summary, lines=lines, date=date
    )
    token = ref or uuid.uuid4().hex[:16]
    correction = post_voucher(
        session,
        date=day,
        summary=title,
        lines=full,
        preparer_id=preparer_id,
        approver_id=approver_id,
        attachments=attachments,
        source=SOURCE,
        source_ref=f"{year}:{token}:adjust",
    )
    transfer = post_voucher(
        session,
        date=day,
        summary=f"{year}年 以前年度损益调整转入未分配收益（{correction.label}）"[:200],
        lines=transfer_lines,
        preparer_id=preparer_id,
        approver_id=approver_id,
        source=SOURCE,
        source_ref=f"{year}:{token}:transfer",
    )
    return correction, transfer


def corrections(session: Session, *, limit: int = 200) -> list[Voucher]:
    """Posted corrections (the first voucher of each pair), newest first."""
    return list(
        session.scalars(
            select(Voucher)
            .where(Voucher.source == SOURCE, Voucher.source_ref.like("%:adjust"))
            .order_by(Voucher.seq.desc())
            .limit(limit)
        )
    )
