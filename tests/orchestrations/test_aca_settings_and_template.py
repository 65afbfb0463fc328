"""The aca backend's pure parts: its settings, the start template it merges, the status it reads back,
and the runner's storage environment with a managed identity."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from azure.mgmt.appcontainers.models import Job, JobExecution

from orchestrations.aca_backend import definition_problems, execution_template, job_status, run_id_of
from orchestrations.contracts import JobSpec, JobState, RunError, StartJobResult, TaskType
from orchestrations.errors import BackendError, ConfigurationError
from orchestrations.job_spec import storage_env
from orchestrations.settings import AcaSettings, AppSettings, load

SUBSCRIPTION = "00000000-0000-4000-8000-000000000001"
RUNNER_CLIENT = "11111111-2222-4333-8444-555555555555"
AZURITE = (
    "DefaultEndpointsProtocol=https;AccountName=devstoreaccount1;AccountKey=a2V5;"
    "BlobEndpoint=https://127.0.0.1:41000/devstoreaccount1;QueueEndpoint=https://127.0.0.1:41001/devstoreaccount1;"
)


def aca(**values: object) -> AcaSettings:
    return AcaSettings.model_validate(
        {"ACA_SUBSCRIPTION_ID": SUBSCRIPTION, "ACA_RESOURCE_GROUP": "rg-pacta", "ACA_JOB_NAME": "pacta-runner",
         **values}
    )


def job(*containers: dict[str, Any], init: list[dict[str, Any]] | None = None) -> Job:
    template: dict[str, Any] = {"containers": list(containers)}
    if init:
        template["initContainers"] = init
    return Job({"name": "pacta-runner", "location": "westeurope", "properties": {"template": template}})


RUNNER = {
    "name": "runner",
    "image": "registry.example/pacta-runner:1.0",
    "command": ["python", "-m", "runner"],
    "env": [
        {"name": "APP_KEY", "secretRef": "app-key"},
        {"name": "LOG_LEVEL", "value": "info"},
        {"name": "TASK_TYPE", "value": "from-the-job"},
    ],
    "resources": {"cpu": 4.0, "memory": "16Gi"},
    "volumeMounts": [{"volumeName": "pacta-data", "mountPath": "/mnt/pacta-data"}],
}
SIDECAR = {"name": "sidecar", "image": "registry.example/sidecar:2", "resources": {"cpu": 0.25, "memory": "0.5Gi"}}


def spec(**env: str) -> JobSpec:
    return JobSpec(
        run_id="run-1", task_type=TaskType.PARSE_PORTFOLIO, image="pacta-runner:local",
        env={"TASK_ID": "run-1", "TASK_TYPE": "parse_portfolio", "RUNNER_RUN_ID": "run-1", **env},
        deadline_seconds=600,
    )


def execution(status: str, **properties: Any) -> JobExecution:
    return JobExecution({"name": "pacta-runner-abc12", "properties": {"status": status, **properties}})


# --- settings ---


def test_missing_aca_settings_are_named() -> None:
    with pytest.raises(ConfigurationError) as raised:
        load(AcaSettings)

    for setting in ("ACA_SUBSCRIPTION_ID", "ACA_RESOURCE_GROUP", "ACA_JOB_NAME"):
        assert setting in raised.value.message


def test_bad_aca_values_are_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACA_SUBSCRIPTION_ID", "not-a-guid")
    monkeypatch.setenv("ACA_RESOURCE_GROUP", "rg")
    monkeypatch.setenv("ACA_JOB_NAME", "Bad_Name")
    monkeypatch.setenv("ACA_MEMORY", "lots")

    with pytest.raises(ConfigurationError) as raised:
        load(AcaSettings)

    assert "ACA_SUBSCRIPTION_ID" in raised.value.message
    assert "ACA_JOB_NAME" in raised.value.message
    assert "ACA_MEMORY" in raised.value.message


def test_a_command_override_that_is_not_json_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACA_SUBSCRIPTION_ID", SUBSCRIPTION)
    monkeypatch.setenv("ACA_RESOURCE_GROUP", "rg")
    monkeypatch.setenv("ACA_JOB_NAME", "job")
    monkeypatch.setenv("ACA_COMMAND", "python -m runner")

    with pytest.raises(ConfigurationError, match="ACA_COMMAND"):
        load(AcaSettings)


def test_blank_overrides_are_unset() -> None:
    settings = aca(ACA_IMAGE="", ACA_COMMAND="", ACA_CPU="", ACA_MANAGED_IDENTITY_CLIENT_ID="")

    assert (settings.image, settings.command, settings.cpu, settings.managed_identity_client_id) == (
        None, None, None, None,
    )


# --- the runner's storage environment ---


def app(**values: object) -> AppSettings:
    return AppSettings.model_validate({"AzureWebJobsStorage": AZURITE, **values})


def test_with_aca_the_runner_gets_account_urls_and_its_identity_never_a_key() -> None:
    env = storage_env(app(RUNNER_BACKEND="aca", RUNNER_CLIENT_ID=RUNNER_CLIENT))

    assert env == {
        "RUNNER_BLOB_ACCOUNT_URL": "https://127.0.0.1:41000/devstoreaccount1/",
        "RUNNER_QUEUE_ACCOUNT_URL": "https://127.0.0.1:41001/devstoreaccount1/",
        "AZURE_CLIENT_ID": RUNNER_CLIENT,
        "MANAGED_IDENTITY_CLIENT_ID": RUNNER_CLIENT,
    }


def test_outside_the_emulator_aca_is_the_default_and_so_is_the_managed_identity() -> None:
    env = storage_env(app())

    assert "RUNNER_STORAGE_CONNECTION_STRING" not in env
    assert "AZURE_CLIENT_ID" not in env  # a system-assigned identity needs no client id
    assert env["RUNNER_BLOB_ACCOUNT_URL"].startswith("https://127.0.0.1:41000")


def test_explicit_account_urls_win_over_the_connection_strings() -> None:
    env = storage_env(app(
        RUNNER_BACKEND="aca",
        RUNNER_BLOB_ACCOUNT_URL="https://pacta.blob.core.windows.net/",
        RUNNER_QUEUE_ACCOUNT_URL="https://pacta.queue.core.windows.net/",
    ))

    assert env["RUNNER_BLOB_ACCOUNT_URL"] == "https://pacta.blob.core.windows.net/"
    assert env["RUNNER_QUEUE_ACCOUNT_URL"] == "https://pacta.queue.core.windows.net/"


def test_local_backends_keep_the_connection_string_unless_told_otherwise() -> None:
    assert storage_env(app(RUNNER_BACKEND="process")) == {"RUNNER_STORAGE_CONNECTION_STRING": AZURITE}
    told = app(RUNNER_BACKEND="process", RUNNER_STORAGE_AUTH="managed_identity")
    assert "RUNNER_BLOB_ACCOUNT_URL" in storage_env(told)


def test_a_storage_setting_without_endpoints_to_take_urls_from_is_refused() -> None:
    with pytest.raises(ValueError, match="RUNNER_BLOB_ACCOUNT_URL and RUNNER_QUEUE_ACCOUNT_URL"):
        AppSettings.model_validate({"AzureWebJobsStorage": "not a connection string", "RUNNER_BACKEND": "aca"})


def test_a_runner_client_id_must_be_a_guid() -> None:
    with pytest.raises(ValueError, match="RUNNER_CLIENT_ID"):
        app(RUNNER_CLIENT_ID="my-identity")


# --- the start template ---


def test_the_run_env_goes_into_the_runner_container_keeping_the_jobs_secret_refs() -> None:
    template = execution_template(job(RUNNER), spec(RUNNER_CALLBACK_TOKEN="secret-token"), aca())

    (container,) = template.containers or []
    env = {variable.name: variable for variable in container.env or []}
    assert env["APP_KEY"].secret_ref == "app-key" and env["APP_KEY"].value is None
    assert env["LOG_LEVEL"].value == "info"
    assert env["TASK_TYPE"].value == "parse_portfolio"  # the run's value replaces the job's
    assert env["RUNNER_RUN_ID"].value == "run-1"
    assert env["RUNNER_CALLBACK_TOKEN"].value == "secret-token"
    assert len(container.env or []) == len(env)  # no name twice
    assert (container.name, container.image, container.command) == (
        "runner", "registry.example/pacta-runner:1.0", ["python", "-m", "runner"],
    )
    assert container.resources is not None
    assert (container.resources.cpu, container.resources.memory) == (4.0, "16Gi")


def test_overrides_replace_the_jobs_image_command_args_and_resources() -> None:
    overrides = aca(ACA_IMAGE="registry.example/pacta-runner:2.0", ACA_COMMAND=["/runner"],
                    ACA_ARGS=["--config=/configs/dev.conf"], ACA_CPU="2", ACA_MEMORY="8Gi")

    (container,) = execution_template(job(RUNNER), spec(), overrides).containers or []

    assert container.image == "registry.example/pacta-runner:2.0"
    assert (container.command, container.args) == (["/runner"], ["--config=/configs/dev.conf"])
    assert container.resources is not None
    assert (container.resources.cpu, container.resources.memory) == (2.0, "8Gi")


def test_the_wire_body_is_the_documented_shape_and_carries_no_volume_mounts() -> None:
    body = execution_template(job(RUNNER), spec(), aca()).as_dict()

    (container,) = body["containers"]
    assert set(container) == {"name", "image", "command", "env", "resources"}
    assert {"name": "APP_KEY", "secretRef": "app-key"} in container["env"]


def test_other_containers_and_init_containers_go_in_unchanged() -> None:
    init = [{"name": "fetch", "image": "registry.example/fetch:1", "resources": {"cpu": 0.5, "memory": "1Gi"}}]

    template = execution_template(job(SIDECAR, RUNNER, init=init), spec(), aca(ACA_CONTAINER_NAME="runner"))

    sidecar, runner = template.containers or []
    assert sidecar.name == "sidecar" and not any(v.name == "RUNNER_RUN_ID" for v in sidecar.env or [])
    assert any(variable.name == "RUNNER_RUN_ID" for variable in runner.env or [])
    assert [container.name for container in template.init_containers or []] == ["fetch"]


def test_a_container_name_the_job_lacks_is_named_with_the_ones_it_has() -> None:
    with pytest.raises(BackendError, match=r"ACA_CONTAINER_NAME=main: .* has no such container .*runner"):
        execution_template(job(RUNNER), spec(), aca(ACA_CONTAINER_NAME="main"))


def test_a_job_without_containers_is_refused() -> None:
    with pytest.raises(BackendError, match="defines no container"):
        execution_template(job(), spec(), aca())


# --- status and lookup ---


@pytest.mark.parametrize("state", ["Running", "Processing", "Unknown", "running", "Pending", "SomethingNew"])
def test_in_progress_and_unknown_states_are_running_so_the_deadline_bounds_them(state: str) -> None:
    assert job_status(execution(state), "runner").state is JobState.RUNNING


@pytest.mark.parametrize(("state", "expected"), [("succeeded", JobState.SUCCEEDED), ("FAILED", JobState.FAILED)])
def test_states_are_compared_without_case_as_the_sdk_does(state: str, expected: JobState) -> None:
    assert job_status(execution(state), "runner").state is expected


def test_succeeded_reads_the_exit_code_when_arm_gives_one() -> None:
    detailed = {"replicas": [{"name": "r1", "containers": [{"name": "runner", "code": 0, "status": "Completed"}]}]}

    status = job_status(execution("Succeeded", detailedStatus=detailed), "runner")

    assert (status.state, status.exit_code) == (JobState.SUCCEEDED, 0)


@pytest.mark.parametrize("state", ["Failed", "Stopped", "Degraded"])
def test_terminal_failures_carry_arms_reason_message_and_the_containers_exit_code(state: str) -> None:
    detailed = {"replicas": [{"name": "r1", "containers": [
        {"name": "sidecar", "code": 0, "status": "Completed"},
        {"name": "runner", "code": 137, "status": "Terminated", "additionalInformation": "OOMKilled"},
    ]}]}

    status = job_status(
        execution(state, reason="BackoffLimitExceeded", message="Job has reached the specified backoff limit",
                  detailedStatus=detailed, endTime=datetime(2026, 11, 27, tzinfo=UTC).isoformat()),
        "runner",
    )

    assert (status.state, status.exit_code) == (JobState.FAILED, 137)
    assert status.detail is not None
    for part in (state, "BackoffLimitExceeded", "backoff limit", "Terminated", "OOMKilled"):
        assert part in status.detail


def test_the_run_id_is_read_back_from_the_executions_env() -> None:
    started = JobExecution({"name": "x", "properties": {"template": {"containers": [
        {"name": "runner", "env": [{"name": "APP_KEY", "secretRef": "k"}, {"name": "RUNNER_RUN_ID", "value": "run-7"}]},
    ]}}})

    assert run_id_of(started) == "run-7"
    assert run_id_of(execution("Running")) is None


# --- the job's definition ---


def configured_job(**configuration: Any) -> Job:
    return Job({"name": "pacta-runner", "location": "westeurope", "properties": {
        "configuration": {"triggerType": "Manual", "replicaTimeout": 7200, "replicaRetryLimit": 0, **configuration},
        "template": {"containers": [RUNNER]},
    }})


def test_a_job_defined_as_the_readme_asks_has_no_problems() -> None:
    assert definition_problems(configured_job(), deadline_seconds=3600) == []


def test_each_definition_problem_is_named_with_its_consequence() -> None:
    problems = definition_problems(
        configured_job(triggerType="Schedule", replicaRetryLimit=2, replicaTimeout=1800), deadline_seconds=3600
    )

    assert len(problems) == 3
    assert "Schedule, not Manual" in problems[0]
    assert "replica retry limit is 2, not 0" in problems[1]
    assert "1800 s" in problems[2] and "3600 s" in problems[2] and "RUN_DEADLINE_SECONDS" in problems[2]


# --- what start_job answers ---


def test_a_start_result_is_an_execution_or_a_refusal_never_both_or_neither() -> None:
    at = datetime(2026, 11, 27, tzinfo=UTC)
    refusal = RunError(code="aca_forbidden", message="may not start")

    assert StartJobResult(execution_ref="aca:x", started_at=at).refused is None
    assert StartJobResult(refused=refusal).execution_ref is None
    with pytest.raises(ValueError, match="not both"):
        StartJobResult(execution_ref="aca:x", started_at=at, refused=refusal)
    with pytest.raises(ValueError, match="not both"):
        StartJobResult()
    with pytest.raises(ValueError, match="both an execution_ref and started_at"):
        StartJobResult(execution_ref="aca:x")
