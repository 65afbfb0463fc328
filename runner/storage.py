"""Blob and queue access for one run: download inputs, upload outputs, send the completion message.

`connect` is the one place that builds the storage clients: from the connection string (Azurite,
locally) or from the account URLs with DefaultAzureCredential (managed identity, in Azure). The
SDK's own retry policy covers transient failures; what is left becomes a RunnerError with a code.
"""

from __future__ import annotations

import logging
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from azure.core.exceptions import AzureError, HttpResponseError, ResourceExistsError
from azure.storage.blob import BlobServiceClient, ContentSettings
from azure.storage.queue import QueueClient

from orchestrations.contracts import RunnerEvent, blob_uri, parse_blob_uri
from runner.environment import OutputPrefix, RunnerSettings
from runner.errors import RunnerError

logger = logging.getLogger(__name__)

# Inputs are downloaded in parallel ranges: portfolios are small, report inputs can be large.
DOWNLOAD_CONCURRENCY = 4


@dataclass(frozen=True)
class StorageClients:
    blob_service: BlobServiceClient
    queue: QueueClient


def connect(settings: RunnerSettings) -> StorageClients:
    """Build the blob service and events queue clients from the settings; nothing is sent yet."""
    if settings.storage_connection_string is not None:
        connection_string = settings.storage_connection_string.get_secret_value()
        return StorageClients(
            blob_service=BlobServiceClient.from_connection_string(connection_string),
            # No encode policy: plain text, as host.json's `messageEncoding: none` expects.
            queue=QueueClient.from_connection_string(connection_string, settings.events_queue),
        )
    # Imported here: only the managed identity path needs azure-identity.
    from azure.identity import DefaultAzureCredential

    # The settings validator guarantees both URLs on this path.
    assert settings.blob_account_url is not None and settings.queue_account_url is not None
    credential = DefaultAzureCredential()
    return StorageClients(
        blob_service=BlobServiceClient(settings.blob_account_url, credential=credential),
        queue=QueueClient(settings.queue_account_url, settings.events_queue, credential=credential),
    )


class RunStorage:
    """The run's view of storage: inputs by URI, outputs relative to the output prefix."""

    def __init__(self, clients: StorageClients, output_prefix: OutputPrefix) -> None:
        self._clients = clients
        self._prefix = output_prefix

    def output_uri(self, relative: str) -> str:
        return self._prefix.uri(relative)

    def download(self, uri: str, destination: Path) -> None:
        """Stream the blob at `uri` into `destination`, never holding it whole in memory."""
        container, name = parse_blob_uri(uri)
        blob = self._clients.blob_service.get_blob_client(container, name)
        try:
            with destination.open("wb") as file:
                blob.download_blob(max_concurrency=DOWNLOAD_CONCURRENCY).readinto(file)
        except AzureError as error:
            raise RunnerError(
                "input_download_failed",
                f"Could not download the input {uri}: {_reason(error)}. Check that the blob exists "
                "and that the runner's identity may read it.",
            ) from error
        logger.info("downloaded %s (%d bytes)", uri, destination.stat().st_size)

    def upload_file(self, path: Path, relative: str, *, content_type: str) -> str:
        """Upload a local file to `<prefix><relative>` and return its URI."""
        with path.open("rb") as file:
            return self._upload(file, relative, content_type=content_type)

    def upload_text(self, text: str, relative: str, *, content_type: str) -> str:
        return self._upload(text.encode("utf-8"), relative, content_type=content_type)

    def ensure_output_container(self) -> None:
        """Create the output container if missing. Any other failure is only a warning: an identity
        without that right can still upload, and unreachable storage fails the uploads anyway."""
        try:
            self._clients.blob_service.create_container(self._prefix.container)
        except ResourceExistsError:
            pass
        except AzureError as error:
            logger.warning(
                "could not create container %s: %s", self._prefix.container, _reason(error)
            )

    def send_event(self, event: RunnerEvent) -> None:
        """Put the completion message on the events queue, creating the queue if it is missing."""
        queue = self._clients.queue
        try:
            with suppress(ResourceExistsError):
                queue.create_queue()
            queue.send_message(event.to_message())
        except AzureError as error:
            raise RunnerError(
                "event_send_failed",
                f"Could not send the completion message to queue {queue.queue_name}: "
                f"{_reason(error)}.",
            ) from error
        logger.info(
            "sent the %s completion message to queue %s", event.status.value, queue.queue_name
        )

    def close(self) -> None:
        self._clients.blob_service.close()
        self._clients.queue.close()

    def _upload(self, data: bytes | BinaryIO, relative: str, *, content_type: str) -> str:
        name = self._prefix.blob_name(relative)
        blob = self._clients.blob_service.get_blob_client(self._prefix.container, name)
        try:
            blob.upload_blob(
                data, overwrite=True, content_settings=ContentSettings(content_type=content_type)
            )
        except AzureError as error:
            raise RunnerError(
                "output_upload_failed",
                f"Could not upload {self._prefix.uri(relative)}: {_reason(error)}. Check that the "
                "runner's identity may write to the container.",
            ) from error
        uri = blob_uri(self._prefix.container, name)
        logger.info("uploaded %s", uri)
        return uri


def _reason(error: AzureError) -> str:
    """A one-line cause: the service's status and error code, or the client's first message line."""
    if isinstance(error, HttpResponseError) and error.status_code is not None:
        # The SDK sets `error_code` on storage errors only, so it is not part of the base type.
        return f"{error.status_code} {getattr(error, 'error_code', None) or error.reason}"
    first_line = str(error.message or error).splitlines()[0] if str(error) else ""
    return f"{type(error).__name__}: {first_line}" if first_line else type(error).__name__
