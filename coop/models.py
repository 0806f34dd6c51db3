"""Tables of the village books (coop_*).

Households and their shares; the chart of accounts; vouchers, their lines and the
per-period balances maintained on posting; periods; enterprises, recurring entries,
distributions and public disclosures.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from core.db import Base, UTCDateTime, utcnow

# Which side of an account class is its normal balance.
DEBIT_CLASSES = ("asset", "cost", "expense")
CREDIT_CLASSES = ("liability", "equity", "income")
ACCOUNT_CLASSES = DEBIT_CLASSES + CREDIT_CLASSES


class BooksSettings(Base):
    """The books' own settings (one row): the organisation, when the books open, the charter's rates.

    ``opening_date`` (建账日期) is the first day a voucher may be dated; ``reserve_percent`` is the
    公积公益金 rate the charter (章程) sets for the year-end distribution; ``future_grace_days``
    lets a voucher be dated that many days after today (0: not after today).
    """

    __tablename__ = "coop_books_settings"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(120), default="")
    opening_date: Mapped[date]
    reserve_percent: Mapped[str] = mapped_column(String(12), default="10")
    future_grace_days: Mapped[int] = mapped_column(default=0)
    contact: Mapped[str] = mapped_column(String(200), default="")
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))


class Household(Base):
    """A member household (成员户) of the village collective economic organisation."""

    __tablename__ = "coop_households"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(20), unique=True)
    head_name: Mapped[str] = mapped_column(String(60))  # 户主
    members: Mapped[int] = mapped_column(default=1)
    phone: Mapped[str | None] = mapped_column(String(40))
    address: Mapped[str | None] = mapped_column(String(200))
    joined_on: Mapped[date | None]
    active: Mapped[bool] = mapped_column(default=True)
    note: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ShareEvent(Base):
    """One change in the share register (集体资产股权); a household's shares are the sum."""

    __tablename__ = "coop_share_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    household_id: Mapped[int] = mapped_column(ForeignKey("coop_households.id"), index=True)
    on: Mapped[date]
    change: Mapped[int]  # shares added (+) or removed (-)
    kind: Mapped[str] = mapped_column(String(20))  # initial | transfer_in | transfer_out | adjust
    counterparty_id: Mapped[int | None] = mapped_column(ForeignKey("coop_households.id"))
    note: Mapped[str] = mapped_column(String(200), default="")
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    household: Mapped[Household] = relationship(foreign_keys=[household_id])
    counterparty: Mapped[Household | None] = relationship(foreign_keys=[counterparty_id])


class Account(Base):
    """An account of the chart (科目): level-1 accounts from the official chart, sub-accounts below."""

    __tablename__ = "coop_accounts"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(20), unique=True)
    name: Mapped[str] = mapped_column(String(120))
    name_en: Mapped[str] = mapped_column(String(200), default="")
    kind: Mapped[str] = mapped_column(String(12))  # asset | liability | equity | cost | income | expense
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("coop_accounts.id"), index=True)
    key: Mapped[str | None] = mapped_column(String(80), unique=True)  # e.g. "household:12"
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    parent: Mapped[Account | None] = relationship(remote_side=[id])

    @property
    def debit_normal(self) -> bool:
        return self.kind in DEBIT_CLASSES

    def __repr__(self) -> str:
        return f"<Account {self.code} {self.name}>"


class ChainHead(Base):
    """The single row holding the hash chain's head; locked while posting (serialises numbering)."""

    __tablename__ = "coop_chain_head"

    id: Mapped[int] = mapped_column(primary_key=True)
    seq: Mapped[int] = mapped_column(default=0)
    hash: Mapped[str] = mapped_column(String(64), default="0" * 64)


