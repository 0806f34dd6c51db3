"""Member households, the share register and the cooperatives' member accounts. Callers commit."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from coop.ledger import LedgerError, ensure_account
from coop.models import (
    Enterprise,
    Household,
    MemberAccount,
    ShareEvent,
    TransactionVolume,
)
from core import audit
from core.errors import N_

EARLIEST_DAY = dt.date(1949, 10, 1)


def _check_day(day: dt.date | None, refusal: str) -> None:
    """Register dates are real days: not before 1949-10-01, not after today."""
    from core import clock

    if day is None:
        return
    if not isinstance(day, dt.date) or not (EARLIEST_DAY <= day <= clock.today()):
        raise LedgerError(refusal)


# ---------------------------------------------------------------- households


def add_household(
    session: Session,
    *,
    code: str,
    head_name: str,
    members: int = 1,
    phone: str | None = None,
    address: str | None = None,
    joined_on: dt.date | None = None,
    user_id: int | None = None,
) -> Household:
    code, head_name = (code or "").strip(), (head_name or "").strip()
    if not code or not head_name:
        raise LedgerError(N_("a household needs a code and the name of its head (户主)"))
    if session.scalar(select(Household.id).where(Household.code == code)):
        raise LedgerError(N_("household %(code)s already exists"), code=code)
    if members < 1:
        raise LedgerError(N_("a household has at least one member"))
    _check_day(joined_on, N_("the joining date must be a date from 1949-10-01 to today"))
    h = Household(
        code=code, head_name=head_name, members=members, phone=phone, address=address, joined_on=joined_on
    )
    session.add(h)
    session.flush()
    audit.record(
        session, "household.create", h, user_id=user_id, details={"code": code, "head_name": head_name}
    )
    return h


def update_household(
    session: Session, household: Household, *, user_id: int | None = None, **changes
) -> Household:
    allowed = {"head_name", "members", "phone", "address", "active", "note"}
    if "head_name" in changes:
        changes["head_name"] = (changes["head_name"] or "").strip()[:60]
        if not changes["head_name"]:
            raise LedgerError(N_("the head of household is required"))
    if "members" in changes and changes["members"] < 1:
        raise LedgerError(N_("a household has at least one member"))
    diff = {}
    for key, value in changes.items():
        if key not in allowed:
            raise LedgerError(N_("cannot change %(key)s"), key=key)
        old = getattr(household, key)
        if old != value:
            diff[key] = [old, value]
            setattr(household, key, value)
    if diff:
        audit.record(session, "household.update", household, user_id=user_id, details=diff)
    return household


# ---------------------------------------------------------------- shares


def shares_of(session: Session, household_id: int, on: dt.date | None = None) -> int:
    stmt = select(func.coalesce(func.sum(ShareEvent.change), 0)).where(
        ShareEvent.household_id == household_id
    )
    if on is not None:
        stmt = stmt.where(ShareEvent.on <= on)
    return int(session.scalar(stmt) or 0)


def issue_shares(
    session: Session,
    household_id: int,
    shares: int,
    *,
    on: dt.date,
    kind: str = "initial",
    note: str = "",
    user_id: int | None = None,
) -> ShareEvent:
    """Record shares allotted to a household (initial quantification, or an adjustment)."""
    if kind not in ("initial", "adjust"):
        raise LedgerError(N_("kind must be initial or adjust"))
    _check_day(on, N_("the date of a share change must be from 1949-10-01 to today"))
    if shares == 0:
        raise LedgerError(N_("the number of shares must not be zero"))
    if session.get(Household, household_id) is None:
        raise LedgerError(N_("no household %(household_id)s"), household_id=household_id)
    if shares_of(session, household_id) + shares < 0:
        raise LedgerError(N_("a household cannot hold fewer than zero shares"))
    event = ShareEvent(household_id=household_id, on=on, change=shares, kind=kind, note=note, user_id=user_id)
    session.add(event)
    session.flush()
    audit.record(
        session,
        f"shares.{kind}",
        event,
        user_id=user_id,
        details={"household_id": household_id, "change": shares},
    )
    return event


def transfer_shares(
    session: Session,
    from_id: int,
    to_id: int,
    shares: int,
    *,
    on: dt.date,
    note: str = "",
    user_id: int | None = None,
) -> tuple[ShareEvent, ShareEvent]:
    """Move shares between member households (transfers stay inside the collective)."""
    if shares <= 0:
        raise LedgerError(N_("transfer a positive number of shares"))
    _check_day(on, N_("the date of a share change must be from 1949-10-01 to today"))
    if from_id == to_id:
        raise LedgerError(N_("a household cannot transfer shares to itself"))
    for hid in (from_id, to_id):
        if session.get(Household, hid) is None:
            raise LedgerError(N_("no household %(hid)s"), hid=hid)
    held = shares_of(session, from_id)
    if held < shares:
        raise LedgerError(N_("the household holds only %(held)s shares"), held=held)
    out = ShareEvent(
        household_id=from_id,
        on=on,
        change=-shares,
        kind="transfer_out",
        counterparty_id=to_id,
        note=note,
        user_id=user_id,
    )
    inn = ShareEvent(
        household_id=to_id,
        on=on,
        change=shares,
        kind="transfer_in",
        counterparty_id=from_id,
        note=note,
        user_id=user_id,
    )
    session.add_all([out, inn])
    session.flush()
    audit.record(
        session,
        "shares.transfer",
        out,
        user_id=user_id,
        details={"from": from_id, "to": to_id, "shares": shares},
    )
    return out, inn


# ---------------------------------------------------------------- enterprises


def add_enterprise(
    session: Session,
    slug: str,
    name: str,
    *,
    kind: str = "enterprise",
    income_parent: str = "501",
    expense_parent: str = "511",
    user_id: int | None = None,
) -> Enterprise:
    """A collective enterprise, cooperative or contract with its own income and expense sub-accounts."""
    if kind not in ("enterprise", "cooperative", "contract"):
        raise LedgerError(N_("kind must be enterprise, cooperative or contract"))
    found = session.scalar(select(Enterprise).where(Enterprise.slug == slug))
    if found is not None:
        return found
    income = ensure_account(session, income_parent, name, key=f"enterprise:{slug}")
    expense = (
        ensure_account(session, expense_parent, name, key=f"enterprise:{slug}:expense")
        if expense_parent
        else None
    )
    ent = Enterprise(
        slug=slug,
        name=name,
        kind=kind,
        income_account_id=income.id,
        expense_account_id=expense.id if expense else None,
    )
    session.add(ent)
    session.flush()
    audit.record(session, "enterprise.create", ent, user_id=user_id, details={"slug": slug, "name": name})
    return ent


def set_member_account(
    session: Session,
    enterprise_id: int,
    household_id: int,
    *,
    capital: int,
    reserve_share: int = 0,
    user_id: int | None = None,
) -> MemberAccount:
    row = session.scalar(
        select(MemberAccount).where(
            MemberAccount.enterprise_id == enterprise_id, MemberAccount.household_id == household_id
        )
    )
    if row is None:
        row = MemberAccount(enterprise_id=enterprise_id, household_id=household_id)
        session.add(row)
    row.capital, row.reserve_share = capital, reserve_share
    session.flush()
    audit.record(
        session,
        "member_account.set",
        row,
        user_id=user_id,
        details={"capital": capital, "reserve_share": reserve_share},
    )
    return row


def record_volume(
    session: Session, enterprise_id: int, household_id: int, year: int, amount: int
) -> TransactionVolume:
    row = session.scalar(
        select(TransactionVolume).where(
            TransactionVolume.enterprise_id == enterprise_id,
            TransactionVolume.household_id == household_id,
            TransactionVolume.year == year,
        )
    )
    if row is None:
        row = TransactionVolume(enterprise_id=enterprise_id, household_id=household_id, year=year, amount=0)
        session.add(row)
    row.amount += amount
    return row
