"""The concurrency cap: at most MAX_CONCURRENT_RUNS jobs at once across all hosts; the rest wait in line.

Slots and the line are rows of the runs table (other partitions than the run records), every change
etag-conditional, so that any number of hosts share them:

    PartitionKey "slot",      RowKey "0000".."nnnn"          holder: a run id, or "" when free
    PartitionKey "line",      RowKey "<uploaded at>~<run id>"  a run waiting for a slot, in upload order
    PartitionKey "slotlock",  RowKey "grant"                 who hands out slots now, and until when

A run joins the line; whoever hands out slots (`grant`, after every join and every release, on any host)
first takes the grant lock, a lease won by an etag-conditional write, then gives the free slots below the
cap to the head of the line; a host that finds the lock taken changes the lock row instead, so that the
holder's conditional unlock fails and it runs one more round (no host waits, no change is missed). One
granter at a time keeps a waiter from being given two
slots by two hosts at once; the slot writes are etag-conditional all the same, so even a lease that
expired mid-grant never puts two runs in one slot, nor more runs than the cap in the slots below it. A slot whose
holder's orchestration no longer runs is taken back (`alive`). docs/concurrency.md says why rows in
Storage and not a durable entity.
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import TableClient, UpdateMode

logger = logging.getLogger(__name__)

SLOT_PARTITION = "slot"
LINE_PARTITION = "line"
# Slot row keys are zero-padded so that they sort as numbers; the cap is bounded far below this.
SLOT_KEY_DIGITS = 4
MAX_CAP = 10**SLOT_KEY_DIGITS - 1
LOCK_PARTITION = "slotlock"
LOCK_ROW = "grant"
# A grant takes a few table requests; the lease outlasts it by far, and a crashed granter's lease ends soon.
LOCK_LEASE_SECONDS = 30.0
# Reads and conditional writes of the lock row before a grant gives up (each lost race means another host
# changed it, which is progress; the waiters' polls grant in the end whatever happens).
LOCK_ATTEMPTS = 20
# How long one grant goes on running rounds for the hosts that keep asking while it grants (each ask is a join or
# a release, so asks end); half the lease, so the lock is given back while it is still this grant's to give.
GRANT_ROUNDS_SECONDS = LOCK_LEASE_SECONDS / 2


@dataclass(frozen=True)
class Grant:
    run_id: str
    slot: str


@dataclass(frozen=True)
class _Lock:
    lease: str
    etag: str  # of this host's last write of the lock row


def _etag(entity: Any) -> str:
    """A read entity's etag (the service always sends one)."""
    return str(entity.metadata["etag"])


def _lock_row(lease: str, now: datetime) -> dict[str, Any]:
    return {"PartitionKey": LOCK_PARTITION, "RowKey": LOCK_ROW, "lease": lease, "asks": 0,
            "until": now + timedelta(seconds=LOCK_LEASE_SECONDS)}


@dataclass(frozen=True)
class _Slot:
    key: str
    holder: str
    etag: str | None  # None: the row does not exist yet


def line_key(run_id: str, uploaded_at: datetime) -> str:
    """A waiter's row key: its upload time (UTC, sortable text) first, so that the line is upload order."""
    return f"{uploaded_at.astimezone(UTC):%Y%m%dT%H%M%S.%fZ}~{run_id}"


def slot_key(index: int) -> str:
    return f"{index:0{SLOT_KEY_DIGITS}d}"


