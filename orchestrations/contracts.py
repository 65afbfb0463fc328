"""The contracts: every message, record and activity payload that crosses a boundary.

One module, so the trigger, the orchestrator, the activities, the backends and the runner inside the
container all agree on one shape. Each model carries `schema_version`; a payload written by a newer
schema fails validation loudly instead of being half-read. The runner image imports this module alone
(with pydantic), so it must not import anything else from the project.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import unicodedata
from collections.abc import Sequence
from datetime import date, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any, Final, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

SCHEMA_VERSION: Final = 1

# Container Apps and PACTA's server both refuse larger request variables (pacta-contract.md 1.2).
MAX_REQUEST_ENV_BYTES = 128 * 1024
# A storage queue message is at most 64 KiB; the completion message must fit with room to spare.
MAX_RUNNER_EVENT_BYTES = 48 * 1024
# What a storage queue message cannot carry: its text travels in XML 1.0, which has no place for surrogates or
# U+FFFE and U+FFFF (Azure refuses Put Message with 400 InvalidXmlDocument; Azurite stores it, then fails every
# Get Messages whose batch holds it with 500). JSON already escapes the control characters.
NOT_IN_QUEUE_MESSAGES = re.compile(r"[\ud800-\udfff\ufffe\uffff]")
# The longest durable timer or retry interval a run may ask for. The SDK 1.7 turns a timer of more than
# 6 days into a LongTimerTask, which it cannot cancel (azure-functions-durable-python#573), so a cancelled
# one holds the instance until it fires; the extension refuses retry intervals of more than 6 days on
# Azure Storage (DurableOrchestrationContext.CallDurableTaskFunctionAsync, ValidateDelayTime).
MAX_TIMER_SECONDS = 6 * 24 * 3600 - 60
# The deadline is never one timer (each check's timer is the smaller of the interval and the time left),
# but a run that long is no analysis job; the same bound keeps a single number in the docs.
MAX_DEADLINE_SECONDS = MAX_TIMER_SECONDS

RUNNER_COMPLETED_EVENT = "RunnerCompleted"
# The external event that asks `run_task` to stop its job and end the run `cancelled`.
CANCEL_REQUESTED_EVENT = "CancelRequested"
# The external event that tells a queued `run_task` it holds a slot under MAX_CONCURRENT_RUNS.
SLOT_GRANTED_EVENT = "SlotGranted"
# How far down the line a look counts the run's place (`SlotAnswer.position`; the status API counts them all).
# Every waiter looks every SLOT_POLL_SECONDS, and counting reads a row per place: counting all the way made the
# line's reads grow with the square of its length, past Table storage's 2,000 entities/s target for one partition
# at about 500 waiters (docs/concurrency.md).
POSITION_LOOKAHEAD: Final = 50
# Bounds of what a cancel request may say about itself (it is stored in the run record).
MAX_CANCEL_REASON_CHARS = 500
MAX_CANCELLED_BY_CHARS = 200
# Every run id has this form (intake.derive_run_id); anything else names no run.
RUN_ID_PATTERN: Final = r"^[a-z0-9][a-z0-9-]{7,63}$"
# A W3C traceparent (version 00): the run's trace, carried by every payload of the run (orchestrations/telemetry.py).
TRACEPARENT_PATTERN: Final = r"^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$"


def traceparent_field() -> Any:
    """The run's trace context; None in the histories of runs started before tracing (they replay unchanged)."""
    return Field(default=None, pattern=TRACEPARENT_PATTERN, description="The run's trace (W3C traceparent).")


class TaskType(StrEnum):
    """The PACTA task types; the value is PACTA's `TASK_TYPE`."""

    PARSE_PORTFOLIO = "parse_portfolio"
    CREATE_REPORT = "create_report"
    CREATE_AUDIT = "create_audit"
    CREATE_DASHBOARD = "create_dashboard"

    @property
    def request_env_var(self) -> str:
        """PACTA's environment variable carrying the request JSON, e.g. `PARSE_PORTFOLIO_REQUEST`."""
        return f"{self.value.upper()}_REQUEST"

    @property
    def upload_suffix(self) -> str:
        """The file suffix an upload of this task type must have."""
        return ".csv" if self is TaskType.PARSE_PORTFOLIO else ".json"


