"""The runner on its Azure path: account URLs, a managed identity, bearer tokens over HTTPS.

Azurite runs with `--oauth basic` on HTTPS (`azurite_oauth`), the managed identity endpoint that
Container Apps injects is stood in for by `identity_endpoint`, and the runner gets no connection
string: whatever it reads, writes and sends, it does with tokens from that endpoint.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from azure.core.credentials import AccessToken
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError
from azure.identity import ManagedIdentityCredential
from azure.storage.blob import BlobServiceClient
from azure.storage.queue import QueueClient

from local_runner.azurite import ACCOUNT_NAME, AzuriteEndpoints
from orchestrations.contracts import ResultDocument, RunnerEventStatus
from tests.cloud.fixtures import OAuthAzurite
from tests.cloud.identity import IdentityEndpoint, TokenRequest
from tests.cloud.tls import TestAuthority
from tests.runner.conftest import RunnerEnvironment, RunnerProcess, StorageView, storage_view
from tests.runner.test_runner_process import OUTPUT_SIMPLE_MD5

STORAGE_RESOURCE = "https://storage.azure.com"

RunRunner = Callable[..., RunnerProcess]
BuildEnv = Callable[..., RunnerEnvironment]


class FixedToken:
    """A credential that always presents the same bearer token."""

    def __init__(self, token: str) -> None:
        self._token = token

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken(self._token, int(time.time()) + 3600)


@pytest.fixture
def run_storage(
    azurite_oauth: OAuthAzurite, trust_test_authority: TestAuthority, unique_name: str
) -> Iterator[StorageView]:
    """The runner tests' storage view, on the OAuth Azurite (the test itself uses the shared key)."""
    with storage_view(azurite_oauth.connection_string, unique_name) as storage:
        yield storage


@pytest.fixture
def client_id() -> str:
    """A fresh user-assigned identity's client id, so a test finds its own token requests."""
    return str(uuid.uuid4())


def managed_identity_env(
    env: RunnerEnvironment, azurite: OAuthAzurite, client_id: str, identity: IdentityEndpoint | None
) -> dict[str, str]:
    """The runner's variables as a Container Apps job with a managed identity has them."""
    variables = {name: value for name, value in env.variables.items() if name != "RUNNER_STORAGE_CONNECTION_STRING"}
    variables |= {
        "RUNNER_BLOB_ACCOUNT_URL": azurite.blob_url,
        "RUNNER_QUEUE_ACCOUNT_URL": azurite.queue_url,
        "AZURE_CLIENT_ID": client_id,
        "REQUESTS_CA_BUNDLE": str(azurite.authority.bundle_path),
    }
    return variables | (identity.env() if identity is not None else {})


@pytest.mark.azurite
def test_the_runner_downloads_uploads_and_reports_with_managed_identity_tokens(
    run_runner: RunRunner,
    runner_env: BuildEnv,
    run_storage: StorageView,
    azurite_oauth: OAuthAzurite,
    identity_endpoint: IdentityEndpoint,
    client_id: str,
    fixtures_dir: Path,
) -> None:
    source = run_storage.upload_input("parse_portfolio/simple.csv", (fixtures_dir / "simple.csv").read_bytes())
    env = runner_env("parse_portfolio", [source])

    process = run_runner(managed_identity_env(env, azurite_oauth, client_id, identity_endpoint))

    assert process.exit_code == 0, process.stderr
    result = ResultDocument.model_validate_json(run_storage.read_blob(env.output_prefix + "result.json"))
    [output] = result.Outputs or []
    assert output.Source == source
    assert hashlib.md5(run_storage.read_blob(output.Blob.BlobURI)).hexdigest() == OUTPUT_SIMPLE_MD5
    assert run_storage.list_run_blobs(env.run_id) == sorted(
        [
            f"{env.run_id}/outputs/{output.Blob.FileName}",
            f"{env.run_id}/processed_portfolios.json",
            f"{env.run_id}/result.json",
            f"{env.run_id}/runner.log",
        ]
    )
    log = run_storage.read_blob(env.output_prefix + "runner.log").decode("utf-8")
    assert "run succeeded with 1 output(s)" in log
    [event] = run_storage.receive_events()
    assert (event.run_id, event.token, event.status, event.exit_code) == (
        env.run_id,
        env.token,
        RunnerEventStatus.SUCCEEDED,
        0,
    )
    assert event.result_uri == env.output_prefix + "result.json"
    assert event.log_uri == env.output_prefix + "runner.log"
    asked = [request for request in identity_endpoint.requests if request.client_id == client_id]
    assert asked and set(asked) == {TokenRequest(STORAGE_RESOURCE, client_id, granted=True)}


@pytest.mark.azurite
def test_without_a_managed_identity_the_runner_exits_2_saying_it_got_no_token(
    run_runner: RunRunner,
    runner_env: BuildEnv,
    run_storage: StorageView,
    azurite_oauth: OAuthAzurite,
    client_id: str,
    tmp_path: Path,
) -> None:
    env = runner_env("parse_portfolio", [f"az://{run_storage.uploads_container}/parse_portfolio/x.csv"])
    variables = managed_identity_env(env, azurite_oauth, client_id, identity=None)
    variables["RUNNER_WORK_DIR"] = str(tmp_path)

    process = run_runner(variables)

    assert process.exit_code == 2
    expected = f"Could not get a token for storage with the managed identity (AZURE_CLIENT_ID={client_id}): "
    log = (tmp_path / "runner.log").read_text(encoding="utf-8")
    for text in (process.stderr, log):
        assert "cannot reach storage, so cannot report either: " + expected in text
        assert "IDENTITY_ENDPOINT is not set" in text and "assign a managed identity to the job" in text
    assert run_storage.list_run_blobs(env.run_id) == []
    assert run_storage.receive_events() == []


