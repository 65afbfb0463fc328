"""The aca backend through the real azure-mgmt-appcontainers client, against the loopback ARM.

Tokens come from the loopback managed identity endpoint (the Function App's user-assigned identity),
executions run as local processes; what ARM answers and what the backend makes of it is real HTTP.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from orchestrations import backends
from orchestrations.aca_backend import AcaJobBackend
from orchestrations.contracts import ExecutionRef, JobSpec, JobState, RunRequest, SourceBlob, TaskType
from orchestrations.errors import BackendError, ConfigurationError, ExecutionNotFoundError
from orchestrations.job_spec import build_job_spec
from orchestrations.settings import AppSettings
from tests.cloud.fixtures import APP_CLIENT_ID, RUNNER_CLIENT_ID, ContainerAppsCloud
from tests.conftest import wait_for

TOKEN = "callback-token-" + "x" * 20
# The app's storage (not reached by these tests): the runner's account URLs follow from it.
ACCOUNT = "DefaultEndpointsProtocol=https;AccountName=pactaprod;AccountKey=a2V5;EndpointSuffix=core.windows.net"


def exits_with(code: int) -> str:
    return json.dumps([sys.executable, "-c", f"import sys; sys.exit({code})"])


@pytest.fixture
def make_backend(
    container_apps: ContainerAppsCloud, monkeypatch: pytest.MonkeyPatch
) -> Callable[..., tuple[AcaJobBackend, AppSettings]]:
    """The backend `RUNNER_BACKEND=aca` builds from the app settings, with extra settings of the test's."""

    def make(**extra: str) -> tuple[AcaJobBackend, AppSettings]:
        settings_env = container_apps.app_settings(AzureWebJobsStorage=ACCOUNT, **extra)
        for name, value in settings_env.items():
            monkeypatch.setenv(name, value)
        settings = AppSettings()
        backend = backends.create_backend(settings)
        assert isinstance(backend, AcaJobBackend)
        return backend, settings

    return make


def spec_for(settings: AppSettings, run_id: str = "run-aca-1") -> JobSpec:
    request = RunRequest(
        run_id=run_id,
        task_type=TaskType.PARSE_PORTFOLIO,
        inputs=["az://uploads/parse_portfolio/simple.csv"],
        source=SourceBlob(container="uploads", name="parse_portfolio/simple.csv", etag="e", size=1,
                          uri="az://uploads/parse_portfolio/simple.csv"),
        requested_at=datetime(2026, 11, 27, tzinfo=UTC),
    )
    return build_job_spec(request, TOKEN, settings)


def wait_until_ended(backend: AcaJobBackend, ref: ExecutionRef) -> object:
    return wait_for(lambda: (status := backend.status(ref)).has_ended and status, what=f"{ref} to end", timeout=30)


def test_start_merges_the_run_into_the_jobs_template_and_the_execution_runs(
    container_apps: ContainerAppsCloud, make_backend: Callable[..., tuple[AcaJobBackend, AppSettings]]
) -> None:
    backend, settings = make_backend(ACA_COMMAND=exits_with(0))

    ref = backend.start(spec_for(settings))

    assert ref.backend == "aca" and ref.name in container_apps.arm.executions
    (start,) = container_apps.arm.requests_for("start")
    (container,) = start.body["containers"]
    env = {variable["name"]: variable for variable in container["env"]}
    assert container["name"] == "pacta-runner" and container["image"] == "pacta-runner:local"
    assert container["resources"] == {"cpu": 1.0, "memory": "2Gi"}
    assert env["TASK_ID"]["value"] == env["RUNNER_RUN_ID"]["value"] == "run-aca-1"
    assert env["TASK_TYPE"]["value"] == "parse_portfolio"
    assert json.loads(env["PARSE_PORTFOLIO_REQUEST"]["value"])["BlobURIs"] == [
        "az://uploads/parse_portfolio/simple.csv"
    ]
    assert env["PACTA_API_KEY"] == {"name": "PACTA_API_KEY", "secretRef": "pacta-api-key"}  # the job's, kept
    assert env["AZURE_CLIENT_ID"]["value"] == RUNNER_CLIENT_ID
    assert "RUNNER_STORAGE_CONNECTION_STRING" not in env  # no key travels; the runner uses its identity
    assert env["RUNNER_BLOB_ACCOUNT_URL"]["value"] == "https://pactaprod.blob.core.windows.net/"
    status = wait_until_ended(backend, ref)
    assert status == backend.status(ref) and backend.status(ref).state is JobState.SUCCEEDED
    assert backend.status(ref).exit_code == 0
    # Every ARM call carried a token the identity endpoint minted for the Function App's identity.
    assert {(request.resource, request.client_id) for request in container_apps.identity.requests} >= {
        ("https://management.azure.com", APP_CLIENT_ID)
    }


