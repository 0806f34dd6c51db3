"""The double-entry journal: chart of accounts, posting, reversal and the hash chain.

Plain Python over a SQLAlchemy session; callers commit. Every posting:

1. validates (two or more lines, each line debit XOR credit > 0 in integer fen — negative only
   in a red-ink reversal —, debits equal credits, no account both debited and credited,
   accounts exist and are postable leaves, the date lies between the first open day — after
   the latest closed month, not before the books' opening date — and today plus the grace
   days) and writes nothing when it refuses (``LedgerError``);
2. locks the chain head row (``lock_head``: a real write lock on SQLite too), assigns the next
   gapless number of the voucher's year and the
   next chain position, and hashes the voucher's canonical content with the previous hash;
3. adds the per-period balance movements and an audit entry.
"""

from __future__ import annotations

import csv
import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import event, func, select
from sqlalchemy.orm import Session

from coop import chain as _chain
from coop.models import (
    ACCOUNT_CLASSES,
    Account,
    Balance,
    ChainHead,
    Household,
    Period,
    Voucher,
    VoucherLine,
)
from core import audit, clock
from core.errors import N_, DomainError
from core.money import format_yuan
from core.text import fold_width

# The chain's primitives live in coop.chain; these names stay here for the callers that expect them.
GENESIS_HASH = _chain.GENESIS_HASH
VerifyResult = _chain.VerifyResult
balance_problems = _chain.balance_problems
canonical = _chain.canonical
chain_hash = _chain.chain_hash
chain_head = _chain.chain_head
lock_head = _chain.lock_head
BooksBusy = _chain.BooksBusy
verify_chain = _chain.verify_chain

CHART_CSV = Path(__file__).resolve().parent / "data" / "chart-of-accounts-village-collective-2023.csv"
MAX_LINE_FEN = 10**15  # ¥10 trillion: a typo guard, far above any village's books


class LedgerError(DomainError):
    """A posting or other ledger operation was refused; the message says why. Nothing was written."""


@dataclass
class Line:
    """One line of a voucher: an account code and a debit or a credit in integer fen."""

    account: str
    debit: int = 0
    credit: int = 0
    memo: str = ""


# ---------------------------------------------------------------- chart of accounts


def load_chart(session: Session, path: Path | str | None = None, *, opening: dt.date | None = None) -> int:
    """Load the level-1 chart from the CSV (code, name_zh, class, name_en); returns how many were added.

    Idempotent: existing codes are left as they are. Opens the books (``coop.settings``) on
    ``opening`` (default 1 January this year) if they are not open yet.
    """
    from coop import settings

    settings.ensure(session, opening=opening)
    existing = set(session.scalars(select(Account.code).where(Account.parent_id.is_(None))))
    added = 0
    with open(path or CHART_CSV, encoding="utf-8", newline="") as fh:
        for row in csv.DictReader(fh):
            code = row["code"].strip()
            if not code or code in existing:
                continue
            kind = row["class"].strip()
            if kind not in ACCOUNT_CLASSES:
                raise LedgerError(N_("chart row %(code)s: unknown class %(kind)r"), code=code, kind=kind)
            session.add(
                Account(code=code, name=row["name_zh"].strip(), name_en=row["name_en"].strip(), kind=kind)
            )
            added += 1
    if session.get(ChainHead, 1) is None:
        session.add(ChainHead(id=1, seq=0, hash=GENESIS_HASH))
    session.flush()
    return added


def ensure_chart(session: Session) -> None:
    """Load the official chart if the books have no accounts yet."""
    if session.scalar(select(func.count(Account.id))) == 0 or session.get(ChainHead, 1) is None:
        load_chart(session)


def get_account(session: Session, code: str) -> Account | None:
    return session.scalar(select(Account).where(Account.code == code))


