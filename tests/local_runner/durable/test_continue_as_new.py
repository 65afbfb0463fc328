"""continue_as_new: same instance id, a fresh bounded history, and the events that move on."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import azure.durable_functions as df
import pytest

from local_runner.host.clock import ManualClock
from tests.local_runner.durable.conftest import EngineFactory, outcome, status_of, summarize

pytestmark = pytest.mark.azurite
MINUTE = timedelta(minutes=1)


def ticker(context: df.DurableOrchestrationContext) -> Any:
    generation = context.get_input()
    context.set_custom_status({"generation": generation})
    if generation < 3:
        yield context.create_timer(context.current_utc_datetime + MINUTE)
        context.continue_as_new(generation + 1)
        return None
    signal = yield context.wait_for_external_event("Go")
    return {"generation": generation, "signal": signal}


def test_continue_as_new_keeps_the_id_and_starts_each_generation_with_a_fresh_history(
    make_engine: EngineFactory, clock: ManualClock
):
    engine = make_engine({"ticker": ticker})
    instance_id = engine.start_new("ticker", "ticker-1", "1")
    engine.run_until_idle()
    first_execution = engine.get_history(instance_id)[1]["OrchestrationInstance"]["ExecutionId"]

    clock.advance(MINUTE)
    engine.run_until_idle()

    history = engine.get_history(instance_id)
    assert summarize(history) == ["ExecutionStarted", "TimerCreated#0"]
    assert history[1]["Input"] == "2"
    assert history[1]["OrchestrationInstance"]["InstanceId"] == instance_id
    assert history[1]["OrchestrationInstance"]["ExecutionId"] != first_execution
    status = status_of(engine, instance_id)
    assert (status["runtimeStatus"], status["input"], status["customStatus"]) == (
        "Running", 2, {"generation": 2},
    )


def test_an_event_the_generation_never_waited_for_is_dropped_when_it_continues_as_new(
    make_engine: EngineFactory, clock: ManualClock
):
    """An event the generation buffered but no wait consumed does not reach the next generation.

    The out-of-proc shim continues as new with preserveUnprocessedEvents false
    (azure-functions-durable-extension OutOfProcOrchestrationShim.cs L170-173, the default of
    IDurableOrchestrationContext.ContinueAsNew L98), so the extension does not re-send its buffered
    events (DurableTaskExtension.cs L829-835; azure-functions-durable-python#331). "Go" is raised
    while generation 1 waits on its timer, before it reaches continue_as_new.
    """
    engine = make_engine({"ticker": ticker})
    instance_id = engine.start_new("ticker", "ticker-2", "1")
    engine.run_until_idle()
    engine.raise_event(instance_id, "Go", json.dumps("raised in generation 1"))
    engine.run_until_idle()

    for _ in range(2):
        clock.advance(MINUTE)
        engine.run_until_idle()

    status = status_of(engine, instance_id)
    assert (status["runtimeStatus"], status["customStatus"]) == ("Running", {"generation": 3})
    assert summarize(engine.get_history(instance_id)) == ["ExecutionStarted"]

    engine.raise_event(instance_id, "Go", json.dumps("raised in generation 3"))
    engine.run_until_idle()

    assert outcome(engine, instance_id) == (
        "Completed", {"generation": 3, "signal": "raised in generation 3"},
    )


def test_an_event_raised_after_the_continue_as_new_reaches_the_next_generation(
    make_engine: EngineFactory, clock: ManualClock
):
    """An event raised once a generation has continued as new goes to the new generation.

    The Durable client raises events with no execution id (azure-functions-durable-extension
    DurableClient.RaiseEventInternalAsync L836-840), so the Azure Storage provider delivers them
    to whichever execution is current (DurableTask.AzureStorage 1.17.5
    OrchestrationSessionManager.AddMessageToPendingOrchestration L422-434, L456).
    """
    engine = make_engine({"ticker": ticker})
    instance_id = engine.start_new("ticker", "ticker-3", "2")
    engine.run_until_idle()
    clock.advance(MINUTE)
    engine.run_until_idle()
    engine.raise_event(instance_id, "Go", json.dumps("raised after generation 2 ended"))
    engine.run_until_idle()

    assert outcome(engine, instance_id) == (
        "Completed", {"generation": 3, "signal": "raised after generation 2 ended"},
    )


def hopper(context: df.DurableOrchestrationContext) -> Any:
    generation = context.get_input()
    if generation < 3:
        context.continue_as_new(generation + 1)
        return None
    signal = yield context.wait_for_external_event("Go")
    return {"generation": generation, "signal": signal}


def test_events_of_an_episode_that_continues_as_new_at_its_start_move_on_to_the_next_generation(
    make_engine: EngineFactory,
):
    """A generation that continues as new before awaiting anything hands its new events on.

    The shim reaches ContinueAsNew while DTFx processes ExecutionStarted (OutOfProcOrchestrationShim
    .ProcessAsyncActionsV2 L199-219 has nothing to await before it), so each EventRaised of that
    episode is processed after it and carried over to the next execution (DurableTask.Core
    2.17.1 TaskOrchestrationContext.HandleEventRaisedEvent L414-424, TaskOrchestrationExecutor
    L63; TaskOrchestrationDispatcher L447-456, L559-565; Carryover is the Azure Storage default,
    AzureStorageOrchestrationServiceSettings.cs L219).
    """
    engine = make_engine({"hopper": hopper})
    instance_id = engine.start_new("hopper", "hopper-1", "1")
    engine.raise_event(instance_id, "Go", json.dumps("raised before generation 1 ran"))
    engine.run_until_idle()

    assert outcome(engine, instance_id) == (
        "Completed", {"generation": 3, "signal": "raised before generation 1 ran"},
    )
