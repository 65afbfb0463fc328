"""Admitting uploads: from a blob in the uploads container to a `RunRequest`, or a reasoned rejection.

Every upload ends in exactly one of two places: an orchestration (instance id = run id) or a run
record with status `rejected` and a reason a person can act on. Nothing is dropped silently.

Nothing is read that the decision does not need, in this order: the name (a name that storage clients
would resolve to another blob, such as `a/../b`, is refused without asking storage), the blob's
properties (its version and size: one HEAD request), and only then the content of a request
document that passed every other check, at most 128 KiB. A portfolio is never read here: the runner
reads it. So an upload of any size costs the app one HEAD request.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import math
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from azure.core import MatchConditions
from azure.core.exceptions import ResourceModifiedError, ResourceNotFoundError
from azure.storage.blob import BlobClient
from opentelemetry import trace
from opentelemetry.trace import SpanKind
from pydantic import ValidationError

from orchestrations import telemetry
from orchestrations.contracts import (
    MAX_REQUEST_ENV_BYTES,
    NOT_IN_QUEUE_MESSAGES,
    AnalysisRequest,
    RunError,
    RunPolicy,
    RunRecord,
    RunRequest,
    RunStatus,
    RunTaskInput,
    SourceBlob,
    TaskType,
    blob_uri,
    describe_validation_error,
    input_scope_violation,
)
from orchestrations.errors import RunnerOrchestratorError
from orchestrations.job_spec import request_env_value
from orchestrations.log_context import run_context
from orchestrations.run_store import RunStore

logger = logging.getLogger(__name__)

ORCHESTRATOR_NAME = "run_task"
MAX_BLOB_NAME_CHARS = 1024
# `az://` + a container name (at most 63) + `/` + a blob name (at most 1,024): no longer URI names a blob.
MAX_BLOB_URI_CHARS = len("az://") + 63 + 1 + MAX_BLOB_NAME_CHARS
# A PACTA request nests two deep (an object holding BlobURIs); deeper documents are refused before they
# are parsed, so no recursive parser, validator or serialiser downstream ever meets one near its limit.
MAX_REQUEST_DEPTH = 32
# The largest integer a double (Go's float64, R's numeric) holds has 309 digits; longer ones become infinity.
MAX_INTEGER_DIGITS = 309
# A rejection's message is stored in the runs table; bound it whatever the upload held.
MAX_ERROR_MESSAGE_CHARS = 4000
_KNOWN_TASK_TYPES = ", ".join(task_type.value for task_type in TaskType)
# The characters that open or close arrays, objects and strings, and the escape inside strings.
_JSON_STRUCTURE = re.compile(r'[\[\]{}"\\]')


@dataclass(frozen=True)
class BlobVersion:
    """One version of a blob: its ETag and its size in bytes."""

    etag: str
    size: int


class UploadGoneError(RunnerOrchestratorError):
    """The blob was deleted or replaced before it could be read; a new version is an upload of its own."""

    def __init__(self, uri: str) -> None:
        super().__init__("upload_gone", f"The upload {_printable(uri)!r} was deleted or replaced before it was read.")


class Upload(Protocol):
    """A blob the trigger saw. Its name is known at once; its version and bytes only when asked for."""

    @property
    def container(self) -> str: ...

    @property
    def name(self) -> str: ...

    def get_version(self) -> BlobVersion:
        """The blob's current version; raises UploadGoneError if there is none."""
        ...

    def read(self, version: BlobVersion) -> bytes:
        """The content of exactly that version; raises UploadGoneError if it has changed or gone."""
        ...


class StoredUpload:
    """An `Upload` read through a `BlobClient`: what the blob trigger's SDK-type binding hands the function."""

    def __init__(self, client: BlobClient) -> None:
        self._client = client

    @property
    def container(self) -> str:
        return str(self._client.container_name)

    @property
    def name(self) -> str:
        return str(self._client.blob_name)

    def get_version(self) -> BlobVersion:
        try:
            properties = self._client.get_blob_properties()
        except ResourceNotFoundError:
            raise UploadGoneError(blob_uri(self.container, self.name)) from None
        return BlobVersion(etag=str(properties.etag), size=int(properties.size))

    def read(self, version: BlobVersion) -> bytes:
        try:
            download = self._client.download_blob(etag=version.etag, match_condition=MatchConditions.IfNotModified)
            return download.readall()
        except (ResourceNotFoundError, ResourceModifiedError):
            raise UploadGoneError(blob_uri(self.container, self.name)) from None