class RunStatus(StrEnum):
    """Where a run is in its life. Terminal statuses never change again."""

    QUEUED = "queued"
    STARTING = "starting"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    CANCELLED = "cancelled"
    REJECTED = "rejected"

    @property
    def is_terminal(self) -> bool:
        return self in _TERMINAL_STATUSES


_TERMINAL_STATUSES = frozenset(
    {RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.TIMED_OUT, RunStatus.CANCELLED, RunStatus.REJECTED}
)


class Contract(BaseModel):
    """Base of every contract: strict about unknown fields, versioned."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_enum_values=False)

    schema_version: Literal[1] = Field(default=SCHEMA_VERSION, description="Version of this shape.")

    def to_payload(self) -> dict[str, Any]:
        """The JSON-ready dict that crosses the boundary (activity input, queue body, table)."""
        return self.model_dump(mode="json")

    @classmethod
    def from_payload(cls, payload: Any) -> Self:
        """Validate a dict or JSON text that came across a boundary."""
        if isinstance(payload, str | bytes):
            return cls.model_validate_json(payload)
        return cls.model_validate(payload)


class RunError(Contract):
    """Why a run did not succeed: a stable code for machines, a message for people."""

    code: str = Field(description="Stable, snake_case cause, e.g. `runner_failed`, `deadline_exceeded`.")
    message: str = Field(description="What happened and what to do next, for a person.")


class CancelBody(BaseModel):
    """The optional JSON body of `POST /api/runs/{run_id}/cancel`: who asks, and why."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    reason: str | None = Field(
        default=None, min_length=1, max_length=MAX_CANCEL_REASON_CHARS, description="Why the run is cancelled."
    )
    by: str | None = Field(
        default=None, min_length=1, max_length=MAX_CANCELLED_BY_CHARS,
        description="Who cancels it (a user name or a service); the API cannot tell from a function key.",
    )

    @field_validator("reason", "by")
    @classmethod
    def _printable(cls, value: str | None) -> str | None:
        if value is not None and any(unicodedata.category(char) == "Cc" for char in value):
            raise ValueError("must not contain control characters (line breaks included)")
        return value


class Cancellation(Contract):
    """A cancel request: the `CancelRequested` event's payload, and the record's `cancellation`.

    `requested_at` is taken where the request came in (the HTTP function), never in the orchestrator.
    """

    requested_by: str | None = Field(default=None, max_length=MAX_CANCELLED_BY_CHARS)
    reason: str | None = Field(default=None, max_length=MAX_CANCEL_REASON_CHARS)
    requested_at: datetime

    def to_error(self, how: str) -> RunError:
        """The cancelled run's error: `Cancelled by alice at 2026-...: wrong portfolio; <how>.`"""
        by = self.requested_by or "an unnamed caller"
        why = f": {self.reason}" if self.reason else " (no reason given)"
        return RunError(code="cancelled", message=f"Cancelled by {by} at {self.requested_at.isoformat()}{why}; {how}.")


class RetryPolicy(Contract):
    """Retries of transient activity failures (storage hiccups, a backend API's 5xx)."""

    first_interval_seconds: float = Field(
        default=2.0, gt=0, le=MAX_TIMER_SECONDS, description="Delay before the 2nd attempt."
    )
    backoff_coefficient: float = Field(default=2.0, ge=1, description="Multiplier per further attempt.")
    max_interval_seconds: float = Field(
        default=60.0, gt=0, le=MAX_TIMER_SECONDS, description="Upper bound of one delay."
    )
    max_attempts: int = Field(default=4, ge=1, le=20, description="Attempts in all, the first included.")


