"""Where PACTA's R parser is broken, this one does better (one test per departure, README list)."""

from __future__ import annotations

import pytest

from tests.runner.portfolio_parser.conftest import ParseFiles, ParseText

SIMPLE = "isin,market_value,currency\nGB0007980591,10000,USD\n"
OUTPUT_SIMPLE_MD5 = "0f51946d64ef6ee4daca1a6969317cba"


def test_a_file_of_blank_lines_is_refused_not_a_crash(parse_text: ParseText) -> None:
    assert parse_text("\n\n  \n\r\n").entry["error_rule"] == "no_lines"


def test_a_nul_byte_past_the_first_2048_bytes_is_refused_not_a_crash(parse_text: ParseText) -> None:
    entry = parse_text(SIMPLE.encode() + b"x" * 3000 + b"\x00\n").entry
    assert entry["error_rule"] == "binary" and "byte 3051" in entry["error_detail"]


@pytest.mark.parametrize(("value", "written"), [("12^3", "12"), ("1\\5", "1"), ("[5]", "5")])
def test_market_values_with_regex_characters_are_read_not_a_crash(
    parse_text: ParseText, value: str, written: str
) -> None:
    # R builds a regex from each character of the column and stops on ^ and \; readr would read these so.
    parsed = parse_text(f'isin,market_value,currency\nGB0007980591,"{value}",USD\n')
    assert parsed.rows() == [f'"GB0007980591",{written},"USD"']


def test_two_isin_columns_are_an_error_naming_both_not_a_crash(parse_text: ParseText) -> None:
    entry = parse_text("isin,ISIN,market_value,currency,x\nGB0007980591,GB1,1,USD,y\n").entry
    assert entry["error_rule"] == "duplicate_columns"
    assert entry["error_detail"].startswith("columns 1 ('isin') and 2 ('ISIN') both name the isin column")


def test_two_market_value_columns_are_an_error(parse_text: ParseText) -> None:
    entry = parse_text("isin,market value,market_value,currency,x\nGB0007980591,1,2,USD,y\n").entry
    assert entry["error_rule"] == "duplicate_columns"


@pytest.mark.parametrize(
    "content",
    [
        "isin,market_value,currency\n\nGB0007980591,10000,USD\n",
        "isin,market_value,currency\nGB0007980591,10000,USD\n\n\n",
        "isin,market_value,currency\r\nGB0007980591,10000,USD\r\n\r\n",
        "\n   \nisin,market_value,currency\n \t \nGB0007980591,10000,USD\n",
    ],
)
def test_blank_and_whitespace_only_lines_are_ignored(parse_text: ParseText, content: str) -> None:
    assert [p["output_md5"] for p in parse_text(content).entry["portfolios"]] == [OUTPUT_SIMPLE_MD5]


def test_blank_lines_do_not_shift_the_line_numbers_of_warnings(parse_text: ParseText) -> None:
    entry = parse_text("isin,market_value,currency\n\nGB0007980591,10000,USD\n\nXX,1,USD\n").entry
    assert [warning["line"] for warning in entry["warnings"]] == [5]


def test_whitespace_around_every_field_is_trimmed(parse_text: ParseText) -> None:
    content = "isin , market_value ,currency,portfolio_name,investor_name\n GB0007980591 , 10000 , USD , P ,\tI \n"
    parsed = parse_text(content)
    assert parsed.rows() == ['"GB0007980591",10000,"USD"']
    [portfolio] = parsed.entry["portfolios"]
    assert (portfolio["portfolio_name"], portfolio["investor_name"]) == ("P", "I")


def test_a_name_empty_after_trimming_is_missing(parse_text: ParseText) -> None:
    content = "portfolio_name,isin,market_value,currency,x\n   ,GB0007980591,1,USD,y\nA,GB0007980591,2,USD,y\n"
    assert [p["portfolio_name"] for p in parse_text(content).entry["portfolios"]] == ["A", None]


