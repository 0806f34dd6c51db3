"""Browser: an official prepares a voucher and another reviews and posts it, previews and posts a
year-end distribution; a disclosure is drafted, signed off by the 民主理财小组 and approved; an
anonymous villager reads it on a phone. Irreversible steps ask (a confirm() dialog, accepted here)."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select

from coop import chain, members
from coop.ledger import Line, load_chart, post_voucher
from coop.models import Disclosure, Distribution
from tests.conftest import DEFAULT_PASSWORD
from tests.e2e.conftest import browser_login

pytestmark = pytest.mark.e2e
YEAR = dt.date.today().year - 1


@pytest.fixture
def village(session, make_user):
    make_user("kuaiji", "official", display_name="赵会计")
    make_user("cunzhang", "official", display_name="赵村长")
    make_user("licai", "oversight", display_name="李理财")
    load_chart(session, opening=dt.date(YEAR, 1, 1))
    for i, (name, shares) in enumerate([("赵建国", 30), ("王秀英", 40), ("李志强", 50)], 1):
        h = members.add_household(session, code=f"ZZ{i:03d}", head_name=name, members=3)
        members.issue_shares(session, h.id, shares, on=dt.date(2020, 1, 1))
    post_voucher(
        session,
        date=dt.date(YEAR, 3, 18),
        summary="村级组织运转经费补助",
        lines=[Line("102", debit=6_000_000), Line("503", credit=6_000_000)],
    )
    session.commit()
    return session


def _switch_user(page, base_url: str, username: str) -> None:
    page.click("header form.inline button.link")  # log out
    page.wait_for_load_state("networkidle")
    browser_login(page, base_url, username, DEFAULT_PASSWORD)


def test_official_books_a_year_and_a_villager_reads_it(live_server, browser_page, phone_page, village):
    page = browser_page
    page.on("dialog", lambda dialog: dialog.accept())  # the confirmations of irreversible actions
    browser_login(page, live_server.url, "kuaiji", DEFAULT_PASSWORD)

    # 1. prepare a voucher (制单); another official reviews and posts it (审核并记账)
    page.goto(f"{live_server.url}/coop/vouchers/new")
    page.fill("#date", f"{YEAR}-06-20")
    page.fill("#summary", "粮食加工厂六月加工费")
    page.select_option("#account_0", "101")
    page.fill("#debit_0", "12,360.00")
    page.select_option("#account_1", "501")
    page.fill("#credit_1", "12360")
    page.click("#post-voucher")
    page.wait_for_selector("#draft-label")
    draft_url = page.url
    assert page.locator("#review-and-post").count() == 0  # not the preparer's to review
    _switch_user(page, live_server.url, "cunzhang")
    page.goto(draft_url)
    page.click("#review-and-post")
    page.wait_for_selector("#voucher-label")
    assert page.inner_text("#voucher-label") == f"{YEAR}-0002"
    assert "¥12,360.00" in page.inner_text("main")

    # an unbalanced voucher is refused on the page
    page.goto(f"{live_server.url}/coop/vouchers/new")
    page.fill("#summary", "不平的凭证")
    page.select_option("#account_0", "101")
    page.fill("#debit_0", "10")
    page.select_option("#account_1", "501")
    page.fill("#credit_1", "9")
    page.click("#post-voucher")
    assert page.locator("#voucher-error").is_visible()

    # 2. preview and post the year-end distribution
    page.goto(f"{live_server.url}/coop/distribution?year={YEAR}")
    page.fill("#payout", "80")  # the reserve rate is the charter's (10 %), not a form field
    page.click("#preview-plan")
    page.wait_for_selector("#plan-parts")
    surplus = 6_000_000 + 1_236_000
    reserve = surplus // 10
    assert page.inner_text("#plan-reserve") == f"¥{reserve / 100:,.2f}"
    assert page.locator("#plan-parts tbody tr").count() == 4  # three households and the total
    page.click("#post-plan")
    page.wait_for_selector("#distribution-posted")
    village.expire_all()
    dist = village.scalar(select(Distribution))
    assert dist.year == YEAR and sum(dist.plan["parts"].values()) == dist.plan["to_households"]

    # 3. draft (an official), sign off (民主理财小组) and approve (another official) the year's disclosure
    _switch_user(page, live_server.url, "kuaiji")
    page.goto(f"{live_server.url}/coop/disclosures")
    page.fill("#d-year", str(YEAR))
    page.select_option("#d-kind", "year")
    page.fill("#d-number", "1")
    page.click("#draft-disclosure")
    page.wait_for_selector("#disclosures .badge.warn")
    _switch_user(page, live_server.url, "licai")
    page.goto(f"{live_server.url}/coop/disclosures")
    page.click("#disclosures button.primary")  # sign off
    page.wait_for_load_state("networkidle")
    _switch_user(page, live_server.url, "cunzhang")
    page.goto(f"{live_server.url}/coop/disclosures")
    page.click("#disclosures button.primary")  # approve and publish
    page.wait_for_selector("#disclosures .badge.ok")
    village.expire_all()
    d = village.scalar(select(Disclosure))
    anchor = chain.anchor_for(village, d)
    assert d.status == "approved" and anchor is not None
    assert page.js_errors == []

    # 4. an anonymous villager reads it on a phone
    phone = phone_page
    phone.goto(f"{live_server.url}/disclosure")
    phone.click(f"text={d.title}")
    phone.wait_for_selector("#disclosure-title")
    assert all(name in phone.inner_text("#signoffs") for name in ("赵会计", "李理财", "赵村长"))
    assert phone.inner_text("#total-income") == f"{surplus / 100:,.2f}"
    assert phone.inner_text("#anchor-short") == anchor.short  # the value `flask coop verify` checks
    phone.click("details summary")
    assert "ZZ001 赵建国" in phone.inner_text("details")
    overflow = phone.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"page is {overflow}px wider than the phone"
    assert phone.js_errors == []
