"""The outcome survives every lost, late, poisoned or forged completion: the result document is the truth.

The runner writes `result.json` (with an HMAC proof in its metadata) before it sends its completion message.
These tests take the message away in every way it can go (never delivered, poisoned, arriving at a
generation boundary, duplicated, late) and forge documents, and check that each run still ends as it
really ended, exactly once.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests
from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.storage.queue import QueueClient, QueueMessage
from pydantic import SecretStr

from local_runner.host.clock import ManualClock
from local_runner.host.host import LocalHost
from local_runner.host.settings import load_host_settings
from orchestrations import runtime
from orchestrations.callback_tokens import derive_callback_token
from orchestrations.contracts import (
    RESULT_PROOF_METADATA,
    ExecutionRef,
    JobState,
    JobStatus,
    PactaBlob,
    PactaParsedOutput,
    ResultDocument,
    RunMetadata,
    RunnerEvent,
    RunnerEventStatus,
    RunStatus,
    RunTaskInput,
    TaskType,
    result_proof,
)
from orchestrations.results import MAX_RESULT_DOCUMENT_BYTES
from tests.conftest import PROJECT_ROOT, TEST_CALLBACK_TOKEN_KEY
from tests.flow.conftest import (
    FlowEnv,
    api_get,
    drive,
    keep_history,
    md5,
    runner_after,
    scheduled_activities,
    wait_for,
    wait_for_end,
)

pytestmark = [pytest.mark.azurite, pytest.mark.slow]

PORTFOLIO = b"isin,market_value,currency\nGB0007980591,10000,USD\n"
KEY = SecretStr(TEST_CALLBACK_TOKEN_KEY)


def token_of(run_id: str, attempt: int = 1) -> str:
    return derive_callback_token(KEY, run_id, attempt)


def events_queue(flow: FlowEnv) -> QueueClient:
    return QueueClient.from_connection_string(flow.connection, flow.env["RUNNER_EVENTS_QUEUE"])


def only_generation(host: LocalHost, run_id: str) -> bool:
    """Whether the run ended in its first generation (no continue-as-new happened)."""
    started = next(event for event in host.engine.get_history(run_id) if event["EventType"] == 0)
    return RunTaskInput.from_payload(json.loads(started["Input"])).watch is None


def test_a_completion_message_never_delivered_is_replaced_by_the_result_document(
    flow_env: FlowEnv, start_host: Callable[..., LocalHost]
) -> None:
    clock = ManualClock()
    host = start_host(clock=clock, deliver_completions=False)
    run_id = flow_env.upload("parse_portfolio/unheard.csv", PORTFOLIO)

    record = drive(host, clock, flow_env, run_id, seconds_per_step=0.5)

    assert record.status is RunStatus.SUCCEEDED, record.error
    assert record.outputs_count == 1 and len(record.outputs) == 1
    assert flow_env.read_blob(record.outputs[0]).startswith(b'"isin","market_value","currency"')
    assert record.result_uri == f"az://{flow_env.env['RUNS_CONTAINER']}/{run_id}/result.json"
    assert record.log_uri and b"parse_portfolio" in flow_env.read_blob(record.log_uri)
    assert scheduled_activities(host, run_id)[-3:] == ["read_result", "release_slot", "record_outcome"]
    assert flow_env.queue_messages(flow_env.env["RUNNER_EVENTS_QUEUE"]) == 1  # it was sent, never delivered
    keep_history(host, run_id, "succeeded_from_result_document")


def test_a_completion_that_arrives_during_the_last_check_of_a_generation_is_taken(
    flow_env: FlowEnv, start_host: Callable[..., LocalHost]
) -> None:
    """The SDK 1.x continues as new without events no wait took (azure-functions-durable-python#331):
    the orchestrator must take the completion before it does, or the run ends without its report."""
    from orchestrations import activities

    checks: list[str] = []

    def check_while_the_message_arrives(payload: str | None) -> str:
        checks.append("check")
        if len(checks) == 1:  # the runner reports while this check is under way; the check saw it running
            [trigger] = flow_env.held_queue_triggers
            wait_for(trigger.poll_once, what="the runner's message to be delivered")
            return json.dumps(JobStatus(state=JobState.RUNNING).to_payload())
        return json.dumps(activities.check_job(json.loads(payload or "null")))

    clock = ManualClock()
    host = start_host(
        clock=clock, deliver_completions=False, activity_overrides={"check_job": check_while_the_message_arrives},
        STATUS_CHECKS_PER_GENERATION="1",
    )
    run_id = flow_env.upload("parse_portfolio/boundary.csv", PORTFOLIO)

    record = drive(host, clock, flow_env, run_id, seconds_per_step=0.5)

    assert record.status is RunStatus.SUCCEEDED, record.error
    assert scheduled_activities(host, run_id) == [
        "acquire_slot", "start_job", "check_job", "release_slot", "record_outcome",
    ]
    assert only_generation(host, run_id) and len(checks) == 1


def test_a_poisoned_completion_message_still_ends_the_run_correctly(
    flow_env: FlowEnv, start_host: Callable[..., LocalHost]
) -> None:
    queues = load_host_settings(PROJECT_ROOT).queues
    clock = ManualClock()
    host = start_host(
        clock=clock, queue_settings=type(queues)(
            max_dequeue_count=2, visibility_timeout=timedelta(0), message_encoding=queues.message_encoding,
            batch_size=queues.batch_size,
        ),
    )

    def webhook_down(*_: object, **__: object) -> None:  # the durable extension's webhook, failing every call
        raise RuntimeError("the durable webhook is unavailable")

    host.engine.raise_event = webhook_down  # type: ignore[method-assign]
    run_id = flow_env.upload("parse_portfolio/poisoned.csv", PORTFOLIO)

    record = drive(host, clock, flow_env, run_id, seconds_per_step=0.5)

    assert record.status is RunStatus.SUCCEEDED, record.error
    assert record.outputs_count == 1 and "read_result" in scheduled_activities(host, run_id)
    wait_for(lambda: flow_env.queue_messages(f"{flow_env.env['RUNNER_EVENTS_QUEUE']}-poison") == 1,
             step=host.poll_triggers_once, what="the message to reach the poison queue")


def test_a_duplicated_completion_message_records_the_run_once(
    flow_env: FlowEnv, start_host: Callable[..., LocalHost]
) -> None:
    clock = ManualClock()
    host = start_host(clock=clock, deliver_completions=False)
    run_id = flow_env.upload("parse_portfolio/twice-told.csv", PORTFOLIO)
    queue = events_queue(flow_env)

    def first_message() -> QueueMessage | None:
        with contextlib.suppress(ResourceNotFoundError):  # the runner creates the queue
            return next(iter(queue.peek_messages(max_messages=1)), None)
        return None

    message = wait_for(first_message, step=host.poll_triggers_once, what="the runner's message")
    queue.send_message(message.content)  # both copies are delivered in one batch
    [trigger] = flow_env.held_queue_triggers

    record = wait_for_end(flow_env, run_id, step=lambda: host.poll_triggers_once() + trigger.poll_once())
    wait_for(lambda: trigger.poll_once() == 0 and flow_env.queue_messages(queue.queue_name) == 0)

    assert record.status is RunStatus.SUCCEEDED
    assert scheduled_activities(host, run_id) == ["acquire_slot", "start_job", "release_slot", "record_outcome"]
    assert flow_env.queue_messages(f"{queue.queue_name}-poison") == 0


def test_a_message_arriving_after_the_deadline_does_not_change_the_timed_out_run(
    flow_env: FlowEnv, start_host: Callable[..., LocalHost], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="orchestrations")
    clock = ManualClock()
    host = start_host(
        clock=clock, RUNNER_COMMAND=json.dumps(["python", "-c", "import time; time.sleep(600)"]),
        RUN_DEADLINE_SECONDS="10", STATUS_CHECK_INTERVAL_SECONDS="2",
    )
    run_id = flow_env.upload("parse_portfolio/too-late.csv", PORTFOLIO)
    record = drive(host, clock, flow_env, run_id, seconds_per_step=0.5)
    assert record.status is RunStatus.TIMED_OUT

    late = RunnerEvent(
        run_id=run_id, token=token_of(run_id), status=RunnerEventStatus.SUCCEEDED, exit_code=0,
        started_at=clock.now(), finished_at=clock.now(),
    )
    queue = events_queue(flow_env)
    queue.send_message(late.to_message())
    wait_for(lambda: host.poll_triggers_once() == 0 and flow_env.queue_messages(queue.queue_name) == 0)

    assert flow_env.record(run_id) == record
    assert f"Dropped a runner message for run {run_id}: it already ended timed_out" in caplog.text


def result_document(run_id: str, runs: str, *, of_run: str | None = None, output: str | None = None) -> bytes:
    """A well-formed parse_portfolio result document claiming success with one output in the run's folder
    of the `runs` container (the same bytes each time); `output` names another output."""
    now = datetime(2026, 12, 1, tzinfo=UTC)
    owner = of_run or run_id
    document = ResultDocument(
        TaskID=owner, Request={"BlobURIs": ["az://uploads/x.csv"]},
        Outputs=[PactaParsedOutput(
            Source="az://uploads/x.csv",
            Blob=PactaBlob(BlobURI=output or f"az://{runs}/{owner}/outputs/a.csv", FileType="csv", FileName="a.csv"),
            Portfolio={},
        )],
        Run=RunMetadata(
            run_id=owner, task_type=TaskType.PARSE_PORTFOLIO, status=RunnerEventStatus.SUCCEEDED,
            started_at=now, finished_at=now, log_uri=f"az://{runs}/{owner}/runner.log",
        ),
    )
    return document.model_dump_json(exclude={"Artifacts"}).encode()


def proved(run_id: str, body: bytes, *, attempt: int = 1) -> dict[str, str]:
    """The metadata a runner of that attempt writes with `body`."""
    return {RESULT_PROOF_METADATA: result_proof(token_of(run_id, attempt), body)}


FORGERIES: dict[str, Callable[[str, str], tuple[bytes, dict[str, str]]]] = {
    "no proof": lambda run_id, runs: (result_document(run_id, runs), {}),
    "a made-up proof": lambda run_id, runs: (result_document(run_id, runs), {RESULT_PROOF_METADATA: "0" * 64}),
    "another attempt's proof": lambda run_id, runs: (
        result_document(run_id, runs), proved(run_id, result_document(run_id, runs), attempt=2),
    ),
    "edited after it was proved": lambda run_id, runs: (
        result_document(run_id, runs).replace(b"a.csv", b"b.csv"), proved(run_id, result_document(run_id, runs)),
    ),
}
REASONS = {
    "no proof": "carries no proof of its runner",
    "a made-up proof": "its proof does not match",
    "another attempt's proof": "its proof does not match",
    "edited after it was proved": "its proof does not match",
}


@pytest.fixture
def silent_job_host(flow_env: FlowEnv, start_host: Callable[..., LocalHost]) -> Iterator[tuple[LocalHost, ManualClock]]:
    """A host whose jobs exit 0 without writing a result document or sending a message."""
    clock = ManualClock()
    yield start_host(clock=clock, RUNNER_COMMAND=json.dumps(["python", "-c", "raise SystemExit(0)"])), clock


def plant_result_document(flow: FlowEnv, run_id: str, body: bytes, metadata: dict[str, str]) -> None:
    with contextlib.suppress(ResourceExistsError):
        flow.blobs.create_container(flow.env["RUNS_CONTAINER"])
    blob = flow.blobs.get_blob_client(flow.env["RUNS_CONTAINER"], f"{run_id}/result.json")
    blob.upload_blob(body, overwrite=True, metadata=metadata)


@pytest.mark.parametrize("forgery", list(FORGERIES))
def test_a_forged_result_document_does_not_count(
    flow_env: FlowEnv, silent_job_host: tuple[LocalHost, ManualClock], forgery: str
) -> None:
    host, clock = silent_job_host
    run_id = flow_env.upload(f"parse_portfolio/{forgery.replace(' ', '-')}.csv", PORTFOLIO)
    plant_result_document(flow_env, run_id, *FORGERIES[forgery](run_id, flow_env.env["RUNS_CONTAINER"]))

    record = drive(host, clock, flow_env, run_id, seconds_per_step=0.5)

    assert record.status is RunStatus.FAILED
    assert record.error is not None and record.error.code == "runner_ended_without_report"
    assert REASONS[forgery] in record.error.message and "exit code 0" in record.error.message
    assert record.outputs == [] and record.result_uri is None


def test_another_runs_genuine_document_does_not_count(
    flow_env: FlowEnv, silent_job_host: tuple[LocalHost, ManualClock]
) -> None:
    host, clock = silent_job_host
    run_id = flow_env.upload("parse_portfolio/borrowed.csv", PORTFOLIO)
    # Proved with this run's own token, yet another run's document: the run id inside must match too.
    body = result_document(run_id, flow_env.env["RUNS_CONTAINER"], of_run="run-someone-else-entirely")
    plant_result_document(flow_env, run_id, body, proved(run_id, body))

    record = drive(host, clock, flow_env, run_id, seconds_per_step=0.5)

    assert record.status is RunStatus.FAILED
    assert record.error is not None and "is run run-someone-else-entirely's, not" in record.error.message


def test_a_document_proved_with_the_runs_token_is_the_runs_outcome(
    flow_env: FlowEnv, silent_job_host: tuple[LocalHost, ManualClock]
) -> None:
    host, clock = silent_job_host
    run_id = flow_env.upload("parse_portfolio/genuine.csv", PORTFOLIO)
    body = result_document(run_id, flow_env.env["RUNS_CONTAINER"])
    plant_result_document(flow_env, run_id, body, proved(run_id, body))

    record = drive(host, clock, flow_env, run_id, seconds_per_step=0.5)

    assert record.status is RunStatus.SUCCEEDED, record.error
    assert record.outputs == [f"az://{flow_env.env['RUNS_CONTAINER']}/{run_id}/outputs/a.csv"]
    assert record.error is None


def test_a_proved_document_larger_than_any_result_document_does_not_count_and_its_size_is_named(
    flow_env: FlowEnv, silent_job_host: tuple[LocalHost, ManualClock]
) -> None:
    host, clock = silent_job_host
    run_id = flow_env.upload("parse_portfolio/padded.csv", PORTFOLIO)
    # Valid JSON, proved with the run's token: only its size is wrong.
    body = result_document(run_id, flow_env.env["RUNS_CONTAINER"]) + b" " * MAX_RESULT_DOCUMENT_BYTES
    plant_result_document(flow_env, run_id, body, proved(run_id, body))

    record = drive(host, clock, flow_env, run_id, seconds_per_step=0.5)

    assert record.status is RunStatus.FAILED and record.outputs == []
    assert record.error is not None
    assert f"result.json is {len(body)} bytes, larger than any result document" in record.error.message


@pytest.mark.parametrize("output", ["az://{runs}/run-someone-else/outputs/a.csv", "az://uploads/x.csv",
                                    "az://{runs}/{run}/outputs/../../run-someone-else/a.csv"],
                         ids=["another run's folder", "the uploads", "out through '..'"])
def test_a_proved_document_listing_an_output_outside_the_runs_folders_does_not_count(
    flow_env: FlowEnv, silent_job_host: tuple[LocalHost, ManualClock], output: str
) -> None:
    host, clock = silent_job_host
    run_id = flow_env.upload("parse_portfolio/reaching-out.csv", PORTFOLIO)
    runs = flow_env.env["RUNS_CONTAINER"]
    body = result_document(run_id, runs, output=output.format(runs=runs, run=run_id))
    plant_result_document(flow_env, run_id, body, proved(run_id, body))

    record = drive(host, clock, flow_env, run_id, seconds_per_step=0.5)

    assert record.status is RunStatus.FAILED and record.outputs == []
    assert record.error is not None and "outside the run's own folders" in record.error.message


RUNS_WITH_DELETED_MESSAGES = 8


def test_runs_whose_messages_are_all_deleted_end_succeeded_once_each(
    flow_env: FlowEnv, start_host: Callable[..., LocalHost], fixtures_dir: Path
) -> None:
    """The issue's acceptance check, in small (it asks twenty under `make up`): a second party deletes
    every completion message as soon as it is sent."""
    host = start_host(
        deliver_completions=False,
        STATUS_CHECK_INTERVAL_SECONDS="1", STATUS_CHECKS_PER_GENERATION="1", COMPLETION_GRACE_SECONDS="3",
    )
    queue = events_queue(flow_env)
    stop = threading.Event()
    deleted: list[str] = []

    def delete_every_message() -> None:
        while not stop.wait(0.05):
            with contextlib.suppress(ResourceNotFoundError):  # the first runner creates the queue
                for message in queue.receive_messages(max_messages=32):
                    queue.delete_message(message)
                    deleted.append(message.id)

    deleter = threading.Thread(target=delete_every_message, daemon=True)
    deleter.start()
    content = (fixtures_dir / "simple.csv").read_bytes()
    try:
        run_ids = [
            flow_env.upload(f"parse_portfolio/deleted-{n:02}.csv", content) for n in range(RUNS_WITH_DELETED_MESSAGES)
        ]
        records = [wait_for_end(flow_env, run_id, timeout=240) for run_id in run_ids]
        wait_for(lambda: len(deleted) == len(run_ids), what="every message to be deleted")
    finally:
        stop.set()
        deleter.join(timeout=10)

    assert [record.status for record in records] == [RunStatus.SUCCEEDED] * len(run_ids)
    assert {md5(flow_env.read_blob(record.outputs[0])) for record in records} == {"0f51946d64ef6ee4daca1a6969317cba"}
    assert flow_env.executions() == sorted(run_ids)
    for run_id in run_ids:
        assert scheduled_activities(host, run_id)[-3:] == ["read_result", "release_slot", "record_outcome"]
    kept = json.dumps([host.engine.get_history(run_id) for run_id in run_ids])
    assert [run_id for run_id in run_ids if token_of(run_id) in kept] == []


def test_the_apps_queue_retries_outlast_a_thirty_minute_outage_before_poisoning() -> None:
    """host.json: a completion message whose delivery keeps failing (durable webhook, table or storage down) is
    tried `maxDequeueCount` times, `visibilityTimeout` apart, before it goes to `<queue>-poison`."""
    queues = load_host_settings(PROJECT_ROOT, environ={"TASK_HUB_NAME": "PactaRunner"}).queues

    retried_for = (queues.max_dequeue_count - 1) * queues.visibility_timeout

    assert retried_for >= timedelta(minutes=30)
    assert queues.message_encoding == "none"  # the runner sends plain text


def test_a_reported_success_without_a_proved_document_is_recorded_as_a_failure_that_says_why(
    flow_env: FlowEnv, silent_job_host: tuple[LocalHost, ManualClock]
) -> None:
    """As from a runner image older than the app: its message is genuine, its document carries no proof.
    The run's outputs cannot be vouched for, so the run is not recorded as a success without outputs."""
    host, clock = silent_job_host
    run_id = flow_env.upload("parse_portfolio/older-runner.csv", PORTFOLIO)
    plant_result_document(flow_env, run_id, result_document(run_id, flow_env.env["RUNS_CONTAINER"]), {})
    wait_for(lambda: (record := flow_env.record(run_id)) is not None and record.status is RunStatus.RUNNING,
             step=host.poll_triggers_once)
    genuine = RunnerEvent(
        run_id=run_id, token=token_of(run_id), status=RunnerEventStatus.SUCCEEDED, exit_code=0, outputs_count=1,
        result_uri=f"az://elsewhere/{run_id}/result.json", started_at=clock.now(), finished_at=clock.now(),
    )
    events_queue(flow_env).send_message(genuine.to_message())

    record = drive(host, clock, flow_env, run_id, seconds_per_step=0)

    assert record.status is RunStatus.FAILED
    assert record.error is not None and record.error.code == "result_document_unusable"
    assert "carries no proof of its runner" in record.error.message and "make images" in record.error.message
    assert record.outputs == [] and record.result_uri is None
    ended = host.engine.wait_for_status(run_id, {"Completed"})  # just after the record is written
    assert ended["customStatus"] == {"phase": "done", "status": "failed"}


def test_a_run_whose_result_and_outputs_are_deleted_before_it_is_recorded_fails_saying_so(
    flow_env: FlowEnv, start_host: Callable[..., LocalHost]
) -> None:
    clock = ManualClock()
    host = start_host(clock=clock, deliver_completions=False)
    run_id = flow_env.upload("parse_portfolio/vanishing.csv", PORTFOLIO)
    wait_for(lambda: flow_env.queue_messages(flow_env.env["RUNNER_EVENTS_QUEUE"]) == 1, step=host.poll_triggers_once,
             what="the runner's message")
    runs = flow_env.blobs.get_container_client(flow_env.env["RUNS_CONTAINER"])
    for blob in runs.list_blobs(name_starts_with=f"{run_id}/"):
        runs.delete_blob(blob.name)
    [trigger] = flow_env.held_queue_triggers

    record = wait_for_end(flow_env, run_id, step=lambda: trigger.poll_once() and None)

    assert record.status is RunStatus.FAILED
    assert record.error is not None and record.error.code == "result_document_unusable"
    assert "there is no result document at" in record.error.message and "Traceback" not in record.error.message
    listed = api_get(host, "runs").json()["runs"]
    assert [(run["run_id"], run["status"]) for run in listed] == [(run_id, "failed")]


def test_event_data_that_breaks_the_contract_fails_the_run_with_a_record_not_a_stuck_orchestration(
    flow_env: FlowEnv, start_host: Callable[..., LocalHost], tmp_path: Path
) -> None:
    """Locally the durable HTTP API takes a raiseEvent without any key, as Core Tools' does (in Azure it needs the
    durabletask system key): whatever arrives as `RunnerCompleted`, the job is stopped and the run ends with a
    record."""
    host = start_host(RUNNER_COMMAND=runner_after(tmp_path / "never"))
    run_id = flow_env.upload("parse_portfolio/raised.csv", PORTFOLIO)
    wait_for(lambda: (record := flow_env.record(run_id)) is not None and record.status is RunStatus.RUNNING)

    raised = requests.post(
        f"{host.base_url}/runtime/webhooks/durabletask/instances/{run_id}/raiseEvent/RunnerCompleted",
        json={"status": "succeeded", "outputs": ["az://elsewhere/x"]}, timeout=10,
    )
    record = wait_for_end(flow_env, run_id)

    assert raised.status_code == 202
    assert record.status is RunStatus.FAILED and record.outputs == []
    assert record.error is not None and record.error.code == "orchestration_failed"
    assert "RunnerCompletion is not valid: exit_code: Field required" in record.error.message
    assert "Traceback" not in record.error.message
    assert record.execution_ref and runtime.backend().status(ExecutionRef.parse(record.execution_ref)).has_ended


def test_an_orchestration_that_fails_logs_and_keeps_no_token(
    flow_env: FlowEnv, start_host: Callable[..., LocalHost], caplog: pytest.LogCaptureFixture
) -> None:
    """The extension logs a failed orchestrator's state (`$OutOfProcData$`: its actions and their inputs, which
    the history holds too): no input of any activity holds a token, so neither does that log."""
    caplog.set_level(logging.DEBUG)

    def storage_gone(payload: str | None) -> str:
        raise ConnectionError("the runs table is unreachable")

    clock = ManualClock()
    host = start_host(clock=clock, activity_overrides={"record_outcome": storage_gone})
    run_id = flow_env.upload("parse_portfolio/unrecorded.csv", PORTFOLIO)

    def step() -> None:
        host.poll_triggers_once()
        clock.advance(30)

    status = wait_for(lambda: (s := host.engine.get_status(run_id)) and s["runtimeStatus"] == "Failed" and s,
                      step=step, what="the orchestration to fail")

    history = host.engine.get_history(run_id)
    kept = caplog.text + json.dumps(status) + json.dumps(history)
    # What the extension's log holds: every action with its input, the job's start among them.
    assert [event["Input"] for event in history if event.get("Name") == "start_job"] != [None]
    assert token_of(run_id) not in kept and TEST_CALLBACK_TOKEN_KEY not in kept
    listed = api_get(host, "runs").json()["runs"]  # the listing settles the dead run too, not only the run's page
    assert [(run["run_id"], run["status"], run["error"]["code"]) for run in listed] == [
        (run_id, "failed", "orchestration_failed")
    ]
    view = api_get(host, f"runs/{run_id}").json()
    assert view["status"] == "failed" and view["error"] == listed[0]["error"]
    assert "the runs table is unreachable" in view["error"]["message"]
    assert "Traceback" not in view["error"]["message"] and "site-packages" not in view["error"]["message"]
    record = flow_env.record(run_id)
    assert record is not None and record.status is RunStatus.FAILED  # the table, not only the answers


def test_a_flood_of_junk_completion_messages_does_not_hold_up_a_good_run(
    flow_env: FlowEnv, start_host: Callable[..., LocalHost], caplog: pytest.LogCaptureFixture
) -> None:
    """The clock stands still: only the runner's own message can end the run, through 32 junk ones ahead of it."""
    caplog.set_level(logging.INFO, logger="orchestrations")
    clock = ManualClock()
    host = start_host(clock=clock)
    queue = events_queue(flow_env)
    with contextlib.suppress(ResourceExistsError):
        queue.create_queue()
    now = clock.now()
    for n in range(16):
        queue.send_message(json.dumps({"run_id": f"x/{n}", "token": "t" * 43, "status": "succeeded", "exit_code": 0,
                                       "started_at": now.isoformat(), "finished_at": now.isoformat()}))
        queue.send_message(RunnerEvent(run_id=f"run-nobody-{n:04}", token="t" * 43, status=RunnerEventStatus.SUCCEEDED,
                                       exit_code=0, started_at=now, finished_at=now).to_message())
    run_id = flow_env.upload("parse_portfolio/after-the-flood.csv", PORTFOLIO)

    record = drive(host, clock, flow_env, run_id, seconds_per_step=0)

    assert record.status is RunStatus.SUCCEEDED and record.outputs_count == 1
    assert scheduled_activities(host, run_id) == ["acquire_slot", "start_job", "release_slot", "record_outcome"]
    assert caplog.text.count("not a valid RunnerEvent") == 16 and caplog.text.count("for unknown run") == 16
