"""create_report, create_audit and create_dashboard, run as PACTA's Go runner ran them
(pacta-contract.md 1.4; RMI-PACTA/app `async/async.go`).

1. The task directory (the workspace's `output/`) gets PACTA's layout: `portfolios`, `real-estate`,
   `score-card`, `survey` (inputs) and `analysis-output`, `dashboard-output`, `dashboard-output/data`,
   `report-output`, `summary-output` (outputs).
2. Every downloaded portfolio moves into `portfolios/` (PACTA took exactly one `BlobURI`; we take one
   or more and list them all in `files`).
3. The command (`RUNNER_TASK_COMMAND`, PACTA's by default) runs with PACTA's `*_DIR` variables and the
   input JSON `{"portfolio":{"files":[...],"holdingsDate":...,"name":...},"inherit":...}` as its last
   argument; holdings date, name and inherit come from the request (`HoldingsDate`, `PortfolioName`,
   `Inherit`), PACTA's hard-coded values when absent (its #206).
4. Every file of the four output directories becomes an artifact at
   `<container>/<analysis id>/<output dir>/<path relative to it>`, in PACTA's walk order, with PACTA's
   FileType. The flow uploads them concurrently.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from pydantic import ValidationError

from orchestrations.contracts import AnalysisRequest, TaskType, describe_validation_error
from runner.environment import AnalysisSettings
from runner.errors import RunnerError
from runner.tasks.base import OutputFile, TaskInput, TaskOutcome
from runner.tasks.file_types import UNKNOWN, content_type, file_type
from runner.tasks.pacta_command import CommandNotStartedError, CommandResult, run_command
from runner.text import shorten

logger = logging.getLogger(__name__)

INPUT_DIRS: Final = ("portfolios", "real-estate", "score-card", "survey")
# In the order PACTA's runner walked and uploaded them.
OUTPUT_DIRS: Final = ("analysis-output", "report-output", "dashboard-output", "summary-output")
DASHBOARD_DATA_DIR: Final = "dashboard-output/data"
# PACTA ran its R scripts at this log level.
PACTA_LOG_LEVEL: Final = "DEBUG"
# The runner's variables the command inherits; nothing else (never the token or the storage
# credentials). PACTA's Go runner passed none at all, so it named Rscript by its full path.
PASSED_THROUGH: Final = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR", "DASHBOARD_SKELETON_FILES_DIR")
MAX_COMMAND_CHARS_IN_MESSAGE = 300


@dataclass(frozen=True)
class TaskLayout:
    """PACTA's task directory: four input and four output directories (plus `dashboard-output/data`)."""

    root: Path

    @classmethod
    def create(cls, root: Path) -> TaskLayout:
        layout = cls(root)
        for name in (*INPUT_DIRS, *OUTPUT_DIRS, DASHBOARD_DATA_DIR):
            (root / name).mkdir(mode=0o700, parents=True, exist_ok=True)
        return layout

    def __truediv__(self, name: str) -> Path:
        return self.root / name

    def pacta_env(self, settings: AnalysisSettings) -> dict[str, str]:
        """The variables PACTA's `TaskEnv.asEnvVars` set (note BENCHMARKS_DIR with an S)."""
        return {
            "BENCHMARKS_DIR": settings.benchmarks_dir,
            "PACTA_DATA_DIR": settings.pacta_data_dir,
            "PORTFOLIO_DIR": str(self / "portfolios"),
            "REAL_ESTATE_DIR": str(self / "real-estate"),
            "SCORE_CARD_DIR": str(self / "score-card"),
            "SURVEY_DIR": str(self / "survey"),
            "ANALYSIS_OUTPUT_DIR": str(self / "analysis-output"),
            "REPORT_OUTPUT_DIR": str(self / "report-output"),
            "DASHBOARD_OUTPUT_DIR": str(self / "dashboard-output"),
            "DASHBOARD_DATA_DIR": str(self / DASHBOARD_DATA_DIR),
            "SUMMARY_OUTPUT_DIR": str(self / "summary-output"),
        }


def run_pacta_analysis(task: TaskInput) -> TaskOutcome:
    settings = AnalysisSettings.from_environ(task.environ, task.task_type)
    request = read_request(task.request)
    analysis_id = request.AnalysisID or task.run_id
    if not analysis_id:
        raise RunnerError("invalid_request", "The request has no AnalysisID and the run has no id.")
    layout = TaskLayout.create(task.output_dir)
    files = _move_portfolios(task, layout)
    argument = pacta_argument(request, files)
    logger.info("analysis %s: input JSON %s", analysis_id, argument.rstrip("\n"))
    result = _run(task.task_type, settings, [*settings.command, argument], command_env(layout, settings, task.environ))
    if result.exit_code != 0:
        raise RunnerError("pacta_command_failed", _failure_message(task.task_type, settings, result))
    outputs = list(artifacts(layout, settings.artifacts_container, analysis_id))
    if not outputs:
        raise RunnerError(
            "no_artifacts",
            f"The PACTA command exited 0 but wrote no file into {', '.join(OUTPUT_DIRS)}; "
            "its output is in runner.log.",
        )
    logger.info(
        "%d artifact(s) for az://%s/%s/", len(outputs), settings.artifacts_container, analysis_id
    )
    return TaskOutcome(outputs=outputs)