# Sub-account codes are the parent's code + a fixed-width serial. The width is the parent's: the
# width of its existing sub-accounts (codes are inside every voucher's hash, so existing codes are
# never renumbered), else the width asked for, else ``SUB_CODE_WIDTHS`` (4 digits under 113 内部往来,
# room for 9,999 households), else 2 (the chart's usual second level).
DEFAULT_SUB_CODE_WIDTH = 2
SUB_CODE_WIDTHS = {"113": 4}
HOUSEHOLD_CODE_WIDTH = 4
MAX_SUB_CODE_WIDTH = 6


def sub_code_width(session: Session, parent: Account, wanted: int | None = None) -> int:
    """How many digits the serials of ``parent``'s sub-accounts have (see ``SUB_CODE_WIDTHS``)."""
    first = session.scalar(select(Account.code).where(Account.parent_id == parent.id).order_by(Account.id))
    if first is not None and first.startswith(parent.code) and first[len(parent.code) :].isdigit():
        return len(first) - len(parent.code)
    width = wanted or SUB_CODE_WIDTHS.get(parent.code, DEFAULT_SUB_CODE_WIDTH)
    if not 1 <= width <= MAX_SUB_CODE_WIDTH:
        raise LedgerError(N_("sub-account codes have 1 to %(most)s digits"), most=MAX_SUB_CODE_WIDTH)
    return width


def _next_sub_code(session: Session, parent: Account, width: int) -> str:
    """The parent's code + the next free serial of ``width`` digits; refuses when all are taken."""
    taken = {
        c[len(parent.code) :]
        for c in session.scalars(select(Account.code).where(Account.parent_id == parent.id))
        if c.startswith(parent.code)
    }
    serials = [int(t) for t in taken if t.isdigit() and len(t) == width]
    serial = max(serials, default=0) + 1
    while serial < 10**width:
        code = f"{parent.code}{serial:0{width}d}"
        if get_account(session, code) is None:  # never reuse a code another account holds
            return code
        serial += 1
    raise LedgerError(
        N_(
            "account %(code)s is full: its sub-accounts have %(width)s-digit codes and all %(count)s are "
            "taken"
        ),
        code=parent.code,
        width=width,
        count=10**width - 1,
    )


def ensure_account(
    session: Session, parent_code: str, name: str, *, key: str | None = None, width: int | None = None
) -> Account:
    """Find or create a sub-account of ``parent_code`` (code = parent code + fixed-width serial).

    With ``key`` (a stable lookup key such as ``"household:12"``) the account is found by key;
    without, by parent and name. ``width`` is the serial's width for a parent that has no
    sub-accounts yet; one that has keeps the width of its existing ones (see ``sub_code_width``).
    """
    ensure_chart(session)
    if key is not None:
        found = session.scalar(select(Account).where(Account.key == key))
        if found is not None:
            return found
    parent = get_account(session, (parent_code or "").strip())
    if parent is None:
        raise LedgerError(N_("no account %(parent_code)s"), parent_code=parent_code)
    if key is None:
        found = session.scalar(select(Account).where(Account.parent_id == parent.id, Account.name == name))
        if found is not None:
            return found
    name = (name or "").strip()
    if not name:
        raise LedgerError(N_("a sub-account needs a name"))
    if session.scalar(select(Balance.id).where(Balance.account_id == parent.id).limit(1)) is not None:
        raise LedgerError(
            N_(
                "account %(code)s already has postings of its own: sub-accounts can only be added to an "
                "account without postings"
            ),
            code=parent.code,
        )
    code = _next_sub_code(session, parent, sub_code_width(session, parent, width))
    account = Account(code=code, name=name[:120], kind=parent.kind, parent_id=parent.id, key=key)
    session.add(account)
    session.flush()
    audit.record(session, "account.create", account, details={"code": code, "name": account.name, "key": key})
    return account


def descendant_ids(session: Session, account_id: int) -> list[int]:
    """The account and all accounts below it, by the parent tree (never by code prefix)."""
    children: dict[int | None, list[int]] = {}
    for aid, parent_id in session.execute(
        select(Account.id, Account.parent_id).where(Account.parent_id.is_not(None))
    ):
        children.setdefault(parent_id, []).append(aid)
    out, todo = [], [account_id]
    while todo:
        aid = todo.pop()
        out.append(aid)
        todo.extend(children.get(aid, ()))
    return out


