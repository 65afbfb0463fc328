"""What a replay returns: its actions, flattened into effects and checked against the history.

The SDK answers each replay with every action since the orchestration started (schema V2/V3: one
list, compound actions nested; reference/durable-functions.md section A2). Flattened depth-first,
the actions that take a sequence number are the orchestration's effects, in order. The effects
already turned into history must come out again on every replay, checked as DTFx checks them
(`find_nondeterminism`): otherwise the code changed under a running instance, and the instance
fails as the extension fails it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

OUT_OF_PROC_MARKER = "$OutOfProcData$:"
# What the v2 app registers for an orchestrator (`Orchestrator.create(fn)`): request -> reply JSON.
Orchestrator = Callable[[str], str]
NONDETERMINISM_PREFIX = "Non-Deterministic workflow detected"


class ActionType(IntEnum):
    """azure/durable_functions/models/actions/ActionType.py"""

    CALL_ACTIVITY = 0
    CALL_ACTIVITY_WITH_RETRY = 1
    CALL_SUB_ORCHESTRATOR = 2
    CALL_SUB_ORCHESTRATOR_WITH_RETRY = 3
    CONTINUE_AS_NEW = 4
    CREATE_TIMER = 5
    WAIT_FOR_EXTERNAL_EVENT = 6
    CALL_ENTITY = 7
    CALL_HTTP = 8
    SIGNAL_ENTITY = 9
    WHEN_ANY = 11
    WHEN_ALL = 12


# Actions that become history (and take the next sequence number), by the effect kind they record.
EFFECT_KINDS = {
    ActionType.CALL_ACTIVITY: "CallActivity",
    ActionType.CALL_ACTIVITY_WITH_RETRY: "CallActivityWithRetry",
    ActionType.CREATE_TIMER: "CreateTimer",
}
# Actions that leave no history of their own.
NO_EFFECT = {ActionType.WAIT_FOR_EXTERNAL_EVENT, ActionType.CONTINUE_AS_NEW}
_KNOWN = {int(t) for t in ActionType}


class UnsupportedActionError(Exception):
    """The orchestrator used an API the in-process host does not implement."""


@dataclass(frozen=True)
class Effect:
    """One scheduling action: its kind and, for activities, the function name."""

    kind: str
    name: str = ""

    def describe(self) -> str:
        return f"{self.kind} {self.name!r}" if self.name else self.kind


@dataclass(frozen=True)
class OrchestratorReply:
    """One replay's answer, whether the code returned, continued as new, or raised."""

    is_done: bool
    actions: list[dict[str, Any]]
    output: Any = None
    error: str | None = None
    custom_status: Any = None

    @property
    def continue_as_new(self) -> dict[str, Any] | None:
        return next(
            (a for a in self.actions if a.get("actionType") == ActionType.CONTINUE_AS_NEW), None
        )


def invoke(orchestrator: Orchestrator, request: str) -> OrchestratorReply:
    """Run one replay; an exception from user code becomes a reply carrying `error`."""
    try:
        raw = orchestrator(request)
    except Exception as exc:  # the SDK reports user failures by raising
        text = str(exc)
        if OUT_OF_PROC_MARKER not in text:
            # Raised before the SDK's executor could wrap it, e.g. by a non-generator orchestrator.
            return OrchestratorReply(is_done=False, actions=[], error=text or type(exc).__name__)
        state = json.loads(text.split(OUT_OF_PROC_MARKER, 1)[1])
        return OrchestratorReply(
            is_done=False,
            actions=flatten_actions(state.get("actions", [])),
            error=state.get("error") or text.split(OUT_OF_PROC_MARKER, 1)[0].strip(),
            custom_status=state.get("customStatus"),
        )
    state = json.loads(raw)
    return OrchestratorReply(
        is_done=bool(state.get("isDone")),
        actions=flatten_actions(state.get("actions", [])),
        output=state.get("output"),
        custom_status=state.get("customStatus"),
    )


def flatten_actions(actions: Sequence[Any]) -> list[dict[str, Any]]:
    """The leaf actions, depth first, out of `[[...]]` lists and WhenAny / WhenAll compounds."""
    return list(_leaves(actions))


def _leaves(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, list):
        for item in node:
            yield from _leaves(item)
    elif node.get("actionType") in (ActionType.WHEN_ANY, ActionType.WHEN_ALL):
        yield from _leaves(node.get("compoundActions", []))
    else:
        yield node


