"""Every branch of `run_task`, through the in-process host with a clock the test moves.

The job itself runs for real (the process backend, docker, or Container Apps behind the loopback ARM);
only orchestration time is the test's. Jobs that must misbehave are given a different command through
RUNNER_COMMAND (ACA_COMMAND on Container Apps).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from azure.core.exceptions import ResourceExistsError
from azure.storage.queue import QueueClient

from local_runner.host.clock import ManualClock
from local_runner.host.host import LocalHost
from orchestrations import activities, runtime
from orchestrations.contracts import ExecutionRef, RunnerEvent, RunnerEventStatus, RunStatus, RunTaskInput
from tests.flow.conftest import FlowEnv, drive, keep_history, runner_after, scheduled_activities, wait_for

pytestmark = [pytest.mark.azurite, pytest.mark.slow]

PORTFOLIO = b"isin,market_value,currency\nGB0007980591,10000,USD\n"


def is_running(flow: FlowEnv, run_id: str) -> bool:
    record = flow.record(run_id)
    return record is not None and record.status is RunStatus.RUNNING


def python_command(code: str) -> str:
    return json.dumps(["python", "-c", code])


def job_command(flow: FlowEnv, code: str) -> dict[str, str]:
    """The setting that makes the job run `python -c code` instead of the runner, on this backend."""
    return {"ACA_COMMAND" if flow.backend == "aca" else "RUNNER_COMMAND": python_command(code)}


def test_completion_message_wins_without_any_status_check(
    flow_env: FlowEnv, start_host: Callable[..., LocalHost]
) -> None:
    clock = ManualClock()
    host = start_host(clock=clock)
    run_id = flow_env.upload("parse_portfolio/event.csv", PORTFOLIO)

    record = drive(host, clock, flow_env, run_id, seconds_per_step=0)

    assert record.status is RunStatus.SUCCEEDED
    assert scheduled_activities(host, run_id) == ["acquire_slot", "start_job", "release_slot", "record_outcome"]
    keep_history(host, run_id, "succeeded_on_event")


BOTH_BACKENDS = pytest.mark.parametrize("backend", ["process", "docker"], indirect=True)
ALL_BACKENDS = pytest.mark.parametrize("backend", ["process", "docker", "aca"], indirect=True)


@ALL_BACKENDS
def test_job_that_dies_without_reporting_fails_with_its_exit_code_and_last_output(
    flow_env: FlowEnv, start_host: Callable[..., LocalHost]
) -> None:
    clock = ManualClock()
    # 137 is what a SIGKILLed runner leaves (as PID 1 in a container it cannot SIGKILL itself).
    host = start_host(clock=clock, **job_command(
        flow_env, "import sys; print('loading portfolio', flush=True); sys.exit(137)"
    ))
    run_id = flow_env.upload("parse_portfolio/dies.csv", PORTFOLIO)

    record = drive(host, clock, flow_env, run_id, seconds_per_step=0.5)

    assert record.status is RunStatus.FAILED
    assert record.error is not None and record.error.code == "runner_ended_without_report"
    assert "exit code 137" in record.error.message
    if flow_env.backend == "aca":  # Container Apps hands back no output; ARM's word for the end instead
        assert "(Failed" in record.error.message
    else:
        assert "loading portfolio" in record.error.message
    assert "check_job" in scheduled_activities(host, run_id)
    assert flow_env.queue_messages(flow_env.env["RUNNER_EVENTS_QUEUE"]) == 0
    keep_history(host, run_id, "failed_without_report")


@ALL_BACKENDS
def test_job_past_its_deadline_is_stopped_and_timed_out_with_bounded_history(
    flow_env: FlowEnv, start_host: Callable[..., LocalHost]
) -> None:
    clock = ManualClock()
    host = start_host(
        clock=clock, **job_command(flow_env, "import time; time.sleep(600)"),
        RUN_DEADLINE_SECONDS="30", STATUS_CHECK_INTERVAL_SECONDS="2", STATUS_CHECKS_PER_GENERATION="3",
    )
    run_id = flow_env.upload("parse_portfolio/sleeps.csv", PORTFOLIO)

    record = drive(host, clock, flow_env, run_id, seconds_per_step=0.5)

    assert record.status is RunStatus.TIMED_OUT
    assert record.error is not None and record.error.code == "deadline_exceeded"
    assert record.execution_ref is not None
    assert runtime.backend().status(ExecutionRef.parse(record.execution_ref)).has_ended
    history = host.engine.get_history(run_id)
    started = next(event for event in history if event["EventType"] == 0)
    assert json.loads(started["Input"])["watch"]["generation"] >= 4
    assert len(history) < 60
    keep_history(host, run_id, "timed_out_after_continue_as_new")


def test_the_generation_that_starts_the_job_makes_one_status_check_fewer(
    flow_env: FlowEnv, start_host: Callable[..., LocalHost], tmp_path: Path
) -> None:
    """Its look for a slot and the job's start take one check's place, so that the first generation's history
    is no larger than a later one's (bench/history.py: 68 events against 60 when it made every check)."""
    gate = tmp_path / "job-may-go-on"
    host: LocalHost | None = None
    generations: list[int] = []  # the generation each status check ran in

    def check_and_note_the_generation(payload: str | None) -> str:
        assert host is not None
        started = next(event for event in host.engine.get_history(run_id) if event["EventType"] == 0)
        watch = RunTaskInput.from_payload(json.loads(started["Input"])).watch
        # The generation that started the job has no watch in its input (the watch it made is generation 1).
        generations.append(1 if watch is None else watch.generation)
        if len(generations) == 5:
            gate.touch()  # the job goes on to its end and its report
        return json.dumps(activities.check_job(json.loads(payload or "null")))

    clock = ManualClock()
    host = start_host(
        clock=clock, activity_overrides={"check_job": check_and_note_the_generation},
        RUNNER_COMMAND=runner_after(gate), STATUS_CHECK_INTERVAL_SECONDS="2", STATUS_CHECKS_PER_GENERATION="2",
    )
    run_id = flow_env.upload("parse_portfolio/first-generation.csv", PORTFOLIO)

    record = drive(host, clock, flow_env, run_id, seconds_per_step=0.5)

    assert record.status is RunStatus.SUCCEEDED, record.error
    assert generations[:5] == [1, 2, 2, 3, 3]  # one check in the first, then two a generation


