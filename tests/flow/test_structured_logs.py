"""A whole run's logs (host, runner console, runner.log): the run id on every line about the run, the execution
ref once the job started, JSON lines or text as LOG_FORMAT says, and no secret anywhere.

Lines "about the run" are those the app's own code logs (`orchestrations.*`, `function_app.*` and the local job
backends) that name the run; the host's own lines (start-up, "Executing 'Functions.…'", the local durable engine,
which stands in for the Functions host and the Durable extension) need not carry it.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from local_runner.host.host import LocalHost
from local_runner.process_backend import LOG_FILE
from orchestrations.callback_tokens import derive_callback_token
from orchestrations.contracts import RunStatus
from orchestrations.log_context import HANDLER_NAME
from tests.conftest import TEST_CALLBACK_TOKEN_KEY
from tests.flow.conftest import FlowEnv, api_get, wait_for_end

pytestmark = [pytest.mark.azurite, pytest.mark.slow]

APP_LOGGERS = ("orchestrations", "function_app", "local_runner.process_backend")


@pytest.fixture
def host_lines(caplog: pytest.LogCaptureFixture) -> Iterator[io.StringIO]:
    """Every line the host logs, formatted as an operator sees it: a handler under the local host's name,
    whose format the app sets from LOG_FORMAT when it loads."""
    caplog.set_level(logging.INFO)
    lines = io.StringIO()
    handler = logging.StreamHandler(lines)
    handler.set_name(HANDLER_NAME)
    logging.getLogger().addHandler(handler)
    try:
        yield lines
    finally:
        logging.getLogger().removeHandler(handler)


def run_to_the_end(flow_env: FlowEnv, host: LocalHost, fixtures_dir: Path) -> tuple[str, str]:
    """Upload a portfolio, wait until its orchestration (and so its job) has ended; the run id and runner.log."""
    run_id = flow_env.upload("parse_portfolio/simple.csv", (fixtures_dir / "simple.csv").read_bytes())
    record = wait_for_end(flow_env, run_id)
    assert record.status is RunStatus.SUCCEEDED, record.error
    api_get(host, f"runs/{run_id}").raise_for_status()
    host.engine.wait_for_status(run_id, {"Completed"})
    assert record.log_uri
    return run_id, flow_env.read_blob(record.log_uri).decode()


def secrets_of_the_run(flow_env: FlowEnv, run_id: str) -> list[str]:
    account_key = flow_env.connection.split("AccountKey=")[1].split(";")[0]
    token = derive_callback_token(SecretStr(TEST_CALLBACK_TOKEN_KEY), run_id, 1)
    return [token, TEST_CALLBACK_TOKEN_KEY, account_key, flow_env.connection]


def test_json_lines_of_a_whole_run_carry_its_run_id_and_execution_ref_and_no_secret(
    flow_env: FlowEnv, start_host: Callable[..., LocalHost], fixtures_dir: Path, host_lines: io.StringIO
) -> None:
    host = start_host(LOG_FORMAT="json")

    run_id, runner_log = run_to_the_end(flow_env, host, fixtures_dir)

    host_records = [json.loads(line) for line in host_lines.getvalue().splitlines()]
    assert all({"ts", "level", "logger", "msg"} <= record.keys() for record in host_records)
    about_the_run = [r for r in host_records if r["logger"].startswith(APP_LOGGERS) and run_id in r["msg"]]
    assert about_the_run and [r for r in about_the_run if r.get("run_id") != run_id] == []
    ref = f"process:{run_id}"
    started = next(n for n, r in enumerate(about_the_run) if r.get("execution_ref") == ref)
    assert [r["msg"] for r in about_the_run[started:] if r.get("execution_ref") != ref] == []
    assert any(r["msg"] == f"Run {run_id} succeeded" for r in about_the_run[started:])
    # Not only the app's own loggers: the storage SDK's lines of the run's activities (in threads) carry it too.
    assert any(r["logger"].startswith("azure.core") and r.get("run_id") == run_id for r in host_records)

    console = (flow_env.work_dir / run_id / LOG_FILE).read_text()
    runner_records = [json.loads(line) for line in console.splitlines() if line.strip()]
    assert runner_records and all(r["run_id"] == run_id and r["logger"].startswith("runner") for r in runner_records)
    assert [line for line in runner_log.splitlines() if line[:4].isdigit() and f"[run {run_id}]" not in line] == []

    everything = host_lines.getvalue() + console + runner_log
    assert [secret for secret in secrets_of_the_run(flow_env, run_id) if secret in everything] == []


def test_text_lines_of_a_run_name_its_run_id_and_execution_ref(
    flow_env: FlowEnv, start_host: Callable[..., LocalHost], fixtures_dir: Path, host_lines: io.StringIO
) -> None:
    host = start_host()  # the emulator's default: text

    run_id, runner_log = run_to_the_end(flow_env, host, fixtures_dir)

    lines = host_lines.getvalue().splitlines()
    assert f"Run {run_id} succeeded [run_id={run_id} execution_ref=process:{run_id}]" in "\n".join(lines)
    assert not any(line.startswith("{") for line in lines)
    console = (flow_env.work_dir / run_id / LOG_FILE).read_text()
    assert f"[run {run_id}]" in console and not console.lstrip().startswith("{")
    everything = "\n".join(lines) + console + runner_log
    assert [secret for secret in secrets_of_the_run(flow_env, run_id) if secret in everything] == []
