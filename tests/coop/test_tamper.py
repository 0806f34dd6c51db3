"""The tamper suite: edit the database directly with SQL, as its owner could, and check what
`flask coop verify` finds, with and without an anchor taken before the tampering.

Three kinds of forger (tests/coop/forgery.py): one who only edits rows; one who also appends chain
records imitating the application's own; one who rewrites the chain's history and recomputes every
hash from the start. Only an anchor kept outside the database catches the last.
"""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import func, select

from coop import chain, disclosure, distribution, members, periods, review, settings, statements
from coop.models import Account, ChainRecord, Disclosure, Distribution, Household, Voucher
from core import clock
from tests.coop.conftest import close_through, post, publish
from tests.coop.forgery import append_records, forge_voucher, rebuild_balances, rewrite_history, sql


def _build_village(books, households, official, make_user):
    """Every covered table has rows: settings, chart and sub-accounts, households, shares (with a
    transfer), a cooperative's member account and volume, a closed and distributed 2025 with an
    approved disclosure, and an open month of 2026."""
    s = books
    h1, h2, h3 = households
    settings.update(s, name="赵庄村股份经济合作社", contact="村会计室 0371-6288 0000")
    members.transfer_shares(s, h3.id, h1.id, 5, on=dt.date(2025, 3, 1))
    coop = members.add_enterprise(s, "mugwort", "艾草种植专业合作社", kind="cooperative")
    members.set_member_account(s, coop.id, h1.id, capital=200_000)
    members.record_volume(s, coop.id, h1.id, 2025, 500_000)
    for m in range(1, 13):
        post(s, dt.date(2025, m, 10), f"利息 {m}", ("102", 7_250, 0), ("504", 0, 7_250))
        post(s, dt.date(2025, m, 20), f"办公 {m}", ("513", 1_000, 0), ("101", 0, 1_000))
    post(s, dt.date(2025, 6, 1), "艾草收入", ("102", 1_500_000, 0), (coop.income_account.code, 0, 1_500_000))
    close_through(s, 2024, 12)
    distribution.post_distribution(s, 2025, payout_percent=100, user_id=official.id)
    d = disclosure.draft(s, 2025, "year", 1, user_id=official.id)
    cunzhang = make_user("cunzhang", "official")
    publish(s, d.id, approver=cunzhang)
    statements.save_note(s, 2025, "本年无重大事项。", user_id=official.id)
    year_end = s.scalar(select(Voucher).where(Voucher.kind == "distribution"))
    review.mark_reviewed(s, year_end.id, reviewer_id=cunzhang.id)
    post(s, dt.date(2026, 1, 5), "2026 利息", ("102", 300, 0), ("504", 0, 300))
    s.commit()
    return {"households": households, "disclosure": d, "coop": coop}


@pytest.fixture
def village(books, households, official, make_user, snapshot):
    return snapshot("village", lambda: _build_village(books, households, official, make_user))


def verify(runner, *anchors: str):
    args = ["coop", "verify"]
    for a in anchors:
        args += ["--anchor", a]
    return runner.invoke(args=args)


def anchor_now(session) -> str:
    return chain.current_anchor(session).short


def assert_ok(result):
    assert result.exit_code == 0, result.output
    assert result.output.startswith("OK:")


def assert_fails(result, *words):
    assert result.exit_code == 1, result.output
    assert "FAILED" in result.output
    for w in words:
        assert w in result.output, result.output


# ---------------------------------------------------------------- normal use verifies clean


def test_the_village_verifies_and_every_covered_table_is_in_the_chain(runner, village, books):
    result = verify(
        runner, anchor_now(books), village and chain.anchor_for(books, village["disclosure"]).full
    )
    assert_ok(result)
    tables = set(books.scalars(select(ChainRecord.table_name)))
    assert tables == set(chain.COVERED_TABLES)
    assert f"published {village['disclosure'].title}: TY-" in result.output
    assert "2 anchor(s) held" in result.output


def test_vouchers_and_records_share_one_gapless_sequence(books, village):
    seqs = sorted(list(books.scalars(select(Voucher.seq))) + list(books.scalars(select(ChainRecord.seq))))
    assert seqs == list(range(1, len(seqs) + 1))
    assert chain.chain_head(books)[0] == len(seqs)


