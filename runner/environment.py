"""The runner's environment, read once at start-up into two validated settings objects.

`RunnerSettings` is what the runner needs to report at all (run id, token, queue, output prefix,
storage); when it is broken, no completion message can be sent and the runner only prints why.
`TaskSettings` is the task's part (PACTA's `TASK_ID`, `TASK_TYPE`, `<TYPE>_REQUEST`, and the
`RUNNER_INPUT_SCOPES` the request's inputs must lie in); when it is broken, the runner still reports
`invalid_environment` through the queue. Every error names the variable, and none repeats a value,
so a secret cannot leak through an error message.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Self, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from orchestrations.contracts import (
    PACTA_ARTIFACT_CONTAINERS,
    PACTA_BENCHMARKS_DIR,
    PACTA_DATA_DIR,
    PACTA_TASK_COMMANDS,
    RUN_ID_PATTERN,
    RunnerEnv,
    TaskType,
    parse_blob_uri,
)
from runner.errors import InvalidEnvironmentError

TASK_ID_VAR = "TASK_ID"
TASK_TYPE_VAR = "TASK_TYPE"
# How the runner's console lines look: `json` or `text` (the app's LOG_FORMAT; orchestrations/job_spec.py sets it).
LOG_FORMAT_VAR = "RUNNER_LOG_FORMAT"
LOG_FORMATS = ("json", "text")

# Container and queue names share one rule; pydantic's own `pattern` has no look-ahead.
_STORAGE_NAME_PATTERN = re.compile(r"^[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){2,62}$")
_ACCOUNT_KEY_PATTERN = re.compile(r"AccountKey=([^;]+)", re.IGNORECASE)

_Model = TypeVar("_Model", bound=BaseModel)


class OutputPrefix(BaseModel):
    """`az://<container>/<path>/`: where the run's outputs, log and result document go."""

    model_config = ConfigDict(frozen=True)

    container: str
    path: str = Field(description="Blob name prefix inside the container; empty or ending in `/`.")

    @classmethod
    def parse(cls, uri: str) -> OutputPrefix:
        scheme = "az://"
        if not uri.startswith(scheme):
            raise ValueError(f"must start with {scheme!r}, e.g. 'az://runs/<run_id>/'")
        container, _, path = uri[len(scheme) :].partition("/")
        if not _STORAGE_NAME_PATTERN.match(container):
            raise ValueError(f"container {container!r} is not a valid blob container name")
        if path and not path.endswith("/"):
            path += "/"
        return cls(container=container, path=path)

    def blob_name(self, relative: str) -> str:
        return f"{self.path}{relative}"

    def uri(self, relative: str) -> str:
        return f"az://{self.container}/{self.blob_name(relative)}"

    def __str__(self) -> str:
        return f"az://{self.container}/{self.path}"


