"""From a run request to the `JobSpec` a backend starts: image, resources and the runner's environment."""

from __future__ import annotations

import json

from orchestrations import telemetry
from orchestrations.contracts import JobSpec, RunnerEnv, RunRequest, TaskType
from orchestrations.log_context import RUNNER_LOG_FORMAT_VAR
from orchestrations.settings import AppSettings


def runs_prefix(settings: AppSettings, run_id: str) -> str:
    """Where a run's outputs, log and result document go: `az://<runs container>/<run id>/`."""
    return f"az://{settings.runs_container}/{run_id}/"


def build_job_spec(request: RunRequest, callback_token: str, settings: AppSettings, *, attempt: int = 1) -> JobSpec:
    """PACTA's variables (`TASK_ID`, `TASK_TYPE`, `<TYPE>_REQUEST`) plus the runner's own."""
    env = {
        "TASK_ID": request.run_id,
        "TASK_TYPE": request.task_type.value,
        request.task_type.request_env_var: request_env_value(request),
        RunnerEnv.RUN_ID.value: request.run_id,
        RunnerEnv.ATTEMPT.value: str(attempt),
        RunnerEnv.CALLBACK_TOKEN.value: callback_token,
        RunnerEnv.EVENTS_QUEUE.value: settings.runner_events_queue,
        RunnerEnv.OUTPUT_PREFIX.value: runs_prefix(settings, request.run_id),
        # The runner checks every input against these again before it downloads anything.
        RunnerEnv.INPUT_SCOPES.value: json.dumps(settings.input_scopes),
        # The runner's console lines look like the app's (its runner.log stays text, for people).
        RUNNER_LOG_FORMAT_VAR: settings.log_output.value,
        **storage_env(settings),
        # TRACEPARENT (the current span: the runner's spans join the run's trace) and the app's OTEL_* settings.
        **telemetry.job_environment(),
    }
    if request.task_type is not TaskType.PARSE_PORTFOLIO:
        env.update(analysis_env(request.task_type, settings))
    return JobSpec(
        run_id=request.run_id,
        task_type=request.task_type,
        image=settings.runner_image,
        command=list(settings.runner_command),
        env=env,
        cpu=settings.runner_cpu,
        memory=settings.runner_memory,
        deadline_seconds=request.policy.deadline_seconds,
    )


def request_env_value(request: RunRequest) -> str:
    """PACTA's `<TYPE>_REQUEST` variable: the request as JSON (ASCII, so the intake can size it exactly)."""
    return json.dumps(request.pacta_request())


def storage_env(settings: AppSettings) -> dict[str, str]:
    """How the runner reaches Storage: in Azure its managed identity and the account URLs (no key
    travels); locally Azurite's connection string with its well-known development key."""
    if not settings.runner_uses_managed_identity:
        return {RunnerEnv.STORAGE_CONNECTION_STRING.value: settings.runner_connection}
    # Filled from AzureWebJobsStorage at start-up when not set (AppSettings._storage_is_reachable).
    assert settings.runner_blob_account_url and settings.runner_queue_account_url
    env = {
        RunnerEnv.BLOB_ACCOUNT_URL.value: settings.runner_blob_account_url,
        RunnerEnv.QUEUE_ACCOUNT_URL.value: settings.runner_queue_account_url,
    }
    if settings.runner_client_id:
        # azure-identity reads AZURE_CLIENT_ID; PACTA's runner read MANAGED_IDENTITY_CLIENT_ID as well.
        env |= {"AZURE_CLIENT_ID": settings.runner_client_id, "MANAGED_IDENTITY_CLIENT_ID": settings.runner_client_id}
    return env


def analysis_env(task_type: TaskType, settings: AppSettings) -> dict[str, str]:
    """What a create_* task needs beyond PACTA's variables: its command, its artifacts container and
    the data directories the command gets as BENCHMARKS_DIR and PACTA_DATA_DIR."""
    return {
        RunnerEnv.TASK_COMMAND.value: json.dumps(settings.task_command(task_type)),
        RunnerEnv.ARTIFACTS_CONTAINER.value: settings.artifacts_container(task_type),
        RunnerEnv.BENCHMARKS_DIR.value: settings.benchmarks_dir,
        RunnerEnv.PACTA_DATA_DIR.value: settings.pacta_data_dir,
    }
