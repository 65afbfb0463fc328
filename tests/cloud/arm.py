"""A loopback Azure Resource Manager for one Container Apps job, so tests drive the real ARM SDK.

`LoopbackArm` answers, over HTTPS on 127.0.0.1, the five calls our `aca` backend makes (Microsoft.App
api-version 2026-07-01, the one azure-mgmt-appcontainers 5.1.0 sends): Jobs - Get, Jobs - Start, Job
Execution - Get, Jobs Executions - List and Jobs - Stop Execution, with ARM's long-running-operation
headers, paging, error bodies and status codes. Executions really run: the server hands each one to a
`JobBackend` (in tests, the process backend), as Container Apps hands it to a replica.

    with LoopbackArm(executor, certfile=cert, keyfile=key) as arm:
        client = ContainerAppsAPIClient(credential, arm.subscription_id, base_url=arm.base_url,
                                        connection_verify=ca_file, polling_interval=0.05)
        client.jobs.begin_start(arm.resource_group, arm.job_name, template).result()

Every request is recorded (`arm.requests`, `arm.requests_for("start")`); `fail_next` makes the next calls
of an operation fail; `set_status` forces the status an execution reports. Error codes are ARM's where
ARM documents them; template validation answers 400 `InvalidParameter`, a code of this double.
"""

from __future__ import annotations

import contextlib
import copy
import http
import json
import logging
import re
import secrets
import socket
import ssl
import string
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Self, cast
from urllib.parse import parse_qsl, unquote, urlsplit

from pydantic import ValidationError

from orchestrations.backends import JobBackend
from orchestrations.contracts import ExecutionRef, JobSpec, JobState, JobStatus, TaskType

logger = logging.getLogger(__name__)

API_VERSION: Final = "2026-07-01"
OPERATIONS: Final = ("get_job", "start", "get_execution", "list_executions", "stop")
DEFAULT_SUBSCRIPTION_ID: Final = "00000000-0000-0000-0000-00000000a4a4"
DEFAULT_PRINCIPAL_ID: Final = "11111111-2222-3333-4444-555555555555"
# ARM's own RBAC action per operation, named in a 403 so the message reads as Azure's does.
ACTIONS: Final = {
    "get_job": "Microsoft.App/jobs/read",
    "start": "Microsoft.App/jobs/start/action",
    "get_execution": "Microsoft.App/jobs/executions/read",
    "list_executions": "Microsoft.App/jobs/executions/read",
    "stop": "Microsoft.App/jobs/stop/action",
}
# The keys of a JobExecutionContainer: what a start template (and an execution's template) carries.
EXECUTION_CONTAINER_KEYS: Final = ("name", "image", "command", "args", "env", "resources")
# Kept from the job's container: the start template cannot carry them (5.1.0 has no volumeMounts there).
JOB_ONLY_CONTAINER_KEYS: Final = ("volumeMounts", "probes")
OPERATION_RESULTS: Final = "containerappsjobOperationResults"
# A connection that sends nothing for this long is closed, so no handler thread waits forever.
IDLE_CONNECTION_SECONDS: Final = 60.0
_STATUS_FILTER = re.compile(r"^\s*properties/status\s+eq\s+'([A-Za-z]+)'\s*$")
_NAME_ALPHABET = string.ascii_lowercase + string.digits


def default_job_properties(job_name: str) -> dict[str, Any]:
    """The job's `properties` on the wire, secret values included: a manual job like ours in Azure."""
    return {
        "environmentId": "/subscriptions/x/resourceGroups/x/providers/Microsoft.App/managedEnvironments/loopback",
        "configuration": {
            "triggerType": "Manual",
            "replicaTimeout": 1800,
            "replicaRetryLimit": 0,
            "manualTriggerConfig": {"parallelism": 1, "replicaCompletionCount": 1},
            "secrets": [{"name": "storage-connection", "value": "DefaultEndpointsProtocol=https;AccountName=lb"}],
        },
        "template": {
            "containers": [
                {
                    "name": job_name,
                    "image": "pacta-runner:local",
                    "env": [
                        {"name": "RUNNER_STORAGE_CONNECTION_STRING", "secretRef": "storage-connection"},
                        {"name": "LOG_LEVEL", "value": "INFO"},
                    ],
                    "resources": {"cpu": 1.0, "memory": "2Gi"},
                    "volumeMounts": [{"volumeName": "scratch", "mountPath": "/scratch"}],
                    "probes": [],
                }
            ],
            "volumes": [{"name": "scratch", "storageType": "EmptyDir"}],
        },
    }


