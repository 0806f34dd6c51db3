"""Preparing and reviewing (制单 / 审核): the person who prepares a voucher is not the one who reviews it.

Two kinds of voucher reach the ledger:

* **drafts** an official types (``prepare``, ``update``, ``discard``): they are checked with
  ``ledger.validate_voucher`` when saved, so a draft that saves will post unless the books
  moved (a month closed, an account got sub-accounts), but they are not in the ledger, the
  chain or any report until another official calls ``review_and_post``, which checks them
  again and posts them with ``preparer_id`` = the drafter and ``approver_id`` = the reviewer;
* **vouchers posted at once** (the shop's sales, refunds and payouts, recurring entries, the
  year end, reversals): the money has moved, so they count immediately, and wait in the same
  review queue until an official other than their preparer calls ``mark_reviewed`` (a
  ``VoucherReview`` row: posted vouchers are immutable). A voucher posted with ``approver_id``
  set counts as reviewed.

Saving a draft that would take 101 库存现金 or 102 银行存款 (or a sub-account of either) below
zero still saves; the draft carries the warning (``cash_warning``) for the reviewer.

Services take a session and never commit; refusals are ``ReviewError`` (a ``LedgerError``).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, exists, func, select
from sqlalchemy import update as sql_update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from coop.ledger import (
    LedgerError,
    Line,
    period_of,
    plan_reversal,
    post_voucher,
    reverse_voucher,
    validate_voucher,
)
from coop.models import Account, Balance, Voucher, VoucherDraft, VoucherLine, VoucherReview
from core import audit
from core.db import utcnow
from core.errors import N_
from core.models import User

REVIEWERS = ("admin", "official")  # who may prepare, review and post; "oversight" only reads
CASH_ROOTS = ("101", "102")  # 库存现金, 银行存款: never below zero
DRAFT_SOURCE = "draft"  # vouchers posted from a draft carry source="draft", source_ref=<draft id>


class ReviewError(LedgerError):
    """Preparing or reviewing was refused; the message says why. Nothing was written."""


# ---------------------------------------------------------------- who


def _official(session: Session, user_id: int | None, what: str) -> User:
    user = session.get(User, user_id) if user_id is not None else None
    if user is None or not user.active:
        raise ReviewError(N_("%(what)s needs a signed-in official"), what=what)
    if user.role not in REVIEWERS:
        raise ReviewError(
            N_("only officials can %(what)s; the oversight group (民主理财小组) reads the books"), what=what
        )
    return user


# ---------------------------------------------------------------- cash below zero


@dataclass
class CashWarning:
    code: str
    name: str
    after: int  # balance in fen after the voucher (negative)

    def as_dict(self) -> dict[str, Any]:
        return {"code": self.code, "name": self.name, "after": self.after}


def _cash_root(account: Account, by_id: dict[int, Account]) -> Account | None:
    root = account
    while root.parent_id is not None and root.parent_id in by_id:
        root = by_id[root.parent_id]
    return root if root.parent_id is None and root.code in CASH_ROOTS else None


def cash_warnings(session: Session, day: dt.date, lines: list[Line]) -> list[CashWarning]:
    """The cash and bank accounts (101, 102 and their sub-accounts) this voucher would take below zero.

    An account is below zero if its balance at the end of the voucher's month, or its balance
    now (later postings included), plus the voucher's movement is negative.
    """
    codes = {ln.account for ln in lines}
    if not codes:
        return []
    accounts = list(session.scalars(select(Account)))
    by_id = {a.id: a for a in accounts}
    by_code = {a.code: a for a in accounts}
    move: dict[int, int] = {}
    for ln in lines:
        account = by_code.get(ln.account)
        if account is None:
            continue
        root = _cash_root(account, by_id)
        if root is None:
            continue
        for target in {account.id, root.id}:
            move[target] = move.get(target, 0) + ln.debit - ln.credit
    if not move:
        return []

    def descendants(account_id: int) -> list[int]:
        out, todo = [], [account_id]
        while todo:
            current = todo.pop()
            out.append(current)
            todo.extend(a.id for a in accounts if a.parent_id == current)
        return out

    warnings = []
    for account_id, delta in sorted(move.items(), key=lambda kv: by_id[kv[0]].code):
        if delta >= 0:
            continue
        ids = descendants(account_id)
        net = func.coalesce(func.sum(Balance.debit - Balance.credit), 0)
        until = session.scalar(
            select(net).where(Balance.account_id.in_(ids), Balance.period <= period_of(day))
        )
        now = session.scalar(select(net).where(Balance.account_id.in_(ids)))
        after = min(int(until or 0), int(now or 0)) + delta
        if after < 0:
            account = by_id[account_id]
            warnings.append(CashWarning(account.code, account.name, after))
    return warnings


# ---------------------------------------------------------------- drafts


def _clean(lines: list[Line] | list[dict[str, Any]]) -> list[Line]:
    out = []
    for ln in lines:
        if isinstance(ln, dict):
            ln = Line(str(ln.get("account", "")), ln.get("debit", 0), ln.get("credit", 0), ln.get("memo", ""))
        out.append(Line(str(ln.account).strip(), ln.debit, ln.credit, (ln.memo or "")[:200]))
    return out


def draft_lines(draft: VoucherDraft) -> list[Line]:
    return _clean(list(draft.lines or []))


def posting_lines(session: Session, draft: VoucherDraft) -> list[Line]:
    """The lines the draft will post: a correction's with its adjustment line added (as far as the
    books allow it now; otherwise just the draft's own lines)."""
    lines = draft_lines(draft)
    if draft.correction_year is None:
        return lines
    from coop.corrections import plan_correction

    try:
        return plan_correction(
            session, year=draft.correction_year, summary=draft.summary, lines=lines, date=draft.date
        )[2]
    except LedgerError:
        return lines


