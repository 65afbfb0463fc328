"""The concurrency cap: at most MAX_CONCURRENT_RUNS jobs at once across all hosts; the rest wait in line.

Slots and the line are rows of the runs table (other partitions than the run records), every change
etag-conditional, so that any number of hosts share them:

    PartitionKey "slot",      RowKey "0000".."nnnn"          holder: a run id, or "" when free
    PartitionKey "line",      RowKey "<uploaded at>~<run id>"  a run waiting for a slot, in upload order
    PartitionKey "slotlock",  RowKey "grant"                 who hands out slots now, and until when

A run joins the line; whoever hands out slots (`grant`, after every release and every join that finds a slot
free, on any host) first takes the grant lock, a lease won by an etag-conditional write, then gives the free slots
below the cap to the head of the line; a host that finds the lock taken changes the lock row instead, so that the
holder's conditional unlock fails and it runs one more round (no host waits, no change is missed). One granter at
a time keeps a waiter from being given two slots by two hosts at once; the slot writes are etag-conditional all
the same, so even a lease that expired mid-grant never puts two runs in one slot, nor more runs than the cap in
the slots below it. A slot whose holder's orchestration no longer runs is taken back (`alive`). A release hands
its slot straight to the head of the line, in the one conditional write that frees it; when nobody waits it frees
the slot and reads the line once more, so that a join which found every slot held just before is not missed.
docs/concurrency.md says why rows in Storage and not a durable entity.
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
class Look:
    """A run's look at the slots: whether it holds one now, and the slots the look handed out."""

    holds: bool
    grants: list[Grant]


@dataclass(frozen=True)
class Release:
    """A release: whether the run held a slot, and the slots handed out with it (its own, first)."""

    released: bool
    grants: list[Grant]