def household_account(session: Session, household_id: int, parent_code: str = "113") -> Account:
    """The household's sub-account under ``parent_code`` (113 内部往来 by default)."""
    household = session.get(Household, household_id)
    if household is None:
        raise LedgerError(N_("no household %(household_id)s"), household_id=household_id)
    key = f"household:{household_id}" if parent_code == "113" else f"household:{household_id}:{parent_code}"
    return ensure_account(
        session, parent_code, f"{household.code} {household.head_name}", key=key, width=HOUSEHOLD_CODE_WIDTH
    )


def postable(session: Session, account: Account) -> bool:
    """Only leaves take postings: an account with sub-accounts is posted through them."""
    return session.scalar(select(Account.id).where(Account.parent_id == account.id).limit(1)) is None


# ---------------------------------------------------------------- periods


def period_of(day: dt.date) -> int:
    return day.year * 100 + day.month


def is_closed(session: Session, year: int, month: int) -> bool:
    return bool(session.scalar(select(Period.closed).where(Period.year == year, Period.month == month)))


def month_end(year: int, month: int) -> dt.date:
    return dt.date(year + (month == 12), month % 12 + 1, 1) - dt.timedelta(days=1)


def latest_closed(session: Session) -> tuple[int, int] | None:
    """(year, month) of the latest closed month, or None while no month is closed."""
    row = session.execute(
        select(Period.year, Period.month)
        .where(Period.closed.is_(True))
        .order_by(Period.year.desc(), Period.month.desc())
        .limit(1)
    ).first()
    return (row[0], row[1]) if row is not None else None


def first_open_day(session: Session) -> dt.date:
    """The first day a voucher may be dated: the day after the latest closed month, and not before
    the books' opening date."""
    from coop import settings

    opening = settings.get(session).opening_date
    last = latest_closed(session)
    if last is None:
        return opening
    return max(opening, month_end(*last) + dt.timedelta(days=1))


def last_allowed_day(session: Session) -> dt.date:
    """The latest day a voucher may be dated: today (in the configured zone) plus the grace days."""
    from coop import settings

    return clock.today() + dt.timedelta(days=settings.get(session).future_grace_days or 0)


def check_date(session: Session, day: dt.date) -> None:
    """Refuse a voucher date outside [first open day, today + grace], naming the rule and the range."""
    from coop import settings

    first, last = first_open_day(session), last_allowed_day(session)
    span = {"date": day.isoformat(), "first": first.isoformat(), "last": last.isoformat()}
    opening = settings.get(session).opening_date
    if day < opening:
        raise LedgerError(
            N_(
                "%(date)s is before the books' opening date %(opening)s: vouchers may be dated from "
                "%(first)s to %(last)s"
            ),
            opening=opening.isoformat(),
            **span,
        )
    closed = latest_closed(session)
    if closed is not None and day < first:
        if is_closed(session, day.year, 12):
            raise LedgerError(
                N_(
                    "%(year)s is a closed year: a correction to it is posted as a prior-year adjustment "
                    "(以前年度损益调整) in an open period (Books → Corrections, or flask coop correct); "
                    "vouchers may be dated from %(first)s to %(last)s"
                ),
                year=day.year,
                **span,
            )
        raise LedgerError(
            N_(
                "%(date)s is in a closed period (closed up to %(closed)s): vouchers may be dated from "
                "%(first)s to %(last)s"
            ),
            closed=f"{closed[0]}-{closed[1]:02d}",
            **span,
        )
    if day > last:
        raise LedgerError(
            N_("%(date)s is too far in the future: vouchers may be dated from %(first)s to %(last)s"), **span
        )


# ---------------------------------------------------------------- the hash chain


# ---------------------------------------------------------------- posting


