"""The officials' pages: access, voucher entry, reversal, members, periods, year end."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import func, select

from coop import settings
from coop.models import Distribution, Household, Period, ShareEvent, Voucher, VoucherDraft
from tests.conftest import csrf_token_from, login
from tests.coop.conftest import close_through, post

YEAR = dt.date.today().year - 1


def test_only_officials_and_admins_see_the_books(client, make_user, books):
    assert client.get("/coop/").status_code == 302  # to the login page
    make_user("farmer1", "farmer")
    login(client, "farmer1")
    assert client.get("/coop/").status_code == 403
    assert client.get("/coop/vouchers/new").status_code == 403
    assert client.get("/disclosure").status_code == 200


def test_every_page_renders_with_the_demo_books(client, demo_books, session):
    login(client, "kuaiji")
    v = session.scalar(select(Voucher).order_by(Voucher.id))
    urls = [
        "/coop/",
        "/coop/vouchers",
        f"/coop/vouchers?year={YEAR}&month=4",
        "/coop/vouchers/new",
        f"/coop/vouchers/{v.id}",
        "/coop/accounts",
        "/coop/accounts/501",
        f"/coop/periods?year={YEAR}",
        f"/coop/periods?year={YEAR + 1}",
        "/coop/corrections",
        f"/coop/reports/trial-balance?year={YEAR}",
        f"/coop/reports/income-expense?year={YEAR}&from=1&to=3",
        f"/coop/reports/balance-sheet?year={YEAR}&month=12",
        f"/coop/reports/income-statement?year={YEAR}",
        f"/coop/reports/income-statement?year={YEAR + 1}&month=3",
        f"/coop/reports/notes?year={YEAR}",
        f"/coop/reports/statements?year={YEAR}&month=12",
        f"/coop/distribution?year={YEAR}&outside=100&payout=50&other=10&other_note=x",
        "/coop/members",
        "/coop/members/1",
        "/coop/enterprises",
        "/coop/enterprises/mugwort?pool=10000.00",
        f"/coop/distribution?year={YEAR}",
        f"/coop/distribution?year={YEAR + 1}",
        "/coop/disclosures",
        "/coop/audit",
        "/disclosure",
    ]
    for lang in ("zh_CN", "en"):
        for url in urls:
            r = client.get(url + ("&" if "?" in url else "?") + f"lang={lang}")
            assert r.status_code == 200, url
    page = client.get(f"/coop/reports/trial-balance?year={YEAR}").get_data(as_text=True)
    assert "科目余额表" in page or "Trial balance" in page
    assert 'class="badge ok"' in page  # balanced


def test_bad_report_parameters_are_400(client, official, books):
    login(client, "kuaiji")
    assert client.get("/coop/reports/trial-balance?year=abc").status_code == 400
    assert client.get("/coop/reports/trial-balance?year=2025&from=5&to=2").status_code == 400
    assert client.get("/coop/reports/balance-sheet?year=2025&month=13").status_code == 400


def test_posting_a_voucher_through_the_form(client, official, books, make_user):
    """The form prepares a draft (制单); another official reviews and posts it (审核并记账)."""
    from coop.models import VoucherDraft

    reviewer = make_user("cunzhang", "official", display_name="赵村长")
    login(client, "kuaiji")
    form = {
        "date": "2025-05-06",
        "summary": "粮食加工厂加工费",
        "attachments": "2",
        "account_0": "101",
        "debit_0": "1,234.50",
        "account_1": "501",
        "credit_1": "1234.5",
    }
    r = client.post("/coop/vouchers/new", data=form)
    assert r.status_code == 302
    assert books.scalar(select(func.count(Voucher.id))) == 0  # a draft is not in the ledger
    draft = books.scalar(select(VoucherDraft))
    assert (draft.total, draft.attachments, draft.preparer_id, draft.status) == (
        123_450,
        2,
        official.id,
        "draft",
    )
    client.post("/logout")
    login(client, "cunzhang")
    r = client.post(f"/coop/drafts/{draft.id}/post", data={"confirm": "yes", "version": "1"})
    assert r.status_code == 302
    v = books.scalar(select(Voucher))
    assert (v.label, v.total, v.attachments) == ("2025-0001", 123_450, 2)
    assert (v.preparer_id, v.approver_id) == (official.id, reviewer.id)
    page = client.get(r.headers["Location"]).get_data(as_text=True)
    assert "2025-0001" in page and "¥1,234.50" in page and v.hash in page and "赵村长" in page


def test_unbalanced_form_is_refused_with_a_clear_message(client, official, books):
    login(client, "kuaiji")
    form = {
        "date": "2025-05-06",
        "summary": "x",
        "account_0": "101",
        "debit_0": "100",
        "account_1": "501",
        "credit_1": "99.99",
    }
    r = client.post("/coop/vouchers/new", data=form)
    assert r.status_code == 400
    text = r.get_data(as_text=True)
    assert "借贷不平：借方合计 100.00 ≠ 贷方合计 99.99（差额 0.01）" in text  # Chinese by default
    assert 'value="99.99"' in text  # the form keeps what was typed
    english = client.post("/coop/vouchers/new?lang=en", data=form).get_data(as_text=True)
    assert "voucher does not balance: debits 100.00 ≠ credits 99.99 (difference 0.01)" in english
    assert books.scalar(select(func.count(Voucher.id))) == 0


def test_reverse_through_the_web(client, official, books, make_user):
    from coop import review

    v = post(books, dt.date(2025, 4, 16), "办公用品（录错）", ("513", 98_000, 0), ("102", 0, 98_000))
    books.commit()
    login(client, "kuaiji")
    r = client.post(f"/coop/vouchers/{v.id}/reverse", data={"date": "2025-04-17"})
    assert r.status_code == 302
    draft = books.scalar(select(VoucherDraft).where(VoucherDraft.reverses_id == v.id))
    review.review_and_post(books, draft.id, reviewer_id=make_user("cunzhang", "official").id)
    books.commit()
    reversal = books.scalar(select(Voucher).where(Voucher.reverses_id == v.id))
    assert reversal.label == "2025-0002"
    r = client.post(f"/coop/vouchers/{v.id}/reverse", data={"date": "2025-04-18"}, follow_redirects=True)
    assert f"凭证 {v.label} 已冲销" in r.get_data(as_text=True)


def test_members_shares_and_transfers(client, official, households, books):
    login(client, "kuaiji")
    client.post(
        "/coop/members",
        data={
            "action": "transfer",
            "from_id": households[0].id,
            "to_id": households[1].id,
            "shares": 4,
            "on": "2025-02-01",
        },
    )
    r = client.post(
        "/coop/members",
        data={
            "action": "transfer",
            "from_id": households[0].id,
            "to_id": households[1].id,
            "shares": 40,
            "on": "2025-02-01",
        },
        follow_redirects=True,
    )
    assert "该户只持有 6 股" in r.get_data(as_text=True)
    client.post("/coop/members", data={"action": "add", "code": "ZZ099", "head_name": "新户", "members": 2})
    page = client.get(f"/coop/members/{households[1].id}").get_data(as_text=True)
    assert '<span id="member-shares">24</span>' in page
    assert books.scalar(select(func.count(ShareEvent.id))) == 5
    assert "ZZ099" in client.get("/coop/members").get_data(as_text=True)


def test_close_a_period_through_the_web(client, official, books):
    close_through(books, 2025, 1)
    books.commit()
    login(client, "kuaiji")
    client.post("/coop/periods?year=2025", data={"month": 2, "confirm": "yes"})
    assert books.scalar(select(Period).where(Period.year == 2025, Period.month == 2)).closed
    r = client.post(
        "/coop/vouchers/new",
        data={
            "date": "2025-02-10",
            "summary": "late",
            "account_0": "101",
            "debit_0": "1",
            "account_1": "501",
            "credit_1": "1",
        },
    )
    assert r.status_code == 400 and "2025-02" in r.get_data(as_text=True)


def test_year_end_preview_then_post(client, official, households, books):
    post(books, dt.date(YEAR, 6, 1), "补助", ("102", 1_000_000, 0), ("503", 0, 1_000_000))
    close_through(books, YEAR - 1, 12)
    books.commit()
    login(client, "kuaiji")
    page = client.get(f"/coop/distribution?year={YEAR}&payout=100").get_data(as_text=True)
    assert "¥1,000.00" in page  # reserve of ¥10,000 surplus
    token = page.split('name="fingerprint" value="')[1].split('"')[0]
    r = client.post(
        f"/coop/distribution?year={YEAR}",
        data={"payout": "100", "fingerprint": token, "confirm": "yes"},
    )
    assert r.status_code == 302
    dist = books.scalar(select(Distribution).where(Distribution.year == YEAR))
    assert dist.year == YEAR and dist.plan["to_households"] == 900_000
    assert 'id="distribution-posted"' in client.get(f"/coop/distribution?year={YEAR}").get_data(as_text=True)


def test_forms_need_a_csrf_token(csrf_app, make_user, books):
    client = csrf_app.test_client()
    make_user("kuaiji2", "official")
    page = client.get("/login").get_data(as_text=True)
    client.post(
        "/login",
        data={"username": "kuaiji2", "password": "correct-horse-9", "csrf_token": csrf_token_from(page)},
    )
    form = {
        "date": "2025-05-06",
        "summary": "x",
        "account_0": "101",
        "debit_0": "1",
        "account_1": "501",
        "credit_1": "1",
    }
    assert client.post("/coop/vouchers/new", data=form).status_code == 400
    assert books.scalar(select(func.count(Voucher.id))) == 0
    token = csrf_token_from(client.get("/coop/vouchers/new").get_data(as_text=True))
    assert client.post("/coop/vouchers/new", data={**form, "csrf_token": token}).status_code == 302


def test_recurring_entries_post_on_schedule_once(runner, books, official):
    from coop.ledger import get_account
    from coop.members import add_enterprise
    from coop.models import RecurringEntry

    pond = add_enterprise(books, "fish-pond", "鱼塘租赁", kind="contract")
    books.add(
        RecurringEntry(
            name="鱼塘租金",
            debit_account_id=get_account(books, "102").id,
            credit_account_id=pond.income_account_id,
            amount=300_000,
            every_months=3,
            day=31,
            start=dt.date(2025, 1, 31),
        )
    )
    settings.update(books, opening_date=dt.date(2025, 4, 1))  # the books open after the first due date
    books.commit()
    assert runner.invoke(args=["coop", "close-period", "2025-04", "--user", "kuaiji"]).exit_code == 0
    result = runner.invoke(args=["coop", "recurring", "--until", "2025-08-15"])
    assert result.exit_code == 0, result.output
    # 2025-01-31 is before the opening, 2025-04-30 in closed April: both reported, not posted
    assert "1 voucher(s) posted, 2 skipped" in result.output
    assert "skipped 鱼塘租金 2025-01-31: due before the books' opening date" in result.output
    assert "skipped 鱼塘租金 2025-04-30: due in a closed period" in result.output
    again = runner.invoke(args=["coop", "recurring", "--until", "2025-08-15"]).output
    assert "0 voucher(s) posted" in again
    dates = sorted(books.scalars(select(Voucher.date)))
    assert dates == [dt.date(2025, 7, 31)]
    assert (
        runner.invoke(args=["coop", "close-period", "2025-04", "--user", "kuaiji"]).exit_code != 0
    )  # already closed


def test_an_official_corrects_a_household_and_the_change_is_audited(client, official, households, session):
    from coop.models import Household
    from core.models import AuditEntry

    login(client, "kuaiji")
    h = households[0]
    response = client.post(
        f"/coop/members/{h.id}",
        data={
            "head_name": "赵新户主",
            "members": "5",
            "phone": "13800000000",
            "address": "赵庄村2组8号",
            "active": "on",
        },
    )
    assert response.status_code == 302
    session.expire_all()
    saved = session.get(Household, h.id)
    assert (saved.head_name, saved.members, saved.phone, saved.active) == ("赵新户主", 5, "13800000000", True)
    entry = session.scalar(select(AuditEntry).where(AuditEntry.action == "household.update"))
    assert entry is not None and entry.details["head_name"][1] == "赵新户主"
    page = client.get(f"/coop/members/{h.id}").get_data(as_text=True)
    assert "赵新户主" in page and "household.update" in page

    # a bad form changes nothing and says why
    html = client.post(
        f"/coop/members/{h.id}", data={"head_name": "", "members": "5"}, follow_redirects=True
    ).get_data(as_text=True)
    session.expire_all()
    assert session.get(Household, h.id).head_name == "赵新户主"
    assert 'class="flash error"' in html and "户主不能为空" in html


def test_register_dates_are_real_days(client, official, households, books):
    """Found by review: a share issue dated 1900-01-01 and households joined 0001-01-01 or 9999-12-31."""
    login(client, "kuaiji")
    before = books.scalar(select(func.count(ShareEvent.id)))
    for day in ("1900-01-01", "9999-12-31"):
        client.post(
            "/coop/members",
            data={"action": "issue", "household_id": households[0].id, "shares": "5", "on": day},
        )
        client.post(
            "/coop/members", data={"action": "add", "code": f"X{day[:4]}", "head_name": "x", "on": day}
        )
    assert books.scalar(select(func.count(ShareEvent.id))) == before
    assert books.scalar(select(func.count(Household.id))) == len(households)
