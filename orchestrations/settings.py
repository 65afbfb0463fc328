"""The Functions app's settings: read from the environment once, at start-up, and validated.

Every field names the app setting behind it (`validation_alias`), and a bad or missing value fails
with a message that names that setting. The orchestrator never reads these: what a run needs travels
in its `RunRequest`.
"""

from __future__ import annotations

import functools
import os
import re
from enum import StrEnum
from typing import Self, TypeVar

from azure.storage.blob import BlobServiceClient
from azure.storage.queue import QueueServiceClient
from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict, SettingsError

from orchestrations.contracts import (
    MAX_DEADLINE_SECONDS,
    MAX_TIMER_SECONDS,
    PACTA_ARTIFACT_CONTAINERS,
    PACTA_BENCHMARKS_DIR,
    PACTA_DATA_DIR,
    PACTA_TASK_COMMANDS,
    RetryPolicy,
    RunPolicy,
    TaskType,
)
from orchestrations.errors import ConfigurationError
from orchestrations.log_context import LogFormat
from orchestrations.run_slots import MAX_CAP

# MAX_CONCURRENT_RUNS unset: as many on Container Apps, where each job has its own replica...
DEFAULT_CONCURRENT_RUNS = 10
# ...and on a local backend, where every job shares this machine, its cores, at most as many. More only slows
# each: ten parse jobs at once on two cores took 20-25% more CPU each than two at once did (context switches,
# caches); with the host's own work beside them a burst of 200 finished 9% later at ten than at four, and 5-10%
# later at four than at two (docs/concurrency.md).


def _usable_cores() -> int:
    """The cores this process may run on (its affinity, on Linux), else the machine's (macOS and Windows, where a
    developer runs `func start`, have no sched_getaffinity)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


_CONTAINER_NAME = r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$"
# Containers of the Functions host itself (receipts, keys): no request may read them, whatever INPUT_SCOPES says.
_HOST_CONTAINER_PREFIX = "azure-webjobs-"
_CLIENT_ID = r"^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$"
_MEMORY = r"^\d+(\.\d+)?(Mi|Gi)$"
# Settings whose values an error message must never repeat.
_SECRET_SETTINGS = {"CALLBACK_TOKEN_KEY", "AzureWebJobsStorage", "RUNNER_STORAGE_CONNECTION"}
MIN_CALLBACK_TOKEN_KEY_CHARS = 32
# What to do about a missing setting that has no default.
# An example for each list setting, shown when its value is not JSON.
_JSON_EXAMPLES = {"INPUT_SCOPES": '["az://uploads/", "az://parsed/portfolios/"]'}
_MISSING_HINTS = {
    "CALLBACK_TOKEN_KEY": "locally, `python -m local_runner callback-key` prints one (kept in .local/); in Azure, "
    "reference a Key Vault secret",
}


class BackendName(StrEnum):
    ACA = "aca"
    DOCKER = "docker"
    PROCESS = "process"


class RunnerStorageAuth(StrEnum):
    """How the runner reaches Storage: Azurite's connection string locally, its managed identity in Azure."""

    CONNECTION_STRING = "connection_string"
    MANAGED_IDENTITY = "managed_identity"


class UploadTriggerSource(StrEnum):
    """How the blob trigger learns of uploads: container scans locally, Event Grid in Azure."""

    POLLING = "LogsAndContainerScan"
    EVENT_GRID = "EventGrid"


