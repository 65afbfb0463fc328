"""PACTA's encoding guess (valid UTF-8 read as UTF-8) and delimiter guess."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner.tasks.portfolio_parser import sniff
from runner.tasks.portfolio_parser.encoding import ByteFacts, choose_encoding
from runner.tasks.portfolio_parser.sniff import scan_file
from tests.runner.portfolio_parser.conftest import ParseText

HEADER = "isin,market_value,currency,portfolio_name,investor_name\n"


def facts_of(tmp_path: Path, data: bytes) -> ByteFacts:
    path = tmp_path / "sniffed.csv"
    path.write_bytes(data)
    return scan_file(path).bytes


@pytest.mark.parametrize(
    ("data", "encoding"),
    [
        (b"plain ascii", "ascii"),
        ("Müller".encode(), "utf-8-sig"),
        ("Ärzte — Fonds".encode(), "utf-8-sig"),  # C3 84 and E2 80 94: cp850 to R
        ("Müller".encode("cp850") + b" \x84", "cp850"),
        (b"M\xe4rz", "latin-1"),
        (b"Bj\xf8rn", "cp1252"),
        (b"caf\xe9", "cp1252"),  # what stands in for ICU's detector
    ],
)
def test_the_encoding_is_guessed_by_pactas_byte_rules_after_utf8(tmp_path: Path, data: bytes, encoding: str) -> None:
    assert choose_encoding(facts_of(tmp_path, data)) == encoding


def test_a_utf8_sequence_split_across_read_chunks_is_still_utf8(tmp_path: Path) -> None:
    data = b"a" * (sniff.CHUNK_BYTES - 1) + "é".encode()
    assert facts_of(tmp_path, data).is_utf8


def test_a_cp850_file_is_read_as_cp850(parse_text: ParseText) -> None:
    content = (HEADER + "GB0007980591,1,EUR,Fonds,M\x84rz\n").encode("latin-1")  # 0x84 is ä in cp850
    [portfolio] = parse_text(content).entry["portfolios"]
    assert portfolio["investor_name"] == "März"


def test_a_latin1_file_is_read_as_latin1(parse_text: ParseText) -> None:
    [portfolio] = parse_text((HEADER + "GB0007980591,1,EUR,Fonds,M\xe4rz\n").encode("latin-1")).entry["portfolios"]
    assert portfolio["investor_name"] == "März"


def test_windows_1252_bytes_it_leaves_undefined_are_read_as_latin1(parse_text: ParseText) -> None:
    [portfolio] = parse_text((HEADER + "GB0007980591,1,EUR,Fonds,\xf8\x8d\n").encode("latin-1")).entry["portfolios"]
    assert portfolio["investor_name"] == "ø\x8d"


def test_a_utf8_byte_order_mark_is_dropped(parse_text: ParseText) -> None:
    parsed = parse_text(b"\xef\xbb\xbfisin,market_value,currency\nGB0007980591,1,USD\n")
    assert parsed.rows() == ['"GB0007980591",1,"USD"']


@pytest.mark.parametrize("delimiter", [";", "\t", "|", ":"])
def test_any_candidate_delimiter_used_on_every_line_is_found(parse_text: ParseText, delimiter: str) -> None:
    content = delimiter.join(["isin", "market_value", "currency"]) + "\n" + delimiter.join(["GB0007980591", "1", "USD"])
    assert parse_text(content + "\n").rows() == ['"GB0007980591",1,"USD"']


def test_the_delimiter_with_most_fields_wins(parse_text: ParseText) -> None:
    # Every line has one ',' and four ';': the semicolon makes more fields.
    content = "investor, name;portfolio;isin;market_value;currency\nDoe, John;P;GB0007980591;1;USD\n"
    [portfolio] = parse_text(content).entry["portfolios"]
    assert portfolio["investor_name"] == "Doe, John"


def test_a_delimiter_used_unequally_loses_even_to_one_never_used(parse_text: ParseText) -> None:
    # The commas vary, the semicolon is on no line (equally often): PACTA reads one column.
    entry = parse_text('isin,market_value,currency\nGB0007980591,1,USD\n"GB0002634946",2\n').entry
    assert entry["error_rule"] == "column_count"
    assert "',' is on line 3 1 time(s) but 2 time(s) on the lines before" in entry["error_detail"]


def test_delimiters_inside_quotes_are_not_counted(parse_text: ParseText) -> None:
    content = 'isin;market_value;currency\nGB0007980591;"1,000.50";USD\nGB0002634946;"2,000.00";USD\n'
    assert parse_text(content).rows() == ['"GB0007980591",1000.5,"USD"', '"GB0002634946",2000,"USD"']


def test_a_tie_goes_to_the_earlier_candidate(parse_text: ParseText) -> None:
    # Two commas and two semicolons on every line: the comma comes first in PACTA's list.
    parsed = parse_text("isin,market_value,currency;;\nGB0007980591,1,USD;;\n")
    assert parsed.entry["error_rule"] == "missing_columns"  # 'currency;;' is no currency column


def test_without_a_consistent_candidate_the_comma_is_used(parse_text: ParseText) -> None:
    # Every candidate varies (the last line has a tab, a bar and a colon): no qualifier, so ','.
    content = "isin,market_value;currency\nGB0007980591,1;USD\nGB0002634946,2,3;USD\t|:\n"
    entry = parse_text(content).entry
    assert entry["error_rule"] == "column_count" and entry["error_detail"].startswith("the file has 2 column(s)")


def test_a_row_with_another_field_count_is_refused_naming_its_line(parse_text: ParseText) -> None:
    # PACTA strips "...,..." before counting, so every line has two commas; but a quote inside a
    # field is no quote to the CSV reader, which finds 4 fields.
    content = 'isin,market_value,currency\nGB0007980591,1,USD\nGB"0002,6349"46,2,USD\n'
    entry = parse_text(content).entry
    assert entry["error_rule"] == "field_count"
    assert entry["error_detail"].startswith("line 3 has 4 field(s) but the first line has 3")


def test_quoted_fields_may_hold_delimiters_and_doubled_quotes(parse_text: ParseText) -> None:
    content = 'isin,market_value,currency,portfolio_name,investor_name\nGB0007980591,1,USD,"A, ""B""",I\n'
    [portfolio] = parse_text(content).entry["portfolios"]
    assert portfolio["portfolio_name"] == 'A, "B"'


def test_a_quoted_line_break_is_read_when_every_line_keeps_the_delimiter_count(parse_text: ParseText) -> None:
    # PACTA's guess counts physical lines: both halves of the record have four commas.
    content = 'isin,market_value,currency,portfolio_name,investor_name\nGB0007980591,1,USD,"Fund,\n,,, A",Inv\n'
    [portfolio] = parse_text(content).entry["portfolios"]
    assert portfolio["portfolio_name"] == "Fund,\n,,, A"


def test_crlf_line_ends_are_read_like_lf(parse_text: ParseText) -> None:
    assert parse_text("isin,market_value,currency\r\nGB0007980591,1,USD\r\n").rows() == ['"GB0007980591",1,"USD"']


def test_carriage_returns_alone_end_lines_too(parse_text: ParseText) -> None:
    assert parse_text("isin,market_value,currency\rGB0007980591,1,USD\r").rows() == ['"GB0007980591",1,"USD"']
