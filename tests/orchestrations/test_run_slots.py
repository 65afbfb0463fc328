"""The concurrency cap's slots and line on real Azurite: upload order, the cap under contention from many
hosts at once, slots taken back from dead orchestrations, a crashed granter's lock outlived."""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from azure.data.tables import TableServiceClient

from orchestrations import run_slots
from orchestrations.run_slots import RunSlots, line_key

T0 = datetime(2026, 12, 6, 9, 0, tzinfo=UTC)
pytestmark = pytest.mark.azurite


@pytest.fixture
def table_name(azurite: str, unique_name: str) -> str:
    TableServiceClient.from_connection_string(azurite).create_table(unique_name)
    return unique_name


def host(azurite: str, table_name: str) -> RunSlots:
    """One host's view: its own client, as each Functions host has."""
    return RunSlots(TableServiceClient.from_connection_string(azurite).get_table_client(table_name))


def everyone_alive(run_ids: list[str]) -> set[str]:
    return set(run_ids)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_the_line_is_upload_order_whatever_the_order_of_joining(azurite: str, table_name: str) -> None:
    slots = host(azurite, table_name)
    for run_id, uploaded in [("run-c", 3), ("run-a", 1), ("run-b", 2), ("run-a", 1)]:
        slots.join(run_id, at(uploaded))

    assert [slots.position(run_id) for run_id in ("run-a", "run-b", "run-c", "run-x")] == [1, 2, 3, None]
    assert slots.waiting() == 3

    granted = slots.grant(2, everyone_alive)

    assert [grant.run_id for grant in granted] == ["run-a", "run-b"]
    assert sorted(slots.holders().values()) == ["run-a", "run-b"]
    assert (slots.position("run-a"), slots.position("run-c")) == (None, 1)
    assert slots.grant(2, everyone_alive) == []  # full: run-c waits


def test_a_place_counted_within_a_bound_reads_no_further_down_the_line(azurite: str, table_name: str) -> None:
    slots = host(azurite, table_name)
    for place in range(1, 61):
        slots.join(f"run-{place:03}", at(place))
    read: list[str] = []
    query = slots._table.query_entities

    def counted(*args: Any, **kwargs: Any) -> Any:
        for entity in query(*args, **kwargs):
            read.append(entity["run_id"])
            yield entity

    slots._table.query_entities = counted  # type: ignore[method-assign]

    assert [slots.position(f"run-{place:03}", within=50) for place in (1, 50, 51, 60)] == [1, 50, None, None]
    assert len(read) == 1 + 50 + 50 + 50 and set(read) == {f"run-{place:03}" for place in range(1, 51)}
    assert slots.position("run-060") == 60  # unbounded: the whole line


def test_a_release_lets_the_next_in_line_start_and_joining_again_changes_nothing(
    azurite: str, table_name: str
) -> None:
    slots = host(azurite, table_name)
    for index, run_id in enumerate(["run-a", "run-b", "run-c"]):
        slots.join(run_id, at(index))
    slots.grant(1, everyone_alive)
    slots.join("run-a", at(0))  # a retried join of a run that holds a slot

    assert slots.holders() == {"0000": "run-a"} and slots.waiting() == 2
    released = slots.release("run-a", at(0), 1)
    assert released.released and released.grants == [run_slots.Grant("run-b", "0000")]  # handed straight on
    assert slots.release("run-a", at(0), 1) == run_slots.Release(False, [])
    assert slots.release("run-c", at(2), 1) == run_slots.Release(False, [])  # a waiter that gives up leaves the line
    assert slots.waiting() == 0 and slots.holders() == {"0000": "run-b"}


def test_lowering_the_cap_starts_nothing_until_below_it_and_raising_it_starts_at_once(
    azurite: str, table_name: str
) -> None:
    slots = host(azurite, table_name)
    for index in range(6):
        slots.join(f"run-{index}", at(index))
    slots.grant(3, everyone_alive)

    assert slots.release("run-0", at(0), 1) == run_slots.Release(True, [])  # cap now 1: two still hold slots
    assert slots.grant(1, everyone_alive) == []
    assert slots.release("run-1", at(1), 1) == run_slots.Release(True, [])
    assert slots.release("run-2", at(2), 1).grants == [run_slots.Grant("run-3", "0000")]
    assert slots.holders() == {"0000": "run-3"}
    assert [grant.run_id for grant in slots.grant(3, everyone_alive)] == ["run-4", "run-5"]


