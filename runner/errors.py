"""The runner's one exception type: a stable `code` for machines, a message for people."""

from __future__ import annotations

from typing import ClassVar

from orchestrations.contracts import RunError
from runner.text import shorten

EXIT_SUCCEEDED = 0
EXIT_FAILED = 1
# A distinct code for a bad environment: the job was started wrongly, the runner never ran the task.
EXIT_BAD_ENVIRONMENT = 2
# A run error's message must stay far below the queue message's 64 KiB; the full detail is in the
# result document and the log.
MAX_ERROR_MESSAGE_CHARS = 4000


class RunnerError(Exception):
    """A failure the runner reports: a stable snake_case `code`, a message saying what to do."""

    def __init__(self, code: str, message: str, *, exit_code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.exit_code = exit_code

    def to_run_error(self) -> RunError:
        """The error as the result document and completion message carry it: the message cut to
        MAX_ERROR_MESSAGE_CHARS, with a marker saying how much was cut."""
        return RunError(code=self.code, message=shorten(self.message, MAX_ERROR_MESSAGE_CHARS))


# 128 + SIGTERM, as a shell or Docker reports a job ended by SIGTERM.
EXIT_TERMINATED = 143


class TerminatedError(BaseException):
    """The job was asked to stop (SIGTERM: a deadline, `docker stop`, a stopped execution).

    A BaseException, as KeyboardInterrupt is: a stop passes through every `except Exception` (the
    parser's guard that refuses one file for a bug of its own, a task's clean-up) up to the run,
    which reports it as `terminated` and nothing else. `error` is what the run reports.

    `raised` stays set once one was raised: Python only prints an exception raised where it cannot
    propagate (a `__del__`, an at-fork hook), so the run also asks whether a stop came at all."""

    raised: ClassVar[bool] = False

    def __init__(self) -> None:
        super().__init__("terminated")
        TerminatedError.raised = True
        self.error = RunnerError(
            "terminated",
            "The runner was stopped (SIGTERM) before it finished: its deadline passed or the job was stopped.",
            exit_code=EXIT_TERMINATED,
        )


class InvalidEnvironmentError(RunnerError):
    """A variable of the runner's environment is missing, malformed or contradicts another."""

    def __init__(self, message: str) -> None:
        super().__init__("invalid_environment", message, exit_code=EXIT_BAD_ENVIRONMENT)
