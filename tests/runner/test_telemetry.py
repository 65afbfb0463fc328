"""The runner's spans: one trace per run under the job's TRACEPARENT, a span per phase, failures marked with
their code, and no secret in any attribute. The runner runs in-process against Azurite, so its spans reach
the pytest process's in-memory exporter (`recorded_spans`); the OTLP tests run `python -m runner` as the
image does and receive its spans over HTTP, as a collector would."""

from __future__ import annotations

import json
import logging
import os
import secrets
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode

from orchestrations import telemetry
from orchestrations.contracts import ResultDocument, RunnerEventStatus
from runner import tracing
from runner.errors import RunnerError, TerminatedError
from runner.run import run
from tests.conftest import wait_for
from tests.runner.conftest import RUNNER_TIMEOUT_SECONDS, RunnerEnvironment, RunnerProcess, StorageView

BuildEnv = Callable[..., RunnerEnvironment]
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_SPAN_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_SPAN_ID}-01"
STAND_INS = Path(__file__).resolve().parent / "stand_ins"


@pytest.fixture(autouse=True)
def fresh_process_state(monkeypatch: pytest.MonkeyPatch) -> None:
    """What a runner process starts without: `telemetry.configure` acts once per process, and a stop raised by
    an earlier test in this process (test_cli's SIGTERM test) would make every run here report `terminated`."""
    monkeypatch.setattr(telemetry, "_state", telemetry._State())
    monkeypatch.setattr(TerminatedError, "raised", False)


def runner_spans(recorded: Any) -> list[ReadableSpan]:
    """The spans the runner made (the pacta tracer's), in the order they started."""
    spans = [
        span for span in recorded.get_finished_spans()
        if span.instrumentation_scope is not None and span.instrumentation_scope.name == telemetry.INSTRUMENTATION_NAME
    ]
    return sorted(spans, key=lambda span: span.start_time or 0)


def strings_in(span: ReadableSpan) -> list[str]:
    """Every text a backend would store for the span: name, status, attributes and event attributes."""
    values: list[Any] = [span.name, span.status.description]
    values += list((span.attributes or {}).values())
    for event in span.events:
        values += [event.name, *(event.attributes or {}).values()]
    return [str(value) for value in values if value is not None]


def secret_values(env: RunnerEnvironment, storage: StorageView) -> list[str]:
    account_key = storage.connection_string.split("AccountKey=")[1].split(";")[0]
    return [env.token, account_key, storage.connection_string]


def assert_no_secret(spans: list[ReadableSpan], env: RunnerEnvironment, storage: StorageView) -> None:
    for span in spans:
        for text in strings_in(span):
            for secret in secret_values(env, storage):
                assert secret not in text, f"a secret in span {span.name}"


@pytest.mark.azurite
def test_a_run_is_one_trace_under_the_jobs_traceparent_with_a_span_per_phase(
    recorded_spans: Any, runner_env: BuildEnv, run_storage: StorageView, fixtures_dir: Path
) -> None:
    inputs = [
        run_storage.upload_input("parse_portfolio/simple.csv", (fixtures_dir / "simple.csv").read_bytes()),
        run_storage.upload_input(
            "parse_portfolio/multi.csv", (fixtures_dir / "multi_simple_all-columns_portfolioname.csv").read_bytes()
        ),
    ]
    env = runner_env("parse_portfolio", inputs)
    env.variables[telemetry.TRACEPARENT_ENV] = TRACEPARENT

    assert run(env.variables) == 0

    spans = runner_spans(recorded_spans)
    assert [span.name for span in spans] == [
        "runner", "runner.download", "runner.download", "runner.task",
        "runner.upload", "runner.upload", "runner.upload", "runner.upload",  # three portfolios and the manifest
        "runner.result", "runner.complete",
    ]
    assert {format(span.context.trace_id, "032x") for span in spans} == {TRACE_ID}
    root, *children = spans
    assert root.parent is not None and format(root.parent.span_id, "016x") == PARENT_SPAN_ID
    assert root.parent.is_remote and root.kind is SpanKind.CONSUMER
    assert all(child.parent is not None and child.parent.span_id == root.context.span_id for child in children)
    assert all((span.attributes or {})[telemetry.RUN_ID_ATTRIBUTE] == env.run_id for span in spans)
    assert (root.attributes or {})[telemetry.TASK_TYPE_ATTRIBUTE] == "parse_portfolio"
    assert (root.attributes or {})[tracing.ATTEMPT_ATTRIBUTE] == 1
    assert [(span.attributes or {})[tracing.BLOB_URI_ATTRIBUTE] for span in spans[1:3]] == inputs
    assert (spans[3].attributes or {})[telemetry.TASK_TYPE_ATTRIBUTE] == "parse_portfolio"
    result = ResultDocument.model_validate_json(run_storage.read_blob(env.output_prefix + "result.json"))
    uploaded = {output.Blob.BlobURI for output in result.Outputs or []} | {
        env.output_prefix + "processed_portfolios.json"
    }
    assert {(span.attributes or {})[tracing.BLOB_URI_ATTRIBUTE] for span in spans[4:8]} == uploaded
    assert all(span.status.status_code is StatusCode.UNSET for span in spans)
    assert_no_secret(spans, env, run_storage)


