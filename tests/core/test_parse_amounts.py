"""Amounts typed by people: strict, understood in the forms people write, refused in Chinese."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.money import MoneyError, format_yuan, parse_yuan

FULL_WIDTH = str.maketrans("0123456789,.-", "０１２３４５６７８９，．－")


@pytest.mark.parametrize(
    "text,fen",
    [
        ("1,234.50", 123450),
        ("¥1,234.50", 123450),
        ("￥1,234.50", 123450),
        ("１２３．４５", 12345),
        ("１，２３４", 123400),
        ("  12.3  ", 1230),
        ("\u300012\u3000", 1200),  # ideographic spaces
        ("12.5元", 1250),
        ("1,234,567.89", 123456789),
        ("0", 0),
        ("007", 700),
        ("+5", 500),
    ],
)
def test_understood(text, fen):
    assert parse_yuan(text) == fen


@pytest.mark.parametrize(
    "text,why",
    [
        ("1e3", "exponent"),
        ("1E-2", "exponent"),
        ("1,2,3", "groups of three"),
        ("1,23.4", "groups of three"),
        ("12,3456", "groups of three"),
        (",123", "groups of three"),
        (".", "not an amount"),
        ("--1", "not an amount"),
        ("+-1", "not an amount"),
        ("NaN", "not an amount"),
        ("inf", "not an amount"),
        ("Infinity", "not an amount"),
        ("1.234", "two decimals"),
        ("1.230", "two decimals"),
        ("0x10", "not an amount"),
        ("1 234", "not an amount"),
        ("12.", "not an amount"),
        ("", "empty"),
        ("¥", "empty"),
        ("-3.2", "negative"),
        ("－５", "negative"),
        ("12345678901234567", "too large"),
    ],
)
def test_refused_with_a_reason(text, why):
    with pytest.raises(MoneyError, match=why):
        parse_yuan(text)


def test_negative_only_where_the_field_allows_it():
    assert parse_yuan("-3.2", allow_negative=True) == -320
    assert parse_yuan("-¥1,000", allow_negative=True) == -100000
    assert parse_yuan("-0") == 0
    with pytest.raises(MoneyError, match="negative"):
        parse_yuan(-3)
    with pytest.raises(MoneyError):
        parse_yuan(True)  # type: ignore[arg-type]


def test_refusals_are_translated(app):
    from flask_babel import force_locale, gettext

    with app.test_request_context(), force_locale("zh_Hans_CN"):
        for text in ("1e3", "1,2,3", "1.234", "-5", "abc", ""):
            with pytest.raises(MoneyError) as info:
                parse_yuan(text)
            message = info.value.translated(gettext)
            assert message != str(info.value), text
            assert any("\u4e00" <= c <= "\u9fff" for c in message), message


@given(st.integers(min_value=0, max_value=10**17))
def test_every_amount_as_printed_reads_back(fen):
    text = format_yuan(fen)
    for variant in (text, text.replace(",", ""), f"¥{text}", f" {text}元 ", text.translate(FULL_WIDTH)):
        assert parse_yuan(variant) == fen
    assert parse_yuan(f"-{text}", allow_negative=True) == -fen


@given(st.text(max_size=30))
def test_any_text_is_an_amount_or_a_clear_refusal(text):
    try:
        fen = parse_yuan(text, allow_negative=True)
    except MoneyError:
        return
    assert isinstance(fen, int)
    # whatever was accepted is digits with at most two decimals: printing it and reading it agrees
    assert parse_yuan(format_yuan(fen), allow_negative=True) == fen


@given(st.integers(min_value=0, max_value=10**9), st.integers(min_value=3, max_value=6))
def test_more_than_two_decimals_never_pass(whole, places):
    with pytest.raises(MoneyError, match="two decimals"):
        parse_yuan(f"{whole}.{'1' * places}")


@given(st.integers(min_value=1, max_value=999), st.integers(min_value=1, max_value=5))
def test_exponents_never_pass(mantissa, exponent):
    for text in (f"{mantissa}e{exponent}", f"{mantissa}E{exponent}", f"{mantissa}e-{exponent}"):
        with pytest.raises(MoneyError):
            parse_yuan(text)


@pytest.mark.parametrize("text", ["①②", "²", "１²", "٣"])
def test_circled_superscript_and_other_digits_are_not_amounts(text):
    """Found by review: NFKC turned ①② into 12."""
    with pytest.raises(MoneyError):
        parse_yuan(text)


def test_dates_and_whole_numbers_take_only_their_plain_forms():
    from core import parse

    for text in ("20261120", "2026-W47-5", "2026-1-5", "①"):
        with pytest.raises(parse.InputError):
            parse.date_field(text)
    assert parse.date_field("２０２６－１１－２０").isoformat() == "2026-11-20"
    for text in ("1,2,3", "12,34", "①", ","):
        with pytest.raises(parse.InputError):
            parse.whole_number(text)
    assert parse.whole_number("1,000") == 1000 and parse.whole_number("１２") == 12