class PinnedUpload:
    """An `Upload` held to the one version a run was started for: a rerun reads that version or none.

    Storage keeps only the current version of a blob (without blob versioning), and the runner reads its
    inputs by `az://` URI, which names no version: so a blob replaced since (another ETag) counts as gone.
    """

    def __init__(self, upload: Upload, etag: str) -> None:
        self._upload = upload
        self._etag = etag

    @property
    def container(self) -> str:
        return self._upload.container

    @property
    def name(self) -> str:
        return self._upload.name

    def get_version(self) -> BlobVersion:
        version = self._upload.get_version()
        if version.etag.strip('"') != self._etag.strip('"'):
            raise UploadGoneError(blob_uri(self.container, self.name))
        return version

    def read(self, version: BlobVersion) -> bytes:
        return self._upload.read(version)


@dataclass(frozen=True)
class Rejection:
    """Why an upload starts no run; `etag` is None when the name alone decided it (storage was not asked)."""

    task_type: str
    error: RunError
    etag: str | None = None


def derive_run_id(container: str, name: str, etag: str) -> str:
    """The same blob version always gives the same run id; a new version a new one.

    A name refused before storage is asked has no version: its etag is "", one run id per name.
    """
    digest = hashlib.sha256(f"{container}\n{name}\n{etag.strip(chr(34))}".encode()).hexdigest()
    return f"run-{digest[:28]}"


def derive_rerun_id(run_id: str, number: int) -> str:
    """The id of the `number`th rerun (1, 2, ...) of `run_id`: the same for every retry of one rerun."""
    digest = hashlib.sha256(f"rerun\n{run_id}\n{number}".encode()).hexdigest()
    return f"run-{digest[:28]}"


def admit_upload(
    upload: Upload, *, max_bytes: int, input_scopes: Sequence[str], policy: RunPolicy, now: datetime
) -> RunRequest | Rejection:
    """Check the upload's name, size, content and inputs; build its `RunRequest` or say why not.

    Blocking: it asks storage for the blob's properties, and reads a request document it accepts.
    """
    first_segment = upload.name.split("/", 1)[0]
    problem = _check_name(upload.name)
    if problem:
        return Rejection(first_segment, problem)
    version = upload.get_version()
    problem = _check_size(version.size, max_bytes)
    if problem:
        return Rejection(first_segment, problem, version.etag)
    try:
        task_type = TaskType(first_segment)
    except ValueError:
        return Rejection(first_segment, _error(
            "unknown_task_type",
            f"The upload's first path segment {first_segment!r} is not a task type. "
            f"Upload to <task_type>/<file>, where task_type is one of: {_KNOWN_TASK_TYPES}.",
        ), version.etag)
    file_name = upload.name[len(first_segment) + 1 :]
    if not file_name.lower().endswith(task_type.upload_suffix):
        return Rejection(task_type.value, _error(
            "wrong_file_type",
            f"{task_type.value} uploads must be {task_type.upload_suffix} files; got {file_name!r}.",
        ), version.etag)
    source_uri = blob_uri(upload.container, upload.name)
    request_document: dict[str, Any] | None = None
    inputs = [source_uri]
    if task_type is not TaskType.PARSE_PORTFOLIO:
        parsed = _read_request_document(upload, version, task_type)
        if isinstance(parsed, RunError):
            return Rejection(task_type.value, parsed, version.etag)
        request_document, inputs = parsed, list(parsed["BlobURIs"])
    problem = _check_inputs(inputs, input_scopes, from_document=request_document is not None)
    if problem:
        return Rejection(task_type.value, problem, version.etag)
    request = RunRequest(
        run_id=derive_run_id(upload.container, upload.name, version.etag),
        task_type=task_type,
        inputs=inputs,
        source=SourceBlob(
            container=upload.container, name=upload.name, etag=version.etag, size=version.size, uri=source_uri
        ),
        requested_at=now,
        request_document=request_document,
        policy=policy,
    )
    env_bytes = len(request_env_value(request))
    if env_bytes > MAX_REQUEST_ENV_BYTES:
        return Rejection(task_type.value, _error(
            "request_too_large",
            f"The request document is {env_bytes} bytes as the job receives it ({task_type.request_env_var}, JSON "
            f"with non-ASCII characters escaped); the limit is {MAX_REQUEST_ENV_BYTES} bytes.",
        ), version.etag)
    return request