def test_changes_through_the_services_are_recorded_and_verify_clean(runner, books, village):
    h1 = village["households"][0]
    before = books.scalar(select(func.count(ChainRecord.id)))
    members.update_household(books, h1, head_name="赵建军", phone="13800000000")
    members.issue_shares(books, h1.id, 3, on=dt.date(2026, 1, 6), kind="adjust")
    periods.close_period(books, 2026, 1)
    settings.update(books, contact="民主理财小组 王秀英")
    books.commit()
    assert books.scalar(select(func.count(ChainRecord.id))) == before + 4
    last = books.scalar(select(ChainRecord).order_by(ChainRecord.seq.desc()).limit(1))
    assert last.table_name == "coop_books_settings" and "民主理财小组" in last.payload
    assert_ok(verify(runner))


def test_a_rolled_back_change_leaves_no_record_and_no_gap(runner, books, village):
    head = chain.chain_head(books)
    members.add_household(books, code="ZZ009", head_name="回滚户")
    books.flush()
    books.scalar(select(func.count(Household.id)))  # the record is flushed too
    books.rollback()
    assert chain.chain_head(books) == head
    with pytest.raises(members.LedgerError):  # refused after a successful flush in the same transaction
        members.add_household(books, code="ZZ010", head_name="甲")
        books.flush()
        members.add_household(books, code="ZZ010", head_name="乙")
    books.rollback()
    with books.begin_nested():
        members.add_household(books, code="ZZ011", head_name="保存点")
    savepoint = books.begin_nested()
    members.add_household(books, code="ZZ012", head_name="撤销")
    books.flush()
    savepoint.rollback()
    books.commit()
    assert chain.chain_head(books)[0] == head[0] + 1
    assert_ok(verify(runner))
    assert books.scalar(select(Household.head_name).where(Household.code == "ZZ011")) == "保存点"


def test_orm_bulk_updates_are_recorded_too(runner, books, village):
    from sqlalchemy import update

    books.execute(update(Household).where(Household.code == "ZZ002").values(note="批量"))
    books.commit()
    assert_ok(verify(runner))


def test_columns_added_to_a_covered_model_are_covered_without_changes(books, village):
    """The payload is every column of the row as stored: nothing lists them by hand."""
    rec = books.scalar(
        select(ChainRecord)
        .where(ChainRecord.table_name == "coop_disclosures")
        .order_by(ChainRecord.seq.desc())
    )
    import json

    assert set(json.loads(rec.payload)) == {c.name for c in Disclosure.__table__.columns}


# ---------------------------------------------------------------- rows edited, inserted, deleted with SQL

