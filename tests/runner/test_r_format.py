"""R's write.csv number and field formatting, byte for byte."""

from __future__ import annotations

import pytest

from runner.tasks.r_format import format_r_csv_field, format_r_number, render_r_csv


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (10000, "10000"),
        (100000, "1e+05"),
        (1234.5, "1234.5"),
        (123456, "123456"),
        (1200000, "1200000"),
        (12000000, "1.2e+07"),
        (-100000, "-1e+05"),
        (-1234.5, "-1234.5"),
        (0.001, "0.001"),
        (0.0001, "1e-04"),
        (0.00012, "0.00012"),
        (0.5, "0.5"),
        (1 / 3, "0.333333333333333"),
        (0.1 + 0.2, "0.3"),
        (123456789.123, "123456789.123"),
        (123456789012, "123456789012"),
        (1e15, "1e+15"),
        (1e100, "1e+100"),
        (1e-300, "1e-300"),
        (0.0, "0"),
        (-0.0, "0"),
    ],
)
def test_numbers_are_formatted_as_r_writes_them(value: float, expected: str) -> None:
    assert format_r_number(value) == expected


def test_fixed_notation_wins_a_tie_with_scientific() -> None:
    # "10000" and "1e+04" are both 5 characters; R keeps fixed notation on a tie.
    assert format_r_number(10000) == "10000"


def test_rounding_to_15_digits_that_reaches_a_power_of_ten_is_formatted_as_that_power() -> None:
    assert format_r_number(9.9999999999999995) == "10"
    assert format_r_number(99999.99999999999) == "1e+05"


def test_non_finite_numbers_are_written_as_r_spells_them() -> None:
    assert [format_r_number(v) for v in (float("inf"), float("-inf"), float("nan"))] == [
        "Inf",
        "-Inf",
        "NaN",
    ]


def test_strings_are_quoted_with_inner_quotes_doubled_and_na_is_empty() -> None:
    assert format_r_csv_field('say "hi"') == '"say ""hi"""'
    assert format_r_csv_field("") == '""'
    assert format_r_csv_field(None) == ""


def test_a_csv_has_a_quoted_header_and_lf_line_endings() -> None:
    data = render_r_csv(("isin", "market_value", "currency"), [("GB0007980591", 10000.0, "USD")])
    assert data == b'"isin","market_value","currency"\n"GB0007980591",10000,"USD"\n'


def test_a_csv_is_utf8_and_writes_na_as_an_empty_field() -> None:
    data = render_r_csv(("isin", "market_value", "currency"), [("DE000Ä", None, None)])
    assert data.decode("utf-8").splitlines()[1] == '"DE000Ä",,'
