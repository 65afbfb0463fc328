"""The `run_task` orchestrator: start the runner, wait for its completion, record how it ended.

It only decides: every effect is an activity, time comes from the context, and every knob comes
from the `RunRequest` in its input. Read it top to bottom as DESIGN.md's flow:

    prepare_run -> start_job -> [ RunnerCompleted  vs  timer -> check_job ]* -> record_outcome
                                 deadline passed -> stop_job -> timed_out
                                 job ended, no message within the grace period -> failed

After `checks_per_generation` status checks it continues as new with its watch state, so its
history stays bounded however long the job runs.
"""

from __future__ import annotations

from collections.abc import Generator
from datetime import timedelta
from typing import Any

import azure.durable_functions as df

from orchestrations.contracts import (
    RUNNER_COMPLETED_EVENT,
    JobRefInput,
    JobStatus,
    PrepareRunResult,
    RunError,
    RunnerCompletion,
    RunnerEventStatus,
    RunOutcome,
    RunStatus,
    RunTaskInput,
    StartJobInput,
    StartJobResult,
    WatchState,
)
from orchestrations.retry import BackoffRetryOptions

Orchestration = Generator[Any, Any, Any]


def run_task(context: df.DurableOrchestrationContext) -> Orchestration:
    run = RunTaskInput.from_payload(context.get_input())
    request, policy = run.request, run.request.policy
    retry = BackoffRetryOptions(policy.activity_retry)

    watch = run.watch
    if watch is None:
        _set_phase(context, "starting")
        prepared = PrepareRunResult.from_payload(
            (yield context.call_activity_with_retry("prepare_run", retry, request.to_payload()))
        )
        try:
            started = StartJobResult.from_payload((yield context.call_activity_with_retry(
                "start_job", retry,
                StartJobInput(request=request, callback_token=prepared.callback_token, attempt=1).to_payload(),
            )))
        except Exception as exc:  # the SDK raises a plain Exception once all retries failed
            started = StartJobResult(refused=RunError(code="job_start_failed", message=_reason(exc)))
        if started.refused is not None or started.execution_ref is None or started.started_at is None:
            refused = started.refused or RunError(code="job_start_failed", message="no execution")
            outcome = RunOutcome(
                run_id=request.run_id, status=RunStatus.FAILED,
                error=refused.model_copy(update={"message": f"The job could not be started: {refused.message}"}),
            )
            return (yield from _record(context, retry, outcome))
        watch = WatchState(
            callback_token=prepared.callback_token,
            execution_ref=started.execution_ref,
            started_at=started.started_at,
            deadline=context.current_utc_datetime + timedelta(seconds=policy.deadline_seconds),
            generation=1,
        )

    job = JobRefInput(run_id=request.run_id, execution_ref=watch.execution_ref).to_payload()
    completion_task = context.wait_for_external_event(RUNNER_COMPLETED_EVENT)
    for _ in range(policy.checks_per_generation):
        _set_phase(context, "running", watch)
        if context.current_utc_datetime >= watch.deadline:
            outcome = yield from _stop_at_deadline(context, retry, job, watch, policy.deadline_seconds)
            break
        next_check = min(
            context.current_utc_datetime + timedelta(seconds=policy.check_interval_seconds), watch.deadline
        )
        timer = context.create_timer(next_check)
        winner = yield context.task_any([completion_task, timer])
        if winner == completion_task:
            timer.cancel()
            outcome = _completed(request.run_id, watch, completion_task.result)
            break
        if context.current_utc_datetime >= watch.deadline:
            outcome = yield from _stop_at_deadline(context, retry, job, watch, policy.deadline_seconds)
            break
        try:
            status = JobStatus.from_payload((yield context.call_activity_with_retry("check_job", retry, job)))
        except Exception:  # a failed status check is not a failed job: the deadline still bounds the run
            continue
        if not status.has_ended:
            continue
        # The runner reports just before it exits; give its message a moment to arrive.
        grace = context.create_timer(
            context.current_utc_datetime + timedelta(seconds=policy.completion_grace_seconds)
        )
        winner = yield context.task_any([completion_task, grace])
        if winner == completion_task:
            grace.cancel()
            outcome = _completed(request.run_id, watch, completion_task.result)
        else:
            outcome = _ended_silently(request.run_id, watch, status)
        break
    else:
        context.continue_as_new(
            RunTaskInput(request=request, watch=watch.model_copy(update={"generation": watch.generation + 1}))
            .to_payload()
        )
        return None
    return (yield from _record(context, retry, outcome))


def _stop_at_deadline(
    context: df.DurableOrchestrationContext,
    retry: BackoffRetryOptions,
    job: dict[str, Any],
    watch: WatchState,
    deadline_seconds: int,
) -> Orchestration:
    _set_phase(context, "stopping", watch)
    detail = ""
    try:
        stopped = JobStatus.from_payload((yield context.call_activity_with_retry("stop_job", retry, job)))
        detail = f" ({stopped.detail})" if stopped.detail else ""
    except Exception as exc:
        detail = f"; stopping it failed too: {_reason(exc)}"
    return RunOutcome(
        run_id=job["run_id"], status=RunStatus.TIMED_OUT, execution_ref=watch.execution_ref,
        error=RunError(
            code="deadline_exceeded",
            message=f"The job ran past its deadline of {deadline_seconds} s and was stopped{detail}. "
            "Raise RUN_DEADLINE_SECONDS if such runs are expected to take longer.",
        ),
    )


def _completed(run_id: str, watch: WatchState, payload: Any) -> RunOutcome:
    completion = RunnerCompletion.from_payload(payload)
    succeeded = completion.status is RunnerEventStatus.SUCCEEDED
    return RunOutcome(
        run_id=run_id,
        status=RunStatus.SUCCEEDED if succeeded else RunStatus.FAILED,
        execution_ref=watch.execution_ref,
        exit_code=completion.exit_code,
        error=None if succeeded else completion.error,
        completion=completion,
    )


def _ended_silently(run_id: str, watch: WatchState, status: JobStatus) -> RunOutcome:
    exit_code = "unknown" if status.exit_code is None else str(status.exit_code)
    detail = f" ({status.detail})" if status.detail else ""
    tail = f" Last output:\n{status.log_tail}" if status.log_tail else ""
    return RunOutcome(
        run_id=run_id, status=RunStatus.FAILED, execution_ref=watch.execution_ref, exit_code=status.exit_code,
        error=RunError(
            code="runner_ended_without_report",
            message=f"The job ended with exit code {exit_code}{detail} without sending its completion message."
            + tail,
        ),
    )


def _record(
    context: df.DurableOrchestrationContext, retry: BackoffRetryOptions, outcome: RunOutcome
) -> Orchestration:
    _set_phase(context, "recording")
    record = yield context.call_activity_with_retry("record_outcome", retry, outcome.to_payload())
    context.set_custom_status({"phase": "done", "status": outcome.status.value})
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


def _reason(exc: Exception) -> str:
    # The SDK formats activity failures as "<reason> \n <details>"; the first line is the message.
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
