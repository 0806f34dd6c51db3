"""Public disclosure (财务公开): frozen snapshots of the accounts for a month, quarter or year.

A disclosure is drafted from the books (income and expense summary, balance sheet, the year's
distribution, major items and the chain head) by an official, signed off by a member of the
民主理财小组 (democratic financial oversight group, role ``oversight``), then approved by an
official who is not the drafter; each step records who and when. From then on it is public
and read-only: its content is stored, so later postings do not change it. Refreshing a draft
after it was signed off clears the sign-off (the content changed).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json

from sqlalchemy import event, func, inspect, select
from sqlalchemy.orm import Session

from coop.chain import anchor_for
from coop.ledger import LedgerError, chain_head, is_closed
from coop.models import Disclosure, Distribution, Voucher
from coop.reports import income_expense, month_end
from coop.statements import MAJOR_ITEM_FEN, balance_sheet, income_statement
from core import audit
from core.db import utcnow
from core.errors import N_
from core.models import User

OFFICIALS = ("admin", "official")  # draft and approve
OVERSIGHT = ("oversight",)  # sign off

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
            **bs.as_dict(),
            "total_assets": bs.value("total_assets"),
            "total_liabilities": bs.value("total_liabilities"),
            "total_equity": bs.value("total_equity"),
        },
        "income_statement": income_statement(session, year, m2).as_dict(),
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
            Disclosure.year == year,
            Disclosure.period_kind == kind,
            Disclosure.period_no == number,
            Disclosure.status != "withdrawn",
        )
    )
    if (
        user_id is not None
    ):  # None: drafted by the system (a command), still signed off and approved by people
        _user(session, user_id, OFFICIALS, N_("only an official can draft a disclosure"))
    if existing is not None and existing.status not in ("draft", "signed_off"):
        raise LedgerError(N_("this period's disclosure has been approved and published; it cannot change"))
    if not is_closed(session, year, m2):
        # an open month's figures can still move: only closed months are published, and reopening
        # one withdraws what covered it
        raise LedgerError(
            N_(
                "%(period)s is not closed yet: close it (Periods) before drafting its disclosure, so the "
                "published figures cannot change afterwards"
            ),
            period=f"{year}-{m2:02d}",
        )
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
    d.status, d.signed_off_by, d.signed_off_at = "draft", None, None  # new content needs a new sign-off
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


def _user(session: Session, user_id: int | None, roles: tuple[str, ...], refusal: str) -> User:
    user = session.get(User, user_id) if user_id is not None else None
    if user is None or not user.active or user.role not in roles:
        raise LedgerError(refusal)
    return user


def _get(session: Session, disclosure_id: int) -> Disclosure:
    d = session.get(Disclosure, disclosure_id)
    if d is None:
        raise LedgerError(N_("no disclosure %(disclosure_id)s"), disclosure_id=disclosure_id)
    return d


def digest(d: Disclosure) -> str:
    """A short fingerprint of what a draft says (title, period, content): the sign-off and the
    approval carry the one their signer saw, and are refused if the draft was refreshed since."""
    payload = json.dumps(
        {"title": d.title, "start": str(d.start), "end": str(d.end), "content": d.content},
        ensure_ascii=False,
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def _check_seen(d: Disclosure, expected: str | None) -> None:
    if expected is not None and expected != digest(d):
        raise LedgerError(N_("this draft was refreshed after you opened it: read it again before signing"))


def sign_off(
    session: Session, disclosure_id: int, *, user_id: int | None, expected: str | None = None
) -> Disclosure:
    """The 民主理财小组 has checked the draft against the books: a member of the group signs it off."""
    d = _get(session, disclosure_id)
    _user(
        session,
        user_id,
        OVERSIGHT,
        N_("only a member of the oversight group (民主理财小组) can sign a disclosure off"),
    )
    if d.status == "signed_off":
        raise LedgerError(N_("this disclosure has already been signed off"))
    if d.status != "draft":
        raise LedgerError(N_("only a draft can be signed off"))
    _check_seen(d, expected)
    d.status, d.signed_off_by, d.signed_off_at = "signed_off", user_id, utcnow()
    session.flush()
    audit.record(
        session,
        "disclosure.sign_off",
        d,
        user_id=user_id,
        details={"title": d.title, "chain_hash": d.chain_hash},
    )
    return d


def approve(
    session: Session, disclosure_id: int, *, user_id: int | None, expected: str | None = None
) -> Disclosure:
    """Approve a signed-off draft (an official who did not draft it): it becomes public and read-only.
    Its approval is recorded in the chain (``coop.chain``), and that record's position and hash are
    the anchor the notice prints."""
    d = _get(session, disclosure_id)
    _user(session, user_id, OFFICIALS, N_("only an official can approve a disclosure"))
    if d.status == "approved":
        raise LedgerError(N_("this disclosure is already approved"))
    if d.status == "withdrawn":
        raise LedgerError(N_("this disclosure was withdrawn: draft the period again"))
    if d.status != "signed_off":
        raise LedgerError(
            N_("the oversight group (民主理财小组) must sign this disclosure off before it is approved")
        )
    if d.created_by is not None and d.created_by == user_id:
        raise LedgerError(N_("you drafted this disclosure: another official must approve it"))
    _check_seen(d, expected)
    d.status, d.approved_by, d.approved_at = "approved", user_id, utcnow()
    session.flush()
    anchor = anchor_for(session, d)  # the chain head right after the approval was recorded
    audit.record(
        session,
        "disclosure.approve",
        d,
        user_id=user_id,
        details={"title": d.title, "anchor": anchor.full if anchor else None},
    )
    return d


def published(session: Session, *, withdrawn: bool = False) -> list[Disclosure]:
    """Approved disclosures, newest first; with ``withdrawn`` also those withdrawn since (the public
    pages keep showing them, with a notice)."""
    statuses = ("approved", "withdrawn") if withdrawn else ("approved",)
    return list(
        session.scalars(
            select(Disclosure)
            .where(Disclosure.status.in_(statuses))
            .order_by(Disclosure.end.desc(), Disclosure.id.desc())
        )
    )


def withdraw_covering(session: Session, year: int, month: int, *, reason: str, user_id: int | None) -> list:
    """Withdraw every approved disclosure whose range covers ``year``-``month`` (its period was
    reopened); returns them. A withdrawn disclosure stays public with the reason, and a new one
    can be drafted for its period."""
    reason = (reason or "").strip()
    if not reason:
        raise LedgerError(N_("give the reason for withdrawing the disclosure"))
    first, last = dt.date(year, month, 1), month_end(year, month)
    rows = list(
        session.scalars(
            select(Disclosure)
            .where(Disclosure.status == "approved", Disclosure.start <= last, Disclosure.end >= first)
            .order_by(Disclosure.id)
        )
    )
    for d in rows:
        d.status, d.withdrawn_at, d.withdrawn_by, d.withdraw_reason = (
            "withdrawn",
            utcnow(),
            user_id,
            reason[:500],
        )
        session.flush()
        audit.record(
            session,
            "disclosure.withdraw",
            d,
            user_id=user_id,
            details={"title": d.title, "reason": reason[:500], "chain_hash": d.chain_hash},
        )
    return rows


_WITHDRAWAL = {"status", "withdrawn_at", "withdrawn_by", "withdraw_reason"}


def _guard(_mapper, connection, target: Disclosure) -> None:
    stored = connection.scalar(select(Disclosure.status).where(Disclosure.id == target.id))
    if stored == "approved" and target.status == "withdrawn":
        changed = {a.key for a in inspect(target).attrs if a.history.has_changes()}
        if changed <= _WITHDRAWAL:
            return  # the one change a published statement allows: withdraw_covering
    if stored in ("approved", "withdrawn"):
        raise LedgerError(N_("an approved disclosure is read-only"))


event.listen(Disclosure, "before_update", _guard)


def _guard_delete(_mapper, connection, target: Disclosure) -> None:
    stored = connection.scalar(select(Disclosure.status).where(Disclosure.id == target.id))
    if stored in ("approved", "withdrawn"):
        raise LedgerError(N_("an approved disclosure is read-only"))


event.listen(Disclosure, "before_delete", _guard_delete)