EDITS = {
    "coop_accounts": "UPDATE coop_accounts SET name = '被改名' WHERE code = '502'",
    "coop_periods": "UPDATE coop_periods SET closed_at = '2020-01-01 00:00:00' "
    "WHERE year = 2025 AND month = 3",
    "coop_distributions": "UPDATE coop_distributions SET created_by = NULL",
    "coop_households": "UPDATE coop_households SET head_name = '冒名' WHERE code = 'ZZ002'",
    "coop_share_events": "UPDATE coop_share_events SET change = change + 100 WHERE kind = 'initial' AND id = "
    "(SELECT MIN(id) FROM coop_share_events)",
    "coop_member_accounts": "UPDATE coop_member_accounts SET capital = capital * 10",
    "coop_transaction_volumes": "UPDATE coop_transaction_volumes SET amount = amount + 1",
    "coop_books_settings": "UPDATE coop_books_settings SET reserve_percent = '0'",
    "coop_disclosures": "UPDATE coop_disclosures SET title = '另一个标题'",
    "coop_statement_notes": "UPDATE coop_statement_notes SET text = '改过的附注'",
    "coop_voucher_reviews": "UPDATE coop_voucher_reviews SET reviewer_id = NULL",
}
INSERTS = {
    "coop_accounts": "INSERT INTO coop_accounts (code, name, name_en, kind, active, created_at) "
    "VALUES ('599', '暗账', '', 'income', TRUE, '2025-01-01 00:00:00')",
    "coop_periods": "INSERT INTO coop_periods (year, month, closed) VALUES (2026, 2, TRUE)",
    "coop_distributions": "INSERT INTO coop_distributions (year, plan, created_at) "
    "VALUES (2019, '{}', '2025-01-01 00:00:00')",
    "coop_households": "INSERT INTO coop_households (code, head_name, members, active, created_at) "
    "VALUES ('ZZ099', '虚户', 1, TRUE, '2025-01-01 00:00:00')",
    "coop_share_events": 'INSERT INTO coop_share_events (household_id, "on", change, kind, note, created_at) '
    "SELECT MIN(id), '2025-05-05', 50, 'adjust', '', '2025-05-05 00:00:00' FROM coop_households",
    "coop_member_accounts": "INSERT INTO coop_member_accounts (enterprise_id, household_id, capital, "
    "reserve_share) SELECT (SELECT MIN(id) FROM coop_enterprises), "
    "(SELECT MAX(id) FROM coop_households), 9, 0",
    "coop_transaction_volumes": "INSERT INTO coop_transaction_volumes (enterprise_id, household_id, year, "
    "amount) SELECT (SELECT MIN(id) FROM coop_enterprises), (SELECT MIN(id) FROM coop_households), 2024, 1",
    "coop_books_settings": "INSERT INTO coop_books_settings (id, name, opening_date, reserve_percent, "
    "future_grace_days, contact, updated_at) "
    "VALUES (2, 'x', '2020-01-01', '10', 0, '', '2025-01-01 00:00:00')",
    "coop_disclosures": 'INSERT INTO coop_disclosures (year, period_kind, period_no, start, "end", title, '
    "content, chain_seq, chain_hash, status, created_at) VALUES (2025, 'month', 7, '2025-07-01', "
    "'2025-07-31', '假公开', '{}', 0, '', 'approved', '2025-08-01 00:00:00')",
    "coop_statement_notes": "INSERT INTO coop_statement_notes (year, text, updated_at) "
    "VALUES (2024, '伪造的附注', '2025-01-01 00:00:00')",
    "coop_voucher_reviews": "INSERT INTO coop_voucher_reviews (voucher_id, reviewer_id, reviewed_at) "
    "SELECT MIN(id), NULL, '2025-01-01 00:00:00' FROM coop_vouchers WHERE approver_id IS NULL "
    "AND id NOT IN (SELECT voucher_id FROM coop_voucher_reviews)",
}
DELETES = {
    "coop_accounts": "DELETE FROM coop_accounts WHERE code = '521'",
    "coop_periods": "DELETE FROM coop_periods WHERE year = 2025 AND month = 12",
    "coop_distributions": "DELETE FROM coop_distributions",
    "coop_households": "DELETE FROM coop_households WHERE code = 'ZZ004'",
    "coop_share_events": "DELETE FROM coop_share_events WHERE kind = 'transfer_in'",
    "coop_member_accounts": "DELETE FROM coop_member_accounts",
    "coop_transaction_volumes": "DELETE FROM coop_transaction_volumes",
    "coop_books_settings": "DELETE FROM coop_books_settings",
    "coop_disclosures": "DELETE FROM coop_disclosures",
    "coop_statement_notes": "DELETE FROM coop_statement_notes",
    "coop_voucher_reviews": "DELETE FROM coop_voucher_reviews",
}


def test_every_covered_table_has_a_case():
    assert set(EDITS) == set(INSERTS) == set(DELETES) == set(chain.COVERED_TABLES)


@pytest.fixture
def spare_household(books, village):
    """A household with nothing attached (so deleting it breaks no foreign key)."""
    members.add_household(books, code="ZZ004", head_name="孙空户")
    books.commit()


@pytest.mark.parametrize("table", sorted(EDITS))
def test_a_row_edited_with_sql_is_named(runner, books, village, table):
    anchor = anchor_now(books)
    sql(books, EDITS[table])
    for result in (verify(runner), verify(runner, anchor)):
        assert_fails(result, f"{table} row", "edited outside the application", "column")


