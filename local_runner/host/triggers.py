"""Blob and queue triggers, delivered by polling Azurite the way the Functions host's listeners do.

`BlobTriggerPoller` scans a container, calls the function once per (blob name, etag) and records
that in a blob receipt under `azure-webjobs-hosts/blobreceipts/...`, as the host's blob listener
does, so a restarted host does not fire twice and a re-upload fires again; a blob whose function
keeps failing goes to the `webjobs-blobtrigger-poison` queue. A function whose trigger is bound to an
SDK type (`BlobClient`) gets a reference and the poller reads nothing; otherwise the poller downloads
the blob for the `InputStream`, as the host does. Whatever goes wrong with one blob (it cannot be
read, its receipt cannot be written) counts as an attempt of that blob alone: the pass goes on with
the others. A name storage clients cannot address (a `.` or `..` segment: the SDK collapses it, so a
request would reach another blob) keeps its receipt in this host's memory. `QueueTriggerPoller` receives
messages, deletes them on success, makes them visible again on failure and moves them to
`<queue>-poison` after host.json `maxDequeueCount` attempts.

Both deliver concurrently within host.json's limits, as the Functions host's queue listener does (the
blob trigger's too: the host hands found blobs to a queue listener of its own): a batch of at most
`batchSize` at once, the next batch as soon as no more than `newBatchThreshold` are still running, so at most
batchSize + newBatchThreshold invocations of one function run at once. An empty pass waits with the listener's
randomized exponential back-off (100 ms, then about twice as long each time, up to the longest interval),
which goes back to the minimum once something was found.

Each poller runs in its own thread (`start`/`stop`) and waits through a `Clock` between passes;
`poll_once()` runs one pass synchronously (its batches concurrently; it returns once they have all
finished), so tests and a clock-driven host can step them.
"""

from __future__ import annotations

