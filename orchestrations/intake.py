"""Admitting uploads: from a blob in the uploads container to a `RunRequest`, or a reasoned rejection.

Every upload ends in exactly one of two places: an orchestration (instance id = run id) or a run
record with status `rejected` and a reason a person can act on. Nothing is dropped silently.
"""

from __future__ import annotations

import hashlib
import json
import logging
import unicodedata
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from orchestrations.contracts import (
    MAX_REQUEST_ENV_BYTES,
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
)
from orchestrations.run_store import RunStore

logger = logging.getLogger(__name__)

ORCHESTRATOR_NAME = "run_task"
MAX_BLOB_NAME_CHARS = 1024
_KNOWN_TASK_TYPES = ", ".join(task_type.value for task_type in TaskType)


@dataclass(frozen=True)
class Upload:
    """A blob the trigger saw: where it is, its version and its content."""

    container: str
    name: str
    etag: str
    content: bytes

    @property
    def uri(self) -> str:
        return blob_uri(self.container, self.name)


@dataclass(frozen=True)
class Rejection:
    """Why an upload starts no run."""

    task_type: str
    error: RunError


def derive_run_id(container: str, name: str, etag: str) -> str:
    """The same blob version always gives the same run id; a new version a new one."""
    digest = hashlib.sha256(f"{container}\n{name}\n{etag.strip(chr(34))}".encode()).hexdigest()
    return f"run-{digest[:28]}"


def admit_upload(upload: Upload, *, max_bytes: int, policy: RunPolicy, now: datetime) -> RunRequest | Rejection:
    """Check the upload's name, size and content; build its `RunRequest` or say why not."""
    first_segment = upload.name.split("/", 1)[0]
    problem = _check_name(upload.name) or _check_size(len(upload.content), max_bytes)
    if problem:
        return Rejection(first_segment, problem)
    try:
        task_type = TaskType(first_segment)
    except ValueError:
        return Rejection(first_segment, _error(
            "unknown_task_type",
            f"The upload's first path segment {first_segment!r} is not a task type. "
            f"Upload to <task_type>/<file>, where task_type is one of: {_KNOWN_TASK_TYPES}.",
        ))
    file_name = upload.name[len(first_segment) + 1 :]
    if not file_name.lower().endswith(task_type.upload_suffix):
        return Rejection(task_type.value, _error(
            "wrong_file_type",
            f"{task_type.value} uploads must be {task_type.upload_suffix} files; got {file_name!r}.",
        ))
    request_document: dict[str, Any] | None = None
    inputs = [upload.uri]
    if task_type is not TaskType.PARSE_PORTFOLIO:
        parsed = _parse_request_document(upload.content, task_type)
        if isinstance(parsed, RunError):
            return Rejection(task_type.value, parsed)
        request_document, inputs = parsed, list(parsed["BlobURIs"])
    return RunRequest(
        run_id=derive_run_id(upload.container, upload.name, upload.etag),
        task_type=task_type,
        inputs=inputs,
        source=SourceBlob(
            container=upload.container, name=upload.name, etag=upload.etag,
            size=len(upload.content), uri=upload.uri,
        ),
        requested_at=now,
        request_document=request_document,
        policy=policy,
    )


async def handle_upload(
    upload: Upload, client: Any, *, run_store: RunStore, max_bytes: int, policy: RunPolicy, now: datetime
) -> str:
    """Start the run for an upload (once per blob version) or record its rejection; returns the run id.

    `client` is the Durable orchestration client. Safe to call twice for the same blob version:
    the second call finds the orchestration and starts nothing.
    """
    decision = admit_upload(upload, max_bytes=max_bytes, policy=policy, now=now)
    if isinstance(decision, Rejection):
        record = _rejected_record(upload, decision, now)
        stored, created = run_store.create_if_absent(record)
        if created:
            logger.warning(
                "Rejected upload %s: %s", _printable(upload.uri), decision.error.message,
                extra={"run_id": record.run_id},
            )
        return stored.run_id

    request = decision
    run_store.create_if_absent(_queued_record(request))
    existing = await client.get_status(request.run_id)
    if existing:  # DurableOrchestrationStatus is falsy for an unknown instance
        logger.info(
            "Upload %s already has run %s; not starting it again", upload.uri, request.run_id,
            extra={"run_id": request.run_id},
        )
        return request.run_id
    await client.start_new(ORCHESTRATOR_NAME, request.run_id, RunTaskInput(request=request).to_payload())
    logger.info(
        "Started run %s (%s) for %s", request.run_id, request.task_type.value, upload.uri,
        extra={"run_id": request.run_id},
    )
    return request.run_id


