"""The status API: `GET /api/runs/{run_id}` and `GET /api/runs?status=&limit=`."""

from __future__ import annotations

import json
from typing import Any

import azure.durable_functions as df
import azure.functions as func

from orchestrations import queries, runtime

bp = df.Blueprint()

MAX_LIST_LIMIT = 500


@bp.route(route="runs/{run_id}", methods=["GET"])
@bp.durable_client_input(client_name="client")
async def get_run(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    run_id = req.route_params["run_id"]
    view = await queries.describe_run(run_id, client, run_store=runtime.run_store())
    if view is None:
        return _json({"error": {"code": "run_not_found", "message": f"No run {run_id!r}."}}, status=404)
    return _json(view)


@bp.route(route="runs", methods=["GET"])
@bp.durable_client_input(client_name="client")
async def list_runs(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    try:
        limit = int(req.params.get("limit", "50"))
        if not 1 <= limit <= MAX_LIST_LIMIT:
            raise ValueError(f"limit={limit} is outside 1..{MAX_LIST_LIMIT}")
        runs = await queries.list_runs(client, runtime.run_store(), status=req.params.get("status"), limit=limit)
    except ValueError as exc:
        return _json({"error": {"code": "invalid_query", "message": str(exc)}}, status=400)
    return _json({"runs": runs})


def _json(body: Any, *, status: int = 200) -> func.HttpResponse:
    return func.HttpResponse(json.dumps(body), status_code=status, mimetype="application/json")
