"""The portfolio parser: `process_directory(input_dir, output_dir)`, with the contract of PACTA's
`workflow.portfolio.parsing::process_directory` (pacta-contract.md 3.1, 3.3, 3.4).

For each file in `input_dir` (sorted) it writes one CSV per portfolio (`<uuid4>.csv`, bytes as R's
`write.csv` writes them) and finally `processed_portfolios.json`: one entry per input file, with its
portfolios or, when the file cannot be imported, PACTA's one error message plus `error_detail`
saying which rule failed. The task that uploads the results reads only that manifest, so a later,
more faithful parser replaces this module (and portfolio_csv, r_format) and nothing else.

Run it alone: `python -m runner parse-portfolio INPUT_DIR OUTPUT_DIR`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from datetime import UTC, datetime
from itertools import groupby
from pathlib import Path
from typing import Any

from runner import __version__
from runner.tasks.portfolio_csv import (
    Holding,
    PortfolioFileError,
    PortfolioTable,
    read_portfolio_csv,
)
from runner.tasks.r_format import render_r_csv

logger = logging.getLogger(__name__)

MANIFEST_NAME = "processed_portfolios.json"
# PACTA's only per-file error; Go decodes `errors` as [][]string, so it is nested (contract 3.3).
IMPORT_ERROR_MESSAGE = "Cannot import portfolio file. Please see documentation."
OUTPUT_COLUMNS = ("isin", "market_value", "currency")
PACKAGE_NAME = "pacta-runner"

GroupKey = tuple[str | None, ...]


def process_directory(input_dir: Path, output_dir: Path) -> list[dict[str, Any]]:
    """Parse every file in `input_dir` into `output_dir`; write and return the manifest entries."""
    output_dir.mkdir(parents=True, exist_ok=True)
    files = sorted(
        (path for path in input_dir.iterdir() if path.is_file()), key=lambda path: path.name
    )
    entries = [reexport_portfolio(path, output_dir) for path in files]
    manifest = json.dumps(entries, ensure_ascii=False, separators=(",", ":")) + "\n"
    (output_dir / MANIFEST_NAME).write_text(manifest, encoding="utf-8", newline="\n")
    return entries


def reexport_portfolio(path: Path, output_dir: Path) -> dict[str, Any]:
    """The manifest entry of one input file, after writing its portfolios to `output_dir`."""
    entry: dict[str, Any] = {
        "input_filename": path.name,
        "input_md5": hashlib.md5(path.read_bytes()).hexdigest(),
        "system_info": system_info(),
    }
    try:
        table = read_portfolio_csv(path)
    except PortfolioFileError as error:
        logger.warning("cannot import %s: %s", path.name, error.detail)
        return entry | {"errors": [[IMPORT_ERROR_MESSAGE]], "error_detail": error.detail}
    portfolios = [
        export_portfolio(holdings, dict(zip(table.group_cols, key, strict=True)), output_dir)
        for key, holdings in group_holdings(table)
    ]
    logger.info(
        "imported %s: %d holdings in %d portfolio(s)",
        path.name,
        len(table.holdings),
        len(portfolios),
    )
    return entry | {
        "input_entries": len(table.holdings),
        "group_cols": table.group_cols,
        "subportfolios_count": len(portfolios),
        "portfolios": portfolios,
    }


def group_holdings(table: PortfolioTable) -> list[tuple[GroupKey, list[Holding]]]:
    """dplyr's `group_by` over the group columns: keys ascending in C-locale (code point) order, NA
    last, holdings in file order within a group; one group with an empty key when there are none."""

    def key(holding: Holding) -> GroupKey:
        return tuple(getattr(holding, column) for column in table.group_cols)

    def sort_key(holding: Holding) -> tuple[tuple[bool, str], ...]:
        return tuple((value is None, value or "") for value in key(holding))

    ordered = sorted(table.holdings, key=sort_key)  # stable: file order within a group
    return [(group, list(members)) for group, members in groupby(ordered, key=key)]


def export_portfolio(
    holdings: list[Holding], names: dict[str, str | None], output_dir: Path
) -> dict[str, Any]:
    """Write one portfolio as `<uuid4>.csv` and return its manifest entry."""
    data = render_r_csv(
        OUTPUT_COLUMNS,
        ((holding.isin, holding.market_value, holding.currency) for holding in holdings),
    )
    filename = f"{uuid.uuid4()}.csv"
    (output_dir / filename).write_bytes(data)
    entry: dict[str, Any] = {
        "output_md5": hashlib.md5(data).hexdigest(),
        "output_filename": filename,
        "output_rows": len(holdings),
    }
    # R writes an NA name as `null`, which Go cannot decode into a string; left out, it reads "".
    entry.update({column: value for column, value in names.items() if value is not None})
    return entry


def system_info() -> dict[str, Any]:
    return {
        "timestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "package": PACKAGE_NAME,
        "packageVersion": __version__,
        "dependencies": [],
    }
