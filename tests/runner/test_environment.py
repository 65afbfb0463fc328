"""The runner's settings: every problem names its variable and never repeats a secret."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchestrations.contracts import TaskType
from runner.environment import RunnerSettings, TaskSettings
from runner.errors import InvalidEnvironmentError

TOKEN = "t0ken-" + "x" * 40
CONNECTION_STRING = (
    "DefaultEndpointsProtocol=http;AccountName=a;AccountKey=c2VjcmV0a2V5;BlobEndpoint=x;"
)
RUNNER_VARIABLES = {
    "RUNNER_RUN_ID": "run-0123456789",
    "RUNNER_CALLBACK_TOKEN": TOKEN,
    "RUNNER_EVENTS_QUEUE": "runner-events",
    "RUNNER_OUTPUT_PREFIX": "az://runs/run-0123456789",
    "RUNNER_STORAGE_CONNECTION_STRING": CONNECTION_STRING,
}
REQUEST = {"IncompleteUploadIDs": [], "BlobURIs": ["az://uploads/parse_portfolio/x.csv"]}
TASK_VARIABLES = {
    "TASK_ID": "task-1",
    "TASK_TYPE": "parse_portfolio",
    "PARSE_PORTFOLIO_REQUEST": json.dumps(REQUEST) + "\n",
    "RUNNER_INPUT_SCOPES": '["az://uploads/parse_portfolio/", "az://parsedportfolios/"]',
}


def _runner_error(**changes: str | None) -> str:
    environ = {**RUNNER_VARIABLES, **changes}
    with pytest.raises(InvalidEnvironmentError) as caught:
        RunnerSettings.from_environ({k: v for k, v in environ.items() if v is not None})
    assert caught.value.code == "invalid_environment" and caught.value.exit_code == 2
    return caught.value.message


def _task_error(**changes: str | None) -> str:
    environ = {**TASK_VARIABLES, **changes}
    with pytest.raises(InvalidEnvironmentError) as caught:
        TaskSettings.from_environ({k: v for k, v in environ.items() if v is not None})
    return caught.value.message


def test_valid_runner_variables_are_read() -> None:
    settings = RunnerSettings.from_environ(RUNNER_VARIABLES)
    assert settings.run_id == "run-0123456789"
    assert str(settings.output_prefix) == "az://runs/run-0123456789/"
    assert settings.output_prefix.uri("result.json") == "az://runs/run-0123456789/result.json"
    assert settings.work_dir is None


def test_a_missing_run_id_is_named() -> None:
    assert _runner_error(RUNNER_RUN_ID=None) == "RUNNER_RUN_ID is not set"


def test_a_run_id_of_another_form_is_named() -> None:
    """A completion message must carry a run id of the app's form; a runner that could not send one refuses at once."""
    assert _runner_error(RUNNER_RUN_ID="x/1").startswith("RUNNER_RUN_ID ")


def test_every_bad_variable_is_named_in_one_message() -> None:
    message = _runner_error(RUNNER_EVENTS_QUEUE="Bad_Queue", RUNNER_OUTPUT_PREFIX="https://x/y")
    assert "RUNNER_EVENTS_QUEUE is not a valid queue name" in message
    assert "RUNNER_OUTPUT_PREFIX must start with 'az://'" in message


def test_a_short_token_is_refused_without_repeating_it() -> None:
    message = _runner_error(RUNNER_CALLBACK_TOKEN="short-secret")
    assert message.startswith("RUNNER_CALLBACK_TOKEN ") and "short-secret" not in message


def test_storage_must_be_a_connection_string_or_both_account_urls() -> None:
    message = _runner_error(RUNNER_STORAGE_CONNECTION_STRING=None)
    assert "RUNNER_STORAGE_CONNECTION_STRING" in message and "RUNNER_QUEUE_ACCOUNT_URL" in message
    settings = RunnerSettings.from_environ(
        {
            **RUNNER_VARIABLES,
            "RUNNER_STORAGE_CONNECTION_STRING": "",
            "RUNNER_BLOB_ACCOUNT_URL": "https://a.blob.core.windows.net",
            "RUNNER_QUEUE_ACCOUNT_URL": "https://a.queue.core.windows.net",
        }
    )
    assert settings.storage_connection_string is None


