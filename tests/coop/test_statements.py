"""The prescribed statements (资产负债表, 收益及收益分配表, 附注), their exports, and the year-end
distribution with retained earnings, the charter's reserve rate and every appropriation.

The hand-built books (fen):

2024  capital 105,000 (cash 5,000, bank 100,000); operating income 20,000; operating expense
      8,000 → surplus 12,000; year-end: reserve 10% = 1,200, members 6,500 (1,000 / 2,000 /
      3,500 by shares 10:20:35), 4,300 kept undistributed.
2025  household 1 takes a 3,000 cash advance (its 113 account: 3,000 - 1,000 = 2,000 debit);
      a receivable of 1,500 other income; a fixed asset of 20,000 with 1,000 depreciation;
      inventory of 4,000 bought on credit (211); a 10,000 subsidy (50301); a 5,000 loan.
"""

from __future__ import annotations

import datetime as dt
import io

import pytest
from sqlalchemy import func, select

from coop import settings as coop_settings
from coop.distribution import plan_fingerprint, post_distribution, preview
from coop.ledger import LedgerError, ensure_account, household_account, is_closed
from coop.models import Account, Distribution, StatementNote, Voucher
from coop.reports import account_balances
from coop.statements import (
    BS_ASSETS,
    BS_LIABILITIES,
    StatementError,
    balance_sheet,
    covered_codes,
    income_statement,
    notes,
    save_note,
)
from core import clock
from core.models import AuditEntry
from tests.conftest import login
from tests.coop.conftest import close_through, post


def _build_hand_books(books, households):
    s = books
    post(s, dt.date(2024, 1, 5), "建账", ("101", 500_000, 0), ("102", 10_000_000, 0), ("301", 0, 10_500_000))
    post(s, dt.date(2024, 3, 1), "经营收入", ("102", 2_000_000, 0), ("501", 0, 2_000_000))
    post(s, dt.date(2024, 4, 1), "经营支出", ("511", 800_000, 0), ("102", 0, 800_000))
    close_through(s, 2023, 12)
    post_distribution(s, 2024, members_amount=650_000)
    hh1 = household_account(s, households[0].id).code
    subsidy = ensure_account(s, "503", "村级组织运转经费", key="subsidy:operations").code
    supplier = ensure_account(s, "211", "县供销社", key="payable:supply-coop").code
    post(s, dt.date(2025, 2, 1), "借支", (hh1, 300_000, 0), ("101", 0, 300_000))
    post(s, dt.date(2025, 3, 1), "应收租金", ("112", 150_000, 0), ("504", 0, 150_000))
    post(s, dt.date(2025, 4, 1), "购置农机", ("151", 2_000_000, 0), ("102", 0, 2_000_000))
    post(s, dt.date(2025, 4, 30), "计提折旧", ("513", 100_000, 0), ("152", 0, 100_000))
    post(s, dt.date(2025, 5, 1), "赊购物资", ("121", 400_000, 0), (supplier, 0, 400_000))
    post(s, dt.date(2025, 6, 1), "运转经费补助", ("102", 1_000_000, 0), (subsidy, 0, 1_000_000))
    post(s, dt.date(2025, 7, 1), "短期借款", ("102", 500_000, 0), ("201", 0, 500_000))
    s.commit()
    return s


@pytest.fixture
def hand_books(books, households, snapshot):
    return snapshot("hand_books", lambda: _build_hand_books(books, households))


def _col(st, key):
    line = st.line(key)
    return tuple(line.amounts)


# ---------------------------------------------------------------- balance sheet


def test_balance_sheet_lines_by_hand(hand_books):
    bs = balance_sheet(hand_books, 2025, 12)
    assert bs.date == "2025-12-31"
    # (年初数, 期末数)
    assert _col(bs, "cash") == (11_700_000, 10_900_000)  # 101 + 102
    assert _col(bs, "receivables") == (0, 350_000)  # 112 1,500 + household 1's debit 2,000
    assert _col(bs, "inventory") == (0, 400_000)
    assert _col(bs, "fixed_cost") == (0, 2_000_000)
    assert _col(bs, "fixed_dep") == (0, 100_000)
    assert _col(bs, "fixed_net") == (0, 1_900_000)
    assert _col(bs, "total_assets") == (11_700_000, 13_550_000)
    assert _col(bs, "short_loans") == (0, 500_000)
    # 211 4,000 + households 2 and 3 owed 2,000 + 3,500 (at the start: all three, 6,500)
    assert _col(bs, "payables") == (650_000, 950_000)
    assert _col(bs, "total_liabilities") == (650_000, 1_450_000)
    assert _col(bs, "capital") == (10_500_000, 10_500_000)
    assert _col(bs, "reserve") == (120_000, 120_000)
    # 322's 4,300 kept, plus 2025's income not yet closed: 10,000 + 1,500 - 1,000
    assert _col(bs, "undistributed") == (430_000, 1_480_000)
    assert _col(bs, "total_equity") == (11_050_000, 12_100_000)
    assert _col(bs, "total_liabilities_equity") == _col(bs, "total_assets")


