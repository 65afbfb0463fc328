"""Run records in the `runs` table: one row per run, rejected uploads included, and a copy of it that lists it.

Writes are optimistic (etag-conditional) and monotonic: a record that reached a terminal status
never changes again, so a late or replayed activity cannot turn `succeeded` back into `running`.

The partition "run" holds two rows per run, written together in one entity-group transaction (all or
nothing), so that they never disagree:

    RowKey "<run id>"                    the record, read and updated by its run id
    RowKey "~time~<countdown>~<run id>"  the same record again, for the listing: <countdown> is requested_at
                                         counted down (Table storage's "log tail" pattern)
    RowKey "~time~"                      the marker: every record has its listing copy

Table storage returns a partition in RowKey order, so the newest `limit` runs are the first `limit` rows
of the "~time~" range: a listing reads them and nothing else, whatever the number of runs. Run ids never
start with "~" (RUN_ID_PATTERN), so the records and the listing copies are two separate key ranges. The
copy's key comes from `requested_at` and the run id, which never change. Records written before the
listing copies existed get theirs the first time runs are listed (`_index_older_records`); a table this
module creates gets the marker at once. A host of the previous version that still writes records after
that (a rolling deployment) leaves its runs out of the listing until their next update: delete the row
"~time~" and the next listing indexes again.
The concurrency cap's rows live in other partitions of the same table (orchestrations/run_slots.py).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.data.tables import TableClient, TableServiceClient, TableTransactionError, UpdateMode

from orchestrations.contracts import RunRecord, RunStatus
from orchestrations.errors import RunnerOrchestratorError
from orchestrations.storage_transport import storage_transport

logger = logging.getLogger(__name__)

PARTITION = "run"
# Properties stored as JSON text: Table storage has no list or object type.
_JSON_FIELDS = ("outputs", "error", "cancellation")
# Optimistic writes rarely collide (one orchestration per run); give up loudly if they keep doing so.
MAX_WRITE_ATTEMPTS = 5
# The listing copies' key range; the first key of the range, the prefix alone, is the backfill's marker row.
INDEX_PREFIX = "~time~"
_INDEX_END = INDEX_PREFIX + ":"  # ":" sorts after every digit, so after every copy's key
_RECORDS_END = "~"  # run ids start with a letter or digit: every record sorts before "~"
# Microseconds since 0001-01-01 fit in 18 digits up to the year 9999; the copy's key counts down from this.
_TIME_DIGITS = 18
_TIME_ORIGIN = datetime.min.replace(tzinfo=UTC)
# An entity-group transaction takes at most 100 operations; the backfill writes two per record.
BACKFILL_CHUNK = 50
# Table storage answers at most 1,000 entities per request.
MAX_PAGE = 1000


class RunNotFoundError(RunnerOrchestratorError):
    def __init__(self, run_id: str) -> None:
        super().__init__("run_not_found", f"No run {run_id} in the runs table.")


@dataclass(frozen=True)
class StoredRun:
    """A run record with the etag it is stored under."""

    record: RunRecord
    etag: str


class RunStore:
    """The `runs` table. Safe to share between threads (each call is a request or a few)."""

    def __init__(self, table: TableClient) -> None:
        self._table = table

    @property
    def table(self) -> TableClient:
        """The table itself, which the concurrency cap's rows share (orchestrations/run_slots.py)."""
        return self._table

    @classmethod
    def from_connection_string(cls, connection_string: str, table_name: str) -> RunStore:
        service = TableServiceClient.from_connection_string(connection_string, transport=storage_transport())
        return cls.open(service, table_name)

    @classmethod
    def open(cls, service: TableServiceClient, table_name: str) -> RunStore:
        """The store on `table_name` of `service`, creating the table the first time (with the marker row: no
        record in it predates the listing copies)."""
        table = service.get_table_client(table_name)
        with contextlib.suppress(ResourceExistsError):
            service.create_table(table_name)
            table.upsert_entity(_marker())
        return cls(table)

    def create_if_absent(self, record: RunRecord) -> tuple[RunRecord, bool]:
        """Insert the record and its listing copy unless the run exists; returns the stored record and whether
        it was new."""
        try:
            self._table.submit_transaction([("create", row) for row in run_rows(record)])
            return record, True
        except TableTransactionError as exc:
            if exc.status_code != 409:
                raise
            return self.get_run(record.run_id), False

    def get_run(self, run_id: str) -> RunRecord:
        try:
            entity = self._table.get_entity(PARTITION, run_id)
        except ResourceNotFoundError:
            raise RunNotFoundError(run_id) from None
        return _from_entity(entity)

    def update_run(self, run_id: str, change: Callable[[RunRecord], RunRecord | None]) -> RunRecord:
        """Apply `change` to the current record and write it back, unless the run already ended.

        `change` returns the new record, or None to leave the record as it is; it may not change
        `requested_at`, which places the run in the listing. The record and its listing copy are written in
        one transaction, on the condition that nobody wrote the record since it was read.
        """
        return self.update_stored_run(run_id, change).record

    def update_stored_run(
        self, run_id: str, change: Callable[[RunRecord], RunRecord | None], *, last: StoredRun | None = None
    ) -> StoredRun:
        """`update_run`, starting from `last` (what this caller's previous update stored) instead of reading the
        record again; the record as stored now. The write is conditional on `last`'s etag all the same, so a
        record changed since is read again and `change` applied to that."""
        for _ in range(MAX_WRITE_ATTEMPTS):
            if last is not None:
                stored, last = last, None
            else:
                try:
                    stored = _stored(self._table.get_entity(PARTITION, run_id))
                except ResourceNotFoundError:
                    raise RunNotFoundError(run_id) from None
            current = stored.record
            if current.status.is_terminal:
                return stored
            updated = change(current)
            if updated is None or updated == current:
                return stored
            if updated.requested_at != current.requested_at:
                raise ValueError(f"run {run_id}: requested_at never changes (it places the run in the listing)")
            try:
                written = self._table.submit_transaction([
                    ("update", _to_entity(updated), _unchanged_since(stored.etag)),
                    ("upsert", _listing_entity(updated), {"mode": UpdateMode.REPLACE}),
                ])
                return StoredRun(updated, str(written[0]["etag"]))
            except HttpResponseError as exc:
                if exc.status_code != 412:
                    raise
                logger.debug("run %s changed while updating; retrying", run_id, extra={"run_id": run_id})
        raise RunnerOrchestratorError(
            "run_update_conflict", f"Run {run_id} kept changing; gave up after {MAX_WRITE_ATTEMPTS} attempts."
        )

    def list_runs(self, *, status: RunStatus | None = None, limit: int = 50) -> list[RunRecord]:
        """The most recently requested runs first (ties by run id), at most `limit`, optionally of one status.

        Without `status`: one request that reads `limit` listing copies and the marker row, whatever the
        number of runs. With `status`, Table storage reads the copies newest first and sends back only
        that status's: still at most `limit` + 1 entities come back, but the service scans copies until
        it has found `limit` (at most 1,000 a request, the SDK asking for the next page), so a status
        that few recent runs have (`starting` among 100,000 ended runs) costs a scan of every copy, about
        one request per 1,000 runs. The first listing of a table whose records predate the copies writes
        theirs first (once; see the module docstring). Azurite, unlike Table storage, tests every row of
        the table against a query's filter, so there the time grows with the table all the same.
        """
        if limit < 1:
            raise ValueError(f"limit must be at least 1, not {limit}")
        rows = self._listing_rows(status, limit)
        if not rows or rows[0]["RowKey"] != INDEX_PREFIX:
            self._index_older_records()
            rows = self._listing_rows(status, limit)
        return [_from_entity(row) for row in rows if row["RowKey"] != INDEX_PREFIX][:limit]

    def _listing_rows(self, status: RunStatus | None, limit: int) -> list[Any]:
        """The marker row, if written, then the first `limit` listing copies (of `status`)."""
        query = f"PartitionKey eq '{PARTITION}' and RowKey ge '{INDEX_PREFIX}' and RowKey lt '{_INDEX_END}'"
        if status is not None:
            query += f" and (RowKey eq '{INDEX_PREFIX}' or status eq '{status.value}')"
        entities = self._table.query_entities(query, results_per_page=min(limit + 1, MAX_PAGE))
        return list(itertools.islice(entities, limit + 1))

    def _index_older_records(self) -> None:
        """Give every record that has no listing copy (one written before copies existed) its copy, then write
        the marker row, so that later listings skip this. Reads the whole partition once."""
        listed = {row["RowKey"] for row in self._table.query_entities(
            f"PartitionKey eq '{PARTITION}' and RowKey gt '{INDEX_PREFIX}' and RowKey lt '{_INDEX_END}'",
            select=["RowKey"])}
        older = [entity for entity in self._table.query_entities(
            f"PartitionKey eq '{PARTITION}' and RowKey lt '{_RECORDS_END}'")
            if _listing_key(_from_entity(entity)) not in listed]
        for chunk in _chunks(older, BACKFILL_CHUNK):
            try:
                self._table.submit_transaction([op for entity in chunk for op in _backfill_operations(entity)])
            except TableTransactionError as exc:
                if exc.status_code not in (404, 412):
                    raise
                for entity in chunk:  # one of them changed or went meanwhile: each on its own
                    self._index_one(entity["RowKey"])
        if older:
            logger.info("wrote the listing copies of %d runs recorded before listing copies existed", len(older))
        self._table.upsert_entity(_marker())

    def _index_one(self, run_id: str) -> None:
        for _ in range(MAX_WRITE_ATTEMPTS):
            try:
                entity = self._table.get_entity(PARTITION, run_id)
                self._table.submit_transaction(_backfill_operations(entity))
                return
            except ResourceNotFoundError:
                return
            except TableTransactionError as exc:
                if exc.status_code == 404:
                    return
                if exc.status_code != 412:
                    raise
        raise RunnerOrchestratorError(
            "run_update_conflict", f"Run {run_id} kept changing; gave up after {MAX_WRITE_ATTEMPTS} attempts."
        )


