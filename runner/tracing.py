"""The runner's spans: one per phase of the run, in the run's trace (orchestrations/telemetry.py).

The job is started with the app's `start_job` span as `TRACEPARENT`; the runner's root span, `runner`,
is its child (a missing or invalid `TRACEPARENT` starts a trace of its own), and every phase is a child
of the root: `runner.download` (one per input), `runner.task`, `runner.upload` (one per output, in the
upload tasks), `runner.result` (result document and log) and `runner.complete` (the completion message).
Where the spans go is read from the standard settings by `telemetry.configure`; a setting it cannot use
turns telemetry off for the run, never fails it.

Attributes name the run, the task type, the attempt and blob URIs (az://container/path), and a failure's
stable code: never the callback token or a storage credential. Not imported by `parse-portfolio`.
"""

from __future__ import annotations

import traceback
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from orchestrations import telemetry
from runner.errors import RunnerError, TerminatedError

SERVICE_NAME = "pacta-runner"
BLOB_URI_ATTRIBUTE = telemetry.BLOB_URI_ATTRIBUTE
ATTEMPT_ATTRIBUTE = "pacta.run.attempt"
# OpenTelemetry's semantic convention for what kind of error ended an operation: here the run error's code.
ERROR_TYPE_ATTRIBUTE = "error.type"


def start_telemetry(environ: Mapping[str, str]) -> str | None:
    """Install the exporters the environment asks for; return a problem to log instead of failing the run."""
    try:
        telemetry.configure(SERVICE_NAME, environ=environ, export_logs=True)
    except telemetry.TelemetryConfigError as error:  # its message names the setting
        return f"telemetry is off for this run: {error}"
    except Exception as error:  # an exporter that cannot be built; its message may repeat a connection string
        return (
            f"telemetry is off for this run: its exporter could not be set up ({type(error).__name__}); "
            "check APPLICATIONINSIGHTS_CONNECTION_STRING or the OTEL_* settings"
        )
    return None


def stop_telemetry() -> None:
    """Export the spans and log records still buffered: the process is about to exit."""
    telemetry.shutdown()


@contextmanager
def run_span(
    name: str,
    run_id: str,
    *,
    traceparent: str | None = None,
    kind: SpanKind = SpanKind.INTERNAL,
    attributes: Mapping[str, str | int | float | bool | None] | None = None,
) -> Iterator[Span]:
    """`telemetry.run_span` that also marks a RunnerError or a stop (SIGTERM) leaving the block as the
    span's failure, with its code; the SDK records other exceptions itself."""
    failure: RunnerError | TerminatedError | None = None
    with telemetry.run_span(name, run_id, traceparent=traceparent, kind=kind, attributes=attributes) as span:
        try:
            yield span
        except (RunnerError, TerminatedError) as error:
            # Caught here, not left to the SDK: its status would carry the message, and it ignores a stop
            # (a BaseException) altogether. The stack is the runner's own: the chained cause (an SDK's
            # error, whose text quotes the service's response) stays in runner.log.
            stack = "".join(traceback.format_exception(error, chain=False))
            span.record_exception(error, attributes={"exception.stacktrace": stack})
            mark_failed(span, _code_of(error))
            failure = error
    if failure is not None:
        raise failure


def mark_failed(span: Span, code: str) -> None:
    """Mark `span` as failed with the run error's stable code (never its message's details)."""
    span.set_status(Status(StatusCode.ERROR, code))
    span.set_attribute(ERROR_TYPE_ATTRIBUTE, code)


def _code_of(error: RunnerError | TerminatedError) -> str:
    return error.error.code if isinstance(error, TerminatedError) else error.code
