"""The run's result document, read only from the run's own folder and only if its runner wrote it.

The runner writes `result.json` before it sends its completion message, with a proof (an HMAC of the
document's bytes under the run's callback token) in the blob's metadata. The document is the durable
truth of how a run ended: when the message was lost, poisoned or never sent, the orchestrator records
the run from it. A document without a valid proof (forged, edited, or from another run or attempt)
counts as none, and so does one that lists an output outside the run's own folders.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from azure.core.exceptions import ResourceNotFoundError
from pydantic import ValidationError

from orchestrations import runtime
from orchestrations.callback_tokens import is_valid_proof
from orchestrations.contracts import (
    RESULT_DOCUMENT_NAME,
    RESULT_PROOF_METADATA,
    ResultDocument,
    TaskType,
    blob_uri,
    describe_validation_error,
    input_scope_violation,
)

logger = logging.getLogger(__name__)

# A result document lists outputs, not their contents: anything larger is not one of ours.
MAX_RESULT_DOCUMENT_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True)
class VerifiedResult:
    uri: str
    document: ResultDocument


class ResultUnavailableError(Exception):
    """No result document of this run could be used; the message says why."""


def result_blob_name(run_id: str) -> str:
    return f"{run_id}/{RESULT_DOCUMENT_NAME}"


def load_verified_result(run_id: str, attempt: int) -> VerifiedResult:
    """The result document of this attempt of this run; ResultUnavailableError names why there is none.

    Other storage errors propagate, so the calling activity is retried.
    """
    settings = runtime.settings()
    container, name = settings.runs_container, result_blob_name(run_id)
    uri = blob_uri(container, name)
    blob = runtime.blob_service().get_blob_client(container, name)
    try:
        # One request (the SDK's first get reaches 32 MiB): the body, its metadata, and the blob's size in the
        # range's reply; a byte more than any result document tells a larger one apart without reading it all.
        download = blob.download_blob(offset=0, length=MAX_RESULT_DOCUMENT_BYTES + 1)
        body = download.readall()
    except ResourceNotFoundError:
        raise ResultUnavailableError(f"there is no result document at {uri}") from None
    if len(body) > MAX_RESULT_DOCUMENT_BYTES:
        size = (download.properties.content_range or "").rpartition("/")[2] or f"more than {len(body) - 1}"
        raise ResultUnavailableError(f"{uri} is {size} bytes, larger than any result document")
    metadata = {key.lower(): value for key, value in (download.properties.metadata or {}).items()}
    proof = metadata.get(RESULT_PROOF_METADATA)
    if not proof:
        raise ResultUnavailableError(f"the result document at {uri} carries no proof of its runner")
    if not is_valid_proof(settings.callback_token_key, run_id, attempt, body, proof):
        raise ResultUnavailableError(
            f"the result document at {uri} was not written by this run's runner (attempt {attempt}): "
            "its proof does not match"
        )
    try:
        document = ResultDocument.model_validate_json(body)
    except ValidationError as exc:
        raise ResultUnavailableError(
            f"the result document at {uri} is not valid: {describe_validation_error(exc)[:500]}"
        ) from None
    if document.Run.run_id != run_id:
        raise ResultUnavailableError(f"the result document at {uri} is run {document.Run.run_id}'s, not {run_id}'s")
    scopes = own_output_scopes(document, run_id)
    for output in document.output_uris():
        if input_scope_violation(output, scopes) is not None:
            raise ResultUnavailableError(
                f"the result document at {uri} lists {output!r}, outside the run's own folders ({', '.join(scopes)})"
            )
    return VerifiedResult(uri, document)


def own_output_scopes(document: ResultDocument, run_id: str) -> list[str]:
    """Where a run's outputs may be: its folder of the runs container; for create_* tasks also its
    analysis's folder of the task type's artifacts container (the request's AnalysisID, else the run id)."""
    settings = runtime.settings()
    scopes = [f"az://{settings.runs_container}/{run_id}/"]
    task_type = document.Run.task_type
    if task_type is not TaskType.PARSE_PORTFOLIO:
        analysis_id = document.Request.get("AnalysisID") or run_id
        scopes.append(f"az://{settings.artifacts_container(task_type)}/{analysis_id}/")
    return scopes
