"""The runner's one exception type: a stable `code` for machines, a message for people."""

from __future__ import annotations

from orchestrations.contracts import RunError

EXIT_SUCCEEDED = 0
EXIT_FAILED = 1
# A distinct code for a bad environment: the job was started wrongly, the runner never ran the task.
EXIT_BAD_ENVIRONMENT = 2


class RunnerError(Exception):
    """A failure the runner reports: a stable snake_case `code`, a message saying what to do."""

    def __init__(self, code: str, message: str, *, exit_code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.exit_code = exit_code

    def to_run_error(self) -> RunError:
        return RunError(code=self.code, message=self.message)


# 128 + SIGTERM, as a shell or Docker reports a job ended by SIGTERM.
EXIT_TERMINATED = 143


class TerminatedError(RunnerError):
    """The job was asked to stop (SIGTERM: a deadline, `docker stop`, a stopped execution)."""

    def __init__(self) -> None:
        super().__init__(
            "terminated",
            "The runner was stopped (SIGTERM) before it finished: its deadline passed or the job was stopped.",
            exit_code=EXIT_TERMINATED,
        )


class InvalidEnvironmentError(RunnerError):
    """A variable of the runner's environment is missing, malformed or contradicts another."""

    def __init__(self, message: str) -> None:
        super().__init__("invalid_environment", message, exit_code=EXIT_BAD_ENVIRONMENT)
