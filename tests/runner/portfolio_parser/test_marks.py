"""PACTA's decimal and grouping mark guess over the market_value column (section 3.2, rule 8)."""

from __future__ import annotations

import pytest

from runner.tasks.portfolio_parser.column import Column
from runner.tasks.portfolio_parser.errors import PortfolioFileError
from runner.tasks.portfolio_parser.marks import Marks, MarkTally
from tests.runner.portfolio_parser.conftest import ParseText


def guess(*blocks: list[str]) -> Marks:
    tally = MarkTally()
    for block in blocks:
        tally.feed(Column(block))
    return tally.decide()


@pytest.mark.parametrize(
    ("values", "decimal", "grouping"),
    [
        (["10000"], ".", ","),  # no mark at all: the defaults
        (["1,000.5"], ".", ","),
        (["1234,56"], ",", "."),
        (["1,000"], ".", ","),  # can group and is the only one: groups; the other decimal
        (["1.000"], ",", "."),
        (["1.000", "2.5"], ".", ","),  # '.' cannot group (2.5): it is the decimal
        (["1.000,50"], ",", "."),
        (["1,000", "2.500"], ".", ","),  # both can group, both could be decimal: '.' first
        (["1,000,000", "2.5"], ".", ","),  # ',' twice in a value: no decimal candidate
        (["$100"], ".", "$"),  # '$' + three digits: a group candidate, and the first
        (["1 000"], ".", " "),
        (["1'000", "2 000"], ".", "'"),  # group candidates in order of first appearance
    ],
)
def test_the_marks_are_guessed_by_pactas_rule(values: list[str], decimal: str, grouping: str) -> None:
    assert guess(values) == Marks(decimal, grouping)


def test_one_missing_value_anywhere_leaves_no_decimal_candidate_as_in_r() -> None:
    # max() over a column with an NA is NA in R: 1234,5 then reads as 12345 (',' groups).
    assert guess(["1234,5", ""]) == Marks(".", ",")
    assert guess(["1234,5"]) == Marks(",", ".")


def test_the_guess_over_blocks_is_the_guess_over_the_whole_column() -> None:
    assert guess(["1,000"], ["2,5"]) == guess(["1,000", "2,5"]) == Marks(",", ".")
    assert guess(["1.000"], ["7"], ["3.25"]) == guess(["1.000", "7", "3.25"])


def test_a_mark_that_groups_in_one_value_and_not_in_another_cannot_group() -> None:
    assert guess(["1,000"], ["1,00"]) == Marks(",", ".")


def test_both_marks_only_grouping_thousands_cannot_be_read() -> None:
    # R stops with "subscript out of bounds" (no manifest); here the file is refused with a cause.
    with pytest.raises(PortfolioFileError) as refused:
        guess(["1,000,000", "1.000.000"])
    assert refused.value.rule == "decimal_mark"


def test_a_tally_merged_from_two_parts_equals_one_over_the_whole() -> None:
    first, second = MarkTally(), MarkTally()
    first.feed(Column(["1.000", ""]))
    second.feed(Column(["2,5", "3'000"]))
    first.merge(second)
    whole = MarkTally()
    whole.feed(Column(["1.000", "", "2,5", "3'000"]))
    assert first.decide() == whole.decide()


def test_a_european_file_is_read_with_its_decimal_comma(parse_text: ParseText) -> None:
    content = "isin;market_value;currency\nGB0007980591;1.234,50;EUR\nGB0002634946;7,25;EUR\n"
    assert parse_text(content).rows() == ['"GB0007980591",1234.5,"EUR"', '"GB0002634946",7.25,"EUR"']


def test_thousands_written_with_a_point_are_thousands(parse_text: ParseText) -> None:
    assert parse_text("isin;market_value;currency\nGB0007980591;1.000;EUR\n").rows() == ['"GB0007980591",1000,"EUR"']


def test_a_missing_value_makes_a_decimal_comma_a_grouping_mark_as_in_r(parse_text: ParseText) -> None:
    content = "isin;market_value;currency\nGB0007980591;1234,5;EUR\nGB0002634946;;EUR\n"
    assert parse_text(content).rows() == ['"GB0007980591",12345,"EUR"', '"GB0002634946",,"EUR"']


def test_currency_symbols_around_numbers_are_dropped(parse_text: ParseText) -> None:
    content = 'isin,market_value,currency\nGB0007980591,"$1,234.50",USD\nGB0002634946,€ 99.5,EUR\n'
    assert parse_text(content).rows() == ['"GB0007980591",1234.5,"USD"', '"GB0002634946",99.5,"EUR"']
