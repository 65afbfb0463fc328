"""The host's HTTP front door: the app's HTTP functions under `/api/`, plus the durable HTTP API.

`HttpServer` serves every `httpTrigger` function at `/<routePrefix>/<route>` (host.json
`extensions.http.routePrefix`, default `api`), honouring the route template and `methods`, and
mounts the caller's durable HTTP API application at `/runtime/webhooks/durabletask/`. Like
`func start`, it accepts any key for function- and admin-level functions.

Two functions whose routes can match the same request (same method) are refused at start-up. The
Functions host does not rank routes (a literal segment does not beat a parameter, as it would in ASP.NET
Core's attribute routing): WebScriptHostHttpRoutesManager maps them in the order it lists the functions, into
a RouteCollection (Azure/azure-webjobs-sdk-extensions, src/WebJobs.Extensions.Http/Routing/
WebJobsRouteBuilder.cs, `Build`) that answers with the first route that matches. Which function gets such a
request in Azure is therefore up to an order the app does not control, whereas aiohttp here would pick the
literal one; serving it would make this host more forgiving than Azure.

Threads: the server runs its own asyncio loop in its own thread and hands each invocation to the
`Invoker`'s loop (`asyncio.wrap_future(invoker.submit(...))`). Keeping the loops apart means a
durable-client function, running on the invoker's loop, can call the durable API served here
without either side blocking the other.
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
from collections.abc import Iterable

import azure.functions as func
from aiohttp import hdrs, web
from aiohttp.typedefs import Handler
from multidict import CIMultiDict

from local_runner.host.functions import (
    DURABLE_WEBHOOK_PATH,
    HTTP_TRIGGER,
    IndexedFunction,
    Invoker,
    http_trigger_input,
    http_trigger_output,
)

logger = logging.getLogger(__name__)

HTTP_REASON = "This function was programmatically called via the host APIs."
STARTUP_TIMEOUT_SECONDS = 30.0
# ASP.NET route parameters: {name}, {name:constraint}, {name?}, {*name} (catch-all).
_ROUTE_PARAMETER = re.compile(r"\{(\*?)([A-Za-z_][A-Za-z0-9_]*)(?::[^}?]*)?(\??)\}")


def route_paths(route: str, prefix: str = "api") -> list[str]:
    """aiohttp paths for a Functions route template; an optional last parameter gives two paths."""
    base = "/" + "/".join(part for part in (prefix.strip("/"), route.strip("/")) if part)
    optional = False

    def convert(match: re.Match[str]) -> str:
        nonlocal optional
        catch_all, name, question = match.groups()
        optional = optional or bool(question)
        return f"{{{name}:.*}}" if catch_all else f"{{{name}}}"

    path = _ROUTE_PARAMETER.sub(convert, base)
    if optional and path.endswith("}"):
        return [path, path.rsplit("/", 1)[0] or "/"]
    return [path]


def routes_overlap(first: str, second: str) -> bool:
    """Whether some request path matches both Functions route templates (methods aside).

    Conservative, as a guard must be: a parameter, constrained or not, or a segment mixing text and
    parameters, is taken to match any one segment; a catch-all, any number of them, none included.
    """
    return any(
        _segments_overlap(a, b)
        for a in _template_variants(first) for b in _template_variants(second)
    )


def check_routes_distinct(functions: Iterable[IndexedFunction], route_prefix: str = "api") -> None:
    """Raise ValueError naming two functions whose routes can take the same request with a common method."""
    seen: list[tuple[IndexedFunction, str, set[str]]] = []
    for function in functions:
        raw = function.trigger.raw
        route = str(raw.get("route") or function.name)
        methods = {str(m).upper() for m in raw.get("methods") or []} or {hdrs.METH_ANY}
        for other, other_route, other_methods in seen:
            shared = methods & other_methods or (methods | other_methods) & {hdrs.METH_ANY}
            if shared and routes_overlap(route, other_route):
                raise ValueError(
                    f"HTTP functions {other.name} ({other_route!r}) and {function.name} ({route!r}) can both "
                    f"match one {'/'.join(sorted(shared))} request under "
                    f"/{route_prefix}/: the Functions host tries routes in the order it lists the functions, "
                    "not the most specific first, so change one route so that no path matches both."
                )
        seen.append((function, route, methods))


def _template_variants(route: str) -> list[list[str]]:
    """The route's segments; a route ending in an optional parameter also without it."""
    segments = [part for part in route.strip("/").split("/") if part]
    if segments and (last := _ROUTE_PARAMETER.fullmatch(segments[-1])) and last.group(3):
        return [segments, segments[:-1]]
    return [segments]


