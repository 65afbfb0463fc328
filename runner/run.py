"""One run, start to finish: environment -> inputs -> task -> outputs -> result -> log -> message.

Every input must lie in one of the request's scopes (`RUNNER_INPUT_SCOPES`); one that does not fails
the run (`input_not_allowed`) before anything is downloaded. A stop (SIGTERM, `TerminatedError`) is
reported as `terminated`, whatever the task was doing.

Every failure becomes a RunnerError with a stable code. Whatever happened, the runner then still
tries to upload a result document and its own log and to send the completion message, in that
order (so both blobs exist when the message arrives), and exits 0 (succeeded), 1 (failed) or
2 (bad environment). Only when the `RUNNER_*` variables themselves are broken can it not report;
then it prints the reason to stderr.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

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
    try:
        settings = RunnerSettings.from_environ(environ)
        workspace = Workspace.create(settings.work_dir)
    except InvalidEnvironmentError as error:
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
            if format_problem:
                logger.warning("%s", format_problem)
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
    try:
        storage = RunStorage(connect(settings), settings.output_prefix)
    except ValueError as error:  # a malformed connection string or account URL
        logger.error("cannot build the storage clients, so cannot report either: %s", error)
        return EXIT_BAD_ENVIRONMENT
    try:
        storage.check_credential()
    except StorageCredentialError as error:  # no token: nothing can be read, written or reported
        logger.error("cannot reach storage, so cannot report either: %s", error.message)
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
        return _report(settings, storage, workspace, progress, started_at)
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
    task = get_task(task_settings.task_type)
    logger.info(
        "task %s (%s): %d input(s)",
        task_settings.task_id,
        task_settings.task_type,
        len(task_settings.blob_uris),
    )
    check_input_scopes(task_settings.blob_uris, task_settings.input_scopes)
    sources = _download_inputs(storage, task_settings.blob_uris, workspace)
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


def _download_inputs(storage: RunStorage, uris: list[str], workspace: Workspace) -> dict[str, str]:
    """Download each input into `input/`; return local file name -> blob URI."""
    sources: dict[str, str] = {}
    for uri in uris:
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
) -> int:
    """Upload the result document and the log, send the completion message; return the exit code."""
    finished_at = _utc_now()
    error = progress.error
    result_uri = None
    if progress.task is None:
        logger.warning("no result document: PACTA's task variables are not valid")
    else:
        try:
            document = build_result_document(
                progress.task,
                progress.outcome,
                progress.uploaded,
                run_id=settings.run_id,
                error=_run_error(error),
                started_at=started_at,
                finished_at=finished_at,
                log_uri=storage.output_uri(LOG_NAME),
            )
            body = render_result_document(document).encode("utf-8")
            proof = result_proof(settings.callback_token.get_secret_value(), body)
            result_uri = storage.upload_bytes(
                body, RESULT_NAME, content_type="application/json", metadata={RESULT_PROOF_METADATA: proof}
            )
        except _REPORTABLE as failure:
            upload_error = _as_runner_error(failure)
            logger.error("%s", upload_error.message)
            error = error or upload_error
    exit_code = EXIT_SUCCEEDED if error is None else error.exit_code
    if error is None:
        logger.info("run succeeded with %d output(s)", len(progress.uploaded))
    else:
        logger.error("run failed (%s): %s", error.code, error.message)
    log_uri = _upload_log(storage, workspace)
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
        storage.send_event(event)
    except _REPORTABLE as failure:
        logger.error(
            "%s The orchestrator will notice the job ended through its status checks.",
            _as_runner_error(failure).message,
        )
        return exit_code or EXIT_FAILED
    return exit_code


def _upload_log(storage: RunStorage, workspace: Workspace) -> str | None:
    """Upload `runner.log`; a failure is only a warning, the outputs matter more than the log."""
    flush_logs()
    try:
        return storage.upload_file(
            workspace.log_path, LOG_NAME, content_type="text/plain; charset=utf-8"
        )
    except _REPORTABLE as failure:
        logger.warning("%s", _as_runner_error(failure).message)
        return None


def _run_error(error: RunnerError | None) -> RunError | None:
    if error is None:
        return None
    return error.to_run_error()


def _as_runner_error(failure: RunnerError | TerminatedError) -> RunnerError:
    return failure.error if isinstance(failure, TerminatedError) else failure


def _utc_now() -> datetime:
    return datetime.now(UTC)
