"""The whole flow with `RUNNER_BACKEND=aca`, as it runs in Azure: upload -> ARM start -> execution ->
completion message -> recorded.

Storage is Azurite over HTTPS accepting bearer tokens; the Function App reaches Resource Manager (the
loopback ARM) with its managed identity, and the runner reaches Storage with its own, through account
URLs: no key goes into any execution. (The other branches run on aca too: see test_orchestrator_branches.)
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from local_runner.host.clock import ManualClock
from local_runner.host.host import LocalHost
from orchestrations.contracts import RunStatus
from tests.cloud.fixtures import APP_CLIENT_ID, RUNNER_CLIENT_ID
from tests.flow.conftest import FlowEnv, md5, wait_for_end

pytestmark = [pytest.mark.azurite, pytest.mark.slow, pytest.mark.parametrize("backend", ["aca"], indirect=True)]

PACTA_SIMPLE_OUTPUT_MD5 = "0f51946d64ef6ee4daca1a6969317cba"
STORAGE_RESOURCE = "https://storage.azure.com"


def test_an_upload_runs_as_an_execution_started_through_arm_with_identities_not_keys(
    flow_env: FlowEnv, start_host: Callable[..., LocalHost], fixtures_dir: Path
) -> None:
    assert flow_env.cloud is not None
    start_host()
    run_id = flow_env.upload("parse_portfolio/simple.csv", (fixtures_dir / "simple.csv").read_bytes())

    record = wait_for_end(flow_env, run_id)

    assert record.status is RunStatus.SUCCEEDED, record.error
    assert md5(flow_env.read_blob(record.outputs[0])) == PACTA_SIMPLE_OUTPUT_MD5
    (execution,) = flow_env.cloud.arm.executions.values()
    assert record.backend == "aca" and record.execution_ref == f"aca:{execution.name}"
    (start,) = flow_env.cloud.arm.requests_for("start")
    (container,) = start.body["containers"]
    env = {variable["name"]: variable.get("value") for variable in container["env"]}
    assert env["TASK_ID"] == env["RUNNER_RUN_ID"] == run_id
    assert env["TASK_TYPE"] == "parse_portfolio"
    assert json.loads(env["PARSE_PORTFOLIO_REQUEST"] or "{}")["BlobURIs"] == [
        f"az://{flow_env.uploads}/parse_portfolio/simple.csv"
    ]
    assert env["AZURE_CLIENT_ID"] == RUNNER_CLIENT_ID
    account_key = flow_env.connection.split("AccountKey=")[1].split(";")[0]
    assert not any(account_key in json.dumps(request.body) for request in flow_env.cloud.arm.requests)
    assert "RUNNER_STORAGE_CONNECTION_STRING" not in env
    # The app asked for Resource Manager tokens as itself; the runner for Storage tokens as itself.
    tokens = {(request.resource, request.client_id) for request in flow_env.cloud.identity.requests}
    assert ("https://management.azure.com", APP_CLIENT_ID) in tokens
    assert (STORAGE_RESOURCE, RUNNER_CLIENT_ID) in tokens


def test_a_throttled_start_is_retried_after_retry_after_and_the_run_succeeds_with_one_execution(
    flow_env: FlowEnv, start_host: Callable[..., LocalHost]
) -> None:
    assert flow_env.cloud is not None
    flow_env.cloud.arm.fail_next("start", 429, headers={"Retry-After": "1"})
    start_host()
    run_id = flow_env.upload("parse_portfolio/throttled.csv", b"isin,market_value,currency\nGB0007980591,10000,USD\n")

    record = wait_for_end(flow_env, run_id)

    assert record.status is RunStatus.SUCCEEDED, record.error
    first, second = flow_env.cloud.arm.requests_for("start")
    assert second.at - first.at >= 1.0
    assert flow_env.executions() == [run_id] and record.attempts == 1


def test_a_function_app_without_the_start_permission_fails_the_run_at_once_naming_identity_and_action(
    flow_env: FlowEnv, start_host: Callable[..., LocalHost]
) -> None:
    assert flow_env.cloud is not None
    flow_env.cloud.arm.fail_next("start", 403, times=20)
    clock = ManualClock()
    host = start_host(clock=clock, ACTIVITY_MAX_ATTEMPTS="2")
    run_id = flow_env.upload("parse_portfolio/forbidden.csv", b"isin,market_value,currency\nGB0007980591,1,USD\n")

    def step() -> None:
        host.poll_triggers_once()
        clock.advance(0.5)

    record = wait_for_end(flow_env, run_id, step=step)

    assert record.status is RunStatus.FAILED
    assert record.error is not None and record.error.code == "aca_forbidden"
    assert record.error.message.startswith("The job could not be started: ")
    assert "Microsoft.App/jobs/start/action" in record.error.message
    assert APP_CLIENT_ID in record.error.message
    assert len(flow_env.cloud.arm.requests_for("start")) == 1  # a missing role is not retried
    assert flow_env.executions() == []
