"""The books' pages end their transactions one way: a GET writes nothing, a mistyped field
or a refusal rolls back and says why beside the form (never a 500), success commits."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from coop.models import Account, Household, Period, ShareEvent, Voucher
from tests.conftest import login


def _count(session, model) -> int:
    session.expire_all()
    return session.scalar(select(func.count()).select_from(model))


def test_pages_of_empty_books_write_nothing_and_offer_the_chart(client, official, session):
    login(client, "kuaiji")
    for path in ("/coop/", "/coop/vouchers/new", "/coop/accounts"):
        r = client.get(path)
        assert r.status_code == 200, path
        assert 'action="/coop/chart"' in r.get_data(as_text=True), path
    assert _count(session, Account) == 0  # a GET never loads the chart behind your back
    r = client.post("/coop/chart", data={"next": "/coop/accounts"})
    assert r.status_code == 302 and r.headers["Location"].endswith("/coop/accounts")
    assert _count(session, Account) == 42  # the level-1 accounts of the 2023 chart
    assert 'action="/coop/chart"' not in client.get("/coop/").get_data(as_text=True)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("date", "2025-02-30"),
        ("date", "yesterday"),
        ("date", ""),
        ("attachments", "1e30"),
        ("attachments", "-1"),
        ("attachments", "two"),
        ("debit_0", "NaN"),
        ("debit_0", "1e999999"),
        ("debit_0", "12.345"),
        ("credit_1", "Infinity"),
    ],
)
def test_a_mistyped_voucher_field_re_renders_with_the_reason(client, official, books, field, value):
    login(client, "kuaiji")
    form = {
        "date": "2025-03-10",
        "summary": "收到承包费",
        "attachments": "1",
        "account_0": "101",
        "debit_0": "100",
        "account_1": "501",
        "credit_1": "100",
        field: value,
    }
    r = client.post("/coop/vouchers/new", data=form)
    assert r.status_code == 400
    page = r.get_data(as_text=True)
    assert 'id="voucher-error"' in page and "收到承包费" in page  # the form keeps what was typed
    assert _count(books, Voucher) == 0


def test_full_width_digits_from_a_chinese_keyboard_are_read(client, official, books):
    login(client, "kuaiji")
    form = {
        "date": "２０２５-０３-１０",
        "summary": "收到承包费",
        "attachments": "２",
        "account_0": "101",
        "debit_0": "100",
        "account_1": "501",
        "credit_1": "100",
    }
    assert client.post("/coop/vouchers/new", data=form).status_code == 302
    from coop.models import VoucherDraft

    draft = books.scalar(select(VoucherDraft))
    assert (draft.attachments, draft.date.isoformat()) == (2, "2025-03-10")


@pytest.mark.parametrize(
    "form",
    [
        {"action": "issue", "household_id": "abc", "shares": "5"},
        {"action": "issue", "household_id": "1", "shares": "1e30"},
        {"action": "issue", "household_id": str(2**70), "shares": "5"},
        {"action": "transfer", "from_id": "1", "to_id": "2", "shares": "-3"},
        {"action": "transfer", "from_id": "1", "shares": "3"},
        {"action": "add", "code": "ZZ009", "head_name": "周", "members": "lots"},
        {"action": "add", "code": "ZZ009", "head_name": "周", "on": "2025-13-01"},
        {"action": "explode"},
        {},
    ],
)
def test_members_form_refuses_bad_input_without_a_500(client, official, households, session, form):
    login(client, "kuaiji")
    shares_before = _count(session, ShareEvent)
    session.commit()  # end the read, as a page would (PostgreSQL would wait on it at the wipe)
    r = client.post("/coop/members", data=form, follow_redirects=True)
    assert r.status_code == 200
    assert 'class="flash error"' in r.get_data(as_text=True)
    assert _count(session, ShareEvent) == shares_before
    assert _count(session, Household) == 3


def test_household_correction_rules_live_in_the_service(client, official, households, session):
    from coop import members
    from coop.ledger import LedgerError

    h = households[0]
    with pytest.raises(LedgerError):
        members.update_household(session, h, head_name="   ")
    with pytest.raises(LedgerError):
        members.update_household(session, h, members=0)
    session.rollback()
    login(client, "kuaiji")
    r = client.post(f"/coop/members/{h.id}", data={"head_name": "", "members": "3"}, follow_redirects=True)
    assert "户主" in r.get_data(as_text=True) or 'class="flash error"' in r.get_data(as_text=True)
    session.expire_all()
    assert session.get(Household, h.id).head_name == "赵建国"


def test_closing_a_month_with_a_bad_number_says_so(client, official, books):
    login(client, "kuaiji")
    for month in ("13", "abc", "", "0"):
        r = client.post(
            "/coop/periods?year=2025", data={"month": month, "confirm": "yes"}, follow_redirects=True
        )
        assert r.status_code == 200 and 'class="flash error"' in r.get_data(as_text=True)
    assert _count(books, Period) == 0


def test_disclosure_and_distribution_forms_refuse_bad_numbers(client, official, households):
    login(client, "kuaiji")
    r = client.post("/coop/disclosures", data={"year": "twenty", "kind": "quarter"}, follow_redirects=True)
    assert r.status_code == 200 and 'class="flash error"' in r.get_data(as_text=True)
    r = client.post(
        "/coop/disclosures", data={"action": "approve", "id": "x", "confirm": "yes"}, follow_redirects=True
    )
    assert r.status_code == 200 and 'class="flash error"' in r.get_data(as_text=True)
    for query in ("payout=NaN", "payout=1/0", "payout=abc", "payout=150", "outside=abc", "other=1e3"):
        r = client.get(f"/coop/distribution?year=2025&{query}")
        assert r.status_code == 400, query
