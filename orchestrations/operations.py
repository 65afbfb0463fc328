"""Operations on a run that exists: cancel it, rerun it. The HTTP functions (and the CLI) call these.

Cancel: the request is written into the run record (`cancellation`: who, when, why; the first one
stays), then raised to the run's orchestration as the `CancelRequested` event. The orchestrator
decides: it stops the job through its backend and ends the run `cancelled`, unless the completion
came first. The record write is what keeps a queued run from ever starting a job: `start_job` starts
nothing for a `queued` record that carries a cancel request (one etag-conditional write decides).

Rerun: a new run of the same source blob version, through intake's own admission and start
(`intake.admit_upload`, `intake.start_run`), with its own run id and `rerun_of` = the original's; the
original record is only read. Rerun ids are numbered per original (`intake.derive_rerun_id`), so a
POST repeated while the latest rerun is still under way answers that rerun instead of starting another.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from azure.storage.blob import BlobServiceClient
from opentelemetry import trace

from orchestrations import intake, queries, telemetry
from orchestrations.contracts import (
    CANCEL_REQUESTED_EVENT,
    Cancellation,
    RunError,
    RunPolicy,
    RunRecord,
    RunStatus,
    parse_blob_uri,
)
from orchestrations.errors import RunnerOrchestratorError
from orchestrations.log_context import run_context
from orchestrations.run_store import RunNotFoundError, RunStore

logger = logging.getLogger(__name__)

# DurableOrchestrationClient.raise_event raises a plain Exception with these texts for 410 and 404.
_INSTANCE_GONE = "is gone"
_NO_INSTANCE = "No instance with ID"
# Reruns of one run are found by probing their ids in order (point reads, no table scan); past this many
# a rerun is refused rather than probing on: more reruns of one upload are no longer a retry.
MAX_RERUNS = 100


class OperationRefusedError(RunnerOrchestratorError):
    """The run's state refuses the operation; the API answers 409 with `code` and the message."""


class RunAlreadyEndedError(OperationRefusedError):
    def __init__(self, run_id: str, status: RunStatus) -> None:
        super().__init__(
            "run_already_ended",
            f"Run {run_id} has already ended: its status is {status.value}. There is nothing to cancel; "
            f"GET /api/runs/{run_id} shows how it ended.",
        )
        self.status = status


class RunNotEndedError(OperationRefusedError):
    def __init__(self, run_id: str, status: RunStatus) -> None:
        super().__init__(
            "run_not_ended",
            f"Run {run_id} is still {status.value}; a rerun starts from an ended run. Wait for it to end, or "
            f"cancel it (POST /api/runs/{run_id}/cancel), then rerun it.",
        )


class RunNotRerunnableError(OperationRefusedError):
    def __init__(self, run_id: str) -> None:
        super().__init__(
            "run_not_rerunnable",
            f"Run {run_id} is a rejected upload: it never ran, and the same file would be rejected again. "
            "Fix the file (the run's error says what is wrong) and upload it again.",
        )


class SourceVersionGoneError(OperationRefusedError):
    def __init__(self, run_id: str, uri: str, etag: str | None) -> None:
        version = f"version {etag} of {uri}" if etag else f"the version of {uri} it ran"
        super().__init__(
            "source_version_gone",
            f"Run {run_id} cannot be rerun: {version} is gone (the blob was deleted, or replaced by a newer "
            "upload, which is a run of its own). A rerun runs exactly the version the run was started for; "
            "upload the file again to run it anew.",
        )


class RerunRejectedError(OperationRefusedError):
    def __init__(self, run_id: str, error: RunError) -> None:
        super().__init__(
            "rerun_rejected",
            f"Run {run_id} cannot be rerun: its source no longer passes the upload checks ({error.code}): "
            f"{error.message}",
        )


class TooManyRerunsError(OperationRefusedError):
    def __init__(self, run_id: str) -> None:
        super().__init__(
            "too_many_reruns",
            f"Run {run_id} has been rerun {MAX_RERUNS} times, the most one run may be; rerun one of its reruns, "
            "or upload the file again.",
        )


@dataclass(frozen=True)
class Rerun:
    """A rerun: its run id, the run it reruns, and whether this call started it (else it was under way)."""

    run_id: str
    rerun_of: str
    started: bool


async def cancel_run(run_id: str, client: Any, *, run_store: RunStore, cancellation: Cancellation) -> dict[str, Any]:
    """Ask the run's orchestration to stop its job and end the run `cancelled`; returns the run's view.

    Raises `RunNotFoundError`, or `RunAlreadyEndedError` (nothing raised to the orchestration) for a run
    that has ended, one whose orchestration died (recorded `failed` now, as the status API does), and one
    that ended while this call ran. Asking again while the run is being cancelled is accepted again: the
    first request's who/when/why stays.
    """
    with _log_context(run_id):
        return await _cancel_run(run_id, client, run_store=run_store, cancellation=cancellation)