async def handle_upload(
    upload: Upload, client: Any, *, run_store: RunStore, max_bytes: int, input_scopes: Sequence[str],
    policy: RunPolicy, now: datetime,
) -> str | None:
    """Start the run for an upload (once per blob version) or record its rejection; returns the run id.

    `client` is the Durable orchestration client. Safe to call twice for the same blob version:
    the second call finds the orchestration and starts nothing. None: the blob was deleted or replaced
    before it could be read (a replacement is an upload of its own, with its own trigger).
    """
    uri = _printable(blob_uri(upload.container, upload.name))
    # The root of the run's trace: every later span of the run is its descendant (orchestrations/telemetry.py).
    with telemetry.tracer().start_as_current_span(
        "intake", kind=SpanKind.CONSUMER, attributes={telemetry.BLOB_URI_ATTRIBUTE: uri}
    ):
        try:
            decision = await asyncio.to_thread(
                admit_upload, upload, max_bytes=max_bytes, input_scopes=input_scopes, policy=policy, now=now
            )
        except UploadGoneError as exc:
            logger.warning("Upload %s: %s Nothing to do for this version.", uri, exc.message)
            return None
        return await _take(upload, decision, client, run_store=run_store, now=now, uri=uri)


async def _take(
    upload: Upload, decision: RunRequest | Rejection, client: Any, *, run_store: RunStore, now: datetime, uri: str
) -> str:
    """Record the rejection or start the run; its run id either way (an attribute of the intake's span)."""
    span = trace.get_current_span()
    if isinstance(decision, Rejection):
        record = _rejected_record(upload, decision, now)
        span.set_attribute(telemetry.RUN_ID_ATTRIBUTE, record.run_id)
        with run_context(record.run_id):
            stored, created = run_store.create_if_absent(record)
            if created:
                logger.warning("Rejected upload %s: %s", uri, decision.error.message)
        return stored.run_id

    span.set_attribute(telemetry.RUN_ID_ATTRIBUTE, decision.run_id)
    await start_run(decision, client, run_store=run_store)
    return decision.run_id


async def start_run(request: RunRequest, client: Any, *, run_store: RunStore) -> bool:
    """Record the run `queued` and start its orchestration (instance id = run id), unless it exists.

    Returns whether this call started it. Safe to call twice for the same request, also at once: the
    record is inserted only if absent, and a start that finds the instance created meanwhile starts nothing.
    """
    with run_context(request.run_id):
        return await _start_run(request, client, run_store=run_store)


async def _start_run(request: RunRequest, client: Any, *, run_store: RunStore) -> bool:
    uri = _printable(request.source.uri)
    if request.traceparent is None:  # the run's trace hangs off the span that started it (intake, rerun)
        request = request.model_copy(update={"traceparent": telemetry.current_traceparent()})
    _, created = await asyncio.to_thread(run_store.create_if_absent, _queued_record(request))
    # The record comes first, so a run whose record this call created has no orchestration yet: only a run taken
    # in before (a delivery again, a start cut short) is looked up, lest a finished one be started anew.
    existing = not created and await client.get_status(request.run_id)
    if existing:  # DurableOrchestrationStatus is falsy for an unknown instance
        logger.info("Upload %s already has run %s; not starting it again", uri, request.run_id)
        return False
    try:
        await client.start_new(ORCHESTRATOR_NAME, request.run_id, RunTaskInput(request=request).to_payload())
    except Exception:  # the client raises a plain Exception, also for 409: an instance created meanwhile
        if await client.get_status(request.run_id):
            return False
        raise
    rerun = f" as a rerun of {request.rerun_of}" if request.rerun_of else ""
    logger.info("Started run %s (%s) for %s%s", request.run_id, request.task_type.value, uri, rerun)
    return True


