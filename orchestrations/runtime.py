"""The process-wide objects the activities and bindings share, each built once on first use.

Settings are loaded (and validated) when the Functions worker indexes the app, so a bad setting
fails the start-up, not the first run. Tests call `reset()` after changing the environment.
"""

from __future__ import annotations

import functools

from azure.storage.blob import BlobServiceClient

from orchestrations.backends import JobBackend, create_backend
from orchestrations.run_store import RunStore
from orchestrations.settings import AppSettings, load_settings


@functools.cache
def settings() -> AppSettings:
    return load_settings()


@functools.cache
def run_store() -> RunStore:
    current = settings()
    return RunStore.from_connection_string(current.storage_connection, current.runs_table)


@functools.cache
def backend() -> JobBackend:
    return create_backend(settings())


@functools.cache
def blob_service() -> BlobServiceClient:
    return BlobServiceClient.from_connection_string(settings().storage_connection)


def reset() -> None:
    """Forget everything built so far (tests, or a host that reloads the app)."""
    for cached in (settings, run_store, backend, blob_service):
        cached.cache_clear()
