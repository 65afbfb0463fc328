"""Fixtures for tests that run the way Azure does: HTTPS, bearer tokens, a managed identity.

A pytest plugin (`pytest_plugins = ["tests.cloud.fixtures"]` in tests/conftest.py). The session
gets one throwaway CA (`test_authority`), one managed identity endpoint (`identity_endpoint`)
and one Azurite that serves HTTPS and accepts bearer tokens (`azurite_oauth`); a test that
talks to them from this process trusts the CA through `trust_test_authority`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from local_runner.azurite import AzuriteEndpoints, find_azurite, free_port, start_azurite
from local_runner.process_backend import ProcessJobBackend
from tests.cloud.arm import LoopbackArm, default_job_properties
from tests.cloud.identity import IdentityEndpoint
from tests.cloud.tls import TestAuthority
from tests.conftest import PROJECT_ROOT, missing_service


@dataclass(frozen=True)
class OAuthAzurite:
    """A running Azurite on HTTPS with `--oauth basic`: shared key and bearer tokens both work."""

    endpoints: AzuriteEndpoints
    authority: TestAuthority

    @property
    def connection_string(self) -> str:
        return self.endpoints.connection_string

    @property
    def blob_url(self) -> str:
        return self.endpoints.blob_url

    @property
    def queue_url(self) -> str:
        return self.endpoints.queue_url


@pytest.fixture(scope="session")
def test_authority(tmp_path_factory: pytest.TempPathFactory) -> TestAuthority:
    """A CA, a loopback server certificate signed by it and `bundle.pem` (certifi's roots + the CA)."""
    return TestAuthority(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="session")
def identity_endpoint() -> Iterator[IdentityEndpoint]:
    """The managed identity endpoint (`.env()` gives IDENTITY_ENDPOINT and IDENTITY_HEADER).

    Shared by the session: a test that sets `refuse` must set it back."""
    with IdentityEndpoint() as endpoint:
        yield endpoint


@pytest.fixture(scope="session")
def azurite_oauth(tmp_path_factory: pytest.TempPathFactory, test_authority: TestAuthority) -> Iterator[OAuthAzurite]:
    """A private, in-memory Azurite on free loopback ports over HTTPS, accepting bearer tokens."""
    if find_azurite() is None:
        missing_service("Azurite is not installed (run scripts/bootstrap.sh, or `make test`)")
    endpoints = AzuriteEndpoints("127.0.0.1", free_port(), free_port(), free_port(), scheme="https")
    log = tmp_path_factory.mktemp("azurite-oauth") / "azurite.log"
    process = start_azurite(endpoints, log_path=log, tls=test_authority.tls, oauth=True)
    try:
        yield OAuthAzurite(endpoints, test_authority)
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture
def trust_test_authority(test_authority: TestAuthority, monkeypatch: pytest.MonkeyPatch) -> TestAuthority:
    """Make requests (and so the Azure SDKs) in this process trust the test CA, for this test."""
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(test_authority.bundle_path))
    return test_authority


ARM_RESOURCE = "https://management.azure.com"
# Client ids of the two user-assigned identities a deployment has: the Function App's and the runner's.
APP_CLIENT_ID = "0a0a0a0a-0000-4000-8000-00000000a001"
RUNNER_CLIENT_ID = "0b0b0b0b-0000-4000-8000-00000000b001"


def runner_job_properties(job_name: str) -> dict[str, Any]:
    """A job defined as docs/azure-container-apps.md asks (manual, replica timeout above the deadline, no
    platform retries) whose runner container keeps a secret reference and a plain variable of its own, and no
    storage key."""
    properties = default_job_properties(job_name)
    properties["configuration"]["secrets"] = [{"name": "pacta-api-key", "value": "not-for-the-run"}]
    (container,) = properties["template"]["containers"]
    container["env"] = [
        {"name": "PACTA_API_KEY", "secretRef": "pacta-api-key"},
        {"name": "LOG_LEVEL", "value": "INFO"},
    ]
    return properties


@dataclass
class ContainerAppsCloud:
    """A loopback Container Apps job behind a loopback ARM, and the app settings that reach it."""

    arm: LoopbackArm
    identity: IdentityEndpoint

    def app_settings(self, **extra: str) -> dict[str, str]:
        """What the Function App is given in Azure to start runs on the job (plus what the platform injects)."""
        return {
            "RUNNER_BACKEND": "aca",
            "ACA_SUBSCRIPTION_ID": self.arm.subscription_id,
            "ACA_RESOURCE_GROUP": self.arm.resource_group,
            "ACA_JOB_NAME": self.arm.job_name,
            "ACA_ARM_ENDPOINT": self.arm.base_url,
            "ACA_MANAGED_IDENTITY_CLIENT_ID": APP_CLIENT_ID,
            "RUNNER_CLIENT_ID": RUNNER_CLIENT_ID,
            **self.identity.env(),
            **extra,
        }

    def run_ids(self) -> list[str]:
        """The run id of every execution started, in order (one entry per execution)."""
        return [execution.spec.env.get("RUNNER_RUN_ID", "") for execution in self.arm.executions.values()]


@pytest.fixture
def container_apps(
    tmp_path: Path, test_authority: TestAuthority, identity_endpoint: IdentityEndpoint,
    trust_test_authority: TestAuthority,
) -> Iterator[ContainerAppsCloud]:
    """A Container Apps job whose executions run as local processes, behind a loopback ARM that accepts
    only the identity endpoint's tokens for Resource Manager; this process trusts its certificate."""
    executor = ProcessJobBackend(tmp_path / "aca-executions", project_root=PROJECT_ROOT)
    arm = LoopbackArm(
        executor,
        certfile=test_authority.cert_path,
        keyfile=test_authority.key_path,
        job_properties=runner_job_properties("pacta-runner"),
        # What Container Apps gives a job with a managed identity; the CA stands in for the public roots.
        platform_env={**identity_endpoint.env(), "REQUESTS_CA_BUNDLE": str(test_authority.bundle_path)},
        token_validator=lambda token: identity_endpoint.token_is_valid(token, ARM_RESOURCE),
    )
    with arm:
        yield ContainerAppsCloud(arm, identity_endpoint)
        for execution in arm.executions.values():
            executor.stop(execution.ref)
