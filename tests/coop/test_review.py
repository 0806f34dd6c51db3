"""Preparing and reviewing (制单 / 审核): drafts, the review queue, vouchers posted at once, and the
cash-below-zero warning — through the service and the web form."""

from __future__ import annotations

import datetime as dt
import threading

import pytest
from sqlalchemy import func, select

from coop import reports, review
from coop.ledger import LedgerError, Line, chain_head, get_account
from coop.models import Voucher, VoucherDraft, VoucherReview
from core.db import make_session_factory
from tests.conftest import login
from tests.coop.conftest import close_through, post

DAY = dt.date(2025, 3, 10)
INCOME = [Line("101", debit=50_000), Line("501", credit=50_000)]


@pytest.fixture
def reviewer(make_user):
    return make_user("cunzhang", "official", display_name="赵村长")


@pytest.fixture
def licai(make_user):
    return make_user("licai", "oversight", display_name="李理财")


def _draft(session, user, lines=INCOME, day=DAY, summary="收到承包费"):
    d = review.prepare(session, date=day, summary=summary, lines=lines, preparer_id=user.id, attachments=1)
    session.commit()
    return d


def _vouchers(session) -> int:
    return session.scalar(select(func.count(Voucher.id)))


# ---------------------------------------------------------------- the service


def test_a_draft_is_in_no_report_and_not_in_the_chain(books, official):
    head = chain_head(books)
    d = _draft(books, official)
    assert d.status == "draft" and d.total == 50_000
    assert _vouchers(books) == 0 and chain_head(books) == head
    assert reports.account_balances(books, 2025, 12).get("101", 0) == 0
    assert reports.income_expense(books, 2025, 1, 12).total_income == 0
    tb = reports.trial_balance(books, 2025, 1, 12)
    assert all(r.debit == 0 and r.credit == 0 for r in tb.rows)


def test_the_preparer_cannot_review_their_own_draft(books, official, reviewer):
    d = _draft(books, official)
    with pytest.raises(review.ReviewError, match="another official"):
        review.review_and_post(books, d.id, reviewer_id=official.id)
    books.rollback()
    assert _vouchers(books) == 0 and books.get(VoucherDraft, d.id).status == "draft"
    v = review.review_and_post(books, d.id, reviewer_id=reviewer.id)
    books.commit()
    assert (v.preparer_id, v.approver_id, v.total) == (official.id, reviewer.id, 50_000)
    assert (v.source, v.source_ref) == ("draft", str(d.id))
    books.expire_all()
    d = books.get(VoucherDraft, d.id)
    assert (d.status, d.voucher_id, d.reviewer_id) == ("posted", v.id, reviewer.id)
    assert reports.account_balances(books, 2025, 12)["101"] == 50_000
    assert review.is_reviewed(books, v)


def test_a_draft_is_posted_once(books, official, reviewer, make_user):
    other = make_user("zhuren", "official")
    d = _draft(books, official)
    review.review_and_post(books, d.id, reviewer_id=reviewer.id)
    books.commit()
    with pytest.raises(review.ReviewError, match="already been posted"):
        review.review_and_post(books, d.id, reviewer_id=other.id)
    books.rollback()
    with pytest.raises(review.ReviewError, match="already been posted"):
        review.discard(books, d.id, user_id=official.id)
    books.rollback()
    assert _vouchers(books) == 1


