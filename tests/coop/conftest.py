"""Fixtures for the village books: a loaded chart, officials, households with shares."""

from __future__ import annotations

import datetime as dt

import pytest

from coop.ledger import Line, load_chart, post_voucher


@pytest.fixture
def books(session, snapshot):
    """The official chart of accounts, loaded."""

    def build():
        load_chart(session, opening=dt.date(2020, 1, 1))
        session.commit()
        return session

    return snapshot("books", build)


@pytest.fixture
def official(make_user):
    return make_user("kuaiji", "official", display_name="赵会计")


@pytest.fixture
def households(books):
    """Three member households holding 10, 20 and 35 shares."""
    from coop import members

    session = books
    rows = []
    for i, (name, shares) in enumerate([("赵建国", 10), ("王秀英", 20), ("李志强", 35)], 1):
        h = members.add_household(session, code=f"ZZ{i:03d}", head_name=name, members=3)
        members.issue_shares(session, h.id, shares, on=dt.date(2020, 1, 1))
        rows.append(h)
    session.commit()
    return rows


def post(session, day, summary, *pairs, **kwargs):
    """``post(s, date, "x", ("101", 100, 0), ("501", 0, 100))``."""
    return post_voucher(
        session, date=day, summary=summary, lines=[Line(a, debit=d, credit=c) for a, d, c in pairs], **kwargs
    )


def _build_demo_books(session, make_user):
    """Zhaozhuang's demo books (members, shares, a closed year with a distribution, a disclosure)."""
    from coop.demo import seed_books, seed_members

    ctx = {
        "users": {
            "kuaiji": make_user("kuaiji", "official"),
            "cunzhang": make_user("cunzhang", "official"),
            "licai": make_user("licai", "oversight", display_name="李理财"),
        }
    }
    seed_members(session, ctx)
    seed_books(session, ctx)
    session.commit()
    return ctx


@pytest.fixture
def demo_books(session, make_user, snapshot):
    return snapshot("demo_books", lambda: _build_demo_books(session, make_user))


def close_through(session, year, month):
    """Close the months in order, from the next one to close up to ``year``-``month`` (each December
    by posting that year's year-end, keeping its surplus undistributed)."""
    from coop.distribution import post_distribution
    from coop.periods import close_period, next_to_close

    while next_to_close(session) <= (year, month):
        y, m = next_to_close(session)
        if m == 12:  # December closes with the year-end (nothing paid out: the surplus is kept)
            post_distribution(session, y, payout_percent=0)
        else:
            close_period(session, y, m)


def publish(session, disclosure_id: int, *, approver=None):
    """Take a disclosure draft through sign-off (民主理财小组) and approval by another official.

    Creates the two users if the test has none (``oversight-test``, ``approver-test``)."""
    from sqlalchemy import select

    from coop import disclosure
    from core import auth
    from core.models import User

    def user(name: str, role: str):
        found = session.scalar(select(User).where(User.username == name))
        return found or auth.create_user(session, name, "a-long-test-password", role)

    disclosure.sign_off(session, disclosure_id, user_id=user("oversight-test", "oversight").id)
    approver = approver or user("approver-test", "official")
    return disclosure.approve(session, disclosure_id, user_id=approver.id)
