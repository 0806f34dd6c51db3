"""Tamper evidence: `flask coop verify` finds vouchers altered, deleted or reordered in the database."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import text

from coop import disclosure
from tests.coop.conftest import close_through, post, publish


@pytest.fixture
def chain(books):
    vs = [
        post(
            books,
            dt.date(2025, 1, i + 1),
            f"voucher {i + 1}",
            ("101", 100 * (i + 1), 0),
            ("501", 0, 100 * (i + 1)),
        )
        for i in range(5)
    ]
    books.commit()
    return vs


def verify(runner):
    return runner.invoke(args=["coop", "verify"])


def test_intact_chain_verifies(runner, chain):
    result = verify(runner)
    assert result.exit_code == 0, result.output
    assert "OK: 5 voucher(s)" in result.output and chain[-1].hash in result.output
    assert "record(s)" in result.output  # the chart's rows are in the chain too


def test_changed_amount_is_detected(runner, books, chain):
    with books.begin():
        books.execute(
            text("UPDATE coop_voucher_lines SET debit = 900 WHERE voucher_id = :v AND debit > 0"),
            {"v": chain[2].id},
        )
        books.execute(
            text("UPDATE coop_voucher_lines SET credit = 900 WHERE voucher_id = :v AND credit > 0"),
            {"v": chain[2].id},
        )
    result = verify(runner)
    assert result.exit_code == 1
    assert "voucher 2025-0003: content does not match its hash" in result.output


def test_changed_summary_is_detected(runner, books, chain):
    with books.begin():
        books.execute(text("UPDATE coop_vouchers SET summary = 'harmless' WHERE id = :v"), {"v": chain[1].id})
    result = verify(runner)
    assert result.exit_code == 1 and "2025-0002" in result.output


def test_deleted_voucher_is_detected(runner, books, chain):
    with books.begin():
        books.execute(text("DELETE FROM coop_voucher_lines WHERE voucher_id = :v"), {"v": chain[1].id})
        books.execute(text("DELETE FROM coop_vouchers WHERE id = :v"), {"v": chain[1].id})
    result = verify(runner)
    assert result.exit_code == 1
    assert "voucher 2025-0003" in result.output and "missing" in result.output


def test_deleted_last_voucher_is_detected(runner, books, chain):
    with books.begin():
        books.execute(text("DELETE FROM coop_voucher_lines WHERE voucher_id = :v"), {"v": chain[-1].id})
        books.execute(text("DELETE FROM coop_vouchers WHERE id = :v"), {"v": chain[-1].id})
    result = verify(runner)
    assert result.exit_code == 1 and "chain head" in result.output


def test_swapped_vouchers_are_detected(runner, books, chain):
    a, b = chain[1], chain[3]
    with books.begin():  # swap their positions in the chain (and numbers), as a forger would
        books.execute(text("UPDATE coop_vouchers SET seq = -1, number = -1 WHERE id = :a"), {"a": a.id})
        books.execute(
            text("UPDATE coop_vouchers SET seq = :s, number = :n WHERE id = :b"),
            {"s": a.seq, "n": a.number, "b": b.id},
        )
        books.execute(
            text("UPDATE coop_vouchers SET seq = :s, number = :n WHERE id = :a"),
            {"s": b.seq, "n": b.number, "a": a.id},
        )
    result = verify(runner)
    assert result.exit_code == 1
    assert "voucher 2025-0002" in result.output


def test_swapped_contents_are_detected(runner, books, chain):
    a, b = chain[0], chain[4]
    with books.begin():  # keep the chain fields, swap what the vouchers say
        books.execute(
            text("UPDATE coop_vouchers SET summary = :s, date = :d WHERE id = :i"),
            {"s": b.summary, "d": b.date, "i": a.id},
        )
        books.execute(
            text("UPDATE coop_vouchers SET summary = :s, date = :d WHERE id = :i"),
            {"s": a.summary, "d": a.date, "i": b.id},
        )
    result = verify(runner)
    assert result.exit_code == 1 and "voucher 2025-0001" in result.output


def test_rewritten_chain_is_caught_by_the_published_anchor(runner, books, chain):
    """A forger who recomputes every hash after a change passes plain verify, but cannot match the
    anchor printed on the published disclosure."""
    from coop.chain import anchor_for
    from tests.coop.forgery import rebuild_balances, rewrite_history, sql

    close_through(books, 2025, 1)
    d = disclosure.draft(books, 2025, "month", 1)
    publish(books, d.id)
    books.commit()
    printed = anchor_for(books, d).short
    sql(books, "UPDATE coop_vouchers SET summary = 'forged' WHERE id = :v", v=chain[0].id)
    assert verify(runner).exit_code == 1
    rebuild_balances(books)
    rewrite_history(books)
    assert verify(runner).exit_code == 0
    result = runner.invoke(args=["coop", "verify", "--anchor", printed])
    assert result.exit_code == 1
    assert f"anchor {printed}" in result.output


def test_balances_table_tampering_is_detected(runner, books, chain):
    with books.begin():
        books.execute(
            text("UPDATE coop_balances SET debit = debit + 1 WHERE id = (SELECT MIN(id) FROM coop_balances)")
        )
    result = verify(runner)
    assert result.exit_code == 1 and "balances" in result.output
