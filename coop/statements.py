"""The statements the rules prescribe: 资产负债表, 收益及收益分配表 and 附注 (科目余额表 is
``coop.reports.trial_balance``).

Layout: 《农村集体经济组织会计制度》(财会〔2023〕14号) where its items are known, otherwise the
2004 rules' (财会〔2004〕12号) statement layout; ``docs/accounting.md`` ("Statements") says which.

Each line is data: ``BALANCE_SHEET`` and ``INCOME_STATEMENT`` list the lines in order with the
accounts they take and the rule that turns balances into the figure, so an auditor can read the
mapping in one place. Figures come from ``coop_balances`` (accounts x months), never from the
voucher lines, so every statement costs the same with a thousand or a million lines. Amounts are
integer fen, positive on the line's normal side.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from coop.models import Account, Distribution, Enterprise, RecurringEntry, StatementNote, Voucher
from coop.reports import _figures, _rolled, month_end, period_bounds
from core import audit, clock
from core.db import utcnow
from core.errors import N_, DomainError

MAJOR_ITEM_FEN = 1_000_000  # ¥10,000: vouchers at or above this are major items (重大事项)
NOTE_MAX_CHARS = 20_000


class StatementError(DomainError):
    """A statement request or a note was refused."""


# ---------------------------------------------------------------- line definitions

# A term is (rule, account code). Rules on an account's closing net balance (debit minus credit,
# rolled up from its sub-accounts):
#   "dr"         the net debit balance (negative when the account is in credit)
#   "cr"         the net credit balance (negative when the account is in debit)
#   "dr_leaves"  the sum of the debit balances of the account's leaf sub-accounts only
#   "cr_leaves"  the sum of the credit balances of the account's leaf sub-accounts only
#   "unclosed"   income less expense not yet closed into 321 (the code is ignored)
# A line with ``sums`` instead adds other lines (a leading "-" subtracts).


@dataclass(frozen=True)
class LineDef:
    key: str
    label: str  # the prescribed Chinese wording
    label_en: str
    terms: tuple[tuple[str, str], ...] = ()
    sums: tuple[str, ...] = ()
    level: int = 0  # 0 an item, 1 a subtotal, 2 a total
    indent: int = 0


def _L(key: str, label: str, label_en: str, *terms: tuple[str, str], **kw: Any) -> LineDef:
    return LineDef(key, label, label_en, tuple(terms), **kw)


BS_ASSETS: tuple[LineDef, ...] = (
    _L("cash", "货币资金", "Cash and bank", ("dr", "101"), ("dr", "102")),
    _L("short_investments", "短期投资", "Short-term investments", ("dr", "111")),
    _L("receivables", "应收款项", "Receivables", ("dr", "112"), ("dr_leaves", "113")),
    _L("inventory", "存货", "Inventory", ("dr", "121"), ("dr", "401")),
    _L("consumable_bio", "消耗性生物资产", "Consumable biological assets", ("dr", "131")),
    _L(
        "current_assets",
        "流动资产合计",
        "Total current assets",
        sums=("cash", "short_investments", "receivables", "inventory", "consumable_bio"),
        level=1,
    ),
    _L("productive_bio_cost", "生产性生物资产原值", "Productive biological assets, cost", ("dr", "132")),
    _L(
        "productive_bio_dep",
        "减：生产性生物资产累计折旧",
        "Less: accumulated depreciation",
        ("cr", "133"),
        indent=1,
    ),
    _L(
        "productive_bio_net",
        "生产性生物资产净值",
        "Productive biological assets, net",
        sums=("productive_bio_cost", "-productive_bio_dep"),
    ),
    _L("public_bio", "公益性生物资产", "Public-welfare biological assets", ("dr", "134")),
    _L("long_investments", "长期投资", "Long-term investments", ("dr", "141")),
    _L("fixed_cost", "固定资产原值", "Fixed assets, cost", ("dr", "151")),
    _L("fixed_dep", "减：累计折旧", "Less: accumulated depreciation", ("cr", "152"), indent=1),
    _L("fixed_net", "固定资产净值", "Fixed assets, net", sums=("fixed_cost", "-fixed_dep")),
    _L("construction", "在建工程", "Construction in progress", ("dr", "153")),
    _L("fixed_disposal", "固定资产清理", "Fixed asset disposal", ("dr", "154")),
    _L("intangible", "无形资产", "Intangible assets (net of amortisation)", ("dr", "161"), ("dr", "162")),
    _L("deferred", "长期待摊费用", "Long-term deferred expenses", ("dr", "171")),
    _L("pending", "待处理财产损溢", "Property gains and losses pending", ("dr", "181")),
    _L(
        "noncurrent_assets",
        "非流动资产合计",
        "Total non-current assets",
        sums=(
            "productive_bio_net",
            "public_bio",
            "long_investments",
            "fixed_net",
            "construction",
            "fixed_disposal",
            "intangible",
            "deferred",
            "pending",
        ),
        level=1,
    ),
    _L("total_assets", "资产合计", "Total assets", sums=("current_assets", "noncurrent_assets"), level=2),
)

BS_LIABILITIES: tuple[LineDef, ...] = (
    _L("short_loans", "短期借款", "Short-term loans", ("cr", "201")),
    _L("payables", "应付款项", "Payables", ("cr", "211"), ("cr_leaves", "113")),
    _L("wages", "应付工资", "Wages payable", ("cr", "212")),
    _L("labour", "应付劳务费", "Labour fees payable", ("cr", "213")),
    _L("taxes", "应交税费", "Taxes payable", ("cr", "214")),
    _L(
        "current_liabilities",
        "流动负债合计",
        "Total current liabilities",
        sums=("short_loans", "payables", "wages", "labour", "taxes"),
        level=1,
    ),
    _L("long_loans", "长期借款及应付款", "Long-term loans and payables", ("cr", "221")),
    _L("one_matter", "一事一议资金", '"One matter, one discussion" funds', ("cr", "231")),
    _L("special", "专项应付款", "Special payables", ("cr", "241")),
    _L(
        "noncurrent_liabilities",
        "非流动负债合计",
        "Total non-current liabilities",
        sums=("long_loans", "one_matter", "special"),
        level=1,
    ),
    _L(
        "total_liabilities",
        "负债合计",
        "Total liabilities",
        sums=("current_liabilities", "noncurrent_liabilities"),
        level=2,
    ),
    _L("capital", "资本", "Capital", ("cr", "301")),
    _L("reserve", "公积公益金", "Reserve and public-welfare fund", ("cr", "311")),
    _L(
        "undistributed",
        "未分配收益",
        "Undistributed surplus",
        ("cr", "321"),
        ("cr", "322"),
        ("unclosed", ""),
    ),
    _L(
        "total_equity",
        "所有者权益合计",
        "Total equity",
        sums=("capital", "reserve", "undistributed"),
        level=2,
    ),
    _L(
        "total_liabilities_equity",
        "负债和所有者权益总计",
        "Total liabilities and equity",
        sums=("total_liabilities", "total_equity"),
        level=2,
    ),
)

# Income statement terms are the year's movements (year-end closing entries left out):
#   "cr" credits less debits (income), "dr" debits less credits (expense);
#   "opening" 未分配收益 at the start of the year (the balance sheet's 年初数);
#   "transfer_in" other movements of 321/322 in the year (e.g. 以前年度损益调整 carried to
#   未分配收益), the posted distribution's own entry left out;
#   "plan:<key>" an appropriation of the year's posted distribution plan.
INCOME_STATEMENT: tuple[LineDef, ...] = (
    _L("operating_income", "一、经营收入", "Operating income", ("cr", "501")),
    _L("operating_expense", "减：经营支出", "Less: operating expenses", ("dr", "511"), indent=1),
    _L("taxes", "税金及附加", "Taxes and surcharges", ("dr", "512"), indent=1),
    _L("admin", "管理费用", "Administrative expenses", ("dr", "513"), indent=1),
    _L(
        "operating_surplus",
        "二、经营收益",
        "Operating surplus",
        sums=("operating_income", "-operating_expense", "-taxes", "-admin"),
        level=1,
    ),
    _L("investment", "加：投资收益", "Add: investment income", ("cr", "502"), indent=1),
    _L("subsidy", "补助收入", "Subsidy income", ("cr", "503"), indent=1),
    _L("other_income", "其他收入", "Other income", ("cr", "504"), indent=1),
    _L("welfare", "减：公益支出", "Less: public-welfare expenses", ("dr", "514"), indent=1),
    _L("other_expense", "其他支出", "Other expenses", ("dr", "515"), indent=1),
    _L(
        "total_surplus",
        "三、收益总额",
        "Total surplus",
        sums=("operating_surplus", "investment", "subsidy", "other_income", "-welfare", "-other_expense"),
        level=1,
    ),
    _L("income_tax", "减：所得税费用", "Less: income tax expense", ("dr", "521"), indent=1),
    _L("net_surplus", "四、净收益", "Net surplus", sums=("total_surplus", "-income_tax"), level=1),
    _L(
        "opening",
        "加：年初未分配收益",
        "Add: undistributed at the start of the year",
        ("opening", ""),
        indent=1,
    ),
    _L("transfer_in", "其他转入", "Other transfers in", ("transfer_in", ""), indent=1),
    _L(
        "distributable",
        "五、可分配收益",
        "Distributable surplus",
        sums=("net_surplus", "opening", "transfer_in"),
        level=1,
    ),
    _L(
        "app_reserve",
        "减：提取公积公益金",
        "Less: reserve and public-welfare fund",
        ("plan", "reserve"),
        indent=1,
    ),
    _L("app_outside", "外来投资分利", "Profit to outside investors", ("plan", "outside_investors"), indent=1),
    _L("app_members", "成员分配", "Distribution to members", ("plan", "to_households"), indent=1),
    _L("app_other", "其他", "Other appropriations", ("plan", "other"), indent=1),
    _L(
        "closing",
        "六、年末未分配收益",
        "Undistributed at the end of the year",
        sums=("distributable", "-app_reserve", "-app_outside", "-app_members", "-app_other"),
        level=2,
    ),
)

INCOME_CLASSES = ("income", "expense")


# ---------------------------------------------------------------- figures


@dataclass
class StatementLine:
    key: str
    label: str
    label_en: str
    level: int
    indent: int
    amounts: list[int]  # one per column

    @property
    def first(self) -> int:
        return self.amounts[0]

    @property
    def last(self) -> int:
        return self.amounts[-1]


def _evaluate(defs: tuple[LineDef, ...], term_value) -> dict[str, int]:
    out: dict[str, int] = {}
    for d in defs:
        if d.sums:
            total = 0
            for ref in d.sums:
                total += -out[ref[1:]] if ref.startswith("-") else out[ref]
            out[d.key] = total
        else:
            out[d.key] = sum(term_value(rule, code) for rule, code in d.terms)
    return out


class _Balances:
    """Closing nets (debit minus credit) at one moment: by code rolled up, and leaves under a code."""

    def __init__(self, session: Session, end_period: int):
        self.rows = _rolled(session, _figures(session, 0, end_period))
        self.by_code = {r.code: r.closing for r in self.rows}
        parents = {r.account.parent_id for r in self.rows if r.account.parent_id is not None}
        by_id = {r.account.id: r for r in self.rows}
        self.leaves: dict[str, list[int]] = {}
        for r in self.rows:
            if r.account.id in parents:
                continue
            a: Account | None = r.account
            while a is not None:
                self.leaves.setdefault(a.code, []).append(r.closing)
                a = by_id[a.parent_id].account if a.parent_id is not None else None
        self.unclosed = -sum(
            r.closing for r in self.rows if r.depth == 0 and r.account.kind in INCOME_CLASSES
        )

    def term(self, rule: str, code: str) -> int:
        if rule == "dr":
            return self.by_code.get(code, 0)
        if rule == "cr":
            return -self.by_code.get(code, 0)
        if rule == "dr_leaves":
            return sum(v for v in self.leaves.get(code, []) if v > 0)
        if rule == "cr_leaves":
            return -sum(v for v in self.leaves.get(code, []) if v < 0)
        if rule == "unclosed":
            return self.unclosed
        raise ValueError(f"unknown balance sheet rule {rule!r}")


@dataclass
class Statement:
    """A statement: title, columns, lines; ``as_dict`` is what a disclosure freezes."""

    kind: str  # balance_sheet | income_statement
    title: str
    year: int
    month: int
    date: str  # the period's last day
    columns: list[str]  # keys: "begin"/"end" or "this_year"/"last_year"
    lines: list[StatementLine]
    sections: dict[str, list[str]] = field(default_factory=dict)  # section -> line keys

    def line(self, key: str) -> StatementLine:
        return next(line for line in self.lines if line.key == key)

    def value(self, key: str, column: int = -1) -> int:
        return self.line(key).amounts[column]

    def section(self, name: str) -> list[StatementLine]:
        keys = self.sections[name]
        return [line for line in self.lines if line.key in keys]

    def as_dict(self) -> dict:
        return asdict(self)


def balance_sheet(session: Session, year: int, month: int = 12) -> Statement:
    """资产负债表 at the end of ``month``: 年初数 (end of the previous year) and 期末数."""
    period_bounds(year, 1, month)
    begin = _Balances(session, (year - 1) * 100 + 12)
    end = _Balances(session, year * 100 + month)
    defs = BS_ASSETS + BS_LIABILITIES
    a, b = _evaluate(defs, begin.term), _evaluate(defs, end.term)
    lines = [StatementLine(d.key, d.label, d.label_en, d.level, d.indent, [a[d.key], b[d.key]]) for d in defs]
    return Statement(
        "balance_sheet",
        "资产负债表",
        year,
        month,
        month_end(year, month).isoformat(),
        ["begin", "end"],
        lines,
        {"assets": [d.key for d in BS_ASSETS], "liabilities": [d.key for d in BS_LIABILITIES]},
    )


APPROPRIATIONS = ("reserve", "outside_investors", "to_households", "other")


def _plan_figures(session: Session, year: int, month: int) -> dict[str, int]:
    """The posted plan's appropriations (only in a statement that reaches December)."""
    dist = session.scalar(select(Distribution).where(Distribution.year == year))
    if dist is None or month != 12:
        return {}
    return {k: int(dist.plan.get(k, 0) or 0) for k in APPROPRIATIONS}


