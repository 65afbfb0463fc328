"""A new engine over the same store resumes what the last one left exactly once, or fails loudly."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import azure.durable_functions as df
import pytest
from azure.core.exceptions import ServiceRequestError

from local_runner.host.clock import ManualClock
from local_runner.host.durable import InstanceStore, OrchestrationEngine
from tests.conftest import wait_for
from tests.local_runner.durable.conftest import Activities, EngineFactory, outcome, summarize

pytestmark = pytest.mark.azurite
COOL_DOWN = timedelta(minutes=5)
WAIT_SECONDS = 10


def job(context: df.DurableOrchestrationContext) -> Any:
    started = yield context.call_activity("start_job", context.get_input())
    yield context.create_timer(context.current_utc_datetime + COOL_DOWN)
    recorded = yield context.call_activity("record", started)
    return recorded


def test_a_pending_timer_fires_under_the_next_engine_once_the_clock_passes_it(
    make_engine: EngineFactory, clock: ManualClock
):
    activities = Activities({"start_job": lambda name: f"{name}-exec", "record": lambda ref: ref})
    first = make_engine({"job": job}, activities)
    instance_id = first.start_new("job", "job-1", '"pacta"')
    first.run_until_idle()
    first.stop()

    second = make_engine({"job": job}, activities)
    second.run_until_idle()
    assert outcome(second, instance_id) == ("Running", None)

    clock.advance(COOL_DOWN)
    second.run_until_idle()

    assert outcome(second, instance_id) == ("Completed", "pacta-exec")
    assert (activities.count("start_job"), activities.count("record")) == (1, 1)


def test_an_activity_left_unanswered_by_a_stopped_engine_runs_again_and_completes_once(
    make_engine: EngineFactory, clock: ManualClock
):
    entered, release = threading.Event(), threading.Event()
    calls: list[str] = []

    def start_job(name: str) -> str:
        calls.append(name)
        if len(calls) == 1:  # the first engine "crashes" while this call is still running
            entered.set()
            release.wait(WAIT_SECONDS)
            return "from-the-crashed-engine"
        return f"{name}-exec"

    activities = Activities({"start_job": start_job, "record": lambda ref: ref})
    first = make_engine({"job": job}, activities)
    first.start()
    instance_id = first.start_new("job", "job-2", '"pacta"')
    assert entered.wait(WAIT_SECONDS)
    first.stop()

    second = make_engine({"job": job}, activities)
    second.run_until_idle()
    clock.advance(COOL_DOWN)
    second.run_until_idle()
    release.set()
    first.stop(wait_for_activities=True)
    second.run_until_idle()

    assert outcome(second, instance_id) == ("Completed", "pacta-exec")
    assert calls == ["pacta", "pacta"]
    assert activities.count("record") == 1
    history = summarize(second.get_history(instance_id))
    assert history.count("TaskCompleted#0") == 1 and history.count("ExecutionCompleted") == 1


def test_an_instance_whose_orchestrator_is_gone_from_the_app_fails_with_the_reason(
    make_engine: EngineFactory,
):
    activities = Activities({"start_job": lambda name: name, "record": lambda ref: ref})
    first = make_engine({"job": job}, activities)
    instance_id = first.start_new("job", "job-3", '"pacta"')
    first.stop()

    second = make_engine({}, activities)
    second.run_until_idle()

    status, output = outcome(second, instance_id)
    assert status == "Failed"
    assert output.startswith("Orchestrator function 'job' is not registered in this app any more")


def test_a_reply_the_engine_cannot_read_fails_the_instance_instead_of_stalling_it(
    store: InstanceStore, clock: ManualClock, task_hub: str
):
    engine = OrchestrationEngine(
        store, orchestrators={"garbled": lambda request: "not json"},
        run_activity=Activities({}), clock=clock, task_hub=task_hub,
    )
    instance_id = engine.start_new("garbled", "garbled-1")

    engine.run_until_idle()

    status, output = outcome(engine, instance_id)
    assert status == "Failed"
    assert output.startswith("The in-process durable host failed to run this orchestration")


class StorageOutage(InstanceStore):
    """The test's store, unreachable while `down` is set (every read and write fails as a dropped connection)."""

    def __init__(self, store: InstanceStore) -> None:
        super().__init__(store._container)
        self.down = threading.Event()
        self.failed_writes = 0

    def get(self, instance_id: str) -> Any:
        self._fail_if_down()
        return super().get(instance_id)

    def save(self, state: Any) -> None:
        if self.down.is_set():
            self.failed_writes += 1
        self._fail_if_down()
        super().save(state)

    def _fail_if_down(self) -> None:
        if self.down.is_set():
            raise ServiceRequestError("storage is unreachable")


def test_an_instance_whose_write_failed_is_taken_up_again_from_the_store_when_storage_is_back(
    store: InstanceStore, clock: ManualClock, task_hub: str
):
    """DTFx abandons a work item it could not commit and processes the instance's messages again
    (DurableTask.Core v2.17.1 WorkItemDispatcher.ProcessWorkItemAsync L357-448, AbortWorkItem =
    AbandonTaskOrchestrationWorkItemAsync in TaskOrchestrationDispatcher L75): nothing from outside has
    to touch the instance for it to carry on."""
    outage = StorageOutage(store)
    activities = Activities({"start_job": lambda name: f"{name}-exec", "record": lambda ref: ref})
    engine = OrchestrationEngine(
        outage, orchestrators={"job": df.Orchestrator.create(job)}, run_activity=activities, clock=clock,
        task_hub=task_hub,
    )
    try:
        engine.start()
        instance_id = engine.start_new("job", "job-outage", '"pacta"')
        wait_for(lambda: any(e["EventType"] == 10 for e in engine.get_history(instance_id)), what="the cool-down timer")
        outage.down.set()
        clock.advance(COOL_DOWN)  # the timer fires; writing it fails
        wait_for(lambda: outage.failed_writes > 0, what="a failed write")

        outage.down.clear()
        # Only the engine's own rounds may bring it back: asking for its status would load it again.
        wait_for(lambda: activities.count("record") == 1, step=lambda: clock.advance(1), timeout=20)

        assert engine.wait_for_status(instance_id, {"Completed"})["output"] == "pacta-exec"
        assert (activities.count("start_job"), activities.count("record")) == (1, 1)
    finally:
        engine.stop()
