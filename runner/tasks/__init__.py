"""The tasks this runner version runs, by PACTA task type; `get_task` refuses the others.

The task modules are imported by `get_task`, not here: `python -m runner parse-portfolio` imports
the parser (`runner.tasks.parse_portfolio`) without the contracts and pydantic they need.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from orchestrations.contracts import TaskType
    from runner.tasks.base import Task


def get_task(task_type: TaskType) -> Task:
    """The task function for `task_type`; RunnerError `unsupported_task_type` when there is none."""
    from orchestrations.contracts import TaskType
    from runner.errors import RunnerError
    from runner.tasks.pacta_analysis import run_pacta_analysis
    from runner.tasks.parse_portfolio_task import run_parse_portfolio

    tasks: dict[TaskType, Task] = {
        TaskType.PARSE_PORTFOLIO: run_parse_portfolio,
        TaskType.CREATE_REPORT: run_pacta_analysis,
        TaskType.CREATE_AUDIT: run_pacta_analysis,
        TaskType.CREATE_DASHBOARD: run_pacta_analysis,
    }
    try:
        return tasks[task_type]
    except KeyError:
        supported = ", ".join(sorted(tasks))
        raise RunnerError(
            "unsupported_task_type",
            f"This runner version does not run {task_type.value} yet; it runs: {supported}.",
        ) from None