def test_a_second_start_for_the_same_run_returns_the_first_execution(
    container_apps: ContainerAppsCloud, make_backend: Callable[..., tuple[AcaJobBackend, AppSettings]]
) -> None:
    backend, settings = make_backend(ACA_COMMAND=exits_with(0))
    first = backend.start(spec_for(settings))

    again = backend.start(spec_for(settings))
    restarted_backend, _ = make_backend(ACA_COMMAND=exits_with(0))  # a new worker: nothing in memory
    after_restart = restarted_backend.start(spec_for(settings))

    assert first == again == after_restart
    assert len(container_apps.arm.requests_for("start")) == 1
    assert container_apps.run_ids() == ["run-aca-1"]


def test_a_throttled_start_waits_retry_after_and_starts_once(
    container_apps: ContainerAppsCloud, make_backend: Callable[..., tuple[AcaJobBackend, AppSettings]]
) -> None:
    backend, settings = make_backend(ACA_COMMAND=exits_with(0))
    container_apps.arm.fail_next("start", 429, headers={"Retry-After": "1"})

    ref = backend.start(spec_for(settings))

    first, second = container_apps.arm.requests_for("start")
    assert second.at - first.at >= 1.0
    assert container_apps.run_ids() == ["run-aca-1"] and ref.name in container_apps.arm.executions
    assert len(container_apps.arm.requests_for("list_executions")) == 1  # a 429 started nothing: no second look


def test_a_start_that_failed_with_a_server_error_looks_again_then_starts_once(
    container_apps: ContainerAppsCloud, make_backend: Callable[..., tuple[AcaJobBackend, AppSettings]]
) -> None:
    backend, settings = make_backend(ACA_COMMAND=exits_with(0))
    container_apps.arm.fail_next("start", 500, headers={"Retry-After": "0"})

    backend.start(spec_for(settings))

    assert len(container_apps.arm.requests_for("start")) == 2
    assert len(container_apps.arm.requests_for("list_executions")) == 2  # before each attempt
    assert container_apps.run_ids() == ["run-aca-1"]


def test_throttling_that_outlasts_the_retries_fails_with_arms_last_error(
    container_apps: ContainerAppsCloud, make_backend: Callable[..., tuple[AcaJobBackend, AppSettings]]
) -> None:
    backend, settings = make_backend(ACA_ARM_RETRIES="2")
    container_apps.arm.fail_next("start", 429, times=10, headers={"Retry-After": "0"}, message="Too many starts")

    with pytest.raises(BackendError) as raised:
        backend.start(spec_for(settings))

    assert raised.value.code == "aca_request_failed"
    assert "429" in raised.value.message and "Too many starts" in raised.value.message
    assert len(container_apps.arm.requests_for("start")) == 3
    assert container_apps.run_ids() == []


def test_a_status_check_in_a_fresh_worker_reads_the_runner_containers_exit_code(
    container_apps: ContainerAppsCloud, make_backend: Callable[..., tuple[AcaJobBackend, AppSettings]]
) -> None:
    starter, settings = make_backend(ACA_COMMAND=exits_with(3))
    ref = starter.start(spec_for(settings))
    wait_until_ended(starter, ref)
    reads_before = len(container_apps.arm.requests_for("get_job"))

    fresh, _ = make_backend(ACA_COMMAND=exits_with(3))  # another worker, or the host restarted
    status = fresh.status(ref)

    assert status.state is JobState.FAILED and status.exit_code == 3
    assert len(container_apps.arm.requests_for("get_job")) == reads_before + 1  # it learnt the runner's container


