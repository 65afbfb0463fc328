"""The host's HTTP server: HTTP functions under /api/, the durable HTTP API mounted beside them."""

from __future__ import annotations

import contextlib
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from aiohttp import web

from local_runner.host.functions import DurableClientBinding, FunctionIndex, Invoker
from local_runner.host.http import HttpServer, route_paths


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes


def request(url: str, *, method: str = "GET", body: bytes | None = None) -> Reply:
    """One HTTP request with the standard library; error statuses are returned, not raised."""
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=body, method=method)) as r:
            return Reply(r.status, dict(r.headers), r.read())
    except urllib.error.HTTPError as error:
        return Reply(error.code, dict(error.headers), error.read())


def stub_durable_api(started: list[tuple[str, str]]) -> web.Application:
    """Stands in for the engine's durable HTTP API: accepts start_new and names the instance."""

    async def start_new(request: web.Request) -> web.Response:
        started.append((request.match_info["name"], await request.text()))
        return web.json_response({"id": "instance-1"}, status=202)

    api = web.Application()
    api.router.add_post("/orchestrators/{name}", start_new)
    return api


@pytest.fixture
def started() -> list[tuple[str, str]]:
    return []


@contextlib.contextmanager
def running_server(index: FunctionIndex, started: list[tuple[str, str]]) -> Iterator[HttpServer]:
    """The HTTP server with its invoker; the durable client binding points at this server."""
    servers: list[HttpServer] = []
    invoker = Invoker(durable_client=lambda: DurableClientBinding("SampleHub", servers[0].port))
    http = HttpServer(index, invoker, durable_api=stub_durable_api(started))
    servers.append(http)
    with invoker, http:
        yield http


@pytest.fixture
def server(index: FunctionIndex, started: list[tuple[str, str]]) -> Iterator[HttpServer]:
    with running_server(index, started) as http:
        yield http


def test_an_http_function_gets_its_route_params_and_query(server: HttpServer) -> None:
    reply = request(f"{server.base_url}/api/runs/r-42?verbose=yes&code=any-key")

    assert reply.status == 200
    assert json.loads(reply.body) == {"run_id": "r-42", "verbose": "yes"}
    assert reply.headers["Content-Type"] == "application/json"
    assert reply.headers["X-Run"] == "r-42"


def test_an_unknown_route_is_404(server: HttpServer) -> None:
    assert request(f"{server.base_url}/api/nothing/here").status == 404
    assert request(f"{server.base_url}/runs/r-42").status == 404


def test_a_method_the_function_does_not_declare_is_refused(server: HttpServer) -> None:
    assert request(f"{server.base_url}/api/runs/r-42", method="POST", body=b"{}").status == 405


def test_a_function_that_raises_answers_500(server: HttpServer) -> None:
    assert request(f"{server.base_url}/api/boom", method="POST", body=b"").status == 500


def test_a_durable_client_function_reaches_the_mounted_durable_api_on_the_hosts_port(
    server: HttpServer, started: list[tuple[str, str]]
) -> None:
    reply = request(f"{server.base_url}/api/start/pipeline", method="POST", body=b'{"n": 2}')

    assert reply.status == 202
    status = json.loads(reply.body)
    assert status["id"] == "instance-1"
    assert status["statusQueryGetUri"].startswith(
        f"{server.base_url}/runtime/webhooks/durabletask/instances/instance-1?"
    )
    assert reply.headers["Location"] == status["statusQueryGetUri"]
    # The SDK posts the input already serialized, so the body is a JSON string of JSON.
    assert started == [("pipeline", json.dumps(json.dumps({"n": 2})))]


def test_a_restarted_host_can_use_the_durable_client_again(
    index: FunctionIndex, started: list[tuple[str, str]]
) -> None:
    for _ in range(2):
        with running_server(index, started) as http:
            url = f"{http.base_url}/api/start/pipeline"
            assert request(url, method="POST", body=b"{}").status == 202

    assert len(started) == 2


@pytest.mark.parametrize(
    ("route", "paths"),
    [
        ("runs/{run_id}", ["/api/runs/{run_id}"]),
        ("runs/{run_id:guid}/logs", ["/api/runs/{run_id}/logs"]),
        ("files/{*path}", ["/api/files/{path:.*}"]),
        ("runs/{run_id?}", ["/api/runs/{run_id}", "/api/runs"]),
    ],
)
def test_route_templates_become_aiohttp_paths(route: str, paths: list[str]) -> None:
    assert route_paths(route) == paths


def test_an_empty_route_prefix_serves_functions_at_the_root() -> None:
    assert route_paths("runs/{run_id}", prefix="") == ["/runs/{run_id}"]
