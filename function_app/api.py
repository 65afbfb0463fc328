"""The status API: `GET /api/runs`, `GET /api/runs/{run_id}`, `GET /api/runs/{run_id}/log`, `GET /api/openapi.json`.

Every answer that is not 2xx has the one error shape of function_app/http.py; function_app/openapi.py
describes every route (a test compares it with what the app registers).
"""

from __future__ import annotations

import asyncio

import azure.durable_functions as df
import azure.functions as func

from function_app import openapi
from function_app.http import error_response, errors_as_json, json_response
from orchestrations import queries, runtime
from orchestrations.queries import DEFAULT_LIST_LIMIT, MAX_LIST_LIMIT
from orchestrations.run_store import RunNotFoundError

bp = df.Blueprint()


@bp.route(route="runs/{run_id}", methods=["GET"])
@bp.durable_client_input(client_name="client")
@errors_as_json
async def get_run(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    run_id = req.route_params["run_id"]
    view = await queries.describe_run(run_id, client, run_store=runtime.run_store())
    if view is None:
        return _run_not_found(run_id)
    return json_response(view)


@bp.route(route="runs", methods=["GET"])
@bp.durable_client_input(client_name="client")
@errors_as_json
async def list_runs(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    text = req.params.get("limit", str(DEFAULT_LIST_LIMIT))
    if not text.isdigit() or not 1 <= int(text) <= MAX_LIST_LIMIT:
        return error_response(400, "invalid_query", f"limit={text!r} is not a whole number in 1..{MAX_LIST_LIMIT}.")
    try:
        runs = await queries.list_runs(client, runtime.run_store(), status=req.params.get("status"), limit=int(text))
    except queries.InvalidQueryError as exc:
        return error_response(400, exc.code, f"{exc.message}.")
    return json_response({"runs": runs})


@bp.route(route="runs/{run_id}/log", methods=["GET"])
@errors_as_json
async def get_run_log(req: func.HttpRequest) -> func.HttpResponse:
    run_id = req.route_params["run_id"]
    try:
        log = await asyncio.to_thread(queries.get_run_log, run_id, run_store=runtime.run_store())
    except RunNotFoundError:
        return _run_not_found(run_id)
    except queries.LogNotFoundError as exc:
        return error_response(404, exc.code, exc.message)
    # The log is the job's output, anyone's text: never to be read as a page.
    return func.HttpResponse(log, status_code=200, mimetype="text/plain", charset="utf-8",
                             headers={"X-Content-Type-Options": "nosniff"})


@bp.route(route="openapi.json", methods=["GET"])
@errors_as_json
async def get_openapi(req: func.HttpRequest) -> func.HttpResponse:
    return json_response(openapi.document())


def _run_not_found(run_id: str) -> func.HttpResponse:
    return error_response(404, "run_not_found", f"No run {run_id!r}; GET /api/runs lists the recent runs.")
