"""The `aca` job backend: each run is an execution of a pre-created Azure Container Apps job.

Like PACTA's `aztask`, one job (manual trigger) serves every run; `start` reads the job's own template,
puts the run's environment into its container (keeping the job's other variables, secret references
among them), applies the `ACA_*` overrides and calls Jobs - Start. Volume mounts and probes cannot travel
in a start template; the platform gives the execution the job's volumes (see docs/azure-container-apps.md).
Status is Job Execution - Get, stop is Jobs - Stop Execution. Container Apps keeps no logs to hand back,
so `logs` says where they are.

`start` is idempotent per run: before each attempt it looks for an execution whose environment carries
the run id (ARM may have created one whose answer was lost, or the activity may be a retry) and returns it.

Throttling (429) and server errors (5xx) are retried honouring `Retry-After`: by azure-core's retry
policy for reads and stops, and for the start by the backend itself, because azure-core would repeat the
POST blindly and could start a second execution for the run. After an answer that leaves it open whether
ARM created the execution (a 5xx, a broken connection), the backend waits for ARM's list to catch up and
looks again before starting.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from azure.core.credentials import TokenCredential
from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.mgmt.appcontainers import ContainerAppsAPIClient
from azure.mgmt.appcontainers.models import (
    BaseContainer,
    ContainerResources,
    EnvironmentVar,
    Job,
    JobExecution,
    JobExecutionContainer,
    JobExecutionTemplate,
)

from orchestrations.backends import REMOTE_END_LOOKS
from orchestrations.contracts import ExecutionRef, JobSpec, JobState, JobStatus, RunnerEnv
from orchestrations.errors import BackendError, ExecutionNotFoundError
from orchestrations.settings import AcaSettings, AppSettings, load

logger = logging.getLogger(__name__)

BACKEND_NAME = "aca"
# The job definition changes rarely (a new image tag); re-read it now and then rather than per run.
JOB_DEFINITION_TTL_SECONDS = 300.0
# How often the SDK polls a long-running start or stop when ARM sends no Retry-After.
POLLING_INTERVAL_SECONDS = 2.0
# A retried start waits what ARM asks, within reason (the activity itself has a timeout), else this.
MAX_RETRY_AFTER_SECONDS = 60.0
DEFAULT_RETRY_SECONDS = 2.0
# ARM's lists are eventually consistent: after a start that may have been accepted, wait this long at
# least before looking for its execution, so that a created one shows.
LOOKUP_DELAY_SECONDS = 5.0

# Job Execution states (JobExecutionRunningState, compared without case as the SDK does): the ended ones.
# Running, Processing, Unknown and any state ARM adds later count as in progress; the deadline bounds them.
SUCCEEDED_STATE = "succeeded"
FAILED_STATES = frozenset({"failed", "stopped", "degraded"})

# The ARM actions each operation needs, named in a 403 so a person knows which role is missing.
ACTIONS = {
    "read the job": "Microsoft.App/jobs/read",
    "start an execution": "Microsoft.App/jobs/start/action",
    "read executions": "Microsoft.App/jobs/executions/read",
    "stop an execution": "Microsoft.App/jobs/stop/action",
}

Result = TypeVar("Result")


def create_backend(settings: AppSettings) -> AcaJobBackend:
    """The factory `RUNNER_BACKEND=aca` loads: the `ACA_*` settings, a credential and the ARM client."""
    aca = load(AcaSettings)
    if not settings.runner_uses_managed_identity:
        logger.warning(
            "RUNNER_STORAGE_AUTH=connection_string with the aca backend: the connection string travels in the "
            "job's plain environment, readable by anyone who may read the job's executions."
        )
    credential, identity = _credential(aca)
    client = ContainerAppsAPIClient(
        credential,
        aca.subscription_id,
        base_url=aca.arm_endpoint,
        polling_interval=POLLING_INTERVAL_SECONDS,
        retry_total=aca.arm_retries,
        credential_scopes=[f"{aca.arm_audience.rstrip('/')}/.default"],
    )
    return AcaJobBackend(client, aca, identity=identity)


def _credential(aca: AcaSettings) -> tuple[TokenCredential, str]:
    """The Function App's identity for ARM, and how to name it in messages."""
    from azure.identity import DefaultAzureCredential, ManagedIdentityCredential

    if aca.managed_identity_client_id:
        return (
            ManagedIdentityCredential(client_id=aca.managed_identity_client_id),
            f"the managed identity with client id {aca.managed_identity_client_id} (ACA_MANAGED_IDENTITY_CLIENT_ID)",
        )
    return DefaultAzureCredential(), "the Function App's identity (DefaultAzureCredential)"


