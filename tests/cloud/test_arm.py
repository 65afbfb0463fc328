"""LoopbackArm, driven through the real azure-mgmt-appcontainers client over HTTPS.

Run with `.venv/bin/pytest tests/cloud/test_arm.py -q`. Most tests run executions on `FakeExecutor`,
whose status the test sets; one runs a real process through `ProcessJobBackend`.
"""

from __future__ import annotations

import datetime
import ipaddress
import socket
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from azure.core.credentials import AccessToken
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError, ResourceNotFoundError
from azure.mgmt.appcontainers import ContainerAppsAPIClient
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from local_runner.process_backend import ProcessJobBackend
from orchestrations.contracts import ExecutionRef, JobSpec, JobState, JobStatus, TaskType
from tests.cloud.arm import API_VERSION, LoopbackArm, default_job_properties
from tests.conftest import PROJECT_ROOT, wait_for

TOKEN = "loopback-token"
PLATFORM_ENV = {"IDENTITY_ENDPOINT": "https://127.0.0.1:1/msi/token", "IDENTITY_HEADER": "loopback-header"}


@dataclass(frozen=True)
class TlsFiles:
    ca: Path
    cert: Path
    key: Path


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """A throwaway CA and a certificate for 127.0.0.1 signed by it."""
    directory = tmp_path_factory.mktemp("arm-tls")
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "loopback arm test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    server_key = ec.generate_private_key(ec.SECP256R1())
    server = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    files = TlsFiles(directory / "ca.pem", directory / "server.pem", directory / "server.key")
    files.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    files.cert.write_bytes(server.public_bytes(serialization.Encoding.PEM))
    files.key.write_bytes(
        server_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return files


class FixedCredential:
    """A TokenCredential that always answers the same token."""

    def __init__(self, token: str) -> None:
        self.token = token

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken(self.token, int(time.time()) + 3600)


class FakeExecutor:
    """A JobBackend whose executions run until the test ends them."""

    name = "fake"

    def __init__(self) -> None:
        self.specs: dict[str, JobSpec] = {}
        self.statuses: dict[str, JobStatus] = {}
        self.stopped: list[ExecutionRef] = []
        self.stop_seconds = 0.0

    def start(self, spec: JobSpec) -> ExecutionRef:
        self.specs[spec.run_id] = spec
        self.statuses[spec.run_id] = JobStatus(state=JobState.RUNNING, detail="running")
        return ExecutionRef(backend=self.name, name=spec.run_id)

    def status(self, ref: ExecutionRef) -> JobStatus:
        return self.statuses[ref.name]

    def stop(self, ref: ExecutionRef) -> JobStatus:
        self.stopped.append(ref)
        time.sleep(self.stop_seconds)
        if not self.statuses[ref.name].has_ended:
            self.finish(ref.name, 143, "stopped by SIGTERM")
        return self.statuses[ref.name]

    def logs(self, ref: ExecutionRef) -> str:
        return ""

    def finish(self, name: str, exit_code: int, detail: str = "exited") -> None:
        state = JobState.SUCCEEDED if exit_code == 0 else JobState.FAILED
        self.statuses[name] = JobStatus(state=state, exit_code=exit_code, detail=detail)


@pytest.fixture
def executor() -> FakeExecutor:
    return FakeExecutor()


@pytest.fixture
def arm(executor: FakeExecutor, tls_files: TlsFiles) -> Iterator[LoopbackArm]:
    with LoopbackArm(
        executor,
        certfile=tls_files.cert,
        keyfile=tls_files.key,
        platform_env=PLATFORM_ENV,
        page_size=2,
        token_validator=lambda token: token == TOKEN,
    ) as server:
        yield server


def make_client(arm: LoopbackArm, tls_files: TlsFiles, *, token: str = TOKEN, **kwargs: Any) -> ContainerAppsAPIClient:
    return ContainerAppsAPIClient(
        FixedCredential(token),  # type: ignore[arg-type]  # duck-typed TokenCredential
        kwargs.pop("subscription_id", arm.subscription_id),
        base_url=arm.base_url,
        polling_interval=0.05,
        connection_verify=str(tls_files.ca),
        **kwargs,
    )


@pytest.fixture
def client(arm: LoopbackArm, tls_files: TlsFiles) -> Iterator[ContainerAppsAPIClient]:
    with make_client(arm, tls_files) as sdk_client:
        yield sdk_client


def start_template(arm: LoopbackArm, **env: str) -> dict[str, Any]:
    """A start template as our backend builds one: the job's container, plus the run's env."""
    container = default_job_properties(arm.job_name)["template"]["containers"][0]
    body = {key: container[key] for key in ("name", "image", "resources")}
    body["env"] = [*container["env"], *({"name": name, "value": value} for name, value in env.items())]
    return {"containers": [body]}


def start(client: ContainerAppsAPIClient, arm: LoopbackArm, **env: str) -> str:
    result = client.jobs.begin_start(arm.resource_group, arm.job_name, start_template(arm, **env)).result()
    assert result.name is not None
    return result.name


def test_get_job_returns_the_definition_with_secret_names_only(
    arm: LoopbackArm, client: ContainerAppsAPIClient
) -> None:
    job = client.jobs.get(arm.resource_group, arm.job_name)

    assert (job.id, job.name, job.type) == (arm.job_id, arm.job_name, "Microsoft.App/jobs")
    assert job.properties.provisioning_state == "Succeeded"
    assert job.properties.configuration.trigger_type == "Manual"
    assert job.properties.configuration.manual_trigger_config.parallelism == 1
    assert [(s.name, s.value) for s in job.properties.configuration.secrets] == [("storage-connection", None)]
    container = job.properties.template.containers[0]
    assert (container.name, container.image, container.resources.memory) == (arm.job_name, "pacta-runner:local", "2Gi")
    assert container.env[0].secret_ref == "storage-connection"
    assert container.volume_mounts[0].mount_path == "/scratch"
    [request] = arm.requests_for("get_job")
    assert request.header("Authorization") == f"Bearer {TOKEN}"
    assert request.query["api-version"] == API_VERSION


def test_begin_start_polls_the_location_until_the_execution_exists(
    arm: LoopbackArm, client: ContainerAppsAPIClient, executor: FakeExecutor
) -> None:
    template = start_template(arm, TASK_TYPE="create_report")

    result = client.jobs.begin_start(arm.resource_group, arm.job_name, template).result()

    assert result.name is not None
    prefix, _, suffix = result.name.rpartition("-")
    assert prefix == arm.job_name
    assert len(suffix) == 5
    assert suffix == suffix.lower()
    assert result.id == f"{arm.job_id}/executions/{result.name}"
    [request] = arm.requests_for("start")
    assert request.path == f"{arm.job_id}/start"
    assert request.body == template
    assert len(arm.requests_for("start_result")) == 2  # 202 while provisioning, then 200
    assert list(executor.specs) == [result.name]


def test_the_executor_runs_the_template_env_with_secrets_resolved_and_platform_env(
    arm: LoopbackArm, client: ContainerAppsAPIClient, executor: FakeExecutor
) -> None:
    name = start(client, arm, TASK_TYPE="create_audit", RUN="r1")

    spec = executor.specs[name]
    assert spec.run_id == name
    assert spec.task_type is TaskType.CREATE_AUDIT
    assert spec.image == "pacta-runner:local"
    assert (spec.cpu, spec.memory, spec.deadline_seconds) == (1.0, "2Gi", 1800)
    assert spec.env["RUNNER_STORAGE_CONNECTION_STRING"] == "DefaultEndpointsProtocol=https;AccountName=lb"
    assert spec.env["RUN"] == "r1"
    assert spec.env["IDENTITY_HEADER"] == "loopback-header"
    effective = arm.executions[name].containers[0]
    assert effective["volumeMounts"] == [{"volumeName": "scratch", "mountPath": "/scratch"}]


def test_an_execution_is_running_then_succeeded_with_its_exit_code(
    arm: LoopbackArm, client: ContainerAppsAPIClient, executor: FakeExecutor
) -> None:
    name = start(client, arm)

    running = client.job_execution(arm.resource_group, arm.job_name, name)
    assert running.properties.status == "Running"
    assert running.properties.start_time is not None
    assert running.properties.end_time is None

    executor.finish(name, 0)
    ended = client.job_execution(arm.resource_group, arm.job_name, name)

    assert ended.type == "Microsoft.App/jobs/executions"
    assert ended.properties.status == "Succeeded"
    assert ended.properties.end_time >= ended.properties.start_time
    [replica] = ended.properties.detailed_status.replicas
    assert replica.containers[0].code == 0
    assert replica.containers[0].additional_information == "exited"


def test_a_non_zero_exit_is_failed_and_keeps_the_env_as_given(
    arm: LoopbackArm, client: ContainerAppsAPIClient, executor: FakeExecutor
) -> None:
    name = start(client, arm, RUN="r2")
    executor.finish(name, 3, "exit code 3")

    execution = client.job_execution(arm.resource_group, arm.job_name, name)

    assert execution.properties.status == "Failed"
    assert execution.properties.detailed_status.replicas[0].containers[0].code == 3
    env = {e.name: (e.value, e.secret_ref) for e in execution.properties.template.containers[0].env}
    assert env["RUNNER_STORAGE_CONNECTION_STRING"] == (None, "storage-connection")
    assert env["RUN"] == ("r2", None)
    assert "IDENTITY_HEADER" not in env


def test_list_follows_next_links_across_pages(arm: LoopbackArm, client: ContainerAppsAPIClient) -> None:
    names = [start(client, arm) for _ in range(5)]

    listed = [execution.name for execution in client.jobs_executions.list(arm.resource_group, arm.job_name)]

    assert listed == names
    pages = arm.requests_for("list_executions")
    assert [request.query.get("$skiptoken") for request in pages] == [None, "2", "4"]


def test_list_filters_by_status_on_every_page(
    arm: LoopbackArm, client: ContainerAppsAPIClient, executor: FakeExecutor
) -> None:
    names = [start(client, arm) for _ in range(5)]
    executor.finish(names[1], 0)

    running = client.jobs_executions.list(arm.resource_group, arm.job_name, filter="properties/status eq 'Running'")

    assert [execution.name for execution in running] == [names[0], *names[2:]]
    assert len(arm.requests_for("list_executions")) == 2


def test_begin_stop_execution_waits_until_stopped(
    arm: LoopbackArm, client: ContainerAppsAPIClient, executor: FakeExecutor
) -> None:
    name = start(client, arm)
    executor.stop_seconds = 0.3

    client.jobs.begin_stop_execution(arm.resource_group, arm.job_name, name).result()

    assert executor.stopped == [arm.executions[name].ref]
    assert len(arm.requests_for("stop_result")) >= 2  # 202 while the executor stops it, then 200
    execution = client.job_execution(arm.resource_group, arm.job_name, name)
    assert execution.properties.status == "Stopped"
    assert execution.properties.detailed_status.replicas[0].containers[0].code == 143


def test_stopping_an_ended_execution_succeeds_and_keeps_its_status(
    arm: LoopbackArm, client: ContainerAppsAPIClient, executor: FakeExecutor
) -> None:
    name = start(client, arm)
    executor.finish(name, 0)

    client.jobs.begin_stop_execution(arm.resource_group, arm.job_name, name).result()

    assert executor.stopped == []
    assert client.job_execution(arm.resource_group, arm.job_name, name).properties.status == "Succeeded"


def test_set_status_forces_what_an_execution_reports(arm: LoopbackArm, client: ContainerAppsAPIClient) -> None:
    name = start(client, arm)

    arm.set_status(name, "Degraded")

    assert client.job_execution(arm.resource_group, arm.job_name, name).properties.status == "Degraded"


def test_a_request_without_a_token_is_401_with_a_challenge(arm: LoopbackArm, tls_files: TlsFiles) -> None:
    url = f"{arm.base_url}{arm.job_id}"
    response = requests.get(url, params={"api-version": API_VERSION}, verify=str(tls_files.ca))

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "AuthenticationFailed"
    assert response.headers["WWW-Authenticate"].startswith("Bearer ")
    assert response.headers["Content-Type"] == "application/json; charset=utf-8"
    assert response.headers["x-ms-request-id"]
    assert response.headers["x-ms-correlation-request-id"]


def test_a_bad_token_is_a_client_authentication_error(arm: LoopbackArm, tls_files: TlsFiles) -> None:
    with make_client(arm, tls_files, token="stolen") as client, pytest.raises(ClientAuthenticationError) as raised:
        client.jobs.get(arm.resource_group, arm.job_name)

    assert raised.value.status_code == 401
    assert raised.value.error is not None
    assert raised.value.error.code == "InvalidAuthenticationToken"


def test_a_wrong_api_version_is_400(arm: LoopbackArm, tls_files: TlsFiles) -> None:
    response = requests.get(
        f"{arm.base_url}{arm.job_id}",
        params={"api-version": "2023-05-01"},
        headers={"Authorization": f"Bearer {TOKEN}"},
        verify=str(tls_files.ca),
    )

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "InvalidApiVersionParameter"
    assert "2023-05-01" in response.json()["error"]["message"]


def test_an_unknown_job_is_arm_resource_not_found(arm: LoopbackArm, client: ContainerAppsAPIClient) -> None:
    with pytest.raises(ResourceNotFoundError) as raised:
        client.jobs.get(arm.resource_group, "nope")

    assert raised.value.error is not None
    assert raised.value.error.code == "ResourceNotFound"
    assert f"The Resource 'Microsoft.App/jobs/nope' under resource group '{arm.resource_group}' was not found." in (
        raised.value.error.message or ""
    )


def test_an_unknown_execution_is_404(arm: LoopbackArm, client: ContainerAppsAPIClient) -> None:
    with pytest.raises(ResourceNotFoundError) as raised:
        client.job_execution(arm.resource_group, arm.job_name, f"{arm.job_name}-zzzzz")

    assert raised.value.error is not None
    assert raised.value.error.code == "ResourceNotFound"


def test_an_unknown_resource_group_and_subscription_have_their_own_codes(
    arm: LoopbackArm, client: ContainerAppsAPIClient, tls_files: TlsFiles
) -> None:
    with pytest.raises(ResourceNotFoundError) as group:
        client.jobs.get("rg-other", arm.job_name)
    with (
        make_client(arm, tls_files, subscription_id="99999999-0000-0000-0000-000000000000") as other,
        pytest.raises(ResourceNotFoundError) as subscription,
    ):
        other.jobs.get(arm.resource_group, arm.job_name)

    assert group.value.error is not None
    assert group.value.error.code == "ResourceGroupNotFound"
    assert subscription.value.error is not None
    assert subscription.value.error.code == "SubscriptionNotFound"


def test_a_throttled_start_is_retried_by_the_sdk_after_retry_after(
    arm: LoopbackArm, client: ContainerAppsAPIClient
) -> None:
    arm.fail_next("start", 429, headers={"Retry-After": "1"})

    name = start(client, arm)

    first, second = arm.requests_for("start")
    assert second.at - first.at >= 1.0
    assert list(arm.executions) == [name]


def test_a_throttled_start_without_retry_after_is_not_retried(
    arm: LoopbackArm, client: ContainerAppsAPIClient
) -> None:
    arm.fail_next("start", 429)

    with pytest.raises(HttpResponseError) as raised:
        start(client, arm)

    assert raised.value.status_code == 429
    assert len(arm.requests_for("start")) == 1
    assert arm.executions == {}


def test_a_500_is_retried_by_the_sdk_even_on_a_post(arm: LoopbackArm, client: ContainerAppsAPIClient) -> None:
    arm.fail_next("start", 500)
    arm.fail_next("get_execution", 500)

    name = start(client, arm)
    client.job_execution(arm.resource_group, arm.job_name, name)

    assert len(arm.requests_for("start")) == 2
    assert len(arm.requests_for("get_execution")) == 2


def test_a_forbidden_start_names_the_missing_action(
    arm: LoopbackArm, client: ContainerAppsAPIClient, executor: FakeExecutor
) -> None:
    arm.fail_next("start", 403)

    with pytest.raises(HttpResponseError) as raised:
        start(client, arm)

    assert raised.value.status_code == 403
    assert raised.value.error is not None
    assert raised.value.error.code == "AuthorizationFailed"
    assert "perform action 'Microsoft.App/jobs/start/action' over scope" in str(raised.value)
    assert f"over scope '{arm.job_id}'" in str(raised.value)
    assert executor.specs == {}


def test_close_ends_keep_alive_connections_and_frees_the_port(
    executor: FakeExecutor, tls_files: TlsFiles
) -> None:
    threads_before = threading.active_count()
    arm = LoopbackArm(executor, certfile=tls_files.cert, keyfile=tls_files.key).start()
    port = int(arm.base_url.rsplit(":", 1)[1])
    with make_client(arm, tls_files) as client:
        client.jobs.get(arm.resource_group, arm.job_name)  # leaves a keep-alive connection open

        arm.close()

        assert threading.active_count() == threads_before
        with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", port), timeout=5):
            pass


def test_an_execution_really_runs_on_the_process_backend(tmp_path: Path, tls_files: TlsFiles) -> None:
    properties = default_job_properties("pacta-runner")
    job_container = properties["template"]["containers"][0]
    job_container["command"] = [
        sys.executable,
        "-c",
        "import os, sys; print(os.environ['IDENTITY_ENDPOINT'], os.environ['RUNNER_STORAGE_CONNECTION_STRING']);"
        " sys.exit(int(os.environ['EXIT']))",
    ]
    backend = ProcessJobBackend(tmp_path / "runs", project_root=PROJECT_ROOT)
    with (
        LoopbackArm(
            backend,
            certfile=tls_files.cert,
            keyfile=tls_files.key,
            job_properties=properties,
            platform_env=PLATFORM_ENV,
        ) as arm,
        make_client(arm, tls_files) as client,
    ):
        # As the aca backend does: the job's container, with the run's env added.
        container = client.jobs.get(arm.resource_group, arm.job_name).properties.template.containers[0]
        template = {
            "containers": [
                {
                    "name": container.name,
                    "image": container.image,
                    "command": container.command,
                    "env": [*(dict(e) for e in container.env), {"name": "EXIT", "value": "3"}],
                    "resources": dict(container.resources),
                }
            ]
        }
        name = start_with(client, arm, template)

        ended = wait_for(
            lambda: _ended(client.job_execution(arm.resource_group, arm.job_name, name)),
            what=f"execution {name} to end",
            timeout=30,
        )

        assert ended.properties.status == "Failed"
        assert ended.properties.detailed_status.replicas[0].containers[0].code == 3
        log = backend.logs(arm.executions[name].ref)
        assert "https://127.0.0.1:1/msi/token DefaultEndpointsProtocol=https;AccountName=lb" in log


def start_with(client: ContainerAppsAPIClient, arm: LoopbackArm, template: dict[str, Any]) -> str:
    result = client.jobs.begin_start(arm.resource_group, arm.job_name, template).result()
    assert result.name is not None
    return result.name


def _ended(execution: Any) -> Any:
    return execution if execution.properties.status != "Running" else None
