"""Blob and queue triggers delivered by polling a real Azurite, with receipts and poison queues."""

from __future__ import annotations

import base64
import functools
import json
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from azure.storage.blob import BlobClient, BlobServiceClient, ContainerClient
from azure.storage.queue import QueueClient

from local_runner.host.clock import ManualClock
from local_runner.host.functions import FunctionIndex, Invoker
from local_runner.host.settings import HostSettings, QueueSettings
from local_runner.host.triggers import (
    BLOB_POISON_QUEUE,
    FULL_SCAN_INTERVAL,
    HOSTS_CONTAINER,
    IDLE_SCANNED_BLOBS_PER_SECOND,
    SCANNED_BLOBS_PER_SECOND,
    BlobPath,
    BlobTriggerPoller,
    QueueTriggerPoller,
    blob_receipt_name,
    idle_scan_delay,
)
from tests.conftest import wait_for
from tests.local_runner.host.conftest import queue_exists
from tests.local_runner.host.raw_blobs import put_blob_raw

pytestmark = pytest.mark.azurite


@pytest.fixture
def uploads(azurite: str, unique_name: str) -> ContainerClient:
    container = BlobServiceClient.from_connection_string(azurite).get_container_client(unique_name)
    container.create_container()
    return container


@pytest.fixture
def blob_poller_factory(
    azurite: str, index: FunctionIndex, invoker: Invoker, unique_name: str
) -> Any:
    def make(**options: Any) -> BlobTriggerPoller:
        return BlobTriggerPoller(
            azurite, index.get("on_upload"), invoker, ManualClock(), host_id=unique_name, **options
        )

    return make


@pytest.fixture
def queue(azurite: str, unique_name: str) -> QueueClient:
    return QueueClient.from_connection_string(azurite, unique_name)


@pytest.fixture
def queue_poller(azurite: str, index: FunctionIndex, invoker: Invoker) -> QueueTriggerPoller:
    return QueueTriggerPoller(
        azurite, index.get("on_message"), invoker, ManualClock(), host_settings=HostSettings()
    )


def uploads_of(calls: list[dict[str, Any]]) -> list[bytes]:
    return [c["data"] for c in calls if c["function"] == "on_upload"]


def poison_messages(azurite: str, queue_name: str) -> list[str]:
    poison = QueueClient.from_connection_string(azurite, queue_name)
    return [m.content for m in poison.peek_messages(max_messages=32)]


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_a_new_blob_fires_once_with_its_bytes_and_name(
    uploads: ContainerClient, blob_poller_factory: Any, calls: list[dict[str, Any]]
) -> None:
    uploads.upload_blob("in/a.csv", b"a,b\n1,2\n", metadata={"source": "test"})
    poller = blob_poller_factory()

    assert poller.poll_once() == 1
    assert poller.poll_once() == 0

    (call,) = calls
    assert call["name"] == f"{uploads.container_name}/in/a.csv"
    assert call["data"] == b"a,b\n1,2\n" and call["length"] == 8
    assert call["metadata"] == {"source": "test"}
    assert call["properties"]["ETag"].startswith('"0x')


def test_blobs_outside_the_trigger_path_are_ignored(
    uploads: ContainerClient, blob_poller_factory: Any, calls: list[dict[str, Any]]
) -> None:
    uploads.upload_blob("elsewhere/a.csv", b"x")

    assert blob_poller_factory().poll_once() == 0
    assert calls == []


def test_a_restarted_host_does_not_fire_again_for_a_blob_it_has_a_receipt_for(
    azurite: str,
    uploads: ContainerClient,
    blob_poller_factory: Any,
    calls: list[dict[str, Any]],
    unique_name: str,
) -> None:
    etag = uploads.upload_blob("in/a.csv", b"once").get_blob_properties().etag
    blob_poller_factory().poll_once()

    assert blob_poller_factory().poll_once() == 0  # a new poller: the host restarted

    assert uploads_of(calls) == [b"once"]
    receipt = blob_receipt_name(unique_name, "on_upload", etag, unique_name, "in/a.csv")
    hosts = BlobServiceClient.from_connection_string(azurite).get_container_client(HOSTS_CONTAINER)
    assert receipt.startswith(f"blobreceipts/{unique_name}/Host.Functions.on_upload/0x")
    assert hosts.get_blob_client(receipt).get_blob_properties().metadata["IsCompleted"] == "true"


