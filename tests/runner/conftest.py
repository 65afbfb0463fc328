"""Fixtures for the runner's tests: an image-like copy of the runner, its environment, storage."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.storage.blob import BlobServiceClient
from azure.storage.queue import QueueClient

from orchestrations.contracts import RunnerEvent
from tests.conftest import PROJECT_ROOT

# A crashed or hung runner must fail its test, not stall the session.
RUNNER_TIMEOUT_SECONDS = 120


@pytest.fixture(scope="session")
def runner_image_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The files the runner image holds: runner/ plus orchestrations/__init__.py, contracts.py and telemetry.py.

    Running from this copy proves the runner imports nothing else of the project."""
    root = tmp_path_factory.mktemp("runner-image")
    shutil.copytree(
        PROJECT_ROOT / "runner", root / "runner", ignore=shutil.ignore_patterns("__pycache__")
    )
    (root / "orchestrations").mkdir()
    for name in ("__init__.py", "contracts.py", "telemetry.py"):
        shutil.copy(PROJECT_ROOT / "orchestrations" / name, root / "orchestrations" / name)
    return root


@dataclass
class RunnerProcess:
    """How `python -m runner` ended."""

    exit_code: int
    stdout: str
    stderr: str


@pytest.fixture
def run_runner(runner_image_dir: Path) -> Callable[..., RunnerProcess]:
    """Run `python -m runner [args]` from the image-like copy with exactly the given environment."""

    def run(env: dict[str, str], *args: str) -> RunnerProcess:
        completed = subprocess.run(
            [sys.executable, "-m", "runner", *args],
            cwd=runner_image_dir,
            env={"PATH": os.environ.get("PATH", ""), **env},
            capture_output=True,
            text=True,
            timeout=RUNNER_TIMEOUT_SECONDS,
            check=False,
        )
        return RunnerProcess(completed.returncode, completed.stdout, completed.stderr)

    return run


@dataclass
class StorageView:
    """The test's view of Azurite: where inputs go and where the run writes."""

    connection_string: str
    blob_service: BlobServiceClient
    uploads_container: str
    runs_container: str
    events_queue: str

    def upload_input(self, name: str, data: bytes) -> str:
        self.blob_service.get_blob_client(self.uploads_container, name).upload_blob(data)
        return f"az://{self.uploads_container}/{name}"

    def read_blob(self, uri: str) -> bytes:
        container, _, name = uri.removeprefix("az://").partition("/")
        return self.blob_service.get_blob_client(container, name).download_blob().readall()

    def list_run_blobs(self, run_id: str) -> list[str]:
        container = self.blob_service.get_container_client(self.runs_container)
        if not container.exists():
            return []
        return sorted(blob.name for blob in container.list_blobs(name_starts_with=f"{run_id}/"))

    def receive_events(self) -> list[RunnerEvent]:
        """Every message on the events queue, validated as RunnerEvent (plain-text encoding)."""
        queue = QueueClient.from_connection_string(self.connection_string, self.events_queue)
        if not _queue_exists(queue):
            return []
        messages = list(queue.receive_messages(max_messages=32))
        return [RunnerEvent.from_payload(message.content) for message in messages]


def _queue_exists(queue: QueueClient) -> bool:
    try:
        queue.get_queue_properties()
    except ResourceNotFoundError:
        return False
    return True


@contextlib.contextmanager
def storage_view(connection_string: str, unique_name: str) -> Iterator[StorageView]:
    """A test's own containers and queue names on the Azurite behind `connection_string` (uploads created)."""
    blob_service = BlobServiceClient.from_connection_string(connection_string)
    storage = StorageView(
        connection_string=connection_string,
        blob_service=blob_service,
        uploads_container=f"{unique_name}-uploads",
        runs_container=f"{unique_name}-runs",
        events_queue=f"{unique_name}-events",
    )
    blob_service.create_container(storage.uploads_container)
    yield storage
    blob_service.close()


@pytest.fixture
def run_storage(azurite: str, unique_name: str) -> Iterator[StorageView]:
    with storage_view(azurite, unique_name) as storage:
        yield storage


@dataclass
class RunnerEnvironment:
    """The environment a job backend gives the runner, as a dict the test can still change."""

    run_id: str
    token: str
    output_prefix: str
    variables: dict[str, str]


@pytest.fixture
def runner_env(run_storage: StorageView, unique_name: str) -> Callable[..., RunnerEnvironment]:
    """Build the runner's environment for a task type and input URIs."""

    def build(task_type: str, blob_uris: list[str]) -> RunnerEnvironment:
        run_id = f"run-{unique_name}"
        token = secrets.token_urlsafe(32)
        output_prefix = f"az://{run_storage.runs_container}/{run_id}/"
        pacta_request: dict[str, object] = (
            {"IncompleteUploadIDs": [], "BlobURIs": blob_uris}
            if task_type == "parse_portfolio"
            else {"AnalysisID": "analysis.0123456789abcdef0123", "BlobURIs": blob_uris}
        )
        variables = {
            "TASK_ID": str(uuid.uuid4()),
            "TASK_TYPE": task_type,
            f"{task_type.upper()}_REQUEST": json.dumps(pacta_request) + "\n",
            "RUNNER_RUN_ID": run_id,
            "RUNNER_CALLBACK_TOKEN": token,
            "RUNNER_EVENTS_QUEUE": run_storage.events_queue,
            "RUNNER_OUTPUT_PREFIX": output_prefix,
            "RUNNER_STORAGE_CONNECTION_STRING": run_storage.connection_string,
            # As job_spec sets it: requests may read the test's uploads container only.
            "RUNNER_INPUT_SCOPES": json.dumps([f"az://{run_storage.uploads_container}/"]),
        }
        return RunnerEnvironment(run_id, token, output_prefix, variables)

    return build
