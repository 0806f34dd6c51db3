"""Folding what a Chinese keyboard types into what a parser reads: full-width ASCII (１２３，．－),
the ideographic space and the full-width yuan sign become their ASCII forms. Nothing else changes:
circled or superscript digits (①, ²) stay what they are, so a parser refuses them."""

from __future__ import annotations

_FOLD = {cp: cp - 0xFEE0 for cp in range(0xFF01, 0xFF5F)} | {0x3000: 0x20, 0xFFE5: 0xA5}


def fold_width(text: str) -> str:
    """``１，２３４．５０`` → ``1,234.50``; ``￥`` → ``¥``; ``\\u3000`` → a space."""
    return text.translate(_FOLD)


# What makes a spreadsheet (Excel, WPS, LibreOffice) run a cell as a formula, or hide one in it.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\n")


def safe_cell(value: object) -> object:
    """A value for a CSV or XLSX cell that no spreadsheet runs as a formula: text starting with
    ``=``, ``+``, ``-``, ``@``, a tab or a line break (also after spaces: `` =1+1``) gets an
    apostrophe in front, as Excel and WPS do themselves; numbers (a negative amount included)
    and everything that is not text pass unchanged. The one neutraliser of every export."""
    if isinstance(value, str) and value.lstrip(" ").startswith(FORMULA_STARTS):
        return "'" + value
    return value