@pytest.mark.parametrize("table", sorted(INSERTS))
def test_a_row_inserted_with_sql_is_named(runner, books, village, table):
    anchor = anchor_now(books)
    sql(books, INSERTS[table])
    for result in (verify(runner), verify(runner, anchor)):
        assert_fails(result, f"{table} row", "inserted outside the application")


@pytest.mark.parametrize("table", sorted(DELETES))
def test_a_row_deleted_with_sql_is_named(runner, books, village, spare_household, table):
    anchor = anchor_now(books)
    sql(books, DELETES[table])
    for result in (verify(runner), verify(runner, anchor)):
        assert_fails(result, f"{table} row", "deleted outside the application")


# ---------------------------------------------------------------- the issue's cases


def test_income_account_turned_into_a_liability(runner, books, village):
    """504 → liability moved the year's interest out of income: named with its column."""
    anchor = anchor_now(books)
    sql(books, "UPDATE coop_accounts SET kind = 'liability' WHERE code = '504'")
    assert_fails(verify(runner), "coop_accounts row", 'column kind is "liability"', '"income"')
    append_records(books)  # the forger records the change as if the application had made it
    assert_fails(verify(runner), "class changed from income to liability")
    assert_fails(verify(runner, anchor), "class changed from income to liability")
    rewrite_history(books)  # the forger rewrites history: the account was "always" a liability
    # what the published statement says is recomputed from the books: caught even without the anchor
    assert_fails(verify(runner), "no longer give its published figures")
    assert_fails(verify(runner, anchor), f"anchor {anchor}")


def test_approved_disclosure_set_back_to_draft(runner, books, village):
    d = village["disclosure"]
    printed = chain.anchor_for(books, d).short  # what the notice board shows
    sql(books, "UPDATE coop_disclosures SET status = 'draft' WHERE id = :i", i=d.id)
    assert_fails(verify(runner), 'column status is "draft" but the chain recorded "approved"')
    append_records(books)
    assert_fails(verify(runner), "changed after its approval", "status back to draft")
    rewrite_history(books)
    assert_ok(verify(runner))
    assert_fails(verify(runner, printed), f"anchor {printed}")


def test_disclosures_published_figures_edited(runner, books, village):
    d = village["disclosure"]
    printed = chain.anchor_for(books, d).full
    content = books.scalar(select(Disclosure.content).where(Disclosure.id == d.id))
    import json

    content["total_income"] += 100_000
    sql(books, "UPDATE coop_disclosures SET content = :c WHERE id = :i", c=json.dumps(content), i=d.id)
    assert_fails(verify(runner), "coop_disclosures row", "column content")
    append_records(books)
    assert_fails(verify(runner), "changed after its approval", "content")
    rewrite_history(books)
    # what the published statement says is recomputed from the books: caught even without the anchor
    assert_fails(verify(runner), "no longer give its published figures")
    assert_fails(verify(runner, printed), "anchor TY-")


def test_distribution_plan_edited(runner, books, village):
    anchor = anchor_now(books)
    import json

    plan = books.scalar(select(Distribution.plan))
    sql(books, "UPDATE coop_distributions SET plan = :p", p=json.dumps({**plan, "reserve": 0}))
    assert_fails(verify(runner), "coop_distributions row", "column plan")
    append_records(books)
    assert_fails(verify(runner), "plan changed at position", "never changed or deleted once written")
    rewrite_history(books)
    # what the published statement says is recomputed from the books: caught even without the anchor
    assert_fails(verify(runner), "no longer give its published figures")
    assert_fails(verify(runner, anchor), f"anchor {anchor}")


def test_share_register_edited(runner, books, village):
    anchor = anchor_now(books)
    sql(books, "UPDATE coop_share_events SET change = 500 WHERE kind = 'transfer_in'")
    assert_fails(verify(runner), "coop_share_events row", "column change is 500")
    append_records(books)
    assert_fails(
        verify(runner), "coop_share_events row", "change changed at position", "never changed or deleted"
    )
    rewrite_history(books)
    assert_ok(verify(runner))
    assert_fails(verify(runner, anchor), f"anchor {anchor}")


