"""What the status API answers: the run record joined with the orchestration's runtime status."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import TypeAdapter, ValidationError

from orchestrations.contracts import RunError, RunRecord, RunRequest, RunStatus
from orchestrations.run_store import RunNotFoundError, RunStore

# An orchestration in one of these states will never update its run record again.
_DEAD_RUNTIME_STATUSES = {"Failed", "Terminated"}
MAX_REASON_CHARS = 300
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
    return record.public_view() | {"orchestration": orchestration}


async def list_runs(client: Any, run_store: RunStore, *, status: str | None, limit: int) -> list[dict[str, Any]]:
    """Recent runs, newest first; raises ValueError naming the bad filter."""
    wanted = None
    if status:
        try:
            wanted = RunStatus(status)
        except ValueError:
            allowed = ", ".join(item.value for item in RunStatus)
            raise ValueError(f"status={status!r} is not a run status; use one of: {allowed}") from None
    records = await asyncio.to_thread(run_store.list_runs, status=wanted, limit=limit)
    settled = []
    for record in records:
        if not record.status.is_terminal and (orchestration := await client.get_status(record.run_id)):
            record = await _settle_dead_run(record, orchestration, run_store)
        if wanted is None or record.status is wanted:
            settled.append(record.public_view())
    return settled


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
    return {
        "runtime_status": getattr(status.runtime_status, "value", status.runtime_status),
        "custom_status": status.custom_status,
        "created_time": status.created_time.isoformat() if status.created_time else None,
        "last_updated_time": status.last_updated_time.isoformat() if status.last_updated_time else None,
    }


def _first_line(output: Any) -> str:
    """The reason alone: a failed orchestration's output carries the whole traceback, with the host's paths."""
    text = str(output or "no reason given").strip()
    line = text.splitlines()[0] if text else "no reason given"
    return line if len(line) <= MAX_REASON_CHARS else line[:MAX_REASON_CHARS] + " [...]"
