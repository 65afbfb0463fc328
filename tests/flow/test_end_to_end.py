"""Upload -> blob trigger -> orchestration -> process job -> runner -> completion -> recorded.

Real Azurite, the real app loaded through entry.py, the real runner as a subprocess; real clock.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path

import docker
import pytest
from pydantic import SecretStr

from local_runner.host.host import LocalHost
from orchestrations.callback_tokens import derive_callback_token
from orchestrations.contracts import ResultDocument, RunStatus
from tests.conftest import TEST_CALLBACK_TOKEN_KEY
from tests.flow.conftest import FlowEnv, api_get, md5, runner_after, wait_for, wait_for_end

pytestmark = [pytest.mark.azurite, pytest.mark.slow]

PACTA_SIMPLE_OUTPUT_MD5 = "0f51946d64ef6ee4daca1a6969317cba"


ALL_BACKENDS = pytest.mark.parametrize("backend", ["process", "docker", "aca"], indirect=True)


@ALL_BACKENDS
def test_simple_portfolio_runs_to_success_with_one_recorded_output(
    flow_env: FlowEnv, start_host: Callable[..., LocalHost], fixtures_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    host = start_host()
    run_id = flow_env.upload("parse_portfolio/simple.csv", (fixtures_dir / "simple.csv").read_bytes())

    record = wait_for_end(flow_env, run_id)

    assert record.status is RunStatus.SUCCEEDED, record.error
    assert record.outputs_count == 1 and len(record.outputs) == 1
    assert md5(flow_env.read_blob(record.outputs[0])) == PACTA_SIMPLE_OUTPUT_MD5
    assert record.requested_at <= record.started_at <= record.finished_at  # type: ignore[operator]
    assert record.backend == flow_env.backend and flow_env.executions() == [run_id]
    assert record.attempts == 1 and record.error is None
    assert record.result_uri and record.log_uri
    assert b"parse_portfolio" in flow_env.read_blob(record.log_uri)
    view = api_get(host, f"runs/{run_id}").json()
    assert view["status"] == "succeeded"
    assert view["orchestration"]["runtime_status"] == "Completed"
    assert view["orchestration"]["custom_status"] == {"phase": "done", "status": "succeeded"}
    token = derive_callback_token(SecretStr(TEST_CALLBACK_TOKEN_KEY), run_id, 1)
    secrets = [token, TEST_CALLBACK_TOKEN_KEY, flow_env.connection.split("AccountKey=")[1].split(";")[0]]
    logged = caplog.text + flow_env.read_blob(record.log_uri).decode()
    kept = json.dumps(host.engine.get_history(run_id)) + json.dumps(view) + record.model_dump_json()
    assert f"Started run {run_id}" in caplog.text
    if flow_env.backend == "docker":
        container = docker.from_env().containers.get(f"pacta-run-{run_id}")
        assert container.image.tags == [flow_env.env.get("RUNNER_IMAGE", "pacta-runner:local")]
        assert container.labels["runner.task-type"] == "parse_portfolio"
    assert [secret for secret in secrets if secret in logged + kept] == []


def test_multi_portfolio_file_gives_two_outputs_named_in_the_manifest(
    flow_env: FlowEnv, start_host: Callable[..., LocalHost], fixtures_dir: Path
) -> None:
    start_host()
    name = "multi_simple_all-columns_portfolioname.csv"
    run_id = flow_env.upload(f"parse_portfolio/{name}", (fixtures_dir / name).read_bytes())

    record = wait_for_end(flow_env, run_id)

    assert record.status is RunStatus.SUCCEEDED, record.error
    assert [md5(flow_env.read_blob(uri)) for uri in record.outputs] == [PACTA_SIMPLE_OUTPUT_MD5] * 2
    assert record.result_uri is not None
    result = ResultDocument.model_validate_json(flow_env.read_blob(record.result_uri))
    assert sorted(output.Portfolio["portfolio_name"] for output in result.Outputs or []) == [
        "Portfolio A", "Portfolio B",
    ]
    assert {output.Portfolio["investor_name"] for output in result.Outputs or []} == {"Simple Investor"}
    assert sorted(result.output_uris()) == sorted(record.outputs)


def test_unparseable_portfolio_fails_the_run_with_the_runners_reason(
    flow_env: FlowEnv, start_host: Callable[..., LocalHost], fixtures_dir: Path
) -> None:
    start_host()
    content = (fixtures_dir / "columns" / "simple_investorname.csv").read_bytes()
    run_id = flow_env.upload("parse_portfolio/four-columns.csv", content)

    record = wait_for_end(flow_env, run_id)

    assert record.status is RunStatus.FAILED
    assert record.error is not None and record.error.code == "no_portfolios"
    assert record.log_uri is not None


BAD_UPLOADS = [
    ("unknown_task_type", "make_report/portfolio.csv", b"isin,market_value,currency\n"),
    ("empty_upload", "parse_portfolio/empty.csv", b""),
    ("upload_too_large", "parse_portfolio/big.csv", b"x" * 300_000),
    # Two name rules are covered by tests/orchestrations/test_intake.py alone: a '..' segment cannot
    # be uploaded (the client collapses it and the signature fails), and Azurite 3.35 answers 500 to
    # every listing of a container holding a name with a control character.
    ("invalid_request", "create_report/broken.json", b'{"BlobURIs": ['),
    ("request_too_large", "create_report/huge.json",
     json.dumps({"BlobURIs": ["az://x/y.csv"], "pad": "x" * 140_000}).encode()),
]


def test_every_bad_upload_is_recorded_as_rejected_and_starts_no_job(
    flow_env: FlowEnv, start_host: Callable[..., LocalHost]
) -> None:
    host = start_host(UPLOAD_MAX_BYTES="200000")
    expected = {flow_env.upload(name, content): code for code, name, content in BAD_UPLOADS}

    records = {run_id: wait_for_end(flow_env, run_id) for run_id in expected}

    for run_id, code in expected.items():
        record = records[run_id]
        assert record.status is RunStatus.REJECTED
        assert record.error is not None and record.error.code == code, record.error
        assert len(record.error.message) > 20
        assert host.engine.get_status(run_id) is None
    assert flow_env.executions() == []
    listed = api_get(host, "runs?status=rejected").json()["runs"]
    assert {run["run_id"] for run in listed} == set(expected)


def test_same_blob_delivered_twice_starts_one_run_and_a_new_version_another(
    flow_env: FlowEnv, start_host: Callable[..., LocalHost], fixtures_dir: Path
) -> None:
    host = start_host()
    content = (fixtures_dir / "simple.csv").read_bytes()
    first = flow_env.upload("parse_portfolio/twice.csv", content)
    assert wait_for_end(flow_env, first).status is RunStatus.SUCCEEDED

    # Redeliver the same blob version: forget the host's receipts, as after a lost receipt write.
    receipts = flow_env.blobs.get_container_client("azure-webjobs-hosts")
    for blob in receipts.list_blobs(name_starts_with="blobreceipts/"):
        if "twice.csv" in blob.name:
            receipts.delete_blob(blob.name)
    delivered = wait_for(lambda: host.poll_triggers_once() or None, timeout=10)

    assert delivered >= 1
    assert flow_env.executions() == [first]
    second = flow_env.upload("parse_portfolio/twice.csv", content + b"GB0002634946,5,GBP\n")
    assert second != first
    assert wait_for_end(flow_env, second).status is RunStatus.SUCCEEDED
    assert flow_env.executions() == sorted([first, second])


def test_a_blob_delivered_again_while_its_run_is_running_starts_nothing_new(
    flow_env: FlowEnv, start_host: Callable[..., LocalHost], fixtures_dir: Path, tmp_path: Path
) -> None:
    gate = tmp_path / "go"
    host = start_host(RUNNER_COMMAND=runner_after(gate))
    run_id = flow_env.upload("parse_portfolio/again.csv", (fixtures_dir / "simple.csv").read_bytes())
    wait_for(lambda: (record := flow_env.record(run_id)) is not None and record.status is RunStatus.RUNNING)

    # The trigger fires again for the same blob version (Event Grid and the host deliver at least once).
    receipts = flow_env.blobs.get_container_client("azure-webjobs-hosts")
    for blob in receipts.list_blobs(name_starts_with="blobreceipts/"):
        if "again.csv" in blob.name:
            receipts.delete_blob(blob.name)
    assert wait_for(lambda: host.poll_triggers_once() or None, timeout=10) >= 1
    gate.touch()

    record = wait_for_end(flow_env, run_id)
    assert record.status is RunStatus.SUCCEEDED and record.attempts == 1
    assert flow_env.executions() == [run_id]
    assert [r.run_id for r in flow_env.runs.list_runs()] == [run_id]
