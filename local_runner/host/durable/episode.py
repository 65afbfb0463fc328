"""The state transitions of one instance: episodes, activity results, timers, termination.

Pure functions over `InstanceState` and a time: no locks, no storage, no threads (engine.py adds
those). An episode is what the extension does per work item:

    [OrchestratorStarted(now), <new events from the inbox>,
     <TaskScheduled / TimerCreated for what this replay newly asked for>, OrchestratorCompleted]

Sources, cited below by file and method: Azure/azure-functions-durable-extension @a7c6d69 (v2.13.7,
src/WebJobs.Extensions.DurableTask/...), the DTFx it builds on, Azure/durabletask tags
durabletask.core-v2.17.1 (src/DurableTask.Core/...) and durabletask.azurestorage-v1.17.5
(src/DurableTask.AzureStorage/...), and the SDK, azure-functions-durable 1.7.0.

Sequence numbers must match the ones the SDK hands out while replaying: user tasks take the next
number when first yielded (the order of the flattened actions), and a call_activity_with_retry
takes one more for the timer after each failed attempt and one for each new attempt, at the moment
the SDK replays that TaskFailed / TimerFired. So an episode carries at most one such retry event,
and only as its first new event: then its number is handed out before any new user task's.
The SDK 1.7 expects a retry timer after every failure, the last one included, and only raises the
error into the orchestrator when that last timer fires (models/Task.py, RetryAbleTask).

External events also only come first in an episode, so that an event is either before or after
the point where the generation continues as new, never lost behind the event that ends it.

An instance ends only when the SDK is done (returned, raised, or continued as new) and no task is
open any more: the out-of-proc shim awaits every action it replays, one after the other
(OutOfProcOrchestrationShim.ProcessAsyncActionsV2, L199-219), and DTFx completes or fails an
orchestration only once `!this.context.HasOpenTasks` (TaskOrchestrationExecutor.ExecuteCore
L153). Open are the activities and timers scheduled in this generation and not answered, less the
cancelled timers (TaskOrchestrationContext.ScheduleTaskInternal L119, CreateTimer L246-275: a
cancelled timer leaves openTasks at once). Until then the instance stays Running and every answer
replays it again. A cancelled timer still fires: cancelling only marks the SDK's action isCanceled
(models/Task.py TimerTask.cancel), the timer message is already queued, and DTFx logs its
TimerFired as a duplicate (HandleTimerFiredEvent L525-538).

Continue-as-new starts a fresh history that holds only the external events processed after the
generation reached its ContinueAsNew: the shim calls `ContinueAsNew(input)` with
preserveUnprocessedEvents false (OutOfProcOrchestrationShim L170-173, IDurableOrchestrationContext
L98), so events the generation buffered and never waited for are dropped
(DurableTaskExtension.cs L829-835, azure-functions-durable-python#331); but DTFx hands an
EventRaised processed after ContinueAsNew to the next execution (TaskOrchestrationContext.
HandleEventRaisedEvent L414-424, Carryover being the Azure Storage default,
AzureStorageOrchestrationServiceSettings.cs L219; TaskOrchestrationDispatcher L447-456, L559-565),
and events raised later reach it too, as the client sends them with no execution id
(DurableClient.RaiseEventInternalAsync L836-840). Activity results and timers of the old
generation never reach the new one: their messages carry the old execution id and are discarded
(OrchestrationSessionManager.AddMessageToPendingOrchestration L394-490,
AzureStorageOrchestrationService.LockNextTaskOrchestrationWorkItemAsync L782-835).
DTFx runs the new generation's first episode in the work item that continued as new, on OrchestratorStarted,
ExecutionStarted, the carried-over events and an OrchestratorCompleted, and commits both at once
(TaskOrchestrationDispatcher.OnProcessWorkItemAsync's `do ... while (continuedAsNew)`, L359-575); so does
`run_episode`, and that episode's actions follow that OrchestratorCompleted, as in Azure.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from local_runner.host.durable import history as h
from local_runner.host.durable.actions import (
    ActionType,
    Effect,
    Orchestrator,
    OrchestratorReply,
    UnsupportedActionError,
    effects_of,
    find_nondeterminism,
    invoke,
)
from local_runner.host.durable.history import EventType, HistoryEvent
from local_runner.host.durable.limits import (
    custom_status_error,
    long_timer_error,
    retry_interval_error,
)
from local_runner.host.durable.state import (
    ActivityCall,
    InstanceState,
    PendingTimer,
    RecordedEffect,
    RetryState,
    RuntimeStatus,
)

# Generations one episode starts at most (see `_start_next_generation`).
MAX_GENERATIONS_PER_EPISODE = 100
_ANSWERS = {
    EventType.TASK_COMPLETED: "TaskScheduledId",
    EventType.TASK_FAILED: "TaskScheduledId",
    EventType.TIMER_FIRED: "TimerId",
}


@dataclass
class EpisodeResult:
    """What the engine must do after saving the episode's state."""

    dispatch: list[ActivityCall] = field(default_factory=list)
    error: str | None = None
    nondeterministic: bool = False