def _segments_overlap(first: list[str], second: list[str]) -> bool:
    for index in range(max(len(first), len(second))):
        a = first[index] if index < len(first) else None
        b = second[index] if index < len(second) else None
        if _is_catch_all(a) or _is_catch_all(b):
            return True
        if a is None or b is None:
            return False
        both_literal = not _ROUTE_PARAMETER.search(a) and not _ROUTE_PARAMETER.search(b)
        if both_literal and a.lower() != b.lower():  # ASP.NET matches literals case-insensitively
            return False
    return True


def _is_catch_all(segment: str | None) -> bool:
    return segment is not None and bool((match := _ROUTE_PARAMETER.fullmatch(segment)) and match.group(1))


class HttpServer:
    """An aiohttp server on 127.0.0.1 for the app's HTTP functions and the durable HTTP API."""

    def __init__(
        self,
        functions: Iterable[IndexedFunction],
        invoker: Invoker,
        *,
        port: int = 0,
        host: str = "127.0.0.1",
        route_prefix: str = "api",
        durable_api: web.Application | None = None,
    ) -> None:
        """`port` 0 picks a free port (read `port` after `start`); `durable_api` must be fresh."""
        self._functions = [f for f in functions if f.trigger.type == HTTP_TRIGGER]
        check_routes_distinct(self._functions, route_prefix)
        self._invoker = invoker
        self._host = host
        self._requested_port = port
        self._route_prefix = route_prefix
        self._durable_api = durable_api
        self._port: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None

    @property
    def port(self) -> int:
        """The bound port; only known once `start` has returned."""
        if self._port is None:
            raise RuntimeError("HttpServer is not listening yet: call start() first.")
        return self._port

    @property
    def base_url(self) -> str:
        return f"http://{self._host}:{self.port}"

    def __enter__(self) -> HttpServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> None:
        """Start the loop thread and listen; returns once the socket accepts connections."""
        if self._thread is not None:
            return
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="host-http", daemon=True
        )
        self._thread.start()
        try:
            future = asyncio.run_coroutine_threadsafe(self._listen(), self._loop)
            future.result(timeout=STARTUP_TIMEOUT_SECONDS)
        except BaseException:
            self.stop()
            raise
        logger.info("HTTP functions listening on %s/%s/", self.base_url, self._route_prefix)

    def stop(self) -> None:
        """Stop listening, finish the loop and join its thread (idempotent)."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), loop).result(timeout=30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()
        self._loop = self._thread = self._runner = None
        self._port = None

    async def _listen(self) -> None:
        app = web.Application()
        for function in self._functions:
            self._add_routes(app, function)
        if self._durable_api is not None:
            app.add_subapp(DURABLE_WEBHOOK_PATH, self._durable_api)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        self._runner = runner
        site = web.TCPSite(runner, self._host, self._requested_port)
        await site.start()
        self._port = int(runner.addresses[0][1])

    def _add_routes(self, app: web.Application, function: IndexedFunction) -> None:
        raw = function.trigger.raw
        methods = [str(m).upper() for m in raw.get("methods") or []] or [hdrs.METH_ANY]
        handler = self._handler(function)
        for path in route_paths(str(raw.get("route") or function.name), self._route_prefix):
            for method in methods:
                try:
                    app.router.add_route(method, path, handler)
                except (RuntimeError, ValueError) as exc:
                    raise ValueError(
                        f"HTTP function {function.name}: cannot serve {method} {path}: {exc}"
                    ) from exc

    def _handler(self, function: IndexedFunction) -> Handler:
        async def handle(request: web.Request) -> web.StreamResponse:
            http_request = http_trigger_input(
                method=request.method,
                url=str(request.url),
                headers={k: ", ".join(request.headers.getall(k)) for k in request.headers},
                params={k: ",".join(request.query.getall(k)) for k in request.query},
                route_params=dict(request.match_info),
                body=await request.read(),
            )
            future = self._invoker.submit(function, http_request, reason=HTTP_REASON)
            try:
                response = http_trigger_output(await asyncio.wrap_future(future))
            except Exception:
                # The host answers a failed function with a bare 500; the invoker logged why.
                return web.Response(status=500)
            return to_aiohttp_response(response)

        return handle


def to_aiohttp_response(response: func.HttpResponse) -> web.Response:
    """Status, headers and body of a func.HttpResponse, with the worker's Content-Type rule."""
    headers: CIMultiDict[str] = CIMultiDict()
    for name, value in response.headers.items():
        headers.add(name, value)
    if hdrs.CONTENT_TYPE not in headers:
        mimetype = response.mimetype
        charset = f"; charset={response.charset}" if mimetype.startswith("text/") else ""
        headers[hdrs.CONTENT_TYPE] = f"{mimetype}{charset}"
    return web.Response(status=response.status_code, body=response.get_body(), headers=headers)
