"""The runner's environment a JobSpec carries: PACTA's variables, ours, and a create_* task's command."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from orchestrations.contracts import RunRequest, SourceBlob, TaskType
from orchestrations.errors import ConfigurationError
from orchestrations.job_spec import build_job_spec
from orchestrations.settings import AppSettings, load_settings

TOKEN = "t" * 32


def settings(**values: object) -> AppSettings:
    """Settings under the emulator: a local backend, and Azurite's connection string for the runner."""
    return AppSettings.model_validate(
        {"AzureWebJobsStorage": "UseDevelopmentStorage=true", "AZURE_FUNCTIONS_ENVIRONMENT": "Development", **values}
    )


def request(task_type: TaskType, document: dict[str, object] | None = None) -> RunRequest:
    return RunRequest(
        run_id="run-0123456789",
        task_type=task_type,
        inputs=["az://parsedportfolios/a.csv"],
        source=SourceBlob(container="uploads", name=f"{task_type.value}/r.json", etag="e", size=1,
                          uri=f"az://uploads/{task_type.value}/r.json"),
        requested_at=datetime(2026, 11, 27, tzinfo=UTC),
        request_document=document,
    )


def test_a_report_job_gets_pactas_command_container_and_data_dirs_by_default() -> None:
    document = {"AnalysisID": "analysis.1", "BlobURIs": ["az://parsedportfolios/a.csv"], "HoldingsDate": "2022-12-31"}

    env = build_job_spec(request(TaskType.CREATE_REPORT, document), TOKEN, settings()).env

    assert json.loads(env["RUNNER_TASK_COMMAND"]) == [
        "Rscript", "--vanilla", "/workflow.pacta.webapp/inst/extdata/scripts/run_pacta.R",
    ]
    assert env["RUNNER_ARTIFACTS_CONTAINER"] == "reports"
    assert env["RUNNER_BENCHMARKS_DIR"] == "/mnt/benchmark-data/65c1a416721b22a98c7925999ae03bc4"
    assert env["RUNNER_PACTA_DATA_DIR"] == "/mnt/pacta-data/2023Q4_20240718T150252Z"
    assert json.loads(env["CREATE_REPORT_REQUEST"]) == document


@pytest.mark.parametrize(
    ("task_type", "command_setting", "container_setting"),
    [
        (TaskType.CREATE_REPORT, "CREATE_REPORT_COMMAND", "REPORTS_CONTAINER"),
        (TaskType.CREATE_AUDIT, "CREATE_AUDIT_COMMAND", "AUDITS_CONTAINER"),
        (TaskType.CREATE_DASHBOARD, "CREATE_DASHBOARD_COMMAND", "DASHBOARDS_CONTAINER"),
    ],
)
def test_each_task_type_takes_its_own_command_and_container_settings(
    task_type: TaskType, command_setting: str, container_setting: str
) -> None:
    configured = settings(**{
        command_setting: ["python", "stand_in.py"], container_setting: "mine",
        "BENCHMARKS_DIR": "/mnt/workflow-data/benchmarks", "PACTA_DATA_DIR": "/mnt/workflow-data/pacta",
    })

    env = build_job_spec(request(task_type, {"BlobURIs": ["az://p/a.csv"]}), TOKEN, configured).env

    assert json.loads(env["RUNNER_TASK_COMMAND"]) == ["python", "stand_in.py"]
    assert env["RUNNER_ARTIFACTS_CONTAINER"] == "mine"
    assert (env["RUNNER_BENCHMARKS_DIR"], env["RUNNER_PACTA_DATA_DIR"]) == (
        "/mnt/workflow-data/benchmarks", "/mnt/workflow-data/pacta",
    )


def test_a_parse_job_gets_no_analysis_variables() -> None:
    env = build_job_spec(request(TaskType.PARSE_PORTFOLIO), TOKEN, settings()).env

    assert not [name for name in env if name in {"RUNNER_TASK_COMMAND", "RUNNER_ARTIFACTS_CONTAINER"}]


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("Rscript run.R", "CREATE_REPORT_COMMAND is not JSON"),
        ("[]", "CREATE_REPORT_COMMAND: Value error, must be a JSON list of non-empty strings"),
    ],
)
def test_a_bad_command_setting_stops_the_start_up_naming_it(
    monkeypatch: pytest.MonkeyPatch, value: str, words: str
) -> None:
    monkeypatch.setenv("AzureWebJobsStorage", "UseDevelopmentStorage=true")
    monkeypatch.setenv("CREATE_REPORT_COMMAND", value)

    with pytest.raises(ConfigurationError) as caught:
        load_settings()

    assert words in caught.value.message


def test_a_relative_data_dir_is_refused() -> None:
    with pytest.raises(ValueError, match="BENCHMARKS_DIR"):
        settings(BENCHMARKS_DIR="data/benchmarks")


@pytest.mark.parametrize("task_type", list(TaskType))
def test_every_job_gets_the_input_scopes_for_the_runner_to_check_again(task_type: TaskType) -> None:
    document = None if task_type is TaskType.PARSE_PORTFOLIO else {"BlobURIs": ["az://parsedportfolios/a.csv"]}
    default = build_job_spec(request(task_type, document), TOKEN, settings(UPLOADS_CONTAINER="portfolios")).env
    scopes = ["az://portfolios/", "az://parsedportfolios/"]
    configured = settings(UPLOADS_CONTAINER="portfolios", INPUT_SCOPES=scopes)

    env = build_job_spec(request(task_type, document), TOKEN, configured).env

    assert json.loads(default["RUNNER_INPUT_SCOPES"]) == ["az://portfolios/"]
    assert json.loads(env["RUNNER_INPUT_SCOPES"]) == scopes