def new_instance(
    name: str, instance_id: str, input_json: str | None, now: datetime
) -> InstanceState:
    return InstanceState(
        instance_id=instance_id, name=name, execution_id=uuid.uuid4().hex,
        status=RuntimeStatus.PENDING, input=input_json, created_time=now, last_updated_time=now,
    )


def run_episode(
    state: InstanceState,
    orchestrator: Orchestrator,
    now: datetime,
    *,
    carried: list[HistoryEvent] | None = None,
    generation: int = 1,
) -> EpisodeResult:
    """Apply the next batch of inbox events, replay, and record the new effects in `state`.

    An episode that continues as new runs the next generation's first episode at once, on the events it carries
    over (`carried`), as DTFx does in the work item that continued as new (module docstring)."""
    first_episode = not state.history
    if carried is None:
        batch = _take_batch(state)
        new_events = [h.orchestrator_started(now)]
        if first_episode:
            new_events.append(_execution_started(state, now))
    else:
        # DTFx starts the next execution as OrchestratorStarted, ExecutionStarted, the carried-over events and
        # an OrchestratorCompleted, and replays that (TaskOrchestrationDispatcher.OnProcessWorkItemAsync L546-570).
        batch = carried
        new_events = [h.orchestrator_started(now), _execution_started(state, now)]
    new_events += [{**event, "IsPlayed": False} for event in batch]
    if carried is not None:
        new_events.append(h.orchestrator_completed(now))
    history = [*h.as_played(state.history), *new_events]

    reply = invoke(orchestrator, h.orchestration_request(
        history, instance_id=state.instance_id, input_json=state.input
    ))
    try:
        effects = effects_of(reply.actions)
    except UnsupportedActionError as exc:
        return _fail(state, history, now, str(exc))
    recorded = [(e.seq, e.effect) for e in state.effects]
    too_big = custom_status_error(reply.custom_status)
    if too_big is not None:
        return _fail_on_custom_status(state, history, now, reply, too_big)
    mismatch = find_nondeterminism(recorded, [e for e, _ in effects])
    if mismatch is not None:
        # TaskOrchestrationExecutor.ExecuteCore L180-183: failed at once, open tasks or not.
        return _fail(state, history, now, mismatch, nondeterministic=True)

    _follow_retry_changes(state, effects, batch[0] if batch else None)
    scheduling: list[HistoryEvent] = []
    dispatch: list[ActivityCall] = []
    if batch:
        _advance_retry(state, batch[0], now, scheduling, dispatch)
    for event in batch:
        finished = _finished_retry(state, event)
        if finished is not None:
            del state.retries[finished.first_seq]

    error = None if reply.error is None else _orchestrator_failed(state, reply.error)
    for effect, action in effects[len(state.effects):]:
        if effect.kind == "CallActivityWithRetry":
            refused = retry_interval_error(dict(action.get("retryOptions") or {}))
            if refused is not None:
                # Raised while the shim replays this action: the ones before it stand, it and
                # the ones after it are never scheduled (OutOfProcOrchestrationShim L199-219,
                # TaskOrchestrationShim.InvokeUserCodeAndHandleResults L174-207).
                error = _orchestrator_failed(state, refused)
                break
        seq = _next_seq(state)
        if effect.kind == "CreateTimer":
            fire_at = _parse_fire_at(action["fireAt"])
            too_long = long_timer_error(seq, fire_at, now)
            if too_long is not None:
                return _fail(state, history, now, too_long)
            state.effects.append(RecordedEffect(effect.kind, effect.name, seq))
            scheduling.append(h.timer_created(now, seq, fire_at=fire_at))
            state.timers[seq] = PendingTimer(seq, fire_at)  # cancelled or not, it fires
            continue
        state.effects.append(RecordedEffect(effect.kind, effect.name, seq))
        call = ActivityCall(seq, effect.name, action.get("input"))
        scheduling.append(h.task_scheduled(now, seq, name=call.name, input_json=call.input))
        state.activities[seq] = call
        dispatch.append(call)
        if effect.kind == "CallActivityWithRetry":
            state.retries[seq] = RetryState(
                first_seq=seq, name=call.name, input=call.input,
                options=dict(action.get("retryOptions") or {}), attempts=1, current_seq=seq,
            )

    if carried is None or reply.custom_status is not None:
        # A next generation that sets none keeps the one before's, for this work item (L556-557, L605).
        state.custom_status = reply.custom_status
    done = error is not None or reply.is_done
    continue_action = reply.continue_as_new if error is None and reply.is_done else None
    carried_over: list[HistoryEvent] = []
    if continue_action is not None and (
        state.awaiting_open_tasks or (first_episode and _continues_at_start(reply))
    ):
        carried_over = [e for e in batch if e["EventType"] == EventType.EVENT_RAISED]
    if done and not open_tasks([*history, *scheduling], _cancelled_timers(state, effects)):
        if error is not None:
            return _fail(state, [*history, *scheduling], now, error)
        if continue_action is not None:
            return _start_next_generation(
                state, orchestrator, now, [*state.carryover, *carried_over], continue_action.get("input"), generation
            )
        _finish(state, [*history, *scheduling], now, RuntimeStatus.COMPLETED, reply.output)
        return EpisodeResult()
    state.carryover += carried_over
    state.awaiting_open_tasks = done
    # DTFx closes the episode with an OrchestratorCompleted unless its last event is one already (L521-524).
    closed = not scheduling and history[-1]["EventType"] == EventType.ORCHESTRATOR_COMPLETED
    state.history = [*history, *scheduling, *([] if closed else [h.orchestrator_completed(now)])]
    state.status = RuntimeStatus.RUNNING
    state.last_updated_time = now
    return EpisodeResult(dispatch=dispatch)


