"""Year-end closing and the surplus distribution (month closing is ``coop.periods``).

Year end, in order (each step an idempotent voucher dated 31 December):

1. income and expense accounts close into 321 本年收益 (``closing`` voucher);
2. 321 本年收益 closes into 322 收益分配—未分配收益;
3. the distribution plan is posted: debit 322 收益分配—各项分配, credit 311 公积公益金 (reserve at
   the charter's rate, ``coop.settings``), 211 应付款—外来投资分利, 113 内部往来 per household (by
   shares, largest remainder in fen) and the account chosen for any other appropriation;
4. 各项分配 closes into 未分配收益, leaving it at zero.

``preview`` computes the plan from the balances without writing anything. The distributable
surplus includes what earlier years left undistributed. Nothing is posted before December of
the year has ended in the configured zone (``core.clock``).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from fractions import Fraction

from sqlalchemy import select
from sqlalchemy.orm import Session

from coop import settings
from coop.ledger import LedgerError, Line, ensure_account, household_account, lock_head, post_voucher
from coop.models import Account, Distribution, Household, Voucher, VoucherLine
from coop.periods import close_period, closed_periods, next_to_close
from coop.reports import _figures, _rolled, shares_by_household
from core import audit, clock
from core.errors import N_
from core.money import allocate, format_fen

SURPLUS = "321"  # 本年收益
DISTRIBUTION = "322"  # 收益分配
RESERVE = "311"  # 公积公益金
INTERNAL = "113"  # 内部往来


# ---------------------------------------------------------------- plans


@dataclass
class Plan:
    """A distribution plan's figures in fen; ``parts`` maps household id (as text) to its amount.

    The appropriations come in the rules' order: loss make-up (implicit: the distributable
    amount already nets losses carried forward), 公积公益金 at the charter's rate on the year's
    surplus after loss make-up, 外来投资分利, 成员分配 (by shares), other.
    """

    year: int
    surplus: int  # 本年收益 (净收益)
    prior_undistributed: int  # 年初未分配收益 (negative: losses carried forward)
    loss_makeup: int  # the part of the surplus that makes up losses of earlier years
    base: int  # surplus after making up losses: what the reserve is drawn on
    reserve_percent: str  # the charter's rate (coop.settings)
    payout_percent: str
    reserve: int
    to_households: int
    retained: int  # 年末未分配收益: distributable less every appropriation
    shares: dict[str, int] = field(default_factory=dict)
    parts: dict[str, int] = field(default_factory=dict)
    names: dict[str, str] = field(default_factory=dict)
    other: int = 0
    distributable: int = 0  # 可分配收益 = surplus + prior undistributed
    outside_investors: int = 0  # 外来投资分利, credited to 211 应付款
    other_note: str = ""
    other_account: str = ""  # the account 其他 is credited to
    members_amount_entered: bool = False  # 成员分配 entered as an amount, not a rate

    @property
    def appropriations(self) -> int:
        return self.reserve + self.outside_investors + self.to_households + self.other

    def as_dict(self) -> dict:
        return asdict(self)


def _fraction(percent: Decimal | int | str) -> Fraction:
    try:
        value = Fraction(str(percent).strip())
    except (ValueError, ZeroDivisionError):
        raise LedgerError(N_("%(text)s is not a percentage"), text=str(percent)[:20]) from None
    if not (0 <= value <= 100):
        raise LedgerError(N_("percentages must be between 0 and 100"))
    return value


def split_by_percent(total: int, percent: Decimal | int | str) -> int:
    """``percent`` of ``total`` fen, rounded by largest remainder (the two parts sum to total)."""
    p = _fraction(percent)
    return allocate(total, [p, 100 - p])[0] if total else 0


def year_surplus(session: Session, year: int) -> tuple[int, int]:
    """(本年收益 from income and expense before closing, 未分配收益 at the start of the year).

    The start-of-year figure is the balance sheet's 年初数 of 未分配收益: 321 and 322 together
    plus any income and expense of earlier years not yet closed.
    """
    from coop.statements import balance_sheet

    start, end = year * 100 + 1, year * 100 + 12
    rows = _rolled(session, _figures(session, start, end, closing=False))
    surplus = -sum(
        r.debit - r.credit for r in rows if r.depth == 0 and r.account.kind in ("income", "expense")
    )
    prior = balance_sheet(session, year, 1).value("undistributed", 0)
    return surplus, prior


def year_end_opens(year: int) -> dt.date:
    """The first day the year-end of ``year`` may be posted: once December has ended locally."""
    return dt.date(year + 1, 1, 1)


def check_year_ended(year: int) -> None:
    """Refuse a year-end before 31 December of ``year`` has ended in the configured zone."""
    if clock.today() < year_end_opens(year):
        raise LedgerError(
            N_(
                "the %(year)s year-end can be posted from %(day)s, once December %(year)s has ended "
                "(time zone %(zone)s)"
            ),
            year=year,
            day=year_end_opens(year).isoformat(),
            zone=clock.zone_name(),
        )


def check_earlier_years_closed(session: Session, year: int) -> None:
    """Refuse a year-end while an earlier year still has income or expense not closed: years close
    in order, so each year's 收益 is distributed in its own year."""
    kinds = dict(session.execute(select(Account.id, Account.kind)).all())
    for account_id, (opening, debit, credit) in _figures(session, 0, (year - 1) * 100 + 12).items():
        if kinds.get(account_id) in ("income", "expense") and opening + debit - credit:
            raise LedgerError(
                N_(
                    "an earlier year still has income or expense not closed: "
                    "post its year-end before %(year)s"
                ),
                year=year,
            )


