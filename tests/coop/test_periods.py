"""Periods and dates: the range a voucher may be dated in, months closing in order once ended,
year end only after December, reopening (admin, reason, audit, withdrawn disclosures),
corrections to a closed year, and the reversal rules."""

from __future__ import annotations

import datetime as dt

import pytest
from flask_babel import force_locale, gettext
from sqlalchemy import func, select

from coop import disclosure, settings
from coop.corrections import post_correction
from coop.distribution import post_distribution
from coop.ledger import LedgerError, Line, first_open_day, is_closed, reverse_voucher, verify_chain
from coop.models import Account, Disclosure, Period, Voucher, VoucherDraft
from coop.periods import close_period, next_to_close, reopen_period, year_status
from coop.reports import account_balances, income_expense
from core import clock
from core.models import AuditEntry
from tests.conftest import login
from tests.coop.conftest import close_through, post, publish

SHANGHAI = "Asia/Shanghai"


def frozen_on(day: dt.date, hour: int = 10):
    return clock.frozen(clock.at_local(day, hour))


def pair(amount: int = 100):
    return ("101", amount, 0), ("501", 0, amount)


def vouchers(session) -> int:
    return session.scalar(select(func.count(Voucher.id)))


# ---------------------------------------------------------------- the date range


@pytest.mark.parametrize("day", [dt.date(1, 1, 1), dt.date(1990, 6, 1), dt.date(2019, 12, 31)])
def test_a_voucher_before_the_opening_date_is_refused(books, day):
    with pytest.raises(LedgerError, match="before the books' opening date 2020-01-01") as exc:
        post(books, day, "too early", *pair())
    assert f"from 2020-01-01 to {clock.today().isoformat()}" in str(exc.value)
    assert vouchers(books) == 0
    assert post(books, dt.date(2020, 1, 1), "opening day", *pair()).number == 1


def test_a_future_date_is_refused_beyond_the_grace(books):
    with pytest.raises(LedgerError, match="too far in the future"):
        post(books, dt.date(2099, 1, 1), "far future", *pair())
    tomorrow = clock.today() + dt.timedelta(days=1)
    with pytest.raises(LedgerError, match="too far in the future"):
        post(books, tomorrow, "tomorrow", *pair())
    settings.update(books, future_grace_days=3)
    assert post(books, tomorrow, "tomorrow, within the grace", *pair()).date == tomorrow
    with pytest.raises(LedgerError, match=f"to {(clock.today() + dt.timedelta(days=3)).isoformat()}"):
        post(books, clock.today() + dt.timedelta(days=4), "beyond the grace", *pair())


def test_after_a_year_is_closed_a_voucher_into_it_points_to_the_correction(books, households):
    post(books, dt.date(2025, 5, 1), "income", ("102", 1_000_000, 0), ("503", 0, 1_000_000))
    close_through(books, 2024, 12)
    post_distribution(books, 2025)
    books.commit()
    before = vouchers(books)
    for day in (dt.date(2024, 12, 31), dt.date(2025, 12, 31), dt.date(2025, 3, 1)):
        with pytest.raises(LedgerError, match="closed year.*prior-year adjustment") as exc:
            post(books, day, "late", *pair())
        assert "from 2026-01-01" in str(exc.value)
    assert vouchers(books) == before
    with force_locale("zh_Hans_CN"):
        try:
            post(books, dt.date(2024, 12, 31), "late", *pair())
        except LedgerError as e:
            text = e.translated(gettext)
    assert "以前年度损益调整" in text and "2024" in text and "2026-01-01" in text


def test_the_voucher_form_says_the_rule_and_the_range_in_chinese(client, official, books):
    login(client, "kuaiji")
    close_through(books, 2020, 6)
    books.commit()
    cases = {"0001-01-01": "建账日期", "2020-03-01": "已结账", "2099-01-01": "未来"}
    for day, words in cases.items():
        r = client.post(
            "/coop/vouchers/new",
            data={
                "date": day,
                "summary": "x",
                "account_0": "101",
                "debit_0": "1",
                "account_1": "501",
                "credit_1": "1",
            },
            headers={"Accept-Language": "zh-CN"},
        )
        page = r.get_data(as_text=True)
        assert r.status_code == 400 and words in page and "2020-07-01" in page, day
    assert vouchers(books) == 0