def test_start_failure_is_retried_with_backoff_then_fails_the_run(
    flow_env: FlowEnv, start_host: Callable[..., LocalHost]
) -> None:
    clock = ManualClock()
    attempts: list[Any] = []

    def start_job_refused(payload: str | None) -> str:
        attempts.append(clock.now())
        raise RuntimeError("the job backend refused the start")

    host = start_host(clock=clock, activity_overrides={"start_job": start_job_refused}, ACTIVITY_MAX_ATTEMPTS="3")
    run_id = flow_env.upload("parse_portfolio/refused.csv", PORTFOLIO)

    record = drive(host, clock, flow_env, run_id, seconds_per_step=0.25)

    assert record.status is RunStatus.FAILED
    assert record.error is not None and record.error.code == "job_start_failed"
    assert "the job backend refused the start" in record.error.message
    assert len(attempts) == 3
    first_gap, second_gap = attempts[1] - attempts[0], attempts[2] - attempts[1]
    assert second_gap > first_gap  # backoff: 1 s, then 2 s
    assert flow_env.executions() == []
    keep_history(host, run_id, "start_failed_after_retries")


@pytest.mark.parametrize("backend", ["docker"], indirect=True)
def test_a_start_no_retry_can_help_fails_the_run_at_once_with_the_backends_reason(
    flow_env: FlowEnv, start_host: Callable[..., LocalHost]
) -> None:
    clock = ManualClock()
    host = start_host(clock=clock, RUNNER_IMAGE="pacta-no-such-image:missing")
    run_id = flow_env.upload("parse_portfolio/no-image.csv", PORTFOLIO)

    record = drive(host, clock, flow_env, run_id, seconds_per_step=0.25)

    assert record.status is RunStatus.FAILED
    assert record.error is not None and record.error.code == "image_not_found"
    assert "pacta-no-such-image:missing" in record.error.message and "make images" in record.error.message
    assert scheduled_activities(host, run_id) == ["acquire_slot", "start_job", "release_slot", "record_outcome"]
    assert record.attempts == 0


