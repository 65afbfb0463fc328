"""The engine's memory holds the unfinished instances only: a finished one is answered from the store."""

from __future__ import annotations

import gc
import json
from typing import Any, TypeAlias

import azure.durable_functions as df
import pytest

from local_runner.host.durable import InstanceGoneError
from tests.local_runner.durable.conftest import Activities, EngineFactory, outcome

pytestmark = pytest.mark.azurite
Context: TypeAlias = df.DurableOrchestrationContext


def chain(context: Context) -> Any:
    doubled = yield context.call_activity("double", context.get_input())
    return {"result": doubled}


def waits(context: Context) -> Any:
    yield context.wait_for_external_event("Go")
    return "went"


def test_finished_instances_leave_the_engines_memory_and_still_answer_from_the_store(
    make_engine: EngineFactory,
) -> None:
    engine = make_engine({"chain": chain, "waits": waits}, Activities({"double": lambda n: n * 2}))
    finished = [engine.start_new("chain", f"done-{number}", json.dumps(number)) for number in range(5)]
    waiting = engine.start_new("waits", "still-waiting")

    engine.run_until_idle()
    gc.collect()

    # Looked at from the inside: what the engine keeps per instance (state and lock) for the waiting one only.
    assert set(engine._states) == {waiting}
    assert set(engine._locks) <= {waiting}
    assert [outcome(engine, instance_id) for instance_id in finished] == [
        ("Completed", {"result": 2 * number}) for number in range(5)
    ]
    assert [status["instanceId"] for status in engine.list_instances(runtime_status=["Completed"])] == finished
    assert set(engine._states) == {waiting}  # reading them did not bring them back


def test_a_finished_instance_out_of_memory_still_refuses_events_and_can_be_started_anew(
    make_engine: EngineFactory,
) -> None:
    engine = make_engine({"chain": chain}, Activities({"double": lambda n: n * 2}))
    engine.start_new("chain", "again", json.dumps(1))
    engine.run_until_idle()

    with pytest.raises(InstanceGoneError):
        engine.raise_event("again", "Go")
    engine.start_new("chain", "again", json.dumps(2))
    engine.run_until_idle()

    assert outcome(engine, "again") == ("Completed", {"result": 4})
