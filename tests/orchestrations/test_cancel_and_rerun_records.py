"""The records and payloads of cancel and rerun: stored and read back on real Azurite, old rows still readable,
the cancel body bounded."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from azure.data.tables import TableServiceClient
from pydantic import ValidationError

from orchestrations.contracts import (
    MAX_CANCEL_REASON_CHARS,
    CancelBody,
    Cancellation,
    RunOutcome,
    RunRecord,
    RunStatus,
    StartJobResult,
)
from orchestrations.intake import derive_rerun_id, derive_run_id
from orchestrations.queries import is_run_id
from orchestrations.run_store import RunStore

T0 = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
ASKED = Cancellation(requested_by="alice", reason="wrong portfolio", requested_at=T0)


@pytest.fixture
def store(azurite: str, unique_name: str) -> RunStore:
    return RunStore.from_connection_string(azurite, unique_name)


def test_a_cancelled_rerun_round_trips_with_who_when_why_and_its_original(store: RunStore) -> None:
    cancelled = RunRecord(
        run_id="run-rerun-1", status=RunStatus.CANCELLED, task_type="parse_portfolio",
        source_uri="az://uploads/parse_portfolio/a.csv", source_etag='"0x1"', requested_at=T0, updated_at=T0,
        finished_at=T0, cancellation=ASKED, error=ASKED.to_error("its job was stopped"), rerun_of="run-original",
    )
    store.create_if_absent(cancelled)

    assert store.get_run("run-rerun-1") == cancelled
    assert cancelled.public_view()["cancellation"] == {
        "schema_version": 1, "requested_by": "alice", "reason": "wrong portfolio",
        "requested_at": "2026-11-27T12:00:00Z",
    }
    assert cancelled.public_view()["rerun_of"] == "run-original"


def test_a_record_written_before_cancel_and_rerun_existed_is_still_read(
    store: RunStore, azurite: str, unique_name: str
) -> None:
    old_row = {
        "PartitionKey": "run", "RowKey": "run-old", "schema_version": 1, "status": "succeeded",
        "task_type": "parse_portfolio", "source_uri": "az://uploads/parse_portfolio/a.csv", "requested_at": T0,
        "updated_at": T0, "attempt": 1, "attempts": 1, "outputs_count": 0, "outputs": "[]", "error": "null",
    }
    TableServiceClient.from_connection_string(azurite).get_table_client(unique_name).create_entity(old_row)

    old = store.get_run("run-old")

    assert old.cancellation is None and old.rerun_of is None and old.status is RunStatus.SUCCEEDED


def test_a_cancelled_outcome_and_only_one_carries_its_cancellation() -> None:
    RunOutcome(run_id="run-a", status=RunStatus.CANCELLED, cancellation=ASKED)
    with pytest.raises(ValidationError, match="cancelled outcome"):
        RunOutcome(run_id="run-a", status=RunStatus.CANCELLED)
    with pytest.raises(ValidationError, match="cancelled outcome"):
        RunOutcome(run_id="run-a", status=RunStatus.SUCCEEDED, cancellation=ASKED)
    assert StartJobResult(cancelled=ASKED).execution_ref is None
    with pytest.raises(ValidationError, match="not both"):
        StartJobResult(cancelled=ASKED, execution_ref="process:x", started_at=T0)


@pytest.mark.parametrize("body", [
    {"reason": "x" * (MAX_CANCEL_REASON_CHARS + 1)}, {"by": ""}, {"by": "eve\r\nforged"}, {"who": "eve"},
])
def test_a_cancel_body_is_bounded_printable_and_has_no_unknown_fields(body: dict[str, str]) -> None:
    with pytest.raises(ValidationError):
        CancelBody.model_validate(body)


def test_rerun_ids_are_run_ids_numbered_per_original_and_never_an_uploads() -> None:
    original = derive_run_id("uploads", "parse_portfolio/a.csv", '"0x1"')

    reruns = [derive_rerun_id(original, number) for number in (1, 2)]

    assert all(is_run_id(run_id) for run_id in reruns)
    assert len({original, *reruns}) == 3 and reruns[0] == derive_rerun_id(original, 1)