# ---------------------------------------------------------------- closing months


def test_months_close_in_order_once_ended_and_only_once(books):
    assert next_to_close(books) == (2020, 1)
    with pytest.raises(LedgerError, match="close 2020-01 first"):
        close_period(books, 2020, 3)
    with pytest.raises(LedgerError, match="before the books' opening date"):
        close_period(books, 2019, 12)
    close_period(books, 2020, 1)
    with pytest.raises(LedgerError, match="already closed"):
        close_period(books, 2020, 1)
    assert next_to_close(books) == (2020, 2)
    today = clock.today()
    close_through(books, *((today.year, today.month - 1) if today.month > 1 else (today.year - 1, 12)))
    with pytest.raises(LedgerError, match="has not ended yet"):
        close_period(books, today.year, today.month)
    with pytest.raises(LedgerError, match="close"):
        close_period(books, 2027 if today.year < 2027 else today.year + 1, 5)
    assert first_open_day(books) == dt.date(today.year, today.month, 1)


def test_a_month_ends_in_the_configured_zone(session):
    with clock.using(SHANGHAI):
        with frozen_on(dt.date(2026, 1, 31), 23):
            from coop.ledger import load_chart

            load_chart(session, opening=dt.date(2026, 1, 1))
            with pytest.raises(LedgerError, match="can be closed from 2026-02-01"):
                close_period(session, 2026, 1)
        # 00:10 on 1 February in Shanghai is still 31 January in UTC
        with clock.frozen(clock.at_local(dt.date(2026, 2, 1), 0, 10)):
            assert clock.now().astimezone(dt.UTC).date() == dt.date(2026, 1, 31)
            assert close_period(session, 2026, 1).closed


def test_year_end_only_after_december_has_ended(books, households, runner):
    with frozen_on(dt.date(2026, 12, 1)):
        post(books, dt.date(2026, 5, 1), "income", ("102", 100_000, 0), ("503", 0, 100_000))
        close_through(books, 2025, 12)
        books.commit()
        with pytest.raises(LedgerError, match="December 2026 has ended"):
            post_distribution(books, 2026)
        books.rollback()
        result = runner.invoke(args=["coop", "year-end", "2026", "--post"])
        assert result.exit_code != 0 and "December 2026 has ended" in result.output
    assert books.scalar(select(func.count(Voucher.id)).where(Voucher.kind != "normal")) == 0


def test_the_distribution_needs_the_earlier_months_closed(books, households):
    post(books, dt.date(2025, 5, 1), "income", ("102", 100_000, 0), ("503", 0, 100_000))
    with pytest.raises(LedgerError, match="close the months before 2025 first .next: 2020-01"):
        post_distribution(books, 2025)


def test_the_periods_page_shows_the_next_month_and_why_not_the_others(client, official, books):
    close_through(books, 2020, 2)
    books.commit()
    login(client, "kuaiji")
    page = client.get("/coop/periods?year=2020", headers={"Accept-Language": "zh-CN"}).get_data(as_text=True)
    assert "2020-03" in page.split('id="next-period"')[1][:200]
    row3 = page.split('id="period-3"')[1].split("</tr>")[0]
    row4 = page.split('id="period-4"')[1].split("</tr>")[0]
    assert 'name="action" value="close"' in row3
    assert 'value="close"' not in row4 and "2020-03" in row4  # "close 2020-03 first"
    early = client.get("/coop/periods?year=2019", headers={"Accept-Language": "zh-CN"}).get_data(as_text=True)
    assert "建账日期" in early.split('id="period-12"')[1].split("</tr>")[0]
    status = {s.month: s for s in year_status(books, 2020)}
    assert status[2].closed and not status[1].can_reopen and status[2].can_reopen


