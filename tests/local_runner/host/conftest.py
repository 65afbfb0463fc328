"""Fixtures for the in-process host's plumbing: a tiny sample app, its index, an invoker."""

from __future__ import annotations

import json
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from azure.storage.queue import QueueClient

from local_runner.host.functions import (
    DurableClientBinding,
    FunctionIndex,
    Invoker,
    load_function_index,
)

SAMPLE_ENTRY = "sample_entry.py"

# Every trigger kind the host delivers. Blob and queue names come from app settings (%...%), so
# each test gets fresh ones; bodies starting with b"fail" make the function raise, and a message
# "wait:x" waits for a message "signal:x". `on_reference` binds its blob trigger to an SDK type
# (BlobClient): the host passes a reference, not the content.
SAMPLE_APP = textwrap.dedent(
    """
    import json
    import threading
    from collections import defaultdict

    import azure.durable_functions as df
    import azure.functions as func
    import azurefunctions.extensions.bindings.blob as blobext

    app = df.DFApp(http_auth_level=func.AuthLevel.FUNCTION)
    CALLS: list = []
    # Messages "wait:<name>" block until a message "signal:<name>" has been handled (at most 10 s).
    SIGNALS: defaultdict = defaultdict(threading.Event)


    @app.blob_trigger(arg_name="ref", path="%SAMPLE_CONTAINER%/ref/{name}",
                      connection="AzureWebJobsStorage")
    def on_reference(ref: blobext.BlobClient) -> None:
        CALLS.append({"function": "on_reference", "client": ref, "name": ref.blob_name})
        if ref.blob_name.endswith(".fail"):
            raise ValueError("asked to fail")


    @app.blob_trigger(arg_name="blob", path="%SAMPLE_CONTAINER%/in/{name}",
                      connection="AzureWebJobsStorage")
    def on_upload(blob: func.InputStream, context: func.Context) -> None:
        data = blob.read()
        CALLS.append({"function": "on_upload", "name": blob.name, "data": data,
                      "length": blob.length, "properties": blob.blob_properties,
                      "metadata": blob.metadata, "invocation_id": context.invocation_id})
        if data.startswith(b"fail"):
            raise ValueError("asked to fail")


    @app.queue_trigger(arg_name="msg", queue_name="%SAMPLE_QUEUE%",
                       connection="AzureWebJobsStorage")
    def on_message(msg: func.QueueMessage) -> None:
        body = msg.get_body()
        CALLS.append({"function": "on_message", "body": body, "dequeue_count": msg.dequeue_count})
        if body.startswith(b"fail"):
            raise ValueError("asked to fail")
        verb, _, name = body.decode().partition(":")
        if verb == "signal":
            SIGNALS[name].set()
        elif verb == "wait" and not SIGNALS[name].wait(10):
            raise TimeoutError(f"no {name} signal came")


    @app.route(route="runs/{run_id}", methods=["GET"])
    def get_run(req: func.HttpRequest) -> func.HttpResponse:
        body = {"run_id": req.route_params["run_id"], "verbose": req.params.get("verbose")}
        return func.HttpResponse(json.dumps(body), mimetype="application/json",
                                 headers={"X-Run": req.route_params["run_id"]})


    @app.route(route="boom", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
    def boom(req: func.HttpRequest) -> func.HttpResponse:
        raise RuntimeError("boom")


    @app.route(route="start/{name}", methods=["POST"])
    @app.durable_client_input(client_name="client")
    async def start(req: func.HttpRequest, client: df.DurableOrchestrationClient):
        instance_id = await client.start_new(req.route_params["name"], None, req.get_json())
        return client.create_check_status_response(req, instance_id)


    @app.activity_trigger(input_name="payload")
    def double(payload: dict) -> dict:
        return {"doubled": payload["n"] * 2}


    @app.orchestration_trigger(context_name="context")
    def pipeline(context: df.DurableOrchestrationContext):
        result = yield context.call_activity("double", context.get_input())
        return result
    """
)

HOST_JSON = {
    "version": "2.0",
    "extensions": {
        "queues": {"maxDequeueCount": 5, "visibilityTimeout": "00:00:00"},
        "durableTask": {"hubName": "SampleHub"},
    },
}


@pytest.fixture
def isolated_imports(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Undo what indexing does to sys.path and sys.modules when the test ends."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    yield
    sys.modules.pop(Path(SAMPLE_ENTRY).stem, None)


@pytest.fixture
def sample_app(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, unique_name: str, isolated_imports: None
) -> Path:
    """An app root with the sample entry file and host.json, and the settings it reads."""
    app_dir = tmp_path / "app"
    app_dir.mkdir()
    (app_dir / SAMPLE_ENTRY).write_text(SAMPLE_APP)
    (app_dir / "host.json").write_text(json.dumps(HOST_JSON))
    monkeypatch.setenv("PYTHON_SCRIPT_FILE_NAME", SAMPLE_ENTRY)
    monkeypatch.setenv("SAMPLE_CONTAINER", unique_name)
    monkeypatch.setenv("SAMPLE_QUEUE", unique_name)
    return app_dir


@pytest.fixture
def index(sample_app: Path) -> FunctionIndex:
    return load_function_index(sample_app)


@pytest.fixture
def calls(index: FunctionIndex) -> list[dict[str, Any]]:
    """What the sample app's functions recorded, in call order."""
    calls: list[dict[str, Any]] = sys.modules[Path(SAMPLE_ENTRY).stem].CALLS
    return calls


@pytest.fixture
def invoker() -> Iterator[Invoker]:
    with Invoker(durable_client=lambda: DurableClientBinding("SampleHub", 7071)) as running:
        yield running


def queue_exists(queue: QueueClient) -> bool:
    """Whether the queue has been made (the host makes a trigger's queue when it starts polling)."""
    try:
        queue.get_queue_properties()
    except Exception:
        return False
    return True