def test_a_re_upload_with_a_new_etag_fires_again(
    uploads: ContainerClient, blob_poller_factory: Any, calls: list[dict[str, Any]]
) -> None:
    uploads.upload_blob("in/a.csv", b"first")
    blob_poller_factory().poll_once()

    uploads.upload_blob("in/a.csv", b"second", overwrite=True)

    assert blob_poller_factory().poll_once() == 1
    assert uploads_of(calls) == [b"first", b"second"]


def test_a_failing_blob_is_retried_then_poisoned_and_left_alone(
    azurite: str, uploads: ContainerClient, blob_poller_factory: Any, calls: list[dict[str, Any]]
) -> None:
    uploads.upload_blob("in/bad.csv", b"fail please")
    poller = blob_poller_factory(max_attempts=3)

    handled = [poller.poll_once() for _ in range(4)]

    assert handled == [1, 1, 1, 0]
    assert len(uploads_of(calls)) == 3
    messages = [
        json.loads(base64.b64decode(m)) for m in poison_messages(azurite, BLOB_POISON_QUEUE)
    ]
    mine = [m for m in messages if m["ContainerName"] == uploads.container_name]
    assert mine == [
        {
            "Type": "BlobTrigger",
            "FunctionId": "Host.Functions.on_upload",
            "BlobType": "BlockBlob",
            "ContainerName": uploads.container_name,
            "BlobName": "in/bad.csv",
            "ETag": mine[0]["ETag"],
        }
    ]
    assert blob_poller_factory(max_attempts=3).poll_once() == 0  # nor after a restart


def test_a_blob_no_client_can_read_is_retried_then_poisoned_and_never_stops_the_blobs_after_it(
    azurite: str, uploads: ContainerClient, blob_poller_factory: Any, calls: list[dict[str, Any]]
) -> None:
    # Azurite stores it as in/back/../slash.csv; the SDK collapses the '..' and the read fails (403).
    assert put_blob_raw(azurite, uploads.container_name, "in/back\\..\\slash.csv", b"evil").status_code == 201
    uploads.upload_blob("in/z.csv", b"listed after it")
    poller = blob_poller_factory(max_attempts=3)

    handled = [poller.poll_once() for _ in range(4)]

    assert handled == [2, 1, 1, 0]
    assert uploads_of(calls) == [b"listed after it"]
    messages = [json.loads(base64.b64decode(m)) for m in poison_messages(azurite, BLOB_POISON_QUEUE)]
    assert [m["BlobName"] for m in messages if m["ContainerName"] == uploads.container_name] == [
        "in/back/../slash.csv"
    ]