def _amount(value: int | None, what: str) -> int:
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise LedgerError(N_("%(what)s must be an amount of zero or more"), what=what)
    return value


def preview(
    session: Session,
    year: int,
    *,
    payout_percent: Decimal | int | str = 100,
    members_amount: int | None = None,
    outside_investors: int | None = 0,
    other: int | None = 0,
    other_note: str = "",
    other_account: str | None = None,
    on: dt.date | None = None,
) -> Plan:
    """The distribution plan for ``year`` from current balances and the share register; writes nothing.

    The reserve rate is the charter's (``coop.settings``). 成员分配 is ``members_amount`` fen when
    given, else ``payout_percent`` of what remains after the reserve and 外来投资分利. Refuses a plan
    whose appropriations exceed the distributable surplus.
    """
    from coop import settings

    reserve_percent = settings.get(session).reserve_percent
    outside = _amount(outside_investors, "外来投资分利")
    other_fen = _amount(other, "其他")
    surplus, prior = year_surplus(session, year)
    distributable = surplus + prior
    loss_makeup = min(surplus, -prior) if prior < 0 and surplus > 0 else 0
    base = max(surplus - loss_makeup, 0)
    reserve = split_by_percent(base, reserve_percent)
    available = max(distributable - reserve, 0)
    if members_amount is not None:
        to_households = _amount(members_amount, "成员分配")
    else:
        to_households = split_by_percent(max(available - outside, 0), payout_percent)
    total = outside + to_households + other_fen
    if total > available:
        raise LedgerError(
            N_(
                "the appropriations (%(total)s) exceed what can be distributed after the reserve "
                "(%(available)s)"
            ),
            total=format_fen(total),
            available=format_fen(available),
        )
    other_code = ""
    if other_fen:
        if not other_note.strip():
            raise LedgerError(N_("say what the other appropriation is for"))
        other_code = _other_account(session, other_account, create=False)
    shares = {hid: n for hid, n in shares_by_household(session, on or dt.date(year, 12, 31)).items() if n > 0}
    households = {h.id: h for h in session.scalars(select(Household).where(Household.id.in_(list(shares))))}
    ids = sorted(shares, key=lambda hid: households[hid].code)
    if to_households and not ids:
        raise LedgerError(N_("no household holds shares: record the share register first"))
    amounts = (
        allocate(to_households, [shares[h] for h in ids], keys=[households[h].code for h in ids])
        if ids
        else []
    )
    return Plan(
        year=year,
        surplus=surplus,
        prior_undistributed=prior,
        loss_makeup=loss_makeup,
        base=base,
        reserve_percent=str(reserve_percent),
        payout_percent=str(payout_percent),
        reserve=reserve,
        to_households=to_households,
        retained=distributable - reserve - total,
        shares={str(h): shares[h] for h in ids},
        parts={str(h): a for h, a in zip(ids, amounts, strict=True)},
        names={str(h): f"{households[h].code} {households[h].head_name}" for h in ids},
        other=other_fen,
        distributable=distributable,
        outside_investors=outside,
        other_note=other_note.strip()[:100] if other_fen else "",
        other_account=other_code,
        members_amount_entered=members_amount is not None,
    )


OUTSIDE_KEY = "distribution:outside-investors"
OTHER_KEY = "distribution:other-payable"


def _payable(session: Session, name: str, key: str) -> str:
    """211 应付款—``name`` (found by ``key``, created if need be); 211 itself when it already
    takes postings of its own (a sub-account cannot be added under it then)."""
    from coop.ledger import get_account, postable

    found = session.scalar(select(Account).where(Account.key == key))
    if found is not None:
        return found.code
    payables = get_account(session, "211")
    if payables is None:
        raise LedgerError(N_("no account %(code)s"), code="211")
    has_own = session.scalar(select(VoucherLine.id).where(VoucherLine.account_id == payables.id).limit(1))
    if postable(session, payables) and has_own is not None:
        return payables.code
    return ensure_account(session, "211", name, key=key).code


