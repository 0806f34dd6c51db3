"""Sub-account codes scale: fixed width per parent, never renumbered, descendants by the parent tree."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from sqlalchemy import select

from coop import members
from coop.ledger import LedgerError, Line, descendant_ids, ensure_account, household_account, post_voucher
from coop.models import Account
from coop.reports import account_lines, trial_balance
from tests.conftest import login

D = dt.date(2025, 3, 10)


def _households(session, n):
    rows = [members.add_household(session, code=f"H{i:05d}", head_name=f"户{i}") for i in range(1, n + 1)]
    return [household_account(session, h.id) for h in rows]


def _village(books):
    accounts = _households(books, 1000)
    lines = [Line("101", credit=sum(range(1, 1001)) * 100)]
    lines += [Line(a.code, debit=(i + 1) * 100, memo=f"H{i + 1:05d}") for i, a in enumerate(accounts)]
    post_voucher(books, date=D, summary="补贴发放", lines=lines)
    books.commit()
    return accounts


def _own_lines_only(client, accounts, i):
    page = client.get(f"/coop/accounts/{accounts[i].code}?year=2025").get_data(as_text=True)
    assert set(re.findall(r"H\d{5}", page)) == {f"H{i + 1:05d}"}, accounts[i].code
    assert f"{(i + 1):,}.00" in page


@pytest.mark.slow
def test_every_household_page_of_a_thousand_shows_only_its_own_lines(books, client, official):
    accounts = _village(books)
    login(client, "kuaiji")
    for i in range(len(accounts)):
        _own_lines_only(client, accounts, i)


@pytest.mark.slow
def test_a_village_of_a_thousand_households_has_unambiguous_codes(books, client, official):
    accounts = _households(books, 1000)
    codes = [a.code for a in accounts]
    assert codes[0] == "1130001" and codes[99] == "1130100" and codes[-1] == "1131000"
    assert len(set(codes)) == 1000 and {len(c) for c in codes} == {7}
    assert not any(a != b and b.startswith(a) for a in codes for b in codes[::97])
    # one voucher: the village pays every household a different amount
    lines = [Line("101", credit=sum(range(1, 1001)) * 100)]
    lines += [Line(a.code, debit=(i + 1) * 100, memo=f"H{i + 1:05d}") for i, a in enumerate(accounts)]
    post_voucher(books, date=D, summary="补贴发放", lines=lines)
    books.commit()
    for i, a in enumerate(accounts):  # the service: each household's lines are its own
        got = account_lines(books, descendant_ids(books, a.id))
        assert [(ln.memo, ln.debit) for _v, ln in got] == [(f"H{i + 1:05d}", (i + 1) * 100)]
    login(client, "kuaiji")
    for i in (0, 9, 10, 99, 100, 101, 998, 999):  # the ledger pages, around every change of digits
        _own_lines_only(client, accounts, i)


def test_the_ledger_page_matches_by_the_tree_not_by_prefix(books, client, official):
    """Books made before fixed widths: 113 has 2-digit sub-accounts and a 3-digit 113100. The page
    of 11310 used to show 113100's lines (prefix match); now each shows its own."""
    parent = books.scalar(select(Account).where(Account.code == "113"))
    legacy = {}
    for code in ("11310", "113100"):
        legacy[code] = Account(code=code, name=f"旧户 {code}", kind="asset", parent_id=parent.id)
        books.add(legacy[code])
    books.flush()
    for code in ("11310", "113100"):
        post_voucher(
            books,
            date=D,
            summary=f"借款 {code}",
            lines=[Line(code, debit=100, memo=f"memo-{code}"), Line("101", credit=100)],
        )
    post_voucher(  # last year's loan to 113100: its opening balance, not 11310's
        books,
        date=dt.date(2024, 6, 1),
        summary="去年借款",
        lines=[Line("113100", debit=4_321), Line("101", credit=4_321)],
    )
    books.commit()
    login(client, "kuaiji")
    opening = re.compile(r"Opening balance</td><td class=\"num\">([^<]+)<")
    pages = {c: client.get(f"/coop/accounts/{c}?year=2025&lang=en").get_data(as_text=True) for c in legacy}
    assert opening.search(pages["11310"])[1] == "¥0.00"
    assert opening.search(pages["113100"])[1] == "¥43.21"
    page = client.get("/coop/accounts/11310?year=2025").get_data(as_text=True)
    assert "memo-11310" in page and "memo-113100" not in page
    page = client.get("/coop/accounts/113?year=2025&lang=en").get_data(as_text=True)
    assert "memo-11310" in page and "memo-113100" in page  # the parent shows all its descendants
    assert opening.search(page)[1] == "¥43.21"
    # the parent keeps the width of its existing sub-accounts: the next one is 11311, not 1130001
    assert ensure_account(books, "113", "新户", key="new").code == "11311"
    tb = trial_balance(books, 2025, 3, 3)
    row = {r.code: r for r in tb.rows}
    assert row["11310"].debit == 100 and row["113100"].debit == 100 and row["113"].debit == 200
    order = [r.code for r in tb.rows]
    assert order.index("101") < order.index("113") < order.index("11310") < order.index("113100")


def test_a_full_parent_refuses_clearly(books):
    for i in range(99):
        ensure_account(books, "501", f"项目{i}", key=f"p:{i}")
    assert ensure_account(books, "501", "项目98", key="p:98").code == "50199"
    with pytest.raises(LedgerError, match="account 501 is full: its sub-accounts have 2-digit codes"):
        ensure_account(books, "501", "第一百个")
    assert books.scalar(select(Account).where(Account.code == "501100")) is None


def test_width_is_chosen_once_per_parent(books, households):
    assert ensure_account(books, "112", "甲", width=3).code == "112001"
    assert ensure_account(books, "112", "乙", width=2).code == "112002"  # the parent's width wins
    assert ensure_account(books, "501", "加工厂").code == "50101"  # the chart's usual 2 digits
    # a household's account under another parent is 4 digits wide too
    assert household_account(books, households[0].id, "121").code == "1210001"
    with pytest.raises(LedgerError, match="1 to 6 digits"):
        ensure_account(books, "131", "x", width=9)


def test_the_accounts_page_adds_sub_accounts_and_refuses_a_full_parent(books, client, official):
    login(client, "kuaiji")
    for i in range(99):
        ensure_account(books, "502", f"服务{i}", key=f"s:{i}")
    books.commit()
    r = client.post("/coop/accounts", data={"parent": "502", "name": "又一个"}, follow_redirects=True)
    assert r.status_code == 200
    assert "502" in r.get_data(as_text=True)
    assert books.scalar(select(Account).where(Account.name == "又一个")) is None
    r = client.post("/coop/accounts", data={"parent": "113", "name": "张三"}, follow_redirects=True)
    assert "1130001" in r.get_data(as_text=True)
