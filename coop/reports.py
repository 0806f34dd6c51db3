"""Reports from the per-period balances: trial balance (科目余额表), income and expense detail
(收支明细表) and member statements. The prescribed balance sheet and income statement are in
``coop.statements``.

Every report sums ``coop_balances`` (accounts x months rows), never every voucher line, so
reports stay fast with millions of lines. Amounts are integer fen.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from coop.models import (
    DEBIT_CLASSES,
    Account,
    Balance,
    Distribution,
    Household,
    ShareEvent,
    Voucher,
    VoucherLine,
)


@dataclass
class Row:
    """One account's figures; ``opening``/``closing`` are nets, debit minus credit."""

    account: Account
    depth: int
    opening: int = 0
    debit: int = 0
    credit: int = 0

    @property
    def closing(self) -> int:
        return self.opening + self.debit - self.credit

    @property
    def code(self) -> str:
        return self.account.code

    @property
    def normal(self) -> int:
        """Closing balance on the account's normal side (positive for a normal balance)."""
        return self.closing if self.account.kind in DEBIT_CLASSES else -self.closing

    @property
    def empty(self) -> bool:
        return not (self.opening or self.debit or self.credit)


def split(net: int) -> tuple[int, int]:
    """A net (debit minus credit) as (debit side, credit side)."""
    return (net, 0) if net >= 0 else (0, -net)


def period_bounds(year: int, month_from: int = 1, month_to: int = 12) -> tuple[int, int]:
    if not (1 <= month_from <= month_to <= 12):
        raise ValueError("months must satisfy 1 <= from <= to <= 12")
    return year * 100 + month_from, year * 100 + month_to


def month_end(year: int, month: int) -> dt.date:
    nxt = dt.date(year + (month == 12), month % 12 + 1, 1)
    return nxt - dt.timedelta(days=1)


def _accounts(session: Session) -> list[Account]:
    return tree_order(list(session.scalars(select(Account).order_by(Account.code))))


def tree_order(accounts: list[Account]) -> list[Account]:
    """Accounts in chart order: each parent followed by its sub-accounts (by the parent tree, so
    sub-codes of different widths never interleave), siblings by code."""
    children: dict[int | None, list[Account]] = {}
    ids = {a.id for a in accounts}
    for a in sorted(accounts, key=lambda a: a.code):
        children.setdefault(a.parent_id if a.parent_id in ids else None, []).append(a)
    out: list[Account] = []
    todo = list(reversed(children.get(None, [])))
    while todo:
        a = todo.pop()
        out.append(a)
        todo.extend(reversed(children.get(a.id, [])))
    return out


def _tree(accounts: list[Account]) -> tuple[dict[int, Account], dict[int, int]]:
    by_id = {a.id: a for a in accounts}
    depth: dict[int, int] = {}

    def d(a: Account) -> int:
        if a.id not in depth:
            depth[a.id] = 0 if a.parent_id is None else d(by_id[a.parent_id]) + 1
        return depth[a.id]

    for a in accounts:
        d(a)
    return by_id, depth


def _rolled(session: Session, figures: dict[int, list[int]]) -> list[Row]:
    """Rows for every account in code order, each with its own figures plus its descendants'."""
    accounts = _accounts(session)
    by_id, depth = _tree(accounts)
    rows = {a.id: Row(a, depth[a.id]) for a in accounts}
    for account_id, (opening, debit, credit) in figures.items():
        a = by_id.get(account_id)
        while a is not None:
            row = rows[a.id]
            row.opening += opening
            row.debit += debit
            row.credit += credit
            a = by_id.get(a.parent_id) if a.parent_id is not None else None
    return [rows[a.id] for a in accounts]


def _figures(session: Session, start: int, end: int, *, closing: bool | None = None) -> dict[int, list[int]]:
    """account id -> [opening net before ``start``, debits and credits within start..end]."""
    within = Balance.period >= start
    stmt = select(
        Balance.account_id,
        func.sum(case((Balance.period < start, Balance.debit - Balance.credit), else_=0)),
        func.sum(case((within, Balance.debit), else_=0)),
        func.sum(case((within, Balance.credit), else_=0)),
    ).where(Balance.period <= end)
    if closing is not None:
        stmt = stmt.where(Balance.closing == closing)
    stmt = stmt.group_by(Balance.account_id)
    return {aid: [int(o or 0), int(d or 0), int(c or 0)] for aid, o, d, c in session.execute(stmt)}


# ---------------------------------------------------------------- trial balance


@dataclass
class TrialBalance:
    year: int
    month_from: int
    month_to: int
    rows: list[Row]
    totals: dict[str, int] = field(default_factory=dict)

    @property
    def balanced(self) -> bool:
        t = self.totals
        return (
            t["opening_debit"] == t["opening_credit"]
            and t["debit"] == t["credit"]
            and (t["closing_debit"] == t["closing_credit"])
        )