def _moves(session: Session, start: int, end: int) -> list:
    """Rows with each account's movements in the periods, year-end closing entries left out."""
    figures = _figures(session, start, end, closing=False)
    return _rolled(session, {k: [0, d, c] for k, (_o, d, c) in figures.items()})


def _income_column(session: Session, year: int, month: int) -> dict[str, int]:
    start, end = period_bounds(year, 1, month)
    by_code = {r.code: (r.debit, r.credit) for r in _moves(session, start, end)}
    plan = _plan_figures(session, year, month)
    opening = _evaluate(BS_ASSETS + BS_LIABILITIES, _Balances(session, (year - 1) * 100 + 12).term)[
        "undistributed"
    ]
    # other movements of 321/322 in the year; the distribution voucher's own debit is added back
    own = sum(c - d for code, (d, c) in by_code.items() if code in ("321", "322"))
    transfer_in = own + (_posted_distribution_total(session, year) if month == 12 else 0)

    def term(rule: str, code: str) -> int:
        if rule == "cr":
            d, c = by_code.get(code, (0, 0))
            return c - d
        if rule == "dr":
            d, c = by_code.get(code, (0, 0))
            return d - c
        if rule == "opening":
            return opening
        if rule == "transfer_in":
            return transfer_in
        if rule == "plan":
            return plan.get(code, 0)
        raise ValueError(f"unknown income statement rule {rule!r}")

    return _evaluate(INCOME_STATEMENT, term)


