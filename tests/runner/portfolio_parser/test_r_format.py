"""R's write.csv number and string formatting, byte for byte (format.c formatReal, digits 15)."""

from __future__ import annotations

import math

import pytest

from runner.tasks.portfolio_parser.r_format import format_r_double, quote_r_string


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
        (-0.001, "-0.001"),
        (0.0001, "1e-04"),
        (0.00012, "0.00012"),
        (0.0001234, "0.0001234"),
        (0.5, "0.5"),
        (123456789.123, "123456789.123"),
        (123456789012, "123456789012"),
        (123456789012345, "123456789012345"),
        (1e15, "1e+15"),
        (1e100, "1e+100"),
        (1e-300, "1e-300"),
        (1e-05, "1e-05"),
        (0.0, "0"),
        (-0.0, "0"),
    ],
)
def test_numbers_are_formatted_as_r_writes_them(value: float, expected: str) -> None:
    assert format_r_double(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1 / 3, "0.333333333333333"),
        (2 / 3, "0.666666666666667"),
        (0.1 + 0.2, "0.3"),
        (123456789.12345679, "123456789.123457"),
        (1234567890123456.7, "1234567890123457"),
        (1.7976931348623157e308, "1.79769313486232e+308"),
        (5e-324, "4.94065645841247e-324"),
    ],
)
def test_a_double_with_more_than_15_digits_is_rounded_to_15_as_r_rounds_it(value: float, expected: str) -> None:
    assert format_r_double(value) == expected


def test_sixteen_integer_digits_stay_fixed_because_fixed_is_narrower() -> None:
    # formatReal: 16 characters fixed against 20 for 1.23456789012346e+15 (as.character would
    # give the latter, but write.csv formats with formatReal, not as.character).
    assert format_r_double(1234567890123456) == "1234567890123456"


def test_twenty_one_digits_go_scientific_with_15_significant_digits() -> None:
    assert format_r_double(123456789012345678901.0) == "1.23456789012346e+20"


def test_fixed_notation_wins_a_tie_with_scientific() -> None:
    # "10000" and "1e+04" are both 5 characters; R keeps fixed notation on a tie.
    assert format_r_double(10000) == "10000"


def test_rounding_to_15_digits_that_reaches_a_power_of_ten_is_formatted_as_that_power() -> None:
    assert format_r_double(9.9999999999999995) == "10"
    assert format_r_double(99999.99999999999) == "1e+05"


def test_non_finite_numbers_are_written_as_r_spells_them() -> None:
    assert [format_r_double(v) for v in (math.inf, -math.inf, math.nan)] == ["Inf", "-Inf", "NaN"]


def test_strings_are_quoted_with_inner_quotes_doubled_and_na_is_empty() -> None:
    assert quote_r_string('say "hi"') == '"say ""hi"""'
    assert quote_r_string("Ä") == '"Ä"'
    assert quote_r_string(None) == ""
