"""Everything the engine knows about one orchestration instance, and its JSON form in the store.

Besides the history the SDK replays, an instance carries the engine's own bookkeeping: the effects
already recorded (for the determinism check), the next sequence number, events waiting to be
applied (the inbox), activities in flight, retry progress, pending timers (cancelled ones too: they
still fire), and, while the orchestrator is done but tasks are still open, that it waits for them
and which external events it carries over to its next generation. All of it is saved after every
change, so a new engine over the same store carries on where the last one stopped.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from local_runner.host.durable.actions import Effect
from local_runner.host.durable.history import HistoryEvent, format_timestamp, parse_timestamp

STATE_SCHEMA_VERSION = 1
# The extension's RetryOptions.MaxRetryInterval when none is given (RetryOptions.cs L18): 6 days.
DEFAULT_MAX_RETRY_INTERVAL_MS = 6 * 24 * 3600 * 1000


class RuntimeStatus(StrEnum):
    """The SDK's `OrchestrationRuntimeStatus` values this engine uses."""

    PENDING = "Pending"
    RUNNING = "Running"
    COMPLETED = "Completed"
    CONTINUED_AS_NEW = "ContinuedAsNew"
    FAILED = "Failed"
    TERMINATED = "Terminated"

    @property
    def is_terminal(self) -> bool:
        return self in (RuntimeStatus.COMPLETED, RuntimeStatus.FAILED, RuntimeStatus.TERMINATED)


@dataclass
class RecordedEffect:
    """An effect already in history, with the sequence number it took."""

    kind: str
    name: str
    seq: int

    @property
    def effect(self) -> Effect:
        return Effect(self.kind, self.name)


@dataclass
class ActivityCall:
    """An activity scheduled (TaskScheduled in history) and not yet answered."""

    seq: int
    name: str
    input: str | None


@dataclass
class RetryState:
    """Progress of one call_activity_with_retry, keyed by its first attempt's sequence number."""

    first_seq: int
    name: str
    input: str | None
    options: dict[str, Any]
    attempts: int
    current_seq: int
    timer_seq: int | None = None

    @property
    def max_attempts(self) -> int:
        return int(self.options.get("maxNumberOfAttempts", 1))

    def delay_seconds(self, failures: int) -> float:
        """DTFx's delay before retry number `failures` (1 after the first failure).

        RetryInterceptor.ComputeNextDelay (DurableTask.Core 2.17.1 RetryInterceptor.cs L103-125):
        first interval * backoff ** (failures - 1), capped at the max retry interval, which is
        6 days when the SDK sends none (extension RetryOptions.cs L18, L31).
        """
        first = float(self.options.get("firstRetryIntervalInMilliseconds", 0))
        backoff = float(self.options.get("backoffCoefficient", 1.0))
        delay = first * backoff ** (failures - 1)
        cap = self.options.get("maxRetryIntervalInMilliseconds", DEFAULT_MAX_RETRY_INTERVAL_MS)
        return min(delay, float(cap)) / 1000.0


@dataclass
class PendingTimer:
    """A durable timer that has not fired; `retry_of` names the retry it delays, if any."""

    seq: int
    fire_at: datetime
    retry_of: int | None = None


@dataclass
class InstanceState:
    instance_id: str
    name: str
    execution_id: str
    status: RuntimeStatus
    input: str | None
    created_time: datetime
    last_updated_time: datetime
    output: Any = None
    custom_status: Any = None
    history: list[HistoryEvent] = field(default_factory=list)
    effects: list[RecordedEffect] = field(default_factory=list)
    next_seq: int = 0
    inbox: list[HistoryEvent] = field(default_factory=list)
    activities: dict[int, ActivityCall] = field(default_factory=dict)
    retries: dict[int, RetryState] = field(default_factory=dict)
    timers: dict[int, PendingTimer] = field(default_factory=dict)
    # The orchestrator has returned, failed or continued as new, but DTFx still has open tasks.
    awaiting_open_tasks: bool = False
    # External events to hand to the next generation (processed after it continued as new).
    carryover: list[HistoryEvent] = field(default_factory=list)
    # The store's etag for the version this object was read as or last saved as; not persisted.
    etag: str | None = None

    @property
    def needs_episode(self) -> bool:
        """Whether there is something for the orchestrator to replay now."""
        if self.status.is_terminal:
            return False
        return bool(self.inbox) or not self.history

    def retry_for_attempt(self, seq: int) -> RetryState | None:
        return next((r for r in self.retries.values() if r.current_seq == seq), None)

    def retry_for_timer(self, seq: int) -> RetryState | None:
        return next((r for r in self.retries.values() if r.timer_seq == seq), None)

    def to_json(self) -> dict[str, Any]:
        return {
            "schemaVersion": STATE_SCHEMA_VERSION,
            "instanceId": self.instance_id,
            "name": self.name,
            "executionId": self.execution_id,
            "status": self.status.value,
            "input": self.input,
            "output": self.output,
            "customStatus": self.custom_status,
            "createdTime": format_timestamp(self.created_time),
            "lastUpdatedTime": format_timestamp(self.last_updated_time),
            "history": self.history,
            "effects": [asdict(e) for e in self.effects],
            "nextSeq": self.next_seq,
            "inbox": self.inbox,
            "activities": [asdict(a) for a in self.activities.values()],
            "retries": [asdict(r) for r in self.retries.values()],
            "timers": [
                {"seq": t.seq, "fireAt": format_timestamp(t.fire_at), "retryOf": t.retry_of}
                for t in self.timers.values()
            ],
            "awaitingOpenTasks": self.awaiting_open_tasks,
            "carryover": self.carryover,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any], *, etag: str | None = None) -> InstanceState:
        activities = [ActivityCall(**a) for a in data.get("activities", [])]
        retries = [RetryState(**r) for r in data.get("retries", [])]
        timers = [
            PendingTimer(t["seq"], parse_timestamp(t["fireAt"]), t.get("retryOf"))
            for t in data.get("timers", [])
        ]
        return cls(
            instance_id=data["instanceId"],
            name=data["name"],
            execution_id=data["executionId"],
            status=RuntimeStatus(data["status"]),
            input=data.get("input"),
            output=data.get("output"),
            custom_status=data.get("customStatus"),
            created_time=parse_timestamp(data["createdTime"]),
            last_updated_time=parse_timestamp(data["lastUpdatedTime"]),
            history=data.get("history", []),
            effects=[RecordedEffect(**e) for e in data.get("effects", [])],
            next_seq=data.get("nextSeq", 0),
            inbox=data.get("inbox", []),
            activities={a.seq: a for a in activities},
            retries={r.first_seq: r for r in retries},
            timers={t.seq: t for t in timers},
            awaiting_open_tasks=data.get("awaitingOpenTasks", False),
            carryover=data.get("carryover", []),
            etag=etag,
        )
