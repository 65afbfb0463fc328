"""The whole app on the in-process host, against a private Azurite and the process backend.

`flow_env` gives each test its own containers, queue, table and task hub; `start_host` starts the
real app (through entry.py, as the worker loads it) with a clock of the test's choosing.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import docker
import pytest
import requests
from azure.core.exceptions import ResourceExistsError
from azure.storage.blob import BlobServiceClient
from azure.storage.queue import QueueServiceClient

from local_runner.docker_backend import RUN_ID_LABEL
from local_runner.host.clock import Clock, ManualClock
from local_runner.host.host import LocalHost
from local_runner.host.settings import QueueSettings
from local_runner.host.triggers import QueueTriggerPoller
from orchestrations import runtime
from orchestrations.contracts import RunRecord
from orchestrations.intake import derive_run_id
from orchestrations.run_store import RunNotFoundError, RunStore
from tests.cloud.fixtures import ContainerAppsCloud
from tests.conftest import PROJECT_ROOT, wait_for

TERMINAL = {"succeeded", "failed", "timed_out", "cancelled", "rejected"}


@dataclass
class FlowEnv:
    connection: str
    name: str
    work_dir: Path
    env: dict[str, str]
    hosts: list[LocalHost] = field(default_factory=list)
    run_ids: list[str] = field(default_factory=list)
    cloud: ContainerAppsCloud | None = None
    # Queue triggers a test delivers itself (`poll_once`), when it started the host without them.
    held_queue_triggers: list[QueueTriggerPoller] = field(default_factory=list)

    @property
    def backend(self) -> str:
        return self.env["RUNNER_BACKEND"]

    @property
    def uploads(self) -> str:
        return self.env["UPLOADS_CONTAINER"]

    @property
    def blobs(self) -> BlobServiceClient:
        return BlobServiceClient.from_connection_string(self.connection)

    @property
    def runs(self) -> RunStore:
        return RunStore.from_connection_string(self.connection, self.env["RUNS_TABLE"])

    def upload(self, name: str, content: bytes) -> str:
        """Upload to the uploads container; returns the run id the upload will get."""
        service = self.blobs
        with contextlib.suppress(ResourceExistsError):
            service.create_container(self.uploads)
        uploaded = service.get_blob_client(self.uploads, name).upload_blob(content, overwrite=True)
        run_id = derive_run_id(self.uploads, name, uploaded["etag"])
        self.run_ids.append(run_id)
        return run_id

    def record(self, run_id: str) -> RunRecord | None:
        try:
            return self.runs.get_run(run_id)
        except RunNotFoundError:
            return None

    def read_blob(self, uri: str) -> bytes:
        container, _, name = uri.removeprefix("az://").partition("/")
        return bytes(self.blobs.get_blob_client(container, name).download_blob().readall())

    def executions(self) -> list[str]:
        """The run ids the job backend started an execution for: one entry per execution."""
        if self.cloud is not None:
            return sorted(run_id for run_id in self.cloud.run_ids() if run_id in self.run_ids)
        if self.backend == "docker":
            client = docker.from_env()
            containers = client.containers.list(all=True, filters={"label": RUN_ID_LABEL})
            return sorted(c.labels[RUN_ID_LABEL] for c in containers if c.labels[RUN_ID_LABEL] in self.run_ids)
        return sorted(path.name for path in self.work_dir.iterdir()) if self.work_dir.exists() else []

    def queue_messages(self, queue: str) -> int:
        client = QueueServiceClient.from_connection_string(self.connection).get_queue_client(queue)
        try:
            return int(client.get_queue_properties().approximate_message_count)
        except Exception:
            return 0


@pytest.fixture(params=["process"])
def backend(request: pytest.FixtureRequest) -> str:
    """The job backend of a flow test; `parametrize("backend", [...], indirect=True)` to run others.

    `aca` runs as in Azure: Storage over HTTPS with bearer tokens, the runner on its managed identity, its
    executions started through a loopback Resource Manager (and run there as local processes).
    """
    if request.param == "docker":
        request.getfixturevalue("runner_image")
    return str(request.param)


@pytest.fixture
def flow_env(
    request: pytest.FixtureRequest, azurite: str, unique_name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    backend: str,
) -> Iterator[FlowEnv]:
    cloud: ContainerAppsCloud | None = None
    if backend == "aca":
        azurite = request.getfixturevalue("azurite_oauth").connection_string
        cloud = request.getfixturevalue("container_apps")
    env = {
        "AzureWebJobsStorage": azurite,
        "PYTHON_SCRIPT_FILE_NAME": "entry.py",
        "AZURE_FUNCTIONS_ENVIRONMENT": "Development",
        "RUNNER_BACKEND": backend,
        "TASK_HUB_NAME": f"Hub{unique_name}",
        "UPLOADS_CONTAINER": f"{unique_name}-uploads",
        "RUNS_CONTAINER": f"{unique_name}-runs",
        "RUNS_TABLE": f"runs{unique_name}",
        "RUNNER_EVENTS_QUEUE": f"{unique_name}-events",
        "PROCESS_BACKEND_WORK_DIR": str(tmp_path / "process-runs"),
        "STATUS_CHECK_INTERVAL_SECONDS": "2",
        "COMPLETION_GRACE_SECONDS": "2",
        "ACTIVITY_FIRST_RETRY_SECONDS": "1",
        **(cloud.app_settings() if cloud is not None else {}),
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    runtime.reset()
    flow = FlowEnv(azurite, unique_name, tmp_path / "process-runs", env, cloud=cloud)
    yield flow
    for host in flow.hosts:
        host.stop()
    if backend == "docker":
        _remove_containers(flow.run_ids)
    runtime.reset()


def _remove_containers(run_ids: list[str]) -> None:
    client = docker.from_env()
    for container in client.containers.list(all=True, filters={"label": RUN_ID_LABEL}):
        if container.labels[RUN_ID_LABEL] in run_ids:
            container.remove(force=True)


@pytest.fixture
def start_host(flow_env: FlowEnv, monkeypatch: pytest.MonkeyPatch) -> Callable[..., LocalHost]:
    def start(
        *, clock: Clock | None = None, activity_overrides: dict[str, Callable[[str | None], str]] | None = None,
        queue_settings: QueueSettings | None = None, deliver_completions: bool = True, **settings: str,
    ) -> LocalHost:
        """`deliver_completions=False` holds the queue triggers back: the runner's messages stay in the queue
        unless the test delivers them (`flow_env.held_queue_triggers`)."""
        for key, value in settings.items():
            monkeypatch.setenv(key, value)
        runtime.reset()
        host = LocalHost(
            PROJECT_ROOT, clock=clock, poll_interval=0.1, activity_overrides=activity_overrides,
            queue_settings=queue_settings,
        )
        if not deliver_completions:
            flow_env.held_queue_triggers = [p for p in host.pollers if isinstance(p, QueueTriggerPoller)]
            host.pollers = [p for p in host.pollers if not isinstance(p, QueueTriggerPoller)]
        flow_env.hosts.append(host)
        return host.start()

    return start


def wait_for_end(flow: FlowEnv, run_id: str, *, timeout: float = 60.0,
                 step: Callable[[], None] | None = None) -> RunRecord:
    def ended() -> RunRecord | None:
        record = flow.record(run_id)
        return record if record is not None and record.status.value in TERMINAL else None

    return wait_for(ended, timeout=timeout, step=step)  # type: ignore[no-any-return]


def drive(host: LocalHost, clock: ManualClock, flow: FlowEnv, run_id: str, *, seconds_per_step: float) -> RunRecord:
    """Deliver triggers and move orchestration time forward until the run ends."""

    def step() -> None:
        host.poll_triggers_once()
        clock.advance(seconds_per_step)

    return wait_for_end(flow, run_id, step=step)


def scheduled_activities(host: LocalHost, run_id: str) -> list[str]:
    """The activities the instance's current generation scheduled, in order."""
    return [event["Name"] for event in host.engine.get_history(run_id) if event["EventType"] == 4]