class ArmError(Exception):
    """An ARM error answer: status, `{"error": {"code", "message"}}` and extra headers."""

    def __init__(self, status: int, code: str, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the server saw it; `headers` has lower-case names, `body` is parsed JSON or None."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any
    at: float
    operation: str | None

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


@dataclass
class Execution:
    """An execution as ARM holds it: its template as given, and what the executor runs."""

    name: str
    id: str
    template: dict[str, Any]
    containers: list[dict[str, Any]]
    spec: JobSpec
    ref: ExecutionRef
    replica_name: str
    start_time: datetime
    end_time: datetime | None = None
    last_status: JobStatus | None = None
    status_error: str | None = None
    forced_status: str | None = None
    stop_requested: bool = False
    stop_thread: threading.Thread | None = None
    stop_error: str | None = None

    @property
    def has_ended(self) -> bool:
        return self.last_status is not None and self.last_status.has_ended


@dataclass
class _Operation:
    kind: str
    execution_name: str
    polls_left: int


@dataclass
class _Fault:
    status: int
    remaining: int
    code: str
    message: str | None
    headers: dict[str, str]


@dataclass
class _Response:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


class LoopbackArm:
    """ARM for one Container Apps job on 127.0.0.1, over HTTPS; bound at construction, served from `start()`."""

    def __init__(
        self,
        executor: JobBackend,
        *,
        certfile: str | Path,
        keyfile: str | Path,
        subscription_id: str = DEFAULT_SUBSCRIPTION_ID,
        resource_group: str = "rg-pacta-loopback",
        job_name: str = "pacta-runner",
        location: str = "westeurope",
        job_properties: Mapping[str, Any] | None = None,
        platform_env: Mapping[str, str] | None = None,
        token_validator: Callable[[str], bool] | None = None,
        retry_after_seconds: int = 0,
        provisioning_polls: int = 1,
        page_size: int = 20,
        principal_id: str = DEFAULT_PRINCIPAL_ID,
    ) -> None:
        if retry_after_seconds < 0:
            raise ValueError(f"retry_after_seconds must be >= 0, not {retry_after_seconds}")
        if provisioning_polls < 0:
            raise ValueError(f"provisioning_polls must be >= 0, not {provisioning_polls}")
        if page_size < 1:
            raise ValueError(f"page_size must be >= 1, not {page_size}")
        self.subscription_id = subscription_id
        self.resource_group = resource_group
        self.job_name = job_name
        self.location = location
        self.platform_env = dict(platform_env or {})
        self.retry_after_seconds = retry_after_seconds
        self.provisioning_polls = provisioning_polls
        self.page_size = page_size
        self.principal_id = principal_id
        self._executor = executor
        self._token_validator = token_validator or (lambda token: bool(token))
        self._job = copy.deepcopy(dict(job_properties or default_job_properties(job_name)))
        self._secrets = _job_secrets(self._job)
        for container in self._job_containers():
            self._resolve_env(container.get("env") or [])  # a job whose secretRefs dangle is a test bug
        self._lock = threading.Lock()
        self._requests: list[RecordedRequest] = []
        self._executions: dict[str, Execution] = {}
        self._operations: dict[str, _Operation] = {}
        self._faults: dict[str, _Fault] = {}
        self._serve_thread: threading.Thread | None = None
        self._closed = False
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(certfile), str(keyfile))
        self._server = _Server(self, context)
        self.base_url = f"https://127.0.0.1:{self._server.server_address[1]}"

    # --- life cycle ---

    def start(self) -> Self:
        """Serve requests from a background thread."""
        if self._closed:
            raise RuntimeError("this LoopbackArm is closed; create a new one")
        if self._serve_thread is None:
            self._serve_thread = threading.Thread(
                target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="loopback-arm", daemon=True
            )
            self._serve_thread.start()
        return self

    def close(self) -> None:
        """Stop serving, close every connection and join every thread; executions are left as they are."""
        if self._closed:
            return
        self._closed = True
        if self._serve_thread is not None:
            self._server.shutdown()
            self._serve_thread.join()
        self._server.close_connections()
        self._server.server_close()  # joins the handler threads
        with self._lock:
            stoppers = [e.stop_thread for e in self._executions.values() if e.stop_thread is not None]
        for thread in stoppers:
            thread.join()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # --- what tests read and control ---

    @property
    def job_id(self) -> str:
        return f"{self._resource_group_id}/providers/Microsoft.App/jobs/{self.job_name}"

    @property
    def job_properties(self) -> dict[str, Any]:
        """The job's definition on the wire (live: a test may redefine the job, as `az containerapp job update`)."""
        return self._job

    @property
    def requests(self) -> list[RecordedRequest]:
        """A snapshot of every request so far, in arrival order."""
        with self._lock:
            return list(self._requests)

    def requests_for(self, operation: str) -> list[RecordedRequest]:
        """The requests of one operation: one of OPERATIONS, or `start_result` / `stop_result` (the LRO polls)."""
        return [request for request in self.requests if request.operation == operation]

    @property
    def executions(self) -> dict[str, Execution]:
        """The executions by name (a snapshot of the mapping; the entries are live)."""
        with self._lock:
            return dict(self._executions)

    def fail_next(
        self,
        operation: str,
        status: int,
        *,
        times: int = 1,
        headers: Mapping[str, str] | None = None,
        code: str | None = None,
        message: str | None = None,
    ) -> None:
        """Answer the next `times` calls of `operation` with `status` and an ARM error body, doing nothing else.

        The default code follows the status (403 `AuthorizationFailed` with ARM's wording naming the action,
        429 `TooManyRequests`, 500 `InternalServerError`, ...). Add `headers={"Retry-After": "1"}` for
        throttling: azure-core retries a POST's 429 only when it carries Retry-After.
        """
        if operation not in OPERATIONS:
            raise ValueError(f"operation must be one of {', '.join(OPERATIONS)}, not {operation!r}")
        if status < 400:
            raise ValueError(f"status must be an error status (>= 400), not {status}")
        if times < 1:
            raise ValueError(f"times must be >= 1, not {times}")
        with self._lock:
            self._faults[operation] = _Fault(status, times, code or _default_code(status), message, dict(headers or {}))

    def set_status(self, name: str, status: str | None) -> None:
        """Make execution `name` report `status` (e.g. "Degraded", "Unknown"); None reports the real one again."""
        with self._lock:
            self._executions[name].forced_status = status

    # --- one request, from the handler ---

    def handle(self, method: str, target: str, headers: Mapping[str, str], raw_body: bytes) -> _Response:
        """Record the request, then answer it as ARM would: auth, api-version, route, existence, fault, work."""
        url = urlsplit(target)
        path = url.path
        query = dict(parse_qsl(url.query, keep_blank_values=True))
        parts = [unquote(part) for part in path.strip("/").split("/")]
        route = _route(method, parts)
        body = _parse_body(raw_body)
        with self._lock:
            label = route[0] if route else None
            if route and label == "operation_result":
                pending = self._operations.get(route[1]["operation_id"])
                label = f"{pending.kind}_result" if pending else label
            self._requests.append(
                RecordedRequest(
                    method, path, query, {k.lower(): v for k, v in headers.items()}, body, time.monotonic(), label
                )
            )
        try:
            self._authenticate(headers)
            _check_api_version(query)
            if route is None:
                raise ArmError(404, "NotFound", f"This loopback ARM does not implement {method} {path}.")
            operation, params = route
            self._check_scope(params)
            self._inject_fault(operation, path)
            return self._dispatch(operation, params, query, body)
        except ArmError as error:
            return _Response(error.status, {"error": {"code": error.code, "message": error.message}}, error.headers)

    def _authenticate(self, headers: Mapping[str, str]) -> None:
        value = next((v for k, v in headers.items() if k.lower() == "authorization"), None)
        if value is None:
            raise _unauthorized("AuthenticationFailed", "Authentication failed. The 'Authorization' header is missing.")
        scheme, _, token = value.partition(" ")
        if scheme.lower() != "bearer" or not token.strip() or not self._token_validator(token.strip()):
            raise _unauthorized("InvalidAuthenticationToken", "The access token is invalid.")

    def _check_scope(self, params: Mapping[str, str]) -> None:
        if params["subscription"].lower() != self.subscription_id.lower():
            message = f"The subscription '{params['subscription']}' could not be found."
            raise ArmError(404, "SubscriptionNotFound", message)
        if "resource_group" not in params:
            return
        if params["resource_group"].lower() != self.resource_group.lower():
            message = f"Resource group '{params['resource_group']}' could not be found."
            raise ArmError(404, "ResourceGroupNotFound", message)
        if params["job"].lower() != self.job_name.lower():
            raise self._not_found(f"Microsoft.App/jobs/{params['job']}")

    def _inject_fault(self, operation: str, path: str) -> None:
        with self._lock:
            fault = self._faults.get(operation)
            if fault is None:
                return
            fault.remaining -= 1
            if fault.remaining == 0:
                del self._faults[operation]
        message = fault.message
        if message is None and fault.status == 403:
            scope = re.sub(r"/(start|stop)$", "", path)
            message = (
                f"The client '{self.principal_id}' with object id '{self.principal_id}' does not have authorization "
                f"to perform action '{ACTIONS[operation]}' over scope '{scope}' or the scope is invalid. "
                "If access was recently granted, please refresh your credentials."
            )
        raise ArmError(fault.status, fault.code, message or f"Injected failure of {operation}.", fault.headers)

    def _dispatch(
        self, operation: str, params: Mapping[str, str], query: Mapping[str, str], body: Any
    ) -> _Response:
        if operation == "get_job":
            return _Response(200, self._job_json())
        if operation == "start":
            return self._start_execution(body)
        if operation == "get_execution":
            return _Response(200, self._execution_json(self._execution(params["execution"])))
        if operation == "list_executions":
            return self._list_executions(query)
        if operation == "stop":
            return self._stop_execution(self._execution(params["execution"]))
        return self._operation_result(params["operation_id"])

    # --- the operations ---

    def _job_json(self) -> dict[str, Any]:
        properties = copy.deepcopy(self._job)
        properties["provisioningState"] = "Succeeded"
        configuration = properties.setdefault("configuration", {})
        configuration["secrets"] = [{"name": secret["name"]} for secret in configuration.get("secrets", [])]
        return {
            "id": self.job_id,
            "name": self.job_name,
            "type": "Microsoft.App/jobs",
            "location": self.location,
            "properties": properties,
        }

    def _start_execution(self, body: Any) -> _Response:
        template = _start_template(body)
        containers = self._effective_containers(template)
        name = self._new_execution_name()
        spec = self._job_spec(name, containers[0])
        try:
            ref = self._executor.start(spec)
        except Exception as exc:
            logger.warning("The executor could not start %s: %s", name, exc)
            raise ArmError(500, "InternalServerError", f"The execution {name} could not start: {exc}") from exc
        if template is None:
            template = {"containers": [_execution_container(c) for c in self._job_containers()]}
        execution = Execution(
            name=name,
            id=f"{self.job_id}/executions/{name}",
            template=template,
            containers=containers,
            spec=spec,
            ref=ref,
            replica_name=f"{name}-{_random_suffix(7)}",
            start_time=datetime.now(UTC),
        )
        with self._lock:
            self._executions[name] = execution
        logger.info("Started execution %s as %s", name, ref)
        return self._accepted("start", name, self.provisioning_polls)

    def _list_executions(self, query: Mapping[str, str]) -> _Response:
        wanted = _status_filter(query.get("$filter"))
        with self._lock:
            executions = list(self._executions.values())
        documents = [self._execution_json(execution) for execution in executions]
        if wanted is not None:
            documents = [d for d in documents if d["properties"]["status"].lower() == wanted.lower()]
        skip = _skip_token(query.get("$skiptoken"))
        page: dict[str, Any] = {"value": documents[skip : skip + self.page_size]}
        if skip + self.page_size < len(documents):
            page["nextLink"] = (
                f"{self.base_url}{self.job_id}/executions?api-version={API_VERSION}&$skiptoken={skip + self.page_size}"
            )
            if wanted is not None:
                page["nextLink"] += f"&$filter=properties/status eq '{wanted}'"
        return _Response(200, page)

    def _stop_execution(self, execution: Execution) -> _Response:
        self._observe(execution)
        with self._lock:
            if not execution.has_ended and execution.stop_thread is None:
                execution.stop_requested = True
                execution.stop_thread = threading.Thread(
                    target=self._run_stop, args=(execution,), name=f"loopback-arm-stop-{execution.name}"
                )
                execution.stop_thread.start()
        return self._accepted("stop", execution.name, 0)

    def _run_stop(self, execution: Execution) -> None:
        try:
            status = self._executor.stop(execution.ref)
        except Exception as exc:
            logger.warning("The executor could not stop %s: %s", execution.name, exc)
            with self._lock:
                execution.stop_error = f"{type(exc).__name__}: {exc}"
            return
        self._record_status(execution, status)

    def _operation_result(self, operation_id: str) -> _Response:
        with self._lock:
            operation = self._operations.get(operation_id)
            execution = self._executions[operation.execution_name] if operation else None
        if operation is None or execution is None:
            raise ArmError(404, "ResourceNotFound", f"The operation '{operation_id}' was not found.")
        if operation.kind == "start":
            with self._lock:
                operation.polls_left -= 1
                provisioning = operation.polls_left >= 0
            if provisioning:
                return _Response(202, headers=self._poll_headers(operation_id))
            return _Response(200, {"name": execution.name, "id": execution.id})
        thread = execution.stop_thread
        if thread is not None and thread.is_alive():
            return _Response(202, headers=self._poll_headers(operation_id))
        if execution.stop_error is not None:
            # Not a 5xx: azure-core would retry a failed poll for minutes before the test saw the cause.
            raise ArmError(409, "JobExecutionStopFailed", f"Stopping {execution.name} failed: {execution.stop_error}")
        self._observe(execution)
        if not execution.has_ended:
            return _Response(202, headers=self._poll_headers(operation_id))
        return _Response(200)

    # --- executions ---

    def _execution(self, name: str) -> Execution:
        with self._lock:
            execution = self._executions.get(name)
        if execution is None:
            raise self._not_found(f"Microsoft.App/jobs/{self.job_name}/executions/{name}")
        return execution

    def _execution_json(self, execution: Execution) -> dict[str, Any]:
        self._observe(execution)
        status = self._status_text(execution)
        properties: dict[str, Any] = {
            "status": status,
            "startTime": _timestamp(execution.start_time),
            "template": copy.deepcopy(execution.template),
        }
        if execution.end_time is not None:
            properties["endTime"] = _timestamp(execution.end_time)
        if execution.last_status is not None:
            container: dict[str, Any] = {"name": execution.containers[0]["name"], "status": status}
            if execution.last_status.exit_code is not None:
                container["code"] = execution.last_status.exit_code
            if execution.last_status.detail is not None:
                container["additionalInformation"] = execution.last_status.detail
            properties["detailedStatus"] = {"replicas": [{"name": execution.replica_name, "containers": [container]}]}
        return {
            "id": execution.id,
            "name": execution.name,
            "type": "Microsoft.App/jobs/executions",
            "properties": properties,
        }

    def _observe(self, execution: Execution) -> None:
        """Ask the executor where the execution is, unless it has ended (then it never changes)."""
        if execution.has_ended:
            return
        try:
            status = self._executor.status(execution.ref)
        except Exception as exc:
            logger.warning("The executor could not say where %s is: %s", execution.name, exc)
            with self._lock:
                execution.status_error = f"{type(exc).__name__}: {exc}"
            return
        self._record_status(execution, status)

    def _record_status(self, execution: Execution, status: JobStatus) -> None:
        with self._lock:
            if execution.has_ended:
                return
            execution.status_error = None
            execution.last_status = status
            if status.has_ended:
                execution.end_time = datetime.now(UTC)

    @staticmethod
    def _status_text(execution: Execution) -> str:
        if execution.forced_status is not None:
            return execution.forced_status
        if execution.status_error is not None and execution.last_status is None:
            return "Unknown"
        if not execution.has_ended:
            return "Running"
        if execution.stop_requested:
            return "Stopped"
        assert execution.last_status is not None  # has_ended
        return "Succeeded" if execution.last_status.state is JobState.SUCCEEDED else "Failed"

    # --- building an execution from the job and the start template ---

    def _job_containers(self) -> list[dict[str, Any]]:
        containers: list[dict[str, Any]] = self._job.get("template", {}).get("containers") or []
        if not containers:
            raise ValueError("job_properties must define template.containers")
        return containers

    def _effective_containers(self, template: dict[str, Any] | None) -> list[dict[str, Any]]:
        """The start template's containers replace the job's; volume mounts and probes come from the job's.

        A template container must name its image (a stricter double hides fewer client bugs); one that omits
        `resources` gets the job's, an assumption: the REST reference does not say.
        """
        defined = {container["name"]: container for container in self._job_containers()}
        if template is None or not template.get("containers"):
            return copy.deepcopy(list(defined.values()))
        containers = []
        for given in template["containers"]:
            container = {key: copy.deepcopy(given[key]) for key in EXECUTION_CONTAINER_KEYS if key in given}
            base = defined.get(given["name"], {})
            for key in ("resources", *JOB_ONLY_CONTAINER_KEYS):
                if key not in container and key in base:
                    container[key] = copy.deepcopy(base[key])
            if not container.get("image"):
                message = f"Container '{given['name']}' of the start template has no image."
                raise ArmError(400, "InvalidParameter", message)
            containers.append(container)
        return containers

    def _job_spec(self, name: str, container: Mapping[str, Any]) -> JobSpec:
        env = self._resolve_env(container.get("env") or [])
        try:
            task_type = TaskType(env.get("TASK_TYPE", ""))
        except ValueError:
            task_type = TaskType.PARSE_PORTFOLIO
        resources = container.get("resources") or {}
        try:
            return JobSpec(
                run_id=name,
                task_type=task_type,
                image=container["image"],
                command=list(container.get("command") or []),
                args=list(container.get("args") or []),
                env={**env, **self.platform_env},
                cpu=float(resources.get("cpu", 1.0)),
                memory=str(resources.get("memory", "2Gi")),
                deadline_seconds=int(self._job.get("configuration", {}).get("replicaTimeout", 1800)),
            )
        except (ValidationError, TypeError, ValueError) as exc:
            raise ArmError(400, "InvalidParameter", f"The start template is invalid: {exc}") from exc

    def _resolve_env(self, entries: list[Mapping[str, Any]]) -> dict[str, str]:
        env = {}
        for entry in entries:
            if "secretRef" in entry:
                if entry["secretRef"] not in self._secrets:
                    message = f"Env var '{entry['name']}' refers to unknown secret '{entry['secretRef']}'."
                    raise ArmError(400, "InvalidParameter", message)
                env[entry["name"]] = self._secrets[entry["secretRef"]]
            else:
                env[entry["name"]] = str(entry.get("value", ""))
        return env

    def _new_execution_name(self) -> str:
        with self._lock:
            while True:
                name = f"{self.job_name}-{_random_suffix(5)}"
                if name not in self._executions:
                    return name

    # --- small pieces ---

    @property
    def _resource_group_id(self) -> str:
        return f"/subscriptions/{self.subscription_id}/resourceGroups/{self.resource_group}"

    def _not_found(self, resource: str) -> ArmError:
        return ArmError(
            404,
            "ResourceNotFound",
            f"The Resource '{resource}' under resource group '{self.resource_group}' was not found. "
            "For more details please go to https://aka.ms/ARMResourceNotFoundFix",
        )

    def _accepted(self, kind: str, execution_name: str, polls: int) -> _Response:
        operation_id = str(uuid.uuid4())
        with self._lock:
            self._operations[operation_id] = _Operation(kind, execution_name, polls)
        return _Response(202, headers=self._poll_headers(operation_id))

    def _poll_headers(self, operation_id: str) -> dict[str, str]:
        location = (
            f"{self.base_url}/subscriptions/{self.subscription_id}/providers/Microsoft.App/locations/"
            f"{self.location}/{OPERATION_RESULTS}/{operation_id}?api-version={API_VERSION}"
        )
        return {"Location": location, "Retry-After": str(self.retry_after_seconds)}


