"""The host's HTTP front door: the app's HTTP functions under `/api/`, plus the durable HTTP API.

`HttpServer` serves every `httpTrigger` function at `/<routePrefix>/<route>` (host.json
`extensions.http.routePrefix`, default `api`), honouring the route template and `methods`, and
mounts the caller's durable HTTP API application at `/runtime/webhooks/durabletask/`. Like
`func start`, it accepts any key for function- and admin-level functions.

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