def _check(
    session: Session,
    day: dt.date,
    summary: str,
    lines: list[Line],
    attachments: int,
    correction_year: int | None = None,
    reverses_id: int | None = None,
) -> list[Line]:
    """Every rule the posting will apply; returns the lines as they will be posted (a correction
    gets its adjustment line)."""
    if not isinstance(attachments, int) or isinstance(attachments, bool) or attachments < 0:
        raise ReviewError(N_("attachments must be a whole number, zero or more"))
    if reverses_id is not None:
        return plan_reversal(session, reverses_id, date=day, summary=summary)[2]
    if correction_year is not None:
        from coop.corrections import plan_correction

        _day, _title, full, _transfer = plan_correction(
            session, year=correction_year, summary=summary, lines=lines, date=day
        )
        return full
    validate_voucher(session, day, summary, lines)
    return lines


def _fill(
    session: Session,
    draft: VoucherDraft,
    day: dt.date,
    summary: str,
    lines: list[Line],
    attachments: int,
    posted_lines: list[Line] | None = None,
) -> None:
    draft.date = day
    draft.summary = summary.strip()[:200]
    draft.attachments = attachments
    draft.lines = [
        {"account": ln.account, "debit": ln.debit, "credit": ln.credit, "memo": ln.memo} for ln in lines
    ]
    draft.warnings = [w.as_dict() for w in cash_warnings(session, day, posted_lines or lines)]
    draft.cash_warning = bool(draft.warnings)
    draft.updated_at = utcnow()


def prepare(
    session: Session,
    *,
    date: dt.date,
    summary: str,
    lines: list[Line],
    preparer_id: int | None,
    attachments: int = 0,
    correction_year: int | None = None,
) -> VoucherDraft:
    """Save a voucher draft (制单). It is checked like a posting but posts nothing.

    With ``correction_year`` it is a correction to that closed year (``coop.corrections``):
    ``lines`` are the accounts it affects; posting adds 以前年度损益调整 and its transfer.
    """
    _official(session, preparer_id, N_("prepare a voucher"))
    lines = _clean(lines)
    posted = _check(session, date, summary, lines, attachments, correction_year)
    draft = VoucherDraft(
        preparer_id=preparer_id, status="draft", created_at=utcnow(), correction_year=correction_year
    )
    _fill(session, draft, date, summary, lines, attachments, posted)
    session.add(draft)
    session.flush()
    audit.record(
        session,
        "voucher_draft.prepare",
        draft,
        user_id=preparer_id,
        details={"total": draft.total, "cash_warning": draft.cash_warning},
    )
    return draft