def test_closed_period_row_reopened(runner, books, village):
    anchor = anchor_now(books)
    sql(books, "UPDATE coop_periods SET closed = FALSE WHERE year = 2025 AND month = 6")
    assert_fails(verify(runner), "coop_periods row", "column closed is false")
    rewrite_history(books)
    assert_ok(verify(runner))
    assert_fails(verify(runner, anchor), f"anchor {anchor}")


def test_forged_voucher_appended_into_a_closed_year(runner, books, village):
    """The issue's forgery: a voucher appended with SQL, with its hash, the head and the balances
    recomputed. It is dated in 2025, which was closed (in the chain) before its position."""
    anchor = anchor_now(books)
    forge_voucher(books, day="2025-12-30", debit="513", credit="101", amount=86_500)
    for result in (verify(runner), verify(runner, anchor)):
        assert_fails(result, "dated 2025-12-30, in a month that was already closed")


def test_forged_voucher_appended_into_an_open_month_needs_a_later_look(runner, books, village):
    """The limit, stated honestly: a voucher appended in an open month with everything recomputed
    looks like a posting. The chain still pins what came before (an older anchor holds), and the
    next anchor printed pins the forged voucher for good: removing it later is caught."""
    before = anchor_now(books)
    forge_voucher(books, day="2026-01-06", debit="513", credit="101", amount=86_500)
    assert_ok(verify(runner))
    assert_ok(verify(runner, before))
    after = anchor_now(books)
    sql(
        books,
        "UPDATE coop_chain_head SET seq = seq - 1, hash = (SELECT prev_hash FROM coop_vouchers WHERE id = "
        "(SELECT MAX(id) FROM coop_vouchers))",
    )
    sql(books, "DELETE FROM coop_voucher_lines WHERE voucher_id = (SELECT MAX(id) FROM coop_vouchers)")
    sql(books, "DELETE FROM coop_vouchers WHERE id = (SELECT MAX(id) FROM coop_vouchers)")
    rebuild_balances(books)
    assert_ok(verify(runner))
    assert_fails(verify(runner, after), f"anchor {after}", "is gone")


def test_old_voucher_rewritten_with_the_whole_chain_recomputed(runner, books, village):
    """A complete recomputation behind a published statement: its figures and the anchor catch it."""
    anchor = anchor_now(books)
    sql(
        books,
        "UPDATE coop_voucher_lines SET debit = debit * 2 WHERE debit > 0 AND voucher_id = "
        "(SELECT id FROM coop_vouchers WHERE summary = '办公 3')",
    )
    sql(
        books,
        "UPDATE coop_voucher_lines SET credit = credit * 2 WHERE credit > 0 AND voucher_id = "
        "(SELECT id FROM coop_vouchers WHERE summary = '办公 3')",
    )
    assert_fails(verify(runner), "content does not match its hash")
    rebuild_balances(books)
    rewrite_history(books)
    # what the published statement says is recomputed from the books: caught even without the anchor
    assert_fails(verify(runner), "no longer give its published figures")
    assert_fails(verify(runner, anchor), f"anchor {anchor}")
    printed = chain.anchor_for(books, village["disclosure"])
    assert printed is not None  # still "approved" in the rewritten chain, under a different hash


def test_a_recomputed_chain_fails_the_anchor_printed_on_the_notice(runner, books, village):
    d = village["disclosure"]
    printed = chain.anchor_for(books, d).short
    sql(books, "UPDATE coop_households SET head_name = '冒名' WHERE code = 'ZZ001'")
    rewrite_history(books)
    assert_ok(verify(runner))
    assert_fails(verify(runner, printed), f"anchor {printed}")


def test_deleting_records_is_caught(runner, books, village):
    sql(books, "DELETE FROM coop_chain_records WHERE seq = (SELECT MAX(seq) FROM coop_chain_records)")
    assert_fails(verify(runner), "is missing")