def _check_red_ink(session: Session, lines: list[Line], original_id: int | None) -> None:
    """Negative amounts only as the exact red-ink image of the voucher being reversed."""
    original = session.get(Voucher, original_id) if original_id is not None else None
    expected = (
        [(ln.account.code, -ln.debit, -ln.credit) for ln in original.lines] if original is not None else None
    )
    got = [(str(ln.account).strip(), ln.debit, ln.credit) for ln in lines]
    if expected is None or got != expected or any(d > 0 or c > 0 for _a, d, c in got):
        raise LedgerError(
            N_(
                "negative amounts are only allowed in a red-ink reversal, which repeats the original "
                "voucher's lines with the amounts negated"
            )
        )


def validate_voucher(
    session: Session, day: dt.date, summary: str, lines: list[Line], *, red_ink_of: int | None = None
) -> dict[str, Account]:
    """Every rule a voucher must satisfy to be posted; raises ``LedgerError`` and writes nothing.

    Returns the accounts by code. Drafts are checked with it too, so a draft that saves will post.
    Amounts are positive, except in a red-ink reversal (红字冲销, ``red_ink_of`` = the reversed
    voucher's id, as ``reverse_voucher`` posts it): its lines must be exactly the original's lines,
    same accounts and sides, with the amounts negated.
    """
    if not isinstance(day, dt.date) or isinstance(day, dt.datetime):
        raise LedgerError(N_("voucher date must be a date"))
    if not (summary or "").strip():
        raise LedgerError(N_("a voucher needs a summary (摘要)"))
    if len(lines) < 2:
        raise LedgerError(N_("a voucher needs at least two lines"))
    total_debit = total_credit = 0
    red_ink = False
    for i, line in enumerate(lines, 1):
        for amount in (line.debit, line.credit):
            if not isinstance(amount, int) or isinstance(amount, bool):
                raise LedgerError(
                    N_("line %(i)s: amounts must be whole fen (integers), got %(amount)r"), i=i, amount=amount
                )
        if line.debit < 0 or line.credit < 0:
            if red_ink_of is None:
                raise LedgerError(N_("line %(i)s: amounts must not be negative"), i=i)
            red_ink = True
        if (line.debit != 0) == (line.credit != 0):
            raise LedgerError(
                N_("line %(i)s: give either a debit or a credit greater than zero, not both or neither"), i=i
            )
        if max(abs(line.debit), abs(line.credit)) > MAX_LINE_FEN:
            raise LedgerError(N_("line %(i)s: amount is implausibly large"), i=i)
        total_debit += line.debit
        total_credit += line.credit
    if red_ink:
        _check_red_ink(session, lines, red_ink_of)
    if total_debit != total_credit:
        raise LedgerError(
            N_(
                "voucher does not balance: debits %(debits)s ≠ credits %(credits)s (difference "
                "%(difference)s)"
            ),
            debits=format_yuan(total_debit),
            credits=format_yuan(total_credit),
            difference=format_yuan(total_debit - total_credit),
        )
    both = sorted(
        {str(ln.account).strip() for ln in lines if ln.debit}
        & {str(ln.account).strip() for ln in lines if ln.credit}
    )
    if both and not red_ink:
        named = session.scalar(select(Account).where(Account.code == both[0]))
        raise LedgerError(
            N_(
                "account %(code)s %(name)s is both debited and credited in this voucher: enter the net "
                "amount on one side"
            ),
            code=both[0],
            name=named.name if named is not None else "",
        )
    ensure_chart(session)
    codes = {str(line.account).strip() for line in lines}
    accounts = {a.code: a for a in session.scalars(select(Account).where(Account.code.in_(codes)))}
    missing = sorted(codes - accounts.keys())
    if missing:
        raise LedgerError(N_("no such account: %(codes)s"), codes=", ".join(missing))
    ids = [a.id for a in accounts.values()]
    parents = set(session.scalars(select(Account.parent_id).where(Account.parent_id.in_(ids))))
    not_leaf = sorted(a.code for a in accounts.values() if a.id in parents)
    if not_leaf:
        raise LedgerError(
            N_("account %(codes)s has sub-accounts: post to a sub-account"), codes=", ".join(not_leaf)
        )
    inactive = sorted(a.code for a in accounts.values() if not a.active)
    if inactive:
        raise LedgerError(N_("account %(codes)s is inactive"), codes=", ".join(inactive))
    check_date(session, day)
    return accounts