def test_two_reviewers_at_once_post_the_draft_once(books, official, reviewer, make_user, engine):
    """Both sessions see a draft; only one posting survives, the other is refused with a reason."""
    other = make_user("zhuren", "official")
    d = _draft(books, official)
    factory = make_session_factory(engine)
    sessions = [factory(), factory()]
    for s in sessions:
        assert s.get(VoucherDraft, d.id).status == "draft"  # both loaded it before either posts
    outcomes: list[str] = []
    barrier = threading.Barrier(2)

    def run(s, user_id):
        barrier.wait()
        try:
            review.review_and_post(s, d.id, reviewer_id=user_id)
            s.commit()
            outcomes.append("posted")
        except LedgerError as exc:
            s.rollback()
            outcomes.append(f"refused: {exc}")

    threads = [
        threading.Thread(target=run, args=(sessions[0], reviewer.id)),
        threading.Thread(target=run, args=(sessions[1], other.id)),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for s in sessions:
        s.close()
    assert sorted(outcomes)[0] == "posted" and outcomes.count("posted") == 1, outcomes
    assert "already been posted" in sorted(outcomes)[1]
    books.expire_all()
    assert _vouchers(books) == 1


def test_a_discarded_draft_cannot_be_posted_or_changed(books, official, reviewer):
    d = _draft(books, official)
    review.discard(books, d.id, user_id=official.id)
    books.commit()
    with pytest.raises(review.ReviewError, match="discarded"):
        review.review_and_post(books, d.id, reviewer_id=reviewer.id)
    books.rollback()
    with pytest.raises(review.ReviewError, match="discarded"):
        review.update(books, d.id, user_id=official.id, date=DAY, summary="x", lines=INCOME)
    books.rollback()
    assert _vouchers(books) == 0


def test_only_the_preparer_changes_a_draft(books, official, reviewer):
    d = _draft(books, official)
    with pytest.raises(review.ReviewError, match="only the preparer"):
        review.update(books, d.id, user_id=reviewer.id, date=DAY, summary="改", lines=INCOME)
    books.rollback()
    review.update(
        books,
        d.id,
        user_id=official.id,
        date=dt.date(2025, 3, 11),
        summary="收到承包费（更正）",
        lines=[Line("101", debit=60_000), Line("501", credit=60_000)],
    )
    books.commit()
    books.expire_all()
    d = books.get(VoucherDraft, d.id)
    assert (d.summary, d.total, d.date) == ("收到承包费（更正）", 60_000, dt.date(2025, 3, 11))


def test_drafts_are_checked_on_saving_and_again_on_posting(books, official, reviewer):
    with pytest.raises(LedgerError, match="does not balance"):
        review.prepare(
            books,
            date=DAY,
            summary="x",
            lines=[Line("101", debit=100), Line("501", credit=99)],
            preparer_id=official.id,
        )
    books.rollback()
    assert books.scalar(select(func.count(VoucherDraft.id))) == 0
    d = _draft(books, official)
    close_through(books, 2025, 3)  # the books moved since it was saved
    books.commit()
    with pytest.raises(LedgerError, match="closed"):
        review.review_and_post(books, d.id, reviewer_id=reviewer.id)
    books.rollback()
    assert books.get(VoucherDraft, d.id).status == "draft" and _vouchers(books) == 0


@pytest.mark.parametrize("role", ["oversight", "farmer", "customer"])
def test_only_officials_prepare_and_review(books, official, make_user, role):
    someone = make_user("someone", role)
    with pytest.raises(review.ReviewError):
        review.prepare(books, date=DAY, summary="x", lines=INCOME, preparer_id=someone.id)
    books.rollback()
    d = _draft(books, official)
    with pytest.raises(review.ReviewError):
        review.review_and_post(books, d.id, reviewer_id=someone.id)
    books.rollback()
    v = post(books, DAY, "system", ("101", 100, 0), ("501", 0, 100))
    books.commit()
    with pytest.raises(review.ReviewError):
        review.mark_reviewed(books, v.id, reviewer_id=someone.id)
    books.rollback()
    assert not review.is_reviewed(books, v)


# ---------------------------------------------------------------- vouchers posted at once


def test_vouchers_posted_at_once_wait_for_a_review_by_someone_else(books, official, reviewer):
    shop = post(books, DAY, "网店销售", ("101", 2_070, 0), ("501", 0, 2_070), source="shop", source_ref="o1")
    mine = post(books, DAY, "冲销", ("501", 100, 0), ("101", 0, 100), preparer_id=official.id)
    signed = post(
        books,
        DAY,
        "已审核",
        ("101", 100, 0),
        ("501", 0, 100),
        preparer_id=official.id,
        approver_id=reviewer.id,
    )
    books.commit()
    assert [v.id for v in review.unreviewed_vouchers(books)] == [shop.id, mine.id]
    assert review.unreviewed_count(books, DAY, DAY) == 2
    assert review.unreviewed_count(books, dt.date(2025, 4, 1), dt.date(2025, 4, 30)) == 0
    assert review.is_reviewed(books, signed)
    assert review.unreviewed_among(books, [shop.id, mine.id, signed.id]) == {shop.id, mine.id}
    with pytest.raises(review.ReviewError, match="another official"):
        review.mark_reviewed(books, mine.id, reviewer_id=official.id)
    books.rollback()
    review.mark_reviewed(books, mine.id, reviewer_id=reviewer.id)
    review.mark_reviewed(books, shop.id, reviewer_id=official.id)  # the system prepared it
    books.commit()
    with pytest.raises(review.ReviewError, match="already been reviewed"):
        review.mark_reviewed(books, shop.id, reviewer_id=reviewer.id)
    books.rollback()
    assert review.unreviewed_count(books) == 0
    assert review.review_of(books, shop)[0] == official.id
    assert books.scalar(select(func.count(VoucherReview.id))) == 2


def test_recurring_entries_from_the_cli_land_in_the_queue(runner, books, official):
    from coop.models import RecurringEntry

    books.add(
        RecurringEntry(
            name="厂房租金",
            debit_account_id=get_account(books, "102").id,
            credit_account_id=get_account(books, "501").id,
            amount=250_000,
            every_months=1,
            day=1,
            start=dt.date(2025, 1, 1),
            end=dt.date(2025, 2, 28),
        )
    )
    books.commit()
    result = runner.invoke(args=["coop", "recurring", "--until", "2025-03-01"])
    assert result.exit_code == 0, result.output
    books.expire_all()
    assert review.unreviewed_count(books, dt.date(2025, 1, 1), dt.date(2025, 2, 28)) == 2


# ---------------------------------------------------------------- cash below zero


def test_paying_more_cash_than_the_box_holds_warns_but_saves(books, official):
    post(books, DAY, "现金收入", ("101", 30_000, 0), ("501", 0, 30_000))
    books.commit()
    ok = _draft(
        books, official, lines=[Line("513", debit=30_000), Line("101", credit=30_000)], summary="办公费"
    )
    assert not ok.cash_warning and ok.warnings == []
    short = _draft(
        books, official, lines=[Line("513", debit=30_001), Line("101", credit=30_001)], summary="超支"
    )
    assert short.cash_warning and short.status == "draft"
    assert short.warnings == [{"code": "101", "name": "库存现金", "after": -1}]
    # receipts into the bank do not warn; a later payment that empties the bank does
    assert not _draft(books, official, lines=[Line("102", debit=1), Line("501", credit=1)]).cash_warning


def test_a_bank_sub_account_below_zero_warns_and_later_postings_count(books, official):
    from coop.ledger import ensure_account

    sub = ensure_account(books, "102", "农商银行", key="bank:rcc").code
    post(books, dt.date(2025, 2, 1), "存入", (sub, 100_000, 0), ("501", 0, 100_000))
    post(books, dt.date(2025, 5, 1), "五月支出", ("513", 80_000, 0), (sub, 0, 80_000))
    books.commit()
    # dated in March the account held ¥1,000, but the May payment leaves only ¥200 now
    d = _draft(books, official, lines=[Line("513", debit=50_000), Line(sub, credit=50_000)])
    assert d.cash_warning
    assert {w["code"] for w in d.warnings} == {sub, "102"}
    assert min(w["after"] for w in d.warnings) == -30_000


# ---------------------------------------------------------------- the web


def _voucher_form(**over):
    form = {
        "date": "2025-03-10",
        "summary": "现金购买水泥",
        "attachments": "1",
        "account_0": "514",
        "debit_0": "800",
        "account_1": "101",
        "credit_1": "800",
    }
    return {**form, **over}


def test_the_form_prepares_a_draft_warns_and_another_official_posts_it(client, books, official, reviewer):
    login(client, "kuaiji")
    r = client.post("/coop/vouchers/new", data=_voucher_form(), follow_redirects=True)
    page = r.get_data(as_text=True)
    assert r.status_code == 200 and _vouchers(books) == 0
    d = books.scalar(select(VoucherDraft))
    assert d.cash_warning
    assert "101" in page and "-800.00" in page  # the preparer is warned on saving
    queue = client.get("/coop/review").get_data(as_text=True)
    assert "cash-warning" in queue and f"/coop/drafts/{d.id}/post" not in queue  # not for the preparer
    r = client.post(
        f"/coop/drafts/{d.id}/post", data={"confirm": "yes", "version": "1"}, follow_redirects=True
    )
    assert 'class="flash error"' in r.get_data(as_text=True) and _vouchers(books) == 0
    client.post("/logout")
    login(client, "cunzhang")
    queue = client.get("/coop/review").get_data(as_text=True)
    assert f"/coop/drafts/{d.id}/post" in queue and "审核并记账" in queue and "cash-warning" in queue
    assert 'id="cash-warning"' in client.get(f"/coop/drafts/{d.id}").get_data(as_text=True)
    r = client.post(f"/coop/drafts/{d.id}/post", data={"confirm": "yes", "version": "1"})
    assert r.status_code == 302
    r2 = client.post(
        f"/coop/drafts/{d.id}/post", data={"confirm": "yes", "version": "1"}, follow_redirects=True
    )  # double submit
    assert "已记账" in r2.get_data(as_text=True) or "already been posted" in r2.get_data(as_text=True)
    assert _vouchers(books) == 1
    v = books.scalar(select(Voucher))
    assert (v.preparer_id, v.approver_id) == (official.id, reviewer.id)


def test_the_preparer_edits_a_draft_and_nobody_else_can(client, books, official, reviewer):
    d = _draft(books, official)
    login(client, "cunzhang")
    r = client.post(f"/coop/drafts/{d.id}/edit", data=_voucher_form(summary="别人改的"))
    assert r.status_code == 400
    client.post("/logout")
    login(client, "kuaiji")
    page = client.get(f"/coop/drafts/{d.id}/edit").get_data(as_text=True)
    assert 'value="收到承包费"' in page and 'value="500.00"' in page
    r = client.post(f"/coop/drafts/{d.id}/edit", data=_voucher_form(summary="改过的摘要"))
    assert r.status_code == 302
    books.expire_all()
    assert books.get(VoucherDraft, d.id).summary == "改过的摘要"


def test_the_front_page_and_reports_count_what_awaits_review(client, books, official, reviewer):
    _draft(books, official)
    post(books, DAY, "网店销售", ("101", 2_070, 0), ("501", 0, 2_070), source="shop", source_ref="o1")
    books.commit()
    login(client, "cunzhang")
    front = client.get("/coop/").get_data(as_text=True)
    assert 'id="draft-badge"' in front and 'id="unreviewed-badge"' in front
    for url in (
        "/coop/reports/trial-balance?year=2025&from=1&to=12",
        "/coop/reports/balance-sheet?year=2025&month=12",
        "/coop/reports/income-statement?year=2025",
        "/coop/reports/income-expense?year=2025&from=3&to=3",
    ):
        page = client.get(url).get_data(as_text=True)
        assert 'id="unreviewed-note"' in page and "1" in page, url
    assert 'id="unreviewed-note"' not in client.get(
        "/coop/reports/trial-balance?year=2025&from=4&to=12"
    ).get_data(as_text=True)
    v = books.scalar(select(Voucher))
    r = client.post(f"/coop/vouchers/{v.id}/review", data={"next": "/coop/review"})
    assert r.status_code == 302 and r.headers["Location"].endswith("/coop/review")
    books.expire_all()
    assert review.unreviewed_count(books) == 0
    assert 'id="unreviewed-note"' not in client.get("/coop/reports/income-statement?year=2025").get_data(
        as_text=True
    )


def test_the_preparer_cannot_mark_their_own_posted_voucher_reviewed(client, books, official):
    v = post(books, DAY, "冲销", ("501", 100, 0), ("101", 0, 100), preparer_id=official.id)
    books.commit()
    login(client, "kuaiji")
    assert 'id="mark-reviewed"' not in client.get(f"/coop/vouchers/{v.id}").get_data(as_text=True)
    r = client.post(f"/coop/vouchers/{v.id}/review", follow_redirects=True)
    assert 'class="flash error"' in r.get_data(as_text=True)
    assert review.unreviewed_count(books) == 1


def test_discarding_through_the_web_needs_confirmation(client, books, official, reviewer):
    d = _draft(books, official)
    login(client, "kuaiji")
    r = client.post(f"/coop/drafts/{d.id}/discard")
    assert r.status_code == 400 and 'id="confirm-message"' in r.get_data(as_text=True)
    books.expire_all()
    assert books.get(VoucherDraft, d.id).status == "draft"
    client.post(f"/coop/drafts/{d.id}/discard", data={"confirm": "yes"})
    books.expire_all()
    assert books.get(VoucherDraft, d.id).status == "discarded"
    client.post("/logout")
    login(client, "cunzhang")
    r = client.post(
        f"/coop/drafts/{d.id}/post", data={"confirm": "yes", "version": "1"}, follow_redirects=True
    )
    assert 'class="flash error"' in r.get_data(as_text=True) and _vouchers(books) == 0


def test_the_reviewer_posts_the_version_they_saw_not_a_later_edit(books, official, reviewer, client):
    """Found by review: the preparer raised the amount after the reviewer opened the draft."""
    d = _draft(books, official)
    login(client, "cunzhang")
    page = client.get(f"/coop/drafts/{d.id}").get_data(as_text=True)
    seen = page.split('name="version" value="')[1].split('"')[0]
    review.update(
        books,
        d.id,
        user_id=official.id,
        date=DAY,
        summary="收到承包费",
        lines=[Line("102", debit=8_000_000), Line("501", credit=8_000_000)],
    )
    books.commit()
    r = client.post(
        f"/coop/drafts/{d.id}/post", data={"confirm": "yes", "version": seen}, follow_redirects=True
    )
    assert "changed after you opened it" in r.get_data(as_text=True) or "打开" in r.get_data(as_text=True)
    assert _vouchers(books) == 0
    with pytest.raises(LedgerError, match="changed after you opened it"):
        review.review_and_post(books, d.id, reviewer_id=reviewer.id, expected_version=int(seen))
    books.rollback()
    page = client.get(f"/coop/drafts/{d.id}").get_data(as_text=True)
    now = page.split('name="version" value="')[1].split('"')[0]
    assert (
        client.post(f"/coop/drafts/{d.id}/post", data={"confirm": "yes", "version": now}).status_code == 302
    )
    assert books.scalar(select(Voucher.total)) == 8_000_000


def test_a_system_voucher_that_took_cash_below_zero_is_flagged_for_the_reviewer(
    books, official, reviewer, client
):
    """Found by review: only drafts were checked; a refund or recurring entry from an empty cash box
    went to the queue unflagged."""
    from coop.ledger import post_voucher

    post_voucher(
        books,
        date=DAY,
        summary="商城退款（现金）",
        lines=[Line("501", debit=50_000), Line("101", credit=50_000)],
        source="shop",
        source_ref="refund:1",
    )
    post_voucher(
        books,
        date=DAY,
        summary="定期收入",
        lines=[Line("102", debit=10_000), Line("501", credit=10_000)],
        source="recurring",
        source_ref="1:x",
    )
    books.commit()
    login(client, "cunzhang")
    queue = client.get("/coop/review").get_data(as_text=True)
    rows = queue.split('id="posted"')[1].split("</table>")[0].split("<tr>")
    flagged = [r for r in rows if "cash-warning" in r]
    assert len(flagged) == 1 and "商城退款" in flagged[0]
