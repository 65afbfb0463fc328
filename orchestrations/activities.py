"""The activities of `run_task`: every effect the orchestrator needs, and nothing it decides.

Each takes and returns a contract payload (a JSON-ready dict), validated on the way in. They are
plain functions; `function_app` registers them as activity triggers under these names. Their
annotations are the bare `dict`: the Python worker refuses generic aliases such as `dict[str, Any]`
on a binding ("invalid non-type annotation"), which the worker-indexing test checks.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime

from orchestrations import runtime
from orchestrations.backends import JobBackend
from orchestrations.callback_tokens import derive_callback_token
from orchestrations.contracts import (
    MAX_RECORDED_OUTPUTS,
    ExecutionRef,
    JobRefInput,
    JobState,
    JobStatus,
    ResultLookup,
    ResultQuery,
    RunError,
    RunnerCompletion,
    RunnerEventStatus,
    RunOutcome,
    RunRecord,
    RunStatus,
    StartJobInput,
    StartJobResult,
)
from orchestrations.errors import BackendError, ExecutionNotFoundError
from orchestrations.job_spec import build_job_spec
from orchestrations.log_context import bind_execution_ref, run_scope
from orchestrations.results import ResultUnavailableError, VerifiedResult, load_verified_result
from orchestrations.telemetry import STATUS_ATTRIBUTE, TASK_TYPE_ATTRIBUTE, run_metrics

logger = logging.getLogger(__name__)


def start_job(payload: dict) -> dict:
    """Start the runner through the backend (idempotent per run) and mark the run running.

    The callback token is derived here, from the run id and attempt, so every execution of this
    activity gives the runner the same token and none is ever returned into the history.
    """
    job = StartJobInput.from_payload(payload)
    request = job.request
    with run_scope("start_job", request.run_id, traceparent=request.traceparent, attempt=job.attempt,
                   **{TASK_TYPE_ATTRIBUTE: request.task_type.value}):
        return _start_job(job)


def _start_job(job: StartJobInput) -> dict:
    policy = job.request.policy
    # The one check that the run may start (a SlotGranted notice only wakes the orchestrator): a slot in storage.
    # A retried start finds the slot still held; it goes back only after the job has ended.
    confirms_slot = policy.start_confirms_slot and policy.slot_poll_seconds is not None
    if confirms_slot and runtime.run_slots().holding(job.request.run_id) is None:
        logger.warning("Run %s: not starting its job: it holds no slot (a late or forged notice); it waits again",
                       job.request.run_id)
        return StartJobResult(no_slot=True).to_payload()
    settings = runtime.settings()
    token = derive_callback_token(settings.callback_token_key, job.request.run_id, job.attempt)
    # Built inside this activity's span: the job's TRACEPARENT makes the runner's spans its children.
    spec = build_job_spec(job.request, token, settings, attempt=job.attempt)
    store = runtime.run_store()
    marked = store.update_stored_run(job.request.run_id, lambda record: _mark_starting(record, job.attempt))
    not_started = _why_not_start(marked.record)
    if not_started is not None:
        logger.warning("Run %s: not starting its job: it was cancelled or ended first", job.request.run_id)
        return not_started.to_payload()
    backend = runtime.backend()
    # Taken before the call: the job may finish before a slow start (ARM's polling) returns.
    started_at = _now()
    try:
        ref = backend.start(spec)
    except BackendError as exc:
        if not exc.permanent:
            raise  # the activity's retry policy tries again; start is idempotent per run
        logger.error("Run %s cannot start: %s", job.request.run_id, exc.message)
        return StartJobResult(refused=RunError(code=exc.code, message=exc.message)).to_payload()
    start_seconds = (_now() - started_at).total_seconds()
    bind_execution_ref(str(ref))
    logger.info("Run %s started as %s", job.request.run_id, ref)

    found_again = False

    def mark_running(record: RunRecord) -> RunRecord:
        # This activity run again (its host died before its result was kept) finds the same execution: one start.
        nonlocal found_again
        found_again = record.execution_ref == str(ref)
        return record.model_copy(update={
            "status": RunStatus.RUNNING,
            "attempt": job.attempt,
            "backend": backend.name,
            "execution_ref": str(ref),
            "started_at": record.started_at or started_at,
            "attempts": record.attempts + (0 if found_again else 1),
            "updated_at": started_at,
        })

    # From the record as this activity stored it: unless it changed since (a cancel), no read before the write.
    record = store.update_stored_run(job.request.run_id, mark_running, last=marked).record
    if not found_again:
        run_metrics.job_started(
            job.request.task_type.value, start_seconds=start_seconds,
            queued_seconds=(started_at - job.request.requested_at).total_seconds(),
        )
    return StartJobResult(execution_ref=str(ref), started_at=record.started_at or started_at).to_payload()


def check_job(payload: dict) -> dict:
    """The backend's view of the execution; a vanished execution counts as failed."""
    job = JobRefInput.from_payload(payload)
    with run_scope("check_job", job.run_id, traceparent=job.traceparent, execution_ref=job.execution_ref):
        return _ask_backend(job, lambda backend, ref: backend.status(ref)).to_payload()


def stop_job(payload: dict) -> dict:
    job = JobRefInput.from_payload(payload)
    with run_scope("stop_job", job.run_id, traceparent=job.traceparent, execution_ref=job.execution_ref):
        logger.warning("Stopping run %s (%s)", job.run_id, job.execution_ref)
        return _ask_backend(job, lambda backend, ref: backend.stop(ref)).to_payload()


def read_result(payload: dict) -> dict:
    """The run's outcome from its own result document, when its runner wrote one (the message was lost)."""
    query = ResultQuery.from_payload(payload)
    with run_scope("read_result", query.run_id, traceparent=query.traceparent):
        return _read_result(query)