HISTORIES = Path(__file__).resolve().parent.parent / "replay" / "histories"


def keep_history(host: LocalHost, run_id: str, name: str) -> None:
    """With RECORD_HISTORIES=1, save the run's final history for tests/replay (replay what ran)."""
    if os.environ.get("RECORD_HISTORIES") == "1":
        # The record is written by the orchestration's last activity; its end comes just after.
        host.engine.wait_for_status(run_id, {"Completed", "Failed", "Terminated"})
        HISTORIES.mkdir(parents=True, exist_ok=True)
        (HISTORIES / f"{name}.json").write_text(json.dumps(host.engine.get_history(run_id), indent=1) + "\n")


def runner_after(gate: Path) -> str:
    """RUNNER_COMMAND for the runner, held until `gate` exists: a job that is certainly mid-run meanwhile."""
    code = (
        f"import os, sys, time\nwhile not os.path.exists({str(gate)!r}): time.sleep(0.05)\n"
        "os.execv(sys.executable, [sys.executable, '-m', 'runner'])"
    )
    return json.dumps([sys.executable, "-c", code])


def api_get(host: LocalHost, path: str) -> requests.Response:
    return requests.get(f"{host.base_url}/api/{path}", timeout=10)


def api_post(host: LocalHost, path: str, **kwargs: object) -> requests.Response:
    return requests.post(f"{host.base_url}/api/{path}", timeout=30, **kwargs)  # type: ignore[arg-type]


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


