"""Header detection (readr's type guess for line 1), header mapping and the column-count gate."""

from __future__ import annotations

import pytest

from runner.tasks.portfolio_parser.readr_types import guess_type
from tests.runner.portfolio_parser.conftest import ParseText


@pytest.mark.parametrize(
    ("cell", "guess"),
    [
        ("isin", "character"),
        ("Market Value", "character"),
        ("", "logical"),
        ("NA", "logical"),
        ("T", "logical"),
        ("false", "logical"),
        ("10000", "double"),
        ("0.5", "double"),
        ("1e5", "double"),
        ("1d", "double"),  # bsd_strtod takes d, f, l, s as exponent letters too
        ("inf", "double"),
        ("007", "character"),  # a leading zero is neither double nor number
        ("1,000", "number"),
        ("-1,000.5", "number"),
        ("$100", "character"),
        ("10:30", "time"),
        ("10:30 PM", "time"),
        ("2024-01-31", "date"),
        ("2024/01/31", "date"),
        ("2024-01-31T10:00:00Z", "datetime"),
        ("2024-13-01 10:00", "character"),  # no month 13
        ("GB0007980591", "character"),
        # Accounting parentheses: a number inside makes a number (docs/portfolio-parser.md), unlike readr.
        ("(33.77)", "number"),
        ("(1,000)", "number"),
        ("( 2.5 )", "number"),
        ("(-5)", "number"),
        ("(abc)", "character"),
        ("(NA)", "character"),
        ("()", "character"),
        ("(2024-01-31)", "character"),
    ],
)
def test_a_cell_is_guessed_as_readr_guesses_it(cell: str, guess: str) -> None:
    assert guess_type(cell) == guess


def test_a_headerless_file_whose_first_market_value_is_in_accounting_parentheses_is_data(
    parse_text: ParseText,
) -> None:
    parsed = parse_text("GB0007980591,(33.77),USD\nUS0378331005,5,USD\n")
    assert parsed.entry["input_entries"] == 2
    assert parsed.rows() == ['"GB0007980591",-33.77,"USD"', '"US0378331005",5,"USD"']


def test_five_headerless_columns_with_a_first_market_value_in_parentheses_are_data(parse_text: ParseText) -> None:
    parsed = parse_text('Inv,Fund A,GB0007980591,"(1,000.5)",USD\n')
    assert (parsed.entry["group_cols"], parsed.rows()) == (
        ["portfolio_name", "investor_name"],
        ['"GB0007980591",-1000.5,"USD"'],
    )


def test_a_header_cell_in_parentheses_without_a_number_leaves_line_one_a_header(parse_text: ParseText) -> None:
    parsed = parse_text("isin,(market_value),currency\nGB0007980591,(2),USD\n")
    assert parsed.entry["error_rule"] == "missing_columns"  # a header, whose market value column is misnamed


def test_line_one_is_data_when_a_cell_reads_as_a_number(parse_text: ParseText) -> None:
    entry = parse_text("GB0007980591,10000,USD\nUS0378331005,5,USD\n").entry
    assert entry["input_entries"] == 2


def test_line_one_is_data_when_a_cell_reads_as_a_date(parse_text: ParseText) -> None:
    entry = parse_text("GB0007980591,2024-01-31,USD\n").entry
    assert (entry["input_entries"], entry["portfolios"][0]["output_rows"]) == (1, 1)


def test_line_one_with_an_empty_market_value_is_taken_as_a_header_as_r_takes_it(parse_text: ParseText) -> None:
    entry = parse_text("GB0007980591,,USD\nUS0378331005,5,USD\n").entry
    assert entry["error_rule"] == "missing_columns"


def test_three_headerless_columns_are_isin_market_value_currency(parse_text: ParseText) -> None:
    assert parse_text("GB0007980591,10000,USD\n").rows() == ['"GB0007980591",10000,"USD"']


def test_five_headerless_columns_start_with_investor_and_portfolio(parse_text: ParseText) -> None:
    [portfolio] = parse_text("Inv,Port,GB0007980591,10000,USD\n").entry["portfolios"]
    assert (portfolio["investor_name"], portfolio["portfolio_name"]) == ("Inv", "Port")


def test_four_headerless_columns_are_refused(parse_text: ParseText) -> None:
    entry = parse_text("Port,GB0007980591,10000,USD\n").entry
    assert entry["error_rule"] == "column_count"
    assert "no header row" in entry["error_detail"] and "'10000'" in entry["error_detail"]


def test_six_headerless_columns_are_refused(parse_text: ParseText) -> None:
    assert parse_text("I,P,GB0007980591,10000,USD,x\n").entry["error_rule"] == "column_count"


@pytest.mark.parametrize(
    "market_value", ["market_value", "Market.Value", "MARKET VALUE", "marketvalue", " market_value "]
)
def test_market_value_may_be_written_with_a_point_underscore_space_or_nothing(
    parse_text: ParseText, market_value: str
) -> None:
    assert parse_text(f"isin,{market_value},currency\nGB0007980591,1,USD\n").rows() == ['"GB0007980591",1,"USD"']


def test_a_header_merely_containing_market_value_is_not_it(parse_text: ParseText) -> None:
    entry = parse_text("isin,total market value,currency\nGB0007980591,1,USD\n").entry
    assert entry["error_rule"] == "missing_columns" and "no market_value column" in entry["error_detail"]


def test_with_three_columns_names_are_not_looked_for(parse_text: ParseText) -> None:
    entry = parse_text("portfolio_name,isin,market_value\nP,GB0007980591,1\n").entry
    assert entry["error_rule"] == "missing_columns" and "no currency column" in entry["error_detail"]


def test_exactly_four_columns_with_a_header_are_refused(parse_text: ParseText) -> None:
    entry = parse_text("isin,market_value,currency,foo\nGB0007980591,1,USD,x\n").entry
    assert entry["error_rule"] == "column_count"


def test_columns_may_come_in_any_order_and_extra_columns_are_dropped(parse_text: ParseText) -> None:
    parsed = parse_text("notes,currency,Portfolio,market_value,x,isin\nhi,EUR,P1,2.5,y,GB0007980591\n")
    assert parsed.entry["group_cols"] == ["portfolio_name"]
    assert parsed.rows() == ['"GB0007980591",2.5,"EUR"']


def test_a_header_containing_investor_or_portfolio_names_the_group_columns(parse_text: ParseText) -> None:
    parsed = parse_text("Investor Code,Portfolio ID,isin,market_value,currency\nI1,P1,GB0007980591,1,USD\n")
    [portfolio] = parsed.entry["portfolios"]
    assert (portfolio["portfolio_name"], portfolio["investor_name"]) == ("P1", "I1")


def test_a_column_containing_both_words_is_the_portfolio_as_in_r(parse_text: ParseText) -> None:
    parsed = parse_text("Investor Portfolio,isin,market_value,currency,x\nIP,GB0007980591,1,USD,y\n")
    assert parsed.entry["group_cols"] == ["portfolio_name"]


def test_five_columns_without_name_columns_make_one_portfolio(parse_text: ParseText) -> None:
    entry = parse_text("isin,market_value,currency,a,b\nGB0007980591,1,USD,x,y\n").entry
    assert (entry["group_cols"], entry["subportfolios_count"]) == ([], 1)
