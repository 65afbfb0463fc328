"""Orchestration instances kept in Azure blob storage (Azurite locally): one JSON blob per instance.

The container is `<task hub, lowercased>-instances`. Every write is conditional on the etag last
read or written, so two writers never silently overwrite each other; the runtime status is also
kept in the blob's metadata so that listing the unfinished instances reads only those blobs.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterator
from urllib.parse import quote, unquote

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.storage.blob import BlobServiceClient, ContainerClient

from local_runner.host.durable.errors import StoreConflictError
from local_runner.host.durable.state import InstanceState, RuntimeStatus
from orchestrations.storage_transport import storage_transport

# Durable task hub names (Azure Storage provider): a letter, then letters and digits, 3 to 45.
_TASK_HUB = re.compile(r"^[A-Za-z][A-Za-z0-9]{2,44}$")
_STATUS_METADATA = "runtimestatus"


def instances_container_name(task_hub: str) -> str:
    if not _TASK_HUB.match(task_hub):
        raise ValueError(
            f"task_hub {task_hub!r} is not a valid task hub name: use 3 to 45 letters and digits, "
            "starting with a letter (host.json extensions.durableTask.hubName)."
        )
    return f"{task_hub.lower()}-instances"


class InstanceStore:
    def __init__(self, container: ContainerClient) -> None:
        self._container = container

    @classmethod
    def from_connection_string(cls, connection_string: str, task_hub: str) -> InstanceStore:
        """The store for `task_hub`, creating its container if it does not exist yet."""
        service = BlobServiceClient.from_connection_string(connection_string, transport=storage_transport())
        container = service.get_container_client(instances_container_name(task_hub))
        with contextlib.suppress(ResourceExistsError):
            container.create_container()
        return cls(container)

    @property
    def container_name(self) -> str:
        return str(self._container.container_name)

    def get(self, instance_id: str) -> InstanceState | None:
        """The stored instance, or None if there is none under this id."""
        try:
            download = self._container.get_blob_client(_blob_name(instance_id)).download_blob()
        except ResourceNotFoundError:
            return None
        data = json.loads(download.readall())
        return InstanceState.from_json(data, etag=download.properties.etag)

    def save(self, state: InstanceState) -> None:
        """Write `state`: create it if it has no etag, else replace the version it was read as.

        Sets `state.etag` to the new version. Raises `StoreConflictError` when the blob was
        created or changed by someone else in between.
        """
        blob = self._container.get_blob_client(_blob_name(state.instance_id))
        body = json.dumps(state.to_json(), separators=(",", ":"))
        metadata = {_STATUS_METADATA: state.status.value}
        try:
            if state.etag is None:
                result = blob.upload_blob(body, overwrite=False, metadata=metadata)
            else:
                result = blob.upload_blob(
                    body, overwrite=True, metadata=metadata,
                    etag=state.etag, match_condition=MatchConditions.IfNotModified,
                )
        except (ResourceExistsError, ResourceModifiedError) as exc:
            raise StoreConflictError(state.instance_id) from exc
        state.etag = result["etag"]

    def list_instance_ids(self, *, statuses: set[RuntimeStatus] | None = None) -> list[str]:
        """Ids of the stored instances, only those in `statuses` when given."""
        ids = []
        for blob in self._container.list_blobs(include=["metadata"]):
            status = (blob.metadata or {}).get(_STATUS_METADATA)
            if statuses is None or status in {s.value for s in statuses}:
                ids.append(unquote(blob.name))
        return ids

    def list_states(self, *, statuses: set[RuntimeStatus] | None = None) -> Iterator[InstanceState]:
        for instance_id in self.list_instance_ids(statuses=statuses):
            state = self.get(instance_id)
            if state is not None:
                yield state


def _blob_name(instance_id: str) -> str:
    # Instance ids may hold any character; keep each one a single, flat blob name.
    return quote(instance_id, safe="")