class RunSlots:
    """The slots and the line. Safe to share between threads; each method is a few table requests."""

    def __init__(self, table: TableClient) -> None:
        self._table = table

    def join(self, run_id: str, uploaded_at: datetime) -> None:
        """Put the run in line at its upload time, unless it is there or holds a slot (idempotent)."""
        if self.holding(run_id) is not None:
            return
        self.join_line(run_id, uploaded_at)

    def join_line(self, run_id: str, uploaded_at: datetime) -> None:
        """Put the run in line at its upload time unless it is there; for a caller that has just seen it
        hold no slot."""
        with contextlib.suppress(ResourceExistsError):  # in line already
            self._table.create_entity(
                {"PartitionKey": LINE_PARTITION, "RowKey": line_key(run_id, uploaded_at), "run_id": run_id}
            )

    def holding(self, run_id: str) -> str | None:
        """The slot the run holds, or None."""
        for slot in self._slots():
            if slot.holder == run_id:
                return slot.key
        return None

    def position(self, run_id: str) -> int | None:
        """The run's place in line (1: next to start), or None when it is not waiting."""
        for place, entity in enumerate(self._line(select=["run_id"]), start=1):
            if entity["run_id"] == run_id:
                return place
        return None

    def positions(self) -> dict[str, int]:
        """Every waiting run's place in line (one read of the line)."""
        return {entity["run_id"]: place for place, entity in enumerate(self._line(select=["run_id"]), start=1)}

    def waiting(self) -> int:
        return sum(1 for _ in self._line(select=["RowKey"]))

    def holders(self) -> dict[str, str]:
        """Slot key -> run id, for the held slots."""
        return {slot.key: slot.holder for slot in self._slots() if slot.holder}

    def release(self, run_id: str, uploaded_at: datetime) -> bool:
        """Give back the run's slots (one, unless a lease expired mid-grant) and take it out of line (it joined at
        `uploaded_at`); whether it held a slot. Idempotent."""
        # By its key: reading the line to find the row would read every waiter, at each of a burst's releases.
        self._table.delete_entity(LINE_PARTITION, line_key(run_id, uploaded_at))  # no error when it is not there
        released = False
        for slot in self._slots():
            if slot.holder == run_id and self._set_holder(slot, ""):
                released = True
        return released

    def grant(self, cap: int, alive: Callable[[list[str]], set[str]], *, poll: bool = False) -> list[Grant]:
        """Hand the free slots below `cap` to the head of the line; the grants made by this call.

        `alive` answers which of the given runs' orchestrations still run: when a `poll` finds no slot below
        the cap free, the slots of the others are taken back first (an orchestration that failed, was
        terminated or purged). Only a poll asks: each of a burst of joins into full slots would ask about
        every holder, and a waiter polls every SLOT_POLL_SECONDS all the same. Lowering the cap takes effect
        here: slots at or above it are no longer handed out.
        While another host grants, this call asks it for one more round instead (and returns no grant):
        nobody waits for the lock, and no join or release made before the call is missed. A `poll` (a
        waiter looking again, having changed nothing) asks for nothing: it returns when the lock is taken.
        """
        if not 1 <= cap <= MAX_CAP:
            raise ValueError(f"the cap must be 1..{MAX_CAP}, not {cap}")
        lock = self._lock_or_ask(ask=not poll)
        grants: list[Grant] = []
        # Rounds go on while hosts ask, and the lock is given back whatever happens: a lock left held (the lease
        # runs 30 s) would turn every join and release into an ask nobody answers, until the waiters' polls.
        stop_asking_at = time.monotonic() + GRANT_ROUNDS_SECONDS
        try:
            while lock is not None:
                grants += self._grant_round(cap, alive if poll else None)
                if time.monotonic() > stop_asking_at:
                    logger.warning("asked for rounds for %.0f s; the waiters' next polls grant the rest",
                                   GRANT_ROUNDS_SECONDS)
                    break
                lock = self._unlock(lock)  # still held: someone asked for a round meanwhile
        finally:
            self._give_back(lock)
        return grants

    def _grant_round(self, cap: int, alive: Callable[[list[str]], set[str]] | None) -> list[Grant]:
        free = self._free_slots(cap, alive)
        waiters = list(self._line(limit=len(free))) if free else []
        grants = []
        for slot, waiter in zip(free, waiters, strict=False):
            if self._set_holder(slot, waiter["run_id"]):
                self._table.delete_entity(LINE_PARTITION, waiter["RowKey"])
                grants.append(Grant(waiter["run_id"], slot.key))
        return grants

    def _free_slots(self, cap: int, alive: Callable[[list[str]], set[str]] | None) -> list[_Slot]:
        """The slots below the cap a waiter may have now: unheld, and no more than the cap less the held
        ones (slots above a lowered cap count until their runs end); with `alive`, dead holders' too."""
        free = self._free_below_cap(self._slots(), cap)
        if not free and alive is not None:
            held = [slot for slot in self._slots() if slot.holder]
            living = alive([slot.holder for slot in held]) if held else set()
            for slot in held:
                if slot.holder not in living and self._set_holder(slot, ""):
                    logger.warning("took back slot %s from run %s, whose orchestration no longer runs",
                                   slot.key, slot.holder, extra={"run_id": slot.holder})
            free = self._free_below_cap(self._slots(), cap)
        return free

    @staticmethod
    def _free_below_cap(slots: list[_Slot], cap: int) -> list[_Slot]:
        by_key = {slot.key: slot for slot in slots}
        held = sum(1 for slot in slots if slot.holder)
        unheld = [by_key.get(slot_key(index), _Slot(slot_key(index), "", None)) for index in range(cap)]
        return [slot for slot in unheld if not slot.holder][: max(0, cap - held)]

    def _lock_or_ask(self, *, ask: bool) -> _Lock | None:
        """Take the grant lock, or, while another host holds it, ask that host for one more round (by
        changing the lock row, which makes its conditional unlock fail) if `ask`. The lock if taken."""
        lease = uuid.uuid4().hex
        for _ in range(LOCK_ATTEMPTS):
            now = datetime.now(UTC)
            try:
                current = self._table.get_entity(LOCK_PARTITION, LOCK_ROW)
            except ResourceNotFoundError:
                current = None
            try:
                if current is None:
                    written = self._table.create_entity(_lock_row(lease, now))
                elif not current.get("lease") or current["until"] <= now:
                    written = self._update_lock(_lock_row(lease, now), _etag(current))
                else:
                    if ask:
                        self._update_lock(dict(current) | {"asks": int(current.get("asks", 0)) + 1},
                                          _etag(current))
                    return None
                return _Lock(lease, written["etag"])
            except (ResourceExistsError, ResourceModifiedError, ResourceNotFoundError):
                continue  # the row changed under us: look again
        logger.warning("the grant lock kept changing; the waiters' next polls grant")
        return None

    def _unlock(self, lock: _Lock) -> _Lock | None:
        """Give the lock back unless someone asked for a round meanwhile: then the lock, still held."""
        try:
            self._update_lock({"PartitionKey": LOCK_PARTITION, "RowKey": LOCK_ROW, "lease": ""}, lock.etag)
            return None
        except ResourceNotFoundError:
            return None
        except ResourceModifiedError:
            current = self._table.get_entity(LOCK_PARTITION, LOCK_ROW)
            if current.get("lease") != lock.lease:
                return None  # our lease ended and another host took the lock: it grants from here
            return _Lock(lock.lease, _etag(current))

    def _give_back(self, lock: _Lock | None) -> None:
        """Unlock, however often someone asks meanwhile (their asks then wait for the next grant)."""
        for _ in range(LOCK_ATTEMPTS):
            if lock is None:
                return
            try:
                lock = self._unlock(lock)
            except Exception:  # storage out
                break
        logger.warning("the grant lock could not be given back; its lease ends within %.0f s", LOCK_LEASE_SECONDS)

    def _update_lock(self, row: dict[str, Any], etag: str) -> dict[str, Any]:
        return self._table.update_entity(row, mode=UpdateMode.REPLACE, etag=etag,
                                         match_condition=MatchConditions.IfNotModified)

    def _slots(self) -> list[_Slot]:
        return [
            _Slot(entity["RowKey"], entity.get("holder", ""), entity.metadata["etag"])
            for entity in self._table.query_entities(f"PartitionKey eq '{SLOT_PARTITION}'")
        ]

    def _line(self, limit: int | None = None, select: list[str] | None = None) -> Iterable[dict]:
        """The waiters, head first (Table storage returns a partition in row key order); only the `select`ed
        properties if given."""
        entities = self._table.query_entities(
            f"PartitionKey eq '{LINE_PARTITION}'", results_per_page=limit, select=select
        )
        for count, entity in enumerate(entities, start=1):
            yield entity
            if limit is not None and count >= limit:
                return

    def _set_holder(self, slot: _Slot, holder: str) -> bool:
        """Write the slot's holder if nobody changed the slot since it was read; whether it was written."""
        row = {"PartitionKey": SLOT_PARTITION, "RowKey": slot.key, "holder": holder,
               "since": datetime.now(UTC)}
        try:
            if slot.etag is None:
                self._table.create_entity(row)
            else:
                self._table.update_entity(row, mode=UpdateMode.REPLACE, etag=slot.etag,
                                          match_condition=MatchConditions.IfNotModified)
        except (ResourceExistsError, ResourceModifiedError):
            return False
        return True