class Voucher(Base):
    """A posted journal voucher (记账凭证). Immutable once posted; corrections are reversals."""

    __tablename__ = "coop_vouchers"
    __table_args__ = (
        UniqueConstraint("year", "number"),
        UniqueConstraint("source", "source_ref"),
        Index("ix_coop_vouchers_date", "date"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    seq: Mapped[int] = mapped_column(unique=True)  # position in the hash chain, 1, 2, 3, ...
    year: Mapped[int]
    number: Mapped[int]  # gapless per year
    date: Mapped[date]
    summary: Mapped[str] = mapped_column(String(200))
    attachments: Mapped[int] = mapped_column(default=0)
    kind: Mapped[str] = mapped_column(
        String(20), default="normal"
    )  # normal | reversal | closing | distribution
    preparer_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    approver_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    source: Mapped[str | None] = mapped_column(String(40))
    source_ref: Mapped[str | None] = mapped_column(String(120))
    reverses_id: Mapped[int | None] = mapped_column(ForeignKey("coop_vouchers.id"))
    total: Mapped[int] = mapped_column(BigInteger)  # sum of debits, fen
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))
    posted_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    lines: Mapped[list[VoucherLine]] = relationship(
        back_populates="voucher", order_by="VoucherLine.line_no", cascade="save-update, merge"
    )

    @property
    def label(self) -> str:
        """``记-2024-0007`` style reference: year and gapless number."""
        return f"{self.year}-{self.number:04d}"


class VoucherLine(Base):
    __tablename__ = "coop_voucher_lines"

    id: Mapped[int] = mapped_column(primary_key=True)
    voucher_id: Mapped[int] = mapped_column(ForeignKey("coop_vouchers.id"), index=True)
    line_no: Mapped[int]
    account_id: Mapped[int] = mapped_column(ForeignKey("coop_accounts.id"), index=True)
    debit: Mapped[int] = mapped_column(BigInteger, default=0)
    credit: Mapped[int] = mapped_column(BigInteger, default=0)
    memo: Mapped[str] = mapped_column(String(200), default="")

    voucher: Mapped[Voucher] = relationship(back_populates="lines")
    account: Mapped[Account] = relationship()


