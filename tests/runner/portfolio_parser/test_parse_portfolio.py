"""process_directory: every shared fixture gives PACTA's known result (pacta-contract.md 3.5), and
the manifest has PACTA's shape."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest

from runner.tasks.parse_portfolio import IMPORT_ERROR_MESSAGE, MANIFEST_NAME
from tests.runner.portfolio_parser.conftest import ParseFiles, ParseText

OUTPUT_SIMPLE_MD5 = "0f51946d64ef6ee4daca1a6969317cba"
DEFAULT_PORTFOLIO_MD5 = "0d2a7366c890b4253da20e886ffba18c"
UUID4_CSV = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}\.csv$")

HEADER_VARIANTS = [
    f"headers/simple_all-columns_headers-{variant}.csv"
    for variant in (
        "camelcase", "demo", "dot", "doublepadded", "mixed", "none", "nosep-lowercase",
        "nosep-uppercase", "padded", "quoted", "space", "underscore",
    )
]
# Every fixture PACTA imports, each into output_simple.csv's bytes.
IMPORTED = [
    "simple.csv",
    "simple_all-columns.csv",
    "output_simple.csv",
    "columns/simple_all-columns_extra_columns.csv",
    "columns/simple_all-columns_reordered.csv",
    "columns/simple_reordered.csv",
    "headers/simple_headers-none.csv",
    *HEADER_VARIANTS,
]
REFUSED = [
    "simple_all-columns_empty.csv",
    "columns/simple_investorname.csv",
    "columns/simple_portfolioname.csv",
    "columns/simple_extra_columns.csv",
    "columns/simple_missing-currency.csv",
    "columns/simple_missing-isin.csv",
    "columns/simple_missing-marketvalue.csv",
]


def test_simple_csv_gives_one_portfolio_with_the_reference_bytes(parse_files: ParseFiles, fixtures_dir: Path) -> None:
    parsed = parse_files("simple.csv")
    [portfolio] = parsed.entry["portfolios"]
    assert parsed.output(portfolio) == (fixtures_dir / "output_simple.csv").read_bytes()
    assert portfolio["output_md5"] == OUTPUT_SIMPLE_MD5
    assert UUID4_CSV.match(portfolio["output_filename"])
    assert parsed.entry["input_md5"] == "8e84d71c0f3892e34e0d9342cfc91a4d"
    entry = parsed.entry
    assert (entry["input_entries"], entry["group_cols"], entry["subportfolios_count"]) == (1, [], 1)
    assert list(portfolio) == ["output_md5", "output_filename", "output_rows"]


def test_the_multi_portfolio_file_gives_portfolios_a_and_b(parse_files: ParseFiles) -> None:
    parsed = parse_files("multi_simple_all-columns_portfolioname.csv")
    entry = parsed.entry
    assert entry["input_md5"] == "933e17a2bff75e79224437103a1822f2"
    assert (entry["input_entries"], entry["group_cols"], entry["subportfolios_count"]) == (
        2, ["portfolio_name", "investor_name"], 2,
    )
    assert [
        (p["output_md5"], p["output_rows"], p["portfolio_name"], p["investor_name"]) for p in entry["portfolios"]
    ] == [
        (OUTPUT_SIMPLE_MD5, 1, "Portfolio A", "Simple Investor"),
        (OUTPUT_SIMPLE_MD5, 1, "Portfolio B", "Simple Investor"),
    ]
    assert all(hashlib.md5(parsed.output(p)).hexdigest() == OUTPUT_SIMPLE_MD5 for p in entry["portfolios"])


@pytest.mark.parametrize("fixture", IMPORTED)
def test_every_fixture_pacta_imports_gives_the_reference_output(parse_files: ParseFiles, fixture: str) -> None:
    entry = parse_files(fixture).entry
    assert [p["output_md5"] for p in entry["portfolios"]] == [OUTPUT_SIMPLE_MD5]
    assert "warnings" not in entry


@pytest.mark.parametrize("fixture", HEADER_VARIANTS)
def test_every_five_column_header_spelling_groups_by_both_names(parse_files: ParseFiles, fixture: str) -> None:
    [portfolio] = parse_files(fixture).entry["portfolios"]
    assert (portfolio["portfolio_name"], portfolio["investor_name"]) == ("Simple Portfolio", "Simple Investor")


@pytest.mark.parametrize("fixture", REFUSED)
def test_every_fixture_pacta_refuses_gets_pactas_error_and_a_cause(parse_files: ParseFiles, fixture: str) -> None:
    entry = parse_files(fixture).entry
    assert entry["errors"] == [[IMPORT_ERROR_MESSAGE]]
    assert entry["error_rule"] and entry["error_detail"]
    assert not {"portfolios", "input_entries", "group_cols", "subportfolios_count"} & set(entry)


def test_the_four_column_files_are_refused_by_the_column_count_rule(parse_files: ParseFiles) -> None:
    entries = parse_files(*REFUSED[1:]).entries
    assert {entry["error_rule"] for entry in entries} == {"column_count"}
    four = next(entry for entry in entries if entry["input_filename"] == "simple_investorname.csv")
    assert four["input_md5"] == "6a638fdfe8d17e81d9ca5627ae0d59fa"
    assert four["error_detail"].startswith("the file has 4 column(s) ('investor_name', 'isin',")


def test_the_header_only_file_is_refused_for_having_no_holdings(parse_files: ParseFiles) -> None:
    entry = parse_files("simple_all-columns_empty.csv").entry
    assert entry["error_rule"] == "no_holdings"


def test_the_webapps_default_portfolio_gives_its_90_rows(parse_files: ParseFiles) -> None:
    entry = parse_files("webapp/default_portfolio.csv").entry
    [portfolio] = entry["portfolios"]
    assert (entry["input_entries"], portfolio["output_rows"]) == (90, 90)
    assert portfolio["output_md5"] == DEFAULT_PORTFOLIO_MD5


def test_a_refused_entry_has_pactas_keys_in_order_then_the_cause(parse_files: ParseFiles) -> None:
    entry = parse_files("columns/simple_investorname.csv").entry
    assert list(entry) == ["input_filename", "input_md5", "system_info", "errors", "error_rule", "error_detail"]


def test_an_imported_entry_has_pactas_keys_in_pactas_order(parse_files: ParseFiles) -> None:
    entry = parse_files("simple_all-columns.csv").entry
    assert list(entry) == [
        "input_filename", "input_md5", "system_info",
        "input_entries", "group_cols", "subportfolios_count", "portfolios",
    ]
    assert list(entry["portfolios"][0]) == [
        "output_md5", "output_filename", "output_rows", "portfolio_name", "investor_name",
    ]


def test_the_manifest_is_compact_json_and_a_newline_in_file_name_order(parse_files: ParseFiles) -> None:
    parsed = parse_files("simple.csv", "columns/simple_investorname.csv", "simple_all-columns.csv")
    assert parsed.manifest_text() == json.dumps(parsed.entries, separators=(",", ":")) + "\n"
    assert [entry["input_filename"] for entry in parsed.entries] == [
        "simple.csv", "simple_all-columns.csv", "simple_investorname.csv",
    ]


def test_the_output_directory_holds_the_listed_csvs_and_the_manifest_only(parse_files: ParseFiles) -> None:
    parsed = parse_files("multi_simple_all-columns_portfolioname.csv", "simple.csv", "columns/simple_investorname.csv")
    listed = {p["output_filename"] for entry in parsed.entries for p in entry.get("portfolios", [])}
    assert {path.name for path in parsed.output_dir.iterdir()} == listed | {MANIFEST_NAME}


def test_system_info_names_this_package_its_version_and_python(parse_text: ParseText) -> None:
    info = parse_text("isin,market_value,currency\nGB0007980591,1,USD\n").entry["system_info"]
    assert list(info) == ["timestamp", "package", "packageVersion", "pythonVersion", "dependencies"]
    assert (info["package"], info["dependencies"]) == ("pacta-runner", [])
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", info["timestamp"])


def test_hidden_files_and_directories_in_the_input_are_left_out(parse_files: ParseFiles, tmp_path: Path) -> None:
    (tmp_path / "input" / "nested").mkdir(parents=True)
    parsed = parse_files(("simple.csv", b"isin,market_value,currency\nGB0007980591,1,USD\n"), (".hidden.csv", b"x"))
    assert [entry["input_filename"] for entry in parsed.entries] == ["simple.csv"]