class RunnerSettings(BaseModel):
    """Where the runner works and reports: our `RUNNER_*` variables (contracts.RunnerEnv)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    run_id: str = Field(
        validation_alias=RunnerEnv.RUN_ID.value,
        pattern=RUN_ID_PATTERN,
        description="The run's id (the form the completion message must have).",
    )
    attempt: int = Field(
        default=1,
        ge=1,
        validation_alias=RunnerEnv.ATTEMPT.value,
        description="The run's start attempt, which the callback token belongs to.",
    )
    callback_token: SecretStr = Field(
        validation_alias=RunnerEnv.CALLBACK_TOKEN.value,
        min_length=16,
        description="Authenticates the completion message; never logged.",
    )
    events_queue: str = Field(
        validation_alias=RunnerEnv.EVENTS_QUEUE.value,
        description="Storage queue that receives the completion message.",
    )
    output_prefix: OutputPrefix = Field(
        validation_alias=RunnerEnv.OUTPUT_PREFIX.value,
        description="`az://<container>/<path>/` for outputs, `runner.log` and `result.json`.",
    )
    storage_connection_string: SecretStr | None = Field(
        default=None,
        validation_alias=RunnerEnv.STORAGE_CONNECTION_STRING.value,
        description="Storage connection string (Azurite, locally); never logged.",
    )
    blob_account_url: str | None = Field(
        default=None,
        validation_alias=RunnerEnv.BLOB_ACCOUNT_URL.value,
        description="Blob endpoint used with DefaultAzureCredential (managed identity, in Azure).",
    )
    queue_account_url: str | None = Field(
        default=None,
        validation_alias=RunnerEnv.QUEUE_ACCOUNT_URL.value,
        description="Queue endpoint used with DefaultAzureCredential (managed identity, in Azure).",
    )
    work_dir: Path | None = Field(
        default=None,
        validation_alias=RunnerEnv.WORK_DIR.value,
        description="Working directory (input/, output/, runner.log); unset: a fresh temp dir.",
    )

    @field_validator("events_queue")
    @classmethod
    def _valid_queue_name(cls, name: str) -> str:
        if not _STORAGE_NAME_PATTERN.match(name):
            raise ValueError(
                "is not a valid queue name (3-63 lowercase letters, digits, single hyphens)"
            )
        return name

    @field_validator("output_prefix", mode="before")
    @classmethod
    def _parse_prefix(cls, value: Any) -> Any:
        return OutputPrefix.parse(value) if isinstance(value, str) else value

    @field_validator(
        "attempt",
        "storage_connection_string",
        "blob_account_url",
        "queue_account_url",
        "work_dir",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        return None if value == "" else value

    @model_validator(mode="after")
    def _one_way_to_storage(self) -> Self:
        urls = (self.blob_account_url, self.queue_account_url)
        if self.storage_connection_string is not None:
            if any(urls):
                raise ValueError(
                    f"set either {RunnerEnv.STORAGE_CONNECTION_STRING} or "
                    f"{RunnerEnv.BLOB_ACCOUNT_URL} and {RunnerEnv.QUEUE_ACCOUNT_URL}, not both"
                )
        elif not all(urls):
            raise ValueError(
                f"storage is not configured: set {RunnerEnv.STORAGE_CONNECTION_STRING} (locally) "
                f"or both {RunnerEnv.BLOB_ACCOUNT_URL} and {RunnerEnv.QUEUE_ACCOUNT_URL} "
                "(managed identity)"
            )
        return self

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> RunnerSettings:
        """Validate the `RUNNER_*` variables; raise InvalidEnvironmentError naming each bad one."""
        names = [member.value for member in RunnerEnv]
        return _validate(cls, {name: environ[name] for name in names if name in environ})

    def secrets(self) -> list[str]:
        """Values that must never reach a log: the token, the connection string and its key."""
        values = [self.callback_token.get_secret_value()]
        if self.storage_connection_string is not None:
            connection_string = self.storage_connection_string.get_secret_value()
            values.append(connection_string)
            values.extend(_ACCOUNT_KEY_PATTERN.findall(connection_string))
        return values


class TaskSettings(BaseModel):
    """The task: PACTA's `TASK_ID`, `TASK_TYPE` and `<TYPE>_REQUEST` JSON, and where its inputs may be."""

    model_config = ConfigDict(frozen=True)

    task_id: str = Field(validation_alias=TASK_ID_VAR, min_length=1, description="PACTA's task id.")
    task_type: TaskType = Field(validation_alias=TASK_TYPE_VAR, description="PACTA's task type.")
    request: dict[str, Any] = Field(
        description="The `<TYPE>_REQUEST` document (Go field names); `BlobURIs` lists the inputs."
    )
    input_scopes: list[str] = Field(
        validation_alias=RunnerEnv.INPUT_SCOPES.value,
        description="`az://<container>/` or `az://<container>/<prefix>/` the inputs must lie in (a JSON list).",
    )

    @field_validator("input_scopes", mode="before")
    @classmethod
    def _parse_scopes(cls, value: Any) -> Any:
        value = _from_json(value)
        example = 'e.g. ["az://uploads/", "az://parsedportfolios/"]'
        if not isinstance(value, list) or not value or not all(isinstance(scope, str) for scope in value):
            raise ValueError(f"must be a non-empty JSON list of 'az://<container>/[<prefix>/]' strings, {example}")
        problems = [(number, _scope_problem(scope)) for number, scope in enumerate(value, 1)]
        if any(problem for _, problem in problems):
            listed = "; ".join(f"item {number} {problem}" for number, problem in problems if problem)
            raise ValueError(f"is not a list of valid scopes: {listed} ({example})")
        return value

    @field_validator("request", mode="before")
    @classmethod
    def _parse_request(cls, value: Any) -> Any:
        return _from_json(value)

    @field_validator("request")
    @classmethod
    def _has_blob_uris(cls, request: dict[str, Any]) -> dict[str, Any]:
        uris = request.get("BlobURIs")
        if not isinstance(uris, list) or not uris or not all(isinstance(uri, str) for uri in uris):
            raise ValueError(
                "must have `BlobURIs`, a non-empty list of 'az://<container>/<path>' strings"
            )
        for uri in uris:
            parse_blob_uri(uri)
        return request

    @property
    def blob_uris(self) -> list[str]:
        return list(self.request["BlobURIs"])

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> TaskSettings:
        """Validate PACTA's variables; the request variable's name follows from `TASK_TYPE`."""
        raw_type = environ.get(TASK_TYPE_VAR, "")
        try:
            task_type = TaskType(raw_type)
        except ValueError:
            allowed = ", ".join(member.value for member in TaskType)
            problem = "is not set" if not raw_type else f"is {raw_type!r}, not one of: {allowed}"
            raise InvalidEnvironmentError(f"{TASK_TYPE_VAR} {problem}") from None
        request_var = task_type.request_env_var
        data: dict[str, Any] = {
            name: environ[name]
            for name in (TASK_ID_VAR, TASK_TYPE_VAR, RunnerEnv.INPUT_SCOPES.value)
            if name in environ
        }
        if request_var in environ:
            data["request"] = environ[request_var]
        return _validate(cls, data, renames={"request": request_var})