def test_internal_accounts_split_into_receivables_and_payables(hand_books, households):
    """113's net (-3,500) is never shown as a negative asset: debit and credit sub-accounts split."""
    bs = balance_sheet(hand_books, 2025, 12)
    assert account_balances(hand_books, 2025, 12)["113"] == -350_000
    assert bs.value("receivables") - 150_000 == 200_000
    assert bs.value("payables") - 400_000 == 550_000
    assert all(line.amounts[1] >= 0 for line in bs.lines)


def test_balance_sheet_at_a_month_end_and_every_account_has_a_line(hand_books):
    bs = balance_sheet(hand_books, 2025, 3)
    assert bs.date == "2025-03-31"
    assert _col(bs, "cash") == (11_700_000, 11_400_000)  # only the advance has left the cash box
    assert bs.value("total_assets") == bs.value("total_liabilities_equity")
    top = {
        a.code
        for a in hand_books.scalars(select(Account).where(Account.parent_id.is_(None)))
        if a.kind in ("asset", "cost", "liability", "equity")
    }
    assert top <= covered_codes()
    assert len({d.key for d in BS_ASSETS + BS_LIABILITIES}) == len(BS_ASSETS + BS_LIABILITIES)


def test_demo_balance_sheet_shows_what_is_owed_to_households_as_a_liability(demo_books, session):
    year = clock.today().year - 1
    dist = session.scalar(select(Distribution).where(Distribution.year == year))
    bs = balance_sheet(session, year, 12)
    assert bs.value("total_liabilities") > 0
    # the households' unpaid parts are in 应付款项 (together with 211's 外来投资分利)
    assert bs.value("payables") >= dist.plan["to_households"]
    assert all(line.amounts[1] >= 0 for line in bs.lines if line.key != "undistributed")
    for column in (0, 1):
        assert bs.value("total_assets", column) == bs.value("total_liabilities_equity", column)
    this = balance_sheet(session, clock.today().year, max(clock.today().month - 1, 1))
    assert this.value("total_assets", 0) == bs.value("total_assets", 1)  # 年初数 = last 期末数


# ---------------------------------------------------------------- income statement


def test_income_statement_this_year_and_last_year(hand_books):
    st = income_statement(hand_books, 2025)
    # (本年数, 上年数)
    assert _col(st, "operating_income") == (0, 2_000_000)
    assert _col(st, "operating_expense") == (0, 800_000)
    assert _col(st, "admin") == (100_000, 0)
    assert _col(st, "operating_surplus") == (-100_000, 1_200_000)
    assert _col(st, "subsidy") == (1_000_000, 0)
    assert _col(st, "other_income") == (150_000, 0)
    assert _col(st, "total_surplus") == (1_050_000, 1_200_000)
    assert _col(st, "net_surplus") == (1_050_000, 1_200_000)
    assert _col(st, "opening") == (430_000, 0)
    assert _col(st, "transfer_in") == (0, 0)
    assert _col(st, "distributable") == (1_480_000, 1_200_000)
    assert _col(st, "app_reserve") == (0, 120_000)
    assert _col(st, "app_members") == (0, 650_000)
    assert _col(st, "closing") == (1_480_000, 430_000)
    # 年末未分配收益 is the balance sheet's 未分配收益
    assert st.value("closing", 1) == balance_sheet(hand_books, 2024, 12).value("undistributed")
    assert st.value("closing", 0) == balance_sheet(hand_books, 2025, 12).value("undistributed")


