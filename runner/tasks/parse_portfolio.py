"""The portfolio parser: `process_directory(input_dir, output_dir)`, with the contract of PACTA's
`workflow.portfolio.parsing::process_directory` (pacta-contract.md 3.1, 3.3, 3.4).

For each file in `input_dir` (sorted) it writes one CSV per portfolio (`<uuid4>.csv`, bytes as R's
`write.csv` writes them) and finally `processed_portfolios.json`: one entry per input file, keys in
R's order, with its portfolios or, when the file cannot be imported, PACTA's one error message
(nested, as PACTA's Go decoder needs) plus `error_rule` and `error_detail` saying which rule failed
and where. Files that import may carry `warnings` (per row) and `warning_counts`. No input makes it
raise: a bug in the parser refuses that one file (`internal_error`) and the others go on.

Run it alone: `python -m runner parse-portfolio INPUT_DIR OUTPUT_DIR`.
"""

from __future__ import annotations

import json
import logging
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from runner import __version__
from runner.tasks.portfolio_parser.errors import PortfolioFileError, Rule
from runner.tasks.portfolio_parser.export import export_groups
from runner.tasks.portfolio_parser.reader import read_portfolio
from runner.tasks.portfolio_parser.sniff import FileFacts, scan_file

logger = logging.getLogger(__name__)

MANIFEST_NAME = "processed_portfolios.json"
# PACTA's only per-file error; Go decodes `errors` as [][]string, so it is nested (contract 3.3).
IMPORT_ERROR_MESSAGE = "Cannot import portfolio file. Please see documentation."
PACKAGE_NAME = "pacta-runner"


def process_directory(input_dir: Path, output_dir: Path) -> list[dict[str, Any]]:
    """Parse every file in `input_dir` into `output_dir`; write and return the manifest entries.

    Like R's `list.files`, sub-directories and names starting with a dot are left out."""
    output_dir.mkdir(parents=True, exist_ok=True)
    files = sorted(
        (path for path in input_dir.iterdir() if path.is_file() and not path.name.startswith(".")),
        key=lambda path: path.name,
    )
    entries = [reexport_portfolio(path, output_dir) for path in files]
    manifest = json.dumps(entries, ensure_ascii=False, separators=(",", ":")) + "\n"
    (output_dir / MANIFEST_NAME).write_text(manifest, encoding="utf-8", newline="\n")
    return entries


def reexport_portfolio(path: Path, output_dir: Path) -> dict[str, Any]:
    """The manifest entry of one input file, after writing its portfolios to `output_dir`."""
    entry: dict[str, Any] = {"input_filename": path.name, "input_md5": None, "system_info": system_info()}
    try:
        facts = scan_file(path)  # its MD5 is still being taken, in another process: `_input_md5`
    except OSError as error:
        return _refused(entry, _unreadable(error))
    try:
        with tempfile.TemporaryDirectory(prefix="parse-", dir=output_dir) as work_dir:
            parsed = read_portfolio(path, facts, Path(work_dir))
            try:
                entry["input_md5"] = _input_md5(facts)  # before any output is written
                portfolios = export_groups(
                    parsed.groups, parsed.marks, parsed.group_cols, output_dir, parsed.warnings, Path(work_dir)
                )
            finally:
                parsed.groups.close()
    except PortfolioFileError as error:
        return _refused(entry, error, facts)
    except OSError:
        raise  # the output directory, not this file (a full disk): the task fails, as it should
    except Exception as error:  # never let one file stop the others, or the manifest
        logger.exception("the parser failed on %s", path.name)
        return _refused(
            entry, PortfolioFileError(Rule.INTERNAL, f"the parser failed on this file ({error!r})"), facts
        )
    logger.info(
        "imported %s: %d holdings in %d portfolio(s), decimal mark %r, grouping mark %r",
        path.name,
        parsed.input_entries,
        len(portfolios),
        parsed.marks.decimal,
        parsed.marks.grouping,
    )
    entry |= {
        "input_entries": parsed.input_entries,
        "group_cols": parsed.group_cols,
        "subportfolios_count": len(portfolios),
        "portfolios": portfolios,
    }
    if parsed.warnings.counts:
        entry["warnings"] = parsed.warnings.listed()
        entry["warning_counts"] = dict(sorted(parsed.warnings.counts.items()))
    return entry


def system_info() -> dict[str, Any]:
    """PACTA's keys where they mean something here: no R, so no RVersion; Python's version instead."""
    return {
        "timestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "package": PACKAGE_NAME,
        "packageVersion": __version__,
        "pythonVersion": sys.version.split()[0],  # platform.python_version()'s, without importing platform
        "dependencies": [],
    }


def _input_md5(facts: FileFacts) -> str:
    """The input's MD5, waiting for its process; PortfolioFileError `unreadable` if it failed."""
    try:
        return facts.md5
    except OSError as error:
        raise _unreadable(error) from None


def _unreadable(error: OSError) -> PortfolioFileError:
    return PortfolioFileError(Rule.UNREADABLE, f"the file cannot be read ({error.strerror})")


def _refused(entry: dict[str, Any], error: PortfolioFileError, facts: FileFacts | None = None) -> dict[str, Any]:
    """The entry of a file refused for `error`; with its MD5 when `facts` has it (an unreadable
    file has none, and a file whose MD5 cannot be taken is refused as unreadable)."""
    if facts is not None and entry["input_md5"] is None:
        try:
            entry["input_md5"] = _input_md5(facts)
        except PortfolioFileError as unreadable:
            error = unreadable
    logger.warning("cannot import %s: %s", entry["input_filename"], error.detail)
    return entry | {"errors": [[IMPORT_ERROR_MESSAGE]], "error_rule": error.rule.value, "error_detail": error.detail}
