"""The run log redacts secrets; the workspace names downloads safely."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from runner.environment import log_format_from_environ
from runner.errors import InvalidEnvironmentError
from runner.logs import run_logging
from runner.workspace import MAX_LOCAL_NAME_CHARS, Workspace


def test_the_log_file_carries_the_run_id_and_never_a_secret(tmp_path: Path) -> None:
    log_path = tmp_path / "runner.log"
    with run_logging(log_path, run_id="run-42", secrets=["s3cr3t-token", ""]):
        logging.getLogger("runner.test").warning("token is %s", "s3cr3t-token")
    text = log_path.read_text(encoding="utf-8")
    assert "[run run-42] token is ***" in text and "s3cr3t-token" not in text


def test_json_console_lines_carry_the_run_id_and_the_log_file_stays_text(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log_path = tmp_path / "runner.log"
    with run_logging(log_path, run_id="run-42", secrets=["s3cr3t-token"], console_format="json"):
        logging.getLogger("runner.test").warning("token is %s", "s3cr3t-token")
    line = json.loads(capsys.readouterr().err.strip())
    assert line.pop("ts").endswith("Z")
    assert line == {"level": "warn", "logger": "runner.test", "msg": "token is ***", "run_id": "run-42"}
    assert "[run run-42] token is ***" in log_path.read_text(encoding="utf-8")


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, ("text", None)),
        ({"RUNNER_LOG_FORMAT": "JSON"}, ("json", None)),
        ({"RUNNER_LOG_FORMAT": "text"}, ("text", None)),
    ],
)
def test_the_console_format_comes_from_runner_log_format(environ: dict[str, str], expected: tuple[str, None]) -> None:
    assert log_format_from_environ(environ) == expected


def test_an_unknown_console_format_falls_back_to_text_and_says_so() -> None:
    log_format, problem = log_format_from_environ({"RUNNER_LOG_FORMAT": "xml"})
    assert log_format == "text" and problem is not None and "RUNNER_LOG_FORMAT" in problem and "xml" not in problem


def test_logging_is_restored_after_the_run(tmp_path: Path) -> None:
    root = logging.getLogger()
    handlers = list(root.handlers)
    with run_logging(tmp_path / "runner.log", run_id="run-42", secrets=[]):
        pass
    assert root.handlers == handlers


def test_downloads_keep_their_base_name_and_are_numbered_when_it_is_taken(tmp_path: Path) -> None:
    workspace = Workspace.create(tmp_path / "work")
    first = workspace.local_input_name("parse_portfolio/a b.csv")
    (workspace.input_dir / first).write_text("x")
    second = workspace.local_input_name("other/a b.csv")
    assert (first, second) == ("a_b.csv", "a_b-2.csv")
    assert workspace.local_input_name("x/../..") == "input"


def test_a_work_dir_holding_an_earlier_runs_files_is_refused(tmp_path: Path) -> None:
    (tmp_path / "input").mkdir()
    (tmp_path / "input" / "old.csv").write_text("x")
    with pytest.raises(InvalidEnvironmentError, match="RUNNER_WORK_DIR holds files"):
        Workspace.create(tmp_path)


def test_a_temporary_workspace_is_removed_and_a_given_one_kept(tmp_path: Path) -> None:
    temporary = Workspace.create(None)
    given = Workspace.create(tmp_path / "given")
    temporary.remove_if_temporary()
    given.remove_if_temporary()
    assert not temporary.root.exists() and given.root.exists()


def test_a_long_blob_name_gets_a_bounded_name_keeping_its_start_and_extension(tmp_path: Path) -> None:
    workspace = Workspace.create(tmp_path / "work")
    long_name = "uploads/" + "Pension fund " * 78 + ".csv"  # 1,022 characters

    local = workspace.local_input_name(long_name)
    (workspace.input_dir / local).write_text("x")  # a name the file system takes
    again = workspace.local_input_name(long_name)

    assert len(local) <= MAX_LOCAL_NAME_CHARS and local.startswith("Pension_fund_Pension") and local.endswith(".csv")
    assert len(again) <= MAX_LOCAL_NAME_CHARS and again.endswith("-2.csv") and again != local


def test_two_long_blob_names_with_the_same_start_get_different_names(tmp_path: Path) -> None:
    workspace = Workspace.create(tmp_path / "work")
    start = "p" * 300

    assert workspace.local_input_name(f"a/{start}1.csv") != workspace.local_input_name(f"a/{start}2.csv")