def _read_result(query: ResultQuery) -> dict:
    try:
        result = load_verified_result(query.run_id, query.attempt)
    except ResultUnavailableError as exc:
        logger.warning("Run %s: no usable result document: %s", query.run_id, exc)
        return ResultLookup(missing_reason=str(exc)).to_payload()
    run = result.document.Run
    succeeded = run.status is RunnerEventStatus.SUCCEEDED
    exit_code = query.exit_code if query.exit_code is not None else (0 if succeeded else 1)
    logger.warning(
        "Run %s ended without a completion message that arrived; recording it from %s",
        query.run_id, result.uri,
    )
    completion = RunnerCompletion(
        status=run.status, exit_code=exit_code, error=run.error, result_uri=result.uri, log_uri=run.log_uri,
        outputs_count=len(result.document.output_uris()), started_at=run.started_at, finished_at=run.finished_at,
    )
    return ResultLookup(completion=completion).to_payload()


def record_outcome(payload: dict) -> dict:
    """Write the run's terminal status, outputs, log and result locations, error and times.

    Outputs come only from the run's own result document, and only if its runner wrote it, whatever
    URI the completion message named: a success without such a document is recorded as a failure
    that says why, never as a success without outputs.
    """
    outcome = RunOutcome.from_payload(payload)
    with run_scope("record_outcome", outcome.run_id, traceparent=outcome.traceparent,
                   execution_ref=outcome.execution_ref) as span:
        record = _record_outcome(outcome)
        span.set_attribute(STATUS_ATTRIBUTE, record["status"])
        return record


def _record_outcome(outcome: RunOutcome) -> dict:
    completion = outcome.completion
    result: VerifiedResult | None = None
    status, error = outcome.status, outcome.error
    if completion is not None:
        try:
            result = load_verified_result(outcome.run_id, outcome.attempt)
        except ResultUnavailableError as exc:
            logger.warning("Run %s: no usable result document: %s", outcome.run_id, exc)
            if status is RunStatus.SUCCEEDED:
                status, error = RunStatus.FAILED, _unusable_result(exc)
    outputs = result.document.output_uris() if result is not None and status is RunStatus.SUCCEEDED else []
    finished_at = completion.finished_at if completion else _now()
    log_uri = result.document.Run.log_uri if result is not None else completion.log_uri if completion else None

    def finish(record: RunRecord) -> RunRecord:
        return record.model_copy(update={
            "status": status,
            "cancellation": record.cancellation or outcome.cancellation,
            "execution_ref": outcome.execution_ref or record.execution_ref,
            "finished_at": finished_at,
            "updated_at": _now(),
            "outputs_count": len(result.document.output_uris()) if result is not None else 0,
            "outputs": outputs[:MAX_RECORDED_OUTPUTS],
            "result_uri": result.uri if result is not None else None,
            "log_uri": log_uri,
            "error": error,
        })

    record = runtime.run_store().update_run(outcome.run_id, finish)
    if record.execution_ref:
        bind_execution_ref(record.execution_ref)
    log = logger.info if record.status is RunStatus.SUCCEEDED else logger.warning
    log("Run %s %s", outcome.run_id, record.status.value)
    if record.finished_at is not None:
        run_metrics.run_ended(record.task_type, record.status.value,
                              duration_seconds=(record.finished_at - record.requested_at).total_seconds())
    return record.public_view()


def _unusable_result(reason: ResultUnavailableError) -> RunError:
    return RunError(
        code="result_document_unusable",
        message=f"The runner reported success, but {reason}. Outputs are recorded only from the run's own result "
        "document, proved by its runner; a runner image older than the app writes no proof: build it again "
        "(make images) or deploy the new image to the Container Apps job.",
    )


def _ask_backend(job: JobRefInput, operation: Callable[[JobBackend, ExecutionRef], JobStatus]) -> JobStatus:
    try:
        return operation(runtime.backend(), ExecutionRef.parse(job.execution_ref))
    except ExecutionNotFoundError as exc:
        return JobStatus(state=JobState.FAILED, detail=exc.message)


def _mark_starting(record: RunRecord, attempt: int) -> RunRecord | None:
    if record.status is not RunStatus.QUEUED:
        return None  # a repeated start_job: the run is already starting or running
    if record.cancellation is not None:
        return None  # cancelled while queued: the job is never started (`_why_not_start`)
    return record.model_copy(update={"status": RunStatus.STARTING, "attempt": attempt, "updated_at": _now()})


def _why_not_start(record: RunRecord) -> StartJobResult | None:
    """The answer of a start that must not start anything, or None to start (or find) the job.

    The run record decides, by one etag-conditional write: a cancel request that reached a `queued` record
    first keeps the job from ever starting; once the record is `starting` the job may exist (a retried start
    finds it again), and the orchestrator stops it when it takes the `CancelRequested` event.
    """
    if record.status is RunStatus.QUEUED and record.cancellation is not None:
        return StartJobResult(cancelled=record.cancellation)
    if record.status.is_terminal:
        if record.status is RunStatus.CANCELLED and record.cancellation is not None:
            return StartJobResult(cancelled=record.cancellation)
        return StartJobResult(refused=RunError(
            code="run_already_ended", message=f"the run's record already says {record.status.value}",
        ))
    return None


def _now() -> datetime:
    return datetime.now(UTC)


# Names the orchestrator calls; function_app registers each under the same name.
ACTIVITIES = {
    "start_job": start_job,
    "check_job": check_job,
    "stop_job": stop_job,
    "read_result": read_result,
    "record_outcome": record_outcome,
}