class AcaJobBackend:
    """Starts, watches and stops executions of one Container Apps job through Azure Resource Manager."""

    name = BACKEND_NAME
    end_looks = REMOTE_END_LOOKS  # each look is a Resource Manager read

    def __init__(
        self,
        client: ContainerAppsAPIClient,
        settings: AcaSettings,
        *,
        identity: str = "the Function App's identity",
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._client = client
        self._settings = settings
        self._identity = identity
        self._clock = clock
        self._sleep = sleep
        self._job_lock = threading.Lock()
        self._job: Job | None = None
        self._job_read_at = 0.0
        self._warned: set[str] = set()

    @property
    def _where(self) -> str:
        aca = self._settings
        return (
            f"Container Apps job {aca.job_name} (resource group {aca.resource_group}, "
            f"subscription {aca.subscription_id})"
        )

    def start(self, spec: JobSpec) -> ExecutionRef:
        existing = self._find_execution(spec.run_id)
        if existing is not None:
            logger.info("Run %s already has execution %s: not starting another", spec.run_id, existing)
            return ExecutionRef(backend=self.name, name=existing)
        job = self._job_definition()
        self._warn_once(definition_problems(job, spec.deadline_seconds))
        template = execution_template(job, spec, self._settings)
        aca = self._settings
        last_attempt = aca.arm_retries
        for attempt in range(last_attempt + 1):
            try:
                started = self._call(
                    "start an execution",
                    # retry_total=0: a repeated POST could start a second execution; retries look first (below).
                    lambda: self._client.jobs.begin_start(
                        aca.resource_group, aca.job_name, template=template, retry_total=0
                    ).result(),
                    transient=attempt < last_attempt,
                )
            except TransientArmError as transient:
                wait = max(transient.wait, LOOKUP_DELAY_SECONDS) if transient.maybe_started else transient.wait
                logger.warning("Starting run %s: %s; retrying in %.1f s", spec.run_id, transient, wait)
                self._sleep(wait)
                existing = self._find_execution(spec.run_id) if transient.maybe_started else None
                if existing is not None:
                    return ExecutionRef(backend=self.name, name=existing)
                continue
            if not started.name:
                raise BackendError("aca_start_failed", f"{self._where} accepted the start but named no execution.")
            return ExecutionRef(backend=self.name, name=started.name)
        raise AssertionError("the last attempt raises BackendError rather than TransientArmError")

    def status(self, ref: ExecutionRef) -> JobStatus:
        return job_status(self._execution(ref), self._runner_container_name())

    def stop(self, ref: ExecutionRef) -> JobStatus:
        current = self.status(ref)
        if current.has_ended:
            return current
        aca = self._settings
        self._call(
            "stop an execution",
            lambda: self._client.jobs.begin_stop_execution(aca.resource_group, aca.job_name, ref.name).result(),
        )
        stopped = self.status(ref)
        if stopped.has_ended:
            return stopped
        # ARM accepted the stop; the replica is still terminating. The run is over either way.
        return JobStatus(state=JobState.FAILED, detail="Stopped: the stop was accepted; the replica is terminating")

    def logs(self, ref: ExecutionRef) -> str:
        try:
            prefix = env_of(self._execution(ref)).get(RunnerEnv.OUTPUT_PREFIX.value)
        except (ExecutionNotFoundError, BackendError):
            prefix = None
        runner_log = f"{prefix}runner.log" if prefix else "the blob `runner.log` beside the run's outputs"
        return (
            f"Container Apps keeps no output to fetch for execution {ref.name}: the runner's own log is "
            f"{runner_log}, and the console output is in the Log Analytics workspace of the job's environment, "
            f"table ContainerAppConsoleLogs (diagnostic settings, as infra/ deploys it; ContainerAppConsoleLogs_CL "
            f"with the legacy log-analytics destination), where ContainerGroupName starts with '{ref.name}'."
        )

    # --- ARM calls ---

    def _job_definition(self) -> Job:
        with self._job_lock:
            now = self._clock()
            if self._job is None or now - self._job_read_at > JOB_DEFINITION_TTL_SECONDS:
                aca = self._settings
                self._job = self._call("read the job", lambda: self._client.jobs.get(aca.resource_group, aca.job_name))
                self._job_read_at = now
            return self._job

    def _warn_once(self, problems: Iterable[str]) -> None:
        for problem in problems:
            if problem not in self._warned:
                self._warned.add(problem)
                logger.warning("%s: %s", self._where, problem)

    def _runner_container_name(self) -> str | None:
        """The container whose exit code is the run's: ACA_CONTAINER_NAME, else the job's first."""
        if self._settings.container_name:
            return self._settings.container_name
        job = self._job_definition()
        containers = job.properties.template.containers if job.properties and job.properties.template else None
        return containers[0].name if containers else None

    def _execution(self, ref: ExecutionRef) -> JobExecution:
        aca = self._settings
        try:
            return self._call(
                "read executions",
                lambda: self._client.job_execution(aca.resource_group, aca.job_name, ref.name),
                not_found=ResourceNotFoundError,
            )
        except ResourceNotFoundError:
            raise ExecutionNotFoundError(str(ref), where=self._where) from None

    def _find_execution(self, run_id: str) -> str | None:
        """The execution already started for this run, found by the run id in its environment."""
        aca = self._settings
        executions: Iterable[JobExecution] = self._call(
            "read executions", lambda: list(self._client.jobs_executions.list(aca.resource_group, aca.job_name))
        )
        for execution in executions:
            if run_id_of(execution) == run_id:
                return execution.name
        return None

    def _call(
        self, what: str, call: Callable[[], Result], *, not_found: type[Exception] | None = None,
        transient: bool = False,
    ) -> Result:
        """Run one ARM call, turning its failures into errors that say what to do.

        With `transient`, a 429 or 5xx raises `TransientArmError` for the caller to retry.
        """
        try:
            return call()
        except ClientAuthenticationError as exc:
            if exc.status_code == 403:
                raise self._forbidden(what, exc) from None
            if exc.status_code == 401:
                raise BackendError(
                    "aca_unauthenticated",
                    f"Resource Manager refused the token of {self._identity} to {what}: {_arm_error(exc)}. The "
                    f"token is for {self._settings.arm_audience} (ACA_ARM_AUDIENCE); check that it is "
                    "Resource Manager's audience for ACA_ARM_ENDPOINT and that the identity is in the "
                    "subscription's tenant.",
                    permanent=True,
                ) from None
            raise BackendError(
                "aca_credential_unavailable",
                f"Could not get a token for Azure Resource Manager as {self._identity} to {what}: "
                f"{_first_line(exc.message)}",
            ) from None
        except ResourceNotFoundError:
            if not_found is not None:
                raise
            raise BackendError(
                "aca_job_not_found",
                f"No {self._where}: Resource Manager answered 404 to {what}. Check ACA_SUBSCRIPTION_ID, "
                "ACA_RESOURCE_GROUP and ACA_JOB_NAME.",
                permanent=True,
            ) from None
        except HttpResponseError as exc:
            status = exc.status_code or 0
            if status == 403:
                raise self._forbidden(what, exc) from None
            throttled, failed = status == 429, status >= 500
            if transient and (throttled or failed):
                raise TransientArmError(_arm_error(exc), _retry_after(exc), maybe_started=failed) from None
            raise BackendError(
                "aca_request_failed",
                f"Resource Manager could not {what} for {self._where}; its last answer: {_arm_error(exc)}",
            ) from None
        except ServiceRequestError as exc:  # nothing was sent
            raise BackendError(
                "aca_unreachable",
                f"Resource Manager at {self._settings.arm_endpoint} could not be reached to {what}: {exc.message}",
            ) from None
        except ServiceResponseError as exc:  # sent, but the answer was lost: the start may have happened
            if transient:
                raise TransientArmError(exc.message, DEFAULT_RETRY_SECONDS, maybe_started=True) from None
            raise BackendError(
                "aca_unreachable",
                f"Resource Manager at {self._settings.arm_endpoint} did not answer the request to {what}: "
                f"{exc.message}",
            ) from None
        except AzureError as exc:  # e.g. a long-running operation's answer that cannot be read
            raise BackendError(
                "aca_request_failed", f"Resource Manager could not {what} for {self._where}: {exc.message}"
            ) from None

    def _forbidden(self, what: str, exc: HttpResponseError) -> BackendError:
        return BackendError(
            "aca_forbidden",
            f"{self._identity[0].upper()}{self._identity[1:]} may not {what} on {self._where}: it needs "
            f"`{ACTIONS[what]}` (the built-in role Container Apps Jobs Operator has the start, stop and read "
            f"actions). Resource Manager said: {_arm_error(exc)}",
            permanent=True,
        )


class TransientArmError(Exception):
    """ARM answered 429 or 5xx, or its answer was lost: worth another try after `wait` seconds.

    `maybe_started`: the request may have taken effect (anything but a 429, which ARM refuses before acting).
    """

    def __init__(self, message: str, wait: float, *, maybe_started: bool) -> None:
        super().__init__(message)
        self.wait = wait
        self.maybe_started = maybe_started


def definition_problems(job: Job, deadline_seconds: int) -> list[str]:
    """What in the job's definition works against the orchestration (docs/azure-container-apps.md).

    None of these stops a start: Container Apps starts any job on request. They change what a run means.
    """
    configuration = job.properties.configuration if job.properties else None
    if configuration is None:
        return []
    problems = []
    trigger = str(getattr(configuration.trigger_type, "value", configuration.trigger_type))
    if trigger != "Manual":
        problems.append(f"its trigger type is {trigger}, not Manual: it also runs executions nobody asked for")
    if configuration.replica_retry_limit:
        problems.append(
            f"its replica retry limit is {configuration.replica_retry_limit}, not 0: Container Apps would run a "
            "failed task again behind the orchestration's back, with the same callback token"
        )
    if configuration.replica_timeout is not None and configuration.replica_timeout <= deadline_seconds:
        problems.append(
            f"its replica timeout ({configuration.replica_timeout} s) is not above the run deadline "
            f"({deadline_seconds} s, RUN_DEADLINE_SECONDS): a long run is killed as Failed instead of timed_out"
        )
    return problems


def execution_template(job: Job, spec: JobSpec, settings: AcaSettings) -> JobExecutionTemplate:
    """The start template: the job's containers as defined, the runner's with the run's env and the overrides.

    The template replaces the job's container list for this execution, so every container goes in; env
    entries of the job that the run does not set (secret references among them) are kept.
    """
    template = job.properties.template if job.properties else None
    containers = list(template.containers or []) if template else []
    if not containers:
        raise BackendError(
            "aca_job_invalid", f"The Container Apps job {settings.job_name} defines no container.", permanent=True
        )
    runner_name = settings.container_name or containers[0].name
    if runner_name not in {container.name for container in containers}:
        names = ", ".join(str(container.name) for container in containers)
        raise BackendError(
            "aca_job_invalid",
            f"ACA_CONTAINER_NAME={runner_name}: the job {settings.job_name} has no such container (it has {names}).",
            permanent=True,
        )
    return JobExecutionTemplate(
        containers=[
            _runner_container(container, spec, settings) if container.name == runner_name else _as_is(container)
            for container in containers
        ],
        init_containers=[_as_is(container) for container in (template.init_containers or [])] if template else None,
    )


def _runner_container(container: BaseContainer, spec: JobSpec, settings: AcaSettings) -> JobExecutionContainer:
    kept = [variable for variable in container.env or [] if variable.name not in spec.env]
    resources = container.resources
    return JobExecutionContainer(
        name=container.name,
        image=settings.image or container.image,
        command=settings.command if settings.command is not None else container.command,
        args=settings.args if settings.args is not None else container.args,
        env=kept + [EnvironmentVar(name=name, value=value) for name, value in spec.env.items()],
        resources=ContainerResources(
            cpu=settings.cpu or (resources.cpu if resources else None),
            memory=settings.memory or (resources.memory if resources else None),
        ),
    )


def _as_is(container: BaseContainer) -> JobExecutionContainer:
    resources = container.resources
    return JobExecutionContainer(
        name=container.name,
        image=container.image,
        command=container.command,
        args=container.args,
        env=list(container.env or []),
        resources=ContainerResources(cpu=resources.cpu, memory=resources.memory) if resources else None,
    )


def run_id_of(execution: JobExecution) -> str | None:
    """The run id an execution was started for, from its template's environment."""
    return env_of(execution).get(RunnerEnv.RUN_ID.value)


def env_of(execution: JobExecution) -> dict[str, str]:
    """The plain environment an execution was started with (secret references left out)."""
    properties = execution.properties
    template = properties.template if properties else None
    return {
        variable.name: variable.value
        for container in ((template.containers or []) if template else [])
        for variable in container.env or []
        if variable.name and variable.value is not None
    }


def job_status(execution: JobExecution, container_name: str | None) -> JobStatus:
    """Job Execution - Get, in the protocol's terms: running, succeeded, or failed with ARM's detail."""
    properties = execution.properties
    status = properties.status if properties else None
    # The SDK gives a JobExecutionRunningState, or the plain string for a state it does not know.
    state = str(getattr(status, "value", status) or "Unknown")
    if state.casefold() not in FAILED_STATES | {SUCCEEDED_STATE}:
        return JobStatus(state=JobState.RUNNING, detail=state)
    exit_code, container_detail = _container_outcome(execution, container_name)
    detail = "; ".join(
        part for part in (state, properties.reason if properties else None,
                          properties.message if properties else None, container_detail) if part
    )
    if state.casefold() == SUCCEEDED_STATE:
        return JobStatus(state=JobState.SUCCEEDED, exit_code=exit_code if exit_code is not None else 0, detail=detail)
    return JobStatus(state=JobState.FAILED, exit_code=exit_code, detail=detail)


def _container_outcome(execution: JobExecution, container_name: str | None) -> tuple[int | None, str | None]:
    """The runner container's exit code and status from the execution's detailed status, when ARM gives it."""
    properties = execution.properties
    detailed = properties.detailed_status if properties else None
    for replica in (detailed.replicas or []) if detailed else []:
        for container in replica.containers or []:
            if container_name is None or container.name == container_name:
                detail = " ".join(part for part in (container.status, container.additional_information) if part)
                return container.code, detail or None
    return None, None


def _arm_error(exc: HttpResponseError) -> str:
    error: Any = exc.error
    code = getattr(error, "code", None)
    message = getattr(error, "message", None) or _first_line(exc.message)
    return f"{exc.status_code} {code}: {message}" if code else f"{exc.status_code}: {message}"


def _retry_after(exc: HttpResponseError) -> float:
    """ARM's `Retry-After` in seconds (capped), or a short default when it sends none."""
    headers = getattr(exc.response, "headers", None) or {}
    header = headers.get("Retry-After")
    try:
        return min(max(float(header), 0.0), MAX_RETRY_AFTER_SECONDS) if header else DEFAULT_RETRY_SECONDS
    except ValueError:  # an HTTP date: rare from ARM; wait the default
        return DEFAULT_RETRY_SECONDS


def _first_line(text: str | None) -> str:
    return (text or "").strip().splitlines()[0] if (text or "").strip() else "no reason given"