def post_voucher(
    session: Session,
    *,
    date: dt.date,
    summary: str,
    lines: list[Line],
    preparer_id: int | None = None,
    approver_id: int | None = None,
    attachments: int = 0,
    source: str | None = None,
    source_ref: str | None = None,
    kind: str = "normal",
    reverses_id: int | None = None,
) -> Voucher:
    """Validate and post a voucher; see the module docstring. Returns the posted voucher.

    With ``source`` and ``source_ref`` the posting is idempotent: if a voucher with the same
    pair exists it is returned unchanged.
    """
    if (source is None) != (source_ref is None):
        raise LedgerError(N_("give both source and source_ref, or neither"))
    if source is not None:
        existing = session.scalar(
            select(Voucher).where(Voucher.source == source, Voucher.source_ref == source_ref)
        )
        if existing is not None:
            return existing
    if not isinstance(attachments, int) or attachments < 0:
        raise LedgerError(N_("attachments must be a whole number, zero or more"))
    lines = [  # 101 typed on a Chinese keyboard (１０１) is 101
        Line(fold_width(str(ln.account)).strip(), ln.debit, ln.credit, (ln.memo or "")[:200]) for ln in lines
    ]
    accounts = validate_voucher(
        session, date, summary, lines, red_ink_of=reverses_id if kind == "reversal" else None
    )

    head = lock_head(session)
    if source is not None:  # a concurrent poster may have won the race while we waited for the lock
        existing = session.scalar(
            select(Voucher).where(Voucher.source == source, Voucher.source_ref == source_ref)
        )
        if existing is not None:
            return existing
    # a month may have been closed while we waited for the lock: closing takes the same lock (its
    # chain record), so checking again now, holding it, is final
    check_date(session, date)
    number = (session.scalar(select(func.max(Voucher.number)).where(Voucher.year == date.year)) or 0) + 1
    voucher = Voucher(
        seq=head.seq + 1,
        year=date.year,
        number=number,
        date=date,
        summary=summary.strip()[:200],
        attachments=attachments,
        kind=kind,
        preparer_id=preparer_id,
        approver_id=approver_id,
        source=source,
        source_ref=source_ref,
        reverses_id=reverses_id,
        total=sum(ln.debit for ln in lines),
        prev_hash=head.hash,
        hash="",
    )
    voucher.hash = chain_hash(
        head.hash, canonical(voucher, [(ln.account, ln.debit, ln.credit, ln.memo) for ln in lines])
    )
    session.add(voucher)
    for i, ln in enumerate(lines, 1):
        voucher.lines.append(
            VoucherLine(
                line_no=i, account_id=accounts[ln.account].id, debit=ln.debit, credit=ln.credit, memo=ln.memo
            )
        )
    head.seq, head.hash = voucher.seq, voucher.hash
    _add_balances(
        session, date, kind == "closing", [(accounts[ln.account].id, ln.debit, ln.credit) for ln in lines]
    )
    session.flush()
    audit.record(
        session,
        "voucher.post",
        voucher,
        user_id=preparer_id,
        details={"label": voucher.label, "total": voucher.total, "hash": voucher.hash, "source": source},
    )
    return voucher


def _add_balances(session: Session, day: dt.date, closing: bool, moves: list[tuple[int, int, int]]) -> None:
    period = period_of(day)
    sums: dict[int, list[int]] = {}
    for account_id, debit, credit in moves:
        acc = sums.setdefault(account_id, [0, 0])
        acc[0] += debit
        acc[1] += credit
    rows = {
        b.account_id: b
        for b in session.scalars(
            select(Balance).where(
                Balance.account_id.in_(list(sums)), Balance.period == period, Balance.closing == closing
            )
        )
    }
    for account_id, (debit, credit) in sums.items():
        row = rows.get(account_id)
        if row is None:
            session.add(
                Balance(account_id=account_id, period=period, closing=closing, debit=debit, credit=credit)
            )
        else:
            row.debit += debit
            row.credit += credit