def run_rows(record: RunRecord) -> tuple[dict[str, Any], dict[str, Any]]:
    """The two rows a run is stored as, its record and its listing copy (to be written in one transaction)."""
    return _to_entity(record), _listing_entity(record)


def _marker() -> dict[str, Any]:
    return {"PartitionKey": PARTITION, "RowKey": INDEX_PREFIX, "indexed_at": datetime.now(UTC)}


def listing_key(run_id: str, requested_at: datetime) -> str:
    """The row key of a run's listing copy: `requested_at` counted down, so that the newest sorts first."""
    at = requested_at if requested_at.tzinfo else requested_at.replace(tzinfo=UTC)
    micros = (at - _TIME_ORIGIN) // timedelta(microseconds=1)
    return f"{INDEX_PREFIX}{10**_TIME_DIGITS - 1 - micros:0{_TIME_DIGITS}d}~{run_id}"


def _listing_key(record: RunRecord) -> str:
    return listing_key(record.run_id, record.requested_at)


def _listing_entity(record: RunRecord) -> dict[str, Any]:
    """The record's copy in the listing: the same properties plus the run id (its row key is not)."""
    return _to_entity(record) | {"RowKey": _listing_key(record), "run_id": record.run_id}


def _stored(entity: Any) -> StoredRun:
    return StoredRun(_from_entity(entity), str(entity.metadata["etag"]))


def _unchanged_since(etag: str) -> dict[str, Any]:
    """A transaction operation's condition: the row is still the version `etag` names."""
    return {"mode": UpdateMode.REPLACE, "etag": etag, "match_condition": MatchConditions.IfNotModified}


def _backfill_operations(entity: Any) -> list[tuple[Any, ...]]:
    """Write the listing copy of a record as read, provided it has not changed since (an empty merge of the
    record carries the condition: a transaction has no operation that only checks)."""
    keys = {"PartitionKey": PARTITION, "RowKey": entity["RowKey"]}
    return [("update", keys, _unchanged_since(entity.metadata["etag"]) | {"mode": UpdateMode.MERGE}),
            ("upsert", _listing_entity(_from_entity(entity)), {"mode": UpdateMode.REPLACE})]


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


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
    fields: dict[str, Any] = {"run_id": entity.get("run_id", entity["RowKey"])}  # a listing copy names its run
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
