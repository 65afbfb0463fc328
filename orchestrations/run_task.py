"""The `run_task` orchestrator: start the runner, wait for its completion, record how it ended.

It only decides: every effect is an activity, time comes from the context, and every knob comes
from the `RunRequest` in its input. Read it top to bottom as DESIGN.md's flow:

    [ acquire_slot -> SlotGranted  vs  CancelRequested  vs  timer ]*      (queued under MAX_CONCURRENT_RUNS)
    start_job -> [ RunnerCompleted  vs  CancelRequested  vs  timer -> check_job ]* -> release_slot -> record_outcome
                   job ended, no message within the grace period -> read_result -> its outcome, else failed
                   deadline passed -> stop_job -> (read_result) -> timed_out
                   cancel requested -> stop_job -> cancelled (who, when, why)
                   anything unexpected (a broken payload, a bug) -> stop_job -> failed, orchestration_failed

A cancel and the completion race: the first one the orchestrator takes wins. When both are pending
at the same decision point (both came while a status check ran) the completion wins, as does a check
that finds the job ended: the job has ended its own way. A cancel that reached the run record while
the run was still `queued` makes `start_job` start nothing (the record decides that race). A queued
run races its slot against the same `CancelRequested` task, and a cancelled one never takes a slot. A
`SlotGranted` notice leads straight to `start_job`, which starts nothing unless the run holds its slot.

After `checks_per_generation` status checks (or `slot_polls_per_generation` looks for a slot) it
continues as new with its watch state, so its history stays bounded however long the job runs or waits. The
generation that starts the job makes one check fewer, and a run that waited for its slot starts in a fresh
generation, so that the first generation is no larger than the others (`start_counts_as_check`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Generator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import azure.durable_functions as df
from azure.durable_functions.models.Task import TaskBase as Task
from pydantic import ValidationError

from orchestrations.contracts import (
    CANCEL_REQUESTED_EVENT,
    RUNNER_COMPLETED_EVENT,
    SLOT_GRANTED_EVENT,
    Cancellation,
    JobRefInput,
    JobStatus,
    ResultLookup,
    ResultQuery,
    RunError,
    RunnerCompletion,
    RunnerEventStatus,
    RunOutcome,
    RunRequest,
    RunStatus,
    RunTaskInput,
    SlotAnswer,
    SlotRequest,
    StartJobInput,
    StartJobResult,
    WatchState,
    describe_validation_error,
)
from orchestrations.retry import BackoffRetryOptions

Orchestration = Generator[Any, Any, Any]
# The start attempt of a run's first and only job (a rerun is a run of its own, with its own id).
FIRST_ATTEMPT = 1


def run_task(context: df.DurableOrchestrationContext) -> Orchestration:
    run = RunTaskInput.from_payload(context.get_input())
    policy = run.request.policy
    retry = BackoffRetryOptions(policy.activity_retry)
    progress = _Progress(watch=run.watch)
    try:
        outcome = yield from _decide(context, retry, run.request, progress, told_of_slot=run.told_of_slot)
    except Exception as exc:  # a bug or a broken contract: the job is stopped and the run still ends, saying why
        outcome = yield from _give_up(context, retry, run.request, progress.watch, exc)
    if outcome is None:  # continued as new: the next generation carries on
        return None
    if policy.slot_poll_seconds is not None:  # the job has ended (or never started): its slot goes back
        yield from _release_slot(context, retry, run.request, outcome.execution_ref)
    outcome = outcome.model_copy(update={"traceparent": run.request.traceparent})
    return (yield from _record(context, BackoffRetryOptions(policy.record_retry), outcome))


@dataclass
class _Progress:
    """What `_decide` has done so far, for `_give_up`: the job it watches, once there is one."""

    watch: WatchState | None


def _decide(
    context: df.DurableOrchestrationContext,
    retry: BackoffRetryOptions,
    request: RunRequest,
    progress: _Progress,
    *,
    told_of_slot: bool,
) -> Orchestration:
    """How the run ended, or None when this generation has watched long enough and continued as new."""
    policy = request.policy
    # One wait per generation, taken before the generation ends (like the completion): the SDK 1.x
    # continues as new without the events no wait consumed.
    cancel = context.wait_for_external_event(CANCEL_REQUESTED_EVENT)
    if progress.watch is None and policy.slot_poll_seconds is not None and not told_of_slot:
        queued = yield from _wait_for_slot(context, retry, request, cancel)
        if isinstance(queued, RunOutcome):
            return queued
        # A slot that came after waiting: the start and its checks go to a fresh generation (whose first step
        # is the start, or a look that finds the slot held), so that the looks and the checks never add up in
        # one history.
        if queued is _STILL_QUEUED or (queued is not _SLOT_HELD and policy.start_counts_as_check):
            told = policy.start_confirms_slot and queued is not _STILL_QUEUED
            context.continue_as_new(RunTaskInput(request=request, told_of_slot=told).to_payload())
            return None
    checks = policy.checks_per_generation
    if progress.watch is None:
        started = yield from _start_job(context, retry, request, attempt=FIRST_ATTEMPT)
        if started is _NO_SLOT:  # the notice was late or not from a grant: wait in a fresh generation
            context.continue_as_new(RunTaskInput(request=request).to_payload())
            return None
        if isinstance(started, RunOutcome):
            return started
        progress.watch = started
        if request.policy.start_counts_as_check:  # the look and the start have taken one check's place
            checks = max(1, checks - 1)
    watch = progress.watch
    outcome = yield from _watch_one_generation(context, retry, request, watch, cancel, checks)
    if outcome is None:
        context.continue_as_new(
            RunTaskInput(request=request, watch=watch.model_copy(update={"generation": watch.generation + 1}))
            .to_payload()
        )
    return outcome


_STILL_QUEUED = "still queued"
_SLOT_HELD = "slot held"
_SLOT_HELD_AFTER_WAITING = "slot held after waiting"
_TOLD_OF_SLOT = "told of a slot"  # by SlotGranted, not yet confirmed: start_job confirms it (start_confirms_slot)
_NO_SLOT = "no slot"  # start_job found none


def _wait_for_slot(
    context: df.DurableOrchestrationContext, retry: BackoffRetryOptions, request: RunRequest, cancel: Task
) -> Orchestration:
    """Queued until the run holds a slot: `_SLOT_HELD` at the first look, `_SLOT_HELD_AFTER_WAITING` at a later
    one; its outcome if cancelled meanwhile; or `_STILL_QUEUED` after this generation's looks. `SlotGranted`
    (sent when a slot frees) only wakes it: the slot is confirmed in storage before a job starts, so no event,
    late or forged, starts a job without one. With `start_confirms_slot` start_job confirms it (the notice
    returns `_TOLD_OF_SLOT`); before that, the look that follows did. It also looks every `slot_poll_seconds`
    (a notice lost to a restart or to continue-as-new, a raised cap). A look that fails (storage out) is only a
    look: the run stays queued, never fails for it."""
    policy = request.policy
    assert policy.slot_poll_seconds is not None
    queued_no_job = "it was queued; no job started"
    granted = context.wait_for_external_event(SLOT_GRANTED_EVENT)
    for look in range(policy.slot_polls_per_generation):
        ask = SlotRequest(
            run_id=request.run_id, requested_at=request.requested_at, poll=look > 0, traceparent=request.traceparent
        )
        try:
            answer: SlotAnswer | None = SlotAnswer.from_payload(
                (yield context.call_activity_with_retry("acquire_slot", retry, ask.to_payload()))
            )
        except Exception:  # every retry failed: look again at the next poll
            answer = None
        if answer is not None and answer.cancelled is not None:
            return _cancelled(request.run_id, FIRST_ATTEMPT, None, answer.cancelled, queued_no_job)
        if answer is not None and answer.granted:
            return _SLOT_HELD if look == 0 else _SLOT_HELD_AFTER_WAITING
        if cancel.is_completed:
            return _cancelled(request.run_id, FIRST_ATTEMPT, None, _cancellation(cancel.result), queued_no_job)
        if not granted.is_completed:  # (told while this look ran: look again at once)
            context.set_custom_status({"phase": "queued", "position": answer.position if answer else None})
            timer = context.create_timer(context.current_utc_datetime + timedelta(seconds=policy.slot_poll_seconds))
            winner = yield context.task_any([granted, cancel, timer])
            if winner != timer:
                timer.cancel()
            if winner == cancel:
                return _cancelled(request.run_id, FIRST_ATTEMPT, None, _cancellation(cancel.result), queued_no_job)
        if granted.is_completed and policy.start_confirms_slot:
            return _TOLD_OF_SLOT
        if granted.is_completed:  # the next look confirms it; a later notice needs a wait of its own
            granted = context.wait_for_external_event(SLOT_GRANTED_EVENT)
    return _STILL_QUEUED


def _release_slot(
    context: df.DurableOrchestrationContext, retry: BackoffRetryOptions, request: RunRequest, execution_ref: str | None
) -> Orchestration:
    """Give the slot back (or leave the line) once the job is gone. If every retry fails the run is still
    recorded: its slot is taken back as soon as its orchestration has completed and a waiter finds none free."""
    ask = SlotRequest(
        run_id=request.run_id, requested_at=request.requested_at, execution_ref=execution_ref,
        traceparent=request.traceparent,
    )
    with contextlib.suppress(Exception):  # the SDK raises a plain Exception once all retries failed
        yield context.call_activity_with_retry("release_slot", retry, ask.to_payload())


def _give_up(
    context: df.DurableOrchestrationContext,
    retry: BackoffRetryOptions,
    request: RunRequest,
    watch: WatchState | None,
    error: Exception,
) -> Orchestration:
    reason = _reason(error)
    if watch is not None:
        _set_phase(context, "stopping", watch)
        job = _job_ref(request, watch)
        try:
            yield context.call_activity_with_retry("stop_job", retry, job)
        except Exception as exc:
            reason += f"; stopping the job failed too: {_reason(exc)}"
    return RunOutcome(
        run_id=request.run_id, attempt=watch.attempt if watch else FIRST_ATTEMPT, status=RunStatus.FAILED,
        execution_ref=watch.execution_ref if watch else None,
        error=RunError(code="orchestration_failed", message=f"The orchestration failed: {reason}"),
    )


def _start_job(
    context: df.DurableOrchestrationContext, retry: BackoffRetryOptions, request: RunRequest, *, attempt: int
) -> Orchestration:
    """The watch state of the started job, the outcome of a start that failed, or `_NO_SLOT`."""
    _set_phase(context, "starting")
    try:
        started = StartJobResult.from_payload((yield context.call_activity_with_retry(
            "start_job", retry, StartJobInput(request=request, attempt=attempt).to_payload(),
        )))
    except Exception as exc:  # the SDK raises a plain Exception once all retries failed
        started = StartJobResult(refused=RunError(code="job_start_failed", message=_reason(exc)))
    if started.no_slot:
        return _NO_SLOT
    if started.cancelled is not None:
        return _cancelled(request.run_id, attempt, None, started.cancelled, "no job was started")
    if started.refused is not None or started.execution_ref is None or started.started_at is None:
        refused = started.refused or RunError(code="job_start_failed", message="no execution")
        return RunOutcome(
            run_id=request.run_id, attempt=attempt, status=RunStatus.FAILED,
            error=refused.model_copy(update={"message": f"The job could not be started: {refused.message}"}),
        )
    return WatchState(
        attempt=attempt,
        execution_ref=started.execution_ref,
        started_at=started.started_at,
        deadline=context.current_utc_datetime + timedelta(seconds=request.policy.deadline_seconds),
        generation=1,
    )


def _watch_one_generation(
    context: df.DurableOrchestrationContext,
    retry: BackoffRetryOptions,
    request: RunRequest,
    watch: WatchState,
    cancel: Task,
    checks: int,
) -> Orchestration:
    """Race the completion message and a cancel against `checks` status checks; the outcome, or None to continue
    as new.

    The Python SDK 1.x continues as new without the events no wait has taken (the extension's
    out-of-proc shim calls ContinueAsNew without preserving them; azure-functions-durable-python#331),
    so a completion or a cancel that arrived while a check was under way is taken after every check
    and before the generation ends, never left behind.
    """
    policy = request.policy
    job = _job_ref(request, watch)
    completion = context.wait_for_external_event(RUNNER_COMPLETED_EVENT)
    for _ in range(checks):
        # A cancel that came with the last check. One that came earlier (while the job was being started)
        # is taken by the race below: the SDK completes a wait with an early event when the wait is yielded.
        if cancel.is_completed:
            return (yield from _stop_on_cancel(context, retry, request, watch, cancel))
        _set_phase(context, "running", watch)
        if context.current_utc_datetime < watch.deadline:
            next_check = min(
                context.current_utc_datetime + timedelta(seconds=policy.check_interval_seconds), watch.deadline
            )
            timer = context.create_timer(next_check)
            winner = yield context.task_any([completion, cancel, timer])
            if winner == completion:
                timer.cancel()
                return _completed(request.run_id, watch, completion.result)
            if winner == cancel:
                timer.cancel()
                return (yield from _stop_on_cancel(context, retry, request, watch, cancel))
        if context.current_utc_datetime >= watch.deadline:
            return (yield from _stop_at_deadline(context, retry, request, watch, completion))
        try:
            status: JobStatus | None = JobStatus.from_payload(
                (yield context.call_activity_with_retry("check_job", retry, job))
            )
        except Exception:  # a failed status check is not a failed job: the deadline still bounds the run
            status = None
        if completion.is_completed:
            return _completed(request.run_id, watch, completion.result)
        if status is not None and status.has_ended:
            return (yield from _await_report(context, retry, request, watch, completion, status))
    if completion.is_completed:
        return _completed(request.run_id, watch, completion.result)
    if cancel.is_completed:
        return (yield from _stop_on_cancel(context, retry, request, watch, cancel))
    return None


def _stop_on_cancel(
    context: df.DurableOrchestrationContext,
    retry: BackoffRetryOptions,
    request: RunRequest,
    watch: WatchState,
    cancel: Task,
) -> Orchestration:
    """Stop the job and end the run `cancelled`: the cancel was taken first, so a report that comes
    while the job is being stopped changes nothing (the detail says if the job had ended already)."""
    _set_phase(context, "stopping", watch)
    job = _job_ref(request, watch)
    try:
        stopped = JobStatus.from_payload((yield context.call_activity_with_retry("stop_job", retry, job)))
        # The backend's detail, unless it only repeats that the job was stopped.
        detail = stopped.detail if stopped.detail and stopped.detail.strip().lower() != "stopped" else None
        how = "its job was stopped" + (f" ({detail})" if detail else "")
    except Exception as exc:
        how = f"stopping its job failed: {_reason(exc)}; the job may still run until its backend ends it"
    return _cancelled(request.run_id, watch.attempt, watch.execution_ref, _cancellation(cancel.result), how)


def _cancellation(payload: Any) -> Cancellation:
    # Like the completion, event data arrives as a JSON string from the Python client.
    return payload if isinstance(payload, Cancellation) else Cancellation.from_payload(payload)


def _cancelled(
    run_id: str, attempt: int, execution_ref: str | None, cancellation: Cancellation, how: str
) -> RunOutcome:
    return RunOutcome(
        run_id=run_id, attempt=attempt, status=RunStatus.CANCELLED, execution_ref=execution_ref,
        cancellation=cancellation,
        error=cancellation.to_error(how),
    )


def _await_report(
    context: df.DurableOrchestrationContext,
    retry: BackoffRetryOptions,
    request: RunRequest,
    watch: WatchState,
    completion: Task,
    status: JobStatus,
) -> Orchestration:
    """The job has ended: its message, if it comes within the grace period, else its result document."""
    grace = context.create_timer(
        context.current_utc_datetime + timedelta(seconds=request.policy.completion_grace_seconds)
    )
    winner = yield context.task_any([completion, grace])
    if winner == completion:
        grace.cancel()
        return _completed(request.run_id, watch, completion.result)
    lookup = yield from _read_result(context, retry, request, watch, status.exit_code)
    if completion.is_completed:  # the message came while the document was being read
        return _completed(request.run_id, watch, completion.result)
    if lookup.completion is not None:
        return _completed(request.run_id, watch, lookup.completion)
    return _ended_silently(request.run_id, watch, status, lookup.missing_reason)


def _read_result(
    context: df.DurableOrchestrationContext,
    retry: BackoffRetryOptions,
    request: RunRequest,
    watch: WatchState,
    exit_code: int | None,
) -> Orchestration:
    _set_phase(context, "reading_result", watch)
    query = ResultQuery(
        run_id=request.run_id, attempt=watch.attempt, exit_code=exit_code, traceparent=request.traceparent
    )
    try:
        return ResultLookup.from_payload((yield context.call_activity_with_retry(
            "read_result", retry, query.to_payload()
        )))
    except Exception as exc:
        return ResultLookup(missing_reason=f"its result document could not be read: {_reason(exc)}")


def _stop_at_deadline(
    context: df.DurableOrchestrationContext,
    retry: BackoffRetryOptions,
    request: RunRequest,
    watch: WatchState,
    completion: Task,
) -> Orchestration:
    """Stop the job; a report that came in the meantime, or a result document, still wins over timed_out."""
    _set_phase(context, "stopping", watch)
    job = _job_ref(request, watch)
    detail = ""
    exit_code: int | None = None
    try:
        stopped = JobStatus.from_payload((yield context.call_activity_with_retry("stop_job", retry, job)))
        detail = f" ({stopped.detail})" if stopped.detail else ""
        exit_code = stopped.exit_code
    except Exception as exc:
        detail = f"; stopping it failed too: {_reason(exc)}"
    if completion.is_completed:
        return _completed(request.run_id, watch, completion.result)
    # A job that finished just before the deadline, and whose message was lost, has its document.
    lookup = yield from _read_result(context, retry, request, watch, exit_code)
    if lookup.completion is not None:
        return _completed(request.run_id, watch, lookup.completion)
    return RunOutcome(
        run_id=request.run_id, attempt=watch.attempt, status=RunStatus.TIMED_OUT, execution_ref=watch.execution_ref,
        error=RunError(
            code="deadline_exceeded",
            message=f"The job ran past its deadline of {request.policy.deadline_seconds} s and was stopped{detail}. "
            "Raise RUN_DEADLINE_SECONDS if such runs are expected to take longer.",
        ),
    )


def _completed(run_id: str, watch: WatchState, payload: Any) -> RunOutcome:
    # Event data arrives as the extension gives it: a JSON string from the Python client, so parse it.
    completion = payload if isinstance(payload, RunnerCompletion) else RunnerCompletion.from_payload(payload)
    succeeded = completion.status is RunnerEventStatus.SUCCEEDED
    return RunOutcome(
        run_id=run_id,
        attempt=watch.attempt,
        status=RunStatus.SUCCEEDED if succeeded else RunStatus.FAILED,
        execution_ref=watch.execution_ref,
        exit_code=completion.exit_code,
        error=None if succeeded else completion.error,
        completion=completion,
    )


def _ended_silently(run_id: str, watch: WatchState, status: JobStatus, missing_reason: str | None) -> RunOutcome:
    exit_code = "unknown" if status.exit_code is None else str(status.exit_code)
    detail = f" ({status.detail})" if status.detail else ""
    why = f"; {missing_reason}" if missing_reason else ""
    tail = f" Last output:\n{status.log_tail}" if status.log_tail else ""
    return RunOutcome(
        run_id=run_id, attempt=watch.attempt, status=RunStatus.FAILED, execution_ref=watch.execution_ref,
        exit_code=status.exit_code,
        error=RunError(
            code="runner_ended_without_report",
            message=f"The job ended with exit code {exit_code}{detail} without a completion message or a valid "
            f"result document{why}." + tail,
        ),
    )


def _record(
    context: df.DurableOrchestrationContext, retry: BackoffRetryOptions, outcome: RunOutcome
) -> Orchestration:
    _set_phase(context, "recording")
    record = yield context.call_activity_with_retry("record_outcome", retry, outcome.to_payload())
    # The record's status: record_outcome refuses a success whose result document it cannot vouch for.
    context.set_custom_status({"phase": "done", "status": record["status"]})
    return record


def _set_phase(context: df.DurableOrchestrationContext, phase: str, watch: WatchState | None = None) -> None:
    status: dict[str, Any] = {"phase": phase}
    if watch is not None:
        status |= {
            "execution_ref": watch.execution_ref,
            "deadline": watch.deadline.isoformat(),
            "generation": watch.generation,
        }
    context.set_custom_status(status)


def _job_ref(request: RunRequest, watch: WatchState) -> dict[str, Any]:
    """The input of `check_job` and `stop_job`."""
    return JobRefInput(
        run_id=request.run_id, execution_ref=watch.execution_ref, traceparent=request.traceparent
    ).to_payload()


def _reason(exc: Exception) -> str:
    if isinstance(exc, ValidationError):  # a payload that broke its contract: name the fields, not the values
        return f"{exc.title} is not valid: {describe_validation_error(exc)}"
    # The SDK formats activity failures as "<reason> \n <details>"; the first line is the message.
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