# ---------------------------------------------------------------- reopening


@pytest.fixture
def admin(make_user):
    return make_user("guanli", "admin")


def _build_published_2020(books, official):
    """2020-01 to 2020-06 closed; disclosures for Q1, Q2 and the month 2020-06 published."""
    post(books, dt.date(2020, 5, 3), "income", ("102", 50_000, 0), ("503", 0, 50_000))
    close_through(books, 2020, 6)
    out = {}
    for kind, n in (("quarter", 1), ("quarter", 2), ("month", 6)):
        d = disclosure.draft(books, 2020, kind, n, user_id=official.id)
        out[(kind, n)] = publish(books, d.id)
    books.commit()
    return out


@pytest.fixture
def published_2020(books, official, snapshot):
    return snapshot("published_2020", lambda: _build_published_2020(books, official))


def test_reopening_needs_an_admin_a_reason_and_the_latest_month(books, official, admin, published_2020):
    with pytest.raises(LedgerError, match="only an administrator"):
        reopen_period(books, 2020, 6, reason="typo", user_id=official.id)
    with pytest.raises(LedgerError, match="only an administrator"):
        reopen_period(books, 2020, 6, reason="typo", user_id=None)
    with pytest.raises(LedgerError, match="give the reason"):
        reopen_period(books, 2020, 6, reason="   ", user_id=admin.id)
    with pytest.raises(LedgerError, match="only the latest closed month .2020-06."):
        reopen_period(books, 2020, 5, reason="typo", user_id=admin.id)
    with pytest.raises(LedgerError, match="not closed"):
        reopen_period(books, 2020, 7, reason="typo", user_id=admin.id)
    assert all(d.status == "approved" for d in published_2020.values())


def test_reopening_records_who_when_why_and_withdraws_the_disclosures_covering_it(
    books, admin, official, published_2020, client
):
    with frozen_on(dt.date(2026, 11, 20)):
        p = reopen_period(books, 2020, 6, reason="漏记6月电费", user_id=admin.id)
    books.commit()
    assert not p.closed and p.reopened_by == admin.id and p.reopen_reason == "漏记6月电费"
    assert clock.local_date(p.reopened_at) == dt.date(2026, 11, 20)
    entry = books.scalar(select(AuditEntry).where(AuditEntry.action == "period.reopen"))
    assert entry is not None and entry.user_id == admin.id and "漏记6月电费" in str(entry.details)
    q1, q2, june = (published_2020[k] for k in (("quarter", 1), ("quarter", 2), ("month", 6)))
    books.expire_all()
    assert q1.status == "approved"  # does not cover June
    assert q2.status == "withdrawn" and june.status == "withdrawn"
    assert q2.withdrawn_by == admin.id and q2.withdraw_reason == "漏记6月电费"
    # June takes vouchers again; May stays closed
    assert post(books, dt.date(2020, 6, 30), "6月电费", ("513", 3_000, 0), ("101", 0, 3_000)).date.month == 6
    with pytest.raises(LedgerError, match="closed period"):
        post(books, dt.date(2020, 5, 31), "late", *pair())
    # the public index and page still show the withdrawn statement, with a notice
    index = client.get("/disclosure", headers={"Accept-Language": "zh-CN"}).get_data(as_text=True)
    assert q2.title in index and "已撤回" in index
    page = client.get(f"/disclosure/{q2.id}", headers={"Accept-Language": "zh-CN"})
    assert page.status_code == 200 and 'id="withdrawn-notice"' in page.get_data(as_text=True)
    assert "漏记6月电费" in page.get_data(as_text=True)
    assert 'id="withdrawn-notice"' not in client.get(f"/disclosure/{q1.id}").get_data(as_text=True)
    # the withdrawn statement is still read-only, and the period can be published afresh
    q2.content = {"total_income": 0}
    with pytest.raises(LedgerError, match="read-only"):
        books.flush()
    books.rollback()
    close_period(books, 2020, 6)
    again = disclosure.draft(books, 2020, "quarter", 2, user_id=official.id)
    assert again.id != q2.id and again.status == "draft"
    publish(books, again.id)
    books.commit()
    assert verify_chain(books).ok  # the withdrawn statement's published head is still checked


