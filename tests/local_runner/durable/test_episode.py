"""Episode transitions on an in-memory instance, where the order of inbox events is set by hand."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import azure.durable_functions as df

from local_runner.host.durable import RuntimeStatus
from local_runner.host.durable.episode import (
    new_instance,
    raise_event,
    record_activity_result,
    run_episode,
)
from tests.local_runner.durable.conftest import summarize

NOW = datetime(2026, 1, 1, tzinfo=UTC)


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
    orchestrator = df.Orchestrator.create(watcher)
    state = new_instance("watcher", "w-1", "1", NOW)
    first = run_episode(state, orchestrator, NOW)
    assert [call.name for call in first.dispatch] == ["check"]

    record_activity_result(state, state.execution_id, 0, NOW, result_json="null")
    raise_event(state, "Done", json.dumps("finished"), NOW)
    run_episode(state, orchestrator, NOW)

    assert (state.status, state.input) == (RuntimeStatus.CONTINUED_AS_NEW, "2")
    assert summarize(state.inbox) == ["EventRaised:Done"]

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


def test_an_activity_answer_from_an_earlier_generation_is_dropped():
    orchestrator = df.Orchestrator.create(watcher)
    state = new_instance("watcher", "w-3", "1", NOW)
    run_episode(state, orchestrator, NOW)
    old_execution = state.execution_id
    record_activity_result(state, old_execution, 0, NOW, result_json="null")
    run_episode(state, orchestrator, NOW)  # continues as new

    assert not record_activity_result(state, old_execution, 0, NOW, result_json="null")
    assert state.inbox == []
