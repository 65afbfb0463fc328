"""The Functions app's settings: read from the environment once, at start-up, and validated.

Every field names the app setting behind it (`validation_alias`), and a bad or missing value fails
with a message that names that setting. The orchestrator never reads these: what a run needs travels
in its `RunRequest`.
"""

from __future__ import annotations

import re
from enum import StrEnum

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict, SettingsError

from orchestrations.contracts import (
    MAX_DEADLINE_SECONDS,
    PACTA_ARTIFACT_CONTAINERS,
    PACTA_BENCHMARKS_DIR,
    PACTA_DATA_DIR,
    PACTA_TASK_COMMANDS,
    RetryPolicy,
    RunPolicy,
    TaskType,
)
from orchestrations.errors import ConfigurationError

_CONTAINER_NAME = r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$"


class BackendName(StrEnum):
    ACA = "aca"
    DOCKER = "docker"
    PROCESS = "process"


class UploadTriggerSource(StrEnum):
    """How the blob trigger learns of uploads: container scans locally, Event Grid in Azure."""

    POLLING = "LogsAndContainerScan"
    EVENT_GRID = "EventGrid"


class AppSettings(BaseSettings):
    """Settings of the Functions app (and the in-process host that runs it locally)."""

    model_config = SettingsConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    storage_connection: str = Field(
        validation_alias="AzureWebJobsStorage",
        min_length=1,
        description="Storage for uploads, run records, the events queue and (locally) the task hub.",
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
    upload_trigger_source: UploadTriggerSource = Field(
        default=UploadTriggerSource.POLLING,
        validation_alias="UPLOAD_TRIGGER_SOURCE",
        description="LogsAndContainerScan (polling, local) or EventGrid (Azure, Flex Consumption).",
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
        description="Image of the runner (docker and aca backends).",
    )
    runner_command: list[str] = Field(
        default_factory=list,
        validation_alias="RUNNER_COMMAND",
        description='Command that starts the runner, as a JSON list (e.g. ["python", "-m", "runner"]); '
        "empty: the image's entrypoint (process backend: `python -m runner`).",
    )
    runner_cpu: float = Field(default=1.0, gt=0, validation_alias="RUNNER_CPU")
    runner_memory: str = Field(default="2Gi", pattern=r"^\d+(\.\d+)?(Mi|Gi)$", validation_alias="RUNNER_MEMORY")
    runner_storage_connection: str | None = Field(
        default=None,
        validation_alias="RUNNER_STORAGE_CONNECTION",
        description="Connection string the runner uses locally; defaults to AzureWebJobsStorage.",
    )
    run_deadline_seconds: int = Field(
        default=3600, gt=0, le=MAX_DEADLINE_SECONDS, validation_alias="RUN_DEADLINE_SECONDS"
    )
    status_check_interval_seconds: int = Field(
        default=60, gt=0, validation_alias="STATUS_CHECK_INTERVAL_SECONDS"
    )
    completion_grace_seconds: int = Field(default=30, ge=0, validation_alias="COMPLETION_GRACE_SECONDS")
    status_checks_per_generation: int = Field(
        default=50, ge=1, validation_alias="STATUS_CHECKS_PER_GENERATION",
        description="Status checks before the orchestration continues as new (bounds its history).",
    )
    activity_max_attempts: int = Field(default=4, ge=1, le=20, validation_alias="ACTIVITY_MAX_ATTEMPTS")
    activity_first_retry_seconds: float = Field(
        default=2.0, gt=0, validation_alias="ACTIVITY_FIRST_RETRY_SECONDS"
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
        "(`docker logs`); older ones are removed when a run starts, and all by `python -m local_runner prune`.",
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

    @field_validator("create_report_command", "create_audit_command", "create_dashboard_command")
    @classmethod
    def _command_is_not_empty(cls, command: list[str]) -> list[str]:
        if not command or not all(part for part in command):
            raise ValueError('must be a JSON list of non-empty strings, e.g. ["Rscript", "--vanilla", "run.R"]')
        return command

    @field_validator("runner_backend", "functions_environment", "docker_data_dir", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @property
    def is_emulator(self) -> bool:
        return (self.functions_environment or "").lower() == "development"

    @property
    def runner_connection(self) -> str:
        return self.runner_storage_connection or self.storage_connection

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
            activity_retry=RetryPolicy(
                first_interval_seconds=self.activity_first_retry_seconds,
                max_attempts=self.activity_max_attempts,
            ),
        )


def load_settings() -> AppSettings:
    """Read and validate the app settings, or fail naming each bad setting."""
    try:
        return AppSettings()
    except SettingsError as exc:  # a list setting that is not JSON never reaches validation
        field = re.search(r'field "([^"]+)"', str(exc))
        setting = AppSettings.model_fields[field.group(1)].validation_alias if field else "a setting"
        raise ConfigurationError(
            "invalid_settings",
            f"The app settings are invalid: {setting} is not JSON; write a list such as "
            '["python", "-m", "runner"].',
        ) from None
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            setting = ".".join(str(part) for part in error["loc"]) or "settings"
            value = error.get("input")
            shown = "" if isinstance(value, dict) or error["type"] == "missing" else f" (got {value!r})"
            problems.append(f"{setting}: {error['msg']}{shown}")
        raise ConfigurationError(
            "invalid_settings",
            "The app settings are invalid: " + "; ".join(problems)
            + ". Set them in local.settings.json (Values) for `func start`, or in the Function App's settings.",
        ) from None

