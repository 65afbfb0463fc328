"""The triggers' limits and pacing, as the Functions host's queue listener has them: batchSize,
newBatchThreshold, the polling back-off that resets when work is found, and host.json's settings for them."""

from __future__ import annotations

import base64
import functools
import json
import threading
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from azure.storage.blob import BlobServiceClient, ContainerClient
from azure.storage.queue import QueueClient

from local_runner.host.clock import SystemClock
from local_runner.host.functions import FunctionIndex, Invoker
from local_runner.host.settings import HostSettings, QueueSettings, load_host_settings
from local_runner.host.triggers import Backoff, BlobTriggerPoller, QueueTriggerPoller, TriggerPoller
from orchestrations.errors import ConfigurationError
from tests.conftest import wait_for
from tests.local_runner.host.conftest import queue_exists


def steady(low: float, high: float) -> float:
    """The back-off's random factor at its middle (1.0), so delays are exact."""
    return (low + high) / 2


class RecordingClock:
    """A clock whose waits return at once, remembering how long each one was asked to be."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    def now(self) -> Any:
        return SystemClock().now()

    def wait(self, event: threading.Event, seconds: float) -> bool:
        self.waits.append(round(seconds, 6))
        return event.is_set()


class GatedPoller(TriggerPoller):
    """A poller over a list of items whose deliveries block until released: it shows what runs at once."""

    def __init__(self, items: int, *, batch_size: int, new_batch_threshold: int, clock: Any = None,
                 found_on: Callable[[int], bool] | None = None) -> None:
        super().__init__(
            "gated", clock or SystemClock(), batch_size=batch_size, new_batch_threshold=new_batch_threshold,
            backoff=Backoff(0.1, 2.0, uniform=steady),
        )
        self.waiting = list(range(items))
        self.fetches: list[tuple[int, int]] = []  # (items fetched, deliveries running when fetching)
        self.running = 0
        self.most_running = 0
        self.delivered: list[int] = []
        self.release = threading.Semaphore(0)
        self._count = threading.Lock()
        self._found_on = found_on
        self.polls = 0

    def _fetch(self, *, more_of_this_pass: bool) -> list[tuple[Any, Callable[[], int]]]:
        self.polls += 1
        if self._found_on is not None and not self._found_on(self.polls):
            return []
        batch, self.waiting = self.waiting[: self.batch_size], self.waiting[self.batch_size :]
        with self._count:
            self.fetches.append((len(batch), self.running))
        return [(item, functools.partial(self._deliver, item)) for item in batch]

    def _deliver(self, item: int) -> int:
        with self._count:
            self.running += 1
            self.most_running = max(self.most_running, self.running)
        self.release.acquire(timeout=10)
        with self._count:
            self.running -= 1
            self.delivered.append(item)
        return 1


@pytest.fixture
def gated() -> Iterator[Callable[..., GatedPoller]]:
    made: list[GatedPoller] = []

    def make(items: int, **options: Any) -> GatedPoller:
        made.append(GatedPoller(items, **options))
        return made[-1]

    yield make
    for poller in made:
        poller.release.release(1000)
        poller.stop(timeout=5)


def test_the_back_off_doubles_from_the_minimum_up_to_the_maximum_and_stays_there() -> None:
    backoff = Backoff(0.1, 2.0, uniform=steady)

    delays = [backoff.next_delay(found_since_last_delay=False) for _ in range(8)]

    assert delays == pytest.approx([0.1, 0.2, 0.3, 0.5, 0.9, 1.7, 2.0, 2.0])


def test_the_back_off_goes_back_to_the_minimum_once_work_was_found() -> None:
    backoff = Backoff(0.1, 2.0, uniform=steady)
    for _ in range(6):
        backoff.next_delay(found_since_last_delay=False)

    assert backoff.next_delay(found_since_last_delay=True) == pytest.approx(0.1)
    assert backoff.next_delay(found_since_last_delay=False) == pytest.approx(0.2)


def test_the_back_off_randomizes_each_step_by_at_most_a_fifth() -> None:
    lowest = Backoff(0.1, 60.0, uniform=lambda low, high: low)
    highest = Backoff(0.1, 60.0, uniform=lambda low, high: high)

    low = [lowest.next_delay(found_since_last_delay=False) for _ in range(4)]
    high = [highest.next_delay(found_since_last_delay=False) for _ in range(4)]

    assert low == pytest.approx([0.1, 0.18, 0.26, 0.42])
    assert high == pytest.approx([0.1, 0.22, 0.34, 0.58])


def test_a_polling_thread_waits_the_minimum_after_finding_work_and_backs_off_while_idle(
    gated: Callable[..., GatedPoller],
) -> None:
    clock = RecordingClock()
    # Polls 1-3 find nothing, poll 4 finds the one item, then nothing again.
    poller = gated(1, batch_size=4, new_batch_threshold=2, clock=clock, found_on=lambda poll: poll == 4)
    poller.release.release(1)
    poller.start()
    wait_for(lambda: len(clock.waits) >= 6, what="six waits")
    poller.stop()

    assert clock.waits[:6] == pytest.approx([0.1, 0.2, 0.3, 0.1, 0.2, 0.3])
    assert poller.delivered == [0]


def test_a_polling_thread_runs_at_most_batch_size_plus_new_batch_threshold_at_once(
    gated: Callable[..., GatedPoller],
) -> None:
    poller = gated(40, batch_size=4, new_batch_threshold=2)
    poller.start()

    wait_for(lambda: poller.running == 4, what="the first batch running")
    poller.release.release(2)  # two of the first batch end: only 2 still run, the threshold
    wait_for(lambda: poller.running == 6, what="six deliveries running")
    assert poller.fetches == [(4, 0), (4, 2)]  # the second batch as soon as no more than 2 ran
    poller.release.release(38)
    wait_for(lambda: len(poller.delivered) == 40, what="all forty delivered")

    assert poller.most_running == 6
    assert all(size <= 4 for size, _ in poller.fetches)
    assert all(running <= 2 for _, running in poller.fetches)
    assert sorted(poller.delivered) == list(range(40))


def test_one_pass_delivers_a_batch_at_a_time_within_the_same_limits(
    gated: Callable[..., GatedPoller],
) -> None:
    poller = gated(10, batch_size=4, new_batch_threshold=0)
    handled: list[int] = []
    passing = threading.Thread(target=lambda: handled.append(poller.poll_once()))
    passing.start()

    wait_for(lambda: poller.running == 4, what="the first batch running")
    assert poller.fetches == [(4, 0)]
    poller.release.release(10)
    passing.join(10)

    assert handled == [10]
    assert poller.most_running == 4
    assert [size for size, _ in poller.fetches] == [4, 4, 2, 0]


@pytest.mark.azurite
def test_a_queue_poll_takes_no_more_than_batch_size_messages(
    azurite: str, index: FunctionIndex, invoker: Invoker, calls: list[dict[str, Any]], unique_name: str
) -> None:
    queue = QueueClient.from_connection_string(azurite, unique_name)
    settings = HostSettings(queues=QueueSettings(batch_size=2))
    poller = QueueTriggerPoller(azurite, index.get("on_message"), invoker, SystemClock(), host_settings=settings)
    poller.poll_once()  # creates the queue
    for number in range(5):
        queue.send_message(base64.b64encode(f"m{number}".encode()).decode())

    handled = [poller.poll_once() for _ in range(4)]

    assert handled == [2, 2, 1, 0]
    assert sorted(call["body"] for call in calls) == [b"m0", b"m1", b"m2", b"m3", b"m4"]


@pytest.mark.azurite
def test_a_queue_polling_thread_picks_up_a_message_sent_after_it_went_idle(
    azurite: str, index: FunctionIndex, invoker: Invoker, calls: list[dict[str, Any]], unique_name: str
) -> None:
    queue = QueueClient.from_connection_string(azurite, unique_name)
    settings = HostSettings(queues=QueueSettings(max_polling_interval=timedelta(milliseconds=200)))
    poller = QueueTriggerPoller(azurite, index.get("on_message"), invoker, SystemClock(), host_settings=settings)
    poller.start()
    try:
        wait_for(lambda: queue_exists(queue), what="the queue")
        threading.Event().wait(0.5)  # idle polls: the back-off is at its longest
        queue.send_message(base64.b64encode(b"late").decode())
        wait_for(lambda: [call["body"] for call in calls] == [b"late"], what="the late message", timeout=10)
    finally:
        poller.stop()


@pytest.mark.azurite
def test_a_polling_blob_trigger_takes_in_a_burst_of_new_blobs_each_once(
    azurite: str, index: FunctionIndex, invoker: Invoker, calls: list[dict[str, Any]], unique_name: str
) -> None:
    container: ContainerClient = BlobServiceClient.from_connection_string(azurite).get_container_client(unique_name)
    container.create_container()
    poller = BlobTriggerPoller(
        azurite, index.get("on_upload"), invoker, SystemClock(), host_id=unique_name, interval=0.2,
        batch_size=4, new_batch_threshold=2,
    )
    poller.start()
    try:
        container.upload_blob("in/first.csv", b"first")
        wait_for(lambda: len(calls) == 1, what="the first blob")
        for number in range(30):
            container.upload_blob(f"in/b{number:02}.csv", f"{number}".encode())
        wait_for(lambda: len(calls) == 31, what="all 31 blobs", timeout=30)
        threading.Event().wait(0.5)  # a few more passes: none of them fires again
    finally:
        poller.stop()

    names = [call["name"] for call in calls]
    assert len(names) == len(set(names)) == 31
    assert poller.max_in_flight == 6


def test_host_json_sets_the_new_batch_threshold_and_the_longest_polling_interval(tmp_path: Path) -> None:
    write_host_json(tmp_path, {"batchSize": 8, "newBatchThreshold": 3, "maxPollingInterval": "00:00:00.500"})

    queues = load_host_settings(tmp_path).queues

    assert queues.effective_new_batch_threshold() == 3
    assert queues.polling_ceiling() == timedelta(milliseconds=500)


def test_without_host_json_values_the_extension_defaults_apply(tmp_path: Path) -> None:
    write_host_json(tmp_path, {"batchSize": 8})

    queues = load_host_settings(tmp_path).queues

    assert queues.effective_new_batch_threshold() % 4 == 0  # (batchSize / 2) per processor
    assert queues.polling_ceiling({"AZURE_FUNCTIONS_ENVIRONMENT": "Development"}) == timedelta(seconds=2)
    assert queues.polling_ceiling({"AZURE_FUNCTIONS_ENVIRONMENT": "Production"}) == timedelta(minutes=1)
    assert queues.polling_ceiling({}) == timedelta(minutes=1)


@pytest.mark.parametrize(
    "queues",
    [{"maxPollingInterval": "00:00:00.050"}, {"maxPollingInterval": 50}, {"newBatchThreshold": -1}],
)
def test_host_json_queue_pacing_the_functions_host_would_refuse_is_refused(tmp_path: Path, queues: dict) -> None:
    write_host_json(tmp_path, queues)

    with pytest.raises(ConfigurationError):
        load_host_settings(tmp_path)


def write_host_json(app_dir: Path, queues: dict[str, Any]) -> None:
    (app_dir / "host.json").write_text(json.dumps({"version": "2.0", "extensions": {"queues": queues}}))