def trial_balance(
    session: Session,
    year: int,
    month_from: int = 1,
    month_to: int = 12,
    *,
    depth: int = 9,
    hide_empty: bool = True,
) -> TrialBalance:
    """科目余额表: opening balance, movements and closing balance of every account for the months."""
    start, end = period_bounds(year, month_from, month_to)
    rows = _rolled(session, _figures(session, start, end))
    totals = dict.fromkeys(
        ("opening_debit", "opening_credit", "debit", "credit", "closing_debit", "closing_credit"), 0
    )
    for row in rows:
        if row.depth == 0:
            od, oc = split(row.opening)
            cd, cc = split(row.closing)
            totals["opening_debit"] += od
            totals["opening_credit"] += oc
            totals["debit"] += row.debit
            totals["credit"] += row.credit
            totals["closing_debit"] += cd
            totals["closing_credit"] += cc
    shown = [r for r in rows if r.depth <= depth and not (hide_empty and r.empty)]
    return TrialBalance(year, month_from, month_to, shown, totals)


def account_balances(session: Session, year: int, month: int = 12) -> dict[str, int]:
    """Closing net balance (debit minus credit) of every account with activity, by code, rolled up."""
    _start, end = period_bounds(year, 1, month)
    return {r.code: r.closing for r in _rolled(session, _figures(session, 0, end)) if not r.empty}


# ---------------------------------------------------------------- income and expense


@dataclass
class IncomeExpense:
    year: int
    month_from: int
    month_to: int
    income: list[Row]
    expense: list[Row]
    total_income: int
    total_expense: int

    @property
    def surplus(self) -> int:
        return self.total_income - self.total_expense


def income_expense(session: Session, year: int, month_from: int = 1, month_to: int = 12) -> IncomeExpense:
    """收支明细表: income and expense accounts' movements in the months, year-end closing left out."""
    start, end = period_bounds(year, month_from, month_to)
    figures = {k: [0, d, c] for k, (_o, d, c) in _figures(session, start, end, closing=False).items()}
    rows = [r for r in _rolled(session, figures) if not r.empty]
    income = [r for r in rows if r.account.kind == "income"]
    expense = [r for r in rows if r.account.kind == "expense"]
    total_income = sum(r.credit - r.debit for r in income if r.depth == 0)
    total_expense = sum(r.debit - r.credit for r in expense if r.depth == 0)
    return IncomeExpense(year, month_from, month_to, income, expense, total_income, total_expense)


# ---------------------------------------------------------------- members


def shares_by_household(session: Session, on: dt.date | None = None) -> dict[int, int]:
    stmt = select(ShareEvent.household_id, func.sum(ShareEvent.change)).group_by(ShareEvent.household_id)
    if on is not None:
        stmt = stmt.where(ShareEvent.on <= on)
    return {hid: int(total or 0) for hid, total in session.execute(stmt)}


def account_lines(
    session: Session,
    account_ids: list[int],
    start: dt.date | None = None,
    end: dt.date | None = None,
    limit: int = 500,
) -> list[tuple[Voucher, VoucherLine]]:
    stmt = (
        select(Voucher, VoucherLine)
        .join(VoucherLine, VoucherLine.voucher_id == Voucher.id)
        .where(VoucherLine.account_id.in_(account_ids))
        .order_by(Voucher.date, Voucher.seq, VoucherLine.line_no)
        .limit(limit)
    )
    if start is not None:
        stmt = stmt.where(Voucher.date >= start)
    if end is not None:
        stmt = stmt.where(Voucher.date <= end)
    return list(session.execute(stmt))


@dataclass
class MemberStatement:
    household: Household
    year: int
    shares: int
    share_events: list[ShareEvent]
    opening: int  # balance owed to the household (credit side positive) at the start of the year
    lines: list[tuple[Voucher, VoucherLine, int]]  # with running balance owed to the household
    distributions: list[tuple[int, int]]  # (year, amount)


def member_statement(session: Session, household_id: int, year: int) -> MemberStatement:
    """A household's shares, its 内部往来 account movements in the year and its distributions."""
    household = session.get(Household, household_id)
    if household is None:
        raise ValueError(f"no household {household_id}")
    account = session.scalar(select(Account).where(Account.key == f"household:{household_id}"))
    events = list(
        session.scalars(
            select(ShareEvent)
            .where(ShareEvent.household_id == household_id)
            .order_by(ShareEvent.on, ShareEvent.id)
        )
    )
    opening, lines = 0, []
    if account is not None:
        before = session.scalar(
            select(func.sum(Balance.credit - Balance.debit)).where(
                Balance.account_id == account.id, Balance.period < year * 100 + 1
            )
        )
        opening = int(before or 0)
        running = opening
        for voucher, line in account_lines(session, [account.id], dt.date(year, 1, 1), dt.date(year, 12, 31)):
            running += line.credit - line.debit
            lines.append((voucher, line, running))
    distributions = []
    for dist in session.scalars(select(Distribution).order_by(Distribution.year)):
        amount = dist.plan.get("parts", {}).get(str(household_id))
        if amount:
            distributions.append((dist.year, amount))
    return MemberStatement(
        household, year, sum(e.change for e in events), events, opening, lines, distributions
    )