def test_a_slot_whose_orchestration_no_longer_runs_is_taken_back(azurite: str, table_name: str) -> None:
    slots = host(azurite, table_name)
    for index, run_id in enumerate(["run-dead", "run-alive", "run-next"]):
        slots.join(run_id, at(index))
    slots.grant(2, everyone_alive)
    asked: list[list[str]] = []

    def only_run_alive(run_ids: list[str]) -> set[str]:
        asked.append(sorted(run_ids))
        return {"run-alive"}

    assert slots.grant(2, only_run_alive) == []  # a join's grant asks nobody (a burst of them would ask often)
    assert asked == []

    granted = slots.grant(2, only_run_alive, poll=True)  # a waiter's poll

    assert asked == [["run-alive", "run-dead"]]
    assert [grant.run_id for grant in granted] == ["run-next"]
    assert sorted(slots.holders().values()) == ["run-alive", "run-next"]


def test_holders_are_not_asked_about_while_a_slot_is_free(azurite: str, table_name: str) -> None:
    slots = host(azurite, table_name)
    slots.join("run-a", at(0))

    def nobody_may_ask(run_ids: list[str]) -> set[str]:
        raise AssertionError(f"asked about {run_ids}")

    assert [grant.run_id for grant in slots.grant(3, nobody_may_ask)] == ["run-a"]


