"""The storage transport (the app's, the local host's and the runner's clients) reads requests' environment settings
once, when it is built, unless a proxy is set, and learns once what kind of CA bundle it has."""

from __future__ import annotations

import http.server
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from requests.adapters import HTTPAdapter

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


@pytest.fixture
def http_server() -> Iterator[str]:
    """A loopback HTTP server that answers every GET with 200: its URL."""

    class Ok(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Ok)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        thread.join()


@pytest.fixture
def ca_bundle(no_proxy_set: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """An empty CA bundle file that REQUESTS_CA_BUNDLE names (plain HTTP never reads it)."""
    bundle = tmp_path / "bundle.pem"
    bundle.write_text("")
    no_proxy_set.setenv("REQUESTS_CA_BUNDLE", str(bundle))
    return bundle


def test_requests_through_the_transport_do_not_ask_the_file_system_what_the_ca_bundle_is(
    no_proxy_set: pytest.MonkeyPatch, ca_bundle: Path, http_server: str
) -> None:
    bundle = ca_bundle
    transport = storage_transport()
    asked: list[str] = []
    isdir = os.path.isdir

    def recording_isdir(path: str) -> bool:
        asked.append(str(path))
        return isdir(path)

    no_proxy_set.setattr(os.path, "isdir", recording_isdir)

    for _ in range(3):
        assert transport.session is not None
        assert transport.session.get(http_server, verify=str(bundle)).status_code == 200

    assert str(bundle) not in asked


@pytest.mark.parametrize("kind", ["file", "directory"])
def test_the_connection_pool_is_chosen_by_the_ca_bundle_as_requests_chooses_it(
    no_proxy_set: pytest.MonkeyPatch, tmp_path: Path, kind: str
) -> None:
    bundle = tmp_path / "certs"
    if kind == "directory":
        bundle.mkdir()
    else:
        bundle.write_text("")
    no_proxy_set.setenv("REQUESTS_CA_BUNDLE", str(bundle))
    session = storage_transport().session
    assert session is not None
    adapter = session.get_adapter("https://account.blob.core.windows.net/")
    request = requests.Request("GET", "https://account.blob.core.windows.net/c/b").prepare()

    for verify in (str(bundle), True, False, str(tmp_path / "another.pem")):
        assert adapter.build_connection_pool_key_attributes(request, verify) == (
            HTTPAdapter().build_connection_pool_key_attributes(request, verify)
        )


def test_behind_a_proxy_no_proxy_still_sends_the_hosts_it_names_direct(
    no_proxy_set: pytest.MonkeyPatch, ca_bundle: Path, http_server: str
) -> None:
    bundle = ca_bundle
    no_proxy_set.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # nothing listens there: a proxied request fails
    no_proxy_set.setenv("NO_PROXY", "127.0.0.1")
    transport = storage_transport()
    assert transport.session is not None

    assert transport.session.get(http_server, verify=str(bundle)).status_code == 200
    no_proxy_set.delenv("NO_PROXY")
    with pytest.raises(requests.exceptions.ProxyError):
        transport.session.get(http_server, verify=str(bundle))