class RunPolicy(Contract):
    """The knobs of one run, fixed when the run is requested so replays see the same values."""

    deadline_seconds: int = Field(
        default=3600, gt=0, le=MAX_DEADLINE_SECONDS, description="Wall time a job may run before it is stopped."
    )
    check_interval_seconds: int = Field(
        default=60, gt=0, le=MAX_TIMER_SECONDS,
        description="How often the orchestrator asks the backend whether the job still runs.",
    )
    completion_grace_seconds: int = Field(
        default=30, ge=0, le=MAX_TIMER_SECONDS,
        description="How long to wait for the completion message once the job has ended.",
    )
    checks_per_generation: int = Field(
        default=5, ge=1, description="Status checks before the orchestration continues as new (bounds history)."
    )
    activity_retry: RetryPolicy = Field(default_factory=RetryPolicy)
    record_retry: RetryPolicy = Field(
        default_factory=lambda: RetryPolicy(max_attempts=20),
        description="Retries of recording the outcome: long (about 15 minutes), so that a storage outage at the "
        "end of a run does not leave it `running`.",
    )
    slot_poll_seconds: int | None = Field(
        default=None, gt=0, le=MAX_TIMER_SECONDS,
        description="Set: the run waits for a slot under MAX_CONCURRENT_RUNS (queued), looking again this often "
        "besides being told. None: a run requested before the cap existed, which starts at once as its history "
        "expects.",
    )
    slot_polls_per_generation: int = Field(
        default=6, ge=1,
        description="Looks for a slot before a queued orchestration continues as new (about 8 history events each).",
    )
    start_counts_as_check: bool = Field(
        default=False,
        description="True: the generation that starts the job makes one status check fewer (its look for a slot "
        "and the start take the place of one), and a run that waited for its slot continues as new before it "
        "starts, so that no generation outgrows the others. False: a run requested before that, whose history "
        "follows the earlier order.",
    )
    start_confirms_slot: bool = Field(
        default=False,
        description="True: a SlotGranted notice (or a look that finds the slot) leads straight to start_job, which "
        "starts the job only while the run holds its slot in storage, and otherwise starts nothing and the run "
        "waits again. False: a run requested before that, which confirms its slot with one more acquire_slot "
        "look first, as its history expects.",
    )


class SourceBlob(Contract):
    """The uploaded blob that started a run."""

    container: str
    name: str = Field(description="Blob name inside the container, `<task_type>/<file>`.")
    etag: str
    size: int = Field(ge=0)
    uri: str = Field(description="`az://<container>/<name>`, PACTA's blob URI scheme.")


class RunRequest(Contract):
    """What the blob trigger hands the orchestrator: one task to run, fully described."""

    run_id: str = Field(pattern=RUN_ID_PATTERN)
    task_type: TaskType
    inputs: list[str] = Field(min_length=1, description="Input blob URIs (`az://container/path`).")
    source: SourceBlob
    requested_at: datetime
    request_document: dict[str, Any] | None = Field(
        default=None, description="The uploaded request JSON for create_* tasks; None for parse_portfolio."
    )
    policy: RunPolicy = Field(default_factory=RunPolicy)
    rerun_of: str | None = Field(
        default=None, pattern=RUN_ID_PATTERN, description="The run this one reruns (same source blob version)."
    )
    traceparent: str | None = traceparent_field()

    def pacta_request(self) -> dict[str, Any]:
        """The `<TYPE>_REQUEST` document in PACTA's shape (Go field names, pacta-contract.md 1.3)."""
        if self.task_type is TaskType.PARSE_PORTFOLIO:
            return {"IncompleteUploadIDs": [], "BlobURIs": list(self.inputs)}
        document = dict(self.request_document or {})
        document.setdefault("BlobURIs", list(self.inputs))
        return document


class RunTaskInput(Contract):
    """The orchestrator's input: the request, plus the watch state when it continues as new."""

    request: RunRequest
    watch: WatchState | None = None
    told_of_slot: bool = Field(
        default=False,
        description="Continued as new once told of a slot (`start_confirms_slot`): start_job, which confirms it, "
        "comes first.",
    )


class WatchState(Contract):
    """What the orchestrator carries across `continue_as_new` while it watches a job (no secret: it is
    in the history)."""

    attempt: int = Field(ge=1, description="The start attempt whose runner may report.")
    execution_ref: str
    started_at: datetime
    deadline: datetime
    generation: int = Field(ge=1)


