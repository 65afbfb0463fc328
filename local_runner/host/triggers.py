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

Each poller runs in its own thread (`start`/`stop`) and waits through a `Clock` between passes;
`poll_once()` runs one pass synchronously, so tests and a clock-driven host can step them.
"""

from __future__ import annotations

import base64
import binascii
import concurrent.futures
import contextlib
import json
import logging
import os
import re
import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import (
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.storage.blob import BlobProperties, BlobServiceClient, ContainerClient
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
from local_runner.host.settings import HostSettings, MessageEncoding
from orchestrations.errors import ConfigurationError

logger = logging.getLogger(__name__)

HOSTS_CONTAINER = "azure-webjobs-hosts"
RECEIPTS_DIRECTORY = "blobreceipts"
BLOB_POISON_QUEUE = "webjobs-blobtrigger-poison"
_SETTING_REFERENCE = re.compile(r"%([^%]+)%")


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


class TriggerPoller(ABC):
    """A polling thread: `poll_once` until stopped, waiting `interval` on the clock when idle."""

    def __init__(self, name: str, clock: Clock, interval: float) -> None:
        self.name = name
        self._clock = clock
        self._interval = interval
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    @abstractmethod
    def poll_once(self) -> int:
        """One pass, synchronous: deliver what is pending; how many items were handled."""

    def start(self) -> None:
        if self._thread is None:
            self._stopping.clear()
            self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop after the current pass (an invocation in flight finishes first)."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                handled = self.poll_once()
            except Exception:
                logger.warning("%s: polling failed; retrying", self.name, exc_info=True)
                handled = 0
            if not handled:
                self._clock.wait(self._stopping, self._interval)


class BlobTriggerPoller(TriggerPoller):
    """Delivers new and changed blobs to one blob-trigger function, one at a time, with receipts."""

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
    ) -> None:
        if function.trigger.type != BLOB_TRIGGER:
            raise ValueError(f"{function.name} is not a blob trigger ({function.trigger.type})")
        super().__init__(f"blob-trigger-{function.name}", clock, interval)
        raw_path = str(function.trigger.raw.get("path", ""))
        self.path = BlobPath.parse(resolve_setting_references(raw_path, f"{function.name} path"))
        self._function = function
        self._invoker = invoker
        self._host_id = host_id
        self._max_attempts = max_attempts
        self._encoding = message_encoding
        self._connection_name = str(function.trigger.raw.get("connection") or "AzureWebJobsStorage")
        # (etag, blob name) -> attempts, for blobs whose receipt cannot be kept in storage.
        self._unrecorded: dict[tuple[str, str], int] = {}
        service = BlobServiceClient.from_connection_string(connection_string)
        self._container = service.get_container_client(self.path.container)
        self._hosts = service.get_container_client(HOSTS_CONTAINER)
        self._poison = QueueClient.from_connection_string(connection_string, BLOB_POISON_QUEUE)

    def poll_once(self) -> int:
        attempts = self._read_receipts()
        handled = 0
        try:
            blobs = list(
                self._container.list_blobs(name_starts_with=self.path.prefix, include=["metadata"])
            )
        except ResourceNotFoundError:
            return 0
        for blob in blobs:
            etag = blob.etag.strip('"')
            tries = max(attempts.get((etag, blob.name), 0), self._unrecorded.get((etag, blob.name), 0))
            if self.path.matches(blob.name) and tries < self._max_attempts:
                try:
                    handled += self._deliver(blob, etag, previous_attempts=tries)
                except Exception:  # even the poison queue failed: one blob never stops the pass
                    logger.warning("Blob %s/%s: delivery failed", self.path.container, blob.name, exc_info=True)
                    self._unrecorded[(etag, blob.name)] = tries + 1
                    handled += 1
        return handled

    def _read_receipts(self) -> dict[tuple[str, str], int]:
        """(etag, blob name) -> attempts so far; a completed receipt counts as max_attempts."""
        prefix = _receipt_prefix(self._host_id, self._function.name)
        found: dict[tuple[str, str], int] = {}
        try:
            for receipt in self._hosts.list_blobs(name_starts_with=prefix, include=["metadata"]):
                etag, container, blob_name = receipt.name[len(prefix) :].split("/", 2)
                if container != self.path.container:
                    continue
                metadata = receipt.metadata or {}
                completed = metadata.get("IsCompleted", "true").lower() == "true"
                tries = int(metadata.get("Attempts", "0"))
                found[(etag, blob_name)] = self._max_attempts if completed else tries
        except ResourceNotFoundError:
            pass
        return found

    def _deliver(self, blob: BlobProperties, etag: str, *, previous_attempts: int) -> int:
        """One attempt at one blob: 1 if it counted (whatever happened), 0 if the blob changed meanwhile."""
        tries = previous_attempts + 1
        try:
            value = self._trigger_value(blob, etag)
        except (ResourceModifiedError, ResourceNotFoundError):
            return 0  # changed or deleted since the listing: the next pass sees the new state
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

    def _trigger_value(self, blob: BlobProperties, etag: str) -> object:
        """A reference for an SDK-type binding (nothing read); else the whole blob, as the host reads it."""
        if self._function.trigger.sdk_type is not None:
            return blob_reference_input(
                connection=self._connection_name, container=self.path.container, blob_name=blob.name
            )
        if not _addressable(blob.name):
            # The SDK collapses the dot segments: it would read another blob's bytes, or fail to sign (403).
            raise ValueError("its name has a '.' or '..' segment, which storage clients resolve to another blob")
        client = self._container.get_blob_client(blob.name)
        data = client.download_blob(etag=blob.etag, match_condition=MatchConditions.IfNotModified).readall()
        return blob_trigger_input(
            container=self.path.container,
            blob_name=blob.name,
            data=data,
            uri=client.url,
            etag=etag,
            content_type=blob.content_settings.content_type,
            last_modified=blob.last_modified,
            metadata=blob.metadata or {},
        )

    def _settle(self, blob_name: str, etag: str, *, tries: int, succeeded: bool) -> None:
        """Record an attempt: completed on success or at the last attempt (then to the poison queue)."""
        completed = succeeded or tries >= self._max_attempts
        if not succeeded and completed:
            self._send_to_poison(blob_name, etag, tries)
        if _addressable(blob_name):
            try:
                self._write_receipt(blob_name, etag, completed=completed, tries=tries)
                return
            except Exception as exc:
                logger.warning(
                    "Receipt of blob %s/%s not written (%s); this host keeps it in memory",
                    self.path.container, blob_name, type(exc).__name__,
                )  # fmt: skip
        self._unrecorded[(etag, blob_name)] = self._max_attempts if completed else tries

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
    """Delivers one queue's messages to a queue-trigger function, with host.json retry rules."""

    def __init__(
        self,
        connection_string: str,
        function: IndexedFunction,
        invoker: Invoker,
        clock: Clock,
        *,
        host_settings: HostSettings,
        interval: float = 0.5,
        visibility_timeout_seconds: int = 60,
    ) -> None:
        if function.trigger.type != QUEUE_TRIGGER:
            raise ValueError(f"{function.name} is not a queue trigger ({function.trigger.type})")
        super().__init__(f"queue-trigger-{function.name}", clock, interval)
        raw_name = str(function.trigger.raw.get("queueName", ""))
        self.queue_name = resolve_setting_references(raw_name, f"{function.name} queueName")
        self._function = function
        self._invoker = invoker
        self._settings = host_settings.queues
        self._lease_seconds = visibility_timeout_seconds
        # No encode/decode policy: bodies are read and moved to poison exactly as they were sent.
        self._queue = QueueClient.from_connection_string(connection_string, self.queue_name)
        self._poison = QueueClient.from_connection_string(
            connection_string, f"{self.queue_name}-poison"
        )
        self._queue_ready = False

    def poll_once(self) -> int:
        if not self._queue_ready:
            _create_queue(self._queue)
            self._queue_ready = True
        batch = self._settings.batch_size
        messages = list(
            self._queue.receive_messages(
                messages_per_page=batch, max_messages=batch, visibility_timeout=self._lease_seconds
            )
        )
        # The Functions host runs a batch's invocations at once (host.json batchSize), not one by one: a slow
        # message must not hold up the others (QueueListener / QueueProcessor in the WebJobs storage extension).
        started = [(message, self._start(message)) for message in messages]
        for message, invocation in started:
            if invocation is not None:
                self._settle(message, invocation)
        return len(messages)

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

    def _settle(self, message: QueueMessage, invocation: concurrent.futures.Future[Any]) -> None:
        """Delete the message once its invocation succeeded; else retry it later, or poison it."""
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
            return
        self._queue.delete_message(message)

    def _move_to_poison(self, message: QueueMessage, why: str) -> None:
        logger.error(
            "Message %s on queue %s goes to %s: %s",
            message.id, self.queue_name, self._poison.queue_name, why,
        )  # fmt: skip
        _create_queue(self._poison)
        self._poison.send_message(message.content)
        self._queue.delete_message(message)


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