def prepare_reversal(
    session: Session, voucher_id: int, *, date: dt.date, preparer_id: int | None
) -> VoucherDraft:
    """Prepare the red-ink reversal (红字冲销) of a posted voucher as a draft: like any manual voucher
    it is posted only when another official reviews it. One open reversal draft per voucher."""
    _official(session, preparer_id, N_("prepare a voucher"))
    pending = session.scalar(
        select(VoucherDraft.id).where(VoucherDraft.reverses_id == voucher_id, VoucherDraft.status == "draft")
    )
    if pending is not None:
        raise ReviewError(
            N_("a reversal of this voucher is already waiting for review (draft %(draft_id)s)"),
            draft_id=pending,
        )
    original, title, lines = plan_reversal(session, voucher_id, date=date)
    draft = VoucherDraft(
        preparer_id=preparer_id, status="draft", created_at=utcnow(), reverses_id=original.id
    )
    _fill(session, draft, date, title, lines, 0, lines)
    session.add(draft)
    session.flush()
    audit.record(
        session,
        "voucher_draft.prepare_reversal",
        draft,
        user_id=preparer_id,
        details={"reverses": original.label, "cash_warning": draft.cash_warning},
    )
    return draft


def _get(session: Session, draft_id: int) -> VoucherDraft:
    draft = session.get(VoucherDraft, draft_id)
    if draft is None:
        raise ReviewError(N_("no voucher draft %(draft_id)s"), draft_id=draft_id)
    return draft


def _still_draft(draft: VoucherDraft) -> None:
    if draft.status == "posted":
        raise ReviewError(N_("draft %(draft_id)s has already been posted"), draft_id=draft.id)
    if draft.status == "discarded":
        raise ReviewError(N_("draft %(draft_id)s was discarded"), draft_id=draft.id)


def update(
    session: Session,
    draft_id: int,
    *,
    user_id: int | None,
    date: dt.date,
    summary: str,
    lines: list[Line],
    attachments: int = 0,
) -> VoucherDraft:
    """Change a draft: only its preparer, only while it is a draft."""
    draft = _get(session, draft_id)
    _official(session, user_id, N_("edit a voucher draft"))
    _still_draft(draft)
    if draft.preparer_id != user_id:
        raise ReviewError(N_("only the preparer of a draft can change it"))
    if draft.reverses_id is not None:
        raise ReviewError(N_("a reversal draft is not edited: discard it and prepare the reversal again"))
    lines = _clean(lines)
    posted = _check(session, date, summary, lines, attachments, draft.correction_year)
    _fill(session, draft, date, summary, lines, attachments, posted)
    draft.version = (draft.version or 1) + 1
    session.flush()
    audit.record(session, "voucher_draft.update", draft, user_id=user_id, details={"total": draft.total})
    return draft


def discard(session: Session, draft_id: int, *, user_id: int | None) -> VoucherDraft:
    """Throw a draft away (its preparer, or a reviewer who rejects it); it can never be posted."""
    draft = _get(session, draft_id)
    _official(session, user_id, N_("discard a voucher draft"))
    _still_draft(draft)
    done = session.execute(
        sql_update(VoucherDraft)
        .where(VoucherDraft.id == draft_id, VoucherDraft.status == "draft")
        .values(status="discarded", discarded_by=user_id, updated_at=utcnow())
        .execution_options(synchronize_session="fetch")
    )
    if done.rowcount != 1:  # type: ignore[attr-defined]
        raise ReviewError(N_("draft %(draft_id)s is no longer a draft"), draft_id=draft_id)
    audit.record(session, "voucher_draft.discard", draft, user_id=user_id)
    return draft


