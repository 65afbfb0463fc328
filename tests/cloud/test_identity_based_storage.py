"""The app's own storage with the Functions host's identity-based connection (`AzureWebJobsStorage__*`):
no account key anywhere, tokens from the app's managed identity, against Azurite over HTTPS with OAuth."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from orchestrations import runtime
from orchestrations.contracts import RunRecord, RunStatus
from orchestrations.job_spec import storage_env
from orchestrations.settings import AppSettings
from tests.cloud.fixtures import APP_CLIENT_ID, OAuthAzurite
from tests.cloud.identity import IdentityEndpoint
from tests.cloud.tls import TestAuthority

STORAGE_RESOURCE = "https://storage.azure.com"


def settings(**values: object) -> AppSettings:
    return AppSettings.model_validate(values)


@pytest.fixture
def identity_based_app(
    azurite_oauth: OAuthAzurite, identity_endpoint: IdentityEndpoint, trust_test_authority: TestAuthority,
    monkeypatch: pytest.MonkeyPatch, unique_name: str,
) -> Iterator[str]:
    """The app settings of a Function App whose AzureWebJobsStorage is identity-based; yields the table name."""
    monkeypatch.delenv("AzureWebJobsStorage", raising=False)
    for name, value in {
        "AzureWebJobsStorage__blobServiceUri": azurite_oauth.blob_url,
        "AzureWebJobsStorage__queueServiceUri": azurite_oauth.queue_url,
        "AzureWebJobsStorage__tableServiceUri": azurite_oauth.endpoints.table_url,
        "AzureWebJobsStorage__clientId": APP_CLIENT_ID,
        "AzureWebJobsStorage__credential": "managedidentity",
        "RUNNER_BACKEND": "process",
        "RUNNER_STORAGE_AUTH": "managed_identity",
        "RUNS_TABLE": f"runs{unique_name}",
        **identity_endpoint.env(),
    }.items():
        monkeypatch.setenv(name, value)
    runtime.reset()
    yield f"runs{unique_name}"
    runtime.reset()


def test_run_records_and_blobs_go_through_the_apps_identity(
    identity_based_app: str, azurite_oauth: OAuthAzurite, identity_endpoint: IdentityEndpoint, unique_name: str
) -> None:
    at = datetime(2026, 11, 27, tzinfo=UTC)
    record = RunRecord(run_id="run-identity", status=RunStatus.QUEUED, task_type="parse_portfolio",
                       source_uri="az://uploads/parse_portfolio/a.csv", requested_at=at, updated_at=at)
    asked_before = len(identity_endpoint.requests)

    runtime.run_store().create_if_absent(record)
    container = runtime.blob_service().create_container(f"{unique_name}-runs")
    container.upload_blob("result.json", b"{}")

    assert runtime.run_store().get_run("run-identity").status is RunStatus.QUEUED
    assert container.download_blob("result.json").readall() == b"{}"
    asked = identity_endpoint.requests[asked_before:]
    assert asked and {(request.resource, request.client_id) for request in asked} == {
        (STORAGE_RESOURCE, APP_CLIENT_ID)
    }
    assert runtime.settings().storage_connection is None


def test_the_account_name_alone_gives_the_three_endpoints() -> None:
    configured = settings(**{"AzureWebJobsStorage__accountName": "pactaprod", "RUNNER_BACKEND": "aca"})

    assert configured.storage_blob_uri == "https://pactaprod.blob.core.windows.net/"
    assert configured.storage_queue_uri == "https://pactaprod.queue.core.windows.net/"
    assert configured.storage_table_uri == "https://pactaprod.table.core.windows.net/"
    assert storage_env(configured) == {
        "RUNNER_BLOB_ACCOUNT_URL": "https://pactaprod.blob.core.windows.net/",
        "RUNNER_QUEUE_ACCOUNT_URL": "https://pactaprod.queue.core.windows.net/",
    }


def test_no_storage_at_all_is_named() -> None:
    with pytest.raises(ValueError, match="AzureWebJobsStorage__accountName"):
        settings()


def test_a_runner_that_needs_a_connection_string_with_identity_based_storage_is_named() -> None:
    with pytest.raises(ValueError, match="RUNNER_STORAGE_CONNECTION"):
        settings(**{"AzureWebJobsStorage__accountName": "pactaprod", "RUNNER_BACKEND": "process"})

    given = settings(**{"AzureWebJobsStorage__accountName": "pactaprod", "RUNNER_BACKEND": "process",
                        "RUNNER_STORAGE_CONNECTION": "UseDevelopmentStorage=true"})
    assert storage_env(given) == {"RUNNER_STORAGE_CONNECTION_STRING": "UseDevelopmentStorage=true"}