class Balance(Base):
    """Debit and credit movements of one account in one month (period = year*100+month).

    Maintained on posting, so reports sum at most (accounts x months) rows instead of every
    line. ``closing`` rows hold year-end closing entries, which income statements leave out.
    """

    __tablename__ = "coop_balances"
    __table_args__ = (UniqueConstraint("account_id", "period", "closing"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("coop_accounts.id"))
    period: Mapped[int] = mapped_column(index=True)
    closing: Mapped[bool] = mapped_column(default=False)
    debit: Mapped[int] = mapped_column(BigInteger, default=0)
    credit: Mapped[int] = mapped_column(BigInteger, default=0)


class Period(Base):
    """A month of the books; absent means open. Closed months accept no postings."""

    __tablename__ = "coop_periods"
    __table_args__ = (UniqueConstraint("year", "month"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    year: Mapped[int]
    month: Mapped[int]
    closed: Mapped[bool] = mapped_column(default=False)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    closed_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    # the last reopening (an admin's correction of the latest closed month), kept after it closes again
    reopened_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    reopened_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    reopen_reason: Mapped[str | None] = mapped_column(String(500))


class Enterprise(Base):
    """A collective enterprise, cooperative or contract that is an income source with its own sub-accounts."""

    __tablename__ = "coop_enterprises"

    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(String(40), unique=True)
    name: Mapped[str] = mapped_column(String(120))
    kind: Mapped[str] = mapped_column(String(20), default="enterprise")  # enterprise | cooperative | contract
    income_account_id: Mapped[int | None] = mapped_column(ForeignKey("coop_accounts.id"))
    expense_account_id: Mapped[int | None] = mapped_column(ForeignKey("coop_accounts.id"))
    note: Mapped[str] = mapped_column(Text, default="")
    active: Mapped[bool] = mapped_column(default=True)

    income_account: Mapped[Account | None] = relationship(foreign_keys=[income_account_id])
    expense_account: Mapped[Account | None] = relationship(foreign_keys=[expense_account_id])


class MemberAccount(Base):
    """A household's member account in a cooperative: capital, reserve share (农民专业合作社法 art. 43)."""

    __tablename__ = "coop_member_accounts"
    __table_args__ = (UniqueConstraint("enterprise_id", "household_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    enterprise_id: Mapped[int] = mapped_column(ForeignKey("coop_enterprises.id"))
    household_id: Mapped[int] = mapped_column(ForeignKey("coop_households.id"))
    capital: Mapped[int] = mapped_column(BigInteger, default=0)  # fen contributed
    reserve_share: Mapped[int] = mapped_column(
        BigInteger, default=0
    )  # fen of the reserve quantified to the member

    household: Mapped[Household] = relationship()


class TransactionVolume(Base):
    """What a member household traded with a cooperative in a year (for returns by volume)."""

    __tablename__ = "coop_transaction_volumes"
    __table_args__ = (UniqueConstraint("enterprise_id", "household_id", "year"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    enterprise_id: Mapped[int] = mapped_column(ForeignKey("coop_enterprises.id"))
    household_id: Mapped[int] = mapped_column(ForeignKey("coop_households.id"))
    year: Mapped[int]
    amount: Mapped[int] = mapped_column(BigInteger, default=0)  # fen


class RecurringEntry(Base):
    """A voucher generated on schedule (contract fees, leases): monthly, quarterly or yearly."""

    __tablename__ = "coop_recurring"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(120))
    debit_account_id: Mapped[int] = mapped_column(ForeignKey("coop_accounts.id"))
    credit_account_id: Mapped[int] = mapped_column(ForeignKey("coop_accounts.id"))
    amount: Mapped[int] = mapped_column(BigInteger)
    every_months: Mapped[int] = mapped_column(default=12)  # 1 monthly, 3 quarterly, 12 yearly
    day: Mapped[int] = mapped_column(default=1)
    start: Mapped[date]
    end: Mapped[date | None]
    enterprise_id: Mapped[int | None] = mapped_column(ForeignKey("coop_enterprises.id"))
    active: Mapped[bool] = mapped_column(default=True)

    debit_account: Mapped[Account] = relationship(foreign_keys=[debit_account_id])
    credit_account: Mapped[Account] = relationship(foreign_keys=[credit_account_id])


class Distribution(Base):
    """A posted year-end surplus distribution: the plan's figures and each household's part."""

    __tablename__ = "coop_distributions"

    id: Mapped[int] = mapped_column(primary_key=True)
    year: Mapped[int] = mapped_column(unique=True)
    plan: Mapped[dict] = mapped_column(JSON)
    voucher_id: Mapped[int | None] = mapped_column(ForeignKey("coop_vouchers.id"))
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Disclosure(Base):
    """A public statement (财务公开) for a month or quarter: a frozen snapshot, public once approved."""

    __tablename__ = "coop_disclosures"
    # one current (draft or approved) disclosure per period; withdrawn ones stay beside it
    __table_args__ = (
        Index(
            "uq_coop_disclosures_current",
            "year",
            "period_kind",
            "period_no",
            unique=True,
            sqlite_where=text("status != 'withdrawn'"),
            postgresql_where=text("status != 'withdrawn'"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    year: Mapped[int]
    period_kind: Mapped[str] = mapped_column(String(10))  # month | quarter | year
    period_no: Mapped[int]
    start: Mapped[date]
    end: Mapped[date]
    title: Mapped[str] = mapped_column(String(200))
    content: Mapped[dict] = mapped_column(JSON)
    chain_seq: Mapped[int] = mapped_column(default=0)
    chain_hash: Mapped[str] = mapped_column(String(64))
    # draft | signed_off | approved | withdrawn
    status: Mapped[str] = mapped_column(String(12), default="draft")
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # 民主理财小组: a member of the oversight group signs the draft off before an official approves it
    signed_off_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    signed_off_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    approved_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    approved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # withdrawn: a published statement whose period was reopened; still shown, with this notice
    withdrawn_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    withdrawn_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    withdraw_reason: Mapped[str | None] = mapped_column(String(500))


class StatementNote(Base):
    """The text an official writes for a year's notes to the statements (附注); audited on change."""

    __tablename__ = "coop_statement_notes"

    id: Mapped[int] = mapped_column(primary_key=True)
    year: Mapped[int] = mapped_column(unique=True)
    text: Mapped[str] = mapped_column(Text, default="")
    updated_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class VoucherDraft(Base):
    """A voucher prepared (制单) but not yet reviewed (审核): it is not in the ledger, the chain or
    any report. ``coop.review`` saves it (checked like a posting), and posts it when another
    official reviews it. ``lines`` is a list of ``{"account", "debit", "credit", "memo"}``.
    """

    __tablename__ = "coop_voucher_drafts"

    id: Mapped[int] = mapped_column(primary_key=True)
    date: Mapped[date]
    summary: Mapped[str] = mapped_column(String(200))
    attachments: Mapped[int] = mapped_column(default=0)
    lines: Mapped[list] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(12), default="draft", index=True)  # draft | posted | discarded
    # what the preparer was warned about on saving (cash or bank below zero), for the reviewer
    warnings: Mapped[list] = mapped_column(JSON, default=list)
    cash_warning: Mapped[bool] = mapped_column(default=False)
    preparer_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    reviewer_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    reviewed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    discarded_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    voucher_id: Mapped[int | None] = mapped_column(ForeignKey("coop_vouchers.id"), unique=True)
    # a correction to this closed year (以前年度损益调整): ``lines`` are the accounts it affects, and
    # posting adds the adjustment line and the transfer into 未分配收益 (``coop.corrections``)
    correction_year: Mapped[int | None]
    # a red-ink reversal (红字冲销) of this posted voucher: ``lines`` are its negated lines
    reverses_id: Mapped[int | None] = mapped_column(ForeignKey("coop_vouchers.id"))
    # raised on every change: the reviewer posts the version they saw, not a later edit
    version: Mapped[int] = mapped_column(default=1)

    voucher: Mapped[Voucher | None] = relationship(foreign_keys=[voucher_id])
    reverses: Mapped[Voucher | None] = relationship(foreign_keys=[reverses_id])

    @property
    def total(self) -> int:
        return sum(int(ln.get("debit") or 0) for ln in self.lines or [])


class VoucherReview(Base):
    """The review (审核) of a voucher that was posted at once (shop, recurring, year-end, reversals).

    Posted vouchers are immutable and chained, so the review is a row of its own; a voucher
    posted with ``approver_id`` set counts as reviewed without one.
    """

    __tablename__ = "coop_voucher_reviews"

    id: Mapped[int] = mapped_column(primary_key=True)
    voucher_id: Mapped[int] = mapped_column(ForeignKey("coop_vouchers.id"), unique=True)
    reviewer_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    reviewed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ChainRecord(Base):
    """One entry of the hash chain for a row of a covered table (``coop.chain.COVERED``): the row's
    content (every mapped column, canonical JSON) after an insert or update, or a delete.

    Records and vouchers share one sequence of chain positions (``ChainHead``): each links to the
    previous position's hash, whether that is a voucher or a record.
    """

    __tablename__ = "coop_chain_records"
    __table_args__ = (Index("ix_coop_chain_records_row", "table_name", "row_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    seq: Mapped[int] = mapped_column(unique=True)  # chain position, shared with coop_vouchers.seq
    table_name: Mapped[str] = mapped_column(String(60))
    row_id: Mapped[int]
    op: Mapped[str] = mapped_column(String(8))  # insert | update | delete
    payload: Mapped[str] = mapped_column(Text)  # canonical JSON of the row's columns; "null" for a delete
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(UTCDateTime)