def _route(method: str, parts: list[str]) -> tuple[str, dict[str, str]] | None:
    """The operation a path names and its parameters; ARM matches names case-insensitively."""
    low = [part.lower() for part in parts]
    if len(parts) < 2 or low[0] != "subscriptions":
        return None
    params = {"subscription": parts[1]}
    in_location = low[2:5] == ["providers", "microsoft.app", "locations"]
    if len(parts) == 8 and in_location and low[6] == OPERATION_RESULTS.lower():
        return ("operation_result", {**params, "operation_id": parts[7]}) if method == "GET" else None
    if len(parts) < 8 or low[2] != "resourcegroups" or low[4:7] != ["providers", "microsoft.app", "jobs"]:
        return None
    params.update(resource_group=parts[3], job=parts[7])
    rest = low[8:]
    if method == "GET" and rest == []:
        return "get_job", params
    if method == "POST" and rest == ["start"]:
        return "start", params
    if method == "GET" and rest == ["executions"]:
        return "list_executions", params
    if method == "GET" and len(rest) == 2 and rest[0] == "executions":
        return "get_execution", {**params, "execution": parts[9]}
    if method == "POST" and len(rest) == 3 and rest[0] == "executions" and rest[2] == "stop":
        return "stop", {**params, "execution": parts[9]}
    return None


