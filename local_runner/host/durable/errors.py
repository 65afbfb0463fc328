"""The durable engine's exceptions: each has a stable `code` and says what to do next."""

from __future__ import annotations

from orchestrations.errors import RunnerOrchestratorError


class DurableHostError(RunnerOrchestratorError):
    """Base of the in-process durable engine's errors."""


class OrchestratorNotFoundError(DurableHostError):
    """`start_new` named an orchestrator the app does not register."""

    def __init__(self, name: str, known: list[str]) -> None:
        listed = ", ".join(sorted(known)) or "none"
        super().__init__(
            "orchestrator_not_found",
            f"No orchestrator function named {name!r} is registered (registered: {listed}). "
            "Check the name passed to start_new against the app's orchestration triggers.",
        )
        self.name = name


class InstanceExistsError(DurableHostError):
    """`start_new` used the id of an instance that is still pending or running."""

    def __init__(self, instance_id: str, status: str) -> None:
        super().__init__(
            "instance_exists",
            f"Orchestration instance {instance_id!r} already exists and is {status}. "
            "Wait for it to finish, terminate it, or start the new one under another instance id.",
        )
        self.instance_id = instance_id
        self.status = status


class InstanceNotFoundError(DurableHostError):
    """No orchestration instance has this id in the task hub."""

    def __init__(self, instance_id: str, task_hub: str) -> None:
        super().__init__(
            "instance_not_found",
            f"No orchestration instance {instance_id!r} in task hub {task_hub!r}.",
        )
        self.instance_id = instance_id


class InstanceGoneError(DurableHostError):
    """The instance has finished (completed, failed or terminated) and takes no more events."""

    def __init__(self, instance_id: str, status: str) -> None:
        super().__init__(
            "instance_gone",
            f"Orchestration instance {instance_id!r} is {status} and accepts no more events or "
            "terminations; start a new instance instead.",
        )
        self.instance_id = instance_id
        self.status = status


class StoreConflictError(DurableHostError):
    """Someone else wrote the instance since it was read (the blob's etag changed)."""

    def __init__(self, instance_id: str) -> None:
        super().__init__(
            "instance_write_conflict",
            f"Orchestration instance {instance_id!r} was changed by another writer since it was "
            "read; re-read it and retry. Two engines must not serve the same task hub at once.",
        )
        self.instance_id = instance_id
