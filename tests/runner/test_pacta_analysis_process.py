"""create_report / create_audit / create_dashboard through `python -m runner`: a real process, a real
Azurite, and stand-in commands (tests/runner/stand_ins) in place of PACTA's R scripts."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from orchestrations.contracts import ResultDocument, RunnerEvent, RunnerEventStatus
from tests.conftest import wait_for
from tests.runner.conftest import RUNNER_TIMEOUT_SECONDS, RunnerEnvironment, RunnerProcess, StorageView
from tests.runner.stand_ins.fake_run_pacta import FILES

pytestmark = pytest.mark.azurite

STAND_INS = Path(__file__).resolve().parent / "stand_ins"
FAKE_RUN_PACTA = [sys.executable, str(STAND_INS / "fake_run_pacta.py")]
FAILING_PACTA = [sys.executable, str(STAND_INS / "failing_pacta.py")]
ANALYSIS_ID = "analysis.0123456789abcdef0123"
PORTFOLIO = b"investor_name,portfolio_name,isin,market_value,currency\nI,P,GB0007980591,10000,USD\n"

RunRunner = Callable[..., RunnerProcess]
BuildEnv = Callable[..., RunnerEnvironment]


@pytest.fixture
def analysis_env(
    runner_env: BuildEnv, run_storage: StorageView, unique_name: str
) -> Callable[..., RunnerEnvironment]:
    """The runner's environment for a create_* task: the request document, the stand-in command and
    a container of the test's own for the artifacts (`RUNNER_*` as job_spec sets them)."""

    def build(
        task_type: str = "create_report", *, command: list[str] | None = None,
        uris: list[str] | None = None, **document: Any,
    ) -> RunnerEnvironment:
        uris = uris or [run_storage.upload_input("parsed/portfolio.csv", PORTFOLIO)]
        env = runner_env(task_type, uris)
        env.variables[f"{task_type.upper()}_REQUEST"] = json.dumps({"BlobURIs": uris, **document}) + "\n"
        env.variables["RUNNER_TASK_COMMAND"] = json.dumps(command or FAKE_RUN_PACTA)
        env.variables["RUNNER_ARTIFACTS_CONTAINER"] = f"{unique_name}-artifacts"
        env.variables["RUNNER_BENCHMARKS_DIR"] = "/data/benchmarks"
        env.variables["RUNNER_PACTA_DATA_DIR"] = "/data/pacta"
        return env

    return build


def artifact_names(storage: StorageView, container: str) -> list[str]:
    client = storage.blob_service.get_container_client(container)
    return sorted(blob.name for blob in client.list_blobs()) if client.exists() else []


def result_of(storage: StorageView, env: RunnerEnvironment) -> ResultDocument:
    return ResultDocument.model_validate_json(storage.read_blob(env.output_prefix + "result.json"))


def received(storage: StorageView, container: str, analysis_id: str) -> dict[str, Any]:
    """What the stand-in recorded it was given (its argv, the input JSON, its environment)."""
    uri = f"az://{container}/{analysis_id}/analysis-output/received.json"
    return json.loads(storage.read_blob(uri))  # type: ignore[no-any-return]


def expected_blob_names(analysis_id: str, out_dirs: tuple[str, ...] = tuple(FILES)) -> list[str]:
    names = [f"{analysis_id}/analysis-output/received.json"]
    for out_dir in out_dirs:
        folder = "dashboard-output/data" if out_dir == "dashboard-output" else out_dir
        names += [f"{analysis_id}/{folder}/{relative}" for relative in FILES[out_dir]]
    return sorted(names)


def only_event(storage: StorageView) -> RunnerEvent:
    [event] = storage.receive_events()
    return event


def test_a_report_uploads_every_output_file_under_pactas_blob_layout(
    run_runner: RunRunner, analysis_env: BuildEnv, run_storage: StorageView
) -> None:
    env = analysis_env(AnalysisID=ANALYSIS_ID)

    process = run_runner(env.variables)

    assert process.exit_code == 0, process.stderr
    container = env.variables["RUNNER_ARTIFACTS_CONTAINER"]
    assert artifact_names(run_storage, container) == expected_blob_names(ANALYSIS_ID)
    for out_dir, files in FILES.items():
        folder = "dashboard-output/data" if out_dir == "dashboard-output" else out_dir
        for relative, content in files.items():
            assert run_storage.read_blob(f"az://{container}/{ANALYSIS_ID}/{folder}/{relative}") == content


