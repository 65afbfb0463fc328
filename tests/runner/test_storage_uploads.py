"""RunStorage on a real Azurite: uploads concurrent, in order, failures named; and the runner asks storage
for nothing but reads, writes and one message where the deployment made the containers and the queue
(in Azure its identity may do no more: infra/app/rbac.bicep)."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import ssl
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import certifi
import pytest
from azure.core.pipeline.transport import AioHttpTransport
from azure.storage.blob import BlobServiceClient
from azure.storage.blob.aio import BlobServiceClient as AsyncBlobServiceClient
from azure.storage.queue import QueueClient

from orchestrations.contracts import RunError, RunnerEvent, RunnerEventStatus
from runner import storage as storage_module
from runner.environment import OutputPrefix
from runner.errors import TerminatedError
from runner.storage import (
    BLOCK_CONCURRENCY,
    BlobFile,
    RunStorage,
    StorageClients,
    UploadsFailedError,
    async_blob_transport,
    blob_transport,
)

pytestmark = pytest.mark.azurite


@pytest.fixture
def storage(azurite: str, unique_name: str) -> Iterator[RunStorage]:
    clients = StorageClients(
        BlobServiceClient.from_connection_string(azurite, transport=blob_transport()),
        QueueClient.from_connection_string(azurite, f"{unique_name}-events"),
    )
    run_storage = RunStorage(clients, OutputPrefix.parse(f"az://{unique_name}/run-1/"))
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


class HeldBackTransport(AioHttpTransport):
    """azure-core's aiohttp transport, each request held back a moment before it is sent (the event loop waits)."""

    async def send(self, request: Any, **kwargs: Any) -> Any:
        await asyncio.sleep(0.2)
        return await super().send(request, **kwargs)


def hooked_storage(
    azurite: str, container: str, on_request: Callable[[Any], None], *, held_back: bool = False
) -> RunStorage:
    """The runner's storage whose concurrent uploads' client calls `on_request` before each request it sends."""
    clients = StorageClients(
        BlobServiceClient.from_connection_string(azurite, transport=blob_transport()),
        QueueClient.from_connection_string(azurite, f"{container}-events"),
        async_blob_service=lambda: AsyncBlobServiceClient.from_connection_string(
            azurite,
            transport=HeldBackTransport() if held_back else async_blob_transport(https=False),
            raw_request_hook=on_request,
        ),
    )
    return RunStorage(clients, OutputPrefix.parse(f"az://{container}/run-1/"))


def test_the_ca_bundle_is_read_once_for_all_the_upload_transports(monkeypatch: pytest.MonkeyPatch) -> None:
    # Each upload_files call makes a transport in its own event loop; the bundle's SSL context is built once.
    bundle = certifi.where()
    read: list[str | None] = []
    create_default_context = ssl.create_default_context

    def counted(*args: Any, cafile: str | None = None, **kwargs: Any) -> ssl.SSLContext:
        read.append(cafile)
        return create_default_context(*args, cafile=cafile, **kwargs)

    monkeypatch.setattr(ssl, "create_default_context", counted)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", bundle)
    storage_module._ssl_context.cache_clear()

    async def make_transport() -> None:
        async with async_blob_transport():
            pass

    for _ in range(3):
        asyncio.run(make_transport())
    assert read == [bundle]


def test_the_uploads_are_under_way_together_never_more_than_the_concurrency(
    azurite: str, unique_name: str, tmp_path: Path
) -> None:
    in_flight, peak = 0, 0

    def on_request(request: Any) -> None:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)

    def on_response(response: Any) -> None:
        nonlocal in_flight
        in_flight -= 1

    BlobServiceClient.from_connection_string(azurite).create_container(unique_name)
    clients = StorageClients(
        BlobServiceClient.from_connection_string(azurite, transport=blob_transport()),
        QueueClient.from_connection_string(azurite, f"{unique_name}-events"),
        async_blob_service=lambda: AsyncBlobServiceClient.from_connection_string(
            azurite, transport=async_blob_transport(https=False),
            raw_request_hook=on_request, raw_response_hook=on_response,
        ),
    )
    storage = RunStorage(clients, OutputPrefix.parse(f"az://{unique_name}/run-1/"))
    paths = small_files(tmp_path, 40)

    storage.upload_files([storage.output_file(path, path.name, content_type="text/plain") for path in paths],
                         concurrency=7)

    # Each task sends its first request before any answer is read: all seven are under way at once.
    assert (peak, in_flight) == (7, 0)
    storage.close()


