"""Settlement into the village books: every money movement of the shop becomes a voucher.

Posted through ``coop.ledger`` (idempotent per ``source="shop"`` and ``source_ref``):

- sale paid:   Dr 101 cash (pickup) or 112 Stripe clearing (net of fee), Dr 511 payment
               fees; Cr 501 经营收入 per product, Cr 113 内部往来 per supplying household
               for the household's share of consignment goods.
- refund:      the same split, reversed, against cash or the Stripe clearing account.
- refund failed at Stripe after it was booked: the refund voucher's lines on the opposite
               sides (``refund-failed:<refund id>``).
- second payment for a paid order: Dr the money account, Cr 211 商城待退款; given back
               (``payments.refund_duplicate``): Dr 211, Cr the money account
               (``duplicate-refund:<payment id>:<refund>``; reversed if Stripe's refund fails);
               the sale is untouched.
- payout:      Dr 102 银行存款, Cr 112 Stripe clearing.

A money event whose local day falls in a closed month (or before the books' opening date) is
posted on the first open day, its original date in the summary (``posting_day``): money that
has moved is always in the books.

See docs/shop.md for why these accounts.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.orm import Session

from coop import ledger
from coop.ledger import Line
from coop.models import Account
from core import clock
from core.money import allocate
from shop.models import Order, OrderLine, Payment, Refund, SupplierCredit

SOURCE = "shop"


def local_day(at: dt.datetime | None) -> dt.date:
    """The local date of ``at`` (default now)."""
    return clock.local_date(at or clock.now())


def posting_day(session: Session, day: dt.date, summary: str) -> tuple[dt.date, str]:
    """Where a money event of ``day`` is posted: its own day, or (its month is closed, or it is
    before the books' opening date) the first open day, with the original date in the summary; a
    day after the last allowed one (a payout arriving tomorrow) posts today. The shop's money never
    fails to post because of a date."""
    first = ledger.first_open_day(session)
    last = ledger.last_allowed_day(session)
    if day > last:  # dated ahead (a payout's arrival date in another zone): it posts today
        return max(first, clock.today()), f"{summary}（原日期 {day.isoformat()}）"[:200]
    if day >= first:
        return day, summary
    return first, f"{summary}（原日期 {day.isoformat()}，所属期间已结账）"[:200]


def _post(session: Session, *, date: dt.date, summary: str, **kwargs):
    ledger.ensure_chart(session)
    day, summary = posting_day(session, date, summary)
    return ledger.post_voucher(session, date=day, summary=summary, **kwargs)


# --- accounts ----------------------------------------------------------------------


def _leaf_or_sub(session: Session, code: str, name: str, key: str) -> str:
    """Post to a level-1 account while it has no sub-accounts; else to our keyed one."""
    ledger.ensure_chart(session)
    mine = session.scalar(select(Account).where(Account.key == key))
    if mine is not None:
        return mine.code
    account = ledger.get_account(session, code)
    if account is not None and ledger.postable(session, account):
        return account.code
    return ledger.ensure_account(session, code, name, key=key).code


def cash_account(session: Session) -> str:
    return _leaf_or_sub(session, "101", "商城收银", "shop:cash")


def bank_account(session: Session) -> str:
    return _leaf_or_sub(session, "102", "商城结算户", "shop:bank")


def stripe_clearing_account(session: Session) -> str:
    return ledger.ensure_account(session, "112", "Stripe 待结算款", key="shop:stripe-clearing").code


def money_account(session: Session, method: str) -> str:
    """Where money of a payment method sits: Stripe clearing, bank (transfer) or cash."""
    if method == "stripe":
        return stripe_clearing_account(session)
    if method == "transfer":
        return bank_account(session)
    return cash_account(session)


def fee_account(session: Session) -> str:
    return ledger.ensure_account(session, "511", "支付手续费", key="shop:payment-fees").code


def revenue_account(session: Session, line: OrderLine) -> str:
    key = f"product:{line.product_id}" if line.product_id else "shop:other-sales"
    return ledger.ensure_account(session, "501", f"商城销售—{line.name_zh}", key=key).code


def household_account(session: Session, household_id: int) -> str:
    return ledger.household_account(session, household_id).code


# --- splitting a line between the collective and supplying households ---------------


def split_line(line: OrderLine, amount: int) -> tuple[int, dict[int, int]]:
    """Split ``amount`` fen of a line into (collective revenue, {household_id: owed}).

    Collective goods: everything is revenue. Consignment goods: the commission is revenue
    and the rest is owed to the households whose lots the line took, by quantity.
    """
    if not line.consignment or line.commission_pct >= 100:
        return amount, {}
    per_household: dict[int, Decimal] = defaultdict(Decimal)
    for alloc in line.lots:
        if alloc.household_id is not None:
            per_household[alloc.household_id] += Decimal(alloc.quantity)
    if not per_household:
        return amount, {}
    households = sorted(per_household)
    total_qty = sum(per_household.values())
    weights = [Decimal(line.commission_pct) * total_qty] + [
        Decimal(100 - line.commission_pct) * per_household[h] for h in households
    ]
    parts = allocate(amount, weights, keys=[0] + households)
    return parts[0], {h: p for h, p in zip(households, parts[1:], strict=True) if p}


def _split_lines(session: Session, order: Order, amounts: dict[int, int]):
    """Credit (or debit) lines for revenue and household shares of ``amounts`` per line."""
    revenue: dict[str, int] = defaultdict(int)
    owed: dict[int, int] = defaultdict(int)
    credits = []
    for line in order.lines:
        amount = amounts.get(line.id, 0)
        if not amount:
            continue
        rev, households = split_line(line, amount)
        if rev:
            revenue[revenue_account(session, line)] += rev
        for hid, part in households.items():
            owed[hid] += part
            credits.append((line, hid, amount, part))
    return revenue, owed, credits


# --- postings -----------------------------------------------------------------------


def post_sale(session: Session, order: Order, payment: Payment, *, user_id: int | None = None):
    """The voucher for a paid order (idempotent per payment)."""
    revenue, owed, credits = _split_lines(session, order, {ln.id: ln.total_fen for ln in order.lines})
    fee = payment.fee_fen if payment.method == "stripe" else 0
    received = payment.amount_fen - fee
    debit_account = money_account(session, payment.method)
    lines = [Line(debit_account, debit=received, memo=f"订单 {order.number}")] if received else []
    if fee:
        lines.append(Line(fee_account(session), debit=fee, memo=f"订单 {order.number} 支付手续费"))
    for code, amount in sorted(revenue.items()):
        lines.append(Line(code, credit=amount, memo=f"订单 {order.number}"))
    for hid, amount in sorted(owed.items()):
        lines.append(
            Line(household_account(session, hid), credit=amount, memo=f"订单 {order.number} 代销货款")
        )
    difference = payment.amount_fen - order.total_fen
    if difference:  # mark_paid takes only the exact total; kept so the books balance whatever comes
        other = ledger.ensure_account(
            session, "504" if difference > 0 else "515", "商城收款差额", key=f"shop:diff:{difference > 0}"
        ).code
        lines.append(Line(other, credit=difference) if difference > 0 else Line(other, debit=-difference))
    for line, hid, gross, part in credits:
        session.add(
            SupplierCredit(
                household_id=hid,
                order_id=order.id,
                line_id=line.id,
                gross_fen=gross,
                commission_fen=gross - part,
                owed_fen=part,
                at=payment.created_at,
            )
        )
    method = {"stripe": "Stripe", "transfer": "转账"}.get(payment.method, "现金")
    return _post(
        session,
        date=local_day(payment.created_at),
        summary=f"商城订单 {order.number} 销售收款（{method}）",
        lines=lines,
        preparer_id=user_id,
        attachments=1,
        source=SOURCE,
        source_ref=f"payment:{payment.id}",
    )


def post_overpayment(session: Session, order: Order, payment: Payment, *, user_id: int | None = None):
    """Money received twice for one order: owed back to the customer (211 应付款), not revenue."""
    return _post(
        session,
        date=local_day(payment.created_at),
        summary=f"商城订单 {order.number} 重复收款，待退还",
        lines=[
            Line(
                money_account(session, payment.method), debit=payment.amount_fen, memo=f"订单 {order.number}"
            ),
            Line(
                refunds_due_account(session),
                credit=payment.amount_fen,
                memo=f"订单 {order.number}",
            ),
        ],
        preparer_id=user_id,
        source=SOURCE,
        source_ref=f"payment:{payment.id}",
    )


def refunds_due_account(session: Session) -> str:
    return ledger.ensure_account(session, "211", "商城待退款", key="shop:refunds-due").code


def post_duplicate_refund(
    session: Session, payment: Payment, *, reference: str, when: dt.datetime, user_id: int | None = None
):
    """A second payment given back (``payments.refund_duplicate``): Dr 211 商城待退款, Cr the money
    account it came into. The sale's voucher, revenue and household shares stay as they are.
    Idempotent per payment."""
    order = payment.order
    return _post(
        session,
        date=local_day(when),
        summary=f"商城订单 {order.number} 退还重复收款"[:200],
        lines=[
            Line(
                refunds_due_account(session),
                debit=payment.amount_fen,
                memo=f"订单 {order.number} {reference}"[:200],
            ),
            Line(
                money_account(session, payment.method), credit=payment.amount_fen, memo=f"订单 {order.number}"
            ),
        ],
        preparer_id=user_id,
        source=SOURCE,
        source_ref=f"duplicate-refund:{payment.id}:{reference}"[:120],
    )


def post_duplicate_refund_reversal(
    session: Session, payment: Payment, *, reference: str, when: dt.datetime, user_id: int | None = None
):
    """A Stripe refund of a second payment that failed after it was booked: Dr the money account,
    Cr 211 again (the money is still owed to the customer). Idempotent per refund."""
    order = payment.order
    return _post(
        session,
        date=local_day(when),
        summary=f"商城订单 {order.number} 重复收款退还失败，冲回"[:200],
        lines=[
            Line(
                money_account(session, payment.method), debit=payment.amount_fen, memo=f"订单 {order.number}"
            ),
            Line(
                refunds_due_account(session),
                credit=payment.amount_fen,
                memo=f"订单 {order.number} {reference}"[:200],
            ),
        ],
        preparer_id=user_id,
        source=SOURCE,
        source_ref=f"duplicate-refund-failed:{payment.id}:{reference}"[:120],
    )


def refund_amounts(order: Order, amount: int, line_id: int | None = None) -> dict[int, int]:
    """Spread a refund over lines in proportion to what each can still give back."""
    if line_id is not None:
        return {line_id: amount}
    refundable = [
        (ln.id, ln.total_fen - ln.refunded_fen) for ln in order.lines if ln.total_fen > ln.refunded_fen
    ]
    parts = allocate(amount, [r for _i, r in refundable], keys=[i for i, _r in refundable])
    return {i: p for (i, _r), p in zip(refundable, parts, strict=True) if p}


def post_refund(session: Session, refund: Refund, amounts: dict[int, int], *, user_id: int | None = None):
    order = refund.order
    revenue, owed, credits = _split_lines(session, order, amounts)
    credit_account = money_account(session, refund.method)
    lines = [
        Line(code, debit=amount, memo=f"订单 {order.number} 退款") for code, amount in sorted(revenue.items())
    ]
    for hid, amount in sorted(owed.items()):
        lines.append(Line(household_account(session, hid), debit=amount, memo=f"订单 {order.number} 退款"))
    lines.append(Line(credit_account, credit=refund.amount_fen, memo=f"订单 {order.number} 退款"))
    for line, hid, gross, part in credits:
        session.add(
            SupplierCredit(
                household_id=hid,
                order_id=order.id,
                line_id=line.id,
                refund_id=refund.id,
                gross_fen=-gross,
                commission_fen=-(gross - part),
                owed_fen=-part,
                at=refund.created_at,
            )
        )
    return _post(
        session,
        date=local_day(refund.created_at),
        summary=f"商城订单 {order.number} 退款",
        lines=lines,
        preparer_id=user_id,
        source=SOURCE,
        source_ref=f"refund:{refund.id}",
    )


def post_refund_reversal(session: Session, refund: Refund, *, when: dt.datetime, user_id: int | None = None):
    """A refund that failed at Stripe after it was booked: a voucher of its own with the refund
    voucher's lines on the opposite sides (the refund's voucher stays, as every posted voucher
    does), and the households' shares given back. Idempotent per refund."""
    from coop.models import Voucher

    original = session.scalar(
        select(Voucher).where(Voucher.source == SOURCE, Voucher.source_ref == f"refund:{refund.id}")
    )
    if original is None:
        return None
    order = refund.order
    lines = [
        Line(ln.account.code, debit=ln.credit, credit=ln.debit, memo=f"订单 {order.number} 退款失败冲回")
        for ln in original.lines
    ]
    for credit in list(session.scalars(select(SupplierCredit).where(SupplierCredit.refund_id == refund.id))):
        session.add(
            SupplierCredit(
                household_id=credit.household_id,
                order_id=credit.order_id,
                line_id=credit.line_id,
                refund_id=refund.id,
                gross_fen=-credit.gross_fen,
                commission_fen=-credit.commission_fen,
                owed_fen=-credit.owed_fen,
                at=when,
            )
        )
    return _post(
        session,
        date=local_day(when),
        summary=f"商城订单 {order.number} 退款失败，冲回 {original.label}",
        lines=lines,
        preparer_id=user_id,
        source=SOURCE,
        source_ref=f"refund-failed:{refund.id}",
    )