def open_tasks(events: Iterable[HistoryEvent], cancelled: set[int]) -> set[int]:
    """DTFx's open tasks after a replay of `events`: scheduled, unanswered, not cancelled.

    TaskOrchestrationContext: ScheduleTaskInternal (L105-119) and CreateTimer (L248-258) open a
    task under its sequence number, HandleTaskCompletedEvent / HandleTaskFailedEvent /
    HandleTimerFiredEvent close it, and a cancelled timer closes at once (L260-269).
    """
    scheduled: set[int] = set()
    answered: set[int] = set()
    for event in events:
        kind = event["EventType"]
        if kind in (EventType.TASK_SCHEDULED, EventType.TIMER_CREATED):
            scheduled.add(event["EventId"])
        elif kind in _ANSWERS:
            answered.add(event[_ANSWERS[EventType(kind)]])
    return scheduled - answered - cancelled


def record_activity_result(
    state: InstanceState,
    execution_id: str,
    seq: int,
    now: datetime,
    *,
    result_json: str | None = None,
    failure: tuple[str, str] | None = None,
) -> bool:
    """Queue an activity's answer (result, or failure reason and details); False if stale."""
    stale = state.execution_id != execution_id or seq not in state.activities
    if state.status.is_terminal or stale:
        return False
    del state.activities[seq]
    if failure is None:
        state.inbox.append(h.task_completed(now, seq, result_json=result_json))
    else:
        reason, details = failure
        state.inbox.append(h.task_failed(now, seq, reason=reason, details=details))
    state.last_updated_time = now
    return True


