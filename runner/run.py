"""One run, start to finish: environment -> inputs -> task -> outputs -> result -> log -> message.

Every input must lie in one of the request's scopes (`RUNNER_INPUT_SCOPES`); one that does not fails
the run (`input_not_allowed`) before anything is downloaded. A stop (SIGTERM, `TerminatedError`) is
reported as `terminated`, whatever the task was doing.

Every failure becomes a RunnerError with a stable code. Whatever happened, the runner then still
tries to upload a result document and its own log and to send the completion message, in that
order (so both blobs exist when the message arrives), and exits 0 (succeeded), 1 (failed) or
2 (bad environment). Only when the `RUNNER_*` variables themselves are broken can it not report;
then it prints the reason to stderr.

Each phase is a span of the run's trace (runner/tracing.py), exported before the process exits
whichever way the run ended.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind

from orchestrations import telemetry
from orchestrations.contracts import (
    RESULT_PROOF_METADATA,
    RunError,
    RunnerEnv,
    RunnerEvent,
    RunnerEventStatus,
    input_scope_violation,
    parse_blob_uri,
    result_proof,
)
from runner import __version__
from runner.environment import RunnerSettings, TaskSettings, log_format_from_environ
from runner.errors import (
    EXIT_BAD_ENVIRONMENT,
    EXIT_FAILED,
    EXIT_SUCCEEDED,
    InvalidEnvironmentError,
    RunnerError,
    TerminatedError,
)
from runner.logs import flush_logs, run_logging
from runner.result import LOG_NAME, RESULT_NAME, build_result_document, render_result_document
from runner.storage import BlobFile, RunStorage, StorageCredentialError, UploadsFailedError, connect
from runner.tasks import get_task
from runner.tasks.base import OutputFile, TaskInput, TaskOutcome
from runner.tracing import (
    ATTEMPT_ATTRIBUTE,
    BLOB_URI_ATTRIBUTE,
    mark_failed,
    run_span,
    start_telemetry,
    stop_telemetry,
)
from runner.workspace import Workspace

logger = logging.getLogger(__name__)

# What the report catches where it can go on: a failure, or the stop (SIGTERM) arriving meanwhile.
_REPORTABLE = (RunnerError, TerminatedError)


@dataclass
class _Progress:
    """What the run has got so far; the report at the end uses whatever is there."""

    task: TaskSettings | None = None
    outcome: TaskOutcome = field(default_factory=TaskOutcome)
    uploaded: list[tuple[OutputFile, str]] = field(default_factory=list)
    error: RunnerError | None = None


def run(environ: Mapping[str, str]) -> int:
    """Run the task the environment describes; return the process exit code."""
    started_at = _utc_now()
    telemetry_problem = start_telemetry(environ)
    try:
        return _run(environ, started_at, telemetry_problem)
    finally:
        # On every way out, a stop (SIGTERM) and a bad environment included: the spans are buffered.
        stop_telemetry()


def _run(environ: Mapping[str, str], started_at: datetime, telemetry_problem: str | None) -> int:
    try:
        settings = RunnerSettings.from_environ(environ)
        workspace = Workspace.create(settings.work_dir)
    except InvalidEnvironmentError as error:
        if telemetry_problem:
            print(f"runner: {telemetry_problem}", file=sys.stderr)
        print(
            f"runner: cannot start, and cannot send a completion message: {error.message}",
            file=sys.stderr,
        )
        return error.exit_code
    try:
        console_format, format_problem = log_format_from_environ(environ)
        with run_logging(
            workspace.log_path, run_id=settings.run_id, secrets=settings.secrets(), console_format=console_format
        ):
            for problem in (format_problem, telemetry_problem):
                if problem:
                    logger.warning("%s", problem)
            return _run_in_workspace(environ, settings, workspace, started_at)
    finally:
        workspace.remove_if_temporary()


def _run_in_workspace(
    environ: Mapping[str, str], settings: RunnerSettings, workspace: Workspace, started_at: datetime
) -> int:
    logger.info(
        "pacta runner %s starting in %s; outputs go to %s",
        __version__,
        workspace.root,
        settings.output_prefix,
    )
    traceparent = telemetry.traceparent_from_environ(environ)
    if traceparent is None and environ.get(telemetry.TRACEPARENT_ENV, "").strip():
        logger.warning(
            "%s is not a valid W3C traceparent; the runner's spans start a trace of their own",
            telemetry.TRACEPARENT_ENV,
        )
    # The job's entry point: a consumer of the app's asynchronous start (Application Insights shows it as a request).
    with run_span(
        "runner",
        settings.run_id,
        traceparent=traceparent,
        kind=SpanKind.CONSUMER,
        attributes={ATTEMPT_ATTRIBUTE: settings.attempt},
    ) as root:
        return _run_traced(environ, settings, workspace, started_at, root)


def _run_traced(
    environ: Mapping[str, str],
    settings: RunnerSettings,
    workspace: Workspace,
    started_at: datetime,
    root: Span,
) -> int:
    try:
        storage = RunStorage(connect(settings), settings.output_prefix, run_id=settings.run_id)
    except ValueError as error:  # a malformed connection string or account URL
        logger.error("cannot build the storage clients, so cannot report either: %s", error)
        mark_failed(root, "invalid_environment")
        return EXIT_BAD_ENVIRONMENT
    try:
        storage.check_credential()
    except StorageCredentialError as error:  # no token: nothing can be read, written or reported
        logger.error("cannot reach storage, so cannot report either: %s", error.message)
        mark_failed(root, error.code)
        storage.close()
        return error.exit_code
    try:
        progress = _Progress()
        try:
            _run_task(environ, settings.run_id, storage, workspace, progress)
        except _REPORTABLE as error:
            progress.error = _as_runner_error(error)
        except Exception as error:  # the last line of defence: a bug still ends in a failed message
            logger.exception("the run failed unexpectedly")
            progress.error = RunnerError(
                "task_failed", f"The runner failed unexpectedly: {type(error).__name__}: {error}"
            )
        if TerminatedError.raised and (progress.error is None or progress.error.code != "terminated"):
            logger.warning("the stop (SIGTERM) was raised where Python ignores exceptions; reported all the same")
            progress.error = TerminatedError().error
        return _report(settings, storage, workspace, progress, started_at, root)
    finally:
        storage.close()


def _run_task(
    environ: Mapping[str, str],
    run_id: str,
    storage: RunStorage,
    workspace: Workspace,
    progress: _Progress,
) -> None:
    task_settings = progress.task = TaskSettings.from_environ(environ)
    task_type = {telemetry.TASK_TYPE_ATTRIBUTE: task_settings.task_type.value}
    trace.get_current_span().set_attributes(task_type)  # the root's: known only now
    task = get_task(task_settings.task_type)
    logger.info(
        "task %s (%s): %d input(s)",
        task_settings.task_id,
        task_settings.task_type,
        len(task_settings.blob_uris),
    )
    check_input_scopes(task_settings.blob_uris, task_settings.input_scopes)
    sources = _download_inputs(storage, task_settings.blob_uris, workspace, run_id)
    with run_span("runner.task", run_id, attributes=task_type) as span:
        outcome = progress.outcome = task(
            TaskInput(
                task_settings.task_type,
                task_settings.request,
                workspace.input_dir,
                workspace.output_dir,
                sources,
                run_id=run_id,
                environ=environ,
            )
        )
        if outcome.error is not None:  # the task ran and produced nothing usable: its outputs still go up
            mark_failed(span, outcome.error.code)
    _upload_outputs(storage, outcome, progress)
    if outcome.error is not None:
        raise RunnerError(outcome.error.code, outcome.error.message)


def _upload_outputs(storage: RunStorage, outcome: TaskOutcome, progress: _Progress) -> None:
    """Upload outputs and attachments concurrently; record each output that made it."""
    files = [_blob_file(storage, output) for output in [*outcome.outputs, *outcome.attachments]]
    try:
        uris = storage.upload_files(files)
    except UploadsFailedError as error:
        progress.uploaded.extend(
            (output, error.uploaded[index])
            for index, output in enumerate(outcome.outputs)
            if index in error.uploaded
        )
        raise
    progress.uploaded.extend(zip(outcome.outputs, uris, strict=False))


def _blob_file(storage: RunStorage, output: OutputFile) -> BlobFile:
    if output.container is None:
        return storage.output_file(output.path, output.blob_name, content_type=output.content_type)
    return BlobFile(output.path, output.container, output.blob_name, output.content_type)


def check_input_scopes(uris: list[str], scopes: list[str]) -> None:
    """Refuse the run (`input_not_allowed`) when any input lies outside the scopes, before any download."""
    refused = [
        f"BlobURIs[{index}]: {reason}"
        for index, uri in enumerate(uris)
        if (reason := input_scope_violation(uri, scopes)) is not None
    ]
    if refused:
        more = f"; and {len(refused) - 1} more" if len(refused) > 1 else ""
        raise RunnerError(
            "input_not_allowed",
            f"The request may not read {len(refused)} of its {len(uris)} input(s), so nothing was downloaded: "
            f"{refused[0]}{more}. A request may read only the containers and prefixes the app passes in "
            f"{RunnerEnv.INPUT_SCOPES}; name inputs inside them.",
        )


def _download_inputs(storage: RunStorage, uris: list[str], workspace: Workspace, run_id: str) -> dict[str, str]:
    """Download each input into `input/`, a span each; return local file name -> blob URI."""
    sources: dict[str, str] = {}
    for uri in uris:
        with run_span("runner.download", run_id, attributes={BLOB_URI_ATTRIBUTE: uri}):
            _, blob_name = parse_blob_uri(uri)
            name = workspace.local_input_name(blob_name)
            storage.download(uri, workspace.input_dir / name)
        sources[name] = uri
    return sources


def _report(
    settings: RunnerSettings,
    storage: RunStorage,
    workspace: Workspace,
    progress: _Progress,
    started_at: datetime,
    root: Span,
) -> int:
    """Upload the result document and the log, send the completion message; return the exit code."""
    finished_at = _utc_now()
    error = progress.error
    with run_span("runner.result", settings.run_id) as span:
        result_uri, upload_error = _upload_result(settings, storage, progress, started_at, finished_at)
        error = error or upload_error
        if error is None:
            logger.info("run succeeded with %d output(s)", len(progress.uploaded))
        else:
            logger.error("run failed (%s): %s", error.code, error.message)
        log_uri, log_error = _upload_log(storage, workspace)
        span_failure = upload_error or log_error
        if span_failure is not None:
            mark_failed(span, span_failure.code)
    exit_code = EXIT_SUCCEEDED if error is None else error.exit_code
    if error is not None:
        mark_failed(root, error.code)
    event = RunnerEvent(
        run_id=settings.run_id,
        attempt=settings.attempt,
        token=settings.callback_token.get_secret_value(),
        status=RunnerEventStatus.SUCCEEDED if error is None else RunnerEventStatus.FAILED,
        exit_code=exit_code,
        error=_run_error(error),
        result_uri=result_uri,
        log_uri=log_uri,
        outputs_count=len(progress.uploaded),
        started_at=started_at,
        finished_at=finished_at,
    )
    try:
        with run_span("runner.complete", settings.run_id):
            storage.send_event(event)
    except _REPORTABLE as failure:
        send_error = _as_runner_error(failure)
        logger.error(
            "%s The orchestrator will notice the job ended through its status checks.", send_error.message
        )
        mark_failed(root, (error or send_error).code)
        return exit_code or EXIT_FAILED
    return exit_code


def _upload_result(
    settings: RunnerSettings,
    storage: RunStorage,
    progress: _Progress,
    started_at: datetime,
    finished_at: datetime,
) -> tuple[str | None, RunnerError | None]:
    """Upload `result.json`, with its proof; return its URI, or the failure to upload it."""
    if progress.task is None:
        logger.warning("no result document: PACTA's task variables are not valid")
        return None, None
    try:
        document = build_result_document(
            progress.task,
            progress.outcome,
            progress.uploaded,
            run_id=settings.run_id,
            error=_run_error(progress.error),
            started_at=started_at,
            finished_at=finished_at,
            log_uri=storage.output_uri(LOG_NAME),
        )
        body = render_result_document(document).encode("utf-8")
        proof = result_proof(settings.callback_token.get_secret_value(), body)
        uri = storage.upload_bytes(
            body, RESULT_NAME, content_type="application/json", metadata={RESULT_PROOF_METADATA: proof}
        )
    except _REPORTABLE as failure:
        upload_error = _as_runner_error(failure)
        logger.error("%s", upload_error.message)
        return None, upload_error
    return uri, None


def _upload_log(storage: RunStorage, workspace: Workspace) -> tuple[str | None, RunnerError | None]:
    """Upload `runner.log`; a failure is only a warning, the outputs matter more than the log."""
    flush_logs()
    try:
        return storage.upload_file(workspace.log_path, LOG_NAME, content_type="text/plain; charset=utf-8"), None
    except _REPORTABLE as failure:
        log_error = _as_runner_error(failure)
        logger.warning("%s", log_error.message)
        return None, log_error


def _run_error(error: RunnerError | None) -> RunError | None:
    if error is None:
        return None
    return error.to_run_error()


def _as_runner_error(failure: RunnerError | TerminatedError) -> RunnerError:
    return failure.error if isinstance(failure, TerminatedError) else failure


def _utc_now() -> datetime:
    return datetime.now(UTC)