def test_artifacts_are_uploaded_with_content_types_a_browser_can_render(
    run_runner: RunRunner, analysis_env: BuildEnv, run_storage: StorageView
) -> None:
    env = analysis_env(AnalysisID=ANALYSIS_ID)

    run_runner(env.variables)

    container = run_storage.blob_service.get_container_client(env.variables["RUNNER_ARTIFACTS_CONTAINER"])
    types = {
        blob.name.rsplit("/", 1)[-1]: blob.content_settings.content_type
        for blob in container.list_blobs(include=["metadata"])
    }
    assert types["index.html"] == "text/html; charset=utf-8"
    assert types["app.js"] == "text/javascript; charset=utf-8"
    assert types["app.js.map"] == "application/json"
    assert types["roboto.woff2"] == "font/woff2"
    assert types["audit_file.rds"] == "application/octet-stream"
    assert types["notes.weird"] == "application/octet-stream"


def test_the_result_document_has_pactas_artifacts_in_pactas_walk_order(
    run_runner: RunRunner, analysis_env: BuildEnv, run_storage: StorageView
) -> None:
    env = analysis_env(AnalysisID=ANALYSIS_ID)

    run_runner(env.variables)

    result = result_of(run_storage, env)
    container = env.variables["RUNNER_ARTIFACTS_CONTAINER"]
    artifacts = result.Artifacts or []
    prefix = f"az://{container}/{ANALYSIS_ID}/"
    assert [a.BlobURI.removeprefix(prefix) for a in artifacts[:5]] == [
        "analysis-output/Equity_results_portfolio.rds",
        "analysis-output/audit_file.csv",
        "analysis-output/audit_file.rds",
        "analysis-output/manifest.json",
        "analysis-output/received.json",
    ]
    assert sorted(a.BlobURI.removeprefix(f"az://{container}/") for a in artifacts) == expected_blob_names(ANALYSIS_ID)
    by_name = {a.FileName: a.FileType for a in artifacts}
    assert by_name == {
        "Equity_results_portfolio.rds": "rds", "audit_file.csv": "csv", "audit_file.rds": "rds",
        "manifest.json": "json", "received.json": "json", "index.html": "html", "bootstrap.min.css": "css",
        "app.js": "js", "app.js.map": "js.map", "roboto.woff2": "woff2", "logo.png": "png",
        "notes.weird": "unknown", "data_map.json": "json", "executive_summary.pdf": "pdf",
    }
    assert result.Outputs is None and result.TaskID == env.variables["TASK_ID"]
    assert result.Request == json.loads(env.variables["CREATE_REPORT_REQUEST"])
    assert result.Run.status is RunnerEventStatus.SUCCEEDED
    event = only_event(run_storage)
    assert event.status is RunnerEventStatus.SUCCEEDED and event.outputs_count == len(artifacts) == 15
    document = json.loads(run_storage.read_blob(env.output_prefix + "result.json"))
    assert "Outputs" not in document
    assert set(document["Artifacts"][0]) == {"BlobURI", "FileName", "FileType"}


def test_the_input_json_carries_the_requests_holdings_date_name_and_inherit(
    run_runner: RunRunner, analysis_env: BuildEnv, run_storage: StorageView
) -> None:
    env = analysis_env(
        AnalysisID=ANALYSIS_ID, HoldingsDate="2022-12-31", PortfolioName="Pension fund Ä", Inherit="GENERAL_2022Q4"
    )

    run_runner(env.variables)

    seen = received(run_storage, env.variables["RUNNER_ARTIFACTS_CONTAINER"], ANALYSIS_ID)
    assert seen["params"] == {
        "portfolio": {"files": ["portfolio.csv"], "holdingsDate": "2022-12-31", "name": "Pension fund Ä"},
        "inherit": "GENERAL_2022Q4",
    }
    assert seen["argv"] == [
        '{"portfolio":{"files":["portfolio.csv"],"holdingsDate":"2022-12-31","name":"Pension fund Ä"},'
        '"inherit":"GENERAL_2022Q4"}\n'
    ]


def test_without_those_keys_the_input_json_has_pactas_values_and_the_run_id_names_the_folder(
    run_runner: RunRunner, analysis_env: BuildEnv, run_storage: StorageView
) -> None:
    env = analysis_env()

    process = run_runner(env.variables)

    assert process.exit_code == 0, process.stderr
    seen = received(run_storage, env.variables["RUNNER_ARTIFACTS_CONTAINER"], env.run_id)
    assert seen["argv"] == [
        '{"portfolio":{"files":["portfolio.csv"],"holdingsDate":"2023-12-31","name":"FooPortfolio"},'
        '"inherit":"GENERAL_2023Q4"}\n'
    ]