def review_and_post(
    session: Session, draft_id: int, *, reviewer_id: int | None, expected_version: int | None = None
) -> Voucher:
    """Review (审核) a draft and post it: the reviewer must be an official other than the preparer.

    The draft is checked again (the books may have moved since it was saved). A draft is posted
    at most once: its status changes with a conditional UPDATE (a second, concurrent review
    finds it no longer a draft), and the voucher carries ``source="draft"`` with the draft's id,
    which is unique in the ledger.
    """
    draft = _get(session, draft_id)
    _official(session, reviewer_id, N_("review a voucher"))
    _still_draft(draft)
    if draft.preparer_id == reviewer_id:
        raise ReviewError(N_("you prepared this voucher: another official must review it"))
    version = draft.version
    if expected_version is not None and expected_version != version:
        raise ReviewError(
            N_("draft %(draft_id)s was changed after you opened it: check it again before posting it"),
            draft_id=draft_id,
        )
    lines = draft_lines(draft)
    _check(
        session, draft.date, draft.summary, lines, draft.attachments, draft.correction_year, draft.reverses_id
    )
    now = utcnow()
    done = session.execute(
        sql_update(VoucherDraft)
        .where(VoucherDraft.id == draft_id, VoucherDraft.status == "draft", VoucherDraft.version == version)
        .values(status="posted", reviewer_id=reviewer_id, reviewed_at=now, updated_at=now)
        .execution_options(synchronize_session="fetch")
    )
    if done.rowcount != 1:  # type: ignore[attr-defined]  # posted, discarded or edited meanwhile
        raise ReviewError(
            N_("draft %(draft_id)s has already been posted or was changed meanwhile: open it again"),
            draft_id=draft_id,
        )
    if session.scalar(
        select(Voucher.id).where(Voucher.source == DRAFT_SOURCE, Voucher.source_ref == str(draft_id))
    ):
        raise ReviewError(N_("draft %(draft_id)s has already been posted"), draft_id=draft_id)
    if draft.reverses_id is not None:
        voucher = reverse_voucher(
            session,
            draft.reverses_id,
            date=draft.date,
            preparer_id=draft.preparer_id,
            approver_id=reviewer_id,
            summary=draft.summary,
        )
    elif draft.correction_year is not None:
        from coop.corrections import post_correction

        voucher, _transfer = post_correction(  # the source_ref pair is unique: posted at most once
            session,
            year=draft.correction_year,
            summary=draft.summary,
            lines=lines,
            date=draft.date,
            preparer_id=draft.preparer_id,
            approver_id=reviewer_id,
            attachments=draft.attachments,
            ref=f"draft-{draft_id}",
        )
    else:
        voucher = post_voucher(
            session,
            date=draft.date,
            summary=draft.summary,
            lines=lines,
            preparer_id=draft.preparer_id,
            approver_id=reviewer_id,
            attachments=draft.attachments,
            source=DRAFT_SOURCE,
            source_ref=str(draft_id),
        )
    draft.voucher_id = voucher.id
    session.flush()
    audit.record(
        session,
        "voucher_draft.post",
        draft,
        user_id=reviewer_id,
        details={"voucher": voucher.label, "preparer": draft.preparer_id, "cash_warning": draft.cash_warning},
    )
    return voucher


# ---------------------------------------------------------------- vouchers posted at once


def _unreviewed_clause() -> Any:
    return and_(
        Voucher.approver_id.is_(None),
        ~exists().where(VoucherReview.voucher_id == Voucher.id),
    )


def is_reviewed(session: Session, voucher: Voucher) -> bool:
    if voucher.approver_id is not None:
        return True
    return session.scalar(select(VoucherReview.id).where(VoucherReview.voucher_id == voucher.id)) is not None


def review_of(session: Session, voucher: Voucher) -> tuple[int | None, dt.datetime | None]:
    """(reviewer id, when) of a posted voucher; (None, None) while it awaits review."""
    if voucher.approver_id is not None:
        return voucher.approver_id, voucher.posted_at
    row = session.scalar(select(VoucherReview).where(VoucherReview.voucher_id == voucher.id))
    return (row.reviewer_id, row.reviewed_at) if row is not None else (None, None)


def mark_reviewed(session: Session, voucher_id: int, *, reviewer_id: int | None) -> VoucherReview:
    """Mark a voucher that was posted at once as reviewed, by an official other than its preparer."""
    voucher = session.get(Voucher, voucher_id)
    if voucher is None:
        raise ReviewError(N_("no voucher %(voucher_id)s"), voucher_id=voucher_id)
    _official(session, reviewer_id, N_("review a voucher"))
    if is_reviewed(session, voucher):
        raise ReviewError(N_("voucher %(label)s has already been reviewed"), label=voucher.label)
    if voucher.preparer_id is not None and voucher.preparer_id == reviewer_id:
        raise ReviewError(N_("you prepared this voucher: another official must review it"))
    row = VoucherReview(voucher_id=voucher.id, reviewer_id=reviewer_id, reviewed_at=utcnow())
    try:
        with session.begin_nested():  # a concurrent review of the same voucher loses on the unique key
            session.add(row)
    except IntegrityError:
        raise ReviewError(N_("voucher %(label)s has already been reviewed"), label=voucher.label) from None
    audit.record(session, "voucher.review", voucher, user_id=reviewer_id, details={"label": voucher.label})
    return row