def test_deleting_the_last_entries_is_caught(runner, books, village):
    members.add_household(books, code="ZZ060", head_name="最后")
    books.commit()
    anchor = anchor_now(books)
    sql(books, "DELETE FROM coop_chain_records WHERE seq = (SELECT MAX(seq) FROM coop_chain_records)")
    assert_fails(verify(runner), "chain head")
    sql(
        books,
        "UPDATE coop_chain_head SET seq = seq - 1, hash = (SELECT hash FROM coop_vouchers WHERE seq = "
        "(SELECT MAX(seq) FROM coop_vouchers))",
    )
    assert_fails(verify(runner), "coop_households row", "not in the chain")
    sql(books, "DELETE FROM coop_households WHERE code = 'ZZ060'")
    assert_ok(verify(runner))  # everything after the last anchor can be cut off without trace ...
    assert_fails(verify(runner, anchor), f"anchor {anchor}", "is gone")  # ... except against that anchor


def test_an_edited_record_is_named(runner, books, village):
    sql(books, "UPDATE coop_chain_records SET payload = replace(payload, '赵建国', '钱建国')")
    assert_fails(verify(runner), "chain record at position", "coop_households", "does not match its hash")


# ---------------------------------------------------------------- anchors


def test_anchor_command_prints_a_short_copyable_head(runner, books, village):
    result = runner.invoke(args=["coop", "anchor"])
    assert result.exit_code == 0, result.output
    seq, digest = chain.chain_head(books)
    lines = result.output.splitlines()
    assert lines[0] == f"TY-{seq}-{digest[:16]}"
    assert digest in result.output and f"position {seq}" in result.output
    assert_ok(verify(runner, lines[0], f"TY-{seq}-{digest}", f"TY-{seq}-{digest.upper()}"))


def test_an_anchor_file_and_a_wrong_anchor(runner, books, village, tmp_path):
    good = anchor_now(books)
    file = tmp_path / "anchors.txt"
    file.write_text(f"# notice board, 2026-01\n{good} copied from the sheet\n\nTY-3-{'0' * 16}\n", "utf-8")
    result = runner.invoke(args=["coop", "verify", "--anchors", str(file)])
    assert_fails(result, f"anchor TY-3-{'0' * 16}")
    assert good not in result.output.split("anchor ", 1)[1].split(":")[0]
    beyond = f"TY-{chain.chain_head(books)[0] + 5}-{'a' * 16}"
    assert_fails(verify(runner, beyond), f"anchor {beyond}", "is gone")


@pytest.mark.parametrize("value", ["TY-12", "TY-x-0123456789abcdef", "TY-3-0123", "hello", ""])
def test_a_value_that_is_not_an_anchor_is_refused_cleanly(runner, village, value):
    result = verify(runner, value)
    assert result.exit_code == 2 and "not an anchor" in result.output and "Traceback" not in result.output


def test_the_disclosure_anchor_is_the_head_right_after_approval(books, households, official):
    post(books, dt.date(2025, 1, 5), "收入", ("101", 100, 0), ("501", 0, 100))
    close_through(books, 2025, 1)
    d = disclosure.draft(books, 2025, "month", 1)
    assert chain.anchor_for(books, d) is None
    publish(books, d.id)
    anchor = chain.anchor_for(books, d)
    assert (anchor.seq, anchor.hash) == chain.chain_head(books)
    post(books, dt.date(2025, 2, 5), "later", ("101", 100, 0), ("501", 0, 100))
    books.commit()
    assert chain.anchor_for(books, d) == anchor  # later postings do not move it
    rec = books.scalar(select(ChainRecord).where(ChainRecord.seq == anchor.seq))
    assert rec.table_name == "coop_disclosures" and '"status":"approved"' in rec.payload
    assert '"total_income":100' in rec.payload  # the anchor covers the published content


def test_public_page_and_notice_show_the_anchor_verify_checks(runner, client, books, village):
    d = village["disclosure"]
    anchor = chain.anchor_for(books, d)
    page = client.get(f"/disclosure/{d.id}").get_data(as_text=True)
    assert anchor.short in page and anchor.full in page
    assert "校验码" in page and "民主理财小组" in page and "村会计室 0371-6288 0000" in page
    assert "村务公开栏" in page and "对不上这个校验码" in page  # the villagers' explanation, in Chinese
    assert "flask coop" not in page and "--anchor" not in page  # no command lines for villagers
    result = verify(runner)
    assert f"published {d.title}: {anchor.short}" in result.output
    css = client.get("/static/css/coop.css").get_data(as_text=True)
    print_css = css.split("@media print", 1)[1]
    assert ".anchor-box" in print_css and "display: block" in print_css