def test_every_blob_uri_is_downloaded_into_portfolio_dir_and_listed_in_files(
    run_runner: RunRunner, analysis_env: BuildEnv, run_storage: StorageView
) -> None:
    uris = [
        run_storage.upload_input("group/a/portfolio.csv", PORTFOLIO),
        run_storage.upload_input("group/b/portfolio.csv", PORTFOLIO * 2),
        run_storage.upload_input("group/c.csv", PORTFOLIO * 3),
    ]
    env = analysis_env(uris=uris, AnalysisID=ANALYSIS_ID)

    process = run_runner(env.variables)

    assert process.exit_code == 0, process.stderr
    seen = received(run_storage, env.variables["RUNNER_ARTIFACTS_CONTAINER"], ANALYSIS_ID)
    assert seen["params"]["portfolio"]["files"] == ["portfolio.csv", "portfolio-2.csv", "c.csv"]
    assert seen["portfolio_sizes"] == {
        "portfolio.csv": len(PORTFOLIO), "portfolio-2.csv": 2 * len(PORTFOLIO), "c.csv": 3 * len(PORTFOLIO),
    }


def test_the_command_gets_pactas_variables_and_none_of_the_runners_secrets(
    run_runner: RunRunner, analysis_env: BuildEnv, run_storage: StorageView
) -> None:
    env = analysis_env(AnalysisID=ANALYSIS_ID)
    env.variables["DASHBOARD_SKELETON_FILES_DIR"] = "/mnt/dashboard_skeleton_files"

    run_runner(env.variables)

    seen_env = received(run_storage, env.variables["RUNNER_ARTIFACTS_CONTAINER"], ANALYSIS_ID)["env"]
    task_dir = Path(seen_env["PORTFOLIO_DIR"]).parent
    assert {name: value for name, value in seen_env.items() if name.endswith("_DIR")} == {
        "BENCHMARKS_DIR": "/data/benchmarks",
        "PACTA_DATA_DIR": "/data/pacta",
        "PORTFOLIO_DIR": str(task_dir / "portfolios"),
        "REAL_ESTATE_DIR": str(task_dir / "real-estate"),
        "SCORE_CARD_DIR": str(task_dir / "score-card"),
        "SURVEY_DIR": str(task_dir / "survey"),
        "ANALYSIS_OUTPUT_DIR": str(task_dir / "analysis-output"),
        "REPORT_OUTPUT_DIR": str(task_dir / "report-output"),
        "DASHBOARD_OUTPUT_DIR": str(task_dir / "dashboard-output"),
        "DASHBOARD_DATA_DIR": str(task_dir / "dashboard-output" / "data"),
        "SUMMARY_OUTPUT_DIR": str(task_dir / "summary-output"),
        "DASHBOARD_SKELETON_FILES_DIR": "/mnt/dashboard_skeleton_files",
    }
    assert seen_env["LOG_LEVEL"] == "DEBUG" and seen_env["HOME"] == str(task_dir)
    assert seen_env["PATH"] == os.environ.get("PATH", "")
    assert not [name for name in seen_env if name.startswith(("RUNNER_", "TASK_", "CREATE_"))]
    assert env.token not in json.dumps(seen_env)


def test_the_commands_output_is_streamed_into_the_runner_log(
    run_runner: RunRunner, analysis_env: BuildEnv, run_storage: StorageView
) -> None:
    env = analysis_env(AnalysisID=ANALYSIS_ID)

    process = run_runner(env.variables)

    log = run_storage.read_blob(env.output_prefix + "runner.log").decode()
    assert "runner.command [run " in log
    assert "| INFO [fake_run_pacta] portfolio 'FooPortfolio': 1 file(s)" in log
    assert "| DEBUG [fake_run_pacta] loading benchmarks from /data/benchmarks" in log
    assert "| INFO [fake_run_pacta] wrote 8 file(s) into report-output" in process.stderr


def test_an_audit_uploads_what_it_wrote_to_pactas_audits_container_by_default(
    run_runner: RunRunner, analysis_env: BuildEnv, run_storage: StorageView, unique_name: str
) -> None:
    analysis_id = f"analysis.{unique_name}"
    env = analysis_env("create_audit", command=[*FAKE_RUN_PACTA, "--only", "analysis-output"], AnalysisID=analysis_id)
    del env.variables["RUNNER_ARTIFACTS_CONTAINER"]

    process = run_runner(env.variables)

    assert process.exit_code == 0, process.stderr
    names = [name for name in artifact_names(run_storage, "audits") if name.startswith(f"{analysis_id}/")]
    assert names == expected_blob_names(analysis_id, ("analysis-output",))
    assert only_event(run_storage).outputs_count == len(names)