# ---------------------------------------------------------------- the queue and the counts


def pending_drafts(session: Session) -> list[VoucherDraft]:
    return list(
        session.scalars(
            select(VoucherDraft)
            .where(VoucherDraft.status == "draft")
            .order_by(VoucherDraft.date, VoucherDraft.id)
        )
    )


def unreviewed_vouchers(session: Session, *, limit: int = 200) -> list[Voucher]:
    return list(
        session.scalars(select(Voucher).where(_unreviewed_clause()).order_by(Voucher.seq).limit(limit))
    )


def posted_cash_flags(session: Session, vouchers: list[Voucher]) -> set[int]:
    """Which of these posted vouchers took cash or bank (101, 102 and their sub-accounts) below zero:
    the balance of an account they credit, at the end of their month or now, is negative. The
    reviewer sees them flagged in the queue (money the system posted has already moved, so only
    drafts warn before posting). Three queries, whatever the number of vouchers."""
    if not vouchers:
        return set()
    accounts = list(session.scalars(select(Account)))
    by_id = {a.id: a for a in accounts}
    cash = {a.id for a in accounts if _cash_root(a, by_id) is not None}
    if not cash:
        return set()
    children: dict[int, list[int]] = {}
    for a in accounts:
        if a.parent_id is not None:
            children.setdefault(a.parent_id, []).append(a.id)

    def subtree(account_id: int) -> list[int]:
        out, todo = [], [account_id]
        while todo:
            current = todo.pop()
            out.append(current)
            todo.extend(children.get(current, []))
        return out

    nets: dict[int, list[tuple[int, int]]] = {}  # cash account -> [(period, debit - credit)]
    for account_id, period, amount in session.execute(
        select(Balance.account_id, Balance.period, func.sum(Balance.debit - Balance.credit))
        .where(Balance.account_id.in_(cash))
        .group_by(Balance.account_id, Balance.period)
    ):
        nets.setdefault(account_id, []).append((int(period), int(amount or 0)))
    credited: dict[int, set[int]] = {}  # voucher -> cash accounts it takes money out of
    for voucher_id, account_id, debit, credit in session.execute(
        select(VoucherLine.voucher_id, VoucherLine.account_id, VoucherLine.debit, VoucherLine.credit).where(
            VoucherLine.voucher_id.in_([v.id for v in vouchers]), VoucherLine.account_id.in_(cash)
        )
    ):
        if debit - credit < 0:
            credited.setdefault(voucher_id, set()).add(account_id)
    flagged: set[int] = set()
    for v in vouchers:
        for account_id in credited.get(v.id, ()):
            moves = [m for a in subtree(account_id) for m in nets.get(a, [])]
            until = sum(amount for period, amount in moves if period <= period_of(v.date))
            now = sum(amount for _period, amount in moves)
            if min(until, now) < 0:
                flagged.add(v.id)
                break
    return flagged


def unreviewed_among(session: Session, voucher_ids: list[int]) -> set[int]:
    """Which of these posted vouchers still await review."""
    if not voucher_ids:
        return set()
    return set(session.scalars(select(Voucher.id).where(Voucher.id.in_(voucher_ids), _unreviewed_clause())))


def unreviewed_count(session: Session, start: dt.date | None = None, end: dt.date | None = None) -> int:
    """How many posted vouchers dated in [start, end] still await review."""
    stmt = select(func.count(Voucher.id)).where(_unreviewed_clause())
    if start is not None:
        stmt = stmt.where(Voucher.date >= start)
    if end is not None:
        stmt = stmt.where(Voucher.date <= end)
    return int(session.scalar(stmt) or 0)


def draft_count(session: Session) -> int:
    return int(session.scalar(select(func.count(VoucherDraft.id)).where(VoucherDraft.status == "draft")) or 0)
