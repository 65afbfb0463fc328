"""Instances round-trip through their blob, and a stale copy can never overwrite a newer one."""

from __future__ import annotations

from datetime import timedelta

import pytest

from local_runner.host.clock import ManualClock
from local_runner.host.durable import InstanceStore, RuntimeStatus, StoreConflictError
from local_runner.host.durable.episode import new_instance
from local_runner.host.durable.history import event_raised
from local_runner.host.durable.state import ActivityCall, PendingTimer, RecordedEffect, RetryState
from local_runner.host.durable.store import instances_container_name

pytestmark = pytest.mark.azurite


def test_an_instance_reads_back_as_it_was_saved(store: InstanceStore, clock: ManualClock):
    state = new_instance("job", "run/1 with spaces", '{"a": 1}', clock.now())
    state.status = RuntimeStatus.RUNNING
    state.custom_status = {"phase": "running"}
    state.effects = [RecordedEffect("CallActivityWithRetry", "start_job", 0)]
    state.activities = {2: ActivityCall(2, "start_job", '"x"')}
    state.retries = {0: RetryState(0, "start_job", '"x"', {"maxNumberOfAttempts": 3}, 2, 2)}
    state.timers = {3: PendingTimer(3, clock.now() + timedelta(minutes=5))}
    state.next_seq = 4
    state.awaiting_open_tasks = True
    state.carryover = [event_raised(clock.now(), name="Go", input_json='"later"')]
    store.save(state)

    loaded = store.get("run/1 with spaces")

    assert loaded is not None and loaded.etag == state.etag
    assert loaded.to_json() == state.to_json()


def test_a_stale_copy_cannot_overwrite_a_newer_version(store: InstanceStore, clock: ManualClock):
    store.save(new_instance("job", "run-2", None, clock.now()))
    first, second = store.get("run-2"), store.get("run-2")
    assert first is not None and second is not None
    first.custom_status = "first writer"
    store.save(first)

    second.custom_status = "second writer"
    with pytest.raises(StoreConflictError, match="'run-2'"):
        store.save(second)
    with pytest.raises(StoreConflictError):
        store.save(new_instance("job", "run-2", None, clock.now()))  # no etag: create only


def test_listing_by_status_reads_the_status_from_blob_metadata(
    store: InstanceStore, clock: ManualClock
):
    for instance_id, status in (("a", RuntimeStatus.RUNNING), ("b", RuntimeStatus.COMPLETED)):
        state = new_instance("job", instance_id, None, clock.now())
        state.status = status
        store.save(state)

    assert store.list_instance_ids(statuses={RuntimeStatus.RUNNING}) == ["a"]
    assert sorted(store.list_instance_ids()) == ["a", "b"]


def test_a_task_hub_name_that_cannot_name_a_container_is_refused():
    assert instances_container_name("PactaRunner") == "pactarunner-instances"
    with pytest.raises(ValueError, match="task_hub 'pacta-runner'"):
        instances_container_name("pacta-runner")
