"""The developer CLI's run commands (`runs`, `logs`, `watch`, `cancel`, `rerun`) against the real app.

The app runs on the in-process host with a private Azurite and the process backend (tests/flow/conftest.py);
the commands run through typer's CliRunner and talk to the host's HTTP API as they would to one in Azure.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest
import requests
from typer.testing import CliRunner, Result

from local_runner import cli as cli_module
from local_runner.cli import cli
from local_runner.host.host import LocalHost
from orchestrations.contracts import RunStatus
from tests.flow.conftest import FlowEnv, runner_after, wait_for, wait_for_end
from tests.flow.given import ended_run, rejected_run

pytestmark = [pytest.mark.azurite]


def run_cli(host: LocalHost, *args: str) -> Result:
    return CliRunner().invoke(cli, [*args, "--api-url", host.base_url])


def test_runs_json_prints_the_apis_answers_unchanged(
    flow_env: FlowEnv, start_host: Callable[..., LocalHost], fixtures_dir: Path
) -> None:
    host = start_host()
    run_id = ended_run(flow_env, fixtures_dir).run_id

    listing = run_cli(host, "runs", "--json", "--status", "succeeded", "--limit", "5")
    one = run_cli(host, "runs", run_id, "--json")

    assert listing.exit_code == 0 and one.exit_code == 0
    api = f"{host.base_url}/api/runs"
    assert listing.stdout == requests.get(api, params={"status": "succeeded", "limit": "5"}, timeout=10).text + "\n"
    assert json.loads(one.stdout) == requests.get(f"{api}/{run_id}", timeout=10).json()
    assert json.loads(listing.stdout)["runs"][0]["run_id"] == run_id


def test_runs_lists_the_run_by_a_short_id_that_runs_id_accepts(
    flow_env: FlowEnv, start_host: Callable[..., LocalHost], fixtures_dir: Path
) -> None:
    host = start_host()
    run_id = ended_run(flow_env, fixtures_dir).run_id
    short = run_id[: cli_module.SHORT_ID_CHARS]

    listing = run_cli(host, "runs")
    shown = run_cli(host, "runs", short)

    assert listing.exit_code == 0 and f"{short}  succeeded" in listing.stdout and run_id not in listing.stdout
    assert shown.exit_code == 0 and f"Run {run_id}: succeeded" in shown.stdout


def test_an_unknown_run_prints_the_apis_message_and_exits_1(start_host: Callable[..., LocalHost]) -> None:
    host = start_host()
    unknown = "run-" + "0" * 28

    results = [run_cli(host, command, unknown) for command in ("runs", "logs", "watch")]

    for result in results:
        assert result.exit_code == 1
        assert f"No run {unknown!r}" in result.stderr and "(run_not_found)" in result.stderr


def test_logs_prints_the_runners_log(
    flow_env: FlowEnv, start_host: Callable[..., LocalHost], fixtures_dir: Path
) -> None:
    host = start_host()
    record = ended_run(flow_env, fixtures_dir)

    result = run_cli(host, "logs", record.run_id)

    assert result.exit_code == 0
    assert result.stdout_bytes == flow_env.read_blob(str(record.log_uri))


def test_logs_of_a_rejected_upload_says_there_is_no_log_and_exits_1(
    flow_env: FlowEnv, start_host: Callable[..., LocalHost]
) -> None:
    host = start_host()
    run_id = rejected_run(flow_env).run_id

    result = run_cli(host, "logs", run_id)

    assert result.exit_code == 1 and "no runner log" in result.stderr and "(log_not_found)" in result.stderr


def _hold_running(flow_env: FlowEnv, start_host: Callable[..., LocalHost], fixtures_dir: Path,
                  gate: Path) -> tuple[LocalHost, str]:
    """A host whose runner waits for `gate`, and a run that is certainly `running` meanwhile."""
    host = start_host(RUNNER_COMMAND=runner_after(gate))
    run_id = flow_env.upload("parse_portfolio/held.csv", (fixtures_dir / "simple.csv").read_bytes())
    wait_for(lambda: (record := flow_env.record(run_id)) is not None and record.status is RunStatus.RUNNING)
    return host, run_id


def test_watch_follows_a_running_run_to_its_success_and_exits_0(
    flow_env: FlowEnv, start_host: Callable[..., LocalHost], fixtures_dir: Path, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    gate = tmp_path / "go"
    host, run_id = _hold_running(flow_env, start_host, fixtures_dir, gate)
    pause = cli_module._pause

    def open_gate_then_pause() -> None:  # the first poll saw `running`; now let the runner go
        gate.touch()
        pause()

    monkeypatch.setattr(cli_module, "_pause", open_gate_then_pause)

    result = run_cli(host, "watch", run_id)

    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines.index("  ✓ running") < lines.index("  ✓ succeeded")
    assert f"Run {run_id}: succeeded" in result.stdout


def test_watch_of_a_failed_run_shows_why_and_exits_1(
    flow_env: FlowEnv, start_host: Callable[..., LocalHost], fixtures_dir: Path
) -> None:
    host = start_host()
    run_id = ended_run(flow_env, fixtures_dir, "columns/simple_investorname.csv").run_id

    result = run_cli(host, "watch", run_id)

    assert result.exit_code == 1
    assert "✗ failed" in result.stdout and "no_portfolios" in result.stdout


def test_watch_stopped_with_ctrl_c_exits_130_quietly_and_leaves_the_run_going(
    flow_env: FlowEnv, start_host: Callable[..., LocalHost], fixtures_dir: Path, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    gate = tmp_path / "go"
    host, run_id = _hold_running(flow_env, start_host, fixtures_dir, gate)

    def interrupt() -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli_module, "_pause", interrupt)

    result = run_cli(host, "watch", run_id)

    assert result.exit_code == cli_module.INTERRUPTED_EXIT_CODE
    assert "Traceback" not in result.output and "the run goes on" in result.stderr
    assert flow_env.record(run_id).status is RunStatus.RUNNING  # type: ignore[union-attr]
    gate.touch()
    assert wait_for_end(flow_env, run_id).status is RunStatus.SUCCEEDED


def test_cancel_stops_a_running_run_with_the_reason_and_the_user(
    flow_env: FlowEnv, start_host: Callable[..., LocalHost], fixtures_dir: Path, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    host, run_id = _hold_running(flow_env, start_host, fixtures_dir, tmp_path / "never")
    monkeypatch.setattr(cli_module, "_who", lambda: "alice")

    result = run_cli(host, "cancel", run_id, "--reason", "wrong portfolio")

    assert result.exit_code == 0, result.output
    assert f"Cancelling run {run_id}" in result.stdout
    record = wait_for_end(flow_env, run_id)
    assert record.status is RunStatus.CANCELLED
    assert record.error is not None and "alice" in record.error.message and "wrong portfolio" in record.error.message


def test_cancel_of_an_ended_run_prints_the_apis_reason_and_exits_1(
    flow_env: FlowEnv, start_host: Callable[..., LocalHost], fixtures_dir: Path
) -> None:
    host = start_host()
    run_id = ended_run(flow_env, fixtures_dir).run_id

    result = run_cli(host, "cancel", run_id)

    assert result.exit_code == 1
    assert "(run_already_ended)" in result.stderr and "succeeded" in result.stderr


def test_rerun_prints_the_new_run_which_runs_to_its_end(
    flow_env: FlowEnv, start_host: Callable[..., LocalHost], fixtures_dir: Path
) -> None:
    host = start_host()
    run_id = ended_run(flow_env, fixtures_dir).run_id

    result = run_cli(host, "rerun", run_id)

    assert result.exit_code == 0, result.output
    found = re.search(rf"Run {run_id} rerun as (\S+);", result.stdout)
    assert found is not None, result.stdout
    new_id = found.group(1)
    assert new_id != run_id and f"`watch {new_id}`" in result.stdout
    assert wait_for_end(flow_env, new_id).status is RunStatus.SUCCEEDED
