"""The API's OpenAPI 3.1 document, served at `GET /api/openapi.json`.

Built in code rather than kept as a static file: the schemas of what the API answers and accepts come from the
pydantic models that shape them (`RunSummary`, `RunView`, `ErrorAnswer`, `CancelBody`), so a field added to a
record shows in the document without anyone regenerating it; only the rerun answer, which no model shapes, is
written here. tests/flow/test_http_api.py checks the paths and methods against the HTTP functions the app
registers, in both directions, and real answers against the schemas.
"""

from __future__ import annotations

import copy
import functools
from typing import Any

from pydantic.json_schema import models_json_schema

from function_app.http import ErrorAnswer
from orchestrations.contracts import RUN_ID_PATTERN, CancelBody, RunStatus
from orchestrations.queries import DEFAULT_LIST_LIMIT, MAX_LIST_LIMIT, RunSummary, RunView

OPENAPI_VERSION = "3.1.0"
# host.json `extensions.http.routePrefix` (unset: the Functions default).
ROUTE_PREFIX = "api"
_REF = "#/components/schemas/{model}"


def document() -> dict[str, Any]:
    """The OpenAPI document (a fresh copy: callers may change it)."""
    return copy.deepcopy(_build())


def _ref(name: str) -> dict[str, str]:
    return {"$ref": _REF.format(model=name)}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _error(description: str) -> dict[str, Any]:
    return _json(_ref("ErrorAnswer"), description)


_RUN_ID = {
    "name": "run_id", "in": "path", "required": True, "description": "A run id, as `GET /runs` lists it.",
    "schema": {"type": "string", "pattern": RUN_ID_PATTERN},
}
# Added to every operation: what any route may answer besides its own outcomes.
_COMMON_RESPONSES = {
    "401": {"description": "No or wrong function key. The Functions host answers this itself, with no body."},
    "500": _error("`internal_error`: the app failed to answer; its log has the details."),
}


def _operation(operation_id: str, summary: str, responses: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"operationId": operation_id, "summary": summary, **extra, "responses": responses | _COMMON_RESPONSES}


_LIST_PARAMETERS = [
    {"name": "status", "in": "query", "required": False, "description": "Only runs with this status.",
     "schema": {"type": "string", "enum": [status.value for status in RunStatus]}},
    {"name": "limit", "in": "query", "required": False, "description": "At most this many runs.",
     "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LIST_LIMIT, "default": DEFAULT_LIST_LIMIT}},
]


def _html(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"text/html": {"schema": {"type": "string"}}}}


def _page(operation_id: str, summary: str, bad: str, *, parameters: list[dict[str, Any]],
          not_found: bool = False) -> dict[str, Any]:
    """A page for people (function_app/ui.py): HTML, its errors too (but the host's 401)."""
    responses = {"200": _html("The page."), "400" if not not_found else "404": _html(bad)}
    return {"operationId": operation_id, "summary": summary, "tags": ["pages"], "parameters": parameters,
            "responses": responses | {"401": _COMMON_RESPONSES["401"],
                                      "500": _html("The app failed to show the page; its log has the details.")}}


def _paths() -> dict[str, Any]:
    return {
        "/runs": {"get": _operation(
            "list_runs", "Recent runs, newest first",
            {"200": _json(_ref("RunList"), "The runs."),
             "400": _error("`invalid_query`: `limit` or `status` is not valid; the message names it.")},
            parameters=_LIST_PARAMETERS,
        )},
        "/runs/{run_id}": {"get": _operation(
            "get_run", "One run, with its orchestration's runtime status",
            {"200": _json(_ref("RunView"), "The run."), "404": _error("`run_not_found`.")},
            parameters=[_RUN_ID],
        )},
        "/runs/{run_id}/log": {"get": _operation(
            "get_run_log", "The runner's log of a run (its last 8 MiB, after a line saying so, if longer)",
            {"200": {"description": "The log.", "content": {"text/plain": {"schema": {"type": "string"}}}},
             "404": _error("`run_not_found`, or `log_not_found` while the run has no log yet.")},
            parameters=[_RUN_ID],
        )},
        "/runs/{run_id}/cancel": {"post": _operation(
            "cancel_run", "Cancel a run that has not ended",
            {"202": _json(_ref("RunView"), "Cancel accepted: the run as it is now."),
             "400": _error("`invalid_body`: the body is not a `CancelBody`; the message says why."),
             "404": _error("`run_not_found`."),
             "409": _error("`run_already_ended`: the message names the run's status.")},
            parameters=[_RUN_ID],
            requestBody={"required": False, "content": {"application/json": {"schema": _ref("CancelBody")}}},
        )},
        "/runs/{run_id}/rerun": {"post": _operation(
            "rerun_run", "Start a new run of the same source blob version",
            {"201": _json(_ref("RerunAnswer"), "The new run, started."),
             "200": _json(_ref("RerunAnswer"), "A rerun this run already had, still under way (a repeated POST)."),
             "404": _error("`run_not_found`."),
             "409": _error("`source_version_gone` (the uploaded blob changed or was deleted since), or another "
                           "refusal the message explains.")},
            parameters=[_RUN_ID],
        )},
        "/ui/runs": {"get": _page(
            "runs_page", "The runs page: recent runs with their status, task type, times and place in line",
            "`limit` or `status` is not valid; the page says which.",
            parameters=[{**parameter, "description": f"{parameter['description']} (the page's filter form)"}
                        for parameter in _LIST_PARAMETERS],
        )},
        "/ui/runs/{run_id}": {"get": _page(
            "run_page", "A run's page: its phases, error, outputs, result document, log, and the cancel and rerun "
            "actions (forms that post to this API)",
            "There is no such run.", parameters=[_RUN_ID], not_found=True,
        )},
        "/openapi.json": {"get": _operation(
            "get_openapi", "This document", {"200": _json({"type": "object"}, "The OpenAPI document.")},
        )},
    }


@functools.cache
def _build() -> dict[str, Any]:
    _, top = models_json_schema(
        [(RunSummary, "serialization"), (RunView, "serialization"), (ErrorAnswer, "serialization"),
         (CancelBody, "validation")],
        ref_template=_REF,
    )
    schemas: dict[str, Any] = dict(top["$defs"])
    schemas["RunList"] = {
        "type": "object", "title": "RunList", "additionalProperties": False, "required": ["runs"],
        "properties": {"runs": {"type": "array", "items": _ref("RunSummary")}},
    }
    schemas["RerunAnswer"] = {
        "type": "object", "title": "RerunAnswer", "required": ["run_id", "rerun_of"],
        "properties": {"run_id": {"type": "string", "description": "The new run's id."},
                       "rerun_of": {"type": "string", "description": "The run it reruns."}},
    }
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "PACTA runner orchestrator",
            "version": "1",
            "description": "Runs of PACTA tasks: their status, logs, cancellation and reruns. Every answer that "
                           "is not 2xx (but the host's 401) is `{\"error\": {\"code\", \"message\"}}`.",
        },
        "servers": [{"url": f"/{ROUTE_PREFIX}"}],
        "security": [{"functionKeyHeader": []}, {"functionKeyQuery": []}],
        "paths": _paths(),
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "functionKeyHeader": {"type": "apiKey", "in": "header", "name": "x-functions-key"},
                "functionKeyQuery": {"type": "apiKey", "in": "query", "name": "code"},
            },
        },
    }
