"""Indexing the app as the Python worker does, and invoking functions as the worker calls them."""

from __future__ import annotations

import asyncio
import json
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import azure.durable_functions as df
import pytest
from azure.storage.blob import BlobClient

from local_runner.host.functions import (
    ACTIVITY_TRIGGER,
    BLOB_TRIGGER,
    HTTP_TRIGGER,
    ORCHESTRATION_TRIGGER,
    QUEUE_TRIGGER,
    DurableClientBinding,
    FunctionIndex,
    FunctionLoadError,
    FunctionNotFoundError,
    Invoker,
    blob_reference_input,
    blob_trigger_input,
    load_function_index,
    queue_trigger_input,
)
from tests.worker_indexing import index_like_the_worker, raw_bindings_like_the_worker, worker_available

TWO_APPS = textwrap.dedent(
    """
    import azure.durable_functions as df
    import azure.functions as func

    app = df.DFApp()
    other = func.FunctionApp()
    """
)


def bindings_by_name(index: FunctionIndex, name: str) -> dict[str, dict[str, Any]]:
    return {b.name: dict(b.raw) for b in index.get(name).bindings}


def test_indexing_finds_every_function_with_its_trigger_and_bindings(index: FunctionIndex) -> None:
    assert sorted(index.names) == [
        "boom", "double", "get_run", "on_message", "on_reference", "on_upload", "pipeline", "start",
    ]  # fmt: skip
    assert index.get("on_upload").trigger.type == BLOB_TRIGGER
    assert index.get("on_upload").trigger.raw["path"] == "%SAMPLE_CONTAINER%/in/{name}"
    assert index.get("on_message").trigger.raw["queueName"] == "%SAMPLE_QUEUE%"
    assert index.get("get_run").trigger.raw["route"] == "runs/{run_id}"
    assert bindings_by_name(index, "get_run")["$return"]["type"] == "http"
    assert bindings_by_name(index, "start")["client"]["type"] == "durableClient"
    assert index.get("double").trigger.type == ACTIVITY_TRIGGER
    assert index.get("pipeline").trigger.type == ORCHESTRATION_TRIGGER


def test_functions_are_listed_by_trigger_type(index: FunctionIndex) -> None:
    assert sorted(f.name for f in index.list_by_trigger(BLOB_TRIGGER)) == ["on_reference", "on_upload"]
    assert [f.name for f in index.list_by_trigger(QUEUE_TRIGGER)] == ["on_message"]
    assert sorted(f.name for f in index.list_by_trigger(HTTP_TRIGGER)) == [
        "boom",
        "get_run",
        "start",
    ]
    assert index.list_by_trigger("timerTrigger") == []


def test_a_durable_client_function_is_async_and_a_context_parameter_is_noticed(
    index: FunctionIndex,
) -> None:
    assert index.get("start").is_async
    assert not index.get("get_run").is_async
    assert index.get("on_upload").requires_context
    assert not index.get("on_message").requires_context


def test_an_unknown_function_name_lists_the_indexed_ones(index: FunctionIndex) -> None:
    with pytest.raises(FunctionNotFoundError, match="on_upload"):
        index.get("nope")


@pytest.mark.skipif(not worker_available(), reason="the worker package is not in .local/worker")
def test_the_index_agrees_with_the_python_workers_own_indexing(index: FunctionIndex) -> None:
    sys.modules.pop(index.entry_file.stem)  # the worker imports it afresh, as a new process would
    indexed = index_like_the_worker(index.entry_file.parent)

    worker = {f.get_function_name(): sorted(f.get_raw_bindings()) for f in indexed}

    assert worker == {f.name: sorted(json.dumps(dict(b.raw)) for b in f.bindings) for f in index}


@pytest.mark.skipif(not worker_available(), reason="the worker package is not in .local/worker")
def test_the_host_defers_exactly_the_bindings_the_worker_asks_it_to_defer(index: FunctionIndex) -> None:
    sys.modules.pop(index.entry_file.stem)
    worker = raw_bindings_like_the_worker(index.entry_file.parent)

    asked = {
        (function, binding["name"]) for function, bindings in worker.items() for binding in bindings
        if binding.get("properties", {}).get("SupportsDeferredBinding")
    }

    assert {(f.name, b.name) for f in index for b in f.bindings if b.sdk_type is not None} == asked
    assert asked == {("on_reference", "ref")}