def _other_account(session: Session, code: str | None, *, create: bool) -> str:
    """The account 其他 is credited to: a leaf liability or equity account outside 321/322, by
    default 211 应付款—其他分配 (created on posting)."""
    from coop.ledger import get_account, postable

    if not code:
        return _payable(session, "其他分配", OTHER_KEY) if create else "211"
    account = get_account(session, code.strip())
    if account is None:
        raise LedgerError(N_("no account %(code)s"), code=code.strip()[:20])
    top = account
    while top.parent is not None:
        top = top.parent
    if account.kind not in ("liability", "equity") or top.code in (SURPLUS, DISTRIBUTION):
        raise LedgerError(
            N_("the other appropriation goes to a liability or equity account other than 321 and 322")
        )
    if not postable(session, account):
        raise LedgerError(N_("account %(code)s has sub-accounts: choose one of them"), code=account.code)
    return account.code


def cooperative_plan(
    pool: int, members: list[tuple[str, int, int]], *, volume_percent: Decimal | int | str = 60
) -> dict[str, dict[str, int]]:
    """A cooperative's surplus return (农民专业合作社法 art. 44).

    ``members`` are (key, transaction volume in fen, capital plus reserve share in fen). At least
    60% of ``pool`` is returned by transaction volume, the rest by capital and reserve share;
    each part by largest remainder, so everything sums exactly to ``pool``.
    """
    if _fraction(volume_percent) < 60:
        raise LedgerError(
            N_("at least 60%% of a cooperative's distributable surplus is returned by transaction volume")
        )
    if not members:
        raise LedgerError(N_("a cooperative plan needs members"))
    by_volume_pool = split_by_percent(pool, volume_percent)
    rest = pool - by_volume_pool
    keys = [m[0] for m in members]
    volumes = [m[1] for m in members]
    capitals = [m[2] for m in members]
    if sum(volumes) == 0:
        by_volume_pool, rest = 0, pool
    if sum(capitals) == 0:
        if sum(volumes) == 0:
            raise LedgerError(N_("members have neither transaction volume nor capital"))
        by_volume_pool, rest = pool, 0
    v = allocate(by_volume_pool, volumes, keys) if by_volume_pool else [0] * len(members)
    c = allocate(rest, capitals, keys) if rest else [0] * len(members)
    return {k: {"by_volume": a, "by_capital": b, "total": a + b} for k, a, b in zip(keys, v, c, strict=True)}


def plan_fingerprint(plan: Plan) -> str:
    """A short digest of the plan's figures: posting refuses if the books moved since the preview."""
    import hashlib
    import json

    return hashlib.sha256(json.dumps(plan.as_dict(), sort_keys=True).encode()).hexdigest()[:16]


# ---------------------------------------------------------------- year end


def _dist_accounts(session: Session) -> tuple[Account, Account]:
    appropriations = ensure_account(session, DISTRIBUTION, "各项分配", key="distribution:appropriations")
    undistributed = ensure_account(session, DISTRIBUTION, "未分配收益", key="distribution:undistributed")
    return appropriations, undistributed


def close_income(session: Session, year: int, *, user_id: int | None = None) -> Voucher | None:
    """Step 1 and 2: income and expense into 321, then 321 into 322 未分配收益. Idempotent;
    refused until December of ``year`` has ended."""
    check_year_ended(year)
    _appropriations, undistributed = _dist_accounts(session)
    day = dt.date(year, 12, 31)
    rows = _rolled(session, _figures(session, 0, year * 100 + 12))
    leaves = {r.account.id for r in rows} - {r.account.parent_id for r in rows if r.account.parent_id}
    lines: list[Line] = []
    net = 0
    for r in rows:
        if r.account.id in leaves and r.account.kind in ("income", "expense") and r.closing:
            # close the account: post the opposite of its balance
            if r.closing > 0:
                lines.append(Line(r.code, credit=r.closing))
            else:
                lines.append(Line(r.code, debit=-r.closing))
            net += r.closing
    first = None
    if lines:
        surplus = ensure_leaf(session, SURPLUS)
        if net:
            lines.append(Line(surplus, debit=net) if net > 0 else Line(surplus, credit=-net))
        first = post_voucher(
            session,
            date=day,
            summary=f"{year}年 结转本年收益",
            lines=lines,
            preparer_id=user_id,
            source="year-end",
            source_ref=f"{year}:close-income",
            kind="closing",
        )
    surplus_code = ensure_leaf(session, SURPLUS)
    balance = next(
        (
            r.closing
            for r in _rolled(session, _figures(session, 0, year * 100 + 12))
            if r.code == surplus_code
        ),
        0,
    )
    if balance:
        amount = abs(balance)
        pair = (
            [Line(surplus_code, debit=amount), Line(undistributed.code, credit=amount)]
            if balance < 0
            else [Line(undistributed.code, debit=amount), Line(surplus_code, credit=amount)]
        )
        post_voucher(
            session,
            date=day,
            summary=f"{year}年 本年收益转入收益分配",
            lines=pair,
            preparer_id=user_id,
            source="year-end",
            source_ref=f"{year}:close-surplus",
            kind="closing",
        )
    return first


