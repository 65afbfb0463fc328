"""What the status API answers: the run record joined with the orchestration's runtime status, and the runner's log."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Annotated, Any

from azure.core.exceptions import ResourceNotFoundError
from pydantic import BaseModel, Field, TypeAdapter, ValidationError

from orchestrations import runtime
from orchestrations.contracts import RunError, RunRecord, RunRequest, RunStatus, input_scope_violation, parse_blob_uri
from orchestrations.errors import RunnerOrchestratorError
from orchestrations.job_spec import runs_prefix
from orchestrations.run_slots import RunSlots
from orchestrations.run_store import RunNotFoundError, RunStore

# An orchestration in one of these states will never update its run record again.
_DEAD_RUNTIME_STATUSES = {"Failed", "Terminated"}
MAX_REASON_CHARS = 300
# The most runs one listing returns (the API's `limit` and the CLI's `--limit`): one table query page or so.
MAX_LIST_LIMIT = 500
DEFAULT_LIST_LIMIT = 50
# The Python worker holds an HTTP answer's body in memory (it cannot stream a blob): a longer log is served
# by its last MAX_LOG_BYTES, after a line saying so and where the whole log is.
MAX_LOG_BYTES = 8 * 1024 * 1024
# The form of every run id (`RunRequest.run_id`'s own constraint): anything else names no run.
_RUN_ID = TypeAdapter(Annotated[str, RunRequest.model_fields["run_id"]])


def is_run_id(text: str) -> bool:
    """Whether `text` has the form of a run id; one that has not names no run, and storage is not asked."""
    try:
        _RUN_ID.validate_python(text)
    except ValidationError:
        return False
    return True


async def describe_run(run_id: str, client: Any, *, run_store: RunStore) -> dict[str, Any] | None:
    """The run as users see it, or None if there is no such run (at once for an id no run can have)."""
    if not is_run_id(run_id):
        return None
    try:
        record = await asyncio.to_thread(run_store.get_run, run_id)
    except RunNotFoundError:
        return None
    orchestration = None
    if record.status is not RunStatus.REJECTED:
        status = await client.get_status(run_id)
        if status:
            orchestration = _orchestration_view(status)
            record = await _settle_dead_run(record, status, run_store)
    position = None
    if record.status is RunStatus.QUEUED:
        position = await asyncio.to_thread(RunSlots(run_store.table).position, run_id)
    return record.public_view() | {"queue_position": position, "orchestration": orchestration}


class InvalidQueryError(RunnerOrchestratorError, ValueError):
    """A listing's filter is not valid; the message names it and what is allowed."""

    def __init__(self, message: str) -> None:
        super().__init__("invalid_query", message)


async def list_runs(client: Any, run_store: RunStore, *, status: str | None, limit: int) -> list[dict[str, Any]]:
    """Recent runs, newest first; raises InvalidQueryError naming the bad filter.

    Reads `limit` runs' rows whatever the number of runs (`RunStore.list_runs` says what a `status` filter
    costs), then asks the task hub about each run not yet ended, and reads the line if one waits.
    """
    wanted = None
    if status:
        try:
            wanted = RunStatus(status)
        except ValueError:
            allowed = ", ".join(item.value for item in RunStatus)
            raise InvalidQueryError(f"status={status!r} is not a run status; use one of: {allowed}") from None
    records = await asyncio.to_thread(run_store.list_runs, status=wanted, limit=limit)
    settled = []
    for record in records:
        if not record.status.is_terminal and (orchestration := await client.get_status(record.run_id)):
            record = await _settle_dead_run(record, orchestration, run_store)
        if wanted is None or record.status is wanted:
            settled.append(record)
    positions: dict[str, int] = {}
    if any(record.status is RunStatus.QUEUED for record in settled):
        positions = await asyncio.to_thread(RunSlots(run_store.table).positions)
    return [record.public_view() | {"queue_position": positions.get(record.run_id)} for record in settled]


class OrchestrationView(BaseModel):
    """The orchestration behind a run, as the Durable client reports it (times are ISO 8601 text)."""

    runtime_status: str = Field(description="Durable runtime status: Pending, Running, Completed, Failed, ...")
    custom_status: Any = Field(description="The orchestrator's custom status: `{phase, status}` while it runs.")
    created_time: str | None
    last_updated_time: str | None


class RunSummary(RunRecord):
    """One run of the listing: its record, and its place in line while it waits for a slot."""

    queue_position: int | None = Field(
        default=None, ge=1, description="While `queued` under MAX_CONCURRENT_RUNS: 1 starts next. Else null."
    )


class RunView(RunSummary):
    """What `GET /api/runs/{run_id}` answers: the listing's fields plus its orchestration (None for a rejected
    upload, or once the task hub forgot it)."""

    orchestration: OrchestrationView | None


class LogNotFoundError(RunnerOrchestratorError):
    """The run exists but has no log to show (yet, or any more); the message says which."""

    def __init__(self, message: str) -> None:
        super().__init__("log_not_found", message)


