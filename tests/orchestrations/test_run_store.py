"""Run records on real Azurite: create once, update until terminal, list newest first reading only what is listed."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from azure.data.tables import TableClient, TableServiceClient

from orchestrations.contracts import RunError, RunRecord, RunStatus
from orchestrations.run_slots import RunSlots
from orchestrations.run_store import RunNotFoundError, RunStore, listing_key, run_rows

T0 = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


class EntityCounter:
    """A response hook that counts the entities the service sends back: a query's `value`, or one entity."""

    def __init__(self) -> None:
        self.read = 0

    def __call__(self, response: Any) -> None:
        http = response.http_response
        if response.http_request.method == "GET" and http.status_code == 200:
            body = json.loads(http.body() or b"{}")
            self.read += len(body["value"]) if "value" in body else int("PartitionKey" in body)


@pytest.fixture
def counter() -> EntityCounter:
    return EntityCounter()


@pytest.fixture
def service(azurite: str, counter: EntityCounter) -> TableServiceClient:
    return TableServiceClient.from_connection_string(azurite, raw_response_hook=counter)


@pytest.fixture
def store(service: TableServiceClient, unique_name: str) -> RunStore:
    return RunStore.open(service, unique_name)


def record(run_id: str, status: RunStatus = RunStatus.QUEUED, minutes: int = 0) -> RunRecord:
    at = T0 + timedelta(minutes=minutes)
    return RunRecord(run_id=run_id, status=status, task_type="parse_portfolio",
                     source_uri="az://uploads/parse_portfolio/a.csv", requested_at=at, updated_at=at)


def test_a_run_is_created_once(store: RunStore) -> None:
    first, created = store.create_if_absent(record("run-a"))
    again, created_again = store.create_if_absent(record("run-a", RunStatus.RUNNING))

    assert created and not created_again
    assert again == first and store.get_run("run-a").status is RunStatus.QUEUED


def test_record_round_trips_errors_outputs_and_times(store: RunStore) -> None:
    finished = record("run-b").model_copy(update={
        "status": RunStatus.FAILED, "outputs": ["az://runs/run-b/outputs/x.csv"], "outputs_count": 1,
        "error": RunError(code="runner_failed", message="boom"), "finished_at": T0 + timedelta(seconds=3),
    })
    store.create_if_absent(finished)

    assert store.get_run("run-b") == finished


def test_terminal_runs_never_change_again(store: RunStore) -> None:
    store.create_if_absent(record("run-c"))
    store.update_run("run-c", lambda r: r.model_copy(update={"status": RunStatus.SUCCEEDED}))

    after = store.update_run("run-c", lambda r: r.model_copy(update={"status": RunStatus.RUNNING}))

    assert after.status is RunStatus.SUCCEEDED


def test_unknown_run_is_named_in_the_error(store: RunStore) -> None:
    with pytest.raises(RunNotFoundError, match="run-missing"):
        store.get_run("run-missing")


def test_listing_is_newest_first_and_filters_by_status(store: RunStore) -> None:
    for minutes, status in [(0, RunStatus.QUEUED), (2, RunStatus.REJECTED), (1, RunStatus.REJECTED)]:
        store.create_if_absent(record(f"run-{minutes}", status, minutes))

    assert [r.run_id for r in store.list_runs()] == ["run-2", "run-1", "run-0"]
    assert [r.run_id for r in store.list_runs(status=RunStatus.REJECTED, limit=1)] == ["run-2"]


def test_listing_returns_the_newest_runs_up_to_the_limit_ties_by_run_id(store: RunStore) -> None:
    for minutes in [5, 0, 9, 3, 7, 1, 8]:
        store.create_if_absent(record(f"run-{minutes}", minutes=minutes))
    store.create_if_absent(record("run-8-twin", minutes=8))

    assert [r.run_id for r in store.list_runs(limit=4)] == ["run-9", "run-8", "run-8-twin", "run-7"]
    assert len(store.list_runs(limit=50)) == 8


def test_the_listing_shows_each_run_as_last_updated_under_its_new_status(store: RunStore) -> None:
    store.create_if_absent(record("run-moving"))
    store.create_if_absent(record("run-staying", minutes=1))

    store.update_run("run-moving", lambda r: r.model_copy(update={"status": RunStatus.RUNNING, "attempts": 1}))

    assert [r.run_id for r in store.list_runs(status=RunStatus.QUEUED)] == ["run-staying"]
    assert store.list_runs(status=RunStatus.RUNNING) == [store.get_run("run-moving")]
    assert store.list_runs()[1].attempts == 1


def test_a_listing_reads_at_most_limit_entities_and_the_marker(store: RunStore, counter: EntityCounter) -> None:
    for number in range(60):
        status = RunStatus.FAILED if number % 3 == 0 else RunStatus.SUCCEEDED
        store.create_if_absent(record(f"run-{number:03d}", status, minutes=number))
    slots = RunSlots(store.table)
    slots.join("run-waiting-1", T0)

    counter.read = 0
    listed = store.list_runs(limit=10)
    assert counter.read <= 11 and [r.run_id for r in listed] == [f"run-{n:03d}" for n in range(59, 49, -1)]

    counter.read = 0
    failed = store.list_runs(status=RunStatus.FAILED, limit=10)
    assert counter.read <= 11 and [r.run_id for r in failed] == [f"run-{n:03d}" for n in range(57, 27, -3)]
    assert slots.positions() == {"run-waiting-1": 1}


