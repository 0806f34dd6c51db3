"""Postings from several processes at once: every one succeeds, numbers stay gapless, the chain holds.

Runs on the suite's database: a file SQLite database by default, PostgreSQL with TEST_DATABASE_URL
(``make test-pg``).
"""

from __future__ import annotations

import datetime as dt
import multiprocessing
import threading

import pytest
from sqlalchemy import func, select

from coop.ledger import BooksBusy, Line, post_voucher, verify_chain
from coop.models import Voucher
from core.db import make_engine, make_session_factory
from tests.conftest import csrf_token_from, login
from tests.coop.conftest import post

PROCESSES, EACH = 4, 40
D = dt.date(2025, 5, 6)


def _poster(url: str, worker: int, barrier, results) -> None:
    engine = make_engine(url)
    factory = make_session_factory(engine)
    failures = []
    barrier.wait()
    for i in range(EACH):
        try:
            with factory() as session:
                post_voucher(
                    session,
                    date=D,
                    summary=f"进程 {worker} 第 {i} 笔",
                    lines=[Line("101", debit=100 + i), Line("501", credit=100 + i)],
                    source="bench",
                    source_ref=f"{worker}:{i}",
                )
                session.commit()
        except Exception as exc:  # noqa: BLE001 - reported to the parent, which fails the test
            failures.append(f"{type(exc).__name__}: {exc}"[:300])
    engine.dispose()
    results.put((worker, failures))


def test_four_processes_post_forty_vouchers_each(books, database_url):
    books.close()
    ctx = multiprocessing.get_context("fork")
    barrier, results = ctx.Barrier(PROCESSES), ctx.Queue()
    procs = [ctx.Process(target=_poster, args=(database_url, w, barrier, results)) for w in range(PROCESSES)]
    for p in procs:
        p.start()
    reports = dict(results.get(timeout=300) for _ in procs)
    for p in procs:
        p.join(timeout=60)
    assert {w: f for w, f in reports.items() if f} == {}
    numbers = sorted(books.scalars(select(Voucher.number).where(Voucher.year == 2025)))
    assert numbers == list(range(1, PROCESSES * EACH + 1))
    seqs = sorted(books.scalars(select(Voucher.seq)))  # after the chart's own chain records
    assert seqs == list(range(seqs[0], seqs[0] + PROCESSES * EACH))
    result = verify_chain(books)
    assert result.ok, result.problem
    assert result.vouchers == PROCESSES * EACH


def test_reviewing_drafts_from_the_web_never_fails_under_concurrency(app, books, official, make_user):
    """Four reviewers' browsers post drafts at once (审核并记账): every posting succeeds, gapless."""
    from coop import review

    drafts = [
        review.prepare(
            books,
            date=D,
            summary=f"网页 {i}",
            lines=[Line("101", debit=123_450), Line("501", credit=123_450)],
            preparer_id=official.id,
        ).id
        for i in range(40)
    ]
    books.commit()
    clients, failures = [], []
    for w in range(4):
        make_user(f"shenhe{w}", "official")
        c = app.test_client()
        login(c, f"shenhe{w}")
        clients.append(c)
    barrier = threading.Barrier(len(clients))

    def work(c, w):
        token = csrf_token_from(c.get(f"/coop/drafts/{drafts[w]}").get_data(as_text=True))
        barrier.wait()
        for draft_id in drafts[w::4]:
            r = c.post(
                f"/coop/drafts/{draft_id}/post", data={"csrf_token": token, "confirm": "yes", "version": "1"}
            )
            if r.status_code != 302 or "/coop/vouchers/" not in r.headers.get("Location", ""):
                failures.append((w, draft_id, r.status_code, r.headers.get("Location")))

    threads = [threading.Thread(target=work, args=(c, w)) for w, c in enumerate(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert failures == []
    assert sorted(books.scalars(select(Voucher.number))) == list(range(1, 41))
    assert verify_chain(books).ok


def test_a_transaction_that_read_before_another_commit_is_refused_cleanly(books, engine):
    """SQLite only: a transaction that already holds an older snapshot cannot take the write lock;
    the posting is refused as busy (nothing written) instead of failing with a database error."""
    if engine.dialect.name != "sqlite":
        pytest.skip("PostgreSQL waits on the row lock and reads committed data")
    factory = make_session_factory(engine)
    with factory() as early, factory() as other:
        with early.begin_nested():  # opens the transaction (core.db) …
            early.scalar(select(func.count(Voucher.id)))  # … and reads: its snapshot is now fixed
        post(other, D, "另一人先记账", ("101", 100, 0), ("501", 0, 100))
        other.commit()
        with pytest.raises(BooksBusy, match="try again"):
            post(early, D, "晚到的一笔", ("101", 200, 0), ("501", 0, 200))
        early.rollback()
        again = post(early, D, "再试一次", ("101", 200, 0), ("501", 0, 200))  # a fresh transaction succeeds
        early.commit()
        assert again.number == 2
