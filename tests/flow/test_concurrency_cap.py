"""MAX_CONCURRENT_RUNS through the whole flow: the in-process host, real Azurite, the process backend.

The number of live jobs is sampled from the backend itself (each execution's process group, as its own
`status` reports it) all through the burst, not inferred from records.
"""

from __future__ import annotations

import contextlib
import json
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType

import pytest
import requests
from azure.data.tables import TableServiceClient

from local_runner.azurite import free_port
from local_runner.host.durable.errors import InstanceNotFoundError
from local_runner.host.host import LocalHost
from local_runner.process_backend import ProcessJobBackend
from orchestrations import concurrency
from orchestrations.contracts import ExecutionRef, JobState, RunStatus
from orchestrations.run_slots import RunSlots
from tests.conftest import PROJECT_ROOT
from tests.flow.conftest import (
    FlowEnv,
    HostProcess,
    api_get,
    api_post,
    scheduled_activities,
    wait_for,
    wait_for_end,
)

pytestmark = [pytest.mark.azurite, pytest.mark.slow]


def runner_after_a_pause(seconds: float) -> str:
    """RUNNER_COMMAND: the runner, after `seconds` of a live process (long enough to be seen overlapping)."""
    code = f"import os, sys, time\ntime.sleep({seconds})\nos.execv(sys.executable, [sys.executable, '-m', 'runner'])"
    return json.dumps([sys.executable, "-c", code])


class LiveJobs:
    """Samples, every 20 ms until closed, how many of the backend's executions are running."""

    def __init__(self, work_dir: Path) -> None:
        self._work_dir = work_dir
        self._backend = ProcessJobBackend(work_dir, project_root=PROJECT_ROOT)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        # An execution whose exit code is recorded never runs again: not asked about again. Each answer reads the
        # end of its log: asking about all 200 every 20 ms took 45 s of CPU in the 200-upload test, against 10 s.
        self._ended: set[str] = set()
        self.most = 0
        self.samples = 0

    def running(self) -> int:
        if not self._work_dir.exists():
            return 0
        count = 0
        for path in self._work_dir.iterdir():
            if path.name in self._ended:
                continue
            status = self._backend.status(ExecutionRef(backend="process", name=path.name))
            if status.exit_code is not None:  # (not a start whose process is not recorded yet)
                self._ended.add(path.name)
            count += status.state is JobState.RUNNING
        return count

    def _sample(self) -> None:
        while not self._stop.wait(0.02):
            self.most = max(self.most, self.running())
            self.samples += 1

    def __enter__(self) -> LiveJobs:
        self._thread.start()
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self._stop.set()
        self._thread.join()


def slots_of(flow: FlowEnv) -> RunSlots:
    return RunSlots(TableServiceClient.from_connection_string(flow.connection).get_table_client(flow.env["RUNS_TABLE"]))


def looks_for_a_slot(host: LocalHost, run_id: str) -> int:
    """How many times the run's orchestration has asked for a slot (0 before it exists)."""
    try:
        return scheduled_activities(host, run_id).count("acquire_slot")
    except InstanceNotFoundError:
        return 0


def _execution_started(host: LocalHost, run_id: str) -> dict | None:
    try:
        history = host.engine.get_history(run_id)
    except InstanceNotFoundError:
        return None
    return next((event for event in history if event["EventType"] == 0), None)


def generation(host: LocalHost, run_id: str) -> str | None:
    """The execution id of the orchestration's current generation."""
    started = _execution_started(host, run_id)
    return None if started is None else str(started["OrchestrationInstance"]["ExecutionId"])


def told_of_slot(host: LocalHost, run_id: str) -> bool:
    """Whether the current generation began as told of a slot (its first step the start)."""
    started = _execution_started(host, run_id)
    return started is not None and bool(json.loads(started["Input"]).get("told_of_slot"))


@contextlib.contextmanager
def one_slot_held(
    flow: FlowEnv, start_host: Callable[..., LocalHost], portfolio: bytes
) -> Iterator[tuple[LocalHost, str]]:
    """A host at MAX_CONCURRENT_RUNS=1 whose first run holds the slot, its stand-in job running until the block
    ends (then every stand-in job ends at once, writing no result: those runs end `failed`)."""
    gate = flow.work_dir.parent / "gate"
    host = start_host(MAX_CONCURRENT_RUNS="1", RUNNER_COMMAND=json.dumps(
        [sys.executable, "-c", f"import os, time\nwhile not os.path.exists({str(gate)!r}): time.sleep(0.05)"]))
    try:
        holding = flow.upload("parse_portfolio/first.csv", portfolio)
        wait_for(lambda: (record := flow.record(holding)) is not None and record.status is RunStatus.RUNNING)
        yield host, holding
    finally:
        gate.touch()


