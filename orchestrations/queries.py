"""What the status API answers: the run record joined with the orchestration's runtime status."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import TypeAdapter, ValidationError

from orchestrations.contracts import RunRequest, RunStatus
from orchestrations.run_store import RunNotFoundError, RunStore

# An orchestration in one of these states will never update its run record again.
_DEAD_RUNTIME_STATUSES = {"Failed", "Terminated"}
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
        record = run_store.get_run(run_id)
    except RunNotFoundError:
        return None
    view = record.public_view()
    view["orchestration"] = None
    if record.status is RunStatus.REJECTED:
        return view
    status = await client.get_status(run_id)
    if status:
        runtime_status = getattr(status.runtime_status, "value", status.runtime_status)
        view["orchestration"] = {
            "runtime_status": runtime_status,
            "custom_status": status.custom_status,
            "created_time": status.created_time.isoformat() if status.created_time else None,
            "last_updated_time": status.last_updated_time.isoformat() if status.last_updated_time else None,
        }
        if runtime_status in _DEAD_RUNTIME_STATUSES and not record.status.is_terminal:
            # The orchestration died before it could record the end (storage down for all retries):
            # say so rather than show a run that is "running" forever.
            view["status"] = RunStatus.FAILED.value
            view["error"] = {
                "code": "orchestration_failed",
                "message": f"The orchestration {runtime_status.lower()}: {status.output}",
            }
    return view


def list_runs(run_store: RunStore, *, status: str | None, limit: int) -> list[dict[str, Any]]:
    """Recent runs, newest first; raises ValueError naming the bad filter."""
    wanted = None
    if status:
        try:
            wanted = RunStatus(status)
        except ValueError:
            allowed = ", ".join(item.value for item in RunStatus)
            raise ValueError(f"status={status!r} is not a run status; use one of: {allowed}") from None
    return [record.public_view() for record in run_store.list_runs(status=wanted, limit=limit)]