def test_other_transfers_into_undistributed_are_shown(hand_books):
    """A correction of an earlier year carried straight into 未分配收益 appears as 其他转入."""
    undistributed = hand_books.scalar(select(Account).where(Account.key == "distribution:undistributed"))
    post(
        hand_books,
        dt.date(2025, 8, 1),
        "以前年度损益调整",
        ("101", 20_000, 0),
        (undistributed.code, 0, 20_000),
    )
    st = income_statement(hand_books, 2025)
    assert st.value("transfer_in", 0) == 20_000
    assert st.value("closing", 0) == balance_sheet(hand_books, 2025, 12).value("undistributed") == 1_500_000


# ---------------------------------------------------------------- year-end distribution


def test_distribution_covers_retained_earnings_and_every_appropriation(hand_books, households):
    s = hand_books
    plan = preview(s, 2025, payout_percent=50, outside_investors=50_000, other=30_000, other_note="敬老基金")
    assert plan.prior_undistributed == 430_000  # kept in 2024, now distributable
    assert plan.distributable == 1_480_000
    assert plan.reserve == 105_000  # 10% of this year's 10,500 only
    assert plan.to_households == 662_500  # 50% of (14,800 - 1,050 - 500)
    assert plan.retained == 1_480_000 - 105_000 - 50_000 - 662_500 - 30_000
    post_distribution(
        s,
        2025,
        payout_percent=50,
        outside_investors=50_000,
        other=30_000,
        other_note="敬老基金",
        expected=plan_fingerprint(plan),
    )
    s.commit()
    balances = account_balances(s, 2025, 12)
    outside = s.scalar(select(Account).where(Account.key == "distribution:outside-investors"))
    other = s.scalar(select(Account).where(Account.key == "distribution:other-payable"))
    assert outside.code.startswith("211") and -balances[outside.code] == 50_000
    assert other.code.startswith("211") and -balances[other.code] == 30_000
    assert -balances["311"] == 120_000 + 105_000
    st = income_statement(s, 2025)
    assert [st.value(k, 0) for k in ("app_reserve", "app_outside", "app_members", "app_other")] == [
        105_000,
        50_000,
        662_500,
        30_000,
    ]
    assert st.value("closing", 0) == plan.retained == balance_sheet(s, 2025, 12).value("undistributed")
    assert all(is_closed(s, 2025, m) for m in range(1, 13))


def test_outside_investors_are_credited_to_211_itself_when_it_takes_postings(books, households):
    post(books, dt.date(2025, 3, 1), "收入", ("102", 1_000_000, 0), ("501", 0, 1_000_000))
    post(books, dt.date(2025, 3, 2), "赊购", ("121", 10_000, 0), ("211", 0, 10_000))
    close_through(books, 2024, 12)
    post_distribution(books, 2025, outside_investors=100_000, payout_percent=0)
    assert account_balances(books, 2025, 12)["211"] == -110_000
    assert books.scalar(select(Account).where(Account.key == "distribution:outside-investors")) is None


def test_years_close_in_order(books, households):
    post(books, dt.date(2024, 3, 1), "收入", ("102", 100_000, 0), ("501", 0, 100_000))
    post(books, dt.date(2025, 3, 1), "收入", ("102", 200_000, 0), ("501", 0, 200_000))
    with pytest.raises(LedgerError, match="earlier year"):
        post_distribution(books, 2025)
    books.rollback()
    post(books, dt.date(2024, 3, 1), "收入", ("102", 100_000, 0), ("501", 0, 100_000))
    post(books, dt.date(2025, 3, 1), "收入", ("102", 200_000, 0), ("501", 0, 200_000))
    close_through(books, 2023, 12)
    post_distribution(books, 2024, payout_percent=0)
    plan = preview(books, 2025, payout_percent=0)
    assert (plan.surplus, plan.prior_undistributed) == (200_000, 90_000)
    post_distribution(books, 2025, payout_percent=0)
    assert balance_sheet(books, 2025, 12).value("undistributed") == 90_000 + 180_000


def test_the_reserve_rate_is_the_charters(hand_books):
    coop_settings.update(hand_books, reserve_percent="15")
    plan = preview(hand_books, 2025)
    assert plan.reserve_percent == "15" and plan.reserve == 157_500
    with pytest.raises(TypeError):
        preview(hand_books, 2025, reserve_percent=5)  # no override: the charter decides