def fire_due_timers(state: InstanceState, now: datetime) -> bool:
    """Queue TimerFired for every timer due by `now`, earliest first; True if any fired."""
    due = sorted(
        (t for t in state.timers.values() if t.fire_at <= now), key=lambda t: (t.fire_at, t.seq)
    )
    for timer in due:
        del state.timers[timer.seq]
        state.inbox.append(h.timer_fired(now, timer.seq, fire_at=timer.fire_at))
    return bool(due)


def next_timer_due(state: InstanceState) -> datetime | None:
    return min((t.fire_at for t in state.timers.values()), default=None)


def raise_event(state: InstanceState, name: str, data_json: str | None, now: datetime) -> None:
    state.inbox.append(h.event_raised(now, name=name, input_json=data_json))
    state.last_updated_time = now


def fail(state: InstanceState, message: str, now: datetime) -> None:
    """Fail the instance without a replay, e.g. when its orchestrator is no longer registered."""
    history = [*h.as_played(state.history), h.orchestrator_started(now)]
    _finish(state, history, now, RuntimeStatus.FAILED, message)


def terminate(state: InstanceState, reason: str, now: datetime) -> None:
    history = [
        *h.as_played(state.history), h.orchestrator_started(now),
        h.execution_terminated(now, reason=reason),
    ]
    _finish(state, history, now, RuntimeStatus.TERMINATED, reason)


def _take_batch(state: InstanceState) -> list[HistoryEvent]:
    """Inbox events in arrival order; an external event or one that numbers a retry only first."""
    batch: list[HistoryEvent] = []
    for event in state.inbox:
        if batch and _must_come_first(state, event):
            break
        batch.append(event)
    del state.inbox[:len(batch)]
    return batch


def _must_come_first(state: InstanceState, event: HistoryEvent) -> bool:
    return event["EventType"] == EventType.EVENT_RAISED or _numbers_a_retry(state, event)


def _numbers_a_retry(state: InstanceState, event: HistoryEvent) -> bool:
    if event["EventType"] == EventType.TASK_FAILED:
        return state.retry_for_attempt(event["TaskScheduledId"]) is not None
    if event["EventType"] == EventType.TIMER_FIRED:
        return state.retry_for_timer(event["TimerId"]) is not None
    return False


def _advance_retry(
    state: InstanceState,
    event: HistoryEvent,
    now: datetime,
    scheduling: list[HistoryEvent],
    dispatch: list[ActivityCall],
) -> None:
    """Mirror RetryAbleTask: a timer after each failure, a new attempt after each timer."""
    if event["EventType"] == EventType.TASK_FAILED:
        retry = state.retry_for_attempt(event["TaskScheduledId"])
        if retry is None:
            return
        seq = _next_seq(state)
        fire_at = now + timedelta(seconds=retry.delay_seconds(retry.attempts))
        retry.timer_seq = seq
        state.timers[seq] = PendingTimer(seq, fire_at, retry_of=retry.first_seq)
        scheduling.append(h.timer_created(now, seq, fire_at=fire_at))
    elif event["EventType"] == EventType.TIMER_FIRED:
        retry = state.retry_for_timer(event["TimerId"])
        if retry is None:
            return
        retry.timer_seq = None
        if retry.attempts >= retry.max_attempts:
            del state.retries[retry.first_seq]  # the SDK now raises the last error into the code
            return
        seq = _next_seq(state)
        retry.attempts += 1
        retry.current_seq = seq
        call = ActivityCall(seq, retry.name, retry.input)
        state.activities[seq] = call
        dispatch.append(call)
        scheduling.append(h.task_scheduled(now, seq, name=call.name, input_json=call.input))