def test_public_page_in_english(client, books, village):
    d = village["disclosure"]
    page = client.get(f"/disclosure/{d.id}", query_string={"lang": "en"}).get_data(as_text=True)
    assert "Check code" in page and chain.anchor_for(books, d).short in page


# ---------------------------------------------------------------- export and adoption


def test_export_beancount_refuses_when_the_chain_does_not_verify(runner, books, village, tmp_path):
    out = tmp_path / "books.beancount"
    assert runner.invoke(args=["coop", "export-beancount", str(out)]).exit_code == 0
    out.unlink()
    sql(books, "UPDATE coop_households SET head_name = '冒名' WHERE code = 'ZZ002'")
    result = runner.invoke(args=["coop", "export-beancount", str(out)])
    assert result.exit_code == 1 and "refused" in result.output and "coop_households row" in result.output
    assert not out.exists()
    result = runner.invoke(args=["coop", "export-beancount", str(out), "--force"])
    assert result.exit_code == 0 and out.exists()
    assert "WARNING: THE BOOKS DO NOT VERIFY" in result.output


def test_adopting_books_kept_before_the_chain(runner, books, village):
    """Legacy books: the rows exist, the records do not (as after upgrading)."""
    sql(books, "DELETE FROM coop_chain_records")
    rewrite_voucher_positions(books)
    assert_fails(verify(runner), "not in the chain")
    result = runner.invoke(args=["coop", "adopt-untracked"])
    assert result.exit_code == 0, result.output
    assert_ok(verify(runner))
    again = runner.invoke(args=["coop", "adopt-untracked"])
    assert again.exit_code == 1 and "already records" in again.output
    sql(books, INSERTS["coop_households"])
    assert runner.invoke(args=["coop", "adopt-untracked"]).exit_code == 1  # no laundering of inserted rows
    assert_fails(verify(runner), "inserted outside the application")


def rewrite_voucher_positions(session) -> None:
    """Books from before the change: vouchers alone, at positions 1..n."""
    from tests.coop.forgery import _load, _write

    _conn, entries = _load(session)
    _write(session, [e for e in entries if e.kind_ == "voucher"])


def test_the_demo_books_verify_and_show_their_anchor(runner, client, session, demo_books):
    assert_ok(verify(runner))
    d = session.scalar(select(Disclosure).where(Disclosure.status == "approved"))
    anchor = chain.anchor_for(session, d)
    assert anchor is not None and anchor.short in client.get(f"/disclosure/{d.id}").get_data(as_text=True)


def test_the_clock_stamps_records(books, households):
    with clock.frozen(dt.datetime(2026, 3, 1, 9, 0, tzinfo=dt.UTC)):
        members.add_household(books, code="ZZ050", head_name="时钟")
        books.commit()
    rec = books.scalar(select(ChainRecord).order_by(ChainRecord.seq.desc()).limit(1))
    assert rec.at == dt.datetime(2026, 3, 1, 9, 0, tzinfo=dt.UTC)
    assert books.get(Account, 1) is not None


def test_the_verify_button_names_the_tampered_row(client, books, village):
    from tests.conftest import csrf_token_from, login

    login(client, "kuaiji")
    page = client.get("/coop/").get_data(as_text=True)
    seq, digest = chain.chain_head(books)
    assert f"TY-{seq}-{digest[:16]}" in page  # the books' front page shows the anchor to copy
    token = csrf_token_from(page)
    ok = client.post("/coop/verify", data={"csrf_token": token}, follow_redirects=True).get_data(as_text=True)
    assert "哈希链完好" in ok
    sql(books, "UPDATE coop_accounts SET kind = 'liability' WHERE code = '504'")
    bad = client.post("/coop/verify", data={"csrf_token": token}, follow_redirects=True)
    assert bad.status_code == 200
    assert "coop_accounts row" in bad.get_data(as_text=True) and "liability" in bad.get_data(as_text=True)