async def _cancel_run(run_id: str, client: Any, *, run_store: RunStore, cancellation: Cancellation) -> dict[str, Any]:
    record = await _get_record(run_id, run_store)
    if record.status.is_terminal:
        raise RunAlreadyEndedError(run_id, record.status)
    orchestration = await client.get_status(run_id)
    if orchestration:
        record = await queries.settle_dead_run(record, orchestration, run_store)
        if record.status.is_terminal:
            raise RunAlreadyEndedError(run_id, record.status)
    record = await asyncio.to_thread(
        run_store.update_run, run_id, lambda current: _ask_to_cancel(current, cancellation)
    )
    if record.status.is_terminal:
        raise RunAlreadyEndedError(run_id, record.status)
    requested = record.cancellation or cancellation
    try:
        await client.raise_event(run_id, CANCEL_REQUESTED_EVENT, requested.to_payload())
    except Exception as exc:
        if _NO_INSTANCE in str(exc):
            # Recorded, its orchestration not created yet (or never, if the upload's trigger gave up): no job
            # can start for this record any more (start_job), so the run ends cancelled here and now.
            await asyncio.to_thread(run_store.update_run, run_id, lambda current: _cancelled_unstarted(current))
        elif _INSTANCE_GONE in str(exc):  # it ended while this call ran
            ended = await _get_record(run_id, run_store)
            if not ended.status.is_terminal and (status := await client.get_status(run_id)):
                ended = await queries.settle_dead_run(ended, status, run_store)
            raise RunAlreadyEndedError(run_id, ended.status) from None
        else:
            raise
    logger.warning("Run %s: cancel requested by %s", run_id, requested.requested_by or "an unnamed caller")
    view = await queries.describe_run(run_id, client, run_store=run_store)
    if view is None:  # it was there a moment ago; runs are never deleted
        raise RunNotFoundError(run_id)
    return view


async def rerun(
    run_id: str, client: Any, *, run_store: RunStore, blobs: BlobServiceClient, max_bytes: int,
    input_scopes: Sequence[str], policy: RunPolicy, now: datetime,
) -> Rerun:
    """Start a new run of the source blob version `run_id` ran, linked to it by `rerun_of`.

    The admission is intake's, under today's settings (`max_bytes`, `input_scopes`, `policy`). Raises
    `RunNotFoundError`, `RunNotEndedError`, `RunNotRerunnableError`, `SourceVersionGoneError`,
    `RerunRejectedError` or `TooManyRerunsError`.
    """
    with _log_context(run_id):  # the new run's own lines (intake.start_run) carry the new run's id
        return await _rerun(run_id, client, run_store=run_store, blobs=blobs, max_bytes=max_bytes,
                            input_scopes=input_scopes, policy=policy, now=now)


async def _rerun(
    run_id: str, client: Any, *, run_store: RunStore, blobs: BlobServiceClient, max_bytes: int,
    input_scopes: Sequence[str], policy: RunPolicy, now: datetime,
) -> Rerun:
    original = await _get_record(run_id, run_store)
    if original.status is RunStatus.REJECTED:
        raise RunNotRerunnableError(run_id)
    if not original.status.is_terminal:
        raise RunNotEndedError(run_id, original.status)
    number, latest = await asyncio.to_thread(_latest_rerun, run_store, run_id)
    if latest is not None and not latest.status.is_terminal:
        if await client.get_status(latest.run_id):
            return Rerun(run_id=latest.run_id, rerun_of=run_id, started=False)
        # Recorded but its orchestration never started (a crash in between): start that one, not another.
    elif number >= MAX_RERUNS:
        raise TooManyRerunsError(run_id)
    else:
        number += 1
    if original.source_etag is None:
        raise SourceVersionGoneError(run_id, original.source_uri, None)
    container, name = parse_blob_uri(original.source_uri)
    upload = intake.PinnedUpload(intake.StoredUpload(blobs.get_blob_client(container, name)), original.source_etag)
    try:
        decision = await asyncio.to_thread(
            intake.admit_upload, upload, max_bytes=max_bytes, input_scopes=input_scopes, policy=policy, now=now
        )
    except intake.UploadGoneError:
        raise SourceVersionGoneError(run_id, original.source_uri, original.source_etag) from None
    if isinstance(decision, intake.Rejection):
        raise RerunRejectedError(run_id, decision.error)
    request = decision.model_copy(update={"run_id": intake.derive_rerun_id(run_id, number), "rerun_of": run_id})
    # A rerun is a run of its own: its trace starts here, linked to the original's.
    links = [trace.Link(context)] if (context := telemetry.span_context_of(original.traceparent)) else []
    with telemetry.tracer().start_as_current_span("rerun", links=links, attributes={
        telemetry.RUN_ID_ATTRIBUTE: request.run_id, "pacta.rerun_of": run_id,
    }):
        started = await intake.start_run(request, client, run_store=run_store)
    return Rerun(run_id=request.run_id, rerun_of=run_id, started=started)


def _log_context(run_id: str) -> AbstractContextManager[None]:
    """The run's log context, for an id that can name a run: a route parameter may be any text."""
    return run_context(run_id) if queries.is_run_id(run_id) else nullcontext()


async def _get_record(run_id: str, run_store: RunStore) -> RunRecord:
    if not queries.is_run_id(run_id):  # names no run: storage is not asked
        raise RunNotFoundError(run_id)
    return await asyncio.to_thread(run_store.get_run, run_id)


def _latest_rerun(run_store: RunStore, run_id: str) -> tuple[int, RunRecord | None]:
    """The number and record of the latest rerun of `run_id` (0 and None if it has none)."""
    latest: RunRecord | None = None
    for number in range(1, MAX_RERUNS + 1):
        try:
            latest = run_store.get_run(intake.derive_rerun_id(run_id, number))
        except RunNotFoundError:
            return number - 1, latest
    return MAX_RERUNS, latest


def _ask_to_cancel(record: RunRecord, cancellation: Cancellation) -> RunRecord | None:
    if record.cancellation is not None:
        return None  # asked before: the first request stands
    return record.model_copy(update={"cancellation": cancellation, "updated_at": cancellation.requested_at})


def _cancelled_unstarted(record: RunRecord) -> RunRecord | None:
    if record.status is not RunStatus.QUEUED or record.cancellation is None:
        return None  # its orchestration started meanwhile, and decides
    return record.model_copy(update={
        "status": RunStatus.CANCELLED,
        "finished_at": record.cancellation.requested_at,
        "updated_at": record.cancellation.requested_at,
        "error": record.cancellation.to_error("no job was started"),
    })