def _check_api_version(query: Mapping[str, str]) -> None:
    version = query.get("api-version")
    if version is None:
        message = "The api-version query parameter (?api-version=) is required for all requests."
        raise ArmError(400, "MissingApiVersionParameter", message)
    if version != API_VERSION:
        raise ArmError(
            400,
            "InvalidApiVersionParameter",
            f"The api-version '{version}' is invalid. The supported versions are '{API_VERSION}'.",
        )


def _unauthorized(code: str, message: str) -> ArmError:
    challenge = (
        'Bearer authorization_uri="https://login.microsoftonline.com/common", error="invalid_token", '
        f'error_description="{message}"'
    )
    return ArmError(401, code, message, {"WWW-Authenticate": challenge})


def _default_code(status: int) -> str:
    codes = {403: "AuthorizationFailed", 404: "ResourceNotFound", 409: "Conflict", 429: "TooManyRequests"}
    if status in codes:
        return codes[status]
    try:
        return http.HTTPStatus(status).phrase.replace(" ", "")
    except ValueError:
        return "Error"


def _parse_body(raw: bytes) -> Any:
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode("utf-8", "replace")


def _start_template(body: Any) -> dict[str, Any] | None:
    """The JobExecutionTemplate of a start request, checked for the shape ARM needs to act on it."""
    if body is None:
        return None
    containers = body.get("containers") if isinstance(body, dict) else None
    valid = isinstance(body, dict) and (containers is None or isinstance(containers, list))
    if valid and containers:
        valid = all(isinstance(c, dict) and isinstance(c.get("name"), str) for c in containers)
    if not valid:
        raise ArmError(400, "InvalidRequestContent", "The request content is not a valid JobExecutionTemplate.")
    return cast(dict[str, Any], body)


