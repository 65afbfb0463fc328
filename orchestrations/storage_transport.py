"""The HTTP transport every storage client of the app, the local host and the runner is built with.

azure-core's default `RequestsTransport` hands each request to a `requests.Session` that looks up the proxy
variables (and NO_PROXY for each URL, ~/.netrc and the CA bundle variables) in the environment every time:
about a tenth of the client's CPU per storage request. Without a proxy there is nothing for it to find, so the
session is told not to look and gets the CA bundle it would have found instead; with a proxy set it still
looks, on every request, and applies NO_PROXY as before. The adapter also learns once whether that CA bundle
is a file or a directory, which requests otherwise asks the file system at every request (`_StorageAdapter`).
"""

from __future__ import annotations

import os
import urllib.request
from typing import Any

import requests
from azure.core.pipeline.transport import RequestsTransport
from requests import PreparedRequest
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

# Connections kept open per client: one for each thread that may call a shared client at once. By default the
# Python worker's function threads and asyncio's default executor are min(32, cores + 4) each, and the local
# host's intake runs up to 32 blob-trigger invocations at once. With fewer, a burst opens connections only to
# drop them (urllib3's "Connection pool is full"); a connection is opened only when a request needs one.
DEFAULT_POOL_SIZE = 32


class _StorageAdapter(HTTPAdapter):
    """requests' adapter, told when built whether the CA bundle is a file or a directory.

    requests puts the bundle in each request's connection pool key as `ca_certs` or `ca_cert_dir`, and decides
    which with `os.path.isdir` at every request (requests/adapters.py, `_urllib3_request_context`): a system
    call that also gives up the GIL, so in a busy process each request waits to take it back. The bundle is
    configuration, read once at start-up like the rest; any other `verify` goes to requests as before.
    """

    def __init__(self, ca_bundle: str | None, **options: Any) -> None:
        super().__init__(**options)
        self._ca_bundle = ca_bundle
        self._ca_key = "ca_cert_dir" if ca_bundle is not None and os.path.isdir(ca_bundle) else "ca_certs"

    def build_connection_pool_key_attributes(
        self, request: PreparedRequest, verify: bool | str, cert: Any = None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        if self._ca_bundle is None or verify != self._ca_bundle:
            return super().build_connection_pool_key_attributes(request, verify, cert)
        # What requests builds for a bundle path: certificates required, the path under the key for its kind.
        host_params, pool_kwargs = super().build_connection_pool_key_attributes(request, True, cert)
        pool_kwargs[self._ca_key] = self._ca_bundle
        return host_params, pool_kwargs


def storage_transport(*, pool_size: int = DEFAULT_POOL_SIZE, **options: Any) -> RequestsTransport:
    """A transport of its own for one client (it closes it), keeping up to `pool_size` connections open;
    `options` go to `RequestsTransport` (timeouts, block size)."""
    session = requests.Session()
    session.trust_env = bool(urllib.request.getproxies())
    ca_bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or None
    # As azure-core mounts its own adapter: no urllib3 retries, the SDK's retry policy does them.
    adapter = _StorageAdapter(
        ca_bundle,
        pool_connections=pool_size,
        pool_maxsize=pool_size,
        max_retries=Retry(total=False, redirect=False, raise_on_status=False),
    )
    for scheme in ("http://", "https://"):
        session.mount(scheme, adapter)
    return RequestsTransport(
        session=session,
        session_owner=True,
        connection_verify=ca_bundle or True,
        **options,
    )
