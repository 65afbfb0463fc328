"""Run records in the `runs` table: one row per run, rejected uploads included.

Writes are optimistic (etag-conditional) and monotonic: a record that reached a terminal status
never changes again, so a late or replayed activity cannot turn `succeeded` back into `running`.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.data.tables import TableClient, TableServiceClient, UpdateMode

from orchestrations.contracts import RunRecord, RunStatus
from orchestrations.errors import RunnerOrchestratorError

logger = logging.getLogger(__name__)

PARTITION = "run"
# Properties stored as JSON text: Table storage has no list or object type.
_JSON_FIELDS = ("outputs", "error", "cancellation")
# Optimistic writes rarely collide (one orchestration per run); give up loudly if they keep doing so.
MAX_WRITE_ATTEMPTS = 5


class RunNotFoundError(RunnerOrchestratorError):
    def __init__(self, run_id: str) -> None:
        super().__init__("run_not_found", f"No run {run_id} in the runs table.")


class RunStore:
    """The `runs` table. Safe to share between threads (each call is one or two HTTP requests)."""

    def __init__(self, table: TableClient) -> None:
        self._table = table

    @property
    def table(self) -> TableClient:
        """The table itself, which the concurrency cap's rows share (orchestrations/run_slots.py)."""
        return self._table

    @classmethod
    def from_connection_string(cls, connection_string: str, table_name: str) -> RunStore:
        return cls.open(TableServiceClient.from_connection_string(connection_string), table_name)

    @classmethod
    def open(cls, service: TableServiceClient, table_name: str) -> RunStore:
        """The store on `table_name` of `service`, creating the table the first time."""
        with contextlib.suppress(ResourceExistsError):
            service.create_table(table_name)
        return cls(service.get_table_client(table_name))

    def create_if_absent(self, record: RunRecord) -> tuple[RunRecord, bool]:
        """Insert the record unless the run exists; returns the stored record and whether it was new."""
        try:
            self._table.create_entity(_to_entity(record))
            return record, True
        except ResourceExistsError:
            return self.get_run(record.run_id), False

    def get_run(self, run_id: str) -> RunRecord:
        try:
            entity = self._table.get_entity(PARTITION, run_id)
        except ResourceNotFoundError:
            raise RunNotFoundError(run_id) from None
        return _from_entity(entity)

    def update_run(self, run_id: str, change: Callable[[RunRecord], RunRecord | None]) -> RunRecord:
        """Apply `change` to the current record and write it back, unless the run already ended.

        `change` returns the new record, or None to leave the record as it is.
        """
        for _ in range(MAX_WRITE_ATTEMPTS):
            try:
                entity = self._table.get_entity(PARTITION, run_id)
            except ResourceNotFoundError:
                raise RunNotFoundError(run_id) from None
            current = _from_entity(entity)
            if current.status.is_terminal:
                return current
            updated = change(current)
            if updated is None or updated == current:
                return current
            try:
                self._table.update_entity(
                    _to_entity(updated),
                    mode=UpdateMode.REPLACE,
                    etag=entity.metadata["etag"],
                    match_condition=MatchConditions.IfNotModified,
                )
                return updated
            except HttpResponseError as exc:
                if exc.status_code != 412:
                    raise
                logger.debug("run %s changed while updating; retrying", run_id, extra={"run_id": run_id})
        raise RunnerOrchestratorError(
            "run_update_conflict", f"Run {run_id} kept changing; gave up after {MAX_WRITE_ATTEMPTS} attempts."
        )

    def list_runs(self, *, status: RunStatus | None = None, limit: int = 50) -> list[RunRecord]:
        """The most recently requested runs first, optionally of one status."""
        query = f"PartitionKey eq '{PARTITION}'"
        if status is not None:
            query += f" and status eq '{status.value}'"
        records = [_from_entity(entity) for entity in self._table.query_entities(query)]
        records.sort(key=lambda record: record.requested_at, reverse=True)
        return records[:limit]


def _to_entity(record: RunRecord) -> dict[str, Any]:
    entity: dict[str, Any] = {"PartitionKey": PARTITION, "RowKey": record.run_id}
    for name, value in record.model_dump(mode="python", exclude={"run_id"}).items():
        if name in _JSON_FIELDS:
            entity[name] = json.dumps(value, default=str)
        elif isinstance(value, RunStatus):
            entity[name] = value.value
        elif value is not None:
            entity[name] = value
    return entity


def _from_entity(entity: dict[str, Any]) -> RunRecord:
    fields: dict[str, Any] = {"run_id": entity["RowKey"]}
    for name in RunRecord.model_fields:
        if name in entity and name != "run_id":
            value = entity[name]
            fields[name] = json.loads(value) if name in _JSON_FIELDS else _plain(value)
    return RunRecord.model_validate(fields)


def _plain(value: Any) -> Any:
    # The tables SDK returns TablesEntityDatetime (a datetime subclass) and EntityProperty wrappers.
    if isinstance(value, datetime):
        return datetime.fromisoformat(value.isoformat())
    return getattr(value, "value", value)
