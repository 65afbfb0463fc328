"""The Durable extension's HTTP API over an `OrchestrationEngine`, for `DurableOrchestrationClient`.

Mount it where the Functions host serves it:

    app.add_subapp("/runtime/webhooks/durabletask/", create_durable_api(engine))

and give the client binding `client_binding_json(<that base URL>, task_hub)`. Routes, status codes
and bodies follow the extension's HttpApiHandler.cs (the ones the Python client calls):

    POST orchestrators/{functionName}[/{instanceId}]    202 + management URLs; 400 unknown name;
                                                        409 instance exists and is not finished
    GET  instances/{id}?showHistory&showInput           202 running, 200 finished, 404 unknown
    GET  instances/?runtimeStatus&createdTimeFrom&...   200 list
    POST instances/{id}/raiseEvent/{eventName}          202; 404; 410 finished; 400 not JSON
    POST instances/{id}/terminate?reason=               202; 404; 410 finished

A body is taken as the extension takes it: parsed as JSON and stored as that value's JSON, nothing
unwrapped (`_start_input`, `_event_data`). The Python client serialises inputs and event data and
then posts that text as JSON again (DurableOrchestrationClient.start_new / raise_event: df_dumps /
json.dumps, then aiohttp `json=`), so the extension stores a JSON *string* and the orchestrator
gets a `str` from `get_input()` and from the event (azure-functions-durable-python#295).
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from aiohttp import web
from azure.durable_functions import OrchestrationRuntimeStatus

from local_runner.host.durable.engine import OrchestrationEngine
from local_runner.host.durable.errors import (
    InstanceExistsError,
    InstanceGoneError,
    InstanceNotFoundError,
    OrchestratorNotFoundError,
)
from local_runner.host.durable.state import RuntimeStatus

ENGINE_KEY = web.AppKey("durable_engine", OrchestrationEngine)
DEFAULT_CONNECTION = "Storage"
# The extension asks pollers to wait this long between status checks.
RETRY_AFTER_SECONDS = "5"
_KNOWN_STATUSES = {s.value for s in OrchestrationRuntimeStatus}
_IN_PROGRESS = {RuntimeStatus.PENDING, RuntimeStatus.RUNNING, RuntimeStatus.CONTINUED_AS_NEW}


def create_durable_api(engine: OrchestrationEngine) -> web.Application:
    app = web.Application()
    app[ENGINE_KEY] = engine
    app.router.add_post("/orchestrators/{function_name}", _start)
    app.router.add_post("/orchestrators/{function_name}/{instance_id}", _start)
    app.router.add_get("/instances", _list)
    app.router.add_get("/instances/", _list)
    app.router.add_get("/instances/{instance_id}", _get)
    app.router.add_post("/instances/{instance_id}/raiseEvent/{event_name}", _raise_event)
    app.router.add_post("/instances/{instance_id}/terminate", _terminate)
    return app


def client_binding_json(
    rpc_base_url: str, task_hub: str, *, connection: str = DEFAULT_CONNECTION
) -> str:
    """The `durableClient` binding data the host gives a client function, for this API."""
    base = rpc_base_url if rpc_base_url.endswith("/") else rpc_base_url + "/"
    return json.dumps({
        "taskHubName": task_hub,
        "creationUrls": {
            "createNewInstancePostUri": f"{base}orchestrators/{{functionName}}[/{{instanceId}}]",
            "createAndWaitOnNewInstancePostUri": (
                f"{base}orchestrators/{{functionName}}[/{{instanceId}}]"
                "?timeout={timeoutInSeconds}&pollingInterval={intervalInSeconds}"
            ),
        },
        "managementUrls": management_urls(base, "INSTANCEID", task_hub, connection),
        "baseUrl": base.rstrip("/"),
        "rpcBaseUrl": base,
        "requiredQueryStringParameters": "",
    })


def management_urls(base: str, instance_id: str, task_hub: str, connection: str) -> dict[str, str]:
    """The extension's HttpManagementPayload for one instance."""
    instance = f"{base}instances/{quote(instance_id, safe='')}"
    query = f"taskHub={quote(task_hub)}&connection={quote(connection)}"
    return {
        "id": instance_id,
        "statusQueryGetUri": f"{instance}?{query}",
        "sendEventPostUri": f"{instance}/raiseEvent/{{eventName}}?{query}",
        "terminatePostUri": f"{instance}/terminate?reason={{text}}&{query}",
        "rewindPostUri": f"{instance}/rewind?reason={{text}}&{query}",
        "purgeHistoryDeleteUri": f"{instance}?{query}",
        "restartPostUri": f"{instance}/restart?{query}",
        "suspendPostUri": f"{instance}/suspend?reason={{text}}&{query}",
        "resumePostUri": f"{instance}/resume?reason={{text}}&{query}",
    }


async def _start(request: web.Request) -> web.Response:
    engine = request.app[ENGINE_KEY]
    name = request.match_info["function_name"]
    try:
        input_json = _start_input(await request.text())
    except ValueError as exc:
        return _error(400, "Invalid JSON content", str(exc))
    try:
        instance_id = await asyncio.to_thread(
            engine.start_new, name, request.match_info.get("instance_id") or None, input_json
        )
    except OrchestratorNotFoundError as exc:
        return _error(400, "One or more of the arguments submitted is incorrect", exc.message)
    except InstanceExistsError as exc:
        return _error(409, exc.message, exc.message)
    base = _base_url(request, "orchestrators/")
    payload = management_urls(base, instance_id, engine.task_hub, DEFAULT_CONNECTION)
    return web.json_response(
        payload, status=202,
        headers={"Location": payload["statusQueryGetUri"], "Retry-After": RETRY_AFTER_SECONDS},
    )