def read_request(request: dict[str, object]) -> AnalysisRequest:
    try:
        return AnalysisRequest.model_validate(request)
    except ValidationError as error:
        raise RunnerError(
            "invalid_request", f"The request document is invalid: {describe_validation_error(error)}."
        ) from None


def pacta_argument(request: AnalysisRequest, files: list[str]) -> str:
    """The input JSON as PACTA's Go runner wrote it: `json.Encoder` output, compact, newline-terminated."""
    return json.dumps(request.pacta_input(files), ensure_ascii=False, separators=(",", ":")) + "\n"


def command_env(layout: TaskLayout, settings: AnalysisSettings, environ: Mapping[str, str]) -> dict[str, str]:
    """PACTA's variables, LOG_LEVEL and HOME (pandoc needs one), and the few passed through."""
    env = {name: environ[name] for name in PASSED_THROUGH if name in environ}
    env.update(layout.pacta_env(settings))
    env["LOG_LEVEL"] = environ.get("LOG_LEVEL") or PACTA_LOG_LEVEL
    # PACTA set HOME=/root; the runner's own home works for any user, the task directory without one.
    env["HOME"] = environ.get("HOME") or str(layout.root)
    return env


def artifacts(layout: TaskLayout, container: str, analysis_id: str) -> Iterator[OutputFile]:
    """Every file of the output directories, as PACTA's runner walked them (`filepath.WalkDir`)."""
    for out_dir in OUTPUT_DIRS:
        base = layout / out_dir
        for path in _walk(base):
            relative = path.relative_to(base).as_posix()
            kind = file_type(path.name)
            if kind == UNKNOWN:
                logger.warning("%s/%s: no PACTA file type for this extension; uploaded as unknown", out_dir, relative)
            yield OutputFile(
                path,
                f"{analysis_id}/{out_dir}/{relative}",
                content_type(path.name),
                file_type=kind,
                container=container,
            )


def _walk(directory: Path) -> Iterator[Path]:
    """Files under `directory`, depth first in lexical order of names (as Go's WalkDir)."""
    for entry in sorted(os.scandir(directory), key=lambda entry: entry.name):
        path = Path(entry.path)
        if entry.is_dir(follow_symlinks=False):
            yield from _walk(path)
        elif not entry.is_file():
            logger.warning("%s is not a regular file (a link to a directory, a socket, ...); skipped", path)
        elif not _is_utf8(entry.name):
            logger.warning("%r cannot be a blob name (not UTF-8); skipped", entry.name)
        else:
            yield path


def _is_utf8(name: str) -> bool:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _move_portfolios(task: TaskInput, layout: TaskLayout) -> list[str]:
    """Move the downloads into `portfolios/`, in the order of `BlobURIs`; return their names."""
    names = list(task.sources)
    for name in names:
        (task.input_dir / name).replace(layout / "portfolios" / name)
    return names


def _run(task_type: TaskType, settings: AnalysisSettings, command: list[str], env: dict[str, str]) -> CommandResult:
    logger.info("running %s", _shown(settings.command))
    try:
        return run_command(command, env=env)
    except CommandNotStartedError as error:
        raise RunnerError(
            "pacta_command_not_started",
            f"Could not start the PACTA command {_shown(settings.command)}: {error}. "
            f"Check {_command_setting(task_type)} and the image.",
        ) from None


def _failure_message(task_type: TaskType, settings: AnalysisSettings, result: CommandResult) -> str:
    how = f"was ended by {result.killed_by}" if result.killed_by else f"exited with code {result.exit_code}"
    ending = f"Its output ends with:\n{result.tail}\n" if result.tail else "It printed nothing. "
    return (
        f"The PACTA command {_shown(settings.command)} {how}. {ending}"
        f"The whole output is in runner.log; the command is set by {_command_setting(task_type)}."
    )


def _shown(command: list[str]) -> str:
    return shorten(shlex.join(command), MAX_COMMAND_CHARS_IN_MESSAGE)


def _command_setting(task_type: TaskType) -> str:
    """The app setting behind RUNNER_TASK_COMMAND, e.g. CREATE_REPORT_COMMAND."""
    return f"{task_type.value.upper()}_COMMAND"
