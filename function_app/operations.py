"""Operations on a run: `POST /api/runs/{run_id}/cancel` and `POST /api/runs/{run_id}/rerun`.

Cancel takes an optional JSON body `{"reason": str, "by": str}` and answers 202 with the run's view
(as `GET /api/runs/{run_id}`) once the cancel is accepted; rerun answers 201
`{"run_id": <new>, "rerun_of": <old>}`, or 200 with the same shape when the rerun a repeated POST
asked for is still under way. Errors: 400 `invalid_body`, 404 `run_not_found`, 409 with the refusal's
code (`run_already_ended`, `source_version_gone`, ...), each as `{"error": {"code", "message"}}`.
"""

from __future__ import annotations

from datetime import UTC, datetime

import azure.durable_functions as df
import azure.functions as func
from pydantic import ValidationError

from function_app.http import error_response, errors_as_json, json_response
from orchestrations import operations, runtime
from orchestrations.contracts import CancelBody, Cancellation, describe_validation_error
from orchestrations.errors import RunnerOrchestratorError
from orchestrations.run_store import RunNotFoundError

bp = df.Blueprint()


@bp.route(route="runs/{run_id}/cancel", methods=["POST"])
@bp.durable_client_input(client_name="client")
@errors_as_json
async def cancel_run(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    requested_at = datetime.now(UTC)  # here, not in the orchestrator: when the request came in
    try:
        body = _cancel_body(req.get_body())
    except ValueError as exc:
        return error_response(400, "invalid_body", str(exc))
    cancellation = Cancellation(requested_by=body.by, reason=body.reason, requested_at=requested_at)
    try:
        view = await operations.cancel_run(
            req.route_params["run_id"], client, run_store=runtime.run_store(), cancellation=cancellation
        )
    except RunnerOrchestratorError as exc:
        return _refusal(exc)
    return json_response(view, status=202)


@bp.route(route="runs/{run_id}/rerun", methods=["POST"])
@bp.durable_client_input(client_name="client")
@errors_as_json
async def rerun_run(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    settings = runtime.settings()
    try:
        rerun = await operations.rerun(
            req.route_params["run_id"], client, run_store=runtime.run_store(), blobs=runtime.blob_service(),
            max_bytes=settings.upload_max_bytes, input_scopes=settings.input_scopes, policy=settings.run_policy(),
            now=datetime.now(UTC),
        )
    except RunnerOrchestratorError as exc:
        return _refusal(exc)
    return json_response({"run_id": rerun.run_id, "rerun_of": rerun.rerun_of}, status=201 if rerun.started else 200)


def _cancel_body(raw: bytes) -> CancelBody:
    """The body as a CancelBody (none at all: no reason, no name); ValueError saying what is wrong."""
    if not raw.strip():
        return CancelBody()
    try:
        return CancelBody.model_validate_json(raw)
    except ValidationError as exc:
        raise ValueError(
            'The body must be a JSON object with optional "reason" and "by" strings: '
            + describe_validation_error(exc)
        ) from None


def _refusal(exc: RunnerOrchestratorError) -> func.HttpResponse:
    if isinstance(exc, RunNotFoundError):
        return error_response(404, exc.code, exc.message)
    if isinstance(exc, operations.OperationRefusedError):
        return error_response(409, exc.code, exc.message)
    raise exc  # not a refusal: errors_as_json answers 500 in the error shape