def plan_reversal(
    session: Session, voucher_id: int, *, date: dt.date, summary: str | None = None
) -> tuple[Voucher, str, list[Line]]:
    """Check a red-ink reversal (红字冲销) of ``voucher_id`` without writing: (the original, the
    reversal's summary, its lines: the original's lines on the same accounts and sides with the
    amounts negated). Raises ``LedgerError``."""
    original = session.get(Voucher, voucher_id)
    if original is None:
        raise LedgerError(N_("no voucher %(voucher_id)s"), voucher_id=voucher_id)
    if session.scalar(select(Voucher.id).where(Voucher.reverses_id == voucher_id)) is not None:
        raise LedgerError(N_("voucher %(label)s has already been reversed"), label=original.label)
    if original.kind in ("closing", "distribution", "reversal"):
        raise LedgerError(
            N_("voucher %(label)s is a year-end entry or a reversal and cannot be reversed"),
            label=original.label,
        )
    if original.source == "shop":
        raise LedgerError(
            N_(
                "voucher %(label)s was posted by the shop and cannot be reversed in the books: correct it "
                "through the shop's refund or cancel, which post their own vouchers"
            ),
            label=original.label,
        )
    if original.source == "correction":
        raise LedgerError(
            N_(
                "voucher %(label)s is half of a prior-year correction and cannot be reversed alone: "
                "prepare another correction instead"
            ),
            label=original.label,
        )
    if not isinstance(date, dt.date) or isinstance(date, dt.datetime):
        raise LedgerError(N_("voucher date must be a date"))
    if date < original.date:
        raise LedgerError(
            N_("a reversal is dated on or after the voucher it reverses (%(label)s is dated %(date)s)"),
            label=original.label,
            date=original.date.isoformat(),
        )
    lines = [Line(ln.account.code, debit=-ln.debit, credit=-ln.credit, memo=ln.memo) for ln in original.lines]
    title = (summary or f"冲销 {original.label} {original.summary}")[:200]
    validate_voucher(session, date, title, lines, red_ink_of=original.id)
    return original, title, lines


def reverse_voucher(
    session: Session,
    voucher_id: int,
    *,
    date: dt.date,
    preparer_id: int | None,
    approver_id: int | None = None,
    summary: str | None = None,
) -> Voucher:
    """Post a red-ink voucher (红字冲销) that undoes ``voucher_id``: the original's lines on the same
    accounts and sides with the amounts negated, so each account's debit and credit turnover nets
    back to what it was, as if neither had been posted. Officials do not call this directly: a
    reversal is prepared as a draft and posted when another official reviews it (``coop.review``)."""
    original, title, lines = plan_reversal(session, voucher_id, date=date, summary=summary)
    return post_voucher(
        session,
        date=date,
        summary=title,
        lines=lines,
        preparer_id=preparer_id,
        approver_id=approver_id,
        kind="reversal",
        reverses_id=original.id,
    )


def reversed_ids(session: Session, voucher_ids: list[int]) -> dict[int, Voucher]:
    """For the given vouchers, the reversal voucher of each that has one."""
    if not voucher_ids:
        return {}
    rows = session.scalars(select(Voucher).where(Voucher.reverses_id.in_(voucher_ids)))
    return {v.reverses_id: v for v in rows if v.reverses_id is not None}


# ---------------------------------------------------------------- immutability


def _refuse_change(_mapper: Any, _connection: Any, target: Any) -> None:
    raise LedgerError(N_("posted vouchers are immutable: post a reversing voucher instead"))


for _cls in (Voucher, VoucherLine):
    event.listen(_cls, "before_update", _refuse_change)
    event.listen(_cls, "before_delete", _refuse_change)
