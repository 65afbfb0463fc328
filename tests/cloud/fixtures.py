"""Fixtures for tests that run the way Azure does: HTTPS, bearer tokens, a managed identity.

A pytest plugin (`pytest_plugins = ["tests.cloud.fixtures"]` in tests/conftest.py). The session
gets one throwaway CA (`test_authority`), one managed identity endpoint (`identity_endpoint`)
and one Azurite that serves HTTPS and accepts bearer tokens (`azurite_oauth`); a test that
talks to them from this process trusts the CA through `trust_test_authority`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from local_runner.azurite import AzuriteEndpoints, find_azurite, free_port, start_azurite
from tests.cloud.identity import IdentityEndpoint
from tests.cloud.tls import TestAuthority
from tests.conftest import missing_service


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
