"""The activities of `run_task`: every effect the orchestrator needs, and nothing it decides.

Each takes and returns a contract payload (a JSON-ready dict), validated on the way in. They are
plain functions; `function_app` registers them as activity triggers under these names. Their
annotations are the bare `dict`: the Python worker refuses generic aliases such as `dict[str, Any]`
on a binding ("invalid non-type annotation"), which the worker-indexing test checks.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from collections.abc import Callable
from datetime import UTC, datetime

from orchestrations import runtime
from orchestrations.backends import JobBackend
from orchestrations.contracts import (
    MAX_RECORDED_OUTPUTS,
    ExecutionRef,
    JobRefInput,
    JobState,
    JobStatus,
    PrepareRunResult,
    ResultDocument,
    RunError,
    RunnerEventStatus,
    RunOutcome,
    RunRecord,
    RunRequest,
    RunStatus,
    StartJobInput,
    StartJobResult,
    parse_blob_uri,
)
from orchestrations.errors import BackendError, ExecutionNotFoundError
from orchestrations.job_spec import build_job_spec

logger = logging.getLogger(__name__)


def prepare_run(payload: dict) -> dict:
    """Make the run's callback token; the record keeps only its hash."""
    request = RunRequest.from_payload(payload)
    token = secrets.token_urlsafe(32)
    token_hash = hash_token(token)

    def remember_hash(record: RunRecord) -> RunRecord:
        return record.model_copy(
            update={"callback_token_sha256": token_hash, "status": RunStatus.STARTING, "updated_at": _now()}
        )

    runtime.run_store().update_run(request.run_id, remember_hash)
    return PrepareRunResult(callback_token=token).to_payload()


def start_job(payload: dict) -> dict:
    """Start the runner through the backend (idempotent per run) and mark the run running."""
    job = StartJobInput.from_payload(payload)
    spec = build_job_spec(job.request, job.callback_token, runtime.settings())
    backend = runtime.backend()
    # Taken before the call: the job may finish before a slow start (ARM's polling) returns.
    started_at = _now()
    try:
        ref = backend.start(spec)
    except BackendError as exc:
        if not exc.permanent:
            raise  # the activity's retry policy tries again; start is idempotent per run
        logger.error("Run %s cannot start: %s", job.request.run_id, exc.message, extra={"run_id": job.request.run_id})
        return StartJobResult(refused=RunError(code=exc.code, message=exc.message)).to_payload()
    logger.info(
        "Run %s started as %s", job.request.run_id, ref, extra={"run_id": job.request.run_id, "execution_ref": str(ref)}
    )

    def mark_running(record: RunRecord) -> RunRecord:
        return record.model_copy(update={
            "status": RunStatus.RUNNING,
            "backend": backend.name,
            "execution_ref": str(ref),
            "started_at": record.started_at or started_at,
            "attempts": record.attempts + 1,
            "updated_at": started_at,
        })

    record = runtime.run_store().update_run(job.request.run_id, mark_running)
    return StartJobResult(execution_ref=str(ref), started_at=record.started_at or started_at).to_payload()


def check_job(payload: dict) -> dict:
    """The backend's view of the execution; a vanished execution counts as failed."""
    job = JobRefInput.from_payload(payload)
    return _ask_backend(job, lambda backend, ref: backend.status(ref)).to_payload()


def stop_job(payload: dict) -> dict:
    job = JobRefInput.from_payload(payload)
    logger.warning("Stopping run %s (%s)", job.run_id, job.execution_ref, extra={"run_id": job.run_id})
    return _ask_backend(job, lambda backend, ref: backend.stop(ref)).to_payload()


def record_outcome(payload: dict) -> dict:
    """Write the run's terminal status, outputs, log and result locations, error and times."""
    outcome = RunOutcome.from_payload(payload)
    completion = outcome.completion
    outputs: list[str] = []
    if completion is not None and completion.result_uri and completion.status is RunnerEventStatus.SUCCEEDED:
        outputs = _read_result_document(completion.result_uri).output_uris()
    finished_at = completion.finished_at if completion else _now()

    def finish(record: RunRecord) -> RunRecord:
        return record.model_copy(update={
            "status": outcome.status,
            "execution_ref": outcome.execution_ref or record.execution_ref,
            "finished_at": finished_at,
            "updated_at": _now(),
            "outputs_count": completion.outputs_count if completion else 0,
            "outputs": outputs[:MAX_RECORDED_OUTPUTS],
            "result_uri": completion.result_uri if completion else None,
            "log_uri": completion.log_uri if completion else None,
            "error": outcome.error,
        })

    record = runtime.run_store().update_run(outcome.run_id, finish)
    log = logger.info if record.status is RunStatus.SUCCEEDED else logger.warning
    log("Run %s %s", outcome.run_id, record.status.value, extra={"run_id": outcome.run_id})
    return record.public_view()


def _ask_backend(job: JobRefInput, operation: Callable[[JobBackend, ExecutionRef], JobStatus]) -> JobStatus:
    try:
        return operation(runtime.backend(), ExecutionRef.parse(job.execution_ref))
    except ExecutionNotFoundError as exc:
        return JobStatus(state=JobState.FAILED, detail=exc.message)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _read_result_document(uri: str) -> ResultDocument:
    container, name = parse_blob_uri(uri)
    blob = runtime.blob_service().get_blob_client(container, name)
    return ResultDocument.model_validate_json(blob.download_blob().readall())


def _now() -> datetime:
    return datetime.now(UTC)


# Names the orchestrator calls; function_app registers each under the same name.
ACTIVITIES = {
    "prepare_run": prepare_run,
    "start_job": start_job,
    "check_job": check_job,
    "stop_job": stop_job,
    "record_outcome": record_outcome,
}