def test_approving_through_the_web_prints_the_anchor(client, books, households, official, make_user):
    from tests.conftest import csrf_token_from, login

    post(books, dt.date(2025, 1, 5), "收入", ("101", 100, 0), ("501", 0, 100))
    close_through(books, 2025, 1)
    d = disclosure.draft(books, 2025, "month", 1, user_id=official.id)
    disclosure.sign_off(books, d.id, user_id=make_user("licai", "oversight").id)
    books.commit()
    make_user("cunzhang", "official")
    login(client, "cunzhang")
    token = csrf_token_from(client.get("/coop/disclosures").get_data(as_text=True))
    client.post(
        "/coop/disclosures",
        data={
            "csrf_token": token,
            "action": "approve",
            "id": str(d.id),
            "confirm": "yes",
            "digest": disclosure.digest(d),
        },
    )
    books.expire_all()
    assert books.get(Disclosure, d.id).status == "approved"
    anchor = chain.anchor_for(books, books.get(Disclosure, d.id))
    assert anchor.short in client.get(f"/disclosure/{d.id}").get_data(as_text=True)


def test_setting_a_value_it_already_had_records_nothing(books, village):
    h1 = village["households"][0]
    before = chain.chain_head(books)
    h1.head_name = h1.head_name
    books.get(Disclosure, village["disclosure"].id)  # (touching other rows changes nothing either)
    books.commit()
    assert chain.chain_head(books) == before


# ---------------------------------------------------------------- found by review


def test_a_voucher_total_edited_alone_is_caught(runner, books, village):
    """The total is not in the hash, but reports read it (the distribution line, major items)."""
    sql(books, "UPDATE coop_vouchers SET total = total + 10000000 WHERE kind = 'distribution'")
    assert_fails(verify(runner), "is not the sum of its debits")


def test_a_voucher_before_the_opening_date_is_caught_with_everything_recomputed(runner, books, village):
    """Appended, hashed, balanced and headed like the application's own, but dated before the books
    opened (no period row covers it): the position's opening date names it."""
    household = books.scalar(select(Account.code).where(Account.key.like("household:%")))
    forge_voucher(books, day="2019-06-30", debit=household, credit="101", amount=5_000_000)
    assert_fails(verify(runner), "before the books' opening date")


def test_an_account_moved_under_another_parent_is_caught(runner, books, village):
    household = books.scalar(select(Account).where(Account.key.like("household:%")))
    cash = books.scalar(select(Account.id).where(Account.code == "101"))
    sql(
        books,
        "UPDATE coop_accounts SET parent_id = :p, name = '现金—备用金' WHERE id = :i",
        p=cash,
        i=household.id,
    )
    append_records(books)
    assert_fails(verify(runner), "never renamed, renumbered or moved", "parent_id")


def test_an_anchors_file_saved_with_a_byte_order_mark_is_read(runner, books, village, tmp_path):
    path = tmp_path / "anchors.txt"
    path.write_text("\ufeff" + anchor_now(books) + "\n", encoding="utf-8")
    result = runner.invoke(args=["coop", "verify", "--anchors", str(path)])
    assert result.exit_code == 0, result.output


def test_a_disclosure_withdrawn_without_a_reopening_is_caught(runner, books, village):
    """Found by review: the genuine statement set to withdrawn (and recorded) passed verify."""
    d = village["disclosure"]
    sql(
        books,
        "UPDATE coop_disclosures SET status = 'withdrawn', withdraw_reason = '错误', "
        "withdrawn_at = '2026-01-05 00:00:00' WHERE id = :i",
        i=d.id,
    )
    append_records(books)
    assert_fails(verify(runner), "without any month it covers having been reopened")


def test_a_full_width_account_code_is_understood(books):
    v = post(books, dt.date(2026, 1, 6), "全角科目", ("１０１", 100, 0), ("５０１", 0, 100))
    assert [ln.account.code for ln in v.lines] == ["101", "501"]
