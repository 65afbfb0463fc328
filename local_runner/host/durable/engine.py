"""The in-process durable engine: runs orchestrations through the real SDK, as the extension does.

    store = InstanceStore.from_connection_string(connection_string, "PactaRunner")
    engine = OrchestrationEngine(store, orchestrators={"run_task": handle}, run_activity=call,
                                 clock=SystemClock(), task_hub="PactaRunner")
    engine.start()                        # background scheduler thread
    engine.start_new("run_task", "run-1", json.dumps(request))
    ...
    engine.stop()

Tests drive it without the thread: `engine.run_until_idle()` does everything runnable now and
returns when only future timers or external events are left; a `ManualClock` moves time.

Every change to an instance is written through to the store before anything acts on it, so a new
engine over the same store resumes where another stopped: it reloads the unfinished instances,
fires their timers when due and runs again the activities that were scheduled but never answered
(at least once, as Durable Functions does). An activity's answer and a timer that fired are written with
the episode they wake, which runs next, as DTFx's Azure Storage provider writes a TaskCompleted or
TimerFired message into the history only when it commits the episode that took the message in
(AzureStorageOrchestrationService.CompleteTaskOrchestrationWorkItemAsync, DurableTask.AzureStorage);
one lost with its engine before that episode comes again (the activity runs again, the timer fires
again). Episodes of one instance never overlap (one lock per instance); episodes of different instances run
at once on a pool of `orchestrator_workers` threads, as DTFx runs up to MaxConcurrentTaskOrchestrationWorkItems
orchestration work items at once (WorkItemDispatcher.DispatchAsync, DurableTask.Core; the extension sets it
from host.json's maxConcurrentOrchestratorFunctions, AzureStorageDurabilityProviderFactory.cs L200), and
activities on a pool of `activity_workers` (maxConcurrentActivityFunctions, L201).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import traceback
import uuid
import weakref
from collections.abc import Callable, Collection, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import datetime
from typing import Any, TypeVar

from local_runner.host.clock import Clock
from local_runner.host.durable import episode
from local_runner.host.durable.actions import Orchestrator
from local_runner.host.durable.errors import (
    InstanceExistsError,
    InstanceGoneError,
    InstanceNotFoundError,
    OrchestratorNotFoundError,
    StoreConflictError,
)
from local_runner.host.durable.history import HistoryEvent
from local_runner.host.durable.state import ActivityCall, InstanceState, RuntimeStatus
from local_runner.host.durable.status import to_status
from local_runner.host.durable.store import InstanceStore

logger = logging.getLogger(__name__)

# (activity name, input JSON) -> result JSON; raises when the activity fails.
ActivityRunner = Callable[[str, str | None], str]
# host.json extensions.durableTask.maxConcurrentActivityFunctions and maxConcurrentOrchestratorFunctions in
# this app (the host passes what host.json says).
DEFAULT_ACTIVITY_WORKERS = 8
DEFAULT_ORCHESTRATOR_WORKERS = 8
# The scheduler looks again at least this often (clock seconds), even when nothing woke it.
IDLE_RECHECK_SECONDS = 1.0
_ACTIVE = {RuntimeStatus.PENDING, RuntimeStatus.RUNNING, RuntimeStatus.CONTINUED_AS_NEW}
T = TypeVar("T")


class OrchestrationEngine:
    def __init__(
        self,
        store: InstanceStore,
        *,
        orchestrators: Mapping[str, Orchestrator],
        run_activity: ActivityRunner,
        clock: Clock,
        task_hub: str,
        activity_workers: int = DEFAULT_ACTIVITY_WORKERS,
        orchestrator_workers: int = DEFAULT_ORCHESTRATOR_WORKERS,
    ) -> None:
        self._store = store
        self._orchestrators = dict(orchestrators)
        self._run_activity = run_activity
        self._clock = clock
        self.task_hub = task_hub
        self._executor = ThreadPoolExecutor(activity_workers, thread_name_prefix="durable-activity")
        self._episodes = ThreadPoolExecutor(orchestrator_workers, thread_name_prefix="durable-orchestrator")
        self._states: dict[str, InstanceState] = {}
        # One lock per instance, alive while someone holds or waits for it (so finished runs leave none behind).
        self._locks: weakref.WeakValueDictionary[str, Any] = weakref.WeakValueDictionary()
        self._guard = threading.Lock()
        self._running: set[tuple[str, str, int]] = set()
        # Instances with an episode on the episode pool: the scheduler leaves them alone until it is over.
        self._replaying: set[str] = set()
        # Instances whose write failed: dropped from memory, taken up again from the store.
        self._evicted: set[str] = set()
        # Instances changed since the scheduler last looked at them (a round looks at these only), the
        # earliest timer it knows of, and when it next looks at every instance anyway (see `_to_visit`).
        self._dirty: set[str] = set()
        self._next_timer: datetime | None = None
        self._next_sweep = 0.0
        self._loaded = False
        # `_version` counts every change, `_busy` the episodes and activities under way.
        self._changed = threading.Condition()
        self._version = 0
        self._busy = 0
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._stopped = False
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        """Load the unfinished instances and start the scheduler thread."""
        self._ensure_loaded()
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._loop, name="durable-scheduler", daemon=True
            )
            self._thread.start()

    def stop(self, timeout: float = 10.0, *, wait_for_activities: bool = False) -> None:
        """Stop scheduling and drop the answers of activities still running.

        As after a crash, the next engine over the store runs those activities again.
        `wait_for_activities` blocks until the running ones have returned.
        """
        self._stopping.set()
        self._stopped = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        self._episodes.shutdown(wait=True, cancel_futures=True)  # an episode under way still writes its state
        self._executor.shutdown(wait=wait_for_activities, cancel_futures=True)

    def __enter__(self) -> OrchestrationEngine:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    # -- client operations -----------------------------------------------------------------------

    def start_new(
        self, name: str, instance_id: str | None = None, input_json: str | None = None
    ) -> str:
        """Create an instance (Pending until its first episode); returns its id.

        Raises `OrchestratorNotFoundError` for an unregistered name and `InstanceExistsError` when
        the id belongs to an instance that has not finished; a finished one is replaced.
        """
        if name not in self._orchestrators:
            raise OrchestratorNotFoundError(name, list(self._orchestrators))
        instance_id = instance_id or uuid.uuid4().hex
        with self._lock(instance_id):
            state = episode.new_instance(name, instance_id, input_json, self._clock.now())
            with self._guard:
                known = instance_id in self._states
            if known or not self._create(state):
                existing = self._find(instance_id)
                if existing is not None and not existing.status.is_terminal:
                    raise InstanceExistsError(instance_id, existing.status.value)
                state.etag = existing.etag if existing is not None else None
                self._save(state)
        logger.info("Started orchestration %s (%s)", instance_id, name,
                    extra={"instance_id": instance_id})
        self._notify(instance_id)
        return instance_id

    def raise_event(self, instance_id: str, name: str, data_json: str | None = None) -> None:
        """Queue an external event; `InstanceNotFoundError` / `InstanceGoneError` if it can't."""

        def change(state: InstanceState) -> None:
            episode.raise_event(state, name, data_json, self._clock.now())

        self._change_active(instance_id, change)
        logger.info("Raised event %s on %s", name, instance_id, extra={"instance_id": instance_id})

    def terminate(self, instance_id: str, reason: str) -> None:
        """End the instance now, as Terminated with `reason` as its output."""

        def change(state: InstanceState) -> None:
            episode.terminate(state, reason, self._clock.now())

        self._change_active(instance_id, change)
        logger.info("Terminated %s: %s", instance_id, reason, extra={"instance_id": instance_id})

    def get_status(
        self,
        instance_id: str,
        *,
        show_history: bool = False,
        show_history_output: bool = False,
        show_input: bool = True,
    ) -> dict[str, Any] | None:
        """The extension's status JSON for the instance, or None if there is no such instance."""
        with self._lock(instance_id):
            state = self._find(instance_id)
            if state is None:
                return None
            return to_status(
                state, show_history=show_history, show_history_output=show_history_output,
                show_input=show_input,
            )

    def get_history(self, instance_id: str) -> list[HistoryEvent]:
        """The current execution's raw history, as the SDK replays it."""
        with self._lock(instance_id):
            state = self._find(instance_id)
            if state is None:
                raise InstanceNotFoundError(instance_id, self.task_hub)
            return [dict(event) for event in state.history]

    def list_instances(
        self,
        *,
        runtime_status: Collection[str] | None = None,
        created_from: datetime | None = None,
        created_to: datetime | None = None,
        instance_id_prefix: str | None = None,
        show_input: bool = True,
    ) -> list[dict[str, Any]]:
        """Status JSON of the instances matching all the filters: oldest first, then by id."""
        wanted = set(runtime_status) if runtime_status else None
        matches = []
        for instance_id in self._all_instance_ids():
            if instance_id_prefix and not instance_id.startswith(instance_id_prefix):
                continue
            with self._lock(instance_id):
                state = self._find(instance_id)
                if state is None or (wanted is not None and state.status.value not in wanted):
                    continue
                if created_from is not None and state.created_time < created_from:
                    continue
                if created_to is not None and state.created_time > created_to:
                    continue
                key = (state.created_time, instance_id)
                matches.append((key, to_status(state, show_input=show_input)))
        return [status for _, status in sorted(matches, key=lambda m: m[0])]

    # -- test drivers ----------------------------------------------------------------------------

    def run_until_idle(self, timeout: float = 30.0) -> None:
        """Do all work runnable now, in this thread and the activity pool, until none is left.

        Returns when only timers due later (by the clock) or external events not yet raised could
        move an instance; raises TimeoutError if work is still going on after `timeout` seconds.
        """
        deadline = time.monotonic() + timeout
        while True:
            with self._changed:
                seen = self._version
            if self._pump():
                continue
            with self._changed:
                if self._busy == 0 and self._version == seen:
                    return
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(
                        f"The durable engine was still busy after {timeout}s "
                        f"({self._busy} episodes or activities under way)."
                    )
                if self._version == seen:
                    self._changed.wait(remaining)

    def wait_for_status(
        self, instance_id: str, statuses: Collection[str], timeout: float = 30.0
    ) -> dict[str, Any]:
        """Block until the instance is in one of `statuses` (needs `start()` or another driver)."""
        deadline = time.monotonic() + timeout
        while True:
            with self._changed:
                seen = self._version
            status = self.get_status(instance_id)
            if status is not None and status["runtimeStatus"] in statuses:
                return status
            with self._changed:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    current = status["runtimeStatus"] if status else "missing"
                    raise TimeoutError(
                        f"Instance {instance_id!r} is {current}, not one of {sorted(statuses)}, "
                        f"after {timeout}s."
                    )
                if self._version == seen:
                    self._changed.wait(remaining)

    # -- scheduling ------------------------------------------------------------------------------

    def _loop(self) -> None:
        while not self._stopping.is_set():
            self._wake.clear()
            try:
                if self._pump():
                    continue
            except Exception:
                logger.exception("The durable scheduler failed a round; it carries on")
            self._clock.wait(self._wake, self._seconds_to_next_timer())

    def _pump(self) -> bool:
        """One round: fire due timers, start unanswered activities, start one episode per instance that needs one.

        An instance whose episode is still under way is looked at again once that episode is over."""
        self._ensure_loaded()
        did = self._reload_evicted()
        now = self._clock.now()
        for instance_id in self._to_visit(now):
            if self._is_replaying(instance_id):
                continue
            did |= self._fire_timers(instance_id, now)
            did |= self._redispatch(instance_id)
            if self._start_episode(instance_id):
                did = True
            else:
                self._note_next_timer(instance_id)
        return did

    def _is_replaying(self, instance_id: str) -> bool:
        with self._guard:
            if instance_id in self._replaying:
                self._dirty.add(instance_id)
                return True
            return False

    def _start_episode(self, instance_id: str) -> bool:
        """Hand the instance's next episode to the episode pool, if it needs one."""
        with self._lock(instance_id):
            state = self._states.get(instance_id)
            if state is None or not state.needs_episode:
                return False
        with self._guard:
            if instance_id in self._replaying or self._stopped:
                return False
            self._replaying.add(instance_id)
        with self._changed:
            self._busy += 1
        try:
            self._episodes.submit(self._episode, instance_id)
        except RuntimeError:  # stop() shut the pool down meanwhile; the next engine runs it
            self._episode_over(instance_id)
            return False
        return True

    def _episode(self, instance_id: str) -> None:
        try:
            self._run_episode(instance_id)
            self._note_next_timer(instance_id)
        except Exception:
            logger.exception("The durable scheduler failed an episode of %s; it carries on", instance_id,
                             extra={"instance_id": instance_id})
        finally:
            self._episode_over(instance_id)

    def _episode_over(self, instance_id: str) -> None:
        with self._guard:
            self._replaying.discard(instance_id)
        with self._changed:
            self._busy -= 1
        self._notify(instance_id)  # looked at once more: another event, a new generation's first episode

    def _to_visit(self, now: datetime) -> list[str]:
        """The instances this round looks at: those changed since the last round; every unfinished one when a
        timer is due, and at least every IDLE_RECHECK_SECONDS whatever happened, so a round costs what changed,
        not what is running (a burst of runs keeps hundreds of instances waiting on their jobs)."""
        with self._guard:
            due = self._next_timer is not None and self._next_timer <= now
            if not due and time.monotonic() < self._next_sweep:
                changed, self._dirty = self._dirty, set()
                return [i for i in changed if (s := self._states.get(i)) is not None and not s.status.is_terminal]
            self._dirty.clear()
            self._next_timer = None
            self._next_sweep = time.monotonic() + IDLE_RECHECK_SECONDS
        return self._active_ids()

    def _note_next_timer(self, instance_id: str) -> None:
        with self._lock(instance_id):
            state = self._states.get(instance_id)
            when = episode.next_timer_due(state) if state is not None and not state.status.is_terminal else None
        if when is not None:
            with self._guard:
                if self._next_timer is None or when < self._next_timer:
                    self._next_timer = when

    def _seconds_to_next_timer(self) -> float:
        with self._guard:
            due = self._next_timer
        if due is None:
            return IDLE_RECHECK_SECONDS
        until = (due - self._clock.now()).total_seconds()
        return max(0.0, min(IDLE_RECHECK_SECONDS, until))

    def _fire_timers(self, instance_id: str, now: datetime) -> bool:
        with self._lock(instance_id):
            state = self._states.get(instance_id)
            if state is None or state.status.is_terminal or not episode.fire_due_timers(state, now):
                return False
        self._notify(instance_id)  # written with the episode it wakes
        return True

    def _redispatch(self, instance_id: str) -> bool:
        with self._lock(instance_id):
            state = self._states.get(instance_id)
            if state is None or state.status.is_terminal:
                return False
            execution_id, calls = state.execution_id, list(state.activities.values())
        return self._dispatch(instance_id, execution_id, calls)

    def _run_episode(self, instance_id: str) -> None:
        with self._lock(instance_id):
            state = self._states.get(instance_id)
            if state is None or not state.needs_episode:
                return
            state, result = self._replay(state, self._clock.now())
            if not self._save_or_forget(state):
                return
            execution_id, status = state.execution_id, state.status
        self._report(instance_id, status, result)
        self._dispatch(instance_id, execution_id, result.dispatch)

    def _replay(
        self, state: InstanceState, now: datetime
    ) -> tuple[InstanceState, episode.EpisodeResult]:
        """Run the episode; if the engine itself fails at it, fail the stored instance loudly."""
        orchestrator = self._orchestrators.get(state.name)
        if orchestrator is None:
            message = (
                f"Orchestrator function {state.name!r} is not registered in this app any more; "
                "the instance cannot be replayed."
            )
        else:
            try:
                return state, episode.run_episode(state, orchestrator, now)
            except Exception as exc:
                logger.exception("The durable host could not run an episode of %s",
                                 state.instance_id, extra={"instance_id": state.instance_id})
                message = f"The in-process durable host failed to run this orchestration: {exc!r}"
                stored = self._store.get(state.instance_id)
                state = stored if stored is not None else state
        episode.fail(state, message, now)
        return state, episode.EpisodeResult(error=message)

    def _report(
        self, instance_id: str, status: RuntimeStatus, result: episode.EpisodeResult
    ) -> None:
        extra = {"instance_id": instance_id}
        if result.nondeterministic:
            logger.error("Orchestration %s failed: %s", instance_id, result.error, extra=extra)
        elif result.error is not None:
            logger.warning("Orchestration %s failed: %s", instance_id, result.error, extra=extra)
        elif status is not RuntimeStatus.RUNNING:
            logger.info("Orchestration %s is %s", instance_id, status.value, extra=extra)

    def _dispatch(self, instance_id: str, execution_id: str, calls: list[ActivityCall]) -> bool:
        started = False
        for call in calls:
            key = (instance_id, execution_id, call.seq)
            with self._guard:
                if key in self._running or self._stopped:
                    continue
                self._running.add(key)
            with self._changed:
                self._busy += 1
            try:
                self._executor.submit(self._call_activity, instance_id, execution_id, call)
            except RuntimeError:  # stop() shut the pool down meanwhile; the next engine runs it
                self._settle(instance_id, execution_id, call.seq)
                continue
            started = True
        return started

    def _call_activity(self, instance_id: str, execution_id: str, call: ActivityCall) -> None:
        try:
            result_json: str | None = None
            failure: tuple[str, str] | None = None
            try:
                result_json = self._run_activity(call.name, call.input)
            except Exception as exc:
                logger.warning("Activity %s of %s failed: %s", call.name, instance_id, exc,
                               extra={"instance_id": instance_id}, exc_info=True)
                failure = (
                    f"Activity function '{call.name}' failed: {exc}",
                    "".join(traceback.format_exception(exc)),
                )
            if self._stopped:
                return
            with self._lock(instance_id):  # written with the episode it wakes (`_settle` wakes the scheduler)
                state = self._states.get(instance_id)
                if state is not None:
                    episode.record_activity_result(
                        state, execution_id, call.seq, self._clock.now(),
                        result_json="null" if result_json is None else result_json, failure=failure,
                    )
        finally:
            self._settle(instance_id, execution_id, call.seq)

    def _settle(self, instance_id: str, execution_id: str, seq: int) -> None:
        """An activity call is over (answered, dropped or never started)."""
        with self._guard:
            self._running.discard((instance_id, execution_id, seq))
        with self._changed:
            self._busy -= 1
        self._notify(instance_id)

    # -- state and storage -----------------------------------------------------------------------

    def _ensure_loaded(self) -> None:
        with self._guard:
            if self._loaded:
                return
            self._loaded = True
        loaded = 0
        for state in self._store.list_states(statuses=_ACTIVE):
            with self._guard:
                if state.instance_id not in self._states:
                    self._states[state.instance_id] = state
                    loaded += 1
        if loaded:
            logger.info("Resuming %d unfinished orchestration(s) from %s",
                        loaded, self._store.container_name)

    def _reload_evicted(self) -> bool:
        """Take up again from the store every instance whose last write failed; True if any came back.

        DTFx abandons a work item it could not commit, and the instance's messages are processed
        again from storage (DurableTask.Core v2.17.1 WorkItemDispatcher.ProcessWorkItemAsync L357-448:
        `AbortWorkItem`, which TaskOrchestrationDispatcher L75 sets to
        AbandonTaskOrchestrationWorkItemAsync). So an instance is never forgotten because storage was
        down when it changed: the round after storage answers again takes it up where it was stored.
        """
        with self._guard:
            evicted = sorted(self._evicted)
        back = False
        for instance_id in evicted:
            with self._lock(instance_id):
                try:
                    state = self._store.get(instance_id)
                except Exception:  # storage still unreachable: the next round tries again
                    continue
                with self._guard:
                    self._evicted.discard(instance_id)
                    if state is not None and not state.status.is_terminal and instance_id not in self._states:
                        self._states[instance_id] = state
                        self._dirty.add(instance_id)
                        back = True
        if back:
            logger.info("Took up %d orchestration(s) again after failed writes", len(evicted))
        return back

    def _active_ids(self) -> list[str]:
        with self._guard:
            return [i for i, s in self._states.items() if not s.status.is_terminal]

    def _all_instance_ids(self) -> list[str]:
        with self._guard:
            cached = set(self._states)
        return sorted(cached | set(self._store.list_instance_ids()))

    @contextmanager
    def _lock(self, instance_id: str) -> Iterator[None]:
        with self._guard:
            lock = self._locks.get(instance_id)
            if lock is None:
                lock = self._locks[instance_id] = threading.RLock()
        with lock:
            yield

    def _find(self, instance_id: str) -> InstanceState | None:
        """The instance (the caller holds its lock): this engine's copy, else the store's."""
        with self._guard:
            state = self._states.get(instance_id)
        if state is not None:
            return state
        state = self._store.get(instance_id)
        with self._guard:
            self._evicted.discard(instance_id)
            if state is not None and not state.status.is_terminal:
                self._states[instance_id] = state
                self._dirty.add(instance_id)
        return state

    def _change_active(self, instance_id: str, change: Callable[[InstanceState], T]) -> T:
        with self._lock(instance_id):
            state = self._find(instance_id)
            if state is None:
                raise InstanceNotFoundError(instance_id, self.task_hub)
            if state.status.is_terminal:
                raise InstanceGoneError(instance_id, state.status.value)
            result = change(state)
            self._save(state)
        self._notify(instance_id)
        return result

    def _save(self, state: InstanceState) -> None:
        """Write through; on failure, replace this engine's changed copy with the stored one.

        A finished instance is not kept in memory: the store answers for it from then on, so the
        engine's memory holds the unfinished instances only, however many runs came before.
        """
        try:
            self._store.save(state)
        except Exception:
            with self._guard:
                self._states.pop(state.instance_id, None)
                self._evicted.add(state.instance_id)
            with contextlib.suppress(Exception):
                self._find(state.instance_id)
            raise
        with self._guard:
            if state.status.is_terminal:
                self._states.pop(state.instance_id, None)
            else:
                self._states[state.instance_id] = state

    def _create(self, state: InstanceState) -> bool:
        """Write a new instance unless one is stored under its id (a conditional create); whether it was written.

        A new id, the usual case, so costs no read of the store before the write."""
        try:
            self._save(state)
        except StoreConflictError:
            return False
        return True

    def _save_or_forget(self, state: InstanceState) -> bool:
        try:
            self._save(state)
        except StoreConflictError as exc:
            logger.warning("%s; dropped this engine's change", exc.message,
                           extra={"instance_id": state.instance_id})
            return False
        return True

    def _notify(self, instance_id: str | None = None) -> None:
        """Something changed (in `instance_id`, if given): wake the scheduler and the waiters."""
        if instance_id is not None:
            with self._guard:
                self._dirty.add(instance_id)
        with self._changed:
            self._version += 1
            self._changed.notify_all()
        self._wake.set()