def _follow_retry_changes(
    state: InstanceState,
    effects: Sequence[tuple[Effect, dict[str, Any]]],
    first_new: HistoryEvent | None,
) -> None:
    """Retry as this replay's code says, as the extension does on every replay.

    The shim builds the retry from the action it replays (OutOfProcOrchestrationShim.
    InvokeAPIFromAction L136-138, RetryOptionsConverter), and DTFx's determinism check does not
    tell CallActivity from CallActivityWithRetry (see actions.find_nondeterminism): so new retry
    options apply from now on, and a first attempt not yet answered in history (in flight, or
    answered by this episode's first event) follows a switch between the two. A switch after an
    answer was replayed is left alone (the numbering would no longer match).
    """
    answered_now = None
    if first_new is not None and first_new["EventType"] in (
        EventType.TASK_COMPLETED, EventType.TASK_FAILED,
    ):
        answered_now = first_new["TaskScheduledId"]
    for recorded, (effect, action) in zip(state.effects, effects, strict=False):
        retry = state.retries.get(recorded.seq)
        in_flight = recorded.seq in state.activities or recorded.seq == answered_now
        if effect.kind == "CallActivityWithRetry" and retry is not None:
            retry.options = dict(action.get("retryOptions") or {})
        elif effect.kind == "CallActivityWithRetry" and recorded.kind == "CallActivity" and (
            in_flight
        ):
            state.retries[recorded.seq] = RetryState(
                first_seq=recorded.seq, name=recorded.name, input=action.get("input"),
                options=dict(action.get("retryOptions") or {}), attempts=1,
                current_seq=recorded.seq,
            )
        elif effect.kind == "CallActivity" and retry is not None and (
            retry.attempts == 1 and in_flight
        ):
            del state.retries[recorded.seq]
        else:
            continue
        recorded.kind = effect.kind


def _finished_retry(state: InstanceState, event: HistoryEvent) -> RetryState | None:
    if event["EventType"] == EventType.TASK_COMPLETED:
        return state.retry_for_attempt(event["TaskScheduledId"])
    return None


def _next_seq(state: InstanceState) -> int:
    seq = state.next_seq
    state.next_seq += 1
    return seq


def _cancelled_timers(
    state: InstanceState, effects: Sequence[tuple[Effect, dict[str, Any]]]
) -> set[int]:
    """The recorded timers this replay reports cancelled (the shim cancels them, L129-132)."""
    return {
        recorded.seq for recorded, (_, action) in zip(state.effects, effects, strict=False)
        if recorded.kind == "CreateTimer" and action.get("isCanceled")
    }


def _continues_at_start(reply: OrchestratorReply) -> bool:
    """Whether the shim reaches ContinueAsNew while it replays ExecutionStarted itself.

    Only when nothing before it has to wait for a history event: the shim invokes the actions in
    order and awaits each (ProcessAsyncActionsV2), and in a generation's first episode nothing
    has been answered before its ExecutionStarted. Then every event of that episode is processed
    after ContinueAsNew, and DTFx carries its EventRaised over (HandleEventRaisedEvent L414-424).
    """
    for action in reply.actions:
        kind = action.get("actionType")
        if kind == ActionType.CONTINUE_AS_NEW:
            return True
        if not (kind == ActionType.CREATE_TIMER and action.get("isCanceled")):
            return False
    return False


def _orchestrator_failed(state: InstanceState, error: str) -> str:
    """How the extension reports it (OutOfProcOrchestrationShim.ScheduleDurableTaskEvents L85-91,
    TaskOrchestrationShim.InvokeUserCodeAndHandleResults L194-197)."""
    return f"Orchestrator function '{state.name}' failed: {error}"


