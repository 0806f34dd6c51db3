"""Public disclosure: drafted from the books, signed off by the 民主理财小组, approved by another
official, then frozen and public."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select

from coop import chain, disclosure
from coop.ledger import LedgerError, chain_head
from coop.models import Disclosure
from tests.conftest import login
from tests.coop.conftest import close_through, post, publish


@pytest.fixture
def q1(books):
    post(books, dt.date(2025, 1, 10), "鱼塘租金", ("102", 300_000, 0), ("501", 0, 300_000))
    post(books, dt.date(2025, 2, 10), "村道维修", ("514", 1_800_000, 0), ("102", 0, 1_800_000))
    close_through(books, 2025, 3)  # only closed months are disclosed
    books.commit()
    return books


def test_snapshot_has_the_figures_and_the_chain_head(q1):
    before = chain_head(q1)
    d = disclosure.draft(q1, 2025, "quarter", 1)
    c = d.content
    assert (c["total_income"], c["total_expense"], c["surplus"]) == (300_000, 1_800_000, -1_500_000)
    assert [m["summary"] for m in c["major_items"]] == ["村道维修"]  # at least ¥10,000
    assert (
        c["balance_sheet"]["total_assets"]
        == c["balance_sheet"]["total_liabilities"] + c["balance_sheet"]["total_equity"]
    )
    assert (d.chain_seq, d.chain_hash) == before  # the head the figures were drawn at
    assert chain_head(q1)[0] == before[0] + 1  # the draft itself was recorded in the chain


def test_approved_disclosure_is_frozen(q1, official):
    d = disclosure.draft(q1, 2025, "quarter", 1)
    publish(q1, d.id, approver=official)
    q1.commit()
    post(q1, dt.date(2025, 4, 1), "later income", ("101", 999, 0), ("504", 0, 999))
    q1.commit()
    with pytest.raises(LedgerError, match="approved"):
        disclosure.draft(q1, 2025, "quarter", 1)
    q1.rollback()
    d.title = "changed"
    with pytest.raises(LedgerError, match="read-only"):
        q1.commit()
    q1.rollback()
    stored = q1.scalar(select(Disclosure))
    assert stored.content["total_income"] == 300_000 and stored.title.endswith("财务公开")
    with pytest.raises(LedgerError, match="already approved"):
        disclosure.approve(q1, d.id, user_id=official.id)


def test_public_page_shows_only_approved_statements(client, q1, official):
    d = disclosure.draft(q1, 2025, "quarter", 1, user_id=official.id)
    q1.commit()
    assert d.title not in client.get("/disclosure").get_data(as_text=True)
    assert client.get(f"/disclosure/{d.id}").status_code == 404
    publish(q1, d.id)
    q1.commit()
    index = client.get("/disclosure").get_data(as_text=True)
    assert d.title in index
    page = client.get(f"/disclosure/{d.id}").get_data(as_text=True)
    anchor = chain.anchor_for(q1, d)
    assert "3,000.00" in page and "18,000.00" in page and anchor.short in page and anchor.hash in page


def test_officials_draft_and_approve_through_the_web(client, q1, official, make_user):
    make_user("licai", "oversight")
    make_user("cunzhang", "official")
    login(client, "kuaiji")
    r = client.post("/coop/disclosures", data={"action": "draft", "year": 2025, "kind": "month", "number": 2})
    assert r.status_code == 302
    d = q1.scalar(select(Disclosure))
    assert d.status == "draft" and d.title == "2025年2月 财务公开"
    client.post("/logout")
    login(client, "licai")
    client.post(
        "/coop/disclosures",
        data={"action": "sign_off", "id": d.id, "digest": disclosure.digest(d), "confirm": "yes"},
    )
    client.post("/logout")
    login(client, "cunzhang")
    client.post(
        "/coop/disclosures",
        data={"action": "approve", "id": d.id, "digest": disclosure.digest(d), "confirm": "yes"},
    )
    q1.expire_all()
    assert q1.get(Disclosure, d.id).status == "approved"
    assert client.get(f"/disclosure/{d.id}").status_code == 200


def test_only_closed_periods_are_disclosed(books, official):
    """Found by review: a month published while open changed under its readers afterwards."""
    post(books, dt.date(2025, 5, 3), "收入", ("102", 100, 0), ("501", 0, 100))
    close_through(books, 2025, 4)
    books.commit()
    with pytest.raises(LedgerError, match="2025-05 is not closed"):
        disclosure.draft(books, 2025, "month", 5, user_id=official.id)
    books.rollback()
    with pytest.raises(LedgerError, match="2025-06 is not closed"):
        disclosure.draft(books, 2025, "quarter", 2, user_id=official.id)
    books.rollback()
    assert disclosure.draft(books, 2025, "month", 4, user_id=official.id).status == "draft"


def test_signers_sign_what_they_saw(q1, official, make_user):
    """Found by review: a draft refreshed between reading and signing got the signature anyway."""
    licai = make_user("licai", "oversight")
    d = disclosure.draft(q1, 2025, "quarter", 1, user_id=official.id)
    seen = disclosure.digest(d)
    q1.commit()
    d.title = "2025年第1季度 财务公开（修订）"  # refreshed with a new title meanwhile
    q1.commit()
    with pytest.raises(LedgerError, match="refreshed after you opened it"):
        disclosure.sign_off(q1, d.id, user_id=licai.id, expected=seen)
    q1.rollback()
    disclosure.sign_off(q1, d.id, user_id=licai.id, expected=disclosure.digest(d))
    q1.commit()
    approver = make_user("cunzhang", "official")
    with pytest.raises(LedgerError, match="refreshed after you opened it"):
        disclosure.approve(q1, d.id, user_id=approver.id, expected=seen)
    q1.rollback()
    assert (
        disclosure.approve(q1, d.id, user_id=approver.id, expected=disclosure.digest(d)).status == "approved"
    )
