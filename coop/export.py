"""Exports: the whole ledger as a Beancount file, and report tables as CSV or XLSX."""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
from collections.abc import Iterable, Sequence
from typing import TextIO

from sqlalchemy import select
from sqlalchemy.orm import Session

from coop.models import Account, Voucher, VoucherLine
from coop.reports import _rolled
from core import clock
from core.money import format_yuan
from core.text import safe_cell

ROOTS = {
    "asset": "Assets",
    "cost": "Assets",  # 生产（劳务）成本 is work in progress: an asset until sold
    "liability": "Liabilities",
    "equity": "Equity",
    "income": "Income",
    "expense": "Expenses",
}
_BAD = re.compile(r"[\x00-\x2c\x2e-\x2f\x3a-\x40\x5b-\x60\x7b-\x7f]+")  # ASCII except letters, digits, '-'


def _component(code: str, name: str) -> str:
    """``101`` + ``库存现金`` → ``101-库存现金``: starts with a digit, no ASCII punctuation but '-'."""
    text = _BAD.sub("-", f"{code}-{name}").strip("-")
    return re.sub("-{2,}", "-", text)


def beancount_names(session: Session) -> dict[int, str]:
    accounts = {a.id: a for a in session.scalars(select(Account))}
    names: dict[int, str] = {}

    def name(a: Account) -> str:
        if a.id not in names:
            if a.parent_id is None:
                names[a.id] = f"{ROOTS[a.kind]}:{_component(a.code, a.name)}"
            else:
                names[a.id] = f"{name(accounts[a.parent_id])}:{_component(a.code, a.name)}"
        return names[a.id]

    for a in accounts.values():
        name(a)
    return names


def _amount(fen: int) -> str:
    sign = "-" if fen < 0 else ""
    whole, cents = divmod(abs(fen), 100)
    return f"{sign}{whole}.{cents:02d}"


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ") + '"'


def write_beancount(
    session: Session, out: TextIO, *, title: str = "Tianyuan village books"
) -> dict[str, int]:
    """Write every voucher as a Beancount transaction, with balance assertions at the end.

    Returns {"vouchers": n, "lines": n}. Amounts in CNY with exactly two decimals; the voucher
    number, chain position and hash are metadata.
    """
    names = beancount_names(session)
    first = session.scalar(select(Voucher.date).order_by(Voucher.date).limit(1)) or clock.today()
    last = session.scalar(select(Voucher.date).order_by(Voucher.date.desc()).limit(1)) or first
    out.write(f"; {title}: exported from Tianyuan\n")
    out.write(f'option "title" {_quote(title)}\noption "operating_currency" "CNY"\n')
    out.write('option "name_assets" "Assets"\n\n')
    opened = sorted(names.values())
    open_day = first.replace(month=1, day=1)
    for name in opened:
        out.write(f"{open_day.isoformat()} open {name} CNY\n")
    out.write("\n")
    stmt = (
        select(
            Voucher.id,
            Voucher.date,
            Voucher.year,
            Voucher.number,
            Voucher.summary,
            Voucher.seq,
            Voucher.hash,
            Voucher.kind,
            VoucherLine.account_id,
            VoucherLine.debit,
            VoucherLine.credit,
        )
        .join(VoucherLine, VoucherLine.voucher_id == Voucher.id)
        .order_by(Voucher.date, Voucher.seq, VoucherLine.line_no)
        .execution_options(yield_per=20000)
    )
    current = None
    vouchers = lines = 0
    buf: list[str] = []
    for row in session.connection().execute(stmt):
        if row.id != current:
            if buf:
                out.write("".join(buf))
            current = row.id
            vouchers += 1
            buf = [
                f"{row.date.isoformat()} * {_quote(row.summary)}\n",
                f'  voucher: "{row.year}-{row.number:04d}"\n',
                f"  chain_seq: {row.seq}\n",
                f'  chain_hash: "{row.hash}"\n',
            ]
            if row.kind != "normal":
                buf.append(f'  kind: "{row.kind}"\n')
        lines += 1
        amount = row.debit - row.credit
        buf.append(f"  {names[row.account_id]}  {_amount(amount)} CNY\n")
    if buf:
        buf.append("\n")
        out.write("".join(buf))
    # Balance assertions (checked by bean-check) on the day after the last voucher.
    assert_day = last + dt.timedelta(days=1)
    from coop.reports import _figures

    out.write("\n; Closing balances as in Tianyuan's trial balance\n")
    for closing in _rolled(session, _figures(session, 0, 999912)):
        if not closing.empty:
            name, amount = names[closing.account.id], _amount(closing.closing)
            out.write(f"{assert_day.isoformat()} balance {name}  {amount} CNY\n")
    return {"vouchers": vouchers, "lines": lines}


# ---------------------------------------------------------------- tables


safe_text = safe_cell  # the one neutraliser of every export, core.text.safe_cell (kept under its old name)


def table_csv(header: Sequence[str], rows: Iterable[Sequence]) -> str:
    buf = io.StringIO()
    buf.write("\ufeff")  # so that spreadsheet programs read the Chinese names as UTF-8
    writer = csv.writer(buf)
    writer.writerow(header)
    for row in rows:
        writer.writerow(
            [format_yuan(v).replace(",", "") if isinstance(v, Fen) else safe_text(v) for v in row]
        )
    return buf.getvalue()


def table_xlsx(
    title: str, header: Sequence[str], rows: Iterable[Sequence], *, preamble: Sequence[Sequence] | None = None
) -> bytes:
    """One sheet: optional title lines (e.g. the statement's name, the organisation, the unit), a bold
    header row frozen in view, then the rows; amounts (``Fen``) are numbers in yuan shown with two
    decimals, so Excel and WPS sum them."""
    from openpyxl import Workbook
    from openpyxl.styles import Font

    wb = Workbook()
    ws = wb.active
    ws.title = title[:31]
    for line in preamble or ():
        ws.append([safe_text(v) for v in line])
    if preamble:
        ws.cell(row=1, column=1).font = Font(bold=True, size=14)
    ws.append([safe_text(h) for h in header])
    header_row = ws.max_row
    for cell in ws[header_row]:
        cell.font = Font(bold=True)
    ws.freeze_panes = ws.cell(row=header_row + 1, column=1)
    widths = [_width(h) for h in header]
    for row in rows:
        ws.append([int(v) / 100 if isinstance(v, Fen) else safe_text(v) for v in row])
        for i, (cell, v) in enumerate(zip(ws[ws.max_row], row, strict=False)):
            if isinstance(v, Fen):
                cell.number_format = "#,##0.00"
            if i < len(widths):
                widths[i] = max(widths[i], _width(format_yuan(v) if isinstance(v, Fen) else v))
    for i, w in enumerate(widths[:26]):
        ws.column_dimensions[chr(65 + i)].width = min(max(w + 2, 8), 60)
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def _width(value: object) -> int:
    """Display width: CJK characters take two columns."""
    text = "" if value is None else str(value)
    return sum(2 if ord(ch) > 0x2E80 else 1 for ch in text)


class Fen(int):
    """An int marked as an amount in fen, for exports (CSV: 1234.56, XLSX: a number)."""
