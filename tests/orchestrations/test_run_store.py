"""Run records on real Azurite: create once, update until terminal, list newest first."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from orchestrations.contracts import RunError, RunRecord, RunStatus
from orchestrations.run_store import RunNotFoundError, RunStore

T0 = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


@pytest.fixture
def store(azurite: str, unique_name: str) -> RunStore:
    return RunStore.from_connection_string(azurite, unique_name)


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
