"""Market values read as readr's col_number (vroom parseNumber) reads them, and written as R writes
them; the fast string route gives exactly what the exact route gives."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runner.tasks.portfolio_parser.column import SEPARATOR
from runner.tasks.portfolio_parser.market_values import _render_cents, _render_exact, _render_plain, render_values
from runner.tasks.portfolio_parser.marks import Marks
from runner.tasks.portfolio_parser.number_parsing import parse_market_value, parse_number
from runner.tasks.portfolio_parser.r_format import _layout, _scientific_long_double, format_r_double
from runner.tasks.portfolio_parser.readr_types import guess_type

POINT = Marks(".", ",")
COMMA = Marks(",", ".")


@pytest.mark.parametrize(
    ("text", "number"),
    [
        ("10000", 10000.0),
        ("$1,234.5 USD", 1234.5),
        ("USD -1,000", -1000.0),
        ("1 000", 1.0),  # a space is not the grouping mark here: the number ends there
        ("1.2.3", 1.2),
        ("1e5", 100000.0),
        ("1E-3", 0.001),
        ("1e", 1.0),  # an exponent without digits adds nothing
        ("e5", 5.0),  # an e before any digit is skipped like any other text
        (".5", 0.5),
        ("-.5", -0.5),
        ("5-", 5.0),
        ("1,5.3", 15.3),
        ("1.5,3", 1.53),  # grouping marks are skipped after the decimal mark too
        ("ISIN-123", -123.0),  # the first minus sign starts the number
    ],
)
def test_a_value_is_read_as_readr_reads_it_with_a_decimal_point(text: str, number: float) -> None:
    assert parse_number(text, ".", ",") == number


@pytest.mark.parametrize("text", ["abc", "-", ".", "-x5", "--5", "NA!"])
def test_a_value_without_a_number_where_readr_looks_is_missing(text: str) -> None:
    assert parse_number(text, ".", ",") is None


def test_a_decimal_comma_and_grouping_point_read_the_european_way() -> None:
    assert parse_number("1.234,5", ",", ".") == 1234.5


def test_readr_adds_decimals_one_at_a_time_in_doubles() -> None:
    # vroom: 0 + 1/10 + 2/100 + 3/1000 + 4/10000, each step rounded; not the nearest double.
    assert parse_number("0.1234", ".", ",") == ((0.0 + 1 / 10) + 2 / 100) + 3 / 1000 + 4 / 10000


def test_an_exponent_past_the_doubles_range_is_infinite() -> None:
    assert parse_number("1e999", ".", ",") == float("inf")


def test_accounting_parentheses_read_as_a_negative_amount() -> None:
    assert parse_market_value("(1,000)", ".", ",") == -1000.0
    assert parse_market_value("(0)", ".", ",") == 0.0


@pytest.mark.parametrize("amount", ["33.77", "1,000", "1e5", "-5", "abc", "NA", "2024-01-31", "007", "$5", ""])
def test_parentheses_make_a_number_in_the_header_guess_exactly_where_reading_negates_one(amount: str) -> None:
    # The one policy (accounting_amount), asked in both places: the header guess and the reading.
    cell = f"({amount})"
    number = parse_market_value(amount, ".", ",")
    numeric_guess = guess_type(amount) in ("double", "number")
    assert (guess_type(cell) == "number") == numeric_guess
    if numeric_guess:
        assert number is not None and parse_market_value(cell, ".", ",") == (-number if number > 0 else number)


@pytest.mark.parametrize(
    ("values", "fields"),
    [
        (["12345.67", "0.50", "3.00", "7."], ["12345.67", "0.5", "3", "7"]),
        (["100000", "1200000", "12000000"], ["1e+05", "1200000", "1.2e+07"]),
        ([".5", "-.5", "-0", "-0.00"], ["0.5", "-0.5", "0", "0"]),
        (["1,000.5", "", "2,500"], ["1000.5", "", "2500"]),
    ],
)
def test_plain_decimals_are_written_as_r_writes_them(values: list[str], fields: list[str]) -> None:
    assert render_values(SEPARATOR.join(values), POINT).fields == fields


def test_values_that_are_not_plain_decimals_take_the_exact_route() -> None:
    rendered = render_values(SEPARATOR.join(["$5", "abc", "(2)", "007"]), POINT)
    assert rendered.fields == ["5", "", "-2", "7"]
    assert (rendered.unparseable, rendered.negative) == ([1], [2])


def test_a_negative_plain_value_is_reported() -> None:
    assert render_values(SEPARATOR.join(["1", "-2.5", "-0"]), POINT).negative == [1]


# Plain decimals as files hold them: up to 13 integer digits (some with grouping marks), 0 to 2 decimals.
PLAIN = st.builds(
    lambda sign, whole, decimals, grouped: (
        sign + (f"{whole:,}" if grouped else str(whole)) + (("." + decimals) if decimals is not None else "")
    ),
    st.sampled_from(["", "-"]),
    st.integers(min_value=0, max_value=9_999_999_999_999),
    st.one_of(st.none(), st.text("0123456789", min_size=0, max_size=2)),
    st.booleans(),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(PLAIN, st.just("")), min_size=1, max_size=30))
def test_the_string_route_for_plain_decimals_matches_parsing_and_formatting_each(values: list[str]) -> None:
    joined = SEPARATOR.join(values)
    fast = _render_plain(joined, POINT)
    assert fast is not None
    assert fast.fields == _render_exact(values, POINT).fields


def assert_the_string_route_agrees_or_steps_aside(values: list[str], marks: Marks) -> None:
    """Where the fast route answers (it declines what is not a plain decimal), its fields and
    negative rows are those of the reference route, parsing and formatting value by value."""
    fast = _render_plain(SEPARATOR.join(values), marks)
    if fast is not None:
        exact = _render_exact(values, marks)
        assert (fast.fields, fast.negative) == (exact.fields, exact.negative)


@settings(max_examples=500, deadline=None)
@given(
    st.lists(PLAIN, max_size=8),
    st.text("0123456789.,-eE (0$", max_size=8),
    st.integers(min_value=0, max_value=8),
    st.sampled_from([POINT, COMMA]),
)
def test_the_string_route_gives_what_parsing_and_formatting_each_gives_or_steps_aside(
    plain: list[str], odd: str, at: int, marks: Marks
) -> None:
    # Plain values with one of any text among them, read with either convention.
    assert_the_string_route_agrees_or_steps_aside([*plain[:at], odd.strip(), *plain[at:]], marks)


@pytest.mark.parametrize(
    "odd",
    [
        *("1.2.3", "1..2", "1.234", "12.3456", "1234567890123.456", "00.5", "-00.5", "0012", "5-3", "--5"),
        *("12345678901234", "1234567890123.5", ".", "-", "-.", ".5", "-.5", "-0", "-0.00", "100000"),
        *("100000.00", "5.", "1e5", "1,5", "1,000.50"),
    ],
)
def test_the_string_route_agrees_on_the_values_it_must_decline_or_get_right(odd: str) -> None:
    for marks in (POINT, COMMA):
        assert_the_string_route_agrees_or_steps_aside(["1.5", odd, "20"], marks)


# Money as most files hold it: two decimals, often ending in zeros; now and then a value of another
# shape (which sends the column down the general plain route, or none).
CENTS = st.builds(
    lambda whole, cents: f"{whole}.{cents}",
    st.one_of(st.integers(min_value=0, max_value=9_999_999_999_999), st.sampled_from([100000, 12300000, 0])),
    st.sampled_from(["00", "50", "05", "10", "99", "01", "90"]),
)


@settings(max_examples=400, deadline=None)
@given(
    st.lists(CENTS, min_size=1, max_size=30),
    st.one_of(st.none(), PLAIN, st.sampled_from(["", ".50", "-1.00", "00.50", "12345678901234.00", "1.000", "1.5"])),
    st.integers(min_value=0, max_value=30),
    st.sampled_from([POINT, COMMA]),
)
def test_the_route_for_columns_of_cents_gives_what_parsing_and_formatting_each_gives(
    cents: list[str], odd: str | None, at: int, marks: Marks
) -> None:
    # market_values._render_cents (all values digits, a point, two digits) against the reference
    # route, value by value; with one odd value among them, whichever route takes the column.
    values = cents if odd is None else [*cents[:at], odd, *cents[at:]]
    if marks is COMMA:
        values = [value.replace(".", ",") for value in values]
    fast = _render_plain(SEPARATOR.join(values), marks)
    assert fast is not None or odd is not None
    if odd is None and marks is POINT:
        assert _render_cents(SEPARATOR.join(values)) is not None  # the column took the cents route
    if fast is not None:
        exact = _render_exact(values, marks)
        assert (fast.fields, fast.negative) == (exact.fields, exact.negative)


@settings(max_examples=300, deadline=None)
@given(st.floats(allow_nan=False, allow_infinity=False).filter(lambda value: value != 0))
def test_digits_read_off_repr_match_rs_long_double_scaling(value: float) -> None:
    kpower, nsig, widens = _scientific_long_double(abs(value))
    assert format_r_double(value) == _layout(value, kpower, nsig, widens)


def test_a_comma_decimal_column_is_written_with_points() -> None:
    assert render_values(SEPARATOR.join(["1.234,5", "7,25"]), COMMA).fields == ["1234.5", "7.25"]