def _check_name(name: str) -> RunError | None:
    """Refuse a name before storage is asked about it: storage clients resolve `.`/`..` segments and
    backslashes each their own way (Azurite stores `a\\..\\b` as `a/../b`; the SDK collapses it to `b`)."""
    if len(name) > MAX_BLOB_NAME_CHARS:
        return _error(
            "invalid_name", f"The blob name is {len(name)} characters long; the limit is {MAX_BLOB_NAME_CHARS}."
        )
    if any(unicodedata.category(char) == "Cc" for char in name):
        return _error(
            "invalid_name", f"The blob name {_printable(name)!r} contains control characters; rename the file."
        )
    # U+FFFE and U+FFFF are not characters (Azure's blob naming rules advise against them), and no storage queue
    # message can carry them: a run's name travels in queue messages (in Azure, the Durable extension's as text:
    # DTFx's AzureStorageOrchestrationServiceSettings.QueueClientMessageEncoding is UTF8 by default).
    if unsendable := sorted(set(NOT_IN_QUEUE_MESSAGES.findall(name))):
        return _error(
            "invalid_name",
            f"The blob name {name!r} contains {', '.join(f'U+{ord(char):04X}' for char in unsendable)}, which "
            "Azure Storage queue messages cannot carry; rename the file.",
        )
    segments = name.split("/")
    if ".." in segments:
        return _error("invalid_name", f"The blob name {name!r} contains a '..' segment; use a plain path.")
    if "\\" in name:
        return _error("invalid_name", f"The blob name {name!r} contains a backslash; separate folders with '/'.")
    if "/" not in name or name.endswith("/"):
        return _error(
            "invalid_name",
            f"The blob name {name!r} has no file under a task type; upload to <task_type>/<file>.",
        )
    if "." in segments or "" in segments:
        return _error("invalid_name", f"The blob name {name!r} has an empty or '.' segment; use a plain path.")
    return None


def _check_size(size: int, max_bytes: int) -> RunError | None:
    if size == 0:
        return _error("empty_upload", "The upload is empty (0 bytes); upload the file again with its content.")
    if size > max_bytes:
        return _error(
            "upload_too_large",
            f"The upload is {size} bytes; the limit is {max_bytes} bytes (setting UPLOAD_MAX_BYTES).",
        )
    return None


def _check_inputs(inputs: Sequence[str], input_scopes: Sequence[str], *, from_document: bool) -> RunError | None:
    """Every input must lie inside INPUT_SCOPES (the runner checks again before downloading)."""
    violations = [
        (index, reason) for index, uri in enumerate(inputs)
        if (reason := input_scope_violation(uri, input_scopes)) is not None
    ]
    if not violations:
        return None
    index, reason = violations[0]
    which = f"BlobURIs[{index}]" if from_document else "its own upload"
    more = f" ({len(violations) - 1} more entries of BlobURIs are refused too)" if len(violations) > 1 else ""
    return _error(
        "input_not_allowed",
        f"The request may not read {which}: {reason}{more}. Requests read only what the setting INPUT_SCOPES "
        "lists; name a blob there, or ask the operator to add its container or folder to INPUT_SCOPES.",
    )


def _read_request_document(upload: Upload, version: BlobVersion, task_type: TaskType) -> dict[str, Any] | RunError:
    if version.size > MAX_REQUEST_ENV_BYTES:
        return _error(
            "request_too_large",
            f"The request document is {version.size} bytes; the limit is {MAX_REQUEST_ENV_BYTES} bytes "
            f"(it travels in {task_type.request_env_var}).",
        )
    return parse_request_document(upload.read(version))


class _NotJsonError(ValueError):
    """A value Python's json module accepts but JSON (RFC 8259), Go and R do not."""