def test_appropriations_never_exceed_the_distributable_surplus(hand_books):
    with pytest.raises(LedgerError, match="exceed"):
        preview(hand_books, 2025, payout_percent=100, other=1, other_note="x")
    with pytest.raises(LedgerError, match="exceed"):
        preview(hand_books, 2025, members_amount=1_375_001)
    assert preview(hand_books, 2025, members_amount=1_375_000).retained == 0
    with pytest.raises(LedgerError, match="say what"):
        preview(hand_books, 2025, payout_percent=0, other=100)
    with pytest.raises(LedgerError, match="zero or more"):
        preview(hand_books, 2025, outside_investors=-1)
    with pytest.raises(LedgerError, match="other than 321 and 322"):
        preview(hand_books, 2025, payout_percent=0, other=100, other_note="x", other_account="501")


def _frozen_local(day: dt.date, hour: int, minute: int):
    return clock.frozen(clock.at_local(day, hour, minute))


def test_year_end_is_refused_until_december_has_ended(hand_books):
    with _frozen_local(dt.date(2025, 12, 31), 23, 59):
        preview(hand_books, 2025)  # a preview is always possible
        with pytest.raises(LedgerError, match="from 2026-01-01"):
            post_distribution(hand_books, 2025)
    hand_books.rollback()
    assert hand_books.scalar(select(func.count(Distribution.id)).where(Distribution.year == 2025)) == 0
    with _frozen_local(dt.date(2026, 1, 1), 0, 0):
        post_distribution(hand_books, 2025)
    assert hand_books.scalar(select(func.count(Distribution.id)).where(Distribution.year == 2025)) == 1


def test_year_end_refusal_follows_the_configured_zone(hand_books):
    # 16:30 UTC on 31 December: already 2026 in Shanghai, still 2025 in Berlin
    at = dt.datetime(2025, 12, 31, 16, 30, tzinfo=dt.UTC)
    with clock.using("Europe/Berlin"), clock.frozen(at), pytest.raises(LedgerError, match="Europe/Berlin"):
        post_distribution(hand_books, 2025)
    hand_books.rollback()
    with clock.frozen(at):
        post_distribution(hand_books, 2025)


def test_year_end_refused_on_the_web_and_in_the_cli(client, runner, official, hand_books):
    login(client, "kuaiji")
    with _frozen_local(dt.date(2025, 12, 1), 9, 0):
        page = client.get("/coop/distribution?year=2025").get_data(as_text=True)
        assert 'id="year-not-ended"' in page and "2026-01-01" in page
        assert 'id="post-plan"' not in page
        r = client.post("/coop/distribution?year=2025", data={"payout": "100", "confirm": "yes"})
        assert r.status_code == 400 and "2026-01-01" in r.get_data(as_text=True)
        result = runner.invoke(args=["coop", "year-end", "2025", "--post"])
        assert result.exit_code == 1 and "2026-01-01" in result.output
    assert hand_books.scalar(select(func.count(Distribution.id)).where(Distribution.year == 2025)) == 0
    result = runner.invoke(args=["coop", "year-end", "2025", "--outside", "500", "--payout", "50", "--post"])
    assert result.exit_code == 0, result.output
    assert "reserve ¥1,050.00 (10%, charter)" in result.output
    hand_books.expire_all()
    plan = hand_books.scalar(select(Distribution).where(Distribution.year == 2025)).plan
    assert plan["outside_investors"] == 50_000 and plan["to_households"] == 662_500


def test_the_web_form_previews_and_posts_every_appropriation(client, official, hand_books):
    login(client, "kuaiji")
    query = "year=2025&outside=500&payout=50&other=300&other_note=敬老基金"
    page = client.get(f"/coop/distribution?{query}").get_data(as_text=True)
    assert "¥14,800.00" in page  # distributable, with the 4,300 kept in 2024
    assert "¥6,625.00" in page  # members
    token = page.split('name="fingerprint" value="')[1].split('"')[0]
    form = {
        "outside": "500",
        "payout": "50",
        "other": "300",
        "other_note": "敬老基金",
        "fingerprint": token,
        "confirm": "yes",
    }
    assert client.post("/coop/distribution?year=2025", data={**form, "other": "301"}).status_code == 400
    r = client.post("/coop/distribution?year=2025", data=form)
    assert r.status_code == 302
    hand_books.expire_all()
    plan = hand_books.scalar(select(Distribution).where(Distribution.year == 2025)).plan
    assert (plan["outside_investors"], plan["other"], plan["other_note"]) == (50_000, 30_000, "敬老基金")