def get_run_log(run_id: str, *, run_store: RunStore) -> bytes:
    """The runner's log of a run, read from the run's own folder only (blocking).

    Raises RunNotFoundError for no such run, LogNotFoundError when its record names no log, a log outside the
    run's folder of the runs container (never read: a record is not trusted to name any blob), or a deleted one.
    """
    if not is_run_id(run_id):
        raise RunNotFoundError(run_id)
    record = run_store.get_run(run_id)
    if not record.log_uri:
        raise LogNotFoundError(f"Run {run_id} has no runner log yet (status {record.status.value}); "
                               "the runner uploads it when its task ends.")
    own_folder = runs_prefix(runtime.settings(), run_id)
    if input_scope_violation(record.log_uri, [own_folder]) is not None:
        raise LogNotFoundError(f"Run {run_id}'s record names a log outside the run's own folder {own_folder}; "
                               "it is not served.")
    container, name = parse_blob_uri(record.log_uri)
    blob = runtime.blob_service().get_blob_client(container, name)
    try:
        size = blob.get_blob_properties().size
        offset = max(0, size - MAX_LOG_BYTES)
        body = blob.download_blob(offset=offset or None, length=(size - offset) if offset else None).readall()
    except ResourceNotFoundError:
        raise LogNotFoundError(f"Run {run_id}'s log {record.log_uri} is no longer in storage.") from None
    if offset:
        body = f"[the first {offset} bytes are left out; the whole log is {record.log_uri}]\n".encode() + body
    return bytes(body)


class ResultNotFoundError(RunnerOrchestratorError):
    """The run exists but has no result document to show (yet, any more, or too large to show); the message
    says which."""

    def __init__(self, message: str) -> None:
        super().__init__("result_not_found", message)


def get_run_result(run_id: str, *, run_store: RunStore, max_bytes: int) -> bytes:
    """The run's result document (the runner's JSON), read from the run's own folder only (blocking).

    Raises RunNotFoundError for no such run, ResultNotFoundError when its record names none, one outside the
    run's folder (never read, as for the log), a deleted one, or one longer than `max_bytes` (not cut: a part
    of a JSON document is not one).
    """
    if not is_run_id(run_id):
        raise RunNotFoundError(run_id)
    record = run_store.get_run(run_id)
    if not record.result_uri:
        raise ResultNotFoundError(f"Run {run_id} has no result document (status {record.status.value}).")
    own_folder = runs_prefix(runtime.settings(), run_id)
    if input_scope_violation(record.result_uri, [own_folder]) is not None:
        raise ResultNotFoundError(f"Run {run_id}'s record names a result document outside the run's own folder "
                                  f"{own_folder}; it is not served.")
    blob = runtime.blob_service().get_blob_client(*parse_blob_uri(record.result_uri))
    try:
        size = blob.get_blob_properties().size
        if size > max_bytes:
            raise ResultNotFoundError(f"Run {run_id}'s result document is {size} bytes, more than the {max_bytes} "
                                      f"shown; it is {record.result_uri}.")
        return bytes(blob.download_blob().readall())
    except ResourceNotFoundError:
        raise ResultNotFoundError(
            f"Run {run_id}'s result document {record.result_uri} is no longer in storage."
        ) from None


async def settle_dead_run(record: RunRecord, status: Any, run_store: RunStore) -> RunRecord:
    """The record, recorded `failed` first if its orchestration (`status`, the client's) died before it could."""
    return await _settle_dead_run(record, status, run_store)


async def _settle_dead_run(record: RunRecord, status: Any, run_store: RunStore) -> RunRecord:
    """A run whose orchestration died before it could record the end is recorded `failed` now, with the reason
    and no traceback: it must not show `running` forever, here or in any listing."""
    runtime_status = getattr(status.runtime_status, "value", status.runtime_status)
    if runtime_status not in _DEAD_RUNTIME_STATUSES or record.status.is_terminal:
        return record
    error = RunError(
        code="orchestration_failed",
        message=f"The orchestration {runtime_status.lower()} before it could record the run's end: "
        f"{_first_line(status.output)} (the host's log has the details).",
    )
    now = datetime.now(UTC)

    def fail(current: RunRecord) -> RunRecord:
        return current.model_copy(update={"status": RunStatus.FAILED, "error": error, "finished_at": now,
                                          "updated_at": now})

    return await asyncio.to_thread(run_store.update_run, record.run_id, fail)


def _orchestration_view(status: Any) -> dict[str, Any]:
    return OrchestrationView(
        runtime_status=getattr(status.runtime_status, "value", status.runtime_status),
        custom_status=status.custom_status,
        created_time=status.created_time.isoformat() if status.created_time else None,
        last_updated_time=status.last_updated_time.isoformat() if status.last_updated_time else None,
    ).model_dump()


def _first_line(output: Any) -> str:
    """The reason alone: a failed orchestration's output carries the whole traceback, with the host's paths."""
    text = str(output or "no reason given").strip()
    line = text.splitlines()[0] if text else "no reason given"
    return line if len(line) <= MAX_REASON_CHARS else line[:MAX_REASON_CHARS] + " [...]"