def test_a_blob_client_trigger_gets_a_reference_even_to_a_blob_no_client_can_read(
    azurite: str,
    uploads: ContainerClient,
    index: FunctionIndex,
    invoker: Invoker,
    calls: list[dict[str, Any]],
    unique_name: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AzureWebJobsStorage", azurite)  # the binding's connection, read by the extension
    assert put_blob_raw(azurite, uploads.container_name, "ref/back\\..\\slash.csv", b"evil").status_code == 201
    uploads.upload_blob("ref/ok.csv", b"fine")
    poller = BlobTriggerPoller(azurite, index.get("on_reference"), invoker, ManualClock(), host_id=unique_name)

    handled = [poller.poll_once(), poller.poll_once()]

    assert handled == [2, 0]  # the host read neither; the unreadable one keeps its receipt in memory
    assert [call["name"] for call in calls] == ["ref/back/../slash.csv", "ref/ok.csv"]
    client = calls[1]["client"]
    assert type(client) is BlobClient and client.download_blob().readall() == b"fine"


def test_failed_attempts_survive_a_restart(
    uploads: ContainerClient, blob_poller_factory: Any, calls: list[dict[str, Any]]
) -> None:
    uploads.upload_blob("in/bad.csv", b"fail please")
    blob_poller_factory(max_attempts=2).poll_once()

    assert blob_poller_factory(max_attempts=2).poll_once() == 1
    assert blob_poller_factory(max_attempts=2).poll_once() == 0
    assert len(uploads_of(calls)) == 2


def test_a_blob_poller_thread_delivers_on_a_manual_clock(
    azurite: str,
    uploads: ContainerClient,
    index: FunctionIndex,
    invoker: Invoker,
    calls: list[dict[str, Any]],
    unique_name: str,
) -> None:
    clock = ManualClock()
    poller = BlobTriggerPoller(
        azurite, index.get("on_upload"), invoker, clock, host_id=unique_name, interval=5.0
    )
    poller.start()
    try:
        uploads.upload_blob("in/later.csv", b"later")
        wait_for(lambda: ticked(clock, 5.0) and uploads_of(calls) == [b"later"])
    finally:
        poller.stop()


class CountingClock(ManualClock):
    """A manual clock that counts the waits begun on it: a poller waiting has finished its pass."""

    def __init__(self) -> None:
        super().__init__()
        self.waits = 0
        self.asked: list[float] = []

    def wait(self, event: threading.Event, seconds: float) -> bool:
        self.waits += 1
        self.asked.append(seconds)
        return super().wait(event, seconds)


def next_pass_on(clock: CountingClock, seconds: float) -> None:
    """Let the poller waiting on `clock` make its next pass, and wait until that pass ends."""
    waits = clock.waits
    clock.advance(seconds)
    wait_for(lambda: clock.waits > waits, what="the poller's next pass to end")


@pytest.fixture
def polling_thread(
    azurite: str, index: FunctionIndex, invoker: Invoker, unique_name: str
) -> Iterator[Callable[[], tuple[BlobTriggerPoller, CountingClock]]]:
    """Starts a blob poller's own thread, passes 0.5 s apart on a counting manual clock; stopped at the end."""
    started: list[BlobTriggerPoller] = []

    def start() -> tuple[BlobTriggerPoller, CountingClock]:
        clock = CountingClock()
        poller = BlobTriggerPoller(azurite, index.get("on_upload"), invoker, clock, host_id=unique_name, interval=0.5)
        started.append(poller)
        poller.start()
        return poller, clock

    yield start
    for poller in started:
        poller.stop()


@pytest.fixture
def upload_for_receipt(
    azurite: str, uploads: ContainerClient, unique_name: str
) -> Callable[..., BlobClient]:
    """Uploads a blob (`upload_blob`'s arguments) and returns the receipt `on_upload` keeps for that version."""
    hosts = BlobServiceClient.from_connection_string(azurite).get_container_client(HOSTS_CONTAINER)

    def upload(blob_name: str, data: bytes, **options: Any) -> BlobClient:
        etag = uploads.upload_blob(blob_name, data, **options).get_blob_properties().etag
        return hosts.get_blob_client(blob_receipt_name(unique_name, "on_upload", etag, unique_name, blob_name))

    return upload


def test_between_full_scans_new_names_are_found_with_their_receipts_and_an_overwrite_at_the_next_full_scan(
    uploads: ContainerClient, upload_for_receipt: Any, polling_thread: Any, blob_poller_factory: Any,
    calls: list[dict[str, Any]],
) -> None:
    receipt = upload_for_receipt("in/first.csv", b"first")
    _, clock = polling_thread()
    next_pass_after = functools.partial(next_pass_on, clock)

    wait_for(lambda: receipt.exists() and clock.waits > 0)  # listed in full, delivered, then idle
    # Another host (the same host id, so the same receipts) takes one new blob while this one waits.
    uploads.upload_blob("in/done.csv", b"done")
    assert blob_poller_factory().poll_once() == 1
    uploads.upload_blob("in/new.csv", b"new")
    uploads.upload_blob("in/first.csv", b"first, again", overwrite=True)

    next_pass_after(0.5)  # a pass by name: both new names looked up, the overwrite not seen yet
    wait_for(lambda: b"new" in uploads_of(calls))
    next_pass_after(0.5)
    next_pass_after(0.5)
    assert uploads_of(calls) == [b"first", b"done", b"new"]

    next_pass_after(FULL_SCAN_INTERVAL.total_seconds())  # the full scan finds the overwritten blob
    wait_for(lambda: uploads_of(calls) == [b"first", b"done", b"new", b"first, again"])


def test_a_blob_s_receipt_is_read_when_it_is_found_so_a_receipt_deleted_later_brings_it_back_only_after_a_restart(
    upload_for_receipt: Any, polling_thread: Any, blob_poller_factory: Any, calls: list[dict[str, Any]]
) -> None:
    receipt = upload_for_receipt("in/a.csv", b"a")
    poller, clock = polling_thread()

    wait_for(lambda: receipt.exists() and clock.waits > 0)
    receipt.delete_blob()
    for _ in range(3):  # full listings, as the Functions host's scan: a blob it has seen is not new
        next_pass_on(clock, FULL_SCAN_INTERVAL.total_seconds())
    assert uploads_of(calls) == [b"a"]
    poller.stop()

    assert blob_poller_factory().poll_once() == 1  # a restarted host reads every receipt
    assert uploads_of(calls) == [b"a", b"a"]


def test_a_full_listing_reads_the_receipts_of_the_blobs_it_finds_new_and_honours_another_host_s(
    uploads: ContainerClient, polling_thread: Any, blob_poller_factory: Any, calls: list[dict[str, Any]]
) -> None:
    names = [f"in/{number:02}.csv" for number in range(20)]
    for name in names:
        uploads.upload_blob(name, name.encode())
    _, clock = polling_thread()

    wait_for(lambda: len(uploads_of(calls)) == 20 and clock.waits > 0)
    # Overwrites: only a full listing sees the new etags. Another host takes the first before it comes.
    uploads.upload_blob(names[0], b"00 again", overwrite=True)
    assert blob_poller_factory().poll_once() == 1
    uploads.upload_blob(names[1], b"01 again", overwrite=True)

    next_pass_on(clock, FULL_SCAN_INTERVAL.total_seconds())
    wait_for(lambda: len(uploads_of(calls)) == 22)
    next_pass_on(clock, FULL_SCAN_INTERVAL.total_seconds())

    assert sorted(uploads_of(calls)) == sorted([name.encode() for name in names] + [b"00 again", b"01 again"])


def test_an_idle_scan_of_many_blobs_waits_longer_than_its_interval_so_it_lists_at_most_its_budget_per_second(
    azurite: str, uploads: ContainerClient, index: FunctionIndex, invoker: Invoker, calls: list[dict[str, Any]],
    unique_name: str,
) -> None:
    count = 150
    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(lambda number: uploads.upload_blob(f"in/{number:03}.csv", b"x"), range(count)))
    clock = CountingClock()
    poller = BlobTriggerPoller(azurite, index.get("on_upload"), invoker, clock, host_id=unique_name, interval=0.1)
    poller.start()
    try:
        wait_for(lambda: len(uploads_of(calls)) == count and clock.waits > 0)
        waits = clock.waits
        clock.advance(1.0)
        wait_for(lambda: clock.waits > waits)  # idle passes since
    finally:
        poller.stop()

    assert min(clock.asked[-2:]) >= count / IDLE_SCANNED_BLOBS_PER_SECOND > 0.1


