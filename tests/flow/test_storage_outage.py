"""Storage stopped for a minute in the middle of runs: the runs resume and end correctly, nothing is lost.

Everything the host keeps (uploads, run records, the task hub's instances, the events queue) is in one
Azurite whose data is on disk, stopped for `OUTAGE_SECONDS` while two jobs are running and started again.
During the outage the host keeps working: timers fire, status checks run, and every write fails. No
completion message is delivered, so nothing from outside wakes an instance up: the host must find its way
back to every instance whose write failed, as DTFx abandons a work item it could not commit and takes it
up again from storage.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from local_runner.azurite import AzuriteEndpoints, find_azurite, free_port, start_azurite
from local_runner.host.host import LocalHost
from orchestrations.contracts import RunStatus
from tests.conftest import missing_service
from tests.flow.conftest import FlowEnv, md5, runner_after, wait_for, wait_for_end

pytestmark = [pytest.mark.azurite, pytest.mark.slow]

OUTAGE_SECONDS = 60
PACTA_SIMPLE_OUTPUT_MD5 = "0f51946d64ef6ee4daca1a6969317cba"


class RestartableAzurite:
    """An Azurite with its data in a directory, which a test can stop and start again on the same ports."""

    def __init__(self, location: Path) -> None:
        location.mkdir(parents=True, exist_ok=True)
        self.location = location
        self.endpoints = AzuriteEndpoints("127.0.0.1", free_port(), free_port(), free_port())
        self.process = self._start()

    def _start(self) -> subprocess.Popen[bytes]:
        return start_azurite(self.endpoints, log_path=self.location / "azurite.log", location=self.location)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)

    def start(self) -> None:
        self.process = self._start()


@pytest.fixture
def restartable_azurite(tmp_path: Path) -> Iterator[RestartableAzurite]:
    if find_azurite() is None:
        missing_service("Azurite is not installed (run scripts/bootstrap.sh, or `make test`)")
    azurite = RestartableAzurite(tmp_path / "azurite")
    try:
        yield azurite
    finally:
        if azurite.process.poll() is None:
            azurite.stop()


@pytest.fixture
def azurite(restartable_azurite: RestartableAzurite) -> str:
    """This module's flows run against the restartable Azurite, not the session's in-memory one."""
    return restartable_azurite.endpoints.connection_string


def test_runs_survive_storage_stopped_for_a_minute_mid_run(
    flow_env: FlowEnv, start_host: Callable[..., LocalHost], restartable_azurite: RestartableAzurite,
    fixtures_dir: Path, tmp_path: Path,
) -> None:
    gate = tmp_path / "go"
    # No completion message is delivered either: only the host's own timers can bring the runs to their end.
    start_host(
        RUNNER_COMMAND=runner_after(gate), STATUS_CHECK_INTERVAL_SECONDS="2", STATUS_CHECKS_PER_GENERATION="3",
        deliver_completions=False,
    )
    content = (fixtures_dir / "simple.csv").read_bytes()
    run_ids = [flow_env.upload(f"parse_portfolio/outage-{n}.csv", content) for n in range(2)]
    wait_for(lambda: all((r := flow_env.record(i)) and r.status is RunStatus.RUNNING for i in run_ids),
             what="both runs to be running")

    restartable_azurite.stop()
    time.sleep(OUTAGE_SECONDS)
    restartable_azurite.start()
    gate.touch()

    records = [wait_for_end(flow_env, run_id, timeout=240) for run_id in run_ids]
    assert [record.status for record in records] == [RunStatus.SUCCEEDED] * 2, [r.error for r in records]
    assert {md5(flow_env.read_blob(record.outputs[0])) for record in records} == {PACTA_SIMPLE_OUTPUT_MD5}
    assert flow_env.executions() == sorted(run_ids)
    assert flow_env.queue_messages(flow_env.env["RUNNER_EVENTS_QUEUE"]) == 2  # sent, never delivered
