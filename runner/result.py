"""The result document (`result.json`): PACTA's response shape plus our `Run` metadata.

parse_portfolio gives PACTA's `parsed-portfolio` data (`Outputs`: Source, Blob, Portfolio); the
other task types give `Artifacts`. A PACTA server can consume the document unchanged.
"""

from __future__ import annotations

from datetime import datetime

from orchestrations.contracts import (
    RESULT_DOCUMENT_NAME,
    PactaArtifact,
    PactaBlob,
    PactaParsedOutput,
    ResultDocument,
    RunError,
    RunMetadata,
    RunnerEventStatus,
    TaskType,
)
from runner.environment import TaskSettings
from runner.tasks.base import OutputFile, TaskOutcome

RESULT_NAME = RESULT_DOCUMENT_NAME
LOG_NAME = "runner.log"


def build_result_document(
    task: TaskSettings,
    outcome: TaskOutcome,
    uploaded: list[tuple[OutputFile, str]],
    *,
    run_id: str,
    error: RunError | None,
    started_at: datetime,
    finished_at: datetime,
    log_uri: str,
) -> ResultDocument:
    """The document for a finished run; `uploaded` pairs each output with its blob URI."""
    run = RunMetadata(
        run_id=run_id,
        task_type=task.task_type,
        status=RunnerEventStatus.FAILED if error else RunnerEventStatus.SUCCEEDED,
        started_at=started_at,
        finished_at=finished_at,
        log_uri=log_uri,
        error=error,
        source_files=outcome.source_files,
    )
    if task.task_type is TaskType.PARSE_PORTFOLIO:
        outputs = [
            PactaParsedOutput(
                Source=output.source_uri or "",
                Blob=PactaBlob(BlobURI=uri, FileType=output.file_type, FileName=output.path.name),
                Portfolio=output.portfolio or {},
            )
            for output, uri in uploaded
        ]
        return ResultDocument(TaskID=task.task_id, Request=task.request, Outputs=outputs, Run=run)
    artifacts = [
        PactaArtifact(BlobURI=uri, FileName=output.path.name, FileType=output.file_type)
        for output, uri in uploaded
    ]
    return ResultDocument(TaskID=task.task_id, Request=task.request, Artifacts=artifacts, Run=run)


def render_result_document(document: ResultDocument) -> str:
    """The JSON text: PACTA's shape has `Outputs` or `Artifacts`, so the unused one is left out."""
    unused = "Artifacts" if document.Outputs is not None else "Outputs"
    return document.model_dump_json(exclude={unused})