def test_an_idle_scan_comes_at_least_as_often_as_the_functions_hosts_within_its_listing_ceiling() -> None:
    every_ten_seconds = FULL_SCAN_INTERVAL.total_seconds()
    at_the_budget = IDLE_SCANNED_BLOBS_PER_SECOND * 2

    assert idle_scan_delay(at_the_budget) == pytest.approx(2.0)
    assert idle_scan_delay(at_the_budget * 10) == every_ten_seconds
    assert idle_scan_delay(SCANNED_BLOBS_PER_SECOND * 30) == pytest.approx(30.0)
    assert idle_scan_delay(0) == 0.0


def test_a_blob_path_matches_its_pattern_and_lists_by_its_literal_prefix() -> None:
    path = BlobPath.parse("uploads/parse_portfolio/{name}.csv")

    assert path.container == "uploads"
    assert path.prefix == "parse_portfolio/"
    assert path.matches("parse_portfolio/a/b.csv")
    assert not path.matches("parse_portfolio/a.json")
    assert BlobPath.parse("uploads").matches("anything/at/all")


def test_a_queue_message_that_succeeds_is_deleted(
    queue: QueueClient, queue_poller: QueueTriggerPoller, calls: list[dict[str, Any]]
) -> None:
    queue_poller.poll_once()  # creates the queue
    queue.send_message(b64("hello"))

    assert queue_poller.poll_once() == 1

    assert calls == [{"function": "on_message", "body": b"hello", "dequeue_count": 1}]
    assert queue.get_queue_properties().approximate_message_count == 0