import base64
import binascii
import concurrent.futures
import contextlib
import functools
import json
import logging
import os
import random
import re
import threading
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import (
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.storage.blob import BlobServiceClient, ContainerClient
from azure.storage.queue import QueueClient, QueueMessage

from local_runner.host.clock import Clock
from local_runner.host.functions import (
    BLOB_TRIGGER,
    QUEUE_TRIGGER,
    IndexedFunction,
    Invoker,
    blob_reference_input,
    blob_trigger_input,
    queue_trigger_input,
)
from local_runner.host.settings import (
    MIN_POLLING_INTERVAL,
    HostSettings,
    MessageEncoding,
    QueueSettings,
)
from orchestrations.errors import ConfigurationError
from orchestrations.storage_transport import storage_transport

logger = logging.getLogger(__name__)

HOSTS_CONTAINER = "azure-webjobs-hosts"
RECEIPTS_DIRECTORY = "blobreceipts"
BLOB_POISON_QUEUE = "webjobs-blobtrigger-poison"
# The longest a polling blob trigger goes without a full listing, which finds a blob overwritten under a name
# already seen: the Functions host's full container scan comes as often
# (ScanBlobScanLogHybridPollingStrategy.cs L23 in azure-webjobs-sdk @f79ea0bf,
# src/Microsoft.Azure.WebJobs.Extensions.Storage/Blobs/Listeners).
FULL_SCAN_INTERVAL = timedelta(seconds=10)
# The most blobs the scan lists per second when it finds nothing new, however short the interval: the Functions
# host lists at most 10,000 per 10-second poll (_scanBlobLimitPerPoll, ScanBlobScanLogHybridPollingStrategy.cs).
SCANNED_BLOBS_PER_SECOND = 1000
# What an idle scan spends below that ceiling: each name listed costs about 72 us of CPU (22 in this process,
# 50 in Azurite), so 300 a second keep it near 2% of a core while jobs need the cores (at 1,000 a second it
# was a tenth of the host's CPU in a burst). A container of N uploads is listed every N/300 s, but never less
# often than the Functions host lists it (every 10 s, FULL_SCAN_INTERVAL) unless the ceiling above says so.
IDLE_SCANNED_BLOBS_PER_SECOND = 300
# New names a pass looks up one by one (two requests each: the blob's properties, its receipt); more at once
# and a full listing is cheaper.
NEW_NAMES_PER_LOOKUP = 16
# What reading one receipt by its name costs, in receipts listed: a request costs about 1.3 ms of this process's
# CPU and 1 ms of Azurite's; a receipt in a listing 0.22 ms of this process's (timed in bench/burst.py's bursts)
# and about as little of Azurite's as a name does. Receipts not yet read are read one by one while that is
# cheaper than listing them all.
RECEIPT_READ_COST_IN_LISTED = 8
# Blobs (and receipts) per page of a listing. The SDK parses a whole page at once (the XML text, its element
# tree, the generated models, then its own objects: several KB per blob, for a moment); with the service's
# default of 5000 that moment grows with the container, and the process keeps the highest it ever reached.
LISTING_PAGE_SIZE = 200
_DUE_NOW = datetime.min.replace(tzinfo=UTC)
_SETTING_REFERENCE = re.compile(r"%([^%]+)%")


def idle_scan_delay(names: int) -> float:
    """The least wait, in seconds, after a pass over a container of `names` blobs that found nothing new:
    `IDLE_SCANNED_BLOBS_PER_SECOND`, up to the Functions host's `FULL_SCAN_INTERVAL`, and never more than
    `SCANNED_BLOBS_PER_SECOND`."""
    budget = min(names / IDLE_SCANNED_BLOBS_PER_SECOND, FULL_SCAN_INTERVAL.total_seconds())
    return max(budget, names / SCANNED_BLOBS_PER_SECOND)


def function_id(function_name: str) -> str:
    """The id the Functions host gives a worker function in receipts and poison messages."""
    return f"Host.Functions.{function_name}"


def blob_receipt_name(
    host_id: str, function_name: str, etag: str, container: str, blob_name: str
) -> str:
    """The receipt's name in `azure-webjobs-hosts`, laid out as the host's BlobReceiptManager."""
    unquoted = etag.strip('"')
    return f"{_receipt_prefix(host_id, function_name)}{unquoted}/{container}/{blob_name}"


def _receipt_prefix(host_id: str, function_name: str) -> str:
    return f"{RECEIPTS_DIRECTORY}/{host_id}/{function_id(function_name)}/"


def resolve_setting_references(text: str, what: str) -> str:
    """Replace `%NAME%` binding expressions with app settings, as the host does for bindings."""

    def setting(match: re.Match[str]) -> str:
        value = os.environ.get(match.group(1))
        if value is None:
            raise ConfigurationError(
                "binding_setting_missing",
                f"{what} refers to app setting {match.group(1)}, which is not set; "
                "add it to local.settings.json Values or the environment.",
            )
        return value

    return _SETTING_REFERENCE.sub(setting, text)


@dataclass(frozen=True)
class BlobPath:
    """A blob trigger path such as `uploads/{name}`: a container and a pattern for blob names."""

    container: str
    prefix: str
    pattern: re.Pattern[str]

    @classmethod
    def parse(cls, path: str) -> BlobPath:
        container, _, blob_pattern = path.strip("/").partition("/")
        if not container or "{" in container:
            raise ConfigurationError(
                "blob_path_invalid",
                f"Blob trigger path {path!r} must start with a fixed container name.",
            )
        prefix = blob_pattern.split("{", 1)[0]
        regex = "".join(
            f"(?P<{part[1:-1]}>.+)" if part.startswith("{") else re.escape(part)
            for part in re.split(r"(\{[A-Za-z_][A-Za-z0-9_]*\})", blob_pattern)
            if part
        )
        return cls(container, prefix, re.compile(regex if blob_pattern else ".+"))

    def matches(self, blob_name: str) -> bool:
        return self.pattern.fullmatch(blob_name) is not None


@dataclass(frozen=True, slots=True)
class FoundBlob:
    """A blob as a listing found it: all the blob trigger keeps of it between passes.

    Not the SDK's `BlobProperties` (about 3 KB each, with its nested settings): the poller knows every blob
    of its container, and a container of uploads only grows. A delivery reads the rest with the blob itself.
    """

    name: str
    etag: str  # as the listing gave it (receipts and keys use it unquoted)

    @property
    def key(self) -> tuple[str, str]:
        """(unquoted etag, blob name): what receipts and attempts are kept under."""
        return (self.etag.strip('"'), self.name)


class Backoff:
    """The queue listener's delay between polls: RandomizedExponentialBackoffStrategy.GetNextDelay.

    Azure/azure-webjobs-sdk @f79ea0bf src/Microsoft.Azure.WebJobs.Host/Timers/RandomizedExponentialBackoffStrategy.cs
    L55-92: after a poll that found work, the minimum; else the minimum plus (0.8 to 1.2) * 2^(n-1) * minimum,
    n counting the empty polls since, until that reaches the maximum, which then holds. QueueListener.cs
    (src/Microsoft.Azure.WebJobs.Extensions.Storage/Queues/Listeners) L125 builds it with the minimum of
    QueuePollingIntervals.cs (100 ms) as both minimum and step, and L286-292 asks it for the next delay whenever
    a poll found nothing, telling it whether any poll found messages since the last delay.
    """

    RANDOMIZATION = 0.2

    def __init__(self, minimum: float, maximum: float, *, uniform: Callable[[float, float], float] = random.uniform):
        if not 0 <= minimum <= maximum:
            raise ValueError(f"the back-off needs 0 <= minimum <= maximum, got {minimum} and {maximum}")
        self.minimum, self.maximum = minimum, maximum
        self._uniform = uniform
        self._current = 0.0
        self._exponent = 0

    def next_delay(self, *, found_since_last_delay: bool) -> float:
        if found_since_last_delay:
            self._current, self._exponent = self.minimum, 1
        elif self._current != self.maximum:
            interval = self.minimum
            if self._exponent > 0:
                factor = self._uniform(1 - self.RANDOMIZATION, 1 + self.RANDOMIZATION)
                interval += factor * 2 ** (self._exponent - 1) * self.minimum
            if interval < self.maximum:
                self._current, self._exponent = interval, self._exponent + 1
            else:
                self._current = self.maximum
        return self._current


class TriggerPoller(ABC):
    """A polling thread delivering up to `batch_size` items at once, fetching more at `new_batch_threshold`.

    The loop is QueueListener.ExecuteAsync's (azure-webjobs-sdk @f79ea0bf,
    src/Microsoft.Azure.WebJobs.Extensions.Storage/Queues/Listeners/QueueListener.cs L168-316): fetch at most a
    batch and start every item of it; if it found any, wait until no more than NewBatchThreshold are still
    running (WaitForNewBatchThreshold) and fetch again at once; if it found none, wait the back-off's delay.
    Subclasses say how to fetch: `_fetch` returns (key, delivery) pairs, each delivery run on a worker thread.
    A fetch and the start of what it fetched are one step (a lock), so a pass of `poll_once` and the polling
    thread never both start the same item.
    """

    def __init__(
        self, name: str, clock: Clock, *, batch_size: int, new_batch_threshold: int, backoff: Backoff
    ) -> None:
        if batch_size < 1 or new_batch_threshold < 0:
            raise ValueError(f"batch_size must be >= 1 and new_batch_threshold >= 0, got {batch_size}, "
                             f"{new_batch_threshold}")
        self.name = name
        self.batch_size = batch_size
        self.new_batch_threshold = new_batch_threshold
        self._clock = clock
        self._backoff = backoff
        self._found_since_last_delay = False
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._in_flight: dict[Any, concurrent.futures.Future[int]] = {}
        self._settled = threading.Condition()
        self._fetching = threading.Lock()
        self._workers: concurrent.futures.ThreadPoolExecutor | None = None

    @property
    def max_in_flight(self) -> int:
        """The most invocations this poller runs at once: batchSize + newBatchThreshold."""
        return self.batch_size + self.new_batch_threshold

    def poll_once(self) -> int:
        """One pass, synchronous: deliver what is pending, a batch at a time; how many items were handled."""
        futures = started = self._fetch_and_start()
        while started:
            self._wait_for_in_flight(self.new_batch_threshold)
            started = self._fetch_and_start(more_of_this_pass=True)
            futures = futures + started
        return sum(future.result() for future in futures)

    def start(self) -> None:
        if self._thread is None:
            self._stopping.clear()
            self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop fetching; the invocations in flight finish first (QueueListener.StopAsync, L147-155, awaits them)."""
        self._stopping.set()
        with self._settled:
            self._settled.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        self._wait_for_in_flight(0, timeout=timeout)
        with self._fetching:
            workers, self._workers = self._workers, None
        if workers is not None:
            workers.shutdown(wait=False)

    def _least_delay(self) -> float:
        """The shortest wait after a pass that found nothing, whatever the back-off says."""
        return 0.0

    @abstractmethod
    def _fetch(self, *, more_of_this_pass: bool) -> list[tuple[Any, Callable[[], int]]]:
        """At most a batch of (key, delivery) pairs not in flight; a delivery returns the items it handled."""

    def _fetch_and_start(self, *, more_of_this_pass: bool = False) -> list[concurrent.futures.Future[int]]:
        started = []
        with self._fetching:
            if self._workers is None:
                self._workers = concurrent.futures.ThreadPoolExecutor(self.max_in_flight, thread_name_prefix=self.name)
            for key, delivery in self._fetch(more_of_this_pass=more_of_this_pass):
                with self._settled:
                    if key in self._in_flight:
                        continue
                    future = self._workers.submit(delivery)
                    self._in_flight[key] = future
                future.add_done_callback(functools.partial(self._done, key))
                started.append(future)
        return started

    def _done(self, key: Any, future: concurrent.futures.Future[int]) -> None:
        if not future.cancelled() and future.exception() is not None:
            logger.warning("%s: delivering %s failed", self.name, key, exc_info=future.exception())
        with self._settled:
            self._in_flight.pop(key, None)
            self._settled.notify_all()

    def _is_in_flight(self, key: Any) -> bool:
        with self._settled:
            return key in self._in_flight

    def _wait_for_in_flight(self, at_most: int, timeout: float | None = None) -> None:
        with self._settled:
            self._settled.wait_for(lambda: len(self._in_flight) <= at_most, timeout)

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                started = self._fetch_and_start()
            except Exception:
                logger.warning("%s: polling failed; retrying", self.name, exc_info=True)
                started = []
            if started:
                self._found_since_last_delay = True
                with self._settled:
                    self._settled.wait_for(
                        lambda: len(self._in_flight) <= self.new_batch_threshold or self._stopping.is_set()
                    )
                continue
            delay = self._backoff.next_delay(found_since_last_delay=self._found_since_last_delay)
            delay = max(delay, self._least_delay())
            self._found_since_last_delay = False
            self._clock.wait(self._stopping, delay)


class BlobTriggerPoller(TriggerPoller):
    """Delivers new and changed blobs to one blob-trigger function, a batch at once, with receipts.

    The Functions host's scan hands each blob it finds to its blob trigger queue, whose queue listener
    (host.json's queue settings) runs the function: SharedBlobQueueListenerFactory.cs L68-70 (azure-webjobs-sdk
    @f79ea0bf, src/Microsoft.Azure.WebJobs.Extensions.Storage/Blobs/Listeners). So blobs are delivered
    within batchSize and newBatchThreshold, as queue messages are. A pass finds the container's blobs; the
    blobs it finds are delivered a batch at a time before the next pass, as the host's queue holds what its scan
    found.

    A pass lists only the blob names (the SDK deserializes a full listing's properties at about 0.17 ms of
    CPU per blob, ten times a name's cost, and a container of uploads only grows) and reads the properties
    and the receipt of each name it has not seen. A full listing, which also finds a blob overwritten under
    a name already seen, comes every `FULL_SCAN_INTERVAL` (the Functions host's own container scan comes as
    often), whenever more than `NEW_NAMES_PER_LOOKUP` new names appear at once, and on every `poll_once`.
    Each blob's receipt is read once, when the blob (its name and etag) is first found, as the Functions host
    reads the receipt of each blob its scan finds new and no other (BlobTriggerExecutor.cs L71-82,
    ScanBlobScanLogHybridPollingStrategy.cs L262-272): one by one, or in one listing of every receipt when that
    is cheaper (`RECEIPT_READ_COST_IN_LISTED`) and on every `poll_once`. From then on this poller counts the
    attempts it makes itself, so a receipt deleted later changes nothing until the host restarts, and what an
    idle pass costs is one listing of names; passes in a row that find nothing come no closer together than
    `idle_scan_delay` says.
    """

    def __init__(
        self,
        connection_string: str,
        function: IndexedFunction,
        invoker: Invoker,
        clock: Clock,
        *,
        host_id: str,
        interval: float = 0.5,
        max_attempts: int = 5,
        message_encoding: MessageEncoding = "base64",
        batch_size: int = QueueSettings.batch_size,
        new_batch_threshold: int | None = None,
    ) -> None:
        """`interval`: the longest wait between listings of a container where nothing new was found."""
        if function.trigger.type != BLOB_TRIGGER:
            raise ValueError(f"{function.name} is not a blob trigger ({function.trigger.type})")
        limits = QueueSettings(batch_size=batch_size, new_batch_threshold=new_batch_threshold)
        minimum = min(MIN_POLLING_INTERVAL.total_seconds(), interval)
        super().__init__(
            f"blob-trigger-{function.name}", clock, batch_size=batch_size,
            new_batch_threshold=limits.effective_new_batch_threshold(), backoff=Backoff(minimum, interval),
        )
        raw_path = str(function.trigger.raw.get("path", ""))
        self.path = BlobPath.parse(resolve_setting_references(raw_path, f"{function.name} path"))
        self._function = function
        self._invoker = invoker
        self._host_id = host_id
        self._max_attempts = max_attempts
        self._encoding = message_encoding
        self._connection_name = str(function.trigger.raw.get("connection") or "AzureWebJobsStorage")
        # (etag, blob name) -> attempts so far, max_attempts once completed: the receipts as the last listing
        # read them, what this poller recorded since that read began (a receipt written after it), and the
        # blobs whose receipt cannot be kept in storage (for as long as this poller lives).
        self._receipts: dict[tuple[str, str], int] = {}
        self._recent: dict[tuple[str, str], int] = {}
        self._unrecorded: dict[tuple[str, str], int] = {}
        self._attempts_lock = threading.Lock()
        # Blobs of the current pass's listing not yet started: the host's blob trigger queue.
        self._pending: deque[FoundBlob] = deque()
        # The blobs whose receipt has been read (None: read them all at the next full listing).
        self._receipts_read: set[tuple[str, str]] | None = None
        # The blobs found so far by name (a full listing's, or looked up), and when the next full listing is due.
        self._known: dict[str, FoundBlob] = {}
        self._full_scan_due = _DUE_NOW
        # A connection for each invocation that may run at once, and one for the listing.
        service = BlobServiceClient.from_connection_string(
            connection_string, transport=storage_transport(pool_size=self.max_in_flight + 1)
        )
        self._container = service.get_container_client(self.path.container)
        self._hosts = service.get_container_client(HOSTS_CONTAINER)
        self._poison = QueueClient.from_connection_string(connection_string, BLOB_POISON_QUEUE)

    def _fetch(self, *, more_of_this_pass: bool) -> list[tuple[Any, Callable[[], int]]]:
        if not self._pending and not more_of_this_pass:
            self._pending.extend(self._list_new())
        batch: list[tuple[Any, Callable[[], int]]] = []
        while self._pending and len(batch) < self.batch_size:
            blob = self._pending.popleft()
            key = blob.key
            if self._is_in_flight(key):  # first: a delivery settles (its attempts known) before it leaves
                continue
            tries = self._tries(key)
            if tries < self._max_attempts:
                batch.append((key, functools.partial(self._attempt, blob, key[0], tries)))
        return batch

    def poll_once(self) -> int:
        self._receipts_read = None  # an explicit pass lists in full and reads every receipt
        self._full_scan_due = _DUE_NOW
        return super().poll_once()

    def _least_delay(self) -> float:
        return idle_scan_delay(len(self._known))

    def _list_new(self) -> list[FoundBlob]:
        """The blobs of the trigger's path that have attempts left; [] while the container does not exist."""
        try:
            in_full = self._clock.now() >= self._full_scan_due
            listing = self._list_in_full() if in_full else self._list_by_name()
        except ResourceNotFoundError:
            return []
        return [blob for blob in listing if self._tries(blob.key) < self._max_attempts]

    def _list_in_full(self) -> list[FoundBlob]:
        # No metadata: a delivery that needs it reads it with the blob (`_trigger_value`).
        blobs = self._container.list_blobs(name_starts_with=self.path.prefix, results_per_page=LISTING_PAGE_SIZE)
        listing = [FoundBlob(blob.name, blob.etag) for blob in blobs if self.path.matches(blob.name)]
        self._read_new_receipts({blob.key for blob in listing})
        # Only once the receipts are read: until then the next pass lists in full again.
        self._known = {blob.name: blob for blob in listing}
        self._full_scan_due = self._clock.now() + FULL_SCAN_INTERVAL
        return listing

    def _read_new_receipts(self, listed: set[tuple[str, str]]) -> None:
        """Read the receipts of the listed blobs whose receipt has not been read, and forget the blobs no
        longer listed (deleted, or overwritten: a new etag is another blob)."""
        unread = listed if self._receipts_read is None else listed - self._receipts_read
        one_by_one = len(unread) * RECEIPT_READ_COST_IN_LISTED <= len(listed)
        if one_by_one and all(_addressable(name) for _, name in unread):
            for etag, name in unread:
                self._read_receipt(name, etag)
        elif unread:
            with self._attempts_lock:
                self._recent = {}  # from here on, a settled blob is in the receipts read below or in _recent
            receipts = self._read_receipts()
            with self._attempts_lock:
                self._receipts = receipts
        self._receipts_read = listed
        with self._attempts_lock:
            self._receipts = {key: tries for key, tries in self._receipts.items() if key in listed}
            self._recent = {key: tries for key, tries in self._recent.items() if key in listed}

    def _list_by_name(self) -> list[FoundBlob]:
        """The known blobs still listed, and each new name's properties and receipt, read one by one; a full
        listing instead when too many names are new, or one cannot be addressed by its name."""
        listed = self._container.list_blob_names(name_starts_with=self.path.prefix, results_per_page=LISTING_PAGE_SIZE)
        names = [name for name in listed if self.path.matches(name)]
        new = [name for name in names if name not in self._known]
        if len(new) > NEW_NAMES_PER_LOOKUP or not all(_addressable(name) for name in new):
            return self._list_in_full()
        for name in new:
            with contextlib.suppress(ResourceNotFoundError):  # deleted since: nothing to deliver
                blob = FoundBlob(name, self._container.get_blob_client(name).get_blob_properties().etag)
                self._read_receipt(name, blob.key[0])
                self._known[name] = blob
                if self._receipts_read is not None:
                    self._receipts_read.add(blob.key)
        self._known = {name: self._known[name] for name in names if name in self._known}
        return list(self._known.values())

    def _tries(self, key: tuple[str, str]) -> int:
        with self._attempts_lock:
            return max(self._receipts.get(key, 0), self._recent.get(key, 0), self._unrecorded.get(key, 0))

    def _read_receipts(self) -> dict[tuple[str, str], int]:
        """(etag, blob name) -> attempts so far; a completed receipt counts as max_attempts."""
        prefix = _receipt_prefix(self._host_id, self._function.name)
        found: dict[tuple[str, str], int] = {}
        try:
            receipts = self._hosts.list_blobs(
                name_starts_with=prefix, include=["metadata"], results_per_page=LISTING_PAGE_SIZE
            )
            for receipt in receipts:
                etag, container, blob_name = receipt.name[len(prefix) :].split("/", 2)
                if container != self.path.container:
                    continue
                found[(etag, blob_name)] = _receipt_attempts(receipt.metadata or {}, self._max_attempts)
        except ResourceNotFoundError:
            pass
        return found

    def _read_receipt(self, blob_name: str, etag: str) -> None:
        """Learn one blob's attempts from its receipt, if it has one (another host's, or an earlier life's)."""
        name = blob_receipt_name(self._host_id, self._function.name, etag, self.path.container, blob_name)
        try:
            metadata = self._hosts.get_blob_client(name).get_blob_properties().metadata or {}
        except ResourceNotFoundError:
            return
        tries = _receipt_attempts(metadata, self._max_attempts)
        with self._attempts_lock:
            self._receipts[(etag, blob_name)] = max(tries, self._receipts.get((etag, blob_name), 0))

    def _attempt(self, blob: FoundBlob, etag: str, tries: int) -> int:
        try:
            return self._deliver(blob, etag, previous_attempts=tries)
        except Exception:  # even the poison queue failed: one blob never stops the others
            logger.warning("Blob %s/%s: delivery failed", self.path.container, blob.name, exc_info=True)
            with self._attempts_lock:
                self._unrecorded[(etag, blob.name)] = tries + 1
            return 1

    def _deliver(self, blob: FoundBlob, etag: str, *, previous_attempts: int) -> int:
        """One attempt at one blob: 1 if it counted (whatever happened), 0 if the blob changed meanwhile."""
        tries = previous_attempts + 1
        try:
            value = self._trigger_value(blob, etag)
        except (ResourceModifiedError, ResourceNotFoundError):
            self._full_scan_due = _DUE_NOW  # changed or deleted since found: the next pass lists in full
            return 0
        except Exception as exc:  # e.g. a name no client can address: the blob cannot be read
            logger.warning(
                "Blob %s/%s could not be read for %s (attempt %d of %d): %s: %s",
                self.path.container, blob.name, self._function.name, tries, self._max_attempts,
                type(exc).__name__, str(exc).splitlines()[0] if str(exc) else "",
            )  # fmt: skip
            self._settle(blob.name, etag, tries=tries, succeeded=False)
            return 1
        reason = f"New blob detected(LogsAndContainerScan): {self.path.container}/{blob.name}"
        try:
            self._invoker.invoke(self._function, value, reason=reason)
        except Exception:
            self._settle(blob.name, etag, tries=tries, succeeded=False)
            return 1
        self._settle(blob.name, etag, tries=tries, succeeded=True)
        return 1

    def _trigger_value(self, blob: FoundBlob, etag: str) -> object:
        """A reference for an SDK-type binding (nothing read); else the whole blob, as the host reads it, with
        the properties and metadata the download returns (those of the etag found: the read is conditional)."""
        if self._function.trigger.sdk_type is not None:
            return blob_reference_input(
                connection=self._connection_name, container=self.path.container, blob_name=blob.name
            )
        if not _addressable(blob.name):
            # The SDK collapses the dot segments: it would read another blob's bytes, or fail to sign (403).
            raise ValueError("its name has a '.' or '..' segment, which storage clients resolve to another blob")
        client = self._container.get_blob_client(blob.name)
        download = client.download_blob(etag=blob.etag, match_condition=MatchConditions.IfNotModified)
        data, properties = download.readall(), download.properties
        return blob_trigger_input(
            container=self.path.container,
            blob_name=blob.name,
            data=data,
            uri=client.url,
            etag=etag,
            content_type=properties.content_settings.content_type,
            last_modified=properties.last_modified,
            metadata=properties.metadata or {},
        )

    def _settle(self, blob_name: str, etag: str, *, tries: int, succeeded: bool) -> None:
        """Record an attempt: completed on success or at the last attempt (then to the poison queue)."""
        completed = succeeded or tries >= self._max_attempts
        attempts = self._max_attempts if completed else tries
        if not succeeded and completed:
            self._send_to_poison(blob_name, etag, tries)
        if _addressable(blob_name):
            try:
                self._write_receipt(blob_name, etag, completed=completed, tries=tries)
                with self._attempts_lock:  # after the write: a listing reading receipts now sees one or the other
                    self._recent[(etag, blob_name)] = attempts
                return
            except Exception as exc:
                logger.warning(
                    "Receipt of blob %s/%s not written (%s); this host keeps it in memory",
                    self.path.container, blob_name, type(exc).__name__,
                )  # fmt: skip
        with self._attempts_lock:
            self._unrecorded[(etag, blob_name)] = attempts

    def _write_receipt(self, blob_name: str, etag: str, *, completed: bool, tries: int) -> None:
        name = blob_receipt_name(
            self._host_id, self._function.name, etag, self.path.container, blob_name
        )
        metadata = {"IsCompleted": str(completed).lower(), "Attempts": str(tries)}
        try:
            self._hosts.upload_blob(name, b"", overwrite=True, metadata=metadata)
        except ResourceNotFoundError:
            _create_container(self._hosts)
            self._hosts.upload_blob(name, b"", overwrite=True, metadata=metadata)

    def _send_to_poison(self, blob_name: str, etag: str, tries: int) -> None:
        logger.error(
            "Blob %s/%s failed %d times in %s; moving it to queue %s",
            self.path.container, blob_name, tries, self._function.name, BLOB_POISON_QUEUE,
        )  # fmt: skip
        message = {
            "Type": "BlobTrigger",
            "FunctionId": function_id(self._function.name),
            "BlobType": "BlockBlob",
            "ContainerName": self.path.container,
            "BlobName": blob_name,
            "ETag": f'"{etag}"',
        }
        _create_queue(self._poison)
        self._poison.send_message(_encode(json.dumps(message), self._encoding))


class QueueTriggerPoller(TriggerPoller):
    """Delivers one queue's messages to a queue-trigger function, with host.json's batch and retry rules."""

    def __init__(
        self,
        connection_string: str,
        function: IndexedFunction,
        invoker: Invoker,
        clock: Clock,
        *,
        host_settings: HostSettings,
        interval: float | None = None,
        visibility_timeout_seconds: int = 60,
    ) -> None:
        """`interval`, if given, caps the longest wait between polls of an empty queue below host.json's, as
        QueueListener's own maxPollingInterval argument does (QueueListener.cs L117-123); the host passes none."""
        if function.trigger.type != QUEUE_TRIGGER:
            raise ValueError(f"{function.name} is not a queue trigger ({function.trigger.type})")
        settings = host_settings.queues
        longest = settings.polling_ceiling().total_seconds()
        if interval is not None:
            longest = min(longest, interval)
        super().__init__(
            f"queue-trigger-{function.name}", clock, batch_size=settings.batch_size,
            new_batch_threshold=settings.effective_new_batch_threshold(),
            backoff=Backoff(min(MIN_POLLING_INTERVAL.total_seconds(), longest), longest),
        )
        raw_name = str(function.trigger.raw.get("queueName", ""))
        self.queue_name = resolve_setting_references(raw_name, f"{function.name} queueName")
        self._function = function
        self._invoker = invoker
        self._settings = settings
        self._lease_seconds = visibility_timeout_seconds
        # No encode/decode policy: bodies are read and moved to poison exactly as they were sent.
        self._queue = QueueClient.from_connection_string(
            connection_string, self.queue_name, transport=storage_transport(pool_size=self.max_in_flight + 1)
        )
        self._poison = QueueClient.from_connection_string(
            connection_string, f"{self.queue_name}-poison"
        )
        self._queue_ready = False

    def _fetch(self, *, more_of_this_pass: bool) -> list[tuple[Any, Callable[[], int]]]:
        """One GetMessages of at most batchSize; a pass of `poll_once` is that one batch."""
        if more_of_this_pass:
            return []
        if not self._queue_ready:
            _create_queue(self._queue)
            self._queue_ready = True
        batch = self.batch_size
        messages = list(
            self._queue.receive_messages(
                messages_per_page=batch, max_messages=batch, visibility_timeout=self._lease_seconds
            )
        )
        # Started here, all of the batch at once (QueueListener.cs L245-264); each settles on a worker thread.
        return [(message.id, functools.partial(self._settle, message, self._start(message))) for message in messages]

    def _start(self, message: QueueMessage) -> concurrent.futures.Future[Any] | None:
        """Submit the message's invocation; None when it went to the poison queue instead."""
        max_count = self._settings.max_dequeue_count
        if message.dequeue_count is not None and message.dequeue_count > max_count:
            self._move_to_poison(message, "it was dequeued more than maxDequeueCount times")
            return None
        try:
            body = _decode(str(message.content or ""), self._settings.message_encoding)
        except ValueError as exc:
            self._move_to_poison(message, f"it could not be decoded ({exc})")
            return None
        value = queue_trigger_input(
            id=message.id,
            body=body,
            dequeue_count=message.dequeue_count or 1,
            expiration_time=message.expires_on,
            insertion_time=message.inserted_on,
            time_next_visible=message.next_visible_on,
            pop_receipt=message.pop_receipt,
        )
        reason = f"New queue message detected on '{self.queue_name}'."
        return self._invoker.submit(self._function, value, reason=reason)

    def _settle(self, message: QueueMessage, invocation: concurrent.futures.Future[Any] | None) -> int:
        """Delete the message once its invocation succeeded; else retry it later, or poison it. 1: one handled.

        None: the message went to the poison queue without an invocation."""
        if invocation is None:
            return 1
        max_count = self._settings.max_dequeue_count
        try:
            invocation.result()
        except Exception:
            if (message.dequeue_count or 1) >= max_count:
                self._move_to_poison(message, f"its function failed {max_count} times")
            else:
                self._queue.update_message(
                    message,
                    pop_receipt=message.pop_receipt,
                    visibility_timeout=int(self._settings.visibility_timeout.total_seconds()),
                )
            return 1
        self._queue.delete_message(message)
        return 1

    def _move_to_poison(self, message: QueueMessage, why: str) -> None:
        logger.error(
            "Message %s on queue %s goes to %s: %s",
            message.id, self.queue_name, self._poison.queue_name, why,
        )  # fmt: skip
        _create_queue(self._poison)
        self._poison.send_message(message.content)
        self._queue.delete_message(message)


def _receipt_attempts(metadata: dict[str, str], max_attempts: int) -> int:
    """A receipt's attempts so far; a completed receipt counts as max_attempts."""
    completed = metadata.get("IsCompleted", "true").lower() == "true"
    return max_attempts if completed else int(metadata.get("Attempts", "0"))


def _addressable(blob_name: str) -> bool:
    """Whether storage clients reach this very blob by its name: not with a `.` or `..` segment, which
    they collapse (a receipt written under it would be another blob's)."""
    return not any(segment in (".", "..") for segment in blob_name.split("/"))


def _decode(content: str, encoding: MessageEncoding) -> bytes:
    if encoding == "none":
        return content.encode("utf-8")
    try:
        return base64.b64decode(content, validate=True)
    except binascii.Error as exc:
        raise ValueError(f"not base64, but host.json messageEncoding is base64: {exc}") from exc


def _encode(text: str, encoding: MessageEncoding) -> str:
    if encoding == "none":
        return text
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


def _create_queue(queue: QueueClient) -> None:
    with contextlib.suppress(ResourceExistsError):
        queue.create_queue()


def _create_container(container: ContainerClient) -> None:
    with contextlib.suppress(ResourceExistsError):
        container.create_container()
