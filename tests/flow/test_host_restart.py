"""The host killed mid-run and started again: the run completes, exactly once.

The host runs as its own process (`python -m local_runner host`), as under `make up`. The job is
frozen with SIGSTOP while the host is killed, so "mid-run" is a certainty, not a race.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from local_runner.azurite import free_port
from orchestrations.contracts import RunStatus
from tests.flow.conftest import FlowEnv, HostProcess, md5, wait_for, wait_for_end

pytestmark = [pytest.mark.azurite, pytest.mark.slow]


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
    # The record is written by the orchestration's last activity; its end comes just after.
    history = wait_for(lambda: (events := hosts[1].history(run_id))
                       and events[-1]["EventType"] == "ExecutionCompleted" and events)
    assert [event["EventType"] for event in history].count("ExecutionCompleted") == 1
    assert [event.get("Name") for event in history].count("start_job") == 1