class JobSpec(Contract):
    """Everything a backend needs to start one execution of the runner image."""

    run_id: str
    task_type: TaskType
    image: str
    command: list[str] = Field(default_factory=list)
    args: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(repr=False, description="Environment; carries the callback token.")
    cpu: float = Field(default=1.0, gt=0)
    memory: str = Field(default="2Gi", pattern=r"^\d+(\.\d+)?(Mi|Gi)$")
    deadline_seconds: int = Field(gt=0, le=MAX_DEADLINE_SECONDS)

    @field_validator("env")
    @classmethod
    def _request_fits(cls, env: dict[str, str]) -> dict[str, str]:
        for name, value in env.items():
            if name.endswith("_REQUEST") and len(value.encode()) > MAX_REQUEST_ENV_BYTES:
                raise ValueError(
                    f"{name} is {len(value.encode())} bytes; the limit is {MAX_REQUEST_ENV_BYTES} bytes"
                )
        return env

    @property
    def memory_bytes(self) -> int:
        number, unit = self.memory[:-2], self.memory[-2:]
        return int(float(number) * (1024**3 if unit == "Gi" else 1024**2))


class ExecutionRef(Contract):
    """Finds an execution again: which backend, and its name there (`process:<run>`, `aca:<exec>`)."""

    backend: str = Field(pattern=r"^[a-z]+$")
    name: str = Field(min_length=1)

    def __str__(self) -> str:
        return f"{self.backend}:{self.name}"

    @classmethod
    def parse(cls, text: str) -> ExecutionRef:
        backend, sep, name = text.partition(":")
        if not sep or not backend or not name:
            raise ValueError(f"execution ref {text!r} is not of the form '<backend>:<name>'")
        return cls(backend=backend, name=name)


