"""Reading one portfolio CSV: delimiters, headers, the column-count gate, market values."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from runner.tasks.portfolio_csv import (
    Holding,
    PortfolioFileError,
    guess_decimal_mark,
    guess_delimiter,
    read_portfolio_csv,
)

WriteCsv = Callable[[str | bytes], Path]


@pytest.fixture
def write_csv(tmp_path: Path) -> WriteCsv:
    def write(content: str | bytes) -> Path:
        path = tmp_path / "portfolio.csv"
        path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
        return path

    return write


def _read_error(path: Path) -> str:
    with pytest.raises(PortfolioFileError) as caught:
        read_portfolio_csv(path)
    return caught.value.detail


def test_a_semicolon_delimited_file_is_read(write_csv: WriteCsv) -> None:
    table = read_portfolio_csv(write_csv("isin;market_value;currency\nGB0007980591;10000;USD\n"))
    assert table.holdings == [Holding("GB0007980591", 10000.0, "USD")]


def test_a_semicolon_file_may_use_a_decimal_comma(write_csv: WriteCsv) -> None:
    table = read_portfolio_csv(write_csv("isin;market_value;currency\nGB1;1234,5;USD\nGB2;7;USD\n"))
    assert [holding.market_value for holding in table.holdings] == [1234.5, 7.0]


def test_thousands_separators_are_dropped_when_the_decimal_is_a_point(write_csv: WriteCsv) -> None:
    table = read_portfolio_csv(write_csv('isin,market_value,currency\nGB1,"1,000.50",USD\n'))
    assert table.holdings[0].market_value == 1000.5


@pytest.mark.parametrize(
    ("values", "marks"),
    [
        (["10000"], (".", ",")),
        (["1,000.5"], (".", ",")),
        (["1234,56"], (",", ".")),
        (["1,000"], (".", ",")),
        (["1.000"], (",", ".")),
        (["1.000", "2.5"], (".", ",")),
        (["1.000,50"], (",", ".")),
        (["1,000", "2.500"], (".", ",")),
    ],
)
def test_the_decimal_mark_is_guessed_per_column_with_pactas_rule(
    values: list[str], marks: tuple[str, str]
) -> None:
    assert guess_decimal_mark(values) == marks


def test_a_market_value_that_is_not_a_number_is_read_as_na(write_csv: WriteCsv) -> None:
    table = read_portfolio_csv(write_csv("isin,market_value,currency\nGB1,abc,USD\nGB2,5,USD\n"))
    assert [holding.market_value for holding in table.holdings] == [None, 5.0]


def test_empty_fields_and_na_are_read_as_na(write_csv: WriteCsv) -> None:
    table = read_portfolio_csv(write_csv("isin,market_value,currency\n,NA,NA\n"))
    assert table.holdings == [Holding(None, None, None)]


def test_spaces_in_strings_are_kept_as_r_keeps_them(write_csv: WriteCsv) -> None:
    table = read_portfolio_csv(write_csv("isin,market_value,currency\n GB1 , 10 , USD\n"))
    assert table.holdings == [Holding(" GB1 ", 10.0, " USD")]


def test_blank_lines_are_skipped(write_csv: WriteCsv) -> None:
    table = read_portfolio_csv(write_csv("isin,market_value,currency\r\n\r\nGB1,1,USD\r\n\r\n"))
    assert len(table.holdings) == 1


def test_headers_match_whatever_their_case_spaces_dots_or_underscores(write_csv: WriteCsv) -> None:
    content = " Investor.Name ,PORTFOLIO_NAME,Isin,Market Value,currency\nI,P,GB1,1,USD\n"
    table = read_portfolio_csv(write_csv(content))
    assert table.group_cols == ["portfolio_name", "investor_name"]
    assert table.holdings == [Holding("GB1", 1.0, "USD", portfolio_name="P", investor_name="I")]


def test_a_utf8_byte_order_mark_does_not_hide_the_first_header(write_csv: WriteCsv) -> None:
    table = read_portfolio_csv(write_csv(b"\xef\xbb\xbfisin,market_value,currency\nGB1,1,USD\n"))
    assert table.holdings[0].isin == "GB1"


def test_a_windows_1252_file_is_decoded(write_csv: WriteCsv) -> None:
    content = "isin,market_value,currency,portfolio_name,investor_name\nGB1,1,EUR,Fonds,Müller\n"
    table = read_portfolio_csv(write_csv(content.encode("cp1252")))
    assert table.holdings[0].investor_name == "Müller"


def test_five_columns_without_name_columns_give_no_group_columns(write_csv: WriteCsv) -> None:
    table = read_portfolio_csv(write_csv("isin,market_value,currency,a,b\nGB1,1,USD,x,y\n"))
    assert table.group_cols == []


def test_the_delimiter_is_the_one_every_line_has_equally_often() -> None:
    assert guess_delimiter('isin;market_value;currency\nGB1;"1,000.5";USD\n') == ";"
    assert guess_delimiter("isin,market_value,currency\nGB1,1,USD\n") == ","


def test_a_four_column_file_fails_by_pactas_column_count_rule(write_csv: WriteCsv) -> None:
    detail = _read_error(write_csv("investor_name,isin,market_value,currency\nI,GB1,1,USD\n"))
    assert "4 column(s)" in detail and "exactly 3" in detail and "at least 5" in detail


def test_a_header_only_file_fails(write_csv: WriteCsv) -> None:
    assert _read_error(write_csv("isin,market_value,currency\n")) == (
        "the file has a header row but no holdings"
    )


def test_a_file_without_a_header_row_fails_naming_the_missing_columns(write_csv: WriteCsv) -> None:
    detail = _read_error(write_csv("GB1,10000,USD\n"))
    assert "no isin or market_value or currency column" in detail


def test_a_three_column_file_must_be_isin_market_value_and_currency(write_csv: WriteCsv) -> None:
    detail = _read_error(write_csv("portfolio_name,isin,market_value\nP,GB1,1\n"))
    assert "no currency column" in detail


def test_a_column_named_twice_fails(write_csv: WriteCsv) -> None:
    detail = _read_error(write_csv("isin,ISIN,market_value,currency,x\nA,B,1,USD,y\n"))
    assert "names the isin column twice" in detail


def test_a_line_with_another_field_count_fails_naming_the_line(write_csv: WriteCsv) -> None:
    detail = _read_error(write_csv("isin,market_value,currency\nGB1,1,USD\nGB2,2\n"))
    assert detail == "line 3 has 2 fields but the header has 3"


def test_an_empty_file_fails(write_csv: WriteCsv) -> None:
    assert _read_error(write_csv(b"")) == "the file is empty"


def test_a_file_with_a_nul_byte_is_not_text(write_csv: WriteCsv) -> None:
    assert "NUL byte" in _read_error(write_csv(b"isin,market_value,currency\nGB1,1\x00,USD\n"))