def test_the_withdrawal_is_the_only_change_an_approved_disclosure_allows(books, published_2020):
    q2 = published_2020[("quarter", 2)]
    q2.status, q2.withdraw_reason, q2.title = "withdrawn", "x", "changed title"
    with pytest.raises(LedgerError, match="read-only"):
        books.flush()
    books.rollback()
    q2 = books.get(Disclosure, q2.id)
    q2.status = "draft"
    with pytest.raises(LedgerError, match="read-only"):
        books.flush()


def test_a_distributed_year_is_not_reopened(books, households, admin):
    post(books, dt.date(2025, 5, 1), "income", ("102", 100_000, 0), ("503", 0, 100_000))
    close_through(books, 2024, 12)
    post_distribution(books, 2025)
    with pytest.raises(LedgerError, match="distribution has been posted.*prior-year adjustment"):
        reopen_period(books, 2025, 12, reason="late invoice", user_id=admin.id)


def test_reopen_through_the_page_and_the_cli(client, books, official, admin, published_2020, runner):
    login(client, "kuaiji")
    r = client.post(
        "/coop/periods?year=2020", data={"month": 6, "action": "reopen", "reason": "x", "confirm": "yes"}
    )
    assert r.status_code == 302
    assert books.scalar(select(Period).where(Period.year == 2020, Period.month == 6)).closed  # not an admin
    page = client.get("/coop/periods?year=2020").get_data(as_text=True)
    assert 'value="reopen"' not in page
    client.get("/logout")
    login(client, "guanli")
    assert 'value="reopen"' in client.get("/coop/periods?year=2020").get_data(as_text=True)
    r = client.post(
        "/coop/periods?year=2020", data={"month": 6, "action": "reopen", "reason": "", "confirm": "yes"}
    )
    books.expire_all()
    assert books.scalar(select(Period).where(Period.year == 2020, Period.month == 6)).closed  # no reason
    client.post(
        "/coop/periods?year=2020", data={"month": 6, "action": "reopen", "reason": "补记", "confirm": "yes"}
    )
    books.expire_all()
    assert not books.scalar(select(Period).where(Period.year == 2020, Period.month == 6)).closed
    # the CLI: May is now the latest closed month
    result = runner.invoke(args=["coop", "reopen-period", "2020-05", "--reason", "补记", "--user", "kuaiji"])
    assert result.exit_code != 0 and "only an administrator" in result.output
    result = runner.invoke(
        args=["coop", "reopen-period", "2020-05", "--reason", "补记5月", "--user", "guanli"]
    )
    assert result.exit_code == 0, result.output
    assert "reopened 2020-05" in result.output
    books.expire_all()
    assert (
        books.scalar(select(Period).where(Period.year == 2020, Period.month == 5)).reopen_reason == "补记5月"
    )


# ---------------------------------------------------------------- corrections to a closed year


def _build_closed_2025(books, households):
    post(books, dt.date(2025, 5, 1), "income", ("102", 1_000_000, 0), ("503", 0, 1_000_000))
    close_through(books, 2024, 12)
    post_distribution(books, 2025, payout_percent=50)
    books.commit()
    return books


@pytest.fixture
def closed_2025(books, households, snapshot):
    return snapshot("closed_2025", lambda: _build_closed_2025(books, households))


def _bal(session, key: str) -> int:
    account = session.scalar(select(Account).where(Account.key == key))
    return account_balances(session, clock.today().year, clock.today().month).get(account.code, 0)


