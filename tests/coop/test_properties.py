"""Property tests (hypothesis): balanced books, exact reversals, exact distributions."""

from __future__ import annotations

import datetime as dt
from fractions import Fraction

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from coop import settings as coop_settings
from coop.distribution import cooperative_plan, preview
from coop.ledger import Line, post_voucher, reverse_voucher
from coop.models import Voucher, VoucherLine
from coop.reports import account_balances, trial_balance
from core.money import allocate

ACCOUNTS = ["101", "102", "112", "121", "201", "211", "301", "501", "502", "503", "511", "513", "514"]
# examples: the profile's (tests/conftest.py), a tenth of it for these database-heavy ones
SETTINGS = settings(
    max_examples=max(5, settings().max_examples // 10),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)

amounts = st.integers(min_value=1, max_value=10**10)


@st.composite
def vouchers(draw):
    """A valid voucher: debit lines and credit lines with equal totals."""
    debits = draw(st.lists(amounts, min_size=1, max_size=4))
    total = sum(debits)
    n_credits = draw(st.integers(min_value=1, max_value=4))
    cuts = (
        sorted(
            draw(
                st.lists(
                    st.integers(min_value=1, max_value=total - 1),
                    min_size=n_credits - 1,
                    max_size=n_credits - 1,
                    unique=True,
                )
            )
        )
        if total > n_credits
        else []
    )
    credits = [b - a for a, b in zip([0, *cuts], [*cuts, total], strict=True)]
    lines = [Line(draw(st.sampled_from(ACCOUNTS)), debit=d) for d in debits]
    others = [a for a in ACCOUNTS if a not in {ln.account for ln in lines}]  # Dr X / Cr X is refused
    lines += [Line(draw(st.sampled_from(others)), credit=c) for c in credits]
    day = draw(st.dates(min_value=dt.date(2023, 1, 1), max_value=dt.date(2025, 12, 31)))
    return day, lines


@SETTINGS
@given(batch=st.lists(vouchers(), min_size=1, max_size=12))
def test_any_valid_vouchers_keep_the_books_balanced(books, batch):
    try:
        for day, lines in batch:
            post_voucher(books, date=day, summary="prop", lines=lines)
        for v_debit, v_credit in books.execute(
            select(func.sum(VoucherLine.debit), func.sum(VoucherLine.credit)).group_by(VoucherLine.voucher_id)
        ):
            assert v_debit == v_credit
        for year in (2023, 2024, 2025):
            tb = trial_balance(books, year, 1, 12)
            assert tb.balanced
        expected: dict[str, int] = {}
        for _day, lines in batch:
            for ln in lines:
                expected[ln.account] = expected.get(ln.account, 0) + ln.debit - ln.credit
        got = account_balances(books, 2025, 12)
        assert {k: v for k, v in got.items() if v} == {k: v for k, v in expected.items() if v}
        numbers = sorted(books.scalars(select(Voucher.number).where(Voucher.year == 2024)))
        assert numbers == list(range(1, len(numbers) + 1))
    finally:
        books.rollback()


@SETTINGS
@given(base=st.lists(vouchers(), min_size=0, max_size=5), extra=st.lists(vouchers(), min_size=1, max_size=5))
def test_reversals_bring_balances_back_exactly(books, base, extra):
    try:
        for day, lines in base:
            post_voucher(books, date=day, summary="base", lines=lines)
        before = account_balances(books, 2026, 12)
        posted = [post_voucher(books, date=day, summary="extra", lines=lines) for day, lines in extra]
        for v in posted:
            reverse_voucher(books, v.id, date=dt.date(2026, 1, 15), preparer_id=None)
        after = account_balances(books, 2026, 12)
        assert {k: v for k, v in after.items() if v} == {k: v for k, v in before.items() if v}
        assert trial_balance(books, 2026, 1, 1).balanced
    finally:
        books.rollback()


@settings(deadline=None)
@given(
    total=st.integers(min_value=0, max_value=10**12),
    weights=st.lists(st.integers(min_value=0, max_value=10**6), min_size=1, max_size=40).filter(
        lambda w: sum(w) > 0
    ),
)
def test_allocation_sums_to_the_pool_and_each_part_is_within_one_fen(total, weights):
    parts = allocate(total, weights)
    assert sum(parts) == total
    for part, w in zip(parts, weights, strict=True):
        exact = Fraction(total * w, sum(weights))
        assert abs(part - exact) < 1


@SETTINGS
@given(
    surplus=st.integers(min_value=1, max_value=10**9),
    shares=st.lists(st.integers(min_value=1, max_value=500), min_size=1, max_size=8),
    reserve=st.integers(min_value=0, max_value=50),
    payout=st.integers(min_value=0, max_value=100),
)
def test_distribution_plan_sums_to_the_pool(books, surplus, shares, reserve, payout):
    from coop import members

    try:
        for i, n in enumerate(shares):
            h = members.add_household(books, code=f"P{i:03d}", head_name=f"户{i}")
            members.issue_shares(books, h.id, n, on=dt.date(2020, 1, 1))
        post_voucher(
            books,
            date=dt.date(2025, 6, 1),
            summary="income",
            lines=[Line("102", debit=surplus), Line("503", credit=surplus)],
        )
        coop_settings.update(books, reserve_percent=str(reserve))
        plan = preview(books, 2025, payout_percent=payout)
        assert plan.surplus == surplus
        assert plan.reserve + plan.to_households + plan.retained == surplus
        assert abs(plan.reserve - Fraction(surplus * reserve, 100)) < 1
        assert sum(plan.parts.values()) == plan.to_households
        total_shares = sum(shares)
        for hid, amount in plan.parts.items():
            exact = Fraction(plan.to_households * plan.shares[hid], total_shares)
            assert abs(amount - exact) < 1
    finally:
        books.rollback()


@settings(deadline=None)
@given(
    pool=st.integers(min_value=0, max_value=10**10),
    members_=st.lists(
        st.tuples(st.integers(min_value=0, max_value=10**7), st.integers(min_value=0, max_value=10**7)),
        min_size=1,
        max_size=15,
    ).filter(lambda m: sum(v for v, _ in m) > 0 and sum(c for _, c in m) > 0),
    volume_percent=st.integers(min_value=60, max_value=100),
)
def test_cooperative_returns_at_least_sixty_percent_by_volume(pool, members_, volume_percent):
    plan = cooperative_plan(
        pool, [(f"m{i}", v, c) for i, (v, c) in enumerate(members_)], volume_percent=volume_percent
    )
    assert sum(p["total"] for p in plan.values()) == pool
    by_volume = sum(p["by_volume"] for p in plan.values())
    assert by_volume * 100 >= pool * 60 - 100
    assert abs(by_volume - Fraction(pool * volume_percent, 100)) < 1
