"""The Beancount export of the demo ledger passes bean-check and matches the trial balance."""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from coop.export import _component
from coop.reports import account_balances, trial_balance

BEAN_CHECK = shutil.which("bean-check") or str(Path(sys.executable).parent / "bean-check")


def test_account_names_are_valid_beancount_components():
    assert _component("101", "库存现金") == "101-库存现金"
    assert _component("401", "生产（劳务）成本") == "401-生产（劳务）成本"
    assert _component("11301", "ZZ001 赵建国 (A/B)") == "11301-ZZ001-赵建国-A-B"


def test_demo_export_passes_bean_check_and_matches_the_trial_balance(runner, session, demo_books, tmp_path):
    path = tmp_path / "books.beancount"
    result = runner.invoke(args=["coop", "export-beancount", str(path)])
    assert result.exit_code == 0, result.output
    text = path.read_text(encoding="utf-8")
    assert "Assets:101-库存现金" in text and 'voucher: "' in text
    check = subprocess.run([BEAN_CHECK, str(path)], capture_output=True, text=True, timeout=120)
    assert check.returncode == 0, check.stdout + check.stderr

    from beancount import loader
    from beancount.core import data

    entries, errors, _options = loader.load_file(str(path))
    assert not errors
    totals: dict[str, Decimal] = {}
    for entry in entries:
        if isinstance(entry, data.Transaction):
            for p in entry.postings:
                assert p.units.currency == "CNY"
                assert p.units.number == p.units.number.quantize(Decimal("0.01"))
                code = p.account.rsplit(":", 1)[1].split("-", 1)[0]
                totals[code] = totals.get(code, Decimal(0)) + p.units.number
    year = dt.date.today().year
    ours = account_balances(session, year, 12)
    assert len(totals) > 20
    for code, amount in totals.items():  # every posted account: Beancount's sum == Tianyuan's balance
        assert amount == Decimal(ours.get(code, 0)) / 100, code
    tb = trial_balance(session, year, 1, 12)
    assert tb.balanced
    n_vouchers = text.count('voucher: "')
    assert f"wrote {n_vouchers} voucher(s)" in result.output


def test_csv_and_xlsx_exports(client, session, demo_books):
    from openpyxl import load_workbook

    from tests.conftest import login

    login(client, "kuaiji")
    year = dt.date.today().year - 1
    csv_text = client.get(f"/coop/reports/trial-balance?year={year}&format=csv").get_data(as_text=True)
    assert csv_text.startswith("\ufeff")
    assert "101,库存现金" in csv_text
    r = client.get(f"/coop/reports/balance-sheet?year={year}&month=12&format=xlsx")
    assert r.mimetype.endswith("spreadsheetml.sheet")
    import io

    ws = load_workbook(io.BytesIO(r.data)).active
    rows = list(ws.values)
    assert rows[0][0] == "资产负债表"
    header = rows[2]
    assert header == ("项目", "行次", "年初数", "期末数")
    cash = next(row for row in rows if row[0] == "货币资金")
    assert isinstance(cash[3], float | int)
    balances = account_balances(session, year, 12)
    assert cash[3] == pytest.approx((balances["101"] + balances["102"]) / 100)


def test_text_that_looks_like_a_formula_stays_text(client, official, books):
    """Found by review: =HYPERLINK(...) typed into the notes came out of the XLSX as a formula."""
    import io

    from openpyxl import load_workbook

    from coop.export import Fen, table_csv, table_xlsx

    rows = [['=HYPERLINK("http://evil","点击")', Fen(-12_345)], ["+1", "@SUM(A1)"], ["-2", "普通文字"]]
    ws = load_workbook(io.BytesIO(table_xlsx("t", ["项目", "金额"], rows))).active
    cells = [c for row in ws.iter_rows(min_row=2) for c in row]
    assert all(c.data_type != "f" for c in cells)
    texts = [c.value for c in cells if isinstance(c.value, str)]
    assert '\'=HYPERLINK("http://evil","点击")' in texts and "'@SUM(A1)" in texts
    assert -123.45 in [c.value for c in cells]  # amounts stay numbers
    csv_text = table_csv(["项目", "金额"], rows)
    assert "'=HYPERLINK" in csv_text and "\n=" not in csv_text and "-123.45" in csv_text
