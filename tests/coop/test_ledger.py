"""Posting rules: balanced vouchers only, open periods only, immutable once posted, gapless numbers."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import func, select

from coop.ledger import (
    LedgerError,
    Line,
    ensure_account,
    household_account,
    post_voucher,
    reverse_voucher,
)
from coop.models import Account, Balance, Voucher, VoucherLine
from coop.periods import close_period
from coop.reports import account_balances, trial_balance
from core.models import AuditEntry
from tests.coop.conftest import close_through, post

D = dt.date(2025, 3, 10)


def counts(session):
    return (
        session.scalar(select(func.count(Voucher.id))),
        session.scalar(select(func.count(VoucherLine.id))),
        session.scalar(select(func.count(Balance.id))),
    )


def test_chart_is_loaded_from_the_csv(books):
    accounts = {a.code: a for a in books.scalars(select(Account))}
    assert len(accounts) == 42
    assert accounts["101"].name == "库存现金" and accounts["101"].kind == "asset"
    assert accounts["322"].name == "收益分配" and accounts["521"].kind == "expense"


def test_a_balanced_voucher_posts_and_moves_balances(books):
    v = post(
        books, D, "粮食加工厂加工费", ("101", 12_345, 0), ("501", 0, 12_345), preparer_id=None, attachments=2
    )
    books.commit()
    assert v.label == "2025-0001" and v.total == 12_345 and len(v.hash) == 64
    assert account_balances(books, 2025, 3) == {"101": 12_345, "501": -12_345}


@pytest.mark.parametrize(
    "lines, message",
    [
        ([Line("101", debit=100), Line("501", credit=99)], "does not balance"),
        ([Line("101", debit=100)], "at least two lines"),
        ([Line("101", debit=100, credit=100), Line("501", credit=0)], "either a debit or a credit"),
        ([Line("101", debit=0), Line("501", credit=0)], "either a debit or a credit"),
        ([Line("101", debit=-5), Line("501", credit=-5)], "negative"),
        ([Line("101", debit=1.5), Line("501", credit=1.5)], "whole fen"),
        ([Line("999", debit=100), Line("501", credit=100)], "no such account: 999"),
    ],
)
def test_invalid_vouchers_are_refused_and_nothing_is_written(books, lines, message):
    before = counts(books)
    with pytest.raises(LedgerError, match=message):
        post_voucher(books, date=D, summary="bad", lines=lines)
    books.commit()
    assert counts(books) == before


def test_unbalanced_message_shows_both_sides_in_yuan(books):
    with pytest.raises(LedgerError) as err:
        post_voucher(
            books, date=D, summary="bad", lines=[Line("101", debit=10_000), Line("501", credit=9_999)]
        )
    assert "100.00" in str(err.value) and "99.99" in str(err.value)


def test_posting_to_an_account_with_sub_accounts_is_refused(books):
    ensure_account(books, "501", "粮食加工厂", key="enterprise:mill")
    with pytest.raises(LedgerError, match="has sub-accounts"):
        post(books, D, "x", ("101", 100, 0), ("501", 0, 100))
    assert post(books, D, "x", ("101", 100, 0), ("50101", 0, 100)).number == 1


def test_closed_period_refuses_postings(books):
    close_through(books, 2025, 2)
    close_period(books, 2025, 3)
    books.commit()
    before = counts(books)
    with pytest.raises(LedgerError, match="closed period .closed up to 2025-03"):
        post(books, D, "late", ("101", 100, 0), ("501", 0, 100))
    assert counts(books) == before
    assert post(books, dt.date(2025, 4, 1), "April is open", ("101", 100, 0), ("501", 0, 100)).number == 1
    with pytest.raises(LedgerError, match="already closed"):
        close_period(books, 2025, 3)


def test_editing_or_deleting_a_posted_voucher_is_refused(books):
    v = post(books, D, "original", ("101", 500, 0), ("501", 0, 500))
    books.commit()
    v.summary = "changed"
    with pytest.raises(LedgerError, match="immutable"):
        books.commit()
    books.rollback()
    v.lines[0].debit = 999
    with pytest.raises(LedgerError, match="immutable"):
        books.flush()
    books.rollback()
    books.delete(v)
    with pytest.raises(LedgerError, match="immutable"):
        books.flush()
    books.rollback()
    stored = books.scalar(select(Voucher))
    assert stored.summary == "original" and stored.lines[0].debit == 500


def test_numbers_are_gapless_per_year_and_the_chain_links(books):
    from coop.ledger import chain_head

    start, head = chain_head(books)  # loading the chart took the first positions (coop.chain)
    a = post(books, dt.date(2024, 12, 30), "a", ("101", 1, 0), ("501", 0, 1))
    b = post(books, dt.date(2025, 1, 2), "b", ("101", 1, 0), ("501", 0, 1))
    with pytest.raises(LedgerError):
        post(books, dt.date(2025, 1, 3), "refused", ("101", 1, 0), ("501", 0, 2))
    c = post(books, dt.date(2025, 1, 3), "c", ("101", 1, 0), ("501", 0, 1))
    d = post(books, dt.date(2024, 12, 31), "d", ("101", 1, 0), ("501", 0, 1))
    assert [v.label for v in (a, b, c, d)] == ["2024-0001", "2025-0001", "2025-0002", "2024-0002"]
    assert [v.seq for v in (a, b, c, d)] == [start + 1, start + 2, start + 3, start + 4]
    assert a.prev_hash == head and b.prev_hash == a.hash and c.prev_hash == b.hash and d.prev_hash == c.hash


def test_same_source_ref_returns_the_existing_voucher(books):
    first = post(
        books, D, "订单 1", ("101", 2500, 0), ("501", 0, 2500), source="shop", source_ref="payment:1"
    )
    again = post(
        books, D, "订单 1", ("101", 2500, 0), ("501", 0, 2500), source="shop", source_ref="payment:1"
    )
    books.commit()
    assert again.id == first.id
    assert books.scalar(select(func.count(Voucher.id))) == 1
    assert account_balances(books, 2025, 12)["101"] == 2500


def test_reversal_undoes_a_voucher_exactly_and_only_once(books):
    keep = post(books, D, "keep", ("102", 7_000, 0), ("503", 0, 7_000))
    before = account_balances(books, 2025, 12)
    wrong = post(books, D, "wrong", ("513", 98_000, 0), ("102", 0, 98_000))
    r = reverse_voucher(books, wrong.id, date=dt.date(2025, 3, 11), preparer_id=None)
    books.commit()
    assert r.reverses_id == wrong.id and r.kind == "reversal"
    assert [(ln.account.code, ln.debit, ln.credit) for ln in r.lines] == [
        ("513", -98_000, 0),
        ("102", 0, -98_000),
    ]  # red ink: same accounts and sides, amounts negated
    after = {k: v for k, v in account_balances(books, 2025, 12).items() if v}
    assert after == {k: v for k, v in before.items() if v}
    with pytest.raises(LedgerError, match="already been reversed"):
        reverse_voucher(books, wrong.id, date=dt.date(2025, 3, 12), preparer_id=None)
    assert keep.id != r.id


def test_sub_account_codes_and_keys(books, households):
    mill = ensure_account(books, "501", "粮食加工厂", key="enterprise:mill")
    shop = ensure_account(books, "501", "农产品销售中心", key="enterprise:shop")
    assert (mill.code, shop.code) == ("50101", "50102")
    assert ensure_account(books, "501", "another name", key="enterprise:mill").id == mill.id
    h = household_account(books, households[1].id)
    assert h.code == "1130001" and h.name == "ZZ002 王秀英" and h.kind == "asset"
    assert household_account(books, households[1].id).id == h.id
    with pytest.raises(LedgerError, match="no account"):
        ensure_account(books, "777", "x")


def test_no_sub_account_under_an_account_with_postings(books):
    post(books, D, "x", ("101", 100, 0), ("504", 0, 100))
    with pytest.raises(LedgerError, match="already has postings"):
        ensure_account(books, "504", "利息")


def test_posting_is_audited(books):
    v = post(books, D, "x", ("101", 100, 0), ("501", 0, 100))
    books.commit()
    entry = books.scalar(select(AuditEntry).where(AuditEntry.action == "voucher.post"))
    assert entry.entity_id == str(v.id) and entry.details["hash"] == v.hash


def test_trial_balance_sums_sub_accounts_into_parents(books):
    ensure_account(books, "501", "粮食加工厂", key="enterprise:mill")
    ensure_account(books, "501", "艾草", key="enterprise:mugwort")
    post(books, dt.date(2025, 1, 5), "a", ("101", 1_000, 0), ("50101", 0, 1_000))
    post(books, dt.date(2025, 2, 5), "b", ("101", 2_000, 0), ("50102", 0, 2_000))
    post(books, dt.date(2025, 3, 5), "c", ("102", 2_500, 0), ("101", 0, 2_500))
    tb = trial_balance(books, 2025, 2, 3)
    rows = {r.code: r for r in tb.rows}
    assert rows["101"].opening == 1_000 and rows["101"].debit == 2_000 and rows["101"].credit == 2_500
    assert rows["101"].closing == 500
    assert rows["501"].opening == -1_000 and rows["501"].credit == 2_000 and rows["501"].closing == -3_000
    assert tb.balanced and tb.totals["debit"] == 4_500