def test_a_correction_posts_through_the_adjustment_into_undistributed(closed_2025):
    books = closed_2025
    undistributed_before = _bal(books, "distribution:undistributed")
    income_before = income_expense(books, clock.today().year).surplus
    correction, transfer = post_correction(
        books, year=2025, summary="补记2025年存款利息", lines=[Line("102", debit=8_640)]
    )
    assert correction.date == clock.today() and transfer.date == clock.today()
    codes = {ln.account.key or ln.account.code: (ln.debit, ln.credit) for ln in correction.lines}
    assert codes["distribution:prior-year-adjustment"] == (0, 8_640)
    assert _bal(books, "distribution:prior-year-adjustment") == 0  # transferred at once
    assert (
        _bal(books, "distribution:undistributed") == undistributed_before - 8_640
    )  # more undistributed (credit)
    assert income_expense(books, clock.today().year).surplus == income_before  # this year's income untouched
    # a loss: an expense of 2025 found later
    post_correction(books, year=2025, summary="补记2025年电费", lines=[Line("101", credit=3_000)])
    assert _bal(books, "distribution:undistributed") == undistributed_before - 8_640 + 3_000
    assert verify_chain(books).ok


def test_a_correction_is_only_for_a_closed_year_and_in_an_open_period(closed_2025):
    books = closed_2025
    with pytest.raises(LedgerError, match="2026 is not closed"):
        post_correction(books, year=2026, summary="x", lines=[Line("102", debit=100)])
    with pytest.raises(LedgerError, match="later, open period"):
        post_correction(
            books, year=2025, summary="x", lines=[Line("102", debit=100)], date=dt.date(2025, 12, 31)
        )
    with pytest.raises(LedgerError, match="net to zero"):
        post_correction(
            books, year=2025, summary="x", lines=[Line("102", debit=100), Line("101", credit=100)]
        )
    with pytest.raises(LedgerError, match="summary"):
        post_correction(books, year=2025, summary=" ", lines=[Line("102", debit=100)])


def test_corrections_through_the_page_and_the_cli(client, official, closed_2025, runner, make_user):
    books = closed_2025
    login(client, "kuaiji")
    page = client.get("/coop/corrections").get_data(as_text=True)
    assert 'value="2025"' in page
    r = client.post(
        "/coop/corrections",
        data={"year": "2025", "summary": "补记利息", "effect": "gain", "account": "102", "amount": "86.40"},
    )
    assert r.status_code == 302 and "/coop/drafts/" in r.headers["Location"]
    draft = books.scalar(select(VoucherDraft).where(VoucherDraft.correction_year == 2025))
    assert draft.preparer_id == official.id and draft.status == "draft"
    assert not books.scalars(select(Voucher).where(Voucher.source == "correction")).all()  # not yet
    page = client.get(f"/coop/drafts/{draft.id}").get_data(as_text=True)
    assert 'id="correction-note"' in page and "以前年度损益调整" in page  # the adjustment line is shown
    r = client.post(
        f"/coop/drafts/{draft.id}/post", data={"confirm": "yes", "version": "1"}
    )  # the preparer cannot
    assert not books.scalars(select(Voucher).where(Voucher.source == "correction")).all()
    from coop import review

    reviewer = make_user("cunzhang", "official")
    review.review_and_post(books, draft.id, reviewer_id=reviewer.id)
    books.commit()
    posted = books.scalars(select(Voucher).where(Voucher.source == "correction")).all()
    assert len(posted) == 2 and all(v.approver_id == reviewer.id for v in posted)
    assert "补记利息" in client.get("/coop/corrections").get_data(as_text=True)
    r = client.post(
        "/coop/corrections",
        data={"year": "2026", "summary": "x", "effect": "gain", "account": "102", "amount": "1"},
        headers={"Accept-Language": "zh-CN"},
    )
    assert r.status_code == 400 and 'id="correction-error"' in r.get_data(as_text=True)
    result = runner.invoke(
        args=["coop", "correct", "2025", "--account", "101", "--loss", "30", "--summary", "补记电费"]
        + ["--user", "kuaiji"]
    )
    assert result.exit_code == 0, result.output
    assert "another official reviews and posts it" in result.output
    books.expire_all()
    assert books.scalar(select(func.count(VoucherDraft.id)).where(VoucherDraft.correction_year == 2025)) == 2
    assert len(books.scalars(select(Voucher).where(Voucher.source == "correction")).all()) == 2
    assert (
        runner.invoke(args=["coop", "correct", "2025", "--account", "101", "--summary", "x"]).exit_code != 0
    )


