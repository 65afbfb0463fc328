"""continue_as_new: same instance id, a fresh bounded history, unconsumed events carried over."""

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


def test_an_event_no_generation_has_waited_for_yet_carries_over_to_the_next(
    make_engine: EngineFactory, clock: ManualClock
):
    engine = make_engine({"ticker": ticker})
    instance_id = engine.start_new("ticker", "ticker-2", "1")
    engine.run_until_idle()
    engine.raise_event(instance_id, "Go", json.dumps("raised in generation 1"))
    engine.run_until_idle()

    for _ in range(2):
        clock.advance(MINUTE)
        engine.run_until_idle()

    assert outcome(engine, instance_id) == (
        "Completed", {"generation": 3, "signal": "raised in generation 1"},
    )
    assert summarize(engine.get_history(instance_id)) == [
        "ExecutionStarted", "EventRaised:Go", "ExecutionCompleted",
    ]