def test_a_stop_during_the_uploads_ends_them_at_once_and_propagates(
    azurite: str, unique_name: str, tmp_path: Path
) -> None:
    BlobServiceClient.from_connection_string(azurite).create_container(unique_name)
    sent = 0

    def stop_at_the_tenth(request: Any) -> None:
        nonlocal sent
        sent += 1
        if sent == 10:
            raise TerminatedError()

    storage = hooked_storage(azurite, unique_name, stop_at_the_tenth)
    paths = small_files(tmp_path, 40)
    try:
        with pytest.raises(TerminatedError):
            storage.upload_files([storage.output_file(path, path.name, content_type="text/plain") for path in paths],
                                 concurrency=4)
    finally:
        TerminatedError.raised = False

    container = BlobServiceClient.from_connection_string(azurite).get_container_client(unique_name)
    assert len(list(container.list_blob_names())) < 10  # nothing was started after the stop
    storage.close()


def test_a_sigterm_while_the_uploads_wait_for_answers_ends_them_and_propagates(
    azurite: str, unique_name: str, tmp_path: Path
) -> None:
    # As the runner's handler does (runner/cli.py): the signal's exception is raised in the main thread, here
    # while the event loop waits (every request is held back a moment before it is sent).
    BlobServiceClient.from_connection_string(azurite).create_container(unique_name)
    first_request = threading.Event()

    def raise_terminated(signum: int, frame: object) -> None:
        raise TerminatedError()

    storage = hooked_storage(azurite, unique_name, lambda request: first_request.set(), held_back=True)
    paths = small_files(tmp_path, 200)
    previous = signal.signal(signal.SIGTERM, raise_terminated)

    def stop_once_under_way() -> None:
        if first_request.wait(10):
            os.kill(os.getpid(), signal.SIGTERM)

    killer = threading.Thread(target=stop_once_under_way)
    killer.start()
    try:
        with pytest.raises(TerminatedError):
            storage.upload_files([storage.output_file(path, path.name, content_type="text/plain") for path in paths],
                                 concurrency=4)
    finally:
        killer.join()
        signal.signal(signal.SIGTERM, previous)
        TerminatedError.raised = False

    container = BlobServiceClient.from_connection_string(azurite).get_container_client(unique_name)
    assert len(list(container.list_blob_names())) < 200
    storage.close()


def test_a_failed_upload_is_named_and_the_ones_that_succeeded_are_reported(
    storage: RunStorage, azurite: str, tmp_path: Path, unique_name: str
) -> None:
    service = BlobServiceClient.from_connection_string(azurite)
    service.create_container(unique_name)
    leased = service.get_blob_client(unique_name, "leased.txt")
    leased.upload_blob(b"held")
    leased.acquire_lease()  # an upload without the lease id is refused
    paths = small_files(tmp_path, 5)
    files = [BlobFile(paths[0], unique_name, "leased.txt", "text/plain")] + [
        storage.output_file(path, path.name, content_type="text/plain") for path in paths[1:]
    ]

    with pytest.raises(UploadsFailedError) as caught:
        storage.upload_files(files, concurrency=16)

    assert caught.value.code == "output_upload_failed"
    assert f"Could not upload az://{unique_name}/leased.txt: 412 LeaseIdMissing" in caught.value.message
    # Uploads still queued when the failure is seen are cancelled, so how many got through varies.
    uploaded = caught.value.uploaded
    assert f"(1 of 5 upload(s) failed, {len(uploaded)} succeeded" in caught.value.message
    assert set(uploaded) <= {1, 2, 3, 4}