def test_a_token_resource_manager_refuses_is_not_called_a_missing_role(
    container_apps: ContainerAppsCloud, make_backend: Callable[..., tuple[AcaJobBackend, AppSettings]]
) -> None:
    backend, settings = make_backend()
    container_apps.arm.fail_next("get_job", 401, code="InvalidAuthenticationTokenAudience",
                                 message="The access token has been obtained for wrong audience or resource.")

    with pytest.raises(BackendError) as raised:
        backend.start(spec_for(settings))

    assert raised.value.code == "aca_unauthenticated"
    assert "ACA_ARM_AUDIENCE" in raised.value.message and "wrong audience" in raised.value.message
    assert "Microsoft.App/jobs" not in raised.value.message


def test_one_server_error_on_status_is_retried_by_the_client_not_reported(
    container_apps: ContainerAppsCloud, make_backend: Callable[..., tuple[AcaJobBackend, AppSettings]]
) -> None:
    backend, settings = make_backend(ACA_COMMAND=exits_with(0))
    ref = backend.start(spec_for(settings))
    container_apps.arm.fail_next("get_execution", 500)

    status = backend.status(ref)

    assert status.state in (JobState.RUNNING, JobState.SUCCEEDED)
    assert len(container_apps.arm.requests_for("get_execution")) == 2


def test_an_execution_that_fails_reports_failed_with_its_exit_code(
    container_apps: ContainerAppsCloud, make_backend: Callable[..., tuple[AcaJobBackend, AppSettings]]
) -> None:
    backend, settings = make_backend(ACA_COMMAND=exits_with(3))
    ref = backend.start(spec_for(settings))

    wait_until_ended(backend, ref)

    status = backend.status(ref)
    assert status.state is JobState.FAILED and status.exit_code == 3
    assert status.detail is not None and status.detail.startswith("Failed")


def test_stop_stops_a_running_execution(
    container_apps: ContainerAppsCloud, make_backend: Callable[..., tuple[AcaJobBackend, AppSettings]]
) -> None:
    backend, settings = make_backend(ACA_COMMAND=json.dumps([sys.executable, "-c", "import time; time.sleep(600)"]))
    ref = backend.start(spec_for(settings))
    assert backend.status(ref).state is JobState.RUNNING

    stopped = backend.stop(ref)

    assert stopped.state is JobState.FAILED and stopped.detail is not None and "Stopped" in stopped.detail
    assert len(container_apps.arm.requests_for("stop")) == 1
    assert backend.stop(ref).has_ended and len(container_apps.arm.requests_for("stop")) == 1  # ended: no call


def test_degraded_is_a_failure_with_arms_word(
    container_apps: ContainerAppsCloud, make_backend: Callable[..., tuple[AcaJobBackend, AppSettings]]
) -> None:
    backend, settings = make_backend(ACA_COMMAND=exits_with(0))
    ref = backend.start(spec_for(settings))
    container_apps.arm.set_status(ref.name, "Degraded")

    status = backend.status(ref)

    assert status.state is JobState.FAILED and status.detail is not None and "Degraded" in status.detail


def test_an_unknown_execution_is_not_found(
    make_backend: Callable[..., tuple[AcaJobBackend, AppSettings]]
) -> None:
    backend, _ = make_backend()

    with pytest.raises(ExecutionNotFoundError):
        backend.status(ExecutionRef(backend="aca", name="pacta-runner-nope1"))


@pytest.mark.parametrize(
    ("operation", "action"),
    [("start", "Microsoft.App/jobs/start/action"), ("get_job", "Microsoft.App/jobs/read")],
)
def test_forbidden_names_the_identity_and_the_missing_action(
    container_apps: ContainerAppsCloud, make_backend: Callable[..., tuple[AcaJobBackend, AppSettings]],
    operation: str, action: str,
) -> None:
    backend, settings = make_backend()
    container_apps.arm.fail_next(operation, 403)

    with pytest.raises(BackendError) as raised:
        backend.start(spec_for(settings))

    assert raised.value.code == "aca_forbidden"
    assert APP_CLIENT_ID in raised.value.message and action in raised.value.message
    assert "AuthorizationFailed" in raised.value.message
    assert container_apps.run_ids() == []