def test_the_members_part_can_be_an_amount_and_the_rate_cannot_be_overridden(
    client, runner, official, hand_books
):
    login(client, "kuaiji")
    page = client.get("/coop/distribution?year=2025&members_amount=1000&reserve=5").get_data(as_text=True)
    households = page.split('id="plan-households">')[1].split("<")[0]
    reserve = page.split('id="plan-reserve">')[1].split("<")[0]
    assert (households, reserve) == ("¥1,000.00", "¥1,050.00")  # the charter's 10%, not 5%
    assert runner.invoke(args=["coop", "year-end", "2025", "--reserve", "5"]).exit_code == 2
    result = runner.invoke(args=["coop", "year-end", "2025", "--members", "1,000.00"])
    assert result.exit_code == 0 and "households ¥1,000.00" in result.output


def test_demo_keeps_its_retained_earnings_distributable(demo_books, session):
    last = clock.today().year - 1
    kept = session.scalar(select(Distribution).where(Distribution.year == last)).plan
    assert kept["retained"] > 0 and kept["outside_investors"] == 500_000
    plan = preview(session, clock.today().year)
    assert plan.prior_undistributed == kept["retained"]
    assert plan.distributable == plan.surplus + kept["retained"]


# ---------------------------------------------------------------- notes


def test_notes_list_policies_major_items_contracts_and_subsidies(demo_books, session):
    year = clock.today().year - 1
    n = notes(session, year)
    texts = [p["template"] % p["params"] if p["params"] else p["template"] for p in n.policies]
    assert any(coop_settings.get(session).opening_date.isoformat() in t for t in texts)
    assert any("10%" in t for t in texts)
    assert n.major_items and all(m["amount"] >= 1_000_000 for m in n.major_items)
    assert {"村级组织运转经费补助", "高标准农田建设管护补助"} <= {m["summary"] for m in n.major_items}
    contracts = {c["name"]: c for c in n.contracts}
    assert contracts["土地发包承包费"]["posted"] == 4_800_000  # once a year
    assert contracts["鱼塘租金"]["posted"] == 4 * 300_000  # quarterly
    assert "厂房租金" in contracts and contracts["厂房租金"]["posted"] == 12 * 250_000
    subsidies = {r["name"]: r["amount"] for r in n.subsidies}
    assert subsidies["村级组织运转经费"] == 6_000_000 and subsidies["高标准农田管护补助"] == 3_000_000
    assert n.subsidy_total == 9_000_000
    assert "一事一议" in n.text  # the demo's own note


def test_notes_form_saves_audits_and_refuses_too_long(client, official, books, session):
    login(client, "kuaiji")
    r = client.post("/coop/reports/notes?year=2025", data={"text": "  本年无重大诉讼。\r\n无对外担保。 "})
    assert r.status_code == 302
    page = client.get("/coop/reports/notes?year=2025").get_data(as_text=True)
    assert "本年无重大诉讼。\n无对外担保。" in page
    note = session.scalar(select(StatementNote).where(StatementNote.year == 2025))
    assert note.updated_by == official.id
    entry = session.scalar(select(AuditEntry).where(AuditEntry.action == "statement_note.save"))
    assert entry is not None and entry.user_id == official.id
    r = client.post("/coop/reports/notes?year=2025", data={"text": "长" * 20_001})
    assert r.status_code == 400 and 'id="notes-error"' in r.get_data(as_text=True)
    session.expire_all()
    assert session.scalar(select(StatementNote.text).where(StatementNote.year == 2025)).startswith("本年")
    with pytest.raises(StatementError):
        save_note(session, 1800, "x")


# ---------------------------------------------------------------- pages and exports


def test_statement_pages_print_with_the_organisation_and_unit(client, official, hand_books):
    coop_settings.update(hand_books, name="赵庄村股份经济合作社")
    hand_books.commit()
    login(client, "kuaiji")
    for url in (
        "/coop/reports/balance-sheet?year=2025&month=12",
        "/coop/reports/income-statement?year=2025",
        "/coop/reports/notes?year=2025",
        "/coop/reports/statements?year=2025&month=12",
    ):
        page = client.get(url).get_data(as_text=True)
        assert "赵庄村股份经济合作社" in page and "单位：元" in page, url
        assert 'class="statement-page"' in page and "制表" in page, url
    page = client.get("/coop/reports/balance-sheet?year=2025&month=12&lang=en").get_data(as_text=True)
    assert "Payables" in page and "Unit: yuan" in page
    en = client.get("/coop/reports/balance-sheet?year=2025&month=12&format=csv&lang=en").get_data(
        as_text=True
    )
    assert "Item,Line,Beginning of year,End of period" in en and "Payables,23,6500.00,9500.00" in en
    page = client.get("/coop/reports/statements?year=2025&month=12").get_data(as_text=True)
    assert page.count('class="statement-page"') == 4
    assert "科目余额表" in page and "应付款项" in page and "六、年末未分配收益" in page


