"""The process-wide objects the activities and bindings share, each built once on first use.

Settings are loaded (and validated) when the Functions worker indexes the app, so a bad setting
fails the start-up, not the first run. Tests call `reset()` after changing the environment.
"""

from __future__ import annotations

import functools

from azure.core.credentials import TokenCredential
from azure.data.tables import TableServiceClient
from azure.storage.blob import BlobServiceClient

from orchestrations.backends import JobBackend, create_backend
from orchestrations.run_slots import RunSlots
from orchestrations.run_store import RunStore
from orchestrations.settings import AppSettings, load_settings
from orchestrations.storage_transport import storage_transport


@functools.cache
def settings() -> AppSettings:
    return load_settings()


@functools.cache
def run_store() -> RunStore:
    current = settings()
    if current.storage_connection is not None:
        return RunStore.from_connection_string(current.storage_connection, current.runs_table)
    assert current.storage_table_uri is not None  # AppSettings requires one or the other
    tables = TableServiceClient(
        current.storage_table_uri, credential=storage_credential(), transport=storage_transport()
    )
    return RunStore.open(tables, current.runs_table)


@functools.cache
def run_slots() -> RunSlots:
    """The concurrency cap's slots and line: rows of the runs table beside the run records."""
    return RunSlots(run_store().table)


@functools.cache
def backend() -> JobBackend:
    return create_backend(settings())


@functools.cache
def blob_service() -> BlobServiceClient:
    current = settings()
    if current.storage_connection is not None:
        return BlobServiceClient.from_connection_string(current.storage_connection, transport=storage_transport())
    assert current.storage_blob_uri is not None
    return BlobServiceClient(current.storage_blob_uri, credential=storage_credential(), transport=storage_transport())


@functools.cache
def storage_credential() -> TokenCredential:
    """The app's identity for identity-based storage, as the Functions host picks it for AzureWebJobsStorage."""
    from azure.identity import DefaultAzureCredential, ManagedIdentityCredential

    client_id = settings().storage_client_id
    return ManagedIdentityCredential(client_id=client_id) if client_id else DefaultAzureCredential()


def reset() -> None:
    """Forget everything built so far (tests, or a host that reloads the app)."""
    for cached in (settings, run_store, run_slots, backend, blob_service, storage_credential):
        cached.cache_clear()
