"""The project's exception types: each carries a stable `code` and a message that says what to do."""

from __future__ import annotations


class RunnerOrchestratorError(Exception):
    """Base of our errors: `code` for machines, the message for people."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class ConfigurationError(RunnerOrchestratorError):
    """A setting is missing, malformed or contradicts another; raised at start-up."""


class ExecutionNotFoundError(RunnerOrchestratorError):
    """A backend has no execution under the given ref."""

    def __init__(self, ref: str, where: str) -> None:
        super().__init__("execution_not_found", f"No execution {ref} in {where}.")
        self.ref = ref


class BackendError(RunnerOrchestratorError):
    """A backend could not do what was asked; the message names the backend and the next step.

    `permanent`: asking again cannot help (a missing role, job or image) until a person acts, so the run
    fails at once instead of after the activity's retries.
    """

    def __init__(self, code: str, message: str, *, permanent: bool = False) -> None:
        super().__init__(code, message)
        self.permanent = permanent
