"""Sub-portfolios as dplyr's group_by makes them, and their files as write.csv writes them."""

from __future__ import annotations

from array import array

from hypothesis import given, settings
from hypothesis import strategies as st

from runner.tasks.portfolio_parser import export
from runner.tasks.portfolio_parser.checks import WarningLog
from runner.tasks.portfolio_parser.column import SEPARATOR
from runner.tasks.portfolio_parser.groups import GroupPiece
from runner.tasks.portfolio_parser.market_values import render_values
from runner.tasks.portfolio_parser.marks import Marks
from runner.tasks.portfolio_parser.r_format import quote_r_string
from tests.runner.portfolio_parser.conftest import ParseText

POINT = Marks(".", ",")

HEADER = "portfolio_name,investor_name,isin,market_value,currency\n"


def test_groups_are_in_c_locale_order_with_a_missing_name_last(parse_text: ParseText) -> None:
    names = ["b", "Ä", "", "a", "B", "b", "NA"]
    content = HEADER + "".join(f"{name},Inv,GB000798059{index},{index},USD\n" for index, name in enumerate(names))
    parsed = parse_text(content)
    assert [p["portfolio_name"] for p in parsed.entry["portfolios"]] == ["B", "a", "b", "Ä", None]
    assert [p["output_rows"] for p in parsed.entry["portfolios"]] == [1, 1, 2, 1, 2]


def test_rows_keep_their_file_order_within_a_group(parse_text: ParseText) -> None:
    content = HEADER + "b,I,GB1,1,USD\na,I,GB2,2,USD\nb,I,GB3,3,USD\n"
    parsed = parse_text(content)
    b = parsed.entry["portfolios"][1]
    assert parsed.output(b).decode().splitlines()[1:] == ['"GB1",1,"USD"', '"GB3",3,"USD"']


def test_groups_are_ordered_by_portfolio_then_investor(parse_text: ParseText) -> None:
    content = HEADER + "P2,I1,GB1,1,USD\nP1,I2,GB2,2,USD\nP1,I1,GB3,3,USD\nP1,,GB4,4,USD\n"
    portfolios = parse_text(content).entry["portfolios"]
    assert [(p["portfolio_name"], p["investor_name"]) for p in portfolios] == [
        ("P1", "I1"), ("P1", "I2"), ("P1", None), ("P2", "I1"),
    ]


def test_a_group_column_alone_gives_only_its_key(parse_text: ParseText) -> None:
    content = "investor_name,isin,market_value,currency,x\nI2,GB1,1,USD,y\nI1,GB2,2,USD,y\n"
    entry = parse_text(content).entry
    assert entry["group_cols"] == ["investor_name"]
    assert [list(p)[3:] for p in entry["portfolios"]] == [["investor_name"], ["investor_name"]]


def test_strings_are_quoted_numbers_bare_and_missing_values_empty(parse_text: ParseText) -> None:
    content = 'isin,market_value,currency\n"GB ""1""",100000,USD\nNA,,\n,NA,EUR\n'
    assert parse_text(content).rows() == ['"GB ""1""",1e+05,"USD"', ",,", ',,"EUR"']


def test_outputs_are_utf8_with_lf_line_ends(parse_text: ParseText) -> None:
    parsed = parse_text("isin;market_value;currency\r\nDE000Ä;1,5;EUR\r\n".encode("cp1252"))
    data = parsed.output(parsed.entry["portfolios"][0])
    assert data == '"isin","market_value","currency"\n"DE000Ä",1.5,"EUR"\n'.encode()


def test_large_and_small_market_values_are_written_as_r_writes_them(parse_text: ParseText) -> None:
    values = ["100000", "1234.5", "10000", "0.0001", "-0.001", "123456789012345", "1e21", "0.1234567890123456"]
    content = "isin,market_value,currency\n" + "".join(f"GB{index},{value},USD\n" for index, value in enumerate(values))
    assert [row.split(",")[1] for row in parse_text(content).rows()] == [
        "1e+05", "1234.5", "10000", "1e-04", "-0.001", "123456789012345", "1e+21", "0.123456789012346",
    ]


def test_input_entries_counts_the_rows_read(parse_text: ParseText) -> None:
    content = "isin,market_value,currency\n" + "GB0007980591,1,USD\n" * 7
    assert parse_text(content).entry["input_entries"] == 7


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["GB0007980591", "US0378331005", "", 'X"Y', "ÄB", "NA"]),
            st.sampled_from(["1.50", "2", "", "-3.25", "100000.00", "abc"]),
            st.sampled_from(["USD", "EUR", "", 'U"S']),
        ),
        min_size=1,
        max_size=12,
    )
)
def test_a_piece_is_written_as_write_csv_writes_each_row(rows: list[tuple[str, str, str]]) -> None:
    # export._render_piece (its route for pieces with no missing or quoted isin and currency, and
    # the general one) against each row written on its own: quote_r_string, the value's field.
    isins, values, currencies = (list(column) for column in zip(*rows, strict=True))
    piece = GroupPiece(
        array("q", range(1, len(rows) + 1)), *(SEPARATOR.join(c) for c in (isins, values, currencies)), len(rows)
    )
    fields = render_values(SEPARATOR.join(values), POINT).fields
    expected = "".join(
        f"{quote_r_string(isin or None)},{field},{quote_r_string(currency or None)}\n"
        for isin, field, currency in zip(isins, fields, currencies, strict=True)
    )
    assert export._render_piece(piece, POINT, WarningLog()) == expected.encode()