# ---------------------------------------------------------------- reversals


def test_a_reversal_is_dated_on_or_after_the_original(books, client, official):
    v = post(books, dt.date(2025, 4, 16), "wrong", *pair())
    books.commit()
    with pytest.raises(LedgerError, match="on or after the voucher it reverses"):
        reverse_voucher(books, v.id, date=dt.date(2025, 4, 15), preparer_id=None)
    login(client, "kuaiji")
    client.post(f"/coop/vouchers/{v.id}/reverse", data={"date": "2025-04-15"})
    assert books.scalar(select(VoucherDraft).where(VoucherDraft.reverses_id == v.id)) is None
    client.post(f"/coop/vouchers/{v.id}/reverse", data={"date": "2025-04-16"})
    assert books.scalar(select(VoucherDraft).where(VoucherDraft.reverses_id == v.id)).date == dt.date(
        2025, 4, 16
    )


def test_a_shop_voucher_is_not_reversed_in_the_books(books, client, official):
    from coop.ledger import post_voucher

    v = post_voucher(
        books,
        date=dt.date(2025, 4, 16),
        summary="商城订单 销售收款",
        lines=[Line("101", debit=500), Line("501", credit=500)],
        source="shop",
        source_ref="payment:1",
    )
    books.commit()
    with pytest.raises(LedgerError, match="through the shop's refund or cancel"):
        reverse_voucher(books, v.id, date=dt.date(2025, 4, 17), preparer_id=None)
    login(client, "kuaiji")
    page = client.get(f"/coop/vouchers/{v.id}").get_data(as_text=True)
    assert 'id="shop-voucher"' in page and "/reverse" not in page
    client.post(f"/coop/vouchers/{v.id}/reverse", data={"date": "2025-04-17", "confirm": "yes"})
    assert books.scalar(select(Voucher).where(Voucher.reverses_id == v.id)) is None


# ---------------------------------------------------------------- the demo


def test_the_demo_closes_months_in_order_and_shows_a_correction(client, demo_books, session):
    today = clock.today()
    closed = sorted((p.year, p.month) for p in session.scalars(select(Period).where(Period.closed.is_(True))))
    expected, ym = [], (today.year - 1, 1)
    while ym < (today.year, today.month - 1):  # last year, then this year up to the month before last
        expected.append(ym)
        ym = (ym[0] + 1, 1) if ym[1] == 12 else (ym[0], ym[1] + 1)
    assert closed == expected
    rows = session.scalars(select(Voucher).where(Voucher.source == "correction")).all()
    assert len(rows) == 2 and all(v.date == today for v in rows)
    login(client, "kuaiji")
    assert "补记上年12月银行存款利息" in client.get("/coop/corrections").get_data(as_text=True)
    page = client.get(f"/coop/periods?year={today.year}").get_data(as_text=True)
    assert 'id="next-period"' in page
    assert verify_chain(session).ok


