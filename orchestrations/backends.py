"""The JobBackend protocol, and how the app picks one.

A backend does four things and nothing else: start, status, stop, logs. Polling, deadlines and
retries belong to the orchestrator; a backend only says how often a look at an ending execution is worth
its cost (`end_looks`). Backends live where their dependencies do: `aca` here, `docker`
and `process` in `local_runner`, which is plugged in by module path so that production code never
imports it (see DESIGN.md, "Job backends").
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from orchestrations.contracts import ExecutionRef, JobSpec, JobStatus
from orchestrations.errors import ConfigurationError
from orchestrations.settings import AppSettings, BackendName

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EndLooks:
    """How often to look at an execution that is about to end (a runner exiting after its message, a replica
    terminating after a stop): `first_pause` seconds after, then each pause `growth` times the last, up to
    `longest_pause`. What suits a backend depends on what its `status` costs and how soon its executions end."""

    first_pause: float
    growth: float
    longest_pause: float

    def pauses(self) -> Iterator[float]:
        pause = self.first_pause
        while True:
            yield pause
            pause = min(pause * self.growth, self.longest_pause)


# A look that is a Resource Manager read or a Docker engine inspect: 20 ms, then half as long again each time,
# up to 2 s apart (8 looks in the first second). A Container Apps replica takes seconds to terminate.
REMOTE_END_LOOKS = EndLooks(first_pause=0.02, growth=1.5, longest_pause=2.0)


@runtime_checkable
class JobBackend(Protocol):
    """Runs the runner image somewhere. Implementations must be safe to call from several threads."""

    name: str
    end_looks: EndLooks

    def start(self, spec: JobSpec) -> ExecutionRef:
        """Start an execution and return its ref as soon as it exists.

        Idempotent per run: if an execution for `spec.run_id` exists already (a retried activity, a
        restarted host), return its ref instead of starting a second one.
        """
        ...

    def status(self, ref: ExecutionRef) -> JobStatus:
        """Where the execution is; raises `ExecutionNotFoundError` if the backend has no such ref."""
        ...

    def stop(self, ref: ExecutionRef) -> JobStatus:
        """Stop the execution (gracefully, then by force); stopping an ended one succeeds."""
        ...

    def logs(self, ref: ExecutionRef) -> str:
        """The execution's output, or a sentence saying where to find it."""
        ...


class BackendFactory(Protocol):
    def __call__(self, settings: AppSettings) -> JobBackend: ...


# Module paths, not imports: `local_runner` is optional at run time and absent from deployments.
BACKEND_FACTORIES: dict[BackendName, str] = {
    BackendName.ACA: "orchestrations.aca_backend:create_backend",
    BackendName.DOCKER: "local_runner.docker_backend:create_backend",
    BackendName.PROCESS: "local_runner.process_backend:create_backend",
}

# A local backend's probe, `(settings) -> str | None`: why it cannot run here, or None when it can.
AVAILABILITY_PROBES: dict[BackendName, str] = {
    BackendName.DOCKER: "local_runner.docker_backend:unavailable_reason",
}


def select_backend_name(settings: AppSettings) -> BackendName:
    """`RUNNER_BACKEND` when set; under the emulator docker when an engine answers, else process; else aca."""
    if settings.runner_backend is not None:
        if settings.runner_backend is not BackendName.ACA and not settings.is_emulator:
            logger.info("RUNNER_BACKEND=%s outside the Functions emulator", settings.runner_backend.value)
        return settings.runner_backend
    if not settings.is_emulator:
        return BackendName.ACA
    reason = _unavailable_reason(BackendName.DOCKER, settings)
    if reason is None:
        return BackendName.DOCKER
    logger.warning("Runs use the process backend, not docker: %s (RUNNER_BACKEND=docker requires it).", reason)
    return BackendName.PROCESS


def create_backend(settings: AppSettings) -> JobBackend:
    """Build the selected backend; fails with a message naming `RUNNER_BACKEND` if it cannot."""
    name = select_backend_name(settings)
    factory = _load(BACKEND_FACTORIES[name], name)
    backend = factory(settings)
    if not isinstance(backend, JobBackend):
        raise ConfigurationError(
            "invalid_backend", f"{BACKEND_FACTORIES[name]} did not return a JobBackend (RUNNER_BACKEND={name})."
        )
    return backend


def _unavailable_reason(name: BackendName, settings: AppSettings) -> str | None:
    try:
        probe = _load(AVAILABILITY_PROBES[name], name)
    except ConfigurationError as exc:
        return exc.message
    reason: str | None = probe(settings)
    return reason


def _load(path: str, name: BackendName) -> Any:
    module_name, _, attribute = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise ConfigurationError(
            "backend_unavailable",
            f"RUNNER_BACKEND={name.value} needs module {module_name}, which is not installed here "
            f"({exc.name} is missing). Local backends come with local_runner; in Azure use RUNNER_BACKEND=aca.",
        ) from None
    try:
        return getattr(module, attribute)
    except AttributeError:
        raise ConfigurationError(
            "backend_unavailable", f"RUNNER_BACKEND={name.value}: {path} does not exist."
        ) from None