def test_stop_forbidden_names_the_stop_action(
    container_apps: ContainerAppsCloud, make_backend: Callable[..., tuple[AcaJobBackend, AppSettings]]
) -> None:
    backend, settings = make_backend(ACA_COMMAND=json.dumps([sys.executable, "-c", "import time; time.sleep(600)"]))
    ref = backend.start(spec_for(settings))
    container_apps.arm.fail_next("stop", 403)

    with pytest.raises(BackendError, match=r"Microsoft\.App/jobs/stop/action"):
        backend.stop(ref)


def test_a_job_that_does_not_exist_names_subscription_group_and_job(
    container_apps: ContainerAppsCloud, make_backend: Callable[..., tuple[AcaJobBackend, AppSettings]]
) -> None:
    backend, settings = make_backend(ACA_JOB_NAME="pacta-runner-typo")

    with pytest.raises(BackendError) as raised:
        backend.start(spec_for(settings))

    assert raised.value.code == "aca_job_not_found"
    for part in ("pacta-runner-typo", container_apps.arm.resource_group, container_apps.arm.subscription_id,
                 "ACA_JOB_NAME"):
        assert part in raised.value.message


def test_no_token_for_resource_manager_names_the_identity_setting(
    container_apps: ContainerAppsCloud, make_backend: Callable[..., tuple[AcaJobBackend, AppSettings]]
) -> None:
    backend, settings = make_backend()
    container_apps.identity.refuse = True
    try:
        with pytest.raises(BackendError) as raised:
            backend.start(spec_for(settings))
    finally:
        container_apps.identity.refuse = False

    assert raised.value.code == "aca_credential_unavailable"
    assert "ACA_MANAGED_IDENTITY_CLIENT_ID" in raised.value.message
    assert container_apps.arm.requests == []


def test_logs_say_where_the_logs_are(make_backend: Callable[..., tuple[AcaJobBackend, AppSettings]]) -> None:
    backend, settings = make_backend(ACA_COMMAND=exits_with(0))
    ref = backend.start(spec_for(settings))

    where = backend.logs(ref)
    where_unknown = backend.logs(ExecutionRef(backend="aca", name="pacta-runner-gone1"))

    assert "az://runs/run-aca-1/runner.log" in where
    assert "table ContainerAppConsoleLogs " in where and ref.name in where
    assert "runner.log" in where_unknown and "pacta-runner-gone1" in where_unknown


def test_missing_aca_settings_stop_the_start_up_naming_them(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("ACA_SUBSCRIPTION_ID", "ACA_RESOURCE_GROUP", "ACA_JOB_NAME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AzureWebJobsStorage", ACCOUNT)
    monkeypatch.setenv("RUNNER_BACKEND", "aca")

    with pytest.raises(ConfigurationError, match=r"ACA_SUBSCRIPTION_ID.*ACA_RESOURCE_GROUP.*ACA_JOB_NAME"):
        backends.create_backend(AppSettings())


def test_a_job_defined_against_the_orchestration_is_started_with_one_warning_per_problem(
    container_apps: ContainerAppsCloud, make_backend: Callable[..., tuple[AcaJobBackend, AppSettings]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    container_apps.arm.job_properties["configuration"]["replicaRetryLimit"] = 1
    backend, settings = make_backend(ACA_COMMAND=exits_with(0))

    backend.start(spec_for(settings, "run-aca-1"))
    backend.start(spec_for(settings, "run-aca-2"))

    warnings = [record.getMessage() for record in caplog.records if "replica retry limit is 1" in record.getMessage()]
    assert len(warnings) == 1 and "pacta-runner" in warnings[0]
    assert container_apps.run_ids() == ["run-aca-1", "run-aca-2"]