def _posted_distribution_total(session: Session, year: int) -> int:
    """What the posted distribution voucher of ``year`` debited to 322 (its appropriations)."""
    dist = session.scalar(select(Distribution).where(Distribution.year == year))
    if dist is None or dist.voucher_id is None:
        return 0
    voucher = session.get(Voucher, dist.voucher_id)
    return int(voucher.total) if voucher is not None else 0


def income_statement(session: Session, year: int, month: int = 12) -> Statement:
    """收益及收益分配表 for January to ``month``: 本年数 and 上年数 (the same months of last year)."""
    period_bounds(year, 1, month)
    this, last = _income_column(session, year, month), _income_column(session, year - 1, month)
    lines = [
        StatementLine(d.key, d.label, d.label_en, d.level, d.indent, [this[d.key], last[d.key]])
        for d in INCOME_STATEMENT
    ]
    return Statement(
        "income_statement",
        "收益及收益分配表",
        year,
        month,
        month_end(year, month).isoformat(),
        ["this_year", "last_year"],
        lines,
        {"all": [d.key for d in INCOME_STATEMENT]},
    )


def covered_codes() -> set[str]:
    """Every account code a balance sheet line takes (a top-level account outside it would be lost)."""
    return {code for d in BS_ASSETS + BS_LIABILITIES for _rule, code in d.terms if code}


