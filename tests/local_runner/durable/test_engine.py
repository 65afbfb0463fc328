"""The engine runs orchestrations through the real SDK: activities, timers, events, status."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any, TypeAlias

import azure.durable_functions as df
import pytest

from local_runner.host.clock import ManualClock
from local_runner.host.durable import (
    InstanceExistsError,
    InstanceGoneError,
    InstanceNotFoundError,
    OrchestratorNotFoundError,
)
from tests.local_runner.durable.conftest import (
    Activities,
    EngineFactory,
    outcome,
    status_of,
    summarize,
)

pytestmark = pytest.mark.azurite
Context: TypeAlias = df.DurableOrchestrationContext
HOUR = timedelta(hours=1)


def chain(context: Context) -> Any:
    first = yield context.call_activity("double", context.get_input())
    second = yield context.call_activity("double", first)
    return {"result": second}


def wait_for_approval(context: Context) -> Any:
    deadline = context.create_timer(context.current_utc_datetime + HOUR)
    approval = context.wait_for_external_event("Approval")
    winner = yield context.task_any([approval, deadline])
    if winner == approval:
        deadline.cancel()
        return {"approved": approval.result}
    return "timed out"


def test_an_activity_chain_returns_the_orchestrators_output(make_engine: EngineFactory):
    engine = make_engine({"chain": chain}, Activities({"double": lambda n: n * 2}))

    instance_id = engine.start_new("chain", "chain-1", json.dumps(3))
    engine.run_until_idle()

    assert outcome(engine, instance_id) == ("Completed", {"result": 12})
    assert status_of(engine, instance_id)["input"] == 3
    assert summarize(engine.get_history(instance_id)) == [
        "ExecutionStarted", "TaskScheduled#0", "TaskCompleted#0", "TaskScheduled#1",
        "TaskCompleted#1", "ExecutionCompleted",
    ]


def test_an_event_that_beats_the_timer_completes_the_instance_without_the_clock_moving(
    make_engine: EngineFactory,
):
    engine = make_engine({"approval": wait_for_approval})
    instance_id = engine.start_new("approval", "approval-1")
    engine.run_until_idle()

    engine.raise_event(instance_id, "Approval", json.dumps({"by": "ana"}))
    engine.run_until_idle()

    assert outcome(engine, instance_id) == ("Completed", {"approved": {"by": "ana"}})
    assert "TimerFired#0" not in summarize(engine.get_history(instance_id))


def test_a_timer_that_beats_the_event_fires_once_the_clock_passes_it(
    make_engine: EngineFactory, clock: ManualClock
):
    engine = make_engine({"approval": wait_for_approval})
    instance_id = engine.start_new("approval", "approval-2")
    engine.run_until_idle()

    clock.advance(HOUR - timedelta(seconds=1))
    engine.run_until_idle()
    assert status_of(engine, instance_id)["runtimeStatus"] == "Running"

    clock.advance(timedelta(seconds=1))
    engine.run_until_idle()

    assert outcome(engine, instance_id) == ("Completed", "timed out")


def test_an_event_raised_before_the_orchestrator_waits_for_it_is_kept_for_the_wait(
    make_engine: EngineFactory,
):
    def late_waiter(context: Context) -> Any:
        yield context.call_activity("prepare")
        signal = yield context.wait_for_external_event("Go")
        return signal

    engine = make_engine({"late_waiter": late_waiter}, Activities({"prepare": lambda _: None}))
    instance_id = engine.start_new("late_waiter", "early-1")
    engine.raise_event(instance_id, "Go", json.dumps("now"))
    engine.run_until_idle()

    assert outcome(engine, instance_id) == ("Completed", "now")


class BackoffRetry(df.RetryOptions):
    """RetryOptions that also send a backoff coefficient, as the extension reads it."""

    def to_json(self) -> dict[str, Any]:
        return {**super().to_json(), "backoffCoefficient": 2}


def retried(context: Context) -> Any:
    try:
        result = yield context.call_activity_with_retry("flaky", BackoffRetry(1000, 3), "job")
    except Exception as exc:
        return {"caught": str(exc).splitlines()[0]}
    return {"result": result}


def failing_until(successful_attempt: int) -> Activities:
    activities = Activities({})

    def flaky(payload: str) -> str:
        attempt = activities.count("flaky")
        if attempt < successful_attempt:
            raise RuntimeError(f"attempt {attempt} failed")
        return f"{payload} done on attempt {attempt}"

    activities.functions["flaky"] = flaky
    return activities


def test_a_retried_activity_succeeds_on_its_third_attempt_after_each_backoff_timer(
    make_engine: EngineFactory, clock: ManualClock
):
    activities = failing_until(3)
    engine = make_engine({"retried": retried}, activities)
    instance_id = engine.start_new("retried", "retry-1")
    engine.run_until_idle()
    assert activities.count("flaky") == 1

    clock.advance(timedelta(milliseconds=999))
    engine.run_until_idle()
    assert activities.count("flaky") == 1  # the first retry waits a full second

    clock.advance(timedelta(milliseconds=1))
    engine.run_until_idle()
    assert activities.count("flaky") == 2

    clock.advance(timedelta(milliseconds=1999))
    engine.run_until_idle()
    assert activities.count("flaky") == 2  # the second waits 1 s * backoff 2

    clock.advance(timedelta(milliseconds=1))
    engine.run_until_idle()

    assert outcome(engine, instance_id) == (
        "Completed", {"result": "job done on attempt 3"},
    )
    assert summarize(engine.get_history(instance_id)) == [
        "ExecutionStarted",
        "TaskScheduled#0", "TaskFailed#0", "TimerCreated#1", "TimerFired#1",
        "TaskScheduled#2", "TaskFailed#2", "TimerCreated#3", "TimerFired#3",
        "TaskScheduled#4", "TaskCompleted#4",
        "ExecutionCompleted",
    ]


def test_a_retried_activity_that_keeps_failing_raises_into_the_orchestrator_after_the_last_timer(
    make_engine: EngineFactory, clock: ManualClock
):
    activities = failing_until(99)
    engine = make_engine({"retried": retried}, activities)
    instance_id = engine.start_new("retried", "retry-2")
    engine.run_until_idle()
    for delay in (1, 2):
        clock.advance(timedelta(seconds=delay))
        engine.run_until_idle()
    assert activities.count("flaky") == 3
    assert status_of(engine, instance_id)["runtimeStatus"] == "Running"

    clock.advance(timedelta(seconds=4))
    engine.run_until_idle()

    assert outcome(engine, instance_id) == (
        "Completed", {"caught": "Activity function 'flaky' failed: attempt 3 failed "},
    )
    assert summarize(engine.get_history(instance_id))[-4:] == [
        "TaskFailed#4", "TimerCreated#5", "TimerFired#5", "ExecutionCompleted",
    ]


def test_retry_numbering_stays_in_step_with_the_sdk_when_other_tasks_run_alongside(
    make_engine: EngineFactory, clock: ManualClock
):
    def fan_out(context: Context) -> Any:
        results = yield context.task_all([
            context.call_activity_with_retry("flaky", df.RetryOptions(1000, 2), "job"),
            context.call_activity("steady", "a"),
        ])
        after = yield context.call_activity("steady", "b")
        return [*results, after]

    activities = failing_until(2)
    activities.functions["steady"] = lambda tag: tag
    engine = make_engine({"fan_out": fan_out}, activities)
    instance_id = engine.start_new("fan_out", "fan-1")
    engine.run_until_idle()
    clock.advance(timedelta(seconds=1))
    engine.run_until_idle()

    assert outcome(engine, instance_id) == (
        "Completed", ["job done on attempt 2", "a", "b"],
    )
    history = summarize(engine.get_history(instance_id))
    assert "TimerCreated#2" in history and "TaskScheduled#3" in history
    assert history[-3:] == ["TaskScheduled#4", "TaskCompleted#4", "ExecutionCompleted"]


def test_custom_status_set_by_the_orchestrator_shows_in_its_status(make_engine: EngineFactory):
    def phased(context: Context) -> Any:
        context.set_custom_status({"phase": "waiting"})
        yield context.wait_for_external_event("Go")
        context.set_custom_status({"phase": "done"})
        return None

    engine = make_engine({"phased": phased})
    instance_id = engine.start_new("phased", "phased-1")
    engine.run_until_idle()
    assert status_of(engine, instance_id)["customStatus"] == {"phase": "waiting"}

    engine.raise_event(instance_id, "Go")
    engine.run_until_idle()

    assert status_of(engine, instance_id)["customStatus"] == {"phase": "done"}


def test_an_orchestrator_that_schedules_something_else_on_replay_fails_as_non_deterministic(
    make_engine: EngineFactory, caplog: pytest.LogCaptureFixture
):
    replays = []

    def fickle(context: Context) -> Any:
        replays.append(1)
        yield context.call_activity("first" if len(replays) == 1 else "second")
        yield context.call_activity("last")
        return "unreachable"

    activities = Activities({"first": lambda _: 1, "second": lambda _: 2, "last": lambda _: 3})
    engine = make_engine({"fickle": fickle}, activities)
    instance_id = engine.start_new("fickle", "fickle-1")

    engine.run_until_idle()

    status = engine.get_status(instance_id)
    assert status is not None
    assert status["runtimeStatus"] == "Failed"
    assert status["output"].startswith(
        "Non-Deterministic workflow detected: history has CallActivity 'first' at position 0 "
        "vs the orchestrator code now scheduled CallActivity 'second'"
    )
    assert activities.count("last") == 0
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert any("Non-Deterministic workflow detected" in r.getMessage() for r in errors)


def test_an_orchestrator_that_raises_fails_the_instance_with_its_error(make_engine: EngineFactory):
    def broken(context: Context) -> Any:
        yield context.call_activity("prepare")
        raise ValueError("the request names no portfolio")

    engine = make_engine({"broken": broken}, Activities({"prepare": lambda _: None}))
    instance_id = engine.start_new("broken", "broken-1")
    engine.run_until_idle()

    assert outcome(engine, instance_id) == (
        "Failed", "Orchestrator function 'broken' failed: the request names no portfolio",
    )


def test_terminate_ends_a_running_instance_with_the_reason_and_then_refuses_more(
    make_engine: EngineFactory,
):
    engine = make_engine({"approval": wait_for_approval})
    instance_id = engine.start_new("approval", "stop-1")
    engine.run_until_idle()

    engine.terminate(instance_id, "no longer needed")
    engine.run_until_idle()

    assert outcome(engine, instance_id) == ("Terminated", "no longer needed")
    with pytest.raises(InstanceGoneError):
        engine.raise_event(instance_id, "Approval")
    with pytest.raises(InstanceGoneError):
        engine.terminate(instance_id, "again")


def test_starting_checks_the_orchestrator_name_and_the_instance_id(make_engine: EngineFactory):
    engine = make_engine({"approval": wait_for_approval, "chain": chain},
                         Activities({"double": lambda n: n * 2}))

    with pytest.raises(OrchestratorNotFoundError, match=r"'nope'.*approval, chain"):
        engine.start_new("nope")
    engine.start_new("approval", "same-id")
    with pytest.raises(InstanceExistsError, match="Pending"):
        engine.start_new("approval", "same-id")
    engine.terminate("same-id", "make room")
    engine.start_new("chain", "same-id", "1")  # a finished instance is replaced
    engine.run_until_idle()

    assert status_of(engine, "same-id")["name"] == "chain"
    assert outcome(engine, "same-id") == ("Completed", {"result": 4})


def test_events_for_unknown_instances_are_refused_and_their_status_is_none(
    make_engine: EngineFactory,
):
    engine = make_engine({})

    with pytest.raises(InstanceNotFoundError, match="'ghost'"):
        engine.raise_event("ghost", "Go")
    with pytest.raises(InstanceNotFoundError):
        engine.terminate("ghost", "why")
    assert engine.get_status("ghost") is None


def test_list_instances_filters_by_status_creation_time_and_prefix(
    make_engine: EngineFactory, clock: ManualClock
):
    engine = make_engine({"approval": wait_for_approval, "chain": chain},
                         Activities({"double": lambda n: n * 2}))
    engine.start_new("chain", "run-a", "1")
    clock.advance(HOUR)
    later = clock.now()
    engine.start_new("approval", "run-b")
    engine.start_new("approval", "other-c")
    engine.run_until_idle()

    def ids(**filters: Any) -> list[str]:
        return [s["instanceId"] for s in engine.list_instances(**filters)]

    assert ids() == ["run-a", "other-c", "run-b"]  # oldest first, then by id
    assert ids(runtime_status=["Running"]) == ["other-c", "run-b"]
    assert ids(created_from=later) == ["other-c", "run-b"]
    assert ids(created_to=later - timedelta(seconds=1)) == ["run-a"]
    assert ids(instance_id_prefix="run-", runtime_status=["Running", "Completed"]) == [
        "run-a", "run-b",
    ]


def test_a_started_engine_fires_timers_by_itself_when_the_clock_passes_them(
    make_engine: EngineFactory, clock: ManualClock
):
    engine = make_engine({"approval": wait_for_approval})
    engine.start()
    instance_id = engine.start_new("approval", "background-1")
    engine.wait_for_status(instance_id, ["Running"])

    clock.advance(HOUR)
    status = engine.wait_for_status(instance_id, ["Completed", "Failed"])

    assert status["output"] == "timed out"