@pytest.mark.parametrize("name", ["Ärzteversorgung", "Fonds — Süd"])
def test_valid_utf8_is_read_as_utf8_not_cp850(parse_text: ParseText, name: str) -> None:
    content = f"portfolio_name,isin,market_value,currency,x\n{name},GB0007980591,1,USD,y\n"
    assert parse_text(content).entry["portfolios"][0]["portfolio_name"] == name


def test_a_missing_group_name_is_written_as_null_not_a_list(parse_text: ParseText) -> None:
    parsed = parse_text("portfolio_name,isin,market_value,currency,x\n,GB0007980591,1,USD,y\n")
    assert parsed.entry["portfolios"][0]["portfolio_name"] is None
    assert '"portfolio_name":null' in parsed.manifest_text() and "[null]" not in parsed.manifest_text()


def test_accounting_parentheses_are_a_negative_amount(parse_text: ParseText) -> None:
    content = 'isin,market_value,currency\nGB0007980591,"(1,000)",USD\nGB0002634946,(2.5),USD\n'
    assert parse_text(content).rows() == ['"GB0007980591",-1000,"USD"', '"GB0002634946",-2.5,"USD"']


def test_an_amount_in_accounting_parentheses_is_warned_about_as_negative(parse_text: ParseText) -> None:
    entry = parse_text("isin,market_value,currency\nGB0007980591,(2.5),USD\nGB0002634946,3,USD\n").entry
    assert [(w["line"], w["rule"], w["message"]) for w in entry["warnings"]] == [
        (2, "negative_market_value", "market value '(2.5)' is negative")
    ]


def test_accounting_parentheses_are_read_with_the_marks_the_column_gives(parse_text: ParseText) -> None:
    content = "isin;market_value;currency\nGB0007980591;(1.234,5);EUR\nGB0002634946;2,5;EUR\n"
    assert parse_text(content).rows() == ['"GB0007980591",-1234.5,"EUR"', '"GB0002634946",2.5,"EUR"']


def test_parentheses_around_no_number_are_a_missing_value_as_text_is(parse_text: ParseText) -> None:
    parsed = parse_text("isin,market_value,currency\nGB0007980591,(n/a),USD\n")
    assert parsed.rows() == ['"GB0007980591",,"USD"']
    assert parsed.entry["warning_counts"] == {"unparseable_market_value": 1}


def test_a_header_naming_the_portfolio_exactly_wins_over_one_containing_the_word(parse_text: ParseText) -> None:
    content = "Portfolio Manager,Portfolio Name,isin,market_value,currency\nJane,Fund A,GB0007980591,1,USD\n"
    entry = parse_text(content).entry
    assert (entry["group_cols"], entry["portfolios"][0]["portfolio_name"]) == (["portfolio_name"], "Fund A")


def test_of_two_headers_containing_investor_and_none_exact_the_first_wins(parse_text: ParseText) -> None:
    content = "Investor Code,Investor Type,isin,market_value,currency\nI1,T1,GB0007980591,1,USD\n"
    assert parse_text(content).entry["portfolios"][0]["investor_name"] == "I1"


@pytest.mark.parametrize("value", ["abc", "n/a", "^", "-", "—"])
def test_a_market_value_without_a_number_is_missing(parse_text: ParseText, value: str) -> None:
    parsed = parse_text(f"isin,market_value,currency\nGB0007980591,{value},USD\nGB0002634946,5,USD\n")
    assert parsed.rows() == ['"GB0007980591",,"USD"', '"GB0002634946",5,"USD"']


def test_one_unreadable_file_does_not_stop_the_others(parse_files: ParseFiles) -> None:
    entries = parse_files(("a.csv", b""), ("b.csv", SIMPLE.encode()), ("c.csv", b"\x00\x01")).entries
    assert ["portfolios" in entry for entry in entries] == [False, True, False]
