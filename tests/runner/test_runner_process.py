"""`python -m runner` end to end: a real process, a real Azurite, the image's files only."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from orchestrations.contracts import ResultDocument, RunnerEventStatus
from tests.conftest import wait_for
from tests.runner.conftest import RUNNER_TIMEOUT_SECONDS, RunnerEnvironment, RunnerProcess, StorageView

pytestmark = pytest.mark.azurite

OUTPUT_SIMPLE_MD5 = "0f51946d64ef6ee4daca1a6969317cba"

RunRunner = Callable[..., RunnerProcess]
BuildEnv = Callable[..., RunnerEnvironment]


def _result(storage: StorageView, env: RunnerEnvironment) -> ResultDocument:
    return ResultDocument.model_validate_json(storage.read_blob(env.output_prefix + "result.json"))


def test_a_portfolio_upload_is_parsed_uploaded_and_reported(
    run_runner: RunRunner, runner_env: BuildEnv, run_storage: StorageView, fixtures_dir: Path
) -> None:
    source = run_storage.upload_input(
        "parse_portfolio/simple.csv", (fixtures_dir / "simple.csv").read_bytes()
    )
    env = runner_env("parse_portfolio", [source])

    process = run_runner(env.variables)

    assert process.exit_code == 0, process.stderr
    result = _result(run_storage, env)
    [output] = result.Outputs or []
    assert output.Source == source
    assert output.Blob.BlobURI == f"{env.output_prefix}outputs/{output.Blob.FileName}"
    assert (output.Blob.FileType, output.Portfolio["output_md5"]) == ("csv", OUTPUT_SIMPLE_MD5)
    assert hashlib.md5(run_storage.read_blob(output.Blob.BlobURI)).hexdigest() == OUTPUT_SIMPLE_MD5
    assert result.Request == json.loads(env.variables["PARSE_PORTFOLIO_REQUEST"])
    assert result.TaskID == env.variables["TASK_ID"]
    assert result.Run.status is RunnerEventStatus.SUCCEEDED
    assert [entry["input_filename"] for entry in result.Run.source_files] == ["simple.csv"]
    [event] = run_storage.receive_events()
    assert (event.run_id, event.token, event.status, event.exit_code) == (
        env.run_id,
        env.token,
        RunnerEventStatus.SUCCEEDED,
        0,
    )
    assert event.outputs_count == 1 and event.error is None
    assert event.result_uri == env.output_prefix + "result.json"
    assert event.log_uri == env.output_prefix + "runner.log"


def test_the_run_log_is_uploaded_without_the_token_or_the_account_key(
    run_runner: RunRunner, runner_env: BuildEnv, run_storage: StorageView, fixtures_dir: Path
) -> None:
    source = run_storage.upload_input(
        "parse_portfolio/simple.csv", (fixtures_dir / "simple.csv").read_bytes()
    )
    env = runner_env("parse_portfolio", [source])

    process = run_runner(env.variables)

    log = run_storage.read_blob(env.output_prefix + "runner.log").decode("utf-8")
    assert f"[run {env.run_id}]" in log and "run succeeded with 1 output(s)" in log
    account_key = run_storage.connection_string.split("AccountKey=")[1].split(";")[0]
    for secret in (env.token, account_key):
        assert secret not in log and secret not in process.stderr


def test_the_blob_layout_under_the_output_prefix(
    run_runner: RunRunner, runner_env: BuildEnv, run_storage: StorageView, fixtures_dir: Path
) -> None:
    data = (fixtures_dir / "multi_simple_all-columns_portfolioname.csv").read_bytes()
    source = run_storage.upload_input("parse_portfolio/multi.csv", data)
    env = runner_env("parse_portfolio", [source])

    run_runner(env.variables)

    result = _result(run_storage, env)
    outputs = [f"{env.run_id}/outputs/{output.Blob.FileName}" for output in result.Outputs or []]
    assert run_storage.list_run_blobs(env.run_id) == sorted(
        [
            *outputs,
            f"{env.run_id}/processed_portfolios.json",
            f"{env.run_id}/result.json",
            f"{env.run_id}/runner.log",
        ]
    )
    assert [output.Portfolio["portfolio_name"] for output in result.Outputs or []] == [
        "Portfolio A",
        "Portfolio B",
    ]
    [event] = run_storage.receive_events()
    assert event.outputs_count == 2


def test_a_refused_file_beside_a_good_one_does_not_fail_the_run(
    run_runner: RunRunner, runner_env: BuildEnv, run_storage: StorageView, fixtures_dir: Path
) -> None:
    good = run_storage.upload_input(
        "parse_portfolio/simple.csv", (fixtures_dir / "simple.csv").read_bytes()
    )
    bad = run_storage.upload_input(
        "parse_portfolio/four.csv", (fixtures_dir / "columns/simple_investorname.csv").read_bytes()
    )
    env = runner_env("parse_portfolio", [good, bad])

    process = run_runner(env.variables)

    assert process.exit_code == 0, process.stderr
    result = _result(run_storage, env)
    assert [output.Source for output in result.Outputs or []] == [good]
    refused = next(entry for entry in result.Run.source_files if "errors" in entry)
    assert refused["input_filename"] == "four.csv" and "4 column(s)" in refused["error_detail"]


def test_a_file_without_portfolios_fails_the_run_with_no_portfolios(
    run_runner: RunRunner, runner_env: BuildEnv, run_storage: StorageView, fixtures_dir: Path
) -> None:
    data = (fixtures_dir / "columns/simple_investorname.csv").read_bytes()
    source = run_storage.upload_input("parse_portfolio/four.csv", data)
    env = runner_env("parse_portfolio", [source])

    process = run_runner(env.variables)

    assert process.exit_code == 1
    [event] = run_storage.receive_events()
    assert event.status is RunnerEventStatus.FAILED and event.exit_code == 1
    assert event.error is not None and event.error.code == "no_portfolios"
    assert "four.csv: the file has 4 column(s)" in event.error.message
    result = _result(run_storage, env)
    assert result.Outputs == [] and result.Run.error == event.error
    assert "errors" in result.Run.source_files[0]
    manifest = json.loads(run_storage.read_blob(env.output_prefix + "processed_portfolios.json"))
    assert manifest[0]["errors"] == [["Cannot import portfolio file. Please see documentation."]]
    assert event.log_uri is not None and run_storage.read_blob(event.log_uri)


def test_a_missing_input_blob_fails_with_input_download_failed(
    run_runner: RunRunner, runner_env: BuildEnv, run_storage: StorageView
) -> None:
    env = runner_env(
        "parse_portfolio", [f"az://{run_storage.uploads_container}/parse_portfolio/gone.csv"]
    )

    process = run_runner(env.variables)

    assert process.exit_code == 1
    [event] = run_storage.receive_events()
    assert event.error is not None and event.error.code == "input_download_failed"
    assert "gone.csv" in event.error.message and "404" in event.error.message


def test_invalid_task_variables_are_reported_as_invalid_environment(
    run_runner: RunRunner, runner_env: BuildEnv, run_storage: StorageView
) -> None:
    env = runner_env("parse_portfolio", ["az://uploads/x.csv"])
    del env.variables["PARSE_PORTFOLIO_REQUEST"]

    process = run_runner(env.variables)

    assert process.exit_code == 2
    [event] = run_storage.receive_events()
    assert event.error is not None and event.error.code == "invalid_environment"
    assert event.error.message == "PARSE_PORTFOLIO_REQUEST is not set"
    assert event.result_uri is None and event.log_uri is not None


def test_a_missing_run_id_exits_2_naming_the_variable_and_sends_nothing(
    run_runner: RunRunner, runner_env: BuildEnv, run_storage: StorageView
) -> None:
    env = runner_env("parse_portfolio", ["az://uploads/x.csv"])
    del env.variables["RUNNER_RUN_ID"]

    process = run_runner(env.variables)

    assert process.exit_code == 2
    assert "RUNNER_RUN_ID is not set" in process.stderr
    assert run_storage.receive_events() == []


@pytest.mark.parametrize(
    "outside",
    [
        "{runs}/run-of-someone-else/outputs/0b1c.csv",  # another run's outputs
        "{uploads}/parse_portfolio/../../{runs}/x.csv",  # a '..' escaping the scope
    ],
)
def test_an_input_outside_the_input_scopes_fails_the_run_before_anything_is_downloaded(
    run_runner: RunRunner, runner_env: BuildEnv, run_storage: StorageView, fixtures_dir: Path, tmp_path: Path,
    outside: str,
) -> None:
    allowed = run_storage.upload_input("parse_portfolio/simple.csv", (fixtures_dir / "simple.csv").read_bytes())
    run_storage.blob_service.create_container(run_storage.runs_container)
    run_storage.blob_service.get_blob_client(
        run_storage.runs_container, "run-of-someone-else/outputs/0b1c.csv"
    ).upload_blob(b"isin,market_value,currency\nGB0007980591,1,USD\n")
    uri = "az://" + outside.format(runs=run_storage.runs_container, uploads=run_storage.uploads_container)
    env = runner_env("parse_portfolio", [allowed, uri])
    env.variables["RUNNER_WORK_DIR"] = str(tmp_path / "work")

    process = run_runner(env.variables)

    assert process.exit_code == 1
    [event] = run_storage.receive_events()
    assert event.error is not None and event.error.code == "input_not_allowed"
    assert f"BlobURIs[1]: blob URI {uri!r}" in event.error.message
    assert f"az://{run_storage.uploads_container}/" in event.error.message
    assert list((tmp_path / "work" / "input").iterdir()) == []  # not even the allowed one
    assert "downloaded az://" not in run_storage.read_blob(env.output_prefix + "runner.log").decode()
    assert _result(run_storage, env).Run.error == event.error


def test_missing_input_scopes_are_reported_as_invalid_environment(
    run_runner: RunRunner, runner_env: BuildEnv, run_storage: StorageView
) -> None:
    env = runner_env("parse_portfolio", [f"az://{run_storage.uploads_container}/x.csv"])
    del env.variables["RUNNER_INPUT_SCOPES"]

    process = run_runner(env.variables)

    assert process.exit_code == 2
    [event] = run_storage.receive_events()
    assert event.error is not None and event.error.code == "invalid_environment"
    assert event.error.message == "RUNNER_INPUT_SCOPES is not set"


def test_a_blob_name_of_a_thousand_characters_is_parsed_under_a_bounded_local_name(
    run_runner: RunRunner, runner_env: BuildEnv, run_storage: StorageView, fixtures_dir: Path
) -> None:
    name = "parse_portfolio/" + "Pension fund holdings " * 45 + ".csv"  # 1,010 characters
    source = run_storage.upload_input(name, (fixtures_dir / "simple.csv").read_bytes())
    env = runner_env("parse_portfolio", [source])

    process = run_runner(env.variables)

    assert process.exit_code == 0, process.stderr
    result = _result(run_storage, env)
    [output] = result.Outputs or []
    assert output.Source == source and output.Portfolio["output_md5"] == OUTPUT_SIMPLE_MD5
    [entry] = result.Run.source_files
    local_name = entry["input_filename"]
    assert len(local_name) <= 100 and local_name.startswith("Pension_fund_holdings_") and local_name.endswith(".csv")


def _large_portfolio(rows: int) -> bytes:
    """`rows` valid holdings in 12 sub-portfolios (about 50 bytes a row)."""
    block = "".join(
        f"Investor {n % 3},Portfolio {n % 12:02d},GB0007980591,{n * 7919 % 10**7 / 100:.2f},USD\n" for n in range(1000)
    )
    return ("investor_name,portfolio_name,isin,market_value,currency\n" + block * (rows // 1000)).encode()


def test_sigterm_while_parsing_is_reported_as_terminated_not_as_a_bad_file(
    runner_image_dir: Path, runner_env: BuildEnv, run_storage: StorageView, tmp_path: Path
) -> None:
    source = run_storage.upload_input("parse_portfolio/large.csv", _large_portfolio(1_000_000))
    env = runner_env("parse_portfolio", [source])
    env.variables["RUNNER_WORK_DIR"] = str(tmp_path)
    output_dir = tmp_path / "output"
    runner = subprocess.Popen(
        [sys.executable, "-m", "runner"], cwd=runner_image_dir,
        env={"PATH": os.environ.get("PATH", ""), **env.variables},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        # The parser makes its work directory once the file's first pass is done; then it reads the rows.
        wait_for(lambda: any(output_dir.glob("parse-*")), what="the parser to start reading rows")
        runner.send_signal(signal.SIGSTOP)  # held mid-parse, so the SIGTERM is sure to arrive there
        if (output_dir / "processed_portfolios.json").exists():
            pytest.fail("the parse ended before the runner could be stopped mid-parse; parse a larger file")
        runner.send_signal(signal.SIGTERM)
        runner.send_signal(signal.SIGCONT)

        assert runner.wait(timeout=RUNNER_TIMEOUT_SECONDS) == 143
    finally:
        runner.kill()
    [event] = run_storage.receive_events()
    assert event.error is not None and event.error.code == "terminated"
    assert _result(run_storage, env).Run.error == event.error
    log = run_storage.read_blob(env.output_prefix + "runner.log").decode()
    assert "cannot import" not in log and "internal_error" not in log and "imported large.csv" not in log
    assert f"{env.run_id}/processed_portfolios.json" not in run_storage.list_run_blobs(env.run_id)
