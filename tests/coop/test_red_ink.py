"""Red-ink reversals (红字冲销) and the same-account rule."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select

from coop.ledger import LedgerError, Line, household_account, post_voucher, reverse_voucher, verify_chain
from coop.models import Voucher, VoucherDraft
from coop.reports import income_expense, member_statement, trial_balance
from tests.conftest import login
from tests.coop.conftest import post

D = dt.date(2025, 3, 10)


def _figures(tb):
    return {r.code: (r.opening, r.debit, r.credit) for r in tb.rows}, dict(tb.totals)


def test_reversal_leaves_turnover_as_if_neither_had_been_posted(books):
    post(books, D, "keep", ("102", 7_000, 0), ("503", 0, 7_000))
    books.commit()
    before_year = _figures(trial_balance(books, 2025, 1, 12))
    before_march = _figures(trial_balance(books, 2025, 3, 3))
    wrong = post(books, D, "wrong", ("513", 98_000, 0), ("102", 0, 98_000))
    r = reverse_voucher(books, wrong.id, date=dt.date(2025, 3, 11), preparer_id=None)
    books.commit()
    assert [(ln.account.code, ln.debit, ln.credit) for ln in r.lines] == [
        ("513", -98_000, 0),
        ("102", 0, -98_000),
    ]
    assert r.total == -98_000
    assert _figures(trial_balance(books, 2025, 1, 12)) == before_year
    assert _figures(trial_balance(books, 2025, 3, 3)) == before_march
    assert income_expense(books, 2025).total_expense == 0
    result = verify_chain(books)
    assert result.ok and not result.balance_problems, result.problem


def test_a_reversal_in_a_later_month_shows_negative_turnover_there(books):
    wrong = post(books, D, "wrong", ("513", 5_000, 0), ("101", 0, 5_000))
    reverse_voucher(books, wrong.id, date=dt.date(2025, 4, 2), preparer_id=None)
    books.commit()
    april = {r.code: r for r in trial_balance(books, 2025, 4, 4).rows}
    assert (april["513"].debit, april["513"].credit) == (-5_000, 0)
    assert (april["101"].debit, april["101"].credit) == (0, -5_000)
    year = {r.code: r for r in trial_balance(books, 2025, 1, 12).rows if r.code in ("513", "101")}
    assert year == {}  # over the year, nothing moved at all
    assert trial_balance(books, 2025, 4, 4).balanced


def test_member_statement_and_pages_show_red_figures(books, households, client, official):
    acct = household_account(books, households[0].id).code
    wrong = post(books, D, "误记借款", (acct, 3_000, 0), ("101", 0, 3_000))
    r = reverse_voucher(books, wrong.id, date=D, preparer_id=None)
    books.commit()
    st = member_statement(books, households[0].id, 2025)
    assert [running for _v, _ln, running in st.lines] == [-3_000, 0]
    login(client, "kuaiji")
    page = client.get(f"/coop/vouchers/{r.id}").get_data(as_text=True)
    assert page.count('class="red-ink"') >= 4  # both lines and both totals
    assert "红字冲销" in page
    assert 'class="red-ink"' not in client.get(f"/coop/vouchers/{wrong.id}").get_data(as_text=True)
    assert 'class="red-ink"' in client.get(f"/coop/accounts/{acct}?year=2025").get_data(as_text=True)
    assert 'class="red-ink"' in client.get(f"/coop/members/{households[0].id}?year=2025").get_data(
        as_text=True
    )
    assert 'class="red-ink"' in client.get("/coop/vouchers?year=2025").get_data(as_text=True)


def test_negative_amounts_are_refused_outside_a_red_ink_reversal(books):
    with pytest.raises(LedgerError, match="must not be negative"):
        post(books, D, "neg", ("101", -100, 0), ("501", 0, -100))
    original = post(books, D, "x", ("101", 100, 0), ("501", 0, 100))
    bad = [
        [Line("101", debit=-100), Line("501", credit=-99), Line("502", credit=-1)],  # not the original's
        [Line("101", credit=-100), Line("501", debit=-100)],  # sides swapped
        [Line("501", credit=-100), Line("101", debit=-100)],  # reordered
        [Line("101", debit=-50), Line("501", credit=-50)],  # a part
    ]
    for lines in bad:
        with pytest.raises(LedgerError, match="red-ink reversal"):
            post_voucher(books, date=D, summary="r", lines=lines, kind="reversal", reverses_id=original.id)
    with pytest.raises(LedgerError, match="must not be negative"):  # red ink of nothing
        post_voucher(books, date=D, summary="r", lines=[Line("101", debit=-100), Line("501", credit=-100)])
    assert books.scalar(select(Voucher.id).where(Voucher.reverses_id == original.id)) is None


def test_debit_and_credit_on_one_account_is_refused_naming_it(books):
    with pytest.raises(LedgerError, match="account 101 库存现金 is both debited and credited"):
        post(books, D, "x", ("101", 100, 0), ("501", 0, 50), ("101", 0, 50))
    with pytest.raises(LedgerError, match="account 501 .* both debited and credited"):
        post(books, D, "x", ("501", 100, 0), ("501", 0, 100))
    # two lines on the same side of one account are fine
    v = post(books, D, "x", ("101", 60, 0), ("101", 40, 0), ("501", 0, 100))
    assert v.total == 100


def test_the_voucher_form_refuses_the_same_account_in_chinese(client, books, official):
    login(client, "kuaiji")
    data = {
        "date": D.isoformat(),
        "summary": "自己对自己",
        "account_0": "101",
        "debit_0": "10",
        "account_1": "101",
        "credit_1": "10",
    }
    r = client.post("/coop/vouchers/new?lang=zh_CN", data=data)
    assert r.status_code == 400
    page = r.get_data(as_text=True)
    assert "101 库存现金 在同一张凭证中同时记借方和贷方" in page
    data.update(account_1="501", debit_0="1e3", credit_1="1e3")
    page = client.post("/coop/vouchers/new?lang=zh_CN", data=data).get_data(as_text=True)
    assert "1e3" in page and "科学计数法" in page
    data.update(debit_0="１，２３４．５０", credit_1="1,234.50")
    r = client.post("/coop/vouchers/new", data=data)
    assert r.status_code == 302  # saved as a draft, for another official to review
    assert books.scalar(select(VoucherDraft)).total == 123_450


def test_the_recurring_command_refuses_an_entry_on_one_account_cleanly(runner, books):
    from coop.ledger import get_account
    from coop.models import RecurringEntry

    cash = get_account(books, "101")
    books.add(
        RecurringEntry(
            name="错误的定期分录",
            debit_account_id=cash.id,
            credit_account_id=cash.id,
            amount=500,
            every_months=12,
            day=1,
            start=dt.date(2025, 1, 1),
            end=dt.date(2025, 12, 31),
        )
    )
    books.commit()
    result = runner.invoke(args=["coop", "recurring", "--until", "2025-06-30"])
    assert result.exit_code == 1
    assert "account 101 库存现金 is both debited and credited" in result.output
    assert "Traceback" not in result.output
    assert books.scalar(select(Voucher.id)) is None