def _fail_on_custom_status(
    state: InstanceState,
    history: list[HistoryEvent],
    now: datetime,
    reply: OrchestratorReply,
    too_big: str,
) -> EpisodeResult:
    """Fail as the extension does when SetCustomStatus refuses the custom status.

    The shim sets the custom status before it replays any action (ScheduleDurableTaskEvents
    L78-83), so the replay then schedules nothing, and DTFx, reading on through the history,
    fails the instance as non-deterministic at its first TaskScheduled / TimerCreated
    (TaskOrchestrationExecutor.ExecuteCore L124-148, L180-183). With no such event yet it fails
    with the size error: prefixed as an orchestrator failure when the SDK reported none, and bare
    when the SDK reported one (the ArgumentException then escapes the shim's catch block,
    TaskOrchestrationShim.InvokeUserCodeAndHandleResults L174-191, and DTFx fails with its message,
    TaskOrchestrationContext.FailOrchestration L609-660).
    """
    missing = find_nondeterminism([(e.seq, e.effect) for e in state.effects], [])
    if missing is not None:
        return _fail(state, history, now, missing, nondeterministic=True)
    message = too_big if reply.error is not None else _orchestrator_failed(state, too_big)
    return _fail(state, history, now, message)


def _parse_fire_at(text: str) -> datetime:
    try:
        return h.parse_timestamp(text)
    except ValueError:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _fail(
    state: InstanceState,
    history: list[HistoryEvent],
    now: datetime,
    message: str,
    *,
    nondeterministic: bool = False,
) -> EpisodeResult:
    _finish(state, history, now, RuntimeStatus.FAILED, message)
    return EpisodeResult(error=message, nondeterministic=nondeterministic)


def _finish(
    state: InstanceState,
    history: list[HistoryEvent],
    now: datetime,
    status: RuntimeStatus,
    output: Any,
) -> None:
    state.status = status
    state.output = output
    state.history = [
        *history,
        h.execution_completed(now, status=status.value, result_json=json.dumps(output)),
        h.orchestrator_completed(now),
    ]
    state.inbox.clear()
    state.activities.clear()
    state.retries.clear()
    state.timers.clear()
    state.awaiting_open_tasks = False
    state.carryover = []
    state.last_updated_time = now


def _start_next_generation(
    state: InstanceState,
    orchestrator: Orchestrator,
    now: datetime,
    carried: list[HistoryEvent],
    input_json: str | None,
    generation: int,
) -> EpisodeResult:
    """Continue as new and run the next generation's first episode on the carried-over events, as DTFx does
    until a generation does not continue as new (`do ... while (continuedAsNew)`, L359-575): one write for all.
    DTFx would loop for ever on an orchestrator that always continues as new; after
    MAX_GENERATIONS_PER_EPISODE this writes what it has and the next episode goes on from there."""
    _continue_as_new(state, input_json, now)
    if generation >= MAX_GENERATIONS_PER_EPISODE:
        state.inbox[:0] = [{**event, "IsPlayed": False} for event in carried]
        return EpisodeResult()
    return run_episode(state, orchestrator, now, carried=carried, generation=generation + 1)


def _execution_started(state: InstanceState, now: datetime) -> HistoryEvent:
    return h.execution_started(
        now, name=state.name, input_json=state.input, instance_id=state.instance_id, execution_id=state.execution_id,
    )


def _continue_as_new(state: InstanceState, input_json: str | None, now: datetime) -> None:
    """Start the next generation under the same id with a fresh history (module docstring).

    Its inbox: the external events still queued, which were raised after the continue-as-new; the old
    generation's activity results and timers are dropped.
    """
    later = [e for e in state.inbox if e["EventType"] == EventType.EVENT_RAISED]
    state.execution_id = uuid.uuid4().hex
    state.input = input_json
    state.output = None
    state.history = []
    state.effects = []
    state.next_seq = 0
    state.activities.clear()
    state.retries.clear()
    state.timers.clear()
    state.awaiting_open_tasks = False
    state.carryover = []
    state.inbox = [{**e, "IsPlayed": False} for e in later]
    state.status = RuntimeStatus.CONTINUED_AS_NEW
    state.last_updated_time = now