def post_payout(
    session: Session, payout_id: str, amount_fen: int, *, arrived: dt.date, user_id: int | None = None
):
    """Stripe paid out ``amount_fen`` to the bank account (idempotent per payout id)."""
    if amount_fen <= 0:
        return None
    return _post(
        session,
        date=arrived,
        summary=f"Stripe 结算到账 {payout_id}",
        lines=[
            Line(bank_account(session), debit=amount_fen, memo=payout_id),
            Line(stripe_clearing_account(session), credit=amount_fen, memo=payout_id),
        ],
        preparer_id=user_id,
        source=SOURCE,
        source_ref=f"payout:{payout_id}",
    )


# --- monthly statement per supplying household --------------------------------------


def household_statement(session: Session, household_id: int, year: int, month: int) -> dict:
    """Sales, refunds, commission and the amount owed to one household in one month."""
    start = clock.day_start(dt.date(year, month, 1))
    end = clock.day_start(dt.date(year + (month == 12), month % 12 + 1, 1))
    rows = session.execute(
        select(SupplierCredit, Order.number, OrderLine.name_zh, OrderLine.name_en)
        .join(Order, Order.id == SupplierCredit.order_id)
        .join(OrderLine, OrderLine.id == SupplierCredit.line_id)
        .where(
            SupplierCredit.household_id == household_id, SupplierCredit.at >= start, SupplierCredit.at < end
        )
        .order_by(SupplierCredit.at, SupplierCredit.id)
    ).all()
    entries = [
        {
            "at": c.at,
            "order": number,
            "name_zh": zh,
            "name_en": en,
            "gross": c.gross_fen,
            "commission": c.commission_fen,
            "owed": c.owed_fen,
            "refund": c.refund_id is not None,
        }
        for c, number, zh, en in rows
    ]
    return {
        "household_id": household_id,
        "year": year,
        "month": month,
        "entries": entries,
        "gross": sum(e["gross"] for e in entries),
        "commission": sum(e["commission"] for e in entries),
        "owed": sum(e["owed"] for e in entries),
    }