# ---------------------------------------------------------------- notes (附注)


@dataclass
class Notes:
    year: int
    policies: list[dict[str, Any]]  # {"template": N_(...), "params": {...}}
    major_items: list[dict[str, Any]]
    contracts: list[dict[str, Any]]
    subsidies: list[dict[str, Any]]
    subsidy_total: int
    note: StatementNote | None

    @property
    def text(self) -> str:
        return self.note.text if self.note is not None else ""


def _policy(template: str, **params: Any) -> dict[str, Any]:
    return {"template": template, "params": params}


def notes(session: Session, year: int) -> Notes:
    """附注: accounting policies (generated), major items, contracts, subsidies and the official's text."""
    from coop import settings

    books = settings.get(session)
    start, end = dt.date(year, 1, 1), dt.date(year, 12, 31)
    policies = [
        _policy(
            N_(
                "These statements follow the Accounting System for Rural Collective Economic "
                "Organisations (财会〔2023〕14号) and its chart of accounts."
            )
        ),
        _policy(N_("The accounting year runs from 1 January to 31 December; amounts are in yuan (CNY).")),
        _policy(N_("The books were opened on %(day)s."), day=books.opening_date.isoformat()),
        _policy(N_("Double-entry bookkeeping on the accrual basis; every voucher is kept in a hash chain.")),
        _policy(
            N_(
                "The charter sets the reserve and public-welfare fund (公积公益金) at %(rate)s%% "
                "of the surplus."
            ),
            rate=books.reserve_percent,
        ),
    ]
    moves = _moves(session, year * 100 + 1, year * 100 + 12)
    by_code = {r.code: r for r in moves}
    depreciation = sum(by_code[c].credit for c in ("152", "133") if c in by_code)
    amortisation = by_code["162"].credit if "162" in by_code else 0
    if depreciation or amortisation:
        policies.append(
            _policy(
                N_(
                    "Depreciation charged this year: %(dep)s yuan on fixed and productive biological "
                    "assets; amortisation of intangible assets: %(amort)s yuan."
                ),
                dep=_yuan(depreciation),
                amort=_yuan(amortisation),
            )
        )
    else:
        policies.append(_policy(N_("No depreciation or amortisation was charged this year.")))

    majors = session.scalars(
        select(Voucher)
        .where(
            Voucher.date >= start,
            Voucher.date <= end,
            Voucher.total >= MAJOR_ITEM_FEN,
            Voucher.kind.not_in(("closing",)),
        )
        .order_by(Voucher.date, Voucher.seq)
    )
    major_items = [
        {"voucher": v.label, "date": v.date.isoformat(), "summary": v.summary, "amount": int(v.total)}
        for v in majors
    ]

    contracts = []
    entries = session.execute(
        select(RecurringEntry, Enterprise)
        .join(Enterprise, Enterprise.id == RecurringEntry.enterprise_id)
        .where(Enterprise.kind == "contract", RecurringEntry.start <= end)
        .order_by(RecurringEntry.id)
    )
    for entry, ent in entries:
        if entry.end is not None and entry.end < start:
            continue
        posted = session.scalar(
            select(func.coalesce(func.sum(Voucher.total), 0)).where(
                Voucher.source == "recurring",
                Voucher.source_ref.like(f"{entry.id}:%"),
                Voucher.date >= start,
                Voucher.date <= end,
            )
        )
        contracts.append(
            {
                "name": entry.name,
                "counterparty": ent.name,
                "amount": int(entry.amount),
                "every_months": entry.every_months,
                "start": entry.start.isoformat(),
                "end": entry.end.isoformat() if entry.end else "",
                "posted": int(posted or 0),
            }
        )

    subsidies = [
        {
            "code": r.code,
            "name": r.account.name,
            "name_en": r.account.name_en,
            "depth": r.depth,
            "amount": r.credit - r.debit,
        }
        for r in moves
        if _under(r.account, "503", by_code) and not r.empty
    ]
    subsidy_total = by_code["503"].credit - by_code["503"].debit if "503" in by_code else 0
    note = session.scalar(select(StatementNote).where(StatementNote.year == year))
    return Notes(year, policies, major_items, contracts, subsidies, subsidy_total, note)


