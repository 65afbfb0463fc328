"""The parse_portfolio task: run the parser over the downloaded inputs, then read its manifest.

Like PACTA's Go runner, it trusts only `processed_portfolios.json`: each entry must name a file it
downloaded, and each portfolio a CSV in the output directory. Files that could not be imported do
not fail the task; the task fails (`no_portfolios`) only when no file produced a portfolio.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from orchestrations.contracts import RunError
from runner.errors import RunnerError
from runner.tasks.base import OutputFile, TaskInput, TaskOutcome
from runner.tasks.parse_portfolio import MANIFEST_NAME, process_directory

logger = logging.getLogger(__name__)

OUTPUTS_FOLDER = "outputs/"
# The failure message travels in the completion message; the full causes are in the manifest.
MAX_CAUSES_IN_MESSAGE = 5


def run_parse_portfolio(task: TaskInput) -> TaskOutcome:
    process_directory(task.input_dir, task.output_dir)
    manifest_path = task.output_dir / MANIFEST_NAME
    source_files = read_manifest(manifest_path)
    outputs = [
        _output_file(task, portfolio, source_uri=_source_of(task, source_file))
        for source_file in source_files
        for portfolio in source_file.get("portfolios", [])
    ]
    manifest = OutputFile(manifest_path, MANIFEST_NAME, "application/json", file_type="json")
    error = (
        None
        if outputs
        else RunError(code="no_portfolios", message=_no_portfolios_message(source_files))
    )
    logger.info("parsed %d file(s) into %d portfolio(s)", len(source_files), len(outputs))
    return TaskOutcome(
        outputs=outputs, attachments=[manifest], source_files=source_files, error=error
    )


def read_manifest(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        raise RunnerError("task_failed", f"The portfolio parser wrote no {MANIFEST_NAME}.")
    entries = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(entries, list) or not all(isinstance(entry, dict) for entry in entries):
        raise RunnerError("task_failed", f"{MANIFEST_NAME} is not a JSON array of objects.")
    return entries


def _source_of(task: TaskInput, source_file: dict[str, Any]) -> str:
    name = source_file.get("input_filename")
    if name not in task.sources:
        raise RunnerError(
            "task_failed", f"{MANIFEST_NAME} names an input file {name!r} the runner never wrote."
        )
    return task.sources[name]


def _output_file(task: TaskInput, portfolio: dict[str, Any], *, source_uri: str) -> OutputFile:
    filename = str(portfolio.get("output_filename", ""))
    path = task.output_dir / filename
    if not filename.endswith(".csv") or Path(filename).name != filename or not path.is_file():
        raise RunnerError(
            "task_failed",
            f"{MANIFEST_NAME} lists an output {filename!r} that is not a CSV it wrote.",
        )
    return OutputFile(
        path,
        OUTPUTS_FOLDER + filename,
        "text/csv",
        file_type="csv",
        source_uri=source_uri,
        portfolio=portfolio,
    )


def _no_portfolios_message(source_files: list[dict[str, Any]]) -> str:
    if not source_files:
        return "The parser found no input files, so there is no portfolio."
    causes = [
        f"{entry.get('input_filename')}: {entry.get('error_detail', 'no portfolio')}"
        for entry in source_files[:MAX_CAUSES_IN_MESSAGE]
    ]
    more = len(source_files) - len(causes)
    return (
        f"None of the {len(source_files)} input file(s) holds a portfolio that can be imported. "
        + "; ".join(causes)
        + (f"; and {more} more" if more else "")
        + f". Every file's cause is in {MANIFEST_NAME} (`error_detail`)."
    )