@pytest.mark.azurite
def test_an_identity_not_assigned_to_the_job_is_refused_and_the_runner_says_so(
    run_runner: RunRunner, runner_env: BuildEnv, run_storage: StorageView, azurite_oauth: OAuthAzurite, client_id: str
) -> None:
    env = runner_env("parse_portfolio", [f"az://{run_storage.uploads_container}/parse_portfolio/x.csv"])

    with IdentityEndpoint(known_client_ids={"some-other-identity"}) as identity:
        process = run_runner(managed_identity_env(env, azurite_oauth, client_id, identity))
        requests = identity.requests

    assert process.exit_code == 2
    assert f"managed identity (AZURE_CLIENT_ID={client_id}): " in process.stderr
    assert "Unable to load the proper Managed Identity" in process.stderr
    assert requests and set(requests) == {TokenRequest(STORAGE_RESOURCE, client_id, granted=False)}
    assert run_storage.receive_events() == []


@pytest.mark.azurite
@pytest.mark.parametrize(
    ("resource", "age_seconds"),
    [("https://management.azure.com", 0), (STORAGE_RESOURCE, 2 * 3600)],
    ids=["wrong-audience", "expired"],
)
def test_azurite_refuses_a_token_for_another_audience_or_an_expired_one(
    azurite_oauth: OAuthAzurite,
    identity_endpoint: IdentityEndpoint,
    trust_test_authority: TestAuthority,
    resource: str,
    age_seconds: int,
) -> None:
    token = identity_endpoint.mint(resource, issued_at=int(time.time()) - age_seconds)
    good = BlobServiceClient(azurite_oauth.blob_url, credential=FixedToken(identity_endpoint.mint(STORAGE_RESOURCE)))
    bad = BlobServiceClient(azurite_oauth.blob_url, credential=FixedToken(token))

    assert good.get_service_properties() is not None
    with pytest.raises(HttpResponseError) as refused:
        bad.get_service_properties()

    assert refused.value.status_code == 403
    assert getattr(refused.value, "error_code", None) == "AuthenticationFailed"


@pytest.mark.azurite
def test_the_shared_key_still_works_on_the_oauth_azurite(
    azurite_oauth: OAuthAzurite, trust_test_authority: TestAuthority, unique_name: str
) -> None:
    blobs = BlobServiceClient.from_connection_string(azurite_oauth.connection_string)
    blobs.create_container(unique_name)
    blobs.get_blob_client(unique_name, "a.txt").upload_blob(b"shared key")
    queue = QueueClient.from_connection_string(azurite_oauth.connection_string, unique_name)
    queue.create_queue()
    queue.send_message("hello")

    assert blobs.get_blob_client(unique_name, "a.txt").download_blob().readall() == b"shared key"
    assert [message.content for message in queue.receive_messages()] == ["hello"]
    assert azurite_oauth.connection_string.startswith("DefaultEndpointsProtocol=https;")


def test_https_endpoints_give_https_account_urls_and_connection_string() -> None:
    endpoints = AzuriteEndpoints("127.0.0.1", 1, 2, 3, scheme="https")

    assert (endpoints.blob_url, endpoints.queue_url, endpoints.table_url) == (
        f"https://127.0.0.1:1/{ACCOUNT_NAME}",
        f"https://127.0.0.1:2/{ACCOUNT_NAME}",
        f"https://127.0.0.1:3/{ACCOUNT_NAME}",
    )
    assert endpoints.connection_string.startswith("DefaultEndpointsProtocol=https;")
    assert f"BlobEndpoint=https://127.0.0.1:1/{ACCOUNT_NAME};" in endpoints.connection_string
    assert AzuriteEndpoints("127.0.0.1", 1, 2, 3).blob_url == f"http://127.0.0.1:1/{ACCOUNT_NAME}"


def test_the_identity_endpoint_validates_only_its_own_current_tokens_for_the_audience() -> None:
    identity, stranger = IdentityEndpoint(), IdentityEndpoint()
    token = identity.mint(STORAGE_RESOURCE, "client")

    assert identity.token_is_valid(token, STORAGE_RESOURCE)
    assert identity.token_is_valid(token, STORAGE_RESOURCE + "/")
    assert not identity.token_is_valid(token, "https://management.azure.com")
    assert not stranger.token_is_valid(token, STORAGE_RESOURCE)
    assert not identity.token_is_valid(identity.mint(STORAGE_RESOURCE, issued_at=0), STORAGE_RESOURCE)
    assert not identity.token_is_valid("not.a.token", STORAGE_RESOURCE)


def test_azure_identity_gets_tokens_from_the_endpoint_until_it_refuses(monkeypatch: pytest.MonkeyPatch) -> None:
    with IdentityEndpoint() as identity:
        for name, value in identity.env().items():
            monkeypatch.setenv(name, value)
        token = ManagedIdentityCredential(client_id="granted").get_token(f"{STORAGE_RESOURCE}/.default")
        identity.refuse = True
        with pytest.raises(ClientAuthenticationError, match="Unable to load the proper Managed Identity"):
            ManagedIdentityCredential(client_id="refused").get_token(f"{STORAGE_RESOURCE}/.default")

    assert identity.token_is_valid(token.token, STORAGE_RESOURCE)
    claims = identity.claims(token.token) or {}
    assert (claims["appid"], claims["tid"], claims["iss"]) == ("granted", identity.tenant_id, identity.issuer)
    assert identity.requests == [
        TokenRequest(STORAGE_RESOURCE, "granted", granted=True),
        TokenRequest(STORAGE_RESOURCE, "refused", granted=False),
    ]
