"""No input makes the parser raise, and every input file gets exactly one manifest entry; none is
refused for a bug in the parser (`internal_error`)."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runner.tasks.parse_portfolio import MANIFEST_NAME, process_directory
from runner.tasks.portfolio_parser import column as column_module
from runner.tasks.portfolio_parser import export, groups, reader, records, sniff

DELIMITERS = [",", ";", "\t", "|", ":"]
ENDINGS = ["\n", "\r\n", "\r"]

words = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12)
numbers = st.one_of(
    st.integers(min_value=-(10**30), max_value=10**30).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.decimals(allow_nan=False, allow_infinity=False, places=3).map(str),
    st.from_regex(r"[-(]?[$€]?\s?[0-9]{1,4}([.,' ][0-9]{3}){0,3}([.,][0-9]{1,4})?\)?( USD)?", fullmatch=True),
    st.sampled_from(["", "NA", "1e999", "9" * 400, "-", ".", "1^2", "1\\2", "[1]", "(1,000)", "0x1p3"]),
)
isins = st.one_of(st.from_regex(r"[A-Z]{2}[A-Z0-9]{9}[0-9]", fullmatch=True), words)
headers = st.sampled_from(
    ["isin", "ISIN", "market_value", "Market Value", "currency", "portfolio_name", "Investor Name", "Portfolio",
     "x", "", "NA", "2024-01-31", "10:30", "1,000"]
)


@st.composite
def csv_files(draw: st.DrawFn) -> bytes:
    """CSV-ish text: a header or not, rows of mixed values, quotes, blank lines, odd bytes."""
    delimiter = draw(st.sampled_from(DELIMITERS))
    ending = draw(st.sampled_from(ENDINGS))
    width = draw(st.integers(min_value=1, max_value=7))
    lines = []
    if draw(st.booleans()):
        lines.append([draw(headers) for _ in range(width)])
    for _ in range(draw(st.integers(min_value=0, max_value=25))):
        row = [draw(st.one_of(isins, numbers, words)) for _ in range(draw(st.sampled_from([width, width, width + 1])))]
        lines.append(row)
    text_lines = []
    for row in lines:
        cells = [f'"{cell.replace(chr(34), chr(34) * 2)}"' if draw(st.booleans()) else cell for cell in row]
        text_lines.append(delimiter.join(cells))
        if draw(st.integers(min_value=0, max_value=9)) == 0:
            text_lines.append(draw(st.sampled_from(["", "   ", "\t", '"', '""'])))
    text = ending.join(text_lines) + (ending if draw(st.booleans()) else "")
    encoding = draw(st.sampled_from(["utf-8", "utf-8-sig", "cp1252", "cp850", "latin-1"]))
    data = text.encode(encoding, errors="replace")
    if draw(st.integers(min_value=0, max_value=19)) == 0:
        position = draw(st.integers(min_value=0, max_value=len(data)))
        data = data[:position] + b"\x00" + data[position:]
    return data


def assert_one_sound_entry_per_file(files: dict[str, bytes]) -> None:
    with tempfile.TemporaryDirectory() as work:
        input_dir, output_dir = Path(work) / "in", Path(work) / "out"
        input_dir.mkdir()
        for name, data in files.items():
            (input_dir / name).write_bytes(data)
        entries = process_directory(input_dir, output_dir)
        assert [entry["input_filename"] for entry in entries] == sorted(files)
        assert json.loads((output_dir / MANIFEST_NAME).read_text(encoding="utf-8")) == entries
        for entry in entries:
            assert entry.get("error_rule") != "internal_error", entry.get("error_detail")
            assert ("portfolios" in entry) != ("errors" in entry)
            for portfolio in entry.get("portfolios", []):
                assert (output_dir / portfolio["output_filename"]).is_file()
                assert portfolio["output_rows"] > 0


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=3000))
def test_random_bytes_never_make_the_parser_raise(data: bytes) -> None:
    assert_one_sound_entry_per_file({"random.csv": data})


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(csv_files())
def test_csv_like_text_never_makes_the_parser_raise(data: bytes) -> None:
    assert_one_sound_entry_per_file({"portfolio.csv": data})


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.dictionaries(st.from_regex(r"[a-zA-Z0-9_-]{1,12}\.csv", fullmatch=True), csv_files(), max_size=4))
def test_every_file_of_a_directory_gets_exactly_one_entry(files: dict[str, bytes]) -> None:
    assert_one_sound_entry_per_file(files)


@st.composite
def portfolio_files(draw: st.DrawFn) -> bytes:
    """Files much like real portfolios: the three columns, maybe names and extra columns, in any
    order, with or without a header; odd values, blank lines, quotes, two encodings."""
    extra = draw(
        st.sampled_from([[], ["portfolio_name", "investor_name"], ["portfolio_name", "x"], ["investor_name", "z", "w"]])
    )
    columns = draw(st.permutations(["isin", "market_value", "currency", *extra]))
    delimiter = draw(st.sampled_from([",", ";", "\t", "|"]))
    ending, quote_all = draw(st.sampled_from(["\n", "\r\n"])), draw(st.booleans())
    pools = {
        "isin": st.sampled_from(["GB0007980591", "US0378331005", "XX", "", "gb0007980591"]),
        "market_value": st.one_of(
            st.from_regex(r"-?[0-9]{1,6}([.,][0-9]{1,3})?", fullmatch=True),
            st.sampled_from(["", "NA", "1,000.5", "1.000,5", "(5)", "$7", "abc", "100000", "0.00", "-0"]),
        ),
        "currency": st.sampled_from(["USD", "EUR", "usd", "", "XYZ"]),
    }
    names = st.sampled_from(["A", "B", "b", "Ä", "", " ", "NA", "A ", "Fund, X", 'Q"uote'])

    def cell(column: str) -> str:
        value = draw(pools.get(column, names))
        return '"' + value.replace('"', '""') + '"' if quote_all or delimiter in value or '"' in value else value

    lines = [delimiter.join(columns)] if draw(st.booleans()) or len(columns) not in (3, 5) else []
    for _ in range(draw(st.integers(min_value=0, max_value=60))):
        lines.append(delimiter.join(cell(column) for column in columns))
        if draw(st.integers(min_value=0, max_value=15)) == 0:
            lines.append(draw(st.sampled_from(["", "  "])))
    return (ending.join(lines) + ending).encode(draw(st.sampled_from(["utf-8", "cp1252"])), errors="replace")


@contextmanager
def every_limit_shrunk() -> Iterator[None]:
    """Small chunks, two processes from 0 bytes on, a spill past 3 rows: every route is taken."""
    limits = [(sniff, "CHUNK_BYTES", 64), (sniff, "MD5_PROCESS_MIN_BYTES", 0), (records, "CHUNK_BYTES", 50),
              (records, "CSV_BLOCK_ROWS", 2),
              (reader, "SPLIT_MIN_BYTES", 0), (export, "SPLIT_MIN_ROWS", 0), (groups, "BUFFERED_ROWS", 3),
              (reader, "spare_core", lambda: True), (export, "spare_core", lambda: True)]
    saved = [(module, name, getattr(module, name)) for module, name, _ in limits]
    for module, name, value in limits:
        setattr(module, name, value)
    try:
        yield
    finally:
        for module, name, value in saved:
            setattr(module, name, value)


def parse_result(data: bytes) -> list[Any]:
    """What must not depend on how the file was cut up: entries without file names and time, outputs."""
    with tempfile.TemporaryDirectory() as work:
        input_dir, output_dir = Path(work) / "in", Path(work) / "out"
        input_dir.mkdir()
        (input_dir / "portfolio.csv").write_bytes(data)
        results = []
        for entry in process_directory(input_dir, output_dir):
            entry.pop("system_info")
            outputs = [(output_dir / p.pop("output_filename")).read_bytes() for p in entry.get("portfolios", [])]
            results.append((entry, outputs))
        return results


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(portfolio_files())
def test_portfolio_like_files_are_never_refused_for_a_bug(data: bytes) -> None:
    assert_one_sound_entry_per_file({"portfolio.csv": data})


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(portfolio_files())
def test_cutting_a_file_into_pieces_changes_nothing(data: bytes) -> None:
    whole = parse_result(data)
    with every_limit_shrunk():
        assert parse_result(data) == whole


@st.composite
def files_with_leading_names(draw: st.DrawFn) -> bytes:
    """Files whose first columns are the names, in runs of equal names (sorted by portfolio), with
    the odd whitespace, NA and empty name, a header or not, now and then a blank line."""
    delimiter = draw(st.sampled_from([",", ";", "|", "\t"]))
    names = st.sampled_from(["Fund A", " Fund A", "Fund A ", "NA", "", "Fund B", "=1+1", "Fund  C", "Fund\tD"]).filter(
        lambda name: delimiter not in name
    )
    values = ["{row}.5", "NA", " {row} ", "(3.5)", "{row}"] + (["{row},5"] if delimiter != "," else [])
    lines = ["investor_name,portfolio_name,isin,market_value,currency"] if draw(st.booleans()) else []
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        investor, portfolio = draw(st.sampled_from(["Inv", " Inv ", "", "NA"])), draw(names)
        for row in range(draw(st.integers(min_value=1, max_value=40))):
            value = draw(st.sampled_from(values)).format(row=row)
            currency = draw(st.sampled_from(["USD", "EUR", "NA"]))
            lines.append(delimiter.join([investor, portfolio, "GB0007980591", value, currency]))
            if draw(st.integers(min_value=0, max_value=30)) == 0:
                lines.append("")
    if lines and lines[0].startswith("investor_name"):
        lines[0] = lines[0].replace(",", delimiter)
    return ("\n".join(lines) + "\n").encode()


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(files_with_leading_names(), st.sampled_from([40, 200, 4096]), st.sampled_from([1, 30, 29_000]))
def test_names_read_once_per_block_give_what_reading_every_row_gives(data: bytes, chunk: int, piece: int) -> None:
    # The fast route (reader._leading: names leading each line, read once per block where all agree)
    # against the plain one (every field split and trimmed), in blocks of a few lines to many; the
    # names replaced in pieces of a line to many (records._replace_line_prefix).
    saved = records.CHUNK_BYTES, records._REPLACE_PIECE_CHARS, reader._leading
    records.CHUNK_BYTES, records._REPLACE_PIECE_CHARS = chunk, piece
    try:
        fast = parse_result(data)
        reader._leading = lambda wanted: 0  # type: ignore[assignment]
        assert parse_result(data) == fast
    finally:
        records.CHUNK_BYTES, records._REPLACE_PIECE_CHARS, reader._leading = saved


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(alphabet="NAx \t", max_size=4), min_size=1, max_size=12))
def test_a_joined_column_is_cleaned_as_value_by_value(raw: list[str]) -> None:
    # column.clean_column's joined route (no whitespace: `NA` found in the joined text) against
    # trimming each value and turning `NA` into a missing one.
    expected = ["" if value.strip() == "NA" else value.strip() for value in raw]
    column = column_module.clean_column(list(raw), join=True)
    assert column.values == expected
    assert column.has_missing == ("" in expected)