class AppSettings(BaseSettings):
    """Settings of the Functions app (and the in-process host that runs it locally)."""

    # No populate_by_name: only the documented setting names are read from the environment.
    model_config = SettingsConfigDict(frozen=True, extra="ignore")

    storage_connection: str | None = Field(
        default=None,
        validation_alias="AzureWebJobsStorage",
        description="Storage for uploads, run records, the events queue and the task hub, as a connection "
        "string (Azurite, locally); in Azure rather the identity-based AzureWebJobsStorage__* settings.",
    )
    # The Functions host's identity-based connection (`AzureWebJobsStorage__*`): the same names, read here too.
    storage_account_name: str | None = Field(
        default=None,
        pattern=r"^[a-z0-9]{3,24}$",
        validation_alias="AzureWebJobsStorage__accountName",
        description="Identity-based storage: the account, whose blob, queue and table URIs follow from it.",
    )
    storage_blob_uri: str | None = Field(
        default=None, pattern=r"^https?://", validation_alias="AzureWebJobsStorage__blobServiceUri",
        description="Identity-based storage: the blob endpoint (instead of the account name).",
    )
    storage_queue_uri: str | None = Field(
        default=None, pattern=r"^https?://", validation_alias="AzureWebJobsStorage__queueServiceUri",
        description="Identity-based storage: the queue endpoint.",
    )
    storage_table_uri: str | None = Field(
        default=None, pattern=r"^https?://", validation_alias="AzureWebJobsStorage__tableServiceUri",
        description="Identity-based storage: the table endpoint.",
    )
    storage_client_id: str | None = Field(
        default=None, pattern=_CLIENT_ID, validation_alias="AzureWebJobsStorage__clientId",
        description="Identity-based storage: client id of the app's user-assigned identity; unset: "
        "DefaultAzureCredential (the system-assigned identity).",
    )
    callback_token_key: SecretStr = Field(
        validation_alias="CALLBACK_TOKEN_KEY",
        description="The app's secret from which each run's callback token is derived (HMAC-SHA256 of the run id "
        f"and attempt); at least {MIN_CALLBACK_TOKEN_KEY_CHARS} random characters. In Azure a Key Vault reference; "
        "locally `python -m local_runner callback-key` makes one under .local/. Changing it makes the runs under "
        "way unable to report: they end `runner_ended_without_report`.",
    )
    functions_environment: str | None = Field(
        default=None,
        validation_alias="AZURE_FUNCTIONS_ENVIRONMENT",
        description="`Development` under the Functions emulator; selects a local job backend.",
    )
    runner_backend: BackendName | None = Field(
        default=None,
        validation_alias="RUNNER_BACKEND",
        description="aca, docker or process; unset: docker or process under the emulator, else aca.",
    )
    uploads_container: str = Field(
        default="uploads",
        validation_alias="UPLOADS_CONTAINER",
        pattern=r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$",
        description="Container whose uploads start runs: `<task_type>/<file>`.",
    )
    input_scopes: list[str] = Field(
        default_factory=list,
        validation_alias="INPUT_SCOPES",
        description="What a request may read, a JSON list of `az://<container>/` (a whole container) and "
        "`az://<container>/<prefix>/` (a folder); unset: the uploads container. Every entry of a request's BlobURIs "
        "must lie inside one (checked at the upload and again by the runner), and a portfolio upload is itself the "
        "input of its run, so the uploads container's parse_portfolio/ folder must be covered.",
    )
    upload_trigger_source: UploadTriggerSource | None = Field(
        default=None,
        validation_alias="UPLOAD_TRIGGER_SOURCE",
        description="LogsAndContainerScan (polling) or EventGrid; unset: polling under the emulator, EventGrid "
        "outside it (Flex Consumption supports only the Event Grid source). Read through `upload_source`.",
    )
    log_format: LogFormat | None = Field(
        default=None,
        validation_alias="LOG_FORMAT",
        description="json (one JSON object per line: ts, level, logger, msg, run_id, execution_ref) or text; "
        "unset: text under the emulator, json outside it. The runner's console follows it (RUNNER_LOG_FORMAT); "
        "its runner.log stays text. Read through `log_output`.",
    )
    upload_max_bytes: int = Field(
        default=50 * 1024 * 1024,
        gt=0,
        validation_alias="UPLOAD_MAX_BYTES",
        description="Largest upload accepted; larger ones are rejected with a run record.",
    )
    runs_container: str = Field(
        default="runs",
        validation_alias="RUNS_CONTAINER",
        description="Container for each run's outputs, log and result document: `<run_id>/...`.",
    )
    runs_table: str = Field(
        default="runs",
        validation_alias="RUNS_TABLE",
        pattern=r"^[A-Za-z][A-Za-z0-9]{2,62}$",
        description="Table of run records.",
    )
    runner_events_queue: str = Field(
        default="runner-events",
        validation_alias="RUNNER_EVENTS_QUEUE",
        description="Queue the runner sends its completion message to.",
    )
    runner_image: str = Field(
        default="pacta-runner:local",
        validation_alias="RUNNER_IMAGE",
        description="Image of the runner (docker backend; aca runs the job's image, or ACA_IMAGE).",
    )
    runner_command: list[str] = Field(
        default_factory=list,
        validation_alias="RUNNER_COMMAND",
        description='Command that starts the runner, as a JSON list (e.g. ["python", "-m", "runner"]); '
        "empty: the image's entrypoint (process backend: `python -m runner`).",
    )
    runner_cpu: float = Field(
        default=1.0, gt=0, validation_alias="RUNNER_CPU",
        description="CPUs of a run (docker backend; aca uses the job's, or ACA_CPU).",
    )
    runner_memory: str = Field(
        default="2Gi", pattern=_MEMORY, validation_alias="RUNNER_MEMORY",
        description="Memory of a run, e.g. 2Gi (docker backend; aca uses the job's, or ACA_MEMORY).",
    )
    runner_storage_connection: str | None = Field(
        default=None,
        validation_alias="RUNNER_STORAGE_CONNECTION",
        description="Connection string the runner uses locally; defaults to AzureWebJobsStorage.",
    )
    runner_storage_auth: RunnerStorageAuth | None = Field(
        default=None,
        validation_alias="RUNNER_STORAGE_AUTH",
        description="connection_string or managed_identity; unset: managed_identity with the aca backend, "
        "else connection_string.",
    )
    runner_blob_account_url: str | None = Field(
        default=None,
        pattern=r"^https?://",
        validation_alias="RUNNER_BLOB_ACCOUNT_URL",
        description="managed_identity: the blob endpoint the runner uses; unset: AzureWebJobsStorage's.",
    )
    runner_queue_account_url: str | None = Field(
        default=None,
        pattern=r"^https?://",
        validation_alias="RUNNER_QUEUE_ACCOUNT_URL",
        description="managed_identity: the queue endpoint the runner uses; unset: AzureWebJobsStorage's.",
    )
    runner_client_id: str | None = Field(
        default=None,
        pattern=_CLIENT_ID,
        validation_alias="RUNNER_CLIENT_ID",
        description="managed_identity: client id of the runner's user-assigned identity (its AZURE_CLIENT_ID); "
        "unset: the job's system-assigned identity.",
    )
    run_deadline_seconds: int = Field(
        default=3600, gt=0, le=MAX_DEADLINE_SECONDS, validation_alias="RUN_DEADLINE_SECONDS"
    )
    # Each is a durable timer's length: below 6 days, as the Azure Storage provider requires.
    status_check_interval_seconds: int = Field(
        default=60, gt=0, le=MAX_TIMER_SECONDS, validation_alias="STATUS_CHECK_INTERVAL_SECONDS"
    )
    completion_grace_seconds: int = Field(
        default=30, ge=0, le=MAX_TIMER_SECONDS, validation_alias="COMPLETION_GRACE_SECONDS"
    )
    status_checks_per_generation: int = Field(
        default=4, ge=1, validation_alias="STATUS_CHECKS_PER_GENERATION",
        description="Status checks before the orchestration continues as new (one fewer in the generation that "
        "starts the job): 8 history events each, so the default keeps every generation at or under 60 events "
        "whatever the job's duration (bench/history.py: 53 at most, a generation after a continue-as-new holding "
        "one more event than the first, as DTFx starts it).",
    )
    max_concurrent_runs: int = Field(
        default=DEFAULT_CONCURRENT_RUNS, ge=1, le=MAX_CAP, validation_alias="MAX_CONCURRENT_RUNS",
        description="Jobs that may run at once, across all hosts; the other runs wait `queued`, in upload order. "
        "Read at every start: lowering it holds new starts until fewer run, raising it starts waiting runs. "
        "Unset: 10 on Container Apps; on a local backend as many as this machine's cores, at most 10.",
    )
    slot_poll_seconds: int = Field(
        default=60, gt=0, le=MAX_TIMER_SECONDS, validation_alias="SLOT_POLL_SECONDS",
        description="How often a queued run looks for a slot itself; it is told at once when a slot frees, "
        "so this only bounds the wait after a lost notice or a raised cap.",
    )
    activity_max_attempts: int = Field(default=4, ge=1, le=20, validation_alias="ACTIVITY_MAX_ATTEMPTS")
    activity_first_retry_seconds: float = Field(
        default=2.0, gt=0, le=MAX_TIMER_SECONDS, validation_alias="ACTIVITY_FIRST_RETRY_SECONDS"
    )
    process_work_dir: str = Field(
        default=".local/process-runs",
        validation_alias="PROCESS_BACKEND_WORK_DIR",
        description="process backend: where each run's working directory, log and exit code live.",
    )
    docker_network: str = Field(
        default="host",
        min_length=1,
        validation_alias="DOCKER_NETWORK",
        description="docker backend: the network containers join; `host` (the default) lets them reach "
        "Azurite on 127.0.0.1. Any other value is a Docker network name.",
    )
    docker_data_dir: str | None = Field(
        default=None,
        validation_alias="DOCKER_DATA_DIR",
        description="docker backend: a local directory bound read-only into every container at "
        "DOCKER_DATA_MOUNT, as PACTA mounts its benchmark and PACTA data; relative to the project root "
        "unless absolute. Unset: no bind.",
    )
    docker_data_mount: str = Field(
        default="/mnt/workflow-data",
        pattern=r"^/",
        validation_alias="DOCKER_DATA_MOUNT",
        description="docker backend: where DOCKER_DATA_DIR appears inside the container (an absolute path).",
    )
    docker_keep_finished: int = Field(
        default=20,
        ge=0,
        validation_alias="DOCKER_KEEP_FINISHED",
        description="docker backend: how many finished containers of this project are kept for debugging "
        "(`docker logs`); older ones are removed in the background after a start, and all of this checkout's by "
        "`python -m local_runner prune` (`make down`).",
    )

    create_report_command: list[str] = Field(
        default_factory=lambda: list(PACTA_TASK_COMMANDS[TaskType.CREATE_REPORT]),
        validation_alias="CREATE_REPORT_COMMAND",
        description="create_report: the command the runner runs in the job, a JSON list; the input JSON "
        "is appended as its last argument. Default: PACTA's `Rscript --vanilla .../run_pacta.R`.",
    )
    create_audit_command: list[str] = Field(
        default_factory=lambda: list(PACTA_TASK_COMMANDS[TaskType.CREATE_AUDIT]),
        validation_alias="CREATE_AUDIT_COMMAND",
        description="create_audit: the command, a JSON list. Default: PACTA's `.../run_audit.sh`.",
    )
    create_dashboard_command: list[str] = Field(
        default_factory=lambda: list(PACTA_TASK_COMMANDS[TaskType.CREATE_DASHBOARD]),
        validation_alias="CREATE_DASHBOARD_COMMAND",
        description="create_dashboard: the command, a JSON list. Default: PACTA's "
        "`Rscript --vanilla .../prepare_dashboard_data.R`.",
    )
    reports_container: str = Field(
        default=PACTA_ARTIFACT_CONTAINERS[TaskType.CREATE_REPORT],
        validation_alias="REPORTS_CONTAINER",
        pattern=_CONTAINER_NAME,
        description="create_report: container of the artifacts, `<analysis id>/<output dir>/<path>`.",
    )
    audits_container: str = Field(
        default=PACTA_ARTIFACT_CONTAINERS[TaskType.CREATE_AUDIT],
        validation_alias="AUDITS_CONTAINER",
        pattern=_CONTAINER_NAME,
        description="create_audit: container of the artifacts.",
    )
    dashboards_container: str = Field(
        default=PACTA_ARTIFACT_CONTAINERS[TaskType.CREATE_DASHBOARD],
        validation_alias="DASHBOARDS_CONTAINER",
        pattern=_CONTAINER_NAME,
        description="create_dashboard: container of the artifacts.",
    )
    benchmarks_dir: str = Field(
        default=PACTA_BENCHMARKS_DIR,
        validation_alias="BENCHMARKS_DIR",
        pattern=r"^/",
        description="create_*: BENCHMARKS_DIR of the PACTA command, an absolute path inside the job "
        "(PACTA's benchmark data mount).",
    )
    pacta_data_dir: str = Field(
        default=PACTA_DATA_DIR,
        validation_alias="PACTA_DATA_DIR",
        pattern=r"^/",
        description="create_*: PACTA_DATA_DIR of the PACTA command, an absolute path inside the job.",
    )

    @field_validator("callback_token_key")
    @classmethod
    def _key_is_long_enough(cls, key: SecretStr) -> SecretStr:
        if len(key.get_secret_value().strip()) < MIN_CALLBACK_TOKEN_KEY_CHARS:
            raise ValueError(
                f"must be at least {MIN_CALLBACK_TOKEN_KEY_CHARS} random characters, e.g. the output of "
                "`python -c 'import secrets; print(secrets.token_urlsafe(48))'`"
            )
        return key

    @field_validator("create_report_command", "create_audit_command", "create_dashboard_command")
    @classmethod
    def _command_is_not_empty(cls, command: list[str]) -> list[str]:
        if not command or not all(part for part in command):
            raise ValueError('must be a JSON list of non-empty strings, e.g. ["Rscript", "--vanilla", "run.R"]')
        return command

    @field_validator("input_scopes")
    @classmethod
    def _scopes_are_containers_or_folders(cls, scopes: list[str]) -> list[str]:
        for scope in scopes:
            problem = _input_scope_problem(scope)
            if problem:
                raise ValueError(
                    f"{scope!r} {problem}; write az://<container>/ for a whole container or az://<container>/<folder>/"
                )
        return scopes

    @field_validator(
        "runner_backend", "functions_environment", "docker_data_dir", "runner_storage_auth", "storage_connection",
        "upload_trigger_source", "log_format",
        "storage_account_name", "storage_blob_uri", "storage_queue_uri", "storage_table_uri", "storage_client_id",
        "runner_blob_account_url", "runner_queue_account_url", "runner_client_id", mode="before",
    )
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @property
    def is_emulator(self) -> bool:
        return (self.functions_environment or "").lower() == "development"

    @property
    def runner_connection(self) -> str:
        """The runner's connection string on the connection_string path (validated at start-up)."""
        connection = self.runner_storage_connection or self.storage_connection
        assert connection is not None
        return connection

    @property
    def upload_source(self) -> UploadTriggerSource:
        """How the blob trigger learns of uploads: the setting, else polling under the emulator and Event Grid
        outside it."""
        if self.upload_trigger_source is not None:
            return self.upload_trigger_source
        return UploadTriggerSource.POLLING if self.is_emulator else UploadTriggerSource.EVENT_GRID

    @property
    def log_output(self) -> LogFormat:
        """How log lines look: the setting, else text under the emulator and JSON lines outside it."""
        if self.log_format is not None:
            return self.log_format
        return LogFormat.TEXT if self.is_emulator else LogFormat.JSON

    @property
    def runs_on_aca(self) -> bool:
        """Whether runs start on Container Apps (the backend `select_backend_name` picks, without probing)."""
        if self.runner_backend is not None:
            return self.runner_backend is BackendName.ACA
        return not self.is_emulator

    @property
    def runner_uses_managed_identity(self) -> bool:
        if self.runner_storage_auth is not None:
            return self.runner_storage_auth is RunnerStorageAuth.MANAGED_IDENTITY
        return self.runs_on_aca

    @model_validator(mode="after")
    def _storage_is_reachable(self) -> Self:
        """Either a connection string or identity-based endpoints, and the runner's way in filled from them."""
        # The model is frozen: derived values are filled in place, once, before anyone reads it.
        fill = functools.partial(object.__setattr__, self)
        if self.storage_connection is None:
            name = self.storage_account_name
            for field, service in (("storage_blob_uri", "blob"), ("storage_queue_uri", "queue"),
                                   ("storage_table_uri", "table")):
                if getattr(self, field) is None and name:
                    fill(field, f"https://{name}.{service}.core.windows.net/")
            if not (self.storage_blob_uri and self.storage_queue_uri and self.storage_table_uri):
                raise ValueError(
                    "AzureWebJobsStorage: storage is not configured; set a connection string (Azurite, locally) or "
                    "the identity-based AzureWebJobsStorage__accountName (or all three of AzureWebJobsStorage__"
                    "blobServiceUri, __queueServiceUri and __tableServiceUri)"
                )
        if not self.runner_uses_managed_identity:
            if self.runner_storage_connection is None and self.storage_connection is None:
                raise ValueError(
                    "RUNNER_STORAGE_CONNECTION: the runner needs a connection string (RUNNER_STORAGE_AUTH="
                    "connection_string) and AzureWebJobsStorage is identity-based; set RUNNER_STORAGE_CONNECTION, "
                    "or RUNNER_STORAGE_AUTH=managed_identity"
                )
            return self
        if self.storage_connection is None:
            fill("runner_blob_account_url", self.runner_blob_account_url or self.storage_blob_uri)
            fill("runner_queue_account_url", self.runner_queue_account_url or self.storage_queue_uri)
        elif not (self.runner_blob_account_url and self.runner_queue_account_url):
            try:
                blob_url = BlobServiceClient.from_connection_string(self.storage_connection).url
                queue_url = QueueServiceClient.from_connection_string(self.storage_connection).url
            except ValueError:
                raise ValueError(
                    "RUNNER_BLOB_ACCOUNT_URL and RUNNER_QUEUE_ACCOUNT_URL: not set, and AzureWebJobsStorage is not "
                    "a connection string to take them from; set both (https://<account>.blob.core.windows.net/ "
                    "and https://<account>.queue.core.windows.net/)"
                ) from None
            fill("runner_blob_account_url", self.runner_blob_account_url or blob_url)
            fill("runner_queue_account_url", self.runner_queue_account_url or queue_url)
        plain = [url for url in (self.runner_blob_account_url, self.runner_queue_account_url)
                 if url and not url.startswith("https://")]
        if plain:
            raise ValueError(
                f"RUNNER_BLOB_ACCOUNT_URL, RUNNER_QUEUE_ACCOUNT_URL: {plain[0]} is not https, and a managed identity's "
                "token is never sent over plain HTTP; use the account's https endpoints (an Azurite with --cert), "
                "or RUNNER_STORAGE_AUTH=connection_string"
            )
        return self

    @model_validator(mode="after")
    def _local_jobs_fit_the_machine(self) -> Self:
        if "max_concurrent_runs" not in self.model_fields_set and not self.runs_on_aca:
            object.__setattr__(self, "max_concurrent_runs", min(DEFAULT_CONCURRENT_RUNS, _usable_cores()))
        return self

    @model_validator(mode="after")
    def _input_scopes_cover_portfolio_uploads(self) -> Self:
        """Unset: the uploads container. Set: it must still cover where portfolio uploads are read from."""
        if "input_scopes" not in self.model_fields_set:
            object.__setattr__(self, "input_scopes", [f"az://{self.uploads_container}/"])
        elif not self.input_scopes:
            raise ValueError("INPUT_SCOPES: [] lets no run read its inputs; list scopes, or unset it for the default")
        portfolios = f"az://{self.uploads_container}/{TaskType.PARSE_PORTFOLIO.value}/"
        if not any(portfolios.startswith(scope) for scope in self.input_scopes):
            raise ValueError(
                f"INPUT_SCOPES: none of {self.input_scopes} covers {portfolios}, where a portfolio upload (the input "
                f"of its own run) is read from; add az://{self.uploads_container}/ (the default) or {portfolios}"
            )
        return self

    def task_command(self, task_type: TaskType) -> list[str]:
        """The command a create_* task runs (not parse_portfolio: the runner parses itself)."""
        commands = {
            TaskType.CREATE_REPORT: self.create_report_command,
            TaskType.CREATE_AUDIT: self.create_audit_command,
            TaskType.CREATE_DASHBOARD: self.create_dashboard_command,
        }
        return list(commands[task_type])

    def artifacts_container(self, task_type: TaskType) -> str:
        containers = {
            TaskType.CREATE_REPORT: self.reports_container,
            TaskType.CREATE_AUDIT: self.audits_container,
            TaskType.CREATE_DASHBOARD: self.dashboards_container,
        }
        return containers[task_type]

    def run_policy(self) -> RunPolicy:
        """The per-run knobs, captured into each `RunRequest` when the upload is accepted."""
        return RunPolicy(
            deadline_seconds=self.run_deadline_seconds,
            check_interval_seconds=self.status_check_interval_seconds,
            completion_grace_seconds=self.completion_grace_seconds,
            checks_per_generation=self.status_checks_per_generation,
            slot_poll_seconds=self.slot_poll_seconds,
            start_counts_as_check=True,
            start_confirms_slot=True,
            activity_retry=RetryPolicy(
                first_interval_seconds=self.activity_first_retry_seconds,
                max_attempts=self.activity_max_attempts,
            ),
        )