@dataclass(frozen=True)
class _Rounds:
    """What a grant's rounds did: its grants, the holders its last round saw (None: no round ran, another host
    grants), and whether the releasing run's slots were handed on or freed."""

    grants: list[Grant]
    holders: set[str] | None
    released: bool = False


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
        # (etag, lease) of this host's last write of the lock row: when that write gave the lock back, the next
        # grant takes it on that etag without reading the row first; if another host wrote it since, the
        # conditional write fails and the grant reads the row as it would have.
        self._lock_written: tuple[str, str] | None = None

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

    def look(
        self, run_id: str, uploaded_at: datetime, cap: int, alive: Callable[[list[str]], set[str]], *, poll: bool
    ) -> Look:
        """Join the line (idempotent), hand out what is free (`grant`), and say whether the run holds a slot now.

        A first look (not a `poll`) that finds no slot free below the cap takes no lock and hands out nothing:
        it joined before it read the slots, and whoever frees a slot reads the line after freeing it (`release`),
        so one of the two sees the other. Otherwise the grant's own read of the slots answers, so a look costs
        no read of its own unless another host was granting. A run that held a slot before it joined (a retried
        look) is never given a second: every round passes over waiters that hold one, and the look takes it out
        of line again.
        """
        self.join_line(run_id, uploaded_at)
        if not poll:
            slots = self._slots()
            if any(slot.holder == run_id for slot in slots):
                self._leave_line(run_id, uploaded_at)
                return Look(True, [])
            if not self._free_below_cap(slots, cap, None):
                return Look(False, [])
        rounds = self._grant(cap, alive, poll=poll)
        granted_now = any(grant.run_id == run_id for grant in rounds.grants)
        # No round ran (another host grants): the slots themselves say.
        holds = self.holding(run_id) is not None if rounds.holders is None else run_id in rounds.holders
        if holds and not granted_now:  # a round deletes the line row only of the runs it grants
            self._leave_line(run_id, uploaded_at)
        return Look(holds, rounds.grants)

    def holding(self, run_id: str) -> str | None:
        """The slot the run holds, or None."""
        for slot in self._slots():
            if slot.holder == run_id:
                return slot.key
        return None

    def position(self, run_id: str, *, within: int | None = None) -> int | None:
        """The run's place in line (1: next to start), or None when it is not waiting or, given `within`, not
        among the first `within`. Table storage has no count: each place before the run's is one row read."""
        for place, entity in enumerate(self._line(limit=within, select=["run_id"]), start=1):
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

    def release(self, run_id: str, uploaded_at: datetime, cap: int) -> Release:
        """Take the run (it joined at `uploaded_at`) out of line and give back its slots (one, unless a lease
        expired mid-grant), each to the head of the line when the cap allows, in the write that frees it; then
        hand out what else is free, as `grant` does. Idempotent.

        While another host grants, the slot is freed and that host asked for a round, as a join asks."""
        # By its key: reading the line to find the row would read every waiter, at each of a burst's releases.
        self._leave_line(run_id, uploaded_at)
        lock = self._lock_or_ask(ask=False)  # not asking yet: nothing is free until the slot is
        if lock is not None:
            rounds = self._rounds(lock, cap, None, releasing=run_id)
            return Release(rounds.released, rounds.grants)
        released = False
        for slot in self._slots():
            if slot.holder == run_id and self._set_holder(slot, ""):
                released = True
        return Release(released, self._grant(cap, None, poll=False).grants)

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
        return self._grant(cap, alive, poll=poll).grants

    def _grant(self, cap: int, alive: Callable[[list[str]], set[str]] | None, *, poll: bool) -> _Rounds:
        if not 1 <= cap <= MAX_CAP:
            raise ValueError(f"the cap must be 1..{MAX_CAP}, not {cap}")
        lock = self._lock_or_ask(ask=not poll)
        if lock is None:
            return _Rounds([], None)
        return self._rounds(lock, cap, alive if poll else None)

    def _rounds(
        self, lock: _Lock, cap: int, alive: Callable[[list[str]], set[str]] | None, *, releasing: str | None = None
    ) -> _Rounds:
        """Grant rounds under the lock, as long as hosts ask for them; the lock is given back whatever happens.

        A lock left held (the lease runs 30 s) would turn every join and release into an ask nobody answers,
        until the waiters' polls. The first round hands on or frees `releasing`'s slots."""
        grants: list[Grant] = []
        holders: set[str] | None = None
        released = False
        stop_asking_at = time.monotonic() + GRANT_ROUNDS_SECONDS
        held_lock: _Lock | None = lock
        try:
            while held_lock is not None:
                round_grants, holders, given_back, freed = self._grant_round(cap, alive, releasing)
                grants += round_grants
                released |= given_back
                releasing = None
                if freed:  # no waiter took it: one more round, whose read of the line follows the free slot
                    continue
                if time.monotonic() > stop_asking_at:
                    logger.warning("asked for rounds for %.0f s; the waiters' next polls grant the rest",
                                   GRANT_ROUNDS_SECONDS)
                    break
                held_lock = self._unlock(held_lock)  # still held: someone asked for a round meanwhile
        finally:
            self._give_back(held_lock)
        return _Rounds(grants, holders, released)

    def _grant_round(
        self, cap: int, alive: Callable[[list[str]], set[str]] | None, releasing: str | None
    ) -> tuple[list[Grant], set[str], bool, bool]:
        """One round: the grants, the holders after it, whether `releasing`'s slots were handed on or freed, and
        whether one was freed (no waiter took it).

        `releasing`'s slots count as free; each goes to a waiter in the write that frees it (conditional on the
        etag read here, so a slot taken back meanwhile is not written), else is freed."""
        slots, free = self._free_slots(cap, alive, releasing)
        held = {slot.holder for slot in slots if slot.holder}
        own = [slot for slot in free if slot.holder == releasing and releasing is not None]
        # Its own slots first, so that a release with one waiter hands its slot on rather than freeing it.
        free = own + [slot for slot in free if slot not in own]
        own_slots = [slot for slot in slots if releasing is not None and slot.holder == releasing]
        # Enough of the line for every free slot, past waiters that hold a slot already (a retried look).
        waiters = iter(self._line(limit=len(free) + len(held))) if free else iter(())
        grants: list[Grant] = []
        for slot in free:
            waiter = next(waiters, None)
            while waiter is not None and waiter["run_id"] in held:
                self._table.delete_entity(LINE_PARTITION, waiter["RowKey"])  # no error when it is not there
                waiter = next(waiters, None)
            if waiter is None:
                break
            if self._set_holder(slot, waiter["run_id"]):
                self._table.delete_entity(LINE_PARTITION, waiter["RowKey"])
                grants.append(Grant(waiter["run_id"], slot.key))
                held.add(waiter["run_id"])
        handed_on = {grant.slot for grant in grants}
        freed = False
        for slot in own_slots:
            if slot.key not in handed_on and self._set_holder(slot, ""):
                freed = True
        held.discard(releasing or "")
        return grants, held, freed or any(slot.key in handed_on for slot in own_slots), freed

    def _free_slots(
        self, cap: int, alive: Callable[[list[str]], set[str]] | None, releasing: str | None
    ) -> tuple[list[_Slot], list[_Slot]]:
        """The slots as read, and those below the cap a waiter may have now: unheld (`releasing`'s count as
        unheld), and no more than the cap less the held ones (slots above a lowered cap count until their
        runs end); with `alive`, dead holders' too."""
        slots = self._slots()
        free = self._free_below_cap(slots, cap, releasing)
        if not free and alive is not None:
            held = [slot for slot in slots if slot.holder and slot.holder != releasing]
            living = alive([slot.holder for slot in held]) if held else set()
            for slot in held:
                if slot.holder not in living and self._set_holder(slot, ""):
                    logger.warning("took back slot %s from run %s, whose orchestration no longer runs",
                                   slot.key, slot.holder, extra={"run_id": slot.holder})
            slots = self._slots()
            free = self._free_below_cap(slots, cap, releasing)
        return slots, free

    @staticmethod
    def _free_below_cap(slots: list[_Slot], cap: int, releasing: str | None) -> list[_Slot]:
        def unheld(slot: _Slot) -> bool:
            return not slot.holder or slot.holder == releasing

        by_key = {slot.key: slot for slot in slots}
        held = sum(1 for slot in slots if not unheld(slot))
        below = [by_key.get(slot_key(index), _Slot(slot_key(index), "", None)) for index in range(cap)]
        return [slot for slot in below if unheld(slot)][: max(0, cap - held)]

    def _leave_line(self, run_id: str, uploaded_at: datetime) -> None:
        self._table.delete_entity(LINE_PARTITION, line_key(run_id, uploaded_at))  # no error when it is not there

    def _lock_or_ask(self, *, ask: bool) -> _Lock | None:
        """Take the grant lock, or, while another host holds it, ask that host for one more round (by
        changing the lock row, which makes its conditional unlock fail) if `ask`. The lock if taken."""
        lease = uuid.uuid4().hex
        written = self._lock_written
        if written is not None and not written[1]:  # given back by this host's last write of it
            with contextlib.suppress(ResourceModifiedError, ResourceNotFoundError):  # written since: read it
                return _Lock(lease, self._write_lock(_lock_row(lease, datetime.now(UTC)), written[0]))
        for _ in range(LOCK_ATTEMPTS):
            now = datetime.now(UTC)
            try:
                current = self._table.get_entity(LOCK_PARTITION, LOCK_ROW)
            except ResourceNotFoundError:
                current = None
            try:
                if current is None:
                    return _Lock(lease, self._write_lock(_lock_row(lease, now), None))
                if not current.get("lease") or current["until"] <= now:
                    return _Lock(lease, self._write_lock(_lock_row(lease, now), _etag(current)))
                if ask:
                    self._write_lock(dict(current) | {"asks": int(current.get("asks", 0)) + 1}, _etag(current))
                return None
            except (ResourceExistsError, ResourceModifiedError, ResourceNotFoundError):
                continue  # the row changed under us: look again
        logger.warning("the grant lock kept changing; the waiters' next polls grant")
        return None

    def _unlock(self, lock: _Lock) -> _Lock | None:
        """Give the lock back unless someone asked for a round meanwhile: then the lock, still held."""
        try:
            self._write_lock({"PartitionKey": LOCK_PARTITION, "RowKey": LOCK_ROW, "lease": ""}, lock.etag)
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

    def _write_lock(self, row: dict[str, Any], etag: str | None) -> str:
        """Write the lock row: created when `etag` is None, else if unchanged since that etag; the new etag."""
        if etag is None:
            written = self._table.create_entity(row)
        else:
            written = self._table.update_entity(row, mode=UpdateMode.REPLACE, etag=etag,
                                                match_condition=MatchConditions.IfNotModified)
        self._lock_written = (str(written["etag"]), str(row.get("lease", "")))
        return str(written["etag"])

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