def _under(account: Account, code: str, by_code: dict) -> bool:
    """Whether ``account`` is ``code`` or below it (by the tree, not by a code prefix)."""
    ids = {r.account.id: r.account for r in by_code.values()}
    a: Account | None = account
    while a is not None:
        if a.code == code:
            return True
        a = ids.get(a.parent_id) if a.parent_id is not None else None
    return False


def _yuan(fen: int) -> str:
    sign = "-" if fen < 0 else ""
    whole, cents = divmod(abs(fen), 100)
    return f"{sign}{whole:,}.{cents:02d}"


def save_note(session: Session, year: int, text: str, *, user_id: int | None = None) -> StatementNote:
    """Write (or rewrite) the official's text for the year's notes; audited with the old and new length."""
    if not (1990 <= year <= clock.today().year + 1):
        raise StatementError(N_("notes can be written for the years 1990 to next year"))
    text = (text or "").replace("\r\n", "\n").strip()
    if len(text) > NOTE_MAX_CHARS:
        raise StatementError(N_("the notes may be at most %(max)s characters"), max=NOTE_MAX_CHARS)
    note = session.scalar(select(StatementNote).where(StatementNote.year == year))
    old = note.text if note is not None else None
    if note is None:
        note = StatementNote(year=year, text=text)
        session.add(note)
    elif old == text:
        return note
    note.text, note.updated_by, note.updated_at = text, user_id, utcnow()
    session.flush()
    audit.record(
        session,
        "statement_note.save",
        note,
        user_id=user_id,
        details={"year": year, "old": old, "new": text},
    )
    return note