def test_exports_are_numbers_with_a_chinese_header(client, official, hand_books):
    from openpyxl import load_workbook

    login(client, "kuaiji")
    text = client.get("/coop/reports/income-statement?year=2025&format=csv").get_data(as_text=True)
    assert text.startswith("\ufeff项目,行次,本年数,上年数")
    assert "二、经营收益,5,-1000.00,12000.00" in text
    r = client.get("/coop/reports/balance-sheet?year=2025&month=12&format=xlsx")
    ws = load_workbook(io.BytesIO(r.data)).active
    rows = list(ws.iter_rows(values_only=True))
    assert rows[0][0] == "资产负债表" and "单位：元" in rows[1]
    assert rows[2] == ("项目", "行次", "年初数", "期末数")
    payables = next(row for row in ws.iter_rows(min_row=4) if row[0].value == "应付款项")
    assert payables[2].value == 6500 and payables[3].value == 9500
    assert isinstance(payables[3].value, int | float) and payables[3].number_format == "#,##0.00"
    r = client.get("/coop/reports/notes?year=2025&format=xlsx")
    assert r.mimetype.endswith("spreadsheetml.sheet")
    assert "补助" in client.get("/coop/reports/notes?year=2025&format=csv").get_data(as_text=True)


def test_disclosure_snapshot_freezes_the_prescribed_statements(demo_books, client, session):
    from coop.models import Disclosure

    d = session.scalar(select(Disclosure).where(Disclosure.status == "approved"))
    bs = d.content["balance_sheet"]
    keys = [line["key"] for line in bs["lines"]]
    assert "payables" in keys and "undistributed" in keys
    payables = next(line for line in bs["lines"] if line["key"] == "payables")
    assert payables["amounts"][1] > 0
    assert bs["total_assets"] == bs["total_liabilities"] + bs["total_equity"]
    st = d.content["income_statement"]
    assert any(line["key"] == "operating_surplus" for line in st["lines"])
    page = client.get(f"/disclosure/{d.id}").get_data(as_text=True)
    assert "应付款项" in page and "二、经营收益" in page and "年初数" in page


def test_vouchers_of_the_demo_year_match_the_statement(demo_books, session):
    """Sanity: the income statement's total surplus is what the vouchers of the year say."""
    year = clock.today().year - 1
    st = income_statement(session, year)
    plan = session.scalar(select(Distribution).where(Distribution.year == year)).plan
    assert st.value("net_surplus", 0) == plan["surplus"]
    assert session.scalar(select(func.count(Voucher.id)).where(Voucher.year == year)) > 100


def test_a_disclosure_frozen_before_the_prescribed_layout_still_renders(client, books):
    from coop.models import Disclosure

    old = {
        "start": "2024-10-01",
        "end": "2024-12-31",
        "income": [],
        "expense": [],
        "total_income": 0,
        "total_expense": 0,
        "surplus": 0,
        "balance_sheet": {
            "date": "2024-12-31",
            "assets": [{"code": "101", "name": "库存现金", "name_en": "Cash", "amount": 12_345}],
            "liabilities": [],
            "equity": [{"code": "301", "name": "资本", "name_en": "Capital", "amount": 12_345}],
            "total_assets": 12_345,
            "total_liabilities": 0,
            "total_equity": 12_345,
        },
        "distribution": None,
        "major_items": [],
        "chain": {"seq": 0, "hash": "0" * 64},
    }
    d = Disclosure(
        year=2024,
        period_kind="quarter",
        period_no=4,
        start=dt.date(2024, 10, 1),
        end=dt.date(2024, 12, 31),
        title="2024年第4季度 财务公开",
        content=old,
        chain_hash="0" * 64,
        status="approved",
    )
    books.add(d)
    books.commit()
    page = client.get(f"/disclosure/{d.id}").get_data(as_text=True)
    assert "库存现金" in page and "123.45" in page