def upload_all(flow: FlowEnv, content: bytes, count: int) -> list[str]:
    with ThreadPoolExecutor(max_workers=10) as pool:
        return list(pool.map(lambda n: flow.upload(f"parse_portfolio/burst-{n:03}.csv", content), range(count)))


def test_thirty_uploads_at_a_cap_of_three_never_run_more_than_three_jobs_and_all_succeed(
    flow_env: FlowEnv, start_host: Callable[..., LocalHost], fixtures_dir: Path
) -> None:
    host = start_host(MAX_CONCURRENT_RUNS="3", SLOT_POLL_SECONDS="600",
                      RUNNER_COMMAND=runner_after_a_pause(0.5))
    with LiveJobs(flow_env.work_dir) as live:
        run_ids = upload_all(flow_env, (fixtures_dir / "simple.csv").read_bytes(), 30)
        records = [wait_for_end(flow_env, run_id, timeout=240) for run_id in run_ids]

    assert [record.status for record in records] == [RunStatus.SUCCEEDED] * 30, [
        record.error for record in records if record.status is not RunStatus.SUCCEEDED]
    assert live.most == 3, f"at most {live.most} jobs ran at once over {live.samples} samples"
    # Started as told (SlotGranted), not by the 600 s look: in the order the uploads were accepted, each
    # at most cap - 1 places early (the grants of one round start together). The first `cap` slots go to the
    # runs that ask first: the host takes uploads in batches (as the Functions host does), so their
    # orchestrations start in any order; a run can only be let ahead of once it is in line.
    by_request = sorted(records, key=lambda record: record.requested_at)
    by_start = sorted(records, key=lambda record: record.started_at or record.requested_at)
    for place, record in enumerate(by_start[3:], start=3):
        assert by_request.index(record) <= place + 2
    slots = slots_of(flow_env)
    assert slots.holders() == {} and slots.waiting() == 0
    # A run that waited for its slot started in a fresh generation, which begins with the start (which confirms
    # the slot); a run that found one at once looked once: no generation holds both the looks of the wait and
    # the job's checks (bench/history.py).
    final_generations = [scheduled_activities(host, run_id) for run_id in run_ids]
    assert all(activities[:2] in (["start_job", "check_job"], ["start_job", "release_slot"],
                                  ["acquire_slot", "start_job"]) and activities.count("acquire_slot") <= 1
               for activities in final_generations), final_generations
    assert sum(activities[0] == "start_job" for activities in final_generations) >= 15, final_generations


def test_a_queued_run_shows_its_place_and_is_cancelled_without_ever_starting_a_job(
    flow_env: FlowEnv, start_host: Callable[..., LocalHost], fixtures_dir: Path
) -> None:
    portfolio = (fixtures_dir / "simple.csv").read_bytes()
    with one_slot_held(flow_env, start_host, portfolio) as (host, holding):
        second = flow_env.upload("parse_portfolio/second.csv", portfolio)
        # The third only once the second is in line: uploads taken in one batch may join in either order, and the
        # third's own look would then have found itself first (docs/concurrency.md).
        wait_for(lambda: api_get(host, f"runs/{second}").json().get("queue_position") == 1)
        third = flow_env.upload("parse_portfolio/third.csv", portfolio)

        def queued_second_in_line() -> dict | None:
            view = api_get(host, f"runs/{third}").json()
            custom = (view.get("orchestration") or {}).get("custom_status") or {}
            return view if view.get("queue_position") == 2 and custom.get("phase") == "queued" else None

        view = wait_for(queued_second_in_line)
        listing = {run["run_id"]: run for run in api_get(host, "runs").json()["runs"]}
        cancelled = api_post(host, f"runs/{second}/cancel", json={"reason": "not needed", "by": "test"})
        ended = wait_for_end(flow_env, second)

        assert view["status"] == "queued" and view["orchestration"]["custom_status"]["position"] == 2
        assert listing[second]["queue_position"] == 1 and listing[holding]["queue_position"] is None
        assert cancelled.status_code == 202
        assert ended.status is RunStatus.CANCELLED and ended.execution_ref is None
        assert second not in flow_env.executions()
        assert wait_for(lambda: api_get(host, f"runs/{third}").json()["queue_position"] == 1)
    assert wait_for_end(flow_env, third, timeout=60).status is RunStatus.FAILED  # the stand-in job writes no result
    assert slots_of(flow_env).holders() == {} and slots_of(flow_env).waiting() == 0