class RequestLog:
    """Every request a client sends, as (method, path and query)."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str]] = []

    def __call__(self, request: Any) -> None:
        url = request.http_request.url
        self.requests.append((request.http_request.method, url.split("/", 3)[-1]))

    def creates(self) -> list[tuple[str, str]]:
        """Container and queue creations: a PUT with restype=container, or a PUT on `account/queue` itself."""
        return [
            (method, path)
            for method, path in self.requests
            if method == "PUT" and ("restype=container" in path or len(path.split("?")[0].split("/")) == 2)
        ]


def logged_storage(azurite: str, prefix: str, queue: str, log: RequestLog) -> RunStorage:
    clients = StorageClients(
        BlobServiceClient.from_connection_string(azurite, transport=blob_transport(), raw_request_hook=log),
        QueueClient.from_connection_string(azurite, queue, raw_request_hook=log),
        async_blob_service=lambda: AsyncBlobServiceClient.from_connection_string(
            azurite, transport=async_blob_transport(), raw_request_hook=log
        ),
    )
    return RunStorage(clients, OutputPrefix.parse(prefix))


def completion(run_id: str = "run-0001") -> RunnerEvent:
    now = datetime.now(UTC)
    return RunnerEvent(
        run_id=run_id, token="t" * 32, status=RunnerEventStatus.SUCCEEDED, exit_code=0, started_at=now, finished_at=now
    )


def test_with_the_container_and_queue_made_the_runner_only_reads_writes_and_sends(
    azurite: str, unique_name: str, tmp_path: Path
) -> None:
    service = BlobServiceClient.from_connection_string(azurite)
    service.create_container(unique_name)
    service.get_blob_client(unique_name, "in/portfolio.csv").upload_blob(b"a,b\n")
    QueueClient.from_connection_string(azurite, f"{unique_name}-events").create_queue()
    log = RequestLog()
    storage = logged_storage(azurite, f"az://{unique_name}/run-1/", f"{unique_name}-events", log)

    storage.download(f"az://{unique_name}/in/portfolio.csv", tmp_path / "portfolio.csv")
    storage.upload_files([storage.output_file(path, path.name, content_type="text/plain")
                          for path in small_files(tmp_path, 3)])
    storage.upload_bytes(b"{}", "result.json", content_type="application/json")
    storage.send_event(completion())
    storage.close()

    assert log.creates() == []
    assert {method for method, _ in log.requests} == {"GET", "PUT", "POST"}
    assert sum(method == "POST" for method, _ in log.requests) == 1  # the one message


def test_a_missing_container_is_made_once_and_every_upload_lands(
    azurite: str, unique_name: str, tmp_path: Path
) -> None:
    log = RequestLog()
    storage = logged_storage(azurite, f"az://{unique_name}/run-1/", f"{unique_name}-events", log)

    uris = storage.upload_files([storage.output_file(path, path.name, content_type="text/plain")
                                 for path in small_files(tmp_path, 20)])

    container = BlobServiceClient.from_connection_string(azurite).get_container_client(unique_name)
    assert sorted(blob.name for blob in container.list_blobs()) == [f"run-1/f{n:03}.txt" for n in range(20)]
    assert len(uris) == 20
    assert 1 <= len(log.creates()) <= 20  # concurrent first uploads may each try; one makes it


def test_a_missing_events_queue_is_made_and_the_message_sent(azurite: str, unique_name: str) -> None:
    log = RequestLog()
    storage = logged_storage(azurite, f"az://{unique_name}/run-1/", f"{unique_name}-events", log)

    storage.send_event(completion("run-0002"))

    messages = QueueClient.from_connection_string(azurite, f"{unique_name}-events").receive_messages()
    assert [RunnerEvent.model_validate_json(message.content).run_id for message in messages] == ["run-0002"]
    assert len(log.creates()) == 1


def test_an_error_quoting_characters_a_queue_cannot_carry_reaches_the_app_intact(
    storage: RunStorage, azurite: str, unique_name: str
) -> None:
    """A file name or a tool's output quoted in the error may hold U+FFFE or U+FFFF. Sent raw, Azure refuses the
    message, and Azurite stores one that fails every receive of its batch with 500 (docs/reliability.md)."""
    now = datetime.now(UTC)
    failed = RunnerEvent(
        run_id="run-0003", token="t" * 32, status=RunnerEventStatus.FAILED, exit_code=1, started_at=now,
        finished_at=now, error=RunError(code="no_portfolios", message="a\uffffb\ufffe.csv: cannot import \U0001f600"),
    )

    storage.send_event(failed)

    queue = QueueClient.from_connection_string(azurite, f"{unique_name}-events", retry_total=0)
    assert [RunnerEvent.model_validate_json(message.content) for message in queue.receive_messages()] == [failed]


def watched_block_storage(
    azurite: str, container: str, block: int, on_request: Callable[[Any], None], on_response: Callable[[Any], None]
) -> RunStorage:
    """The runner's storage over the runner's transport with `block`-byte blocks above 4 blocks, each request and
    response seen by the hooks, writing under az://<container>/run-1/."""
    BlobServiceClient.from_connection_string(azurite).create_container(container)
    service = BlobServiceClient.from_connection_string(
        azurite, transport=blob_transport(), max_single_put_size=4 * block, max_block_size=block,
        raw_request_hook=on_request, raw_response_hook=on_response,
    )
    return RunStorage(
        StorageClients(service, QueueClient.from_connection_string(azurite, f"{container}-events")),
        OutputPrefix.parse(f"az://{container}/run-1/"),
    )