@pytest.mark.azurite
def test_a_task_that_fails_marks_its_span_and_the_root_with_the_error_code(
    recorded_spans: Any, runner_env: BuildEnv, run_storage: StorageView, fixtures_dir: Path
) -> None:
    data = (fixtures_dir / "columns/simple_investorname.csv").read_bytes()
    env = runner_env("parse_portfolio", [run_storage.upload_input("parse_portfolio/four.csv", data)])
    env.variables[telemetry.TRACEPARENT_ENV] = TRACEPARENT

    assert run(env.variables) == 1

    spans = {span.name: span for span in runner_spans(recorded_spans)}
    for name in ("runner", "runner.task"):
        assert spans[name].status.status_code is StatusCode.ERROR
        assert spans[name].status.description == "no_portfolios"
        assert (spans[name].attributes or {})[tracing.ERROR_TYPE_ATTRIBUTE] == "no_portfolios"
    for name in ("runner.download", "runner.upload", "runner.result", "runner.complete"):
        assert spans[name].status.status_code is StatusCode.UNSET, name
    assert_no_secret(list(spans.values()), env, run_storage)


@pytest.mark.azurite
def test_a_failed_download_is_marked_on_its_span_and_no_task_span_follows(
    recorded_spans: Any, runner_env: BuildEnv, run_storage: StorageView
) -> None:
    missing = f"az://{run_storage.uploads_container}/parse_portfolio/gone.csv"
    env = runner_env("parse_portfolio", [missing])
    env.variables[telemetry.TRACEPARENT_ENV] = TRACEPARENT

    assert run(env.variables) == 1

    spans = runner_spans(recorded_spans)
    assert [span.name for span in spans] == ["runner", "runner.download", "runner.result", "runner.complete"]
    download = spans[1]
    assert download.status.status_code is StatusCode.ERROR
    assert (download.attributes or {})[tracing.ERROR_TYPE_ATTRIBUTE] == "input_download_failed"
    assert (download.attributes or {})[tracing.BLOB_URI_ATTRIBUTE] == missing
    [exception] = [event for event in download.events if event.name == "exception"]
    assert "gone.csv" in str((exception.attributes or {})["exception.message"])
    assert spans[0].status.description == "input_download_failed"
    assert_no_secret(spans, env, run_storage)


