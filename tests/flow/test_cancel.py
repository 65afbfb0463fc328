"""Cancelling a run: `POST /api/runs/{run_id}/cancel` through the in-process host, real Azurite, real jobs.

The cancel is raised to the orchestration as `CancelRequested`; the orchestrator stops the job and ends the run
`cancelled` with who, when and why. The races (cancel against completion, cancel at a generation boundary,
cancel before the job started) are made deterministic by holding an activity until the other side has arrived;
orchestration time moves only when a test moves its clock.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any

import docker
import pytest
from azure.storage.queue import QueueClient
from pydantic import SecretStr

from local_runner.host.clock import ManualClock
from local_runner.host.host import LocalHost
from orchestrations import activities, runtime
from orchestrations.callback_tokens import derive_callback_token
from orchestrations.contracts import (
    ExecutionRef,
    JobState,
    JobStatus,
    RunnerEvent,
    RunnerEventStatus,
    RunStatus,
    RunTaskInput,
)
from tests.conftest import TEST_CALLBACK_TOKEN_KEY
from tests.flow.conftest import (
    FlowEnv,
    api_post,
    drive,
    keep_history,
    runner_after,
    scheduled_activities,
    wait_for,
    wait_for_end,
)

pytestmark = [pytest.mark.azurite, pytest.mark.slow]

PORTFOLIO = b"isin,market_value,currency\nGB0007980591,10000,USD\n"
SLEEPS = json.dumps(["python", "-c", "import time; time.sleep(600)"])
ALICE = {"reason": "wrong portfolio", "by": "alice"}


def cancel(host: LocalHost, run_id: str, body: Any = None) -> Any:
    return api_post(host, f"runs/{run_id}/cancel", json=body)


def wait_until_running(host: LocalHost, flow: FlowEnv, run_id: str) -> None:
    def running() -> bool:
        record = flow.record(run_id)
        return record is not None and record.status is RunStatus.RUNNING

    wait_for(running, step=host.poll_triggers_once, what=f"run {run_id} to be running")


def orchestration_completes(host: LocalHost, run_id: str) -> str:
    return str(host.engine.wait_for_status(run_id, {"Completed", "Failed", "Terminated"})["runtimeStatus"])


def only_generation(host: LocalHost, run_id: str) -> bool:
    started = next(event for event in host.engine.get_history(run_id) if event["EventType"] == 0)
    return RunTaskInput.from_payload(json.loads(started["Input"])).watch is None


def real(activity: Callable[[dict[str, Any]], dict[str, Any]], payload: str | None) -> str:
    return json.dumps(activity(json.loads(payload or "null")))


@pytest.mark.parametrize("backend", ["process", "docker", "aca"], indirect=True)
def test_cancelling_a_running_run_stops_its_job_and_records_who_when_and_why(
    flow_env: FlowEnv, start_host: Callable[..., LocalHost]
) -> None:
    host = start_host(clock=ManualClock(), **{"ACA_COMMAND" if flow_env.backend == "aca" else "RUNNER_COMMAND": SLEEPS})
    run_id = flow_env.upload("parse_portfolio/cancel-me.csv", PORTFOLIO)
    wait_until_running(host, flow_env, run_id)

    answer = cancel(host, run_id, ALICE)

    assert answer.status_code == 202, answer.text
    view = answer.json()
    assert view["run_id"] == run_id and view["status"] in {"running", "cancelled"}
    assert view["cancellation"]["requested_by"] == "alice" and view["cancellation"]["reason"] == "wrong portfolio"
    record = wait_for_end(flow_env, run_id, step=host.poll_triggers_once)
    assert record.status is RunStatus.CANCELLED
    assert record.cancellation is not None and record.cancellation.requested_by == "alice"
    assert record.cancellation.requested_at == datetime.fromisoformat(view["cancellation"]["requested_at"])
    assert record.error is not None and record.error.code == "cancelled"
    assert "alice" in record.error.message and "wrong portfolio" in record.error.message
    assert record.finished_at is not None
    assert orchestration_completes(host, run_id) == "Completed"
    assert scheduled_activities(host, run_id) == [
        "acquire_slot", "start_job", "stop_job", "release_slot", "record_outcome",
    ]
    assert record.execution_ref is not None
    ref = ExecutionRef.parse(record.execution_ref)
    assert runtime.backend().status(ref).has_ended
    if flow_env.backend == "docker":  # kept for `docker logs` (DOCKER_KEEP_FINISHED), but no longer running
        assert docker.from_env().containers.get(ref.name).status == "exited"
    elif flow_env.backend == "process":
        keep_history(host, run_id, "cancelled_while_running")


def test_a_run_cancelled_while_queued_never_starts_a_job(
    flow_env: FlowEnv, start_host: Callable[..., LocalHost]
) -> None:
    def start_once_the_cancel_is_recorded(payload: str | None) -> str:
        def cancel_recorded() -> bool:
            record = flow_env.record(flow_env.run_ids[0]) if flow_env.run_ids else None
            return record is not None and record.cancellation is not None

        wait_for(cancel_recorded, what="the cancel to reach the run record")
        return real(activities.start_job, payload)

    host = start_host(clock=ManualClock(), activity_overrides={"start_job": start_once_the_cancel_is_recorded})
    run_id = flow_env.upload("parse_portfolio/queued.csv", PORTFOLIO)
    # Its slot taken (a cancel that came before would be answered by acquire_slot), start_job waits for the cancel.
    wait_for(lambda: host.engine.get_status(run_id) and "start_job" in scheduled_activities(host, run_id),
             step=host.poll_triggers_once, what="the run to hold its slot")

    answer = cancel(host, run_id, {"by": "bob"})

    assert answer.status_code == 202, answer.text
    assert answer.json()["status"] == "queued"
    record = wait_for_end(flow_env, run_id, step=host.poll_triggers_once)
    assert record.status is RunStatus.CANCELLED
    assert record.error is not None and "no job was started" in record.error.message
    assert record.cancellation is not None and record.cancellation.requested_by == "bob"
    assert record.cancellation.reason is None and record.execution_ref is None and record.attempts == 0
    assert flow_env.executions() == []
    assert scheduled_activities(host, run_id) == ["acquire_slot", "start_job", "release_slot", "record_outcome"]
    assert orchestration_completes(host, run_id) == "Completed"
    keep_history(host, run_id, "cancelled_before_start")


def test_a_cancel_that_comes_while_the_job_is_being_started_stops_the_job_once_it_has_started(
    flow_env: FlowEnv, start_host: Callable[..., LocalHost]
) -> None:
    answers: list[int] = []
    hosts: list[LocalHost] = []

    def start_then_cancelled(payload: str | None) -> str:
        started = real(activities.start_job, payload)  # the job exists and the record says running
        answers.append(cancel(hosts[0], flow_env.run_ids[0], ALICE).status_code)
        return started

    hosts.append(host := start_host(
        clock=ManualClock(), activity_overrides={"start_job": start_then_cancelled}, RUNNER_COMMAND=SLEEPS,
    ))
    run_id = flow_env.upload("parse_portfolio/cancel-at-start.csv", PORTFOLIO)

    record = wait_for_end(flow_env, run_id, step=host.poll_triggers_once)

    assert answers == [202]
    assert record.status is RunStatus.CANCELLED and record.attempts == 1
    assert scheduled_activities(host, run_id) == [
        "acquire_slot", "start_job", "stop_job", "release_slot", "record_outcome",
    ]
    assert record.execution_ref is not None
    assert runtime.backend().status(ExecutionRef.parse(record.execution_ref)).has_ended


def test_a_cancel_taken_before_the_completion_wins_and_a_late_report_changes_nothing(
    flow_env: FlowEnv, start_host: Callable[..., LocalHost], tmp_path: Any
) -> None:
    clock = ManualClock()
    host = start_host(clock=clock, deliver_completions=False, RUNNER_COMMAND=runner_after(tmp_path / "never"))
    run_id = flow_env.upload("parse_portfolio/cancel-first.csv", PORTFOLIO)
    wait_until_running(host, flow_env, run_id)

    assert cancel(host, run_id, ALICE).status_code == 202
    record = wait_for_end(flow_env, run_id, step=host.poll_triggers_once)
    late = RunnerEvent(
        run_id=run_id, token=derive_callback_token(SecretStr(TEST_CALLBACK_TOKEN_KEY), run_id, 1),
        status=RunnerEventStatus.SUCCEEDED, exit_code=0, started_at=clock.now(), finished_at=clock.now(),
    )
    queue = QueueClient.from_connection_string(flow_env.connection, flow_env.env["RUNNER_EVENTS_QUEUE"])
    queue.create_queue()
    queue.send_message(late.to_message())
    [trigger] = flow_env.held_queue_triggers
    wait_for(lambda: trigger.poll_once() == 0 and flow_env.queue_messages(queue.queue_name) == 0)

    assert record.status is RunStatus.CANCELLED
    assert flow_env.record(run_id) == record
    assert flow_env.queue_messages(f"{queue.queue_name}-poison") == 0
    assert orchestration_completes(host, run_id) == "Completed"
    again = cancel(host, run_id, ALICE)
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "run_already_ended" and "cancelled" in again.json()["error"]["message"]


def test_a_completion_taken_before_the_cancel_wins_and_the_run_ends_once(
    flow_env: FlowEnv, start_host: Callable[..., LocalHost]
) -> None:
    taken, release = threading.Event(), threading.Event()

    def record_once_released(payload: str | None) -> str:
        taken.set()  # the orchestrator took the completion: this is its last step
        release.wait(60)
        return real(activities.record_outcome, payload)

    host = start_host(clock=ManualClock(), activity_overrides={"record_outcome": record_once_released})
    run_id = flow_env.upload("parse_portfolio/report-first.csv", PORTFOLIO)
    wait_for(taken.is_set, step=host.poll_triggers_once, what="the completion to be taken")
    try:
        answer = cancel(host, run_id, ALICE)
    finally:
        release.set()

    assert answer.status_code == 202, answer.text  # accepted: the run had not ended yet
    record = wait_for_end(flow_env, run_id, step=host.poll_triggers_once)
    assert record.status is RunStatus.SUCCEEDED and record.error is None and record.outputs_count == 1
    assert record.cancellation is not None and record.cancellation.requested_by == "alice"  # asked, too late
    assert orchestration_completes(host, run_id) == "Completed"
    assert scheduled_activities(host, run_id) == ["acquire_slot", "start_job", "release_slot", "record_outcome"]
    again = cancel(host, run_id)
    assert again.status_code == 409
    assert again.json() == {"error": {"code": "run_already_ended", "message": again.json()["error"]["message"]}}
    assert "succeeded" in again.json()["error"]["message"]


def test_a_cancel_and_a_completion_pending_at_the_same_check_end_the_run_as_the_job_reported(
    flow_env: FlowEnv, start_host: Callable[..., LocalHost]
) -> None:
    answers: list[int] = []
    hosts: list[LocalHost] = []

    def check_while_both_arrive(payload: str | None) -> str:
        if not answers:  # the runner's report and a cancel both come while this check is under way
            [trigger] = flow_env.held_queue_triggers
            wait_for(trigger.poll_once, what="the runner's message to be delivered")
            answers.append(cancel(hosts[0], flow_env.run_ids[0], ALICE).status_code)
            return json.dumps(JobStatus(state=JobState.RUNNING).to_payload())
        return real(activities.check_job, payload)

    clock = ManualClock()
    hosts.append(host := start_host(
        clock=clock, deliver_completions=False, activity_overrides={"check_job": check_while_both_arrive},
    ))
    run_id = flow_env.upload("parse_portfolio/both-at-once.csv", PORTFOLIO)

    record = drive(host, clock, flow_env, run_id, seconds_per_step=0.5)

    assert answers == [202]
    assert record.status is RunStatus.SUCCEEDED, record.error
    assert scheduled_activities(host, run_id) == [
        "acquire_slot", "start_job", "check_job", "release_slot", "record_outcome",
    ]
    assert orchestration_completes(host, run_id) == "Completed"


def test_a_cancel_that_arrives_during_the_last_check_of_a_generation_is_taken_before_continue_as_new(
    flow_env: FlowEnv, start_host: Callable[..., LocalHost]
) -> None:
    """The SDK 1.x continues as new without the events no wait took: the cancel must be taken first."""
    answers: list[int] = []
    hosts: list[LocalHost] = []

    def check_while_cancelled(payload: str | None) -> str:
        if not answers:
            answers.append(cancel(hosts[0], flow_env.run_ids[0], ALICE).status_code)
            return json.dumps(JobStatus(state=JobState.RUNNING).to_payload())
        return real(activities.check_job, payload)

    clock = ManualClock()
    hosts.append(host := start_host(
        clock=clock, activity_overrides={"check_job": check_while_cancelled}, RUNNER_COMMAND=SLEEPS,
        STATUS_CHECKS_PER_GENERATION="1",
    ))
    run_id = flow_env.upload("parse_portfolio/boundary-cancel.csv", PORTFOLIO)

    record = drive(host, clock, flow_env, run_id, seconds_per_step=0.5)

    assert answers == [202]
    assert record.status is RunStatus.CANCELLED, record.error
    assert only_generation(host, run_id)
    assert scheduled_activities(host, run_id) == [
        "acquire_slot", "start_job", "check_job", "stop_job", "release_slot", "record_outcome",
    ]
    assert record.execution_ref is not None
    assert runtime.backend().status(ExecutionRef.parse(record.execution_ref)).has_ended


def test_cancelling_an_ended_run_answers_409_with_its_status_and_changes_nothing(
    flow_env: FlowEnv, start_host: Callable[..., LocalHost]
) -> None:
    host = start_host(clock=ManualClock())
    run_id = flow_env.upload("parse_portfolio/done.csv", PORTFOLIO)
    ended = wait_for_end(flow_env, run_id, step=host.poll_triggers_once)
    orchestration_completes(host, run_id)

    answer = cancel(host, run_id, ALICE)

    assert answer.status_code == 409
    assert answer.json() == {"error": {
        "code": "run_already_ended", "message": answer.json()["error"]["message"],
    }}
    assert f"its status is {ended.status.value}" in answer.json()["error"]["message"]
    assert flow_env.record(run_id) == ended


def test_cancelling_a_run_whose_orchestration_was_terminated_records_it_failed_and_answers_409(
    flow_env: FlowEnv, start_host: Callable[..., LocalHost]
) -> None:
    host = start_host(clock=ManualClock(), RUNNER_COMMAND=SLEEPS)
    run_id = flow_env.upload("parse_portfolio/terminated.csv", PORTFOLIO)
    wait_until_running(host, flow_env, run_id)
    host.engine.terminate(run_id, "terminated by an operator")

    answer = cancel(host, run_id, ALICE)

    record = flow_env.record(run_id)
    assert record is not None and record.execution_ref is not None
    runtime.backend().stop(ExecutionRef.parse(record.execution_ref))  # a terminated orchestration stops nothing
    assert answer.status_code == 409
    assert answer.json()["error"]["code"] == "run_already_ended" and "failed" in answer.json()["error"]["message"]
    assert record.status is RunStatus.FAILED and record.error is not None
    assert record.error.code == "orchestration_failed" and "terminated by an operator" in record.error.message
    assert record.cancellation is None


@pytest.mark.parametrize("body", [
    b"not json", b"[]", json.dumps({"reason": "x", "who": "eve"}).encode(),
    json.dumps({"reason": "x" * 501}).encode(), json.dumps({"by": "eve\nINFO forged log line"}).encode(),
    json.dumps({"reason": 7}).encode(),
])
def test_a_cancel_with_a_bad_body_is_refused_with_400_before_anything_is_looked_up(
    flow_env: FlowEnv, start_host: Callable[..., LocalHost], body: bytes
) -> None:
    host = start_host(clock=ManualClock())

    answer = api_post(host, "runs/run-0000000000000000000000000000/cancel", data=body)

    assert answer.status_code == 400
    error = answer.json()["error"]
    assert set(answer.json()) == {"error"} and set(error) == {"code", "message"} and error["code"] == "invalid_body"


@pytest.mark.parametrize("run_id", ["run-0000000000000000000000000000", "NOT_A_RUN", "run-x"])
def test_cancelling_an_unknown_run_answers_404(
    flow_env: FlowEnv, start_host: Callable[..., LocalHost], run_id: str
) -> None:
    host = start_host(clock=ManualClock())

    answer = cancel(host, run_id)

    assert answer.status_code == 404
    assert answer.json() == {"error": {"code": "run_not_found", "message": f"No run {run_id} in the runs table."}}
