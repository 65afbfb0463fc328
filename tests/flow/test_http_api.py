"""The HTTP API as a client sees it: its OpenAPI document, real answers against it, one error shape, the log route.

Real Azurite, the real app on the in-process host, the process backend.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests
from azure.data.tables import TableServiceClient
from jsonschema import Draft202012Validator

from local_runner.host.functions import HTTP_TRIGGER
from local_runner.host.host import LocalHost
from orchestrations.contracts import RunRecord, RunStatus
from orchestrations.run_store import PARTITION
from tests.flow.conftest import FlowEnv, api_get
from tests.flow.given import ended_run, rejected_run

pytestmark = [pytest.mark.azurite]

# A Functions route parameter with a constraint or default, `{id:guid}` or `{id?}`, is `{id}` in OpenAPI.
_ROUTE_PARAMETER = re.compile(r"\{\*?([A-Za-z_][A-Za-z0-9_]*)[^}]*\}")


def _validator(document: dict[str, Any], schema_name: str) -> Draft202012Validator:
    """A validator for one of the document's schemas, resolving its `#/components/...` references."""
    return Draft202012Validator({"$ref": f"#/components/schemas/{schema_name}", "components": document["components"]})


def _assert_matches(document: dict[str, Any], schema_name: str, answer: Any) -> None:
    problems = [f"{list(error.absolute_path)}: {error.message}"
                for error in _validator(document, schema_name).iter_errors(answer)]
    assert problems == [], f"the answer does not match {schema_name}"


def _assert_error(response: requests.Response, status: int, code: str) -> str:
    """The answer is `status` in the one error shape (as the served document describes it) with `code`;
    returns its message."""
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    document = requests.get(response.url.split("/api/")[0] + "/api/openapi.json", timeout=10).json()
    _assert_matches(document, "ErrorAnswer", response.json())
    assert response.json()["error"]["code"] == code
    return str(response.json()["error"]["message"])


def test_the_openapi_document_describes_exactly_the_routes_the_app_registers(
    start_host: Callable[..., LocalHost],
) -> None:
    host = start_host()
    registered = {
        (method.lower(), "/" + _ROUTE_PARAMETER.sub(r"{\1}", str(function.trigger.raw["route"]).strip("/")))
        for function in host.functions.list_by_trigger(HTTP_TRIGGER)
        for method in function.trigger.raw["methods"]
    }

    served = api_get(host, "openapi.json")

    assert served.status_code == 200
    document = served.json()
    assert document["servers"] == [{"url": f"/{host.settings.http_route_prefix}"}]
    described = {(method, path) for path, operations in document["paths"].items() for method in operations}
    assert sorted(described - registered) == [], "described in openapi.py but not registered by the app"
    assert sorted(registered - described) == [], "registered by the app but not described in openapi.py"


def test_the_document_is_openapi_3_1_with_valid_schemas_and_the_function_key_schemes(
    start_host: Callable[..., LocalHost],
) -> None:
    document = api_get(start_host(), "openapi.json").json()

    for name in document["components"]["schemas"]:
        Draft202012Validator.check_schema(_validator(document, name).schema)
    assert document["openapi"] == "3.1.0"
    assert set(document["components"]["securitySchemes"]) == {"functionKeyHeader", "functionKeyQuery"}


def test_a_finished_runs_view_and_the_listing_match_their_schemas(
    flow_env: FlowEnv, start_host: Callable[..., LocalHost], fixtures_dir: Path
) -> None:
    host = start_host()
    succeeded = ended_run(flow_env, fixtures_dir)
    rejected = rejected_run(flow_env)
    assert (succeeded.status, rejected.status) == (RunStatus.SUCCEEDED, RunStatus.REJECTED)
    document = api_get(host, "openapi.json").json()

    views = [api_get(host, f"runs/{run.run_id}").json() for run in (succeeded, rejected)]
    listing = api_get(host, "runs").json()

    for view in views:
        _assert_matches(document, "RunView", view)
    assert views[0]["orchestration"]["runtime_status"] == "Completed" and views[1]["orchestration"] is None
    _assert_matches(document, "RunList", listing)
    assert {run["run_id"] for run in listing["runs"]} == {succeeded.run_id, rejected.run_id}


