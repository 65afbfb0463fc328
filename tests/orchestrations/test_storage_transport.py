"""The storage transport (the app's, the local host's and the runner's clients) reads requests' environment settings
once, when it is built, unless a proxy is set."""

from __future__ import annotations

import pytest

from orchestrations.storage_transport import storage_transport

PROXY_VARS = [f"{scheme}_proxy" for scheme in ("http", "https", "all", "no")]
PROXY_VARS += [name.upper() for name in PROXY_VARS]


@pytest.fixture
def no_proxy_set(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in PROXY_VARS:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_without_a_proxy_requests_does_not_read_the_environment_per_request_and_gets_the_ca_bundle_once(
    no_proxy_set: pytest.MonkeyPatch,
) -> None:
    no_proxy_set.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/corporate.pem")

    transport = storage_transport()

    assert transport.session is not None and transport.session.trust_env is False
    assert transport.connection_config.verify == "/etc/ssl/certs/corporate.pem"


def test_without_a_ca_bundle_variable_certificates_are_verified_as_requests_does_by_default(
    no_proxy_set: pytest.MonkeyPatch,
) -> None:
    no_proxy_set.delenv("REQUESTS_CA_BUNDLE", raising=False)
    no_proxy_set.delenv("CURL_CA_BUNDLE", raising=False)

    assert storage_transport().connection_config.verify is True


def test_with_a_proxy_set_requests_reads_the_environment_on_each_request_as_before(
    no_proxy_set: pytest.MonkeyPatch,
) -> None:
    no_proxy_set.setenv("HTTPS_PROXY", "http://proxy.example:3128")

    transport = storage_transport()

    assert transport.session is not None and transport.session.trust_env is True