def test_runs_recorded_before_listing_copies_existed_are_listed_and_indexed_once(
    service: TableServiceClient, unique_name: str, counter: EntityCounter
) -> None:
    table = service.create_table(unique_name)  # as the store before listing copies left it: records only
    table.create_entity(run_rows(record("run-old-0", RunStatus.SUCCEEDED))[0])
    table.create_entity(run_rows(record("run-old-2", RunStatus.QUEUED, minutes=2))[0])
    store = RunStore.open(service, unique_name)
    store.create_if_absent(record("run-new", minutes=1))
    store.update_run("run-old-2", lambda r: r.model_copy(update={"status": RunStatus.RUNNING}))

    listed = store.list_runs()

    assert [(r.run_id, r.status) for r in listed] == [
        ("run-old-2", RunStatus.RUNNING), ("run-new", RunStatus.QUEUED), ("run-old-0", RunStatus.SUCCEEDED)]

    counter.read = 0
    assert [r.run_id for r in store.list_runs(limit=2)] == ["run-old-2", "run-new"]
    assert counter.read <= 3
    assert table.get_entity("run", listing_key("run-old-0", T0))["status"] == "succeeded"


def test_indexing_an_older_record_that_changes_meanwhile_lists_its_latest_state(
    service: TableServiceClient, unique_name: str
) -> None:
    table = service.create_table(unique_name)
    table.create_entity(run_rows(record("run-old-a"))[0])
    table.create_entity(run_rows(record("run-old-b", minutes=1))[0])
    meddling = _ChangesBeforeFirstTransaction(table, lambda: RunStore(table).update_run(
        "run-old-a", lambda r: r.model_copy(update={"status": RunStatus.RUNNING})))

    listed = RunStore(meddling).list_runs()  # type: ignore[arg-type]

    assert [(r.run_id, r.status) for r in listed] == [("run-old-b", RunStatus.QUEUED),
                                                       ("run-old-a", RunStatus.RUNNING)]


def test_an_update_that_lost_a_race_is_retried_and_the_listing_follows(store: RunStore) -> None:
    store.create_if_absent(record("run-raced"))
    calls = []

    def start(current: RunRecord) -> RunRecord:
        calls.append(current.status)
        if len(calls) == 1:  # another writer gets in between this read and this write
            store.update_run("run-raced", lambda r: r.model_copy(update={"execution_ref": "process:1"}))
        return current.model_copy(update={"status": RunStatus.RUNNING})

    updated = store.update_run("run-raced", start)

    assert len(calls) == 2 and updated.execution_ref == "process:1" and updated.status is RunStatus.RUNNING
    assert store.list_runs() == [store.get_run("run-raced")] == [updated]


def test_an_update_from_what_this_caller_stored_last_reads_nothing(store: RunStore, counter: EntityCounter) -> None:
    store.create_if_absent(record("run-chained"))
    starting = store.update_stored_run("run-chained", lambda r: r.model_copy(update={"status": RunStatus.STARTING}))
    read_before = counter.read

    running = store.update_stored_run(
        "run-chained", lambda r: r.model_copy(update={"status": RunStatus.RUNNING}), last=starting
    )

    assert counter.read == read_before
    assert store.get_run("run-chained") == running.record and running.record.status is RunStatus.RUNNING
    assert store.list_runs() == [running.record]


def test_an_update_from_a_version_changed_since_applies_the_change_to_the_record_as_it_is_now(
    store: RunStore,
) -> None:
    store.create_if_absent(record("run-moved"))
    starting = store.update_stored_run("run-moved", lambda r: r.model_copy(update={"status": RunStatus.STARTING}))
    store.update_run("run-moved", lambda r: r.model_copy(update={"execution_ref": "process:7"}))  # another writer
    seen: list[RunRecord] = []

    def mark_running(current: RunRecord) -> RunRecord:
        seen.append(current)
        return current.model_copy(update={"status": RunStatus.RUNNING})

    running = store.update_stored_run("run-moved", mark_running, last=starting)

    assert [r.execution_ref for r in seen] == [None, "process:7"]
    assert running.record.execution_ref == "process:7" and store.get_run("run-moved") == running.record


def test_an_update_from_a_version_of_a_run_that_ended_since_changes_nothing(store: RunStore) -> None:
    store.create_if_absent(record("run-ended"))
    starting = store.update_stored_run("run-ended", lambda r: r.model_copy(update={"status": RunStatus.STARTING}))
    store.update_run("run-ended", lambda r: r.model_copy(update={"status": RunStatus.CANCELLED}))

    after = store.update_stored_run(
        "run-ended", lambda r: r.model_copy(update={"status": RunStatus.RUNNING}), last=starting
    )

    assert after.record.status is RunStatus.CANCELLED and store.get_run("run-ended").status is RunStatus.CANCELLED


def test_an_update_may_not_move_the_run_in_the_listing(store: RunStore) -> None:
    store.create_if_absent(record("run-fixed"))

    with pytest.raises(ValueError, match="requested_at never changes"):
        store.update_run("run-fixed", lambda r: r.model_copy(update={"requested_at": T0 + timedelta(days=1)}))


class _ChangesBeforeFirstTransaction:
    """The table, but `change` runs once, just before the first transaction is sent: a concurrent writer."""

    def __init__(self, table: TableClient, change: Any) -> None:
        self._table, self._change = table, change

    def __getattr__(self, name: str) -> Any:
        return getattr(self._table, name)

    def submit_transaction(self, operations: Any) -> Any:
        if self._change is not None:
            change, self._change = self._change, None
            change()
        return self._table.submit_transaction(operations)