def test_a_look_counts_places_only_near_the_head_of_the_line_and_the_api_counts_them_all(
    flow_env: FlowEnv, start_host: Callable[..., LocalHost], fixtures_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(concurrency, "POSITION_LOOKAHEAD", 1)  # (50 in the app)
    portfolio = (fixtures_dir / "simple.csv").read_bytes()
    with one_slot_held(flow_env, start_host, portfolio) as (host, _holding):
        second = flow_env.upload("parse_portfolio/second.csv", portfolio)
        wait_for(lambda: api_get(host, f"runs/{second}").json().get("queue_position") == 1)
        third = flow_env.upload("parse_portfolio/third.csv", portfolio)

        def queued(run_id: str) -> dict | None:
            view = api_get(host, f"runs/{run_id}").json()
            custom = (view.get("orchestration") or {}).get("custom_status") or {}
            return view if custom.get("phase") == "queued" else None

        second_view, third_view = wait_for(lambda: queued(second)), wait_for(lambda: queued(third))

        assert second_view["orchestration"]["custom_status"]["position"] == 1
        assert third_view["orchestration"]["custom_status"]["position"] is None  # beyond the look's count
        assert third_view["queue_position"] == 2


def test_a_forged_slot_notice_starts_no_job_without_a_slot(
    flow_env: FlowEnv, start_host: Callable[..., LocalHost], fixtures_dir: Path
) -> None:
    portfolio = (fixtures_dir / "simple.csv").read_bytes()
    with one_slot_held(flow_env, start_host, portfolio) as (host, _holding):
        queued = flow_env.upload("parse_portfolio/second.csv", portfolio)
        wait_for(lambda: looks_for_a_slot(host, queued) == 1)
        waiting = generation(host, queued)

        forged = requests.post(
            f"{host.base_url}/runtime/webhooks/durabletask/instances/{queued}/raiseEvent/SlotGranted",
            json={"slot": "0000"}, timeout=10,
        )
        # The notice sends it to start_job, which finds no slot and starts nothing; it waits again, in a fresh
        # generation that looks for its slot.
        wait_for(lambda: generation(host, queued) not in (waiting, None) and looks_for_a_slot(host, queued) == 1
                 and not told_of_slot(host, queued))

        assert forged.status_code == 202
        assert flow_env.record(queued).status is RunStatus.QUEUED  # type: ignore[union-attr]
        assert queued not in flow_env.executions()
        assert api_get(host, f"runs/{queued}").json()["queue_position"] == 1
    assert wait_for_end(flow_env, queued, timeout=60).execution_ref is not None  # its turn came, then it ran


@pytest.mark.timeout(900)  # 200 whole runs: about 2 minutes on 2 idle cores
def test_two_hundred_uploads_at_a_cap_of_five_with_the_host_killed_midway_lose_no_slot(
    flow_env: FlowEnv, hosts: list[HostProcess], tmp_path: Path, fixtures_dir: Path
) -> None:
    # Waiters look for a slot themselves every 15 s (a notice lost to the kill); every 5 s, the looks of 195
    # waiters doubled the time of the whole test (277 s against 138 s).
    env = {**flow_env.env, "MAX_CONCURRENT_RUNS": "5", "SLOT_POLL_SECONDS": "15"}
    port = free_port()
    hosts.append(HostProcess(env, port, tmp_path / "host-a.log"))
    with LiveJobs(flow_env.work_dir) as live:
        run_ids = upload_all(flow_env, (fixtures_dir / "simple.csv").read_bytes(), 200)
        wanted = set(run_ids)

        def recorded() -> int:
            # One listing of the runs table twice a second, not 200 reads every 20 ms: the test's own requests
            # share Azurite and the cores with the hosts and jobs it watches.
            return sum(record.status.is_terminal and record.run_id in wanted
                       for record in flow_env.runs.list_runs(limit=500))

        wait_for(lambda: recorded() >= 40, timeout=300, interval=0.5)
        hosts[0].kill()  # mid-burst: runs holding slots, starting, waiting in line, recording
        hosts.append(HostProcess(env, port, tmp_path / "host-b.log"))
        wait_for(lambda: recorded() == len(run_ids), timeout=600, interval=0.5)
        records = [wait_for_end(flow_env, run_id) for run_id in run_ids]

    assert {record.run_id: record.error for record in records if record.status is not RunStatus.SUCCEEDED} == {}
    assert sorted(flow_env.executions()) == sorted(run_ids)  # one execution each
    assert live.most <= 5, f"{live.most} jobs alive at once"
    slots = slots_of(flow_env)
    assert slots.holders() == {} and slots.waiting() == 0
