"""The SDK contract the engine relies on, checked by driving azure-functions-durable directly."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import azure.durable_functions as df
import pytest

from local_runner.host.durable.actions import (
    ActionType,
    Effect,
    UnsupportedActionError,
    effects_of,
    find_nondeterminism,
    flatten_actions,
    invoke,
)
from local_runner.host.durable.history import HistoryBuilder


def flaky_with_retry(context: df.DurableOrchestrationContext) -> Any:
    result = yield context.call_activity_with_retry("flaky", df.RetryOptions(1000, 2), "x")
    return result


def test_a_retried_activity_surfaces_its_error_only_after_the_timer_that_follows_the_last_failure():
    builder = HistoryBuilder("flaky_with_retry")
    orchestrator = df.Orchestrator.create(flaky_with_retry)
    t = builder.now
    builder.task_scheduled(0, "flaky").new_episode().task_failed(0, "boom 1")
    assert invoke(orchestrator, builder.request()).error is None
    builder.timer_created(1, t).new_episode().timer_fired(1, t)
    builder.task_scheduled(2, "flaky").new_episode().task_failed(2, "boom 2")
    still_waiting = invoke(orchestrator, builder.request())
    assert (still_waiting.is_done, still_waiting.error) == (False, None)

    builder.timer_created(3, t).new_episode().timer_fired(3, t)
    failed = invoke(orchestrator, builder.request())

    assert failed.error is not None and failed.error.startswith("boom 2")


def test_a_retried_activity_that_succeeds_returns_its_result():
    builder = HistoryBuilder("flaky_with_retry")
    orchestrator = df.Orchestrator.create(flaky_with_retry)
    t = builder.now
    builder.task_scheduled(0, "flaky").new_episode().task_failed(0, "boom")
    builder.timer_created(1, t).new_episode().timer_fired(1, t)
    builder.task_scheduled(2, "flaky").new_episode().task_completed(2, json.dumps("ok"))

    reply = invoke(orchestrator, builder.request())

    assert (reply.is_done, reply.output) == (True, "ok")


def test_continue_as_new_is_a_done_reply_with_the_new_input_and_no_output():
    def again(context: df.DurableOrchestrationContext) -> Any:
        context.continue_as_new(context.get_input() + 1)
        yield from ()

    reply = invoke(df.Orchestrator.create(again), HistoryBuilder("again", input_json="1").request())

    assert reply.is_done and reply.output is None
    assert reply.continue_as_new == {"actionType": ActionType.CONTINUE_AS_NEW, "input": "2"}


def test_an_orchestrator_that_raises_becomes_a_reply_with_the_error_and_the_actions_so_far():
    def broken(context: df.DurableOrchestrationContext) -> Any:
        yield context.call_activity("first")
        raise ValueError("no second step")

    builder = HistoryBuilder("broken").task_scheduled(0, "first").new_episode()
    reply = invoke(df.Orchestrator.create(broken), builder.task_completed(0, "null").request())

    assert reply.error == "no second step"
    assert [a["functionName"] for a in reply.actions] == ["first"]


def test_a_cancelled_timer_is_re_emitted_with_is_canceled_set():
    def race(context: df.DurableOrchestrationContext) -> Any:
        timer = context.create_timer(context.current_utc_datetime + timedelta(hours=1))
        event = context.wait_for_external_event("Go")
        winner = yield context.task_any([event, timer])
        if winner == event:
            timer.cancel()
        return "done"

    builder = HistoryBuilder("race")
    builder.timer_created(0, builder.now).new_episode().event_raised("Go", "1")
    reply = invoke(df.Orchestrator.create(race), builder.request())

    timer_action = next(a for a in reply.actions if a["actionType"] == ActionType.CREATE_TIMER)
    assert reply.is_done and timer_action["isCanceled"] is True


def test_flattening_goes_depth_first_through_compound_actions():
    actions = [[
        {"actionType": 0, "functionName": "a"},
        {"actionType": 11, "compoundActions": [
            {"actionType": 6, "externalEventName": "E"},
            {"actionType": 12, "compoundActions": [{"actionType": 1, "functionName": "b"}]},
            {"actionType": 5, "fireAt": "x", "isCanceled": False},
        ]},
    ]]

    effects = [effect for effect, _ in effects_of(flatten_actions(actions))]

    assert effects == [Effect("CallActivity", "a"), Effect("CallActivityWithRetry", "b"),
                       Effect("CreateTimer")]


def test_sub_orchestrations_are_refused_with_a_message_that_names_them():
    with pytest.raises(UnsupportedActionError, match="CALL_SUB_ORCHESTRATOR"):
        effects_of([{"actionType": 2, "functionName": "child"}])


def test_a_replay_must_schedule_each_recorded_effect_under_its_number():
    """DTFx's checks and messages (DurableTask.Core 2.17.1 TaskOrchestrationContext.
    HandleTaskScheduledEvent L277-309, HandleTimerCreatedEvent L311-339)."""
    recorded = [(0, Effect("CallActivity", "a")), (2, Effect("CreateTimer"))]
    same = [Effect("CallActivity", "a"), Effect("CreateTimer")]

    assert find_nondeterminism(recorded, [*same, Effect("CallActivity", "b")]) is None
    assert find_nondeterminism(recorded, [Effect("CallActivity", "b"), Effect("CreateTimer")]) == (
        "Non-Deterministic workflow detected: A previous execution of this orchestration scheduled "
        "an activity task with sequence number 0 named 'a', but the current orchestration replay "
        "instead scheduled an activity task named 'b' with this sequence number.  Was a change "
        "made to the orchestrator code after this instance had already started running?"
    )
    assert find_nondeterminism(recorded, [Effect("CreateTimer")]) == (
        "Non-Deterministic workflow detected: A previous execution of this orchestration scheduled "
        "an activity task with sequence number 0 named 'a', but the current orchestration replay "
        "instead produced a CreateTimerOrchestratorAction action with this sequence number. Was a "
        "change made to the orchestrator code after this instance had already started running?"
    )
    assert find_nondeterminism(recorded, same[:1]) == (
        "Non-Deterministic workflow detected: A previous execution of this orchestration scheduled "
        "a timer task with sequence number 2 but the current replay execution hasn't (yet?) "
        "scheduled this task. Was a change made to the orchestrator code after this instance had "
        "already started running?"
    )
    changed_kind = find_nondeterminism(recorded, [same[0], Effect("CallActivity", "t")])
    assert changed_kind is not None
    assert "scheduled a timer task with sequence number 2 named but the current orchestration " \
        "replay instead produced a ScheduleTaskOrchestratorAction action" in changed_kind


def test_retry_or_not_and_the_case_of_the_name_are_no_difference_to_dtfx():
    """Both activity kinds are a ScheduleTaskOrchestratorAction, and names compare with
    StringComparison.OrdinalIgnoreCase (DurableTask.Core 2.17.1 TaskOrchestrationContext.
    HandleTaskScheduledEvent L290-299; the extension's CallDurableTaskFunctionAsync schedules
    both through InnerContext.ScheduleTask / ScheduleWithRetry, DurableOrchestrationContext.cs
    L575-590)."""
    recorded = [(0, Effect("CallActivity", "start_job")), (1, Effect("CallActivityWithRetry", "b"))]

    replayed = [Effect("CallActivityWithRetry", "Start_Job"), Effect("CallActivity", "B")]

    assert find_nondeterminism(recorded, replayed) is None


def test_the_sdk_replays_the_timer_fired_of_a_cancelled_timer_and_numbers_on():
    """A TimerFired for a timer the orchestrator cancelled completes it quietly inside the finished
    task_any (models/Task.py WhenAnyTask.try_set_value), and the next task takes number 1."""
    def race(context: df.DurableOrchestrationContext) -> Any:
        timer = context.create_timer(context.current_utc_datetime + timedelta(hours=1))
        event = context.wait_for_external_event("Go")
        winner = yield context.task_any([event, timer])
        if winner == event:
            timer.cancel()
        second = yield context.wait_for_external_event("Again")
        done = yield context.call_activity("after", second)
        return done

    builder = HistoryBuilder("race")
    builder.timer_created(0, builder.now + timedelta(hours=1)).new_episode().event_raised("Go", "1")
    builder.new_episode().timer_fired(0, builder.now).new_episode().event_raised("Again", "2")
    reply = invoke(df.Orchestrator.create(race), builder.request())

    assert (reply.error, reply.is_done) == (None, False)
    effects = effects_of(reply.actions)
    assert [effect for effect, _ in effects] == [
        Effect("CreateTimer"), Effect("CallActivity", "after"),
    ]
    assert effects[0][1]["isCanceled"] is True

    builder.task_scheduled(1, "after").new_episode().task_completed(1, json.dumps("ok"))
    assert invoke(df.Orchestrator.create(race), builder.request()).output == "ok"