class AnalysisSettings(BaseModel):
    """What a create_* task needs beyond PACTA's variables (job_spec sets them from the app
    settings); each has PACTA's value as its default, so the runner also runs as PACTA's did."""

    model_config = ConfigDict(frozen=True)

    command: list[str] = Field(
        validation_alias=RunnerEnv.TASK_COMMAND.value,
        description="The PACTA command, a JSON list; the input JSON is appended as the last argument.",
    )
    artifacts_container: str = Field(
        validation_alias=RunnerEnv.ARTIFACTS_CONTAINER.value,
        description="Container of the artifacts: `<analysis id>/<output dir>/<path>`.",
    )
    benchmarks_dir: str = Field(
        validation_alias=RunnerEnv.BENCHMARKS_DIR.value, min_length=1, description="BENCHMARKS_DIR."
    )
    pacta_data_dir: str = Field(
        validation_alias=RunnerEnv.PACTA_DATA_DIR.value, min_length=1, description="PACTA_DATA_DIR."
    )

    @field_validator("command", mode="before")
    @classmethod
    def _parse_command(cls, value: Any) -> Any:
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                value = None
        if not isinstance(value, list) or not value or not all(isinstance(p, str) and p for p in value):
            raise ValueError(
                'is not a JSON list of non-empty strings, e.g. ["Rscript", "--vanilla", "run_pacta.R"]'
            )
        return value

    @field_validator("artifacts_container")
    @classmethod
    def _valid_container_name(cls, name: str) -> str:
        if not _STORAGE_NAME_PATTERN.match(name):
            raise ValueError("is not a valid blob container name")
        return name

    @classmethod
    def from_environ(cls, environ: Mapping[str, str], task_type: TaskType) -> AnalysisSettings:
        """Read the `RUNNER_*` variables of a create_* task; unset or empty ones take PACTA's value."""
        defaults: dict[str, Any] = {
            RunnerEnv.TASK_COMMAND.value: list(PACTA_TASK_COMMANDS[task_type]),
            RunnerEnv.ARTIFACTS_CONTAINER.value: PACTA_ARTIFACT_CONTAINERS[task_type],
            RunnerEnv.BENCHMARKS_DIR.value: PACTA_BENCHMARKS_DIR,
            RunnerEnv.PACTA_DATA_DIR.value: PACTA_DATA_DIR,
        }
        data = {name: environ.get(name) or default for name, default in defaults.items()}
        return _validate(cls, data)


def log_format_from_environ(environ: Mapping[str, str]) -> tuple[str, str | None]:
    """`RUNNER_LOG_FORMAT` (`json` or `text`; unset: `text`, as a runner started by hand printed), and a
    problem to log when the value is neither: the console's look is no reason to fail a run."""
    value = environ.get(LOG_FORMAT_VAR, "").strip().lower()
    if not value:
        return "text", None
    if value not in LOG_FORMATS:
        return "text", f"{LOG_FORMAT_VAR} is not one of {', '.join(LOG_FORMATS)}; logging text"
    return value, None


def _from_json(value: Any) -> Any:
    """A variable's JSON text, parsed; ValueError saying where it stops being JSON (never repeating it)."""
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except json.JSONDecodeError as error:
        raise ValueError(f"is not JSON ({error.msg} at character {error.pos})") from None


def _scope_problem(scope: str) -> str | None:
    """What is wrong with a scope (never repeating it), or None for `az://<container>/` or
    `az://<container>/<prefix>/` without empty, `.` or `..` segments or backslashes."""
    container, slash, prefix = scope.removeprefix("az://").partition("/")
    if not scope.startswith("az://") or not slash:
        return "is not 'az://<container>/' or 'az://<container>/<prefix>/'"
    if not _STORAGE_NAME_PATTERN.match(container):
        return "does not name a valid blob container"
    segments = prefix.split("/")[:-1]  # a prefix ends in "/": the last part is empty
    if (prefix and not prefix.endswith("/")) or "\\" in prefix or any(part in ("", ".", "..") for part in segments):
        return "has a prefix that is not whole path segments ending in '/' (no empty, '.' or '..' segment, no '\\')"
    return None


def _validate(
    model: type[_Model], data: dict[str, Any], *, renames: Mapping[str, str] | None = None
) -> _Model:
    """Validate `data` into `model`; pydantic's errors become one message naming the variables."""
    try:
        return model.model_validate(data)
    except ValidationError as error:
        problems = []
        for detail in error.errors(include_input=False, include_url=False):
            location = str(detail["loc"][0]) if detail["loc"] else ""
            name = (renames or {}).get(location, location)
            message = str(detail["msg"]).removeprefix("Value error, ")
            if detail["type"] == "missing":
                message = "is not set"
            problems.append(f"{name} {message}" if name else message)
        raise InvalidEnvironmentError("; ".join(problems)) from None