@pytest.mark.azurite
def test_no_span_attribute_or_event_carries_the_token_or_a_storage_credential_even_when_they_are_in_the_error(
    recorded_spans: Any, runner_env: BuildEnv, run_storage: StorageView, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A bug whose exception text quotes the secrets: the task span records it, the runner's own spans do not
    # copy it anywhere else, and the recorded exception of a RunnerError never includes its chained cause.
    env = runner_env("parse_portfolio", [run_storage.upload_input("parse_portfolio/x.csv", b"a,b\n1,2\n")])
    leaked = " ".join(secret_values(env, run_storage))

    def failing_download(*args: Any, **kwargs: Any) -> None:
        try:
            raise OSError(leaked)
        except OSError as cause:
            raise RunnerError("input_download_failed", "Could not download the input.") from cause

    monkeypatch.setattr("runner.storage.RunStorage.download", failing_download)

    assert run(env.variables) == 1

    spans = runner_spans(recorded_spans)
    assert [span.name for span in spans][:2] == ["runner", "runner.download"]
    assert any(event.name == "exception" for event in spans[1].events)
    assert_no_secret(spans, env, run_storage)


@pytest.mark.parametrize(
    "traceparent",
    [None, "not a traceparent", f"00-{'0' * 32}-{PARENT_SPAN_ID}-01"],
    ids=["missing", "malformed", "all-zero trace id"],
)
@pytest.mark.azurite
def test_without_a_valid_traceparent_the_run_is_a_trace_of_its_own(
    recorded_spans: Any, runner_env: BuildEnv, run_storage: StorageView, fixtures_dir: Path, traceparent: str | None
) -> None:
    env = runner_env("parse_portfolio", [
        run_storage.upload_input("parse_portfolio/simple.csv", (fixtures_dir / "simple.csv").read_bytes())
    ])
    if traceparent is not None:
        env.variables[telemetry.TRACEPARENT_ENV] = traceparent

    assert run(env.variables) == 0

    spans = runner_spans(recorded_spans)
    root = spans[0]
    assert root.name == "runner" and root.parent is None
    assert {span.context.trace_id for span in spans} == {root.context.trace_id}
    assert [span.name for span in spans] == [
        "runner", "runner.download", "runner.task", "runner.upload", "runner.upload", "runner.result", "runner.complete"
    ]
    if traceparent is not None:
        log = run_storage.read_blob(env.output_prefix + "runner.log").decode()
        assert "TRACEPARENT is not a valid W3C traceparent" in log


@pytest.mark.azurite
def test_a_telemetry_setting_the_runner_cannot_use_is_logged_and_the_run_succeeds(
    recorded_spans: Any, runner_env: BuildEnv, run_storage: StorageView, fixtures_dir: Path
) -> None:
    env = runner_env("parse_portfolio", [
        run_storage.upload_input("parse_portfolio/simple.csv", (fixtures_dir / "simple.csv").read_bytes())
    ])
    env.variables["OTEL_TRACES_EXPORTER"] = "bogus"

    assert run(env.variables) == 0

    [event] = run_storage.receive_events()
    assert event.status is RunnerEventStatus.SUCCEEDED
    log = run_storage.read_blob(env.output_prefix + "runner.log").decode()
    assert "WARNING runner.run" in log and "telemetry is off for this run: OTEL_TRACES_EXPORTER='bogus'" in log


@pytest.mark.parametrize(
    ("environ", "setting"),
    [
        ({"OTEL_TRACES_EXPORTER": "bogus"}, "OTEL_TRACES_EXPORTER"),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
         "OTEL_EXPORTER_OTLP_PROTOCOL"),
        ({"APPLICATIONINSIGHTS_CONNECTION_STRING": "InstrumentationKey=k",
          "APPLICATIONINSIGHTS_AUTHENTICATION_STRING": "Authorization=Basic"},
         "APPLICATIONINSIGHTS_AUTHENTICATION_STRING"),
    ],
)
def test_a_bad_telemetry_setting_becomes_a_problem_naming_it_not_an_error(
    environ: dict[str, str], setting: str
) -> None:
    problem = tracing.start_telemetry(environ)

    assert problem is not None and problem.startswith("telemetry is off for this run: ") and setting in problem


def test_an_exporter_that_cannot_be_built_is_reported_without_repeating_its_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    connection_string = "InstrumentationKey=" + secrets.token_hex(16)

    def failing_configure(*args: Any, **kwargs: Any) -> None:
        raise ValueError(f"cannot use {connection_string}")

    monkeypatch.setattr(telemetry, "configure", failing_configure)

    problem = tracing.start_telemetry({"APPLICATIONINSIGHTS_CONNECTION_STRING": connection_string})

    assert problem is not None and "APPLICATIONINSIGHTS_CONNECTION_STRING" in problem
    assert connection_string not in problem


# -- python -m runner, exporting over OTLP/HTTP as in a container -----------------------------------------


@dataclass(frozen=True)
class ReceivedSpan:
    trace_id: str
    span_id: str
    parent_span_id: str
    name: str
    service: str
    status_code: int
    attributes: dict[str, Any]


class OtlpReceiver:
    """Takes OTLP/HTTP exports on a loopback port and keeps the spans of `/v1/traces`."""

    def __init__(self) -> None:
        self.spans: list[ReceivedSpan] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.path == "/v1/traces":
                    receiver.spans.extend(_spans_of(ExportTraceServiceRequest.FromString(body)))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _spans_of(request: ExportTraceServiceRequest) -> Iterator[ReceivedSpan]:
    for resource_spans in request.resource_spans:
        resource = {pair.key: pair.value.string_value for pair in resource_spans.resource.attributes}
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                attributes = {
                    pair.key: getattr(pair.value, pair.value.WhichOneof("value") or "string_value")
                    for pair in span.attributes
                }
                yield ReceivedSpan(
                    span.trace_id.hex(), span.span_id.hex(), span.parent_span_id.hex(), span.name,
                    resource.get("service.name", ""), span.status.code, attributes,
                )


@pytest.fixture
def otlp() -> Iterator[OtlpReceiver]:
    receiver = OtlpReceiver()
    yield receiver
    receiver.close()