def test_a_file_above_the_single_put_limit_goes_in_blocks_at_once_and_lands_byte_identical(
    azurite: str, unique_name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The SDK's limits scaled down (64 MiB single put, 4 MiB blocks in production): 32 blocks of 16 KiB.
    block = 16 * 1024
    monkeypatch.setattr(storage_module, "SINGLE_PUT_BYTES", 4 * block)
    first_wave = threading.Barrier(BLOCK_CONCURRENCY, timeout=30)
    in_flight, peak, blocks = 0, 0, 0
    lock = threading.Lock()

    def on_request(request: Any) -> None:
        nonlocal in_flight, peak, blocks
        if "comp=block&" not in request.http_request.url + "&":
            return
        with lock:
            in_flight, blocks = in_flight + 1, blocks + 1
            peak, wave = max(peak, in_flight), blocks <= BLOCK_CONCURRENCY
        if wave:  # passes only if the first BLOCK_CONCURRENCY blocks are all under way together
            first_wave.wait()

    def on_response(response: Any) -> None:
        nonlocal in_flight
        if "comp=block&" in response.http_request.url + "&":
            with lock:
                in_flight -= 1

    storage = watched_block_storage(azurite, unique_name, block, on_request, on_response)
    path = tmp_path / "large.bin"
    path.write_bytes(os.urandom(32 * block - 123))  # the last block short

    uris = storage.upload_files([storage.output_file(path, "out/large.bin", content_type="application/x-parquet")])

    assert uris == [f"az://{unique_name}/run-1/out/large.bin"]
    assert (blocks, peak) == (32, BLOCK_CONCURRENCY)
    blob = BlobServiceClient.from_connection_string(azurite).get_blob_client(unique_name, "run-1/out/large.bin")
    assert blob.download_blob().readall() == path.read_bytes()
    assert blob.get_blob_properties().content_settings.content_type == "application/x-parquet"
    storage.close()


def test_files_in_blocks_go_one_at_a_time_whatever_the_number_of_upload_threads(
    azurite: str, unique_name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Each file in blocks holds up to BLOCK_CONCURRENCY blocks in memory: three of them uploaded 16 at a
    # time must not hold three times that. The limits scaled down as above.
    block = 16 * 1024
    monkeypatch.setattr(storage_module, "SINGLE_PUT_BYTES", 4 * block)
    lock = threading.Lock()
    in_flight: dict[str, int] = {}
    overlaps: list[list[str]] = []

    def block_of(message: Any) -> str | None:
        url = message.http_request.url
        return url.split("?")[0] if "comp=block&" in url + "&" else None

    def on_request(request: Any) -> None:
        if (blob := block_of(request)) is not None:
            with lock:
                in_flight[blob] = in_flight.get(blob, 0) + 1
                if sum(count > 0 for count in in_flight.values()) > 1:
                    overlaps.append(sorted(name for name, count in in_flight.items() if count))

    def on_response(response: Any) -> None:
        if (blob := block_of(response)) is not None:
            with lock:
                in_flight[blob] -= 1

    storage = watched_block_storage(azurite, unique_name, block, on_request, on_response)
    paths = []
    for number in range(3):
        paths.append(tmp_path / f"large{number}.bin")
        paths[-1].write_bytes(os.urandom(20 * block))
    paths += small_files(tmp_path, 5)

    storage.upload_files(
        [storage.output_file(path, path.name, content_type="application/octet-stream") for path in paths],
        concurrency=16,
    )

    assert overlaps == []
    assert sorted(url.rsplit("/", 1)[-1] for url in in_flight) == ["large0.bin", "large1.bin", "large2.bin"]
    container = BlobServiceClient.from_connection_string(azurite).get_container_client(unique_name)
    assert len(list(container.list_blobs())) == 8
    storage.close()


def test_a_file_in_blocks_to_a_missing_container_is_sent_again_whole_once_the_container_is_made(
    azurite: str, unique_name: str, tmp_path: Path
) -> None:
    block = 16 * 1024
    service = BlobServiceClient.from_connection_string(
        azurite, transport=blob_transport(), max_single_put_size=4 * block, max_block_size=block
    )
    storage = RunStorage(
        StorageClients(service, QueueClient.from_connection_string(azurite, f"{unique_name}-events")),
        OutputPrefix.parse(f"az://{unique_name}/run-1/"),
    )
    path = tmp_path / "large.bin"
    path.write_bytes(os.urandom(20 * block))

    storage.upload_file(path, "large.bin", content_type="application/octet-stream")

    blob = BlobServiceClient.from_connection_string(azurite).get_blob_client(unique_name, "run-1/large.bin")
    assert blob.download_blob().readall() == path.read_bytes()
    storage.close()
