"""Whatever a file holds, what the parser keeps and reports stays bounded: no line is split into more
fields than a spreadsheet has columns, no line longer than any portfolio's is read, and every
message is cut to a bound with a marker saying how much was cut."""

from __future__ import annotations

import pytest

from runner.tasks import parse_portfolio
from runner.tasks.portfolio_parser.checks import MAX_MESSAGE_CHARS
from runner.tasks.portfolio_parser.errors import MAX_DETAIL_CHARS
from runner.tasks.portfolio_parser.reader import MAX_FIELDS_PER_LINE
from runner.tasks.portfolio_parser.sniff import MAX_LINE_BYTES
from tests.runner.portfolio_parser.conftest import ParseText

HEADER = "isin,market_value,currency\n"
FIVE_COLUMNS = "investor_name,portfolio_name,isin,market_value,currency"


def test_a_line_longer_than_any_portfolio_line_is_refused_without_being_read(parse_text: ParseText) -> None:
    parsed = parse_text(HEADER.encode() + b"," * (2 * MAX_LINE_BYTES) + b"\nGB0007980591,1,USD\n")

    assert parsed.entry["error_rule"] == "line_too_long"
    assert parsed.entry["error_detail"].startswith("line 2 is longer than 1,048,576 bytes")
    assert len(parsed.manifest_text()) < 2_000


def test_a_nul_byte_past_a_long_line_still_makes_the_file_binary(parse_text: ParseText) -> None:
    entry = parse_text(b"x" * (2 * MAX_LINE_BYTES) + b"\x00\n").entry

    assert entry["error_rule"] == "binary" and f"NUL byte at byte {2 * MAX_LINE_BYTES + 1}" in entry["error_detail"]


def test_lines_with_more_fields_than_a_spreadsheet_has_columns_are_refused(parse_text: ParseText) -> None:
    parsed = parse_text(("," * MAX_FIELDS_PER_LINE + "\n") * 3)

    assert parsed.entry["error_rule"] == "too_many_fields"
    assert parsed.entry["error_detail"].startswith("line 1 has 16,385 fields (delimiter ','), more than a spreadsheet")
    assert len(parsed.manifest_text()) < 2_000


def test_the_widest_line_is_named_when_no_delimiter_is_used_equally_often(parse_text: ParseText) -> None:
    # Every candidate varies from line to line, so PACTA's guess falls back to the comma.
    parsed = parse_text(HEADER + "GB0007980591,1,USD;|:\t\n" + "," * MAX_FIELDS_PER_LINE + "\n")

    assert parsed.entry["error_detail"].startswith("line 3 has 16,385 fields (delimiter ',')")


@pytest.mark.parametrize("quote", ["", '"'])
def test_a_portfolio_as_wide_as_a_spreadsheet_is_still_read(parse_text: ParseText, quote: str) -> None:
    extra = [f"{quote}x{n}{quote}" for n in range(MAX_FIELDS_PER_LINE - 5)]
    row = f"{quote}I{quote},{quote}P{quote},{quote}GB0007980591{quote},1,{quote}USD{quote}"
    parsed = parse_text("\n".join(",".join([line, *extra]) for line in [FIVE_COLUMNS] + [row] * 20) + "\n")

    assert parsed.entry["input_entries"] == 20
    assert parsed.rows() == ['"GB0007980591",1,"USD"'] * 20


def test_a_header_of_many_long_names_lists_a_few_and_keeps_the_advice(parse_text: ParseText) -> None:
    names = [f"column {n} " + "n" * 200 for n in range(30)]

    detail = parse_text(",".join(names) + "\n" + ",".join("x" * 30) + "\n").entry["error_detail"]

    assert "the header row has no isin column" in detail and "and 20 more)" in detail
    assert detail.endswith("market.value, market_value, market value or marketvalue)")
    assert len(detail) <= MAX_DETAIL_CHARS


def test_an_error_detail_is_cut_with_a_marker_saying_how_much(
    parse_text: ParseText, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object) -> None:
        raise RuntimeError("boom " * 2_000)

    monkeypatch.setattr(parse_portfolio, "export_groups", broken)
    detail = parse_text(HEADER + "GB0007980591,1,USD\n").entry["error_detail"]

    assert len(detail) <= MAX_DETAIL_CHARS
    assert detail.startswith("the parser failed on this file (RuntimeError('boom boom")
    assert detail.endswith("characters cut]")


def test_a_warning_quotes_the_start_of_a_long_value_and_the_output_keeps_it_whole(parse_text: ParseText) -> None:
    isin = "GB" + "0" * 20_000

    parsed = parse_text(f"{HEADER}{isin},1,USD\n")

    [warning] = parsed.entry["warnings"]
    assert warning["rule"] == "invalid_isin" and len(warning["message"]) <= MAX_MESSAGE_CHARS
    assert warning["message"].startswith(f"ISIN {'GB' + '0' * 98!r} [... 19,902 characters cut] is not an ISIN")
    assert parsed.rows() == [f'"{isin}",1,"USD"']