class AcaSettings(BaseSettings):
    """The `aca` backend's settings: which Container Apps job to start, how, and as whom.

    Read only when runs start on Container Apps. The job's own definition (image, command, resources,
    volume mounts, secrets, probes) is the base; the `ACA_*` overrides below replace parts of it.
    """

    # No populate_by_name: field names such as `image` must never be read from the environment.
    model_config = SettingsConfigDict(frozen=True, extra="ignore")

    subscription_id: str = Field(
        validation_alias="ACA_SUBSCRIPTION_ID", pattern=_CLIENT_ID, description="Subscription of the job."
    )
    resource_group: str = Field(
        validation_alias="ACA_RESOURCE_GROUP",
        pattern=r"^[-\w.()]{0,89}[-\w()]$",
        description="Resource group of the job.",
    )
    job_name: str = Field(
        validation_alias="ACA_JOB_NAME",
        pattern=r"^[a-z][a-z0-9-]{0,30}[a-z0-9]$",
        description="The Container Apps job (manual trigger) each run starts an execution of.",
    )
    container_name: str | None = Field(
        default=None,
        validation_alias="ACA_CONTAINER_NAME",
        description="The job's container that runs the runner; unset: its first container.",
    )
    image: str | None = Field(
        default=None, validation_alias="ACA_IMAGE", description="Overrides the job's image (e.g. a new tag)."
    )
    command: list[str] | None = Field(
        default=None, validation_alias="ACA_COMMAND", description="Overrides the job's command, a JSON list."
    )
    args: list[str] | None = Field(
        default=None, validation_alias="ACA_ARGS", description="Overrides the job's args, a JSON list."
    )
    cpu: float | None = Field(default=None, gt=0, validation_alias="ACA_CPU", description="Overrides the CPUs.")
    memory: str | None = Field(
        default=None, pattern=_MEMORY, validation_alias="ACA_MEMORY", description="Overrides the memory (`2Gi`)."
    )
    managed_identity_client_id: str | None = Field(
        default=None,
        pattern=_CLIENT_ID,
        validation_alias="ACA_MANAGED_IDENTITY_CLIENT_ID",
        description="Client id of the Function App's user-assigned identity for Resource Manager; "
        "unset: DefaultAzureCredential (the system-assigned identity in Azure, your login locally).",
    )
    arm_endpoint: str = Field(
        default="https://management.azure.com",
        pattern=r"^https://",
        validation_alias="ACA_ARM_ENDPOINT",
        description="Azure Resource Manager's endpoint (another cloud's, with ACA_ARM_AUDIENCE; or a test server's).",
    )
    arm_audience: str = Field(
        default="https://management.azure.com",
        pattern=r"^https://",
        validation_alias="ACA_ARM_AUDIENCE",
        description="The audience of the tokens for Resource Manager (another cloud's, e.g. "
        "https://management.chinacloudapi.cn).",
    )
    arm_retries: int = Field(
        default=4,
        ge=0,
        le=10,
        validation_alias="ACA_ARM_RETRIES",
        description="Retries of a throttled (429) or failed (5xx) Resource Manager call, honouring Retry-After.",
    )

    @field_validator(
        "container_name", "image", "command", "args", "cpu", "memory", "managed_identity_client_id", mode="before"
    )
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("command", "args")
    @classmethod
    def _parts_are_not_empty(cls, parts: list[str] | None) -> list[str] | None:
        if parts is not None and not all(parts):
            raise ValueError('must be a JSON list of non-empty strings, e.g. ["python", "-m", "runner"]')
        return parts