def test_the_messages_of_one_batch_are_handled_at_once_not_one_after_another(
    queue: QueueClient, queue_poller: QueueTriggerPoller, calls: list[dict[str, Any]]
) -> None:
    """As the Functions host runs up to batchSize invocations at once: a message that waits for another one of
    its batch would time out if they were handled in turn."""
    queue_poller.poll_once()  # creates the queue
    queue.send_message(b64("wait:go"))
    queue.send_message(b64("signal:go"))

    assert queue_poller.poll_once() == 2

    assert sorted((call["body"], call["dequeue_count"]) for call in calls) == [(b"signal:go", 1), (b"wait:go", 1)]
    assert queue.get_queue_properties().approximate_message_count == 0


def test_a_message_failing_max_dequeue_count_times_lands_in_the_poison_queue_with_its_body(
    azurite: str, queue: QueueClient, queue_poller: QueueTriggerPoller, calls: list[dict[str, Any]]
) -> None:
    queue_poller.poll_once()
    queue.send_message(b64("fail: bad message"))

    handled = [queue_poller.poll_once() for _ in range(6)]

    assert handled == [1, 1, 1, 1, 1, 0]
    assert [c["dequeue_count"] for c in calls] == [1, 2, 3, 4, 5]
    assert poison_messages(azurite, f"{queue.queue_name}-poison") == [b64("fail: bad message")]
    assert queue.get_queue_properties().approximate_message_count == 0


def test_a_message_that_is_not_base64_is_poisoned_without_invoking(
    azurite: str, queue: QueueClient, queue_poller: QueueTriggerPoller, calls: list[dict[str, Any]]
) -> None:
    queue_poller.poll_once()
    queue.send_message("not base64 at all!")

    assert queue_poller.poll_once() == 1

    assert calls == []
    assert poison_messages(azurite, f"{queue.queue_name}-poison") == ["not base64 at all!"]


def test_plain_text_messages_are_read_as_is_when_host_json_says_none(
    azurite: str,
    queue: QueueClient,
    index: FunctionIndex,
    invoker: Invoker,
    calls: list[dict[str, Any]],
) -> None:
    settings = HostSettings(queues=QueueSettings(message_encoding="none"))
    poller = QueueTriggerPoller(
        azurite, index.get("on_message"), invoker, ManualClock(), host_settings=settings
    )
    poller.poll_once()
    queue.send_message('{"plain": true}')

    poller.poll_once()

    assert calls[0]["body"] == b'{"plain": true}'


def test_a_queue_poller_thread_delivers_on_a_manual_clock(
    azurite: str,
    queue: QueueClient,
    index: FunctionIndex,
    invoker: Invoker,
    calls: list[dict[str, Any]],
) -> None:
    clock = ManualClock()
    poller = QueueTriggerPoller(
        azurite, index.get("on_message"), invoker, clock, host_settings=HostSettings(), interval=5.0
    )
    poller.start()
    try:
        wait_for(lambda: queue_exists(queue))
        queue.send_message(b64("threaded"))
        wait_for(lambda: ticked(clock, 5.0) and [c["body"] for c in calls] == [b"threaded"])
    finally:
        poller.stop()


def ticked(clock: ManualClock, seconds: float) -> bool:
    """Advance the clock one poll interval; the poller may be between passes, so keep ticking."""
    clock.advance(seconds)
    return True

