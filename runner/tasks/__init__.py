"""The tasks this runner version runs, by PACTA task type; `get_task` refuses the others."""

from __future__ import annotations

from orchestrations.contracts import TaskType
from runner.errors import RunnerError
from runner.tasks.base import Task
from runner.tasks.pacta_analysis import run_pacta_analysis
from runner.tasks.parse_portfolio_task import run_parse_portfolio

_TASKS: dict[TaskType, Task] = {
    TaskType.PARSE_PORTFOLIO: run_parse_portfolio,
    TaskType.CREATE_REPORT: run_pacta_analysis,
    TaskType.CREATE_AUDIT: run_pacta_analysis,
    TaskType.CREATE_DASHBOARD: run_pacta_analysis,
}


def get_task(task_type: TaskType) -> Task:
    """The task function for `task_type`; RunnerError `unsupported_task_type` when there is none."""
    try:
        return _TASKS[task_type]
    except KeyError:
        supported = ", ".join(sorted(_TASKS))
        raise RunnerError(
            "unsupported_task_type",
            f"This runner version does not run {task_type.value} yet; it runs: {supported}.",
        ) from None