def _input_scope_problem(scope: str) -> str | None:
    """What is wrong with one INPUT_SCOPES entry, or None (`contracts.input_scope_violation` reads them)."""
    if not scope.startswith("az://"):
        return "does not start with az://"
    container, slash, folder = scope.removeprefix("az://").partition("/")
    if not re.match(_CONTAINER_NAME, container) or "--" in container:
        return f"does not name a container ({container!r}: 3 to 63 lowercase letters, digits and single hyphens)"
    if container.startswith(_HOST_CONTAINER_PREFIX):
        return "is a container of the Functions host itself (its receipts and keys), which no request may read"
    if not slash or (folder and not folder.endswith("/")):
        return "must end with '/' (a scope is a whole container or a folder, never part of a name)"
    segments = folder.removesuffix("/").split("/") if folder else []
    if any(segment in ("", ".", "..") or "\\" in segment or not segment.isprintable() for segment in segments):
        return "has an empty, '.' or '..' folder, a backslash or a control character"
    return None


SettingsModel = TypeVar("SettingsModel", bound=BaseSettings)


def load_settings() -> AppSettings:
    """Read and validate the app settings, or fail naming each bad setting."""
    return load(AppSettings)


def load(model: type[SettingsModel]) -> SettingsModel:
    """Read and validate one settings model from the environment, or fail naming each bad setting."""
    try:
        return model()
    except SettingsError as exc:  # a list setting that is not JSON never reaches validation
        field = re.search(r'field "([^"]+)"', str(exc))
        setting = str(model.model_fields[field.group(1)].validation_alias) if field else "a setting"
        example = _JSON_EXAMPLES.get(setting, '["python", "-m", "runner"]')
        raise ConfigurationError(
            "invalid_settings",
            f"The app settings are invalid: {setting} is not JSON; write a list such as {example}.",
        ) from None
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            setting = ".".join(str(part) for part in error["loc"]) or "settings"
            value = error.get("input")
            hidden = isinstance(value, dict) or error["type"] == "missing" or setting in _SECRET_SETTINGS
            shown = "" if hidden else f" (got {value!r})"
            hint = f" ({_MISSING_HINTS[setting]})" if error["type"] == "missing" and setting in _MISSING_HINTS else ""
            problems.append(f"{setting}: {error['msg']}{shown}{hint}")
        raise ConfigurationError(
            "invalid_settings",
            "The app settings are invalid: " + "; ".join(problems)
            + ". Set them in local.settings.json (Values) for `func start`, or in the Function App's settings.",
        ) from None

