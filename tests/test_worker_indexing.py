"""The app as the Python worker indexes it: what `func start` and Azure will see."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from orchestrations import runtime
from tests.conftest import PROJECT_ROOT
from tests.worker_indexing import raw_bindings_like_the_worker, worker_available

BASE_ENV = {
    "AzureWebJobsStorage": "UseDevelopmentStorage=true",
    "PYTHON_SCRIPT_FILE_NAME": "entry.py",
    "RUNNER_BACKEND": "process",
    "AZURE_FUNCTIONS_ENVIRONMENT": "Development",  # as local.settings.json has it
}


def _forget_app() -> None:
    for name in list(sys.modules):
        if name in {"entry", "function_app"} or name.startswith("function_app."):
            del sys.modules[name]
    runtime.reset()


@pytest.fixture
def index(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    if not worker_available():
        pytest.skip("the worker package is not unpacked in .local/worker (run scripts/bootstrap.sh)")

    def run(**env: str) -> dict[str, list[dict[str, Any]]]:
        for key, value in {**BASE_ENV, **env}.items():
            monkeypatch.setenv(key, value)
        _forget_app()
        return raw_bindings_like_the_worker(PROJECT_ROOT)

    yield run
    _forget_app()


def _binding(bindings: list[dict[str, Any]], binding_type: str) -> dict[str, Any]:
    [found] = [b for b in bindings if b["type"] == binding_type]
    return found


def test_worker_finds_every_function_through_the_entry_module(index: Any) -> None:
    functions = index()

    assert sorted(functions) == sorted([
        "on_upload", "on_runner_event", "get_run", "list_runs", "get_run_log", "get_openapi", "cancel_run", "rerun_run",
        "runs_page", "run_page",
        "run_task", "start_job", "check_job", "stop_job", "read_result", "record_outcome",
        "acquire_slot", "release_slot",
    ])


def test_the_slot_activities_get_the_durable_client_as_the_worker_binds_it(index: Any) -> None:
    functions = index()

    for name in ("acquire_slot", "release_slot"):
        assert {b["type"] for b in functions[name]} == {"activityTrigger", "durableClient"}
        assert _binding(functions[name], "durableClient")["name"] == "client"


def test_upload_trigger_polls_the_uploads_container_with_the_storage_connection(index: Any) -> None:
    bindings = index()["on_upload"]

    trigger = _binding(bindings, "blobTrigger")
    assert trigger == {
        "direction": "IN", "type": "blobTrigger", "name": "blob", "path": "uploads/{name}",
        "connection": "AzureWebJobsStorage", "source": "LogsAndContainerScan",
        "properties": {"SupportsDeferredBinding": True},
    }
    assert _binding(bindings, "durableClient")["name"] == "client"


def test_upload_trigger_asks_the_host_for_a_reference_to_the_blob_not_its_content(index: Any) -> None:
    """SupportsDeferredBinding: the host sends ModelBindingData (container and name) and the worker
    builds a BlobClient from it, so no upload is ever read whole into the host or the worker."""
    bindings = index()["on_upload"]

    assert _binding(bindings, "blobTrigger")["properties"] == {"SupportsDeferredBinding": True}
    assert _binding(bindings, "durableClient")["properties"] == {"SupportsDeferredBinding": False}


def test_outside_the_emulator_the_upload_trigger_uses_event_grid_as_flex_consumption_requires(index: Any) -> None:
    trigger = _binding(index(AZURE_FUNCTIONS_ENVIRONMENT="", UPLOAD_TRIGGER_SOURCE="")["on_upload"], "blobTrigger")

    assert trigger["source"] == "EventGrid"


def test_upload_trigger_uses_event_grid_and_the_configured_container_when_set(index: Any) -> None:
    trigger = _binding(index(UPLOAD_TRIGGER_SOURCE="EventGrid", UPLOADS_CONTAINER="portfolios")["on_upload"],
                       "blobTrigger")

    assert trigger["source"] == "EventGrid"
    assert trigger["path"] == "portfolios/{name}"


def test_completion_trigger_reads_the_runner_events_queue(index: Any) -> None:
    bindings = index()["on_runner_event"]

    assert _binding(bindings, "queueTrigger") == {
        "direction": "IN", "type": "queueTrigger", "name": "message", "queueName": "runner-events",
        "connection": "AzureWebJobsStorage",
    }
    assert _binding(bindings, "durableClient")["direction"] == "IN"


def test_status_api_routes_are_get_only_with_function_keys(index: Any) -> None:
    functions = index()

    get_run = _binding(functions["get_run"], "httpTrigger")
    list_runs = _binding(functions["list_runs"], "httpTrigger")
    assert (get_run["route"], get_run["methods"], get_run["authLevel"]) == ("runs/{run_id}", ["GET"], "FUNCTION")
    assert (list_runs["route"], list_runs["methods"]) == ("runs", ["GET"])
    assert _binding(functions["get_run"], "http")["name"] == "$return"


def test_orchestrator_and_activities_have_their_durable_triggers(index: Any) -> None:
    functions = index()

    assert functions["run_task"] == [{"direction": "IN", "type": "orchestrationTrigger", "name": "context"}]
    for activity in ("start_job", "check_job", "stop_job", "read_result", "record_outcome"):
        assert functions[activity] == [{"direction": "IN", "type": "activityTrigger", "name": "payload"}]


def test_local_settings_name_the_entry_module_the_worker_must_import() -> None:
    values = json.loads((PROJECT_ROOT / "local.settings.json").read_text())["Values"]

    assert values["PYTHON_SCRIPT_FILE_NAME"] == "entry.py"
    assert (PROJECT_ROOT / values["PYTHON_SCRIPT_FILE_NAME"]).is_file()
    # A function_app.py would be shadowed by the function_app/ package (DESIGN.md, "Entry").
    assert not (PROJECT_ROOT / "function_app.py").exists()


def test_worker_falls_back_to_legacy_indexing_without_the_setting(index: Any) -> None:
    with pytest.raises(FileNotFoundError, match="legacy indexing"):
        index(PYTHON_SCRIPT_FILE_NAME="function_app.py")


def test_bad_setting_stops_indexing_with_the_setting_named(index: Any) -> None:
    with pytest.raises(Exception, match="UPLOAD_MAX_BYTES"):
        index(UPLOAD_MAX_BYTES="lots")