class JobState(StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class JobStatus(Contract):
    """A backend's answer to `status(ref)`."""

    state: JobState
    exit_code: int | None = None
    detail: str | None = Field(default=None, description="The backend's reason, e.g. `OOMKilled`.")
    log_tail: str | None = Field(default=None, description="The last lines the job printed.")

    @property
    def has_ended(self) -> bool:
        return self.state is not JobState.RUNNING


class RunnerEventStatus(StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class RunnerEvent(Contract):
    """The completion message the runner puts on the `runner-events` queue (under 64 KiB)."""

    # The form is checked before anything is looked up: a flood of junk must cost no storage calls.
    run_id: str = Field(pattern=RUN_ID_PATTERN)
    attempt: int = Field(default=1, ge=1, description="The start attempt the runner belongs to.")
    token: str = Field(repr=False, min_length=16, description="The callback token of the run's attempt.")
    status: RunnerEventStatus
    exit_code: int
    error: RunError | None = None
    result_uri: str | None = Field(default=None, description="The result document's blob URI.")
    log_uri: str | None = Field(default=None, description="The runner's own log blob URI.")
    outputs_count: int = Field(default=0, ge=0)
    started_at: datetime
    finished_at: datetime

    @model_validator(mode="after")
    def _failure_has_reason(self) -> RunnerEvent:
        if self.status is RunnerEventStatus.FAILED and self.error is None:
            raise ValueError("a failed runner event must carry an error")
        return self

    def to_message(self) -> str:
        """The queue message text; refuses to build one the queue would reject. A character the queue cannot
        carry (from a file name or a tool's output in the error) is written as its JSON escape: the same JSON."""
        text = NOT_IN_QUEUE_MESSAGES.sub(lambda found: f"\\u{ord(found.group()):04x}", self.model_dump_json())
        if len(text.encode()) > MAX_RUNNER_EVENT_BYTES:
            raise ValueError(
                f"runner event for run {self.run_id} is {len(text.encode())} bytes; "
                f"the limit is {MAX_RUNNER_EVENT_BYTES}: put large lists in the result document"
            )
        return text


class RunnerCompletion(Contract):
    """The `RunnerCompleted` external event: the runner's message, token already checked and removed."""

    status: RunnerEventStatus
    exit_code: int
    error: RunError | None = None
    result_uri: str | None = None
    log_uri: str | None = None
    outputs_count: int = 0
    started_at: datetime
    finished_at: datetime

    @classmethod
    def from_event(cls, event: RunnerEvent) -> RunnerCompletion:
        return cls.model_validate(event.model_dump(exclude={"run_id", "attempt", "token", "schema_version"}))


class RunRecord(Contract):
    """A run as users see it (table `runs`): one row per run, rejected uploads included."""

    run_id: str
    status: RunStatus
    task_type: str = Field(description="The task type, or the unknown first path segment of a rejected upload.")
    source_uri: str
    source_etag: str | None = None
    backend: str | None = None
    execution_ref: str | None = None
    requested_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    updated_at: datetime
    attempt: int = Field(default=1, ge=1, description="The start attempt whose runner may report.")
    attempts: int = Field(default=0, ge=0, description="Job starts the orchestration made.")
    outputs_count: int = Field(default=0, ge=0)
    outputs: list[str] = Field(default_factory=list, description="Output blob URIs (the first 100).")
    result_uri: str | None = None
    log_uri: str | None = None
    error: RunError | None = None
    cancellation: Cancellation | None = Field(
        default=None,
        description="The first cancel request, once one was accepted: who, when, why. With status `cancelled` it "
        "took effect; with another terminal status the run had ended its own way first.",
    )
    rerun_of: str | None = Field(default=None, description="The run this one reruns (same source blob version).")
    traceparent: str | None = traceparent_field()

    @property
    def duration(self) -> timedelta | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return self.finished_at - self.started_at

    def public_view(self) -> dict[str, Any]:
        """The record for APIs and CLIs."""
        return self.model_dump(mode="json")


MAX_RECORDED_OUTPUTS = 100


# --- activity payloads: one model per activity input and output, so fields can be added later ---


class StartJobInput(Contract):
    """Input of `start_job`. No callback token: the activity derives it, so it never enters the history."""

    request: RunRequest
    attempt: int = Field(ge=1, description="The start attempt (1 for a run's first); its token is derived from it.")


class SlotRequest(Contract):
    """Input of `acquire_slot`: the run, and its place in line (the time its upload was accepted)."""

    run_id: str = Field(pattern=RUN_ID_PATTERN)
    requested_at: datetime
    poll: bool = Field(default=False, description="A look again, having changed nothing since the last.")
    execution_ref: str | None = Field(
        default=None, description="On release: the run's job, whose end the release waits for (the cap counts "
        "live jobs, and a runner may still be exiting when its completion message arrives).",
    )
    traceparent: str | None = traceparent_field()


class SlotAnswer(Contract):
    """Output of `acquire_slot`: the run holds a slot; or its place in line; or it was cancelled meanwhile."""

    granted: bool
    position: int | None = Field(
        default=None, ge=1, description=f"1: next to start; None when not among the first {POSITION_LOOKAHEAD} in line."
    )
    cancelled: Cancellation | None = None


class StartJobResult(Contract):
    """Output of `start_job`: the execution, the backend's refusal when no retry can help, the cancel
    request that reached the run before its job was started (then none was), or that the run holds no slot
    (`no_slot`: the notice that sent it was late or not from a grant; nothing was started or written)."""

    execution_ref: str | None = None
    started_at: datetime | None = None
    refused: RunError | None = None
    cancelled: Cancellation | None = None
    no_slot: bool = False

    @model_validator(mode="after")
    def _started_or_refused(self) -> Self:
        not_started = (self.refused is not None) + (self.cancelled is not None) + self.no_slot
        if not_started > 1 or (not_started == 1) == (self.execution_ref is not None or self.started_at is not None):
            raise ValueError(
                "a start result has an execution_ref and started_at, a refusal, a cancellation or no_slot: one, "
                "not both"
            )
        if not_started == 0 and (self.execution_ref is None or self.started_at is None):
            raise ValueError("a started job has both an execution_ref and started_at")
        return self


class JobRefInput(Contract):
    """Input of `check_job` and `stop_job`."""

    run_id: str
    execution_ref: str
    traceparent: str | None = traceparent_field()


class ResultQuery(Contract):
    """Input of `read_result`: whose result document to look for, and how the job ended."""

    run_id: str
    attempt: int = Field(ge=1)
    exit_code: int | None = Field(default=None, description="The job's exit code, from the backend.")
    traceparent: str | None = traceparent_field()


class ResultLookup(Contract):
    """Output of `read_result`: the run's outcome from its result document, or why there is none."""

    completion: RunnerCompletion | None = None
    missing_reason: str | None = None

    @model_validator(mode="after")
    def _found_or_missing(self) -> Self:
        if (self.completion is None) == (self.missing_reason is None):
            raise ValueError("a result lookup has a completion or a reason it has none, not both")
        return self


class RunOutcome(Contract):
    """How a run ended, as the orchestrator decided it; `record_outcome` writes it."""

    run_id: str
    attempt: int = Field(default=1, ge=1)
    status: RunStatus
    execution_ref: str | None = None
    error: RunError | None = None
    exit_code: int | None = None
    completion: RunnerCompletion | None = None
    cancellation: Cancellation | None = Field(default=None, description="The request a `cancelled` run ended by.")
    traceparent: str | None = traceparent_field()

    @model_validator(mode="after")
    def _terminal(self) -> RunOutcome:
        if not self.status.is_terminal:
            raise ValueError(f"a run outcome must be terminal, not {self.status}")
        if (self.status is RunStatus.CANCELLED) != (self.cancellation is not None):
            raise ValueError("a cancelled outcome, and only one, carries its cancellation")
        return self


# --- the result document the runner writes (PACTA's response shapes plus our metadata) ---


class PactaBlob(BaseModel):
    """PACTA's `Blob` (Go field names)."""

    model_config = ConfigDict(extra="forbid")

    ID: str = ""
    BlobURI: str
    FileType: str
    FileName: str
    CreatedAt: str = "0001-01-01T00:00:00Z"


class PactaParsedOutput(BaseModel):
    """One entry of PACTA's `parsed-portfolio` `Outputs`."""

    model_config = ConfigDict(extra="forbid")

    Source: str
    Blob: PactaBlob
    Portfolio: dict[str, Any]


class PactaArtifact(BaseModel):
    model_config = ConfigDict(extra="forbid")

    BlobURI: str
    FileName: str
    FileType: str


class RunMetadata(Contract):
    """Our metadata beside PACTA's fields in the result document."""

    run_id: str
    task_type: TaskType
    status: RunnerEventStatus
    started_at: datetime
    finished_at: datetime
    log_uri: str
    error: RunError | None = None
    source_files: list[dict[str, Any]] = Field(
        default_factory=list, description="The parser's manifest entries (PACTA #187: keep them)."
    )


class ResultDocument(BaseModel):
    """`result.json`: a PACTA response a PACTA server can consume unchanged, plus `Run`."""

    model_config = ConfigDict(extra="forbid")

    TaskID: str
    Request: dict[str, Any]
    Outputs: list[PactaParsedOutput] | None = None
    Artifacts: list[PactaArtifact] | None = None
    Run: RunMetadata

    def output_uris(self) -> list[str]:
        if self.Outputs is not None:
            return [output.Blob.BlobURI for output in self.Outputs]
        return [artifact.BlobURI for artifact in self.Artifacts or []]


# --- the result document's proof: whose runner wrote it, checked without the token leaving the app ---

# The result document's name in the run's folder, and the blob metadata carrying its proof (Azure
# metadata names are C# identifiers, compared without case).
RESULT_DOCUMENT_NAME = "result.json"
RESULT_PROOF_METADATA = "runproof"


def result_proof(callback_token: str, document: bytes) -> str:
    """HMAC-SHA256 of the document's exact bytes under the run's callback token (hex).

    Only the run's runner (which has the token) and the app (which derives it) can make it; any change
    to the bytes, or a document of another run or attempt, fails it.
    """
    digest = hashlib.sha256(document).digest()
    return hmac.new(callback_token.encode(), b"pacta-runner result v1\n" + digest, hashlib.sha256).hexdigest()


# --- the runner's environment (the contract between JobSpec.env and `python -m runner`) ---


class RunnerEnv(StrEnum):
    """Names of our environment variables (PACTA's `TASK_ID`, `TASK_TYPE`, `<TYPE>_REQUEST` come too)."""

    RUN_ID = "RUNNER_RUN_ID"
    ATTEMPT = "RUNNER_ATTEMPT"
    # JSON list of the `az://container/[prefix/]` scopes the request's inputs must lie in (input_scope_violation).
    INPUT_SCOPES = "RUNNER_INPUT_SCOPES"
    CALLBACK_TOKEN = "RUNNER_CALLBACK_TOKEN"
    EVENTS_QUEUE = "RUNNER_EVENTS_QUEUE"
    OUTPUT_PREFIX = "RUNNER_OUTPUT_PREFIX"
    STORAGE_CONNECTION_STRING = "RUNNER_STORAGE_CONNECTION_STRING"
    BLOB_ACCOUNT_URL = "RUNNER_BLOB_ACCOUNT_URL"
    QUEUE_ACCOUNT_URL = "RUNNER_QUEUE_ACCOUNT_URL"
    WORK_DIR = "RUNNER_WORK_DIR"
    # create_report, create_audit, create_dashboard only (job_spec sets them from the app settings):
    TASK_COMMAND = "RUNNER_TASK_COMMAND"
    ARTIFACTS_CONTAINER = "RUNNER_ARTIFACTS_CONTAINER"
    BENCHMARKS_DIR = "RUNNER_BENCHMARKS_DIR"
    PACTA_DATA_DIR = "RUNNER_PACTA_DATA_DIR"


# --- create_report, create_audit, create_dashboard: PACTA's defaults and the request document ---

# The commands PACTA's Go runner ran (pacta-contract.md 1.4); the input JSON is appended as the last argument.
PACTA_TASK_COMMANDS: Final[dict[TaskType, tuple[str, ...]]] = {
    TaskType.CREATE_REPORT: (
        "Rscript", "--vanilla", "/workflow.pacta.webapp/inst/extdata/scripts/run_pacta.R",
    ),
    TaskType.CREATE_AUDIT: ("/workflow.pacta.webapp/inst/extdata/scripts/run_audit.sh",),
    TaskType.CREATE_DASHBOARD: (
        "Rscript", "--vanilla", "/workflow.pacta.dashboard/inst/extdata/scripts/prepare_dashboard_data.R",
    ),
}
# PACTA's containers for the artifacts of each task type (its runner and dashboard configs).
PACTA_ARTIFACT_CONTAINERS: Final[dict[TaskType, str]] = {
    TaskType.CREATE_REPORT: "reports",
    TaskType.CREATE_AUDIT: "audits",
    TaskType.CREATE_DASHBOARD: "dashboards",
}
# PACTA's server hard-coded these mounts into every task (its `TODO(brandon): Unhardcode these`).
PACTA_BENCHMARKS_DIR: Final = "/mnt/benchmark-data/65c1a416721b22a98c7925999ae03bc4"
PACTA_DATA_DIR: Final = "/mnt/pacta-data/2023Q4_20240718T150252Z"
# What PACTA's runner put in every input JSON (its TODO(#206)); a request's own values win.
PACTA_HOLDINGS_DATE: Final = "2023-12-31"
PACTA_PORTFOLIO_NAME: Final = "FooPortfolio"
PACTA_INHERIT: Final = "GENERAL_2023Q4"
MAX_PORTFOLIO_NAME_CHARS = 256
# An analysis id names a blob folder, an inherit value an R parameter file: no slashes, no dot-dot.
_PLAIN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class AnalysisRequest(BaseModel):
    """A create_report / create_audit / create_dashboard request document: PACTA's
    `{"AnalysisID", "BlobURIs"}` plus the values PACTA hard-coded (its #206), all optional.

    Other keys are kept (PACTA's server ignores what it does not know), so the document is echoed
    unchanged in the result document's `Request`.
    """

    model_config = ConfigDict(extra="allow", frozen=True)

    AnalysisID: str | None = Field(
        default=None,
        description="PACTA's analysis id (`analysis.<20 hex>`): the artifacts' folder. Absent: the run id.",
    )
    BlobURIs: list[str] = Field(
        min_length=1, description="The portfolio CSVs, `az://<container>/<path>`; one or more."
    )
    HoldingsDate: str | None = Field(
        default=None,
        description=f"The portfolio's holdings date, `YYYY-MM-DD`. Absent: {PACTA_HOLDINGS_DATE} (PACTA's value).",
    )
    PortfolioName: str | None = Field(
        default=None,
        description=f"The portfolio's name in the report. Absent: {PACTA_PORTFOLIO_NAME} (PACTA's value).",
    )
    Inherit: str | None = Field(
        default=None,
        description=f"The parameter set the R workflow inherits, e.g. GENERAL_2022Q4. Absent: {PACTA_INHERIT}.",
    )

    @field_validator("AnalysisID", "Inherit")
    @classmethod
    def _is_a_plain_name(cls, value: str | None) -> str | None:
        if value is not None and not _PLAIN_NAME.match(value):
            raise ValueError(
                "must be 1 to 128 letters, digits, '.', '_' or '-', starting with a letter or digit"
            )
        return value

    @field_validator("BlobURIs")
    @classmethod
    def _are_blob_uris(cls, uris: list[str]) -> list[str]:
        for uri in uris:
            parse_blob_uri(uri)
        return uris

    @field_validator("HoldingsDate")
    @classmethod
    def _is_a_date(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                if len(value) != len(PACTA_HOLDINGS_DATE):
                    raise ValueError
                date.fromisoformat(value)
            except ValueError:
                raise ValueError(f"must be a date written YYYY-MM-DD, e.g. {PACTA_HOLDINGS_DATE}") from None
        return value

    @field_validator("PortfolioName")
    @classmethod
    def _is_a_name(cls, value: str | None) -> str | None:
        if value is not None and (not value.strip() or len(value) > MAX_PORTFOLIO_NAME_CHARS):
            raise ValueError(f"must be 1 to {MAX_PORTFOLIO_NAME_CHARS} characters, not blank")
        return value

    def pacta_input(self, files: list[str]) -> dict[str, Any]:
        """The input JSON of PACTA's R scripts (key order as PACTA's Go structs), this request's values
        or PACTA's defaults."""
        return {
            "portfolio": {
                "files": list(files),
                "holdingsDate": self.HoldingsDate or PACTA_HOLDINGS_DATE,
                "name": self.PortfolioName or PACTA_PORTFOLIO_NAME,
            },
            "inherit": self.Inherit or PACTA_INHERIT,
        }


def describe_validation_error(error: ValidationError) -> str:
    """One line naming each bad field and why, without repeating the values."""
    problems = []
    for detail in error.errors(include_input=False, include_url=False):
        where = ".".join(str(part) for part in detail["loc"])
        message = str(detail["msg"]).removeprefix("Value error, ")
        problems.append(f"{where}: {message}" if where else message)
    return "; ".join(problems)


def parse_blob_uri(uri: str) -> tuple[str, str]:
    """Split `az://<container>/<path>` into container and blob name."""
    prefix = "az://"
    if not uri.startswith(prefix):
        raise ValueError(f"blob URI {uri!r} does not start with {prefix!r}")
    container, sep, name = uri[len(prefix) :].partition("/")
    if not container or not sep or not name:
        raise ValueError(f"blob URI {uri!r} is not of the form 'az://<container>/<path>'")
    return container, name


def blob_uri(container: str, name: str) -> str:
    return f"az://{container}/{name}"


def input_scope_violation(uri: str, scopes: Sequence[str]) -> str | None:
    """Why a request may not read `uri`, or None when it lies inside one of `scopes`.

    A scope is `az://<container>/` (the whole container) or `az://<container>/<prefix>/`. A URI is inside
    one only by its container and whole path segments (`az://uploads/` does not cover `az://uploads-x/a`,
    `az://uploads/a/` does not cover `az://uploads/ab`), and never with an empty, `.` or `..` segment or a
    backslash, which storage clients and Azurite resolve differently (`a/../b` may reach outside a prefix).
    """
    try:
        container, name = parse_blob_uri(uri)
    except ValueError as exc:
        return str(exc)
    segments = name.split("/")
    if "\\" in name or any(segment in ("", ".", "..") for segment in segments):
        return f"blob URI {uri!r} has an empty, '.' or '..' segment or a backslash"
    for scope in scopes:
        scope_container, _, prefix = scope.removeprefix("az://").partition("/")
        if container == scope_container and name.startswith(prefix):
            return None
    listed = ", ".join(scopes) or "none"
    return f"blob URI {uri!r} is outside the containers and prefixes requests may read ({listed})"


BlobUri = Annotated[str, Field(pattern=r"^az://[a-z0-9-]{3,63}/.+$")]


def canonical_json(value: Any) -> str:
    """Compact, key-sorted JSON: the form hashed and compared across boundaries."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


RunTaskInput.model_rebuild()
