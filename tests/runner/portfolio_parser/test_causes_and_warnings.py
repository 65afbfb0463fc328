"""Beyond PACTA (its #185, #187): per file the cause of a refusal, per row warnings; outputs unchanged."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner.tasks import parse_portfolio
from runner.tasks.parse_portfolio import IMPORT_ERROR_MESSAGE
from runner.tasks.portfolio_parser import checks
from runner.tasks.portfolio_parser.checks import isin_problem
from tests.runner.portfolio_parser.conftest import ParseText

HEADER = "isin,market_value,currency\n"


@pytest.mark.parametrize(
    ("content", "rule", "detail"),
    [
        (b"", "empty", "the file is empty"),
        (b"isin\x00,market_value\n", "binary", "NUL byte at byte 5"),
        (b" \n\t\n", "no_lines", "only blank lines"),
        (b'isin,market_value,currency\nGB1,"1,USD\n' + b"a,b,c\n" * 30_000, "bad_csv", "never closed"),
        (b"isin,market_value,currency,x\nGB1,1,USD,y\n", "column_count", "4 column(s)"),
        (b"isin,value,currency\nGB1,1,USD\n", "missing_columns", "no market_value column"),
        (b"isin,isin ,market_value,currency,x\nGB1,GB2,1,USD,y\n", "duplicate_columns", "both name the isin column"),
        (b"isin,market_value,currency\n\n", "no_holdings", "no holdings"),
        (b"isin,market_value,currency\nGB1,\"1,000,000\",USD\nGB2,1.000.000,USD\n", "decimal_mark", "cannot be told"),
    ],
)
def test_a_refused_file_gets_pactas_message_and_the_rule_it_broke(
    parse_text: ParseText, content: bytes, rule: str, detail: str
) -> None:
    entry = parse_text(content).entry
    assert entry["errors"] == [[IMPORT_ERROR_MESSAGE]]
    assert entry["error_rule"] == rule
    assert detail in entry["error_detail"]


def test_a_bug_in_the_parser_refuses_that_file_only(parse_text: ParseText, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(parse_portfolio, "export_groups", broken)
    entry = parse_text(HEADER + "GB0007980591,1,USD\n").entry
    assert entry["error_rule"] == "internal_error" and "boom" in entry["error_detail"]


def test_an_unreadable_file_is_refused_as_unreadable(parse_text: ParseText, monkeypatch: pytest.MonkeyPatch) -> None:
    def unreadable(path: Path) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(parse_portfolio, "scan_file", unreadable)
    entry = parse_text(HEADER).entry
    assert (entry["error_rule"], entry["input_md5"]) == ("unreadable", None)


@pytest.mark.parametrize("isin", ["GB0007980591", "US0378331005", "DE000BAY0017", "us0378331005", "US 037833 1005"])
def test_a_valid_isin_passes_the_check(isin: str) -> None:
    assert isin_problem(isin) is None


@pytest.mark.parametrize(
    ("isin", "problem"),
    [
        ("US0378331006", "has check digit 6, but its first 11 characters give 5"),
        ("US037833100", "is not an ISIN"),
        ("0U0378331005", "is not an ISIN"),
    ],
)
def test_an_invalid_isin_is_told_why(isin: str, problem: str) -> None:
    assert (isin_problem(isin) or "").startswith(problem)


def test_rows_with_invalid_isins_are_warned_about_by_line(parse_text: ParseText) -> None:
    parsed = parse_text(HEADER + "GB0007980591,1,USD\nGB0007980592,2,USD\nXX,3,USD\n")
    assert parsed.entry["warnings"] == [
        {"line": 3, "column": "isin", "rule": "invalid_isin",
         "message": "ISIN 'GB0007980592' has check digit 2, but its first 11 characters give 1"},
        {"line": 4, "column": "isin", "rule": "invalid_isin",
         "message": "ISIN 'XX' is not an ISIN (two letters, nine letters or digits, then a check digit)"},
    ]
    assert parsed.entry["warning_counts"] == {"invalid_isin": 2}


def test_warnings_change_no_output(parse_text: ParseText) -> None:
    parsed = parse_text(HEADER + "XX,-1,ABC\nGB0007980591,oops,USD\n")
    assert parsed.rows() == ['"XX",-1,"ABC"', '"GB0007980591",,"USD"']
    assert parsed.entry["warning_counts"] == {
        "invalid_isin": 1, "negative_market_value": 1, "unknown_currency": 1, "unparseable_market_value": 1,
    }


def test_an_unknown_currency_is_warned_about_and_case_does_not_matter(parse_text: ParseText) -> None:
    entry = parse_text(HEADER + "GB0007980591,1,usd\nGB0007980591,1,XYZ\nGB0007980591,1,\n").entry
    assert [(w["line"], w["rule"], w["message"]) for w in entry["warnings"]] == [
        (3, "unknown_currency", "currency 'XYZ' is not an ISO 4217 code"),
    ]


def test_missing_values_are_not_warned_about(parse_text: ParseText) -> None:
    assert "warnings" not in parse_text(HEADER + "GB0007980591,,\nNA,1,USD\n").entry


def test_unparseable_and_negative_market_values_are_warned_about(parse_text: ParseText) -> None:
    entry = parse_text(HEADER + "GB0007980591,none,USD\nGB0007980591,-5,USD\nGB0007980591,(7),USD\n").entry
    assert [(w["line"], w["rule"]) for w in entry["warnings"]] == [
        (2, "unparseable_market_value"), (3, "negative_market_value"), (4, "negative_market_value"),
    ]


def test_mixed_decimal_conventions_in_one_column_are_warned_about(parse_text: ParseText) -> None:
    content = HEADER + 'GB0007980591,"1,000.50",USD\nGB0007980591,"1.000,50",EUR\n'
    parsed = parse_text(content)
    assert parsed.rows() == ['"GB0007980591",1000.5,"USD"', '"GB0007980591",1.0005,"EUR"']
    [warning] = parsed.entry["warnings"]
    assert (warning["line"], warning["rule"]) == (3, "decimal_mark")
    assert "decimal mark '.' and grouping mark ','" in warning["message"] and "giving 1.0005" in warning["message"]


def test_a_decimal_comma_read_as_grouping_because_of_a_missing_value_is_warned_about(parse_text: ParseText) -> None:
    entry = parse_text("isin;market_value;currency\nGB0007980591;1234,5;EUR\nGB0007980591;;EUR\n").entry
    assert [(w["line"], w["rule"]) for w in entry["warnings"]] == [(2, "decimal_mark")]


def test_at_most_100_warnings_per_rule_are_listed_the_first_lines_first(
    parse_text: ParseText, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(checks, "MAX_LISTED_PER_RULE", 3)
    entry = parse_text(HEADER + "".join(f"X{index},-{index + 1},USD\n" for index in range(10))).entry
    assert entry["warning_counts"] == {"invalid_isin": 10, "negative_market_value": 10}
    assert [(w["line"], w["rule"]) for w in entry["warnings"]] == [
        (2, "invalid_isin"), (2, "negative_market_value"), (3, "invalid_isin"), (3, "negative_market_value"),
        (4, "invalid_isin"), (4, "negative_market_value"),
    ]