def test_an_sdk_typed_blob_trigger_gets_a_client_built_from_the_reference_alone(
    index: FunctionIndex, invoker: Invoker, calls: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AzureWebJobsStorage", "UseDevelopmentStorage=true")  # no storage is asked
    reference = blob_reference_input(connection="AzureWebJobsStorage", container="c1", blob_name="ref/a b.csv")

    invoker.invoke(index.get("on_reference"), reference, reason="test")

    (call,) = calls
    assert type(call["client"]) is BlobClient
    assert (call["client"].container_name, call["client"].blob_name) == ("c1", "ref/a b.csv")
    assert json.loads(reference.content) == {
        "Connection": "AzureWebJobsStorage", "ContainerName": "c1", "BlobName": "ref/a b.csv"
    }


def test_a_missing_entry_file_is_an_error_that_explains_the_legacy_fallback(
    sample_app: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTHON_SCRIPT_FILE_NAME", "absent.py")

    with pytest.raises(FunctionLoadError, match=r"legacy function\.json indexing"):
        load_function_index(sample_app)


@pytest.mark.parametrize("name", ["app/entry.py", "entry.txt", "-entry.py", "function_app"])
def test_an_entry_file_name_the_worker_rejects_is_an_error(
    sample_app: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    monkeypatch.setenv("PYTHON_SCRIPT_FILE_NAME", name)

    with pytest.raises(FunctionLoadError, match="Invalid file name"):
        load_function_index(sample_app)


def test_a_function_app_package_without_an_entry_file_is_not_found(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, isolated_imports: None
) -> None:
    package = tmp_path / "function_app"
    package.mkdir()
    (package / "__init__.py").write_text(
        "import azure.functions as func\napp = func.FunctionApp()\n"
    )
    monkeypatch.delenv("PYTHON_SCRIPT_FILE_NAME", raising=False)

    with pytest.raises(FunctionLoadError, match=r"function_app\.py does not exist"):
        load_function_index(tmp_path)


def test_two_function_registers_in_the_entry_module_are_an_error(
    sample_app: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (sample_app / "two_apps.py").write_text(TWO_APPS)
    monkeypatch.setenv("PYTHON_SCRIPT_FILE_NAME", "two_apps.py")

    with pytest.raises(FunctionLoadError, match="More than one"):
        load_function_index(sample_app)


def test_an_entry_module_without_a_function_register_is_an_error(
    sample_app: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (sample_app / "empty_entry.py").write_text("import azure.functions as func\n")
    monkeypatch.setenv("PYTHON_SCRIPT_FILE_NAME", "empty_entry.py")

    with pytest.raises(FunctionLoadError, match="Could not find top level function app instances"):
        load_function_index(sample_app)


def test_indexing_again_after_an_environment_change_imports_the_entry_afresh(
    sample_app: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (sample_app / "small_entry.py").write_text(
        "import azure.durable_functions as df\napp = df.DFApp()\n"
        "@app.activity_trigger(input_name='x')\ndef only(x):\n    return x\n"
    )
    first = load_function_index(sample_app)
    monkeypatch.setenv("PYTHON_SCRIPT_FILE_NAME", "small_entry.py")

    second = load_function_index(sample_app)

    assert "on_upload" in first.names
    assert second.names == ["only"]


def test_an_orchestration_context_named_other_than_context_is_refused_like_the_worker(
    sample_app: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (sample_app / "ctx_entry.py").write_text(
        "import azure.durable_functions as df\napp = df.DFApp()\n"
        "@app.orchestration_trigger(context_name='ctx')\ndef orch(ctx):\n    yield None\n"
    )
    monkeypatch.setenv("PYTHON_SCRIPT_FILE_NAME", "ctx_entry.py")

    with pytest.raises(FunctionLoadError, match="cannot load the orch function"):
        load_function_index(sample_app)


def test_an_activity_invocation_round_trips_json(index: FunctionIndex, invoker: Invoker) -> None:
    result = invoker.invoke_activity(index.get("double"), json.dumps({"n": 21}))

    assert json.loads(result) == {"doubled": 42}


def test_an_orchestrator_invocation_returns_the_sdks_state_json(
    index: FunctionIndex, invoker: Invoker
) -> None:
    history = [
        {"EventType": 12, "EventId": -1, "IsPlayed": False, "Timestamp": "2026-01-01T00:00:00Z"},
        {
            "EventType": 0, "EventId": -1, "IsPlayed": False, "Timestamp": "2026-01-01T00:00:00Z",
            "Name": "pipeline", "Version": "", "Input": json.dumps({"n": 1}),
            "OrchestrationInstance": {"InstanceId": "i1", "ExecutionId": "e1"},
        },
    ]  # fmt: skip
    context = {"history": history, "instanceId": "i1", "isReplaying": False,
               "parentInstanceId": None, "input": json.dumps({"n": 1}),
               "upperSchemaVersion": 1, "upperSchemaVersionNew": 2}  # fmt: skip

    state = json.loads(invoker.invoke_orchestrator(index.get("pipeline"), json.dumps(context)))

    assert state["isDone"] is False
    assert state["actions"] == [[{"actionType": 0, "functionName": "double", "input": '{"n": 1}'}]]


def test_blob_and_queue_inputs_carry_what_the_worker_passes(
    index: FunctionIndex, invoker: Invoker, calls: list[dict[str, Any]]
) -> None:
    stream = blob_trigger_input(
        container="c", blob_name="in/a.csv", data=b"x,y", uri="http://b/c/in/a.csv",
        etag="0x1", content_type="text/csv", last_modified=None, metadata={"k": "v"},
    )  # fmt: skip
    message = queue_trigger_input(
        id="m1", body=b"hello", dequeue_count=2, expiration_time=None, insertion_time=None,
        time_next_visible=None, pop_receipt="p",
    )  # fmt: skip

    invoker.invoke(index.get("on_upload"), stream, reason="test")
    invoker.invoke(index.get("on_message"), message, reason="test")

    upload, received = calls
    assert upload["name"] == "c/in/a.csv" and upload["data"] == b"x,y" and upload["length"] == 3
    assert upload["properties"]["ETag"] == '"0x1"' and upload["metadata"] == {"k": "v"}
    assert upload["invocation_id"]
    assert received == {"function": "on_message", "body": b"hello", "dequeue_count": 2}


def test_a_failing_function_raises_its_exception_to_the_caller(
    index: FunctionIndex, invoker: Invoker
) -> None:
    message = queue_trigger_input(
        id="m1", body=b"fail", dequeue_count=1, expiration_time=None, insertion_time=None,
        time_next_visible=None, pop_receipt=None,
    )  # fmt: skip

    with pytest.raises(ValueError, match="asked to fail"):
        invoker.invoke(index.get("on_message"), message, reason="test")


def test_the_durable_client_binding_is_accepted_by_the_sdks_client() -> None:
    binding = DurableClientBinding("SampleHub", 7123)

    client = df.DurableOrchestrationClient(binding.to_json())
    urls = client.create_http_management_payload("abc")

    # DurableOrchestrationClient only annotates task_hub_name; the bindings object holds it.
    assert client._orchestration_bindings.task_hub_name == "SampleHub"
    assert urls["id"] == "abc"
    base = "http://127.0.0.1:7123/runtime/webhooks/durabletask/instances/abc"
    assert urls["statusQueryGetUri"] == f"{base}?taskHub=SampleHub&connection=Storage"
    assert urls["sendEventPostUri"].startswith(f"{base}/raiseEvent/{{eventName}}?")
    assert urls["terminatePostUri"].startswith(f"{base}/terminate?reason={{text}}")
    assert urls["purgeHistoryDeleteUri"].startswith(base)
    assert client._get_start_new_url("i1", "pipeline") == (
        "http://127.0.0.1:7123/runtime/webhooks/durabletask/orchestrators/pipeline/i1"
    )


def test_async_functions_all_run_on_the_invokers_one_loop(invoker: Invoker) -> None:
    async def which_loop() -> asyncio.AbstractEventLoop:
        return asyncio.get_running_loop()

    loops = {
        asyncio.run_coroutine_threadsafe(which_loop(), invoker._loop).result()  # type: ignore[arg-type]
        for _ in range(3)
    }

    assert len(loops) == 1


def test_invoking_blocking_from_the_invokers_own_loop_is_refused(
    index: FunctionIndex, invoker: Invoker
) -> None:
    async def call_blocking() -> None:
        invoker.invoke(index.get("double"), {"n": 1}, reason="test")

    future = asyncio.run_coroutine_threadsafe(call_blocking(), invoker._loop)  # type: ignore[arg-type]

    with pytest.raises(RuntimeError, match="deadlock"):
        future.result(timeout=5)


def test_sync_functions_run_in_the_pool_not_on_the_callers_thread(
    index: FunctionIndex, invoker: Invoker, calls: list[dict[str, Any]]
) -> None:
    caller = threading.current_thread().name
    seen: list[str] = []
    function = index.get("double")
    spy = type(function)(
        name=function.name, trigger=function.trigger, bindings=function.bindings,
        user_function=lambda payload: seen.append(threading.current_thread().name),
    )  # fmt: skip

    invoker.invoke(spy, {"n": 1}, reason="test")

    assert seen and seen[0] != caller and seen[0].startswith("host-function")