class HostProcess:
    """The host as its own process (`python -m local_runner host`), as under `make up`: one a test can kill."""

    def __init__(self, env: dict[str, str], port: int, log: Path, *, spans_file: Path | None = None) -> None:
        """With `spans_file`, the host runs its own trace collector (no telemetry setting of the test's or this
        machine's applies) and it writes there; without, telemetry goes where `env` says, or nowhere: no spans
        into this checkout's .local/traces from tests."""
        self.port = port
        command = [sys.executable, "-m", "local_runner", "host", "--port", str(port)]
        full_env = {**os.environ, **env}
        if spans_file is not None:
            command += ["--spans-file", str(spans_file)]
            full_env = {name: value for name, value in full_env.items() if not name.startswith("OTEL_")}
        elif "OTEL_EXPORTER_OTLP_ENDPOINT" not in env:
            full_env["OTEL_SDK_DISABLED"] = "true"
        with log.open("ab") as output:
            self.process = subprocess.Popen(
                command, cwd=PROJECT_ROOT, env=full_env, stdout=output, stderr=subprocess.STDOUT,
            )
        wait_for(self.answers, timeout=60)

    def answers(self) -> bool:
        try:
            return requests.get(f"http://127.0.0.1:{self.port}/api/runs?limit=1", timeout=2).ok
        except requests.ConnectionError:
            assert self.process.poll() is None, "the host exited; see its log"
            return False

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(timeout=10)

    def stop(self) -> None:
        """As `make down` stops it: SIGTERM, then wait for it to exit."""
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=60)

    def history(self, run_id: str) -> list[dict[str, object]]:
        url = f"http://127.0.0.1:{self.port}/runtime/webhooks/durabletask/instances/{run_id}?showHistory=true"
        return list(requests.get(url, timeout=10).json()["historyEvents"])


@pytest.fixture
def hosts(flow_env: FlowEnv, tmp_path: Path) -> Iterator[list[HostProcess]]:
    started: list[HostProcess] = []
    yield started
    for host in started:
        if host.process.poll() is None:
            host.kill()