def effects_of(actions: Sequence[dict[str, Any]]) -> list[tuple[Effect, dict[str, Any]]]:
    """Each scheduling action with its effect, in order; raises for APIs the host lacks."""
    effects = []
    for action in actions:
        action_type = int(action.get("actionType", -1))
        if action_type in NO_EFFECT:
            continue
        kind = EFFECT_KINDS.get(ActionType(action_type)) if action_type in _KNOWN else None
        if kind is None:
            name = ActionType(action_type).name if action_type in _KNOWN else action_type
            raise UnsupportedActionError(
                f"The in-process durable host does not support action {name} (actionType "
                f"{action_type}); it runs activities, timers, external events and continue-as-new. "
                "Run this orchestration under the Functions host (`func start`)."
            )
        effects.append((Effect(kind, action.get("functionName", "")), action))
    return effects


# The DTFx history event each effect kind is scheduled as, and the orchestrator action that
# schedules it: the extension turns CallActivity and CallActivityWithRetry alike into
# `ScheduleTask` (DurableOrchestrationContext.CallDurableTaskFunctionAsync, ScheduleTask /
# ScheduleWithRetry), CreateTimer into `CreateTimer` (TaskOrchestrationContext.CreateTimer).
_DTFX_ACTION = {
    "CallActivity": "ScheduleTaskOrchestratorAction",
    "CallActivityWithRetry": "ScheduleTaskOrchestratorAction",
    "CreateTimer": "CreateTimerOrchestratorAction",
}
_CHANGED = (
    "Was a change made to the orchestrator code after this instance had already started running?"
)


def find_nondeterminism(
    recorded: Sequence[tuple[int, Effect]], replayed: Sequence[Effect]
) -> str | None:
    """DTFx's error if the replay does not schedule the recorded effects; None if it does.

    `recorded` pairs each effect in history with its sequence number. DTFx checks each
    TaskScheduled / TimerCreated of the history against the action the replay scheduled under
    that number: an action must be there, of the same DTFx type, and an activity must have the
    same name, compared without case. The version is "" (the extension's DefaultVersion), and
    CallActivity vs CallActivityWithRetry is no difference (both are a ScheduleTask). Messages
    and checks: Azure/durabletask durabletask.core-v2.17.1 src/DurableTask.Core/
    TaskOrchestrationContext.cs HandleTaskScheduledEvent (L277-309), HandleTimerCreatedEvent
    (L311-339); the prefix is NonDeterministicOrchestrationException(int, string) (Exceptions/
    NonDeterministicOrchestrationException.cs L57-61).
    """
    for position, (seq, expected) in enumerate(recorded):
        actual = replayed[position] if position < len(replayed) else None
        detail = _timer_mismatch(seq, actual) if expected.kind == "CreateTimer" else (
            _task_mismatch(seq, expected.name, actual)
        )
        if detail is not None:
            return f"{NONDETERMINISM_PREFIX}: {detail}"
    return None


def _task_mismatch(seq: int, name: str, actual: Effect | None) -> str | None:
    if actual is None:
        return (
            f"A previous execution of this orchestration scheduled an activity task with sequence "
            f"ID {seq} and name '{name}' (version ''), but the current replay execution hasn't "
            f"(yet?) scheduled this task. {_CHANGED}"
        )
    if _DTFX_ACTION[actual.kind] != "ScheduleTaskOrchestratorAction":
        return (
            f"A previous execution of this orchestration scheduled an activity task with sequence "
            f"number {seq} named '{name}', but the current orchestration replay instead produced "
            f"a {_DTFX_ACTION[actual.kind]} action with this sequence number. {_CHANGED}"
        )
    if not _same_ignoring_case(name, actual.name):
        return (
            f"A previous execution of this orchestration scheduled an activity task with sequence "
            f"number {seq} named '{name}', but the current orchestration replay instead scheduled "
            f"an activity task named '{actual.name}' with this sequence number.  {_CHANGED}"
        )
    return None


def _timer_mismatch(seq: int, actual: Effect | None) -> str | None:
    if actual is None:
        return (
            f"A previous execution of this orchestration scheduled a timer task with sequence "
            f"number {seq} but the current replay execution hasn't (yet?) scheduled this task. "
            f"{_CHANGED}"
        )
    if _DTFX_ACTION[actual.kind] != "CreateTimerOrchestratorAction":
        return (
            f"A previous execution of this orchestration scheduled a timer task with sequence "
            f"number {seq} named but the current orchestration replay instead produced a "
            f"{_DTFX_ACTION[actual.kind]} action with this sequence number. {_CHANGED}"
        )
    return None


def _same_ignoring_case(a: str, b: str) -> bool:
    """.NET StringComparison.OrdinalIgnoreCase: equal length, each character equal up to case."""
    return len(a) == len(b) and all(
        x == y or x.upper() == y.upper() for x, y in zip(a, b, strict=True)
    )