async def _get(request: web.Request) -> web.Response:
    engine = request.app[ENGINE_KEY]
    query = request.query
    status = await asyncio.to_thread(
        engine.get_status, request.match_info["instance_id"],
        show_history=_flag(query.get("showHistory"), default=False),
        show_history_output=_flag(query.get("showHistoryOutput"), default=False),
        show_input=_flag(query.get("showInput"), default=True),
    )
    if status is None:
        return web.Response(status=404)
    runtime_status = RuntimeStatus(status["runtimeStatus"])
    if runtime_status in _IN_PROGRESS:
        headers = {"Location": str(request.url), "Retry-After": RETRY_AFTER_SECONDS}
        return web.json_response(status, status=202, headers=headers)
    failed_as_500 = _flag(query.get("returnInternalServerErrorOnFailure"), default=False)
    code = 500 if runtime_status is RuntimeStatus.FAILED and failed_as_500 else 200
    return web.json_response(status, status=code)


async def _list(request: web.Request) -> web.Response:
    engine = request.app[ENGINE_KEY]
    query = request.query
    # Like the extension, ignore names that are no OrchestrationRuntimeStatus at all.
    statuses = [s for s in query.get("runtimeStatus", "").split(",") if s in _KNOWN_STATUSES]
    try:
        created_from = _time(query.get("createdTimeFrom"))
        created_to = _time(query.get("createdTimeTo"))
    except ValueError as exc:
        return _error(400, "Invalid createdTimeFrom or createdTimeTo", str(exc))
    instances = await asyncio.to_thread(
        engine.list_instances,
        runtime_status=statuses or None, created_from=created_from, created_to=created_to,
        instance_id_prefix=query.get("instanceIdPrefix") or None,
        show_input=_flag(query.get("showInput"), default=False),
    )
    return web.json_response(instances, status=200)


async def _raise_event(request: web.Request) -> web.Response:
    engine = request.app[ENGINE_KEY]
    instance_id = request.match_info["instance_id"]
    status = await asyncio.to_thread(engine.get_status, instance_id, show_input=False)
    if status is None:
        return web.Response(status=404)
    if RuntimeStatus(status["runtimeStatus"]).is_terminal:
        return web.Response(status=410)
    if request.content_type.lower() != "application/json":
        return _error(400, "Only application/json request content is supported", "")
    try:
        data_json = _event_data(await request.text())
    except ValueError as exc:
        return _error(400, "Invalid JSON content", str(exc))
    try:
        await asyncio.to_thread(
            engine.raise_event, instance_id, request.match_info["event_name"], data_json
        )
    except InstanceNotFoundError:
        return web.Response(status=404)
    except InstanceGoneError:
        return web.Response(status=410)
    return web.Response(status=202)


async def _terminate(request: web.Request) -> web.Response:
    engine = request.app[ENGINE_KEY]
    reason = request.query.get("reason", "")
    try:
        await asyncio.to_thread(engine.terminate, request.match_info["instance_id"], reason)
    except InstanceNotFoundError:
        return web.Response(status=404)
    except InstanceGoneError:
        return web.Response(status=410)
    return web.Response(status=202)


def _start_input(body: str) -> str | None:
    """The orchestration input the extension stores for a start request's body.

    HttpApiHandler.HandleStartOrchestratorRequestAsync (L857-898): no body means no input, else
    `JsonConvert.DeserializeObject(body)` (JsonReaderException -> 400 "Invalid JSON content"),
    passed to StartNewAsync, which stores that value serialised again (DurableClient.StartNewAsync
    L204 -> TaskHubClient.CreateOrchestrationInstanceAsync, SerializeInternal).
    """
    if not body.strip():
        return None
    return _compact(json.loads(body))


def _event_data(body: str) -> str:
    """The EventRaised input the extension stores for a raiseEvent request's body.

    HttpApiHandler.HandleRaiseEventRequestAsync (L978-1018): `MessagePayloadDataConverter.
    ConvertToJToken(body)`, which refuses an empty body too (JsonReaderException -> 400 "Invalid
    JSON content"), then RaiseEventAsync serialises that token (DurableTask.Core 2.17.1
    TaskHubClient.RaiseEventAsync L716-726).
    """
    if not body.strip():
        raise ValueError("Error reading JToken from JsonReader. Path '', line 0, position 0.")
    return _compact(json.loads(body))


def _compact(value: Any) -> str:
    # Newtonsoft's output for a JToken: no whitespace, non-ASCII characters unescaped.
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _flag(value: str | None, *, default: bool) -> bool:
    # .NET bool.TryParse: "true"/"false" in any case; anything else keeps the default.
    if value is None or value.lower() not in ("true", "false"):
        return default
    return value.lower() == "true"


def _time(value: str | None) -> datetime | None:
    if not value:
        return None
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _base_url(request: web.Request, segment: str) -> str:
    """This API's base URL as the caller sees it: everything before the route's first segment."""
    path = request.path
    return f"{request.url.origin()}{path[: path.index(segment)]}"


def _error(status: int, message: str, detail: str) -> web.Response:
    # The extension's CreateErrorResponse body; the Python client reads "ExceptionMessage".
    return web.json_response(
        {"Message": message, "ExceptionMessage": detail or message}, status=status
    )