def _execution_container(container: Mapping[str, Any]) -> dict[str, Any]:
    return {key: copy.deepcopy(container[key]) for key in EXECUTION_CONTAINER_KEYS if key in container}


def _job_secrets(job: Mapping[str, Any]) -> dict[str, str]:
    return {s["name"]: str(s.get("value", "")) for s in job.get("configuration", {}).get("secrets", [])}


def _status_filter(text: str | None) -> str | None:
    if text is None:
        return None
    match = _STATUS_FILTER.match(text)
    if match is None:
        raise ArmError(400, "InvalidFilter", f"Only \"properties/status eq '<status>'\" is supported, not {text!r}.")
    return match.group(1)


def _skip_token(text: str | None) -> int:
    if text is None:
        return 0
    if not text.isdigit():
        raise ArmError(400, "InvalidSkipToken", f"The skip token {text!r} is invalid.")
    return int(text)


def _random_suffix(length: int) -> str:
    return "".join(secrets.choice(_NAME_ALPHABET) for _ in range(length))


def _timestamp(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds" if moment.microsecond == 0 else "microseconds")


class _Server(ThreadingHTTPServer):
    """The HTTPS server; tracks open connections so `close` can end keep-alive ones and join their threads."""

    daemon_threads = False
    block_on_close = True

    def __init__(self, arm: LoopbackArm, context: ssl.SSLContext) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        # The handshake happens on the handler thread's first read, so a slow client cannot stall accept().
        self.socket = context.wrap_socket(self.socket, server_side=True, do_handshake_on_connect=False)
        self.arm = arm
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()

    @contextlib.contextmanager
    def tracking(self, connection: socket.socket) -> Iterator[None]:
        with self._connections_lock:
            self._connections.add(connection)
        try:
            yield
        finally:
            with self._connections_lock:
                self._connections.discard(connection)

    def close_connections(self) -> None:
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # TLS handshakes refused by a client and connections cut at close() end here; they are not failures.
        logger.debug("Connection from %s ended with an error", client_address, exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    """Reads one HTTP request, lets `LoopbackArm.handle` answer it, writes the answer."""

    protocol_version = "HTTP/1.1"
    timeout = IDLE_CONNECTION_SECONDS

    def handle(self) -> None:
        server = cast(_Server, self.server)
        with server.tracking(self.connection):
            super().handle()

    def do_GET(self) -> None:
        self._answer()

    def do_POST(self) -> None:
        self._answer()

    def do_PUT(self) -> None:
        self._answer()

    def do_PATCH(self) -> None:
        self._answer()

    def do_DELETE(self) -> None:
        self._answer()

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw_body = self.rfile.read(length) if length else b""
        arm = cast(_Server, self.server).arm
        response = arm.handle(self.command, self.path, dict(self.headers.items()), raw_body)
        data = b"" if response.body is None else json.dumps(response.body).encode()
        self.send_response(response.status)
        self.send_header("x-ms-request-id", str(uuid.uuid4()))
        self.send_header(
            "x-ms-correlation-request-id", self.headers.get("x-ms-correlation-request-id") or str(uuid.uuid4())
        )
        if data:
            self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s " + format, self.address_string(), *args)
