"""Orchestration history in the Durable extension's wire form, and the request that carries it.

The SDK replays an orchestrator from a list of DTFx history events (PascalCase keys, as Newtonsoft
writes them; reference/durable-functions.md section A1). The engine builds every event with the
functions below, and tests use `HistoryBuilder` to drive the SDK directly with the same events,
as the SDK's own tests/test_utils/ContextBuilder.py does.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from enum import IntEnum
from typing import Any, Self

# azure.durable_functions.constants.DATETIME_STRING_FORMAT
TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"
# What the extension sends for the Azure Storage provider: timers beyond 6 days are split into
# 3-day chunks by the SDK (keep timers shorter: issue #573, LongTimerTask cannot be cancelled).
LONG_TIMER_INTERVAL = "3.00:00:00"
MAXIMUM_SHORT_TIMER_DURATION = "6.00:00:00"

HistoryEvent = dict[str, Any]


class EventType(IntEnum):
    """DTFx `EventType` codes (azure/durable_functions/models/history/HistoryEventType.py)."""

    EXECUTION_STARTED = 0
    EXECUTION_COMPLETED = 1
    EXECUTION_TERMINATED = 3
    TASK_SCHEDULED = 4
    TASK_COMPLETED = 5
    TASK_FAILED = 6
    TIMER_CREATED = 10
    TIMER_FIRED = 11
    ORCHESTRATOR_STARTED = 12
    ORCHESTRATOR_COMPLETED = 13
    EVENT_RAISED = 15
    CONTINUE_AS_NEW = 16


def format_timestamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime(TIMESTAMP_FORMAT)


def parse_timestamp(text: str) -> datetime:
    return datetime.strptime(text, TIMESTAMP_FORMAT).replace(tzinfo=UTC)


def _event(event_type: EventType, at: datetime, event_id: int = -1, **fields: Any) -> HistoryEvent:
    return {
        "EventType": int(event_type),
        "EventId": event_id,
        "IsPlayed": False,
        "Timestamp": format_timestamp(at),
        **fields,
    }


def orchestrator_started(at: datetime) -> HistoryEvent:
    return _event(EventType.ORCHESTRATOR_STARTED, at)


def orchestrator_completed(at: datetime) -> HistoryEvent:
    return _event(EventType.ORCHESTRATOR_COMPLETED, at)


def execution_started(
    at: datetime, *, name: str, input_json: str | None, instance_id: str, execution_id: str
) -> HistoryEvent:
    # `Version` must be present: azure-functions-durable 1.7 raises AttributeError without it.
    return _event(
        EventType.EXECUTION_STARTED, at,
        Name=name, Version="", Input=input_json, ParentInstance=None, Tags=None,
        OrchestrationInstance={"InstanceId": instance_id, "ExecutionId": execution_id},
    )


def execution_completed(at: datetime, *, status: str, result_json: str | None) -> HistoryEvent:
    return _event(EventType.EXECUTION_COMPLETED, at, OrchestrationStatus=status, Result=result_json)


def execution_terminated(at: datetime, *, reason: str) -> HistoryEvent:
    return _event(EventType.EXECUTION_TERMINATED, at, Input=json.dumps(reason))


def task_scheduled(at: datetime, seq: int, *, name: str, input_json: str | None) -> HistoryEvent:
    return _event(EventType.TASK_SCHEDULED, at, seq, Name=name, Version="", Input=input_json)


def task_completed(at: datetime, seq: int, *, result_json: str | None) -> HistoryEvent:
    return _event(EventType.TASK_COMPLETED, at, TaskScheduledId=seq, Result=result_json)


def task_failed(at: datetime, seq: int, *, reason: str, details: str = "") -> HistoryEvent:
    return _event(EventType.TASK_FAILED, at, TaskScheduledId=seq, Reason=reason, Details=details)


def timer_created(at: datetime, seq: int, *, fire_at: datetime) -> HistoryEvent:
    return _event(EventType.TIMER_CREATED, at, seq, FireAt=format_timestamp(fire_at))


def timer_fired(at: datetime, seq: int, *, fire_at: datetime) -> HistoryEvent:
    return _event(EventType.TIMER_FIRED, at, TimerId=seq, FireAt=format_timestamp(fire_at))


def event_raised(at: datetime, *, name: str, input_json: str | None) -> HistoryEvent:
    return _event(EventType.EVENT_RAISED, at, Name=name, Input=input_json)


def orchestration_request(
    history: Sequence[HistoryEvent], *, instance_id: str, input_json: str | None
) -> str:
    """The JSON the extension hands an orchestrator (`OrchestrationContextToString`), schema V3.

    `input` is the orchestration input as JSON text: `context.get_input()` reads it, not the
    ExecutionStarted event.
    """
    return json.dumps({
        "history": list(history),
        "input": input_json,
        "instanceId": instance_id,
        "isReplaying": False,
        "parentInstanceId": None,
        "upperSchemaVersion": 1,
        "upperSchemaVersionNew": 2,
        "longRunningTimerIntervalDuration": LONG_TIMER_INTERVAL,
        "maximumShortTimerDuration": MAXIMUM_SHORT_TIMER_DURATION,
    })


def as_played(events: Sequence[HistoryEvent]) -> list[HistoryEvent]:
    """The events of earlier episodes, marked as played for the next replay."""
    return [{**event, "IsPlayed": True} for event in events]


class HistoryBuilder:
    """Builds a history episode by episode, one `step` apart, to drive the SDK in tests.

    Starts with OrchestratorStarted + ExecutionStarted; `new_episode()` closes the current episode
    and opens the next, marking everything before it as played, as the engine does.
    """

    def __init__(
        self,
        name: str,
        *,
        instance_id: str = "test-instance",
        input_json: str | None = None,
        start: datetime = datetime(2026, 1, 1, tzinfo=UTC),
        step: timedelta = timedelta(seconds=1),
    ) -> None:
        self.instance_id = instance_id
        self.input_json = input_json
        self.now = start
        self._step = step
        self.events: list[HistoryEvent] = [
            orchestrator_started(start),
            execution_started(
                start, name=name, input_json=input_json, instance_id=instance_id,
                execution_id="test-execution",
            ),
        ]

    def _add(self, event: HistoryEvent) -> Self:
        self.events.append(event)
        return self

    def _tick(self) -> datetime:
        self.now += self._step
        return self.now

    def new_episode(self) -> Self:
        self.events = as_played([*self.events, orchestrator_completed(self.now)])
        return self._add(orchestrator_started(self._tick()))

    def task_scheduled(self, seq: int, name: str, input_json: str | None = None) -> Self:
        return self._add(task_scheduled(self.now, seq, name=name, input_json=input_json))

    def task_completed(self, seq: int, result_json: str | None) -> Self:
        return self._add(task_completed(self.now, seq, result_json=result_json))

    def task_failed(self, seq: int, reason: str, details: str = "") -> Self:
        return self._add(task_failed(self.now, seq, reason=reason, details=details))

    def timer_created(self, seq: int, fire_at: datetime) -> Self:
        return self._add(timer_created(self.now, seq, fire_at=fire_at))

    def timer_fired(self, seq: int, fire_at: datetime) -> Self:
        return self._add(timer_fired(self.now, seq, fire_at=fire_at))

    def event_raised(self, name: str, input_json: str | None) -> Self:
        return self._add(event_raised(self.now, name=name, input_json=input_json))

    def request(self) -> str:
        return orchestration_request(
            self.events, instance_id=self.instance_id, input_json=self.input_json
        )