def test_a_connection_string_and_account_urls_together_contradict() -> None:
    message = _runner_error(RUNNER_BLOB_ACCOUNT_URL="https://a.blob.core.windows.net")
    assert "not both" in message and CONNECTION_STRING not in message


def test_the_secrets_to_redact_are_the_token_the_connection_string_and_its_key() -> None:
    secrets = RunnerSettings.from_environ(RUNNER_VARIABLES).secrets()
    assert secrets == [TOKEN, CONNECTION_STRING, "c2VjcmV0a2V5"]
    assert TOKEN not in repr(RunnerSettings.from_environ(RUNNER_VARIABLES))


def test_the_work_dir_is_read_as_a_path() -> None:
    settings = RunnerSettings.from_environ({**RUNNER_VARIABLES, "RUNNER_WORK_DIR": "/tmp/w"})
    assert settings.work_dir == Path("/tmp/w")


def test_pactas_variables_are_read_with_the_request_of_the_task_type() -> None:
    task = TaskSettings.from_environ(TASK_VARIABLES)
    assert (task.task_id, task.task_type, task.request) == (
        "task-1",
        TaskType.PARSE_PORTFOLIO,
        REQUEST,
    )
    assert task.blob_uris == ["az://uploads/parse_portfolio/x.csv"]


def test_an_unknown_task_type_is_named_with_the_known_ones() -> None:
    assert _task_error(TASK_TYPE="parse") == (
        "TASK_TYPE is 'parse', not one of: parse_portfolio, create_report, create_audit, "
        "create_dashboard"
    )


def test_a_missing_request_is_named_by_its_task_types_variable() -> None:
    message = _task_error(TASK_TYPE="create_report")
    assert message == "CREATE_REPORT_REQUEST is not set"


def test_a_request_that_is_not_json_is_named() -> None:
    assert _task_error(PARSE_PORTFOLIO_REQUEST="{oops").startswith(
        "PARSE_PORTFOLIO_REQUEST is not JSON"
    )


def test_a_request_without_blob_uris_is_refused() -> None:
    message = _task_error(PARSE_PORTFOLIO_REQUEST=json.dumps({"BlobURIs": []}))
    assert message.startswith("PARSE_PORTFOLIO_REQUEST must have `BlobURIs`")


def test_a_blob_uri_that_is_not_az_is_refused() -> None:
    message = _task_error(PARSE_PORTFOLIO_REQUEST=json.dumps({"BlobURIs": ["https://x/y.csv"]}))
    assert "PARSE_PORTFOLIO_REQUEST" in message and "does not start with 'az://'" in message


def test_the_input_scopes_are_read_with_the_task() -> None:
    task = TaskSettings.from_environ(TASK_VARIABLES)
    assert task.input_scopes == ["az://uploads/parse_portfolio/", "az://parsedportfolios/"]


def test_missing_input_scopes_are_named() -> None:
    assert _task_error(RUNNER_INPUT_SCOPES=None) == "RUNNER_INPUT_SCOPES is not set"


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("az://uploads/", "is not JSON"),
        ("[]", "must be a non-empty JSON list"),
        ('"az://uploads/"', "must be a non-empty JSON list"),
        ('["az://uploads/", 7]', "must be a non-empty JSON list"),
        ('["az://uploads/", "https://acct.blob.core.windows.net/uploads/"]', "item 2 is not 'az://<container>/'"),
        ('["az://Uploads_X/"]', "item 1 does not name a valid blob container"),
        ('["az://uploads/parse_portfolio"]', "item 1 has a prefix that is not whole path segments"),
        ('["az://uploads/a/../"]', "item 1 has a prefix that is not whole path segments"),
        ('["az://uploads//"]', "item 1 has a prefix that is not whole path segments"),
    ],
)
def test_malformed_input_scopes_are_named_without_repeating_them(value: str, problem: str) -> None:
    message = _task_error(RUNNER_INPUT_SCOPES=value)
    assert message.startswith("RUNNER_INPUT_SCOPES ") and problem in message
    assert "acct.blob" not in message and "Uploads_X" not in message