def exporting(env: RunnerEnvironment, otlp: OtlpReceiver) -> dict[str, str]:
    """The runner's environment with the job's TRACEPARENT and an OTLP endpoint, as the app passes them."""
    return {
        **env.variables,
        telemetry.TRACEPARENT_ENV: TRACEPARENT,
        "OTEL_EXPORTER_OTLP_ENDPOINT": otlp.endpoint,
        # A long batch delay: only the exit's flush (telemetry.shutdown) can have sent the spans.
        "OTEL_BSP_SCHEDULE_DELAY": "600000",
    }


@pytest.mark.azurite
def test_the_runner_process_exports_its_spans_before_it_exits(
    run_runner: Callable[..., RunnerProcess], runner_env: BuildEnv, run_storage: StorageView,
    fixtures_dir: Path, otlp: OtlpReceiver,
) -> None:
    env = runner_env("parse_portfolio", [
        run_storage.upload_input("parse_portfolio/simple.csv", (fixtures_dir / "simple.csv").read_bytes())
    ])

    process = run_runner(exporting(env, otlp))

    assert process.exit_code == 0, process.stderr
    names = sorted(span.name for span in otlp.spans)
    assert names == sorted(
        ["runner", "runner.download", "runner.task", "runner.upload", "runner.upload", "runner.result",
         "runner.complete"]
    )
    assert {span.trace_id for span in otlp.spans} == {TRACE_ID}
    assert {span.service for span in otlp.spans} == {tracing.SERVICE_NAME}
    [root] = [span for span in otlp.spans if span.name == "runner"]
    assert root.parent_span_id == PARENT_SPAN_ID
    for span in otlp.spans:
        assert span.attributes[telemetry.RUN_ID_ATTRIBUTE] == env.run_id
        assert not any(env.token in str(value) for value in span.attributes.values())


@pytest.mark.azurite
def test_a_runner_stopped_by_sigterm_exports_its_spans_marked_terminated(
    runner_image_dir: Path, runner_env: BuildEnv, run_storage: StorageView, otlp: OtlpReceiver, tmp_path: Path,
) -> None:
    env = runner_env("create_report", [run_storage.upload_input("parsed/portfolio.csv", b"isin\nGB0007980591\n")])
    env.variables["RUNNER_TASK_COMMAND"] = json.dumps([sys.executable, str(STAND_INS / "fake_run_pacta.py"), "--hang"])
    env.variables["RUNNER_WORK_DIR"] = str(tmp_path)
    runner = subprocess.Popen(
        [sys.executable, "-m", "runner"], cwd=runner_image_dir,
        env={"PATH": os.environ.get("PATH", ""), **exporting(env, otlp)},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        pid_file = tmp_path / "output" / "analysis-output" / "hanging.pid"
        wait_for(pid_file.exists, what="the stand-in to start hanging", timeout=30)

        runner.send_signal(signal.SIGTERM)

        assert runner.wait(timeout=RUNNER_TIMEOUT_SECONDS) == 143
    finally:
        runner.kill()
    spans = {span.name: span for span in otlp.spans}
    assert {"runner", "runner.download", "runner.task", "runner.result", "runner.complete"} <= set(spans)
    for name in ("runner", "runner.task"):
        assert spans[name].status_code == StatusCode.ERROR.value
        assert spans[name].attributes[tracing.ERROR_TYPE_ATTRIBUTE] == "terminated"


def test_log_records_exported_through_opentelemetry_have_the_secrets_replaced(tmp_path: Path) -> None:
    from opentelemetry.instrumentation.logging.handler import LoggingHandler
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor

    from runner.logs import run_logging

    token = secrets.token_urlsafe(32)
    exporter = InMemoryLogRecordExporter()
    provider = LoggerProvider()
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    exporting_handler = LoggingHandler(logger_provider=provider)  # as configure_azure_monitor adds it
    root = logging.getLogger()
    root.addHandler(exporting_handler)
    try:
        with run_logging(tmp_path / "runner.log", run_id="run-0123", secrets=[token]):
            logging.getLogger("runner.test").warning("the token is %s", token)
            try:
                raise ValueError(f"a bug quoting {token}")
            except ValueError:
                logging.getLogger("runner.test").exception("failed")
        assert exporting_handler in root.handlers
    finally:
        root.removeHandler(exporting_handler)

    records = [exported.log_record for exported in exporter.get_finished_logs()]
    assert [str(record.body).splitlines()[0] for record in records] == ["the token is ***", "failed"]
    assert "ValueError: a bug quoting ***" in str(records[1].body)
    assert all((record.attributes or {})["run_id"] == "run-0123" for record in records)
    for record in records:
        assert token not in str(record.body) and token not in str(dict(record.attributes or {}))
