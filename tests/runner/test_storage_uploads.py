"""RunStorage.upload_files on a real Azurite: concurrent, in order, failures named."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from azure.storage.blob import BlobServiceClient
from azure.storage.queue import QueueClient

from runner.environment import OutputPrefix
from runner.storage import BlobFile, RunStorage, StorageClients, UploadsFailedError, blob_transport

pytestmark = pytest.mark.azurite


@pytest.fixture
def storage(azurite: str, unique_name: str) -> Iterator[RunStorage]:
    clients = StorageClients(
        BlobServiceClient.from_connection_string(azurite, transport=blob_transport()),
        QueueClient.from_connection_string(azurite, f"{unique_name}-events"),
    )
    run_storage = RunStorage(clients, OutputPrefix.parse(f"az://{unique_name}/run-1/"))
    run_storage.ensure_output_container()
    yield run_storage
    run_storage.close()


def small_files(directory: Path, count: int) -> list[Path]:
    paths = []
    for number in range(count):
        path = directory / f"f{number:03}.txt"
        path.write_text(f"file {number}\n")
        paths.append(path)
    return paths


def test_uploads_run_concurrently_and_return_uris_in_the_order_given(
    storage: RunStorage, tmp_path: Path, unique_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="urllib3")
    paths = small_files(tmp_path, 60)
    files = [storage.output_file(path, f"out/{path.name}", content_type="text/plain") for path in paths]

    uris = storage.upload_files(files, concurrency=16)

    assert uris == [f"az://{unique_name}/run-1/out/f{number:03}.txt" for number in range(60)]
    assert "Connection pool is full" not in caplog.text


def test_a_failed_upload_is_named_and_the_ones_that_succeeded_are_reported(
    storage: RunStorage, tmp_path: Path, unique_name: str
) -> None:
    paths = small_files(tmp_path, 5)
    files = [BlobFile(paths[0], f"{unique_name}-missing", "x.txt", "text/plain")] + [
        storage.output_file(path, path.name, content_type="text/plain") for path in paths[1:]
    ]

    with pytest.raises(UploadsFailedError) as caught:
        storage.upload_files(files, concurrency=16)

    assert caught.value.code == "output_upload_failed"
    assert f"Could not upload az://{unique_name}-missing/x.txt: 404 ContainerNotFound" in caught.value.message
    # Uploads still queued when the failure is seen are cancelled, so how many got through varies.
    uploaded = caught.value.uploaded
    assert f"(1 of 5 upload(s) failed, {len(uploaded)} succeeded" in caught.value.message
    assert set(uploaded) <= {1, 2, 3, 4}
