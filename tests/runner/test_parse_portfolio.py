"""process_directory: PACTA's fixtures give PACTA's known results (pacta-contract.md 3.5)."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from runner.tasks.parse_portfolio import IMPORT_ERROR_MESSAGE, MANIFEST_NAME, process_directory

OUTPUT_SIMPLE_MD5 = "0f51946d64ef6ee4daca1a6969317cba"
UUID4_CSV = re.compile(
    r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}\.csv$"
)

# Fixtures PACTA imports that this version imports too, each into output_simple.csv's bytes.
IMPORTED_FIXTURES = [
    "simple.csv",
    "simple_all-columns.csv",
    "columns/simple_all-columns_extra_columns.csv",
    "columns/simple_all-columns_reordered.csv",
    "columns/simple_reordered.csv",
    *(
        f"headers/simple_all-columns_headers-{variant}.csv"
        for variant in (
            "camelcase",
            "demo",
            "dot",
            "doublepadded",
            "mixed",
            "nosep-lowercase",
            "nosep-uppercase",
            "padded",
            "quoted",
            "space",
            "underscore",
        )
    ),
]
REFUSED_FIXTURES = [
    "simple_all-columns_empty.csv",
    "columns/simple_investorname.csv",
    "columns/simple_portfolioname.csv",
    "columns/simple_extra_columns.csv",
    "columns/simple_missing-currency.csv",
    "columns/simple_missing-isin.csv",
    "columns/simple_missing-marketvalue.csv",
]

Parse = Callable[..., list[dict[str, Any]]]


@pytest.fixture
def parse(tmp_path: Path, fixtures_dir: Path) -> Parse:
    """Copy fixtures (by path under the fixtures dir) or (name, bytes) pairs in; run the parser."""

    def run(*files: str | tuple[str, bytes]) -> list[dict[str, Any]]:
        input_dir = tmp_path / "input"
        input_dir.mkdir()
        for file in files:
            if isinstance(file, str):
                shutil.copy(fixtures_dir / file, input_dir / Path(file).name)
            else:
                (input_dir / file[0]).write_bytes(file[1])
        return process_directory(input_dir, tmp_path / "output")

    return run


def _output(tmp_path: Path, portfolio: dict[str, Any]) -> bytes:
    return (tmp_path / "output" / portfolio["output_filename"]).read_bytes()


def test_simple_csv_gives_one_portfolio_with_the_reference_bytes(
    parse: Parse, tmp_path: Path, fixtures_dir: Path
) -> None:
    [entry] = parse("simple.csv")
    [portfolio] = entry["portfolios"]
    assert _output(tmp_path, portfolio) == (fixtures_dir / "output_simple.csv").read_bytes()
    assert portfolio["output_md5"] == OUTPUT_SIMPLE_MD5
    assert UUID4_CSV.match(portfolio["output_filename"])
    assert entry["input_md5"] == "8e84d71c0f3892e34e0d9342cfc91a4d"
    assert (entry["input_entries"], entry["group_cols"], entry["subportfolios_count"]) == (1, [], 1)
    assert set(portfolio) == {"output_md5", "output_filename", "output_rows"}


def test_a_file_with_two_portfolio_names_gives_two_portfolios(parse: Parse, tmp_path: Path) -> None:
    [entry] = parse("multi_simple_all-columns_portfolioname.csv")
    assert entry["input_md5"] == "933e17a2bff75e79224437103a1822f2"
    assert entry["group_cols"] == ["portfolio_name", "investor_name"]
    assert (entry["input_entries"], entry["subportfolios_count"]) == (2, 2)
    assert [
        (p["output_md5"], p["output_rows"], p["portfolio_name"], p["investor_name"])
        for p in entry["portfolios"]
    ] == [
        (OUTPUT_SIMPLE_MD5, 1, "Portfolio A", "Simple Investor"),
        (OUTPUT_SIMPLE_MD5, 1, "Portfolio B", "Simple Investor"),
    ]
    assert all(
        hashlib.md5(_output(tmp_path, p)).hexdigest() == OUTPUT_SIMPLE_MD5
        for p in entry["portfolios"]
    )


@pytest.mark.parametrize("fixture", IMPORTED_FIXTURES)
def test_every_fixture_pacta_imports_with_a_header_gives_the_reference_output(
    parse: Parse, fixture: str
) -> None:
    [entry] = parse(fixture)
    assert [p["output_md5"] for p in entry["portfolios"]] == [OUTPUT_SIMPLE_MD5]


@pytest.mark.parametrize("fixture", REFUSED_FIXTURES)
def test_every_fixture_pacta_refuses_gets_pactas_error_and_a_cause(
    parse: Parse, fixture: str
) -> None:
    [entry] = parse(fixture)
    assert entry["errors"] == [[IMPORT_ERROR_MESSAGE]]
    assert entry["error_detail"]
    assert not {"portfolios", "input_entries", "group_cols", "subportfolios_count"} & set(entry)


def test_a_four_column_file_is_refused_by_the_column_count_rule(parse: Parse) -> None:
    [entry] = parse("columns/simple_investorname.csv")
    assert entry["input_md5"] == "6a638fdfe8d17e81d9ca5627ae0d59fa"
    assert list(entry) == ["input_filename", "input_md5", "system_info", "errors", "error_detail"]
    assert "4 column(s)" in entry["error_detail"]


def test_a_header_only_file_is_refused(parse: Parse) -> None:
    [entry] = parse("simple_all-columns_empty.csv")
    assert entry["errors"] == [[IMPORT_ERROR_MESSAGE]]
    assert entry["error_detail"] == "the file has a header row but no holdings"


def test_headerless_files_are_refused_in_this_version(parse: Parse) -> None:
    entries = parse(
        "headers/simple_headers-none.csv", "headers/simple_all-columns_headers-none.csv"
    )
    assert all("errors" in entry for entry in entries)


def test_a_refused_file_does_not_stop_the_others(parse: Parse) -> None:
    entries = parse("columns/simple_investorname.csv", "simple.csv")
    assert ["errors" in entry for entry in entries] == [False, True]


def test_the_manifest_is_compact_json_in_sorted_file_order(parse: Parse, tmp_path: Path) -> None:
    entries = parse("simple.csv", "columns/simple_investorname.csv", "simple_all-columns.csv")
    text = (tmp_path / "output" / MANIFEST_NAME).read_text(encoding="utf-8")
    assert text == json.dumps(entries, separators=(",", ":")) + "\n"
    assert [entry["input_filename"] for entry in entries] == [
        "simple.csv",
        "simple_all-columns.csv",
        "simple_investorname.csv",
    ]


def test_system_info_names_the_runner_package(parse: Parse) -> None:
    [entry] = parse("simple.csv")
    info = entry["system_info"]
    assert info["package"] == "pacta-runner" and info["dependencies"] == []
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", info["timestamp"])
    assert list(info) == ["timestamp", "package", "packageVersion", "dependencies"]


def test_groups_are_in_c_locale_order_with_a_missing_name_last(
    parse: Parse, tmp_path: Path
) -> None:
    rows = ["b", "Ä", "", "a", "B", "b"]
    content = "portfolio_name,investor_name,isin,market_value,currency\n" + "".join(
        f"{name},Inv,ISIN{index},{index},USD\n" for index, name in enumerate(rows)
    )
    [entry] = parse(("groups.csv", content.encode("utf-8")))
    names = [p.get("portfolio_name") for p in entry["portfolios"]]
    assert names == ["B", "a", "b", "Ä", None]
    group_b = next(p for p in entry["portfolios"] if p.get("portfolio_name") == "b")
    assert _output(tmp_path, group_b).decode().splitlines()[1:] == [
        '"ISIN0",0,"USD"',
        '"ISIN5",5,"USD"',
    ]


def test_a_missing_group_name_is_left_out_of_the_manifest_not_null(parse: Parse) -> None:
    content = b"portfolio_name,investor_name,isin,market_value,currency\n,Inv,GB1,1,USD\n"
    [entry] = parse(("na.csv", content))
    assert entry["portfolios"][0].keys() == {
        "output_md5",
        "output_filename",
        "output_rows",
        "investor_name",
    }


def test_large_market_values_are_written_as_r_writes_them(parse: Parse, tmp_path: Path) -> None:
    content = b"isin,market_value,currency\nGB1,100000,USD\nGB2,1234.5,USD\nGB3,10000,USD\n"
    [entry] = parse(("big.csv", content))
    assert _output(tmp_path, entry["portfolios"][0]).decode().splitlines()[1:] == [
        '"GB1",1e+05,"USD"',
        '"GB2",1234.5,"USD"',
        '"GB3",10000,"USD"',
    ]