def ensure_leaf(session: Session, code: str) -> str:
    """``code`` itself if it has no sub-accounts, else refuse (year-end accounts are posted directly)."""
    from coop.ledger import get_account, postable

    account = get_account(session, code)
    if account is None:
        raise LedgerError(N_("no account %(code)s"), code=code)
    if not postable(session, account):
        raise LedgerError(
            N_("account %(code)s has sub-accounts; year-end closing posts to it directly"), code=code
        )
    return code


def post_distribution(
    session: Session,
    year: int,
    *,
    payout_percent: Decimal | int | str = 100,
    members_amount: int | None = None,
    outside_investors: int | None = 0,
    other: int | None = 0,
    other_note: str = "",
    other_account: str | None = None,
    user_id: int | None = None,
    approver_id: int | None = None,
    expected: str | None = None,
    close_months: bool = True,
) -> Distribution:
    """Close the year and post the distribution plan (refused until December has ended). With
    ``expected`` (a previewed plan's fingerprint), refuse if the figures changed since the preview.
    Optionally close all twelve months."""
    check_year_ended(year)
    check_earlier_years_closed(session, year)
    lock_head(session)  # one year-end at a time: a second, concurrent one finds the first posted
    if session.scalar(select(Distribution).where(Distribution.year == year)) is not None:
        raise LedgerError(N_("the %(year)s distribution has already been posted"), year=year)
    if close_months:
        nxt = next_to_close(session)
        if nxt < (year, 1):
            raise LedgerError(
                N_("months close in order: close the months before %(year)s first (next: %(next)s)"),
                year=year,
                next=f"{nxt[0]}-{nxt[1]:02d}",
            )
    plan = preview(
        session,
        year,
        payout_percent=payout_percent,
        members_amount=members_amount,
        outside_investors=outside_investors,
        other=other,
        other_note=other_note,
        other_account=other_account,
    )
    if expected is not None and plan_fingerprint(plan) != expected:
        raise LedgerError(N_("the books changed since the preview: preview the plan again"))
    close_income(session, year, user_id=user_id)
    appropriations, undistributed = _dist_accounts(session)
    day = dt.date(year, 12, 31)
    total = plan.appropriations
    voucher = None
    if total:
        lines = [Line(appropriations.code, debit=total, memo="各项分配")]
        if plan.reserve:
            lines.append(
                Line(
                    ensure_leaf(session, RESERVE),
                    credit=plan.reserve,
                    memo=f"提取公积公益金 {plan.reserve_percent}%",
                )
            )
        if plan.outside_investors:
            outside = _payable(session, "外来投资分利", OUTSIDE_KEY)
            lines.append(Line(outside, credit=plan.outside_investors, memo="外来投资分利"))
        for hid, amount in plan.parts.items():
            if amount:
                lines.append(
                    Line(household_account(session, int(hid), INTERNAL).code, credit=amount, memo="按股分配")
                )
        if plan.other:
            code = _other_account(session, other_account, create=True)
            lines.append(Line(code, credit=plan.other, memo=f"其他分配：{plan.other_note}"[:200]))
        voucher = post_voucher(
            session,
            date=day,
            summary=f"{year}年 收益分配",
            lines=lines,
            preparer_id=user_id,
            approver_id=approver_id,
            source="year-end",
            source_ref=f"{year}:distribution",
            kind="distribution",
        )
        post_voucher(
            session,
            date=day,
            summary=f"{year}年 结转各项分配",
            lines=[Line(undistributed.code, debit=total), Line(appropriations.code, credit=total)],
            preparer_id=user_id,
            source="year-end",
            source_ref=f"{year}:close-appropriations",
            kind="closing",
        )
    dist = Distribution(
        year=year, plan=plan.as_dict(), voucher_id=voucher.id if voucher else None, created_by=user_id
    )
    session.add(dist)
    session.flush()
    audit.record(
        session,
        "distribution.post",
        dist,
        user_id=user_id,
        details={
            "year": year,
            "reserve_percent": plan.reserve_percent,
            "reserve": plan.reserve,
            "outside_investors": plan.outside_investors,
            "to_households": plan.to_households,
            "other": plan.other,
            "retained": plan.retained,
        },
    )
    if close_months:
        done = closed_periods(session)
        opening = settings.get(session).opening_date
        for month in range(1, 13):
            if (year, month) not in done and (year, month) >= (opening.year, opening.month):
                close_period(session, year, month, user_id=user_id, year_end=True)
    return dist
