"""The host killed mid-run and started again: the run completes, exactly once.

The host runs as its own process (`python -m local_runner host`), as under `make up`. The job is
frozen with SIGSTOP while the host is killed, so "mid-run" is a certainty, not a race.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from local_runner.azurite import free_port
from orchestrations.contracts import RunStatus
from tests.conftest import PROJECT_ROOT
from tests.flow.conftest import FlowEnv, md5, wait_for, wait_for_end

pytestmark = [pytest.mark.azurite, pytest.mark.slow]


class HostProcess:
    def __init__(self, env: dict[str, str], port: int, log: Path) -> None:
        self.port = port
        with log.open("ab") as output:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "local_runner", "host", "--port", str(port)],
                cwd=PROJECT_ROOT, env={**os.environ, **env}, stdout=output, stderr=subprocess.STDOUT,
            )
        wait_for(self.answers, timeout=60)

    def answers(self) -> bool:
        try:
            return requests.get(f"http://127.0.0.1:{self.port}/api/runs?limit=1", timeout=2).ok
        except requests.ConnectionError:
            assert self.process.poll() is None, "the host exited; see its log"
            return False

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(timeout=10)

    def history(self, run_id: str) -> list[dict[str, object]]:
        url = f"http://127.0.0.1:{self.port}/runtime/webhooks/durabletask/instances/{run_id}?showHistory=true"
        return list(requests.get(url, timeout=10).json()["historyEvents"])


@pytest.fixture
def hosts(flow_env: FlowEnv, tmp_path: Path) -> Iterator[list[HostProcess]]:
    started: list[HostProcess] = []
    yield started
    for host in started:
        if host.process.poll() is None:
            host.kill()


def test_run_survives_a_host_killed_mid_run_and_completes_once(
    flow_env: FlowEnv, hosts: list[HostProcess], tmp_path: Path, fixtures_dir: Path
) -> None:
    env = {**flow_env.env, "STATUS_CHECK_INTERVAL_SECONDS": "1"}
    port = free_port()
    hosts.append(HostProcess(env, port, tmp_path / "host-a.log"))
    run_id = flow_env.upload("parse_portfolio/restart.csv", (fixtures_dir / "simple.csv").read_bytes())
    pid_file = flow_env.work_dir / run_id / "pid"
    job_group = int(wait_for(lambda: pid_file.exists() and pid_file.read_text().strip()))
    os.killpg(job_group, signal.SIGSTOP)
    try:
        wait_for(lambda: (record := flow_env.record(run_id)) is not None and record.status is RunStatus.RUNNING)
        hosts[0].kill()

        hosts.append(HostProcess(env, port, tmp_path / "host-b.log"))
    finally:
        os.killpg(job_group, signal.SIGCONT)
    record = wait_for_end(flow_env, run_id)

    assert record.status is RunStatus.SUCCEEDED, record.error
    assert [md5(flow_env.read_blob(uri)) for uri in record.outputs] == ["0f51946d64ef6ee4daca1a6969317cba"]
    assert flow_env.executions() == [run_id]
    assert record.attempts == 1
    history = hosts[1].history(run_id)
    assert [event["EventType"] for event in history].count("ExecutionCompleted") == 1
    assert [event.get("Name") for event in history].count("start_job") == 1