@pytest.mark.parametrize("backend", ["docker"], indirect=True)
def test_job_over_its_memory_limit_fails_with_the_oom_reason(
    flow_env: FlowEnv, start_host: Callable[..., LocalHost]
) -> None:
    clock = ManualClock()
    host = start_host(clock=clock, RUNNER_MEMORY="64Mi", RUNNER_COMMAND=python_command(
        "hoard = bytearray(512 * 1024 * 1024); print(len(hoard))"
    ))
    run_id = flow_env.upload("parse_portfolio/hungry.csv", PORTFOLIO)

    record = drive(host, clock, flow_env, run_id, seconds_per_step=0.5)

    assert record.status is RunStatus.FAILED
    assert record.error is not None and record.error.code == "runner_ended_without_report"
    assert "OOMKilled: the job used more than its memory limit of 64Mi" in record.error.message


@ALL_BACKENDS
def test_start_retried_after_the_job_began_reuses_the_execution(
    flow_env: FlowEnv, start_host: Callable[..., LocalHost]
) -> None:
    calls: list[str] = []

    def start_then_crash_once(payload: str | None) -> str:
        result = activities.start_job(json.loads(payload or "null"))
        calls.append(result["execution_ref"])
        if len(calls) == 1:  # the job exists now; the activity dies before reporting it
            raise ConnectionError("worker lost after the job started")
        return json.dumps(result)

    clock = ManualClock()
    host = start_host(clock=clock, activity_overrides={"start_job": start_then_crash_once})
    run_id = flow_env.upload("parse_portfolio/retried.csv", PORTFOLIO)

    record = drive(host, clock, flow_env, run_id, seconds_per_step=0.5)

    assert record.status is RunStatus.SUCCEEDED, record.error
    assert len(calls) == 2 and calls[0] == calls[1]
    assert flow_env.executions() == [run_id]
    assert record.attempts == 1  # the activity ran twice; the job was started once


def test_completion_message_with_a_wrong_token_is_ignored(
    flow_env: FlowEnv, start_host: Callable[..., LocalHost], tmp_path: Path
) -> None:
    clock = ManualClock()
    gate = tmp_path / "release"
    host = start_host(clock=clock, RUNNER_COMMAND=python_command(
        f"import os, time\nwhile not os.path.exists({str(gate)!r}): time.sleep(0.05)\nraise SystemExit(3)"
    ))
    run_id = flow_env.upload("parse_portfolio/forged.csv", PORTFOLIO)
    wait_for(lambda: is_running(flow_env, run_id), step=host.poll_triggers_once)
    forged = RunnerEvent(
        run_id=run_id, token="f" * 43, status=RunnerEventStatus.SUCCEEDED, exit_code=0,
        started_at=clock.now(), finished_at=clock.now(),
    )
    queue = QueueClient.from_connection_string(flow_env.connection, flow_env.env["RUNNER_EVENTS_QUEUE"])
    queue.send_message(forged.to_message())
    wait_for(lambda: host.poll_triggers_once() == 0 and flow_env.queue_messages(queue.queue_name) == 0)

    assert is_running(flow_env, run_id)
    gate.touch()
    record = drive(host, clock, flow_env, run_id, seconds_per_step=0.5)
    assert record.status is RunStatus.FAILED and "exit code 3" in (record.error.message if record.error else "")


def test_malformed_and_unknown_completion_messages_are_dropped_not_poisoned(
    flow_env: FlowEnv, start_host: Callable[..., LocalHost], caplog: pytest.LogCaptureFixture
) -> None:
    host = start_host()
    events = flow_env.env["RUNNER_EVENTS_QUEUE"]
    queue = QueueClient.from_connection_string(flow_env.connection, events)
    with contextlib.suppress(ResourceExistsError):  # the host's poller may not have made it yet
        queue.create_queue()
    stranger = RunnerEvent(
        run_id="run-nobody-knows-this", token="t" * 43, status=RunnerEventStatus.SUCCEEDED, exit_code=0,
        started_at=host.clock.now(), finished_at=host.clock.now(),
    )

    queue.send_message("this is not JSON")
    queue.send_message(stranger.to_message())
    wait_for(lambda: host.poll_triggers_once() == 0 and flow_env.queue_messages(events) == 0)

    assert flow_env.queue_messages(f"{events}-poison") == 0
    assert "not a valid RunnerEvent" in caplog.text
    assert "unknown run run-nobody-knows-this" in caplog.text
