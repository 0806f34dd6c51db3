"""Year-end closing and the distribution: preview, post, close the year, make up losses."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select

from coop.distribution import close_income, cooperative_plan, plan_fingerprint, post_distribution, preview
from coop.ledger import LedgerError, ensure_account, is_closed
from coop.models import Distribution, Voucher
from coop.reports import account_balances, income_expense, trial_balance
from coop.statements import income_statement
from tests.coop.conftest import close_through, post


@pytest.fixture
def year_2025(books, households):
    mill = ensure_account(books, "501", "粮食加工厂", key="enterprise:mill").code
    post(books, dt.date(2025, 3, 1), "加工费", ("102", 10_000_000, 0), (mill, 0, 10_000_000))
    post(books, dt.date(2025, 3, 18), "运转经费补助", ("102", 3_000_001, 0), ("503", 0, 3_000_001))
    post(books, dt.date(2025, 6, 5), "办公费", ("513", 1_000_000, 0), ("102", 0, 1_000_000))
    close_through(books, 2024, 12)  # months close in order from the books' opening (2020-01)
    books.commit()
    return books


def test_preview_writes_nothing_and_splits_by_shares(year_2025, households):
    plan = preview(year_2025, 2025, payout_percent=100)
    assert year_2025.scalar(select(Voucher).where(Voucher.kind != "normal")) is None
    assert plan.surplus == 12_000_001
    assert plan.reserve == 1_200_000  # 10% of 120,000.01 yuan, largest remainder
    assert plan.to_households == 10_800_001
    # shares 10 : 20 : 35 of 10,800,001 fen = 1,661,538.6 / 3,323,077.2 / 5,815,385.1
    assert plan.parts == {
        str(households[0].id): 1_661_539,
        str(households[1].id): 3_323_077,
        str(households[2].id): 5_815_385,
    }
    assert sum(plan.parts.values()) == plan.to_households


def test_posting_closes_the_year_into_322_and_distributes(year_2025, households):
    plan = preview(year_2025, 2025, payout_percent=60)
    dist = post_distribution(year_2025, 2025, payout_percent=60, expected=plan_fingerprint(plan))
    year_2025.commit()
    balances = account_balances(year_2025, 2025, 12)
    assert balances["501"] == 0 and balances["503"] == 0 and balances["513"] == 0  # income and expense closed
    assert balances["321"] == 0
    assert balances["32201"] == 0  # 各项分配 is zero after closing
    assert -balances["311"] == plan.reserve
    assert -balances["32202"] == plan.retained  # what stays undistributed
    assert -balances["113"] == plan.to_households
    assert dist.plan["parts"] == plan.parts
    assert all(is_closed(year_2025, 2025, m) for m in range(1, 13))
    assert trial_balance(year_2025, 2025).balanced
    # reports still show the year's income and expense (closing entries left out)
    assert income_expense(year_2025, 2025).surplus == 12_000_001
    st = income_statement(year_2025, 2025)
    assert [st.value(k, 0) for k in ("net_surplus", "app_reserve", "app_members", "closing")] == [
        12_000_001,
        plan.reserve,
        plan.to_households,
        plan.retained,
    ]
    with pytest.raises(LedgerError, match="already been posted"):
        post_distribution(year_2025, 2025)


def test_stale_preview_is_refused(year_2025):
    plan = preview(year_2025, 2025)
    post(year_2025, dt.date(2025, 12, 20), "late income", ("101", 500, 0), ("504", 0, 500))
    with pytest.raises(LedgerError, match="changed since the preview"):
        post_distribution(year_2025, 2025, expected=plan_fingerprint(plan))
    year_2025.rollback()
    assert year_2025.scalar(select(Distribution).where(Distribution.year == 2025)) is None


def test_prior_losses_are_made_up_first(books, households):
    post(books, dt.date(2024, 5, 1), "loss", ("513", 500_000, 0), ("102", 0, 500_000))
    close_through(books, 2023, 12)
    post_distribution(books, 2024)
    post(books, dt.date(2025, 5, 1), "income", ("102", 2_000_000, 0), ("503", 0, 2_000_000))
    plan = preview(books, 2025)
    assert plan.prior_undistributed == -500_000
    assert plan.loss_makeup == 500_000 and plan.base == 1_500_000
    assert plan.reserve == 150_000 and plan.to_households == 1_350_000


def test_a_loss_year_distributes_nothing(books, households):
    post(books, dt.date(2025, 5, 1), "loss", ("513", 300_000, 0), ("102", 0, 300_000))
    plan = preview(books, 2025)
    assert plan.surplus == -300_000 and plan.reserve == 0 and plan.to_households == 0
    close_through(books, 2024, 12)
    post_distribution(books, 2025)
    assert account_balances(books, 2025, 12)["32202"] == 300_000  # loss carried forward (debit)


def test_close_income_is_idempotent(year_2025):
    close_income(year_2025, 2025)
    close_income(year_2025, 2025)
    closing = list(year_2025.scalars(select(Voucher).where(Voucher.kind == "closing")))
    assert len(closing) == 2  # income/expense into 321, then 321 into 322


def test_cooperative_plan_needs_sixty_percent_by_volume():
    with pytest.raises(LedgerError, match="60%"):
        cooperative_plan(10_000, [("a", 1, 1)], volume_percent=59)
    plan = cooperative_plan(10_001, [("a", 300, 100), ("b", 100, 300)], volume_percent=60)
    assert plan["a"]["by_volume"] + plan["b"]["by_volume"] == 6_001
    assert sum(p["total"] for p in plan.values()) == 10_001
    assert plan["a"]["by_volume"] == 4_501 and plan["b"]["by_capital"] == 3_000