@pytest.mark.parametrize(
    "data",
    [
        {"year": "abc", "effect": "gain", "account": "102", "amount": "1", "summary": "x"},
        {"year": "2025", "effect": "sideways", "account": "102", "amount": "1", "summary": "x"},
        {"year": "2025", "effect": "gain", "account": "", "amount": "1", "summary": "x"},
        {"year": "2025", "effect": "gain", "account": "102", "amount": "一百", "summary": "x"},
        {
            "year": "2025",
            "effect": "gain",
            "account": "102",
            "amount": "1",
            "summary": "x",
            "date": "2025-02-30",
        },
        {"year": "99999999999", "effect": "loss", "account": "102", "amount": "-5", "summary": ""},
    ],
)
def test_hostile_correction_forms_are_refused_with_a_message(client, official, closed_2025, data):
    login(client, "kuaiji")
    r = client.post("/coop/corrections", data=data)
    assert r.status_code == 400 and 'id="correction-error"' in r.get_data(as_text=True)
    assert closed_2025.scalar(select(func.count(Voucher.id)).where(Voucher.source == "correction")) == 0


@pytest.mark.parametrize("month", ["0", "13", "x", "", "2020-01"])
def test_hostile_period_forms_never_fail(client, official, books, month):
    login(client, "kuaiji")
    for action in ("close", "reopen"):
        r = client.post(
            "/coop/periods?year=2020",
            data={"month": month, "action": action, "reason": "x", "confirm": "yes"},
        )
        assert r.status_code == 302
    assert books.scalar(select(func.count(Period.id))) == 0


# ---------------------------------------------------------------- found by review


def test_december_closes_only_with_the_year_end(books, client, official):
    close_through(books, 2024, 11)
    books.commit()
    with pytest.raises(LedgerError, match="closes with the year-end"):
        close_period(books, 2024, 12)
    books.rollback()
    login(client, "kuaiji")
    page = client.get("/coop/periods?year=2024").get_data(as_text=True)
    assert 'value="12"' not in page.split('id="period-12"')[1].split("</tr>")[0]  # no Close button
    client.post("/coop/periods?year=2024", data={"month": "12", "action": "close", "confirm": "yes"})
    assert not is_closed(books, 2024, 12)
    post_distribution(books, 2024, payout_percent=0)  # the year-end closes December
    assert is_closed(books, 2024, 12)


def test_only_an_official_closes_a_period(books, make_user):
    farmer = make_user("zhaolin", "farmer")
    with pytest.raises(LedgerError, match="only an official"):
        close_period(books, 2020, 1, user_id=farmer.id)


def test_a_month_closed_while_a_posting_waits_for_the_lock_refuses_it(books, engine, monkeypatch):
    """The posting validated its date before the lock; a close committed in between must win."""
    from coop import ledger
    from core.db import make_session_factory

    close_through(books, 2020, 5)
    books.commit()
    original = ledger.lock_head

    def close_first(session):
        with make_session_factory(engine)() as other:  # another official closes June meanwhile
            close_period(other, 2020, 6)
            other.commit()
        return original(session)

    monkeypatch.setattr(ledger, "lock_head", close_first)
    with pytest.raises(LedgerError, match="closed"):
        post(books, dt.date(2020, 6, 20), "late", *pair())
    books.rollback()
    monkeypatch.setattr(ledger, "lock_head", original)
    assert books.scalar(select(func.count(Voucher.id))) == 0
    assert verify_chain(books).ok


def test_a_correction_never_touches_this_years_income_or_expense(closed_2025, official):
    """Found by review: a correction on 51302 moved this year's 管理费用 and the year-end base."""
    from coop import review

    for code in ("513", "504", "321"):
        with pytest.raises(LedgerError, match="balance-sheet accounts"):
            review.prepare(
                closed_2025,
                date=clock.today(),
                summary="x",
                lines=[Line(code, credit=100_000)],
                preparer_id=official.id,
                correction_year=2025,
            )
        closed_2025.rollback()


def test_a_reason_of_invisible_characters_is_no_reason(books, make_user):
    admin = make_user("guanli2", "admin")
    close_through(books, 2020, 6)
    for reason in ("\u200b", " \u3000 ", "\u200d\u2060"):
        with pytest.raises(LedgerError, match="reason"):
            reopen_period(books, 2020, 6, reason=reason, user_id=admin.id)
        books.rollback()