def _check_name(name: str) -> RunError | None:
    if len(name) > MAX_BLOB_NAME_CHARS:
        return _error(
            "invalid_name", f"The blob name is {len(name)} characters long; the limit is {MAX_BLOB_NAME_CHARS}."
        )
    if any(unicodedata.category(char) == "Cc" for char in name):
        return _error(
            "invalid_name", f"The blob name {_printable(name)!r} contains control characters; rename the file."
        )
    if ".." in name.split("/"):
        return _error("invalid_name", f"The blob name {name!r} contains a '..' segment; use a plain path.")
    if "/" not in name or name.endswith("/"):
        return _error(
            "invalid_name",
            f"The blob name {name!r} has no file under a task type; upload to <task_type>/<file>.",
        )
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


def _parse_request_document(content: bytes, task_type: TaskType) -> dict[str, Any] | RunError:
    if len(content) > MAX_REQUEST_ENV_BYTES:
        return _error(
            "request_too_large",
            f"The request document is {len(content)} bytes; the limit is {MAX_REQUEST_ENV_BYTES} bytes "
            f"(it travels in {task_type.request_env_var}).",
        )
    try:
        document = json.loads(content.decode("utf-8"))
    except UnicodeDecodeError as exc:
        return _error("invalid_request", f"The request document is not UTF-8 text ({exc.reason} at byte {exc.start}).")
    except json.JSONDecodeError as exc:
        return _error(
            "invalid_request",
            f"The request document is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}.",
        )
    if not isinstance(document, dict):
        return _error("invalid_request", "The request document must be a JSON object, like PACTA's requests.")
    uris = document.get("BlobURIs")
    if (
        not isinstance(uris, list) or not uris
        or not all(isinstance(uri, str) and uri.startswith("az://") for uri in uris)
    ):
        return _error(
            "invalid_request",
            'The request document needs "BlobURIs": a non-empty list of "az://<container>/<path>" strings.',
        )
    try:
        AnalysisRequest.model_validate(document)
    except ValidationError as exc:
        return _error(
            "invalid_request",
            f"The request document has invalid fields: {describe_validation_error(exc)}. "
            "See the README, section Analysis tasks, for its keys.",
        )
    return document


def _queued_record(request: RunRequest) -> RunRecord:
    return RunRecord(
        run_id=request.run_id,
        status=RunStatus.QUEUED,
        task_type=request.task_type.value,
        source_uri=request.source.uri,
        source_etag=request.source.etag,
        requested_at=request.requested_at,
        updated_at=request.requested_at,
    )


def _rejected_record(upload: Upload, rejection: Rejection, now: datetime) -> RunRecord:
    return RunRecord(
        run_id=derive_run_id(upload.container, upload.name, upload.etag),
        status=RunStatus.REJECTED,
        task_type=_printable(rejection.task_type)[:64],
        source_uri=_printable(upload.uri)[:2048],
        source_etag=upload.etag,
        requested_at=now,
        updated_at=now,
        finished_at=now,
        error=rejection.error,
    )


def _error(code: str, message: str) -> RunError:
    return RunError(code=code, message=message)


def _printable(text: str) -> str:
    """Control characters escaped, so a hostile name cannot forge log lines or break storage."""
    return "".join(
        char if unicodedata.category(char) != "Cc" else char.encode("unicode_escape").decode() for char in text
    )