def parse_request_document(content: bytes) -> dict[str, Any] | RunError:
    """A request document as a dict with valid BlobURIs, or why it is none. Linear in the size: the
    nesting is measured before anything recursive reads it."""
    try:
        # A UTF-8 byte order mark is dropped: Windows editors write one, and it is no part of the JSON.
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        return _error("invalid_request", f"The request document is not UTF-8 text ({exc.reason} at byte {exc.start}).")
    depth = _nesting_depth(text, MAX_REQUEST_DEPTH)
    if depth > MAX_REQUEST_DEPTH:
        return _error(
            "request_too_deep",
            f"The request document nests arrays and objects more than {MAX_REQUEST_DEPTH} deep (the limit); a "
            'PACTA request is one object, {"AnalysisID": ..., "BlobURIs": [...]}.',
        )
    try:
        document = json.loads(
            text, parse_constant=_refuse_constant, parse_float=_finite_float, parse_int=_bounded_int
        )
    except _NotJsonError as exc:
        return _error("invalid_request", f"The request document is not valid JSON: {exc}.")
    except json.JSONDecodeError as exc:
        return _error(
            "invalid_request",
            f"The request document is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}.",
        )
    if not isinstance(document, dict):
        return _error("invalid_request", "The request document must be a JSON object, like PACTA's requests.")
    try:
        json.dumps(document, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return _error(
            "invalid_request",
            "The request document escapes a lone UTF-16 surrogate (such as \\ud800), which is no character; "
            "escape a character outside the BMP as a surrogate pair, or write it as UTF-8.",
        )
    uris = document.get("BlobURIs")
    if (
        not isinstance(uris, list) or not uris
        or not all(isinstance(uri, str) and uri.startswith("az://") for uri in uris)
    ):
        return _error(
            "invalid_request",
            'The request document needs "BlobURIs": a non-empty list of "az://<container>/<path>" strings.',
        )
    too_long = next((index for index, uri in enumerate(uris) if len(uri) > MAX_BLOB_URI_CHARS), None)
    if too_long is not None:
        return _error(
            "invalid_request",
            f"BlobURIs[{too_long}] is {len(uris[too_long])} characters long; no blob URI is longer than "
            f"{MAX_BLOB_URI_CHARS} (az://, a container of up to 63 characters, '/', a name of up to 1,024).",
        )
    try:
        AnalysisRequest.model_validate(document)
    except ValidationError as exc:
        return _error(
            "invalid_request",
            f"The request document has invalid fields: {describe_validation_error(exc)}. "
            "See docs/analysis-tasks.md for its keys.",
        )
    return document


def _nesting_depth(text: str, limit: int) -> int:
    """How deep arrays and objects nest in JSON text (strings skipped); stops counting past `limit`.

    One pass over the structural characters, whatever the text: no recursion, no backtracking.
    """
    depth = deepest = 0
    in_string = False
    escaped_until = -1
    for match in _JSON_STRUCTURE.finditer(text):
        position, char = match.start(), match.group()
        if position < escaped_until:
            continue
        if in_string:
            if char == "\\":
                escaped_until = position + 2
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
            if deepest > limit:
                break
        elif char in "]}":
            depth -= 1
    return deepest


def _refuse_constant(name: str) -> Any:
    raise _NotJsonError(f"{name} is no JSON value (Go and R cannot read it); write a number or null")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _NotJsonError(f"the number {text[:40]} is too large for a double (Go and R would read infinity)")
    return value


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INTEGER_DIGITS:
        raise _NotJsonError(
            f"an integer of {len(text.lstrip('-'))} digits is too large for a double (Go and R would read infinity)"
        )
    return int(text)


def _queued_record(request: RunRequest) -> RunRecord:
    return RunRecord(
        run_id=request.run_id,
        status=RunStatus.QUEUED,
        task_type=request.task_type.value,
        source_uri=request.source.uri,
        source_etag=request.source.etag,
        requested_at=request.requested_at,
        updated_at=request.requested_at,
        rerun_of=request.rerun_of,
        traceparent=request.traceparent,
    )


def _rejected_record(upload: Upload, rejection: Rejection, now: datetime) -> RunRecord:
    return RunRecord(
        run_id=derive_run_id(upload.container, upload.name, rejection.etag or ""),
        status=RunStatus.REJECTED,
        task_type=_printable(rejection.task_type)[:64],
        source_uri=_printable(blob_uri(upload.container, upload.name))[:2048],
        source_etag=rejection.etag,
        requested_at=now,
        updated_at=now,
        finished_at=now,
        error=rejection.error,
        traceparent=telemetry.current_traceparent(),
    )


def _error(code: str, message: str) -> RunError:
    if len(message) > MAX_ERROR_MESSAGE_CHARS:
        message = message[: MAX_ERROR_MESSAGE_CHARS - 1] + "…"
    return RunError(code=code, message=message)


def _printable(text: str) -> str:
    """Control characters escaped, so a hostile name cannot forge log lines or break storage."""
    return "".join(
        char if unicodedata.category(char) != "Cc" else char.encode("unicode_escape").decode() for char in text
    )