def test_a_failing_command_fails_the_run_with_its_exit_code_and_the_end_of_its_output(
    run_runner: RunRunner, analysis_env: BuildEnv, run_storage: StorageView
) -> None:
    env = analysis_env(command=FAILING_PACTA, AnalysisID=ANALYSIS_ID)

    process = run_runner(env.variables)

    assert process.exit_code == 1
    event = only_event(run_storage)
    assert event.status is RunnerEventStatus.FAILED and event.error is not None
    assert event.error.code == "pacta_command_failed"
    message = event.error.message
    assert "failing_pacta.py exited with code 3" in message
    assert message.index("line 40 of the failing script") < message.index("Error in run_pacta(): stand-in failure")
    assert "line 12 of the failing script" in message and "line 11 of the failing script" not in message
    assert "CREATE_REPORT_COMMAND" in message
    assert result_of(run_storage, env).Artifacts == []
    assert artifact_names(run_storage, env.variables["RUNNER_ARTIFACTS_CONTAINER"]) == []
    log = run_storage.read_blob(env.output_prefix + "runner.log").decode()
    assert "| line 1 of the failing script" in log


def test_a_command_that_writes_nothing_fails_with_no_artifacts(
    run_runner: RunRunner, analysis_env: BuildEnv, run_storage: StorageView
) -> None:
    env = analysis_env(command=[sys.executable, "-c", "pass"])

    process = run_runner(env.variables)

    assert process.exit_code == 1
    event = only_event(run_storage)
    assert event.error is not None and event.error.code == "no_artifacts"


def test_pactas_default_command_is_run_and_its_absence_named(
    run_runner: RunRunner, analysis_env: BuildEnv, run_storage: StorageView, tmp_path: Path
) -> None:
    env = analysis_env("create_dashboard")
    del env.variables["RUNNER_TASK_COMMAND"]
    # A PATH with no Rscript on it, whatever this machine has installed.
    env.variables["PATH"] = str(tmp_path / "empty-path")

    process = run_runner(env.variables)

    assert process.exit_code == 1
    event = only_event(run_storage)
    assert event.error is not None and event.error.code == "pacta_command_not_started"
    assert "Rscript --vanilla /workflow.pacta.dashboard/inst/extdata/scripts/prepare_dashboard_data.R" in (
        event.error.message
    )
    assert "CREATE_DASHBOARD_COMMAND" in event.error.message


def test_pactas_default_command_found_without_its_script_fails_with_rscripts_words(
    run_runner: RunRunner, analysis_env: BuildEnv, run_storage: StorageView, tmp_path: Path
) -> None:
    env = analysis_env("create_dashboard")
    del env.variables["RUNNER_TASK_COMMAND"]
    # An Rscript that, like R's own on a machine without PACTA's scripts, cannot open the script.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    rscript = bin_dir / "Rscript"
    rscript.write_text(
        "#!/bin/sh\necho \"Fatal error: cannot open file '$2': No such file or directory\" >&2\nexit 2\n"
    )
    rscript.chmod(0o755)
    env.variables["PATH"] = str(bin_dir)

    process = run_runner(env.variables)

    assert process.exit_code == 1
    event = only_event(run_storage)
    assert event.error is not None and event.error.code == "pacta_command_failed"
    assert "exited with code 2" in event.error.message
    assert "cannot open file '/workflow.pacta.dashboard/inst/extdata/scripts/prepare_dashboard_data.R'" in (
        event.error.message
    )


def test_an_invalid_holdings_date_fails_the_run_with_invalid_request_before_the_command(
    run_runner: RunRunner, analysis_env: BuildEnv, run_storage: StorageView
) -> None:
    env = analysis_env(HoldingsDate="31/12/2023")

    process = run_runner(env.variables)

    assert process.exit_code == 1
    event = only_event(run_storage)
    assert event.error is not None and event.error.code == "invalid_request"
    assert "HoldingsDate: must be a date written YYYY-MM-DD" in event.error.message


def test_sigterm_stops_the_command_and_the_run_reports_terminated(
    runner_image_dir: Path, analysis_env: BuildEnv, run_storage: StorageView, tmp_path: Path
) -> None:
    env = analysis_env(command=[*FAKE_RUN_PACTA, "--hang"])
    env.variables["RUNNER_WORK_DIR"] = str(tmp_path)
    runner = subprocess.Popen(
        [sys.executable, "-m", "runner"], cwd=runner_image_dir,
        env={"PATH": os.environ.get("PATH", ""), **env.variables},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        pid_file = tmp_path / "output" / "analysis-output" / "hanging.pid"
        wait_for(pid_file.exists, what="the stand-in to start hanging", timeout=30)
        command_pid = int(wait_for(pid_file.read_text, what="the pid", timeout=5))

        runner.send_signal(signal.SIGTERM)

        assert runner.wait(timeout=RUNNER_TIMEOUT_SECONDS) == 143
    finally:
        runner.kill()
    wait_for(lambda: not _alive(command_pid), what="the command to be stopped", timeout=10)
    event = only_event(run_storage)
    assert event.error is not None and event.error.code == "terminated"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (reaped late) counts as gone.
    try:
        return "Z" not in Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return False