def test_every_refusal_of_the_api_has_the_one_error_shape(
    flow_env: FlowEnv, start_host: Callable[..., LocalHost]
) -> None:
    host = start_host()
    unknown = "run-" + "0" * 28

    assert "1..500" in _assert_error(api_get(host, "runs?limit=0"), 400, "invalid_query")
    assert "1..500" in _assert_error(api_get(host, "runs?limit=501"), 400, "invalid_query")
    assert "'ten'" in _assert_error(api_get(host, "runs?limit=ten"), 400, "invalid_query")
    assert "succeeded" in _assert_error(api_get(host, "runs?status=done"), 400, "invalid_query")
    assert unknown in _assert_error(api_get(host, f"runs/{unknown}"), 404, "run_not_found")
    assert "Not_A_Run" in _assert_error(api_get(host, "runs/Not_A_Run"), 404, "run_not_found")
    assert unknown in _assert_error(api_get(host, f"runs/{unknown}/log"), 404, "run_not_found")


def test_an_unexpected_failure_is_answered_in_the_error_shape_too(
    flow_env: FlowEnv, start_host: Callable[..., LocalHost]
) -> None:
    host = start_host()
    run_id = "run-" + "c" * 28
    # A record no RunRecord can read (as one written by a newer schema would be): the app cannot answer.
    table = TableServiceClient.from_connection_string(flow_env.connection).create_table_if_not_exists(
        flow_env.env["RUNS_TABLE"])
    table.upsert_entity({"PartitionKey": PARTITION, "RowKey": run_id, "status": "paused", "schema_version": 1})

    for path in ("runs", f"runs/{run_id}"):
        assert "log" in _assert_error(api_get(host, path), 500, "internal_error")


def test_the_log_route_serves_the_runners_own_log_as_text(
    flow_env: FlowEnv, start_host: Callable[..., LocalHost], fixtures_dir: Path
) -> None:
    host = start_host()
    record = ended_run(flow_env, fixtures_dir)
    assert record.log_uri, record.error

    response = api_get(host, f"runs/{record.run_id}/log")

    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    assert response.content == flow_env.read_blob(record.log_uri)
    assert b"parse_portfolio" in response.content


def test_a_run_without_a_log_answers_log_not_found(
    flow_env: FlowEnv, start_host: Callable[..., LocalHost]
) -> None:
    host = start_host()
    run_id = rejected_run(flow_env).run_id

    message = _assert_error(api_get(host, f"runs/{run_id}/log"), 404, "log_not_found")

    assert "no runner log" in message


@pytest.mark.parametrize("where", ["another container", "another run's folder", "a path climbing out"])
def test_the_log_route_never_reads_a_blob_outside_the_runs_own_folder(
    flow_env: FlowEnv, start_host: Callable[..., LocalHost], where: str
) -> None:
    host = start_host()
    run_id = "run-" + "a" * 28
    runs = flow_env.env["RUNS_CONTAINER"]
    secret_uri = {
        "another container": f"az://{flow_env.uploads}/secret.txt",
        "another run's folder": f"az://{runs}/run-{'b' * 28}/runner.log",
        "a path climbing out": f"az://{runs}/{run_id}/../run-{'b' * 28}/runner.log",
    }[where]
    container, _, name = secret_uri.removeprefix("az://").partition("/")
    service = flow_env.blobs
    if not service.get_container_client(container).exists():
        service.create_container(container)
    service.get_blob_client(container, name.replace(f"{run_id}/../", "")).upload_blob(b"SECRET", overwrite=True)
    now = datetime.now(UTC)
    flow_env.runs.create_if_absent(RunRecord(
        run_id=run_id, status=RunStatus.FAILED, task_type="parse_portfolio", source_uri="az://x/y.csv",
        requested_at=now, updated_at=now, log_uri=secret_uri,
    ))

    response = api_get(host, f"runs/{run_id}/log")

    message = _assert_error(response, 404, "log_not_found")
    assert "outside the run's own folder" in message and b"SECRET" not in response.content
