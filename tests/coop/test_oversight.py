"""The 民主理财小组 (role "oversight"), the three steps of a disclosure, the role matrix of the books,
and the confirmations every irreversible action asks for."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import func, select

from coop import disclosure, review
from coop.ledger import LedgerError, Line
from coop.models import Disclosure, Distribution, Period, Voucher, VoucherDraft
from core.models import ROLES
from tests.conftest import login
from tests.coop.conftest import close_through, post

YEAR = dt.date.today().year - 1


@pytest.fixture
def people(make_user, books):
    post(books, dt.date(2025, 1, 10), "鱼塘租金", ("102", 300_000, 0), ("501", 0, 300_000))
    books.commit()
    return {
        "kuaiji": make_user("kuaiji", "official", display_name="赵会计"),
        "cunzhang": make_user("cunzhang", "official", display_name="赵村长"),
        "licai": make_user("licai", "oversight", display_name="李理财"),
        "admin": make_user("admin", "admin", display_name="管理员"),
        "farmer": make_user("farmer", "farmer"),
        "customer": make_user("customer", "customer"),
    }


def test_oversight_is_a_role():
    assert "oversight" in ROLES


# ---------------------------------------------------------------- disclosure: three steps


def test_a_disclosure_is_drafted_signed_off_and_approved_by_three_people(books, people):
    kuaiji, cunzhang, licai = people["kuaiji"], people["cunzhang"], people["licai"]
    close_through(books, 2025, 3)  # only closed months are disclosed
    d = disclosure.draft(books, 2025, "quarter", 1, user_id=kuaiji.id)
    books.commit()
    with pytest.raises(LedgerError, match="sign this disclosure off"):
        disclosure.approve(books, d.id, user_id=cunzhang.id)  # not signed off yet
    books.rollback()
    for user in (kuaiji, cunzhang, people["admin"], people["farmer"]):
        with pytest.raises(LedgerError, match="oversight"):
            disclosure.sign_off(books, d.id, user_id=user.id)  # officials cannot sign off as oversight
        books.rollback()
    disclosure.sign_off(books, d.id, user_id=licai.id)
    books.commit()
    with pytest.raises(LedgerError, match="already been signed off"):
        disclosure.sign_off(books, d.id, user_id=licai.id)
    books.rollback()
    with pytest.raises(LedgerError, match="only an official"):
        disclosure.approve(books, d.id, user_id=licai.id)  # oversight cannot approve
    books.rollback()
    with pytest.raises(LedgerError, match="you drafted"):
        disclosure.approve(books, d.id, user_id=kuaiji.id)  # nor the drafter
    books.rollback()
    disclosure.approve(books, d.id, user_id=cunzhang.id)
    books.commit()
    books.expire_all()
    d = books.get(Disclosure, d.id)
    assert (d.status, d.created_by, d.signed_off_by, d.approved_by) == (
        "approved",
        kuaiji.id,
        licai.id,
        cunzhang.id,
    )
    assert d.created_at <= d.signed_off_at <= d.approved_at


def test_refreshing_a_signed_off_draft_needs_a_new_sign_off(books, people):
    close_through(books, 2025, 3)  # only closed months are disclosed
    d = disclosure.draft(books, 2025, "quarter", 1, user_id=people["kuaiji"].id)
    disclosure.sign_off(books, d.id, user_id=people["licai"].id)
    books.commit()
    disclosure.draft(books, 2025, "quarter", 1, user_id=people["kuaiji"].id)  # refreshed
    books.commit()
    books.expire_all()
    d = books.get(Disclosure, d.id)
    assert (d.status, d.signed_off_by) == ("draft", None)
    with pytest.raises(LedgerError, match="sign this disclosure off"):
        disclosure.approve(books, d.id, user_id=people["cunzhang"].id)


def test_oversight_cannot_draft(books, people):
    with pytest.raises(LedgerError, match="only an official"):
        close_through(books, 2025, 3)  # only closed months are disclosed
        disclosure.draft(books, 2025, "quarter", 1, user_id=people["licai"].id)


def test_the_public_page_names_the_three_steps(client, books, people):
    close_through(books, 2025, 3)  # only closed months are disclosed
    d = disclosure.draft(books, 2025, "quarter", 1, user_id=people["kuaiji"].id)
    disclosure.sign_off(books, d.id, user_id=people["licai"].id)
    disclosure.approve(books, d.id, user_id=people["cunzhang"].id)
    books.commit()
    page = client.get(f"/disclosure/{d.id}").get_data(as_text=True)
    assert 'id="signoffs"' in page
    for name in ("赵会计", "李理财", "赵村长"):
        assert name in page
    assert "民主理财小组" in page


def test_the_three_steps_through_the_web(client, books, people):
    close_through(books, 2025, 3)  # only closed months are disclosed
    books.commit()
    login(client, "kuaiji")
    client.post("/coop/disclosures", data={"action": "draft", "year": 2025, "kind": "quarter", "number": 1})
    d = books.scalar(select(Disclosure))
    # an official cannot sign off, even by forging the form
    assert (
        client.post(
            "/coop/disclosures",
            data={"action": "sign_off", "id": d.id, "digest": disclosure.digest(d), "confirm": "yes"},
        ).status_code
        == 403
    )
    client.post("/logout")
    login(client, "licai")
    listing = client.get("/coop/disclosures").get_data(as_text=True)
    assert 'id="draft-disclosure"' not in listing  # oversight does not draft
    assert 'id="sign-off"' in client.get(f"/coop/disclosures/{d.id}").get_data(as_text=True)
    assert (
        client.post(
            "/coop/disclosures",
            data={"action": "approve", "id": d.id, "digest": disclosure.digest(d), "confirm": "yes"},
        ).status_code
        == 403
    )
    r = client.post(
        "/coop/disclosures", data={"action": "sign_off", "id": d.id, "digest": disclosure.digest(d)}
    )
    assert r.status_code == 400 and d.title in r.get_data(as_text=True)  # asks first
    books.expire_all()
    assert books.get(Disclosure, d.id).status == "draft"
    client.post(
        "/coop/disclosures",
        data={"action": "sign_off", "id": d.id, "digest": disclosure.digest(d), "confirm": "yes"},
    )
    books.expire_all()
    assert books.get(Disclosure, d.id).status == "signed_off"
    client.post("/logout")
    login(client, "kuaiji")  # the drafter
    r = client.post(
        "/coop/disclosures",
        data={"action": "approve", "id": d.id, "digest": disclosure.digest(d), "confirm": "yes"},
        follow_redirects=True,
    )
    assert 'class="flash error"' in r.get_data(as_text=True)
    books.expire_all()
    assert books.get(Disclosure, d.id).status == "signed_off"
    client.post("/logout")
    login(client, "cunzhang")
    r = client.post(
        "/coop/disclosures", data={"action": "approve", "id": d.id, "digest": disclosure.digest(d)}
    )
    assert r.status_code == 400 and "/disclosure" in r.get_data(as_text=True)
    client.post(
        "/coop/disclosures",
        data={"action": "approve", "id": d.id, "digest": disclosure.digest(d), "confirm": "yes"},
    )
    books.expire_all()
    assert books.get(Disclosure, d.id).status == "approved"


# ---------------------------------------------------------------- the role matrix

READ_PAGES = [
    "/coop/",
    "/coop/vouchers?year=2025",
    "/coop/review",
    "/coop/accounts",
    "/coop/accounts/101?year=2025",
    "/coop/periods?year=2025",
    "/coop/reports/trial-balance?year=2025",
    "/coop/reports/balance-sheet?year=2025&month=3",
    "/coop/reports/income-statement?year=2025",
    "/coop/members",
    "/coop/enterprises",
    "/coop/disclosures",
    "/coop/audit",
]
# who may see the books' pages: (role, expected status)
MATRIX = [("admin", 200), ("official", 200), ("oversight", 200), ("farmer", 403), ("customer", 403)]


@pytest.mark.parametrize("role,status", MATRIX)
def test_who_reads_the_books(client, people, role, status):
    username = {"admin": "admin", "official": "kuaiji", "oversight": "licai"}.get(role, role)
    login(client, username)
    for url in READ_PAGES:
        assert client.get(url).status_code == status, url


def test_anonymous_users_are_sent_to_log_in(client, people):
    for url in READ_PAGES:
        assert client.get(url).status_code == 302, url


def test_oversight_reads_but_never_writes(client, books, people):
    v = books.scalar(select(Voucher))
    d = review.prepare(
        books,
        date=dt.date(2025, 3, 1),
        summary="待审",
        lines=[Line("101", debit=100), Line("501", credit=100)],
        preparer_id=people["kuaiji"].id,
    )
    close_through(books, 2025, 3)  # only closed months are disclosed
    disclosure.draft(books, 2025, "quarter", 1, user_id=people["kuaiji"].id)
    books.commit()
    periods_before = books.scalar(select(func.count(Period.id)))
    login(client, "licai")
    assert client.get(f"/coop/vouchers/{v.id}").status_code == 200
    assert client.get(f"/coop/drafts/{d.id}").status_code == 200
    assert client.get(f"/coop/disclosures/{books.scalar(select(Disclosure.id))}").status_code == 200
    page = client.get(f"/coop/drafts/{d.id}").get_data(as_text=True)
    assert 'id="review-and-post"' not in page and 'id="discard-draft"' not in page
    assert "Reverse" not in client.get(f"/coop/vouchers/{v.id}?lang=en").get_data(as_text=True)
    forbidden = [
        ("/coop/vouchers/new", {}),
        (f"/coop/drafts/{d.id}/post", {"confirm": "yes", "version": "1"}),
        (f"/coop/drafts/{d.id}/discard", {"confirm": "yes", "version": "1"}),
        (f"/coop/drafts/{d.id}/edit", {}),
        (f"/coop/vouchers/{v.id}/review", {}),
        (f"/coop/vouchers/{v.id}/reverse", {"confirm": "yes", "version": "1"}),
        ("/coop/periods?year=2025", {"month": "1", "confirm": "yes"}),
        ("/coop/accounts", {"parent": "501", "name": "x"}),
        ("/coop/members", {"action": "add", "code": "X1", "head_name": "x"}),
        (f"/coop/distribution?year={YEAR}", {"confirm": "yes", "version": "1"}),
        ("/coop/disclosures", {"action": "draft", "year": "2025", "kind": "quarter", "number": "1"}),
        ("/coop/disclosures", {"action": "approve", "id": "1", "confirm": "yes"}),
        ("/coop/chart", {}),
    ]
    for url, data in forbidden:
        assert client.post(url, data=data).status_code == 403, url
    assert client.get("/coop/vouchers/new").status_code == 403
    books.expire_all()
    assert books.get(VoucherDraft, d.id).status == "draft"
    assert books.scalar(select(func.count(Voucher.id))) == 1
    assert books.scalar(select(func.count(Period.id))) == periods_before
    # the chain check is a read: the oversight group may run it
    assert client.post("/coop/verify").status_code == 302


def test_the_user_command_knows_the_oversight_role(runner, session):
    result = runner.invoke(
        args=["users", "create", "licai2", "--role", "oversight", "--password", "a-long-password-1"]
    )
    assert result.exit_code == 0, result.output


# ---------------------------------------------------------------- confirmations


def test_closing_a_month_asks_first_and_says_what_will_happen(client, books, people):
    close_through(books, 2025, 1)
    books.commit()
    closed = books.scalar(select(func.count(Period.id)))
    login(client, "kuaiji")
    r = client.post("/coop/periods?year=2025", data={"month": "2"})
    page = r.get_data(as_text=True)
    assert r.status_code == 400 and 'id="confirm-message"' in page
    assert "2025" in page and 'name="month" value="2"' in page  # the same form, to confirm
    assert books.scalar(select(func.count(Period.id))) == closed
    client.post("/coop/periods?year=2025", data={"month": "2", "confirm": "yes"})
    assert books.scalar(select(Period.closed).where(Period.month == 2))


def test_a_reversal_is_prepared_then_reviewed_and_posting_it_asks_first(client, books, people):
    """Found by review: one official alone could reverse a reviewed voucher."""
    v = books.scalar(select(Voucher))
    login(client, "kuaiji")
    r = client.post(f"/coop/vouchers/{v.id}/reverse", data={"date": "2025-01-11"})
    assert r.status_code == 302 and "/coop/drafts/" in r.headers["Location"]
    assert books.scalar(select(func.count(Voucher.id))) == 1  # prepared, not posted
    draft = books.scalar(select(VoucherDraft).where(VoucherDraft.reverses_id == v.id))
    assert client.post(f"/coop/vouchers/{v.id}/reverse", data={"date": "2025-01-11"}).status_code == 302
    assert books.scalar(select(func.count(VoucherDraft.id)).where(VoucherDraft.reverses_id == v.id)) == 1
    data = {"version": str(draft.version)}
    assert client.post(f"/coop/drafts/{draft.id}/post", data={**data, "confirm": "yes"}).status_code == 302
    assert books.scalar(select(func.count(Voucher.id))) == 1  # the preparer cannot post it
    client.post("/logout")
    login(client, "cunzhang")
    r = client.post(f"/coop/drafts/{draft.id}/post", data=data)
    assert r.status_code == 400 and 'id="confirm-message"' in r.get_data(as_text=True)
    client.post(f"/coop/drafts/{draft.id}/post", data={**data, "confirm": "yes"})
    reversal = books.scalar(select(Voucher).where(Voucher.reverses_id == v.id))
    assert reversal.preparer_id == people["kuaiji"].id and reversal.approver_id == people["cunzhang"].id
    assert reversal.total == -v.total  # red ink


def test_posting_a_reviewed_draft_asks_first(client, books, people):
    d = review.prepare(
        books,
        date=dt.date(2025, 3, 1),
        summary="待审",
        lines=[Line("101", debit=100), Line("501", credit=100)],
        preparer_id=people["kuaiji"].id,
    )
    books.commit()
    login(client, "cunzhang")
    r = client.post(f"/coop/drafts/{d.id}/post")
    assert r.status_code == 400 and "待审" in r.get_data(as_text=True)
    books.expire_all()
    assert books.get(VoucherDraft, d.id).status == "draft"


def test_posting_the_distribution_asks_first(client, households, people, books):
    post(books, dt.date(YEAR, 6, 1), "补助", ("102", 1_000_000, 0), ("503", 0, 1_000_000))
    close_through(books, YEAR - 1, 12)
    books.commit()
    login(client, "kuaiji")
    page = client.get(f"/coop/distribution?year={YEAR}&reserve=10&payout=100").get_data(as_text=True)
    assert "data-confirm" in page
    token = page.split('name="fingerprint" value="')[1].split('"')[0]
    form = {"payout": "100", "fingerprint": token}
    r = client.post(f"/coop/distribution?year={YEAR}", data=form)
    assert r.status_code == 400 and str(YEAR) in r.get_data(as_text=True)
    assert books.scalar(select(func.count(Distribution.id)).where(Distribution.year == YEAR)) == 0
    assert client.post(f"/coop/distribution?year={YEAR}", data={**form, "confirm": "yes"}).status_code == 302
    assert books.scalar(select(func.count(Distribution.id)).where(Distribution.year == YEAR)) == 1


# ---------------------------------------------------------------- the demo


def test_the_demo_has_an_oversight_member_a_signed_disclosure_and_a_queue(demo_books, session):
    users = demo_books["users"]
    d = session.scalar(select(Disclosure).where(Disclosure.status == "approved"))
    assert (d.created_by, d.signed_off_by, d.approved_by) == (
        users["kuaiji"].id,
        users["licai"].id,
        users["cunzhang"].id,
    )
    drafts = review.pending_drafts(session)
    assert len(drafts) == 2 and any(x.cash_warning for x in drafts)
    # the year the disclosure covers is fully reviewed; this month's system postings await review
    assert review.unreviewed_count(session, d.start, d.end) == 0


def test_the_demo_users_include_the_oversight_member():
    from app import DEMO_USERS

    assert ("licai", "oversight") in [(u, r) for u, r, *_ in DEMO_USERS]


def test_the_confirmation_page_resubmits_the_same_form(client, books, people):
    """Without JavaScript: the page that asks carries the original fields; confirming it does the action."""
    import re

    close_through(books, 2025, 3)
    books.commit()
    login(client, "kuaiji")
    page = client.post("/coop/periods?year=2025", data={"month": "4"}).get_data(as_text=True)
    action = re.search(r'<form method="post" action="([^"]+)"[^>]*id="confirm-form"', page).group(1)
    fields = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)">', page))
    fields.pop("csrf_token", None)
    assert action.replace("&amp;", "&") == "/coop/periods?year=2025" and fields == {"month": "4"}
    assert 'name="confirm" value="yes"' in page
    r = client.post(action.replace("&amp;", "&"), data={**fields, "confirm": "yes"})
    assert r.status_code == 302
    assert books.scalar(select(Period.closed).where(Period.year == 2025, Period.month == 4))


def test_oversight_reads_the_statements_and_notes_but_does_not_write_them(client, books, people):
    """Found by review: the 民主理财小组 got 403 on the notes and the printable set."""
    login(client, "licai")
    for url in ("/coop/reports/notes?year=2025", "/coop/reports/statements?year=2025&month=12"):
        assert client.get(url).status_code == 200, url
    assert 'id="notes-form"' not in client.get("/coop/reports/notes?year=2025").get_data(as_text=True)
    assert client.post("/coop/reports/notes?year=2025", data={"text": "x"}).status_code == 403
