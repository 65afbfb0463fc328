"""The concurrency cap's two activities: take a place in line (and a slot when one is free), give it back.

Both hand the free slots to the head of the line (`RunSlots.grant`) and tell each run they gave one to
with a `SlotGranted` event, so that a run starts as soon as a slot frees, on whichever host freed it; a
run that misses its event (its host restarted, it had just continued as new) finds its slot at its next
poll. Whether a holder's orchestration still runs is asked of the durable client: a slot held by an
orchestration that failed, was terminated or no longer exists is taken back.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from orchestrations import runtime
from orchestrations.contracts import (
    POSITION_LOOKAHEAD,
    SLOT_GRANTED_EVENT,
    ExecutionRef,
    RunStatus,
    SlotAnswer,
    SlotRequest,
)
from orchestrations.log_context import run_scope
from orchestrations.run_slots import Grant, RunSlots

logger = logging.getLogger(__name__)

# How long a release waits for its job to end: a runner exits within moments of its message; a stopped
# Container Apps replica within its termination grace.
JOB_END_WAIT_SECONDS = 120.0
# Runtime statuses of an orchestration that may still use its slot (ContinuedAsNew: between generations).
_LIVE_STATUSES = {"Pending", "Running", "ContinuedAsNew", "Suspended"}


async def acquire_slot(payload: dict, client: Any) -> dict:
    """Activity: join the line (once), hand out what is free, and say whether this run holds a slot now.

    A run whose record carries a cancel request leaves the line instead (the request may have come while
    the orchestration continued as new, which drops the event)."""
    request = SlotRequest.from_payload(payload)
    with run_scope("acquire_slot", request.run_id, traceparent=request.traceparent):
        return await _acquire_slot(request, client)


async def _acquire_slot(request: SlotRequest, client: Any) -> dict:
    slots = runtime.run_slots()
    record = await asyncio.to_thread(runtime.run_store().get_run, request.run_id)
    if record.status is RunStatus.QUEUED and record.cancellation is not None:
        await _release(slots, request, client)
        return SlotAnswer(granted=False, cancelled=record.cancellation).to_payload()
    # Joins the line unless it is there (a look again, a retried call), and hands out what is free; a run that
    # holds its slot already (the look after a SlotGranted, a retried call) is answered so and given no other.
    look = await asyncio.to_thread(
        slots.look, request.run_id, request.requested_at, runtime.settings().max_concurrent_runs,
        _alive_on(asyncio.get_running_loop(), client), poll=request.poll,
    )
    await _tell(look.grants, client, asker=request.run_id)
    if look.holds:
        return SlotAnswer(granted=True).to_payload()
    position = await asyncio.to_thread(slots.position, request.run_id, within=POSITION_LOOKAHEAD)
    return SlotAnswer(granted=False, position=position).to_payload()


async def release_slot(payload: dict, client: Any) -> dict:
    """Activity: once the run's job is gone, give back its slot (or its place in line) and hand what is free
    to the next in line."""
    request = SlotRequest.from_payload(payload)
    with run_scope("release_slot", request.run_id, traceparent=request.traceparent,
                   execution_ref=request.execution_ref):
        if request.execution_ref is not None:
            await asyncio.to_thread(_wait_for_job_end, request.run_id, ExecutionRef.parse(request.execution_ref))
        return {"released": await _release(runtime.run_slots(), request, client)}


def _wait_for_job_end(run_id: str, ref: ExecutionRef) -> None:
    """Until the backend says the job has ended (a runner still exiting after its message, a replica still
    terminating after a stop), for at most JOB_END_WAIT_SECONDS: then the slot goes back all the same."""
    backend = runtime.backend()
    deadline = time.monotonic() + JOB_END_WAIT_SECONDS
    # At the backend's pace: the slot stays idle from the job's end until a look sees it.
    pauses = backend.end_looks.pauses()
    while time.monotonic() < deadline:
        try:
            if backend.status(ref).has_ended:
                return
        except Exception as exc:  # an unknown or vanished execution holds no resources
            logger.warning("Run %s: its job's status is unknown (%s); its slot goes back", run_id, exc)
            return
        time.sleep(next(pauses))
    logger.warning("Run %s: its job %s still runs after %s s; its slot goes back all the same", run_id, ref,
                   JOB_END_WAIT_SECONDS)


async def _release(slots: RunSlots, request: SlotRequest, client: Any) -> bool:
    """Give back the run's slot, handing it on to the next in line, and tell each run given one."""
    release = await asyncio.to_thread(
        slots.release, request.run_id, request.requested_at, runtime.settings().max_concurrent_runs
    )
    await _tell(release.grants, client)
    return release.released


def _alive_on(loop: asyncio.AbstractEventLoop, client: Any) -> Callable[[list[str]], set[str]]:
    """Which of the given runs' orchestrations still run, asked of the durable client from a grant's worker
    thread: the client's calls run on the activity's loop."""

    def alive(run_ids: list[str]) -> set[str]:
        return asyncio.run_coroutine_threadsafe(_alive(client, run_ids), loop).result()

    return alive


async def _tell(grants: list[Grant], client: Any, *, asker: str | None = None) -> None:
    """Tell each run given a slot, except `asker`, which learns it from the answer."""
    for grant in grants:
        if grant.run_id == asker:
            continue
        try:
            await client.raise_event(grant.run_id, SLOT_GRANTED_EVENT, {"slot": grant.slot})
        except Exception as exc:  # its next poll finds the slot; a dead one's slot is taken back later
            logger.warning("Run %s was given slot %s but could not be told: %s", grant.run_id, grant.slot, exc,
                           extra={"run_id": grant.run_id})


async def _alive(client: Any, run_ids: list[str]) -> set[str]:
    statuses = await asyncio.gather(*(client.get_status(run_id) for run_id in run_ids))
    return {
        run_id for run_id, status in zip(run_ids, statuses, strict=True)
        if status and _runtime_status(status) in _LIVE_STATUSES
    }


def _runtime_status(status: Any) -> str | None:
    value = getattr(status, "runtime_status", None)
    return getattr(value, "value", value)


# The activities that need the durable client (function_app/durable.py binds it).
CLIENT_ACTIVITIES = {"acquire_slot": acquire_slot, "release_slot": release_slot}