def test_a_crashed_granters_lock_is_outlived(
    azurite: str, table_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(run_slots, "LOCK_LEASE_SECONDS", 0.5)
    slots = host(azurite, table_name)
    crashed = slots._lock_or_ask(ask=False)  # taken and never given back
    slots.join("run-a", at(0))

    assert crashed is not None
    assert slots.grant(1, everyone_alive) == []  # asks the holder, which never answers
    time.sleep(run_slots.LOCK_LEASE_SECONDS)
    assert [grant.run_id for grant in slots.grant(1, everyone_alive, poll=True)] == ["run-a"]


def test_a_grant_asked_for_round_after_round_answers_every_ask_and_gives_the_lock_back(
    azurite: str, table_name: str
) -> None:
    other = host(azurite, table_name)
    joins = iter(range(1, 16))

    class AskedWhileGranting(RunSlots):
        def _grant_round(
            self, cap: int, alive: Any, releasing: str | None
        ) -> tuple[list[run_slots.Grant], set[str], bool, bool]:
            for index in joins:  # another host's join, fifteen rounds in a row, each asking for a round
                other.join_line(f"run-{index:02}", at(index))
                assert other.grant(cap, everyone_alive) == []
                break
            return super()._grant_round(cap, alive, releasing)

    granter = AskedWhileGranting(TableServiceClient.from_connection_string(azurite).get_table_client(table_name))
    granter.join_line("run-00", at(0))

    granted = granter.grant(20, everyone_alive)

    assert [grant.run_id for grant in granted] == [f"run-{index:02}" for index in range(16)]
    assert other._lock_or_ask(ask=False) is not None  # the lock was given back: another host takes it


def test_a_grant_refuses_a_cap_it_cannot_hold(azurite: str, table_name: str) -> None:
    with pytest.raises(ValueError, match=r"the cap must be 1\.\.9999, not 0"):
        host(azurite, table_name).grant(0, everyone_alive)


def test_line_keys_sort_as_upload_times_in_any_time_zone() -> None:
    moment = at(5)

    assert line_key("run-a", moment) == line_key("run-a", moment.astimezone(timezone(timedelta(hours=2))))
    assert line_key("run-z", at(1)) < line_key("run-a", at(2)) < line_key("run-a", at(10.5)) < line_key("run-a", at(11))


def test_two_hundred_runs_on_four_hosts_never_exceed_the_cap_and_each_gets_one_slot(
    azurite: str, table_name: str
) -> None:
    cap, runs = 5, 200
    hosts = [host(azurite, table_name) for _ in range(4)]
    started: Counter[str] = Counter()
    running: set[str] = set()
    most = 0
    lock = threading.Lock()
    go = {f"run-{index:03}": threading.Event() for index in range(runs)}

    def start(granted: list[run_slots.Grant]) -> None:
        nonlocal most
        with lock:
            for grant in granted:
                started[grant.run_id] += 1
                running.add(grant.run_id)
                most = max(most, len(running))
                go[grant.run_id].set()

    def run(index: int) -> None:
        run_id = f"run-{index:03}"
        slots = hosts[index % len(hosts)]
        start(slots.look(run_id, at(index), cap, everyone_alive, poll=False).grants)
        while not go[run_id].wait(0.5):  # a waiter's poll
            start(slots.look(run_id, at(index), cap, everyone_alive, poll=True).grants)
        threading.Event().wait(random.uniform(0, 0.02))  # the job
        with lock:
            running.discard(run_id)
        start(slots.release(run_id, at(index), cap).grants)

    with ThreadPoolExecutor(max_workers=40) as pool:
        list(pool.map(run, range(runs)))

    assert most <= cap
    assert set(started) == set(go) and set(started.values()) == {1}
    assert hosts[0].holders() == {} and hosts[0].waiting() == 0


def test_a_look_answers_from_the_grants_own_read_and_a_retried_look_gets_no_second_slot(
    azurite: str, table_name: str
) -> None:
    slots = host(azurite, table_name)
    first = slots.look("run-a", at(0), 2, everyone_alive, poll=False)
    queued = [slots.look(run_id, at(index), 2, everyone_alive, poll=False)
              for index, run_id in enumerate(["run-b", "run-c"], start=1)]

    assert first == run_slots.Look(True, [run_slots.Grant("run-a", "0000")])
    assert [look.holds for look in queued] == [True, False]
    # run-a's look again (a retried activity), while a slot is free and while none is: one slot, out of line.
    assert slots.release("run-b", at(1), 2).grants == [run_slots.Grant("run-c", "0001")]
    assert slots.look("run-a", at(0), 2, everyone_alive, poll=False) == run_slots.Look(True, [])
    slots.release("run-c", at(2), 2)
    slots.join_line("run-d", at(3))
    assert slots.look("run-a", at(0), 2, everyone_alive, poll=True) == run_slots.Look(
        True, [run_slots.Grant("run-d", "0001")]
    )
    assert slots.holders() == {"0000": "run-a", "0001": "run-d"} and slots.waiting() == 0


def test_a_round_passes_over_a_waiter_that_holds_a_slot_and_takes_it_out_of_line(
    azurite: str, table_name: str
) -> None:
    slots = host(azurite, table_name)
    slots.join_line("run-a", at(0))
    slots.grant(2, everyone_alive)
    for run_id, uploaded in [("run-a", 0), ("run-b", 1)]:  # run-a back in line (a join cut short, say)
        slots.join_line(run_id, at(uploaded))

    assert slots.grant(2, everyone_alive) == [run_slots.Grant("run-b", "0001")]
    assert slots.holders() == {"0000": "run-a", "0001": "run-b"} and slots.waiting() == 0


def test_a_release_while_another_host_grants_frees_the_slot_and_asks_that_host_for_a_round(
    azurite: str, table_name: str
) -> None:
    slots, other = host(azurite, table_name), host(azurite, table_name)
    slots.join_line("run-a", at(0))
    slots.grant(1, everyone_alive)
    slots.join_line("run-b", at(1))
    granting = other._lock_or_ask(ask=False)
    assert granting is not None

    assert slots.release("run-a", at(0), 1) == run_slots.Release(True, [])
    assert slots.holders() == {}
    assert other._unlock(granting) is not None  # asked: its unlock fails, it runs one more round
    assert [grant.run_id for grant in other._grant_round(1, None, None)[0]] == ["run-b"]


def test_a_lock_given_back_by_this_host_is_taken_again_without_reading_it(
    azurite: str, table_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    slots, other = host(azurite, table_name), host(azurite, table_name)
    slots.join_line("run-a", at(0))
    slots.grant(1, everyone_alive)  # takes the lock (the row read once: it did not exist) and gives it back
    reads: list[tuple[str, str]] = []
    real_get = slots._table.get_entity
    monkeypatch.setattr(slots._table, "get_entity", lambda *key, **kw: reads.append(key) or real_get(*key, **kw))

    slots.join_line("run-b", at(1))
    assert slots.release("run-a", at(0), 1).grants == [run_slots.Grant("run-b", "0000")]
    assert reads == []
    held_elsewhere = other._lock_or_ask(ask=False)  # another host writes the row: this host's etag is stale
    assert held_elsewhere is not None
    assert slots._lock_or_ask(ask=True) is None  # so it reads the row, finds it held and asks
    assert reads == [(run_slots.LOCK_PARTITION, run_slots.LOCK_ROW)]


def test_a_join_between_a_releases_read_of_the_line_and_its_freeing_of_the_slot_is_not_missed(
    azurite: str, table_name: str
) -> None:
    other = host(azurite, table_name)
    looks: list[run_slots.Look] = []
    releasing_now = threading.Event()

    class JoinedMeanwhile(RunSlots):
        def _line(self, limit: int | None = None, select: list[str] | None = None) -> Any:
            waiters = list(super()._line(limit, select))
            if releasing_now.is_set() and not looks:  # the release's round has read an empty line: run-c joins
                looks.append(other.look("run-c", at(2), 1, everyone_alive, poll=False))
            return iter(waiters)

    releasing = JoinedMeanwhile(TableServiceClient.from_connection_string(azurite).get_table_client(table_name))
    assert releasing.look("run-a", at(0), 1, everyone_alive, poll=False).holds
    releasing_now.set()

    released = releasing.release("run-a", at(0), 1)

    assert looks == [run_slots.Look(False, [])]  # every slot held when it looked: no lock, no grant
    assert released == run_slots.Release(True, [run_slots.Grant("run-c", "0000")])
    assert other.holders() == {"0000": "run-c"} and other.waiting() == 0
