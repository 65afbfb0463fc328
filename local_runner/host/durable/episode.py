"""The state transitions of one instance: episodes, activity results, timers, termination.

Pure functions over `InstanceState` and a time: no locks, no storage, no threads (engine.py adds
those). An episode is what the extension does per work item:

    [OrchestratorStarted(now), <new events from the inbox>,
     <TaskScheduled / TimerCreated for what this replay newly asked for>, OrchestratorCompleted]

Sequence numbers must match the ones the SDK hands out while replaying: user tasks take the next
number when first yielded (the order of the flattened actions), and a call_activity_with_retry
takes one more for the timer after each failed attempt and one for each new attempt, at the moment
the SDK replays that TaskFailed / TimerFired. So an episode carries at most one such retry event,
and only as its first new event: then its number is handed out before any new user task's.
The SDK 1.7 expects a retry timer after every failure, the last one included, and only raises the
error into the orchestrator when that last timer fires (models/Task.py, RetryAbleTask).

External events also only come first in an episode. The SDK stops replaying at the event that ends
the execution, so an event behind it would go unseen; when that end is a continue-as-new, the
events the generation never waited for move on to the next one, as the Azure Storage provider
carries unprocessed events over.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from local_runner.host.durable import history as h
from local_runner.host.durable.actions import (
    ActionType,
    Orchestrator,
    UnsupportedActionError,
    effects_of,
    find_nondeterminism,
    invoke,
)
from local_runner.host.durable.history import EventType, HistoryEvent
from local_runner.host.durable.state import (
    ActivityCall,
    InstanceState,
    PendingTimer,
    RecordedEffect,
    RetryState,
    RuntimeStatus,
)


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


def run_episode(state: InstanceState, orchestrator: Orchestrator, now: datetime) -> EpisodeResult:
    """Apply the next batch of inbox events, replay, and record the new effects in `state`."""
    batch = _take_batch(state)
    new_events = [h.orchestrator_started(now)]
    if not state.history:
        new_events.append(h.execution_started(
            now, name=state.name, input_json=state.input,
            instance_id=state.instance_id, execution_id=state.execution_id,
        ))
    new_events += [{**event, "IsPlayed": False} for event in batch]
    history = [*h.as_played(state.history), *new_events]

    scheduling: list[HistoryEvent] = []
    dispatch: list[ActivityCall] = []
    if batch:
        _advance_retry(state, batch[0], now, scheduling, dispatch)
    for event in batch:
        finished = _finished_retry(state, event)
        if finished is not None:
            del state.retries[finished.first_seq]

    reply = invoke(orchestrator, h.orchestration_request(
        history, instance_id=state.instance_id, input_json=state.input
    ))
    try:
        effects = effects_of(reply.actions)
    except UnsupportedActionError as exc:
        return _fail(state, history, now, str(exc))
    mismatch = find_nondeterminism([e.effect for e in state.effects], [e for e, _ in effects])
    if mismatch is not None:
        result = _fail(state, history, now, mismatch)
        result.nondeterministic = True
        return result

    for recorded, (_, action) in zip(state.effects, effects, strict=False):
        if recorded.kind == "CreateTimer" and action.get("isCanceled"):
            _cancel_timer(state, recorded.seq)
    for effect, action in effects[len(state.effects):]:
        seq = _next_seq(state)
        state.effects.append(RecordedEffect(effect.kind, effect.name, seq))
        if effect.kind == "CreateTimer":
            fire_at = _parse_fire_at(action["fireAt"])
            scheduling.append(h.timer_created(now, seq, fire_at=fire_at))
            if not action.get("isCanceled"):
                state.timers[seq] = PendingTimer(seq, fire_at)
            continue
        call = ActivityCall(seq, effect.name, action.get("input"))
        scheduling.append(h.task_scheduled(now, seq, name=call.name, input_json=call.input))
        state.activities[seq] = call
        dispatch.append(call)
        if effect.kind == "CallActivityWithRetry":
            state.retries[seq] = RetryState(
                first_seq=seq, name=call.name, input=call.input,
                options=dict(action.get("retryOptions") or {}), attempts=1, current_seq=seq,
            )

    state.custom_status = reply.custom_status
    if reply.error is not None:
        return _fail(state, history, now, reply.error, user_error=True)
    if reply.is_done:
        continue_action = reply.continue_as_new
        if continue_action is not None:
            _continue_as_new(state, history, reply.actions, continue_action.get("input"), now)
            return EpisodeResult()
        state.output = reply.output
        _finish(state, [*history, *scheduling], now, RuntimeStatus.COMPLETED, reply.output)
        return EpisodeResult()
    state.history = [*history, *scheduling, h.orchestrator_completed(now)]
    state.status = RuntimeStatus.RUNNING
    state.last_updated_time = now
    return EpisodeResult(dispatch=dispatch)


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


def _finished_retry(state: InstanceState, event: HistoryEvent) -> RetryState | None:
    if event["EventType"] == EventType.TASK_COMPLETED:
        return state.retry_for_attempt(event["TaskScheduledId"])
    return None


def _next_seq(state: InstanceState) -> int:
    seq = state.next_seq
    state.next_seq += 1
    return seq


def _cancel_timer(state: InstanceState, seq: int) -> None:
    state.timers.pop(seq, None)
    state.inbox = [
        e for e in state.inbox
        if not (e["EventType"] == EventType.TIMER_FIRED and e["TimerId"] == seq)
    ]


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
    error: str,
    *,
    user_error: bool = False,
) -> EpisodeResult:
    message = f"Orchestrator function '{state.name}' failed: {error}" if user_error else error
    _finish(state, history, now, RuntimeStatus.FAILED, message)
    return EpisodeResult(error=message)


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
    state.last_updated_time = now


def _continue_as_new(
    state: InstanceState,
    history: list[HistoryEvent],
    actions: list[dict[str, Any]],
    input_json: str | None,
    now: datetime,
) -> None:
    """Start the next generation under the same id: fresh history, unconsumed events kept."""
    carried = _unconsumed_events(history, actions) + state.inbox
    state.execution_id = uuid.uuid4().hex
    state.input = input_json
    state.output = None
    state.history = []
    state.effects = []
    state.next_seq = 0
    state.activities.clear()
    state.retries.clear()
    state.timers.clear()
    state.inbox = [{**e, "IsPlayed": False} for e in carried]
    state.status = RuntimeStatus.CONTINUED_AS_NEW
    state.last_updated_time = now


def _unconsumed_events(
    history: list[HistoryEvent], actions: list[dict[str, Any]]
) -> list[HistoryEvent]:
    """EventRaised events no wait_for_external_event of this generation asked for (latest kept)."""
    waits = Counter(
        a.get("externalEventName") for a in actions
        if a.get("actionType") == ActionType.WAIT_FOR_EXTERNAL_EVENT
    )
    raised = [e for e in history if e["EventType"] == EventType.EVENT_RAISED]
    remaining = Counter(e["Name"] for e in raised)
    for name, count in waits.items():
        remaining[name] -= count
    kept: list[HistoryEvent] = []
    for event in reversed(raised):
        if remaining[event["Name"]] > 0:
            remaining[event["Name"]] -= 1
            kept.append(event)
    return list(reversed(kept))
