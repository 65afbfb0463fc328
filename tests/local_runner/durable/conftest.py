"""Fixtures for the durable engine: a store in the session's Azurite, a manual clock, engines."""

from __future__ import annotations

import json
import threading
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import azure.durable_functions as df
import pytest

from local_runner.host.clock import ManualClock
from local_runner.host.durable import InstanceStore, OrchestrationEngine
from local_runner.host.durable.history import EventType, HistoryEvent

EngineFactory = Callable[..., OrchestrationEngine]


class Activities:
    """Activities as plain Python callables (input value -> result value), with a call log."""

    def __init__(self, functions: Mapping[str, Callable[[Any], Any]]) -> None:
        self.functions = dict(functions)
        self.calls: dict[str, list[Any]] = defaultdict(list)
        self._lock = threading.Lock()

    def __call__(self, name: str, input_json: str | None) -> str:
        value = None if input_json is None else json.loads(input_json)
        with self._lock:
            self.calls[name].append(value)
        return json.dumps(self.functions[name](value))

    def count(self, name: str) -> int:
        with self._lock:
            return len(self.calls[name])


@pytest.fixture
def task_hub(unique_name: str) -> str:
    return "hub" + unique_name


@pytest.fixture
def store(azurite: str, task_hub: str) -> InstanceStore:
    return InstanceStore.from_connection_string(azurite, task_hub)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def make_engine(
    store: InstanceStore, clock: ManualClock, task_hub: str
) -> Iterator[EngineFactory]:
    """Build engines over the test's store and clock; every one is stopped at teardown."""
    engines: list[OrchestrationEngine] = []

    def make(
        orchestrators: Mapping[str, Callable[[df.DurableOrchestrationContext], Any]],
        activities: Activities | None = None,
        **options: Any,
    ) -> OrchestrationEngine:
        engine = OrchestrationEngine(
            store,
            orchestrators={name: df.Orchestrator.create(fn) for name, fn in orchestrators.items()},
            run_activity=activities or Activities({}),
            clock=clock,
            task_hub=task_hub,
            **options,
        )
        engines.append(engine)
        return engine

    yield make
    for engine in engines:
        engine.stop()


def summarize(history: list[HistoryEvent]) -> list[str]:
    """The history without episode markers, as `TaskScheduled#0`, `TimerFired#1`, ..."""
    names = []
    for event in history:
        kind = EventType(event["EventType"])
        if kind in (EventType.ORCHESTRATOR_STARTED, EventType.ORCHESTRATOR_COMPLETED):
            continue
        label = "".join(part.title() for part in kind.name.split("_"))
        seq = {
            EventType.TASK_SCHEDULED: event.get("EventId"),
            EventType.TIMER_CREATED: event.get("EventId"),
            EventType.TASK_COMPLETED: event.get("TaskScheduledId"),
            EventType.TASK_FAILED: event.get("TaskScheduledId"),
            EventType.TIMER_FIRED: event.get("TimerId"),
        }.get(kind)
        if kind is EventType.EVENT_RAISED:
            label += f":{event['Name']}"
        names.append(label if seq is None else f"{label}#{seq}")
    return names


def status_of(engine: OrchestrationEngine, instance_id: str) -> dict[str, Any]:
    status = engine.get_status(instance_id)
    assert status is not None, f"no instance {instance_id!r}"
    return status


def outcome(engine: OrchestrationEngine, instance_id: str) -> tuple[str, Any]:
    """(runtimeStatus, output) of the instance."""
    status = status_of(engine, instance_id)
    return status["runtimeStatus"], status["output"]
