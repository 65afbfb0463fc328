"""The create_* task's parts, without storage: file types, the walk, the input JSON, the command."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import pytest

from orchestrations.contracts import AnalysisRequest, TaskType
from runner.environment import AnalysisSettings
from runner.errors import InvalidEnvironmentError
from runner.tasks.file_types import content_type, file_type
from runner.tasks.pacta_analysis import TaskLayout, artifacts, command_env, pacta_argument
from runner.tasks.pacta_command import run_command

STAND_INS = Path(__file__).resolve().parent / "stand_ins"

PACTA_FILE_TYPES = {
    "a.csv": "csv", "a.yaml": "yaml", "a.zip": "zip", "index.html": "html", "a.json": "json", "a.txt": "txt",
    "a.css": "css", "a.js": "js", "app.min.js.map": "js.map", "a.css.map": "css.map", "a.ttf": "ttf",
    "a.woff": "woff", "a.woff2": "woff2", "a.eot": "eot", "a.svg": "svg", "a.png": "png", "a.jpg": "jpg",
    "a.pdf": "pdf", "a.xlsx": "xlsx", "a.rds": "rds",
}


@pytest.mark.parametrize(("name", "expected"), PACTA_FILE_TYPES.items())
def test_each_pacta_extension_gives_pactas_file_type(name: str, expected: str) -> None:
    assert file_type(name) == expected


@pytest.mark.parametrize(
    "name", ["a.weird", "README", "a.CSV", "a.jpeg", "a.map", "a.ts.map", "a.yml", "archive.tar.gz", "a."]
)
def test_anything_else_is_unknown_as_pactas_go_ext_decides(name: str) -> None:
    assert file_type(name) == "unknown"


def test_a_dot_file_takes_its_whole_name_as_extension_as_go_does() -> None:
    assert (file_type(".csv"), file_type(".Rprofile")) == ("csv", "unknown")


def test_content_types_let_a_browser_render_the_report() -> None:
    assert content_type("index.html") == "text/html; charset=utf-8"
    assert content_type("app.css.map") == "application/json"
    assert content_type("logo.jpg") == "image/jpeg"
    assert content_type("data.rds") == "application/octet-stream"
    assert content_type("notes.md") == "text/markdown"
    assert content_type("blob.weird") == "application/octet-stream"


def test_the_input_json_is_byte_for_byte_what_pactas_go_runner_wrote() -> None:
    request = AnalysisRequest.model_validate({"BlobURIs": ["az://parsedportfolios/0b1c.csv"]})

    argument = pacta_argument(request, ["0b1c.csv"])

    assert argument == (
        '{"portfolio":{"files":["0b1c.csv"],"holdingsDate":"2023-12-31","name":"FooPortfolio"},'
        '"inherit":"GENERAL_2023Q4"}\n'
    )


def test_artifacts_follow_pactas_walk_order_and_blob_layout(tmp_path: Path) -> None:
    layout = TaskLayout.create(tmp_path)
    for relative in [
        "summary-output/summary.pdf", "report-output/b.html", "report-output/a/z.js", "report-output/a.txt",
        "dashboard-output/data/d.json", "dashboard-output/index.html", "analysis-output/x.rds",
    ]:
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_text("x")

    found = list(artifacts(layout, "reports", "analysis.1"))

    assert [(output.container, output.blob_name, output.file_type) for output in found] == [
        ("reports", "analysis.1/analysis-output/x.rds", "rds"),
        ("reports", "analysis.1/report-output/a/z.js", "js"),
        ("reports", "analysis.1/report-output/a.txt", "txt"),
        ("reports", "analysis.1/report-output/b.html", "html"),
        ("reports", "analysis.1/dashboard-output/data/d.json", "json"),
        ("reports", "analysis.1/dashboard-output/index.html", "html"),
        ("reports", "analysis.1/summary-output/summary.pdf", "pdf"),
    ]


def test_a_link_to_a_file_is_uploaded_and_a_link_to_a_directory_is_not(tmp_path: Path) -> None:
    layout = TaskLayout.create(tmp_path / "task")
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "f.csv").write_text("x")
    (tmp_path / "task" / "report-output" / "linked.csv").symlink_to(tmp_path / "outside" / "f.csv")
    (tmp_path / "task" / "report-output" / "dir").symlink_to(tmp_path / "outside")

    found = [output.blob_name for output in artifacts(layout, "reports", "a")]

    assert found == ["a/report-output/linked.csv"]


def test_the_layout_has_pactas_nine_directories(tmp_path: Path) -> None:
    TaskLayout.create(tmp_path)

    assert sorted(str(path.relative_to(tmp_path)) for path in tmp_path.rglob("*")) == [
        "analysis-output", "dashboard-output", "dashboard-output/data", "portfolios", "real-estate",
        "report-output", "score-card", "summary-output", "survey",
    ]


def test_the_command_environment_passes_through_only_what_it_names(tmp_path: Path) -> None:
    layout = TaskLayout.create(tmp_path)
    settings = AnalysisSettings.from_environ({}, TaskType.CREATE_REPORT)
    environ = {
        "PATH": "/usr/bin", "HOME": "/home/workflow-pacta-webapp", "LOG_LEVEL": "INFO", "LANG": "C.UTF-8",
        "RUNNER_CALLBACK_TOKEN": "secret-token-value", "RUNNER_STORAGE_CONNECTION_STRING": "AccountKey=k",
    }

    env = command_env(layout, settings, environ)

    assert env["BENCHMARKS_DIR"] == "/mnt/benchmark-data/65c1a416721b22a98c7925999ae03bc4"
    assert env["PACTA_DATA_DIR"] == "/mnt/pacta-data/2023Q4_20240718T150252Z"
    assert (env["HOME"], env["LOG_LEVEL"], env["LANG"], env["PATH"]) == (
        "/home/workflow-pacta-webapp", "INFO", "C.UTF-8", "/usr/bin",
    )
    assert "RUNNER_CALLBACK_TOKEN" not in env and "RUNNER_STORAGE_CONNECTION_STRING" not in env


def test_pactas_commands_are_the_defaults_and_a_bad_command_variable_is_named() -> None:
    assert AnalysisSettings.from_environ({}, TaskType.CREATE_AUDIT).command == [
        "/workflow.pacta.webapp/inst/extdata/scripts/run_audit.sh"
    ]
    with pytest.raises(InvalidEnvironmentError) as caught:
        AnalysisSettings.from_environ({"RUNNER_TASK_COMMAND": "Rscript run.R"}, TaskType.CREATE_REPORT)
    assert caught.value.message.startswith("RUNNER_TASK_COMMAND is not a JSON list of non-empty strings")


def test_a_command_keeps_its_last_lines_in_the_order_written_and_logs_them_all(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="runner.command")

    result = run_command([sys.executable, str(STAND_INS / "failing_pacta.py")], env={})

    assert (result.exit_code, result.killed_by) == (3, None)
    assert result.tail.splitlines() == [
        *(f"line {number} of the failing script" for number in range(12, 41)),
        "Error in run_pacta(): stand-in failure",
    ]
    logged = [record.getMessage() for record in caplog.records if record.name == "runner.command"]
    assert len(logged) == 41 and logged[0] == "| line 1 of the failing script"


def test_a_command_ended_by_a_signal_reports_it_as_a_shell_would() -> None:
    result = run_command([sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"], env={})

    assert (result.exit_code, result.killed_by) == (137, "SIGKILL")
