"""The engine runs orchestrations through the real SDK: activities, timers, events, status."""

from __future__ import annotations

import json
import threading
from datetime import timedelta
from typing import Any, TypeAlias

import azure.durable_functions as df
import pytest

from local_runner.host.clock import ManualClock
from local_runner.host.durable import (
    InstanceExistsError,
    InstanceGoneError,
    InstanceNotFoundError,
    InstanceStore,
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
    """DTFx's own check and message (DurableTask.Core 2.17.1 TaskOrchestrationContext.
    HandleTaskScheduledEvent L299-306), failing at once (TaskOrchestrationExecutor L180-183)."""
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
    assert status["output"] == (
        "Non-Deterministic workflow detected: A previous execution of this orchestration "
        "scheduled an activity task with sequence number 0 named 'first', but the current "
        "orchestration replay instead scheduled an activity task named 'second' with this "
        "sequence number.  Was a change made to the orchestrator code after this instance had "
        "already started running?"
    )
    assert activities.count("last") == 0
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert any("Non-Deterministic workflow detected" in r.getMessage() for r in errors)


def test_switching_to_call_activity_with_retry_or_renaming_by_case_is_no_nondeterminism(
    make_engine: EngineFactory,
):
    """DTFx compares the DTFx action type and the name without case, nothing else.

    Both activity kinds are scheduled as ScheduleTaskOrchestratorAction (azure-functions-durable-
    extension DurableOrchestrationContext.CallDurableTaskFunctionAsync L575-590), and
    HandleTaskScheduledEvent (DurableTask.Core 2.17.1 TaskOrchestrationContext L277-309) checks
    `is ScheduleTaskOrchestratorAction` and the name with StringComparison.OrdinalIgnoreCase.
    """
    replays = []

    def revised(context: Context) -> Any:
        replays.append(1)
        if len(replays) == 1:
            first = yield context.call_activity("prepare")
        else:
            first = yield context.call_activity_with_retry("Prepare", df.RetryOptions(1000, 2))
        return first

    engine = make_engine({"revised": revised}, Activities({"prepare": lambda _: "ready"}))
    instance_id = engine.start_new("revised", "revised-1")
    engine.run_until_idle()

    assert outcome(engine, instance_id) == ("Completed", "ready")


def test_retries_follow_the_code_that_replays_them(
    make_engine: EngineFactory, clock: ManualClock
):
    """Retry options come from each replay's action, and an attempt in flight follows a switch.

    The shim builds the retry from the action it replays every time (OutOfProcOrchestrationShim.
    InvokeAPIFromAction L136-138), and DTFx does not compare retry options or the two activity
    kinds (DurableTask.Core 2.17.1 TaskOrchestrationContext.HandleTaskScheduledEvent L277-309).
    The first replay calls without retry, the second with 2 attempts, the later ones with 3.
    """
    replays = []

    def deployed(context: Context) -> Any:
        replays.append(1)
        if len(replays) == 1:
            result = yield context.call_activity("flaky", "job")
        else:
            attempts = 2 if len(replays) == 2 else 3
            result = yield context.call_activity_with_retry(
                "flaky", df.RetryOptions(1000, attempts), "job"
            )
        return result

    activities = failing_until(3)
    engine = make_engine({"deployed": deployed}, activities)
    instance_id = engine.start_new("deployed", "deployed-1")
    engine.run_until_idle()
    for _ in range(2):
        clock.advance(timedelta(seconds=1))
        engine.run_until_idle()

    assert outcome(engine, instance_id) == ("Completed", "job done on attempt 3")


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


def test_starting_an_instance_under_a_new_id_reads_nothing_from_the_store(
    make_engine: EngineFactory, store: InstanceStore, monkeypatch: pytest.MonkeyPatch
):
    engine = make_engine({"chain": chain}, Activities({"double": lambda n: n * 2}))
    engine.run_until_idle()  # it has taken up what the store holds
    reads: list[str] = []
    get = store.get

    def recording_get(instance_id: str) -> Any:
        reads.append(instance_id)
        return get(instance_id)

    monkeypatch.setattr(store, "get", recording_get)

    engine.start_new("chain", "fresh-1", "1")
    engine.run_until_idle()

    assert reads == []
    assert outcome(engine, "fresh-1") == ("Completed", {"result": 4})


def test_an_instance_another_engine_holds_is_refused_and_one_it_finished_is_replaced(
    make_engine: EngineFactory,
):
    first = make_engine({"approval": wait_for_approval, "chain": chain}, Activities({"double": lambda n: n * 2}))
    second = make_engine({"approval": wait_for_approval, "chain": chain}, Activities({"double": lambda n: n * 2}))
    first.start_new("approval", "shared-1")
    first.start_new("chain", "shared-2", "1")
    first.run_until_idle()

    with pytest.raises(InstanceExistsError, match="Running"):
        second.start_new("chain", "shared-1", "1")
    second.start_new("approval", "shared-2")

    assert status_of(second, "shared-2")["name"] == "approval"
    assert status_of(first, "shared-1")["name"] == "approval"


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


def forgetful(context: Context) -> Any:
    deadline = context.create_timer(context.current_utc_datetime + HOUR)
    approval = context.wait_for_external_event("Approval")
    yield context.task_any([approval, deadline])
    return {"approved": approval.result}


def test_an_orchestrator_done_with_a_timer_neither_fired_nor_cancelled_completes_when_it_fires(
    make_engine: EngineFactory, clock: ManualClock
):
    """The SDK reports done, but the instance stays Running until its forgotten deadline fires.

    DTFx completes an orchestration only when no task is open (DurableTask.Core 2.17.1
    TaskOrchestrationExecutor.ExecuteCore L153), and a timer stays open until it fires or the
    shim cancels it (TaskOrchestrationContext.CreateTimer L246-275; OutOfProcOrchestrationShim.
    InvokeAPIFromAction L118-135 cancels only when the action says isCanceled). Reported as
    durabletask-dotnet#713 and azure-functions-durable-python#348.
    """
    engine = make_engine({"forgetful": forgetful})
    instance_id = engine.start_new("forgetful", "forgetful-1")
    engine.run_until_idle()
    engine.raise_event(instance_id, "Approval", json.dumps("yes"))
    engine.run_until_idle()

    assert status_of(engine, instance_id)["runtimeStatus"] == "Running"

    clock.advance(HOUR)
    engine.run_until_idle()

    assert outcome(engine, instance_id) == ("Completed", {"approved": "yes"})
    assert summarize(engine.get_history(instance_id)) == [
        "ExecutionStarted", "TimerCreated#0", "EventRaised:Approval", "TimerFired#0",
        "ExecutionCompleted",
    ]


def two_approvals(context: Context) -> Any:
    deadline = context.create_timer(context.current_utc_datetime + HOUR)
    first = context.wait_for_external_event("First")
    winner = yield context.task_any([first, deadline])
    if winner != first:
        return "timed out"
    deadline.cancel()
    second = yield context.wait_for_external_event("Second")
    recorded = yield context.call_activity("record", [first.result, second])
    return recorded


def test_a_cancelled_timer_still_fires_and_the_sdk_replays_past_it(
    make_engine: EngineFactory, clock: ManualClock
):
    """Cancelling only marks the SDK's action isCanceled; the timer message is already queued.

    The shim cancels the DTFx task, which leaves openTasks (OutOfProcOrchestrationShim L129-132,
    DurableTask.Core 2.17.1 TaskOrchestrationContext.CreateTimer L260-269), but the TimerFired
    still arrives and is replayed (HandleTimerFiredEvent L525-538 logs it as a duplicate). The
    SDK completes the cancelled TimerTask inside the finished task_any without effect
    (models/Task.py WhenAnyTask.try_set_value), and the next task still takes number 1.
    """
    engine = make_engine({"two_approvals": two_approvals}, Activities({"record": lambda v: v}))
    instance_id = engine.start_new("two_approvals", "two-1")
    engine.run_until_idle()
    engine.raise_event(instance_id, "First", json.dumps("ana"))
    engine.run_until_idle()
    clock.advance(HOUR)
    engine.run_until_idle()

    assert status_of(engine, instance_id)["runtimeStatus"] == "Running"
    engine.raise_event(instance_id, "Second", json.dumps("bo"))
    engine.run_until_idle()

    assert outcome(engine, instance_id) == ("Completed", ["ana", "bo"])
    assert summarize(engine.get_history(instance_id)) == [
        "ExecutionStarted", "TimerCreated#0", "EventRaised:First", "TimerFired#0",
        "EventRaised:Second", "TaskScheduled#1", "TaskCompleted#1", "ExecutionCompleted",
    ]


def test_a_timer_cancelled_in_the_episode_that_creates_it_is_still_scheduled_and_fires(
    make_engine: EngineFactory, clock: ManualClock
):
    """A timer whose first action already says isCanceled is still created, then fires.

    The shim creates the DTFx timer before it cancels it (OutOfProcOrchestrationShim.
    InvokeAPIFromAction L118-135), so the CreateTimer action stays in orchestratorActionsMap and
    becomes TimerCreated plus a queued timer message (DurableTask.Core 2.17.1
    TaskOrchestrationContext.CreateTimer L248-269).
    """
    def late_race(context: Context) -> Any:
        early = context.wait_for_external_event("Early")
        yield context.call_activity("prepare")
        deadline = context.create_timer(context.current_utc_datetime + HOUR)
        winner = yield context.task_any([early, deadline])
        if winner == early:
            deadline.cancel()
        second = yield context.wait_for_external_event("Second")
        return [early.result, second]

    engine = make_engine({"late_race": late_race}, Activities({"prepare": lambda _: None}))
    instance_id = engine.start_new("late_race", "late-1")
    engine.raise_event(instance_id, "Early", json.dumps("e"))
    engine.run_until_idle()
    clock.advance(HOUR)
    engine.run_until_idle()
    engine.raise_event(instance_id, "Second", json.dumps("s"))
    engine.run_until_idle()

    assert outcome(engine, instance_id) == ("Completed", ["e", "s"])
    assert summarize(engine.get_history(instance_id))[-4:] == [
        "TimerCreated#1", "TimerFired#1", "EventRaised:Second", "ExecutionCompleted",
    ]


def loud(size: int) -> Any:
    def orchestrator(context: Context) -> Any:
        context.set_custom_status("é" * (size - 2))  # JSON: the string and its two quotes
        yield context.call_activity("prepare")
        return "done"

    return orchestrator


@pytest.mark.parametrize(("units", "fails"), [(8703, False), (8704, True)])
def test_a_custom_status_over_16_kb_of_utf16_fails_the_orchestration(
    make_engine: EngineFactory, units: int, fails: bool
):
    """The extension refuses a custom status whose compact JSON is over 16 KB in UTF-16.

    azure-functions-durable-extension DurableOrchestrationContext.SetCustomStatus (L221-230) ->
    MessagePayloadDataConverter.Serialize(value, 16) (L41-75): `(int)(Encoding.Unicode.
    GetByteCount(json) / 1024.0) > 16`, so 8,704 UTF-16 code units (17 KB) fail and 8,703 pass;
    "é" is one code unit, left unescaped by Newtonsoft. The shim sets it before replaying
    (OutOfProcOrchestrationShim.ScheduleDurableTaskEvents L78-83) and the extension reports
    "Orchestrator function '<name>' failed: <message>" (TaskOrchestrationShim L194-206).
    """
    engine = make_engine({"loud": loud(units)}, Activities({"prepare": lambda _: None}))
    instance_id = engine.start_new("loud", f"loud-{units}")
    engine.run_until_idle()

    if fails:
        assert outcome(engine, instance_id) == (
            "Failed",
            "Orchestrator function 'loud' failed: The UTF-16 size of the JSON-serialized payload "
            "must not exceed 16 KB. The current payload size is 17 KB.",
        )
        history = summarize(engine.get_history(instance_id))
        assert history == ["ExecutionStarted", "ExecutionCompleted"]
    else:
        assert outcome(engine, instance_id) == ("Completed", "done")


def test_a_custom_status_that_grows_too_big_later_fails_as_non_deterministic(
    make_engine: EngineFactory,
):
    """Refused after tasks were scheduled, the replay schedules nothing: DTFx reports that.

    SetCustomStatus throws before the shim replays any action (OutOfProcOrchestrationShim.
    ScheduleDurableTaskEvents L78-83), and DTFx, reading on through the history, finds TaskScheduled
    #0 with no action under that number (DurableTask.Core 2.17.1 TaskOrchestrationContext.
    HandleTaskScheduledEvent L280-287) and fails the instance with that (TaskOrchestrationExecutor
    L180-183).
    """
    def growing(context: Context) -> Any:
        yield context.call_activity("prepare")
        context.set_custom_status("x" * 9000)
        yield context.call_activity("prepare")
        return "unreachable"

    engine = make_engine({"growing": growing}, Activities({"prepare": lambda _: None}))
    instance_id = engine.start_new("growing", "growing-1")
    engine.run_until_idle()

    assert outcome(engine, instance_id) == (
        "Failed",
        "Non-Deterministic workflow detected: A previous execution of this orchestration scheduled "
        "an activity task with sequence ID 0 and name 'prepare' (version ''), but the current "
        "replay execution hasn't (yet?) scheduled this task. Was a change made to the orchestrator "
        "code after this instance had already started running?",
    )


@pytest.mark.parametrize(
    ("first_ms", "max_ms", "refused"),
    [
        (1000, 6 * 24 * 3600 * 1000 + 1, "MaxRetryInterval"),
        (6 * 24 * 3600 * 1000 + 1, None, "FirstRetryInterval"),
        (6 * 24 * 3600 * 1000, 6 * 24 * 3600 * 1000, None),
    ],
)
def test_retry_intervals_over_six_days_fail_the_orchestration_as_the_extension_refuses_them(
    make_engine: EngineFactory, first_ms: int, max_ms: int | None, refused: str | None
):
    """Retry intervals longer than the Azure Storage provider's 6-day MaximumDelayTime are refused.

    azure-functions-durable-extension DurableOrchestrationContext.CallDurableTaskFunctionAsync
    (L548-558) checks MaxRetryInterval (6 days when not sent, RetryOptions.cs L18, L31), then
    FirstRetryInterval, with AzureStorageDurabilityProvider.ValidateDelayTime (L178-187,
    `timespan > MaximumDelayTime`), throwing ArgumentException(message, name); .NET appends
    " (Parameter '<name>')". Exactly 6 days passes.
    """
    class Options(df.RetryOptions):
        def to_json(self) -> dict[str, Any]:
            wire = dict(super().to_json())
            if max_ms is not None:
                wire["maxRetryIntervalInMilliseconds"] = max_ms
            return wire

    def patient(context: Context) -> Any:
        return (yield context.call_activity_with_retry("prepare", Options(first_ms, 2), None))

    engine = make_engine({"patient": patient}, Activities({"prepare": lambda _: "ok"}))
    instance_id = engine.start_new("patient", f"patient-{refused}")
    engine.run_until_idle()

    if refused is None:
        assert outcome(engine, instance_id) == ("Completed", "ok")
    else:
        assert outcome(engine, instance_id) == (
            "Failed",
            "Orchestrator function 'patient' failed: The Azure Storage provider supports a maximum "
            f"of 6 days for time-based delays (Parameter '{refused}')",
        )
        history = summarize(engine.get_history(instance_id))
        assert history == ["ExecutionStarted", "ExecutionCompleted"]


def test_a_timer_ten_days_out_runs_as_the_sdks_chunks_within_six_days(
    make_engine: EngineFactory, clock: ManualClock
):
    """SDK 1.7 splits a timer beyond maximumShortTimerDuration (6 days) into chunks it creates.

    models/DurableOrchestrationContext.py create_timer -> LongTimerTask (models/Task.py): a first
    3-day chunk (longRunningTimerIntervalDuration), then each next chunk as a new top-level action
    once the previous fires (add_new_child), so every CreateTimer the extension replays is at most
    6 days after its current time and its own splitting (DurableOrchestrationContext.CreateTimer
    L339-410) never starts.
    """
    def sleeper(context: Context) -> Any:
        yield context.create_timer(context.current_utc_datetime + timedelta(days=10))
        return "woke"

    engine = make_engine({"sleeper": sleeper})
    instance_id = engine.start_new("sleeper", "sleeper-1")
    engine.run_until_idle()
    for _ in range(3):
        clock.advance(timedelta(days=3))
        engine.run_until_idle()
    assert status_of(engine, instance_id)["runtimeStatus"] == "Running"

    clock.advance(timedelta(days=1))
    engine.run_until_idle()

    assert outcome(engine, instance_id) == ("Completed", "woke")
    history = summarize(engine.get_history(instance_id))
    assert [e for e in history if e.startswith("TimerCreated")] == [
        "TimerCreated#0", "TimerCreated#1", "TimerCreated#2",  # days 3, 6 and 10
    ]


def test_a_cancelled_long_timer_keeps_the_instance_running_until_its_current_chunk_fires(
    make_engine: EngineFactory, clock: ManualClock
):
    """LongTimerTask.cancel marks only its own action, not the 3-day chunk the host replays.

    azure-functions-durable-python#573 (SDK 1.7 models/Task.py LongTimerTask.cancel sets
    `self.action.is_cancelled`, never the emitted child TimerTask's action), so the chunk stays an
    open DTFx task and the finished orchestrator completes when it fires (DurableTask.Core 2.17.1
    TaskOrchestrationExecutor.ExecuteCore L153).
    """
    def long_wait(context: Context) -> Any:
        deadline = context.create_timer(context.current_utc_datetime + timedelta(days=10))
        approval = context.wait_for_external_event("Approval")
        winner = yield context.task_any([approval, deadline])
        if winner == approval:
            deadline.cancel()
        return "approved"

    engine = make_engine({"long_wait": long_wait})
    instance_id = engine.start_new("long_wait", "long-1")
    engine.run_until_idle()
    engine.raise_event(instance_id, "Approval")
    engine.run_until_idle()
    assert status_of(engine, instance_id)["runtimeStatus"] == "Running"

    clock.advance(timedelta(days=3))
    engine.run_until_idle()

    assert outcome(engine, instance_id) == ("Completed", "approved")


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_episodes_of_different_instances_run_at_once_up_to_the_orchestrator_workers(
    make_engine: EngineFactory, workers: int
):
    """As DTFx runs up to maxConcurrentOrchestratorFunctions work items at once: each episode here waits
    for as many others as there are workers, so every one completes only if that many run together."""
    together = threading.Barrier(workers, timeout=10)
    lock = threading.Lock()
    running, peak = 0, 0

    def meet(context: Context) -> Any:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        try:
            together.wait()
        finally:
            with lock:
                running -= 1
        return "met"
        yield  # an orchestrator is a generator

    engine = make_engine({"meet": meet}, orchestrator_workers=workers)
    instances = [engine.start_new("meet", f"meet-{number}") for number in range(2 * workers)]
    engine.run_until_idle()

    assert [outcome(engine, instance_id) for instance_id in instances] == [("Completed", "met")] * (2 * workers)
    assert peak == workers
