"""Episode transitions on an in-memory instance, where the order of inbox events is set by hand."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import azure.durable_functions as df

from local_runner.host.durable import RuntimeStatus
from local_runner.host.durable.episode import (
    fire_due_timers,
    new_instance,
    raise_event,
    record_activity_result,
    run_episode,
)
from local_runner.host.durable.history import EventType
from tests.local_runner.durable.conftest import summarize

NOW = datetime(2026, 1, 1, tzinfo=UTC)
MINUTE = timedelta(minutes=1)


def watcher(context: df.DurableOrchestrationContext) -> Any:
    generation = context.get_input()
    done = context.wait_for_external_event("Done")
    check = context.call_activity("check", generation)
    winner = yield context.task_any([done, check])
    if winner == done:
        return {"generation": generation, "done": done.result}
    context.continue_as_new(generation + 1)
    return None


def test_an_event_queued_behind_the_one_that_continues_as_new_reaches_the_next_generation():
    """Generation 1 continues as new on the check's result; "Done", queued behind it, is gen 2's.

    Events raised with no execution id go to the current execution (azure-functions-durable-
    extension DurableClient.RaiseEventInternalAsync L836-840). Generation 2 then wins its race on
    "Done" but stays Running until the check it also scheduled has answered: DTFx completes an
    orchestration only with no open task (DurableTask.Core 2.17.1 TaskOrchestrationExecutor.
    ExecuteCore L153).
    """
    orchestrator = df.Orchestrator.create(watcher)
    state = new_instance("watcher", "w-1", "1", NOW)
    first = run_episode(state, orchestrator, NOW)
    assert [call.name for call in first.dispatch] == ["check"]

    record_activity_result(state, state.execution_id, 0, NOW, result_json="null")
    raise_event(state, "Done", json.dumps("finished"), NOW)
    second = run_episode(state, orchestrator, NOW)  # continues as new, and generation 2 starts at once

    assert (state.status, state.input) == (RuntimeStatus.RUNNING, "2")
    assert [call.name for call in second.dispatch] == ["check"]
    assert summarize(state.inbox) == ["EventRaised:Done"]

    run_episode(state, orchestrator, NOW)  # "Done" wins; the check is still open
    assert state.status == RuntimeStatus.RUNNING
    record_activity_result(state, state.execution_id, 0, NOW, result_json="null")
    run_episode(state, orchestrator, NOW)
    assert (state.status, state.output) == (
        RuntimeStatus.COMPLETED, {"generation": 2, "done": "finished"},
    )


def test_an_event_that_arrives_first_wins_the_race_in_the_same_generation():
    orchestrator = df.Orchestrator.create(watcher)
    state = new_instance("watcher", "w-2", "1", NOW)
    run_episode(state, orchestrator, NOW)

    raise_event(state, "Done", json.dumps("finished"), NOW)
    record_activity_result(state, state.execution_id, 0, NOW, result_json="null")
    run_episode(state, orchestrator, NOW)

    assert (state.status, state.output) == (
        RuntimeStatus.COMPLETED, {"generation": 1, "done": "finished"},
    )
    assert summarize(state.history)[-3:] == [
        "EventRaised:Done", "TaskCompleted#0", "ExecutionCompleted",
    ]


def test_an_activity_answer_from_an_earlier_generation_is_dropped():
    orchestrator = df.Orchestrator.create(watcher)
    state = new_instance("watcher", "w-3", "1", NOW)
    run_episode(state, orchestrator, NOW)
    old_execution = state.execution_id
    record_activity_result(state, old_execution, 0, NOW, result_json="null")
    run_episode(state, orchestrator, NOW)  # continues as new

    assert not record_activity_result(state, old_execution, 0, NOW, result_json="null")
    assert state.inbox == []


def racer(context: df.DurableOrchestrationContext) -> Any:
    generation = context.get_input()
    check = context.call_activity("check", generation)
    deadline = context.create_timer(context.current_utc_datetime + MINUTE)
    winner = yield context.task_any([check, deadline])
    if generation == 1:
        context.continue_as_new(2)
        return None
    go = yield context.wait_for_external_event("Go")
    return {"winner": "check" if winner == check else "deadline", "go": go}


def test_a_generation_done_with_an_activity_still_running_continues_as_new_once_it_answers():
    """The SDK continues as new after the timer, but DTFx waits for the open check first.

    The shim has replayed every action (OutOfProcOrchestrationShim.ProcessAsyncActionsV2
    L199-219), yet DTFx only ends an execution when no task is open (DurableTask.Core 2.17.1
    TaskOrchestrationExecutor.ExecuteCore L153; ScheduleTaskInternal L119 opens the check).
    "Go", processed after ContinueAsNew, is carried over to generation 2
    (TaskOrchestrationContext.HandleEventRaisedEvent L414-424; TaskOrchestrationDispatcher
    L447-456, L559-565; Carryover, AzureStorageOrchestrationServiceSettings.cs L219).
    """
    orchestrator = df.Orchestrator.create(racer)
    state = new_instance("racer", "r-1", "1", NOW)
    run_episode(state, orchestrator, NOW)
    fire_due_timers(state, NOW + MINUTE)
    run_episode(state, orchestrator, NOW + MINUTE)

    assert (state.status, state.input) == (RuntimeStatus.RUNNING, "1")
    assert state.awaiting_open_tasks

    raise_event(state, "Go", json.dumps("raised while the check ran"), NOW + MINUTE)
    run_episode(state, orchestrator, NOW + MINUTE)
    record_activity_result(state, state.execution_id, 0, NOW + MINUTE, result_json="null")
    run_episode(state, orchestrator, NOW + MINUTE)

    assert (state.status, state.input, state.inbox) == (RuntimeStatus.RUNNING, "2", [])
    assert summarize(state.history) == ["ExecutionStarted", "EventRaised:Go", "TaskScheduled#0", "TimerCreated#1"]


def handover(context: df.DurableOrchestrationContext) -> Any:
    generation = context.get_input()
    check = context.call_activity("check", generation)
    winner = yield context.task_any([context.wait_for_external_event("Next"), check])
    if generation == 1:
        context.continue_as_new(2)
        return None
    return {"check": check.result if winner == check else None}


def test_the_old_generations_activity_result_never_reaches_the_next_generation():
    """Generation 1's check answers after it continued as new; generation 2's check #0 must wait.

    Messages for an execution id that is no longer current are discarded (DurableTask.AzureStorage
    1.17.5 OrchestrationSessionManager.AddMessageToPendingOrchestration L436-441,
    AzureStorageOrchestrationService.LockNextTaskOrchestrationWorkItemAsync L782-835,
    IsExecutableInstance L1038); external events carry no execution id and go to the current
    execution (azure-functions-durable-extension DurableClient.RaiseEventInternalAsync L836-840).
    """
    orchestrator = df.Orchestrator.create(handover)
    state = new_instance("handover", "h-1", "1", NOW)
    run_episode(state, orchestrator, NOW)
    raise_event(state, "Next", "null", NOW)
    raise_event(state, "Noise", "null", NOW)
    record_activity_result(state, state.execution_id, 0, NOW, result_json=json.dumps("gen 1"))

    run_episode(state, orchestrator, NOW)  # "Next" wins; the check is still open
    assert state.status == RuntimeStatus.RUNNING
    assert state.awaiting_open_tasks
    first_execution = state.execution_id
    second = run_episode(state, orchestrator, NOW)  # "Noise", then the check's answer: generation 2 starts

    assert (state.status, state.input, state.inbox) == (RuntimeStatus.RUNNING, "2", [])
    assert state.execution_id != first_execution
    assert [(call.seq, call.input) for call in second.dispatch] == [(0, "2")]
    assert summarize(state.history) == ["ExecutionStarted", "EventRaised:Noise", "TaskScheduled#0"]
    # Generation 2 began in the episode that continued as new, as DTFx replays the next execution in that work
    # item on OrchestratorStarted, ExecutionStarted, the carried-over events and an OrchestratorCompleted, then
    # adds the replay's actions and another OrchestratorCompleted, and commits the lot at once (DurableTask.Core
    # 2.17.1 TaskOrchestrationDispatcher.OnProcessWorkItemAsync L359-575, `do ... while (continuedAsNew)`).
    assert [EventType(event["EventType"]).name for event in state.history] == [
        "ORCHESTRATOR_STARTED", "EXECUTION_STARTED", "EVENT_RAISED", "ORCHESTRATOR_COMPLETED",
        "TASK_SCHEDULED", "ORCHESTRATOR_COMPLETED",
    ]


def closer(context: df.DurableOrchestrationContext) -> Any:
    generation = context.get_input()
    deadline = context.create_timer(context.current_utc_datetime + MINUTE)
    winner = yield context.task_any([context.wait_for_external_event("Next"), deadline])
    if winner != deadline:
        deadline.cancel()
    if generation == 1:
        context.continue_as_new(2)
        return None
    return "deadline" if winner == deadline else "next"


def test_a_cancelled_timer_of_the_old_generation_never_fires_in_the_next_one():
    """Generation 1's cancelled deadline #0 fires as it continues as new; generation 2's #0 waits.

    A cancelled timer still fires (its message is queued; TaskOrchestrationContext.CreateTimer
    L246-275 only closes the task), but as a message of the old execution it is discarded
    (OrchestrationSessionManager.AddMessageToPendingOrchestration L436-441,
    AzureStorageOrchestrationService.LockNextTaskOrchestrationWorkItemAsync L782-835).
    """
    orchestrator = df.Orchestrator.create(closer)
    state = new_instance("closer", "c-1", "1", NOW)
    run_episode(state, orchestrator, NOW)
    raise_event(state, "Next", "null", NOW)
    raise_event(state, "Noise", "null", NOW)
    fire_due_timers(state, NOW + MINUTE)

    run_episode(state, orchestrator, NOW + MINUTE)  # "Next" wins: continued as new, generation 2 started

    assert (state.status, state.input, summarize(state.inbox)) == (RuntimeStatus.RUNNING, "2", ["EventRaised:Noise"])
    run_episode(state, orchestrator, NOW + MINUTE)  # "Noise", raised behind "Next", reaches generation 2
    assert summarize(state.history) == ["ExecutionStarted", "TimerCreated#0", "EventRaised:Noise"]
    assert state.timers.keys() == {0}  # generation 2's deadline, not generation 1's fired one


def test_an_orchestrator_that_raises_with_an_activity_still_open_fails_once_it_answers():
    """A failure waits for the open tasks as a completion does.

    The shim replays the actions before it throws the SDK's error (OutOfProcOrchestrationShim.
    ScheduleDurableTaskEvents L83-91), and DTFx fails the faulted orchestration only under
    `!HasOpenTasks` (DurableTask.Core 2.17.1 TaskOrchestrationExecutor.ExecuteCore L153-168).
    """
    def impatient(context: df.DurableOrchestrationContext) -> Any:
        slow = context.call_activity("slow")
        deadline = context.create_timer(context.current_utc_datetime + MINUTE)
        yield context.task_any([slow, deadline])
        raise RuntimeError("gave up waiting")

    orchestrator = df.Orchestrator.create(impatient)
    state = new_instance("impatient", "i-1", None, NOW)
    run_episode(state, orchestrator, NOW)
    fire_due_timers(state, NOW + MINUTE)
    result = run_episode(state, orchestrator, NOW + MINUTE)

    assert (state.status, result.error) == (RuntimeStatus.RUNNING, None)

    record_activity_result(state, state.execution_id, 0, NOW + MINUTE, result_json="null")
    result = run_episode(state, orchestrator, NOW + MINUTE)

    assert (state.status, state.output) == (
        RuntimeStatus.FAILED, "Orchestrator function 'impatient' failed: gave up waiting",
    )


def test_a_timer_more_than_six_days_ahead_fails_the_instance_instead_of_splitting_unseen():
    """The extension would split such a timer into 3-day timers with sequence numbers of its own
    (azure-functions-durable-extension DurableOrchestrationContext.CreateTimer L339-410; with
    schema V3 OutOfProcOrchestrationShim L118-135 does not refuse it); SDK 1.7 never asks for one
    (LongTimerTask), so the host refuses rather than diverge."""
    fire_at = (NOW + timedelta(days=7)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")

    def hand_made(_: str) -> str:
        timer = {"actionType": 5, "fireAt": fire_at, "isCanceled": False}
        return json.dumps({"isDone": False, "schemaVersion": 2, "actions": [[timer]]})

    state = new_instance("hand_made", "t-1", None, NOW)
    result = run_episode(state, hand_made, NOW)

    assert state.status == RuntimeStatus.FAILED
    assert result.error is not None and result.error.startswith("Timer #0 fires at 2026-01-08")


def test_an_orchestrator_that_always_continues_as_new_is_written_every_hundred_generations():
    """DTFx would start generation after generation in one work item for ever; the engine stops after
    MAX_GENERATIONS_PER_EPISODE, so the instance is written and other instances get their turn."""
    def forever(context: df.DurableOrchestrationContext) -> Any:
        context.continue_as_new(context.get_input() + 1)
        return None
        yield  # an orchestrator is a generator

    orchestrator = df.Orchestrator.create(forever)
    state = new_instance("forever", "f-1", "1", NOW)
    run_episode(state, orchestrator, NOW)

    assert (state.status, state.input, state.history) == (RuntimeStatus.CONTINUED_AS_NEW, "101", [])
    run_episode(state, orchestrator, NOW)
    assert (state.status, state.input) == (RuntimeStatus.CONTINUED_AS_NEW, "201")
