"""The developer CLI's run listing on its own: the table within 80 columns, short ids, options checked up front.

tests/flow/test_cli.py runs the commands against the real app.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from rich.console import Console
from typer.testing import CliRunner

from local_runner.cli import cli, runs_table, short_ids
from orchestrations.contracts import RunRecord, RunStatus


def _record(index: int, status: RunStatus, task_type: str, error_code: str | None) -> dict[str, Any]:
    now = datetime(2026, 12, 6, 9, 53, tzinfo=UTC) - timedelta(minutes=index)
    error = {"code": error_code, "message": "What happened and what to do next."} if error_code else None
    return RunRecord.model_validate({
        "run_id": f"run-{index:04x}{'9f' * 12}", "status": status, "task_type": task_type,
        "source_uri": f"az://uploads/{task_type}/portfolio.csv", "requested_at": now, "updated_at": now,
        "error": error,
    }).public_view()


def test_the_runs_table_fits_80_columns_without_cutting_an_id_or_a_status() -> None:
    error_codes = ["orchestration_failed", "deadline_exceeded", "cancelled", "unknown_task_type",
                   "invalid_request_document_schema_version", None]
    task_types = ["create_dashboard", "parse_portfolio", "make_a_report_of_everything_we_have_ever_held"]
    records = [
        _record(index, status, task_types[index % 3], None if status is RunStatus.SUCCEEDED else
                error_codes[index % len(error_codes)])
        for index, status in enumerate(list(RunStatus) * 3)
    ]
    console = Console(width=80, record=True, color_system=None)

    console.print(runs_table(records))

    text = console.export_text()
    assert max(len(line) for line in text.splitlines()) <= 80
    assert "…" not in text
    shorts = short_ids(record["run_id"] for record in records)
    for record in records:
        [row] = [line for line in text.splitlines() if line.startswith(shorts[record["run_id"]] + " ")]
        assert f" {record['status']} " in row
    assert "make_a_report_of_eve" in text  # a long task type wraps, whole, rather than pushing the status out


def test_short_ids_lengthen_until_no_two_shown_ids_are_alike() -> None:
    first, second, other = "run-" + "ab12cd34" + "0" * 20, "run-" + "ab12cd34" + "5" * 20, "run-" + "f" * 28

    shorts = short_ids([first, second, other])

    assert shorts == {first: first[:13], second: second[:13], other: other[:13]}
    assert short_ids([other]) == {other: "run-ffffffff"}


def test_limit_and_status_are_refused_before_any_request_with_the_allowed_values() -> None:
    closed = "http://127.0.0.1:9"

    too_many = CliRunner().invoke(cli, ["runs", "--limit", "501", "--api-url", closed])
    bad_status = CliRunner().invoke(cli, ["runs", "--status", "done", "--api-url", closed])

    assert too_many.exit_code == 2 and "--limit" in too_many.output and "Nothing answers" not in too_many.output
    assert bad_status.exit_code == 2 and "succeeded" in bad_status.output
    assert "Nothing answers" not in bad_status.output
